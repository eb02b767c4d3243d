"""`vlpeft data check`: what a data root holds — its annotation layout (`vlpeft.layouts`), Table I as it gives
it beside the paper's, every image file, a decoded sample, questions outside the Karpathy index — said before a
GPU-hour is spent on it. Every problem is collected instead of stopping at the first.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from .data import Paths, load_captions, load_image, load_vqa, vqa_orphans
from .errors import DataError
from .io import progress_bar
from .layouts import detect

# Table I of the paper: (images, examples) per split and task
PAPER_TABLE_I = {("caption", "train"): (113_200, 566_800), ("caption", "val"): (5_000, 5_000),
                 ("caption", "test"): (5_000, 5_000), ("vqa", "train"): (113_200, 605_100),
                 ("vqa", "val"): (5_000, 26_700), ("vqa", "test"): (5_000, 26_300)}  # as printed (val/test: images)


@dataclass
class Check:
    """What a data root gives: its layout, Table I as it gives it, and every problem found."""
    root: Path
    images: Path
    layout: str = ""
    table: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)     # each blocks a study
    warnings: list[str] = field(default_factory=list)     # said, but a study can start
    n_images: int = 0
    n_present: int = 0
    n_decoded: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"data root {self.root}: layout {self.layout or '—'}; images under {self.images}"]
        if self.table:
            lines.append("Table I, this root | the paper:")
            for r in self.table:
                pi, pe = PAPER_TABLE_I[(r["task"], r["split"])]
                unit = "pairs" if r["task"] == "caption" else "QA"
                lines.append(f"  {r['task']:<8}{r['split']:<6}{r['images']:>9,d} images {r['examples']:>9,d} {unit:<5}"
                             f" | {pi / 1000:.1f}K images, {pe / 1000:.1f}K {unit}")
        lines.append(f"image files: {self.n_present:,d} of {self.n_images:,d} present"
                     + (f"; {self.n_decoded} sampled and decoded" if self.n_decoded else ""))
        lines += [f"warning: {w}" for w in self.warnings] + [f"problem: {p}" for p in self.problems]
        lines.append("→ a study can start" if self.ok else "→ a study cannot start: fix the problems above")
        return "\n".join(lines)


def check(root: str | Path, image_root: str | Path | None = None, decode: int = 32, progress: bool = True,
          seed: int = 0) -> Check:
    """Read the annotation files, apply Table I's splits, look for every image file (with a progress bar) and
    decode a seeded sample of `decode` of them; collect every problem instead of stopping at the first."""
    paths = Paths(Path(root), Path(image_root) if image_root else None)
    out = Check(paths.root, paths.images)
    try:
        out.layout = detect(paths.root / "annotations")
    except DataError as e:
        out.problems.append(str(e))
        return out
    images = set()
    for task, load in (("caption", load_captions), ("vqa", load_vqa)):
        for split in ("train", "val", "test"):
            try:
                items = load(paths, split)
            except DataError as e:
                out.problems.append(str(e))
                continue
            n_examples = sum(len(it.captions) for it in items) if task == "caption" else len(items)
            out.table.append({"task": task, "split": split, "images": len({it.image_id for it in items}),
                              "examples": n_examples})
            images |= {it.image for it in items}
    try:
        orphans = vqa_orphans(paths)
        if orphans:
            out.warnings.append(f"{orphans:,d} questions are on images outside the Karpathy index (no split: left "
                                f"out)")
    except DataError as e:
        out.problems.append(str(e))
    files = sorted(images)
    out.n_images = len(files)
    missing = [p for p in progress_bar(iterable=files, desc="image files", unit="file", disable=not progress)
               if not Path(p).is_file()]
    out.n_present = len(files) - len(missing)
    if missing:
        out.problems.append(f"{len(missing):,d} image files are missing, e.g. {missing[0]}; check --image-root "
                            f"(COCO's train2014/ and val2014/ must be under it)")
    gone = set(missing)
    present = [p for p in files if p not in gone] if decode else []
    for p in random.Random(seed).sample(present, min(decode, len(present))):
        try:
            load_image(p)
            out.n_decoded += 1
        except DataError as e:
            out.problems.append(str(e))
    return out
