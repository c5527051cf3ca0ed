"""The typed batch every scorer consumes: :class:`FeatureBatch`, and how samples become batches.

A *raw batch* is ``{"images": (N, 3, H, W), "captions": N lists of K strings, "label": (N,),
...}`` (what datasets yield before the frozen encoder). A :class:`FeatureBatch` holds what the
head needs, so training never has to re-run CLIP. In caches floats are :data:`CACHE_DTYPE`
(fp16); live-encoded batches are fp32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

#: The encoder outputs of one sample, in the order they are stored and documented.
FEATURE_KEYS = ("patches", "image_pooled", "tokens", "token_mask", "token_ids", "text_pooled")
#: Optional per-sample tensors of the paired loss (each sample's opposite image and its caption).
OPPOSITE_KEYS = ("opposite_patches", "opposite_image_pooled", "opposite_label")
#: What a map-cache sample holds (:class:`MapBatch`).
MAP_KEYS = ("maps", "token_mask", "pooled_cos")
#: Float dtype of every feature cache (in memory and on disk).
CACHE_DTYPE = torch.float16
#: Keys of a raw batch that the encoder consumes (they never reach a FeatureBatch).
RAW_KEYS = ("images", "captions", "opposite_images")


class _Batch:
    """What every batch of N samples does, whatever its fields: flatten, rebuild, move, slice, concatenate.
    A subclass is a dataclass with an ``extras`` dict and names the keys it cannot do without."""

    KIND = "batch"
    REQUIRED: tuple[str, ...] = ()
    MISSING_FIX = ""

    def tensors(self) -> dict[str, Any]:
        """Every set field and extra as one flat dict (None fields left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extras"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extras)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Fields from their keys; every other key goes to :attr:`extras`."""
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise ValueError(f"{cls.KIND} lacks {missing}.{cls.MISSING_FIX}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extras"}
        return cls(**{k: v for k, v in d.items() if k in names}, extras={k: v for k, v in d.items() if k not in names})

    def map(self, fn: Any) -> Any:
        """Apply ``fn`` to every tensor (fields and extras); other values are kept."""
        conv = lambda v: fn(v) if isinstance(v, torch.Tensor) else v  # noqa: E731
        kwargs = {f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extras"}
        return type(self)(**kwargs, extras={k: conv(v) for k, v in self.extras.items()})

    def to(self, device: torch.device | str, **kwargs: Any) -> Any:
        """Every tensor on ``device`` (Lightning calls this to move batches); copies to a CUDA
        device are ``non_blocking`` unless told otherwise (asynchronous from pinned memory)."""
        kwargs.setdefault("non_blocking", torch.device(device).type == "cuda")
        return self.map(lambda t: t.to(device, **kwargs))

    def sample(self, i: int) -> dict[str, Any]:
        """Sample ``i`` as a flat dict (what a dataset yields; :func:`collate_mcq` batches it)."""
        return {k: v[i] for k, v in self.tensors().items()}

    @classmethod
    def cat(cls, batches: Iterable[Any]) -> Any:
        """Concatenate along N (tensors cat, lists extended)."""
        return cls.from_dict(concat_dicts(b.tensors() for b in batches))


@dataclass
class FeatureBatch(_Batch):
    """Frozen-encoder features of N multiple-choice samples with K options each.

    Attributes:
        patches: ``(N, P, D)`` float, unit-norm patch embeddings (P includes CLS with ``keep_cls``).
        image_pooled: ``(N, D)`` float, unit-norm pooled image embeddings.
        tokens: ``(N, K, L, D)`` float, unit-norm token embeddings of every option (zero on padding).
        token_mask: ``(N, K, L)`` bool, real (scored) token rows.
        token_ids: ``(N, K, L)`` long, BPE ids (functional rows are found from these).
        text_pooled: ``(N, K, D)`` float, unit-norm pooled caption embeddings.
        label: ``(N,)`` long, index of the true option (None when unknown).
        opposite_patches: ``(N, P, D)`` float, the opposite (hard-negative) image of each sample.
        opposite_image_pooled: ``(N, D)`` float.
        opposite_label: ``(N,)`` long, the option true for the opposite image.
        extras: per-sample values passed through unchanged (``category`` ``(N,)``, ``index``,
            ``item_index``, ``key`` list, ...).
    """

    patches: torch.Tensor
    image_pooled: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor
    token_ids: torch.Tensor
    text_pooled: torch.Tensor
    label: torch.Tensor | None = None
    opposite_patches: torch.Tensor | None = None
    opposite_image_pooled: torch.Tensor | None = None
    opposite_label: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    KIND = "feature batch"
    REQUIRED = FEATURE_KEYS
    MISSING_FIX = " Fix: encode the batch first (DCSM.encode)."

    def __len__(self) -> int:
        return int(self.patches.shape[0])

    @property
    def has_opposite(self) -> bool:
        return self.opposite_patches is not None and self.opposite_label is not None

    def to_cache(self) -> "FeatureBatch":
        """Detached CPU copy with floats in :data:`CACHE_DTYPE`."""
        return self.map(lambda t: t.detach().cpu().to(CACHE_DTYPE) if t.is_floating_point() else t.detach().cpu())


@dataclass
class MapBatch(_Batch):
    """Cached DCSM maps (a map cache, :mod:`dcsm.features.map_cache`) of N multiple-choice samples with K options each.

    Attributes:
        maps: ``(N, K, L, P)`` float, the head's standardised maps (zero on padded rows).
        token_mask: ``(N, K, L)`` bool, real token rows.
        pooled_cos: ``(N, K)`` float, cosine of the pooled image and caption embeddings.
        label: ``(N,)`` long, index of the true option.
        extras: per-sample values passed through (``category``, ``index``, ``key``, ...).
    """

    maps: torch.Tensor
    token_mask: torch.Tensor
    pooled_cos: torch.Tensor
    label: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    KIND = "map batch"
    REQUIRED = MAP_KEYS

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    @property
    def has_opposite(self) -> bool:
        return False


def concat_dicts(batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate dict batches along N (tensors cat, lists extended)."""
    merged: dict[str, list] = {}
    for b in batches:
        for k, v in b.items():
            merged.setdefault(k, []).append(v)
    return {k: torch.cat(v) if isinstance(v[0], torch.Tensor) else [x for part in v for x in part] for k, v in merged.items()}


def _num_options(sample: dict[str, Any]) -> int | None:
    if "captions" in sample:
        return len(sample["captions"])
    tokens = sample.get("tokens", sample.get("token_mask"))
    return int(tokens.shape[0]) if isinstance(tokens, torch.Tensor) else None


def check_option_counts(samples: Sequence[dict[str, Any]]) -> None:
    """All samples of a batch have the same number K of caption options (raw: ``captions``;
    features: ``tokens`` ``(K, L, D)``).

    Raises:
        ValueError: naming the first sample whose K differs from the first sample's, by its
            ``key`` and ``shard`` when the samples carry them (shard samples do).
    """
    counts = [_num_options(s) for s in samples]
    odd = next((i for i, k in enumerate(counts) if k != counts[0]), None)
    if odd is None:
        return

    def name(s: dict[str, Any]) -> str:
        key, shard = s.get("key"), s.get("shard")
        return (f"sample '{key}'" if key is not None else "a sample") + (f" of shard '{shard}'" if shard else "")

    raise ValueError(
        f"a batch mixes samples with {sorted(set(counts))} caption options: {name(samples[odd])} has {counts[odd]}, "
        f"{name(samples[0])} has {counts[0]}. Fix: give every sample of a training/validation stream the same number "
        "of options (rewrite the odd shards with the same num_options, or keep them in a stream of their own)."
    )


def collate_mcq(samples: Sequence[dict[str, Any]]) -> dict[str, Any] | FeatureBatch:
    """Batch samples: tensors stacked, numbers to tensors, ``captions`` kept as N lists of K
    strings (default_collate would transpose them). Feature samples (they hold ``patches``)
    become a :class:`FeatureBatch`; raw samples stay a dict for the encoder. A batch already
    gathered whole (an in-memory cache's ``__getitems__``) is returned as it is."""
    if not isinstance(samples, (list, tuple)):
        return samples
    check_option_counts(samples)
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "captions":
            out[key] = [list(v) for v in values]
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    if "maps" in out:  # map-cache samples (dcsm.features.map_cache)
        return MapBatch.from_dict(out)
    return FeatureBatch.from_dict(out) if "patches" in out else out
