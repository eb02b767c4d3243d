"""Altair figures of the study (paper Fig. 3–10, and the consistency dial); `vlpeft.report` puts them in a page.

    runs = load_runs("runs/tiny")
    fig_data_ratio(runs, "vqa")                  # Fig. 3/4: score vs data ratio, a line per variant
    fig_param_size(runs, "caption")              # Fig. 3/4: score vs parameter size, a panel per method
    fig_cost(runs, "vqa")                        # Fig. 5: score vs data size × fine-tunable parameters
    fig_curves(load_curves("runs/tiny"), "caption")   # Fig. 6–10: validation curves
    fig_dial(runs)                               # beyond the paper: score vs data ratio per consistency level

Each figure is built from the tidy table of `results.load_runs` (complete runs only).
"""
from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from ..catalog import FAMILY_COLOURS as FAMILY_COLORS
from ..catalog import METHODS, METRIC_LABEL
from ..catalog import TASK_INFO
from .results import complete, reference_sizes, summarize

TASK_LABEL = {t.name: t.title for t in TASK_INFO.values()}
PAPER_FIG = {t.name: t.paper_figure for t in TASK_INFO.values()}
# embedding methods in blues, layer methods in warm colours, full fine-tuning black: the families read at a glance
WIDTH, HEIGHT = 360, 260


def _method_color(methods) -> alt.Scale:
    domain = [m for m in METHODS if m in set(methods)]
    return alt.Scale(domain=domain, range=[METHODS[m].colour for m in domain])


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


def _title(text: str, subtitle: str) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=subtitle, anchor="start")


# ---------------------------------------------------------------------------------------------------------
def _lines(data, x: alt.X, metric: str, tooltip) -> list:
    """Lines dashed for "+ classifier", a mean ± std band and points: the layers of Fig. 3/4. The line layer
    comes first so that the merged colour legend draws strokes rather than the faint band."""
    color = alt.Color("method:N", scale=_method_color(data["method"]), title="method",
                      legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=3, symbolOpacity=1))
    y = alt.Y("mean:Q", title=metric, scale=alt.Scale(zero=False))
    base = alt.Chart().encode(x=x, color=color, detail="variant:N")
    return [
        base.mark_line().encode(y=y, strokeDash=alt.StrokeDash(
            "classifier:N", title="classifier", sort=["plain", "+ classifier"],
            legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2))),
        base.mark_errorband(opacity=0.15).encode(y=alt.Y("lo:Q", title=metric), y2="hi:Q"),
        base.mark_point(filled=True, size=30).encode(y=y, tooltip=tooltip),
    ]


def fig_data_ratio(df: pd.DataFrame, task: str) -> alt.Chart:
    """Score vs data ratio (log x), one line per variant at its reference size: colour = method, dashes =
    "+ classifier"; full fine-tuning is the black line. Mean over seeds, band = ± 1 std (≥ 2 seeds)."""
    s = _summary(df, task)
    ref = reference_sizes(s)
    s = s[s["size"] == s["method"].map(ref)]
    sizes = ", ".join(f"{m} {ref[m]}" for m in list(METHODS) if m in ref and m != "full")
    x = alt.X("data_ratio:Q", scale=alt.Scale(type="log"), title="data ratio",
              axis=alt.Axis(format="~%", values=sorted(s.data_ratio.unique())))
    tooltip = ["variant", "size", alt.Tooltip("data_ratio:Q", format="~%"), alt.Tooltip("mean:Q", format=".4f"),
               alt.Tooltip("std:Q", format=".4f"), "n"]
    return alt.layer(*_lines(s, x, _metric(df, task), tooltip), data=s).properties(
        width=WIDTH, height=HEIGHT,
        title=_title(f"{PAPER_FIG[task]} (data size) — {TASK_LABEL[task]}",
                     f"mean over seeds ± 1 std; sizes: {sizes or 'none'}"))


def fig_param_size(df: pd.DataFrame, task: str) -> alt.FacetChart:
    """Score vs parameter size (log₂ x), a panel per method (a size means prompt length, rank or hidden size),
    at the data ratio with the most sizes; full fine-tuning at that ratio is the dashed black rule."""
    s = _summary(df, task)
    peft = s[s.method != "full"]
    if peft.empty:
        raise ValueError(f"no complete PEFT runs for task {task!r}")
    cells = peft.groupby("data_ratio")["size"].count()
    ratio = max(cells[cells == cells.max()].index)   # ties: the most data
    peft = peft[peft.data_ratio == ratio].assign(kind="peft")
    full = s[(s.method == "full") & (s.data_ratio == ratio)]["mean"]
    rules = pd.DataFrame({"method": peft.method.unique(), "mean": full.mean(), "kind": "full fine-tuning"})
    data = pd.concat([peft, rules if len(full) else rules.iloc[:0]], ignore_index=True)
    data["size_label"] = data["method"].map(lambda m: METHODS[m].knob or "—")
    x = alt.X("size:Q", scale=alt.Scale(type="log", base=2), title="size (length / rank / hidden)",
              axis=alt.Axis(values=sorted(peft["size"].unique()), format="d"))
    tooltip = ["variant", "size", "size_label", alt.Tooltip("mean:Q", format=".4f"),
               alt.Tooltip("std:Q", format=".4f"), "n"]
    layers = [layer.transform_filter("datum.kind == 'peft'")
              for layer in _lines(data[data.kind == "peft"], x, _metric(df, task), tooltip)]
    rule = alt.Chart().transform_filter("datum.kind != 'peft'").mark_rule(
        color="black", strokeDash=[5, 3]).encode(y="mean:Q", tooltip=[alt.Tooltip("mean:Q", format=".4f")])
    order = [m for m in list(METHODS) if m in set(data.method)]
    return alt.layer(*layers, rule, data=data).properties(width=WIDTH * 0.6, height=HEIGHT * 0.75).facet(
        facet=alt.Facet("method:N", sort=order, title=None), columns=3,
        title=_title(f"{PAPER_FIG[task]} (parameter size) — {TASK_LABEL[task]}",
                     f"data ratio {ratio:.0%}; mean over seeds ± 1 std; dashed: full fine-tuning"),
    ).resolve_scale(x="independent")


def fig_cost(df: pd.DataFrame, task: str) -> alt.Chart:
    """Fig. 5: score vs cost = data size × fine-tunable parameters (log x), one point per run;
    colour = family (embedding / layer / full), shape = method, hollow = plain, filled = + classifier."""
    d = complete(df)
    d = d[(d.task == task) & (d.cost > 0)]
    if d.empty:
        raise ValueError(f"no complete runs with a cost for task {task!r}")
    d = d[["variant", "method", "family", "size", "data_ratio", "seed", "best_val", "cost", "tune_classifier",
           "trainable_pct"]]
    families = [f for f in FAMILY_COLORS if f in set(d.family)]
    scale = alt.Scale(domain=families, range=[FAMILY_COLORS[f] for f in families])
    return alt.Chart(d).mark_point(size=60, opacity=0.8).encode(
        x=alt.X("cost:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s"),
                title="cost = training examples × fine-tunable parameters"),
        y=alt.Y("best_val:Q", title=_metric(df, task), scale=alt.Scale(zero=False)),
        color=alt.Color("family:N", scale=scale),
        shape=alt.Shape("method:N", sort=list(METHODS)),
        fill=alt.condition("datum.tune_classifier", alt.Fill("family:N", scale=scale),
                           alt.value("transparent")),
        tooltip=["variant", "size", alt.Tooltip("data_ratio:Q", format="~%"), "seed",
                 alt.Tooltip("best_val:Q", format=".4f"), alt.Tooltip("cost:Q", format=".3~s"),
                 alt.Tooltip("trainable_pct:Q", format=".3f", title="trainable %")],
    ).properties(width=WIDTH, height=HEIGHT,
                 title=_title(f"Fig. 5 — cost vs score, {TASK_LABEL[task]}",
                              "one point per run; filled: + classifier"))


def fig_curves(curves: pd.DataFrame, task: str) -> alt.FacetChart:
    """Fig. 6–10: validation score vs step, a panel per method, colour = size; plain variants at the task's
    largest data ratio, mean over seeds."""
    c = curves[(curves.task == task) & (curves.status == "complete") & ~curves.tune_classifier.astype(bool)]
    c = c[c.data_ratio == c.data_ratio.max()]
    if c.empty:
        raise ValueError(f"no validation curves of complete runs for task {task!r}")
    ratio = c.data_ratio.iloc[0]
    c = c.groupby(["method", "size", "step"], as_index=False)["val"].mean()
    order = [m for m in list(METHODS) if m in set(c.method)]
    metric = _metric(curves, task)
    return alt.Chart(c).mark_line(point=alt.OverlayMarkDef(size=15)).encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("val:Q", title=f"validation {metric}", scale=alt.Scale(zero=False)),
        color=alt.Color("size:O", scale=alt.Scale(scheme="viridis"), title="size"),
        tooltip=["method", "size", "step", alt.Tooltip("val:Q", format=".4f")],
    ).properties(width=WIDTH * 0.6, height=HEIGHT * 0.6).facet(
        facet=alt.Facet("method:N", sort=order, title=None), columns=3,
        title=_title(f"Fig. 6–10 — validation curves, {TASK_LABEL[task]}",
                     f"data ratio {ratio:.0%}; mean over seeds"))


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
        color=alt.Color("method:N", scale=_method_color(s["method"]), title="method"),
        tooltip=["consistency", "method", alt.Tooltip("data_ratio:Q", format="~%"),
                 alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f"), "count"],
    ).properties(width=WIDTH * 0.55, height=HEIGHT * 0.7).facet(
        column=alt.Column("consistency:O", sort="descending", title="consistency with pre-training"))
    from .claims import dial_slopes
    slopes = dial_slopes(df).rename_axis("unit").reset_index().melt("unit", var_name="consistency", value_name="slope")
    slope_chart = alt.layer(
        alt.Chart(slopes).mark_point(opacity=0.5).encode(x=alt.X("consistency:Q", title="consistency"),
                                                         y=alt.Y("slope:Q", title="CIDEr points per doubling of data"),
                                                         tooltip=["unit", "consistency", alt.Tooltip("slope:Q", format=".2f")]),
        alt.Chart(slopes).mark_line(color="black").encode(x="consistency:Q", y="mean(slope):Q"),
    ).properties(width=WIDTH * 0.7, height=HEIGHT * 0.7, title="data-ratio slope per unit (mean: line)")
    return alt.hconcat(lines, slope_chart).properties(
        title=_title("Consistency dial — captioning", "prediction declared in advance: the data-ratio slope "
                     "rises as consistency falls; mean over seeds × pre-training seeds"))


FIGURES = {  # name → builder(runs, curves, task)
    "data_ratio": lambda runs, curves, task: fig_data_ratio(runs, task),
    "param_size": lambda runs, curves, task: fig_param_size(runs, task),
    "cost": lambda runs, curves, task: fig_cost(runs, task),
    "curves": lambda runs, curves, task: fig_curves(curves, task),
}
