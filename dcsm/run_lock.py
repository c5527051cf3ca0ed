"""One run per run_dir: an exclusive lock file, and cleanup of temp files a killed run left.

Two runs writing into one ``run_dir`` would interleave checkpoints and overwrite each other's
``metrics.json``. ``train.py`` holds ``run_dir/.dcsm.lock`` (an ``flock``, released by the
kernel when the process ends, even when killed) for the whole run; a second run refuses with a
one-line error naming the holder. Only global rank 0 locks: under DDP the other ranks belong
to the same run.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

LOCK_NAME = ".dcsm.lock"
TEMP_GLOB = ".*.tmp"  # dcsm.io.atomic_write's temp files: ".<name>.<random>.tmp"


class RunDirBusyError(ValueError):
    """Another live process holds the run_dir."""


class RunDirLock:
    """Context manager: exclusive lock on ``run_dir`` for this process.

    Args:
        run_dir: the run's folder (created if missing).
        enabled: False on non-zero ranks (they share rank 0's run).
        key: the config key that names the folder (in the error message).
        fix: what to do instead (in the error message).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, key: str = "run_dir",
                 fix: str = "wait for it to finish, or give this run its own run_dir=...") -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.enabled = enabled
        self.key, self.fix = key, fix
        self._fd: int | None = None

    def __enter__(self) -> "RunDirLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirBusyError(
                f"{self.key} '{self.path.parent}' is in use by another run ({holder}). Fix: {self.fix}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (ValueError, KeyError, OSError):
        return "holder unknown"


def clean_orphan_temp_files(folder: str | Path) -> list[Path]:
    """Delete atomic-write temp files (``.<name>.*.tmp``) that a killed run left in ``folder``.

    Call only while holding the run's lock: then no live writer owns them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = sorted(p for p in folder.glob(TEMP_GLOB) if p.is_file())
    for p in removed:
        p.unlink()
    if removed:
        log.warning("removed %d temp file(s) left by a killed run in %s, e.g. %s", len(removed), folder, removed[0].name)
    return removed
