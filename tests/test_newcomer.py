"""A newcomer's first hour: the README's quick path names commands that exist; a plan says what a study will make
and estimates its time from named, measured figures (and reproduces the committed study's measured run time on its
own grid); progress in a log is plain lines; a wiring check's page says so and judges nothing; no point of a
figure hides another."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import frame
from vlpeft import cli
from vlpeft.config import RunConfig
from vlpeft.data import Paths, nested_subset
from vlpeft.io import progress_bar
from vlpeft.study import figures, plan, presets, report
from vlpeft.study.executors import planned_work
from vlpeft.tasks import get_task
from vlpeft.worlds.assets import SMOKE_WORLD
from vlpeft.worlds.shapes import ensure_world

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------------
# The README's quick path
def quick_path() -> list[str]:
    """The commands of the README's first code block (under "First five minutes"), comments stripped, lines joined."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## First five minutes.*?```bash\n(.*?)```", text, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def test_the_quick_path_is_on_the_first_screen_and_its_commands_exist():
    lines = (REPO / "README.md").read_text().splitlines()
    assert any(line.startswith("## First five minutes") for line in lines[:40])
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    commands = quick_path()
    assert [c for c in commands if c.startswith("make ")] == ["make setup", "make smoke"]
    for command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            assert words[1] in targets, command
        elif words[0].endswith("vlpeft"):
            cli.parser().parse_args(words[1:])                                   # a usage error exits
        elif words[0].endswith("papermill"):                                    # NOTEBOOK OUTPUT -p K V | -y YAML
            notebook, output, *rest = words[1:]
            assert (REPO / notebook).is_file() and output.endswith(".ipynb")
            given = {}
            while rest:
                flag, *rest = rest
                assert flag in ("-p", "-y"), f"{flag}: not a papermill parameter flag the test knows"
                if flag == "-p":
                    (name, value), rest = rest[:2], rest[2:]
                    given[name] = value
                else:
                    given |= yaml.safe_load(rest.pop(0))
            assert given
            cell = next(c for c in json.loads((REPO / notebook).read_text())["cells"]
                        if "parameters" in c["metadata"].get("tags", []))
            for name in given:
                assert re.search(rf"^{name}\s*=", "".join(cell["source"]), re.M), f"{name}: not a parameter"
            assert set(given.get("config") or {}) <= {f.name for f in dataclasses.fields(RunConfig)}
            cfg = RunConfig(**given.get("config", {}))                     # a schedule the run would accept:
            steps = plan.planned_steps(presets.Cell("quick", given.get("world", "smoke"), cfg))
            assert get_task(cfg.task).warmup(cfg) < steps, "the warm-up is not shorter than the run"
        else:
            pytest.fail(f"the quick path runs {words[0]!r}: not make, vlpeft or papermill")


# ---------------------------------------------------------------------------------------------------------
# The plan and its estimate
def test_planned_steps_are_the_tasks_own_count(tmp_path):
    """Without reading the data the plan counts the steps the run will take: the task's schedule on its share of
    the world (`executors.planned_work` reads the data)."""
    root = ensure_world(tmp_path / "smoke", SMOKE_WORLD, progress=False)
    cells = presets.grid("smoke", data_root=str(root))
    for c in cells:
        split = get_task(c.config.task).splits(Paths.of(c.config))[0]
        assert plan.planned_steps(c) == planned_work(c.config, split), c.run_id
    assert nested_subset  # the share the count reproduces: ⌈ratio · n⌉ of the split


def test_planned_steps_are_the_steps_the_committed_study_took():
    with open(REPO / "reports" / "tiny" / "runs.csv") as f:
        took = {(r["task"], r["method"], int(r["size"]), r["tune_classifier"] == "True", float(r["data_ratio"]),
                 int(r["seed"])): int(r["steps"]) for r in csv.DictReader(f)}
    cells = presets.grid("tiny", design=presets.design_of(pd.read_csv(REPO / "reports" / "tiny" / "runs.csv")))
    assert len(took) == len(cells) == 198
    for c in cells:
        k = c.config
        assert plan.planned_steps(c) == took[(k.task, k.method, k.size, k.tune_classifier, k.data_ratio, k.seed)]


# the reference table as committed; as if it recorded either path, a blank one, or none (a table from before: native)
@pytest.mark.parametrize("ran_on", [None, "native", "pinned", "", "no column"])
def test_on_the_committed_grid_the_estimate_is_its_measured_run_time(tmp_path, monkeypatch, ran_on):
    """The reference rates are Σ wall_s / Σ steps per task and method of reports/tiny/runs.csv: on that very grid and
    the numeric path it ran on, the runs' estimated worker time is their measured one (plus the per-run papermill
    figure); on the other path, that × or ÷ the measured cost of the pinned path."""
    committed = pd.read_csv(REPO / "reports" / "tiny" / "runs.csv")
    if ran_on is not None:
        committed = committed.drop(columns="numerics", errors="ignore") if ran_on == "no column" else \
            committed.assign(numerics=ran_on)
        committed.to_csv(tmp_path / "runs.csv", index=False)
        monkeypatch.setattr(plan, "REFERENCE_RUNS", tmp_path / "runs.csv")
    measured, design = committed.wall_s.sum(), presets.design_of(committed)   # the design it ran
    recorded = committed.numerics.fillna("").replace("", "native") if "numerics" in committed else ["native"]
    (ran_on,) = set(recorded)   # one path
    fresh = dict(runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"),   # nothing made yet, whatever
                 model_path=str(tmp_path / "model" / "{task}"))                      # the checkout holds
    if len(design.draws) > 1:
        fresh.pop("model_path")   # one model per draw: each in its own folder (and none made under tmp_path)
    cost = {"native": 1.0, "pinned": plan.PINNED_COST}
    for path in ("native", "pinned"):
        p = plan.Plan.of(presets.grid("tiny", numerics=path, design=design, **fresh), workers=2,
                         runs_root=str(tmp_path / "runs"))
        factor = cost[path] / cost[ran_on]
        assert p.worker_s == pytest.approx(measured * factor + 198 * plan.CELL_S, rel=1e-9)
        assert p.parts["runs"] == pytest.approx(p.worker_s / 2 + plan.COLD_START_S)
        assert "reports/tiny/runs.csv" in str(p)
        assert ("benchmarks/numerics_cost.py" in str(p)) == (factor != 1.0)


# a study's stand-ins, none made yet, pre-trained `workers` at a time: (workers, the waves as pairs and models alone,
# the seconds per step of a card this machine wrote for a model of their size — None: no card)
@pytest.mark.parametrize("workers, pairs, alone, card", [(2, 1, 1, None), (1, 0, 3, None), (1, 0, 3, 2.0),
                                                         (2, 1, 1, 2.0)])
def test_the_pre_training_estimate_is_its_waves(tmp_path, monkeypatch, workers, pairs, alone, card):
    """The tiny study's three 6000-step stand-ins: two workers pre-train two at a time, then the third alone (as
    #39's sweep took, about 3 h 15 min); a wave of several at the two-at-a-time rate, a model alone at its own —
    this machine's card's when it has one (a card says nothing of two at a time)."""
    from vlpeft.config import PretrainConfig
    from vlpeft.worlds.assets import get_world
    monkeypatch.chdir(tmp_path)   # no card.json of this checkout's models: the reference rates
    cells = presets.grid("tiny")
    if card:   # the dial's 1000-step model, of the stand-ins' size, as this machine pre-trained it
        spec = vars(PretrainConfig(**get_world(cells[0].world).pretrain).spec)
        (tmp_path / "checkpoints" / "embedded").mkdir(parents=True)
        (tmp_path / "checkpoints" / "embedded" / "card.json").write_text(json.dumps(
            {"config": {"spec": spec}, "steps": 1000, "wall_s": 1000 * card}))
    p = plan.Plan.of(cells, workers=workers, runs_root="runs")
    one = card or plan.PRETRAIN_STEP_S["embedded"]
    assert p.parts["pre-training"] == pytest.approx(6000 * (pairs * plan.PRETRAIN_PAIR_STEP_S + alone * one))
    assert ("this machine pre-trained (its card.json)" in str(p)) == bool(card and alone)


def fake_run(root: Path, task: str, method: str, steps: int, wall_s: float, model: str, path="pinned") -> None:
    folder = root / task / method / f"{method}-{Path(model).name}-{path}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "complete", "task": task, "method": method,
                                                     "steps": steps, "planned_steps": steps, "wall_s": wall_s,
                                                     "start": {"path": f"{model}/{task}"},
                                                     "provenance": {"numerics": {"mode": path}}}))


@pytest.mark.parametrize("own,rate,basis", [
    (True, 2.5, "this machine's finished runs from the same model"),       # 10 s for 4 steps
    (False, plan.SMOKE_STEP_S["caption"], "the smoke runs of the reference machine"),
])
def test_the_estimate_prefers_this_machines_own_runs(tmp_path, own, rate, basis):
    runs = tmp_path / "runs"
    runs.mkdir()
    if own:
        fake_run(runs / "earlier", "caption", "lora", 4, 10.0, "checkpoints/smoke")
        fake_run(runs / "earlier", "caption", "lora", 4, 99.0, "checkpoints/elsewhere")   # another model: not used
        fake_run(runs / "earlier", "caption", "lora", 4, 1.0, "checkpoints/smoke", "native")   # another path: not
    cells = [c for c in presets.grid("smoke", runs_root=str(runs)) if c.config.method == "lora"]
    p = plan.Plan.of(cells, workers=1, runs_root=str(runs))
    assert p.parts["runs"] == pytest.approx(cells[0].config.steps * rate + plan.CELL_S + plan.COLD_START_S)
    assert basis in str(p)


def test_a_method_this_machine_has_not_run_is_estimated_from_its_own_reference_rate(tmp_path):
    """A resumed study whose first runs were full fine-tuning (the longest, so the first started): each PEFT run is
    estimated at the reference's rate of its own method, not at the mean of the methods this machine has finished."""
    runs = tmp_path / "runs"
    cells = presets.grid("tiny", runs_root=str(runs))
    lora = [c for c in cells if c.config.task == "vqa" and c.config.method == "lora"][:1]
    fake_run(runs / "earlier", "vqa", "full", 100, 100.0, lora[0].config.model_root)   # 1 s a step: not lora's
    p = plan.Plan.of(lora, workers=1, runs_root=str(runs))
    lora_rate = plan.reference_rates("pinned")[0][("vqa", "lora")]
    assert p.parts["runs"] == pytest.approx(plan.planned_steps(lora[0]) * lora_rate + plan.CELL_S
                                            + plan.COLD_START_S)
    assert "reports/tiny/runs.csv" in str(p)


def test_nothing_to_run_says_so(tmp_path):
    cells = presets.grid("smoke", runs_root=str(tmp_path))
    for c in cells:
        c.out_dir.mkdir(parents=True)
        (c.out_dir / "metrics.json").write_text("{}")
    assert "estimate: nothing to run" in str(plan.Plan.of(cells, runs_root=str(tmp_path)))


def test_a_real_model_without_runs_has_no_estimate(tmp_path):
    text = str(plan.Plan.of(presets.grid("paper"), runs_root=str(tmp_path)))
    assert "estimate: none" in text and "nothing is written there" in text


# ---------------------------------------------------------------------------------------------------------
# Progress in a log
def test_progress_in_a_log_is_plain_lines():
    stream = io.StringIO()
    for _ in progress_bar(iterable=range(50), desc="steps", file=stream, mininterval=0):
        pass
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert lines[0].startswith("steps:   0%") and lines[-1].startswith("steps: 100%") and len(lines) > 2
    assert len(lines) == len({line.split(" [")[0] for line in lines})       # no count said twice


# ---------------------------------------------------------------------------------------------------------
# A wiring check's page, and points that coincide
def synthetic(wiring_check: bool) -> report.Study:
    runs = frame().assign(error=None, run_dir="runs/x", study="x")
    return report.Study("x", "memory", runs, pd.DataFrame(columns=["run_dir"]), wiring_check=wiring_check)


VERDICTS = re.compile(r"\b(supported|not supported|inconclusive)\b")


@pytest.mark.parametrize("wiring_check", [True, False])
def test_a_wiring_check_says_so_and_judges_nothing(tmp_path, wiring_check):
    out = report.write_report(synthetic(wiring_check), tmp_path / "r", formats=("svg",))
    page, claims = (out / "index.html").read_text(), (out / "claims.md").read_text()
    assert ("Wiring check — its numbers mean nothing" in page) == wiring_check
    assert bool(VERDICTS.search(claims)) != wiring_check                 # the same runs are judged when not
    if wiring_check:
        assert not VERDICTS.search(re.sub(r"base64,[^']*", "", page))
        assert report.Study.load(out).wiring_check                       # the mark travels with the report
    else:
        assert not (out / "study.json").exists()


def test_a_point_covered_by_another_gets_a_ring():
    means = pd.DataFrame({"kind": "mean", "variant": ["a", "b", "c", "d"], "data_ratio": [0.5, 0.5, 0.5, 1.0],
                          "mean": [0.0, 0.0, 0.0, 0.0]})
    rings = figures._with_rings(means, "data_ratio").query("kind == 'ring'")
    assert dict(zip(rings.variant, rings.ring)) == {"b": 100, "a": 170}   # c is drawn on top; the deeper, the wider
    covered = frame(vqa=lambda m, i, cls, r: 0.0 if m in ("prompt", "lora") else 0.5 + 0.01 * len(m) + 0.1 * cls,
                    seed_sd=0, noise=0)
    for runs, n in ((covered, 1), (frame(), 0)):                         # nothing coincides: the figure as before
        layers = figures.fig_data_ratio(runs, "vqa").to_dict()["layer"]
        assert sum("'ring'" in json.dumps(x.get("transform", [])) for x in layers) == n
