"""Loaders for the real MSCOCO-Karpathy and VQAv2 file formats, nested data-ratio subsets, collation.

The same functions read the shapes world (`vlpeft.world`) and the real files; the data root layout is

    <root>/annotations/dataset_coco.json                          Karpathy split file (image index for both tasks)
    <root>/annotations/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json
    <root>/annotations/v2_mscoco_{train2014,val2014}_annotations.json
    <root>/images/<filepath>/<filename>                           as named in the Karpathy file

Splits. Captioning: Karpathy train (+ restval, folded in as everyone does) / val / test.
VQA: train2014 questions for training; val2014 questions are partitioned by the Karpathy split of their
image: images in Karpathy `val` → the validation curve, images in Karpathy `test` → the reported metric.
(On real VQAv2 this evaluates on the 10k Karpathy val/test images of val2014, not on all 40k.)

Every failure names the file and says what is wrong: missing file, malformed JSON, missing keys, missing,
corrupt or truncated image, a ratio outside (0, 1], an empty subset.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError


class DataError(ValueError):
    """Bad or missing input data; the message names the file and what to do."""


# ---------------------------------------------------------------------------------------------------------
# JSON files
@functools.lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int):
    """One parse per file version: a VQA run reads the Karpathy index and val2014 for several splits, and the
    real files are hundreds of MB. Callers only read the result."""
    return json.loads(Path(path).read_text())


def load_json(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. Check --data-root (run `vlpeft world --out DIR` for the "
                        f"embedded world, or see the README for the real MSCOCO/VQAv2 layout).")
    try:
        stat = path.stat()
        obj = _parse(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed JSON ({e}). Re-download or regenerate the file.") from None
    missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise DataError(f"{path}: missing top-level key(s) {missing}; is this the right file?")
    return obj


def _require(entry: dict, keys: tuple[str, ...], path: Path, what: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DataError(f"{path}: {what} {json.dumps(entry)[:120]}… is missing key(s) {missing}")


@dataclass(frozen=True)
class Paths:
    """Where the files of one data root live (the layout in the module docstring)."""
    root: Path

    @property
    def karpathy(self) -> Path: return self.root / "annotations" / "dataset_coco.json"
    @property
    def pretrain(self) -> Path: return self.root / "annotations" / "dataset_pretrain.json"
    @property
    def images(self) -> Path: return self.root / "images"
    def questions(self, subset: str) -> Path:
        return self.root / "annotations" / f"v2_OpenEnded_mscoco_{subset}_questions.json"
    def annotations(self, subset: str) -> Path:
        return self.root / "annotations" / f"v2_mscoco_{subset}_annotations.json"


# ---------------------------------------------------------------------------------------------------------
# Records
@dataclass(frozen=True)
class CaptionItem:
    image_id: int
    image: Path
    captions: tuple[str, ...]
    split: str = ""  # the Karpathy split as written (train, restval, val, test)


@dataclass(frozen=True)
class VqaItem:
    question_id: int
    image_id: int
    image: Path
    question: str
    answers: tuple[str, ...]   # the 10 human answers
    answer: str                # multiple_choice_answer: the training target


KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",), "all": None}


def load_karpathy(json_path: str | Path, image_root: str | Path, split: str) -> list[CaptionItem]:
    """Karpathy `dataset_coco.json` → caption items of one split (`train` folds `restval` in)."""
    if split not in KARPATHY_SPLITS:
        raise DataError(f"unknown caption split {split!r}; choose one of {sorted(KARPATHY_SPLITS)}")
    json_path, image_root = Path(json_path), Path(image_root)
    images = load_json(json_path, required=("images",))["images"]
    keep = KARPATHY_SPLITS[split]
    items = []
    for e in images:
        _require(e, ("filepath", "filename", "cocoid", "split", "sentences"), json_path, "image entry")
        if keep is None or e["split"] in keep:
            caps = tuple(s["raw"].strip() for s in e["sentences"])
            items.append(CaptionItem(int(e["cocoid"]), image_root / e["filepath"] / e["filename"], caps,
                                     e["split"]))
    if not items:
        raise DataError(f"{json_path}: no images in split {split!r}")
    return items


def karpathy_index(json_path: str | Path, image_root: str | Path) -> dict[int, tuple[Path, str]]:
    """image_id → (image path, Karpathy split): the image index VQA uses (VQAv2 names no files)."""
    return {it.image_id: (it.image, it.split) for it in load_karpathy(json_path, image_root, "all")}


VQA_SPLITS = {"train": ("train2014", None), "val": ("val2014", "val"), "test": ("val2014", "test")}


def load_vqa(paths: Paths, split: str) -> list[VqaItem]:
    """VQAv2 question + annotation files → items of one split (see the module docstring for the splits)."""
    if split not in VQA_SPLITS:
        raise DataError(f"unknown VQA split {split!r}; choose one of {sorted(VQA_SPLITS)}")
    subset, karpathy_split = VQA_SPLITS[split]
    qpath, apath = paths.questions(subset), paths.annotations(subset)
    questions = load_json(qpath, required=("questions",))["questions"]
    annotations = load_json(apath, required=("annotations",))["annotations"]
    index = karpathy_index(paths.karpathy, paths.images)
    by_qid = {}
    for a in annotations:
        _require(a, ("question_id", "image_id", "answers", "multiple_choice_answer"), apath, "annotation")
        by_qid[a["question_id"]] = a
    items = []
    for q in questions:
        _require(q, ("question_id", "image_id", "question"), qpath, "question")
        if q["question_id"] not in by_qid:
            raise DataError(f"{apath}: no annotation for question_id {q['question_id']} of {qpath.name}")
        if q["image_id"] not in index:
            continue  # an image outside the Karpathy index (e.g. COCO test images): not part of any split
        image, ksplit = index[q["image_id"]]
        if karpathy_split is not None and ksplit != karpathy_split:
            continue
        a = by_qid[q["question_id"]]
        answers = tuple(x["answer"] for x in a["answers"])
        items.append(VqaItem(q["question_id"], q["image_id"], image, q["question"], answers,
                             a["multiple_choice_answer"]))
    if not items:
        raise DataError(f"{qpath}: no questions in VQA split {split!r}")
    return items


# ---------------------------------------------------------------------------------------------------------
# Nested data-ratio subsets
def check_ratio(ratio: float) -> float:
    if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise DataError(f"data ratio must be in (0, 1], got {ratio!r} (e.g. 0.1 for 10 % of the training data)")
    return float(ratio)


def nested_subset(items: list, ratio: float, seed: int) -> list:
    """The first ceil(ratio·n) items of one seeded permutation: so for one seed the 10 % subset lies inside
    the 20 % subset, and a data-size effect is not confounded with *which* examples were drawn."""
    check_ratio(ratio)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    k = math.ceil(ratio * len(items))
    if k == 0:
        raise DataError(f"data ratio {ratio} of {len(items)} items is empty")
    return [items[i] for i in sorted(order[:k])]


# ---------------------------------------------------------------------------------------------------------
# Images
def load_image(path: Path) -> Image.Image:
    """Open and fully decode an image, so a truncated file fails here with its name, not deep in a worker."""
    if not Path(path).is_file():
        raise DataError(f"image not found: {path}. Check --data-root and the Karpathy file's filepath/filename.")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt or truncated image: {path} ({e}). Replace the file or drop it from the split.") \
            from None


class ImageCache:
    """image path → processed pixel tensor (3, H, W), computed once. Worth it on the small embedded world
    where every image is seen many times; pass `enabled=False` on real data to save memory."""

    def __init__(self, image_processor, enabled: bool = True):
        self.image_processor, self.enabled, self.store = image_processor, enabled, {}

    def __call__(self, path: Path) -> torch.Tensor:
        if path in self.store:
            return self.store[path]
        px = self.image_processor(load_image(path), return_tensors="pt")["pixel_values"][0]
        if self.enabled:
            self.store[path] = px
        return px


# ---------------------------------------------------------------------------------------------------------
# Datasets: training sets are flat (one target text per example); eval sets are one example per image/question
class CaptionTrain(torch.utils.data.Dataset):
    """(image, one caption) pairs of the images in `items` — every reference caption is a training example."""

    def __init__(self, items: list[CaptionItem], images: ImageCache):
        self.pairs = [(it, c) for it in items for c in it.captions]
        self.images = images

    def __len__(self): return len(self.pairs)

    def __getitem__(self, i):
        it, cap = self.pairs[i]
        return {"pixel_values": self.images(it.image), "target": cap, "id": it.image_id}


class CaptionEval(torch.utils.data.Dataset):
    def __init__(self, items: list[CaptionItem], images: ImageCache):
        self.items, self.images = items, images

    def __len__(self): return len(self.items)

    def __getitem__(self, i):
        it = self.items[i]
        return {"pixel_values": self.images(it.image), "id": it.image_id}


class VqaSet(torch.utils.data.Dataset):
    def __init__(self, items: list[VqaItem], images: ImageCache):
        self.items, self.images = items, images

    def __len__(self): return len(self.items)

    def __getitem__(self, i):
        it = self.items[i]
        return {"pixel_values": self.images(it.image), "question": it.question, "target": it.answer,
                "id": it.question_id}


# ---------------------------------------------------------------------------------------------------------
# Collation through the model's tokenizer
CAPTION_PROMPT = "a picture of"           # paper §IV: the caption prompt
VQA_TEMPLATE = "question: {question} answer:"  # paper §IV: "Question: {question} Answer:" (lower-cased tokenizer)


@dataclass
class Collator:
    """Batches for both tasks. Caption: decoder text = prompt + caption; the prompt and padding are masked
    out of the loss (-100), as BLIP does. VQA: encoder text = the question template; decoder text = answer.
    The first decoder token is BLIP's [DEC] (bos), which is what `generate` starts from."""
    tokenizer: object
    bos_token_id: int
    task: str
    max_len: int = 40

    def _tok(self, texts):
        return self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_len,
                              return_tensors="pt")

    def __call__(self, batch: list[dict]) -> dict:
        out = {"pixel_values": torch.stack([b["pixel_values"] for b in batch]), "ids": [b["id"] for b in batch]}
        if self.task == "caption":
            if "target" not in batch[0]:  # eval: the prompt only, to be continued by `generate`
                enc = self._tok([CAPTION_PROMPT] * len(batch))
                return out | {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
            enc = self._tok([f"{CAPTION_PROMPT} {b['target']}" for b in batch])
            ids = enc.input_ids.clone()
            ids[:, 0] = self.bos_token_id
            labels = ids.masked_fill(enc.attention_mask == 0, -100)
            n_prompt = len(self.tokenizer(CAPTION_PROMPT, add_special_tokens=False).input_ids)
            labels[:, : 1 + n_prompt] = -100
            return out | {"input_ids": ids, "attention_mask": enc.attention_mask, "labels": labels}
        q = self._tok([VQA_TEMPLATE.format(question=b["question"]) for b in batch])
        out |= {"input_ids": q.input_ids, "attention_mask": q.attention_mask}
        if "target" in batch[0]:
            a = self._tok([b["target"] for b in batch])
            ids = a.input_ids.clone()
            ids[:, 0] = self.bos_token_id
            out |= {"decoder_input_ids": ids, "decoder_attention_mask": a.attention_mask,
                    "labels": ids.masked_fill(a.attention_mask == 0, -100)}
        return out
