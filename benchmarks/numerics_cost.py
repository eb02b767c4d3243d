"""Benchmark (#36): what the pinned numeric path costs against the machine's own (vlpeft/numerics.py).

    python benchmarks/numerics_cost.py               # pre-training steps and a VQA LoRA r8 step, pinned vs native
    python benchmarks/numerics_cost.py --steps 60    # more pre-training steps per variant

Each variant runs in its own process, started with VLPEFT_NUMERICS set (the caps are read before torch computes):
- pre-training (the study's embedded world and model size, mPLUG's recipe): seconds a step over `--steps` steps
  after 5 warm-up steps — pinned (ATen and oneDNN at AVX2, MKL's COMPATIBLE branch, fused AdamW, 1 thread); the
  three libraries at AVX2 with MKL's Intel branch (what the pinned path would cost without its vendor-independence),
  1 thread; native at 1 thread; native at every core's thread (what a lone pre-training took before);
- a training step of VQA LoRA r8 at batch 32 (the study's Setup, eager, benchmarks/step_time.py's `setup_for`):
  the median of 20 steps after 5 — the same variants at one thread (a sweep runs one run a core either way).
Nothing is asserted: the figures go in the issue's note and the README ("Reproduce"). Needs the embedded world
(data/shapes); the step needs the embedded model (it is pre-trained if missing, on the pinned path).
"""
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

ROOT = Path(__file__).resolve().parent.parent


def child_pretrain(steps: int, threads: int) -> dict:
    import torch

    import vlpeft  # noqa: F401 - the caps first
    from vlpeft import numerics
    from vlpeft.config import PretrainConfig
    from vlpeft.worlds import pretrain as pre
    times = []
    original = pre.Objectives.__call__

    def timed(self, *a, **kw):  # the time between two objective calls: one whole optimisation step
        times.append(time.perf_counter())
        return original(self, *a, **kw)
    pre.Objectives.__call__ = timed
    out = tempfile.mkdtemp(prefix="vlpeft-numerics-")
    cfg = PretrainConfig(data_root=str(ROOT / "data/shapes"), out=out, steps=steps + 5, zero_shot_eval=0,
                         numerics=numerics.active())
    with numerics.computing(cfg.numerics, threads):
        pre._pretrain(cfg, Path(out), progress=False)
        n = torch.get_num_threads()
    per_step = [b - a for a, b in zip(times[5:], times[6:])]
    return {**numerics.record(), "s_per_step": statistics.median(per_step), "threads": n}


def child_step(threads: int) -> dict:
    import torch

    import vlpeft  # noqa: F401
    from vlpeft import numerics
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from step_time import setup_for, step
    s = setup_for("vqa", "lora", 8)
    torch.set_num_threads(threads)
    batches = iter(s.train_loader(0))
    times = [step(s, next(batches)) for _ in range(25)][5:]
    return {**numerics.record(), "ms_per_step": 1000 * statistics.median(times), "threads": torch.get_num_threads()}


AVX2_EVERYWHERE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_child(kind: str, mode: str, threads: int, steps: int, shell: dict | None = None) -> dict:
    env = os.environ | {"VLPEFT_NUMERICS": mode} | (shell or {})
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--threads", str(threads), "--steps", str(steps)],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="timed pre-training steps per variant")
    p.add_argument("--child", choices=["pretrain", "step"], help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child_pretrain(a.steps, a.threads) if a.child == "pretrain" else child_step(a.threads)))
        return
    cores = os.cpu_count() or 1
    rows = []
    variants = [("pinned", "pinned", None), ("AVX2 caps on all three libraries (MKL's Intel branch), 1 thread",
                                              "native", AVX2_EVERYWHERE), ("native, 1 thread", "native", None)]
    for label, mode, shell in variants + [(f"native, {cores} threads", "native", None)]:
        r = run_child("pretrain", mode, 0 if mode == "pinned" else (cores if "threads" in label else 1), a.steps,
                      shell)
        rows.append(("pre-training step", label, f"{r['s_per_step']:.3f} s", r["cpu_capability"], r["threads"]))
    for label, mode, shell in variants:
        r = run_child("step", mode, 1, a.steps, shell)
        rows.append(("VQA LoRA r8 step, batch 32", label, f"{r['ms_per_step']:.1f} ms", r["cpu_capability"],
                     r["threads"]))
    print(f"CPU: {r['cpu']} ({cores} cores)\n")
    print("| work | path | time (median) | ATen kernels | threads |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")


if __name__ == "__main__":
    main()
