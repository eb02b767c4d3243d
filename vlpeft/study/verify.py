"""`vlpeft verify REPORT`: re-make a few cells of a committed report from their committed configs and say whether
this machine gives the numbers the report holds.

    ok = verify("reports/tiny")                     # 3 cells, seeded and stratified by task and method
    ok = verify("reports/tiny", cells=["lora_s8_r0.1_seed0-25306c"], tolerance=0.0)

Where a cell's config comes from. A report's runs.csv holds one row per run and its run folder,
`runs/<study>/<task>/<method>/<run-id>`; the row carries the run's keys, not its whole RunConfig (no learning rate,
schedule or paths). But a run id names exactly one configuration: `rundir.run_id` is the variant, size, ratio and
seed followed by a hash of every field that changes results. So the committed config of a row is the cell of that
id in its preset's grid as this checkout lays it out (`presets.grid`; the preset is the study's name, else the one
whose grid holds the ids, or `--preset`). When no preset's grid holds an id, the config that made it is not in
this checkout (an older grid, or a study made with other paths) and verify says so rather than guess; the row's
keys are checked against the cell's as well.

How a cell is re-made: the sweep's own path (`executors.execute` → papermill → the method's notebook →
`train.run`), into a scratch runs folder (a new temporary one, removed afterwards unless `keep`; never the
report's own runs folder), with the frozen vision features and compiled kernels cached there too, so nothing of
an earlier run is reused. Verify never makes a world or pre-trains: a re-made cell must start from the study's
own stand-in, and a missing one is an error naming the command that makes it.

What it says: a line per cell as it starts and ends; for each cell its committed and re-made best validation,
test and final validation score and their difference; and a last line, `3/3 identical`, or the largest
difference beside the report's spread between a cell's runs (the median, over the report's cells with several
runs — fine-tuning seeds, and pre-training draws where the study has several — of that score's std over them).
`verify` returns True only when every cell re-ran and every difference is within `tolerance` (absolute, per score;
0 by default: the numbers exactly as runs.csv writes them, which round-trips a float64).
"""
from __future__ import annotations

import functools
import math
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pandas as pd

from ..blip.checkpoints import check_path
from ..config import PretrainConfig
from ..errors import ConfigError, VlpeftError
from ..io import read_json
from ..worlds.assets import get_world
from ..worlds.shapes import WorldConfig
from .engine import run_cell
from .presets import PRESET_WORLD, Cell, design_of, grid

SCORES = {"best_val": "best validation", "test": "test", "final_val": "final validation"}
KEYS = ["task", "method", "size", "tune_classifier", "data_ratio", "seed"]
NEEDED = {"study", "status", "run_dir", *KEYS, *SCORES}
MAKE = {"tiny": "make study", "dial": "make dial"}   # the Makefile's targets for a preset's study
# what makes two rows the same cell up to its draw and seed (those present in a report): the spread's groups
CELL = ["task", "method", "tune_classifier", "size", "data_ratio", "vqa_route", "recipe", "consistency"]


class VerifyError(VlpeftError):
    """A report that cannot be verified here (no runs.csv, configs this checkout cannot re-make, a missing
    stand-in); the message says what to do."""


# ---------------------------------------------------------------------------------------------------------
# The committed rows and their configs
def read_report(report: str | Path) -> pd.DataFrame:
    """A report folder's runs.csv (or the file itself), its floats exactly as written."""
    path = Path(report)
    csv = path if path.suffix == ".csv" else path / "runs.csv"
    if not path.exists():
        raise VerifyError(f"{report}: no such report folder; a report folder holds the runs.csv that `vlpeft study` "
                          f"or `vlpeft report --study runs/<study>` writes (e.g. reports/tiny)")
    if not csv.is_file():
        raise VerifyError(f"{csv}: missing, so {report} is not a report folder; write one with `vlpeft report "
                          f"--study runs/<study> --out {report}`")
    try:
        runs = pd.read_csv(csv, float_precision="round_trip")  # the float64 to_csv wrote, to the last bit
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise VerifyError(f"{csv}: not a readable table ({str(e).splitlines()[0]})") from None
    missing = NEEDED - set(runs.columns)
    if missing:
        raise VerifyError(f"{csv}: not a vlpeft runs table (no {', '.join(sorted(missing))} column)")
    runs["cell"] = ["/".join(Path(p).parts[-3:]) for p in runs.run_dir]   # task/method/run-id
    runs["run_id"] = [Path(p).name for p in runs.run_dir]
    return runs


def complete(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs.status == "complete") & runs.best_val.notna()]


def pick(runs: pd.DataFrame, wanted: list[str], report) -> pd.DataFrame:
    """The rows of explicit cells: a run id, `task/method/run-id` or the whole run folder."""
    rows = []
    for name in wanted:
        parts = Path(name).parts
        hit = runs[[Path(p).parts[-len(parts):] == parts for p in runs.run_dir]]
        if hit.empty:
            raise ConfigError(f"unknown cell {name!r}: no run of {report} has that id; ids are the last part of "
                              f"runs.csv's run_dir, e.g. {runs.run_id.iloc[0]}" if len(runs) else f"{report} is empty")
        if len(hit) > 1:
            raise ConfigError(f"cell {name!r} names {len(hit)} runs of {report}; give task/method/run-id")
        row = hit.iloc[0]
        if row.status != "complete":
            raise ConfigError(f"cell {row.cell} is {row.status} in {report}: it has no scores to compare")
        rows.append(hit)
    return pd.concat(rows).drop_duplicates("run_dir")


def sample(runs: pd.DataFrame, k: int, seed: int = 0) -> pd.DataFrame:
    """K complete runs, seeded and stratified by task and method: each pick comes from the (task, method) stratum
    picked least so far, then from the least-picked task and method (ties in a seeded order), and is a seeded draw
    within it. Three picks from a two-task study are three methods across both tasks; 2 × 6 picks cover every
    stratum once."""
    rng = random.Random(seed)
    strata: dict[tuple, list[int]] = {}
    for i, row in complete(runs).sort_values("run_dir").iterrows():
        strata.setdefault((row.task, row.method), []).append(i)
    order = sorted(strata)
    rng.shuffle(order)
    for rows in strata.values():
        rng.shuffle(rows)
    picked, used, tasks, methods = [], Counter(), Counter(), Counter()
    while len(picked) < k and any(strata.values()):
        s = min((s for s in order if strata[s]), key=lambda s: (used[s], tasks[s[0]], methods[s[1]]))
        picked.append(strata[s].pop())
        used[s] += 1
        tasks[s[0]] += 1
        methods[s[1]] += 1
    return runs.loc[picked]


def committed_cells(rows: pd.DataFrame, runs_root: str, preset: str | None = None, **paths) -> tuple[str, dict]:
    """(preset, {run id: Cell}): each row's cell in the grid of the first preset that holds every id (the study's
    name first), with its runs going under `runs_root`; refused when none does, or when a row's keys are not its
    cell's."""
    study = rows.study.iloc[0]
    if rows.study.nunique() > 1:
        raise VerifyError(f"the runs to verify come from several studies ({', '.join(sorted(rows.study.unique()))});"
                          f" verify one study's report at a time")
    candidates = [preset] if preset else [study] * (study in PRESET_WORLD) + [p for p in PRESET_WORLD if p != study]
    wanted, cells = set(rows.run_id), {}
    for name in candidates:
        try:
            cells = {c.run_id: c for c in grid(name, study, runs_root=runs_root, design=design_of(rows), **paths)
                     if c.run_id in wanted}
        except ConfigError:   # the dial takes no --data-root / --model-path: said when the dial was asked for
            if preset:
                raise
            continue
        if set(cells) == wanted:
            break
    else:
        missing = sorted(wanted - set(cells)) if preset else sorted(wanted)
        raise VerifyError(f"run {missing[0]} (and {len(missing) - 1} more) is a cell of no grid of "
                          f"{'preset ' + preset if preset else 'any preset'} in this checkout, so its committed "
                          f"config cannot be re-made here: the study was made by another version of the grid, or "
                          f"with other paths (pass the study's --preset, --data-root, --model-path, --vqa-route)")
    for _, row in rows.iterrows():
        cfg = cells[row.run_id].config
        wrong = [k for k in KEYS if not row[k] == getattr(cfg, k)]   # 4.0 == 4: a column read as floats
        if wrong:
            raise VerifyError(f"{row.cell}: runs.csv says {', '.join(f'{k}={row[k]}' for k in wrong)} but its run id "
                              f"is the cell with {', '.join(f'{k}={getattr(cfg, k)}' for k in wrong)}; the row was "
                              f"edited, or the report is damaged")
    return name, cells


# ---------------------------------------------------------------------------------------------------------
# The stand-in: verify uses the study's own and never makes one
def flags(obj: dict, default: dict) -> str:
    return "".join(f" --{k.replace('_', '-')} {v}" for k, v in obj.items() if default.get(k) != v)


def check_assets(cells: list[Cell], preset: str) -> None:
    """Each world's data and pre-trained model present (a real checkpoint passes `check_path`); a missing one is an
    error saying which command makes it."""
    for world, data_root, model_root in sorted({(c.world, c.config.data_root, c.config.model_root) for c in cells}):
        w = get_world(world)
        if not w.synthetic:
            for path in sorted({c.config.checkpoint for c in cells if c.world == world}):
                check_path(path)   # a ModelError naming the folder and what to do
            continue
        study = f"`vlpeft study --preset {preset}`" + (f" (`{MAKE[preset]}`)" if preset in MAKE else "")
        if not (Path(data_root) / "world.json").is_file():
            world_cmd = f"vlpeft world --out {data_root}" + flags(vars(w.world), vars(WorldConfig()))
            raise VerifyError(f"{data_root}/world.json: no {world} world here, and verify makes none (it re-runs "
                              f"cells on the study's own world and model); make it with `{world_cmd}`, or run "
                              f"{study}, whose first step makes the world and pre-trains")
        if not (Path(model_root) / "card.json").is_file():
            defaults = {f.name: f.default for f in fields(PretrainConfig)}
            how = (f"`vlpeft pretrain --data-root {data_root} --out {model_root}{flags(w.pretrain, defaults)}`, or "
                   f"{study}, whose first step pre-trains it" if "spec" not in w.pretrain
                   else f"{study}, whose first step pre-trains it")
            raise VerifyError(f"{model_root}/card.json: no pre-trained {world} model here (the stand-in the study's "
                              f"cells start from), and verify never pre-trains one; make it with {how}")


# ---------------------------------------------------------------------------------------------------------
# Comparing
def difference(committed: float, remade: float) -> float:
    """|re-made − committed|; 0 when both are missing (NaN), inf when only one is."""
    if math.isnan(committed) and math.isnan(remade):
        return 0.0
    if math.isnan(committed) or math.isnan(remade):
        return math.inf
    return abs(remade - committed)


def remade_scores(cell: Cell) -> dict | None:
    """The re-made run's scores, or None when it did not complete."""
    path = cell.out_dir / "metrics.json"
    metrics = read_json(path, VerifyError, "metrics file") if path.exists() else None
    if not metrics or metrics.get("status") != "complete":
        return None
    return {k: float(metrics[k]) if metrics.get(k) is not None else math.nan for k in SCORES}


def run_spread(runs: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(task, score) → the median, over the report's cells with two or more runs, of that score's std over a cell's
    runs: its seeds, and its draws where the study has several (one seed per draw: the draws are the repeats)."""
    done = complete(runs)
    keys = [k for k in CELL if k in done]
    out = {}
    for score in SCORES:
        std = done.groupby(keys, dropna=False)[score].std().dropna().reset_index()
        for task, g in std.groupby("task"):
            out[task, score] = float(g[score].median())
    return out


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.6f}"


def fmt_diff(committed: float, remade: float) -> str:
    d = difference(committed, remade)
    if d == 0:
        return "0"
    return "missing" if math.isinf(d) else f"{remade - committed:+.2e}"


def _run_and_say(cell: Cell, labels: dict, committed: dict) -> dict:
    """In a sweep worker: the cell through the sweep's own `run_cell`, with a line as it starts and as it ends."""
    label = labels[cell.run_id]
    print(f"{label} start", flush=True)
    t0 = time.time()
    result = run_cell(cell)
    scores = remade_scores(cell)
    if scores is None:
        said = f"{result['status']}: {result.get('error')}"
    else:
        worst = max(difference(committed[cell.run_id][k], scores[k]) for k in SCORES)
        said = "identical" if worst == 0 else f"differs by up to {worst:.3g}"
    print(f"{label} end after {time.time() - t0:.0f} s: {said}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------------------
def verify(report: str | Path, sample_size: int = 3, cells: list[str] | None = None, seed: int = 0,
           runs_root: str | None = None, tolerance: float = 0.0, workers: int = 2, keep: bool = False,
           preset: str | None = None, feature_cache: str | None = None, **paths) -> bool:
    """Re-make `sample_size` cells of `report` (or the named `cells`) and print how their scores compare; True only
    when every cell re-ran and every score is within `tolerance`. `paths`: grid paths the study was made with
    (data_root, model_path, image_root, vqa_route)."""
    runs = read_report(report)
    rows = pick(runs, cells, report) if cells else sample(runs, sample_size, seed)
    if rows.empty:
        raise VerifyError(f"{report}: no complete runs to verify")
    scratch = Path(runs_root or tempfile.mkdtemp(prefix="vlpeft-verify-"))
    try:
        theirs = {Path(p).parents[3].resolve() for p in rows.run_dir if len(Path(p).parents) > 3}
        if scratch.resolve() in theirs | {Path("runs").resolve()}:
            raise ConfigError(f"--runs-root {scratch} holds the study's own runs; verify re-makes cells in a scratch "
                              f"folder: give another (or none: a temporary one)")
        paths = {k: v for k, v in paths.items() if v}   # those not given: the preset's own
        caches = dict(feature_cache=feature_cache or str(scratch / "features"), compile_cache=str(scratch / "compile"))
        name, found = committed_cells(rows, str(scratch), preset, **caches, **paths)
        todo = [found[i] for i in rows.run_id]
        for c in todo:
            if c.out_dir.exists() and any(c.out_dir.iterdir()):
                raise ConfigError(f"{c.out_dir} already holds a run (an earlier verify?); remove it or give another "
                                  f"--runs-root: verify compares only cells it has just re-made")
        check_assets(todo, name)
        from .executors import check_data, execute, longest_first  # torch and the engine only for a real verification
        check_data(todo, progress=False)   # execute's own check, before the order below reads the splits
        todo = longest_first(todo)         # the order execute runs them in: the lines below are numbered in it
        rows = rows.set_index("run_id", drop=False).loc[[c.run_id for c in todo]]
        how = (f"the cell{'s' * (len(rows) > 1)} {', '.join(rows.cell)}" if cells
               else f"a sample of {len(rows)} (seed {seed}, by task and method)")
        print(f"verify {report}: {how} of the {len(complete(runs))} complete runs of study {rows.study.iloc[0]} "
              f"(preset {name}), re-made in {scratch}", flush=True)
        committed = {r.run_id: {k: float(r[k]) for k in SCORES} for _, r in rows.iterrows()}
        labels = {r.run_id: f"[{i}/{len(rows)}] {r.cell}" for i, (_, r) in enumerate(rows.iterrows(), 1)}
        execute(todo, workers=workers, progress=False,
                run=functools.partial(_run_and_say, labels=labels, committed=committed))
        return compare(rows, found, committed, runs, tolerance)
    finally:
        if keep and not runs_root:
            print(f"the re-made runs are kept in {scratch}")
        if not runs_root and not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def compare(rows: pd.DataFrame, found: dict, committed: dict, runs: pd.DataFrame, tolerance: float) -> bool:
    """Print each cell's committed and re-made scores and the last line; whether all is within `tolerance`."""
    width = max(len(c) for c in rows.cell)
    print(f"\n{'cell':<{width}}  {'score':<16}  {'committed':>12}  {'re-made':>12}  re-made − committed")
    identical, failed, worst = 0, [], (0.0, None, None)
    for _, row in rows.iterrows():
        scores = remade_scores(found[row.run_id])
        if scores is None:
            failed.append(row.cell)
            print(f"{row.cell:<{width}}  did not complete: see {found[row.run_id].out_dir}")
            continue
        diffs = {k: difference(committed[row.run_id][k], scores[k]) for k in SCORES}
        identical += max(diffs.values()) == 0
        for i, (k, label) in enumerate(SCORES.items()):
            print(f"{row.cell if i == 0 else '':<{width}}  {label:<16}  {fmt(committed[row.run_id][k]):>12}  "
                  f"{fmt(scores[k]):>12}  {fmt_diff(committed[row.run_id][k], scores[k])}")
            if diffs[k] > worst[0]:
                worst = (diffs[k], row, k)
    n = len(rows)
    ok = not failed and worst[0] <= tolerance
    last = f"{identical}/{n} identical"
    if worst[0] > 0:
        d, row, k = worst
        spread = run_spread(runs).get((row.task, k))
        last += (f"; largest difference {d:.3g} ({SCORES[k]} {row.get('metric', '')}, {row.cell})"
                 + (f", against a run-to-run spread of {spread:.3g} (the median std over the seeds and draws of a "
                    f"{row.task} cell's {SCORES[k]} score in this report)" if spread is not None and not
                    math.isnan(spread) else "; no run-to-run spread to set it beside (one run per cell in this "
                                            "report)")
                 + f"; {'within' if d <= tolerance else 'over'} the tolerance {tolerance:g}")
    if failed:
        last += f"; {len(failed)} re-run{'s' if len(failed) > 1 else ''} did not complete ({', '.join(failed)})"
    print(last, flush=True)
    return ok
