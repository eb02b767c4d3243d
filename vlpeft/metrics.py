"""The two metrics of the study: CIDEr-D (captioning) and VQA accuracy, both as the official tools compute them.

CIDEr: the COCO caption evaluation — PTB tokenisation (Stanford CoreNLP 3.4.1, the jar shipped inside
pycocoevalcap) of references and predictions, then pycocoevalcap's `Cider().compute_score`. The score is on
COCO's scale (1.0 = "100 CIDEr").

VQA accuracy: the official rule of github.com/GT-Vision-Lab/VQA (vqaEval.py): the prediction is normalised
(punctuation, number words → digits, articles, contractions); the human answers only get the punctuation step,
and only when they disagree; then min(1, #humans that gave the answer / 3), averaged over the leave-one-
annotator-out subsets. Returned in [0, 1], not percent.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer import ptbtokenizer as _ptb

from .errors import MetricError


def _check_ids(predictions: dict, targets: dict, what: str) -> None:
    """Same ids on both sides, at least one: a silent mismatch would score a different test set."""
    if not predictions:
        raise MetricError("no predictions to score (the predictions dict is empty)")
    if predictions.keys() != targets.keys():
        no_pred = sorted(targets.keys() - predictions.keys(), key=repr)[:5]
        no_target = sorted(predictions.keys() - targets.keys(), key=repr)[:5]
        raise MetricError(f"predictions and {what} cover different ids: no prediction for {no_pred}, "
                          f"no {what} for {no_target} (at most 5 of each shown)")


# ---------------------------------------------------------------------------------------------------------
# CIDEr
# pycocoevalcap's PTBTokenizer writes its temporary file *next to its own source file* and runs java with that
# directory as cwd, which fails when site-packages is read-only (shared clusters, containers, conda envs owned
# by someone else). So the same java command is run here by hand: the same jar (left where pycocoevalcap put
# it, named by absolute path), the same flags, the same post-processing, with the file in the temp directory.
JAR = os.path.join(os.path.dirname(os.path.abspath(_ptb.__file__)), _ptb.STANFORD_CORENLP_3_4_1_JAR)
PUNCTUATIONS = _ptb.PUNCTUATIONS  # removed after tokenisation: "''", "'", "``", "`", "-LRB-", …, ".", "?", …
# Characters the tokenizer treats as line ends. Upstream replaces only "\n", so a caption holding "\r" (say)
# would shift every later caption onto the wrong image; replacing them all by a space changes no token.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\u2028\u2029]")


JAVA_MISSING = ("Java is required for CIDEr: pycocoevalcap's PTB tokenizer (Stanford CoreNLP) runs on the JVM, but "
                "`java` is not on PATH. Install a JRE (`apt-get install default-jre` or `conda install -c conda-forge "
                "openjdk`) and check `java -version`.")


def java_problem() -> str | None:
    """Why CIDEr cannot be computed here (None: it can) — checked before a captioning run does any work."""
    return JAVA_MISSING if shutil.which("java") is None else None


def ptb_tokenize(sentences: list[str]) -> list[str]:
    """Tokenise sentences as pycocoevalcap's PTBTokenizer does (lower-cased, punctuation removed), one JVM run."""
    if java_problem():
        raise MetricError(JAVA_MISSING)
    text = "\n".join(_LINE_BREAKS.sub(" ", s) for s in sentences)
    with tempfile.NamedTemporaryFile(delete=False, dir=tempfile.gettempdir(), suffix=".txt") as f:
        f.write(text.encode())
    try:
        proc = subprocess.run(["java", "-cp", JAR, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                               "-lowerCase", f.name], capture_output=True)
    except OSError as e:  # java vanished between which() and here, or is not executable
        raise MetricError(f"could not run java for CIDEr's PTB tokenizer: {e}") from e
    finally:
        os.remove(f.name)
    if proc.returncode != 0:
        raise MetricError(f"CIDEr's PTB tokenizer (java -cp {JAR}) failed with exit code {proc.returncode}:\n"
                          + proc.stderr.decode(errors="replace")[-2000:])
    lines = proc.stdout.decode().split("\n")
    # -preserveLines gives one output line per input line; anything else means captions and ids are misaligned
    if len(lines) < len(sentences) or any(lines[len(sentences):]):
        raise MetricError(f"CIDEr's PTB tokenizer returned {len(lines)} lines for {len(sentences)} sentences")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
            for line in lines[:len(sentences)]]


def cider(predictions: dict[int | str, str], references: dict[int | str, list[str]]) -> float:
    """Corpus CIDEr-D of `predictions` {id: caption} against `references` {id: [caption, …]} (1.0 = 100 CIDEr)."""
    _check_ids(predictions, references, "references")
    empty = [k for k, refs in references.items() if not refs]
    if empty:
        raise MetricError(f"empty reference list for ids {sorted(empty, key=repr)[:5]}: every image needs at "
                          "least one reference caption")
    bad = [k for k, p in predictions.items() if not isinstance(p, str)]
    if bad:
        raise MetricError(f"predictions must be strings; ids {sorted(bad, key=repr)[:5]} are not")
    ids = list(references)
    # references and predictions in one tokenizer call: each JVM start costs ~0.3-0.5 s
    flat = [r for k in ids for r in references[k]] + [predictions[k] for k in ids]
    tokens = iter(ptb_tokenize(flat))
    gts = {k: [next(tokens) for _ in references[k]] for k in ids}
    res = {k: [next(tokens)] for k in ids}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


# ---------------------------------------------------------------------------------------------------------
# VQA accuracy. The official evaluation code (vqaEval.py) is a class wired to its own VQA loader, written for
# Python 2 (later versions only swap `print`), so its answer processing is re-written here by hand, table for
# table, quirks included (see the comments).
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
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
}  # keys with capitals ("Im") can never match: the text is lower-cased first; kept as in the original
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ["a", "an", "the"]
# "(?!<=\d)" is a typo for the look-behind "(?<!\d)": as written it never fires, so every "." not followed by
# a digit is removed ("yes." → "yes", "3.5" kept, but "5." → "5"). Reproduced as is.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def _process_punctuation(text: str) -> str:
    out = text
    for p in PUNCT:
        # a mark touching a space, or any "digit,digit" in the answer ("3,000"): delete; else it splits words
        if (p + " " in text or " " + p in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # the original passes re.UNICODE (= 32) positionally, i.e. as `count`: at most 32 periods are removed
    return PERIOD_STRIP.sub("", out, count=32)


def _process_digit_article(text: str) -> str:
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def _clean(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(ans: str) -> str:
    """The official processing of a predicted answer: whitespace, punctuation, then digits/articles/contractions."""
    return _process_digit_article(_process_punctuation(_clean(ans)))


def vqa_accuracy_one(pred: str, answers: list[str]) -> float:
    """Official accuracy in [0, 1] of one predicted answer against the human answers (10 in VQA v2)."""
    if not answers:
        raise MetricError("a question with no human answers cannot be scored")
    pred = normalize_answer(pred)  # the prediction is always fully normalised
    # vqaEval.py touches the human answers only when they disagree, and then with the punctuation step alone
    # (no lower-casing, no number words, no articles): VQA's released answers are already in that form.
    if len(set(answers)) > 1:
        answers = [_process_punctuation(a) for a in answers]
    # leave annotator i out, credit min(1, matches among the others / 3), average over i
    accs = [min(1.0, sum(a == pred for j, a in enumerate(answers) if j != i) / 3) for i in range(len(answers))]
    return sum(accs) / len(accs)


def vqa_accuracy(predictions: dict[int, str], annotations: dict[int, list[str]]) -> float:
    """Mean official accuracy in [0, 1] of {question_id: answer} against {question_id: [human answers]}."""
    _check_ids(predictions, annotations, "annotations")
    return sum(vqa_accuracy_one(predictions[q], annotations[q]) for q in annotations) / len(annotations)
