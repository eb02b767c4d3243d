"""Throughput without changing a number: any number of DataLoader workers, the shared frozen-feature cache and
a resumed run all give exactly the metrics of a plain run (CPU, fp32)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from helpers import smoke_config
from vlpeft.study import executors, presets
from vlpeft.train import run

KEYS = ("best_val", "best_step", "test", "final_val", "zero_shot_val", "steps", "n_train", "trainable_params")


def same_run(a_dir, b_dir, a: dict, b: dict) -> None:
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}
    assert json.loads((a_dir / "curve.json").read_text()) == json.loads((b_dir / "curve.json").read_text())
    wa, wb = (load_file(d / "method" / "method.safetensors") for d in (a_dir, b_dir))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)   # bit for bit


@pytest.mark.parametrize("task,method,size", [("caption", "prefix", 2), ("vqa", "lora", 2)])
def test_any_number_of_workers_gives_the_same_run(models, tiny_world, tmp_path, task, method, size):
    kw = dict(task=task, method=method, size=size)
    plain = run(smoke_config(models, tiny_world, tmp_path / "w0", num_workers=0, **kw), progress=False)
    workers = run(smoke_config(models, tiny_world, tmp_path / "w2", num_workers=2, **kw), progress=False)
    same_run(tmp_path / "w0", tmp_path / "w2", plain, workers)


@pytest.mark.parametrize("task,method,size,cls,route", [
    ("caption", "lora", 2, False, ""),
    ("vqa", "prompt", 2, True, "blip"), ("vqa", "parallel_adapter", 4, False, "blip"),      # the question states only
    ("vqa", "prompt", 2, True, "mplug"), ("vqa", "parallel_adapter", 4, False, "mplug"),    # the cached image states
])                                                                                          #   in the answer memory too
def test_a_cached_run_equals_an_uncached_one(models, tiny_world, tmp_path, task, method, size, cls, route):
    kw = dict(task=task, method=method, size=size, tune_classifier=cls, vqa_route=route)
    plain = run(smoke_config(models, tiny_world, tmp_path / "plain", **kw), progress=False)
    cached = run(smoke_config(models, tiny_world, tmp_path / "cached", feature_cache=str(tmp_path / "cache"), **kw),
                 progress=False)
    assert plain["vision_features"] is None and cached["vision_features"]
    assert plain["vqa_route"] == cached["vqa_route"] == (route or None)
    same_run(tmp_path / "plain", tmp_path / "cached", plain, cached)


def test_full_fine_tuning_never_uses_the_cache(models, tiny_world, tmp_path):
    m = run(smoke_config(models, tiny_world, tmp_path / "full", task="caption", method="full", size=0,
                         feature_cache=str(tmp_path / "cache")), progress=False)
    assert m["vision_features"] is None and not (tmp_path / "cache").exists()


def test_a_sweep_computes_the_cache_once_before_its_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = presets.grid("smoke", feature_cache="cache/features")
    full = presets.make_cell("smoke", "smoke", "runs", **(vars(cells[0].config) | {"method": "full", "size": 0}))
    assert executors.execute(cells + [full], workers=2, progress=False) == []
    bins = list((tmp_path / "cache" / "features").rglob("features-*.bin"))
    index = list((tmp_path / "cache" / "features").rglob("index.json"))
    assert len(bins) == 1 and len(index) == 1                       # one computation, every image of the world
    used = {c.config.method: json.loads((c.out_dir / "metrics.json").read_text())["vision_features"]
            for c in cells + [full]}
    assert used.pop("full") is None and set(used.values()) == {index[0].parent.name}
    first_cell = min((c.out_dir / "config.json").stat().st_mtime for c in cells)
    assert index[0].stat().st_mtime <= first_cell                   # computed before the cells, shared by them


def test_a_killed_run_with_workers_resumes_to_the_same_result(models, tiny_world, tmp_path):
    kw = dict(task="vqa", method="lora", size=4, epochs=3, eval_every=3, checkpoint_every=2, num_workers=2)
    reference = run(smoke_config(models, tiny_world, tmp_path / "ref", **kw), progress=False)
    killed = smoke_config(models, tiny_world, tmp_path / "killed", fault="kill:5", **kw)
    from vlpeft.cli import to_args
    proc = subprocess.run([sys.executable, "-m", "vlpeft.cli", "train", *to_args(killed)], capture_output=True)
    assert proc.returncode == -9 and not (tmp_path / "killed" / "metrics.json").exists()
    resumed = run(smoke_config(models, tiny_world, tmp_path / "killed", **kw), progress=False)
    same_run(tmp_path / "ref", tmp_path / "killed", reference, resumed)
