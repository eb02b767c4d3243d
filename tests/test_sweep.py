"""Presets and the papermill sweep: the paper grid equals Table II, failures are isolated and retried alone,
and the Slurm path runs through submitit's local executor."""
from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from helpers import ONE_DRAW_STUDIES
from vlpeft.catalog import METHODS, PAPER_METHODS
from vlpeft.study import executors, presets
from vlpeft.study.results import run_lengths

# Table II written out by hand: (task, method) → (#data ratios, #sizes)
TABLE_II = {
    ("caption", "prompt"): (9, 7), ("caption", "prefix"): (9, 7), ("caption", "lora"): (9, 5),
    ("caption", "serial_adapter"): (9, 4), ("caption", "parallel_adapter"): (9, 4),
    ("vqa", "prompt"): (5, 7), ("vqa", "prefix"): (5, 7), ("vqa", "lora"): (5, 5),
    ("vqa", "serial_adapter"): (5, 6), ("vqa", "parallel_adapter"): (5, 6),
}
PAPER_LR = {("caption", "prompt"): 3e-4, ("caption", "prefix"): 3e-4, ("caption", "lora"): 5e-6,
            ("caption", "serial_adapter"): 1e-6, ("caption", "parallel_adapter"): 1e-6}


def test_paper_preset_is_table_ii():
    cells = presets.grid("paper")
    counts = Counter((c.config.task, c.config.method, c.config.tune_classifier) for c in cells)
    for (task, method), (n_ratios, n_sizes) in TABLE_II.items():
        assert counts[(task, method, False)] == n_ratios * n_sizes      # the PEFT itself
        assert counts[(task, method, True)] == n_ratios * n_sizes       # and "+ classifier"
    assert counts[("caption", "full", False)] == 9 and counts[("vqa", "full", False)] == 5
    assert len(cells) == sum(2 * r * s for r, s in TABLE_II.values()) + 9 + 5
    for c in cells:
        cfg = c.config
        if (cfg.task, cfg.method) in PAPER_LR:
            assert cfg.lr == PAPER_LR[(cfg.task, cfg.method)] and cfg.steps == 4000 and cfg.warmup_steps == 400
        if cfg.task == "vqa" and cfg.method != "full":
            assert cfg.lr == 3e-4 and cfg.epochs == 10 and cfg.warmup_per_ratio == 800
        assert cfg.batch_size == 256 and cfg.weight_decay == 0.05


def test_tiny_preset_covers_the_study():
    cells = presets.grid("tiny")
    for task in ("caption", "vqa"):
        sub = [c.config for c in cells if c.config.task == task]
        assert {c.method for c in sub} == set(PAPER_METHODS)     # the paper's methods by name, nothing else
        for m in PAPER_METHODS:
            mine, entry = [c for c in sub if c.method == m], METHODS[m]
            assert len({c.data_ratio for c in mine}) >= 3
            assert {c.size for c in mine} == (set(entry.tiny_sizes) if entry.sized else {0})   # its entry's sizes
            ratios = {c.data_ratio for c in mine if c.size == entry.default_size}    # the ratio axis at the middle
            assert len(ratios) >= 3 and entry.default_size == sorted({c.size for c in mine})[len(entry.tiny_sizes) // 2]
            assert all(c.lr == entry.embedded_lr[task] for c in mine)
            assert any(c.tune_classifier for c in mine) == (entry.family != "full")
        assert len({c.seed for c in sub}) >= 2


@pytest.mark.parametrize("preset, recipe", [("tiny", "mplug"), ("tiny-blip", "blip")])
def test_several_draws_are_the_one_draw_grid_once_per_draw(preset, recipe, monkeypatch):
    """The design of #39 (schedule.md §7.3): each pre-training draw d of the recipe, pre-trained L steps (warm-up
    L/10) from seed d, runs the whole grid with its own fine-tuning seeds; a cell of draw d is the one-draw study's
    cell of seed d in every field but the model it starts from. The dial's level-1 draw 0 stays the 1000-step model."""
    from vlpeft.config import PretrainConfig
    from vlpeft.errors import ConfigError
    from vlpeft.rundir import config_dict
    from vlpeft.worlds import assets
    one = presets.grid(preset, design=assets.ONE_DRAW)
    monkeypatch.setattr(assets, "DESIGN", assets.Design(3000, {0: (0,), 1: (1,), 2: (2,)}))
    draws = presets.grid(preset)
    assert len(draws) == len(one) and len({c.run_id for c in draws}) == len(draws)
    for d in (0, 1, 2):
        mine = [c for c in draws if c.config.seed == d]
        world = assets.get_world(f"{assets.RECIPE_WORLD[recipe]}-L3000-p{d}")   # a stand-in by its name
        pre = PretrainConfig(**world.pretrain)
        assert (pre.seed, pre.steps, pre.warmup, pre.recipe) == (d, 3000, 300, recipe)
        assert {c.world for c in mine} == {world.name}
        assert {c.config.model_path for c in mine} == {f"checkpoints/{recipe}-L3000-p{d}/{{task}}"}
        same = {"model_path", "out_dir"}
        strip = [{k: v for k, v in config_dict(c.config).items() if k not in same}
                 for c in sorted(mine, key=lambda c: c.run_id)]
        want = [{k: v for k, v in config_dict(c.config).items() if k not in same}
                for c in sorted((c for c in one if c.config.seed == d), key=lambda c: c.run_id)]
        assert sorted(map(repr, strip)) == sorted(map(repr, want))
    assert presets.design_of(pd.DataFrame(
        [dict(pretrain_seed=d, seed=d, pretrain_steps=3000) for d in (0, 1, 2)])) == assets.DESIGN
    with pytest.raises(ConfigError, match=r"stand-ins of 2 lengths \(1000, 3000 steps\)"):   # Study's refusal too
        presets.design_of(pd.DataFrame([dict(pretrain_seed=d, seed=d, pretrain_steps=1000 + 2000 * d) for d in (0, 1)]))
    with pytest.raises(ConfigError, match=r"stand-ins of 2 lengths \(1000, 3000 steps\)"):   # a run before #39: 1000
        presets.design_of(pd.DataFrame([dict(pretrain_seed=0, seed=0),
                                         dict(pretrain_seed=1, seed=1, pretrain_steps=3000)]))
    assert presets.design_of(pd.DataFrame([dict(pretrain_seed=0, seed=0)])).steps == 1000   # a one-draw study's runs
    assert run_lengths(pd.DataFrame([dict(seed=0)])) == []   # real BLIP: no draw, no stand-in length
    one_draw = presets.select(draws, draws=[1])   # `--draws 1`: one draw re-made alone
    assert one_draw == [c for c in draws if c.config.seed == 1] and len(one_draw) == len(draws) // 3
    dial = assets.get_world("dial-c1-p0")
    assert dial.model_root == "checkpoints/embedded" and PretrainConfig(**dial.pretrain).steps == 1000
    with pytest.raises(ConfigError, match="3 pre-training draws"):
        presets.grid(preset, model_path="elsewhere/{task}")


@pytest.mark.parametrize("first, other, same", [
    ("reports/tiny", "reports/tiny-blip", True),     # the committed pair
    ("one-draw/tiny", "one-draw/tiny-blip", True),   # the pair before #39's re-run
    ("one-draw/tiny", "reports/dial", False),
    ("one-draw/tiny", "three draws", False),         # a three-draw study beside a one-draw one
])
def test_make_study_compares_only_studies_of_one_design(first, other, same, tmp_path):
    """`make study` re-makes reports/families only when both studies come from one design (compare's premise):
    the committed pair does, as did the one-draw pair before it; the dial, or a three-draw study beside a one-draw
    one, does not."""
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    where = {"reports": repo / "reports", "one-draw": ONE_DRAW_STUDIES}
    folder = {}
    for name in (first, other):
        if name == "three draws":
            folder[name] = tmp_path
            pd.DataFrame([dict(pretrain_seed=d, seed=d, pretrain_steps=6000) for d in (0, 1, 2)]).to_csv(
                tmp_path / "runs.csv", index=False)
        else:
            folder[name] = where[name.split("/")[0]] / name.split("/")[1]
    assert presets.same_design(folder[first], folder[other]) == same
    assert "same_design('reports/tiny', 'reports/tiny-blip')" in (repo / "Makefile").read_text()


def test_dry_run_and_filters(capsys):
    cells = presets.select(presets.grid("paper"), tasks=["vqa"], methods=["lora"], ratios=[1.0])
    assert len(cells) == 2 * 5  # 5 ranks, with and without classifier
    presets.print_grid(cells)
    assert "10 runs" in capsys.readouterr().out


@pytest.mark.parametrize("flags, part", [
    (["--draws", "1"], "draws-1"),                       # one draw re-made alone: its own report
    (["--draws", "2", "0"], "draws-2-0"),
    (["--draws", "0", "1", "2"], ""),                     # every draw: the whole grid, the study's own report
    (["--tasks", "vqa", "caption"], ""),
    (["--methods", "lora"], "methods-lora"),
    (["--seeds", "0", "--ratios", "1.0"], "ratios-1.0-seeds-0"),
])
def test_a_part_of_a_grid_is_named_only_when_it_is_a_part(flags, part):
    """`vlpeft study --draws 1` reports into reports/tiny-draws-1; flags that leave the whole grid name no part, so
    the study's own report is the one re-made."""
    from vlpeft import cli
    args = cli.parser().parse_args(["study", "--preset", "tiny", *flags])
    assert cli.part_name(args, cli._cells(args, args.preset)) == part


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_smoke_sweep_isolates_a_failure_and_retries_only_it(in_tmp, capsys):
    cells = presets.grid("smoke", "smoke")[:2]
    bad = presets.make_cell("smoke", "smoke", "runs", **(vars(cells[0].config) | {"seed": 9, "fault": "crash:1"}))
    failures = executors.execute(cells + [bad], workers=2)
    assert [f["path"] for f in failures] == [str(bad.out_dir / "run.ipynb")]
    assert "injected crash at step 1" in failures[0]["error"]
    for c in cells:
        assert json.loads((c.out_dir / "metrics.json").read_text())["status"] == "complete"
        assert (c.out_dir / "run.ipynb").exists()
    error_nb = json.loads((bad.out_dir / "run.ipynb").read_text())
    assert any(o.get("output_type") == "error" for cell in error_nb["cells"] for o in cell.get("outputs", []))
    assert "FAILED" in capsys.readouterr().out
    assert json.loads((in_tmp / "runs" / "smoke" / "failures.json").read_text())[0]["error"]

    mtimes = {c.run_id: (c.out_dir / "metrics.json").stat().st_mtime_ns for c in cells}
    fixed = presets.make_cell("smoke", "smoke", "runs", **(vars(bad.config) | {"fault": ""}))  # the fault removed
    assert fixed.out_dir == bad.out_dir  # a fault is not part of what a run computes: the same folder
    assert executors.execute(cells + [fixed], workers=2) == []
    assert "3 runs in the grid: 2 complete, 1 to run" in capsys.readouterr().out
    assert {c.run_id: (c.out_dir / "metrics.json").stat().st_mtime_ns for c in cells} == mtimes
    assert (fixed.out_dir / "metrics.json").exists() and not (fixed.out_dir / "failed.json").exists()


def test_slurm_executor_through_submitit_local(in_tmp):
    cells = presets.grid("smoke", "slurm")[:1]
    failures = executors.execute(cells, executor="slurm", slurm={"cluster": "local", "slurm_dir": "slurm_logs",
                                                              "time": 10, "gpus": 0})
    assert failures == []
    assert json.loads((cells[0].out_dir / "metrics.json").read_text())["status"] == "complete"
    assert list((in_tmp / "slurm_logs").iterdir())


def test_the_sweep_runs_the_longest_cells_first(tiny_world):
    """Longest planned work first (vlpeft/study/executors.longest_first): full fine-tuning weighs twice a PEFT step,
    VQA's steps grow with the data ratio, captioning's are fixed."""
    def cell(task, method, ratio, **kw):
        return presets.make_cell("s", "smoke", "runs", task=task, method=method, size=0 if method == "full" else 4,
                                 data_ratio=ratio, data_root=str(tiny_world), **kw)
    cells = [cell("caption", "lora", 1.0, steps=4), cell("vqa", "lora", 0.5, epochs=3),
             cell("vqa", "full", 1.0, epochs=3), cell("vqa", "lora", 1.0, epochs=3),
             cell("caption", "full", 1.0, steps=50)]
    ordered = [(c.config.task, c.config.method, c.config.data_ratio) for c in executors.longest_first(cells)]
    assert ordered == [("caption", "full", 1.0), ("vqa", "full", 1.0), ("vqa", "lora", 1.0), ("vqa", "lora", 0.5),
                       ("caption", "lora", 1.0)]
