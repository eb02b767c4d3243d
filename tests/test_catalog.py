"""The catalogue is the one list of methods: every layer reads it, and a new method is one entry plus one file —
shown by a toy method, and by docs/adding_a_method.md's IA³ run through every shared method check. The study's
scope is the paper's methods by name: a method beyond them enters no committed grid and no claim unless asked."""
from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from helpers import dial_frame, frame, method_cases, smoke_config, worked_example
from vlpeft import catalog, cli
from vlpeft.catalog import METHODS, PAPER_METHODS, PAPER_PEFT, Method
from vlpeft.config import RunConfig
from vlpeft.errors import ConfigError
from vlpeft.methods import MethodConfig, apply_method, count_parameters, remove_method, resolve, size_problem
from vlpeft.study import claims, figures, presets, results
from vlpeft.study.report import SECTION, Study, walk
from vlpeft.study.report.walker import Note
from vlpeft.train import run, validate

ROOT = Path(__file__).resolve().parent.parent

TOY = '''
"""A toy method (not the paper's): one learned vector added to every text tower's output."""
import torch
from torch import nn


class ToyShift(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.toy_shift = nn.Parameter(torch.zeros(d))

    def hook(self, tower, args, kwargs, output):
        output.last_hidden_state = output.last_hidden_state + self.toy_shift          # h + b
        return output


def apply(model, towers, cfg):
    undo = []
    for tower in towers.values():
        tower.toy = ToyShift(tower.config.hidden_size)
        undo += [tower.register_forward_hook(tower.toy.hook, with_kwargs=True), lambda t=tower: delattr(t, "toy")]
    return undo
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_shift.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(METHODS, "toy", Method("toy", "layer", "toy shift", "unused", 1, "04_lora", "#999999",
                                               "toy_shift:apply"))
    return "toy"


def test_a_toy_method_runs_end_to_end_from_one_entry_and_one_file(toy, models, tiny_world, tmp_path):
    m = run(smoke_config(models, tiny_world, tmp_path / "run", task="vqa", method="toy", size=1), progress=False)
    d = 32  # the smoke BLIP's width: one vector per text tower (question encoder and answer decoder)
    assert m["status"] == "complete" and m["family"] == "layer" and m["trainable_params"] == 2 * d
    table = results.load_runs(tmp_path)
    assert table.loc[0, "family"] == "layer" and table.loc[0, "variant"] == "toy"


def test_the_toy_method_applies_and_removes_like_the_others(toy, make_model):
    model = make_model("caption")
    before = count_parameters(model)[1]
    apply_method(model, MethodConfig("toy", 1))
    assert count_parameters(model) == (32, before + 32)
    remove_method(model)
    assert count_parameters(model) == (before, before)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_entry_holds_its_facts(name):
    """Each entry's facts are whole: its notebook and its pointers exist, a size's default is the middle of its
    embedded grid (none without a size), its learning rates cover both tasks, and the paper's methods carry Table II."""
    m = METHODS[name]
    assert (presets.NOTEBOOK_DIR / f"{m.notebook}.ipynb").exists()
    for pointer in (m.impl, m.count):
        assert pointer is None or callable(resolve(pointer))
    assert (m.impl is None) == (m.count is None) == (m.family == "full")   # only full fine-tuning injects nothing
    if m.sized:
        assert list(m.tiny_sizes) == sorted(m.tiny_sizes) and m.default_size == m.tiny_sizes[len(m.tiny_sizes) // 2]
    else:
        assert m.default_size == 0 and not m.tiny_sizes and not m.paper_sizes
    assert set(m.embedded_lr) == set(catalog.TASK_INFO)
    if name in PAPER_METHODS:
        assert set(m.paper_lr) == set(catalog.TASK_INFO) and (not m.sized or set(m.paper_sizes) == set(m.paper_lr))


def test_every_layer_reads_the_catalogue():
    assert claims.PEFT == list(PAPER_PEFT) == presets.PEFT
    assert set(claims.EMBEDDING) | set(claims.LAYER) == set(PAPER_PEFT)
    assert set(PAPER_METHODS) <= set(METHODS)
    cells = presets.grid("tiny")
    assert {c.config.method for c in cells} == set(PAPER_METHODS)
    nb = json.loads((presets.NOTEBOOK_DIR / "04_lora.ipynb").read_text())
    assert "config" in "".join(nb["cells"][1]["source"])  # the notebook takes the whole RunConfig


# ---------------------------------------------------------------------------------------------------------
# docs/adding_a_method.md's IA³: one file and one entry, beyond the paper
@pytest.fixture
def ia3(tmp_path, monkeypatch):
    """The worked example registered as a catalogue method (its file on sys.path, its entry in METHODS)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(METHODS, "ia3", worked_example(tmp_path))
    return METHODS["ia3"]


PLUGIN = """
import json, sys
import pytest

def pytest_configure(config):
    sys.path[:0] = [{tests!r}, {folder!r}]
    from helpers import worked_example
    from vlpeft.catalog import METHODS
    METHODS["ia3"] = worked_example({folder!r})        # before any test module builds its tables

def methods_of(item):
    found = set()
    for value in getattr(getattr(item, "callspec", None), "params", {{}}).values():
        name = value if isinstance(value, str) else value.get("method") if isinstance(value, dict) else getattr(
            value, "method", None)
        from vlpeft.catalog import METHODS
        if isinstance(name, str) and name in METHODS:
            found.add(name)
    return found

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    tables, mine = {{}}, []
    for item in items:
        found = methods_of(item)
        tables.setdefault(item.module.__name__ + "::" + item.originalname, set()).update(found)
        (mine if "ia3" in found else []).append(item)
    with open({record!r}, "w") as f:
        json.dump({{"tables": {{k: sorted(v) for k, v in tables.items()}}, "ia3": [i.nodeid for i in mine]}}, f)
    config.hook.pytest_deselected(items=[i for i in items if i not in mine])
    items[:] = mine
"""
SHARED_CHECK_FILES = ["tests/test_methods.py", "tests/test_train.py", "tests/test_tasks.py"]


def test_the_worked_example_passes_every_shared_method_check(tmp_path):
    """A child pytest registers IA³ (before the test modules build their tables) and runs every case it lands in:
    all must pass, and every table of two or more methods must hold it — the test that fails when a catalogue
    method is missing from a shared check (a hand-written list of methods would leave IA³ out)."""
    record = tmp_path / "record.json"
    (tmp_path / "ia3_plugin.py").write_text(PLUGIN.format(tests=str(ROOT / "tests"), folder=str(tmp_path),
                                                          record=str(record)))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "ia3_plugin",
                          *SHARED_CHECK_FILES], cwd=ROOT, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    seen = json.loads(record.read_text())
    tables = {name: set(ms) for name, ms in seen["tables"].items() if len(ms) >= 2}
    assert len(tables) >= 12, sorted(tables)                   # the shared checks of the three files
    missing = sorted(name for name, ms in tables.items() if "ia3" not in ms)
    assert not missing, f"shared checks whose table of methods is not the catalogue's: {missing}"
    passed = int(re.search(r"(\d+) passed", out.stdout).group(1))
    assert passed == len(seen["ia3"]) >= 20 and "failed" not in out.stdout and "error" not in out.stdout.lower()


def test_the_worked_example_has_no_size_and_says_so(ia3, tmp_path, capsys):
    assert not ia3.sized and method_cases(lambda m: m.name == "ia3") == [("ia3", 0)]
    assert size_problem("ia3", 4) == "IA³ has no size; leave --size at 0 (got 4)"
    with pytest.raises(ConfigError, match="IA³ has no size"):
        validate(RunConfig(method="ia3", size=4))
    with pytest.raises(SystemExit) as stop:                    # the CLI: before it looks for a model
        cli.main(["train", "--method", "ia3", "--size", "4", "--model-path", str(tmp_path / "nowhere")])
    assert stop.value.code == 2 and "IA³ has no size; leave --size at 0 (got 4)" in capsys.readouterr().err
    cell = presets.grid("tiny", extra_methods=["ia3"])[-1]
    assert re.fullmatch(r"ia3\+cls_r1_seed2-[0-9a-f]{6}", cell.run_id)                     # no size in its run id
    assert presets.grid("tiny")[0].run_id.startswith("prompt_s8_r0.1_seed0-")               # the others keep theirs
    assert any(c.run_id.startswith("full_s0_") for c in presets.grid("tiny"))
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    nb = generator.method_notebook("ia3")                        # no prose written for it: its file's docstring
    assert nb.cells[0].source.startswith("# IA³ (layer composition)\n\nIA³ (Liu et al. 2022)")
    assert 'method="ia3"' in nb.cells[1].source and "size=0,                   # unused by IA³" in nb.cells[1].source
    assert "nb.source(ia3.apply)" in nb.cells[4].source


def with_ia3(runs: pd.DataFrame) -> pd.DataFrame:
    """The synthetic study with IA³'s runs beside it: LoRA's cells at size 0, scoring far below every method."""
    extra = runs[(runs.method == "lora") & (runs["size"] == 8)].assign(method="ia3", size=0, family="layer",
                                                                      trainable_params=77)
    extra["variant"] = extra.variant.str.replace("lora", "ia3")
    extra["best_val"] -= 0.5
    return pd.concat([runs, extra], ignore_index=True)


def test_a_method_beyond_the_paper_enters_no_grid_and_no_claim_unless_asked(ia3, capsys):
    smoke = ("lora", "prompt", "parallel_adapter")
    for preset, methods in (("tiny", PAPER_METHODS), ("tiny-blip", PAPER_METHODS), ("paper", PAPER_METHODS),
                            ("dial", (*presets.DIAL_METHODS, "full")), ("smoke", smoke)):
        assert {c.config.method for c in presets.grid(preset)} == set(methods), preset
    # asked for: laid out by the preset's rule on its own entry, beside the paper's cells (which do not change)
    plain, asked = presets.grid("tiny"), presets.grid("tiny", extra_methods=["ia3"])
    assert [c.run_id for c in asked if c.config.method != "ia3"] == [c.run_id for c in plain]
    extra = [c.config for c in asked if c.config.method == "ia3"]
    assert len(extra) == 2 * 12 and {c.method for c in extra} == {"ia3"} and {c.size for c in extra} == {0}
    assert {c.lr for c in extra if c.task == "vqa"} == {ia3.embedded_lr["vqa"]}
    assert sum(c.tune_classifier for c in extra) == 2 * 3                # "+ classifier" at the full data, 3 seeds
    with pytest.raises(ConfigError, match="ia3 has no paper_lr for caption"):
        presets.grid("paper", extra_methods=["ia3"])
    cli.main(["sweep", "--preset", "tiny", "--methods", "lora", "ia3", "--dry-run"])
    out = capsys.readouterr().out
    assert len(re.findall(r"\bia3\s+9\s+\[0\]", out)) == 2 and "ia3+cls" in out
    assert f"{2 * (12 + 15 + 3)} runs" in out                # IA³ and LoRA (its 15 plain runs and 3 "+ classifier")
    # its runs in a study: every claim, mark and part as without them; the figures show it beside; the page says so
    runs = frame().assign(run_dir="runs/synthetic/run")
    both = with_ia3(runs)
    for table in (claims.evaluate_claims, claims.per_method_table, claims.parts_table):
        pd.testing.assert_frame_equal(table(both), table(runs))
    assert "ia3" not in set(claims.per_method_table(both).method)
    dial = dial_frame()                          # the dial too: IA³'s caption runs rising steeply with the data
    steep = dial[dial.method == "lora"].assign(method="ia3", size=0)
    steep["best_val"] += 0.2 * steep.data_ratio
    pd.testing.assert_series_equal(pd.Series(claims.dial_verdict(pd.concat([dial, steep], ignore_index=True))),
                                   pd.Series(claims.dial_verdict(dial)))
    assert "ia3" in set(figures.fig_cost(both, "vqa").data.method)
    for chart in (figures.fig_param_size(both, "caption"), figures.fig_budget(both)):
        assert "ia3" not in set(chart.data.method) and (chart.data["size"].dropna() > 0).all()   # no size 0 on log₂
    notes = [i.text for i in walk(Study("s", "test", both, pd.DataFrame(columns=["run_dir"])), SECTION["families"])
             if isinstance(i, Note)]
    assert notes == ["Beyond the paper's methods: ia3. The figures show them beside the paper's families; they enter "
                     "no claim (claims 1–11, their verdicts and marks judge the paper's five PEFT methods and full "
                     "fine-tuning)."]
    assert not [i for i in walk(Study("s", "test", runs, pd.DataFrame(columns=["run_dir"])), SECTION["families"])
                if isinstance(i, Note)]
