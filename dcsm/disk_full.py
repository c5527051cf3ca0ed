"""A full disk is one line: :class:`DiskFullError` names the file being written and the free
space there (no heavy imports: the command runner uses it for any ``ENOSPC`` that escapes)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(ValueError):
    """The disk (or quota) filled up while a file was written; nothing partial was left."""


def _free_space(folder: Path) -> str:
    """Free space on ``folder``'s file system, for humans (``?`` when it cannot be read)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return "?"


def disk_full_error(path: str | Path, err: BaseException) -> DiskFullError:
    """A :class:`DiskFullError` naming ``path``, the free space there and the fix."""
    path = Path(path)
    return DiskFullError(
        f"disk full while writing '{path}' ({os.strerror(getattr(err, 'errno', errno.ENOSPC) or errno.ENOSPC)}; "
        f"{_free_space(path.parent)} free in '{path.parent}'); no partial file was left. "
        "Fix: free space there or write to another disk (e.g. run_dir=..., eval.output=..., *.out=...), then rerun "
        "(a training run resumes from its last checkpoint)."
    )


def disk_full_path(err: BaseException) -> str:
    """The file an ``ENOSPC`` error (or its cause) names, ``?`` when none does."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError) and err.filename:
            return os.fsdecode(err.filename)
        err, seen = err.__cause__ or err.__context__, seen + 1
    return "?"


def is_disk_full(err: BaseException | None) -> bool:
    """True for ``ENOSPC``/``EDQUOT`` (or an error caused by one)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False
