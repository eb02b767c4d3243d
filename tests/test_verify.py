"""`vlpeft verify`: a smoke study's cells re-made bit-identical (exit 0, `N/N identical`); a tampered runs.csv
caught (exit 1, the difference printed); the verdict's tolerance and last line as a table of cases; the sample
seeded and spread over tasks and methods; every committed run id of reports/tiny and reports/dial re-derived from
its preset's grid (the one-draw tiny-blip's, from an older grid, refused); each refusal one line saying what to
do."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from helpers import ONE_DRAW_STUDIES, cli_call
from vlpeft import cli
from vlpeft.study import verify as v
from vlpeft.study.presets import grid, make_cell
from vlpeft.worlds.assets import get_world

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def call(args, capfd) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr), the sweep workers' lines included (capfd: file descriptors)."""
    return cli_call(args, capfd)


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    """`vlpeft study --preset smoke` for two cells (captioning with LoRA, VQA with prompt-tuning) in a folder of its
    own: the world, the 20-step stand-in, the runs and reports/smoke/runs.csv."""
    root, here = tmp_path_factory.mktemp("study"), os.getcwd()
    os.chdir(root)
    try:
        cli.main(["study", "--preset", "smoke", "--methods", "lora", "prompt", "--workers", "2", "--out",
                  "reports/smoke"])
    finally:
        os.chdir(here)
    return root


def test_a_smoke_study_is_re_made_bit_identical(smoke_study, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(smoke_study)
    committed = pd.read_csv("reports/smoke/runs.csv", float_precision="round_trip")
    assert len(committed) == 2 and set(committed.task) == {"caption", "vqa"}
    before = {p: Path(p, "metrics.json").stat().st_mtime_ns for p in committed.run_dir}
    code, out, err = call(["verify", "reports/smoke", "--runs-root", tmp_path / "scratch"], capfd)
    assert code == 0, out + err
    assert out.strip().splitlines()[-1] == "2/2 identical"     # K=3 asked, two cells in the study
    for i, row in enumerate(committed.itertuples()):
        cell = "/".join(Path(row.run_dir).parts[-3:])
        assert f"{cell} start" in out and f"{cell} end after" in out and "identical" in out
        remade = json.loads((tmp_path / "scratch" / Path(*Path(row.run_dir).parts[-4:]) / "metrics.json").read_text())
        for score in ("best_val", "test", "final_val"):   # what "identical" means: the same float64, to the last bit
            assert remade[score] == getattr(row, score)
    assert committed.best_val.max() > 0  # the captioning cell's scores are not all zeros (the smoke VQA's are)
    assert {p: Path(p, "metrics.json").stat().st_mtime_ns for p in committed.run_dir} == before  # runs/ untouched


def test_a_tampered_runs_csv_is_caught(smoke_study, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(smoke_study)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))   # where its scratch folder goes
    runs = pd.read_csv("reports/smoke/runs.csv", float_precision="round_trip")
    caption = runs.index[runs.task == "caption"][0]
    true = runs.loc[caption, "test"]
    runs.loc[caption, "test"] = true + 0.25
    (tmp_path / "tampered").mkdir()
    runs.to_csv(tmp_path / "tampered" / "runs.csv", index=False)
    run_id = Path(runs.loc[caption, "run_dir"]).name
    code, out, _ = call(["verify", tmp_path / "tampered", "--cells", run_id], capfd)
    assert code == 1
    table = [line.split() for line in out.splitlines() if line.split()[:1] == ["test"] or f"{run_id}  " in line]
    assert ["test", f"{true + 0.25:.6f}", f"{true:.6f}", "-2.50e-01"] in table   # committed, re-made, difference
    last = out.strip().splitlines()[-1]
    assert last.startswith("0/1 identical; largest difference 0.25 (test cider") and "over the tolerance 0" in last
    assert f"re-made in {tmp_path / 'tmp'}/vlpeft-verify-" in out and not list((tmp_path / "tmp").iterdir())  # gone


# ---------------------------------------------------------------------------------------------------------
# The verdict: a table of (committed, re-made, tolerance) → exit and last line, on fake re-made folders
def _verdict(tmp_path, committed: dict, remade: dict | None, tolerance: float, seeds=(0,), spread=0.0,
             per_draw=False):
    cell = make_cell("s", "smoke", str(tmp_path), task="caption", method="lora", size=4, data_ratio=0.5)
    cell.out_dir.mkdir(parents=True)
    if remade is not None:
        (cell.out_dir / "metrics.json").write_text(json.dumps({"status": "complete", **remade}))
    rows = pd.DataFrame([{"study": "s", "task": "caption", "method": "lora", "size": 4, "tune_classifier": False,
                          "data_ratio": 0.5, "seed": s, "metric": "cider", "status": "complete",
                          "run_dir": f"runs/s/caption/lora/x{s}", **committed} for s in seeds])
    rows["best_val"] += [spread * (s - seeds[0]) for s in seeds]   # seeds apart by `spread`
    if per_draw:
        rows["pretrain_seed"] = rows.seed   # the draws' design: one seed per pre-training draw
    rows["cell"], rows["run_id"] = f"caption/lora/{cell.run_id}", cell.run_id
    return rows.iloc[:1], {cell.run_id: cell}, {cell.run_id: {k: committed[k] for k in v.SCORES}}, rows


SAME = {"best_val": 1.25, "test": 1.5, "final_val": 1.0}
VERDICTS = [  # (case, re-made, tolerance, seeds, spread, ok, in the last line[, one seed per draw])
    ("identical", SAME, 0.0, (0,), 0.0, True, "1/1 identical"),
    ("one ulp apart", SAME | {"test": math.nextafter(1.5, 2)}, 0.0, (0,), 0.0, False,
     "largest difference 2.22e-16 (test cider"),
    ("within a declared tolerance", SAME | {"final_val": 1.01}, 0.02, (0,), 0.0, True, "within the tolerance 0.02"),
    ("over it", SAME | {"final_val": 1.03}, 0.02, (0,), 0.0, False, "over the tolerance 0.02"),
    ("beside the seed spread", SAME | {"best_val": 1.35}, 0.0, (0, 1, 2), 0.1, False,
     "against a run-to-run spread of 0.1"),
    ("beside the draws' spread", SAME | {"best_val": 1.35}, 0.0, (0, 1, 2), 0.1, False,
     "against a run-to-run spread of 0.1", True),
    ("no spread with one run", SAME | {"best_val": 1.35}, 0.0, (0,), 0.0, False, "no run-to-run spread"),
    ("a score only one side has", SAME | {"test": None}, 1e9, (0,), 0.0, False, "largest difference inf"),
    ("the re-run did not complete", None, 1e9, (0,), 0.0, False, "1 re-run did not complete"),
]


@pytest.mark.parametrize("case, remade, tolerance, seeds, spread, ok, said, per_draw",
                         [(*c, False)[:8] for c in VERDICTS], ids=[c[0] for c in VERDICTS])
def test_the_verdict(case, remade, tolerance, seeds, spread, ok, said, per_draw, tmp_path, capsys):
    rows, found, committed, runs = _verdict(tmp_path, SAME, remade, tolerance, seeds, spread, per_draw)
    assert v.compare(rows, found, committed, runs, tolerance) is ok
    assert said in capsys.readouterr().out.strip().splitlines()[-1]


def test_missing_on_both_sides_is_identical(tmp_path, capsys):
    committed = SAME | {"test": math.nan}
    rows, found, _, runs = _verdict(tmp_path, committed, SAME | {"test": None}, 0.0)
    assert v.compare(rows, found, {rows.run_id.iloc[0]: committed}, runs, 0.0)
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1/1 identical"


# ---------------------------------------------------------------------------------------------------------
# The sample and the committed configs, on the committed reports (no runs)
@pytest.mark.parametrize("k, seed", [(3, 0), (3, 1), (5, 7), (12, 0)])
def test_the_sample_is_seeded_and_spread_over_tasks_and_methods(k, seed):
    runs = v.read_report(REPORTS / "tiny")
    picked = v.sample(runs, k, seed)
    assert len(picked) == k and (picked.status == "complete").all()
    strata = list(zip(picked.task, picked.method))
    assert len(set(strata)) == k                                      # no stratum twice before all had one
    assert len(set(picked.method)) == min(k, 6)                       # distinct methods first
    assert abs((picked.task == "caption").sum() - (picked.task == "vqa").sum()) <= 1   # both tasks, balanced
    assert list(v.sample(runs, k, seed).run_id) == list(picked.run_id)               # seeded
    assert list(v.sample(runs, k, seed + 100).run_id) != list(picked.run_id)


@pytest.mark.parametrize("report, preset", [("tiny", "tiny"), ("dial", "dial")])
def test_every_committed_run_id_is_a_cell_of_its_presets_grid(report, preset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no checkpoint here: VQA cells take the recipe's route, as the study's did
    runs = v.read_report(REPORTS / report)
    name, cells = v.committed_cells(runs, "scratch")
    assert name == preset and set(cells) == set(runs.run_id)
    for row in runs.itertuples():
        cfg = cells[row.run_id].config
        assert (cfg.task, cfg.method, cfg.size, cfg.data_ratio, cfg.seed) == (row.task, row.method, row.size,
                                                                             row.data_ratio, row.seed)
        assert cfg.out_dir == "/".join(["scratch", *Path(row.run_dir).parts[-4:]])   # the same cell, re-rooted


def test_a_study_of_an_older_grid_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = v.read_report(ONE_DRAW_STUDIES / "tiny-blip")   # made before the grid's present run ids
    with pytest.raises(v.VerifyError, match="cell of no grid of any preset in this checkout"):
        v.committed_cells(runs, "scratch")


# ---------------------------------------------------------------------------------------------------------
# Refusals: one line before any run, naming what to do
def _report(tmp_path, rows: pd.DataFrame, name="rep") -> Path:
    (tmp_path / name).mkdir()
    rows.to_csv(tmp_path / name / "runs.csv", index=False)
    return tmp_path / name


def _smoke_rows() -> pd.DataFrame:
    cells = grid("smoke", "smoke")
    return pd.DataFrame([{"study": "smoke", "task": c.config.task, "method": c.config.method, "size": c.config.size,
                          "tune_classifier": False, "data_ratio": c.config.data_ratio, "seed": 0, "status": "complete",
                          "best_val": 0.5, "test": 0.5, "final_val": 0.5, "run_dir": str(c.out_dir)} for c in cells])


def _tiny(tmp_path):
    return _report(tmp_path, pd.read_csv(ONE_DRAW_STUDIES / "tiny" / "runs.csv"))   # one 1000-step draw


def _draws_world_only(tmp_path):
    """Today's tiny grid as a report (three 6000-step draws), its world present and no stand-in: draw 0's is named."""
    (tmp_path / "data" / "shapes").mkdir(parents=True)
    (tmp_path / "data" / "shapes" / "world.json").write_text("{}")
    rows = pd.DataFrame([{"study": "tiny", "task": c.config.task, "method": c.config.method, "size": c.config.size,
                          "tune_classifier": c.config.tune_classifier, "data_ratio": c.config.data_ratio,
                          "seed": c.config.seed, "pretrain_seed": get_world(c.world).pretrain.get("seed", 0),
                          "pretrain_steps": get_world(c.world).pretrain["steps"], "status": "complete",
                          "best_val": 0.5, "test": 0.5, "final_val": 0.5, "run_dir": str(c.out_dir)}
                         for c in grid("tiny")])
    return [_report(tmp_path, rows), "--cells", rows.run_dir[rows.pretrain_seed == 0].iloc[0].rsplit("/", 1)[-1]]


def _world_only(tmp_path):
    (tmp_path / "data" / "shapes").mkdir(parents=True)
    (tmp_path / "data" / "shapes" / "world.json").write_text("{}")
    return _tiny(tmp_path)


def _smoke_world_only(tmp_path):
    (tmp_path / "data" / "smoke").mkdir(parents=True)
    (tmp_path / "data" / "smoke" / "world.json").write_text("{}")
    return _report(tmp_path, _smoke_rows())


def _edited_seed(tmp_path):
    rows = pd.read_csv(ONE_DRAW_STUDIES / "tiny" / "runs.csv").iloc[:1]
    return _report(tmp_path, rows.assign(seed=rows.seed + 1))


REFUSALS = [  # (case, argv after `verify`, exit code, in the message)
    ("no report folder", lambda t: [t / "nowhere"], 1, "no such report folder"),
    ("no runs.csv", lambda t: [t], 1, "runs.csv: missing"),
    ("not a runs table", lambda t: [_report(t, pd.DataFrame({"a": [1]}))], 1, "not a vlpeft runs table"),
    ("an unknown cell", lambda t: [_tiny(t), "--cells", "lora_s8_r0.1_seed0-ffffff"], 2, "unknown cell"),
    ("the study's own runs", lambda t: [_tiny(t), "--runs-root", "runs"], 2, "holds the study's own runs"),
    ("a negative tolerance", lambda t: [_tiny(t), "--tolerance", "-0.1"], 2, "must be 0 or more"),
    ("no world", lambda t: [_tiny(t)], 1, "make it with `vlpeft world --out data/shapes`"),
    ("no stand-in", _world_only, 1, "`vlpeft pretrain --data-root data/shapes --out checkpoints/embedded`, or "
                                    "`vlpeft study --preset tiny` (`make study`)"),
    ("no stand-in of a draw", _draws_world_only, 1, "`vlpeft pretrain --data-root data/shapes --out "
                                                    "checkpoints/mplug-L6000-p0 --steps 6000 --warmup 600`"),
    ("no smoke world", lambda t: [_report(t, _smoke_rows())], 1, "with `vlpeft world --out data/smoke --seed 3"),
    ("no smoke stand-in", _smoke_world_only, 1, "make it with `vlpeft study --preset smoke`, whose first step"),
    ("a row whose keys are not its id's", lambda t: [_edited_seed(t)], 1, "runs.csv says seed=1 but its run id"),
]


@pytest.mark.parametrize("case, argv, code, said", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusals_are_one_line(case, argv, code, said, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    args = argv(tmp_path)
    got, out, err = call(["verify", *(args if isinstance(args, list) else [args])], capfd)
    assert got == code and said in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not list((tmp_path / "tmp").iterdir())  # nothing run or left
