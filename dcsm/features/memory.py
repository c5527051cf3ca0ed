"""In-memory feature cache: encode a raw dataset once, then serve its feature samples."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..model.encoders import FrozenCLIP
from ..model.batch import FeatureBatch, collate_mcq
from ..model.encode import encode_batch
from ..progress import progress_bar


class FeatureDataset(Dataset):
    """Samples of an in-memory feature cache (one concatenated :class:`FeatureBatch`);
    batch them with :func:`~dcsm.model.batch.collate_mcq`."""

    def __init__(self, features: FeatureBatch) -> None:
        self.features = features
        self._flat = features.tensors()
        self.n = len(features)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self._flat.items()}


def cache_dataset(
    encoder: FrozenCLIP, dataset: Dataset, batch_size: int, num_workers: int, desc: str = "caching features",
    progress: bool = True,
) -> FeatureBatch:
    """Encode a raw MCQ dataset once -> concatenated CPU feature batch (cache dtype floats);
    a progress bar per batch unless ``progress`` is False.

    The global CPU RNG is left as it was: iterating a DataLoader draws from it (its worker base
    seed), and a tqdm-wrapped loader draws a different amount, so without the fork a training
    run's dropout and everything after the cache would depend on ``progress``."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_mcq)
    with torch.random.fork_rng(devices=[]):
        batches = progress_bar(loader, progress, desc=desc, total=len(loader), unit="batch")
        return FeatureBatch.cat(encode_batch(encoder, b).to_cache() for b in batches)
