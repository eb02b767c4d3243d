"""Loaders for the real MSCOCO-Karpathy and VQAv2 file formats, nested data-ratio subsets, collation.

The same functions read the shapes world (`vlpeft.worlds.shapes`) and the real files, in either annotation
layout of `vlpeft.layouts` (Karpathy's dataset_coco.json with the official VQAv2 files, or BLIP's/LAVIS's
coco_karpathy_*.json and vqa_*.json), the images under `<root>/images` or any `--image-root`:

    <root>/annotations/dataset_coco.json                          Karpathy split file (image index for both tasks)
    <root>/annotations/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json
    <root>/annotations/v2_mscoco_{train2014,val2014}_annotations.json
    <image root>/<filepath>/<filename>                            as named in the Karpathy file

Splits (paper Table I; both tasks use the Karpathy split of the MSCOCO images). Captioning: Karpathy train
(+ restval, folded in as everyone does) / val / test. VQA: the questions of *both* VQAv2 files (train2014 and
val2014) are assigned by the Karpathy split of their image: train + restval images → training (113.2K images,
605.1K QA on real data), val images → the validation curve, test images → the reported metric. (The paper
reports VQAv2 val; its val2014 questions overlap the Karpathy training images, so we report the questions on
the 5K Karpathy test images instead.)

Every failure names the file and says what is wrong: missing file, malformed JSON, missing keys, missing,
corrupt or truncated image, a VQA annotation without exactly 10 answers, a ratio outside (0, 1], an empty
subset. `check_images` looks for every image before training, so a missing file is found at step 0.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from . import layouts
from .errors import DataError
from .metrics import vqa_accuracy_one
from .records import (
    KARPATHY_SPLITS,
    N_ANSWERS,
    VQA_SPLITS,
    CaptionItem,
    VqaItem,
    load_json,
    no_duplicates,
    question_type,
    require,
)


@dataclass(frozen=True)
class Paths:
    """Where the files of one data root live: its annotations (a layout of `vlpeft.layouts`) and its images
    (`<root>/images` unless an image root is given: wherever COCO's train2014/ and val2014/ were unpacked)."""
    root: Path
    image_root: Path | None = None

    @classmethod
    def of(cls, cfg) -> "Paths":
        """A run's roots (`RunConfig.data_root`, `RunConfig.image_root`)."""
        return cls(Path(cfg.data_root), Path(cfg.image_root) if cfg.image_root else None)

    @property
    def annotations_dir(self) -> Path: return Path(self.root) / "annotations"
    @property
    def karpathy(self) -> Path: return self.annotations_dir / "dataset_coco.json"
    @property
    def pretrain(self) -> Path: return self.annotations_dir / "dataset_pretrain.json"
    @property
    def images(self) -> Path: return Path(self.image_root) if self.image_root else Path(self.root) / "images"
    def questions(self, subset: str) -> Path:
        return self.annotations_dir / f"v2_OpenEnded_mscoco_{subset}_questions.json"
    def annotations(self, subset: str) -> Path:
        return self.annotations_dir / f"v2_mscoco_{subset}_annotations.json"

    @property
    def layout(self) -> str:
        """The annotation layout (`layouts.detect`; a root with only the caption files is enough to read those)."""
        return layouts.detect(self.annotations_dir, complete=False)


def load_karpathy(json_path: str | Path, image_root: str | Path, split: str) -> list[CaptionItem]:
    """Karpathy `dataset_coco.json` → caption items of one split (`train` folds `restval` in)."""
    if split not in KARPATHY_SPLITS:
        raise DataError(f"unknown caption split {split!r}; choose one of {sorted(KARPATHY_SPLITS)}")
    json_path, image_root = Path(json_path), Path(image_root)
    images = load_json(json_path, required=("images",))["images"]
    keep = KARPATHY_SPLITS[split]
    items = []
    no_duplicates([e.get("cocoid") for e in images], json_path, "image cocoid")
    no_duplicates([c.get("sentid") for e in images for c in e.get("sentences", []) if "sentid" in c], json_path,
                   "caption sentid")
    for e in images:
        require(e, ("filepath", "filename", "cocoid", "split", "sentences"), json_path, "image entry")
        if not e["sentences"]:
            raise DataError(f"{json_path}: image cocoid {e['cocoid']} has no captions; every Karpathy image has "
                            f"reference captions (CIDEr needs them) — fix or drop the entry")
        if keep is None or e["split"] in keep:
            caps = tuple(s["raw"].strip() for s in e["sentences"])
            items.append(CaptionItem(int(e["cocoid"]), image_root / e["filepath"] / e["filename"], caps,
                                     e["split"]))
    if not items:
        raise DataError(f"{json_path}: no images in split {split!r}")
    return items


def load_captions(paths: Paths, split: str) -> list[CaptionItem]:
    """The caption items of one Karpathy split (train folds restval in), whatever the root's layout."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown caption split {split!r}; choose one of train, val, test")
    if paths.layout == "blip":
        return layouts.blip_captions(paths.annotations_dir, paths.images, split)
    return load_karpathy(paths.karpathy, paths.images, split)


def karpathy_index(paths: Paths) -> dict[int, tuple[Path, str]]:
    """image_id → (image path, Karpathy split): the image index VQA uses (VQAv2 names no files)."""
    if paths.layout == "blip":
        return {it.image_id: (it.image, it.split) for split in ("train", "val", "test")
                for it in load_captions(paths, split)}
    return {it.image_id: (it.image, it.split) for it in load_karpathy(paths.karpathy, paths.images, "all")}


VQA_FILES = ("train2014", "val2014")


def load_vqa(paths: Paths, split: str) -> list[VqaItem]:
    """VQAv2 question + annotation files → items of one split (Table I, see the module docstring)."""
    if split not in VQA_SPLITS:
        raise DataError(f"unknown VQA split {split!r}; choose one of {sorted(VQA_SPLITS)}")
    index = karpathy_index(paths)
    if paths.layout == "blip":
        items = layouts.blip_vqa(paths.annotations_dir, paths.images, split, index)
    else:
        items = [it for subset in VQA_FILES for it in _vqa_items(paths, subset, index, VQA_SPLITS[split])]
    no_duplicates([it.question_id for it in items], paths.annotations_dir / "*", "question_id")  # across files
    if not items:
        raise DataError(f"{paths.questions('*')}: no questions on Karpathy {'/'.join(VQA_SPLITS[split])} images "
                        f"(VQA split {split!r})")
    return items


def _vqa_items(paths: Paths, subset: str, index: dict, keep: tuple[str, ...]) -> list[VqaItem]:
    qpath, apath = paths.questions(subset), paths.annotations(subset)
    questions = load_json(qpath, required=("questions",))["questions"]
    annotations = load_json(apath, required=("annotations",))["annotations"]
    no_duplicates([q.get("question_id") for q in questions], qpath, "question_id")
    no_duplicates([a.get("question_id") for a in annotations], apath, "annotation question_id")
    by_qid = {}
    for a in annotations:
        require(a, ("question_id", "image_id", "answers", "multiple_choice_answer"), apath, "annotation")
        by_qid[a["question_id"]] = a
    items = []
    for q in questions:
        require(q, ("question_id", "image_id", "question"), qpath, "question")
        if q["image_id"] not in index:
            continue  # an image outside the Karpathy index (e.g. COCO test images): not part of any split
        image, ksplit = index[q["image_id"]]
        if ksplit not in keep:
            continue
        a = by_qid.get(q["question_id"])
        if a is None:
            raise DataError(f"{apath}: no annotation for question_id {q['question_id']} of {qpath.name}")
        answers = tuple(str(x.get("answer", "")) for x in a["answers"])
        if len(answers) != N_ANSWERS:
            raise DataError(f"{apath}: question_id {q['question_id']} has {len(answers)} answers; VQAv2 "
                            f"annotations have exactly {N_ANSWERS} (the accuracy is defined over ten). Fix or "
                            f"drop the annotation.")
        items.append(VqaItem(q["question_id"], q["image_id"], image, q["question"], answers,
                             a["multiple_choice_answer"]))
    return items


def vqa_orphans(paths: Paths) -> int:
    """Questions whose image is not in the Karpathy index (in no split; VQAv2 train/val should have none)."""
    index = karpathy_index(paths)
    if paths.layout == "blip":
        entries = [e for name in ("vqa_train.json", "vqa_val.json")
                   for e in layouts.blip_list(paths.annotations_dir / name, "questions")]
        return sum(layouts.image_id(e.get("image", "0.jpg")) not in index for e in entries)
    return sum(q.get("image_id") not in index for subset in VQA_FILES
               for q in load_json(paths.questions(subset), required=("questions",))["questions"])


def split_sizes(paths: Paths) -> dict:
    """Table I for a data root: images and examples per split of both tasks."""
    out = {}
    for split in ("train", "val", "test"):
        caps = load_captions(paths, split)
        qa = load_vqa(paths, split)
        out[split] = {"caption_images": len(caps), "caption_pairs": sum(len(c.captions) for c in caps),
                      "vqa_images": len({q.image_id for q in qa}), "vqa_questions": len(qa)}
    return out


# ---------------------------------------------------------------------------------------------------------
# Nested data-ratio subsets
def ratio_problem(ratio) -> str | None:
    """What is wrong with a data ratio (None: it is in (0, 1])."""
    if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        return f"data ratio must be in (0, 1], got {ratio!r} (e.g. 0.1 for 10 % of the training data)"
    return None


def nested_subset(items: list, ratio: float, seed: int) -> list:
    """The first ceil(ratio·n) items of one seeded permutation: so for one seed the 10 % subset lies inside
    the 20 % subset, and a data-size effect is not confounded with *which* examples were drawn."""
    if (problem := ratio_problem(ratio)) is not None:
        raise DataError(problem)
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


def check_images(paths: list[Path], sample: int = 16, seed: int = 0) -> None:
    """Before training: every image exists, and a random sample of them decodes (the rest are decoded when
    first used, with the same error naming the file)."""
    unique = sorted(set(paths))
    missing = [p for p in unique if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"image not found: {missing[0]}{more}. Check --data-root and the Karpathy file's "
                        f"filepath/filename.")
    for p in random.Random(seed).sample(unique, min(sample, len(unique))):
        load_image(p)


class Pixels:
    """image path → processed pixel tensor (3, H, W) for the vision tower; kept in memory when `keep` (the small
    embedded world, where every image is seen many times; each DataLoader worker keeps its own)."""
    key = "pixel_values"

    def __init__(self, image_processor, keep: bool = True):
        self.image_processor, self.keep, self.store = image_processor, keep, {}

    def __call__(self, path: Path) -> torch.Tensor:
        if path in self.store:
            return self.store[path]
        px = self.image_processor(load_image(path), return_tensors="pt")["pixel_values"][0]
        if self.keep:
            self.store[path] = px
        return px


class Examples(torch.utils.data.Dataset):
    """(image path, fields) records; an example is the image's tensor — pixels, or the frozen vision tower's
    cached states (`vlpeft.features`) — under that source's key, plus the fields (target text, id, …)."""

    def __init__(self, records: list[tuple[Path, dict]], images):
        self.records, self.images = records, images

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i) -> dict:
        path, fields = self.records[i]
        return {self.images.key: self.images(path), **fields}


def stack_images(batch: list[dict]) -> dict:
    key = "image_embeds" if "image_embeds" in batch[0] else "pixel_values"
    return {key: torch.stack([b[key] for b in batch]), "ids": [b["id"] for b in batch]}


# ---------------------------------------------------------------------------------------------------------
# The training order: one seeded permutation per epoch, addressable by step, so a resumed run (and any number
# of DataLoader workers, and any number of data-parallel ranks) sees exactly the batches of an uninterrupted one
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class StepBatches(torch.utils.data.Sampler):
    """A DataLoader batch sampler yielding the batches of steps `start`..`stop`-1; with data parallelism each
    rank takes its share [rank::world] of every global batch."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        per_epoch, cached = math.ceil(self.n / self.batch_size), (None, None)
        for step in range(self.start, self.stop):
            epoch, k = divmod(step, per_epoch)
            if cached[0] != epoch:
                cached = (epoch, epoch_order(self.n, self.seed, epoch))
            yield cached[1][k * self.batch_size:(k + 1) * self.batch_size].tolist()[self.rank::self.world]


# ---------------------------------------------------------------------------------------------------------
# How much the question alone gives away
def question_prior(train: list[VqaItem], test: list[VqaItem]) -> tuple[float, dict[str, float]]:
    """The official VQA accuracy on `test` of a guesser that reads only the question's type (its first three words,
    `records.question_type`) and answers the most frequent training answer of that type: (overall, {type:
    accuracy}). VQAv2 was balanced against it (about 0.31); a task it answers well measures the prior, not the
    image."""
    by_type: dict[str, Counter] = {}
    for it in train:
        by_type.setdefault(question_type(it.question), Counter())[it.answer] += 1
    fallback = Counter(it.answer for it in train).most_common(1)[0][0]
    scores: dict[str, list[float]] = {}
    for it in test:
        t = question_type(it.question)
        guess = by_type[t].most_common(1)[0][0] if t in by_type else fallback
        scores.setdefault(t, []).append(vqa_accuracy_one(guess, list(it.answers)))
    overall = sum(sum(v) for v in scores.values()) / max(1, sum(len(v) for v in scores.values()))
    return overall, {t: sum(v) / len(v) for t, v in sorted(scores.items())}
