"""CIDEr through pycocoevalcap (with our read-only-safe PTB tokenizer) and the official VQA accuracy.

Every CIDEr call starts a JVM (~0.3 s): the tables below are kept short, and the tokenizer table is run in a
single call.
"""
from __future__ import annotations

import builtins
import io
import os

import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer import ptbtokenizer

from vlpeft.metrics import MetricError, cider, normalize_answer, ptb_tokenize, vqa_accuracy, vqa_accuracy_one

PKG_DIR = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))

# four images, three lower-case, punctuation-free references each: PTB tokenisation is the identity on them
REFS = {
    1: ["a red circle above a blue square", "a red disc over a blue square", "red circle and blue square"],
    2: ["a small green triangle", "one green triangle on its own", "a tiny green triangle"],
    3: ["two yellow crosses side by side", "a pair of yellow crosses", "two yellow plus signs"],
    "img-4": ["a large purple star in the corner", "a purple star", "big purple star at the top left"],
}
FIRST_REF = {k: v[0] for k, v in REFS.items()}


# ---------------------------------------------------------------------------------------------------------
# PTB tokenizer: one JVM run for the whole table

TOKENIZE = [  # (caption, what pycocoevalcap's PTBTokenizer makes of it)
    ("A dog, running.", "a dog running"),
    # -lowerCase turns "-LRB-" into "-lrb-", which the (upper-case) punctuation list misses: COCO's own quirk
    ("The CAT sat (quietly) -- on the mat!", "the cat sat -lrb- quietly -rrb- on the mat"),
    ("it's a man's hat", "it 's a man 's hat"),
    ("don't stop", "do n't stop"),
    ("a \"quoted\" word; and: more?", "a quoted word and more"),
    ("", ""),
    ("a line\nbreak", "a line break"),
    ("a carriage\rreturn", "a carriage return"),  # upstream would split this caption in two
]


@pytest.fixture(scope="module")
def tokenized():
    return dict(zip([c for c, _ in TOKENIZE], ptb_tokenize([c for c, _ in TOKENIZE])))


@pytest.mark.parametrize("caption,expected", TOKENIZE)
def test_ptb_tokenize(tokenized, caption, expected):
    assert tokenized[caption] == expected


@pytest.mark.skipif(not os.access(PKG_DIR, os.W_OK), reason="upstream PTBTokenizer needs a writable site-packages")
def test_ptb_tokenize_equals_upstream():
    captions = [c for c, _ in TOKENIZE if "\r" not in c]
    upstream = ptbtokenizer.PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    assert ptb_tokenize(captions) == [upstream[i][0] for i in range(len(captions))]


# ---------------------------------------------------------------------------------------------------------
# CIDEr values

@pytest.mark.parametrize("predictions", [
    {1: "a red circle above a blue square", 2: "a green triangle", 3: "a red circle", "img-4": "purple"},
    {1: "blue square", 2: "a tiny green triangle on its own", 3: "two crosses", "img-4": "a star in the corner"},
])
def test_cider_equals_pycocoevalcap(predictions):
    # on identity-tokenised text pycocoevalcap's own Cider on the raw strings is the reference value
    expected, _ = Cider().compute_score(REFS, {k: [v] for k, v in predictions.items()})
    assert cider(predictions, REFS) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("predictions,check", [
    (FIRST_REF, lambda s: s > 1.0),                                    # a reference itself: "over 100 CIDEr"
    ({k: "zebra stripes during dusk" for k in REFS}, lambda s: s == 0.0),  # no n-gram in common
    # "a" is in every image's references: its idf, log(4/4), is 0
    ({k: "A Zebra, during DUSK!" for k in REFS}, lambda s: s == 0.0),
])
def test_cider_extremes(predictions, check):
    assert check(cider(predictions, REFS))


LADDER = [  # predictions for image 1, each closer to its references than the one before
    "zebra",
    "a blue circle",
    "a red circle above a square",
    "a red circle above a blue square",
]


def test_cider_increases_as_prediction_approaches_references():
    scores = [cider(FIRST_REF | {1: p}, REFS) for p in LADDER]
    assert scores == sorted(scores) and len(set(scores)) == len(scores), scores


# ---------------------------------------------------------------------------------------------------------
# CIDEr environment: read-only site-packages, no java, failing java

@pytest.fixture
def read_only_pycocoevalcap(monkeypatch):
    """Refuse every file creation inside pycocoevalcap's tokenizer folder, as a read-only mount would."""
    real_os_open, real_open = os.open, builtins.open

    def inside(path) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and \
            os.path.abspath(os.fsdecode(path)).startswith(PKG_DIR + os.sep)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise PermissionError(30, "Read-only file system", os.fsdecode(path))
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+") and inside(file):
            raise PermissionError(30, "Read-only file system", os.fsdecode(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)  # tempfile creates its files through os.open
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


def test_cider_works_with_read_only_site_packages(read_only_pycocoevalcap):
    with pytest.raises(PermissionError):  # upstream writes its temp file next to its own source: fails
        ptbtokenizer.PTBTokenizer().tokenize({1: [{"caption": "a red circle"}]})
    assert cider(FIRST_REF, REFS) > 1.0


def test_cider_without_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java anywhere
    with pytest.raises(MetricError, match="Java is required") as err:
        cider({1: "a dog"}, {1: ["a dog"]})
    assert "apt-get install default-jre" in str(err.value)


def test_cider_when_java_fails(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'Error: could not find or load main class' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetricError, match="could not find or load main class"):
        cider({1: "a dog"}, {1: ["a dog"]})


@pytest.mark.parametrize("predictions,references,match", [
    ({1: "a"}, {1: ["a"], 2: ["b"]}, r"different ids: no prediction for \[2\]"),
    ({1: "a", "x": "b"}, {1: ["a"]}, r"no references for \['x'\]"),
    ({}, {}, "no predictions"),
    ({}, {1: ["a"]}, "no predictions"),
    ({1: "a", 2: "b"}, {1: ["a"], 2: []}, r"empty reference list for ids \[2\]"),
    ({1: None}, {1: ["a"]}, "must be strings"),
])
def test_cider_bad_input(predictions, references, match):
    with pytest.raises(MetricError, match=match):
        cider(predictions, references)


# ---------------------------------------------------------------------------------------------------------
# VQA: the official normalisation (vqaEval.py's processPunctuation + processDigitArticle)

@pytest.mark.parametrize("raw,normalised", [
    ("two", "2"), ("Ten", "10"), ("none", "0"), ("one", "1"),            # number words → digits
    ("a dog", "dog"), ("the cat", "cat"), ("an apple", "apple"),        # articles dropped
    ("dont", "don't"), ("isnt", "isn't"), ("it's", "it's"),              # contractions restored / kept
    ("yes.", "yes"), ("yes!", "yes"), ("what's up?", "what's up"),
    ("3.5", "3.5"), ("5.", "5"), ("a.m.", "am"),                         # "." kept only before a digit
    ("3,000", "3000"),        # a digit,digit comma makes every mark vanish (not become a space)
    ("red,blue", "red blue"), ("red, blue", "red blue"), ("x/y", "x y"),
    ("(yes)", "yes"), ("black and white", "black and white"), ("  Red\n", "red"), ("\tno\t", "no"),
])
def test_normalize_answer(raw, normalised):
    assert normalize_answer(raw) == normalised


def agree(answer: str, k: int, other: str = "blue") -> list[str]:
    """Ten human answers, k of them `answer`."""
    return [answer] * k + [other] * (10 - k)


@pytest.mark.parametrize("pred,answers,acc", [
    # leave-one-out over the 10 annotators, min(1, matches among the other 9 / 3)
    ("red", agree("red", 0), 0.0),
    ("red", agree("red", 1), 0.3),    # 9 subsets hold it once (1/3), 1 does not:   9/3 / 10
    ("red", agree("red", 2), 0.6),    # 8 subsets hold both (2/3), 2 hold one (1/3): (16/3 + 2/3) / 10
    ("red", agree("red", 3), 0.9),    # 7 subsets hold three (1), 3 hold two (2/3):  (7 + 2) / 10
    ("red", agree("red", 4), 1.0),    # every subset holds at least three
    ("red", agree("red", 10), 1.0),
    ("red", ["red"] * 3, 2 / 3),      # fewer annotators: each subset of 2 holds two
    ("red", ["red"], 0.0),            # a lone annotator leaves nobody to agree with
    # the prediction is always normalised ...
    ("Red.", agree("red", 10), 1.0),
    ("two", agree("2", 5, "3"), 1.0),
    ("the dog", agree("dog", 3), 0.9),
    # ... the humans only when they disagree, and only for punctuation (no case, numbers, articles)
    ("2", ["Two"] * 10, 0.0),
    ("two", ["two"] * 10, 0.0),       # prediction becomes "2", the humans' "two" stays
    ("yes", ["yes."] * 10, 0.0),      # agreeing humans are not touched
    ("yes", agree("yes.", 4, "no"), 1.0),  # disagreeing ones lose their "."
    ("two", agree("two", 9, "2"), 0.3),    # "two" is not mapped on the human side: one "2" matches
    ("yes", agree("Yes", 5, "no"), 0.0),   # nor lower-cased
    ("dog", agree("a dog", 5, "cat"), 0.0),  # nor stripped of articles
])
def test_vqa_accuracy_one(pred, answers, acc):
    assert vqa_accuracy_one(pred, answers) == pytest.approx(acc, abs=1e-12)


@pytest.mark.parametrize("predictions,annotations,acc", [
    ({1: "red", 2: "no"}, {1: agree("red", 10), 2: agree("yes", 10)}, 0.5),
    ({1: "red", 2: "red", 3: "two"}, {1: agree("red", 1), 2: agree("red", 2), 3: agree("2", 10)}, 1.9 / 3),
    ({"q": "yes"}, {"q": agree("yes", 3, "no")}, 0.9),
])
def test_vqa_accuracy(predictions, annotations, acc):
    assert vqa_accuracy(predictions, annotations) == pytest.approx(acc, abs=1e-12)


@pytest.mark.parametrize("predictions,annotations,match", [
    ({1: "a"}, {2: ["a"]}, r"different ids: no prediction for \[2\], no annotations for \[1\]"),
    ({}, {}, "no predictions"),
    ({}, {1: ["a"]}, "no predictions"),
    ({1: "a"}, {1: []}, "no human answers"),
])
def test_vqa_accuracy_bad_input(predictions, annotations, match):
    with pytest.raises(MetricError, match=match):
        vqa_accuracy(predictions, annotations)
