"""The consistency dial (beyond the paper): the paper explains its split by consistency with pre-training; the
embedded world varies it, and this module judges the prediction declared in advance."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .estimators import methods_in, prepare, size_profile, task_runs, unit_slopes
from .judges import DIAL_NEGLIGIBLE, MIN_LEVELS, Judge, Mark, Verdict, gain
from .param_size import monotone, optimum
from .parts import Part, result, unit_note
from .stats import Estimate, unit_word

TEXT = ("Consistency dial (declared in advance): the captioning data-ratio slope rises as consistency with "
        "pre-training falls, and the size effect turns monotone.")
STATISTIC = "caption data-ratio slope at the lowest − at the highest consistency (points per doubling)"
UNIT = "score points per doubling"


def dial_slopes(df: pd.DataFrame, prepared: bool = False) -> pd.DataFrame:
    """The caption data-ratio slope (CIDEr points per doubling of data) of every unit at every consistency
    level: a units × levels table (what the dial verdict and its figure are made of)."""
    d = df if prepared else prepare(df)
    d = d[d.task == "caption"]
    levels = sorted(float(c) for c in d.consistency.unique())
    return pd.DataFrame({c: unit_slopes(d[d.consistency == c], "data_ratio", ["method", "tune_classifier", "size"])
                         for c in levels})


def _size_marks(d: pd.DataFrame) -> str:
    """Secondary evidence at one level: claim 5's monotone rise and claim 2's optimum, per caption method."""
    d, judge = task_runs(d, "caption"), gain("caption")
    methods = [m for m in methods_in(d) if size_profile(d[d.method == m]) is not None]
    if not methods:
        return "no size grid"
    mono = {m: monotone(d[d.method == m], judge, len(methods))[2] for m in methods}
    opt = {m: optimum(d[d.method == m], judge, len(methods))[2] for m in methods}
    return (f"monotone rise in {sum(v == Mark.YES for v in mono.values())}/{len(methods)} methods "
            f"({', '.join(f'{m} {v}' for m, v in mono.items())}), interior optimum in "
            f"{sum(v == Mark.YES for v in opt.values())}/{len(methods)}")


def dial_verdict(df: pd.DataFrame, with_parts: bool = False) -> dict:
    """Per consistency level and unit (the pre-training draw; `stats`): the caption data-ratio slope in CIDEr points per
    doubling of data (least squares in log2(ratio), one intercept per series (method, variant, size), all
    caption runs). Per unit with ≥ {MIN_LEVELS} levels: the line of slope against level; the statistic is its
    fall over the level range, slope(lowest level) − slope(highest level), from that line. *Supported* when
    lo > 0 and the estimate ≥ DIAL_NEGLIGIBLE = {DIAL_NEGLIGIBLE:g}; *not supported* when hi < {DIAL_NEGLIGIBLE:g}
    (any rise is negligible, or the slope falls); inconclusive otherwise, with fewer than {MIN_LEVELS} levels,
    or fewer than {MIN_UNITS} units. Secondary (evidence only): at the lowest and the highest level, how many
    methods show claim 5's monotone rise and claim 2's interior optimum on captioning."""
    row = _dial(df)
    return row if with_parts else {k: v for k, v in row.items() if k != "parts"}


def _dial(df: pd.DataFrame) -> dict:
    d = prepare(df)
    d = d[d.task == "caption"]
    levels = sorted(float(c) for c in d.consistency.unique())
    if len(levels) < MIN_LEVELS:
        return result(0, STATISTIC, None, Verdict.INCONCLUSIVE,
                      f"{len(levels)} consistency level(s) {levels}; the trend needs ≥ {MIN_LEVELS}",
                      value_unit=UNIT, claim_text=TEXT) | {"levels": levels, "unit": unit_word(d["unit"])}
    slopes = dial_slopes(d, prepared=True)  # units × levels, points per doubling
    span = levels[-1] - levels[0]
    trend = {}
    for u, row in slopes.iterrows():
        row = row.dropna()
        if len(row) >= MIN_LEVELS:
            x = np.asarray(row.index, dtype=float)
            trend[u] = -np.polyfit(x, row.to_numpy(float), 1)[0] * span
    fall = Part("fall over the range", Estimate(pd.Series(trend, dtype=float)), Judge("gain", DIAL_NEGLIGIBLE))
    verdict = {Mark.YES: Verdict.SUPPORTED, Mark.NO: Verdict.NOT_SUPPORTED}.get(fall.mark, Verdict.INCONCLUSIVE)
    per_level = "; ".join(f"consistency {c:g}: {Estimate(slopes[c])}" for c in levels)
    note, needed = unit_note([fall])
    size = "; ".join(f"consistency {c:g}: {_size_marks(d[d.consistency == c])}" for c in (levels[0], levels[-1]))
    text = (f"ratio slope per level (points per doubling): {per_level}; fall over the range {fall.estimate} "
            f"({fall.mark}){note}. Secondary, size effect — {size}")
    return result(0, STATISTIC, fall.estimate, verdict, text, needed, value_unit=UNIT,
                  claim_text=TEXT, parts=[fall]) | {"levels": levels, "unit": unit_word(d["unit"])}
