"""Benchmark (#32): a training step eager vs compiled, against the machine's floor.

    python benchmarks/step_time.py                 # the step table (the study's embedded world and model)
    python benchmarks/step_time.py --floor         # + the tiny grid's FLOP floor (a FLOP count for every config)

1. The core's matmul peak: GFLOP/s of a 1024³ `torch.mm` on one thread (the embedded runs use one thread each).
2. Per case (task, method, size) on the embedded model at batch 32, one thread: ms a step eager and compiled
   (inductor, `vlpeft.compiling.CompiledLoss`, fused AdamW in both), medians of interleaved steps over the same
   batches (an eager step, then a compiled one, so load on the machine hits both alike); the matmul FLOPs of a
   step (forward + backward, counted by `torch.utils.flop_counter` on the same batches) and the GFLOP/s they
   achieve; the compile's cost cold (an empty inductor cache) and warm (a new process reading the cache the cold
   one wrote), and the steps a run needs to earn the warm compile back — what `compiling.COMPILE_MIN_STEPS` rests
   on. Each case runs in its own process (a fresh dynamo, a fresh cache folder).
3. With --floor: the tiny grid's training FLOPs (every cell's steps × the FLOPs a step of its config, counted on
   its own batches) and the time two cores at their matmul peak would take for them — the floor the study's
   wall time is measured against (README, "Time").

Nothing is asserted: the figures are for the issue's closing note and the README. Needs `make study`'s embedded
assets (it prepares them if missing)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlpeft.catalog import METHODS

FIRST_OF_FAMILY = {}
for _m in METHODS.values():
    FIRST_OF_FAMILY.setdefault(_m.family, _m.name)
# VQA: every catalogue method at its default size; captioning: the first method of each family
CASES = ([("vqa", m.name, m.default_size) for m in METHODS.values()]
         + [("caption", m, METHODS[m].default_size) for m in FIRST_OF_FAMILY.values()])
STEPS = 24          # timed steps per mode, after WARMUP
WARMUP = 6          # steps before timing: the compile (and its automatic-dynamic recompile) and allocator warm-up


def matmul_peak(n: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of an n³ fp32 matmul on one thread."""
    import torch
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def setup_for(task: str, method: str, size: int, compile_: str = "off", cache: str = "", tune_classifier=False,
              where: dict | None = None):
    """The study's own Setup for one tiny cell at 100 % data (train.build: data, model, method, optimiser);
    `where`: other data_root/model_path (then nothing is prepared)."""
    import torch

    from vlpeft.config import RunConfig
    from vlpeft.parallel import Ranks
    from vlpeft.study.presets import tiny_base
    from vlpeft.train import build, validate
    from vlpeft.worlds.assets import get_world, prepare
    world = get_world("embedded")
    if where is None:
        prepare(world, progress=False)
    torch.manual_seed(0)
    fields = tiny_base(world.world)[task] | dict(
        task=task, method=method, size=size, tune_classifier=tune_classifier, lr=METHODS[method].embedded_lr[task],
        data_root=world.data_root, model_path=world.model_path, feature_cache="cache/features", threads=1,
        compile=compile_, compile_cache=cache, out_dir=tempfile.mkdtemp(prefix="vlpeft-bench-")) | (where or {})
    if task == "vqa":
        fields["vqa_route"] = world.vqa_route
    return build(validate(RunConfig(**fields)), Ranks())


def step(s, batch) -> float:
    """One optimiser step as train.train_step takes it; its wall time."""
    import torch

    from vlpeft.tasks import to_device
    t0 = time.perf_counter()
    loss = s.loss_module(to_device(batch, s.device))
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(s.params, 1.0)
    s.optimizer.step()
    s.scheduler.step()
    return time.perf_counter() - t0


def step_flops(s, batches) -> float:
    """Mean matmul FLOPs of a step (forward + backward) over `batches`, counted on the eager module."""
    from torch.utils.flop_counter import FlopCounterMode

    from vlpeft.tasks import to_device
    module = getattr(s.loss_module, "eager", s.loss_module)
    total = 0
    for batch in batches:
        with FlopCounterMode(display=False) as counter:
            module(to_device(batch, s.device)).backward()
        total += counter.get_total_flops()
    s.optimizer.zero_grad(set_to_none=True)
    return total / len(batches)


def measure_case(task: str, method: str, size: int, cache: str) -> dict:
    """Eager and compiled steps, interleaved over the same batches; the compile's cold cost (this process)."""
    import torch
    torch.set_num_threads(1)
    eager = setup_for(task, method, size, "off")
    compiled = setup_for(task, method, size, "on", cache)
    batches = [b for _, b in zip(range(WARMUP + STEPS), eager.train_loader(0))]
    flops = step_flops(eager, batches[:8])
    eager.model.train()
    compiled.model.train()
    t0 = time.perf_counter()
    step(compiled, batches[0])                       # the first call compiles (forward and backward)
    first = time.perf_counter() - t0
    times = {"eager": [], "compiled": []}
    for i, batch in enumerate(batches[1:]):
        e, c = step(eager, batch), step(compiled, batch)
        if i >= WARMUP - 1:
            times["eager"].append(e)
            times["compiled"].append(c)
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {"task": task, "method": method, "size": size, "gflop_step": flops / 1e9, "eager_ms": ms["eager"],
            "compiled_ms": ms["compiled"], "first_compiled_step_s": first,
            "compiled_ok": compiled.loss_module.failed is None}


def warm_compile(task: str, method: str, size: int, cache: str) -> float:
    """Seconds of the first compiled step in a new process whose inductor cache is already filled."""
    import torch
    torch.set_num_threads(1)
    s = setup_for(task, method, size, "on", cache)
    batch = next(iter(s.train_loader(0)))
    s.model.train()
    t0 = time.perf_counter()
    step(s, batch)
    return time.perf_counter() - t0


def in_subprocess(fn: str, *args) -> dict | float:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import step_time; "
            f"print('RESULT', json.dumps(step_time.{fn}(*{args!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ | {
        "OMP_NUM_THREADS": "1"})
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{fn}{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def grid_floor(peak_gflops: float, cores: int = 2) -> dict:
    """The tiny grid's training FLOPs (each cell's planned steps × its config's FLOPs a step) and the floor."""
    import torch

    from vlpeft.data import Paths, nested_subset
    from vlpeft.study.presets import grid
    from vlpeft.tasks import get_task
    torch.set_num_threads(1)   # counting, not timing
    per_config, total, steps = {}, 0.0, 0
    for cell in grid("tiny"):
        c = cell.config
        key = (c.task, c.method, c.size, c.tune_classifier)
        if key not in per_config:
            s = setup_for(c.task, c.method, c.size, "off", tune_classifier=c.tune_classifier)
            per_config[key] = step_flops(s, [b for _, b in zip(range(8), s.train_loader(0))])
        task = get_task(c.task)
        n_train = len(task.train_examples(nested_subset(task.splits(Paths.of(c))[0], c.data_ratio, c.seed), None))
        n = task.plan_steps(c, n_train)
        steps += n
        total += n * per_config[key]
    return {"cells": len(grid("tiny")), "steps": steps, "tflop": total / 1e12,
            "floor_min": total / (cores * peak_gflops * 1e9) / 60}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--floor", action="store_true", help="also count the tiny grid's FLOPs (a few minutes)")
    p.add_argument("--cases", nargs="*", help="task:method:size, e.g. vqa:lora:8 (default: the table's cases; "
                   "none: only the floor)")
    p.add_argument("--peak", type=float, help="the core's matmul peak in GFLOP/s, measured earlier on a quiet "
                   "machine (default: measure it now)")
    a = p.parse_args()
    if not a.cases:
        cases = CASES
    elif a.cases == ["none"]:
        cases = []
    else:
        cases = [(t, m, int(s)) for t, m, s in (c.split(":") for c in a.cases)]
    peak = a.peak or matmul_peak()
    print(f"one core's fp32 matmul peak (1024³ torch.mm, 1 thread): {peak:.0f} GFLOP/s"
          f"{' (given)' if a.peak else ''}\n", flush=True)
    header = ("| step (batch 32) | GFLOP a step | eager ms | eager GFLOP/s | compiled ms | compiled GFLOP/s | ratio "
              "| compile cold s | compile warm s | steps to earn it back (warm) |")
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for task, method, size in cases:
        cache = tempfile.mkdtemp(prefix="vlpeft-inductor-")
        r = in_subprocess("measure_case", task, method, size, cache)
        warm = in_subprocess("warm_compile", task, method, size, cache)
        gain_ms = r["eager_ms"] - r["compiled_ms"]
        cold = r["first_compiled_step_s"] - r["compiled_ms"] / 1000
        earn = (warm - r["compiled_ms"] / 1000) / (gain_ms / 1000) if gain_ms > 0 else float("inf")
        print(f"| {task} {method} {size or ''} | {r['gflop_step']:.2f} | {r['eager_ms']:.1f} | "
              f"{r['gflop_step'] / r['eager_ms'] * 1000:.0f} | {r['compiled_ms']:.1f} | "
              f"{r['gflop_step'] / r['compiled_ms'] * 1000:.0f} | {r['eager_ms'] / r['compiled_ms']:.2f}× | "
              f"{cold:.0f} | {warm:.1f} | {earn:.0f} |" + ("" if r["compiled_ok"] else " (compile failed: eager)"),
              flush=True)
    if a.floor:
        f = grid_floor(peak)
        print(f"\nthe tiny grid: {f['cells']} runs, {f['steps']:,} training steps, {f['tflop']:.0f} TFLOP of "
              f"training matmuls; two cores at the matmul peak: {f['floor_min']:.0f} min (the floor)")


if __name__ == "__main__":
    main()
