"""Where a grid's cells run: a local pool of sweep workers (one GPU each when there are GPUs, a fair share of the
CPU threads otherwise) or one Slurm job array (submitit). Before the cells, each world's assets are prepared
(`vlpeft.worlds.assets`) and the frozen vision features computed once (`vlpeft.features.prepare_features`).

    failures = execute(cells, workers=2)        # skips complete cells; a failure never stops the others
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..catalog import METHODS
from ..data import Paths, nested_subset
from ..datacheck import check
from ..errors import DataError
from ..features import prepare_features
from ..io import progress_bar, write_json
from ..tasks import get_task
from ..worlds.assets import WIRING_CHECKS, get_world, identity, prepare
from ..worlds.shapes import ensure_world
from .engine import WarmKernel, reason, run_cell, run_cell_once
from .plan import Stages
from .presets import Cell


def _init_worker(devices, cpu_threads: int) -> None:
    """One GPU per local worker (CUDA_VISIBLE_DEVICES), or a fair share of the CPU threads; the worker's warm
    kernel is shut down when the worker exits."""
    from multiprocessing.util import Finalize
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(cpu_threads)  # for the kernels it starts
    if devices is None:
        import torch
        torch.set_num_threads(cpu_threads)                                            # for its own work
    Finalize(None, WarmKernel.shutdown, exitpriority=10)


def execute(cells: list[Cell], executor: str = "local", workers: int = 2, slurm: dict | None = None,
            progress: bool = True, stages: Stages | None = None, run=run_cell) -> list[dict]:
    """Run every incomplete cell; print and return the failures and diverged runs (each with reason and path).
    Its three stages are numbered as they start (`stages`: a study's, which has a fourth, the report). `run`: what a
    local worker calls with each cell (`engine.run_cell`, or a picklable wrapper of it that says more, as `vlpeft
    verify`'s)."""
    stages = stages or Stages(3)
    todo = [c for c in cells if not (c.out_dir / "metrics.json").exists()]
    stages.next("assets: each world's data and pre-trained model (cached)")
    prepare_assets(todo, progress, workers)
    stages.next("data check" + ("" if executor == "slurm" else " and the frozen vision features"))
    check_data(todo, progress)
    if executor != "slurm":  # on Slurm each job computes what it needs, under the cache's lock, on its own GPU
        prepare_features([c.config for c in todo], progress)
    stages.next(f"sweep: {len(cells)} runs in the grid: {len(cells) - len(todo)} complete, {len(todo)} to run"
                + ("" if executor == "slurm" or not todo else f", {min(workers, len(todo))} at a time"))
    todo = longest_first(todo)
    results = _execute_slurm(todo, slurm or {}) if executor == "slurm" else _execute_local(todo, workers, progress, run)
    failures = [r for r in results if r["status"] in ("failed", "diverged")]
    for r in results:
        if r["status"] == "busy":
            print(f"SKIPPED {r['path']}: another sweep is running it")
    for f in failures:
        print(f"{f['status'].upper()} {f['path']}\n    {f['error']}")
    if cells:
        study_root = cells[0].out_dir.parents[2]
        study_root.mkdir(parents=True, exist_ok=True)
        (study_root / "failures.json").write_text(json.dumps(failures, indent=2))
        worlds = sorted({c.world for c in cells})   # the report reads it: a wiring check's page judges nothing
        write_json(study_root / "study.json", {"worlds": worlds, "wiring_check": set(worlds) <= WIRING_CHECKS})
    return failures


def check_data(cells: list[Cell], progress: bool = True) -> None:
    """`vlpeft data check` (without decoding) on every data root the cells read, before the first cell: a wrong
    split or a missing image stops the sweep here, not inside its hundredth GPU-hour."""
    for data_root, image_root in sorted({(c.config.data_root, c.config.image_root) for c in cells}):
        found = check(data_root, image_root or None, decode=0, progress=progress)
        if not found.ok:
            raise DataError(f"{found.problems[0]} — `vlpeft data check --data-root {data_root}"
                            f"{' --image-root ' + image_root if image_root else ''}` lists every problem")


def prepare_assets(cells: list[Cell], progress: bool = True, workers: int = 2) -> None:
    """Each world the cells use, through the one route (`vlpeft.worlds.assets`; `real` prepares nothing), said aloud.
    Several pre-trainings (the dial) run `workers` at a time, one CPU thread each: the tiny model's small matrix
    products gain almost nothing from a second thread, so two at once take half the time."""
    todo = sorted({(c.world, c.config.data_root, c.config.model_root) for c in cells})
    for world, data_root in sorted({(w, d) for w, d, _ in todo}):  # the worlds first: several models share one
        if get_world(world).synthetic:
            ensure_world(data_root, get_world(world).world, progress)
    missing = [t for t in todo if get_world(t[0]).synthetic and not (Path(t[2]) / "card.json").exists()]
    if len(missing) > 1 and workers > 1:
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(None, 1)) as pool:
            list(pool.map(prepare, *zip(*missing), [False] * len(missing)))
    for world, data_root, model_root in todo:
        print(prepare(world, data_root, model_root, progress).describe(), flush=True)
        if (line := identity(world, model_root)) is not None:
            print(line, flush=True)


FULL_STEP_COST = 2.0   # a full fine-tuning step against a PEFT step on the embedded model (benchmarks/step_time.py)


def planned_work(config, train_items: list) -> float:
    """A run's planned training steps (the task's own schedule on its data subset), full fine-tuning's weighted by
    the cost of its step: the order of the sweep, not a prediction of seconds."""
    task = get_task(config.task)
    n_train = len(task.train_examples(nested_subset(train_items, config.data_ratio, config.seed), images=None))
    return task.plan_steps(config, n_train) * (FULL_STEP_COST if METHODS[config.method].family == "full" else 1.0)


def longest_first(cells: list[Cell]) -> list[Cell]:
    """The cells, longest planned work first: a few workers then end the sweep on short runs, not with one long run
    left on a lone worker while the others idle (longest-processing-time-first scheduling)."""
    splits = {}
    for c in cells:  # each task's training split, read once per data root
        key = (c.config.task, c.config.data_root, c.config.image_root)
        if key not in splits:
            splits[key] = get_task(c.config.task).splits(Paths.of(c.config))[0]
    work = {id(c): planned_work(c.config, splits[(c.config.task, c.config.data_root, c.config.image_root)])
            for c in cells}
    return sorted(cells, key=lambda c: -work[id(c)])


def _execute_local(cells: list[Cell], workers: int, progress: bool = True, run=run_cell) -> list[dict]:
    if not cells:
        return []
    import torch
    n_gpu = torch.cuda.device_count()
    workers = max(1, min(workers, len(cells), n_gpu or workers))
    ctx = mp.get_context("spawn")
    devices = None
    if n_gpu:
        devices = ctx.Manager().Queue()
        for i in range(workers):
            devices.put(i)
    cpu_threads = max(1, (os.cpu_count() or 1) // workers)
    for c in cells:  # a fair share on the native path; the pinned path computes a run on its own count (numerics.py)
        if not c.config.threads and not n_gpu and c.config.numerics == "native":
            c.config.threads = cpu_threads
    results = []
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(devices, cpu_threads))
    with pool, progress_bar(total=len(cells), desc="sweep", unit="run", disable=not progress) as bar:
        futures = [pool.submit(run, c) for c in cells]
        for fut in as_completed(futures):
            results.append(fut.result())
            n_failed = sum(r["status"] in ("failed", "diverged") for r in results)
            bar.set_postfix(done=len(results) - n_failed, failed=n_failed, refresh=False)
            bar.update()
    return results


def _cell_job():
    import submitit

    class CellJob(submitit.helpers.Checkpointable):
        """A cell as a Slurm job. On a time limit or a preemption submitit requeues it (`checkpoint` resubmits the
        same cell); the run inside has saved its checkpoint at the step it was on (`vlpeft.signals`) and resumes
        there."""

        def __call__(self, cell: Cell) -> dict:
            return run_cell_once(cell)
    return CellJob


def CellJob():  # noqa: N802 - the class lives where submitit is importable (an optional dependency)
    return _cell_job()()


def _execute_slurm(cells: list[Cell], opts: dict) -> list[dict]:
    """One Slurm job array through submitit (`map_array`); `cluster="local"` runs it on this machine."""
    if not cells:
        return []
    import submitit
    ex = submitit.AutoExecutor(folder=opts.get("slurm_dir", "runs/slurm_logs"), cluster=opts.get("cluster"))
    ex.update_parameters(timeout_min=opts.get("time", 240), gpus_per_node=opts.get("gpus", 1),
                         slurm_partition=opts.get("partition"), slurm_array_parallelism=opts.get("parallel", 64))
    jobs = ex.map_array(CellJob(), cells)
    results = []
    for job in progress_bar(iterable=jobs, desc="slurm jobs", unit="run"):
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - the job itself died (node failure, time limit)
            results.append({"status": "failed", "error": reason(e, Path(".")), "path": str(job.paths.stdout)})
    return results
