"""The annotation layouts researchers have, detected from the files, each giving the same records
(`vlpeft.records`) and so Table I's splits (`data.load_captions`, `data.load_vqa`); `vlpeft data check`
(`vlpeft.datacheck`) says what a data root holds before a GPU-hour is spent on it.

    karpathy  <root>/annotations/dataset_coco.json                     Karpathy's split file (caption_datasets.zip,
                                                                       cs.stanford.edu/people/karpathy/deepimagesent)
              <root>/annotations/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json   VQAv2 (visualqa.org)
              <root>/annotations/v2_mscoco_{train2014,val2014}_annotations.json
              images: <image root>/<filepath>/<filename>
    blip      <root>/annotations/coco_karpathy_{train,val,test}.json   BLIP's and LAVIS's files (BLIP's data/
              <root>/annotations/vqa_train.json, vqa_val.json          coco_karpathy_dataset.py, vqa_dataset.py;
                                                                       LAVIS's coco builders), from
              storage.googleapis.com/sfr-vision-language-research/datasets/ (LAVIS: …/LAVIS/datasets/vqav2/)
              images: <image root>/<"image"> (e.g. val2014/COCO_val2014_000000391895.jpg)

The image root defaults to <root>/images; `--image-root` points at wherever COCO's train2014/ and val2014/ were
unpacked, so nothing is copied or linked. In the BLIP files, coco_karpathy_train.json already holds Karpathy train
+ restval (one entry per caption, {image, caption, image_id}); val and test hold one entry per image with its
caption list; an image's id is the number in its file name. vqa_train.json and vqa_val.json hold VQAv2's train and
val questions ({question_id, question, answer: the ten human answers, image, dataset}); Table I's rule assigns
each question by the Karpathy split of its image, as for the official files. They carry no
`multiple_choice_answer`: the training target is the most frequent of the ten answers (the first of a tie), which
is how VQAv2 defines it.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .errors import DataError
from .records import N_ANSWERS, VQA_SPLITS, CaptionItem, VqaItem, load_json, no_duplicates

KARPATHY_FILES = ("dataset_coco.json", "v2_OpenEnded_mscoco_train2014_questions.json",
                  "v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_train2014_annotations.json",
                  "v2_mscoco_val2014_annotations.json")
BLIP_FILES = ("coco_karpathy_train.json", "coco_karpathy_val.json", "coco_karpathy_test.json", "vqa_train.json",
              "vqa_val.json")
LAYOUTS = {"karpathy": KARPATHY_FILES, "blip": BLIP_FILES}
CAPTION_FILES = {"karpathy": KARPATHY_FILES[:1], "blip": BLIP_FILES[:3]}   # what captioning alone needs


def detect(annotations: Path, complete: bool = True) -> str:
    """The layout of `<root>/annotations`: the first whose files are all there (karpathy first: the paper's own
    split file); with `complete=False` the first whose caption files are there (a caption-only root; VQA's files
    are then named when they are read). Else a DataError saying what was found and what each layout needs."""
    found = sorted(p.name for p in annotations.glob("*.json")) if annotations.is_dir() else []
    for name, files in LAYOUTS.items():
        if all(f in found for f in (files if complete else CAPTION_FILES[name])):
            return name
    started = [n for n, files in LAYOUTS.items() if files[0] in found]
    if started:
        name = started[0]
        missing = [f for f in LAYOUTS[name] if f not in found]
        raise DataError(f"{annotations}: the {name} layout is missing {', '.join(missing)} (it needs "
                        f"{', '.join(LAYOUTS[name])}; see the README, \"Real data\")")
    raise DataError(f"{annotations}: no annotation layout vlpeft knows (found: {', '.join(found) or 'nothing'}). "
                    f"Karpathy's needs {', '.join(KARPATHY_FILES)}; BLIP's/LAVIS's needs {', '.join(BLIP_FILES)}")


def image_id(path: str) -> int:
    """COCO's image id: the number in the file name (COCO_val2014_000000391895.jpg → 391895)."""
    m = re.search(r"(\d+)\.\w+$", path)
    if m is None:
        raise DataError(f"cannot read an image id from {path!r} (COCO names its files COCO_<split>_<id>.jpg)")
    return int(m.group(1))


def blip_list(path: Path, what: str) -> list:
    """A BLIP/LAVIS annotation file: a JSON list (of caption entries or questions), or a DataError naming it."""
    entries = load_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of {what} (BLIP's {path.name})")
    return entries


def blip_captions(annotations: Path, image_root: Path, split: str):
    """BLIP/LAVIS caption files → CaptionItems of one Karpathy split (train already holds restval)."""
    path = annotations / f"coco_karpathy_{split}.json"
    entries = blip_list(path, "entries")
    by_image: dict[int, list[str]] = {}
    files: dict[int, str] = {}
    for e in entries:
        if "image" not in e or "caption" not in e:
            raise DataError(f"{path}: entry {str(e)[:100]}… has no 'image' or 'caption'")
        i = image_id(e["image"])
        files.setdefault(i, e["image"])
        captions = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
        by_image.setdefault(i, []).extend(c.strip() for c in captions)
    if split != "train":  # one entry per image there: a repeated one is a duplicate, not more captions
        no_duplicates([image_id(e["image"]) for e in entries], path, "image")
    empty = [i for i, caps in by_image.items() if not caps]
    if empty:
        raise DataError(f"{path}: image {empty[0]} has no captions (CIDEr needs them) — fix or drop the entry")
    return [CaptionItem(i, image_root / files[i], tuple(caps), split) for i, caps in by_image.items()]


def blip_vqa(annotations: Path, image_root: Path, split: str, index: dict[int, tuple[Path, str]]):
    """BLIP/LAVIS VQA files → VqaItems of one split, each question assigned by its image's Karpathy split."""
    items = []
    for name in ("vqa_train.json", "vqa_val.json"):
        path = annotations / name
        entries = blip_list(path, "questions")
        no_duplicates([e.get("question_id") for e in entries], path, "question_id")
        for e in entries:
            missing = [k for k in ("question_id", "question", "answer", "image") if k not in e]
            if missing:
                raise DataError(f"{path}: question {str(e)[:100]}… is missing {missing}")
            i = image_id(e["image"])
            if i not in index or index[i][1] not in VQA_SPLITS[split]:
                continue
            answers = tuple(str(a) for a in e["answer"])
            if len(answers) != N_ANSWERS:
                raise DataError(f"{path}: question_id {e['question_id']} has {len(answers)} answers; VQAv2 has "
                                f"exactly {N_ANSWERS} (the accuracy is defined over ten). Fix or drop it.")
            target = Counter(answers).most_common(1)[0][0]
            items.append(VqaItem(e["question_id"], i, index[i][0], e["question"], answers, target))
    return items
