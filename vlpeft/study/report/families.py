"""Two pre-training recipes, one study — the paper's own open question, "the influence of the base model".

The same grid, seeds and schedules run from the tiny BLIP pre-trained with mPLUG's recipe (the paper's model:
`make study` → reports/tiny) and with BLIP's (`vlpeft study --preset tiny-blip` → reports/tiny-blip); the recipes
differ in one objective and in what the VQA answer decoder reads (`vlpeft/worlds/pretrain.py`). This page sets the
eleven verdicts and each method's scores of the two side by side:

    studies = {"mPLUG recipe": Study.load("reports/tiny"), "BLIP recipe": Study.load("reports/tiny-blip")}
    verdicts_side_by_side(studies)     # claim × recipe: verdict (value [90 % interval])
    scores_side_by_side(studies)       # task × method at its reference size and 100 % data: score per recipe, and
                                       #   the difference (first − second) with its 90 % t interval over seeds
    write_families(studies, "reports/families")

A difference is paired by seed (a seed fixes the training subset and the method's initialisation in both studies,
`claims.stats`); a recipe's runs are those its study holds, each study judged by its own declared rules.
"""
from __future__ import annotations

import html
from pathlib import Path

import altair as alt
import pandas as pd

from ...catalog import METHODS, TASK_INFO
from .. import figures as F
from ..claims.stats import CI_LEVEL, Estimate
from ..results import complete, reference_sizes
from .load import Study
from .page import CSS, _html_table, _img, _markdown
from .sections import verdict_table

RECIPE_TITLES = {"mplug": "mPLUG recipe", "blip": "BLIP recipe"}


def label_of(study: Study) -> str:
    """A study's recipe as its runs record it ("mPLUG recipe"), else its name. Runs of the embedded model from
    before recipes were recorded (a pre-training seed but no recipe: #29) were pre-trained with BLIP's, then the
    only one."""
    runs = study.runs
    recipes = runs["recipe"].dropna().unique() if "recipe" in runs else []
    if not len(recipes) and "pretrain_seed" in runs and runs["pretrain_seed"].notna().any():
        recipes = ["blip"]
    return RECIPE_TITLES.get(recipes[0], study.name) if len(recipes) == 1 else study.name


def verdicts_side_by_side(studies: dict[str, Study]) -> pd.DataFrame:
    """One row per claim: its text, then each recipe's verdict and value; `same` says whether they agree."""
    tables = {name: verdict_table(s).set_index("#") for name, s in studies.items()}
    first = next(iter(tables.values()))
    out = pd.DataFrame({"#": first.index, "claim": first["claim"].to_numpy()})
    for name, t in tables.items():
        t = t.reindex(first.index)
        out[f"{name}: verdict"] = t["verdict"].to_numpy()
        out[f"{name}: value"] = t["value"].to_numpy()
    verdicts = out[[c for c in out.columns if c.endswith(": verdict")]]
    out["same verdict"] = verdicts.nunique(axis=1).eq(1).map({True: "yes", False: "no"})
    return out


def _per_seed(study: Study, task: str, method: str) -> pd.Series:
    """Score points (100 × best validation score) per seed of a method's plain runs at its reference size and 100 %
    data (full fine-tuning: at 100 % data)."""
    d = complete(study.paper_runs)
    d = d[(d.task == task) & ~d.tune_classifier]
    if d.empty or method not in set(d.method):
        return pd.Series(dtype=float)
    size = reference_sizes(d)[method]
    d = d[(d.method == method) & (d["size"] == size) & (d.data_ratio == d.data_ratio.max())]
    return (100 * d.groupby("seed")["best_val"].mean()).rename(method)


def scores_side_by_side(studies: dict[str, Study]) -> pd.DataFrame:
    """task × method: each recipe's mean score (points, 90 % interval over seeds) and the first minus the second,
    paired by seed."""
    names = list(studies)
    rows = []
    for task in TASK_INFO:
        for method in METHODS:
            per = {name: _per_seed(s, task, method) for name, s in studies.items()}
            if all(v.empty for v in per.values()):
                continue
            row = {"task": task, "method": METHODS[method].title, "family": METHODS[method].family}
            for name, v in per.items():
                e = Estimate(v)
                row |= {f"{name}": e.est, f"{name} low": e.lo, f"{name} high": e.hi, f"{name} n": e.n}
            if len(names) == 2:
                diff = Estimate(per[names[0]]) - Estimate(per[names[1]])
                row |= {"difference": diff.est, "difference low": diff.lo, "difference high": diff.hi}
            rows.append(row)
    return pd.DataFrame(rows)


def scores_chart(scores: pd.DataFrame, names: list[str]) -> alt.Chart:
    """Each method's score per recipe (points: the mean; whiskers: the 90 % interval over seeds), one panel per
    task; the axis starts where the scores are, not at 0, so that the recipes' difference shows."""
    long = pd.concat([scores[["task", "method"]].assign(recipe=n, score=scores[n], low=scores[f"{n} low"],
                                                        high=scores[f"{n} high"]) for n in names])
    order = [m.title for m in METHODS.values()]
    base = alt.Chart(long).encode(x=alt.X("method:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30)),
                                  xOffset=alt.XOffset("recipe:N", sort=names))
    points = base.mark_point(filled=True, size=70).encode(
        y=alt.Y("score:Q", title="score points (100 × CIDEr / VQA accuracy)", scale=alt.Scale(zero=False)),
        color=alt.Color("recipe:N", sort=names, scale=alt.Scale(range=["#4c78a8", "#f58518"])),
        tooltip=["task", "method", "recipe", alt.Tooltip("score:Q", format=".1f"), alt.Tooltip("low:Q", format=".1f"),
                 alt.Tooltip("high:Q", format=".1f")])
    whiskers = base.mark_rule().encode(y="low:Q", y2="high:Q", color=alt.Color("recipe:N", sort=names))
    return alt.layer(whiskers, points).properties(width=320, height=220).facet(
        column=alt.Column("task:N", title=None, header=alt.Header(labelFontSize=13))).resolve_scale(y="independent")


def what_changes(verdicts: pd.DataFrame, scores: pd.DataFrame, names: list[str]) -> list[str]:
    """The differences in words: verdicts that differ, and methods whose score differs beyond its interval."""
    lines = []
    for r in verdicts[verdicts["same verdict"] == "no"].to_dict("records"):
        lines.append(f"claim {r['#']} ({r['claim']}): " + "; ".join(
            f"{n}: {r[f'{n}: verdict']} ({r[f'{n}: value']})" for n in names))
    if "difference" in scores:
        for r in scores.to_dict("records"):
            if pd.notna(r["difference low"]) and (r["difference low"] > 0 or r["difference high"] < 0):
                lines.append(f"{r['task']}, {r['method']}: {names[0]} {r[names[0]]:.1f}, {names[1]} {r[names[1]]:.1f} "
                             f"points ({r['difference']:+.1f} [{r['difference low']:+.1f}, "
                             f"{r['difference high']:+.1f}])")
    return lines or ["no verdict and no reference-size score differs beyond its interval"]


def scores_for_page(scores: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    def cell(r, n):
        return "" if pd.isna(r[n]) else (f"{r[n]:.1f}" + ("" if pd.isna(r[f"{n} low"]) else
                                                          f" [{r[f'{n} low']:.1f}, {r[f'{n} high']:.1f}]"))
    out = scores[["task", "method"]].copy()
    for n in names:
        out[n] = [cell(r, n) for r in scores.to_dict("records")]
    if "difference" in scores:
        out[f"{names[0]} − {names[1]}"] = [
            "" if pd.isna(r["difference"]) else f"{r['difference']:+.1f}" + (
                "" if pd.isna(r["difference low"]) else f" [{r['difference low']:+.1f}, {r['difference high']:+.1f}]")
            for r in scores.to_dict("records")]
    return out


def write_families(studies: dict[str, Study], out_dir, formats=("png", "svg")) -> Path:
    """reports/families/: verdicts.csv, scores.csv, families.md, figures/scores.*, index.html (offline)."""
    names = list(studies)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdicts, scores = verdicts_side_by_side(studies), scores_side_by_side(studies)
    verdicts.to_csv(out / "verdicts.csv", index=False)
    scores.round(3).to_csv(out / "scores.csv", index=False)
    table = scores_for_page(scores, names)
    changes = what_changes(verdicts, scores, names)
    (out / "families.md").write_text(
        "# Two pre-training recipes, one study\n\n## What the recipe changes\n\n" + "".join(f"- {c}\n" for c in changes)
        + "\n## The verdicts\n\n" + _markdown(verdicts) + "\n## The scores at the reference sizes, 100 % data "
        f"(points, {CI_LEVEL:.0%} t intervals over seeds)\n\n" + _markdown(table))
    figure = _img(F.save(scores_chart(scores, names), out / "figures", "scores", formats), "scores per recipe")
    e = html.escape
    sources = "; ".join(f"<b>{e(n)}</b>: <code>{e(s.source)}</code> ({len(complete(s.runs))} complete runs)"
                        for n, s in studies.items())
    (out / "index.html").write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vlpeft — two pre-training recipes</title><style>{CSS}</style></head><body>
<h1>vlpeft — the same study from two pre-training recipes</h1>
<p class='q'>The paper fine-tunes mPLUG-base and leaves "the influence of the base model" to future work. The embedded
world can answer it: one grid, the same seeds and schedules, run from a tiny BLIP pre-trained with mPLUG's recipe
(PrefixLM; the VQA answer decoder reads the image and the question) and with BLIP's (a sentence started from the
image; the answer decoder reads the question only). {sources}. Each study is judged by its own declared rules;
scores are 100 × the best validation CIDEr / VQA accuracy at each method's reference size and 100 % data, with
{CI_LEVEL:.0%} t intervals over seeds; differences are paired by seed.</p>
<h2>What the recipe changes</h2><ul>{"".join(f"<li>{e(c)}</li>" for c in changes)}</ul>
<h2>The eleven verdicts</h2>{_html_table(verdicts)}
<h2>Each method's score</h2>{figure}{_html_table(table)}
</body></html>
""")
    return out
