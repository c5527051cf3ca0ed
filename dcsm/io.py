"""Atomic file writes (temp file in the same folder + ``os.replace``): readers never see a
half-written checkpoint, shard or metrics file, and a killed run leaves the old file intact.

A full disk (``ENOSPC``/``EDQUOT``, also when it surfaces inside ``torch.save`` as a
``RuntimeError``) becomes one :class:`DiskFullError` naming the file being written and the free
space; the temp file is removed and the old file, if any, is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem

from .disk_full import DiskFullError, disk_full_error, is_disk_full  # noqa: F401  (DiskFullError: re-exported)
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .checkpoints.safe_load import read_checkpoint


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
    return atomic_write(path, lambda f: torch.save(obj, f))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint plugin: local checkpoints are written temp-file-then-rename, and read
    (``trainer.fit(ckpt_path=...)``, resume) through :func:`dcsm.checkpoints.safe_load.read_checkpoint`: a
    plain torch.save zip archive, unpickled without running code from it."""

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location if map_location is not None else "cpu")

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        fs = get_filesystem(path)
        if fs.protocol not in ("file", ("file", "local")) and "file" not in fs.protocol:
            super().save_checkpoint(checkpoint, path)  # remote stores have their own semantics
            return
        atomic_torch_save(checkpoint, path)
