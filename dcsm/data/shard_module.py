"""LightningDataModule streaming WebDataset shards: raw images (live encoding) or cached
frozen features (``data_prep/cache_features.py``; training never runs CLIP).

Shards are split across ranks and DataLoader workers without duplicates (use a number of
shards that is a multiple of ``world_size * num_workers`` so ranks stay even under DDP),
shuffled with a buffer that is deterministic in ``(seed, epoch)``, and corrupt samples are
skipped with a counted warning. The train loader is *stateful* in Lightning's sense
(``state_dict``/``load_state_dict``): a run resumed from a mid-epoch checkpoint skips exactly
the batches it had consumed, so the step count and the data stream continue where they were.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from ..encoders import FrozenCLIP
from ..features import collate_mcq
from .shards import ShardPipeline, SkipCounter, expand_urls, feature_sample_pipeline, raw_sample_pipeline, read_manifest
from .synthetic import CATEGORIES

log = logging.getLogger(__name__)
SHARD_SOURCES = ("shards", "features")


@dataclass(frozen=True)
class ShardDataConfig:
    """``data:`` section for ``source: shards`` (raw image shards) or ``features`` (feature shards)."""

    source: str = "features"
    train_shards: str | None = None
    val_shards: str | None = None
    shuffle_buffer: int = 1000
    categories: tuple[str, ...] = CATEGORIES
    seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    with_opposite: bool = False  # training samples carry their opposite image (loss.kind=paired)


def count_samples(urls: str) -> int | None:
    """Total samples from the shards' ``manifest.json`` (None when there is none)."""
    try:
        return int(read_manifest(urls)["num_samples"])
    except Exception:  # a url pattern without a local manifest: length unknown
        return None


class ShardStream(IterableDataset):
    """A shard pipeline that can skip its first ``skip_batches`` DataLoader batches.

    DataLoader workers batch their own samples and the loader takes batches round-robin, so
    of the first ``n`` batches worker ``w`` (of ``W``) produced ``ceil((n - w) / W)``.
    """

    def __init__(self, pipeline: ShardPipeline, batch_size: int, length: int | None) -> None:
        super().__init__()
        self.pipeline, self.batch_size, self.length = pipeline, batch_size, length
        self.skip_batches = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = self.pipeline.worker_info()
        mine = max(0, math.ceil((self.skip_batches - worker) / max(workers, 1)))
        return itertools.islice(iter(self.pipeline), mine * self.batch_size, None)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("shard stream length unknown (no manifest.json next to the shards)")
        return self.length


class ResumableLoader(DataLoader):
    """DataLoader over a :class:`ShardStream` that Lightning checkpoints (its ``_Stateful``).

    ``epoch_fn`` gives the epoch the stream's shuffle is seeded with when an epoch starts.
    """

    def __init__(self, stream: ShardStream, epoch_fn: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self.epoch_fn = epoch_fn
        self._yielded = 0
        self._resume = 0

    def __iter__(self) -> Iterator[Any]:
        stream: ShardStream = self.dataset  # type: ignore[assignment]
        stream.pipeline.set_epoch(self.epoch_fn())
        stream.skip_batches, self._yielded, self._resume = self._resume, self._resume, 0
        for batch in super().__iter__():
            self._yielded += 1
            yield batch
        self._yielded = 0  # epoch complete: an end-of-epoch checkpoint resumes at the next epoch's start
        stream.skip_batches = 0

    def state_dict(self) -> dict[str, int]:
        return {"batches_yielded": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = int(state.get("batches_yielded", 0))


class ShardDataModule(L.LightningDataModule):
    """Train + optional ``val`` stream over WebDataset shards."""

    def __init__(self, cfg: ShardDataConfig, encoder: FrozenCLIP | None = None) -> None:
        super().__init__()
        if cfg.source not in SHARD_SOURCES:
            raise ValueError(f"ShardDataModule takes data.source in {SHARD_SOURCES}, got '{cfg.source}'.")
        if not cfg.train_shards:
            raise ValueError("data.train_shards is not set. Fix: data.train_shards='DIR/shard-{000000..000009}.tar' or a shard folder.")
        if cfg.source == "shards" and encoder is None:
            raise ValueError("raw image shards need the encoder's preprocess transform; pass the encoder.")
        self.cfg = cfg
        self.encoder = encoder
        self.skips = SkipCounter()
        self.loaders: dict[str, ResumableLoader] = {}

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.cfg.categories)

    @property
    def val_names(self) -> tuple[str, ...]:
        return ("val",) if self.cfg.val_shards else ()

    def _pipeline(self, urls: str, shuffle: bool) -> ShardPipeline:
        common = dict(
            shuffle_buffer=self.cfg.shuffle_buffer if shuffle else 0, seed=self.cfg.seed,
            shuffle_shards=shuffle, skips=self.skips, categories=self.cfg.categories,
            with_opposite=self.cfg.with_opposite and shuffle,  # train stream only
        )
        if self.cfg.source == "features":
            return feature_sample_pipeline(urls, **common)
        return raw_sample_pipeline(urls, self.encoder.preprocess, **common)

    def _loader(self, urls: str, shuffle: bool) -> ResumableLoader:
        pipeline = self._pipeline(urls, shuffle)
        total = count_samples(urls)
        world = self.trainer.world_size if self.trainer is not None else 1
        length = None if total is None else math.ceil(total / world)
        expand_urls(urls)  # fail early on a bad pattern
        return ResumableLoader(
            ShardStream(pipeline, self.cfg.batch_size, length),
            epoch_fn=lambda: self.trainer.current_epoch if self.trainer is not None else 0,
            batch_size=self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            collate_fn=collate_mcq,
        )

    def setup(self, stage: str | None = None) -> None:
        if "train" not in self.loaders and stage in (None, "fit"):
            self.loaders["train"] = self._loader(self.cfg.train_shards, shuffle=True)
        if self.cfg.val_shards and "val" not in self.loaders:
            self.loaders["val"] = self._loader(self.cfg.val_shards, shuffle=False)

    def train_dataloader(self) -> ResumableLoader:
        return self.loaders["train"]

    def val_dataloader(self) -> list[ResumableLoader]:
        return [self.loaders["val"]] if "val" in self.loaders else []

    def teardown(self, stage: str | None = None) -> None:
        if self.skips.count:
            log.warning("skipped %d corrupt sample(s) while streaming shards, e.g. %s", self.skips.count,
                        "; ".join(str(e) for e in self.skips.examples[:3]))
