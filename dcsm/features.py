"""Frozen-CLIP features of multiple-choice samples: live encoding and in-memory caches.

A *raw batch* is ``{"images": (N, 3, H, W), "captions": N lists of K strings, "label": (N,),
...}``. A *feature batch* holds what the head needs, so training never has to re-run CLIP:

==============  ================  =====
key             shape             dtype
==============  ================  =====
patches         (N, P, D)         fp16 in caches, fp32 live
image_pooled    (N, D)
tokens          (N, K, L, D)
token_mask      (N, K, L)         bool
token_ids       (N, K, L)         long (functional rows are derived from these)
text_pooled     (N, K, D)
label           (N,)              long
==============  ================  =====
A raw batch may carry ``opposite_images`` (the hard-negative scenes of the paired loss); they
become ``opposite_patches (N, P, D)`` and ``opposite_image_pooled (N, D)``.
Other keys (``category``, ``index``, ``opposite_label``, ...) pass through unchanged.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .encoders import FrozenCLIP

FEATURE_KEYS = ("patches", "image_pooled", "tokens", "token_mask", "token_ids", "text_pooled")
CACHE_DTYPE = torch.float16
RAW_KEYS = ("images", "captions", "opposite_images")


def collate_mcq(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep ``captions`` as N lists of K strings (default_collate would transpose them)."""
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "captions":
            ks = {len(v) for v in values}
            if len(ks) != 1:
                raise ValueError(f"all samples of a batch need the same number of caption options, got {sorted(ks)}.")
            out[key] = [list(v) for v in values]
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


@torch.no_grad()
def encode_batch(encoder: FrozenCLIP, batch: dict[str, Any]) -> dict[str, Any]:
    """Raw batch -> feature batch (fp32, on the encoder's device). Each image is encoded once
    for all its options; identical captions across the batch are encoded once."""
    captions: list[list[str]] = batch["captions"]
    if len(captions) == 0 or any(len(opts) == 0 for opts in captions):
        raise ValueError("empty caption list: every image needs at least one caption option.")
    n, k = len(captions), len(captions[0])
    img = encoder.encode_images(batch["images"])
    txt = encoder.encode_texts([c for opts in captions for c in opts])
    out = {key: v for key, v in batch.items() if key not in RAW_KEYS}
    out.update(
        patches=img.patches,
        image_pooled=img.pooled,
        tokens=txt.tokens.view(n, k, *txt.tokens.shape[1:]),
        token_mask=txt.mask.view(n, k, -1),
        token_ids=txt.ids.view(n, k, -1),
        text_pooled=txt.pooled.view(n, k, -1),
    )
    if "opposite_images" in batch:
        opp = encoder.encode_images(batch["opposite_images"])
        out.update(opposite_patches=opp.patches, opposite_image_pooled=opp.pooled)
    for key in ("label", "opposite_label"):
        if key in out:
            out[key] = torch.as_tensor(out[key], device=img.patches.device).long()
    return out


def ensure_features(encoder: FrozenCLIP | None, batch: dict[str, Any]) -> dict[str, Any]:
    """Feature batch as-is (cached path) or encoded now (live path)."""
    if "patches" in batch:
        return batch
    if encoder is None:
        raise ValueError("batch holds raw images but no encoder is attached. Fix: build the model with an encoder.")
    return encode_batch(encoder, batch)


def to_cache(features: dict[str, Any]) -> dict[str, Any]:
    """Move a feature batch to CPU, floats to the cache dtype."""
    return {
        k: (v.detach().cpu().to(CACHE_DTYPE) if isinstance(v, torch.Tensor) and v.is_floating_point() else
            v.detach().cpu() if isinstance(v, torch.Tensor) else v)
        for k, v in features.items()
    }


def concat_batches(batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate feature batches along N (tensors cat, lists extended)."""
    merged: dict[str, list] = {}
    for b in batches:
        for k, v in b.items():
            merged.setdefault(k, []).append(v)
    return {k: torch.cat(v) if isinstance(v[0], torch.Tensor) else [x for part in v for x in part] for k, v in merged.items()}


class FeatureDataset(Dataset):
    """Samples of an in-memory feature cache (a concatenated feature batch)."""

    def __init__(self, features: dict[str, Any]) -> None:
        self.features = features
        self.n = len(features["label"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.features.items()}


def cache_dataset(
    encoder: FrozenCLIP, dataset: Dataset, batch_size: int, num_workers: int = 0, desc: str = "caching features"
) -> dict[str, Any]:
    """Encode a raw MCQ dataset once -> concatenated CPU feature batch (fp16 floats)."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_mcq)
    batches = tqdm(loader, desc=desc, unit="batch", disable=None, mininterval=5.0)
    return concat_batches(to_cache(encode_batch(encoder, b)) for b in batches)
