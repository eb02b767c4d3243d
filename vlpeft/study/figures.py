"""Altair figures of the study (paper Fig. 3–10, the claims, and the consistency dial); `vlpeft.study.report`
puts them in a page and the analysis notebook shows them.

    runs = load_runs("runs/tiny")
    fig_data_ratio(runs, "vqa")                  # Fig. 3/4: score vs data ratio, a line per variant
    fig_param_size(runs, "caption")              # Fig. 3/4: score vs parameter size, a panel per method
    fig_cost(runs, "vqa")                        # Fig. 5: score vs data size × fine-tunable parameters
    fig_curves(load_curves("runs/tiny"), "caption")   # Fig. 6–10: validation curves
    fig_forest(parts_table(runs), 4)             # a claim's parts: effect, interval, margin, mark
    fig_marks(per_method_table(runs))            # each method's own mark, claim by claim
    fig_budget(runs)                             # claim 11: the share of parameters each method trains
    fig_dial(runs)                               # beyond the paper: score vs data ratio per consistency level

Each figure is built from the tidy tables of `results` and `claims` (complete runs only). Every mark carries a
tooltip (variant, size, data ratio, seed and value; the run's folder for single runs) and the method legend is
a selection: in a live JupyterLab kernel a click on a method dims the others (`vlpeft.nb` renders the charts
interactively there, offline); saved as SVG/PNG the charts are static.
"""
from __future__ import annotations

import math
from pathlib import Path

import altair as alt
import pandas as pd

from ..catalog import FAMILY_COLOURS, METHODS, METRIC_LABEL, TASK_INFO
from .claims import dial_slopes
from .claims.judges import KINDS, PROMPT_PCT, REPORTED
from .results import complete, reference_sizes, run_draws, summarize

TASK_LABEL = {t.name: t.title for t in TASK_INFO.values()}
PAPER_FIG = {t.name: t.paper_figure for t in TASK_INFO.values()}
WIDTH, HEIGHT = 360, 260


def _method_colour(methods) -> alt.Scale:
    """The catalogue's colour of each method: embedding methods in blues, layer methods in warm colours, full
    fine-tuning black — the families read at a glance."""
    domain = [m for m in METHODS if m in set(methods)]
    return alt.Scale(domain=domain, range=[METHODS[m].colour for m in domain])


def _sized(methods: pd.Series) -> pd.Series:
    """Which rows' methods have a size (a knob on a log₂ axis): not full fine-tuning, nor any method without one."""
    return methods.map(lambda m: m in METHODS and METHODS[m].sized).astype(bool)


def _metric(d: pd.DataFrame, task: str) -> str:
    """Axis title for the task's metric (from the runs' own `metric` field)."""
    metrics = d.loc[d.task == task, "metric"].dropna().unique()
    return METRIC_LABEL.get(metrics[0], metrics[0]) if len(metrics) else "score"


def _summary(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Seed summary of one task, with an error band (mean ± std) where there are ≥ 2 seeds."""
    s = summarize(df)
    s = s[s.task == task].copy()
    if s.empty:
        raise ValueError(f"no complete runs for task {task!r}")
    s["lo"] = (s["mean"] - s["std"]).where(s["n"] >= 2)
    s["hi"] = (s["mean"] + s["std"]).where(s["n"] >= 2)
    s["classifier"] = s["tune_classifier"].map({True: "+ classifier", False: "plain"})
    return s


def _over(df: pd.DataFrame) -> str:
    """What a figure's means are over: the seeds of one pre-trained model, or the runs of several draws (a run's
    draw by the claims' rule, `results.run_draws`)."""
    draws = run_draws(df).nunique()
    return f"the runs of {draws} pre-training draws" if draws > 1 else "seeds"


def _title(text: str, subtitle: str) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=subtitle, anchor="start")


# ---------------------------------------------------------------------------------------------------------
PICK = "method_pick"   # the legend selection's name: one per chart (a facet shares it across its panels)


def _picker() -> alt.Parameter:
    return alt.selection_point(name=PICK, fields=["method"], bind="legend")


def _faded(on: float = 1.0, off: float = 0.12) -> alt.OpacityValue:
    return alt.condition(alt.param(PICK), alt.value(on), alt.value(off))


SEED_TOOLTIP = ["variant", "size", alt.Tooltip("data_ratio:Q", format="~%"), "seed",
                alt.Tooltip("best_val:Q", format=".4f", title="best validation score"), "run_dir"]


def _with_rings(data: pd.DataFrame, x: str, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """`data` and, for each mean point that a later one covers exactly (the same x and score, often 0 in a short
    run), a row of kind "ring": `_lines` draws it as a ring around the point, the wider the deeper it lies, so that
    no point hides another. Nothing is added where no two points coincide."""
    means = data[data.kind == "mean"]
    rings = []
    for _, group in means.groupby([*by, x, "mean"], sort=False):
        for depth, (_, row) in enumerate(group.iloc[::-1].iterrows()):  # the last row is drawn on top
            if depth:
                rings.append(row.to_dict() | {"kind": "ring", "ring": 30 + 70 * depth})
    return pd.concat([data, pd.DataFrame(rings)], ignore_index=True) if rings else data


def _lines(data, x: alt.X, metric: str, tooltip, seed_x: str) -> list:
    """Lines dashed for "+ classifier", a mean ± std band, the means as points and each seed's run as a small
    dot: the layers of Fig. 3/4. `data` holds rows of kind "mean" (the seed summary) and "seed" (one per run).
    The line layer comes first so that the merged colour legend draws strokes rather than the faint band, and it
    carries the legend selection."""
    colour = alt.Color("method:N", scale=_method_colour(data["method"]), title="method",
                       legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=3, symbolOpacity=1))
    y = alt.Y("mean:Q", title=metric, scale=alt.Scale(zero=False))
    base = alt.Chart().encode(x=x, color=colour, detail="variant:N")
    means = "datum.kind == 'mean'"
    return [
        base.mark_line().encode(y=y, opacity=_faded(), strokeDash=alt.StrokeDash(
            "classifier:N", title="classifier", sort=["plain", "+ classifier"],
            legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2))).transform_filter(means).add_params(
            _picker()),
        base.mark_errorband(opacity=0.15).encode(y=alt.Y("lo:Q", title=metric), y2="hi:Q").transform_filter(means),
        base.mark_point(filled=True, size=30).encode(y=y, tooltip=tooltip, opacity=_faded()).transform_filter(means),
        alt.Chart().mark_point(size=10, filled=True).encode(
            x=alt.X(f"{seed_x}:Q"), y=alt.Y("best_val:Q"), color=colour, opacity=_faded(0.35, 0.05),
            tooltip=SEED_TOOLTIP).transform_filter("datum.kind == 'seed'"),
    ] + ([base.mark_point(filled=False, strokeWidth=1.5).encode(
        y=y, size=alt.Size("ring:Q", scale=None, legend=None), tooltip=tooltip, opacity=_faded()).transform_filter(
        "datum.kind == 'ring'")] if (data.kind == "ring").any() else [])


def _with_seeds(summary: pd.DataFrame, df: pd.DataFrame, task: str) -> pd.DataFrame:
    """The seed summary (kind "mean") and each complete run of the task (kind "seed") in one table."""
    runs = complete(df)
    runs = runs[runs.task == task].reindex(columns=["method", "variant", "size", "data_ratio", "seed", "best_val",
                                                    "tune_classifier", "run_dir"]
                                           + (["pretrain_seed"] if _over(df) != "seeds" else []))
    runs["classifier"] = runs["tune_classifier"].map({True: "+ classifier", False: "plain"})
    return pd.concat([summary.assign(kind="mean"), runs.assign(kind="seed")], ignore_index=True)


def fig_data_ratio(df: pd.DataFrame, task: str) -> alt.Chart:
    """Score vs data ratio (log x), one line per variant at its reference size: colour = method, dashes =
    "+ classifier"; full fine-tuning is the black line. Mean over seeds (or the runs of several pre-training
    draws), band = ± 1 std (≥ 2 runs)."""
    s = _summary(df, task)
    ref = reference_sizes(s)
    s = s[s["size"] == s["method"].map(ref)]
    sizes = ", ".join(f"{m} {ref[m]}" for m in list(METHODS) if m in ref and METHODS[m].sized)
    x = alt.X("data_ratio:Q", scale=alt.Scale(type="log"), title="data ratio",
              axis=alt.Axis(format="~%", values=sorted(s.data_ratio.unique())))
    tooltip = ["variant", "size", alt.Tooltip("data_ratio:Q", format="~%"), alt.Tooltip("mean:Q", format=".4f"),
               alt.Tooltip("std:Q", format=".4f"), "n"]
    data = _with_seeds(s, df, task)
    data = _with_rings(data[(data.kind == "mean") | (data["size"] == data["method"].map(ref | {"full": 0}))],
                       "data_ratio")
    return alt.layer(*_lines(data, x, _metric(df, task), tooltip, "data_ratio"), data=data).properties(
        width=WIDTH, height=HEIGHT,
        title=_title(f"{PAPER_FIG[task]} (data size) — {TASK_LABEL[task]}",
                     f"mean over {_over(df)} ± 1 std; sizes: {sizes or 'none'}"))


def fig_param_size(df: pd.DataFrame, task: str) -> alt.FacetChart:
    """Score vs parameter size (log₂ x), a panel per method with a size (a size means prompt length, rank or hidden
    size), at the data ratio with the most sizes; full fine-tuning at that ratio is the dashed black rule."""
    s = _summary(df, task)
    peft = s[_sized(s.method)]
    if peft.empty:
        raise ValueError(f"no complete PEFT runs for task {task!r}")
    cells = peft.groupby("data_ratio")["size"].count()
    ratio = max(cells[cells == cells.max()].index)   # ties: the most data
    peft = peft[peft.data_ratio == ratio]
    full = s[(s.method == "full") & (s.data_ratio == ratio)]["mean"]
    rules = pd.DataFrame({"method": peft.method.unique(), "mean": full.mean(), "kind": "full fine-tuning"})
    seeds = _with_seeds(peft, df, task)
    seeds = seeds[_sized(seeds.method) & (seeds.data_ratio == ratio)]
    data = pd.concat([seeds, rules if len(full) else rules.iloc[:0]], ignore_index=True)
    data["size_label"] = data["method"].map(lambda m: METHODS[m].knob or "—")
    x = alt.X("size:Q", scale=alt.Scale(type="log", base=2), title="size (length / rank / hidden)",
              axis=alt.Axis(values=sorted(peft["size"].unique()), format="d"))
    tooltip = ["variant", "size", "size_label", alt.Tooltip("mean:Q", format=".4f"),
               alt.Tooltip("std:Q", format=".4f"), "n"]
    data = _with_rings(data, "size", by=("method",))
    layers = _lines(data[data.kind != "full fine-tuning"], x, _metric(df, task), tooltip, "size")
    rule = alt.Chart().transform_filter("datum.kind == 'full fine-tuning'").mark_rule(
        color="black", strokeDash=[5, 3]).encode(y="mean:Q", tooltip=[alt.Tooltip("mean:Q", format=".4f")])
    order = [m for m in list(METHODS) if m in set(data.method)]
    return alt.layer(*layers, rule, data=data).properties(width=WIDTH * 0.6, height=HEIGHT * 0.75).facet(
        facet=alt.Facet("method:N", sort=order, title=None), columns=3,
        title=_title(f"{PAPER_FIG[task]} (parameter size) — {TASK_LABEL[task]}",
                     f"data ratio {ratio:.0%}; mean over {_over(df)} ± 1 std; dashed: full fine-tuning"),
    ).resolve_scale(x="independent")


def fig_cost(df: pd.DataFrame, task: str) -> alt.Chart:
    """Fig. 5: score vs cost = data size × fine-tunable parameters (log x), one point per run;
    colour = family (embedding / layer / full), shape = method, hollow = plain, filled = + classifier."""
    d = complete(df)
    d = d[(d.task == task) & (d.cost > 0)]
    if d.empty:
        raise ValueError(f"no complete runs with a cost for task {task!r}")
    d = d[["variant", "method", "family", "size", "data_ratio", "seed", "best_val", "cost", "tune_classifier",
           "trainable_pct", "run_dir"]]
    families = [f for f in FAMILY_COLOURS if f in set(d.family)]
    scale = alt.Scale(domain=families, range=[FAMILY_COLOURS[f] for f in families])
    return alt.Chart(d).mark_point(size=60, opacity=0.8).encode(
        x=alt.X("cost:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s"),
                title="cost = training examples × fine-tunable parameters"),
        y=alt.Y("best_val:Q", title=_metric(df, task), scale=alt.Scale(zero=False)),
        color=alt.Color("family:N", scale=scale),
        shape=alt.Shape("method:N", sort=list(METHODS), title="method (click to pick)"),
        fill=alt.condition("datum.tune_classifier", alt.Fill("family:N", scale=scale),
                           alt.value("transparent")),
        opacity=_faded(0.8, 0.1),
        tooltip=["variant", "size", alt.Tooltip("data_ratio:Q", format="~%"), "seed",
                 alt.Tooltip("best_val:Q", format=".4f"), alt.Tooltip("cost:Q", format=".3~s"),
                 alt.Tooltip("trainable_pct:Q", format=".3f", title="trainable %"), "run_dir"],
    ).add_params(_picker()).properties(width=WIDTH, height=HEIGHT,
                 title=_title(f"Fig. 5 — cost vs score, {TASK_LABEL[task]}",
                              "one point per run; filled: + classifier"))


def fig_curves(curves: pd.DataFrame, task: str) -> alt.FacetChart:
    """Fig. 6–10: validation score vs step, a panel per method, colour = size; plain variants at the task's
    largest data ratio, mean over seeds (or the runs of several pre-training draws)."""
    if curves.empty or "task" not in curves:
        raise ValueError("no validation curves (a report folder without curves.csv)")
    c = curves[(curves.task == task) & (curves.status == "complete") & ~curves.tune_classifier.astype(bool)]
    c = c[c.data_ratio == c.data_ratio.max()]
    if c.empty:
        raise ValueError(f"no validation curves of complete runs for task {task!r}")
    ratio = c.data_ratio.iloc[0]
    c = c.groupby(["method", "size", "step"], as_index=False)["val"].agg(val="mean", seeds="count")
    order = [m for m in list(METHODS) if m in set(c.method)]
    metric = _metric(curves, task)
    return alt.Chart(c).mark_line(point=alt.OverlayMarkDef(size=15)).encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("val:Q", title=f"validation {metric}", scale=alt.Scale(zero=False)),
        color=alt.Color("size:O", scale=alt.Scale(scheme="viridis"), title="size"),
        tooltip=["method", "size", "step", alt.Tooltip("val:Q", format=".4f", title="mean validation score"),
                 "seeds"],
    ).properties(width=WIDTH * 0.6, height=HEIGHT * 0.6).facet(
        facet=alt.Facet("method:N", sort=order, title=None), columns=3,
        title=_title(f"Fig. 6–10 — validation curves, {TASK_LABEL[task]}",
                     f"data ratio {ratio:.0%}; mean over {_over(curves)}"))


# ---------------------------------------------------------------------------------------------------------
# The claims, drawn: each part against its margin, and each method's mark
MARK_COLOURS = {"yes": "#2e7d32", "no": "#c62828", "unclear": "#f9a825", "too few units": "#9e9e9e",
                "too few points": "#9e9e9e", "not judged": "#607d8b"}


UNIT_ROW = " ⟩ "   # joins a part and one of its units in a row's key: "lora ⟩ draw 1" (labelled "⟩ draw 1")


# a draw's ring in a forest plot: which side of its part's bound the draw's own estimate lies on (None: a part
# reported beside the claim, not judged)
SIDE_COLOURS = {True: MARK_COLOURS["yes"], False: MARK_COLOURS["no"], None: "#9e9e9e"}
SIDE_WORDS = {True: "on the yes side of the bound", False: "on the other side", None: REPORTED}


def fig_forest(parts: pd.DataFrame, claim, verdict: str | None = None, text: str | None = None,
               units: pd.DataFrame | None = None) -> alt.LayerChart:
    """One claim's parts (a forest plot): each effect in score points with its 90 % interval (thick) and the
    Bonferroni interval that 'no' is read from (thin), the region where the 90 % interval means 'yes' shaded
    green, the margin dashed, the mark as colour. The region, the margin lines and the rule's words are the part's
    kind of judge's own (`claims.judges.KINDS`): this draws them. With `units` (the units table of a study whose
    units are pre-training draws), a row per draw under each part: that draw's own estimate, a ring, green when it
    lies on the side of the bound where the part reads yes, red when not, grey for a part reported, not judged —
    whether the answer depends on the draw."""
    d = parts[parts.claim.astype(str) == str(claim)].copy()
    if d.empty:
        raise ValueError(f"claim {claim}: no parts to draw")
    u = (units[units.claim.astype(str) == str(claim)].merge(d.drop(columns="estimate"), on=["claim", "part"])
         if units is not None else pd.DataFrame(columns=list(dict.fromkeys([*d.columns, "unit", "towards_yes"]))))
    d["row"], u["row"] = d.part, u.part + UNIT_ROW + u.unit.astype(str)
    bounds = pd.concat([d[c] for c in ("ci_low", "ci_high", "bonferroni_low", "bonferroni_high", "estimate")]
                       + [u.estimate, d.margin, -d.margin]).dropna()
    span = float(bounds.max() - bounds.min()) or 1.0
    lo, hi = float(bounds.min()) - 0.08 * span, float(bounds.max()) + 0.08 * span
    kinds = [KINDS.get(j) for j in d.judge]        # None: a part reported beside the claim, not judged
    region = [k.yes_region(m, lo, hi) if k else (math.nan, math.nan) for k, m in zip(kinds, d.margin)]
    lines = [k.margin_lines(m) if k else (None, None) for k, m in zip(kinds, d.margin)]
    d["yes_from"], d["yes_to"] = [r[0] for r in region], [r[1] for r in region]
    d["rule"] = [k.label(m) if k else REPORTED for k, m in zip(kinds, d.margin)]
    d["margin_at"], d["margin_neg"] = [ln[0] for ln in lines], [ln[1] for ln in lines]
    order = [r for part in dict.fromkeys(d.part) for r in [part, *u.row[u.part == part]]]
    shade = d[["part", "yes_from", "yes_to", "margin_at", "margin_neg"]]
    d = pd.concat([d, u.drop(columns=["yes_from", "yes_to", "margin_at", "margin_neg"], errors="ignore")
                   .merge(shade, on="part")[["row", "part", "yes_from", "yes_to", "margin_at", "margin_neg"]]]
                  ) if len(u) else d                       # the shading and margins run on through a part's draws
    sides = [None if pd.isna(s) else bool(s) for s in u.towards_yes]     # None: a part reported, not judged
    u["side"] = [SIDE_COLOURS[s] for s in sides]
    u["side_words"] = [SIDE_WORDS[s] for s in sides]
    label = f"indexof(datum.label, '{UNIT_ROW}') >= 0 ? '⟩ ' + split(datum.label, '{UNIT_ROW}')[1] : datum.label"
    y = alt.Y("row:N", sort=order, title=None, axis=alt.Axis(labelLimit=260, labelExpr=label))
    x = alt.X("estimate:Q", title="effect (score points)", scale=alt.Scale(domain=[lo, hi], clamp=True))
    marks = [m for m in MARK_COLOURS if m in set(d["mark"])]
    colour = alt.Color("mark:N", scale=alt.Scale(domain=marks, range=[MARK_COLOURS[m] for m in marks]),
                       title="mark")
    tip = ["part", alt.Tooltip("estimate:Q", format="+.2f"), alt.Tooltip("ci_low:Q", format="+.2f"),
           alt.Tooltip("ci_high:Q", format="+.2f"), "n_units", "k", "rule", "mark"]
    base = alt.Chart(d).encode(y=y)
    layers = [
        base.mark_bar(color="#2e7d32", opacity=0.12, height={"band": 0.9}).encode(
            x=alt.X("yes_from:Q", scale=alt.Scale(domain=[lo, hi], clamp=True)), x2="yes_to:Q"),
        alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#888").encode(x="zero:Q"),
        base.mark_tick(color="#555", strokeDash=[3, 2], thickness=1.5, size=16).encode(x="margin_at:Q"),
        base.mark_tick(color="#555", strokeDash=[3, 2], thickness=1.5, size=16).encode(x="margin_neg:Q"),
        base.mark_rule(strokeWidth=1).encode(x="bonferroni_low:Q", x2="bonferroni_high:Q", color=colour),
        base.mark_rule(strokeWidth=4).encode(x="ci_low:Q", x2="ci_high:Q", color=colour, tooltip=tip),
        base.mark_point(filled=True, size=70, shape="diamond").encode(x=x, color=colour, tooltip=tip),
    ]
    rings, drawn = [], [s for s in SIDE_WORDS if s in sides]     # the legend names only the sides drawn
    if len(u):
        rings.append(alt.Chart(u).mark_point(filled=False, size=45, strokeWidth=1.5).encode(
            y=y, x=x, color=alt.Color("side_words:N", title="a draw's estimate", scale=alt.Scale(
                domain=[SIDE_WORDS[s] for s in drawn], range=[SIDE_COLOURS[s] for s in drawn])),
            tooltip=["part", "unit", alt.Tooltip("estimate:Q", format="+.2f"), "side_words"]))
    title = f"Claim {claim}" if claim != "dial" else "Consistency dial"
    chart = alt.layer(alt.layer(*layers), *rings).resolve_scale(color="independent") if rings else alt.layer(*layers)
    return chart.properties(   # the rings' legend beside the marks' (the marks' layers share one colour scale)
        width=WIDTH * 1.1, height=max(60, (22 if len(u) == 0 else 16) * len(order)),
        title=_title(f"{title}: {verdict}" if verdict else title, text or ""))


def fig_marks(per_method: pd.DataFrame) -> alt.LayerChart:
    """Each method's own mark on the claims judged per method (a method × claim grid), its estimate written in."""
    d = per_method.sort_values("estimate", ascending=False).drop_duplicates(["claim", "method"])  # 11: per task
    if d.empty:
        raise ValueError("no per-method marks")
    d["claim"] = d["claim"].astype(str)
    d["shown"] = [f"{e:+.1f}" if e == e and c != "11" else (f"{e:.2g}%" if e == e else "")
                  for e, c in zip(d.estimate, d.claim)]
    claims_order = sorted(d.claim.unique(), key=lambda c: (len(c), c))
    methods = [m for m in METHODS if m in set(d.method)]
    marks = [m for m in MARK_COLOURS if m in set(d["mark"])]
    base = alt.Chart(d).encode(x=alt.X("claim:O", sort=claims_order, title="claim"),
                               y=alt.Y("method:N", sort=methods, title=None))
    tip = ["claim", "method", "statistic", alt.Tooltip("estimate:Q", format="+.2f"),
           alt.Tooltip("ci_low:Q", format="+.2f"), alt.Tooltip("ci_high:Q", format="+.2f"), "mark", "detail"]
    return alt.layer(
        base.mark_rect(stroke="white").encode(color=alt.Color(
            "mark:N", scale=alt.Scale(domain=marks, range=[MARK_COLOURS[m] for m in marks]), title="mark"),
            tooltip=tip),
        base.mark_text(fontSize=10, color="white").encode(text="shown:N"),
    ).properties(width=44 * len(claims_order), height=26 * len(methods),
                 title=_title("Each method's own mark", "claims judged per method; the number is its estimate "
                              "(score points; claim 11: trainable %)"))


def fig_budget(df: pd.DataFrame) -> alt.FacetChart:
    """Claim 11: the share of all parameters each PEFT method with a size trains, by its size (plain runs), per task;
    the dashed line is the paper's 0.16 %."""
    d = complete(df)
    d = d[_sized(d.method) & ~d.tune_classifier.astype(bool)]
    if d.empty or d["trainable_pct"].isna().all():
        raise ValueError("no plain PEFT runs with a trainable share")
    d = d.groupby(["task", "method", "size"], as_index=False)[["trainable_pct", "trainable_params"]].first()
    line = alt.Chart().mark_line(point=True).encode(
        x=alt.X("size:Q", scale=alt.Scale(type="log", base=2), title="size (length / rank / hidden)"),
        y=alt.Y("trainable_pct:Q", scale=alt.Scale(type="log"), title="trainable % of all parameters"),
        color=alt.Color("method:N", scale=_method_colour(d["method"]), title="method"), opacity=_faded(),
        tooltip=["method", "size", alt.Tooltip("trainable_pct:Q", format=".4f"),
                 alt.Tooltip("trainable_params:Q", format=",d")]).add_params(_picker())
    rule = alt.Chart().mark_rule(color="black", strokeDash=[5, 3]).encode(y=alt.datum(PROMPT_PCT))
    return alt.layer(line, rule, data=d).properties(width=WIDTH * 0.8, height=HEIGHT * 0.75).facet(
        column=alt.Column("task:N", title=None)).properties(
        title=_title("Claim 11 — the parameter budget", f"dashed: the paper's {PROMPT_PCT:g} % (prompt-tuning on "
                     "mPLUG-base); a share is the model's, so the tiny model's differ from BLIP-base's"))


# ---------------------------------------------------------------------------------------------------------
# Beyond the paper
def fig_dial(df: pd.DataFrame) -> alt.HConcatChart:
    """The consistency dial (beyond the paper): captioning score vs data ratio at each consistency level (mean
    over seeds and pre-training seeds, each method at its reference size), and the data-ratio slope of every
    unit against the level — the prediction declared in advance is that the slope rises as consistency falls."""
    d = complete(df)
    d = d[(d.task == "caption") & d.consistency.notna() & ~d.tune_classifier]
    if d.consistency.nunique() < 2:
        raise ValueError("the dial needs caption runs at two or more consistency levels")
    ref = reference_sizes(d)
    d = d[d["size"] == d["method"].map(ref)]
    s = d.groupby(["consistency", "method", "data_ratio"], as_index=False)["best_val"].agg(["mean", "std", "count"])
    x = alt.X("data_ratio:Q", scale=alt.Scale(type="log"), title="data ratio",
              axis=alt.Axis(format="~%", values=sorted(s.data_ratio.unique())))
    lines = alt.Chart(s).mark_line(point=True).encode(
        x=x, y=alt.Y("mean:Q", title="CIDEr", scale=alt.Scale(zero=False)),
        color=alt.Color("method:N", scale=_method_colour(s["method"]), title="method"),
        tooltip=["consistency", "method", alt.Tooltip("data_ratio:Q", format="~%"),
                 alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f"), "count"],
    ).properties(width=WIDTH * 0.55, height=HEIGHT * 0.7).facet(
        column=alt.Column("consistency:O", sort="descending", title="consistency with pre-training"))
    slopes = dial_slopes(df).rename_axis("unit").reset_index().melt("unit", var_name="consistency", value_name="slope")
    slope_chart = alt.layer(
        alt.Chart(slopes).mark_point(opacity=0.5).encode(
            x=alt.X("consistency:Q", title="consistency"),
            y=alt.Y("slope:Q", title="CIDEr points per doubling of data"),
            tooltip=["unit", "consistency", alt.Tooltip("slope:Q", format=".2f")]),
        alt.Chart(slopes).mark_line(color="black").encode(x="consistency:Q", y="mean(slope):Q"),
    ).properties(width=WIDTH * 0.7, height=HEIGHT * 0.7, title="data-ratio slope per unit (mean: line)")
    return alt.hconcat(lines, slope_chart).properties(
        title=_title("Consistency dial — captioning", "prediction declared in advance: the data-ratio slope "
                     "rises as consistency falls; mean over seeds × pre-training seeds"))


# ---------------------------------------------------------------------------------------------------------
def save(chart, out_dir, name: str, formats=("png", "svg")) -> list[Path]:
    """Write `name.png` and `name.svg` (vl-convert: no browser, no network); return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        chart.save(str(path), format=fmt, **({"ppi": 144} if fmt == "png" else {}))
        paths.append(path)
    return paths
