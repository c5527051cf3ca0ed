"""Synthetic scenes as a raw MCQ dataset (image tensor, K captions, label, category), and the
``data:`` settings that size its splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import Dataset

from ...progress import progress_enabled
from .scenes import SyntheticScenes


@dataclass(frozen=True)
class SyntheticDataConfig:
    """The ``data:`` section for ``source: synthetic`` (defaults live in ``configs/default.yaml``)."""

    train_size: int
    val_size: int
    test_size: int
    shifted_size: int
    heldout_size: int
    heldout_templates_size: int
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
    cache_device: str = "cpu"  # where the in-memory caches live (dcsm.features.memory.CACHE_DEVICES)
    cache_device_max_fraction: float = 0.5  # auto: the caches may take this much of the accelerator's free memory
    progress: bool = True  # progress bar while encoding the feature cache (the config's top-level ``progress``)
    cache: str = "embeddings"  # embeddings | maps (dcsm.features.map_cache.CACHE_KINDS)
    map_sections: dict | None = None  # data.cache=maps: the run's functional_rows + maps sections (what the maps need)

    @classmethod
    def from_config(cls, cfg: dict) -> "SyntheticDataConfig":
        """From a full run config: its ``data:`` section, ``with_opposite`` from ``loss.kind``,
        ``progress`` from the top-level key."""
        d = cfg["data"]
        names = set(cls.__dataclass_fields__) - {"with_opposite", "progress", "map_sections"}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        # whether data.cache=maps can work here is checked at start (dcsm.features.map_cache.uses_map_cache);
        # data/ only carries the sections the maps need
        maps = {k: cfg[k] for k in ("functional_rows", "maps")} if kw.get("cache") == "maps" else None
        return cls(**kw, with_opposite=needs_opposite(cfg), progress=progress_enabled(cfg), map_sections=maps)


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
            "heldout": cfg.heldout_size, "heldout_templates": cfg.heldout_templates_size}[split]


def scene_dataset(cfg: SyntheticDataConfig, split: str, transform: Callable) -> SceneMCQ:
    scenes = SyntheticScenes(
        split_size(cfg, split), split=split, seed=cfg.seed, image_size=cfg.image_size,
        num_options=cfg.num_options, categories=cfg.categories,
    )
    return SceneMCQ(scenes, transform, cfg.categories, with_opposite=cfg.with_opposite and split == "train")
