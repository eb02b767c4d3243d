"""Synthetic studies whose answer is known, shared by the claims, results, figures and report tests.

A scenario is a score function per task, `score(method, size_index, classifier, data_ratio)` (metric units:
CIDEr ~1, accuracy ~0.5), laid out on the tiny preset's design (3 data ratios at the middle size with and without
"+ classifier", 3 sizes at the full data, full fine-tuning at every ratio) over several seeds, with seed-level
random effects (an offset per seed and one per (seed, data ratio), shared by every run of that seed / subset) and
run noise. `paper_*` behave as the paper says, so every claim must come out supported.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vlpeft.catalog import family_of, variant

FAMILY = {m: family_of(m) for m in ("full", "prompt", "prefix", "lora", "serial_adapter", "parallel_adapter")}
SIZES = {"prompt": [2, 8, 32], "prefix": [2, 8, 32], "lora": [2, 8, 32], "serial_adapter": [4, 16, 64],
         "parallel_adapter": [4, 16, 64]}
PARAMS_PER_SIZE = {"prompt": 50, "prefix": 1000, "lora": 3000, "serial_adapter": 2000, "parallel_adapter": 2000}
CLS_PARAMS, FULL_PARAMS, ALL_PARAMS, N_FULL_DATA = 50_000, 2_000_000, 2_000_000, 1000
RATIOS, SEEDS = (0.1, 0.3, 1.0), (0, 1, 2, 3)
METRIC = {"caption": "cider", "vqa": "vqa_acc"}
SHAPE = [-0.1, 0.0, -0.1]  # caption: an interior optimum in size


# ---------------------------------------------------------------------------------------------------------
# Scenarios: score(method, i, cls, ratio), i = the size's index in the grid (full fine-tuning: i = 1)
def paper_caption(m, i, cls, r):
    """Flat in data, an interior optimum in size, + classifier helps prompt and hurts layer methods; layer
    slightly above embedding; prefix and layer at least as good as full, prompt (the exception) below it."""
    base = {"prompt": 0.975, "prefix": 1.015, "full": 1.0}.get(m, 1.01) + SHAPE[i]
    return base + (0.06 if m == "prompt" else -0.06 if FAMILY[m] == "layer" else 0.0) * cls


def paper_vqa(m, i, cls, r):
    """Rises with data and size, + classifier raises every method to full on average, layer ≈ full ≫ embedding."""
    base = {"embedding": 0.34, "layer": 0.50, "full": 0.50}[FAMILY[m]]
    return base + 0.04 * i + 0.06 * math.log10(r) + 0.08 * cls


def frame(caption=paper_caption, vqa=paper_vqa, ratios=RATIOS, seeds=SEEDS, noise=0.002, seed_sd=0.002,
          every_size=False, tasks=("caption", "vqa"), pretrain_seeds=None, rng=7, pct=True) -> pd.DataFrame:
    """The tidy table `load_runs` would give for a scenario (every run complete). `seed_sd`: sd of the per-seed
    offset and of the per-(seed, data ratio) offset; `pretrain_seeds`: adds a pretrain_seed column (units =
    pretrain seed × seed); `pct=False` leaves out trainable_pct and all_params."""
    rng = np.random.default_rng(rng)
    units = [(p, s) for p in (pretrain_seeds or (0,)) for s in seeds]
    offset = {u: rng.normal(0, seed_sd) for u in units}
    subset = {(u, r): rng.normal(0, seed_sd) for u in units for r in ratios}
    rows = []
    for task in tasks:
        score = {"caption": caption, "vqa": vqa}[task]
        cells = [("full", 0, 1, False, r) for r in ratios]
        for m, sizes in SIZES.items():
            grid = [(i, c, r) for i in range(3) for r in ratios for c in (False, True)] if every_size else (
                [(1, c, r) for r in ratios for c in (False, True)] + [(i, False, ratios[-1]) for i in (0, 2)])
            cells += [(m, sizes[i], i, c, r) for i, c, r in grid]
        for m, size, i, cls, r in cells:
            params = FULL_PARAMS if m == "full" else PARAMS_PER_SIZE[m] * size + CLS_PARAMS * cls
            for u in units:
                rows.append({"task": task, "method": m, "size": size, "tune_classifier": cls, "data_ratio": r,
                             "pretrain_seed": u[0], "seed": u[1], "metric": METRIC[task], "status": "complete",
                             "best_val": score(m, i, cls, r) + offset[u] + subset[u, r] + rng.normal(0, noise),
                             "trainable_params": params, "all_params": ALL_PARAMS,
                             "trainable_pct": 100 * params / ALL_PARAMS, "n_train": round(N_FULL_DATA * r)})
    df = pd.DataFrame(rows)
    if pretrain_seeds is None:
        df = df.drop(columns="pretrain_seed")
    if not pct:
        df = df.drop(columns=["trainable_pct", "all_params"])
    df["variant"] = [variant(m, c) for m, c in zip(df.method, df.tune_classifier)]
    df["family"] = df.method.map(FAMILY)
    df["cost"] = df.n_train * df.trainable_params
    return df


def dial_frame(levels=(0.0, 0.5, 1.0), rise=3.0, pretrain_seeds=(0, 1), seeds=(0, 1, 2), noise=0.3, rng=11):
    """Caption runs (points / 100) at each consistency level: the data-ratio slope is `rise` · (1 − level)
    points per doubling; the size effect is monotone at level 0 and has an interior optimum at level 1."""
    rng = np.random.default_rng(rng)
    rows = []
    for c in levels:
        for p in pretrain_seeds:
            for s in seeds:
                off = rng.normal(0, 2)
                for m in ("prompt", "lora", "serial_adapter"):
                    for i, size in enumerate(SIZES[m]):
                        for r in RATIOS:
                            shape = (1 - c) * 3 * i + c * [-5, 0, -5][i]
                            pts = 100 + rise * (1 - c) * math.log2(r) + shape + off + rng.normal(0, noise)
                            rows.append({"task": "caption", "method": m, "size": size, "tune_classifier": False,
                                         "data_ratio": r, "seed": s, "pretrain_seed": p, "consistency": c,
                                         "status": "complete", "best_val": pts / 100})
    return pd.DataFrame(rows)


