"""Random-number-generator states in checkpoints: a resumed run draws the same dropout masks.

:class:`RNGStateCallback` (registered by ``train.py``) does two things:

* every checkpoint carries the global generators of every rank — torch CPU, CUDA (when
  initialised), numpy and python ``random`` — gathered from all ranks when it is written
  (``state_dict``, called on every rank), as plain tensors, ints, floats and lists only
  (checkpoints are read with ``torch.load(weights_only=True)``); a resumed rank restores its
  own just before its first training step, after the resumed run has built its loaders;
* every epoch's first training step starts from generators seeded by ``(seed, epoch, rank)``,
  because what runs between two epochs (building loader iterators, which draw from torch's
  generator; validation) differs between an uninterrupted run and one resumed at an epoch end.

Together an interrupted and resumed run ends with the same weights as one never interrupted
(tested exactly on CPU, dropout on: ``tests/train/test_resume.py``).
"""

from __future__ import annotations

import logging
import random
import struct
from typing import Any

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)
_NP_KEYS, _PY_STATE = 624, 625  # MT19937 words of numpy's and python's generators


def _float_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def _bits_float(i: int) -> float:
    return struct.unpack("<d", struct.pack("<q", int(i)))[0]


def _cuda_states() -> list[torch.Tensor]:
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []


def local_state_row() -> torch.Tensor:
    """This process's generators as one int64 row: torch CPU bytes, numpy (keys, pos,
    has_gauss, cached_gaussian bits), python (version, state, has gauss_next, its bits), CUDA bytes."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    assert name == "MT19937" and len(keys) == _NP_KEYS
    version, state, gauss_next = random.getstate()
    assert len(state) == _PY_STATE
    parts = [
        torch.get_rng_state().long(),
        torch.as_tensor(np.asarray(keys, dtype=np.int64)),
        torch.tensor([int(pos), int(has_gauss), _float_bits(cached)], dtype=torch.long),
        torch.tensor([int(version), *state, int(gauss_next is not None), _float_bits(gauss_next or 0.0)], dtype=torch.long),
        *[s.long() for s in _cuda_states()],
    ]
    return torch.cat(parts)


def decode_row(row: torch.Tensor, torch_bytes: int, cuda_bytes: list[int]) -> dict[str, Any]:
    """One rank's generators from :func:`local_state_row` (a checkpoint entry)."""
    row = row.cpu().long()
    at = 0

    def take(n: int) -> torch.Tensor:
        nonlocal at
        out = row[at:at + n]
        at += n
        return out

    cpu = take(torch_bytes).to(torch.uint8)
    keys = take(_NP_KEYS).clone()
    pos, has_gauss, cached = take(3).tolist()
    py = take(1 + _PY_STATE + 2).tolist()
    cuda = [take(n).to(torch.uint8) for n in cuda_bytes]
    return {
        "torch": cpu, "cuda": cuda,
        "numpy": {"keys": keys, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": _bits_float(cached)},
        "python": {"version": int(py[0]), "state": torch.tensor(py[1:1 + _PY_STATE], dtype=torch.long),
                   "gauss_next": _bits_float(py[-1]) if py[-2] else None},
    }


def restore(state: dict[str, Any]) -> None:
    """Set this process's generators to a :func:`decode_row` entry."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
        else:
            log.warning("checkpoint has CUDA generator states of %d device(s), this process sees %d: CUDA not restored",
                        len(state["cuda"]), torch.cuda.device_count())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss_next"]))


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch (all devices), numpy and python from ``(seed, epoch, rank)``."""
    s = int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


class RNGStateCallback(L.Callback):
    """Carries every rank's generator states in checkpoints and restores them on resume."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None
        self._epoch: int | None = None  # the data epoch whose first step this process has seen

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        row = local_state_row()
        if trainer is not None and trainer.world_size > 1:  # every rank writes a checkpoint's state; rank 0 saves it
            rows = trainer.strategy.all_gather(row.to(trainer.strategy.root_device)).reshape(trainer.world_size, -1).cpu()
        else:
            rows = row.unsqueeze(0)
        torch_bytes = torch.get_rng_state().numel()
        cuda_bytes = [s.numel() for s in _cuda_states()]
        return {"version": 1, "world_size": int(rows.shape[0]),
                "ranks": [decode_row(r, torch_bytes, cuda_bytes) for r in rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        # the data's epoch and where its iterator started (a ResumableLoader knows; Lightning's
        # batch_idx does not: resumed at a stream epoch's end it goes on counting the old epoch)
        loader = trainer.train_dataloader
        epoch = getattr(loader, "stream_epoch", trainer.current_epoch)
        start = getattr(loader, "start_batch", batch_idx)
        if epoch == self._epoch:
            return
        self._epoch = epoch
        rank = trainer.global_rank
        if self._pending is not None:
            ranks = self._pending.get("ranks", [])
            if rank < len(ranks) and int(self._pending.get("world_size", len(ranks))) == trainer.world_size:
                restore(ranks[rank])
            else:
                log.warning("checkpoint carries generator states of %s rank(s), this run has %d: not restored "
                            "(dropout masks will differ from the interrupted run)", self._pending.get("world_size"),
                            trainer.world_size)
            self._pending = None
        if start == 0:  # a whole epoch starts: the same generators whether or not the run was resumed here
            seed_epoch(self.seed, epoch, rank)
