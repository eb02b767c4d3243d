"""Run folders you can trust: one config per folder, one owner at a time, bad input found early and reported in
one or two lines — with the exit code, and nothing changed on disk. One table of cases through the real CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from helpers import ONE_DRAW_STUDIES, cli_call, smoke_config, snapshot
from vlpeft import cli
from vlpeft.train import run


def argv(cfg) -> list[str]:
    return ["train", *cli.to_args(cfg)]


def call(args, capsys) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, stderr)."""
    code, _, err = cli_call(args, capsys)
    return code, err


@pytest.fixture
def world_copy(tiny_world, tmp_path):
    """A private copy of the tiny world that a case may damage."""
    return shutil.copytree(tiny_world, tmp_path / "world")


def first_image(world, split):
    entry = next(e for e in json.loads((world / "annotations" / "dataset_coco.json").read_text())["images"]
                 if e["split"] == split)
    return world / "images" / entry["filepath"] / entry["filename"]


def vqa_annotations(world):
    return world / "annotations" / "v2_mscoco_train2014_annotations.json"


def three_answers(world):
    path = vqa_annotations(world)
    d = json.loads(path.read_text())
    d["annotations"][0]["answers"] = d["annotations"][0]["answers"][:3]
    path.write_text(json.dumps(d))


def no_answers_on_a_test_question(world):
    karpathy = json.loads((world / "annotations" / "dataset_coco.json").read_text())
    index = {e["cocoid"]: e["split"] for e in karpathy["images"]}
    path = world / "annotations" / "v2_mscoco_val2014_annotations.json"
    d = json.loads(path.read_text())
    next(a for a in d["annotations"] if index[a["image_id"]] == "test")["answers"] = []
    path.write_text(json.dumps(d))


def broken_model(models, tmp_path, how):
    root = shutil.copytree(models, tmp_path / "model")
    for task in ("caption", "vqa"):
        if how == "corrupt config":
            (root / task / "config.json").write_text('{"model_type": "blip", ')
        elif how == "no config":
            (root / task / "config.json").unlink()
        elif how == "truncated weights":
            weights = root / task / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:1000])
    return root


# (id, RunConfig changes, damage(world, models, tmp_path) → changes, message fragment, exit code)
CASES = [
    ("lr nan", dict(lr=float("nan")), None, "lr must be a finite positive number", 2),
    ("eval size negative", dict(eval_size=-1), None, "eval_size must be 0 or more", 2),
    ("unknown device", dict(device="tpu"), None, "unknown device 'tpu'", 2),
    ("size for full", dict(method="full", size=8), None, "full fine-tuning has no size", 2),
    ("bogus fault", dict(fault="explode:3"), None, "fault must be '' or one of nan:STEP", 2),
    ("unknown method", dict(method="bitfit"), None, "invalid choice: 'bitfit' (choose from 'full'", 2),
    ("ratio", dict(data_ratio=1.5), None, "data ratio must be in (0, 1]", 2),
    ("warm-up longer than run", dict(steps=4, warmup_steps=8), None, "warm-up (8 steps) is not shorter", 2),
    ("no beams", dict(task="vqa", vqa_beams=0), None, "vqa_beams must be positive, got 0", 2),
    ("least above most", dict(caption_min_tokens=40), None,
     "caption_min_tokens (40) is more than caption_max_tokens (30)", 2),
    ("missing train image", dict(), lambda w, m, t: first_image(w, "train").unlink(), "image not found", 1),
    ("missing test image", dict(), lambda w, m, t: first_image(w, "test").unlink(), "image not found", 1),
    ("3 answers", dict(task="vqa"), lambda w, m, t: three_answers(w), "has 3 answers; VQAv2 annotations have "
                                                                      "exactly 10", 1),
    ("test question without answers", dict(task="vqa"), lambda w, m, t: no_answers_on_a_test_question(w),
     "has 0 answers", 1),
    ("corrupt model config", dict(),
     lambda w, m, t: {"model_path": str(broken_model(m, t, "corrupt config") / "{task}")},
     "config.json: not valid JSON", 1),
    ("no model config", dict(), lambda w, m, t: {"model_path": str(broken_model(m, t, "no config") / "{task}")},
     "no config.json — not a transformers checkpoint directory", 1),
    ("truncated weights", dict(),
     lambda w, m, t: {"model_path": str(broken_model(m, t, "truncated weights") / "{task}")},
     "model.safetensors: the weights file is corrupt or truncated", 1),
    ("vqa-finetuned start", dict(task="vqa", model_path="Salesforce/blip-vqa-base"), None,
     "refusing to start VQA from 'Salesforce/blip-vqa-base'", 2),
]


@pytest.mark.parametrize("changes,damage,message,code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(models, world_copy, tmp_path, capsys, changes, damage,
                                                        message, code):
    if damage is not None:
        changes = changes | (damage(world_copy, models, tmp_path) or {})
    if changes.get("method") == "full" and "size" not in changes:
        changes["size"] = 0
    cfg = smoke_config(models, world_copy, tmp_path / "run", **(dict(task="caption", method="lora", size=2) | changes))
    before = snapshot(tmp_path)
    got, err = call(argv(cfg), capsys)
    assert got == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    if message is not None:
        assert message in err, err
    if "image" in str(message):
        assert "COCO_" in err  # the file is named
    assert snapshot(tmp_path) == before  # nothing written, not even the run folder
    assert not (tmp_path / "run").exists()


def test_a_corrupt_image_is_named_before_training(models, world_copy, tmp_path, capsys):
    image = first_image(world_copy, "train")
    image.write_bytes(b"garbage")
    cfg = smoke_config(models, world_copy, tmp_path / "run", task="caption", method="lora", size=2)
    code, err = call(argv(cfg) + ["--no-cache-images", "--num-workers", "1"], capsys)
    # every image is checked for existence; a sample is decoded up front and the rest when first used, so a
    # corrupt file is named either way — before the run folder exists, or as the step's error
    assert code == 1 and "corrupt or truncated image" in err and image.name in err and "Traceback" not in err


def test_debug_shows_the_traceback(models, world_copy, tmp_path, capsys):
    cfg = smoke_config(models, world_copy, tmp_path / "run", lr=float("nan"))
    with pytest.raises(Exception, match="lr must be a finite"):
        cli.main(["--debug", *argv(cfg)])


# ---------------------------------------------------------------------------------------------------------
# One config per folder
@pytest.mark.parametrize("change,field", [(dict(lr=5e-3), "lr"), (dict(data_ratio=0.5), "data_ratio"),
                                          (dict(task="vqa", method="prompt", size=4), "method"),
                                          (dict(caption_beams=1), "caption_beams")])
def test_a_folder_refuses_another_config(models, tiny_world, tmp_path, capsys, change, field):
    first = smoke_config(models, tiny_world, tmp_path / "run", task="caption", method="lora", size=2)
    run(first, progress=False)
    before = snapshot(tmp_path / "run")
    code, err = call(argv(smoke_config(models, tiny_world, tmp_path / "run", **(vars(first) | change))), capsys)
    assert code == 1 and f"{field}:" in err and "holds a run of another configuration" in err
    assert "--out-dir" in err and "--overwrite" in err
    assert snapshot(tmp_path / "run") == before
    # the way out named in the message works: --overwrite discards the other run and trains this config
    code, _ = call(argv(smoke_config(models, tiny_world, tmp_path / "run", **(vars(first) | change))) + ["--overwrite"],
                   capsys)
    assert code == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())[field] == change[field]


def test_a_killed_run_refuses_to_resume_under_another_lr(models, tiny_world, tmp_path, capsys):
    cfg = smoke_config(models, tiny_world, tmp_path / "run", task="vqa", method="lora", size=2, epochs=3,
                       fault="kill:3")
    proc = subprocess.run([sys.executable, "-m", "vlpeft.cli", *argv(cfg)], capture_output=True, text=True)
    assert proc.returncode == -9 and (tmp_path / "run" / "checkpoint" / "state.json").exists()
    before = snapshot(tmp_path / "run")
    code, err = call(argv(smoke_config(models, tiny_world, tmp_path / "run", **(vars(cfg) | dict(lr=2e-3, fault="")))),
                     capsys)
    assert code == 1 and "lr: 0.001 here, 0.002 asked" in err
    assert snapshot(tmp_path / "run") == before  # not resumed at the old LR, config.json not rewritten


def test_provenance_is_recorded(models, tiny_world, tmp_path):
    m = run(smoke_config(models, tiny_world, tmp_path / "run", task="caption", method="lora", size=2), progress=False)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())["runs"][0]
    for key in ("vlpeft", "git_commit", "torch", "transformers", "peft"):
        assert key in prov and key in m["provenance"]
    assert prov["torch"] and prov["transformers"] and prov["peft"]


# ---------------------------------------------------------------------------------------------------------
# One owner at a time
def hold(path, name):
    """Another process holding `path/name` until killed."""
    code = (f"import time; from vlpeft.io import Owner; owner = Owner({str(path)!r}, {name!r}).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_processes_never_train_one_folder(models, tiny_world, tmp_path, capsys):
    cfg = smoke_config(models, tiny_world, tmp_path / "run", task="caption", method="lora", size=2)
    owner = hold(tmp_path / "run", "run.lock")
    try:
        before = snapshot(tmp_path / "run")
        code, err = call(argv(cfg), capsys)
        assert code == 1 and "being trained by pid" in err and str(owner.pid) in err
        assert snapshot(tmp_path / "run") == before  # the second one trained nothing
    finally:
        owner.kill()
        owner.wait()
    assert run(cfg, progress=False)["status"] == "complete"  # a dead owner's lock is gone with it


def test_a_sweep_skips_a_cell_another_sweep_runs(tmp_path, monkeypatch):
    from vlpeft.study import engine, presets
    monkeypatch.chdir(tmp_path)
    cell = presets.grid("smoke")[0]
    owner = hold(cell.out_dir, "sweep.lock")
    try:
        result = engine.run_cell(cell)
    finally:
        owner.kill()
        owner.wait()
    assert result["status"] == "busy" and "in use by pid" in result["error"]
    assert not (cell.out_dir / "run.ipynb").exists()


def test_ctrl_c_says_how_to_resume(models, tiny_world, tmp_path, capsys):
    cfg = smoke_config(models, tiny_world, tmp_path / "run", task="vqa", method="lora", size=2, epochs=3,
                       fault="interrupt:5")
    code, err = call(argv(cfg), capsys)
    assert code == 130 and "Traceback" not in err
    assert "interrupted at step 5" in err and "run the same command again to resume from step 4" in err
    assert not (tmp_path / "run" / "run.lock.owner").exists()  # released


# ---------------------------------------------------------------------------------------------------------
# Sweeps
def test_a_filter_that_matches_nothing_names_the_valid_values(capsys):
    code, err = call(["sweep", "--preset", "paper", "--methods", "foo", "--dry-run"], capsys)
    assert code == 2 and "no runs with method foo" in err and "lora" in err


def test_sweep_and_study_take_paths(capsys):
    code, _ = call(["sweep", "--preset", "paper", "--data-root", "/mnt/coco", "--model-path", "/ckpt/{task}",
                    "--runs-root", "/scratch/runs", "--methods", "lora", "--dry-run"], capsys)
    assert code == 0
    from vlpeft.study import presets
    cell = presets.grid("paper", data_root="/mnt/coco", model_path="/ckpt/{task}", runs_root="/scratch/runs")[0]
    assert cell.config.data_root == "/mnt/coco" and cell.config.model_path == "/ckpt/{task}"
    assert cell.config.out_dir.startswith("/scratch/runs/paper/")


def test_run_ids_differ_when_results_relevant_fields_differ():
    from vlpeft.study import presets
    a = presets.grid("tiny")[0]
    b = presets.make_cell(a.study, a.world, "runs", **(vars(a.config) | {"lr": a.config.lr * 2}))
    c = presets.make_cell(a.study, a.world, "runs", **(vars(a.config) | {"num_workers": 3, "threads": 1}))
    assert a.out_dir != b.out_dir and a.out_dir == c.out_dir
    ids = [c.run_id for c in presets.grid("paper")]
    assert len(ids) == len(set(ids))


# The committed studies keep their run ids: fields added after them (rundir.LATER_FIELDS) are out of the id at
# their default, which is what those runs did, and in it at any other value
@pytest.mark.parametrize("preset", ["tiny", "dial"])
def test_the_committed_studies_keep_their_run_ids(preset):
    """Every run of a committed study (reports/<preset>/runs.csv, run with the preset's default paths) is a cell of
    today's grid, for the stand-ins it was made from (`presets.design_of`), under the same id."""
    from pathlib import Path

    import pandas as pd

    from vlpeft.study import presets
    runs = pd.read_csv(Path(__file__).resolve().parent.parent / "reports" / preset / "runs.csv")
    committed = {p.rsplit("/", 1)[-1] for p in runs.run_dir}
    assert committed == {c.run_id for c in presets.grid(preset, design=presets.design_of(runs))}


@pytest.mark.parametrize("field,other", [("caption_beams", 5), ("caption_max_tokens", 16), ("caption_min_tokens", 1),
                                         ("vqa_beams", 3), ("vqa_max_tokens", 10), ("vqa_min_tokens", 1),
                                         ("numerics", "native")])
def test_a_later_field_enters_the_id_only_off_its_default(tmp_path, field, other):
    from vlpeft.config import RunConfig
    from vlpeft.rundir import LATER_FIELDS, RunFolder, config_dict, run_hash, run_id
    cfg = RunConfig(task="vqa", vqa_route="mplug")
    before = {k: v for k, v in config_dict(cfg).items() if k not in LATER_FIELDS}   # a config.json of those studies
    assert field in LATER_FIELDS and run_id(cfg).endswith(run_hash(before))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(before))
    assert RunFolder(folder).check(config_dict(cfg)) is False                      # its folder is this config's
    changed = RunConfig(**(vars(cfg) | {field: other}))
    assert run_id(changed) != run_id(cfg)
    with pytest.raises(Exception, match=f"{field}: None here, {other!r} asked"):
        RunFolder(folder).check(config_dict(changed))


def mplug_checkpoints(tmp_path):
    """Checkpoint folders whose config.json names mPLUG's route (as the embedded model's)."""
    for task in ("caption", "vqa"):
        (tmp_path / task).mkdir(parents=True)
        (tmp_path / task / "config.json").write_text(json.dumps({"vqa_route": "mplug"}))
    return {"model_path": str(tmp_path / "{task}")}


# (checkpoints and route asked, caption's and VQA's (beams, most, least)); BLIP: 3 beams, 20 and 5 tokens with the
# 4-token prompt, 10 and 1 with [DEC]; mPLUG: 5 beams, 25 and 8, 10 and 1 (presets.PAPER_DECODING cites them)
PAPER_DECODING_CASES = [
    ("real BLIP", lambda t: {}, (3, 16, 1), (3, 9, 0)),
    ("real BLIP on the mplug route", lambda t: {"vqa_route": "mplug"}, (3, 16, 1), (5, 10, 1)),
    ("mPLUG-recipe checkpoints", mplug_checkpoints, (5, 25, 8), (5, 10, 1)),
    ("mPLUG-recipe checkpoints on the blip route", lambda t: mplug_checkpoints(t) | {"vqa_route": "blip"},
     (5, 25, 8), (3, 9, 0)),
]


@pytest.mark.parametrize("how,caption,vqa", [c[1:] for c in PAPER_DECODING_CASES],
                         ids=[c[0] for c in PAPER_DECODING_CASES])
def test_the_paper_preset_decodes_as_its_family(tmp_path, how, caption, vqa):
    """VQA cells decode as the family of their route, caption cells as their checkpoint's; the embedded presets
    keep their own (3 beams and 30 tokens for captions, greedy answers of at most 6)."""
    from vlpeft.study import presets
    cells = presets.grid("paper", **how(tmp_path))
    got = {(c.config.task, tuple(getattr(c.config, f"{c.config.task}_{f}") for f in ("beams", "max_tokens",
                                                                                         "min_tokens")))
           for c in cells}
    assert got == {("caption", caption), ("vqa", vqa)}
    tiny = {(c.config.caption_beams, c.config.caption_max_tokens, c.config.caption_min_tokens, c.config.vqa_beams,
             c.config.vqa_max_tokens, c.config.vqa_min_tokens) for c in presets.grid("tiny")}
    assert tiny == {(3, 30, 0, 1, 6, 0)}


def test_help_is_fast_and_explains_sizes():
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "vlpeft.cli", "train", "--help"], capture_output=True, text=True)
    elapsed = time.time() - t0
    assert out.returncode == 0 and "lora: rank r" in out.stdout and "prompt: prompt length p" in out.stdout
    assert "caption, vqa" in out.stdout
    mods = subprocess.run([sys.executable, "-c", "import sys, vlpeft.cli; vlpeft.cli.parser(); "
                           "print('torch' in sys.modules, 'transformers' in sys.modules)"],
                          capture_output=True, text=True).stdout.split()
    assert mods == ["False", "False"], "building the CLI must not import torch or transformers"
    print(f"train --help: {elapsed:.2f} s")  # measured in the benchmark, not asserted here


def test_a_dead_kernel_is_reported_with_the_runs_log(tmp_path, monkeypatch):
    from vlpeft.study import engine, presets
    monkeypatch.chdir(tmp_path)
    cell = presets.grid("smoke")[0]
    killed = presets.make_cell(cell.study, cell.world, "runs", **(vars(cell.config) | {"fault": "kill:3"}))
    result = engine.run_cell(killed)
    assert result["status"] == "failed"
    assert "the kernel died" in result["error"] and "Last lines of train.log: step 2: loss" in result["error"]
    assert json.loads((killed.out_dir / "failed.json").read_text())["error"] == result["error"]
    again = engine.run_cell(presets.make_cell(cell.study, cell.world, "runs", **vars(cell.config)))  # resumes
    assert again["status"] == "complete"


def test_compare_needs_two_names(capsys):
    code, err = call(["compare", "reports/dial", "reports/dial", "--labels", "same", "same"], capsys)
    assert code == 2 and "two names" in err and "Traceback" not in err


TINY, TINY_BLIP = ONE_DRAW_STUDIES / "tiny", ONE_DRAW_STUDIES / "tiny-blip"   # tables whose counts are known


@pytest.mark.parametrize("studies,factor,says", [
    ([TINY, "reports/dial"], [], f"not one grid: 53 of its 66 cells only in {TINY}, 65 of 78 only in reports/dial "
                                 f"(values only in {TINY}: task vqa"),
    (["reports/tiny", "reports/tiny"], [], "both record the recipe mplug"),
    (["reports/tiny", "reports/tiny-blip"], ["--factor", "route"], "values only in reports/tiny: recipe mplug"),
    ([TINY, TINY_BLIP], ["--factor", "route"], f"values only in {TINY}: recipe mplug"),
    (["reports/tiny", "reports/tiny-blip"], ["--factor", "draw"], "unknown --factor 'draw'; choose one of recipe"),
])
def test_compare_refuses_what_is_not_one_grid_and_writes_nothing(capsys, tmp_path, studies, factor, says):
    code, err = call(["compare", *map(str, studies), *factor, "--out", str(tmp_path / "X")], capsys)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "X").exists()


def test_a_study_that_mixes_vqa_routes_is_refused():
    from pathlib import Path

    import pandas as pd

    from vlpeft.study import report
    runs = pd.read_csv(Path(__file__).resolve().parent.parent / "reports" / "tiny-blip" / "runs.csv")
    runs["vqa_route"] = ["mplug" if i % 2 else "blip" for i in range(len(runs))]
    with pytest.raises(report.StudyError, match="mixes VQA runs of the routes blip and mplug"):
        report.Study("mixed", "memory", runs, pd.DataFrame(columns=["run_dir"]))
