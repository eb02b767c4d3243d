"""Two pre-training recipes, one study — the paper's own open question, "the influence of the base model".

The same grid, seeds and schedules run from the tiny BLIP pre-trained with mPLUG's recipe (the paper's model:
`make study` → reports/tiny) and with BLIP's (`vlpeft study --preset tiny-blip` → reports/tiny-blip); the recipes
differ in one objective and in what the VQA answer decoder reads (`vlpeft/worlds/pretrain.py`). This page sets the
eleven verdicts and each method's scores of the two side by side:

    studies = {"mPLUG recipe": Study.load("reports/tiny"), "BLIP recipe": Study.load("reports/tiny-blip")}
    verdicts_side_by_side(studies)     # claim × recipe: verdict (value [90 % interval])
    scores_side_by_side(studies)       # task × method at its reference size and 100 % data: score per recipe, and
                                       #   the difference (first − second) with its 90 % t interval over units
    write_families(studies, "reports/families")

A difference is paired by unit, the studies' unit of replication (`claims.stats`): by seed (a seed fixes the
training subset and the method's initialisation in both studies), or, for studies of several pre-training draws, by
draw number (draw d of each study, fine-tuned with the same seed; the two draws are independent pre-trainings, so
the pairing matches the fine-tuning seed only). A recipe's runs are those its study holds, each study judged by
its own declared rules.

The page is read as a result, so its premise is checked before anything is written (`check_premise`): the two
studies hold one grid — the same cells (task, method, size, "+ classifier", data ratio, consistency level,
pre-training seed, recipe, VQA route, the stand-in's pre-training length) apart from the factor compared and what
follows from it — the same seeds in every cell (pairing by seed needs them), one value of the factor each, and two
different values. By default the factor is the pre-training recipe, and what follows from it is the VQA route (a
checkpoint's own is its recipe's) and the checkpoint (not a column: the runs name the recipe). `vlpeft compare
--factor` names another (`FACTORS`: two VQA routes on one recipe, two pre-training draws, two worlds); the page's
title, labels and "what changes" then name that factor.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from ...catalog import METHODS, TASK_INFO
from ...errors import ConfigError
from .. import figures as F
from ..claims.stats import CI_LEVEL, Estimate
from ..results import complete, reference_sizes, run_draws, run_length, setting
from .load import Study
from .page import CSS, _html_table, _img, _markdown
from .sections import verdict_table

RECIPE_TITLES = {"mplug": "mPLUG recipe", "blip": "BLIP recipe"}


@dataclass(frozen=True)
class Factor:
    """What two studies of one grid differ in (`vlpeft compare --factor NAME`), and how the page names it."""
    name: str                  # the option's value
    noun: str                  # "What the {noun} changes", "scores per {noun}", the chart's legend
    plural: str                # "two {plural}": the page's title
    phrase: str                # "the same study {phrase}": its heading
    varies: tuple[str, ...]    # the grid's keys that may differ between the studies: the factor and what follows
    differs: str | None        # the key with one value per study, two different ones (None: the runs do not say)


FACTORS = {f.name: f for f in (
    Factor("recipe", "recipe", "pre-training recipes", "from two pre-training recipes", ("recipe", "vqa_route"),
           "recipe"),
    Factor("route", "VQA route", "VQA routes", "on two VQA routes", ("vqa_route",), "vqa_route"),
    Factor("pretrain-seed", "pre-training draw", "pre-training draws", "from two pre-training draws",
           ("pretrain_seed",), "pretrain_seed"),
    Factor("world", "world", "worlds", "in two worlds", ("consistency",), None),  # a run records no world's name
)}
GRID = ("task", "method", "size", "tune_classifier", "data_ratio", "consistency", "pretrain_seed", "recipe",
        "vqa_route", "pretrain_steps")                        # a cell's keys; the seed pairs the cells' runs


def get_factor(name: str) -> Factor:
    if name not in FACTORS:
        raise ConfigError(f"unknown --factor {name!r}; choose one of {', '.join(FACTORS)}")
    return FACTORS[name]


def _shown(value) -> str:
    """A key's value as the refusal and the page write it: 8, 0.1, True, mplug; "" when absent."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _keyed(study: Study) -> pd.DataFrame:
    """Every run's grid keys as text (recipe and route as `results.setting` gives them; a missing consistency
    level is 1, the embedded model's own; the stand-in's length as `results.run_length` gives it) and its seed."""
    runs = study.runs[study.runs["task"].notna() & study.runs["method"].notna()]
    d = runs.reindex(columns=[*GRID, "seed"]).astype(object)
    d[["recipe", "vqa_route"]] = setting(runs)
    d["pretrain_steps"] = run_length(runs).astype(object)
    d["consistency"] = pd.to_numeric(d["consistency"], errors="coerce").fillna(1.0)
    return d.map(_shown)


def values_of(study: Study, key: str) -> list[str]:
    """The values of one grid key over a study's runs (the route over its VQA runs)."""
    return sorted(set(_keyed(study)[key]) - {""})


def label_of(study: Study, factor: str = "recipe") -> str:
    """A study as the page calls it: by the factor's one value ("mPLUG recipe"; a route not the recipe's own is
    named too: "mPLUG recipe, VQA route blip"; "VQA route blip"; "pre-training seed 1"), else its name."""
    f = get_factor(factor)
    values = values_of(study, f.differs) if f.differs else []
    if len(values) != 1:
        return study.name
    if f.name == "recipe":
        routes = values_of(study, "vqa_route")
        own = routes in ([], [values[0]])           # the checkpoint's own route is its recipe's
        return RECIPE_TITLES.get(values[0], values[0]) + ("" if own else f", VQA route {routes[0]}")
    return {"route": "VQA route {}", "pretrain-seed": "pre-training seed {}"}[f.name].format(values[0])


def recorded(study: Study) -> str:
    """What a study's runs record of the base model: "recipe mplug, VQA route mplug"."""
    recipes, routes = values_of(study, "recipe"), values_of(study, "vqa_route")
    return (f"recipe {' and '.join(recipes) or 'not recorded'}, "
            + (f"VQA route {' and '.join(routes)}" if routes else "no VQA runs"))


def _order(value: str):
    """Numbers in numeric order, before words."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _cell(keys: tuple[str, ...], cell: tuple) -> str:
    return " ".join(f"{k}={v}" for k, v in zip(keys, cell) if v != "")


def premise_problems(studies: list[Study], factor: str = "recipe") -> list[str]:
    """What keeps two studies from being one grid compared in one factor (empty: nothing; see the module
    docstring). Every run counts, whatever its state: the grid is what was run, not what finished."""
    f = get_factor(factor)
    a, b = studies
    keys = tuple(k for k in GRID if k not in f.varies)
    seeds = []
    for s in studies:
        d = _keyed(s)
        seeds.append(d.groupby(list(keys))["seed"].agg(lambda x: tuple(sorted(set(x), key=_order))).to_dict())
    problems = []
    only = [sorted(set(seeds[0]) - set(seeds[1])), sorted(set(seeds[1]) - set(seeds[0]))]
    if only[0] or only[1]:
        values = [{k: {c[i] for c in seeds[j]} for i, k in enumerate(keys)} for j in (0, 1)]
        apart = [", ".join(f"{k} {'/'.join(sorted(values[j][k] - values[1 - j][k], key=_order))}" for k in keys
                           if values[j][k] - values[1 - j][k]) for j in (0, 1)]
        what = ("; ".join(f"values only in {s.source}: {x}" for s, x in zip(studies, apart) if x) if any(apart) else
                "e.g. " + "; ".join(f"{_cell(keys, o[0])} only in {s.source}" for s, o in zip(studies, only) if o))
        problems.append(f"not one grid: {len(only[0])} of its {len(seeds[0])} cells only in {a.source}, "
                        f"{len(only[1])} of {len(seeds[1])} only in {b.source} ({what})")
    differ = [c for c in set(seeds[0]) & set(seeds[1]) if seeds[0][c] != seeds[1][c]]
    if differ:
        c = sorted(differ)[0]
        problems.append(f"other seeds in {len(differ)} cell{'s' * (len(differ) > 1)} (pairing by seed needs the same), "
                        f"e.g. {_cell(keys, c)}: "
                        f"{', '.join(seeds[0][c])} in {a.source}, {', '.join(seeds[1][c])} in {b.source}")
    if f.differs is None:
        if Path(a.source).resolve() == Path(b.source).resolve():
            problems.append(f"{a.source} twice")
        return problems
    values = [values_of(s, f.differs) for s in studies]
    for s, v in zip(studies, values):
        if len(v) != 1:
            problems.append(f"{s.source} " + (f"mixes the {f.plural} {' and '.join(v)}" if v else
                                               f"records no {f.noun}"))
    if all(len(v) == 1 for v in values) and values[0] == values[1]:
        others = ", ".join(n for n in FACTORS if n != f.name)
        problems.append(f"both record the {f.noun} {values[0][0]} (--factor names what they differ in: {others})")
    return problems


def check_premise(studies: list[Study], factor: str = "recipe") -> None:
    """Refuse, in one line naming what differs, two studies that are not one grid in two values of `factor`."""
    problems = premise_problems(list(studies), factor)
    if problems:
        a, b = studies
        raise ConfigError(f"{a.source} and {b.source} are not one study from two {get_factor(factor).plural}: "
                          + "; ".join(problems))


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


def _per_unit(study: Study, task: str, method: str) -> pd.Series:
    """Score points (100 × best validation score) per unit (a draw: the mean over its seeds; else a seed) of a
    method's plain runs at its reference size and 100 % data (full fine-tuning: at 100 % data)."""
    d = complete(study.paper_runs)
    d = d[(d.task == task) & ~d.tune_classifier]
    if d.empty or method not in set(d.method):
        return pd.Series(dtype=float)
    size = reference_sizes(d)[method]
    d = d[(d.method == method) & (d["size"] == size) & (d.data_ratio == d.data_ratio.max())]
    unit = run_draws(d).rename("pretrain_seed") if study.unit == "draw" else d["seed"]
    return (100 * d.groupby(unit)["best_val"].mean()).rename(method)


def unit_of(studies) -> str:
    """The studies' unit of replication, in words ("draw" only when every study's is)."""
    return "draw" if all(s.unit == "draw" for s in studies) else "seed"


def scores_side_by_side(studies: dict[str, Study]) -> pd.DataFrame:
    """task × method: each recipe's mean score (points, 90 % interval over units) and the first minus the second,
    paired by unit."""
    names = list(studies)
    rows = []
    for task in TASK_INFO:
        for method in METHODS:
            per = {name: _per_unit(s, task, method) for name, s in studies.items()}
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


def scores_chart(scores: pd.DataFrame, names: list[str], noun: str = "recipe") -> alt.Chart:
    """Each method's score per study (points: the mean; whiskers: the 90 % interval over units), one panel per
    task, the studies told apart by `noun` (the factor compared); the axis starts where the scores are, not at 0,
    so that their difference shows."""
    long = pd.concat([scores[["task", "method"]].assign(**{noun: n}, score=scores[n], low=scores[f"{n} low"],
                                                        high=scores[f"{n} high"]) for n in names])
    order = [m.title for m in METHODS.values()]
    by = dict(field=noun, type="nominal", sort=names)
    base = alt.Chart(long).encode(x=alt.X("method:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30)),
                                  xOffset=alt.XOffset(**by))
    points = base.mark_point(filled=True, size=70).encode(
        y=alt.Y("score:Q", title="score points (100 × CIDEr / VQA accuracy)", scale=alt.Scale(zero=False)),
        color=alt.Color(**by, scale=alt.Scale(range=["#4c78a8", "#f58518"])),
        tooltip=["task", "method", alt.Tooltip(field=noun, type="nominal"), alt.Tooltip("score:Q", format=".1f"),
                 alt.Tooltip("low:Q", format=".1f"), alt.Tooltip("high:Q", format=".1f")])
    whiskers = base.mark_rule().encode(y="low:Q", y2="high:Q", color=alt.Color(**by))
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


RECIPES_INTRO = (  # the recipe page's opening, as reports/families has it
    'The paper fine-tunes mPLUG-base and leaves "the influence of the base model" to future work. The embedded\n'
    "world can answer it: one grid, the same seeds and schedules, run from a tiny BLIP pre-trained with mPLUG's "
    "recipe\n(PrefixLM; the VQA answer decoder reads the image and the question) and with BLIP's (a sentence started "
    "from the\nimage; the answer decoder reads the question only).")


def write_families(studies: dict[str, Study], out_dir, formats=("png", "svg"), factor: str = "recipe") -> Path:
    """reports/families/: verdicts.csv, scores.csv, families.md, figures/scores.*, index.html (offline) — after
    `check_premise` (a refusal writes nothing)."""
    f = get_factor(factor)
    check_premise(list(studies.values()), factor)
    names, unit = list(studies), unit_of(studies.values())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdicts, scores = verdicts_side_by_side(studies), scores_side_by_side(studies)
    verdicts.to_csv(out / "verdicts.csv", index=False)
    scores.round(3).to_csv(out / "scores.csv", index=False)
    table = scores_for_page(scores, names)
    changes = what_changes(verdicts, scores, names)
    (out / "families.md").write_text(
        f"# Two {f.plural}, one study\n\n## What the {f.noun} changes\n\n" + "".join(f"- {c}\n" for c in changes)
        + "\n## The verdicts\n\n" + _markdown(verdicts) + "\n## The scores at the reference sizes, 100 % data "
        f"(points, {CI_LEVEL:.0%} t intervals over {unit}s)\n\n" + _markdown(table))
    figure = _img(F.save(scores_chart(scores, names, f.noun), out / "figures", "scores", formats),
                  f"scores per {f.noun}")
    e = html.escape
    sources = "; ".join(f"<b>{e(n)}</b>: <code>{e(s.source)}</code> ({len(complete(s.runs))} complete runs; "
                        f"{e(recorded(s))})" for n, s in studies.items())
    intro = RECIPES_INTRO if f.name == "recipe" else (
        f"Two studies of one grid — the same cells and seeds — that differ in their {f.noun}.")
    (out / "index.html").write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vlpeft — two {f.plural}</title><style>{CSS}</style></head><body>
<h1>vlpeft — the same study {f.phrase}</h1>
<p class='q'>{e(intro, quote=False)} {sources}. Each study is judged by its own declared rules;
scores are 100 × the best validation CIDEr / VQA accuracy at each method's reference size and 100 % data, with
{CI_LEVEL:.0%} t intervals over {unit}s; differences are paired by {unit}.</p>
<h2>What the {f.noun} changes</h2><ul>{"".join(f"<li>{e(c)}</li>" for c in changes)}</ul>
<h2>The eleven verdicts</h2>{_html_table(verdicts)}
<h2>Each method's score</h2>{figure}{_html_table(table)}
</body></html>
""")
    return out
