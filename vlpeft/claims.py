"""The paper's eleven claims (DESIGN §2, paper §V) and the consistency dial as computed checks, with verdict
rules fixed before any data.

    table = evaluate_claims(load_runs("runs/tiny"))   # one row per claim: statistic, value, CI, n, verdict
    per_method_table(runs)                            # one row per (claim, method): each method's own mark
    dial_verdict(runs)                                # the consistency dial's prediction (beyond the paper)
    print(VERDICT_RULES)                              # the rules, in words (the analysis notebook shows them)

Statistics you can trust:
- The unit of replication is the seed, or (pre-training seed, seed) when several pre-trained models exist: a
  seed fixes the training subset and the initialisation of every run made with it, so runs of one seed are not
  independent. Every effect is computed *within each unit* (a per-unit slope, a per-unit paired difference),
  and its interval is a Student t interval over the units. One unit gives no interval: the claim is then
  inconclusive and the evidence says so.
- Effects are absolute, in score points (100 × the metric: a CIDEr point, a VQA accuracy point).
- Contrasts are named in advance: no maximum over methods or sizes enters a test.
The output is deterministic (no resampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .catalog import family_methods, peft_methods
from .results import complete

# ---------------------------------------------------------------------------------------------------------
# Rules, decided a priori. Margins are in score points (1 point = 0.01 of the metric).
CI_LEVEL = 0.90           # two-sided; a 90% CI inside ±margin is TOST at α = 0.05
MIN_UNITS = 2             # a t interval over units needs ≥ 2 units (seeds)
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

PEFT = peft_methods()                     # the catalogue's methods, by the paper's two families
EMBEDDING = family_methods("embedding")
LAYER = family_methods("layer")
FAMILIES = {"embedding": EMBEDDING, "layer": LAYER}
VERDICTS = ("supported", "not supported", "inconclusive")
COLUMNS = ["claim", "text", "statistic", "value", "ci_low", "ci_high", "n", "verdict", "evidence", "value_unit",
           "seeds_needed"]
PER_METHOD_COLUMNS = ["claim", "method", "statistic", "estimate", "ci_low", "ci_high", "n_units", "mark",
                      "seeds_needed", "detail"]

CLAIMS = {
    1: "Caption (consistent): score does not depend on data ratio.",
    2: "Caption: score is not monotone in parameter size (an optimum exists; too many parameters over-fit).",
    3: "Caption: '+ classifier' helps prompt-tuning and hurts the layer-composition methods.",
    4: "VQA (inconsistent): score rises with data ratio, for every method.",
    5: "VQA: score rises with parameter size, for every method.",
    6: "VQA: '+ classifier' raises every method, up to or above full fine-tuning.",
    7: "Layer composition (LoRA, adapters) beats embedding composition (prompt, prefix) on both tasks.",
    8: "On VQA layer composition is comparable to full fine-tuning; embedding composition lags far behind.",
    9: "Per unit of cost (data size × fine-tunable parameters, Fig. 5) layer composition is the better choice.",
    10: "Caption: every PEFT except prompt-tuning scores at least as well as full fine-tuning; both families are "
        "comparable to full fine-tuning there.",
    11: "Prompt-tuning trains less than 0.16 % of the parameters, the fewest of the five methods.",
}
DIAL_TEXT = ("Consistency dial (declared in advance): the captioning data-ratio slope rises as consistency with "
             "pre-training falls, and the size effect turns monotone.")

VERDICT_RULES = f"""\
**Scores and units.** The score of a run is its best validation metric (CIDEr for captioning, VQA accuracy), as
in the paper; only complete runs are used. Effects are **absolute, in score points** (100 × the metric: a CIDEr
point, an accuracy point); no effect is divided by a baseline. "Methods" are the five PEFT methods. When the table
has a `consistency` column, claims 1–11 use the runs at its highest level (missing = 1, the paper's setting).

**Unit of replication.** A seed fixes both the training-data subset and the initialisation, so the unit is the
seed — (pre-training seed, seed) when a `pretrain_seed` column exists (missing = one pre-trained model). Every
effect is computed *within each unit* (a per-unit slope, a per-unit paired difference, averaged over the unit's
matched cells); the interval is a {CI_LEVEL:.0%} Student t interval over units (mean ± t·sd/√n), n = units.
Fewer than MIN_UNITS = {MIN_UNITS} units give no interval: the part is marked *too few seeds* and the claim is
inconclusive. For an undecided part the report gives `seeds_needed`: the smallest n with
t(0.95, n−1)·sd/√n < |estimate − the bound that would decide it|, sd the measured seed-to-seed spread (a rough
planning figure: the spread of 2–3 seeds is itself uncertain).

**Margins** (score points, per task): minimum effect MIN_GAIN_CAPTION = {MIN_GAIN_CAPTION:g} CIDEr point,
MIN_GAIN_VQA = {MIN_GAIN_VQA:g} accuracy point — the smallest gain papers in either field report as an
improvement; FLAT_CAPTION = ±{FLAT_CAPTION:g} CIDEr points over the whole data-ratio range — a few times the
seed-to-seed spread of a caption fine-tune, and below the gaps between methods the paper discusses;
COMPARABLE_CAPTION = {COMPARABLE_CAPTION:g} CIDEr points and COMPARABLE_VQA = {COMPARABLE_VQA:g} accuracy
points — the distance PEFT papers call "comparable to full fine-tuning"; LAG_VQA = {LAG_VQA:g} accuracy points
— "far behind" is at least 2.5× the comparability margin; PROMPT_PCT = {PROMPT_PCT:g} % (paper §V-C);
DIAL_NEGLIGIBLE = {DIAL_NEGLIGIBLE:g} CIDEr points per doubling of data.

**Judging one effect** (estimate *e*, {CI_LEVEL:.0%} interval [lo, hi], margin m):
- *rises / helps / beats* (gain): **yes** when lo > 0 and e ≥ m (= MIN_GAIN of the task); **no** when hi < m.
- *flat / comparable* (two-sided equivalence, TOST): **yes** when −m < lo and hi < m; **no** when the interval lies
  wholly outside ±m (lo > m or hi < −m).
- *at least as well / up to full* (non-inferiority): **yes** when lo > −m; **no** when hi < −m.
- *lags far behind*: **yes** when hi < −m; **no** when lo > −m.
**Yes** uses the {CI_LEVEL:.0%} interval; a claim needing every one of its parts needs no correction (an
intersection–union test). **No** uses the Bonferroni interval at level 1 − {1 - CI_LEVEL:.2f}/k when any one of k
parts can refute the claim, so noise in one of five methods does not refute it by chance.

**Pre-named contrasts** (no maximum over methods or sizes inside a test). A method's *reference size* is the
size swept over the most data ratios (ties: the middle one) — the size of Fig. 3/4's data-ratio lines. A
*family score* is the mean over the family's methods at their reference sizes (plain variants), per (data
ratio, unit) cell; a unit's contrast is the mean over its cells, matched by data ratio with the other side.

**Claims about every method** (1, 4, 5, 6a, 10a): *not supported* as soon as one method is **no**; *supported*
when every method present is **yes** and at least MIN_METHODS = {MIN_METHODS} are; otherwise *inconclusive*.

1. Per method and unit, the change from the lowest to the highest data ratio: a least-squares line in log2(ratio)
   with one intercept per series (variant, size) inside the unit (≥ MIN_LEVELS = {MIN_LEVELS} ratios), times the
   log2 span of the grid. Judged *flat* with FLAT_CAPTION.
2. Per method and unit, plain variants at every data ratio where the unit has the method's whole size grid
   (≥ {MIN_LEVELS} sizes), averaged over those ratios: the mean score of the interior sizes minus the smallest
   size, and minus the largest size. A method shows an *optimum* when both contrasts are judged gain-**yes**
   (MIN_GAIN_CAPTION); *none* when either is **no** (Bonferroni over 2 contrasts × methods). *Supported* when a
   strict majority of ≥ {MIN_METHODS} evaluable methods show an optimum, *not supported* when a strict majority
   show none. Value: mean over methods of interior − largest ("too many parameters over-fit").
3. Per method and unit, '+ classifier' minus plain on cells matched by (size, data ratio). *Supported* when
   prompt-tuning's gain is **yes** and every layer method's loss (the negated gain) is **yes** (MIN_GAIN_CAPTION);
   *not supported* when any of these is **no** (k = 1 + layer methods); prefix-tuning is reported, not judged.
   Value: prompt's gain minus the layer methods' mean gain, per unit.
4. As claim 1 on VQA, judged gain with MIN_GAIN_VQA. Caveat: VQA training is epoch-based (10 epochs at every
   ratio), so a larger data ratio also trains for more steps; the ratio effect is confounded with training length.
5. Per method and unit, the size profile of claim 2 on VQA. *Monotone rise* = largest − smallest size judged
   gain-**yes** (MIN_GAIN_VQA) **and** no consecutive step is a significant drop (Bonferroni interval over the
   steps wholly below 0 and estimate ≤ −MIN_GAIN_VQA). **No** when the rise is **no** or any step drops.
6. (a) every method's paired '+ classifier' gain (as claim 3) judged gain with MIN_GAIN_VQA; (b) the mean over
   methods of '+ classifier' at the reference size minus full fine-tuning, matched by (data ratio, unit), judged
   non-inferior with COMPARABLE_VQA (each method's own mark is reported). *Supported* when (a) is supported and
   (b) is yes; *not supported* when (a) is not supported or (b) is no.
7. Per task, layer family score minus embedding family score, judged gain with MIN_GAIN of the task; *supported*
   when both tasks are **yes**, *not supported* when either is **no** (k = 2). Value: the task with the lower bound.
8. VQA, family score minus full fine-tuning: layer judged *comparable* (±COMPARABLE_VQA), embedding judged
   *lags far* (LAG_VQA); both needed (k = 2). Value: layer − embedding gap. Each method's gap is reported.
9. Per task and unit, least squares score ~ 1 + log2(cost) + [layer] over the plain PEFT runs (cost = n_train ×
   trainable parameters); the [layer] coefficient is the layer family's advantage at equal cost, judged gain with
   MIN_GAIN of the task; combined over tasks as claim 7.
10. Caption, reference sizes: (a) prefix, LoRA and both adapters each minus full fine-tuning judged non-inferior
   (COMPARABLE_CAPTION); (b) each family minus full fine-tuning judged *comparable* (±COMPARABLE_CAPTION). All six
   parts needed (k = 6); prompt-tuning (the paper's exception) is reported, not judged. Value: mean of (a).
11. Deterministic, on the plain (no '+ classifier') runs given: (a) every prompt-tuning run trains fewer than
   PROMPT_PCT = {PROMPT_PCT:g} % of all parameters; (b) on each task, prompt-tuning's trainable % at its smallest
   size is below every other PEFT method's at its smallest size, and likewise at the reference sizes. The tiny
   embedded model (d = 128) has other ratios than BLIP-base or mPLUG-base (p·d/N): the check speaks for the runs
   given, not for the paper's model. Inconclusive without prompt runs or without another method to compare.

**Consistency dial** (beyond the paper; declared in advance: "the captioning data-ratio slope rises as consistency
falls, and the size effect turns monotone"). Per consistency level and unit (pre-training seed, seed): the caption
data-ratio slope in CIDEr points per doubling of data (least squares in log2(ratio), one intercept per series
(method, variant, size), all caption runs). Per unit with ≥ {MIN_LEVELS} levels: the line of slope against level;
the statistic is its fall over the level range, slope(lowest level) − slope(highest level), from that line.
*Supported* when lo > 0 and the estimate ≥ DIAL_NEGLIGIBLE = {DIAL_NEGLIGIBLE:g}; *not supported* when
hi < {DIAL_NEGLIGIBLE:g} (any rise is negligible, or the slope falls); inconclusive otherwise, with fewer than
{MIN_LEVELS} levels, or fewer than {MIN_UNITS} units. Secondary (evidence only): at the lowest and the highest level,
how many methods show claim 5's monotone rise and claim 2's interior optimum on captioning.
"""


def rules_by_claim() -> dict[int, str]:
    """Each numbered claim's rule, cut from VERDICT_RULES (one source for both)."""
    import re
    rules, current = {}, None
    for line in VERDICT_RULES.splitlines():
        m = re.match(r"^(\d+)\. (.*)", line)
        if m:
            current = int(m.group(1))
            rules[current] = m.group(2)
        elif current is not None and line.startswith("   ") and line.strip():
            rules[current] += " " + line.strip()
        else:
            current = None
    return rules


# ---------------------------------------------------------------------------------------------------------
# One effect: its per-unit values and their t interval
def t_interval(values, level: float = CI_LEVEL) -> tuple[float, float]:
    """Student t interval of the mean of `values` (one per unit); NaN with fewer than MIN_UNITS values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < MIN_UNITS:
        return math.nan, math.nan
    half = stats.t.ppf(1 - (1 - level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def seeds_needed(effect: float, sd: float, margin: float, level: float = CI_LEVEL, max_n: int = 1000):
    """Smallest number of units n ≥ 2 whose interval half-width t(level, n−1)·sd/√n is below |effect − margin|,
    i.e. that would decide a part whose true effect and seed-to-seed spread are the ones measured.
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


def _mean_of(ests: list["Estimate | None"]) -> Estimate | None:
    """Per unit, the mean over parts (units holding every part)."""
    ests = [e for e in ests if e is not None and e.n]
    if not ests:
        return None
    return Estimate(pd.concat([e.values for e in ests], axis=1).mean(axis=1, skipna=False))


@dataclass(frozen=True)
class Judge:
    """kind: gain (rises/helps/beats), equiv (flat/comparable, ±margin), noninf (at least as well, −margin),
    lag (far behind, below −margin). `mark` → yes | no | unclear | too few seeds | too few points."""
    kind: str
    margin: float

    def mark(self, e: Estimate | None, k: int = 1) -> str:
        if e is None or e.n == 0:
            return "too few points"
        if e.n < MIN_UNITS:
            return "too few seeds"
        m, (lo, hi), (blo, bhi) = self.margin, (e.lo, e.hi), e.interval(k)
        if self.kind == "gain":
            return "yes" if lo > 0 and e.est >= m else "no" if bhi < m else "unclear"
        if self.kind == "equiv":
            return "yes" if -m < lo and hi < m else "no" if blo > m or bhi < -m else "unclear"
        if self.kind == "noninf":
            return "yes" if lo > -m else "no" if bhi < -m else "unclear"
        if self.kind == "lag":
            return "yes" if hi < -m else "no" if blo > -m else "unclear"
        raise ValueError(self.kind)

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


# ---------------------------------------------------------------------------------------------------------
# Preparing the table
def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Complete runs with `pts` (score points), `pretrain_seed` and `consistency` filled, and `unit`."""
    d = complete(df)
    for col, default in (("pretrain_seed", 0.0), ("consistency", 1.0)):
        d[col] = pd.to_numeric(d[col], errors="coerce").fillna(default) if col in d else default
    d["pts"] = POINTS * d["best_val"].astype(float)
    if "family" not in d:
        d["family"] = d["method"].map({m: f for f, ms in FAMILIES.items() for m in ms} | {"full": "full"})
    if "cost" not in d:
        d["cost"] = (d["n_train"] * d["trainable_params"] if {"n_train", "trainable_params"} <= set(d)
                     else math.nan)
    d["unit"] = [f"{p:g}/{s:g}" for p, s in zip(d["pretrain_seed"], d["seed"].astype(float))]
    # a canonical row order, so that sums (and so the last digits of every estimate) do not depend on the input's
    order = [c for c in ("task", "method", "tune_classifier", "size", "data_ratio", "consistency", "pretrain_seed",
                         "seed", "pts") if c in d]
    return d.sort_values(order, kind="stable", ignore_index=True)


def _paper(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's setting: the highest consistency level present (all runs when there is no dial)."""
    d = _prepare(df)
    return d[d.consistency == d.consistency.max()] if len(d) else d


def reference_sizes(d: pd.DataFrame) -> dict[str, float]:
    """Per method (one task), the size swept over the most data ratios (ties: the middle one), both variants
    counted — the size of Fig. 3/4's data-ratio lines (figures.reference_sizes uses the same rule)."""
    out = {}
    for m, g in d[d.method.isin(PEFT)].groupby("method"):
        counts = g.groupby("size")["data_ratio"].nunique()
        tied = sorted(counts[counts == counts.max()].index)
        out[m] = tied[len(tied) // 2]
    return out


# ---------------------------------------------------------------------------------------------------------
# Per-unit effects. Each returns a Series (index = unit) or an Estimate; None when there is nothing to fit.
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


# ---------------------------------------------------------------------------------------------------------
# Verdicts and rows
def _every(marks: dict[str, str]) -> str:
    """Verdict of a claim about every method from the methods' marks."""
    if "no" in marks.values():
        return "not supported"
    evaluable = [m for m, v in marks.items() if v in ("yes", "no", "unclear")]
    if len(evaluable) >= MIN_METHODS and all(v == "yes" for v in marks.values()):
        return "supported"
    return "inconclusive"


def _all_parts(marks: list[str]) -> str:
    """Verdict of a claim that needs every one of its parts."""
    return ("not supported" if "no" in marks else "supported" if marks and all(v == "yes" for v in marks)
            else "inconclusive")


def _part(name: str, e: Estimate | None, mark: str) -> str:
    return f"{name}: {e if e is not None else 'no matched runs'} ({mark})"


def _seed_note(parts: list[tuple[Estimate | None, str, Judge]], k: int = 1) -> tuple[str, float]:
    """Evidence suffix and `seeds_needed` of a claim from its (estimate, mark, judge) parts."""
    few = [e.n for e, mark, _ in parts if mark == "too few seeds"]
    needs = [j.needed(e, k) for e, mark, j in parts if mark == "unclear"]
    if few:
        return (f" — an interval needs ≥ {MIN_UNITS} seeds (units); some parts have only {max(few)}", math.nan)
    needs = [n for n in needs if n is not None]
    if needs:
        most = max(needs)
        if most == math.inf:
            return " — more than 1000 seeds would be needed to decide it at the measured spread", math.inf
        return f" — about {most} seeds would decide it at the measured seed-to-seed spread", float(most)
    return "", math.nan


def _row(claim: int, statistic: str, e: Estimate | None, verdict: str, evidence: str, needed: float = math.nan,
         value_unit: str = "score points") -> dict:
    assert verdict in VERDICTS
    ok = e is not None and e.n > 0
    return {"claim": claim, "text": CLAIMS.get(claim, DIAL_TEXT), "statistic": statistic,
            "value": e.est if ok else math.nan, "ci_low": e.lo if ok else math.nan,
            "ci_high": e.hi if ok else math.nan, "n": e.n if ok else 0, "verdict": verdict, "evidence": evidence,
            "value_unit": value_unit, "seeds_needed": needed if verdict == "inconclusive" else math.nan}


def _method_row(claim: int, method: str, statistic: str, e: Estimate | None, mark: str, judge: Judge | None,
                detail: str = "", k: int = 1) -> dict:
    ok = e is not None and e.n > 0
    needed = judge.needed(e, k) if judge is not None and mark == "unclear" else None
    needed = math.nan if needed is None else float(needed)
    return {"claim": claim, "method": method, "statistic": statistic, "estimate": e.est if ok else math.nan,
            "ci_low": e.lo if ok else math.nan, "ci_high": e.hi if ok else math.nan, "n_units": e.n if ok else 0,
            "mark": mark, "seeds_needed": needed, "detail": detail}


def _task(d: pd.DataFrame, task: str, peft: bool = True) -> pd.DataFrame:
    d = d[d.task == task]
    return d[d.method.isin(PEFT)] if peft else d


def _methods(d: pd.DataFrame) -> list[str]:
    return [m for m in PEFT if (d.method == m).any()]


# ---------------------------------------------------------------------------------------------------------
# The claims. Each _claimN takes the prepared table (`_paper`) and returns (row, per-method rows).
def _trend_claim(d, claim, task, judge, statistic):
    """Claims 1 and 4: the lowest → highest data-ratio change, per method."""
    d = _task(d, task)
    per = {m: ratio_change(d[d.method == m]) for m in _methods(d)}
    k = max(sum(e is not None for e in per.values()), 1)
    marks = {m: judge.mark(e, k) for m, e in per.items()}
    note, needed = _seed_note([(per[m], marks[m], judge) for m in per], k)
    evidence = ("; ".join(_part(m, per[m], marks[m]) for m in per) or "no runs") + note
    rows = [_method_row(claim, m, statistic, per[m], marks[m], judge, k=k) for m in per]
    return _row(claim, statistic + " (mean over methods)", _mean_of(list(per.values())), _every(marks), evidence,
                needed), rows


def _claim1(d):
    return _trend_claim(d, 1, "caption", Judge("equiv", FLAT_CAPTION), "change lowest → highest data ratio")


def _claim4(d):
    return _trend_claim(d, 4, "vqa", gain("vqa"), "change lowest → highest data ratio")


def _optimum(g: pd.DataFrame, judge: Judge, k: int) -> tuple[Estimate | None, Estimate | None, str]:
    """Claim 2 for one method: (interior − smallest, interior − largest, mark)."""
    prof = size_profile(g)
    if prof is None:
        return None, None, "too few points"
    interior = prof[prof.columns[1:-1]].mean(axis=1)
    small, large = Estimate(interior - prof[prof.columns[0]]), Estimate(interior - prof[prof.columns[-1]])
    a, b = judge.mark(small, 2 * k), judge.mark(large, 2 * k)
    for bad in ("too few seeds", "too few points"):
        if bad in (a, b):
            return small, large, bad
    mark = "yes" if a == b == "yes" else "no" if "no" in (a, b) else "unclear"
    return small, large, mark


def _size_claim(d, task: str, per_method):
    """Claims 2 and 5: a size-profile judgement per method, Bonferroni over the k methods with a profile."""
    d, judge = _task(d, task), gain(task)
    methods = _methods(d)
    k = max(sum(size_profile(d[d.method == m]) is not None for m in methods), 1)
    return judge, k, {m: per_method(d[d.method == m], judge, k) for m in methods}


def _claim2(d):
    judge, k, res = _size_claim(d, "caption", _optimum)
    marks = {m: r[2] for m, r in res.items()}
    evaluable = [m for m, v in marks.items() if v in ("yes", "no", "unclear")]
    yes, no = (sum(marks[m] == v for m in evaluable) for v in ("yes", "no"))
    verdict = ("inconclusive" if len(evaluable) < MIN_METHODS else "supported" if yes > len(evaluable) / 2
               else "not supported" if no > len(evaluable) / 2 else "inconclusive")
    words = {"yes": "optimum", "no": "no optimum"}
    parts = []
    for m, (small, large, mark) in res.items():
        parts.append(f"{m}: interior − smallest {small if small is not None else 'n/a'}, interior − largest "
                     f"{large if large is not None else 'n/a'} ({words.get(mark, mark)})")
    note, needed = _seed_note([(e, r[2], judge) for r in res.values() for e in r[:2] if e is not None], 2 * k)
    rows = [_method_row(2, m, "interior − largest size", large, marks[m], judge,
                        f"interior − smallest: {small}" if small else "", 2 * k)
            for m, (small, large, _) in res.items()]
    evidence = f"optimum in {yes} of {len(evaluable)} evaluable methods; " + ("; ".join(parts) or "no runs") + note
    return _row(2, "mean score of interior sizes − largest size (mean over methods)",
                _mean_of([r[1] for r in res.values()]), verdict, evidence, needed), rows


def _claim3(d):
    d, judge = _task(d, "caption"), gain("caption")
    per = {m: cls_gain(d[d.method == m]) for m in _methods(d)}
    layer = [m for m in LAYER if m in per]
    k = 1 + len(layer)
    helps = judge.mark(per.get("prompt"), k)
    hurts = {m: judge.mark(-per[m] if per[m] is not None else None, k) for m in layer}
    verdict = _all_parts([helps] + list(hurts.values())) if "prompt" in per and layer else (
        "not supported" if "no" in [helps, *hurts.values()] else "inconclusive")
    layer_mean = _mean_of([per[m] for m in layer])
    value = per["prompt"] - layer_mean if per.get("prompt") is not None and layer_mean is not None else None
    parts = [_part("prompt gain", per.get("prompt"), f"helps: {helps}")]
    parts += [_part(f"{m} gain", per[m], f"hurts: {hurts[m]}") for m in layer]
    if "prefix" in per:
        parts.append(_part("prefix gain", per["prefix"], "reported, not judged"))
    note, needed = _seed_note([(per.get("prompt"), helps, judge)] +
                              [(-per[m] if per[m] else None, hurts[m], judge) for m in layer], k)
    rows = [_method_row(3, m, "'+ classifier' − plain", per[m],
                        helps if m == "prompt" else hurts.get(m, "not judged"), judge,
                        "judged: helps" if m == "prompt" else "judged: hurts (negated gain)" if m in hurts else "",
                        k)
            for m in per]
    return _row(3, "+cls gain of prompt − mean +cls gain of layer methods (paired)", value, verdict,
                "; ".join(parts) + note, needed), rows


def _monotone(g: pd.DataFrame, judge: Judge, k: int) -> tuple[Estimate | None, list[Estimate], str]:
    """Claim 5 for one method: (largest − smallest, consecutive steps, mark)."""
    prof = size_profile(g)
    if prof is None:
        return None, [], "too few points"
    cols = list(prof.columns)
    rise = Estimate(prof[cols[-1]] - prof[cols[0]])
    steps = [Estimate(prof[b] - prof[a]) for a, b in zip(cols, cols[1:])]
    mark = judge.mark(rise, k)
    if mark in ("too few seeds", "too few points"):
        return rise, steps, mark
    kk = k * len(steps)
    drops = [s.n >= MIN_UNITS and s.interval(kk)[1] < 0 and s.est <= -judge.margin for s in steps]
    return rise, steps, "no" if any(drops) else mark


def _claim5(d):
    judge, k, res = _size_claim(d, "vqa", _monotone)
    marks = {m: r[2] for m, r in res.items()}
    parts = []
    for m, (rise, steps, mark) in res.items():
        st = ", ".join(f"{s.est:+.2f}" for s in steps)
        parts.append(f"{m}: largest − smallest {rise if rise else 'n/a'}, steps [{st}] ({mark})")
    note, needed = _seed_note([(r[0], r[2], judge) for r in res.values()], k)
    rows = [_method_row(5, m, "largest − smallest size", r[0], r[2], judge,
                        "steps: " + ", ".join(str(s) for s in r[1]), k) for m, r in res.items()]
    return _row(5, "largest − smallest size (mean over methods)", _mean_of([r[0] for r in res.values()]),
                _every(marks), ("; ".join(parts) or "no runs") + note, needed), rows


def _claim6(d):
    d, judge = d[d.task == "vqa"], gain("vqa")
    peft = d[d.method.isin(PEFT)]
    per = {m: cls_gain(peft[peft.method == m]) for m in _methods(peft)}
    k = max(sum(e is not None for e in per.values()), 1) + 1
    marks = {m: judge.mark(e, k) for m, e in per.items()}
    every = _every(marks)
    tbl = reference_cells(d, cls=True)
    up = Judge("noninf", COMPARABLE_VQA)
    each = {m: contrast(tbl, m, "full") for m in per}
    mean_vs_full = _mean_of(list(each.values())) if all(e is not None for e in each.values()) else None
    up_mark = up.mark(mean_vs_full, k)
    verdict = ("not supported" if every == "not supported" or up_mark == "no"
               else "supported" if every == "supported" and up_mark == "yes" else "inconclusive")
    parts = [_part(f"{m} +cls gain", per[m], marks[m]) for m in per]
    vs = "; ".join(f"{m} {each[m] if each[m] else 'n/a'} ({up.mark(each[m])})" for m in each)
    parts.append(_part("mean over methods of +cls at reference size − full FT", mean_vs_full,
                       f"up to full: {up_mark}"))
    note, needed = _seed_note([(per[m], marks[m], judge) for m in per] + [(mean_vs_full, up_mark, up)], k)
    rows = [_method_row(6, m, "'+ classifier' − plain", per[m], marks[m], judge,
                        f"+cls at reference size − full FT: {each[m] if each[m] else 'n/a'} "
                        f"(up to full: {up.mark(each[m])})", k) for m in per]
    return _row(6, "+cls gain, paired (mean over methods)", _mean_of(list(per.values())), verdict,
                "; ".join(parts) + f"; per method vs full: {vs or 'none'}" + note, needed), rows


def _both_tasks(claim: int, statistic: str, per: dict[str, Estimate | None]):
    """Claims 7 and 9: an advantage judged per task (gain, MIN_GAIN of the task), required on both."""
    marks = {t: gain(t).mark(e, k=2) for t, e in per.items()}
    verdict = _all_parts(list(marks.values()))
    known = {t: e for t, e in per.items() if e is not None and e.n}
    weaker = min(known, key=lambda t: known[t].lo if np.isfinite(known[t].lo) else -np.inf) if known else None
    note, needed = _seed_note([(per[t], marks[t], gain(t)) for t in per], 2)
    evidence = "; ".join(_part(t, e, marks[t]) for t, e in per.items()) + note
    return _row(claim, f"{statistic} ({weaker or 'no'} task: the lower bound)", known.get(weaker), verdict,
                evidence, needed), []


def _claim7(d):
    per = {t: contrast(reference_cells(d[d.task == t]), "layer", "embedding") for t in ("caption", "vqa")}
    return _both_tasks(7, "layer − embedding family score at reference sizes", per)


def _claim8(d):
    d = d[d.task == "vqa"]
    tbl = reference_cells(d)
    comparable, lags = Judge("equiv", COMPARABLE_VQA), Judge("lag", LAG_VQA)
    layer, emb = contrast(tbl, "layer", "full"), contrast(tbl, "embedding", "full")
    c, g = comparable.mark(layer, 2), lags.mark(emb, 2)
    gap = layer - emb if layer is not None and emb is not None else None
    rows = []
    for m in _methods(d):
        j, e = (comparable if m in LAYER else lags), contrast(tbl, m, "full")
        rows.append(_method_row(8, m, "method at reference size − full FT", e, j.mark(e), j,
                                "judged: comparable" if m in LAYER else "judged: lags far"))
    each = "; ".join(f"{r['method']} {r['estimate']:+.2f} ({r['mark']})" for r in rows)
    note, needed = _seed_note([(layer, c, comparable), (emb, g, lags)], 2)
    evidence = (f"{_part('layer − full', layer, f'comparable: {c}')}; "
                f"{_part('embedding − full', emb, f'lags far: {g}')}; per method: {each or 'none'}{note}")
    return _row(8, "layer − embedding family score (reference sizes)", gap, _all_parts([c, g]), evidence,
                needed), rows


def _claim9(d):
    per = {t: cost_advantage(_task(d, t)) for t in ("caption", "vqa")}
    return _both_tasks(9, "layer advantage at equal log2 cost", per)


def _claim10(d):
    d = d[d.task == "caption"]
    tbl = reference_cells(d)
    atleast, comparable = Judge("noninf", COMPARABLE_CAPTION), Judge("equiv", COMPARABLE_CAPTION)
    methods = [m for m in _methods(d) if m != "prompt"]
    per = {m: contrast(tbl, m, "full") for m in methods}
    fams = {f: contrast(tbl, f, "full") for f in FAMILIES}
    k = len(per) + len(fams)
    marks = {m: atleast.mark(e, k) for m, e in per.items()}
    fmarks = {f: comparable.mark(e, k) for f, e in fams.items()}
    verdict = _all_parts(list(marks.values()) + list(fmarks.values())) if len(per) >= MIN_METHODS else (
        "not supported" if "no" in [*marks.values(), *fmarks.values()] else "inconclusive")
    prompt = contrast(tbl, "prompt", "full")
    parts = [_part(f"{m} − full", per[m], f"at least as well: {marks[m]}") for m in per]
    parts += [_part(f"{f} family − full", fams[f], f"comparable: {fmarks[f]}") for f in fams]
    parts.append(_part("prompt − full", prompt, "the paper's exception, not judged"))
    note, needed = _seed_note([(per[m], marks[m], atleast) for m in per] +
                              [(fams[f], fmarks[f], comparable) for f in fams], k)
    rows = [_method_row(10, m, "method at reference size − full FT", per[m], marks[m], atleast, k=k)
            for m in per]
    if "prompt" in set(d.method):
        rows.insert(0, _method_row(10, "prompt", "method at reference size − full FT", prompt, "not judged", None))
    return _row(10, "method − full FT at reference sizes (mean over prefix, LoRA, adapters)",
                _mean_of(list(per.values())), verdict, "; ".join(parts) + note, needed), rows


def _claim11(d):
    d = d[d.method.isin(PEFT) & ~d.tune_classifier].copy()
    if "trainable_pct" not in d or d["trainable_pct"].isna().all():
        if {"trainable_params", "all_params"} <= set(d):
            d["trainable_pct"] = 100 * d.trainable_params / d.all_params
        else:
            d["trainable_pct"] = np.nan
    d = d[np.isfinite(d["trainable_pct"].astype(float))]
    prompt = d[d.method == "prompt"]
    note = ("the check speaks for the runs given: the tiny embedded model (d = 128) has other parameter ratios "
            "than BLIP-base / mPLUG-base")
    if prompt.empty:
        return _row(11, "largest trainable % of a plain prompt-tuning run", None, "inconclusive",
                    f"no plain prompt-tuning run with a trainable % ; {note}", value_unit="% of parameters"), []
    worst = float(prompt.trainable_pct.max())
    below = worst < PROMPT_PCT
    parts, fewest, compared = [], True, 0
    rows = []
    for task, g in d.groupby("task"):
        ref = reference_sizes(g)
        p = g[g.method == "prompt"]
        if p.empty:
            continue
        for label, pick in (("smallest size", lambda h: h["size"] == h["size"].min()),
                            ("reference size", lambda h: h["size"] == ref.get(h.method.iloc[0]))):
            pct = {m: float(h[pick(h)].trainable_pct.max()) for m, h in g.groupby("method")}
            pct = {m: v for m, v in pct.items() if np.isfinite(v)}
            others = {m: v for m, v in pct.items() if m != "prompt"}
            if "prompt" not in pct or not others:
                continue
            compared += 1
            ok = all(pct["prompt"] < v for v in others.values())
            fewest &= ok
            parts.append(f"{task}, {label}: prompt {pct['prompt']:.4g}% vs " +
                         ", ".join(f"{m} {v:.4g}%" for m, v in others.items()) + (" (fewest)" if ok else
                                                                                    " (NOT the fewest)"))
        top = float(p.trainable_pct.max())
        rows.append({"claim": 11, "method": "prompt", "statistic": f"{task}: largest trainable % (plain runs)",
                     "estimate": top, "ci_low": math.nan, "ci_high": math.nan, "n_units": len(p),
                     "mark": "yes" if top < PROMPT_PCT else "no", "seeds_needed": math.nan,
                     "detail": "deterministic; n_units = runs"})
    if not below or (compared and not fewest):
        verdict = "not supported"
    elif compared and fewest:
        verdict = "supported"
    else:
        verdict = "inconclusive"
    evidence = (f"{len(prompt)} plain prompt runs, largest {worst:.4g}% ({'<' if below else '≥'} {PROMPT_PCT:g}%); "
                + ("; ".join(parts) if parts else "no other PEFT method to compare with") + f"; {note}")
    row = _row(11, "largest trainable % of a plain prompt-tuning run (n = runs)", None, verdict, evidence,
               value_unit="% of parameters")
    return row | {"value": worst, "n": len(prompt)}, rows


_CHECKS = [_claim1, _claim2, _claim3, _claim4, _claim5, _claim6, _claim7, _claim8, _claim9, _claim10, _claim11]


def _public(i: int):
    inner = _CHECKS[i - 1]

    def check(df: pd.DataFrame) -> dict:
        return inner(_paper(df))[0]
    check.__name__ = f"claim{i}"
    check.__doc__ = f"Claim {i}: {CLAIMS[i]} (rule {i} of VERDICT_RULES); one row of evaluate_claims."
    return check


CHECKS = [_public(i) for i in range(1, 12)]
(claim1, claim2, claim3, claim4, claim5, claim6, claim7, claim8, claim9, claim10, claim11) = CHECKS


def evaluate_claims(df: pd.DataFrame) -> pd.DataFrame:
    """All eleven claims, one row each: claim, text, statistic, value, ci_low, ci_high, n (units), verdict,
    evidence, value_unit, seeds_needed (inconclusive claims: seeds that would decide at the measured spread)."""
    d = _paper(df)
    return pd.DataFrame([check(d)[0] for check in _CHECKS], columns=COLUMNS)


def per_method_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, method) for the claims judged or reported per method (1–6, 8, 10, 11): the method's
    own estimate (score points), its t interval, n_units, mark and, when unclear, the seeds that would decide it."""
    d = _paper(df)
    rows = [r for check in _CHECKS for r in check(d)[1]]
    return pd.DataFrame(rows, columns=PER_METHOD_COLUMNS)


# ---------------------------------------------------------------------------------------------------------
# The consistency dial (beyond the paper)
def _size_marks(d: pd.DataFrame) -> str:
    """Secondary dial evidence at one level: claim 5's monotone rise and claim 2's optimum, per caption method."""
    d, judge = _task(d, "caption"), gain("caption")
    methods = [m for m in _methods(d) if size_profile(d[d.method == m]) is not None]
    if not methods:
        return "no size grid"
    mono = {m: _monotone(d[d.method == m], judge, len(methods))[2] for m in methods}
    opt = {m: _optimum(d[d.method == m], judge, len(methods))[2] for m in methods}
    return (f"monotone rise in {sum(v == 'yes' for v in mono.values())}/{len(methods)} methods "
            f"({', '.join(f'{m} {v}' for m, v in mono.items())}), interior optimum in "
            f"{sum(v == 'yes' for v in opt.values())}/{len(methods)}")


def dial_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """The caption data-ratio slope (CIDEr points per doubling of data) of every unit at every consistency
    level: a units × levels table (what the dial verdict and its figure are made of)."""
    d = _prepare(df)
    d = d[d.task == "caption"]
    levels = sorted(float(c) for c in d.consistency.unique())
    return pd.DataFrame({c: unit_slopes(d[d.consistency == c], "data_ratio", ["method", "tune_classifier", "size"])
                         for c in levels})


def dial_verdict(df: pd.DataFrame) -> dict:
    """The consistency dial's prediction (VERDICT_RULES, last paragraph) as one row: statistic, value (CIDEr
    points per doubling of data), ci_low, ci_high, n (units), verdict, evidence, and `levels`."""
    statistic = "caption data-ratio slope at the lowest − at the highest consistency (points per doubling)"
    unit = "score points per doubling"
    d = _prepare(df)
    d = d[d.task == "caption"]
    levels = sorted(float(c) for c in d.consistency.unique())
    if len(levels) < MIN_LEVELS:
        return _row(0, statistic, None, "inconclusive",
                    f"{len(levels)} consistency level(s) {levels}; the trend needs ≥ {MIN_LEVELS}",
                    value_unit=unit) | {"levels": levels}
    slopes = dial_slopes(df)  # units × levels, points per doubling
    span = levels[-1] - levels[0]
    trend = {}
    for u, row in slopes.iterrows():
        row = row.dropna()
        if len(row) >= MIN_LEVELS:
            x = np.asarray(row.index, dtype=float)
            trend[u] = -np.polyfit(x, row.to_numpy(float), 1)[0] * span
    e = Estimate(pd.Series(trend, dtype=float))
    judge = Judge("gain", DIAL_NEGLIGIBLE)
    mark = judge.mark(e)
    verdict = {"yes": "supported", "no": "not supported"}.get(mark, "inconclusive")
    per_level = "; ".join(f"consistency {c:g}: {Estimate(slopes[c])}" for c in levels)
    note, needed = _seed_note([(e, mark, judge)])
    size = "; ".join(f"consistency {c:g}: {_size_marks(d[d.consistency == c])}" for c in (levels[0], levels[-1]))
    evidence = (f"ratio slope per level (points per doubling): {per_level}; fall over the range {e} ({mark}){note}"
                f". Secondary, size effect — {size}")
    row = _row(0, statistic, e, verdict, evidence, needed, value_unit=unit)
    return row | {"text": DIAL_TEXT, "levels": levels}
