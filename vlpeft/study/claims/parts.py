"""A claim is a short function registered with its number; its docstring *is* its rule. What it computes is a
list of declared parts — each an effect, the judge that marks it and the number k of parts that can refute the
claim — from which the claim's verdict, its evidence text, the units that would decide it and whether its units
(pre-training draws, or seeds) fall on both sides of a part's decision follow.

    @claim(4, "VQA (inconsistent): score rises with data ratio, for every method.")
    def vqa_rises_with_data(d):
        \"\"\"As claim 1 on VQA, judged gain with MIN_GAIN_VQA …\"\"\"
        …
        return result(4, statistic, value, verdict, parts), per_method_rows
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Callable

from .estimators import paper_setting
from .judges import KINDS, THRESHOLDS, Judge, Mark, Verdict
from .stats import MIN_UNITS, Estimate, unit_word

COLUMNS = ["claim", "text", "statistic", "value", "ci_low", "ci_high", "n", "unit", "verdict", "evidence",
           "value_unit", "units_needed", "split_parts"]
PART_COLUMNS = ["claim", "part", "estimate", "ci_low", "ci_high", "bonferroni_low", "bonferroni_high", "k",
                "n_units", "judge", "margin", "mark", "split"]
UNIT_COLUMNS = ["claim", "part", "unit", "estimate", "towards_yes"]   # each unit's own estimate of each part
PER_METHOD_COLUMNS = ["claim", "method", "statistic", "estimate", "ci_low", "ci_high", "n_units", "mark",
                      "units_needed", "detail"]


@dataclass
class Part:
    """One effect a claim rests on (or reports): its estimate, the judge that marks it, and k — the parts that
    can refute the claim, so that 'no' is read off the Bonferroni interval at level 1 − (1 − CI_LEVEL)/k.
    `label` is how the evidence reads the mark ("helps: yes"); a `mark` given is a composite one (claim 2's
    optimum, claim 5's monotone rise), kept as is."""
    name: str
    estimate: Estimate | None
    judge: Judge | None = None            # None: reported beside the claim, not judged
    k: int = 1
    label: str = ""
    mark: Mark | None = None

    def __post_init__(self):
        if self.mark is None:
            self.mark = self.judge.mark(self.estimate, self.k) if self.judge is not None else Mark.NOT_JUDGED

    @property
    def evidence(self) -> str:
        """`name: estimate (label: mark)`; a part reported but not judged shows its label alone."""
        shown = self.estimate if self.estimate is not None else "no matched runs"
        if self.label and self.mark == Mark.NOT_JUDGED:
            return f"{self.name}: {shown} ({self.label})"
        return f"{self.name}: {shown} ({self.label + ': ' if self.label else ''}{self.mark})"

    @property
    def units_needed(self):
        """Units that would decide this part at the measured spread (None unless it is unclear)."""
        if self.judge is None or self.mark != Mark.UNCLEAR:
            return None
        return self.judge.needed(self.estimate, self.k)

    def towards_yes(self) -> dict:
        """{unit: whether its own estimate lies on the side of the bound where the part reads yes} (judged parts)."""
        if self.judge is None or self.estimate is None:
            return {}
        kind, m = KINDS[self.judge.kind], self.judge.margin
        return {u: bool(kind.towards_yes(v, m)) for u, v in self.estimate.values.items()}

    @property
    def split(self) -> bool:
        """The units' own estimates fall on both sides of the bound that decides this part: with other units
        (other pre-training draws) the answer could be the other one."""
        return len(set(self.towards_yes().values())) > 1

    def unit_rows(self, claim) -> list[dict]:
        """Each unit's own estimate of this part, as rows of the units table (the forest plots' rows per draw)."""
        if self.estimate is None:
            return []
        side = self.towards_yes()
        return [{"claim": claim, "part": self.name, "unit": u, "estimate": v, "towards_yes": side.get(u)}
                for u, v in self.estimate.values.items()]

    def as_row(self, claim) -> dict:
        """This part as one row of the parts table (the forest plots): its interval, its margin and its mark."""
        e, j = self.estimate, self.judge
        ok = e is not None and e.n > 0
        blo, bhi = e.interval(self.k) if ok else (math.nan, math.nan)
        return {"claim": claim, "part": self.name, "estimate": e.est if ok else math.nan,
                "ci_low": e.lo if ok else math.nan, "ci_high": e.hi if ok else math.nan,
                "bonferroni_low": blo, "bonferroni_high": bhi, "k": self.k, "n_units": e.n if ok else 0,
                "judge": j.kind if j else "", "margin": j.margin if j else math.nan, "mark": str(self.mark),
                "split": self.split}

    def method_row(self, claim: int, method: str, statistic: str, detail: str = "") -> dict:
        """This part as one method's row of the per-method table."""
        e = self.estimate
        ok = e is not None and e.n > 0
        needed = self.units_needed
        return {"claim": claim, "method": method, "statistic": statistic, "estimate": e.est if ok else math.nan,
                "ci_low": e.lo if ok else math.nan, "ci_high": e.hi if ok else math.nan, "n_units": e.n if ok else 0,
                "mark": str(self.mark), "units_needed": math.nan if needed is None else float(needed),
                "detail": detail}


def unit_note(parts: list[Part]) -> tuple[str, float]:
    """The evidence's closing words and the claim's `units_needed`: too few units anywhere, or the most units
    (draws or seeds) that any unclear part would need at the measured unit-to-unit spread."""
    unit = units_of(parts)
    few = [p.estimate.n for p in parts if p.mark == Mark.TOO_FEW_UNITS]
    if few:
        return f" — an interval needs ≥ {MIN_UNITS} {unit}s (units); some parts have only {max(few)}", math.nan
    needs = [n for n in (p.units_needed for p in parts) if n is not None]
    if not needs:
        return "", math.nan
    most = max(needs)
    if most == math.inf:
        return f" — more than 1000 {unit}s would be needed to decide it at the measured spread", math.inf
    return f" — about {most} {unit}s would decide it at the measured {unit}-to-{unit} spread", float(most)


def units_of(parts) -> str:
    """What the parts' units are, "draw" or "seed" (`stats.unit_word`)."""
    return unit_word([u for p in parts if p.estimate is not None for u in p.estimate.values.index])


def evidence(parts: list[Part], sep: str = "; ") -> str:
    return sep.join(p.evidence for p in parts)


# ---------------------------------------------------------------------------------------------------------
# The registry
@dataclass(frozen=True)
class Claim:
    number: int
    text: str                                     # the paper's claim, in words
    evaluate: Callable = field(repr=False)       # prepared runs (paper setting) → (row, per-method rows)

    @property
    def rule(self) -> str:
        """The verdict rule: the function's docstring, with the thresholds filled in."""
        doc = textwrap.dedent(self.evaluate.__doc__ or "").strip()
        return " ".join(doc.split()).format(**THRESHOLDS)

    def __call__(self, df) -> dict:
        """The claim's row of `evaluate_claims` for a runs table (its unit: the study's, as there)."""
        d = paper_setting(df)
        row = self.evaluate(d)[0]
        return {k: v for k, v in row.items() if k != "parts"} | {"unit": unit_word(d["unit"])}


CLAIMS: dict[int, Claim] = {}


def claim(number: int, text: str):
    def register(fn):
        CLAIMS[number] = Claim(number, text, fn)
        return fn
    return register


def result(claim_number: int, statistic: str, value: Estimate | None, verdict: Verdict, text: str,
           needed: float = math.nan, value_unit: str = "score points", claim_text: str | None = None,
           parts: list[Part] = ()) -> dict:
    """One row of the claims table; `parts` (kept under "parts", not a column) are what its forest plot shows.
    `split_parts`: the judged parts whose units fall on both sides of their decision (`Part.split`). Its `unit`
    is the study's, set by `claim_tables` from `estimators.prepare`'s labels."""
    ok = value is not None and value.n > 0
    return {"claim": claim_number, "text": claim_text or CLAIMS[claim_number].text, "statistic": statistic,
            "value": value.est if ok else math.nan, "ci_low": value.lo if ok else math.nan,
            "ci_high": value.hi if ok else math.nan, "n": value.n if ok else 0,
            "verdict": str(verdict), "evidence": text,
            "value_unit": value_unit, "units_needed": needed if verdict == Verdict.INCONCLUSIVE else math.nan,
            "split_parts": "; ".join(p.name for p in parts if p.split), "parts": list(parts)}
