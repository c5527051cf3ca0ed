"""LightningDataModule streaming WebDataset shards: raw images (live encoding) or cached
frozen features (``data_prep/cache_features.py``; training never runs CLIP).

Shards are split across ranks and DataLoader workers without duplicates, shuffled with a
buffer that is deterministic in ``(seed, epoch)``, and corrupt samples are skipped with a
counted warning. Sample counts come from the shards' ``manifest.json`` (or
``data.samples_per_epoch``).

Under DDP every reader (rank x DataLoader worker) of the train stream yields exactly the
same number of samples per epoch, :func:`reader_share` — the mean share rounded up to whole
batches, computed by every rank alike from the manifest (no collective, so nothing can hang):
a reader whose shards hold more stops there (the unread rest is counted as ``dropped``), one
that holds fewer — uneven shards, a truncated shard, corrupt samples — repeats samples until
it has its share (counted as ``repeated``). Every rank hence takes the same steps. The
validation stream is not capped or padded: each rank scores all of its own samples and the
module sums the results over ranks. Where the samples went is counted per split in a
:class:`~dcsm.data.shards.accounting.SampleAccount` (used + lost + dropped == manifest).

The train loader is a :class:`~dcsm.train.resumable.ResumableLoader`: a resumed run continues
the same stream at the same batch (the next epoch's start when the checkpoint closed an
epoch). The train stream has no length: an epoch ends where the stream ends.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from .resumable import ResumableLoader

from ..model.encoders import FrozenCLIP
from ..model.batch import collate_mcq
from ..features.map_cache import MAP_FORMAT, check_map_record, decode_map_sample, map_record, record_digest, uses_map_cache
from ..features.shards import FEATURE_FORMAT, check_encoder, feature_sample_pipeline, probe_encoder
from ..data.shards import ShardPipeline, SkipCounter, expand_urls, raw_sample_pipeline, read_manifest
from ..data.shards.accounting import SampleAccount, summarize
from ..data.synthetic.dataset import needs_opposite
from .choices import SHARD_SOURCES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardDataConfig:
    """The ``data:`` section for ``source: shards`` (raw image shards) or ``features`` (feature
    shards); defaults live in ``configs/default.yaml``."""

    source: str
    train_shards: str | None
    val_shards: str | None
    shuffle_buffer: int
    categories: tuple[str, ...]
    seed: int
    batch_size: int
    num_workers: int
    samples_per_epoch: int | None  # when the shards have no manifest.json (remote urls)
    with_opposite: bool  # training samples carry their opposite image (loss.kind=paired)
    cache: str = "embeddings"  # source=features: embeddings (feature shards) | maps (map shards)
    map_sections: dict | None = None  # cache=maps: the run's functional_rows + maps sections (checked against the shards)

    @classmethod
    def from_config(cls, cfg: dict) -> "ShardDataConfig":
        """From a full run config: its ``data:`` section, ``with_opposite`` from ``loss.kind``."""
        d = cfg["data"]
        names = set(cls.__dataclass_fields__) - {"with_opposite", "cache", "map_sections"}
        kw = {k: tuple(v) if k == "categories" else v for k, v in d.items() if k in names}
        maps = {k: cfg[k] for k in ("functional_rows", "maps")} if uses_map_cache(cfg) else None
        return cls(**kw, with_opposite=needs_opposite(cfg), cache="maps" if maps else "embeddings", map_sections=maps)



def shard_manifests(urls: str) -> tuple[dict[str, int] | None, list[tuple[str, dict]]]:
    """Per-url sample counts from the ``manifest.json`` beside local shards, and the manifests
    read; counts are None when any url has no manifest entry (e.g. ``pipe:`` / http urls)."""
    counts: dict[str, int] = {}
    manifests: dict[str, dict] = {}
    for url in expand_urls(urls):
        folder = os.path.dirname(url)
        if folder not in manifests:
            try:
                manifests[folder] = read_manifest(folder) if os.path.isdir(folder) else {}
            except Exception:  # no manifest: counts unknown
                manifests[folder] = {}
        entry = {e["name"]: e["count"] for e in manifests[folder].get("shards", [])}.get(os.path.basename(url))
        if entry is None:
            return None, [(f, m) for f, m in manifests.items() if m]
        counts[url] = int(entry)
    return counts, [(f, m) for f, m in manifests.items() if m]


def reader_share(total: int, readers: int, batch_size: int) -> int:
    """Samples every train reader (rank x worker) yields per epoch under DDP: the mean share
    ``total / readers`` rounded up to whole batches (readers with fewer repeat samples)."""
    if total < 1:
        raise ValueError("the training shards list no samples (manifest.json counts are 0). Fix: write the shards again.")
    return math.ceil(total / readers / batch_size) * batch_size


def check_cache_kind(manifests: Sequence[tuple[str, dict]], cfg: ShardDataConfig, spec: dict) -> None:
    """Feature folders hold the cache kind ``data.cache`` names, and a map cache the maps of this
    run's config (:func:`~dcsm.features.map_cache.check_map_record`).

    Raises:
        ValueError: one line naming the folder, the kinds (or the differing map field) and the fix.
    """
    for folder, manifest in manifests:
        is_maps = manifest.get("format") == MAP_FORMAT
        if cfg.cache == "maps" and not is_maps:
            raise ValueError(f"data.cache=maps, but '{folder}' holds {manifest.get('format', FEATURE_FORMAT)!r} shards, "
                             "not map shards. Fix: data.cache=embeddings, or write a map cache with "
                             "cache_features.kind=maps.")
        if cfg.cache != "maps" and is_maps:
            raise ValueError(f"'{folder}' holds map shards (cache_features.kind=maps), but data.cache=embeddings. "
                             "Fix: data.cache=maps (loss.kind=mcq), or point data.*_shards at embedding feature shards.")
        if is_maps:
            check_map_record(manifest.get("map_record"), map_record(cfg.map_sections, spec), folder)


class ShardStream(IterableDataset):
    """A shard pipeline that can skip its first ``skip_batches`` DataLoader batches; a
    :class:`Positionable` for :class:`~dcsm.train.resumable.ResumableLoader`.

    It has no length: an epoch ends where the stream ends (under DDP the pipeline yields each
    reader's equal share, :func:`reader_share`). ``expected_samples`` (this rank's samples
    per epoch) only sizes the learning-rate schedule.

    DataLoader workers batch their own samples and the loader takes batches round-robin, so
    of the first ``n`` batches worker ``w`` (of ``W``) produced ``ceil((n - w) / W)``.
    """

    def __init__(self, pipeline: ShardPipeline, batch_size: int, expected_samples: int | None) -> None:
        super().__init__()
        self.pipeline, self.batch_size = pipeline, batch_size
        self.expected_samples = expected_samples
        self.skip_batches = 0

    def set_epoch(self, epoch: int) -> None:
        self.pipeline.set_epoch(epoch)

    def set_skip_batches(self, batches: int) -> None:
        self.skip_batches = int(batches)

    def epoch_batches(self) -> None:
        return None  # the stream's end marks the epoch's end

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = self.pipeline.worker_info()
        mine = max(0, math.ceil((self.skip_batches - worker) / max(workers, 1)))
        # read to its end (no islice stop): the pipeline counts a reader's pass only when it is whole
        return itertools.islice(iter(self.pipeline), mine * self.batch_size, None)


class SizedShardStream(ShardStream):
    """A :class:`ShardStream` with a length (the validation stream: Lightning sizes its progress
    from it; the evaluation loop ends cleanly at a short stream's end)."""

    def __len__(self) -> int:
        if self.expected_samples is None:
            raise TypeError("shard stream length unknown (no manifest.json and no data.samples_per_epoch)")
        return self.expected_samples


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
        self.skips = SkipCounter()  # train stream (this rank; made again per rank in setup)
        self.val_skips = SkipCounter()
        self.accounts: dict[str, SampleAccount] = {"train": SampleAccount(), "val": SampleAccount()}
        self.readers: dict[str, int] = {}  # readers (ranks x workers) per split
        self.manifest_samples: dict[str, int | None] = {}  # per split, all shards of one epoch
        self.loaders: dict[str, DataLoader] = {}
        self.expected_train_samples: int | None = None  # this rank's, per epoch; sizes the LR schedule

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.cfg.categories)

    @property
    def val_names(self) -> tuple[str, ...]:
        return ("val",) if self.cfg.val_shards else ()

    def _pipeline(self, urls: str, shuffle: bool, counts: dict[str, int] | None,
                  reader_samples: int | None = None) -> ShardPipeline:
        """The decoding stream of ``urls``; feature samples are checked against this run's encoder
        (those without an encoder record pass only when every url has a checked manifest entry)."""
        common = dict(
            expected_counts=counts, shuffle_buffer=self.cfg.shuffle_buffer if shuffle else 0, seed=self.cfg.seed,
            shuffle_shards=shuffle, skips=self.skips if shuffle else self.val_skips, categories=self.cfg.categories,
            with_opposite=self.cfg.with_opposite and shuffle,  # train stream only
            reader_samples=reader_samples, account=self.accounts["train" if shuffle else "val"],
        )
        if self.cfg.source == "features" and self.cfg.cache == "maps":
            spec = self.encoder.spec.to_dict()
            decode = functools.partial(decode_map_sample, digest=record_digest(map_record(self.cfg.map_sections, spec)),
                                       categories=self.cfg.categories, encoder=spec, manifest_checked=counts is not None)
            common.pop("with_opposite")
            common.pop("categories")
            return ShardPipeline(urls, decode, **common)
        if self.cfg.source == "features":
            spec = self.encoder.spec.to_dict() if self.encoder is not None else None
            return feature_sample_pipeline(urls, encoder=spec, manifest_checked=counts is not None, **common)
        return raw_sample_pipeline(urls, self.encoder.preprocess, **common)

    def _loader(self, urls: str, shuffle: bool) -> ResumableLoader:
        """The train (``shuffle``) or validation loader of ``urls``."""
        counts, manifests = shard_manifests(urls)
        if self.cfg.source == "features" and self.encoder is not None:
            check_cache_kind(manifests, self.cfg, self.encoder.spec.to_dict())
            check_encoder(manifests, self.encoder)  # every url with counts has its folder's manifest checked here
            probe_encoder(expand_urls(urls)[0], self.encoder.spec.to_dict(), manifest_checked=counts is not None)
        world = self.trainer.world_size if self.trainer is not None else 1
        readers = world * max(self.cfg.num_workers, 1)
        total = sum(counts.values()) if counts is not None else self.cfg.samples_per_epoch
        if total is None:
            raise ValueError(
                f"sample count of '{urls}' unknown: no manifest.json beside the shards. Fix: set "
                "data.samples_per_epoch=N (all shards together), or write the shards with data_prep/ (it writes one)."
            )
        workers = max(self.cfg.num_workers, 1)
        split = "train" if shuffle else "val"
        self.readers[split] = world * workers
        self.manifest_samples[split] = sum(counts.values()) if counts is not None else None
        share = None
        if world > 1 and shuffle:  # every train reader yields the same whole batches: no rank waits forever
            share = reader_share(total, readers, self.cfg.batch_size)
            log.info("DDP: every rank trains on %d samples per epoch (%d reader(s) x %d; %d listed in all)",
                     share * workers, readers, share, total)
        pipeline = self._pipeline(urls, shuffle, counts, share)
        if shuffle:
            length = share * workers if share is not None else total  # this rank's samples
            self.expected_train_samples = length
            stream = ShardStream(pipeline, self.cfg.batch_size, length)
            return ResumableLoader(stream, stream, self.trainer, batch_size=self.cfg.batch_size,
                                   num_workers=self.cfg.num_workers, collate_fn=collate_mcq)
        # an upper bound (every reader may end in a partial batch): the loop ends at the stream's end
        stream = SizedShardStream(pipeline, self.cfg.batch_size, total + readers * self.cfg.batch_size)
        return ValidationLoader(stream, stream, self.trainer, self.accounts["val"], batch_size=self.cfg.batch_size,
                                num_workers=self.cfg.num_workers, collate_fn=collate_mcq)

    def train_batches_per_epoch(self) -> int | None:
        """Batches this rank expects per epoch (the manifest's promise; skips make it fewer)."""
        n = self.expected_train_samples
        return None if n is None else math.ceil(n / self.cfg.batch_size)

    def accounting(self) -> dict[str, dict[str, Any]]:
        """This rank's sample accounting per split (:func:`~dcsm.data.shards.accounting.summarize`):
        train summed over the whole epochs read, val of the last whole validation pass."""
        out: dict[str, dict[str, Any]] = {}
        for split, counts in (("train", self.accounts["train"].snapshot()), ("val", self.val_pass)):
            if split in self.readers:
                out[split] = summarize(counts, self.readers[split])
        return out

    @property
    def val_pass(self) -> dict[str, int]:
        loader = self.loaders.get("val")
        return dict(loader.last_pass) if isinstance(loader, ValidationLoader) else self.accounts["val"].snapshot()

    def setup(self, stage: str | None = None) -> None:
        if not self.loaders:  # counters of this process (a DDP rank counts its own; reduced at fit end)
            self.skips, self.val_skips = SkipCounter(), SkipCounter()
            self.accounts = {"train": SampleAccount(), "val": SampleAccount()}
        if "train" not in self.loaders and stage in (None, "fit"):
            self.loaders["train"] = self._loader(self.cfg.train_shards, shuffle=True)
        if self.cfg.val_shards and "val" not in self.loaders:
            self.loaders["val"] = self._loader(self.cfg.val_shards, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self.loaders["train"]

    def val_dataloader(self) -> list[DataLoader]:
        return [self.loaders["val"]] if "val" in self.loaders else []

    def teardown(self, stage: str | None = None) -> None:
        for name, skips in (("training", self.skips), ("validation", self.val_skips)):
            if skips.count:
                log.warning("%s: %d skip(s) of corrupt, duplicate or missing samples or shards while streaming, e.g. %s",
                            name, skips.count, "; ".join(str(e) for e in skips.examples[:3]))


class ValidationLoader(ResumableLoader):
    """The validation loader: keeps the sample accounting of its last whole pass
    (:attr:`last_pass`), so that a loss is reported once, not once per validation pass (the
    sanity check, a partial pass, is never the one kept once a whole pass ran)."""

    def __init__(self, dataset: Any, position: Any, trainer: Any, account: SampleAccount, **kwargs: Any) -> None:
        super().__init__(dataset, position, trainer, **kwargs)
        self.account = account
        self.last_pass: dict[str, int] = account.snapshot()

    def __iter__(self) -> Iterator[Any]:
        self.account.reset()
        yield from super().__iter__()
        counts = self.account.snapshot()
        if counts["passes"]:
            self.last_pass = counts
