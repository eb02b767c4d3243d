"""The paper's eleven claims (paper §V) and the consistency dial as computed checks, with verdict rules fixed
before any data.

    table = evaluate_claims(load_runs("runs/tiny"))   # one row per claim: statistic, value, CI, n, verdict
    per_method_table(runs)                            # one row per (claim, method): each method's own mark
    dial_verdict(runs)                                # the consistency dial's prediction (beyond the paper)
    print(VERDICT_RULES)                              # the rules, in words, assembled from the claims' docstrings

The rooms: `stats` (intervals over units), `judges` (margins, the kinds of judge, marks, verdicts), `estimators`
(per-unit effects), `parts` (a claim's declared parts and the registry); one module per family of claims —
`data_ratio` (1, 4), `param_size` (2, 5), `classifier` (3, 6), `families` (7, 8, 10), `cost` (9), `budget` (11) —
and `dial`.
"""
from __future__ import annotations

import textwrap

import pandas as pd

from . import budget, classifier, cost, data_ratio, families, param_size  # noqa: F401 - each registers its claims
from .dial import TEXT as DIAL_TEXT
from .dial import dial_slopes, dial_verdict
from .estimators import EMBEDDING, FAMILIES, LAYER, N_METHODS, PEFT, paper_setting
from .judges import KINDS, THRESHOLDS, Judge, JudgeKind, Mark, Verdict
from .parts import CLAIMS, COLUMNS, PART_COLUMNS, PER_METHOD_COLUMNS, UNIT_COLUMNS, Claim, Part
from .stats import CI_LEVEL, MIN_UNITS, Estimate, t_interval, unit_word, units_needed

__all__ = ["CI_LEVEL", "CLAIMS", "COLUMNS", "DIAL_TEXT", "EMBEDDING", "FAMILIES", "KINDS", "LAYER", "MIN_UNITS",
           "PART_COLUMNS", "PEFT", "PER_METHOD_COLUMNS", "THRESHOLDS", "VERDICTS", "VERDICT_RULES", "Claim",
           "Estimate", "Judge", "JudgeKind", "Mark", "Part", "Verdict", "claim_tables", "dial_slopes",
           "dial_verdict", "evaluate_claims", "paper_setting", "parts_table", "per_method_table", "rules_by_claim",
           "rules_page", "t_interval", "units_needed", "units_table"]

CLAIMS = dict(sorted(CLAIMS.items()))
VERDICTS = tuple(str(v) for v in Verdict)


def claim_tables(df: pd.DataFrame) -> dict:
    """Every claim evaluated once, and the dial: {"claims", "per_method", "parts", "units"} (the tables below) and
    "dial" (`dial_verdict`). A study's report takes all five; each table alone is one of them."""
    d = paper_setting(df)
    evaluated = [(n, *c.evaluate(d)) for n, c in CLAIMS.items()]      # (claim, its row, its per-method rows)
    dial = dial_verdict(df, with_parts=True)
    parts = [(n, p) for n, row, _ in evaluated for p in row["parts"]] + [("dial", p) for p in dial["parts"]]
    claims = pd.DataFrame([row for _, row, _ in evaluated], columns=COLUMNS)
    return {"claims": claims.assign(unit=unit_word(d["unit"])),   # the study's, also for a claim without units (11)
            "per_method": pd.DataFrame([r for _, _, rows in evaluated for r in rows], columns=PER_METHOD_COLUMNS),
            "parts": pd.DataFrame([p.as_row(n) for n, p in parts], columns=PART_COLUMNS),
            "units": pd.DataFrame([r for n, p in parts for r in p.unit_rows(n)], columns=UNIT_COLUMNS),
            "dial": {k: v for k, v in dial.items() if k != "parts"}}


def evaluate_claims(df: pd.DataFrame) -> pd.DataFrame:
    """All eleven claims, one row each: claim, text, statistic, value, ci_low, ci_high, n (units), verdict,
    unit (draw or seed), evidence, value_unit, units_needed (inconclusive claims: units that would decide at the
    measured spread), split_parts (parts whose units' own estimates fall on both sides of their decision)."""
    return claim_tables(df)["claims"]


def per_method_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, method) for the claims judged or reported per method (1–6, 8, 10, 11): the method's
    own estimate (score points), its t interval, n_units, mark and, when unclear, the units that would decide it."""
    return claim_tables(df)["per_method"]


def parts_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per judged (or reported) part of every claim and of the dial: its estimate, 90 % and Bonferroni
    intervals, judge, margin and mark — what the forest plots draw."""
    return claim_tables(df)["parts"]


def units_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per unit of every part of the parts table: that unit's own estimate (a pre-training draw's, or a
    seed's) and whether it lies on the side of the part's bound where it reads yes — the forest plots' rows per
    draw, so a reader sees whether an answer depends on the draw."""
    return claim_tables(df)["units"]


def rules_by_claim() -> dict[int, str]:
    """Each claim's rule: its function's docstring."""
    return {n: c.rule for n, c in CLAIMS.items()}


PREAMBLE = """\
**Scores and units.** The score of a run is its best validation metric (CIDEr for captioning, VQA accuracy), as
in the paper; only complete runs are used. Effects are **absolute, in score points** (100 × the metric: a CIDEr
point, an accuracy point); no effect is divided by a baseline. "Methods" are the {N} PEFT methods. When the table
has a `consistency` column, claims 1–11 use the runs at its highest level (missing = 1, the paper's setting).

**Unit of replication.** When the runs come from more than one pre-trained model of the world (the
`pretrain_seed` column holds several values), the unit is the **pre-training draw**: the draws of a stand-in differ
more than the fine-tuning seeds on one draw, so a draw is what an answer must not hinge on (reports/tiny/schedule.md
§7.3). Otherwise (one pre-trained model, as the paper's) the unit is the seed, which fixes both the training-data
subset and the initialisation. Every effect is computed *within each unit* (a per-unit slope, a per-unit paired
difference, averaged over the unit's matched cells, and so over a draw's fine-tuning seeds); the interval is a
{CI_LEVEL:.0%} Student t interval over units (mean ± t·sd/√n), n = units. Fewer than MIN_UNITS = {MIN_UNITS} units
give no interval: the part is marked *too few units* and the claim is inconclusive. For an undecided part the
report gives `units_needed` (draws needed, or seeds needed): the smallest n with t(0.95, n−1)·sd/√n < |estimate −
the bound that would decide it|, sd the measured unit-to-unit spread (a rough planning figure: the spread of 2–4
units is itself uncertain). Each part's units are shown one by one too; a part whose units' own estimates fall on
both sides of the bound that decides it is listed in `split_parts` (with draws as the units: its answer depends on
the draw).

**Margins** (score points, per task): minimum effect MIN_GAIN_CAPTION = {MIN_GAIN_CAPTION:g} CIDEr point,
MIN_GAIN_VQA = {MIN_GAIN_VQA:g} accuracy point — the smallest gain papers in either field report as an
improvement; FLAT_CAPTION = ±{FLAT_CAPTION:g} CIDEr points over the whole data-ratio range — a few times the
seed-to-seed spread of a caption fine-tune, and below the gaps between methods the paper discusses;
COMPARABLE_CAPTION = {COMPARABLE_CAPTION:g} CIDEr points and COMPARABLE_VQA = {COMPARABLE_VQA:g} accuracy
points — the distance PEFT papers call "comparable to full fine-tuning"; LAG_VQA = {LAG_VQA:g} accuracy points
— "far behind" is at least 2.5× the comparability margin; PROMPT_PCT = {PROMPT_PCT:g} % (paper §V-C);
DIAL_NEGLIGIBLE = {DIAL_NEGLIGIBLE:g} CIDEr points per doubling of data.

**Judging one effect** (estimate *e*, {CI_LEVEL:.0%} interval [lo, hi], margin m):
{KINDS}
**Yes** uses the {CI_LEVEL:.0%} interval; a claim needing every one of its parts needs no correction (an
intersection–union test). **No** uses the Bonferroni interval at level 1 − {ALPHA:.2f}/k when any one of k
parts can refute the claim, so noise in one of five methods does not refute it by chance.

**Pre-named contrasts** (no maximum over methods or sizes inside a test). A method's *reference size* is the
size swept over the most data ratios (ties: the middle one) — the size of Fig. 3/4's data-ratio lines. A
*family score* is the mean over the family's methods at their reference sizes (plain variants), per (data
ratio, unit) cell; a unit's contrast is the mean over its cells, matched by data ratio with the other side.

**Claims about every method** (1, 4, 5, 6a, 10a): *not supported* as soon as one method is **no**; *supported*
when every method present is **yes** and at least MIN_METHODS = {MIN_METHODS} are; otherwise *inconclusive*.
"""


def rules_page() -> str:
    """The verdict rules as Markdown: the general rules (with each kind of judge's, from KINDS), then each claim's
    and the dial's, from their docstrings."""
    dial = " ".join(textwrap.dedent(dial_verdict.__doc__).split()).format(**THRESHOLDS)
    numbered = "\n".join(f"{n}. {rule}" for n, rule in rules_by_claim().items())
    kinds = "\n".join(f"- {k.rule}" for k in KINDS.values())
    return (PREAMBLE.format(**THRESHOLDS, ALPHA=1 - CI_LEVEL, KINDS=kinds, N=N_METHODS) + "\n" + numbered
            + f"\n\n**Consistency dial** (beyond the paper). {DIAL_TEXT} {dial}\n")


VERDICT_RULES = rules_page()
