"""The errors a user can cause or meet, one family: the CLI (and a notebook cell, `vlpeft.nb`) shows their
message — one or two lines naming the file or field and what to do — and exits, without a traceback unless
`--debug` or `VLPEFT_DEBUG=1`.

`user_error` turns what the machine says (a full disk, a read-only folder, a file where a folder belongs) into
the same kind of message. Everything else is a bug: it keeps its traceback, with a line saying how to report it.
"""
from __future__ import annotations

import errno

REPORT_A_BUG = "this is a bug in vlpeft, not in your input: please report it with the traceback above"


class VlpeftError(Exception):
    """A user-facing error; `exit_code` is what the CLI exits with (2: a usage error, 1: anything else)."""
    exit_code = 1


class ConfigError(VlpeftError, ValueError):
    """A run configuration refused before any work; the message says what to change."""
    exit_code = 2


class DataError(VlpeftError, ValueError):
    """Bad or missing input data; the message names the file and what to do."""


class ModelError(VlpeftError, ValueError):
    """A model path that cannot be loaded; the message names the file and what to do."""


class MethodError(VlpeftError, ValueError):
    """A method configuration that cannot be applied; the message names the valid choices."""
    exit_code = 2


class MetricError(VlpeftError, RuntimeError):
    """A metric that cannot be computed; the message says why and what to do."""


class AssetError(VlpeftError):
    """Preparing a world or a pre-trained model would touch files the project does not own."""


class RunFolderError(VlpeftError):
    """A run folder that belongs to another configuration, or that another process is training."""


class DiskError(VlpeftError, OSError):
    """The machine refused a write (full disk, read-only or foreign folder); the message names the path."""


class Interrupted(VlpeftError):
    """Ctrl-C during a run; the message says how to resume."""
    exit_code = 130


class Preempted(VlpeftError):
    """SIGTERM, SIGUSR1 or SIGUSR2 (a scheduler's time limit or preemption, Slurm's warning, submitit's): the run
    saved its checkpoint first; the message says where and how it resumes."""
    exit_code = 143


def user_error(e: BaseException) -> VlpeftError | None:
    """The user-facing form of an error the machine raised, or None when it is not one (a bug)."""
    if isinstance(e, VlpeftError):
        return e
    text = str(e)
    where = getattr(e, "filename", None) or ""
    code = getattr(e, "errno", None)
    if code == errno.ENOSPC or "No space left on device" in text or "StorageFull" in text:
        return DiskError(f"no space left on the device{' writing ' + str(where) if where else ''}: free some space "
                         f"(runs/ and cache/features/ are the large folders) or point --out-dir, --runs-root or "
                         f"--feature-cache at another disk; a run resumes from its last checkpoint")
    if code == errno.EROFS or "Read-only file system" in text:
        return DiskError(f"{where or 'a folder'} is on a read-only file system: choose a writable --out-dir, "
                         f"--runs-root or --feature-cache")
    if code in (errno.EACCES, errno.EPERM) and isinstance(e, OSError):
        return DiskError(f"permission denied: {where}; choose a folder you can write, or fix its permissions")
    if code in (errno.ENOTDIR, errno.EEXIST) and isinstance(e, OSError):
        return DiskError(f"{where}: a file stands where vlpeft needs a folder (or the reverse); move it or choose "
                         f"another path")
    return None
