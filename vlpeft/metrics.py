"""The two metrics of the study: CIDEr-D (captioning) via pycocoevalcap, VQA accuracy (official rules).

CIDEr: exactly the COCO caption evaluation — PTB tokenisation (Stanford CoreNLP 3.4.1, shipped inside
pycocoevalcap) of references and predictions, then `Cider().compute_score`. The score is on COCO's scale
(1.0 = "100 CIDEr").

VQA accuracy: the official rule, min(1, #humans that gave the answer / 3), averaged over the 10 leave-one-
annotator-out subsets, with the official answer normalisation (punctuation, number words → digits, articles,
contractions), applied only when the human answers disagree — as vqaEval.py does.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer import ptbtokenizer


class MetricError(RuntimeError):
    """A metric that cannot be computed; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------------
# CIDEr
def ptb_tokenize(captions: dict) -> dict:
    """{key: [str, …]} → {key: [tokenised str, …]}, as pycocoevalcap's PTBTokenizer does.

    Written by hand because PTBTokenizer writes its temporary file *next to its own source file*, which fails
    when site-packages is read-only (shared clusters, containers); here the file goes to the temp directory
    and the jar is named by its absolute path. One JVM start for the whole batch (~0.5 s each)."""
    if shutil.which("java") is None:
        raise MetricError("Java is required for CIDEr (pycocoevalcap's PTB tokenizer runs on the JVM) but `java` "
                          "is not on PATH. Install a JRE: `apt-get install default-jre` or `conda install openjdk`.")
    jar = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
    keys = [k for k, caps in captions.items() for _ in caps]
    text = "\n".join(c.replace("\n", " ") for caps in captions.values() for c in caps)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        proc = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                               "-lowerCase", f.name], capture_output=True)
    finally:
        os.remove(f.name)
    if proc.returncode != 0:
        raise MetricError(f"the PTB tokenizer (java) failed: {proc.stderr.decode(errors='replace')[-500:]}")
    lines = proc.stdout.decode().split("\n")
    out: dict = {k: [] for k in captions}
    for k, line in zip(keys, lines):
        out[k].append(" ".join(w for w in line.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS))
    return out


def cider(predictions: dict, references: dict) -> float:
    """Corpus CIDEr-D of `predictions` {id: caption} against `references` {id: [caption, …]}."""
    if not predictions:
        raise MetricError("no predictions to score")
    missing = set(references) ^ set(predictions)
    if missing:
        raise MetricError(f"predictions and references cover different ids, e.g. {sorted(missing, key=str)[:5]}")
    empty = [k for k, refs in references.items() if not refs]
    if empty:
        raise MetricError(f"empty reference list for ids {empty[:5]}")
    # one tokenizer call for both sides; keys are tagged so the two sets cannot collide
    both = ptb_tokenize({("gt", k): list(v) for k, v in references.items()}
                        | {("res", k): [predictions[k]] for k in predictions})
    gts = {k: both[("gt", k)] for k in references}
    res = {k: both[("res", k)] for k in predictions}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


# ---------------------------------------------------------------------------------------------------------
# VQA accuracy. The official evaluation code (github.com/GT-Vision-Lab/VQA, vqaEval.py) is Python 2, so its
# normalisation is re-written here by hand, table for table.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def _process_punctuation(text: str) -> str:
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or re.search(COMMA_STRIP, text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, re.UNICODE)


def _process_digit_article(text: str) -> str:
    words = []
    for w in text.lower().split():
        w = MANUAL_MAP.setdefault(w, w)
        if w not in ARTICLES:
            words.append(w)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(answer: str) -> str:
    """The official processing of an answer string (punctuation, then digits/articles/contractions)."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(answer))


def vqa_accuracy_one(prediction: str, answers: list[str]) -> float:
    """Official accuracy of one predicted answer against the human answers (10 in VQAv2)."""
    if not answers:
        raise MetricError("a question with no human answers")
    pred = prediction.replace("\n", " ").replace("\t", " ").strip()
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    if len(set(gts)) > 1:  # vqaEval.py normalises only when the humans disagree
        pred = normalize_answer(pred)
        gts = [normalize_answer(a) for a in gts]
    accs = []
    for i in range(len(gts)):  # leave annotator i out; min(1, matches among the others / 3)
        others = gts[:i] + gts[i + 1:]
        accs.append(min(1.0, sum(a == pred for a in others) / 3))
    return sum(accs) / len(accs)


def vqa_accuracy(predictions: dict, annotations: dict) -> float:
    """Mean official accuracy in [0, 1] of {question_id: answer} against {question_id: [human answers]}."""
    if not predictions:
        raise MetricError("no predictions to score")
    missing = set(annotations) ^ set(predictions)
    if missing:
        raise MetricError(f"predictions and annotations cover different question ids, e.g. {sorted(missing)[:5]}")
    return sum(vqa_accuracy_one(predictions[q], annotations[q]) for q in annotations) / len(annotations)
