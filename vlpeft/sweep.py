"""Grids of runs (presets), executed through the method notebooks with papermill, locally or on Slurm.

    cells = grid("tiny")                        # every run of the preset, each with its whole RunConfig
    failures = execute(cells, workers=2)        # skips complete cells; a failure never stops the others

A preset names its world (`vlpeft.assets`): `paper` is real BLIP on real files (nothing is generated),
`tiny` the embedded shapes world, `smoke` the seconds-long wiring check. Each cell runs its method's notebook
(`catalog.METHODS[m].notebook`) through papermill into `runs/<study>/<task>/<method>/<run-id>/run.ipynb`,
handing the notebook the cell's whole RunConfig as one parameter. The run id is readable and carries a short
hash of the results-relevant config (`rundir.run_hash`), so two presets that differ only in, say, the LR
never share a folder. A complete cell (metrics.json) is skipped; a failed one keeps papermill's notebook with
its error cell and a `failed.json` with the reason (a dead kernel: the run log's tail), the sweep goes on, and
the next invocation retries only the failed and missing cells. A cell that another sweep is running right
now is skipped and said so. When the vision tower is frozen (every PEFT cell), its outputs are computed once
before the cells (`vlpeft.features`) and shared by all of them.

Presets:
  paper  Table II exactly (DESIGN §2): every data ratio × every size of each PEFT, the same with
         "+ classifier", and full fine-tuning at every ratio; BLIP-base converted from BLIP's pre-training
         checkpoint (`vlpeft convert-blip`), MSCOCO/VQAv2 under data/coco.
  tiny   the embedded study for a 2-core CPU: per task and PEFT, 3 data ratios at the middle size and 3 sizes
         at the full data, "+ classifier" at the middle size and full data, full fine-tuning at each ratio;
         three seeds.
  dial   the consistency dial (beyond the paper): captioning at three consistency levels × two pre-training
         seeds, prompt-tuning, LoRA and full fine-tuning on the tiny ratio and size axes, three seeds.
  smoke  a handful of runs to check that everything is wired (numbers mean nothing).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .catalog import METHODS, peft_methods, variant
from .errors import ConfigError
from .rundir import config_dict, run_hash
from .config import RunConfig

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PEFT = peft_methods()

# ---------------------------------------------------------------------------------------------------------
# The paper's Table II
PAPER_RATIOS = {"caption": [0.01, 0.02, 0.04, 0.08, 0.1, 0.2, 0.4, 0.8, 1.0], "vqa": [0.1, 0.2, 0.4, 0.8, 1.0]}
PAPER_SIZES = {
    "caption": {"prompt": [2, 4, 8, 16, 32, 64, 128], "prefix": [2, 4, 8, 16, 32, 64, 128], "lora": [2, 4, 8, 16, 32],
                "serial_adapter": [16, 32, 64, 128], "parallel_adapter": [16, 32, 64, 128]},
    "vqa": {"prompt": [2, 4, 8, 16, 32, 64, 128], "prefix": [2, 4, 8, 16, 32, 64, 128], "lora": [2, 4, 8, 16, 32],
            "serial_adapter": [16, 32, 64, 128, 256, 512], "parallel_adapter": [16, 32, 64, 128, 256, 512]},
}
PAPER_LR = {"caption": {"prompt": 3e-4, "prefix": 3e-4, "lora": 5e-6, "serial_adapter": 1e-6,
                        "parallel_adapter": 1e-6, "full": 1e-5},   # full: not in Table II; BLIP's fine-tuning LR
            "vqa": {m: 3e-4 for m in PEFT} | {"full": 2e-5}}      # full: likewise
PAPER_BASE = {  # paper §IV + appendix
    "caption": dict(steps=4000, warmup_steps=400, batch_size=256, image_size=256, eval_every=500, eval_size=0,
                    cache_images=False),
    "vqa": dict(epochs=10, warmup_per_ratio=800, batch_size=256, image_size=256, eval_every=2000, eval_size=5000,
                cache_images=False),
}

# ---------------------------------------------------------------------------------------------------------
# The embedded world's scaled-down schedule (same shape as the paper's, ~100× shorter)
EMBEDDED_LR = {"caption": {"prompt": 3e-3, "prefix": 3e-3, "lora": 1e-3, "serial_adapter": 1e-3,
                           "parallel_adapter": 1e-3, "full": 2e-4},
               "vqa": {"prompt": 3e-3, "prefix": 3e-3, "lora": 2e-3, "serial_adapter": 2e-3,
                       "parallel_adapter": 2e-3, "full": 3e-4}}
# Changed from the first study (2 seeds, 2 VQA epochs, "+ classifier" at every ratio, 60/100 caption and 150/300
# VQA evaluation examples) before any run of this one, for time and statistical power — never for a verdict: three
# seeds (the unit of replication of the claims), more evaluation examples (the whole caption test split, twice
# the validation examples), and to pay for them one VQA epoch and "+ classifier" at the full data ratio only.
TINY_BASE = {"caption": dict(steps=120, warmup_steps=12, batch_size=32, eval_every=40, eval_size=100, test_size=0),
             "vqa": dict(epochs=1, warmup_per_ratio=20, batch_size=32, eval_every=50, eval_size=300, test_size=0)}
TINY_SIZES = {"prompt": [2, 8, 32], "prefix": [2, 8, 32], "lora": [2, 8, 32], "serial_adapter": [4, 16, 64],
              "parallel_adapter": [4, 16, 64]}
TINY_RATIOS = [0.1, 0.3, 1.0]
TINY_SEEDS = [0, 1, 2]
SMOKE_BASE = dict(steps=4, warmup_steps=1, epochs=1, warmup_per_ratio=1, batch_size=8, eval_every=2, eval_size=8,
                  test_size=8, lr=1e-3)
# The consistency dial (beyond the paper; DESIGN §3): captioning at every level × pre-training seed of
# `assets.DIAL_LEVELS` × `assets.DIAL_PRETRAIN_SEEDS`, for one method of each family and full fine-tuning, on the
# tiny schedule's ratio and size axes
DIAL_METHODS = ["prompt", "lora"]
DIAL_SEEDS = [0, 1, 2]
PRESET_WORLD = {"paper": "real", "tiny": "embedded", "smoke": "smoke", "dial": "dial-*"}


@dataclass
class Cell:
    study: str
    world: str                  # the world its assets come from (vlpeft.assets)
    config: RunConfig           # the whole run, out_dir included

    @property
    def run_id(self) -> str:
        c = self.config
        return f"{variant(c.method, c.tune_classifier)}_s{c.size}_r{c.data_ratio:g}_seed{c.seed}-{run_hash(config_dict(c))}"

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def notebook(self) -> Path:
        return NOTEBOOK_DIR / f"{METHODS[self.config.method].notebook}.ipynb"


def make_cell(study: str, world: str, runs_root: str, **fields) -> Cell:
    cell = Cell(study, world, RunConfig(**fields))
    cell.config.out_dir = str(Path(runs_root) / study / cell.config.task / cell.config.method / cell.run_id)
    return cell


def _axis(study, world, runs_root, task, method, sizes, ratios, seeds, cls_options, base) -> list[Cell]:
    return [make_cell(study, world, runs_root, task=task, method=method, size=s, tune_classifier=c, data_ratio=r,
                      seed=seed, **base) for s in sizes for r in ratios for c in cls_options for seed in seeds]


def _tiny_axes(args, task: str, methods: list[str], seeds: list[int], fields: dict, classifier: bool) -> list[Cell]:
    """The tiny schedule's axes for one task and world: per PEFT method the data ratios at its middle size, its
    other sizes at the full data (and with `classifier`, "+ classifier" at the middle size and full data);
    full fine-tuning at every ratio. `fields` are the world's paths and any overrides."""
    cells = []
    for m in methods:
        base = TINY_BASE[task] | {"lr": EMBEDDED_LR[task][m]} | fields
        mid = TINY_SIZES[m][1]
        cells += _axis(*args, task, m, [mid], TINY_RATIOS, seeds, [False], base)                         # ratio axis
        cells += _axis(*args, task, m, [s for s in TINY_SIZES[m] if s != mid], [1.0], seeds, [False], base)  # size axis
        if classifier:
            cells += _axis(*args, task, m, [mid], [1.0], seeds, [True], base)                         # + classifier
    base = TINY_BASE[task] | {"lr": EMBEDDED_LR[task]["full"]} | fields
    return cells + _axis(*args, task, "full", [0], TINY_RATIOS, seeds, [False], base)


def grid(preset: str, study: str | None = None, runs_root: str = "runs", data_root: str | None = None,
         model_path: str | None = None, feature_cache: str = "cache/features", **overrides) -> list[Cell]:
    """Every cell of a preset. Paths default to the preset's world; `overrides` are RunConfig fields;
    `feature_cache=""` computes the vision tower in every step instead of sharing its cached outputs."""
    from .assets import DIAL_LEVELS, DIAL_PRETRAIN_SEEDS, dial_world, get_world
    if preset not in PRESET_WORLD:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_WORLD)}")
    study = study or preset
    if preset == "dial":
        if data_root or model_path:
            raise ConfigError("the dial preset has one world per level and seed (vlpeft.assets.dial_world); "
                              "--data-root and --model-path do not apply")
        cells = []
        for w in (dial_world(level, pseed) for level in DIAL_LEVELS for pseed in DIAL_PRETRAIN_SEEDS):
            where = dict(data_root=w.data_root, model_path=w.model_path, feature_cache=feature_cache)
            cells += _tiny_axes((study, w.name, runs_root), "caption", DIAL_METHODS, DIAL_SEEDS, where | overrides,
                                classifier=False)
        return cells
    world = get_world(PRESET_WORLD[preset])
    where = dict(data_root=data_root or world.data_root, model_path=model_path or world.model_path,
                 feature_cache=feature_cache)
    args = (study, world.name, runs_root)
    cells: list[Cell] = []
    for task in ("caption", "vqa"):
        if preset == "paper":
            for m in PEFT:
                base = PAPER_BASE[task] | {"lr": PAPER_LR[task][m]} | where | overrides
                cells += _axis(*args, task, m, PAPER_SIZES[task][m], PAPER_RATIOS[task], [0], [False, True], base)
            base = PAPER_BASE[task] | {"lr": PAPER_LR[task]["full"]} | where | overrides
            cells += _axis(*args, task, "full", [0], PAPER_RATIOS[task], [0], [False], base)
        elif preset == "tiny":
            cells += _tiny_axes(args, task, PEFT, TINY_SEEDS, where | overrides, classifier=True)
    if preset == "smoke":
        for task, m, size in (("caption", "lora", 4), ("vqa", "prompt", 4), ("vqa", "parallel_adapter", 8)):
            cells += _axis(*args, task, m, [size], [0.5], [0], [False], SMOKE_BASE | where | overrides)
    return cells


def select(cells: list[Cell], tasks=None, methods=None, sizes=None, ratios=None, seeds=None) -> list[Cell]:
    """The cells matching every filter given; a filter that matches nothing is an error naming the choices."""
    filters = {"task": tasks, "method": methods, "size": sizes, "data_ratio": ratios, "seed": seeds}
    for name, allowed in filters.items():
        if allowed is None:
            continue
        present = sorted({getattr(c.config, name) for c in cells}, key=str)
        unknown = [v for v in allowed if v not in present]
        if unknown:
            raise ConfigError(f"no runs with {name} {', '.join(map(str, unknown))} in this grid; valid values: "
                              f"{', '.join(map(str, present))}")
    return [c for c in cells if all(allowed is None or getattr(c.config, name) in allowed
                                    for name, allowed in filters.items())]


def print_grid(cells: list[Cell]) -> None:
    import pandas as pd
    if not cells:
        print("0 runs")
        return
    df = pd.DataFrame([config_dict(c.config) | {"done": (c.out_dir / "metrics.json").exists()} for c in cells])
    df["variant"] = [variant(m, t) for m, t in zip(df.method, df.tune_classifier)]
    table = df.groupby(["task", "variant"]).agg(runs=("size", "size"), sizes=("size", lambda s: sorted(set(s))),
                                                ratios=("data_ratio", lambda s: sorted(set(s))),
                                                seeds=("seed", "nunique"), done=("done", "sum"))
    print(table.to_string())
    print(f"\n{len(df)} runs ({int(df.done.sum())} already complete)")


# ---------------------------------------------------------------------------------------------------------
# Running one cell: papermill executes the method notebook with the cell's config
def notebook_parameters(cell: Cell) -> dict:
    return {"config": config_dict(cell.config), "world": cell.world, "progress": False, "show": False}


class WarmKernel:
    """One Jupyter kernel per sweep worker, reused by every notebook the worker executes (a papermill engine).

    Starting a kernel and importing torch, transformers and vlpeft costs 5–20 s per notebook on a 2-core CPU,
    as much as a whole tiny run; reused, the next notebook starts in under half a second (benchmarks/pipeline.py
    measures both). Every cell still gets its own
    executed notebook, and a cell's run depends on nothing a previous one left in the kernel (its RNG streams
    are seeded from its config). After any failure the kernel is shut down, so the next cell starts afresh.
    Kernels talk over IPC sockets in a private temp folder: no TCP ports, and no per-cell warning about
    unencrypted TCP from ipykernel."""
    km = None

    @classmethod
    def manager(cls, kernel_name: str):
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync
        if cls.km is None or not run_sync(cls.km.is_alive)():
            import tempfile
            cls.km = AsyncKernelManager(kernel_name=kernel_name, transport="ipc",
                                        ip=os.path.join(tempfile.mkdtemp(prefix="vlpeft-kernel-"), "k"))
            run_sync(cls.km.start_kernel)(cwd=os.getcwd())
        return cls.km

    @classmethod
    def shutdown(cls) -> None:
        if cls.km is not None:
            from jupyter_core.utils import run_sync
            try:
                run_sync(cls.km.shutdown_kernel)(now=True)
            except Exception:  # noqa: BLE001 - a kernel that already died
                pass
            cls.km = None


def _register_engine():
    """papermill's nbclient engine, handed the worker's warm kernel instead of starting one per notebook."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import remove_args

    class WarmEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            client = PapermillNotebookClient(nb_man, km=WarmKernel.manager(kernel_name), timeout=execution_timeout,
                                             startup_timeout=start_timeout, kernel_name=kernel_name,
                                             log_output=log_output, stdout_file=stdout_file,
                                             stderr_file=stderr_file, **kwargs)
            try:
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    papermill_engines.register("vlpeft-warm", WarmEngine)


def run_cell(cell: Cell) -> dict:
    """Execute one cell; never raises: returns {status, error, path}."""
    import papermill as pm
    from .errors import RunFolderError
    from .io import Owner
    out = cell.out_dir
    if (out / "metrics.json").exists():
        return {"status": "skipped", "error": None, "path": str(out)}
    owner = Owner(out, "sweep.lock", RunFolderError, what="sweep cell")
    try:
        owner.acquire()
    except RunFolderError as e:
        return {"status": "busy", "error": str(e), "path": str(out)}
    try:
        _register_engine()
        pm.execute_notebook(str(cell.notebook), str(out / "run.ipynb"), parameters=notebook_parameters(cell),
                            kernel_name="python3", progress_bar=False, engine_name="vlpeft-warm")
        metrics = json.loads((out / "metrics.json").read_text())
        (out / "failed.json").unlink(missing_ok=True)
        return {"status": metrics["status"], "error": metrics.get("error"), "path": str(out)}
    except BaseException as e:  # noqa: BLE001 - a sweep goes on past any failed run and records why
        WarmKernel.shutdown()
        reason = _reason(e, out)
        (out / "failed.json").write_text(json.dumps({"error": reason, "traceback": traceback.format_exc()}))
        return {"status": "failed", "error": reason, "path": str(out / "run.ipynb")}
    finally:
        owner.release()


def _reason(e: BaseException, out: Path) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    reason = f"{ename}: {evalue}" if ename else f"{type(e).__name__}: {e}"
    if "DeadKernel" in type(e).__name__ or "Kernel died" in reason:
        log = out / "train.log"
        tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
        reason = (f"the kernel died (killed, out of memory, or a crash in native code) — {reason}. "
                  + (f"Last lines of train.log: {' | '.join(tail)}" if tail else "train.log is empty: it died "
                     "before the first evaluation."))
    return reason


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


def run_cell_once(cell: Cell) -> dict:
    """A cell in a process of its own (a Slurm job): its kernel goes with it."""
    try:
        return run_cell(cell)
    finally:
        WarmKernel.shutdown()


def execute(cells: list[Cell], executor: str = "local", workers: int = 2, slurm: dict | None = None,
            progress: bool = True) -> list[dict]:
    """Run every incomplete cell; print and return the failures and diverged runs (each with reason and path)."""
    todo = [c for c in cells if not (c.out_dir / "metrics.json").exists()]
    print(f"{len(cells)} runs in the grid: {len(cells) - len(todo)} complete, {len(todo)} to run", flush=True)
    prepare_assets(todo, progress, workers)
    prepare_features(todo, progress)
    results = _execute_slurm(todo, slurm or {}) if executor == "slurm" else _execute_local(todo, workers, progress)
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
    return failures


def prepare_assets(cells: list[Cell], progress: bool = True, workers: int = 2) -> None:
    """Each world the cells use, through the one route (`vlpeft.assets`; `real` prepares nothing), said aloud.
    Several pre-trainings (the dial) run `workers` at a time, one CPU thread each: the tiny model's small matrix
    products gain almost nothing from a second thread, so two at once take half the time."""
    from .assets import get_world, prepare
    from .world import ensure_world
    todo = sorted({(c.world, c.config.data_root, str(Path(c.config.model_path.format(task="caption")).parent))
                   for c in cells})
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


def prepare_features(cells: list[Cell], progress: bool = True) -> None:
    """Compute the frozen vision features of every (model, data, image size) the PEFT cells use, once, before
    the cells start (each cell then only reads them)."""
    import torch
    from .data import Paths
    from .features import ensure_features
    from .models import load_model, load_processor
    from .tasks import TASKS
    from .parallel import Ranks
    from .train import autocast_dtype, model_path, resolve_device
    groups = {}
    for c in cells:
        cfg = c.config
        if cfg.feature_cache and METHODS[cfg.method].family != "full":
            groups.setdefault((model_path(cfg), cfg.data_root, cfg.image_size, cfg.feature_cache, cfg.task), cfg)
    for (path, data_root, image_size, cache, task), cfg in groups.items():
        device = resolve_device(cfg, Ranks())
        processor = load_processor(path)
        if image_size:
            processor.image_processor.size = {"height": image_size, "width": image_size}
        model = load_model(task, path)
        images = [p for split in TASKS[task].splits(Paths(Path(data_root))) for p in TASKS[task].image_paths(split)]
        ensure_features(model.to(device), processor, images, cache, dtype=autocast_dtype(cfg, device) or torch.float32,
                        device=device, progress=progress)


def _execute_local(cells: list[Cell], workers: int, progress: bool = True) -> list[dict]:
    if not cells:
        return []
    import torch
    from .io import progress_bar
    n_gpu = torch.cuda.device_count()
    workers = max(1, min(workers, len(cells), n_gpu or workers))
    ctx = mp.get_context("spawn")
    devices = None
    if n_gpu:
        devices = ctx.Manager().Queue()
        for i in range(workers):
            devices.put(i)
    cpu_threads = max(1, (os.cpu_count() or 1) // workers)
    for c in cells:
        if not c.config.threads and not n_gpu:
            c.config.threads = cpu_threads
    results = []
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(devices, cpu_threads)) as pool, \
            progress_bar(total=len(cells), desc="sweep", unit="run", disable=not progress) as bar:
        futures = [pool.submit(run_cell, c) for c in cells]
        for fut in as_completed(futures):
            results.append(fut.result())
            n_failed = sum(r["status"] in ("failed", "diverged") for r in results)
            bar.set_postfix(done=len(results) - n_failed, failed=n_failed, refresh=False)
            bar.update()
    return results


def _execute_slurm(cells: list[Cell], opts: dict) -> list[dict]:
    """One Slurm job array through submitit (`map_array`); `cluster="local"` runs it on this machine."""
    if not cells:
        return []
    import submitit
    from .io import progress_bar
    ex = submitit.AutoExecutor(folder=opts.get("slurm_dir", "runs/slurm_logs"), cluster=opts.get("cluster"))
    ex.update_parameters(timeout_min=opts.get("time", 240), gpus_per_node=opts.get("gpus", 1),
                         slurm_partition=opts.get("partition"), slurm_array_parallelism=opts.get("parallel", 64))
    jobs = ex.map_array(run_cell_once, cells)
    results = []
    for job in progress_bar(iterable=jobs, desc="slurm jobs", unit="run"):
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - the job itself died (node failure, time limit)
            results.append({"status": "failed", "error": _reason(e, Path(".")), "path": str(job.paths.stdout)})
    return results
