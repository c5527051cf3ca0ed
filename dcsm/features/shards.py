"""On-disk feature cache: feature shards, their manifest and the encoder-compatibility check.

Same names as the raw shards they come from, in another folder. One sample =

* ``KEY.feat.pth`` — one ``torch.save``'d dict (load with ``weights_only=True``):
  ``patches`` (P, D) fp16, ``image_pooled`` (D,) fp16, ``tokens`` (T, D) fp16 holding only
  the T = ``token_mask.sum()`` real token rows in row-major (option, position) order,
  ``token_mask`` (K, L) bool, ``token_ids`` (K, L) int32, ``text_pooled`` (K, D) fp16,
  ``label`` () int64, ``format_version`` int; optionally ``opposite_patches`` (P, D) and
  ``opposite_image_pooled`` (D,) fp16 when the raw sample had an opposite image.
* ``KEY.json`` — the raw sample's JSON record, unchanged.

:func:`feature_sample_pipeline` unpacks ``tokens`` back to ``(K, L, D)`` (zeros on padding)
and ``token_ids`` to int64, so samples batch into a :class:`FeatureBatch`. The folder's
``manifest.json`` has ``"format": "dcsm.feature_shards"`` and ``"encoder"`` (the
``EncoderSpec`` dict), ``num_patches``, ``embed_dim``, ``max_tokens``, ``dtype`` and per
shard ``count``, ``skipped``, ``source`` and ``source_bytes``.

Feature shards are written by :func:`dcsm.features.writer.cache_shards`.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.shards.format import FORMAT_VERSION, JSON_EXT, SampleError, _common_fields, _json_default, _parse_record
from ..data.shards.read import ShardPipeline
from ..data.synthetic import CATEGORIES
from ..encoders import FrozenCLIP
from .batch import CACHE_DTYPE, FEATURE_KEYS

FEATURE_FORMAT = "dcsm.feature_shards"
FEATURE_EXT = "feat.pth"
FLOAT_KEYS = ("patches", "image_pooled", "text_pooled")
OPPOSITE_FLOAT_KEYS = ("opposite_patches", "opposite_image_pooled")
#: Encoder fields a feature cache must share with the run that reads it (plus ``seed`` for random init).
ENCODER_FIELDS = ("model", "pretrained", "max_tokens", "keep_cls", "pad_rows")


def feature_manifest(encoder: FrozenCLIP) -> dict[str, Any]:
    """The encoder part of a feature folder's ``manifest.json``."""
    return {
        "format": FEATURE_FORMAT,
        "version": FORMAT_VERSION,
        "encoder": encoder.spec.to_dict(),
        "num_patches": encoder.num_patches,
        "embed_dim": encoder.embed_dim,
        "max_tokens": encoder.spec.max_tokens,
        "dtype": str(CACHE_DTYPE).removeprefix("torch."),
    }


def encoder_mismatch(cached: dict[str, Any] | None, encoder: FrozenCLIP) -> list[str]:
    """Fields in which a cache's encoder spec (``manifest["encoder"]``) differs from ``encoder``:
    the ones that change features (``seed`` only for a random init); ``[]`` when compatible."""
    want = encoder.spec.to_dict()
    fields = (*ENCODER_FIELDS, "seed") if want.get("pretrained") is None else ENCODER_FIELDS
    have = {"pad_rows": "zero", **(cached or {})}  # caches from before pad_rows existed
    return [f"{k}: {have.get(k)!r} in the features, {want.get(k)!r} configured" for k in fields if have.get(k) != want.get(k)]


def check_encoder(manifests: Sequence[tuple[str, dict]], encoder: FrozenCLIP) -> None:
    """Cached features must come from the encoder this run is configured with.

    Raises:
        ValueError: naming the folder, the differing fields and the fix.
    """
    for folder, manifest in manifests:
        diff = encoder_mismatch(manifest.get("encoder", {}), encoder)
        if diff:
            raise ValueError(
                f"feature shards in '{folder}' were cached with another encoder ({'; '.join(diff)}). "
                "Fix: set encoder.* to match, or re-run data_prep/cache_features.py with this encoder."
            )


def feature_members(key: str, features: dict[str, torch.Tensor], record: dict) -> list[tuple[str, bytes]]:
    """Members ``KEY.json`` + ``KEY.feat.pth`` of one sample's features (``(P, D)``,
    ``(K, L, D)``, ... tensors; floats are stored fp16, tokens packed to real rows)."""
    mask = features["token_mask"].detach().cpu().bool()
    tokens = features["tokens"].detach().cpu()
    d: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "token_mask": mask.clone(),
        "token_ids": features["token_ids"].detach().cpu().to(torch.int32).clone(),
        "tokens": tokens[mask].to(CACHE_DTYPE).clone(),
        "label": torch.as_tensor(int(features["label"]), dtype=torch.long),
    }
    for k in FLOAT_KEYS + OPPOSITE_FLOAT_KEYS:
        if k in features:
            d[k] = features[k].detach().cpu().to(CACHE_DTYPE).clone()  # clone: never save a batch's storage
    buf = io.BytesIO()
    torch.save(d, buf)
    return [
        (f"{key}.{JSON_EXT}", json.dumps(record, sort_keys=True, default=_json_default).encode("utf-8")),
        (f"{key}.{FEATURE_EXT}", buf.getvalue()),
    ]


def decode_feature_sample(
    sample: dict,
    *,
    with_opposite: bool = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
    keep_captions: bool = False,
) -> dict:
    """A feature-shard sample -> ``{patches, image_pooled, tokens, token_mask, token_ids,
    text_pooled, label, category, key}`` as a :class:`FeatureBatch` sample (one sample, fp16 floats,
    ``tokens`` unpacked to ``(K, L, D)``). ``with_opposite=True`` adds ``opposite_patches``,
    ``opposite_image_pooled`` and ``opposite_label`` and requires them.

    Raises:
        SampleError: a missing or corrupt member.
    """
    key = sample["__key__"]
    record = _parse_record(sample)
    if FEATURE_EXT not in sample:
        raise SampleError(f"missing member {key}.{FEATURE_EXT}")
    try:
        d = torch.load(io.BytesIO(sample[FEATURE_EXT]), map_location="cpu", weights_only=True)
    except Exception as err:
        raise SampleError(f"unreadable {key}.{FEATURE_EXT}: {type(err).__name__}: {err}") from None
    need = FEATURE_KEYS
    if not isinstance(d, dict) or any(k not in d for k in need):
        missing = [k for k in need if not isinstance(d, dict) or k not in d]
        raise SampleError(f"{key}.{FEATURE_EXT} lacks {missing}")
    mask = d["token_mask"].bool()
    packed = d["tokens"]
    if mask.dim() != 2 or packed.dim() != 2 or packed.shape[0] != int(mask.sum()):
        raise SampleError(f"{key}.{FEATURE_EXT}: packed tokens {tuple(packed.shape)} do not match mask {tuple(mask.shape)}")
    tokens = packed.new_zeros(*mask.shape, packed.shape[-1])
    tokens[mask] = packed
    out: dict[str, Any] = {
        "patches": d["patches"],
        "image_pooled": d["image_pooled"],
        "tokens": tokens,
        "token_mask": mask,
        "token_ids": d["token_ids"].long(),
        "text_pooled": d["text_pooled"],
    }
    if keep_captions:
        out["captions"] = record["captions"]
    out.update(_common_fields(sample, record, categories, keep_meta))
    if with_opposite:
        opp_label = record["meta"].get("opposite_label")
        if any(k not in d for k in OPPOSITE_FLOAT_KEYS) or not isinstance(opp_label, int):
            raise SampleError(f"sample {key} has no opposite-image features/opposite_label (with_opposite=True)")
        out.update({k: d[k] for k in OPPOSITE_FLOAT_KEYS}, opposite_label=opp_label)
    return out


def feature_sample_pipeline(
    urls: str | Path | Sequence[str | Path],
    *,
    with_opposite: bool = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
    keep_captions: bool = False,
    **stream: Any,
) -> ShardPipeline:
    """Feature samples (one per item; keys as :data:`FEATURE_KEYS` + ``label``,
    ``category``, ``key``) from feature shards; batch them with :func:`collate_mcq`.
    Arguments as :func:`raw_sample_pipeline`; ``keep_captions`` also yields the caption texts."""
    decode = functools.partial(
        decode_feature_sample, with_opposite=with_opposite, categories=categories, keep_meta=keep_meta,
        keep_captions=keep_captions,
    )
    return ShardPipeline(urls, decode, **stream)
