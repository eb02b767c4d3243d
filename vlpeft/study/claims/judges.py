"""How one effect is judged against its margin, and how parts combine into a verdict. The margins are fixed
here, before any run, in score points (1 point = 0.01 of the metric)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from .stats import CI_LEVEL, MIN_UNITS, Estimate, seeds_needed

MIN_LEVELS = 3            # a trend needs ≥ 3 distinct data ratios / sizes / consistency levels
MIN_METHODS = 2           # a claim about "every method" needs ≥ 2 methods that could be evaluated
MIN_GAIN_CAPTION = 1.0    # CIDEr points: smallest rise / gain / advantage that counts on captioning
MIN_GAIN_VQA = 1.0        # accuracy points: the same on VQA
FLAT_CAPTION = 3.0        # CIDEr points: "flat" = lowest → highest data ratio change within ±3
COMPARABLE_CAPTION = 2.0  # CIDEr points: "comparable" (±) / "at least as well" (−) vs full fine-tuning
COMPARABLE_VQA = 2.0      # accuracy points: the same on VQA
LAG_VQA = 5.0             # accuracy points: "lags far behind" = more than 5 points below full fine-tuning
PROMPT_PCT = 0.16         # % of all parameters (paper §V-C)
DIAL_NEGLIGIBLE = 0.5     # CIDEr points per doubling of data: a change of the data-ratio slope below it is negligible
POINTS = 100.0            # score points per unit of metric

MIN_GAIN = {"caption": MIN_GAIN_CAPTION, "vqa": MIN_GAIN_VQA}
COMPARABLE = {"caption": COMPARABLE_CAPTION, "vqa": COMPARABLE_VQA}
THRESHOLDS = {"CI_LEVEL": CI_LEVEL, "MIN_UNITS": MIN_UNITS, "MIN_LEVELS": MIN_LEVELS, "MIN_METHODS": MIN_METHODS,
              "MIN_GAIN_CAPTION": MIN_GAIN_CAPTION, "MIN_GAIN_VQA": MIN_GAIN_VQA, "FLAT_CAPTION": FLAT_CAPTION,
              "COMPARABLE_CAPTION": COMPARABLE_CAPTION, "COMPARABLE_VQA": COMPARABLE_VQA, "LAG_VQA": LAG_VQA,
              "PROMPT_PCT": PROMPT_PCT, "DIAL_NEGLIGIBLE": DIAL_NEGLIGIBLE}


class _Text(str, Enum):
    """A str-valued enum that prints as its value (in f-strings, tables and CSV files)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Mark(_Text):
    """What one part's interval says about it."""
    YES = "yes"
    NO = "no"
    UNCLEAR = "unclear"
    TOO_FEW_SEEDS = "too few seeds"       # fewer than MIN_UNITS units: no interval
    TOO_FEW_POINTS = "too few points"     # nothing to estimate it from
    NOT_JUDGED = "not judged"             # reported beside the claim, not part of it

    @property
    def undecidable(self) -> bool:
        return self in (Mark.TOO_FEW_SEEDS, Mark.TOO_FEW_POINTS)


class Verdict(_Text):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Judge:
    """kind: gain (rises/helps/beats), equiv (flat/comparable, ±margin), noninf (at least as well, −margin),
    lag (far behind, below −margin)."""
    kind: str
    margin: float

    def mark(self, e: Estimate | None, k: int = 1) -> Mark:
        """'yes' from the CI_LEVEL interval; 'no' from the Bonferroni interval over the k parts that can refute."""
        if e is None or e.n == 0:
            return Mark.TOO_FEW_POINTS
        if e.n < MIN_UNITS:
            return Mark.TOO_FEW_SEEDS
        m, (lo, hi), (blo, bhi) = self.margin, (e.lo, e.hi), e.interval(k)
        yes, no = {"gain": (lo > 0 and e.est >= m, bhi < m),
                   "equiv": (-m < lo and hi < m, blo > m or bhi < -m),
                   "noninf": (lo > -m, bhi < -m),
                   "lag": (hi < -m, blo > -m)}[self.kind]
        return Mark.YES if yes else Mark.NO if no else Mark.UNCLEAR

    def boundary(self, e: Estimate) -> float:
        """The bound the interval must clear to decide the part, seen from the estimate."""
        m = self.margin
        if self.kind == "gain":
            return 0.0 if e.est >= m else m
        if self.kind == "equiv":
            return math.copysign(m, e.est)
        return -m

    def towards_yes(self, e: Estimate) -> bool:
        """Whether the estimate lies on the side of its boundary that decides 'yes'."""
        m = self.margin
        return {"gain": e.est >= m, "equiv": abs(e.est) < m, "noninf": e.est > -m, "lag": e.est < -m}[self.kind]

    def needed(self, e: Estimate | None, k: int = 1):
        """Units that would decide the part at the measured spread ('no' is judged at the Bonferroni level)."""
        if e is None or e.n < MIN_UNITS:
            return None
        level = CI_LEVEL if self.towards_yes(e) else 1 - (1 - CI_LEVEL) / max(k, 1)
        return seeds_needed(e.est, e.sd, self.boundary(e), level)


def gain(task: str) -> Judge:
    return Judge("gain", MIN_GAIN[task])


def every_method(marks: dict[str, Mark]) -> Verdict:
    """A claim about every method: refuted by one 'no'; supported when every method is 'yes' and at least
    MIN_METHODS could be evaluated."""
    if Mark.NO in marks.values():
        return Verdict.NOT_SUPPORTED
    evaluable = [m for m, v in marks.items() if v in (Mark.YES, Mark.NO, Mark.UNCLEAR)]
    if len(evaluable) >= MIN_METHODS and all(v == Mark.YES for v in marks.values()):
        return Verdict.SUPPORTED
    return Verdict.INCONCLUSIVE


def all_parts(marks: list[Mark]) -> Verdict:
    """A claim that needs every one of its parts (an intersection–union test)."""
    if Mark.NO in marks:
        return Verdict.NOT_SUPPORTED
    return Verdict.SUPPORTED if marks and all(v == Mark.YES for v in marks) else Verdict.INCONCLUSIVE
