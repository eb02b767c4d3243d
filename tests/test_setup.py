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
from packaging.requirements import Requirement
from packaging.version import Version

from vlpeft.io import locked_versions

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["dev"] + extras["slurm"]]


def environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if m := re.match(r"^\s+- ([A-Za-z0-9][\w.-]*)==(\S+)$", line):
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def test_the_lock_pins_every_requirement_at_an_admitted_version():
    """Every dependency pyproject.toml names (with the dev and slurm extras that `make setup` installs) is in the
    lock, at a version its range admits, with hashes."""
    pins = locked_versions(ROOT / "requirements.lock")
    for req in pyproject_requirements():
        name = canonical(req.name)
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (name, pins[name], str(req.specifier))
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pinned = [i for i, line in enumerate(lines) if "==" in line and not line.lstrip().startswith("#")]
    assert len(pinned) == len(pins) and all("--hash=sha256:" in lines[i + 1] for i in pinned)  # each with a hash


def test_environment_yml_names_the_lock_versions():
    """environment.yml (the conda route) installs the same packages at the same versions as the lock (torch
    without its local build label: the CPU build is not on PyPI)."""
    locked = {name: version.split("+")[0] for name, version in locked_versions(ROOT / "requirements.lock").items()}
    assert environment_pins() == locked


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
