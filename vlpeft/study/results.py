"""runs/<study>/ → one tidy table (one row per run), the long table of validation curves, and seed summaries.

    runs = load_runs("runs/tiny")          # every run folder, whatever its state
    curves = load_curves("runs/tiny")      # step-by-step validation curves, with the run keys
    table = summarize(runs)                # mean/std/n over seeds of the complete runs

A run folder is `runs/<study>/<task>/<method>/<run-id>/` (ARCHITECTURE.md); a row's keys come from the folder's
config.json (never from the folder's name). Its state:
    complete | diverged | failed   metrics.json's own status (train.py writes it last, atomically)
    failed                         no metrics.json but the sweep's failed.json (papermill raised)
    incomplete                     only config.json: not finished (or still running)
    corrupt                        a JSON file that does not parse; the row keeps the parser's message
Every state is a row, so a report can list what is missing; analyses use `complete(runs)` only.

A run's pre-training recipe and VQA route are what its metrics.json records; `setting` gives them for runs from
before they were recorded (a run folder's row is filled in by it; a committed runs.csv is read as written). A run
with no metrics.json (failed, unfinished) has its stand-in's draw from the card its config's checkpoint names.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog import METHODS, family_of, variant
from ..config import PretrainConfig, starting_checkpoint
from ..io import read_json

RUN_FILES = ("config.json", "metrics.json", "failed.json")
KEYS = ["task", "method", "size", "tune_classifier", "data_ratio", "seed", "vqa_route"]
COLUMNS = ["study", "task", "method", "variant", "family", "size", "tune_classifier", "data_ratio", "seed",
           "metric", "best_val", "best_step", "test", "final_val", "zero_shot_val", "trainable_params",
           "all_params", "trainable_pct", "n_train", "cost", "steps", "wall_s", "samples_per_s",
           "pretrain_seed", "pretrain_steps", "consistency", "recipe", "vqa_route", "question_prior", "status",
           "error", "run_dir",
           "numerics", "cpu", "lock", "torch", "transformers", "peft", "standin"]   # where the number was made
NUMERIC = ["size", "data_ratio", "seed", "best_val", "best_step", "test", "final_val", "zero_shot_val",
           "trainable_params", "all_params", "trainable_pct", "n_train", "cost", "steps", "wall_s",
           "samples_per_s", "pretrain_seed", "pretrain_steps", "consistency", "question_prior"]


def _read(path: Path):
    """Parsed JSON, or None when the file does not exist; a malformed file raises ValueError naming it."""
    try:
        return read_json(path, missing_ok=True)
    except ValueError as e:
        raise ValueError(f"{path.name}: {str(e).split(': ', 1)[-1]}") from None


def _row(run_dir: Path, study: str) -> dict:
    """The folder's keys from config.json (or, when that is unreadable, from metrics.json), its state and
    its numbers; a file that does not parse makes the row `corrupt` with the parser's message."""
    row, files, errors = {"study": study, "run_dir": str(run_dir)}, {}, []
    for name in RUN_FILES:
        try:
            files[name] = _read(run_dir / name)
            if files[name] is not None and not isinstance(files[name], dict):
                raise ValueError(f"{name}: not a JSON object")
        except ValueError as e:
            files[name] = None
            errors.append(str(e))
    config, metrics, failed = (files[name] for name in RUN_FILES)
    row |= {k: v for k, v in (config or metrics or {}).items() if k in KEYS}
    if errors:
        return row | {"status": "corrupt", "error": "; ".join(errors)}
    if metrics is not None:  # metrics.json is the run's own final word
        if "status" not in metrics:
            return row | {"status": "corrupt", "error": "metrics.json: no status"}
        row |= {k: v for k, v in metrics.items() if k in COLUMNS}
        row |= stand_in(metrics.get("start") or {}, metrics.get("recipe")) | made_on(metrics)
    else:  # no word from the run itself: its stand-in as its config names it, so it is listed with its draw
        if config and config.get("model_path"):   # RunConfig.checkpoint, read from the folder's config.json
            row |= stand_in(starting_checkpoint(str(config["model_path"]).replace("{task}", str(config.get("task")))))
        row |= {"status": "failed", "error": failed.get("error")} if failed is not None else {"status": "incomplete"}
    return row


def stand_in(start: dict, recipe: str | None = None) -> dict:
    """The pre-trained model a run starts from, as `config.starting_checkpoint` gives it (its card: draw, length,
    the dial's consistency level); blank for a checkpoint that is not the project's own (real BLIP). A card from
    before #29 records no recipe: BLIP's, then the only one."""
    card = start.get("pretrain") or {}
    return {"pretrain_seed": card.get("seed"), "pretrain_steps": card.get("steps"),
            "consistency": card.get("consistency"), "recipe": recipe or (card.get("recipe", "blip") if card else None)}


def made_on(metrics: dict) -> dict:
    """Where a run's numbers were made: its numeric path, CPU, locked environment (the lock's hash, marked when the
    installed packages differ from it), library versions and the stand-in's weights (a short hash; blank for a
    checkpoint that is not the project's own). Blank for runs from before they were recorded."""
    prov = metrics.get("provenance") or {}
    lock, numerics = prov.get("lock") or {}, prov.get("numerics") or {}
    weights = ((metrics.get("start") or {}).get("pretrain") or {}).get("weights")
    return {"numerics": numerics.get("mode"), "cpu": numerics.get("cpu"),
            "lock": (lock.get("sha256", "")[:12] + ("" if lock.get("matches") else " (differs)")) if lock else None,
            "torch": prov.get("torch"), "transformers": prov.get("transformers"), "peft": prov.get("peft"),
            "standin": weights[:12] if weights else None}


def run_dirs(study_dir) -> list[Path]:
    """Every folder holding one of a run's files (config.json, metrics.json or the sweep's failed.json)."""
    root = Path(study_dir)
    return sorted({p.parent for name in RUN_FILES for p in root.rglob(name)})


def load_runs(study_dir) -> pd.DataFrame:
    """One tidy row per run folder under `study_dir`, in every state (see the module docstring)."""
    if not Path(study_dir).is_dir():
        raise FileNotFoundError(f"{study_dir}: no such study folder (expected runs/<study>/)")
    study = Path(study_dir).name
    df = pd.DataFrame([_row(d, study) for d in run_dirs(study_dir)], columns=COLUMNS)
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["tune_classifier"] = df["tune_classifier"].fillna(False).astype(bool)
    df["variant"] = [variant(m, c) if isinstance(m, str) else None for m, c in zip(df["method"], df["tune_classifier"])]
    df["family"] = df["method"].map(family_of)
    # the paper's Fig. 5 x axis: "data size × fine-tunable parameters"
    df["cost"] = df["n_train"] * df["trainable_params"]
    df["status"] = df["status"].fillna("incomplete")
    df[["recipe", "vqa_route"]] = setting(df)
    return df.sort_values(["task", "method", "tune_classifier", "size", "data_ratio", "seed", "run_dir"],
                          ignore_index=True)


def recorded(runs: pd.DataFrame, name: str) -> pd.Series:
    """A runs table's column as recorded; NaN for every run where the table has none (runs from before it existed)."""
    return runs[name] if name in runs else pd.Series(np.nan, index=runs.index, dtype=object)


def setting(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's pre-training recipe and VQA route (columns `recipe`, `vqa_route`), as recorded, and for runs from
    before they were: a run of the embedded model (it has a pre-training seed) with no recipe was pre-trained with
    BLIP's recipe, then the only one (#29); a VQA run with no route answered on its checkpoint's own, which is its
    recipe's (`worlds.pretrain.RECIPES`: the same name) or, for a checkpoint with no recipe (real BLIP), blip.
    A caption run has no route (left as recorded); a run with no pre-training seed (real BLIP) no recipe (NaN)."""
    recipe = recorded(runs, "recipe").astype(object)
    recipe = recipe.where(recipe.notna() & recipe.ne(""))
    embedded = pd.to_numeric(recorded(runs, "pretrain_seed"), errors="coerce").notna()
    recipe = recipe.where(recipe.notna() | ~embedded, "blip")
    route = recorded(runs, "vqa_route").astype(object)
    unset = (recorded(runs, "task") == "vqa") & (route.isna() | route.eq(""))
    route = route.where(~unset, recipe.fillna("blip"))
    return pd.DataFrame({"recipe": recipe, "vqa_route": route}, index=runs.index)


def complete(df: pd.DataFrame) -> pd.DataFrame:
    """The runs analyses may use: status complete and a finite best validation score."""
    d = df[(df["status"] == "complete") & np.isfinite(df["best_val"].astype(float))].copy()
    d["tune_classifier"] = d["tune_classifier"].astype(bool)  # `~` on an object column would not negate
    return d


def run_draws(runs: pd.DataFrame) -> pd.Series:
    """Each run's pre-training draw: its `pretrain_seed`, 0 where it records none (a study of one model: real BLIP,
    or runs from before draws were recorded). The one rule every per-draw table follows (claims, fairness,
    families)."""
    return pd.to_numeric(recorded(runs, "pretrain_seed"), errors="coerce").fillna(0.0)


def run_length(runs: pd.DataFrame) -> pd.Series:
    """Each run's stand-in pre-training length (steps); NaN where it fine-tunes no stand-in (real BLIP records no
    pre-training draw). A stand-in run that records a draw but no length was made before #39, when every stand-in
    was pre-trained `PretrainConfig.steps` (1000)."""
    steps, draw = (pd.to_numeric(recorded(runs, name), errors="coerce") for name in ("pretrain_steps", "pretrain_seed"))
    return steps.mask(steps.isna() & draw.notna(), PretrainConfig.steps)   # a stand-in run from before #39


def run_lengths(runs: pd.DataFrame) -> list[int]:
    """The pre-training lengths of the stand-ins a study's runs fine-tune (`run_length`), sorted; empty where no
    run fine-tunes one. More than one length is not one study's design: its draws would pool models of different
    lengths (`Study` and `presets.design_of` refuse it)."""
    return sorted(set(run_length(runs).dropna().astype(int)))


def highest_consistency(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's setting: the runs at the highest consistency level present (a missing level is 1, the
    embedded model's own); every run when there is no dial."""
    if df.empty or "consistency" not in df:
        return df
    level = pd.to_numeric(df["consistency"], errors="coerce").fillna(1.0)
    return df[level == level.max()]


METHOD_ORDER = list(METHODS)   # the catalogue's order


def fairness(df: pd.DataFrame) -> pd.DataFrame:
    """The fairness check (reports/tiny/schedule.md §2), per pre-training draw: every plain PEFT configuration on
    VQA at the highest data ratio, its best validation accuracy (mean over the draw's seeds) minus the
    question-type prior of the questions it validated on (the run records it), in accuracy points. One row per
    (method, size), a column per draw and "above in every draw" (n/a when a draw has no run of it); empty when the
    runs record no prior (runs made before #39)."""
    d = complete(highest_consistency(df))
    if "question_prior" not in d or d.empty:
        return pd.DataFrame()
    d = d[(d.task == "vqa") & ~d.tune_classifier & (d.method != "full") & d.question_prior.notna()]
    d = d[d.data_ratio == d.data_ratio.max()]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(draw=run_draws(d).astype(int),
                 margin=100 * (d.best_val.astype(float) - d.question_prior.astype(float)))
    wide = d.groupby(["method", "size", "draw"]).margin.mean().unstack("draw")
    order = {m: i for i, m in enumerate(dict.fromkeys([*METHOD_ORDER, *wide.index.get_level_values(0)]))}
    wide = wide.sort_index(key=lambda ix: ix.map(order) if ix.name == "method" else ix)
    out = wide.rename(columns=lambda c: f"draw {c}").reset_index()
    above = ["n/a" if row.isna().any() else "yes" if (row > 0).all() else "no" for _, row in wide.iterrows()]
    out["above in every draw"] = above
    out.attrs["prior"] = float(d.question_prior.astype(float).mean())
    return out


def reference_sizes(df: pd.DataFrame) -> dict[str, int]:
    """Per method of one task's runs, its *reference size*: the size swept over the most data ratios (ties: the
    middle one), both variants counted — the size of Fig. 3/4's data-ratio lines and of the claims' family
    contrasts. In the tiny preset that is the middle size; in the paper preset every size qualifies (the
    middle one is taken); full fine-tuning's is 0."""
    out = {}
    for m, g in df.groupby("method"):
        counts = g.groupby("size")["data_ratio"].nunique()
        tied = sorted(counts[counts == counts.max()].index)
        out[m] = int(tied[len(tied) // 2])
    return out


def load_curves(study_dir) -> pd.DataFrame:
    """Long table of validation curves: the run's keys + step, val, loss, lr (one row per evaluation).
    A malformed curve.json is skipped with a warning (the run itself stays in load_runs)."""
    runs = load_runs(study_dir)
    keys = ["study", "task", "method", "variant", "family", "size", "tune_classifier", "data_ratio", "seed",
            "pretrain_seed", "metric", "status", "run_dir"]
    frames = []
    for run in runs[keys].to_dict("records"):
        try:
            curve = _read(Path(run["run_dir"]) / "curve.json")
            if curve:
                frames.append(pd.DataFrame(curve).reindex(columns=["step", "val", "loss", "lr"]).assign(**run))
        except (ValueError, TypeError) as e:  # not JSON, or not a list of rows
            warnings.warn(f"{run['run_dir']}: skipped its curve ({e})", stacklevel=2)
    if not frames:
        return pd.DataFrame(columns=keys + ["step", "val", "loss", "lr"])
    out = pd.concat(frames, ignore_index=True)
    for c in ["step", "val", "loss", "lr"]:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out[keys + ["step", "val", "loss", "lr"]]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds of the complete runs' best validation score (and test score), per
    (task, variant, size, data_ratio); method and family ride along for plotting."""
    keys = ["task", "method", "variant", "family", "tune_classifier", "size", "data_ratio"]
    d = complete(df).reindex(columns=keys + ["best_val", "test", "cost"])  # test/cost may be absent
    g = d.groupby(keys, observed=True)
    out = g["best_val"].agg(mean="mean", std="std", n="count").join(
        g["test"].mean().rename("test_mean")).join(g["cost"].mean().rename("cost")).reset_index()
    return out.sort_values(keys, ignore_index=True)
