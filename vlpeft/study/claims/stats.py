"""The statistics under every claim: an effect measured once per unit of replication, its Student t interval,
and how many units would decide it.

The unit is the pre-training draw when the runs come from more than one pre-trained model of a world (each draw's
effect computed from its own runs: each cell averaged over the draw's fine-tuning seeds, then the effect, which is
the mean of its seeds' own effects when every seed ran every cell — tests/test_claims.py; reports/tiny/schedule.md
§7.3), and the seed when
they come from one (a seed fixes the training subset and the initialisation of every run made with it, so runs of
one seed are not independent). `estimators.prepare` labels each run's unit: "draw 2", or "0/1" (pre-training seed /
seed). Effects are in score points (100 × the metric). Everything here is deterministic (no resampling).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CI_LEVEL = 0.90           # two-sided; a 90% CI inside ±margin is TOST at α = 0.05
MIN_UNITS = 2             # a t interval over units needs ≥ 2 units (draws or seeds)
DRAW = "draw "            # a unit label that starts so is a pre-training draw


def unit_word(labels) -> str:
    """What the units behind these labels are: "draw" or "seed"."""
    return "draw" if any(str(u).startswith(DRAW) for u in labels) else "seed"


def t_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student t interval of the mean of `values` (one per unit); NaN with fewer than MIN_UNITS values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < MIN_UNITS:
        return math.nan, math.nan
    half = stats.t.ppf(1 - (1 - level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def units_needed(effect: float, sd: float, margin: float, level: float = CI_LEVEL, max_n: int = 1000):
    """Smallest number of units n ≥ 2 whose interval half-width t(level, n−1)·sd/√n is below |effect − margin|,
    i.e. that would decide a part whose true effect and unit-to-unit spread are the ones measured.
    math.inf when more than `max_n` would be needed (an effect on the bound is never decided); None when no
    spread is measured (fewer than 2 units)."""
    gap = abs(effect - margin)
    if not (np.isfinite(effect) and np.isfinite(margin) and np.isfinite(sd)):
        return None
    for n in range(MIN_UNITS, max_n + 1):
        if stats.t.ppf(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n) < gap:
            return n
    return math.inf


class Estimate:
    """An effect: one value per unit (index = unit label), its mean, sd and t interval."""

    def __init__(self, values: pd.Series):
        self.values = pd.Series(values, dtype=float).dropna()
        self.n = len(self.values)
        self.est = float(self.values.mean()) if self.n else math.nan
        self.sd = float(self.values.std(ddof=1)) if self.n >= MIN_UNITS else math.nan
        self.lo, self.hi = self.interval()

    @classmethod
    def exact(cls, value: float, n: int) -> "Estimate":
        """A value computed, not estimated over units (claim 11's share of parameters): no per-unit values, no
        spread, no interval; n counts what it was computed from."""
        e = cls(pd.Series(dtype=float))
        e.est, e.n = float(value), n
        return e

    def interval(self, k: int = 1) -> tuple[float, float]:
        """t interval at level 1 − (1 − CI_LEVEL)/k (Bonferroni over k parts)."""
        return t_interval(self.values.to_numpy(), 1 - (1 - CI_LEVEL) / max(k, 1))

    def __neg__(self) -> "Estimate":
        return Estimate(-self.values)

    def __sub__(self, other: "Estimate") -> "Estimate":
        return Estimate((self.values - other.values).dropna())  # paired by unit

    def __str__(self) -> str:
        if self.n < MIN_UNITS:
            return f"{self.est:+.2f} pt, n={self.n}"
        return f"{self.est:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}] pt, n={self.n}"


def mean_of(ests: list["Estimate | None"]) -> Estimate | None:
    """Per unit, the mean over parts (units holding every part)."""
    ests = [e for e in ests if e is not None and e.n]
    if not ests:
        return None
    return Estimate(pd.concat([e.values for e in ests], axis=1).mean(axis=1, skipna=False))
