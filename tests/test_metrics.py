"""CIDEr through pycocoevalcap (with our read-only-safe tokenizer) and the official VQA accuracy."""
from __future__ import annotations

import pytest
from pycocoevalcap.cider.cider import Cider

from vlpeft import metrics
from vlpeft.metrics import MetricError, cider, normalize_answer, vqa_accuracy, vqa_accuracy_one

REFS = {1: ["a red circle and a blue square", "there is a red circle", "a blue box and a red disc"],
        2: ["a small green triangle", "one shape a green triangle", "a tiny green triangle"],
        3: ["two yellow crosses", "a yellow cross and a yellow plus", "two shapes with yellow crosses"]}


def test_cider_matches_pycocoevalcap_and_orders_predictions():
    # lower-case, punctuation-free text: PTB tokenisation is the identity, so pycocoevalcap's Cider on the raw
    # strings must give exactly our score
    preds = {1: "a red circle and a blue square", 2: "a green triangle", 3: "a red circle"}
    expected, _ = Cider().compute_score(REFS, {k: [v] for k, v in preds.items()})
    assert cider(preds, REFS) == pytest.approx(expected, abs=1e-9)
    perfect = cider({k: v[0] for k, v in REFS.items()}, REFS)
    nothing = cider({1: "zebra", 2: "zebra", 3: "zebra"}, REFS)
    assert perfect > 1.0 and nothing == 0.0 and perfect > expected > nothing


def test_cider_works_with_read_only_site_packages(monkeypatch):
    import tempfile
    from pycocoevalcap.tokenizer import ptbtokenizer
    pkg = ptbtokenizer.__file__.rsplit("/", 1)[0]
    real = tempfile.NamedTemporaryFile

    def read_only(*args, **kwargs):  # any temp file inside the installed package is refused, as on a RO mount
        if str(kwargs.get("dir", "")).startswith(pkg):
            raise PermissionError(f"read-only file system: {pkg}")
        return real(*args, **kwargs)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(PermissionError):  # upstream's tokenizer writes next to itself
        ptbtokenizer.PTBTokenizer().tokenize({1: [{"caption": "a b"}]})
    assert cider({k: v[0] for k, v in REFS.items()}, REFS) > 1.0


def test_cider_without_java(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.raises(MetricError, match="Java is required"):
        cider({1: "a"}, {1: ["a"]})


@pytest.mark.parametrize("preds,refs,match", [
    ({1: "a"}, {1: ["a"], 2: ["b"]}, "different ids"),
    ({}, {}, "no predictions"),
    ({1: "a"}, {1: []}, "empty reference list"),
])
def test_cider_bad_input(preds, refs, match):
    with pytest.raises(MetricError, match=match):
        cider(preds, refs)


@pytest.mark.parametrize("raw,normalised", [
    ("two", "2"), ("Ten", "10"), ("none", "0"), ("a dog", "dog"), ("the cat", "cat"), ("dont", "don't"),
    ("yes.", "yes"), ("yes!", "yes"), ("isnt", "isn't"), ("3,000", "3000"), ("black and white", "black and white"),
    ("  red\n", "red"),
])
def test_official_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


def ten(answer, k, other="blue"):
    return [answer] * k + [other] * (10 - k)


@pytest.mark.parametrize("pred,answers,acc", [
    ("red", ten("red", 0), 0.0),
    ("red", ten("red", 1), 0.3),              # 9 subsets hold it once (1/3), one does not
    ("red", ten("red", 2), 0.6),              # 8 × 2/3 + 2 × 1/3, over 10
    ("red", ten("red", 3), 0.9),              # 7 × 1 + 3 × 2/3, over 10
    ("red", ten("red", 4), 1.0),
    ("red", ten("red", 10), 1.0),
    ("two", ten("2", 5), 1.0),                # humans disagree: both sides normalised
    ("Two", ["two"] * 10, 0.0),               # humans agree: no normalisation (vqaEval.py), so no match
])
def test_vqa_accuracy_cases(pred, answers, acc):
    assert vqa_accuracy_one(pred, answers) == pytest.approx(acc)


def test_vqa_accuracy_mean_and_errors():
    assert vqa_accuracy({1: "red", 2: "no"}, {1: ten("red", 10), 2: ten("yes", 10)}) == pytest.approx(0.5)
    with pytest.raises(MetricError, match="different question ids"):
        vqa_accuracy({1: "a"}, {2: ["a"]})
    with pytest.raises(MetricError, match="no predictions"):
        vqa_accuracy({}, {})
