"""Lightning's checkpoint plugin for our runs: atomic local writes, reads through the safe loader."""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..checkpoints.safe_load import read_checkpoint
from ..io import atomic_torch_save


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
