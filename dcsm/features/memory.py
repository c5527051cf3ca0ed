"""In-memory feature cache: encode a raw dataset once, then serve whole batches of it.

:class:`FeatureDataset` batches by one gather per key (``__getitems__``: the DataLoader hands
it a batch's indices, no per-sample ``__getitem__`` + collate), from pinned host memory when
the run trains on a CUDA device (the copies to the device are then ``non_blocking``), or from
the accelerator itself when the cache lives there (``data.cache_device``,
:func:`place_caches`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..model.batch import FeatureBatch, collate_mcq
from ..model.encode import encode_batch
from ..progress import progress_bar

if TYPE_CHECKING:  # annotation only: the config check imports CACHE_DEVICES and must not import open_clip
    from ..model.encoders import FrozenCLIP

log = logging.getLogger(__name__)
#: ``data.cache_device`` values: auto (the accelerator when the caches fit, else pinned host memory),
#: cpu (host memory, pinned when training on CUDA), accelerator (the training device; no check).
CACHE_DEVICES = ("auto", "cpu", "accelerator")


class FeatureDataset(Dataset):
    """Samples of an in-memory cache (one concatenated :class:`FeatureBatch`, or any batch
    type with ``tensors()``/``from_dict``, e.g. :class:`~dcsm.model.batch.MapBatch`).

    ``dataset[i]`` is one sample (a flat dict); ``dataset.__getitems__(indices)`` is the whole
    batch, one ``index_select`` per key (what a :class:`~torch.utils.data.DataLoader` with
    ``batch_size`` calls; :func:`~dcsm.model.batch.collate_mcq` passes it through)."""

    def __init__(self, features: Any) -> None:
        self.features = features
        self._flat = features.tensors()
        self.n = len(features)
        self.pinned = False

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self._flat.items()}

    @property
    def device(self) -> torch.device:
        return next(v.device for v in self._flat.values() if isinstance(v, torch.Tensor))

    def nbytes(self) -> int:
        """Bytes of every tensor of the cache."""
        return sum(v.numel() * v.element_size() for v in self._flat.values() if isinstance(v, torch.Tensor))

    def __getitems__(self, indices: Sequence[int]) -> Any:
        """The batch of ``indices``: one gather per key (into pinned memory when the cache is pinned)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        out: dict[str, Any] = {}
        for k, v in self._flat.items():
            if not isinstance(v, torch.Tensor):
                out[k] = [v[i] for i in indices]
            elif self.pinned:
                buf = torch.empty((len(indices), *v.shape[1:]), dtype=v.dtype, pin_memory=True)
                out[k] = torch.index_select(v, 0, idx, out=buf)
            else:
                out[k] = v.index_select(0, idx)
        return type(self.features).from_dict(out)

    def _replace(self, fn: Any) -> None:
        self.features = self.features.map(fn)
        self._flat = self.features.tensors()

    def pin(self) -> None:
        """Keep the cache (and every batch gathered from it) in page-locked host memory."""
        if not self.pinned and self.device.type == "cpu":
            self._replace(lambda t: t.pin_memory())
            self.pinned = True

    def to_device(self, device: torch.device) -> None:
        """Keep the cache on ``device`` (batches are then gathered there)."""
        self._replace(lambda t: t.to(device))
        self.pinned = False


def place_caches(datasets: Sequence[FeatureDataset], cache_device: str, device: torch.device,
                 max_fraction: float) -> str:
    """Put in-memory caches where ``data.cache_device`` says; returns where they went (``cpu``,
    ``pinned`` or the device's name) and logs it.

    ``auto``: on ``device`` when it is an accelerator and all caches together take at most
    ``max_fraction`` of its free memory, else host memory (pinned for CUDA); ``accelerator``: on
    ``device`` unconditionally; ``cpu``: host memory (pinned for CUDA)."""
    if cache_device not in CACHE_DEVICES:
        raise ValueError(f"unknown data.cache_device '{cache_device}'. Fix: use one of {CACHE_DEVICES}.")
    total = sum(d.nbytes() for d in datasets)
    if device.type == "cpu":
        return "cpu"
    on_device = cache_device == "accelerator"
    if cache_device == "auto":
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
        on_device = free > 0 and total <= max_fraction * free
        log.info("data.cache_device=auto: the feature cache (%.2f GB) %s %.0f%% of %s's free memory (%.2f GB): "
                 "kept %s", total / 1e9, "fits in" if on_device else "exceeds", 100 * max_fraction, device,
                 free / 1e9, "there" if on_device else "in pinned host memory")
    for d in datasets:
        if on_device:
            d.to_device(device)
        elif device.type == "cuda":
            d.pin()
    return str(device) if on_device else ("pinned" if device.type == "cuda" else "cpu")


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
