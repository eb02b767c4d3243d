"""Set-up consistency: environment.yml and pyproject.toml name the same runtime dependencies; the CLI explains
itself; notebooks are committed without outputs and have a `parameters` cell."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name → PyPI name


def names(specs):
    return {re.split(r"[<>=!~ \[]", s.strip(), maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_matches_pyproject():
    deps = names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    conda, in_deps = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        in_deps = in_deps or line.startswith("dependencies:")
        m = re.match(r"^  - ([A-Za-z][\w.-]*[^:]*?)\s*(#.*)?$", line)  # top-level entries, not "pip:"
        if in_deps and m:
            conda.append(m.group(1))
    conda_names = {CONDA_NAMES.get(n, n) for n in names(conda)} - {"python", "pip", "openjdk"}
    assert conda_names == deps


@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["train", "--help"], ["study", "--help"]])
def test_cli_help(args):
    out = subprocess.run([sys.executable, "-m", "vlpeft.cli", *args], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: vlpeft" in out.stdout


def test_cli_dry_run_prints_the_grid():
    """The paper preset is Table II: every ratio × every size of each PEFT, plain and '+ classifier', and full
    fine-tuning at every ratio — counted from the table, not from the preset."""
    from vlpeft.catalog import METHODS, PAPER_PEFT
    from vlpeft.study.presets import PAPER_RATIOS
    table_ii = sum(len(PAPER_RATIOS[task]) * (2 * sum(len(METHODS[m].paper_sizes[task]) for m in PAPER_PEFT) + 1)
                   for task in ("caption", "vqa"))
    assert table_ii == 9 * (2 * (7 + 7 + 5 + 4 + 4) + 1) + 5 * (2 * (7 + 7 + 5 + 6 + 6) + 1)   # the paper's grid
    out = subprocess.run([sys.executable, "-m", "vlpeft.cli", "sweep", "--preset", "paper", "--dry-run"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and f"{table_ii} runs" in out.stdout


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_thin_and_clean(notebook):
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), "commit notebooks without outputs"
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert not any(re.search(r"^\s*(def|class) ", "".join(c["source"]), re.M) for c in code)
