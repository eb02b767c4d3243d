"""Compiling the training step (`torch.compile`, inductor) where it pays, and falling back to eager where it cannot.

The embedded model's matrices are small (M ≈ 400, K = N = 128): a step spends about a third of its time outside any
op (Python and dispatch through BLIP's modules and our hooks) and a quarter in elementwise ops and copies, which
inductor fuses. `benchmarks/step_time.py` measures what it gives (eager vs compiled ms a step, per method) and
what it costs (compiling a step cold and with inductor's on-disk cache warm); `COMPILE_MIN_STEPS` is the rule taken
from those figures: a run compiles when it is long enough to earn its compile back with the cache warm, which it
is in a study whose runs share one cache folder (`RunConfig.compile_cache`, beside the feature cache).

What is compiled is the loss module (forward and, through AOTAutograd, backward); the optimiser step, evaluation and
decoding stay eager, so generate ≡ forward and resume ≡ uninterrupted hold as before (tests/test_train.py holds a
compiled and an eager run to the same losses). A run records whether it ran compiled (`metrics.json`: `compiled`).

    loss_module, why = compiled(TaskModel(model, task), cfg, total_steps, device)
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from . import numerics

# The rule, from what it was measured to give (benchmarks/step_time.py; README, "Time"): a compiled step saves 10–21 ms
# on the embedded model (1.13–1.50×), a run's warm compile (inductor's cache filled by an earlier run of the same
# configuration: 4–5 s) is earned back after 230–350 steps, and the first run of a configuration also pays the cold
# compile with its dynamic-shape recompiles (about 75 s), which the study's few runs of that configuration share.
# Whole runs, eager vs compiled (warm): VQA LoRA r8 at 30 % data, 830 steps: 48.1 → 35.1 s of training; captioning
# LoRA r8, 621 steps: 26.8 → 29.4 s (its batches' several lengths recompile, and it is too short to earn that back).
COMPILE_MIN_STEPS = 800
COMPILE_CHOICES = ("auto", "on", "off")


def compiler_problem(device: torch.device) -> str | None:
    """Why inductor cannot compile for `device` here (None: it can): this torch or platform has no dynamo, CPU code
    needs a C++ compiler."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile is not supported by this torch ({torch.__version__}) on this platform"
    if device.type == "cpu":
        cxx = os.environ.get("CXX", "g++")
        if not any(shutil.which(c) for c in (cxx, "g++", "c++", "clang++")):
            return "no C++ compiler on PATH (inductor's CPU code needs g++ or clang++)"
    elif device.type not in ("cuda",):
        return f"torch.compile is not used on {device.type}"
    return None


def plan(cfg, total_steps: int, device: torch.device) -> tuple[bool, str]:
    """Whether a run compiles its training step, and why in words (for the run's metrics and log)."""
    if cfg.compile == "off":
        return False, "off (--compile off)"
    if (problem := compiler_problem(device)) is not None:
        return False, f"eager: {problem}"
    if cfg.compile == "auto" and total_steps < COMPILE_MIN_STEPS:
        return False, f"eager: {total_steps} steps, under the {COMPILE_MIN_STEPS} a compile earns back"
    return True, "compiled (inductor)"


class CompiledLoss(torch.nn.Module):
    """The loss module compiled by inductor. If compiling fails — the forward at its first call, or the backward
    (compiled lazily at the first `backward()`, see `fall_back`) — one line says so and the run goes on eager from
    that step, which is recomputed. An error of the model or the data is raised as eager code raises it."""

    def __init__(self, module: torch.nn.Module, cache: str = ""):
        super().__init__()
        if cache:  # every run of a study shares the compiled kernels (read when inductor first compiles)
            Path(cache).mkdir(parents=True, exist_ok=True)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache).resolve())
        torch._dynamo.reset()   # a warm kernel runs many cells: a new run must not count against the last's graphs
        numerics.configure_inductor()   # the pinned vector width (256 bits) on the pinned path
        self.eager = module
        self.compiled = torch.compile(module)
        self.failed: str | None = None

    def forward(self, batch: dict) -> torch.Tensor:
        if self.failed is None:
            try:
                return self.compiled(batch)
            except Exception as e:  # noqa: BLE001 - sorted below: the compiler's failure, or the model's own error
                if not _is_compile_error(e):
                    raise
                out = self.eager(batch)    # the model's or the data's own error is raised here, as eager raises it
                self.give_up(e)
                return out
        return self.eager(batch)

    def give_up(self, error: BaseException) -> None:
        self.failed = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
        print(f"vlpeft: torch.compile failed ({self.failed}); this run continues eager", file=sys.stderr, flush=True)


def fall_back(loss_module: torch.nn.Module, error: BaseException) -> bool:
    """After `backward()` raised: True when it was the compiler failing on the backward graph (the module is then
    eager from here on, and the caller recomputes the step), False for any other error (re-raise it)."""
    if isinstance(loss_module, CompiledLoss) and loss_module.failed is None and _is_compile_error(error):
        loss_module.give_up(error)
        return True
    return False


def _is_compile_error(e: BaseException) -> bool:
    """A failure of the compiler (dynamo, inductor, the C++ toolchain), not of the model or the data."""
    names = {type(c).__name__ for c in (e, e.__cause__, e.__context__) if c is not None}
    return bool(names & {"BackendCompilerFailed", "InductorError", "CppCompileError", "InternalTorchDynamoError",
                         "TorchRuntimeError", "Unsupported"}) or "torch._inductor" in str(e)[:2000]
