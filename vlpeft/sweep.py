"""Grids of runs (presets), executed through the method notebooks with papermill, locally or on Slurm.

    cells = grid("tiny", study="tiny")         # every (task, method, size, +cls, ratio, seed) of the preset
    failures = execute(cells, executor="local", workers=2)

Each cell runs its method's notebook (notebooks/0k_<method>.ipynb) through papermill into
`runs/<study>/<task>/<method>/<run-id>/run.ipynb`, with `metrics.json` beside it. A cell whose metrics.json
exists is complete and skipped; a failed cell keeps papermill's notebook with its error cell, the sweep goes
on, and a second invocation retries only the failed and missing cells. A run killed mid-way resumes from its
own checkpoint (see train.py).

Presets:
  paper  Table II exactly (DESIGN §2): every data ratio × every size of each PEFT, the same with
         "+ classifier", and full fine-tuning at every ratio; BLIP-base on MSCOCO/VQAv2 paths.
  tiny   the embedded study for a 2-core CPU: per task and PEFT, 3 data ratios at the middle size and 3 sizes
         at the full data, "+ classifier" on the ratio axis, full fine-tuning at each ratio; 2 seeds.
  smoke  a handful of runs to check that everything is wired.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .train import RunConfig

NOTEBOOKS = {"full": "01_full_finetune", "prompt": "02_prompt_tuning", "prefix": "03_prefix_tuning",
             "lora": "04_lora", "serial_adapter": "05_serial_adapter", "parallel_adapter": "06_parallel_adapter"}
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PEFT = ["prompt", "prefix", "lora", "serial_adapter", "parallel_adapter"]


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
PAPER_BASE = {  # paper §IV + appendix; eval every 500 steps / once per epoch-ish
    "caption": dict(steps=4000, warmup_steps=400, batch_size=256, image_size=256, eval_every=500, eval_size=0,
                    model_path="Salesforce/blip-image-captioning-base", data_root="data/coco", cache_images=False),
    "vqa": dict(epochs=10, warmup_per_ratio=800, batch_size=256, image_size=256, eval_every=2000, eval_size=5000,
                model_path="Salesforce/blip-vqa-base", data_root="data/coco", cache_images=False),
}

# ---------------------------------------------------------------------------------------------------------
# The embedded world's scaled-down schedule (same shape as the paper's, ~100× shorter)
EMBEDDED_LR = {"caption": {"prompt": 3e-3, "prefix": 3e-3, "lora": 1e-3, "serial_adapter": 1e-3,
                           "parallel_adapter": 1e-3, "full": 2e-4},
               "vqa": {"prompt": 3e-3, "prefix": 3e-3, "lora": 2e-3, "serial_adapter": 2e-3,
                       "parallel_adapter": 2e-3, "full": 3e-4}}
TINY_BASE = {"caption": dict(steps=120, warmup_steps=12, batch_size=32, eval_every=40, eval_size=60, test_size=100),
             "vqa": dict(epochs=2, warmup_per_ratio=40, batch_size=32, eval_every=50, eval_size=150, test_size=300)}
TINY_SIZES = {"prompt": [2, 8, 32], "prefix": [2, 8, 32], "lora": [2, 8, 32], "serial_adapter": [4, 16, 64],
              "parallel_adapter": [4, 16, 64]}
TINY_RATIOS = [0.1, 0.3, 1.0]
TINY_SEEDS = [0, 1]


@dataclass
class Cell:
    study: str
    task: str
    method: str
    size: int
    tune_classifier: bool
    data_ratio: float
    seed: int
    overrides: dict = field(default_factory=dict)  # other RunConfig fields

    @property
    def run_id(self) -> str:
        cls = "+cls" if self.tune_classifier else ""
        return f"{self.method}{cls}_s{self.size}_r{self.data_ratio:g}_seed{self.seed}"

    @property
    def out_dir(self) -> Path:
        root = Path(self.overrides.get("runs_root", "runs"))
        return root / self.study / self.task / self.method / self.run_id

    def config(self) -> RunConfig:
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        extra = {k: v for k, v in self.overrides.items() if k in fields}  # runs_root, world: not run settings
        return RunConfig(task=self.task, method=self.method, size=self.size, tune_classifier=self.tune_classifier,
                         data_ratio=self.data_ratio, seed=self.seed, out_dir=str(self.out_dir), **extra)

    @property
    def notebook(self) -> Path:
        return NOTEBOOK_DIR / f"{NOTEBOOKS[self.method]}.ipynb"


def _cells(study, task, method, sizes, ratios, seeds, cls_options, base) -> list[Cell]:
    return [Cell(study, task, method, s, c, r, seed, dict(base)) for s in sizes for r in ratios
            for c in cls_options for seed in seeds]


def grid(preset: str, study: str | None = None, **overrides) -> list[Cell]:
    """Every cell of a preset; `overrides` (e.g. data_root, model_path, runs_root) go into every run."""
    study = study or preset
    cells: list[Cell] = []
    if preset == "paper":
        for task in ("caption", "vqa"):
            for m in PEFT:
                base = PAPER_BASE[task] | {"lr": PAPER_LR[task][m]} | overrides
                cells += _cells(study, task, m, PAPER_SIZES[task][m], PAPER_RATIOS[task], [0], [False, True], base)
            base = PAPER_BASE[task] | {"lr": PAPER_LR[task]["full"]} | overrides
            cells += _cells(study, task, "full", [0], PAPER_RATIOS[task], [0], [False], base)
    elif preset == "tiny":
        for task in ("caption", "vqa"):
            for m in PEFT:
                base = TINY_BASE[task] | {"lr": EMBEDDED_LR[task][m]} | overrides
                mid = TINY_SIZES[m][1]
                cells += _cells(study, task, m, [mid], TINY_RATIOS, TINY_SEEDS, [False, True], base)  # ratio axis
                cells += _cells(study, task, m, [s for s in TINY_SIZES[m] if s != mid], [1.0], TINY_SEEDS,
                                [False], base)                                                         # size axis
            base = TINY_BASE[task] | {"lr": EMBEDDED_LR[task]["full"]} | overrides
            cells += _cells(study, task, "full", [0], TINY_RATIOS, TINY_SEEDS, [False], base)
    elif preset == "smoke":
        smoke = dict(steps=4, warmup_steps=1, epochs=1, batch_size=8, eval_every=2, eval_size=8, test_size=8,
                     data_root="data/smoke", model_path="checkpoints/smoke/{task}", world="smoke")
        for task, m, size in (("caption", "lora", 4), ("vqa", "prompt", 4), ("vqa", "parallel_adapter", 8)):
            cells += _cells(study, task, m, [size], [0.5], [0], [False], smoke | {"lr": 1e-3} | overrides)
    else:
        raise ValueError(f"unknown preset {preset!r}; choose smoke, tiny or paper")
    return cells


def select(cells: list[Cell], tasks=None, methods=None, sizes=None, ratios=None, seeds=None) -> list[Cell]:
    keep = lambda value, allowed: allowed is None or value in allowed  # noqa: E731
    return [c for c in cells if keep(c.task, tasks) and keep(c.method, methods) and keep(c.size, sizes)
            and keep(c.data_ratio, ratios) and keep(c.seed, seeds)]


def print_grid(cells: list[Cell]) -> None:
    import pandas as pd
    df = pd.DataFrame([dataclasses.asdict(c) | {"done": (c.out_dir / "metrics.json").exists()} for c in cells])
    if df.empty:
        print("0 runs")
        return
    df["variant"] = df.method + df.tune_classifier.map({True: "+cls", False: ""})
    table = df.groupby(["task", "variant"]).agg(runs=("size", "size"), sizes=("size", lambda s: sorted(set(s))),
                                                ratios=("data_ratio", lambda s: sorted(set(s))),
                                                seeds=("seed", "nunique"), done=("done", "sum"))
    print(table.to_string())
    print(f"\n{len(df)} runs ({int(df.done.sum())} already complete)")


# ---------------------------------------------------------------------------------------------------------
# Running one cell: papermill executes the method notebook with the cell's parameters
def notebook_parameters(cell: Cell) -> dict:
    cfg = dataclasses.asdict(cell.config())
    world = cell.overrides.get("world", "embedded")
    keys = ("task", "size", "tune_classifier", "data_ratio", "seed", "steps", "epochs", "model_path", "data_root",
            "out_dir")
    params = {k: cfg[k] for k in keys} | {"world": world, "progress": False, "show": False}
    defaults = dataclasses.asdict(RunConfig())
    params["extra"] = {k: v for k, v in cfg.items() if k not in keys and k != "method" and v != defaults[k]}
    return params


def run_cell(cell: Cell) -> dict:
    """Execute one cell; never raises: returns {status, error, path}."""
    import papermill as pm
    out = cell.out_dir
    if (out / "metrics.json").exists():
        return {"status": "skipped", "error": None, "path": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(cell.notebook), str(out / "run.ipynb"), parameters=notebook_parameters(cell),
                            kernel_name="python3", progress_bar=False, cwd=os.getcwd())
        status = json.loads((out / "metrics.json").read_text())["status"]
        (out / "failed.json").unlink(missing_ok=True)
        return {"status": status, "error": None, "path": str(out)}
    except BaseException as e:  # noqa: BLE001 - a sweep goes on past any failed run and records why
        reason = _reason(e)
        (out / "failed.json").write_text(json.dumps({"error": reason, "traceback": traceback.format_exc()}))
        return {"status": "failed", "error": reason, "path": str(out / "run.ipynb")}


def _reason(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    return f"{ename}: {evalue}" if ename else f"{type(e).__name__}: {e}"


def _init_worker(devices, cpu_threads: int) -> None:
    """One GPU per local worker (CUDA_VISIBLE_DEVICES), or a fair share of the CPU threads."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(cpu_threads)


def execute(cells: list[Cell], executor: str = "local", workers: int = 2, slurm: dict | None = None) -> list[dict]:
    """Run every incomplete cell; print and return the failures (each with its reason and path)."""
    todo = [c for c in cells if not (c.out_dir / "metrics.json").exists()]
    print(f"{len(cells)} runs in the grid: {len(cells) - len(todo)} complete, {len(todo)} to run", flush=True)
    results = _execute_slurm(todo, slurm or {}) if executor == "slurm" else _execute_local(todo, workers)
    failures = [r for r in results if r["status"] == "failed"]
    for f in failures:
        print(f"FAILED {f['path']}\n    {f['error']}")
    if cells:
        study_root = cells[0].out_dir.parents[2]
        study_root.mkdir(parents=True, exist_ok=True)
        (study_root / "failures.json").write_text(json.dumps(failures, indent=2))
    return failures


def _execute_local(cells: list[Cell], workers: int) -> list[dict]:
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
    for c in cells:
        c.overrides.setdefault("threads", 0 if n_gpu else cpu_threads)
    results = []
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(devices, cpu_threads)) as pool, \
            tqdm(total=len(cells), desc="sweep", unit="run") as bar:
        futures = [pool.submit(run_cell, c) for c in cells]
        for fut in as_completed(futures):
            results.append(fut.result())
            n_failed = sum(r["status"] == "failed" for r in results)
            bar.set_postfix(done=len(results) - n_failed, failed=n_failed, remaining=len(cells) - len(results),
                            refresh=False)
            bar.update()
    return results


def _execute_slurm(cells: list[Cell], opts: dict) -> list[dict]:
    """One Slurm job array through submitit (`map_array`); `cluster="local"` runs it on this machine."""
    if not cells:
        return []
    import submitit
    ex = submitit.AutoExecutor(folder=opts.get("slurm_dir", "runs/slurm_logs"), cluster=opts.get("cluster"))
    ex.update_parameters(timeout_min=opts.get("time", 240), gpus_per_node=opts.get("gpus", 1),
                         slurm_partition=opts.get("partition"), slurm_array_parallelism=opts.get("parallel", 64))
    jobs = ex.map_array(run_cell, cells)
    results = []
    for job in tqdm(jobs, desc="slurm jobs", unit="run"):
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - the job itself died (node failure, time limit)
            results.append({"status": "failed", "error": _reason(e), "path": str(job.paths.stdout)})
    return results
