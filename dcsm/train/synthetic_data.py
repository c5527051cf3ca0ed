"""LightningDataModule over synthetic scenes: raw images (live encoding) or an in-memory
frozen-feature cache (each image and caption encoded once, then only the head trains).

The train loader is a :class:`~dcsm.train.resumable.ResumableLoader`: each epoch's order is a
permutation seeded by ``(data.seed, epoch)`` and a checkpoint stores the epoch and the batches
done, so a resumed run sees the same samples in the same order as an uninterrupted one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import lightning as L
from torch.utils.data import DataLoader, Dataset

from ..model.encoders import FrozenCLIP
from ..model.batch import collate_mcq
from ..features.memory import FeatureDataset, cache_dataset
from ..progress import progress_enabled
from .resumable import EpochSampler, ResumableLoader
from ..data.synthetic.scenes import SyntheticScenes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticDataConfig:
    """The ``data:`` section for ``source: synthetic`` (defaults live in ``configs/default.yaml``)."""

    train_size: int
    val_size: int
    test_size: int
    shifted_size: int
    heldout_size: int
    image_size: int
    num_options: int
    categories: tuple[str, ...]
    seed: int
    cache_features: bool
    batch_size: int
    encode_batch_size: int
    num_workers: int
    val_splits: tuple[str, ...]
    with_opposite: bool  # training samples carry their opposite image (loss.kind=paired)
    progress: bool = True  # progress bar while encoding the feature cache (the config's top-level ``progress``)

    @classmethod
    def from_config(cls, cfg: dict) -> "SyntheticDataConfig":
        """From a full run config: its ``data:`` section, ``with_opposite`` from ``loss.kind``,
        ``progress`` from the top-level key."""
        d = cfg["data"]
        names = set(cls.__dataclass_fields__) - {"with_opposite", "progress"}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw, with_opposite=needs_opposite(cfg), progress=progress_enabled(cfg))


def needs_opposite(cfg: dict) -> bool:
    """The paired loss trains on each sample's opposite image too."""
    return cfg["loss"]["kind"] == "paired"


class SceneMCQ(Dataset):
    """Synthetic scenes as raw MCQ samples: image tensor, K captions, label, category index."""

    def __init__(
        self, scenes: SyntheticScenes, transform: Callable, categories: tuple[str, ...], with_opposite: bool = False
    ) -> None:
        self.scenes, self.transform, self.categories = scenes, transform, tuple(categories)
        self.with_opposite = with_opposite

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.scenes[i]
        sample = {
            "images": self.transform(s.image),
            "captions": list(s.captions),
            "label": s.label,
            "category": self.categories.index(s.category),
            "index": i,
        }
        if self.with_opposite:
            sample.update(opposite_images=self.transform(s.opposite_image), opposite_label=s.opposite_label)
        return sample


def split_size(cfg: SyntheticDataConfig, split: str) -> int:
    return {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size, "shifted": cfg.shifted_size,
            "heldout": cfg.heldout_size}[split]


def scene_dataset(cfg: SyntheticDataConfig, split: str, transform: Callable) -> SceneMCQ:
    scenes = SyntheticScenes(
        split_size(cfg, split), split=split, seed=cfg.seed, image_size=cfg.image_size,
        num_options=cfg.num_options, categories=cfg.categories,
    )
    return SceneMCQ(scenes, transform, cfg.categories, with_opposite=cfg.with_opposite and split == "train")


class SyntheticDataModule(L.LightningDataModule):
    """Train split + validation splits (held-out ``val`` and style-``shifted``)."""

    def __init__(self, cfg: SyntheticDataConfig, encoder: FrozenCLIP) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.datasets: dict[str, Dataset] = {}

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
        log.info("encoding %d '%s' scenes once with the frozen encoder (features cached in memory)", len(raw), split)
        return FeatureDataset(
            cache_dataset(self.encoder, raw, self.cfg.encode_batch_size, self.cfg.num_workers, desc=f"encoding {split}",
                          progress=self.cfg.progress)
        )

    def setup(self, stage: str | None = None) -> None:
        wanted = ["train", *self.val_names] if stage in (None, "fit") else list(self.val_names)
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.build(split)

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
