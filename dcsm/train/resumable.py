"""A training DataLoader whose position Lightning checkpoints: exact resume for every data source.

A resumed run must take the same optimizer steps over the same samples, in the same order, as
a run that was never interrupted. Two things make that so:

* the epoch's sample order is a pure function of ``(seed, epoch)`` (a seeded permutation for
  map-style datasets, :class:`EpochSampler`; the shard pipeline's shard order and shuffle
  buffer for streams), so a resumed process rebuilds it without any generator state;
* the checkpoint stores *which* epoch the loader is in and how many of its batches the trainer
  has processed (:meth:`ResumableLoader.state_dict`); the resumed loader skips exactly those.

A checkpoint written at an epoch's last batch (``checkpoint.every_n_train_steps`` landing
there) stores the *next* epoch with nothing done, so the resumed run starts that epoch whole;
Lightning builds the resumed run's first iterator before it moves its own epoch counter on,
hence the epoch travels in the state instead of being read from the trainer then.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Protocol, Sized

import numpy as np
from torch.utils.data import DataLoader, DistributedSampler


class Positionable(Protocol):
    """What a :class:`ResumableLoader` steers: the epoch's order and the batches to skip."""

    def set_epoch(self, epoch: int) -> None: ...

    def set_skip_batches(self, batches: int) -> None: ...

    def epoch_batches(self) -> int | None:
        """Batches in a whole epoch; None when the stream's end says it."""


class EpochSampler(DistributedSampler):
    """This rank's indices of ``0..n-1`` in an epoch: a permutation seeded by ``(seed, epoch)``
    (padded by wrapping to a multiple of ``num_replicas``, then every ``num_replicas``-th from
    ``rank``), minus its first ``skip_batches * batch_size`` (the part of the epoch a resumed run
    has already trained on). A ``DistributedSampler`` so that Lightning keeps it under DDP
    instead of wrapping it in one that would reshuffle and split after the skip."""

    def __init__(self, data: Sized, seed: int, batch_size: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed), drop_last=False)
        self.batch_size = int(batch_size)
        self.skip_batches = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_skip_batches(self, batches: int) -> None:
        self.skip_batches = int(batches)

    def epoch_batches(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def order(self) -> np.ndarray:
        """This rank's full index order of the epoch ``(num_samples,)``."""
        n = len(self.dataset)
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        perm = np.resize(perm, self.total_size)  # wraps around: every rank gets num_samples
        return perm[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.skip_batches * self.batch_size:].tolist())

    def __len__(self) -> int:
        # The whole epoch even while skipping: Lightning sizes the epoch from it and counts the
        # resumed batches itself (it adds the ones done to what the iterator yields).
        return self.num_samples


class ResumableLoader(DataLoader):
    """DataLoader that Lightning checkpoints (its ``_Stateful`` protocol) and resumes exactly.

    Args:
        dataset: what the DataLoader reads.
        position: the sampler or stream that orders and skips (:class:`Positionable`).
        trainer: gives the epoch an iterator starts in and the batches processed so far in it
            (counting yielded batches would include ones a prefetcher fetched that no step
            used); None outside a trainer (epoch 0).
        kwargs: :class:`torch.utils.data.DataLoader` arguments.
    """

    def __init__(self, dataset: Any, position: Positionable, trainer: Any, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.position, self.trainer = position, trainer
        self._resume: dict[str, int] | None = None
        self._epoch = 0
        self._active = False  # an iterator of this epoch is running (not yet exhausted)
        self.start_batch = 0

    @property
    def stream_epoch(self) -> int:
        """The epoch of the data order the current (or last) iterator serves."""
        return self._epoch

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        self._epoch = resume["epoch"] if resume is not None else self.epoch_fn()
        skip = resume["batches_done"] if resume is not None else 0
        self.start_batch = skip  # the epoch's batch this iterator starts at (0: a whole epoch)
        self.position.set_epoch(self._epoch)
        self.position.set_skip_batches(skip)
        self._active = True
        try:
            yield from super().__iter__()
        finally:
            self._active = False
            self.position.set_skip_batches(0)

    def epoch_fn(self) -> int:
        """The epoch an iterator built now serves. The fit loop's processed-epoch count, not
        ``trainer.current_epoch``: a run resumed from an epoch-end checkpoint builds its first
        iterator before Lightning brings ``current_epoch`` up to date."""
        loop = getattr(self.trainer, "fit_loop", None)
        if loop is not None:
            return int(loop.epoch_progress.current.processed)
        return int(getattr(self.trainer, "current_epoch", 0) or 0)

    def progress_fn(self) -> int | None:
        loop = getattr(self.trainer, "fit_loop", None)
        return loop.epoch_loop.batch_progress.current.processed if loop is not None else None

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches_done"}``: where a resumed run picks up (next epoch when this one is done)."""
        done = int(self.progress_fn() or 0) if self._active else None
        total = self.position.epoch_batches()
        if done is None or (total is not None and done >= total):
            return {"epoch": self._epoch + 1, "batches_done": 0}
        return {"epoch": self._epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if "epoch" not in state:  # written before the epoch was stored: resume in the trainer's epoch
            state = {"epoch": self.epoch_fn(), "batches_done": int(state.get("batches_done", 0))}
        self._resume = {"epoch": int(state["epoch"]), "batches_done": int(state["batches_done"])}
