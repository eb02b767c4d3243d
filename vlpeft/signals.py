"""Stopping a run cleanly. A scheduler ends a job with SIGTERM (a time limit, a preemption), Slurm can warn ahead
with SIGUSR1 (`--signal=USR1@90`) and submitit asks with SIGUSR2: each only sets a flag here; the training loop
reads it after the step it is on, saves its checkpoint, says where and how to resume, and exits 143.

    with StopSignals() as stop:
        for batch in loader:
            …
            if stop.requested:
                …  # checkpoint, then raise errors.Preempted
"""
from __future__ import annotations

import signal
import threading

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


class StopSignals:
    """While active (main thread only; elsewhere it does nothing), the signals above set `requested` to the
    signal's name instead of killing the process; the previous handlers come back on exit."""

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():   # None: a handler not installed from Python — the default
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
