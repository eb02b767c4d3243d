"""Real data as researchers have it: Karpathy's split file with the official VQAv2 files, or BLIP's/LAVIS's
annotation files, with the images wherever COCO was unpacked — one record format and Table I's splits from both,
`vlpeft data check` counting them, and a `paper` cell that reads them and writes nothing there."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import smoke_config, snapshot, write_real_layout
from vlpeft import cli
from vlpeft.data import Paths, load_captions, load_vqa
from vlpeft.datacheck import check
from vlpeft.errors import DataError
from vlpeft.io import MARKER
from vlpeft.layouts import detect
from vlpeft.study import executors, presets

COUNTS = {"train": 5, "restval": 2, "val": 2, "test": 3}
QPI = 2  # questions per image in the miniature


def move_images(root: Path, image_root: Path) -> Path:
    """COCO's folders somewhere else, as they are unpacked: <image root>/{train2014,val2014}."""
    shutil.move(str(root / "images"), str(image_root))
    return image_root


def write_blip_layout(karpathy_root: Path, root: Path) -> Path:
    """The same miniature in BLIP's/LAVIS's files, written by hand from their documented fields: one train entry
    per caption {image, caption, image_id}, one val/test entry per image {image, caption: [...]}, and vqa_train /
    vqa_val as lists of {question_id, question, answer: ten answers, image, dataset}."""
    ann = karpathy_root / "annotations"
    images = json.loads((ann / "dataset_coco.json").read_text())["images"]
    (root / "annotations").mkdir(parents=True)
    split_of = {"train": "train", "restval": "train", "val": "val", "test": "test"}
    files = {"train": [], "val": [], "test": []}
    for e in images:
        path = f"{e['filepath']}/{e['filename']}"
        caps = [s["raw"] for s in e["sentences"]]
        if split_of[e["split"]] == "train":
            files["train"] += [{"image": path, "caption": c, "image_id": f"coco_{e['cocoid']}"} for c in caps]
        else:
            files[split_of[e["split"]]].append({"image": path, "caption": caps})
    for split, entries in files.items():
        (root / "annotations" / f"coco_karpathy_{split}.json").write_text(json.dumps(entries))
    name_of = {e["cocoid"]: f"{e['filepath']}/{e['filename']}" for e in images}
    for subset, out in (("train2014", "vqa_train.json"), ("val2014", "vqa_val.json")):
        qs = json.loads((ann / f"v2_OpenEnded_mscoco_{subset}_questions.json").read_text())["questions"]
        an = {a["question_id"]: a for a in json.loads((ann / f"v2_mscoco_{subset}_annotations.json").read_text())[
            "annotations"]}
        (root / "annotations" / out).write_text(json.dumps([
            {"question_id": q["question_id"], "question": q["question"], "image": name_of[q["image_id"]],
             "answer": [a["answer"] for a in an[q["question_id"]]["answers"]], "dataset": "vqa"} for q in qs]))
    return root


@pytest.fixture
def karpathy(tmp_path):
    root = tmp_path / "coco"
    write_real_layout(root, COUNTS, questions_per_image=QPI)
    return root


@pytest.fixture
def blip(karpathy, tmp_path):
    """BLIP's layout with its images under a separate image root."""
    root = write_blip_layout(karpathy, tmp_path / "lavis")
    return root, move_images(karpathy, tmp_path / "unpacked")


def records(paths: Paths) -> dict:
    out = {}
    for split in ("train", "val", "test"):
        out[f"caption {split}"] = sorted((c.image_id, c.image.name, c.captions) for c in load_captions(paths, split))
        out[f"vqa {split}"] = sorted((q.question_id, q.image_id, q.image.name, q.question, q.answers, q.answer)
                                     for q in load_vqa(paths, split))
    return out


def test_both_layouts_give_the_same_records_and_splits(karpathy, blip):
    want = records(Paths(karpathy, blip[1]))              # the images moved with the BLIP fixture
    assert records(Paths(*blip)) == want
    assert detect(karpathy / "annotations") == "karpathy" and detect(blip[0] / "annotations") == "blip"
    # Table I's rule on both: train + restval images for training, one entry per image
    assert len(want["caption train"]) == COUNTS["train"] + COUNTS["restval"]
    assert len(want["vqa train"]) == QPI * (COUNTS["train"] + COUNTS["restval"])
    assert all(Path(blip[1]) in q_path.parents for q_path in (c.image for c in load_captions(Paths(*blip), "test")))


@pytest.mark.parametrize("layout", ["karpathy", "blip"])
def test_data_check_prints_table_one_as_the_root_gives_it(karpathy, blip, capsys, layout):
    root, image_root = (karpathy, blip[1]) if layout == "karpathy" else blip
    found = check(root, image_root, decode=4, progress=False)
    assert found.ok and found.layout == layout, found
    rows = {(r["task"], r["split"]): (r["images"], r["examples"]) for r in found.table}
    n = {k: v for k, v in COUNTS.items()}
    assert rows == {("caption", "train"): (n["train"] + n["restval"], 5 * (n["train"] + n["restval"])),
                    ("caption", "val"): (n["val"], 5 * n["val"]), ("caption", "test"): (n["test"], 5 * n["test"]),
                    ("vqa", "train"): (n["train"] + n["restval"], QPI * (n["train"] + n["restval"])),
                    ("vqa", "val"): (n["val"], QPI * n["val"]), ("vqa", "test"): (n["test"], QPI * n["test"])}
    assert found.n_images == found.n_present == sum(COUNTS.values()) and found.n_decoded == 4
    code = None
    try:
        cli.main(["data", "check", "--data-root", str(root), "--image-root", str(image_root), "--decode", "2"])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    assert code is None and f"layout {layout}" in out.out
    assert "605.1K QA" in out.out and "→ a study can start" in out.out
    assert "image files" in out.err  # the progress bar over every image file


BROKEN = [  # (id, damage(karpathy root, blip root, image root), layout, problem)
    ("missing image", lambda k, b, i: next(i.rglob("*.jpg")).unlink(), "blip", "image files are missing"),
    ("corrupt image", lambda k, b, i: next(i.rglob("*.jpg")).write_bytes(b"not a jpeg"), "blip",
     "corrupt or truncated image"),
    ("nine answers", lambda k, b, i: edit(b / "annotations" / "vqa_train.json",
                                          lambda d: d[0].update(answer=d[0]["answer"][:9])), "blip", "has 9 answers"),
    ("duplicate question", lambda k, b, i: edit(b / "annotations" / "vqa_val.json",
                                                lambda d: d.append(dict(d[0]))), "blip", "question_id"),
    ("no test file", lambda k, b, i: (b / "annotations" / "coco_karpathy_test.json").unlink(), "blip",
     "the blip layout is missing coco_karpathy_test.json"),
    ("no layout", lambda k, b, i: [p.unlink() for p in (b / "annotations").glob("coco_karpathy_*")], "blip",
     "no annotation layout vlpeft knows"),
    ("VQA file not a list", lambda k, b, i: (b / "annotations" / "vqa_val.json").write_text('{"questions": []}'),
     "blip", "expected a list of questions (BLIP's vqa_val.json)"),
    ("no VQA val file", lambda k, b, i: (k / "annotations" / "v2_mscoco_val2014_annotations.json").unlink(),
     "karpathy", "the karpathy layout is missing v2_mscoco_val2014_annotations.json"),
]


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage,layout,problem", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_data_check_refuses_a_broken_root_with_a_clear_line(karpathy, blip, capsys, damage, layout, problem):
    damage(karpathy, blip[0], blip[1])
    root = karpathy if layout == "karpathy" else blip[0]
    found = check(root, blip[1], decode=50, progress=False)
    assert not found.ok and any(problem in p for p in found.problems), found
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "check", "--data-root", str(root), "--image-root", str(blip[1])])
    assert e.value.code == 1 and problem in capsys.readouterr().out


def test_a_paper_cell_runs_on_the_blip_layout_with_images_elsewhere_and_writes_nothing_there(blip, models, tmp_path,
                                                                                         monkeypatch):
    root, image_root = blip
    ckpt = Path(shutil.copytree(models, tmp_path / "blip-ckpt"))
    before = {"data": snapshot(root), "images": snapshot(image_root), "ckpt": snapshot(ckpt)}
    monkeypatch.chdir(tmp_path)
    cell = next(c for c in presets.grid("paper", data_root=str(root), image_root=str(image_root),
                                      model_path=str(ckpt / "{task}"), runs_root="runs", feature_cache="cache/features",
                                      epochs=1, warmup_per_ratio=1, batch_size=4, eval_every=0, eval_size=2,
                                      test_size=2, image_size=32)
                if c.config.task == "vqa" and c.config.method == "prompt" and c.config.data_ratio == 1.0
                and c.config.size == 2 and not c.config.tune_classifier)
    assert executors.execute([cell], workers=1, progress=False) == []
    assert {"data": snapshot(root), "images": snapshot(image_root), "ckpt": snapshot(ckpt)} == before
    assert not any(tmp_path.rglob(MARKER))
    metrics = json.loads((cell.out_dir / "metrics.json").read_text())
    assert metrics["n_train"] == QPI * (COUNTS["train"] + COUNTS["restval"]) and metrics["status"] == "complete"


def test_a_sweep_checks_its_data_before_the_first_cell(blip, tmp_path, monkeypatch, capsys):
    root, image_root = blip
    next(image_root.rglob("*.jpg")).unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--preset", "paper", "--data-root", str(root), "--image-root", str(image_root),
                  "--methods", "lora", "--tasks", "vqa"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "image files are missing" in err and "vlpeft data check --data-root" in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("config.json"))


# ---------------------------------------------------------------------------------------------------------
# Label smoothing, a declared choice
def test_label_smoothing_is_the_smoothed_cross_entropy_by_hand(models, tiny_world, tmp_path):
    """0.1 gives (1 − ε)·NLL + ε·mean over the vocabulary of −log p, per target token, averaged (BLIP's loss);
    0.0 the paper's plain cross-entropy; the run records its choice."""
    from vlpeft.blip.models import load_model, load_processor
    from vlpeft.data import Pixels
    from vlpeft.tasks import TASKS
    task = TASKS["vqa"]
    processor = load_processor(models / "vqa")
    items = task.splits(Paths(tiny_world))[0][:6]
    data = task.train_examples(items, Pixels(processor.image_processor))
    batch = task.collate(processor.tokenizer, [data[i] for i in range(len(data))])
    model = load_model("vqa", models / "vqa")
    logits = task.forward(model, batch, labels=False).logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    keep = target != -100
    logp = torch.log_softmax(logits, -1)[keep]                             # (tokens, V)
    nll = -logp.gather(-1, target[keep][:, None])[:, 0]
    for eps in (0.0, 0.1):
        model.text_decoder.label_smoothing = eps
        by_hand = ((1 - eps) * nll + eps * (-logp.mean(-1))).mean()
        assert task.loss(model, batch).item() == pytest.approx(by_hand.item(), rel=1e-5), eps
    from vlpeft.train import run
    m = run(smoke_config(models, tiny_world, tmp_path / "run", task="vqa", method="lora", size=2, label_smoothing=0.1),
            progress=False)
    assert m["status"] == "complete"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["label_smoothing"] == 0.1


def test_a_caption_only_root_reads_its_captions(karpathy):
    """Karpathy's split file alone is enough for captioning (the VQA files are named when VQA reads them)."""
    for f in (karpathy / "annotations").glob("v2_*.json"):
        f.unlink()
    assert len(load_captions(Paths(karpathy), "test")) == COUNTS["test"]
    with pytest.raises(DataError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        load_vqa(Paths(karpathy), "train")


def test_a_data_check_with_every_image_missing_is_quick_and_says_so(blip):
    root, image_root = blip
    shutil.rmtree(image_root)
    found = check(root, image_root, decode=32, progress=False)
    assert not found.ok and found.n_present == 0 and found.n_decoded == 0
    assert any("12 image files are missing" in p for p in found.problems)
