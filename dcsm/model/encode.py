"""Raw batches -> :class:`~dcsm.model.batch.FeatureBatch` with the frozen encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .batch import RAW_KEYS, FeatureBatch

if TYPE_CHECKING:  # annotation only: the config check imports this module and must not import open_clip
    from .encoders import FrozenCLIP


@torch.no_grad()
def encode_batch(encoder: FrozenCLIP, batch: dict[str, Any]) -> FeatureBatch:
    """Raw batch -> feature batch (fp32, on the encoder's device). Each image is encoded once
    for all its options; identical captions across the batch are encoded once. A raw batch's
    ``opposite_images`` become ``opposite_patches``/``opposite_image_pooled``; other keys
    (``label``, ``category``, ``index``, ...) pass through."""
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
    return FeatureBatch.from_dict(out)


def ensure_features(encoder: FrozenCLIP | None, batch: dict[str, Any] | FeatureBatch) -> FeatureBatch:
    """A feature batch as-is (cached path) or a raw batch encoded now (live path)."""
    if isinstance(batch, FeatureBatch):
        return batch
    if "patches" in batch:
        return FeatureBatch.from_dict(batch)
    if encoder is None:
        raise ValueError("batch holds raw images but no encoder is attached. Fix: build the model with an encoder.")
    return encode_batch(encoder, batch)
