"""The shapes world and the real-format loaders: formats written by hand, nested subsets, bad input."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vlpeft.data import Paths, Pixels, load_image, load_karpathy, load_vqa, nested_subset
from vlpeft.errors import DataError
from vlpeft.records import load_json
from vlpeft.tasks import TASKS
from vlpeft.worlds import shapes as world


def test_world_is_deterministic_and_loads(tiny_world, tmp_path):
    record = json.loads((tiny_world / "world.json").read_text())
    assert record["format"] == world.WORLD_FORMAT                      # the generator's version is recorded
    again = world.write_world(tmp_path / "again", world.WorldConfig(**{k: v for k, v in record.items()
                                                                       if k != "format"}), progress=False)
    for f in ("dataset_coco.json", "v2_mscoco_train2014_annotations.json"):
        assert (tiny_world / "annotations" / f).read_text() == (again / "annotations" / f).read_text()
    paths = Paths(tiny_world)
    train = load_karpathy(paths.karpathy, paths.images, "train")
    assert len(train) == 24 + 4 and all(len(it.captions) == 5 for it in train)  # restval folded into train
    assert len(load_karpathy(paths.karpathy, paths.images, "test")) == 8
    vqa_train, vqa_val, vqa_test = (load_vqa(paths, s) for s in ("train", "val", "test"))
    assert vqa_train and vqa_val and vqa_test
    assert {q.image_id for q in vqa_val}.isdisjoint({q.image_id for q in vqa_test})
    assert all(len(q.answers) == 10 for q in vqa_train)
    pre = load_karpathy(paths.pretrain, paths.images, "all")
    downstream_eval = {it.image_id for s in ("val", "test") for it in load_karpathy(paths.karpathy, paths.images, s)}
    assert downstream_eval.isdisjoint({it.image_id for it in pre})  # val/test never pre-trained on
    assert {it.image_id for it in train} <= {it.image_id for it in pre}


def test_world_has_variety_and_disagreement(tiny_world):
    anns = json.loads((tiny_world / "annotations" / "v2_mscoco_train2014_annotations.json").read_text())
    types = {a["question_type"] for a in anns["annotations"]}
    assert len(types) >= 4
    caps = json.loads((tiny_world / "annotations" / "dataset_coco.json").read_text())["images"][0]["sentences"]
    assert len({c["raw"] for c in caps}) >= 4  # five annotators, different templates


def write_handmade(root):
    """A Karpathy file and a VQAv2 pair written by hand in the real formats (not by `world`)."""
    (root / "annotations").mkdir(parents=True)
    for folder, name in (("train2014", "COCO_train2014_000000000009.jpg"), ("val2014", "COCO_val2014_000000000042.jpg"),
                         ("val2014", "COCO_val2014_000000000073.jpg")):
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "images" / folder / name)
    ids = iter(range(1000))
    sent = lambda raw: {"tokens": raw.split(), "raw": raw, "imgid": 0, "sentid": next(ids)}  # noqa: E731
    karpathy = {"dataset": "coco", "images": [
        {"filepath": "train2014", "sentids": [1], "filename": "COCO_train2014_000000000009.jpg", "imgid": 0,
         "split": "train", "sentences": [sent("A red square."), sent("red box")], "cocoid": 9},
        {"filepath": "val2014", "sentids": [2], "filename": "COCO_val2014_000000000042.jpg", "imgid": 1,
         "split": "restval", "sentences": [sent("a red thing")], "cocoid": 42},
        {"filepath": "val2014", "sentids": [3], "filename": "COCO_val2014_000000000073.jpg", "imgid": 2,
         "split": "test", "sentences": [sent("red")], "cocoid": 73}]}
    (root / "annotations" / "dataset_coco.json").write_text(json.dumps(karpathy))
    answers = lambda a: [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]  # noqa
    for subset, qid, img in (("train2014", 90, 9), ("val2014", 91, 73)):
        (root / "annotations" / f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(json.dumps(
            {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}, "data_subtype": subset,
             "questions": [{"image_id": img, "question": "What color is it?", "question_id": qid}]}))
        (root / "annotations" / f"v2_mscoco_{subset}_annotations.json").write_text(json.dumps(
            {"info": {}, "license": {}, "data_subtype": subset, "annotations": [
                {"question_type": "what color is the", "multiple_choice_answer": "red", "answers": answers("red"),
                 "image_id": img, "answer_type": "other", "question_id": qid}]}))
    return Paths(root)


def test_handmade_real_format_files_load(tmp_path, processor, tokenizer):
    paths = write_handmade(tmp_path)
    train = load_karpathy(paths.karpathy, paths.images, "train")
    assert [it.image_id for it in train] == [9, 42]  # restval folded into train
    assert train[0].captions == ("A red square.", "red box")
    vqa = load_vqa(paths, "train")
    assert vqa[0].question == "What color is it?" and vqa[0].answers == ("red",) * 10
    assert load_vqa(paths, "test")[0].image_id == 73  # val2014 question on a Karpathy-test image
    images = Pixels(processor.image_processor)
    caption, vqa_task = TASKS["caption"], TASKS["vqa"]
    batch = caption.collate(tokenizer, [caption.train_examples(train, images)[0]])
    assert batch["pixel_values"].shape == (1, 3, 16, 16)
    assert batch["input_ids"][0, 0] == tokenizer.bos_token_id
    assert (batch["labels"][0, :4] == -100).all()  # [DEC] a picture of: never in the loss
    vb = vqa_task.collate(tokenizer, [vqa_task.train_examples(vqa, images)[0]])
    assert {"decoder_input_ids", "labels", "input_ids"} <= set(vb)
    assert vb["input_ids"][0, 0] == tokenizer.convert_tokens_to_ids("[ENC]")  # as BLIP's blip_vqa


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 1.0])
def test_nested_subsets(ratio):
    items = list(range(200))
    small, large = nested_subset(items, ratio / 2, seed=7), nested_subset(items, ratio, seed=7)
    assert set(small) <= set(large) and len(large) == int(torch.tensor(ratio * 200).ceil())
    assert nested_subset(items, ratio, seed=7) == large


# ---------------------------------------------------------------------------------------------------------
# Bad input: every error names the file (or value) and the problem
def corrupt(paths, what):
    ann = paths.root / "annotations"
    if what == "missing_file":
        (ann / "dataset_coco.json").unlink()
    elif what == "malformed_json":
        (ann / "dataset_coco.json").write_text('{"images": [')
    elif what == "missing_top_key":
        (ann / "dataset_coco.json").write_text('{"pictures": []}')
    elif what == "missing_entry_key":
        d = json.loads((ann / "dataset_coco.json").read_text())
        del d["images"][0]["filename"]
        (ann / "dataset_coco.json").write_text(json.dumps(d))
    elif what == "missing_annotation":
        (ann / "v2_mscoco_train2014_annotations.json").write_text('{"annotations": []}')


@pytest.mark.parametrize("what,call,match", [
    ("missing_file", "caption", r"dataset_coco.json: file not found"),
    ("malformed_json", "caption", r"dataset_coco.json: not valid JSON"),
    ("missing_top_key", "caption", r"missing top-level key\(s\) \['images'\]"),
    ("missing_entry_key", "caption", r"missing key\(s\) \['filename'\]"),
    ("missing_annotation", "vqa", r"no annotation for question_id 90"),
])
def test_bad_files(tmp_path, what, call, match):
    paths = write_handmade(tmp_path)
    corrupt(paths, what)
    with pytest.raises(DataError, match=match):
        load_karpathy(paths.karpathy, paths.images, "train") if call == "caption" else load_vqa(paths, "train")


@pytest.mark.parametrize("content,match", [
    (None, "image not found"),
    (b"not an image at all", "corrupt or truncated image"),
    ("truncated", "corrupt or truncated image"),
])
def test_bad_images(tmp_path, content, match):
    path = tmp_path / "x.png"
    if content == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_bad_image_inside_a_dataloader_worker(tmp_path, processor, tokenizer):
    paths = write_handmade(tmp_path)
    (paths.images / "train2014" / "COCO_train2014_000000000009.jpg").write_bytes(b"garbage")
    caption = TASKS["caption"]
    ds = caption.train_examples(load_karpathy(paths.karpathy, paths.images, "train"), Pixels(processor.image_processor))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1,
                                         collate_fn=lambda b: caption.collate(tokenizer, b))
    with pytest.raises(DataError, match="corrupt or truncated image: .*COCO_train2014_000000000009.jpg"):
        next(iter(loader))


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5, float("nan")])
def test_bad_ratio(ratio):
    with pytest.raises(DataError, match=r"data ratio must be in \(0, 1\]"):
        nested_subset(list(range(10)), ratio, 0)


def test_empty_subset_and_split(tmp_path):
    with pytest.raises(DataError, match="empty"):
        nested_subset([], 0.5, 0)
    paths = write_handmade(tmp_path)
    with pytest.raises(DataError, match="no images in split 'val'"):
        load_karpathy(paths.karpathy, paths.images, "val")
    with pytest.raises(DataError, match="unknown caption split"):
        load_karpathy(paths.karpathy, paths.images, "dev")
    with pytest.raises(DataError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_json(tmp_path / "bad.json")
