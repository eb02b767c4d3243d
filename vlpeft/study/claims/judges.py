"""How one effect is judged against its margin, and how parts combine into a verdict. The margins are fixed
here, before any run, in score points (1 point = 0.01 of the metric).

    Judge("equiv", FLAT_CAPTION).mark(estimate, k)    # yes / no / unclear / too few units / too few points
    KINDS["equiv"]                                    # a kind of judge, whole: its marks, rule, words, yes-region

Each kind of judge (gain, equiv, noninf, lag) is one entry of KINDS: the verdicts (`Judge`), the verdict-rules
page (`claims.VERDICT_RULES`) and the forest plots (`figures.fig_forest`) all read it there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from .stats import CI_LEVEL, MIN_UNITS, Estimate, units_needed

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
    TOO_FEW_UNITS = "too few units"       # fewer than MIN_UNITS units (draws or seeds): no interval
    TOO_FEW_POINTS = "too few points"     # nothing to estimate it from
    NOT_JUDGED = "not judged"             # reported beside the claim, not part of it

    @property
    def undecidable(self) -> bool:
        return self in (Mark.TOO_FEW_UNITS, Mark.TOO_FEW_POINTS)


class Verdict(_Text):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive"


# ---------------------------------------------------------------------------------------------------------
# The kinds of judge, each in one place: how it marks an effect, its rule in words (the verdict-rules page), and
# what a forest plot draws for it. A new kind is one more entry of KINDS; the claims and the figures read it there.
@dataclass(frozen=True)
class JudgeKind:
    """One kind of judge. With e the estimate, [lo, hi] its CI_LEVEL interval, [blo, bhi] its Bonferroni interval
    and m the margin: `yes(e, lo, hi, m)` and `no(blo, bhi, m)` mark the effect; `towards_yes(e, m)` and
    `boundary(e, m)` name the bound that would decide it (the units that would); `yes_region(m, lo, hi)` is where
    the interval means 'yes' on a plot spanning lo–hi, and `margin_lines(m)` where the plot dashes the margin."""
    name: str                 # the parts table's `judge`
    words: str                # how a forest plot names it
    rule: str                 # the rule as the verdict-rules page lists it (Markdown; a new line, indented two)
    yes: Callable[..., bool]
    no: Callable[..., bool]
    towards_yes: Callable[..., bool]
    boundary: Callable[..., float]
    yes_region: Callable[..., tuple[float, float]]
    margin_lines: Callable[..., tuple[float | None, float | None]]

    def label(self, margin: float) -> str:
        """The rule as a forest plot's tooltip reads it: the words, and the margin."""
        return self.words + (f", margin {margin:g}" if not math.isnan(margin) else "")


KINDS = {k.name: k for k in (
    JudgeKind("gain", "rises / helps / beats",
              "*rises / helps / beats* (gain): **yes** when lo > 0 and e ≥ m (= MIN_GAIN of the task); **no** when "
              "hi < m.",
              yes=lambda e, lo, hi, m: lo > 0 and e >= m, no=lambda blo, bhi, m: bhi < m,
              towards_yes=lambda e, m: e >= m, boundary=lambda e, m: 0.0 if e >= m else m,
              yes_region=lambda m, lo, hi: (0.0, hi), margin_lines=lambda m: (m, None)),
    JudgeKind("equiv", "flat / comparable",
              "*flat / comparable* (two-sided equivalence, TOST): **yes** when −m < lo and hi < m; **no** when the "
              "interval lies\n  wholly outside ±m (lo > m or hi < −m).",
              yes=lambda e, lo, hi, m: -m < lo and hi < m, no=lambda blo, bhi, m: blo > m or bhi < -m,
              towards_yes=lambda e, m: abs(e) < m, boundary=lambda e, m: math.copysign(m, e),
              yes_region=lambda m, lo, hi: (-m, m), margin_lines=lambda m: (m, -m)),
    JudgeKind("noninf", "at least as well",
              "*at least as well / up to full* (non-inferiority): **yes** when lo > −m; **no** when hi < −m.",
              yes=lambda e, lo, hi, m: lo > -m, no=lambda blo, bhi, m: bhi < -m,
              towards_yes=lambda e, m: e > -m, boundary=lambda e, m: -m,
              yes_region=lambda m, lo, hi: (-m, hi), margin_lines=lambda m: (-m, None)),
    JudgeKind("lag", "lags far behind",
              "*lags far behind*: **yes** when hi < −m; **no** when lo > −m.",
              yes=lambda e, lo, hi, m: hi < -m, no=lambda blo, bhi, m: blo > -m,
              towards_yes=lambda e, m: e < -m, boundary=lambda e, m: -m,
              yes_region=lambda m, lo, hi: (lo, -m), margin_lines=lambda m: (-m, None)),
)}
REPORTED = "reported, not judged"   # a part shown beside a claim without a judge


@dataclass(frozen=True)
class Judge:
    """A kind of judge (a name in KINDS: gain, equiv, noninf, lag) with its margin in score points."""
    kind: str
    margin: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"judge kind {self.kind!r}: not one of {', '.join(KINDS)}")

    def mark(self, e: Estimate | None, k: int = 1) -> Mark:
        """'yes' from the CI_LEVEL interval; 'no' from the Bonferroni interval over the k parts that can refute."""
        if e is None or e.n == 0:
            return Mark.TOO_FEW_POINTS
        if e.n < MIN_UNITS:
            return Mark.TOO_FEW_UNITS
        kind, m = KINDS[self.kind], self.margin
        if kind.yes(e.est, e.lo, e.hi, m):
            return Mark.YES
        return Mark.NO if kind.no(*e.interval(k), m) else Mark.UNCLEAR

    def needed(self, e: Estimate | None, k: int = 1):
        """Units that would decide the part at the measured spread ('no' is judged at the Bonferroni level)."""
        if e is None or e.n < MIN_UNITS:
            return None
        kind = KINDS[self.kind]
        level = CI_LEVEL if kind.towards_yes(e.est, self.margin) else 1 - (1 - CI_LEVEL) / max(k, 1)
        return units_needed(e.est, e.sd, kind.boundary(e.est, self.margin), level)


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
