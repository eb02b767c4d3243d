"""Fault injection for the tests of resumption, divergence and sweep isolation: `RunConfig.fault`.

    "nan:K"        the loss of step K is NaN (the run ends as `diverged`)
    "crash:K"      step K raises (a failed run)
    "kill:K"       the process SIGKILLs itself at step K (a node that disappears; the run resumes later)
    "interrupt:K"  Ctrl-C at step K
    "term:K"       the process sends itself SIGTERM at step K (a scheduler's time limit: checkpoint, exit 143)
"""
from __future__ import annotations

import os
import re
import signal

import torch

KINDS = ("nan", "crash", "kill", "interrupt", "term")
SYNTAX = re.compile(rf"^({'|'.join(KINDS)}):(\d+)$")


def check(fault: str) -> str | None:
    """None when `fault` is valid ("" or kind:step), else what is wrong."""
    if fault and not SYNTAX.match(fault):
        return f"fault must be '' or one of {', '.join(k + ':STEP' for k in KINDS)}, got {fault!r}"
    return None


def inject(fault: str, step: int, loss: torch.Tensor) -> torch.Tensor:
    m = SYNTAX.match(fault or "")
    if m is None or int(m[2]) != step:
        return loss
    if m[1] == "nan":
        return loss * float("nan")
    if m[1] == "crash":
        raise RuntimeError(f"injected crash at step {step} (RunConfig.fault={fault!r})")
    if m[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if m[1] == "term":
        os.kill(os.getpid(), signal.SIGTERM)  # handled by vlpeft.signals: the step finishes, then the run stops
        return loss
    raise KeyboardInterrupt
