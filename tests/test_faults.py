"""Faults and bad input, as a new user meets them: one table of cases through the real CLI (world, pretrain,
train, sweep, study, report, convert-blip), each asserting the message, the exit code, no traceback, and that
nothing that existed changed; then the cases that used to give a silently wrong number, and the signals."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import blip_layout, cli_call, original_state_dict, save_pth, smoke_config, snapshot
from vlpeft import cli
from vlpeft.errors import Interrupted, Preempted


def call(args, capsys) -> tuple[int, str]:
    """The CLI in-process: (exit code, stderr)."""
    code, _, err = cli_call(args, capsys)
    return code, err


class Ctx:
    """A private copy of the tiny world and models that a case may damage, and helpers to damage them."""

    def __init__(self, tmp: Path, world: Path, models: Path):
        self.tmp = tmp
        self.world = Path(shutil.copytree(world, tmp / "world"))
        self.models = Path(shutil.copytree(models, tmp / "models"))

    def train(self, **changes) -> list:
        cfg = smoke_config(self.models, self.world, self.tmp / "run",
                           **({"task": "vqa", "method": "lora", "size": 2} | changes))
        return ["train", *cli.to_args(cfg)]

    def own_world(self) -> Path:
        from helpers import TINY_WORLD
        from vlpeft.worlds.shapes import ensure_world
        return ensure_world(self.tmp / "own-world", TINY_WORLD, progress=False)

    def folder(self, name: str) -> Path:
        (self.tmp / name).mkdir(parents=True)
        return self.tmp / name

    def file(self, name="a-file", text="not a folder") -> Path:
        (self.tmp / name).write_text(text)
        return self.tmp / name

    def edit(self, name: str, change) -> None:
        path = self.world / "annotations" / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    def model_copy(self, how) -> Path:
        root = Path(shutil.copytree(self.models, self.tmp / "model2"))
        for task in ("caption", "vqa"):
            how(root / task)
        return root

    def processor(self, order=("[DEC]", "[ENC]")) -> Path:
        from vlpeft.blip.models import build_processor
        d = self.tmp / "processor"
        build_processor(blip_layout("a picture of red".split(), order), 16).save_pretrained(d)
        return d

    def source(self, tokens: int | None = None) -> Path:
        return save_pth(self.tmp / "model_base.pth", original_state_dict(tokens or 11))


def duplicate_first(data):                                   # two Karpathy entries with one cocoid
    data["images"][1]["cocoid"] = data["images"][0]["cocoid"]


def duplicate_question(data):
    data["questions"][1]["question_id"] = data["questions"][0]["question_id"]


def no_captions(data):
    data["images"][0]["sentences"] = []


def bert_config(folder: Path):
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))


def no_tokenizer(folder: Path):
    for f in folder.glob("*"):
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.unlink()


def caption_as_vqa(folder: Path):
    if folder.name == "vqa":
        shutil.rmtree(folder)
        shutil.copytree(folder.parent / "caption", folder)


def damaged_checkpoint(ctx: Ctx, file: str):
    """A run killed after a checkpoint, whose checkpoint file is then cut short."""
    argv = ctx.train(epochs=3, checkpoint_every=2, fault="kill:3")
    proc = subprocess.run([sys.executable, "-m", "vlpeft.cli", *map(str, argv)], capture_output=True, text=True)
    assert proc.returncode == -9
    path = ctx.tmp / "run" / "checkpoint" / file
    path.write_bytes(path.read_bytes()[:64])
    return ctx.train(epochs=3, checkpoint_every=2)


def java_missing(ctx: Ctx, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else "/usr/bin/" + name)
    return ctx.train(task="caption")


def disk_full(ctx: Ctx, monkeypatch):
    from vlpeft import rundir

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.tmp / "run" / "config.json"))
    monkeypatch.setattr(rundir, "write_json", full)
    return ctx.train()


# (id, argv(ctx[, monkeypatch]), exit code, message fragment)
CASES = [
    # world
    ("world: out is a file", lambda c: ["world", "--out", c.file()], 1, "a file stands where vlpeft needs a folder"),
    ("world: foreign folder", lambda c: ["world", "--out", c.models], 1, "not empty and was not written by vlpeft"),
    ("world: another config", lambda c: ["world", "--out", c.own_world(), "--n-train", "30"], 1,
     "holds a world of another configuration"),
    ("world: no training images", lambda c: ["world", "--out", c.tmp / "w", "--n-train", "0"], 2,
     "--n-train must be 1 or more"),
    ("world: consistency", lambda c: ["world", "--out", c.tmp / "w", "--consistency", "1.5"], 2,
     "--consistency must be in [0, 1]"),
    ("world: unwritable", lambda c: ["world", "--out", "/sys/vlpeft-world"], 1, "permission denied: /sys/vlpeft-world"),
    # pretrain
    ("pretrain: no world", lambda c: ["pretrain", "--data-root", c.tmp / "nowhere", "--out", c.tmp / "m"], 2,
     "no annotations/ folder; write the shapes world first"),
    ("pretrain: zero steps", lambda c: ["pretrain", "--data-root", c.world, "--out", c.tmp / "m", "--steps", "0"], 2,
     "--steps must be 1 or more"),
    ("pretrain: lr nan", lambda c: ["pretrain", "--data-root", c.world, "--out", c.tmp / "m", "--lr", "nan"], 2,
     "--lr must be a finite positive number"),
    ("pretrain: foreign out", lambda c: ["pretrain", "--data-root", c.world, "--out", c.models, "--steps", "2"], 1,
     "not empty and was not written by vlpeft"),
    # train: devices and folders
    ("train: cuda without CUDA", lambda c: c.train(device="cuda"), 2, "sees no CUDA device; use --device auto or cpu"),
    ("train: cuda:3", lambda c: c.train(device="cuda:3"), 2, "--device cuda:3"),
    ("train: out dir is a file", lambda c: c.train(out_dir=str(c.file())), 2, "--out-dir"),
    ("train: feature cache is a file", lambda c: c.train(feature_cache=str(c.file("cache-file"))), 2,
     "--feature-cache"),
    ("train: data root is a file", lambda c: c.train(data_root=str(c.file("data-file"))), 2, "has no annotations/"),
    # train: models
    ("train: hub name not cached", lambda c: c.train(model_path="Salesforce/blip-image-captioning-base"), 1,
     "not in the local Hugging Face cache"),
    ("train: not a BLIP config", lambda c: c.train(model_path=str(c.model_copy(bert_config) / "{task}")), 1,
     "model_type 'bert', not a BLIP checkpoint"),
    ("train: no tokenizer files", lambda c: c.train(model_path=str(c.model_copy(no_tokenizer) / "{task}")), 1,
     "processor"),
    ("train: caption checkpoint for VQA", lambda c: c.train(model_path=str(c.model_copy(caption_as_vqa) / "{task}")), 1,
     "no weights for text_encoder.*"),
    # train: data
    ("train: duplicate cocoid", lambda c: (c.edit("dataset_coco.json", duplicate_first), c.train(task="caption"))[1],
     1, "image cocoid"),
    ("train: duplicate question id", lambda c: (c.edit("v2_OpenEnded_mscoco_train2014_questions.json",
                                                        duplicate_question), c.train())[1], 1, "question_id"),
    ("train: image without captions", lambda c: (c.edit("dataset_coco.json", no_captions), c.train(task="caption"))[1],
     1, "has no captions"),
    ("train: Java missing", java_missing, 1, "Java is required for CIDEr"),
    ("train: damaged checkpoint weights", lambda c: damaged_checkpoint(c, "trainable.safetensors"), 1,
     "the checkpoint is damaged"),
    ("train: damaged optimiser state", lambda c: damaged_checkpoint(c, "optim.pt"), 1, "the checkpoint is damaged"),
    ("train: disk full", disk_full, 1, "no space left on the device"),
    # sweep and study
    ("sweep: a ratio not in the grid", lambda c: ["sweep", "--preset", "tiny", "--ratios", "0.7", "--dry-run"], 2,
     "no runs with data_ratio 0.7"),
    ("sweep: runs root is a file", lambda c: ["sweep", "--preset", "smoke", "--runs-root", c.file()], 2,
     "--runs-root"),
    ("sweep: feature cache is a file", lambda c: ["sweep", "--preset", "smoke", "--feature-cache", c.file()], 2,
     "--feature-cache"),
    ("sweep: dial with a data root", lambda c: ["sweep", "--preset", "dial", "--data-root", c.world, "--dry-run"], 2,
     "the dial preset has one world per level"),
    ("sweep: no workers", lambda c: ["sweep", "--preset", "smoke", "--workers", "0"], 2, "must be 1 or more"),
    ("study: no workers", lambda c: ["study", "--preset", "smoke", "--workers", "-1"], 2, "must be 1 or more"),
    ("study: unknown preset", lambda c: ["study", "--preset", "huge"], 2, "invalid choice: 'huge'"),
    ("study: a data root that does not exist (a typo)", lambda c: ["study", "--preset", "smoke", "--data-root",
                                                                   c.tmp / "data" / "nope"], 2, "does not exist"),
    ("train: a method mistyped", lambda c: c.train(method="loRA"), 2, "invalid choice: 'loRA'"),
    # report
    ("report: no such study", lambda c: ["report", "--study", c.tmp / "runs" / "nothing"], 1, "no runs of study"),
    ("report: an empty folder", lambda c: ["report", "--study", c.folder("my-study")], 1,
     "`vlpeft study --preset PRESET --study my-study --runs-root"),
    ("report: not a runs table", lambda c: ["report", "--study", c.file("runs.csv", "a,b\n1,2\n").parent], 1,
     "not a vlpeft runs.csv"),
    ("report: out is a file", lambda c: ["report", "--study", "reports/tiny", "--out", c.file()], 2, "--out"),
    # convert-blip
    ("convert: no source", lambda c: ["convert-blip", c.tmp / "model_base.pth", "--out", c.tmp / "o"], 1,
     "does not exist; download it from"),
    ("convert: not a checkpoint", lambda c: ["convert-blip", c.file("model_base.pth", "garbage"), "--out",
                                             c.tmp / "o", "--processor", c.processor()], 1,
     "cannot read"),
    ("convert: [DEC] and [ENC] swapped", lambda c: ["convert-blip", c.source(), "--out", c.tmp / "o", "--processor",
                                                    c.processor(("[ENC]", "[DEC]")), "--vision-heads", "2",
                                                    "--text-heads", "2"], 1, "BLIP's has [DEC] (bos) at row"),
    ("convert: no [ENC]", lambda c: ["convert-blip", c.source(10), "--out", c.tmp / "o", "--processor",
                                     c.processor(("[DEC]",)), "--vision-heads", "2", "--text-heads", "2"], 1,
     "[ENC] at row none"),
    ("convert: no processor", lambda c: ["convert-blip", c.source(), "--out", c.tmp / "o", "--processor",
                                         c.tmp / "no-processor"], 1, "cannot load a BLIP processor"),
    ("convert: foreign out", lambda c: ["convert-blip", c.source(), "--out", c.models, "--processor",
                                        c.processor()], 1, "is not a conversion made by `vlpeft convert-blip`"),
    ("convert: image size", lambda c: ["convert-blip", c.source(), "--out", c.tmp / "o", "--processor", c.processor(),
                                       "--image-size", "17", "--vision-heads", "2", "--text-heads", "2"], 1,
     "--image-size 17 is not a positive multiple of the patch size"),
]


@pytest.mark.parametrize("make,code,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_fault_is_one_clear_line_and_changes_nothing(tiny_world, models, tmp_path, capsys, monkeypatch, make, code,
                                                     message):
    ctx = Ctx(tmp_path, tiny_world, models)
    argv = make(ctx, monkeypatch) if make.__code__.co_argcount == 2 else make(ctx)
    before = snapshot(tmp_path)
    got, err = call(argv, capsys)
    assert got == code, err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4, err
    after = snapshot(tmp_path)
    kept = {k: v for k, v in before.items() if not k.endswith((".lock", ".owner"))}  # a dead holder's lock info goes
    assert {k: v for k, v in after.items() if k in kept} == kept         # nothing that existed changed


def test_there_are_forty_cases_across_every_command():
    commands = {c[0].split(":")[0] for c in CASES}
    assert len(CASES) >= 40 and commands >= {"world", "pretrain", "train", "sweep", "study", "report", "convert"}


@pytest.mark.parametrize("folder", ["my-study", "runs/smoke", "elsewhere/tiny"])
def test_the_advice_for_an_empty_study_folder_is_a_command_that_parses(tmp_path, capsys, folder):
    """It used to suggest `--preset <the folder's name>`, which argparse then refused."""
    import re
    import shlex
    (tmp_path / folder).mkdir(parents=True)
    code, err = call(["report", "--study", tmp_path / folder], capsys)
    assert code == 1
    advice = re.search(r"`vlpeft (study [^`]+)`", err).group(1).replace("PRESET", "smoke")
    args = cli.parser().parse_args(shlex.split(advice))                        # valid: no SystemExit
    study = args.study or args.preset
    assert Path(args.runs_root) / study == tmp_path / folder                   # and it fills that very folder


def test_a_mistyped_data_root_leaves_no_folder_behind(tmp_path, capsys, monkeypatch):
    """`--data-root data/nope` used to write a new shapes world there and then fail on the pre-trained model."""
    monkeypatch.chdir(tmp_path)
    for command in ("study", "sweep"):
        code, err = call([command, "--preset", "smoke", "--data-root", "data/nope"], capsys)
        assert code == 2 and "--data-root data/nope does not exist" in err, err
    assert list(tmp_path.iterdir()) == []
    cli.main(["sweep", "--preset", "smoke", "--data-root", "data/nope", "--dry-run"])   # a dry run only says so
    assert "data data/nope — to write" in capsys.readouterr().out and list(tmp_path.iterdir()) == []


def test_a_mistyped_name_is_refused_before_torch_is_imported():
    """The argument checks run before the heavy imports (it used to take 4.7 s to refuse `--method loRA`)."""
    script = ("import sys\nfrom vlpeft import cli\n"
              "for argv in (['train', '--method', 'loRA'], ['study', '--preset', 'smoke', '--methods', 'loRA'], "
              "['sweep', '--preset', 'tiny', '--tasks', 'VQA']):\n"
              "    try:\n        cli.main(argv)\n    except SystemExit as e:\n        print(e.code)\n"
              "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.split() == ["2", "2", "2", "False", "False"], out.stderr


# ---------------------------------------------------------------------------------------------------------
# What used to be a silently wrong number
def test_a_corrupt_feature_cache_is_recomputed_never_read(models, tiny_world, tmp_path, capsys):
    """Every byte of the cache's .bin flipped: the run says so, recomputes it, and ends with the same metrics as a
    run on a sound cache (it used to train on the garbage)."""
    from vlpeft.train import run
    cache = tmp_path / "cache"
    first = run(smoke_config(models, tiny_world, tmp_path / "a", method="lora", size=2, feature_cache=str(cache)),
                progress=False)
    (binary,) = cache.rglob("features-*.bin")
    binary.write_bytes(bytes(b ^ 0xFF for b in binary.read_bytes()))
    capsys.readouterr()
    second = run(smoke_config(models, tiny_world, tmp_path / "b", method="lora", size=2, feature_cache=str(cache)),
                 progress=False)
    err = capsys.readouterr().err
    assert "do not match their checksums" in err and "recomputing it" in err
    assert (second["best_val"], second["test"]) == (first["best_val"], first["test"])
    binary.write_bytes(binary.read_bytes()[:100])                      # and a short file
    third = run(smoke_config(models, tiny_world, tmp_path / "c", method="lora", size=2, feature_cache=str(cache)),
                progress=False)
    assert "truncated or overwritten" in capsys.readouterr().err and third["test"] == first["test"]


def test_a_caption_checkpoint_is_never_a_vqa_start(models, tmp_path):
    """It used to train a random question encoder and report accuracy 0.0."""
    from vlpeft.blip.models import load_model
    from vlpeft.errors import ModelError
    with pytest.raises(ModelError, match=r"no weights for text_encoder\.\*"):
        load_model("vqa", models / "caption")


def test_two_images_with_one_id_are_refused(tiny_world, tmp_path):
    """They used to be merged: 4 validation images, 3 scored."""
    from vlpeft.data import load_karpathy
    from vlpeft.errors import DataError
    root = Path(shutil.copytree(tiny_world, tmp_path / "w"))
    path = root / "annotations" / "dataset_coco.json"
    data = json.loads(path.read_text())
    duplicate_first(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image cocoid \d+ appears 2 times"):
        load_karpathy(path, root / "images", "val")


def test_a_tokenizer_at_other_rows_is_refused(models, tmp_path):
    """A processor whose [DEC] is not the model's bos row (it used to load and train on the wrong rows)."""
    from vlpeft.blip.models import build_processor, load_processor
    from vlpeft.errors import ModelError
    from vlpeft.worlds import shapes
    root = Path(shutil.copytree(models, tmp_path / "m"))
    build_processor(blip_layout(shapes.vocabulary()), 16).save_pretrained(root / "vqa")   # [DEC] last, not row 5
    with pytest.raises(ModelError, match="the tokenizer does not match the model"):
        load_processor(root / "vqa")


# ---------------------------------------------------------------------------------------------------------
# Signals: a scheduler's SIGTERM checkpoints the step it is on; Ctrl-C says what happens next
def test_sigterm_checkpoints_and_the_run_resumes_to_the_same_result(models, tiny_world, tmp_path):
    base = dict(task="vqa", method="lora", size=2, epochs=3, checkpoint_every=0)
    argv = ["train", *cli.to_args(smoke_config(models, tiny_world, tmp_path / "run", fault="term:4", **base))]
    proc = subprocess.run([sys.executable, "-m", "vlpeft.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 143, proc.stderr
    assert "SIGTERM at step 5" in proc.stderr and "checkpoint is saved in" in proc.stderr, proc.stderr
    assert "run the same command again" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "checkpoint" / "state.json").exists()
    from vlpeft.train import run
    resumed = run(smoke_config(models, tiny_world, tmp_path / "run", **base), progress=False)
    whole = run(smoke_config(models, tiny_world, tmp_path / "whole", **base), progress=False)
    keys = ("best_val", "test", "steps")
    assert [resumed[k] for k in keys] == [whole[k] for k in keys]


def test_ctrl_c_in_pretraining_says_where_it_resumes(tiny_world, tmp_path, capsys, monkeypatch):
    from vlpeft.worlds import pretrain as pt
    monkeypatch.setattr(pt, "SAVE_EVERY", 2)
    monkeypatch.setattr(pt.Objectives, "__call__", stopping(pt.Objectives.__call__, 3, "ctrl-c"))
    code, err = call(["pretrain", "--data-root", tiny_world, "--out", tmp_path / "m", "--steps", "5",
                      "--batch-size", "4", "--zero-shot-eval", "0"], capsys)
    assert code == 130 and "\nvlpeft pretrain: error: pre-training interrupted" in err, err   # on its own line
    assert "interrupted at step 2 of 5; run the same command again: it resumes from step 2" in err, err


# ---------------------------------------------------------------------------------------------------------
# A stopped pre-training resumes where it stopped, to the uninterrupted weights bit for bit
def stopping(objectives, at: int, how: str):
    """Objectives.__call__ that stops the pre-training during its `at`-th step: as Ctrl-C, a scheduler's SIGTERM (read
    after the step), or a crash (a killed process: nothing saved then)."""
    calls = {"n": 0}

    def call_(self, *a):
        calls["n"] += 1
        if calls["n"] == at:
            if how == "ctrl-c":
                raise KeyboardInterrupt
            if how == "crash":
                raise MemoryError("killed")
            os.kill(os.getpid(), signal.SIGTERM)
        return objectives(self, *a)
    return call_


# (how it stops, the pre-training's steps, in which step it stops, the step it resumes at, what the stop says); a
# resume point every 3 steps. 203 steps: the loss curve's window is 2 steps, and step 99's point is in the middle of one
STOPS = [
    ("ctrl-c", 5, 5, 3, "interrupted at step 4 of 5; run the same command again: it resumes from step 3"),
    ("ctrl-c before a resume point", 5, 3, None, "interrupted at step 2 of 5; run the same command again: it starts "
                                                 "over (no resume point yet)"),
    ("sigterm", 5, 2, 2, "stopped by SIGTERM at step 2 of 5 (saved)"),
    ("crash", 5, 5, 3, "killed"),
    ("ctrl-c in a loss window", 203, 101, 99, "interrupted at step 100 of 203; run the same command again: it resumes "
                                              "from step 99"),
    ("another code's resume point", 5, 5, None, "another state at its step 3; starting over"),
]


@pytest.mark.parametrize("how, steps, at, resumes_at, says", STOPS, ids=[s[0] for s in STOPS])
def test_a_stopped_pretraining_resumes_to_the_uninterrupted_weights(how, steps, at, resumes_at, says, tiny_world,
                                                                    tmp_path, monkeypatch, capsys):
    from helpers import SPEC
    from vlpeft.config import PretrainConfig
    from vlpeft.worlds import pretrain as pt
    monkeypatch.setattr(pt, "SAVE_EVERY", 3)
    config = dict(data_root=str(tiny_world), steps=steps, batch_size=4, warmup=2, zero_shot_eval=0, spec=SPEC)
    whole = pt.pretrain(PretrainConfig(out=str(tmp_path / "whole"), **config), progress=False)
    real, out = pt.Objectives.__call__, tmp_path / "stopped"
    other = how.startswith("another")
    with monkeypatch.context() as m:
        m.setattr(pt.Objectives, "__call__", stopping(real, at, "ctrl-c" if other else how.split()[0]))
        with pytest.raises((Interrupted, Preempted, MemoryError)) as stop:
            pt.pretrain(PretrainConfig(out=str(out), **config), progress=False)
    if other:   # a resume point this code's batches do not reach: the generator's state differs
        point = torch.load(out / pt.RESUME, weights_only=False)
        torch.save(point | {"generator": torch.Generator().manual_seed(99).get_state()}, out / pt.RESUME)
    else:
        assert says in str(stop.value)
    assert not (out / "card.json").exists() and (out / pt.RESUME).exists() == (resumes_at is not None or other)
    pt.pretrain(PretrainConfig(out=str(out), **config), progress=False)
    card, reference = (json.loads((folder / "card.json").read_text()) for folder in (out, whole))
    assert card["weights_sha256"] == reference["weights_sha256"] and card["loss_curve"] == reference["loss_curve"]
    assert [seg["from_step"] for seg in card["segments"]] == [0] + ([resumes_at] if resumes_at else [])
    assert [seg["from_step"] for seg in reference["segments"]] == [0]
    assert all(seg["git_commit"] == reference["segments"][0]["git_commit"] for seg in card["segments"])
    assert not (out / pt.RESUME).exists()
    if other:
        assert says in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_says_so(capsys, monkeypatch):
    from vlpeft import cli
    monkeypatch.setattr(cli, "print_grid", lambda cells: 1 / 0)
    code, err = call(["sweep", "--preset", "smoke", "--dry-run"], capsys)
    assert code == 1 and "ZeroDivisionError" in err and "Traceback" in err and "this is a bug in vlpeft" in err
