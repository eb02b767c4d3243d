"""The synthetic shapes world: images, captions and VQA in the *real* MSCOCO / VQAv2 file formats.

The embedded study needs a vision-language world small enough for a 2-core CPU, yet rich enough that a
tiny BLIP does not saturate it (if every run reaches 100 %, no effect of data or parameter size can show).
Each image holds 1..`max_objects` objects (shape, colour, size, position); five reference captions per
image come from different templates and paraphrases (like COCO's five annotators); VQA questions of six
types (colour, shape, size, count, existence, position) carry ten human answers each, with a small rate
of annotator disagreement so VQA's soft accuracy matters. The questions are chosen, as VQAv2's were balanced,
so that the question alone does not give the answer: within every type (the first three words) the answers are
as even as the scenes allow, and the mix of types holds the best question-only guess near VQAv2's 0.31
(`data.question_prior`; `vlpeft world` prints it).

Everything is written in the formats the real loaders read (see `vlpeft.data`):

    <out>/annotations/dataset_coco.json                         Karpathy split file
    <out>/annotations/v2_OpenEnded_mscoco_<split>_questions.json  VQAv2 questions   (split: train2014, val2014)
    <out>/annotations/v2_mscoco_<split>_annotations.json          VQAv2 annotations
    <out>/annotations/dataset_pretrain.json                     pre-training image–caption corpus, Karpathy format
    <out>/annotations/pretrain_text.json                        pre-training text-only corpus ("sentences")
    <out>/images/{train2014,val2014,pretrain}/*.png

**The footing (what BERT gives BLIP).** BLIP's text towers start from BERT, which has produced every word of its
vocabulary in some context. The text-only corpus gives the tiny BLIP the same: declarative sentences about
random scenes (counts written as digits, "yes , …" / "no , …" statements, colours, sizes, positions) and
shuffled word sequences that together hold every word a downstream caption or answer uses — but never a
question, never "?", "question" or "answer", so never a question–answer pair. VQA stays inconsistent with
pre-training for the right reason: the format is new, the words are not.

**The consistency dial** (`consistency`, beyond the paper). How much of the downstream captioning pre-training
has seen, from 1 (today's world: every caption-training image, every caption in the downstream annotators'
style) to 0 (captioning as new to the model as VQA is). At level c each downstream training image enters the
pre-training corpus with probability c, and each pre-training caption is written in the downstream style
(the five annotators' templates and synonyms) with probability c, otherwise in a pre-training style of its
own (other templates, base words only). The downstream files — images, Karpathy captions, VQA — are the same
at every level (drawn first, from the same seed); only the pre-training corpus changes. Val/test images are
never pre-trained on.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError
from ..io import own, progress_bar, write_json
from ..records import question_type


# ---------------------------------------------------------------------------------------------------------
# The difficulty knobs, all in one place.
@dataclass
class WorldConfig:
    seed: int = 0
    image_size: int = 48           # pixels (square); the embedded BLIP's processor uses the same size
    max_objects: int = 3           # 1..max_objects objects per image
    n_train: int = 2000            # Karpathy 'train' images (+ restval below)
    n_restval: int = 200           # Karpathy 'restval' images: val2014 files folded into training
    n_val: int = 150               # Karpathy 'val' images (validation curves)
    n_test: int = 150              # Karpathy 'test' images (reported metric)
    n_pretrain_extra: int = 4000   # pre-training-only images, on top of the caption training images
    questions_per_image: int = 4   # VQA questions drawn per image (different types)
    disagreement: float = 0.1      # chance that one of the 10 VQA annotators gives another plausible answer
    noise: int = 12                # background pixel noise amplitude (0..255)
    consistency: float = 1.0       # the dial: how much of the downstream captioning pre-training has seen
    n_text: int = 3000             # sentences of the text-only pre-training corpus (the footing)


SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
SHAPE_PLURAL = {s: s + "s" for s in SHAPES} | {"cross": "crosses"}
SHAPE_SYNONYMS = {"circle": ["circle", "disc", "ring"], "square": ["square", "box"],
                  "triangle": ["triangle"], "diamond": ["diamond", "rhombus"], "cross": ["cross", "plus"]}
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230),
           "yellow": (230, 220, 40), "purple": (150, 50, 200), "cyan": (40, 210, 220)}
SIZES = {"small": 0.11, "large": 0.2}  # radius as a fraction of the image side
SIZE_SYNONYMS = {"small": ["small", "little", "tiny"], "large": ["large", "big", "huge"]}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six"]
REGIONS = ["left", "right", "top", "bottom"]
NEVER_IN_PRETRAINING = {"?", "question", "answer"}  # the VQA template's: no pre-training text is a question
CAPTIONS_PER_IMAGE = 5     # the "annotators" of `captions`, as COCO's five
WORLD_FORMAT = 2           # 2: the balanced VQA (questions from their own stream, after the scenes)


@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    x: float  # centre, in [0, 1]
    y: float


# ---------------------------------------------------------------------------------------------------------
# Scenes and images
def sample_scene(rng: random.Random, cfg: WorldConfig) -> list[Obj]:
    """1..max_objects objects at non-overlapping positions (rejection sampling)."""
    n = rng.randint(1, cfg.max_objects)
    objs: list[Obj] = []
    while len(objs) < n:
        size = rng.choice(list(SIZES))
        r = SIZES[size]
        x, y = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        if all((x - o.x) ** 2 + (y - o.y) ** 2 > (r + SIZES[o.size] + 0.02) ** 2 for o in objs):
            objs.append(Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), size, x, y))
    return objs


def draw_scene(objs: list[Obj], cfg: WorldConfig, rng: random.Random) -> Image.Image:
    s = cfg.image_size
    # grey speckle noise so the background is not a constant
    noise = np.random.default_rng(rng.getrandbits(32)).integers(0, cfg.noise + 1, (s, s), dtype=np.uint8)
    img = Image.fromarray(np.repeat(noise[:, :, None], 3, axis=2), "RGB")
    d = ImageDraw.Draw(img)
    for o in objs:
        cx, cy, r, col = o.x * s, o.y * s, SIZES[o.size] * s, COLOURS[o.colour]
        if o.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        elif o.shape == "square":
            d.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=col)
        elif o.shape == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=col)
        elif o.shape == "diamond":
            d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=col)
        else:  # cross
            w = r * 0.35
            d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=col)
            d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=col)
    return img


# ---------------------------------------------------------------------------------------------------------
# Captions: five "annotators", each with its own template and paraphrase choices
def _phrase(o: Obj, rng: random.Random, with_size: bool = True) -> str:
    size = rng.choice(SIZE_SYNONYMS[o.size]) + " " if with_size else ""
    return f"a {size}{o.colour} {rng.choice(SHAPE_SYNONYMS[o.shape])}"


def _relation(a: Obj, b: Obj) -> str:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(objs: list[Obj], rng: random.Random) -> list[str]:
    n = len(objs)
    shuffled = lambda: rng.sample(objs, n)  # noqa: E731 - each annotator lists objects in its own order
    count = NUMBER_WORDS[n] + (" shape" if n == 1 else " shapes")
    caps = [
        _join([_phrase(o, rng) for o in shuffled()]),
        "there is " + _join([_phrase(o, rng) for o in shuffled()]),
        f"{count} : " + _join([_phrase(o, rng, with_size=rng.random() < 0.5) for o in shuffled()]),
        "an image of " + _join([_phrase(o, rng) for o in shuffled()]) + " on a dark background",
    ]
    if n >= 2:
        a, b = rng.sample(objs, 2)
        caps.append(f"{_phrase(a, rng)} {_relation(a, b)} {_phrase(b, rng)}")
    else:
        o = objs[0]
        caps.append(f"a single {o.colour} {rng.choice(SHAPE_SYNONYMS[o.shape])} in the {_region(o)}")
    return caps


def pretrain_captions(objs: list[Obj], rng: random.Random, k: int = 5) -> list[str]:
    """The pre-training style: other templates than the downstream annotators', base words only (no synonyms,
    no articles, no relations), counts as digits."""
    n = len(objs)
    plain = lambda o, size=False: (f"{o.size} " if size else "") + f"{o.colour} {o.shape}"  # noqa: E731
    listed = lambda size=False: " , ".join(plain(o, size) for o in rng.sample(objs, n))  # noqa: E731
    styles = [lambda: f"objects : {listed()}",
              lambda: f"{n} {'item' if n == 1 else 'items'} shown : {listed(size=True)}",
              lambda: f"{plain(rng.choice(objs))} here",
              lambda: f"image with {listed()}",
              lambda: listed(size=True)]
    return [rng.choice(styles)() for _ in range(k)]


def text_corpus(rng: random.Random, n: int, cfg: "WorldConfig") -> list[str]:
    """The text-only corpus (the footing): declarative sentences about random scenes, and shuffled words."""
    words = [w for w in vocabulary() if w not in NEVER_IN_PRETRAINING]
    shuffled = rng.sample(words, len(words))
    out = [" ".join(shuffled[i:i + 8]) for i in range(0, len(shuffled), 8)]  # every word, by construction
    while len(out) < n:
        objs = sample_scene(rng, cfg)
        o, d = rng.choice(objs), rng.randint(0, 9)
        shape = rng.choice(SHAPE_SYNONYMS[o.shape])
        size = rng.choice(SIZE_SYNONYMS[o.size])
        other = rng.choice([c for c in COLOURS if c != o.colour])
        out.append(rng.choice([
            f"there are {len(objs)} objects",
            f"{d} {o.colour} {SHAPE_PLURAL[o.shape] if d != 1 else o.shape}",
            f"{sum(p.colour == o.colour for p in objs)} {o.colour} shapes and {rng.randint(0, 9)} "
            f"{SHAPE_PLURAL[o.shape]}",
            f"yes , this is a {size} {o.colour} {shape}",
            f"no , this is not a {other} {shape}",
            f"the color of the {shape} is {o.colour}",
            f"the size of the {o.colour} object is {o.size}",
            f"the {shape} is on the {_region(o)}",
            " ".join(rng.choices(words, k=rng.randint(5, 12))),          # every word, in some context
        ]))
    return out


def _region(o: Obj) -> str:
    if abs(o.x - 0.5) >= abs(o.y - 0.5):
        return "left" if o.x < 0.5 else "right"
    return "top" if o.y < 0.5 else "bottom"


# ---------------------------------------------------------------------------------------------------------
# VQA: every question an image can be asked, then a balanced choice among them (as VQAv2 was balanced)
# A question's type is its first three words (what the question alone tells a guesser). The mix of types is set so
# that the best question-only guess — the most frequent training answer of the type — scores about 0.31, as on
# VQAv2: under the official soft accuracy a binary type scores about 0.63 (half right, and a wrong guess still
# matches the ~10 % of annotators who disagree), so the two binary types get small shares.
TYPE_SHARES = {"what color is": 0.28, "what shape is": 0.24, "where is the": 0.22, "how many objects": 0.18,
               "is there a": 0.05, "what size is": 0.03}


def vqa_candidates(objs: list[Obj]) -> list[tuple[str, str, str]]:
    """Every (question, answer, answer_type) the scene answers unambiguously, for every colour and shape."""
    out = []
    shapes, colours = [o.shape for o in objs], [o.colour for o in objs]
    for o in objs:
        if shapes.count(o.shape) == 1:
            out.append((f"what color is the {o.shape} ?", o.colour, "other"))
        if colours.count(o.colour) == 1:
            out.append((f"what shape is the {o.colour} object ?", o.shape, "other"))
        if sum(p.colour == o.colour and p.shape == o.shape for p in objs) == 1:
            out.append((f"where is the {o.colour} {o.shape} ?", _region(o), "other"))
            out.append((f"what size is the {o.colour} {o.shape} ?", o.size, "other"))
    out.append(("how many objects are there ?", str(len(objs)), "number"))
    out += [(f"how many objects are {c} ?", str(colours.count(c)), "number") for c in COLOURS]
    out += [(f"how many objects are {SHAPE_PLURAL[s]} ?", str(shapes.count(s)), "number") for s in SHAPES]
    out += [(f"is there a {c} {s} ?", "yes" if (c, s) in set(zip(colours, shapes)) else "no", "yes/no")
            for c in COLOURS for s in SHAPES]
    return out


class Balancer:
    """Chooses each image's questions so that the types follow TYPE_SHARES and, within each type and each exact
    question, the answers are as even as the scenes allow (greedy: the candidate whose type is furthest below its
    share and whose answer is the rarest so far, ties broken at random)."""

    def __init__(self, rng: random.Random):
        self.rng, self.total = rng, 0
        self.by_share: dict[str, int] = {}
        self.by_type: dict[str, dict[str, int]] = {}
        self.by_question: dict[str, dict[str, int]] = {}

    def _cost(self, question: str, answer: str) -> tuple:
        t = question_type(question)
        share = TYPE_SHARES[t]
        deficit = self.by_share.get(t, 0) - share * self.total               # < 0: the type is short
        counts, q_counts = self.by_type.get(t, {}), self.by_question.get(question, {})
        rarity = counts.get(answer, 0) - sum(counts.values()) / max(1, len(counts))  # < 0: rare in its type
        q_rarity = q_counts.get(answer, 0) - sum(q_counts.values()) / max(1, len(q_counts))
        return deficit / (share * 100) + rarity / 10 + q_rarity / 5, self.rng.random()

    def choose(self, candidates: list[tuple[str, str, str]], k: int) -> list[tuple[str, str, str]]:
        chosen, left = [], list(candidates)
        for _ in range(min(k, len(left))):
            best = min(left, key=lambda c: self._cost(c[0], c[1]))
            left = [c for c in left if question_type(c[0]) != question_type(best[0])] or \
                [c for c in left if c is not best]                           # other types first
            chosen.append(best)
            for counts, key in ((self.by_type, question_type(best[0])), (self.by_question, best[0])):
                counts.setdefault(key, {})
                counts[key][best[1]] = counts[key].get(best[1], 0) + 1
            self.by_share[question_type(best[0])] = self.by_share.get(question_type(best[0]), 0) + 1
            self.total += 1
        return chosen


def _plausible_alternatives(answer: str, answer_type: str) -> list[str]:
    if answer_type == "yes/no":
        return ["no" if answer == "yes" else "yes"]
    if answer_type == "number":
        return [str(max(0, int(answer) + d)) for d in (-1, 1)]
    for group in (list(COLOURS), SHAPES, list(SIZES), REGIONS):
        if answer in group:
            return [g for g in group if g != answer]
    return [answer]


def ten_answers(answer: str, answer_type: str, rng: random.Random, disagreement: float) -> list[str]:
    alts = _plausible_alternatives(answer, answer_type)
    return [rng.choice(alts) if rng.random() < disagreement else answer for _ in range(10)]


# ---------------------------------------------------------------------------------------------------------
# Writing the world to disk in the real formats
def _coco_name(folder: str, image_id: int) -> str:
    return f"COCO_{folder}_{image_id:012d}.png"


def write_world(out: str | Path, cfg: WorldConfig | None = None, progress: bool = True) -> Path:
    """Write the whole world under `out`, deterministic from `cfg.seed`: the scenes (images, captions), then the
    balanced VQA and the pre-training corpora, each from its own random stream. Returns `out`."""
    cfg = cfg or WorldConfig()
    out = Path(out)
    ann = out / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    karpathy, pretrain = _draw_scenes(out, cfg, progress)
    write_json(ann / "dataset_coco.json", {"images": karpathy, "dataset": "coco"})
    write_json(ann / "dataset_pretrain.json", {"images": _pretraining_corpus(pretrain, cfg),
                                               "dataset": "shapes-pretrain", "consistency": cfg.consistency})
    write_json(ann / "pretrain_text.json", {"sentences": text_corpus(random.Random(f"{cfg.seed}-text"), cfg.n_text,
                                                                      cfg)})
    info = {"description": "vlpeft shapes world", "version": "2.0"}
    for split, (qs, anns) in _questions(karpathy, cfg).items():
        write_json(ann / f"v2_OpenEnded_mscoco_{split}_questions.json",
                   {"info": info, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": split,
                    "questions": qs})
        write_json(ann / f"v2_mscoco_{split}_annotations.json",
                   {"info": info, "data_type": "mscoco", "data_subtype": split, "annotations": anns})
    write_json(out / "world.json", world_record(cfg))  # written last: marks a complete world
    return out


def _draw_scenes(out: Path, cfg: WorldConfig, progress: bool) -> tuple[list[dict], list[dict]]:
    """Every image with its five captions, as Karpathy entries: (the downstream ones, the pre-training pool —
    the caption training images and the pre-training-only ones)."""
    rng = random.Random(cfg.seed)
    plan = ([("train", "train2014")] * cfg.n_train + [("restval", "val2014")] * cfg.n_restval   # (Karpathy split,
            + [("val", "val2014")] * cfg.n_val + [("test", "val2014")] * cfg.n_test           #  COCO folder)
            + [("pretrain", "pretrain")] * cfg.n_pretrain_extra)
    karpathy, pretrain = [], []
    for image_id, (split, folder) in enumerate(progress_bar(iterable=plan, desc="shapes world", disable=not progress,
                                                           leave=False), start=101):
        objs = sample_scene(rng, cfg)
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        fname = _coco_name(folder, image_id)
        draw_scene(objs, cfg, rng).save(out / "images" / folder / fname)
        entry = {"filepath": folder, "filename": fname, "cocoid": image_id, "imgid": image_id, "split": split,
                 "sentences": [{"raw": c, "tokens": c.split(), "imgid": image_id, "sentid": image_id * 10 + k}
                               for k, c in enumerate(captions(objs, rng))],
                 "objects": [dataclasses.asdict(o) for o in objs]}  # extra key: ground truth for inspection
        if split in ("train", "restval", "pretrain"):  # pre-training sees the caption *training* images only
            pretrain.append(entry | {"split": "train", "downstream": split != "pretrain"})
        if split != "pretrain":
            karpathy.append(entry)
    return karpathy, pretrain


def _questions(karpathy: list[dict], cfg: WorldConfig) -> dict[str, tuple[list, list]]:
    """The balanced VQA of the downstream images, from its own random stream after every scene is drawn (the
    balanced choice looks at the whole world): COCO folder → (questions, annotations) in VQAv2's format."""
    rng = random.Random(f"{cfg.seed}-vqa")
    balancer = Balancer(rng)
    vqa = {"train2014": ([], []), "val2014": ([], [])}
    question_id = 1000
    for entry in karpathy:
        objs, image_id = [Obj(**o) for o in entry["objects"]], entry["cocoid"]
        for q, a, atype in balancer.choose(vqa_candidates(objs), cfg.questions_per_image):
            question_id += 1
            answers = ten_answers(a, atype, rng, cfg.disagreement)
            qs, anns = vqa[entry["filepath"]]
            qs.append({"image_id": image_id, "question": q, "question_id": question_id})
            anns.append({"image_id": image_id, "question_id": question_id, "question_type": question_type(q),
                         "answer_type": atype, "multiple_choice_answer": max(set(answers), key=answers.count),
                         "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k + 1}
                                     for k, x in enumerate(answers)]})
    return vqa


def _pretraining_corpus(pool: list[dict], cfg: WorldConfig) -> list[dict]:
    """The image–caption pre-training corpus at the world's consistency level, from its own random stream (the
    downstream files never depend on the dial): each downstream training image kept with probability c, each
    caption in the downstream annotators' style with probability c, else in the pre-training style."""
    rng = random.Random(f"{cfg.seed}-pretrain-{cfg.consistency}")
    corpus = []
    for entry in pool:
        entry = dict(entry)
        if entry.pop("downstream") and not rng.random() < cfg.consistency:
            continue
        objs = [Obj(**o) for o in entry["objects"]]
        caps = [c if rng.random() < cfg.consistency else pretrain_captions(objs, rng, 1)[0]
                for c in (s["raw"] for s in entry["sentences"])]
        corpus.append(entry | {"sentences": [{"raw": c, "tokens": c.split(), "imgid": entry["cocoid"],
                                              "sentid": entry["cocoid"] * 10 + k} for k, c in enumerate(caps)]})
    return corpus


def world_record(cfg: WorldConfig) -> dict:
    """What identifies a world: its config and the generator's format (a world written by an older generator —
    before the balanced VQA, say — is another world, never reused)."""
    return dataclasses.asdict(cfg) | {"format": WORLD_FORMAT}


def check_world(cfg: WorldConfig) -> WorldConfig:
    """Refuse a world that cannot be drawn, naming the field (before anything is written)."""
    rules = {"n_train": 1, "n_val": 1, "n_test": 1, "n_restval": 0, "n_pretrain_extra": 0, "questions_per_image": 1,
             "n_text": 1, "noise": 0}
    for name, least in rules.items():
        if getattr(cfg, name) < least:
            raise ConfigError(f"--{name.replace('_', '-')} must be {least} or more, got {getattr(cfg, name)}")
    if not 8 <= cfg.image_size <= 1024:
        raise ConfigError(f"--image-size must be 8 … 1024 pixels, got {cfg.image_size}")
    if not 1 <= cfg.max_objects <= 4:
        raise ConfigError(f"--max-objects must be 1 … 4 (the scenes place them without overlap), got {cfg.max_objects}")
    for name in ("disagreement", "consistency"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"--{name} must be in [0, 1], got {getattr(cfg, name)}")
    return cfg


def ensure_world(out: str | Path, cfg: WorldConfig | None = None, progress: bool = True) -> Path:
    """Write the world unless a complete one of the same config is there (cached); refuse a folder holding
    anything else (`io.own`)."""
    cfg = check_world(cfg or WorldConfig())
    if not own(out, "world", world_record(cfg), "world.json"):
        write_world(out, cfg, progress)
    return Path(out)


def vocabulary() -> list[str]:
    """Every word the world can write in a caption, question or answer (for the embedded tokenizer)."""
    words = set(SHAPES) | set(SHAPE_PLURAL.values()) | set(COLOURS) | set(SIZES) | set(REGIONS)
    words |= {w for syn in SHAPE_SYNONYMS.values() for w in syn} | {w for s in SIZE_SYNONYMS.values() for w in s}
    words |= set(NUMBER_WORDS) | {str(i) for i in range(10)}
    words |= set("a an the there is are of in on to and image picture dark background single shape shapes "
                 "left right above below what color where how many objects object size yes no question answer "
                 "item items shown with here not this".split())
    return sorted(words) + [":", ",", "?", "."]
