"""The paper's nine claims (DESIGN §2, paper §V) as computed checks, with verdict rules fixed before any data.

    table = evaluate_claims(load_runs("runs/tiny"))   # one row per claim: statistic, value, CI, n, verdict
    print(VERDICT_RULES)                              # the rules, in words (the analysis notebook shows them)

Every effect is *relative*: a score difference divided by a baseline mean score, so that CIDEr (~1) and VQA
accuracy (~0.5) use the same thresholds. Confidence intervals are percentile bootstraps with a fixed seed,
so a table is reproducible bit for bit. Only complete runs with a finite best validation score are used.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .results import complete

# ---------------------------------------------------------------------------------------------------------
# Rules, decided a priori
CI_LEVEL = 0.90     # two-sided; its bounds are one-sided 95% tests, and a 90% CI inside a band is TOST at α=0.05
N_BOOT = 2000       # bootstrap replicates
SEED = 0            # every claim draws from its own default_rng(SEED): results do not depend on call order
MIN_LEVELS = 3      # a trend needs ≥ 3 distinct data ratios / sizes in a series
MIN_RUNS = 5        # … and ≥ 5 runs in the fit (e.g. 3 levels × 2 seeds, or 5 levels × 1 seed)
MIN_UNITS = 3       # a matched comparison needs ≥ 3 matched pairs / units
MIN_METHODS = 2     # a claim about "every method" needs ≥ 2 methods that could be evaluated
MIN_EFFECT = 0.02   # a rise/gain/advantage counts only when ≥ 2% of the baseline score
EQUIV = 0.05        # "does not depend" / "comparable": within ±5% of the baseline score
LAG = 0.10          # "lags far behind": more than 10% below full fine-tuning

PEFT = ["prompt", "prefix", "lora", "serial_adapter", "parallel_adapter"]
LAYER = ["lora", "serial_adapter", "parallel_adapter"]
VERDICTS = ("supported", "not supported", "inconclusive")

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
}

VERDICT_RULES = f"""\
**Scores.** The score of a run is its best validation metric over training (CIDEr for captioning, VQA accuracy),
as in the paper. Only complete runs are used. Every effect is relative: a difference in score divided by a
baseline mean score (stated per claim). "Methods" are the five PEFT methods; full fine-tuning is the reference.

**Uncertainty.** {CI_LEVEL:.0%} percentile bootstrap intervals ({N_BOOT} replicates, numpy seed {SEED}). A trend is
bootstrapped by resampling runs within each series; a matched comparison by resampling its matched pairs/units.
Both work with one seed when the grid has enough points (replication comes from the grid), and with several
seeds. An interval is not reported when more than half of the replicates are undefined.

**Judging one effect** (relative estimate *e*, interval [lo, hi]):
- *rises / helps / beats*: **yes** when lo > 0 and e ≥ {MIN_EFFECT:.0%}; **no** when hi < {MIN_EFFECT:.0%}
  (any gain is negligible or reversed); otherwise unclear.
- *flat* (claim 1): **yes** when the interval lies inside ±{EQUIV:.0%} (an equivalence test); **no** when the
  interval excludes 0 and |e| ≥ {EQUIV:.0%}; otherwise unclear.
- **Yes** uses the {CI_LEVEL:.0%} interval. A claim that any one of *k* parts (methods, tasks) can refute judges **no**
  from the Bonferroni interval at level 1 − {1 - CI_LEVEL:.2f}/*k*, so that noise in one of five methods does not
  refute it by chance; a claim that needs every part (intersection–union test) needs no correction.
- A method is *evaluable* on a trend when its series with ≥ {MIN_LEVELS} distinct levels hold ≥ {MIN_RUNS} runs in
  all; a matched comparison needs ≥ {MIN_UNITS} pairs/units.

**Claims about every method** (1, 4, 5, 6): *not supported* as soon as one method is judged **no**;
*supported* when every method present is evaluable and judged **yes**, and at least {MIN_METHODS} methods are;
otherwise *inconclusive*. The table's value is the mean effect over the evaluable methods.

1. Per method, the relative change of the score from the lowest to the highest data ratio, from a least-squares
   line in log(ratio) with one intercept per series (same variant and size; "+ classifier" variants included);
   baseline: the method's mean score. Judged *flat*.
2. Per method, a quadratic in log(size) with one intercept per series (same variant and data ratio). The
   statistic is the height of its peak above the better end of the size grid when the fitted curve is concave
   with its peak strictly inside the grid, else 0; baseline: the method's mean score. A method shows an optimum
   when judged **yes**, none when **no**. *Supported* when a strict majority of ≥ {MIN_METHODS} evaluable methods
   show an optimum, *not supported* when a strict majority show none, else inconclusive.
3. Paired "+ classifier" gain on runs matched by (size, data ratio, seed), baseline: the plain variant's mean.
   *Supported* when prompt-tuning's gain is **yes** and the layer methods' mean gain is a loss judged **yes**
   (the negated gain); *not supported* when either is **no**; else inconclusive. Value: prompt's gain minus the
   layer methods' mean gain.
4. As claim 1 on VQA, judged *rises*.
5. Per method, the relative change from the smallest to the largest size, from a line in log(size) with one
   intercept per series (same variant and data ratio); judged *rises*.
6. (a) every method's paired "+ classifier" gain (as claim 3) judged *rises*; (b) on units matched by (data
   ratio, seed), the best "+ classifier" run vs full fine-tuning, baseline full fine-tuning: **yes** when
   lo > −{EQUIV:.0%} (up to or above full, non-inferiority), **no** when hi < −{EQUIV:.0%}. *Supported* when (a) is
   supported and (b) is yes; *not supported* when (a) is not supported or (b) is no; else inconclusive.
7. On units matched by (data ratio, seed): a family's score is the mean over its methods of the method's best size
   (plain variants). Layer − embedding, baseline embedding, per task, judged *beats*. *Supported* when both tasks
   are **yes**; *not supported* when either is **no**; else inconclusive. Value: the task with the lower bound.
8. VQA, the units of claim 7 with full fine-tuning present; each family vs full, baseline full. Layer is
   *comparable* when lo > −{EQUIV:.0%} (**no** when hi < −{EQUIV:.0%}); embedding *lags far* when
   hi < −{LAG:.0%} (**no** when lo > −{LAG:.0%}). *Supported* when both hold, *not supported* when either is no,
   else inconclusive. Value: the layer − embedding gap.
9. Per task, least squares score ~ 1 + log(cost) + [layer] over the plain PEFT runs (cost = n_train × trainable
   parameters); the [layer] coefficient is the layer family's advantage at equal cost, baseline the embedding
   mean; bootstrap resamples runs within each family. Judged *beats* per task and combined as claim 7.
"""


# ---------------------------------------------------------------------------------------------------------
# One estimate with its bootstrap
@dataclass
class Estimate:
    est: float
    lo: float
    hi: float
    n: int
    reps: np.ndarray  # (N_BOOT,) bootstrap replicates of est

    @classmethod
    def of(cls, values: np.ndarray, n: int) -> "Estimate":
        """values[0] is the estimate on the data itself, values[1:] the bootstrap replicates."""
        e = cls(float(values[0]), np.nan, np.nan, n, np.asarray(values[1:], dtype=float))
        e.lo, e.hi = e.interval(k=1)
        return e

    def interval(self, k: int = 1) -> tuple[float, float]:
        """Percentile interval at level 1 − (1 − CI_LEVEL)/k (Bonferroni over k parts); NaN when more than
        half of the replicates are undefined."""
        if not np.isfinite(self.reps).mean() > 0.5:
            return np.nan, np.nan
        a = 100 * (1 - CI_LEVEL) / 2 / k
        lo, hi = np.nanpercentile(self.reps, [a, 100 - a])
        return float(lo), float(hi)

    def __neg__(self) -> "Estimate":
        return Estimate(-self.est, -self.hi, -self.lo, self.n, -self.reps)

    def minus(self, other: "Estimate", n: int) -> "Estimate":
        """Difference of two estimates, replicate by replicate (joint or independent resamples)."""
        return Estimate.of(np.r_[self.est - other.est, self.reps - other.reps], n)

    def __str__(self) -> str:
        return f"{self.est:+.1%} [{self.lo:+.1%}, {self.hi:+.1%}], n={self.n}"


def _pool(ests: list[Estimate]) -> Estimate | None:
    """Mean over methods; each replicate is the mean of the methods' (independent) replicates."""
    if not ests:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate undefined for every method stays NaN
        reps = np.nanmean(np.stack([e.reps for e in ests]), axis=0)
    return Estimate.of(np.r_[np.mean([e.est for e in ests]), reps], sum(e.n for e in ests))


def _boot_idx(rng, n: int) -> np.ndarray:
    """(N_BOOT + 1, n) row indices; row 0 is the data itself."""
    return np.vstack([np.arange(n), rng.integers(0, n, (N_BOOT, n))])


def _solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched least squares from normal equations (R, d, d) x = (R, d); NaN where A is rank-deficient
    (e.g. a resample that holds a single data ratio)."""
    out = np.full(b.shape, np.nan)
    s = np.linalg.svd(A, compute_uv=False)
    ok = (s[:, 0] > 0) & (s[:, -1] > 1e-9 * s[:, 0])
    if ok.any():
        out[ok] = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]
    return out


# ---------------------------------------------------------------------------------------------------------
# The three kinds of evidence: trends (fixed-effects polynomial fits), matched comparisons, the cost regression
def _series(d: pd.DataFrame, axis: str, by: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(log level, score) of each group of runs sharing `by` that spans ≥ MIN_LEVELS levels of `axis`."""
    return [(np.log(g[axis].to_numpy(float)), g["best_val"].to_numpy(float))
            for _, g in d.groupby(by) if g[axis].nunique() >= MIN_LEVELS]


def _fe_fit(series, degree: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Least squares score = a_series + Σ_k b_k x^k (k = 1..degree), one free intercept per series, on the
    data (row 0) and on N_BOOT resamples of runs within each series. Returns coef (R, degree), mean (R,)."""
    A, b, ysum, n = 0.0, 0.0, 0.0, 0
    for x, y in series:
        idx = _boot_idx(rng, len(x))
        xs, ys = x[idx], y[idx]                                   # (R, m)
        F = np.stack([xs ** k for k in range(1, degree + 1)], -1)  # (R, m, degree)
        F = F - F.mean(1, keepdims=True)                          # within-series: intercepts drop out
        yc = ys - ys.mean(1, keepdims=True)
        A = A + np.einsum("rmi,rmj->rij", F, F)
        b = b + np.einsum("rmi,rm->ri", F, yc)
        ysum, n = ysum + ys.sum(1), n + len(x)
    return _solve(A, b), ysum / n


def _trend(d: pd.DataFrame, axis: str, by: list[str], rng) -> Estimate | None:
    """Relative change of the score from the lowest to the highest level of `axis`, from a line in
    log(level) fitted within series; None when the method has too few points."""
    series = _series(d, axis, by)
    n = sum(len(x) for x, _ in series)
    if n < MIN_RUNS:
        return None
    coef, mean = _fe_fit(series, 1, rng)
    span = max(x.max() for x, _ in series) - min(x.min() for x, _ in series)
    return Estimate.of(coef[:, 0] * span / mean, n)


def _peak(d: pd.DataFrame, rng) -> Estimate | None:
    """Height of the interior peak of a quadratic in log(size) above the better end of the grid, relative to
    the mean score; 0 when the fitted curve has no peak strictly inside the grid."""
    series = _series(d, "size", ["tune_classifier", "data_ratio"])
    n = sum(len(x) for x, _ in series)
    if n < MIN_RUNS:
        return None
    coef, mean = _fe_fit(series, 2, rng)
    u0, u1 = min(x.min() for x, _ in series), max(x.max() for x, _ in series)
    b1, b2 = coef[:, 0], coef[:, 1]

    def f(u):
        return b1 * u + b2 * u ** 2

    with np.errstate(all="ignore"):
        v = -b1 / (2 * b2)
        inside = (b2 < 0) & (v > u0) & (v < u1)
        excess = np.where(inside, f(v) - np.maximum(f(u0), f(u1)), 0.0) / mean
    return Estimate.of(np.where(np.isfinite(coef).all(1), excess, np.nan), n)


def _ratio_of_means(diff: np.ndarray, base: np.ndarray, idx: np.ndarray) -> Estimate:
    """mean(diff) / mean(base) on the data and on the resamples `idx` of the matched pairs."""
    with np.errstate(all="ignore"):
        return Estimate.of(diff[idx].sum(1) / base[idx].sum(1), len(diff))


def _cls_gain(d: pd.DataFrame, rng) -> Estimate | None:
    """'+ classifier' minus plain on runs matched by (size, data ratio, seed), relative to the plain mean."""
    keys = ["size", "data_ratio", "seed"]
    pairs = pd.concat([d[~d.tune_classifier].groupby(keys)["best_val"].mean().rename("plain"),
                       d[d.tune_classifier].groupby(keys)["best_val"].mean().rename("cls")], axis=1).dropna()
    if len(pairs) < MIN_UNITS:
        return None
    diff, base = (pairs.cls - pairs.plain).to_numpy(), pairs.plain.to_numpy()
    return _ratio_of_means(diff, base, _boot_idx(rng, len(pairs)))


def _units(d: pd.DataFrame) -> pd.DataFrame:
    """One row per unit (data ratio, seed): each family's score = mean over its methods of the method's best
    size (plain variants); `full` = full fine-tuning; `cls` = the best '+ classifier' run."""
    plain = d[~d.tune_classifier]
    best = plain.groupby(["data_ratio", "seed", "family", "method"])["best_val"].max()
    fam = best.groupby(level=["data_ratio", "seed", "family"]).mean().unstack("family")
    cls = d[d.tune_classifier].groupby(["data_ratio", "seed"])["best_val"].max().rename("cls")
    return fam.join(cls, how="outer").reindex(columns=["embedding", "layer", "full", "cls"])


def _versus(u: pd.DataFrame, a: str, b: str, rng) -> Estimate | None:
    """(a − b) / b over the units holding both."""
    u = u[[a, b]].dropna()
    if len(u) < MIN_UNITS:
        return None
    return _ratio_of_means((u[a] - u[b]).to_numpy(), u[b].to_numpy(), _boot_idx(rng, len(u)))


def _cost_advantage(d: pd.DataFrame, rng) -> Estimate | None:
    """Coefficient of [layer] in score ~ 1 + log(cost) + [layer] (plain PEFT runs), relative to the embedding
    mean; resampling runs within each family."""
    d = d[~d.tune_classifier & d.family.isin(["embedding", "layer"]) & (d.cost > 0)]
    fams = [np.flatnonzero((d.family == f).to_numpy()) for f in ("embedding", "layer")]
    if min(len(f) for f in fams) < MIN_RUNS:
        return None
    idx = np.hstack([f[_boot_idx(rng, len(f))] for f in fams])  # (R, n): strata side by side
    X = np.c_[np.ones(len(d)), np.log(d.cost.to_numpy(float)), (d.family == "layer").to_numpy(float)]
    y = d.best_val.to_numpy(float)
    Xs, ys = X[idx], y[idx]
    coef = _solve(np.einsum("rmi,rmj->rij", Xs, Xs), np.einsum("rmi,rm->ri", Xs, ys))
    emb_mean = ys[:, :len(fams[0])].mean(1)
    return Estimate.of(coef[:, 2] / emb_mean, len(d))


# ---------------------------------------------------------------------------------------------------------
# Judging
# Each judge says "yes" from the CI_LEVEL interval and "no" from the interval widened for the k parts of a
# claim that could each refute it alone (Bonferroni): k noisy methods do not refute a claim by chance.
def rises(e: Estimate | None, k: int = 1) -> str:
    """yes: significantly above 0 and ≥ MIN_EFFECT; no: the whole interval lies below MIN_EFFECT."""
    if e is None:
        return "too few points"
    return "yes" if e.lo > 0 and e.est >= MIN_EFFECT else "no" if e.interval(k)[1] < MIN_EFFECT else "unclear"


def flat(e: Estimate | None, k: int = 1) -> str:
    """yes: the interval inside ±EQUIV (equivalence); no: a significant change of at least EQUIV."""
    if e is None:
        return "too few points"
    if -EQUIV < e.lo and e.hi < EQUIV:
        return "yes"
    lo, hi = e.interval(k)
    return "no" if (lo > 0 or hi < 0) and abs(e.est) >= EQUIV else "unclear"


def above(threshold: float):
    """Judge "at least `threshold`": yes when lo > threshold, no when hi < threshold."""
    def judge(e: Estimate | None, k: int = 1) -> str:
        if e is None:
            return "too few points"
        return "yes" if e.lo > threshold else "no" if e.interval(k)[1] < threshold else "unclear"
    return judge


def below(threshold: float):
    """Judge "under `threshold`": yes when hi < threshold, no when lo > threshold."""
    def judge(e: Estimate | None, k: int = 1) -> str:
        if e is None:
            return "too few points"
        return "yes" if e.hi < threshold else "no" if e.interval(k)[0] > threshold else "unclear"
    return judge


def _every(per: dict[str, Estimate | None], judge, extra: int = 0) -> tuple[str, str]:
    """Verdict of a claim about every method, and the per-method evidence; `extra` other parts can refute it."""
    k = sum(e is not None for e in per.values()) + extra
    marks = {m: judge(e, max(k, 1)) for m, e in per.items()}
    evaluable = [m for m, e in per.items() if e is not None]
    if "no" in marks.values():
        verdict = "not supported"
    elif len(evaluable) >= MIN_METHODS and all(v == "yes" for v in marks.values()):
        verdict = "supported"
    else:
        verdict = "inconclusive"
    return verdict, _evidence(per, marks)


def _evidence(per: dict[str, Estimate | None], marks: dict[str, str]) -> str:
    if not per:
        return "no runs"
    return "; ".join(f"{m}: {e} ({marks[m]})" if e is not None else f"{m}: too few points" for m, e in per.items())


def _peft(df: pd.DataFrame, task: str) -> pd.DataFrame:
    d = complete(df)
    return d[(d.task == task) & d.method.isin(PEFT)]


def _per_method(d: pd.DataFrame, fn) -> dict[str, Estimate | None]:
    return {m: fn(d[d.method == m]) for m in PEFT if (d.method == m).any()}


def _row(claim: int, statistic: str, e: Estimate | None, verdict: str, evidence: str) -> dict:
    assert verdict in VERDICTS
    return {"claim": claim, "text": CLAIMS[claim], "statistic": statistic,
            "value": e.est if e else np.nan, "ci_low": e.lo if e else np.nan, "ci_high": e.hi if e else np.nan,
            "n": e.n if e else 0, "verdict": verdict, "evidence": evidence}


# ---------------------------------------------------------------------------------------------------------
# The claims
def _trend_claim(df: pd.DataFrame, claim: int, task: str, axis: str, judge, statistic: str) -> dict:
    """Claims 1, 4, 5: a per-method trend of the score along `axis`, judged for every method."""
    rng = np.random.default_rng(SEED)
    series = ["tune_classifier", "size"] if axis == "data_ratio" else ["tune_classifier", "data_ratio"]
    per = _per_method(_peft(df, task), lambda g: _trend(g, axis, series, rng))
    verdict, evidence = _every(per, judge)
    return _row(claim, statistic, _pool([e for e in per.values() if e]), verdict, evidence)


def claim1(df: pd.DataFrame) -> dict:
    """Caption score flat in the data ratio, for every method (rule 1)."""
    return _trend_claim(df, 1, "caption", "data_ratio", flat,
                        "relative change, lowest → highest data ratio (mean over methods)")


def claim2(df: pd.DataFrame) -> dict:
    """Caption score peaks inside the size grid, for most methods (rule 2)."""
    rng = np.random.default_rng(SEED)
    per = _per_method(_peft(df, "caption"), lambda g: _peak(g, rng))
    marks = {m: rises(e) for m, e in per.items()}
    evaluable = [m for m, e in per.items() if e is not None]
    yes, no = (sum(marks[m] == k for m in evaluable) for k in ("yes", "no"))
    verdict = ("inconclusive" if len(evaluable) < MIN_METHODS else "supported" if yes > len(evaluable) / 2
               else "not supported" if no > len(evaluable) / 2 else "inconclusive")
    marks = {m: {"yes": "optimum", "no": "no optimum"}.get(v, v) for m, v in marks.items()}
    return _row(2, "relative height of the interior peak over the size grid (mean over methods)",
                _pool([e for e in per.values() if e]), verdict, _evidence(per, marks))


def claim3(df: pd.DataFrame) -> dict:
    """Caption '+ classifier': a gain for prompt-tuning, a loss for layer methods (rule 3)."""
    rng = np.random.default_rng(SEED)
    per = _per_method(_peft(df, "caption"), lambda g: _cls_gain(g, rng))
    prompt = per.get("prompt")
    layer = _pool([per[m] for m in LAYER if per.get(m)])
    helps, hurts = rises(prompt, k=2), rises(-layer if layer else None, k=2)
    verdict = ("supported" if helps == hurts == "yes" else "not supported" if "no" in (helps, hurts)
               else "inconclusive")
    others = "; ".join(f"{m}: {per[m] or 'too few points'}" for m in per if m != "prompt")
    evidence = (f"prompt gain: {prompt or 'too few points'} (helps: {helps}); layer mean gain: "
                f"{layer or 'too few points'} (hurts: {hurts}); per method: {others or 'none'}")
    contrast = prompt.minus(layer, prompt.n + layer.n) if prompt and layer else None
    return _row(3, "+cls gain of prompt − mean +cls gain of layer methods (relative, paired)",
                contrast, verdict, evidence)


def claim4(df: pd.DataFrame) -> dict:
    """VQA score rises with the data ratio, for every method (rule 4)."""
    return _trend_claim(df, 4, "vqa", "data_ratio", rises,
                        "relative change, lowest → highest data ratio (mean over methods)")


def claim5(df: pd.DataFrame) -> dict:
    """VQA score rises with the parameter size, for every method (rule 5)."""
    return _trend_claim(df, 5, "vqa", "size", rises, "relative change, smallest → largest size (mean over methods)")


def claim6(df: pd.DataFrame) -> dict:
    """VQA '+ classifier' raises every method, and its best run reaches full fine-tuning (rule 6)."""
    rng = np.random.default_rng(SEED)
    d = complete(df)
    d = d[d.task == "vqa"]
    per = _per_method(d[d.method.isin(PEFT)], lambda g: _cls_gain(g, rng))
    every, evidence = _every(per, rises, extra=1)
    vs_full = _versus(_units(d), "cls", "full", rng)
    up_to_full = above(-EQUIV)(vs_full, k=sum(e is not None for e in per.values()) + 1)
    verdict = ("not supported" if every == "not supported" or up_to_full == "no"
               else "supported" if every == "supported" and up_to_full == "yes" else "inconclusive")
    evidence = f"{evidence}; best +cls vs full FT: {vs_full or 'too few points'} (up to full: {up_to_full})"
    return _row(6, "+cls gain (relative, paired; mean over methods)", _pool([e for e in per.values() if e]),
                verdict, evidence)


def _both_tasks(claim: int, statistic: str, per: dict[str, Estimate | None]) -> dict:
    """Claims 7 and 9: an advantage judged per task, required on both."""
    marks = {t: rises(e, k=2) for t, e in per.items()}
    verdict = ("not supported" if "no" in marks.values()
               else "supported" if all(v == "yes" for v in marks.values()) else "inconclusive")
    known = [e for e in per.values() if e is not None]
    weaker = min(known, key=lambda e: e.lo if np.isfinite(e.lo) else -np.inf) if known else None
    return _row(claim, statistic, weaker, verdict, _evidence(per, marks))


def claim7(df: pd.DataFrame) -> dict:
    """Layer beats embedding composition on both tasks, at matched (data ratio, seed) (rule 7)."""
    rng = np.random.default_rng(SEED)
    d = complete(df)
    per = {t: _versus(_units(d[d.task == t]), "layer", "embedding", rng) for t in ("caption", "vqa")}
    return _both_tasks(7, "layer − embedding best score, relative to embedding (weaker task)", per)


def claim8(df: pd.DataFrame) -> dict:
    """VQA: layer within 5% of full fine-tuning, embedding more than 10% below it (rule 8)."""
    rng = np.random.default_rng(SEED)
    d = complete(df)
    u = _units(d[d.task == "vqa"])[["layer", "embedding", "full"]].dropna()
    if len(u) < MIN_UNITS:
        return _row(8, "layer − embedding gap, relative to full FT", None, "inconclusive",
                    f"{len(u)} matched (data ratio, seed) units with layer, embedding and full FT; "
                    f"need {MIN_UNITS}")
    idx = _boot_idx(rng, len(u))
    full = u.full.to_numpy()
    layer = _ratio_of_means(u.layer.to_numpy() - full, full, idx)
    emb = _ratio_of_means(u.embedding.to_numpy() - full, full, idx)
    comparable, lags = above(-EQUIV)(layer, k=2), below(-LAG)(emb, k=2)
    verdict = ("supported" if comparable == lags == "yes" else "not supported" if "no" in (comparable, lags)
               else "inconclusive")
    evidence = f"layer vs full: {layer} (comparable: {comparable}); embedding vs full: {emb} (lags far: {lags})"
    return _row(8, "layer − embedding gap, relative to full FT", layer.minus(emb, layer.n), verdict, evidence)


def claim9(df: pd.DataFrame) -> dict:
    """Layer beats embedding at equal cost = n_train × trainable parameters, on both tasks (rule 9)."""
    rng = np.random.default_rng(SEED)
    d = complete(df)
    per = {t: _cost_advantage(d[d.task == t], rng) for t in ("caption", "vqa")}
    return _both_tasks(9, "layer advantage at equal log cost, relative to embedding (weaker task)", per)


CHECKS = [claim1, claim2, claim3, claim4, claim5, claim6, claim7, claim8, claim9]


def evaluate_claims(df: pd.DataFrame) -> pd.DataFrame:
    """All nine claims, one row each: claim, text, statistic, value, ci_low, ci_high, n, verdict, evidence."""
    return pd.DataFrame([check(df) for check in CHECKS])
