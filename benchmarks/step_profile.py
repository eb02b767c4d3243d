"""Benchmark (#37): where a training step's time goes, eager and compiled — `torch.profiler`, by op class.

    python benchmarks/step_profile.py                          # VQA LoRA r8 and caption LoRA r8, the table
    python benchmarks/step_profile.py --untrained              # a random model of the embedded shape (same ops)
    python benchmarks/step_profile.py --out benchmarks/step_profile.md

Each case (task, method, size) runs in its own process, one thread, batch 32, as `step_time.py` sets a step up (the
study's own `train.build`: the frozen vision tower's outputs cached, fused AdamW, the route of the embedded model):
an eager and a compiled copy warm up (the compile included), take the same batches interleaved without the
profiler (the medians are the step times), then are profiled, one step each in turn, over the same `--steps`
batches (a profile of each step alone, so that other work on the machine hits both modes alike). Every profiled
event's own (self) CPU time goes to one class:

    linear products      aten::mm / addmm: the linear layers' products (forward and both backward products;
                         LoRA's low-rank ones among them)
    attention products   aten::bmm / baddbmm: attention's small batched products; compiled, also the CPU flash-
                         attention kernels (with their softmax) that inductor puts in place of some of them
    softmax, norm, GELU  their aten ops and backward ops (the loss's log-softmax too); compiled: every fused kernel
                         whose name holds softmax, layer_norm or gelu (with what inductor fused into it; a
                         name lists at most 10 of the fused ops)
    other elementwise    every other aten op that computes (add, mul, copies, dropout, embedding, reductions,
                         the loss), and the compiled graphs' other fused kernels
    optimizer            everything inside clip_grad_norm_, AdamW's step and zero_grad, and the LR scheduler
    autograd, dispatch   the overhead of ops that compute nothing: autograd's nodes and gradient accumulation,
                         views and shape ops, wrappers (linear, matmul), allocations; compiled: guards, the graph
                         calls, AOT wrappers
    Python               the step's time in no op: the modules' Python (forward/backward calls, hooks) between ops

Each class's time is its median over the profiled steps (a step that another process interrupts does not move it),
and the table gives each as a share of their sum. The profiler's own cost per op lands mostly in the last two
rows; beneath the shares are the profiled step's wall time and the unprofiled step's wall and CPU time (this
thread's: what other processes on the machine do not inflate), medians. Inductor's kernels are made visible with
`torch._inductor.config.cpp.enable_kernel_profile` (a record per kernel call, in both measurements of the compiled
step). Nothing is asserted; the figures are for the README. Needs `make study`'s embedded assets (prepared if
missing), or `--untrained`: a random BLIP of the embedded shape on the world in --data-root (the step's ops and
shapes do not depend on the weights' values)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import step_time  # noqa: E402 - the step's setup, shared with the step benchmark

CASES = [("vqa", "lora", 8), ("caption", "lora", 8)]
CLASSES = ["linear products", "attention products", "softmax, norm, GELU", "other elementwise", "optimizer",
           "autograd, dispatch", "Python"]
SCOPES = ("forward", "backward", "clip_grad_norm", "optimizer", "zero_grad", "scheduler")   # the step's record scopes
OPTIMIZER_SCOPES = {"clip_grad_norm", "optimizer", "zero_grad", "scheduler"}
OVERHEAD = {"view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand", "expand_as", "as_strided",
            "unsqueeze", "squeeze", "slice", "select", "_unsafe_view", "detach", "alias", "empty", "empty_like",
            "empty_strided", "resize_", "contiguous", "linear", "matmul", "dropout", "split", "chunk", "unbind",
            "narrow", "view_as", "lift_fresh", "resolve_conj", "resolve_neg", "result_type", "to", "flatten",
            "unflatten", "movedim", "broadcast_tensors", "split_with_sizes", "is_nonzero", "_local_scalar_dense",
            "item", "zeros_like", "ones_like", "new_empty", "new_empty_strided", "set_"}   # no arithmetic of their own


def classify(name: str) -> str:
    """The class of an event that is not inside an optimizer scope (see the module docstring)."""
    if name.startswith(("autograd::", "torch::autograd::")) or name.endswith(("Backward0", "Backward1")):
        return "autograd, dispatch"
    if "cpp_fused" in name:                                         # inductor's kernels
        return "softmax, norm, GELU" if any(w in name for w in ("softmax", "layer_norm", "gelu")) \
            else "other elementwise"
    if not name.startswith("aten::"):                               # guards, graph calls, AOT wrappers
        return "autograd, dispatch"
    op = name[len("aten::"):]
    if op in ("mm", "addmm", "_addmm_activation"):
        return "linear products"
    if "bmm" in op or "scaled_dot_product" in op:
        return "attention products"
    if any(w in op for w in ("softmax", "layer_norm", "gelu")):
        return "softmax, norm, GELU"
    if op in OVERHEAD:
        return "autograd, dispatch"
    return "other elementwise"


def step(s, batch, scoped: bool = False) -> float:
    """One optimiser step as train.train_step takes it (step_time.step), in named scopes when `scoped`."""
    import contextlib

    import torch

    from vlpeft.tasks import to_device

    def scope(name):
        return torch.profiler.record_function(name) if scoped else contextlib.nullcontext()
    t0 = time.perf_counter()
    with scope("forward"):
        loss = s.loss_module(to_device(batch, s.device))
    with scope("zero_grad"):
        s.optimizer.zero_grad(set_to_none=True)
    with scope("backward"):
        loss.backward()
    with scope("clip_grad_norm"):
        torch.nn.utils.clip_grad_norm_(s.params, 1.0)
    with scope("optimizer"):
        s.optimizer.step()
    with scope("scheduler"):
        s.scheduler.step()
    return time.perf_counter() - t0


def profile_step(s, batch) -> tuple[dict, float]:
    """µs of one profiled step by class (each event's self CPU time; the scopes' own time and the time in no event
    are Python), and the profiled step's µs."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall_us = step(s, batch, scoped=True) * 1e6
    by_class, covered = defaultdict(float), 0.0
    for e in prof.events():
        chain, p = [e.name], e.cpu_parent
        while p is not None:
            chain.append(p.name)
            p = p.cpu_parent
        if e.cpu_parent is None:
            covered += e.cpu_time_total
        if OPTIMIZER_SCOPES & set(chain) or e.name.startswith("Optimizer."):
            by_class["optimizer"] += e.self_cpu_time_total
        elif e.name in SCOPES:
            by_class["Python"] += e.self_cpu_time_total
        else:
            by_class[classify(e.name)] += e.self_cpu_time_total
    by_class["Python"] += max(0.0, wall_us - covered)               # between the scopes (the step's own lines)
    return by_class, wall_us


def measure_case(task: str, method: str, size: int, cache: str, where: dict | None, steps: int) -> dict:
    import torch
    import torch._inductor.config as inductor
    torch.set_num_threads(1)
    inductor.cpp.enable_kernel_profile = True
    eager = step_time.setup_for(task, method, size, "off", where=where)
    compiled = step_time.setup_for(task, method, size, "on", cache, where=where)
    warm, timed = step_time.WARMUP, step_time.STEPS
    batches = [b for _, b in zip(range(warm + timed + steps), eager.train_loader(0))]
    flops = step_time.step_flops(eager, batches[:8])                # matmul FLOPs of a step, forward + backward
    eager.model.train()
    compiled.model.train()
    modes = (("eager", eager), ("compiled", compiled))
    wall, cpu = ({mode: [] for mode, _ in modes} for _ in range(2))
    for i, batch in enumerate(batches[:warm + timed]):             # interleaved, unprofiled: the step times
        for mode, s in modes:
            c0 = time.thread_time()
            w = step(s, batch)
            if i >= warm:
                wall[mode].append(w)
                cpu[mode].append(time.thread_time() - c0)          # this thread's CPU time: what other
    profiled = {mode: [] for mode, _ in modes}                     # processes on the machine do not inflate
    for batch in batches[warm + timed:]:                           # interleaved too: load on the machine hits both
        for mode, s in modes:
            profiled[mode].append(profile_step(s, batch))
    out = {"task": task, "method": method, "size": size, "compiled_ok": compiled.loss_module.failed is None,
           "gflop_step": flops / 1e9}
    for mode, _ in modes:   # medians over the steps, per class: robust to the step that another process interrupts
        classes = {c: statistics.median(p[0].get(c, 0.0) for p in profiled[mode]) / 1000 for c in CLASSES}
        out[mode] = {"wall_ms": 1000 * statistics.median(wall[mode]), "cpu_ms": 1000 * statistics.median(cpu[mode]),
                     "profiled_ms": statistics.median(p[1] for p in profiled[mode]) / 1000, "classes": classes}
    return out


def untrained_model(data_root: str) -> dict:
    """A random BLIP of the embedded shape, saved as the two task checkpoints (the mPLUG route, as the embedded
    model's), for --untrained: where the study's pre-trained model is not on this machine."""
    from transformers import BlipForConditionalGeneration

    from vlpeft.blip.models import (
        build_processor,
        build_tokenizer,
        honour_cross_attention_masks,
        random_blip,
        save_model,
    )
    from vlpeft.config import TinySpec
    from vlpeft.worlds import shapes
    root = Path(tempfile.mkdtemp(prefix="vlpeft-untrained-"))
    tokenizer = build_tokenizer(shapes.vocabulary())
    processor = build_processor(tokenizer, TinySpec().image_size)
    vqa = random_blip("vqa", tokenizer)
    vqa.config.vqa_route = "mplug"
    caption = honour_cross_attention_masks(BlipForConditionalGeneration(vqa.config))
    caption.load_state_dict(vqa.state_dict(), strict=False)
    save_model(caption, processor, root / "caption")
    save_model(vqa, processor, root / "vqa")
    return {"data_root": data_root, "model_path": str(root / "{task}"),
            "feature_cache": str(root / "features")}


def in_subprocess(*args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import step_profile; "
            f"print('RESULT', json.dumps(step_profile.measure_case(*{args!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=os.environ | {"OMP_NUM_THREADS": "1"})
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"measure_case{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def table(results: list[dict]) -> str:
    """Percent of the profiled step per class (of the sum of the classes' medians) and its ms, per case and mode;
    the step times beneath, and the rate of the products (the step's matmul FLOPs over the two products' ms)."""
    cols = [(r, mode) for r in results for mode in ("eager", "compiled")]
    name = {(r["task"], r["method"], r["size"]): f"{'VQA' if r['task'] == 'vqa' else r['task']} "
            f"{'LoRA r' if r['method'] == 'lora' else r['method'] + ' '}{r['size']}" for r in results}
    lines = ["| share of the profiled step | " + " | ".join(f"{name[(r['task'], r['method'], r['size'])]} {mode}"
                                                           for r, mode in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for c in CLASSES:
        cells = [(100 * r[mode]["classes"][c] / sum(r[mode]["classes"].values()), r[mode]["classes"][c])
                 for r, mode in cols]
        lines.append(f"| {c} | " + " | ".join(f"{v:.0f} % ({ms:.1f})" for v, ms in cells) + " |")
    rows = [("step profiled, wall (ms)", "profiled_ms"), ("step unprofiled, wall (ms)", "wall_ms"),
            ("step unprofiled, CPU time (ms)", "cpu_ms")]
    lines += [f"| {label} | " + " | ".join(f"{r[m][key]:.1f}" for r, m in cols) + " |" for label, key in rows]
    rate = [r["gflop_step"] / (r[m]["classes"]["linear products"] + r[m]["classes"]["attention products"]) * 1000
            for r, m in cols]
    lines.append("| matmul GFLOP a step | " + " | ".join(f"{r['gflop_step']:.2f}" for r, _ in cols) + " |")
    lines.append("| GFLOP/s in the two products' time | " + " | ".join(f"{v:.0f}" for v in rate) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", help="task:method:size (default: vqa:lora:8 caption:lora:8)")
    p.add_argument("--steps", type=int, default=20, help="profiled steps per mode (after the timed ones)")
    p.add_argument("--untrained", action="store_true", help="a random model of the embedded shape (see above)")
    p.add_argument("--data-root", default="data/shapes", help="the embedded world, for --untrained")
    p.add_argument("--out", help="also write the table, with the machine, to this markdown file")
    a = p.parse_args()
    cases = [(t, m, int(s)) for t, m, s in (c.split(":") for c in a.cases)] if a.cases else CASES
    where = untrained_model(a.data_root) if a.untrained else None
    peak = step_time.in_subprocess("matmul_peak")
    results = [in_subprocess(t, m, s, tempfile.mkdtemp(prefix="vlpeft-inductor-"), where, a.steps)
               for t, m, s in cases]
    text = table(results)
    print(f"{text}\n\none core's matmul peak: {peak:.0f} GFLOP/s")
    if a.out:
        import torch
        machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
                   f"one core's matmul peak (1024³ torch.mm, one thread) {peak:.0f} GFLOP/s; "
                   f"{'an untrained model of the embedded shape' if a.untrained else 'the embedded model'}; "
                   f"load average at the end {os.getloadavg()[0]:.1f}")
        Path(a.out).write_text(f"{text}\n\n{machine}\n")


if __name__ == "__main__":
    main()
