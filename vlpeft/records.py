"""The annotation files' records, shared by every layout (`vlpeft.layouts`) and by the loaders of Table I's splits
(`vlpeft.data`): a JSON file read once per version, the caption and VQA records, the checks every file passes
(unique ids, required keys), and which Karpathy splits feed each split.
"""
from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .io import read_json


# ---------------------------------------------------------------------------------------------------------
# JSON files
@functools.lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int):
    """One parse per file version: a VQA run reads the Karpathy index and val2014 for several splits, and the
    real files are hundreds of MB. Callers only read the result."""
    return read_json(path, DataError, "annotation file", hint="; re-download or regenerate the file")


def load_json(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """An annotation file, parsed once per version (`io.read_json`), with the top-level keys it must have."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. Check --data-root (run `vlpeft world --out DIR` for the "
                        f"embedded world, or see the README for the real MSCOCO/VQAv2 layouts).")
    stat = path.stat()
    obj = _parse(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise DataError(f"{path}: missing top-level key(s) {missing}; is this the right file?")
    return obj


def no_duplicates(ids: list, path: Path, what: str) -> None:
    """Refuse a file in which one id names two entries (they would be merged or scored once, silently)."""
    twice = [i for i, n in Counter(ids).items() if n > 1]
    if twice:
        more = f" (and {len(twice) - 1} more)" if len(twice) > 1 else ""
        raise DataError(f"{path}: {what} {twice[0]!r} appears {Counter(ids)[twice[0]]} times{more}; ids must be "
                        f"unique — fix the file or drop the duplicates")


def require(entry: dict, keys: tuple[str, ...], path: Path, what: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DataError(f"{path}: {what} {json.dumps(entry)[:120]}… is missing key(s) {missing}")


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


def question_type(question: str) -> str:
    """The first three words of a question: the type a question-only guesser sees (VQAv2's `question_type`)."""
    return " ".join(question.lower().replace("?", " ").split()[:3])


KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",), "all": None}
VQA_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}
N_ANSWERS = 10  # VQAv2: ten human answers per question; the official accuracy is defined over ten
