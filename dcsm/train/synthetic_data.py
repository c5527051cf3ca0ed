"""LightningDataModule over synthetic scenes: raw images (live encoding) or an in-memory
frozen-feature cache (each image and caption encoded once, then only the head trains).

The train loader is a :class:`~dcsm.train.resumable.ResumableLoader`: each epoch's order is a
permutation seeded by ``(data.seed, epoch)`` and a checkpoint stores the epoch and the batches
done, so a resumed run sees the same samples in the same order as an uninterrupted one."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..model.encoders import FrozenCLIP
from ..model.batch import collate_mcq
from ..features.map_cache import cache_map_dataset, map_head
from ..features.memory import FeatureDataset, cache_dataset, place_caches
from .resumable import EpochSampler, ResumableLoader
from ..data.synthetic.dataset import SyntheticDataConfig, scene_dataset


log = logging.getLogger(__name__)


class SyntheticDataModule(L.LightningDataModule):
    """Train split + validation splits (held-out ``val`` and style-``shifted``)."""

    def __init__(self, cfg: SyntheticDataConfig, encoder: FrozenCLIP) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.datasets: dict[str, Dataset] = {}
        self.cache_place: str | None = None  # where the in-memory caches went (cpu, pinned, cuda:0), after setup

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.cfg.categories)

    @property
    def val_names(self) -> tuple[str, ...]:
        return tuple(self.cfg.val_splits)

    def build(self, split: str) -> Dataset:
        """Raw dataset of a split, or its feature cache when ``cache_features``."""
        raw = scene_dataset(self.cfg, split, self.encoder.preprocess)
        if not self.cfg.cache_features:
            return raw
        if self.trainer is not None:  # encode on the training device, not on the CPU
            self.encoder.to(self.trainer.strategy.root_device)
        if self.cfg.cache == "maps":
            log.info("encoding %d '%s' scenes once with the frozen encoder (maps cached in memory)", len(raw), split)
            head = map_head(self.cfg.map_sections, self.encoder)
            return FeatureDataset(cache_map_dataset(self.encoder, head, raw, self.cfg.encode_batch_size,
                                                    self.cfg.num_workers, desc=f"encoding {split}", progress=self.cfg.progress))
        log.info("encoding %d '%s' scenes once with the frozen encoder (features cached in memory)", len(raw), split)
        return FeatureDataset(
            cache_dataset(self.encoder, raw, self.cfg.encode_batch_size, self.cfg.num_workers, desc=f"encoding {split}",
                          progress=self.cfg.progress)
        )

    def setup(self, stage: str | None = None) -> None:
        wanted = ["train", *self.val_names] if stage in (None, "fit") else list(self.val_names)
        built = [split for split in wanted if split not in self.datasets]
        for split in built:
            self.datasets[split] = self.build(split)
        caches = [self.datasets[s] for s in built if isinstance(self.datasets[s], FeatureDataset)]  # placed once
        if caches:
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            self.cache_place = place_caches(caches, self.cfg.cache_device, device, self.cfg.cache_device_max_fraction)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        cached = self.cfg.cache_features
        common = dict(
            batch_size=self.cfg.batch_size,
            num_workers=0 if cached else self.cfg.num_workers,  # cached tensors: workers only add IPC
            collate_fn=collate_mcq,
            persistent_workers=False,
        )
        if not shuffle:
            return DataLoader(self.datasets[split], shuffle=False, **common)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        sampler = EpochSampler(self.datasets[split], self.cfg.seed, self.cfg.batch_size, world, rank)
        return ResumableLoader(self.datasets[split], sampler, self.trainer, sampler=sampler, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s, shuffle=False) for s in self.val_names]
