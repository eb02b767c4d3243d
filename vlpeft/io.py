"""Files the project writes: atomic JSON, provenance, exclusive ownership of a folder, and content hashes.

Everything that marks completion (a run's metrics.json, a world's world.json, a model's card.json) is written
atomically — a temp file, then a rename — so a file that exists is whole.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import time
from pathlib import Path

from .errors import AssetError


def write_json(path: str | Path, obj, indent: int | None = 2) -> Path:
    """Write JSON atomically (a temp file beside it, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=indent, default=str))
    tmp.replace(path)
    return path


def read_json(path: str | Path, error=ValueError, what: str = "file", missing_ok: bool = False, hint: str = ""):
    """Parsed JSON — the one reader of the project's files. A missing file raises `error` naming it (or gives None
    with `missing_ok`); a malformed one raises `error` naming it and what to do (`hint`, or: restore or remove)."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise error(f"{path}: {what} not found{hint}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e}); " + (hint.strip("; .") if hint else
                                                         f"the {what} is corrupt — restore or remove it")) from None


def config_hash(obj, n: int = 8) -> str:
    """A short, stable hash of a JSON-able object (run ids, cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def differing(there: dict, asked: dict, prefix: str = "") -> dict[str, tuple]:
    """The fields in which two configs differ, nested ones by dotted name: {field: (there, asked)}."""
    out = {}
    for k in sorted(set(there) | set(asked), key=str):
        a, b = there.get(k), asked.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out |= differing(a, b, f"{prefix}{k}.")
        elif a != b:
            out[f"{prefix}{k}"] = (a, b)
    return out


def said(diff: dict[str, tuple], limit: int = 6) -> str:
    """`differing`'s fields in words: "lr: 0.001 here, 0.002 asked; …" (the first `limit`)."""
    shown = "; ".join(f"{k}: {a!r} here, {b!r} asked" for k, (a, b) in list(diff.items())[:limit])
    return shown + (f"; and {len(diff) - limit} more" if len(diff) > limit else "")


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class LineStream:
    """A progress bar's stream for a log or a pipe: each redraw (tqdm's carriage return, padding and cursor moves)
    becomes one plain line; a redraw at the same count as the line before (the final redraw on closing) is
    dropped."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        count = line.split(" [")[0]                         # "desc:  50%|#####     | 6/12", without the rates
        if line and count != self.last:
            self.stream.write(line + "\n")
            self.last = count

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(**kw):
    """tqdm (notebook-aware). When its stream (stderr) is not a terminal — a pipe, a log file — it degrades to a
    plain line at most every 5 s (`LineStream`) instead of carriage-return redraws."""
    import sys

    from tqdm.auto import tqdm
    stream = kw.pop("file", None) or sys.stderr
    terminal = getattr(stream, "isatty", lambda: False)()
    if not terminal and not tqdm.__module__.startswith("tqdm.notebook"):
        stream = LineStream(stream)
    return tqdm(**{"mininterval": 0.1 if terminal else 5.0, "dynamic_ncols": terminal, "file": stream} | kw)


# ---------------------------------------------------------------------------------------------------------
# Provenance: what produced a file
@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the vlpeft checkout (with '+dirty' when it has uncommitted changes); None outside one. Read
    once per process: what a process runs is the code it imported when it started, whatever is committed while it
    runs (a pre-training or a sweep can outlast several commits), so the long-running entry points ask at their
    start (`pretrain._pretrain`, a run's provenance.json) and every later record repeats that answer."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def provenance() -> dict:
    """The code, library versions, locked environment and numeric path behind a result."""
    from . import numerics
    return {"vlpeft": _version("vlpeft"), "git_commit": git_commit(), "torch": _version("torch"),
            "transformers": _version("transformers"), "peft": _version("peft"), "python": platform.python_version(),
            "host": socket.gethostname(), "lock": lock_record(), "numerics": numerics.record()}


LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"   # `make lock` writes it, `make setup` installs it


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def locked_versions(path: str | Path = LOCK) -> dict[str, str]:
    """{package: version} of a pip-compile lock (its `name==version` lines; names normalised as PEP 503 does)."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith(("#", "-")):
            name, version = line.split(";")[0].strip().rstrip("\\").strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


@functools.lru_cache(maxsize=1)
def lock_record() -> dict | None:
    """The lock this environment was installed from: its hash, and whether every locked package is installed at
    its locked version (the first few that are not, by name). None outside a checkout (no lock file)."""
    if not LOCK.is_file():
        return None
    differs = []
    for name, want in locked_versions(LOCK).items():
        have = _version(name)
        if have != want and not (name == "torch" and have and have.split("+")[0] == want.split("+")[0]):
            differs.append(f"{name} {have or 'missing'} (lock: {want})")
    return {"sha256": file_sha256(LOCK)[:16], "matches": not differs, "differs": differs[:5]}


# ---------------------------------------------------------------------------------------------------------
# One owner at a time
class Owner:
    """An exclusive, non-blocking lock on a folder: `<folder>/<name>` (an OS file lock, released on any exit
    of the holder, a SIGKILL included, so a lock is never stale) plus `<name>.owner` saying who holds it.

        with Owner(run_dir, "run.lock") as owner: ...      # raises `busy_error` when another process holds it
    """

    def __init__(self, folder: str | Path, name: str, busy_error=RuntimeError, what: str = "folder"):
        self.folder, self.name, self.busy_error, self.what = Path(folder), name, busy_error, what
        self._lock = None

    @property
    def info_path(self) -> Path:
        return self.folder / f"{self.name}.owner"

    def holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text())
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["since"]))
            return f"pid {info['pid']} on {info['host']} (since {since})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def acquire(self) -> "Owner":
        from filelock import FileLock, Timeout
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / self.name), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise self.busy_error(f"{self.folder}: this {self.what} is in use by {self.holder()}; wait for it to "
                                  f"finish or use another folder") from None
        self._lock = lock
        write_json(self.info_path, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        return self

    def release(self) -> None:
        if self._lock is not None:
            self.info_path.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def is_held_elsewhere(self) -> bool:
        """True when another process holds the lock right now (a probe that takes and drops it)."""
        from filelock import FileLock, Timeout
        if not (self.folder / self.name).exists():
            return False
        lock = FileLock(str(self.folder / self.name), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def __enter__(self) -> "Owner":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------------
# Writing only into folders the project owns
MARKER = ".vlpeft.json"


class FolderRefused(AssetError):
    """`own` refused a folder; `there` is its marker ({"what", "config"}), or None when it has none (not ours), so
    a writer with its own words for the refusal can say what the folder holds."""

    def __init__(self, message: str, there: dict | None = None):
        super().__init__(message)
        self.there = there


def own(folder: str | Path, what: str, config: dict, done_file: str, *, force: bool = False,
        redo_unfinished: bool = False, dry_run: bool = False) -> bool:
    """Take `folder` for writing a `what` of `config`: True when it already holds that, complete (cached);
    False when it is empty or holds an unfinished one of the same config (write it); refuse otherwise
    (`FolderRefused`). Complete means `done_file` exists: the writer writes it last, atomically.

    Writers that replace their own outputs widen "write it": `redo_unfinished` also takes an unfinished `what` of
    another config (nothing complete is lost), `force` any `what` of ours, complete or not, of any config. A folder
    without the marker, or with another `what`'s, is refused whatever the flags. Taking a folder writes the marker
    and removes `done_file` first, so a folder being rewritten reads as unfinished until the writer is done; the
    writer clears its own other outputs. `dry_run`: decide and refuse, write nothing (check a folder before slow
    work that may still fail, take it after)."""
    folder = Path(folder)
    marker, done = folder / MARKER, folder / done_file
    config = json.loads(json.dumps(config, default=str))
    if marker.exists():
        mine = json.loads(marker.read_text())
        ours, same = mine.get("what") == what, mine.get("config") == config
        if ours and same and not force:
            return done.exists()
        if not ours or not (force or (redo_unfinished and not done.exists())):
            diff = differing(mine.get("config") or {}, config) if ours else {}
            holds = (f"holds a {what} of another configuration ({said(diff)})" if diff else
                     f"holds a {mine.get('what', '?')}" + ("" if ours else f", not a {what}"))
            raise FolderRefused(f"{folder} {holds}. Remove the folder, or choose another one for this {what}.",
                                there=mine)
    elif folder.exists() and any(folder.iterdir()):
        raise FolderRefused(f"{folder} is not empty and was not written by vlpeft (no {MARKER}); refusing to write "
                            f"a {what} there. Choose another folder (an empty or new one).")
    if not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
        done.unlink(missing_ok=True)
        write_json(marker, {"what": what, "config": config})
    return False
