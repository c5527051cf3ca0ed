"""Atomic file writes (temp file in the same folder + ``os.replace``): readers never see a
half-written checkpoint, shard or metrics file, and a killed run leaves the old file intact.

A full disk (``ENOSPC``/``EDQUOT``, also when it surfaces inside ``torch.save`` as a
``RuntimeError``) becomes one :class:`DiskFullError` naming the file being written and the free
space; the temp file is removed and the old file, if any, is left as it was. No heavy imports
(torch only inside :func:`atomic_torch_save`): the command runner uses the disk-full helpers for
any ``ENOSPC`` that escapes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


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


class _Recording:
    """A file object that remembers the ``OSError`` its ``write`` raised: ``torch.save``'s zip
    writer turns it into ``RuntimeError: unexpected pos``, losing the reason."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename onto ``path``.

    Raises:
        DiskFullError: the disk filled up (the temp file is removed, ``path`` untouched).
    """
    path = Path(path)
    tmp = None
    rec: _Recording | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            rec = _Recording(f)
            write(rec)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if is_disk_full(err) or (rec is not None and is_disk_full(rec.error)):
            raise disk_full_error(path, err) from err
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
