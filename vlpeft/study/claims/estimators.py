"""Per-unit effects, computed from the tidy runs table: each returns an `Estimate` (one value per unit) or None
when there is nothing to estimate. Contrasts are named in advance: no maximum over methods or sizes enters."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ...catalog import PAPER_METHODS, PAPER_PEFT, family_methods
from ..results import complete, highest_consistency, reference_sizes, run_draws
from .judges import MIN_LEVELS, POINTS
from .stats import DRAW, Estimate

# The claims are the paper's: its five PEFT methods by name (catalog.PAPER_PEFT), by its two families; a method
# beyond them enters no claim (`prepare` leaves its runs out; the report shows them beside the paper's)
PEFT = list(PAPER_PEFT)
EMBEDDING = family_methods("embedding", paper=True)
LAYER = family_methods("layer", paper=True)
COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
N_METHODS = COUNT_WORDS[len(PEFT)]        # "the five PEFT methods", in the claims' words
FAMILIES = {"embedding": EMBEDDING, "layer": LAYER}


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Complete runs of the paper's methods (and full fine-tuning) with `pts` (score points), `pretrain_seed` and
    `consistency` filled, and `unit` (`stats`): the pre-training draw ("draw 1") when the runs come from several,
    else (pre-training seed, seed) ("0/1"). A method beyond the paper's enters no claim."""
    d = complete(df)
    d = d[d.method.isin(PAPER_METHODS)]
    d["pretrain_seed"] = run_draws(d)
    d["consistency"] = pd.to_numeric(d["consistency"], errors="coerce").fillna(1.0) if "consistency" in d else 1.0
    d["pts"] = POINTS * d["best_val"].astype(float)
    if "family" not in d:
        d["family"] = d["method"].map({m: f for f, ms in FAMILIES.items() for m in ms} | {"full": "full"})
    if "cost" not in d:
        d["cost"] = (d["n_train"] * d["trainable_params"] if {"n_train", "trainable_params"} <= set(d)
                     else math.nan)
    draws = d["pretrain_seed"].nunique() > 1
    d["unit"] = [f"{DRAW}{p:g}" if draws else f"{p:g}/{s:g}"
                 for p, s in zip(d["pretrain_seed"], d["seed"].astype(float))]
    # a canonical row order, so that sums (and so the last digits of every estimate) do not depend on the input's
    order = [c for c in ("task", "method", "tune_classifier", "size", "data_ratio", "consistency", "pretrain_seed",
                         "seed", "pts") if c in d]
    return d.sort_values(order, kind="stable", ignore_index=True)


def paper_setting(df: pd.DataFrame) -> pd.DataFrame:
    """The prepared runs of the paper's setting (`results.highest_consistency`)."""
    return highest_consistency(prepare(df))


def task_runs(d: pd.DataFrame, task: str, peft: bool = True) -> pd.DataFrame:
    d = d[d.task == task]
    return d[d.method.isin(PEFT)] if peft else d


def methods_in(d: pd.DataFrame) -> list[str]:
    """The PEFT methods present, in catalogue order."""
    return [m for m in PEFT if (d.method == m).any()]


def unit_slopes(d: pd.DataFrame, axis: str, by: list[str]) -> pd.Series:
    """Per unit: least-squares slope of the score (points) on log2(`axis`), one intercept per series `by`
    inside the unit (the pooled within-series slope); units spanning < MIN_LEVELS levels are dropped."""
    if d.empty:
        return pd.Series(dtype=float)
    x = np.log2(d[axis].astype(float))
    keys = [d["unit"]] + [d[c] for c in by]
    xc = x - x.groupby(keys).transform("mean")
    yc = d["pts"] - d["pts"].groupby(keys).transform("mean")
    sxy, sxx = (xc * yc).groupby(d["unit"]).sum(), (xc * xc).groupby(d["unit"]).sum()
    levels = d.groupby("unit")[axis].nunique()
    return (sxy / sxx.where(sxx > 1e-12)).where(levels >= MIN_LEVELS).dropna()


def ratio_change(g: pd.DataFrame) -> Estimate | None:
    """Claims 1, 4: per unit, the fitted change from the lowest to the highest data ratio of the grid."""
    if g.data_ratio.nunique() < MIN_LEVELS:
        return None
    span = math.log2(g.data_ratio.max() / g.data_ratio.min())
    s = unit_slopes(g, "data_ratio", ["tune_classifier", "size"])
    return Estimate(s * span) if len(s) else None


def size_profile(g: pd.DataFrame) -> pd.DataFrame | None:
    """Claims 2, 5: per unit (rows) the mean score at each size of the method's grid (columns, ascending), over
    the data ratios at which the unit has the whole grid (plain variants); None with < MIN_LEVELS sizes."""
    p = g[~g.tune_classifier]
    grid = sorted(p["size"].unique())
    if len(grid) < MIN_LEVELS:
        return None
    cells = p.groupby(["unit", "data_ratio", "size"])["pts"].mean().unstack("size").reindex(columns=grid).dropna()
    return cells.groupby(level="unit").mean() if len(cells) else None


def cls_gain(g: pd.DataFrame) -> Estimate | None:
    """Claims 3, 6: per unit, '+ classifier' minus plain over cells matched by (size, data ratio)."""
    cells = g.groupby(["unit", "size", "data_ratio", "tune_classifier"])["pts"].mean().unstack("tune_classifier")
    if True not in cells or False not in cells:
        return None
    diff = (cells[True] - cells[False]).dropna()
    return Estimate(diff.groupby(level="unit").mean()) if len(diff) else None


def reference_cells(d: pd.DataFrame, cls: bool = False) -> pd.DataFrame:
    """One row per (unit, data ratio): each PEFT method's score at its reference size (plain, or '+ classifier'
    when `cls`), 'full' (full fine-tuning), and the family scores 'embedding' and 'layer' (mean over the
    family's methods present in the task; NaN in a cell missing one of them)."""
    ref = reference_sizes(d)
    peft = d[d.method.isin(PEFT) & (d.tune_classifier == cls) & (d["size"] == d.method.map(ref))]
    tbl = peft.groupby(["unit", "data_ratio", "method"])["pts"].mean().unstack("method")
    full = d[d.method == "full"].groupby(["unit", "data_ratio"])["pts"].mean().rename("full")
    tbl = tbl.join(full, how="outer") if len(tbl) else full.to_frame()
    present = set(d.method)
    for fam, methods in FAMILIES.items():
        cols = [m for m in methods if m in present and m in tbl]
        if cols and all(m in tbl for m in methods if m in present):
            tbl[fam] = tbl[cols].mean(axis=1, skipna=False)
    return tbl


def contrast(tbl: pd.DataFrame, a: str, b: str) -> Estimate | None:
    """Per unit, the mean over its cells of column a minus column b (cells holding both)."""
    if a not in tbl or b not in tbl:
        return None
    diff = (tbl[a] - tbl[b]).dropna()
    return Estimate(diff.groupby(level="unit").mean()) if len(diff) else None


def cost_advantage(d: pd.DataFrame) -> Estimate | None:
    """Claim 9: per unit, the [layer] coefficient of score ~ 1 + log2(cost) + [layer] (plain PEFT runs)."""
    d = d[~d.tune_classifier & d.family.isin(["embedding", "layer"]) & (d.cost > 0)]
    out = {}
    for u, g in d.groupby("unit"):
        if min((g.family == f).sum() for f in ("embedding", "layer")) < 2:
            continue
        X = np.c_[np.ones(len(g)), np.log2(g.cost.to_numpy(float)), (g.family == "layer").to_numpy(float)]
        if np.linalg.matrix_rank(X) < 3:
            continue
        out[u] = np.linalg.lstsq(X, g.pts.to_numpy(float), rcond=None)[0][2]
    return Estimate(pd.Series(out, dtype=float)) if out else None
