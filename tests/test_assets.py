"""Preparing assets never touches the user's data: the `paper` preset writes nothing into a real data root or
checkpoint folder, a smoke study leaves the embedded assets as they were, and the project only ever writes
into folders that are empty or its own (of the same config)."""
from __future__ import annotations

import json
import shutil

import pytest

from helpers import SPEC, TINY_WORLD, snapshot, write_real_layout
from vlpeft import cli
from vlpeft.config import PretrainConfig
from vlpeft.errors import AssetError
from vlpeft.io import MARKER, own
from vlpeft.study import executors, presets
from vlpeft.worlds import assets


def test_a_paper_cell_reads_real_files_and_writes_nothing_there(tmp_path, models, monkeypatch):
    data, ckpt = tmp_path / "coco", tmp_path / "blip"
    write_real_layout(data)
    shutil.copytree(models, ckpt)
    (ckpt / "notes.txt").write_text("a user's own file")
    before = {"data": snapshot(data), "ckpt": snapshot(ckpt)}
    monkeypatch.chdir(tmp_path)
    cell = next(c for c in presets.grid("paper", data_root=str(data), model_path=str(ckpt / "{task}"),
                                      runs_root="runs", feature_cache="cache/features",
                                      steps=3, warmup_steps=1, batch_size=4, eval_every=0, eval_size=2, test_size=2,
                                      image_size=32)
                if c.config.task == "caption" and c.config.method == "lora" and not c.config.tune_classifier)
    assert cell.world == "real" and cell.config.lr == 5e-6                        # Table II, otherwise as is
    assert executors.execute([cell], workers=1, progress=False) == []
    assert {"data": snapshot(data), "ckpt": snapshot(ckpt)} == before          # byte for byte
    assert not any(p.name == MARKER for p in tmp_path.rglob(MARKER))
    metrics = json.loads((cell.out_dir / "metrics.json").read_text())
    assert metrics["start"]["path"] == str(ckpt / "caption")                    # the run used them
    assert cell.config.data_ratio == 0.01 and metrics["n_train"] == 5  # ⌈1 % of 7 train+restval images⌉ × 5
    assert json.loads((cell.out_dir / "config.json").read_text())["data_root"] == str(data)


def test_the_paper_preset_is_the_real_world(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cells = presets.grid("paper")
    assert {c.world for c in cells} == {"real"}
    assert {c.config.model_path for c in cells} == {"checkpoints/blip-base-pretrained/{task}"}  # convert-blip's
    assert {c.config.data_root for c in cells} == {"data/coco"}
    assert assets.prepare("real").model_path == "checkpoints/blip-base-pretrained/{task}"
    assert list(tmp_path.iterdir()) == []                                      # `real` prepares nothing


def test_a_smoke_study_leaves_the_embedded_assets_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stand_in = assets.World("embedded", TINY_WORLD, dict(steps=3, batch_size=8, zero_shot_eval=0, spec=SPEC),
                            "data/shapes", "checkpoints/embedded")             # seconds, where the real ones live
    assets.prepare(stand_in, progress=False)
    before = {p: snapshot(tmp_path / p) for p in ("data/shapes", "checkpoints/embedded")}
    assert any(k.endswith("world.json") for k in before["data/shapes"])
    assert any(k.endswith("card.json") for k in before["checkpoints/embedded"])
    cli.main(["study", "--preset", "smoke", "--methods", "lora", "--workers", "1"])
    out = capsys.readouterr().out
    assert "world smoke: data data/smoke, model checkpoints/smoke/{task}" in out
    assert {p: snapshot(tmp_path / p) for p in ("data/shapes", "checkpoints/embedded")} == before
    runs = list((tmp_path / "runs" / "smoke").rglob("metrics.json"))
    assert runs and all(json.loads(r.read_text())["start"]["path"] == "checkpoints/smoke/caption" for r in runs)
    # what it said first: what exists and what it will make; then its stages, numbered in the order they happen
    assert "world smoke: data data/smoke — to write; model checkpoints/smoke — to pre-train (20 steps)" in out
    assert "runs: 1 in the grid — 0 complete, 1 to run" in out and "estimate: about" in out
    stages = [out.index(f"[{i}/4] ") for i in (1, 2, 3, 4)]
    assert stages == sorted(stages) and stages[0] < out.index("world smoke: data data/smoke, model") < stages[1]
    # its page, named by the part of the grid it ran (`--methods lora`): a wiring check, said so, nothing judged
    report = tmp_path / "reports" / "smoke-methods-lora"
    page, claims = (report / "index.html").read_text(), (report / "claims.md").read_text()
    assert "Wiring check — its numbers mean nothing" in page
    assert not any(w in text for w in ("supported", "inconclusive") for text in (page, claims))
    assert "nan" not in claims                                      # an estimate that is not there reads n/a
    assert not (tmp_path / "reports" / "smoke").exists()           # the whole grid's report: not written over
    # a run folder beside the part's that is no cell of it (another seed's) stays out of the part's report
    other = shutil.copytree(runs[0].parent, runs[0].parent.with_name(runs[0].parent.name + "-other"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"seed": config["seed"] + 7}))
    cli.main(["study", "--preset", "smoke", "--methods", "lora", "--workers", "1"])
    assert "0 to run" in capsys.readouterr().out
    assert (report / "runs.csv").read_text().count("\n") == 2      # the header and the part's one run


# ---------------------------------------------------------------------------------------------------------
# The rule behind it: write only into folders that are empty or the project's own, of the same config
def test_own_takes_empty_folders_and_its_own(tmp_path):
    assert own(tmp_path / "new", "world", {"seed": 1}, "done.json") is False          # created, marked
    assert json.loads((tmp_path / "new" / MARKER).read_text())["config"] == {"seed": 1}
    assert own(tmp_path / "new", "world", {"seed": 1}, "done.json") is False          # unfinished: redo it
    (tmp_path / "new" / "done.json").write_text("{}")
    assert own(tmp_path / "new", "world", {"seed": 1}, "done.json") is True           # complete: cached


@pytest.mark.parametrize("setup,match", [
    (lambda d: (d / "dataset_coco.json").write_text("{}"), "not empty and was not written by vlpeft"),
    (lambda d: own(d, "world", {"seed": 2}, "done.json"), r"holds a world of another configuration"),
    (lambda d: own(d, "pre-trained model", {"seed": 1}, "done.json"), r"holds a pre-trained model"),
])
def test_own_refuses_anything_else(tmp_path, setup, match):
    d = tmp_path / "target"
    d.mkdir()
    setup(d)
    before = snapshot(d)
    with pytest.raises(AssetError, match=match) as e:
        own(d, "world", {"seed": 1}, "done.json")
    assert str(d) in str(e.value)
    assert snapshot(d) == before


def test_a_refusal_names_the_fields_that_differ(tmp_path):
    """A pre-trained model of another configuration used to be refused with two JSON dumps of its whole config;
    the refusal names the differing fields, nested ones by dotted name, as a run folder's does."""
    there = PretrainConfig(data_root="data/smoke", out=str(tmp_path / "m"), steps=20, spec=SPEC).as_dict()
    own(tmp_path / "m", "pre-trained model", there, "card.json")
    asked = there | {"data_root": "data/nope", "spec": there["spec"] | {"hidden": 64}}
    with pytest.raises(AssetError) as e:
        own(tmp_path / "m", "pre-trained model", asked, "card.json")
    message = str(e.value)
    assert "data_root: 'data/smoke' here, 'data/nope' asked" in message
    assert f"spec.hidden: {SPEC.hidden} here, 64 asked" in message
    assert "{" not in message and "steps" not in message and len(message.splitlines()) == 1, message


def test_pretraining_refuses_a_real_checkpoint_folder(tmp_path, models, tiny_world):
    ckpt = shutil.copytree(models, tmp_path / "blip")
    before = snapshot(ckpt)
    from vlpeft.worlds.pretrain import pretrain
    with pytest.raises(AssetError, match="not written by vlpeft"):
        pretrain(PretrainConfig(data_root=str(tiny_world), out=str(ckpt), steps=2, spec=SPEC), progress=False)
    assert snapshot(ckpt) == before


def test_a_world_refuses_a_real_data_root(tmp_path):
    data = tmp_path / "coco"
    write_real_layout(data)
    before = snapshot(data)
    with pytest.raises(AssetError, match="not written by vlpeft"):
        assets.prepare("smoke", data_root=str(data), model_root=str(tmp_path / "m"), progress=False)
    assert snapshot(data) == before
