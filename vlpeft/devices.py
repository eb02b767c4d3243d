"""Where a run computes: its device (checked before any work) and the precision it computes in there.

    device = resolve_device(cfg, ranks())           # cuda when present, else cpu (or the rank's own GPU)
    amp = autocast_dtype(cfg, device)               # bf16 autocast on CUDA, None (fp32) on the CPU
"""
from __future__ import annotations

import re

import torch

from .parallel import Ranks

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def device_problem(device: str) -> str | None:
    """Why `device` cannot run here (None: it can): an unknown name, a CUDA device on a build or machine without
    one, an index past the last GPU, MPS off a Mac."""
    if not DEVICE.match(device):
        return f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return (f"--device {device}: this torch ({torch.__version__}) sees no CUDA device; use --device auto or "
                    f"cpu, or install a CUDA build of torch on a GPU node (`make TORCH_SPEC=torch …`)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            return f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 …)"
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return "--device mps: no Apple-silicon GPU here; use --device auto or cpu"
    return None


def resolve_device(cfg, dp: Ranks) -> torch.device:
    """The run's device: the rank's own under data parallelism, else cuda when present, else cpu."""
    if cfg.device == "auto":
        return dp.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_dtype(cfg, device: torch.device):
    """The autocast dtype (None: plain fp32): bf16 on CUDA unless the run asks for fp32 or fp16; fp32 elsewhere."""
    if device.type != "cuda" or cfg.precision == "fp32":
        return None
    return torch.float16 if cfg.precision == "fp16" else torch.bfloat16  # auto / bf16
