"""One config, one number on any x86-64 machine: the numeric path, pinned by the package before torch is imported.

A float sum depends on its order, and the order depends on the machine. ATen picks its vector kernels by the CPU's
widest instruction set (softmax differs between AVX-512 and AVX2), oneDNN does the same (GELU), MKL's GEMM does
the same on Intel CPUs, inductor vectorises a compiled step by it, and a parallel reduction splits its work by the
thread count. Measured on this project's machines (AMD EPYC, AVX-512): 50 steps of the embedded pre-training give
other weights at 1 and 2 threads, and other weights again with any one of the three instruction-set variables set.

    import vlpeft                      # vlpeft/__init__.py calls pin_environment(): the caps, before torch loads
    with numerics.computing(cfg.numerics): ...   # where the work starts: the caps checked, one thread
    numerics.record()                  # what this process computes on, for the card, provenance and the report

The `pinned` path (the default) caps ATen and oneDNN at AVX2 (the widest set every x86-64 server of the last decade
has: Intel Haswell 2013, AMD Zen 2017) and MKL at its vendor-independent branch, fixes inductor's vector width at
256 bits, and computes on one thread whatever the machine has, so the same config gives the same weights and the
same numbers on any x86-64 CPU with AVX2. `native` (`--numerics native`, or VLPEFT_NUMERICS=native before the
process starts) lets each library choose and takes `--threads`: faster on a wide machine, machine-dependent. It is
saved with every run and enters the run id (pinned, the default, does not: run ids from before the path was pinned
stand), so the two never share a run folder. What the pinned path cannot make equal: another architecture (ARM), a
CPU without AVX2, a GPU (cuBLAS and cuDNN pick kernels per device), and a run that compiles against one that cannot
(inductor's fused kernels round differently from eager ones, within 1e-4: tests/test_train.py) — each is recorded.

Why MKL's COMPATIBLE branch and not its AVX2 one: measured on this project's AMD EPYC against the same binaries
under qemu's Intel Haswell model (AVX2, no AVX-512; `qemu-x86_64 -cpu Haswell-v4`, exact IEEE arithmetic), MKL_CBWR=AVX2
gives other GEMM and vector-math results on the "Intel" CPU (MKL dispatches on the vendor), COMPATIBLE the same;
and the per-tensor AdamW's square root (MKL's vector math) differs there even so, so the optimisers are fused (the
CPU's own exact square root). With both, a pre-training's weights are bit-identical on the two (benchmarks/
numerics_cost.py says what COMPATIBLE costs).

This module imports nothing heavy: it must run before torch is imported.
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys

MODES = ("pinned", "native")
ENV = "VLPEFT_NUMERICS"                 # the process's mode, read when vlpeft is first imported
CAPS = {"ATEN_CPU_CAPABILITY": "avx2",  # ATen's vector kernels (softmax, norms, elementwise); also inductor's ISA
        "MKL_CBWR": "COMPATIBLE",       # MKL's reproducible branch for any x86-64 vendor (GEMM, vector math); its
                                        #   AVX2 branch is Intel's: an AMD CPU takes another path whatever it says
        "ONEDNN_MAX_CPU_ISA": "AVX2"}   # oneDNN's kernels (GELU, convolution)
SIMD_BITS = 256                         # inductor's vector width for compiled steps (torch._inductor.config.cpp)
THREADS = 1                             # the pinned thread count: pre-training, features and every run (the tiny
                                        #   model's small products gain little from a second thread; a sweep runs
                                        #   one run per core instead: benchmarks/numerics_cost.py)

_shell = {k: os.environ.get(k) for k in CAPS}  # what the user's shell held, restored for the native path
_asked = os.environ.get(ENV)                    # what the process was started with (checked by env_problem)
_mode = "native"                                # what pin_environment last set in this process


def requested() -> str:
    """The mode this process was asked for (VLPEFT_NUMERICS; pinned when unset or unknown: pin_environment and
    the CLI refuse an unknown one by name)."""
    mode = os.environ.get(ENV) or "pinned"
    return mode if mode in MODES else "pinned"


def pin_environment(mode: str | None = None) -> str:
    """Set (pinned) or restore (native) the instruction-set caps in this process's environment, which the kernels
    and workers it starts inherit; returns the mode. The libraries read them when they first compute, so this runs
    before torch computes anything: when vlpeft is imported, and again when a command picks its mode."""
    global _mode
    mode = mode or requested()
    if mode not in MODES:
        from .errors import ConfigError
        raise ConfigError(f"numerics {mode!r}: choose one of {', '.join(MODES)} (pinned is the default)")
    os.environ[ENV] = mode
    for key, value in CAPS.items():
        if mode == "pinned":
            os.environ[key] = value
        elif _shell[key] is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = _shell[key]
    _mode = mode
    if "torch" in sys.modules:  # too late for a library that has already computed: say so where it matters
        problem = mismatch()
        if problem:
            from .errors import ConfigError
            raise ConfigError(problem)
    return mode


def active() -> str:
    """The mode this process computes on."""
    return _mode


def mismatch(mode: str | None = None) -> str | None:
    """Why this process does not compute on `mode`'s path (None: it does): torch loaded its kernels before the caps
    were set, or the CPU has no AVX2."""
    mode = mode or _mode
    if mode != "pinned" or "torch" not in sys.modules:
        return None
    import torch
    got = torch.backends.cpu.get_cpu_capability()
    if got == "AVX2":
        return None
    if not has_avx2():
        return None  # a CPU the pinned path cannot reach: recorded (record()'s cpu_capability), not refused
    return (f"the pinned numeric path needs its caps before torch computes, but torch already runs {got} kernels "
            f"in this process; import vlpeft before torch (or set {ENV}=native to compute on the machine's own path)")


def env_problem() -> str | None:
    """Why the environment's VLPEFT_NUMERICS is not a numeric path (None: unset or one)."""
    if _asked and _asked not in MODES:
        return f"{ENV}={_asked!r}: choose pinned (the default: the same numbers on any machine) or native"
    return None


def mode_problem(mode: str) -> str | None:
    """Why `mode` is not a numeric path (None: it is)."""
    if mode not in MODES:
        return f"unknown --numerics {mode!r}; choose pinned (the default: the same numbers on any machine) or native"
    return None


def threads_problem(asked: int, mode: str) -> str | None:
    """Why a run's `threads` cannot be honoured on `mode`'s path (None: it can)."""
    if mode == "pinned" and asked not in (0, THREADS):
        return (f"threads {asked}: a run computes on {THREADS} thread on the pinned numeric path "
                f"(vlpeft/numerics.py), so that the same config gives the same numbers on any machine; drop "
                f"--threads, or choose --numerics native")
    return None


@contextlib.contextmanager
def computing(mode: str, asked: int = 0):
    """Compute on `mode`'s path: the caps checked (refused in one line when torch already computes on another path
    in this process), the thread count set — the pinned one, or on the native path the one asked for (0: as it
    is) — and restored afterwards (a notebook's kernel keeps its own)."""
    import torch
    if (problem := mode_problem(mode)) is not None:
        from .errors import ConfigError
        raise ConfigError(problem)
    pin_environment(mode)
    before = torch.get_num_threads()
    n = THREADS if mode == "pinned" else asked
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def configure_inductor() -> None:
    """Compiled steps vectorise at the pinned width (inductor reads ATEN_CPU_CAPABILITY too; this makes it exact)."""
    if _mode == "pinned":
        import torch._inductor.config as inductor
        inductor.cpp.simdlen = SIMD_BITS


def has_avx2() -> bool:
    """Whether this CPU has AVX2 (Linux: /proc/cpuinfo's flags; elsewhere: an x86-64 machine is taken to)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return platform.machine() in ("x86_64", "AMD64")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what platform says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record() -> dict:
    """What this process computes on: the mode, the caps in force, torch's kernels and threads, the CPU."""
    rec = {"mode": _mode, "caps": {k: os.environ.get(k) for k in CAPS}, "cpu": cpu_model(),
           "machine": platform.machine()}
    if "torch" in sys.modules:
        import torch
        rec |= {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    return rec
