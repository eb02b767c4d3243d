"""Running one cell of a grid: papermill executes the method's notebook with the cell's whole RunConfig, on a
Jupyter kernel that the sweep worker keeps warm.

    result = run_cell(cell)          # never raises: {status, error, path}

A complete cell (metrics.json) is skipped; a failed one keeps papermill's notebook with its error cell and a
`failed.json` with the reason (a dead kernel: the run log's tail); a cell that another sweep is running right now
is reported busy.
"""
from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

from ..errors import RunFolderError
from ..io import Owner
from ..rundir import config_dict
from .presets import Cell


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
        why = reason(e, out)
        (out / "failed.json").write_text(json.dumps({"error": why, "traceback": traceback.format_exc()}))
        if isinstance(e, (KeyboardInterrupt, SystemExit)):  # Ctrl-C, or a scheduler stopping the job: recorded, and
            raise                                           # the cell is retried when the sweep (or job) runs again
        return {"status": "failed", "error": why, "path": str(out / "run.ipynb")}
    finally:
        owner.release()


def reason(e: BaseException, out: Path) -> str:
    """Why a cell failed, in a line: the notebook's error, or for a dead kernel the run log's last lines."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    reason = f"{ename}: {evalue}" if ename else f"{type(e).__name__}: {e}"
    if "DeadKernel" in type(e).__name__ or "Kernel died" in reason:
        log = out / "train.log"
        tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
        reason = (f"the kernel died (killed, out of memory, or a crash in native code) — {reason}. "
                  + (f"Last lines of train.log: {' | '.join(tail)}" if tail else "train.log is empty: it died "
                     "before the first evaluation."))
    return reason


def run_cell_once(cell: Cell) -> dict:
    """A cell in a process of its own (a Slurm job): its kernel goes with it."""
    try:
        return run_cell(cell)
    finally:
        WarmKernel.shutdown()


