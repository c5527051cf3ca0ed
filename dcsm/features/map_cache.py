"""The map cache: a sample's DCSM maps and pooled cosines in place of its embeddings.

Functional rows are fixed buffers and the maps are a deterministic function of the frozen
embeddings and the ``encoder`` / ``functional_rows`` / ``maps`` config, so for the
multiple-choice loss the head's input can be cached itself: per sample its real token rows x P
patches (fp16, ~41 x 196 x 2 B = ~16 KB for ViT-B-16 with 4 options) plus one pooled cosine per
option (the CLIP baseline and ``scorer.pooled=residual``), instead of ~250 KB of embeddings; and
no einsum per step.

* :class:`~dcsm.model.batch.MapBatch` — the batch type (``maps (N, K, L, P)``, ``token_mask (N, K, L)``,
  ``pooled_cos (N, K)``, ``label``); :class:`~dcsm.model.DCSM` scores it like a
  :class:`~dcsm.model.batch.FeatureBatch`.
* :func:`map_record` — what defines the maps (encoder fields, lexicon, rows seed and init,
  standardisation, eps, functional-row injection; max_tokens and pad rows are encoder fields).
  A cache stores it; :func:`check_map_record` refuses a run whose config differs, naming the field.
* :func:`cache_map_dataset` — the in-memory map cache of a raw dataset (``data.cache=maps``).
* Map shards (``cache_features.kind=maps``): ``KEY.maps.safetensors`` (no pickle:
  :mod:`dcsm.features.tensor_codec`) = ``maps`` ``(T, P)`` fp16 (the T real token rows,
  row-major (option, position)), ``token_mask`` ``(K, L)`` bool, ``pooled_cos`` ``(K,)`` fp32,
  ``label``; its metadata holds ``format_version``, ``record`` (the sha256 of the map record,
  checked on every read) and ``checksum`` (over the tensors, as feature shards). Map shards of
  the first release (``KEY.maps.pth``, a ``torch.save`` zip read weights-only) still read. The
  manifest's ``"format"`` is :data:`MAP_FORMAT` and ``"map_record"`` the full record.

``maps.standardize=batch`` (one mean/std over the batch) makes a map depend on its batch: it
cannot be cached. ``loss.kind=paired`` scores every image against every caption of a batch:
it needs the embeddings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..model.batch import CACHE_DTYPE, MAP_KEYS, FeatureBatch, MapBatch, collate_mcq

#: ``data.cache`` / ``cache_features.kind`` values.
CACHE_KINDS = ("embeddings", "maps")
MAP_FORMAT = "dcsm.map_shards"
MAP_EXT = "maps.safetensors"
LEGACY_MAP_EXT = "maps.pth"  # the first release: a torch.save zip (read weights-only, never written)
#: Pooled cosines are kept in fp32 (one number per option: nothing to save).
POOLED_DTYPE = torch.float32
MAP_CACHE_FIX = ("re-write the map cache with this config (python data_prep/cache_features.py cache_features.kind=maps "
                 "cache_features.overwrite=true ...), or set data.cache=embeddings")


class MapCacheError(ValueError):
    """A map cache that this run cannot use (another map config, a batch-dependent map, the paired loss)."""


# ------------------------------------------------------------------ the map-defining config
def map_record(cfg: dict, encoder_spec: dict[str, Any]) -> dict[str, Any]:
    """The config the maps are a function of: ``{"encoder": ..., "functional_rows": ..., "maps": ...}``
    (the lexicon resolved to its phrases; the encoder's ``seed`` only for a random init)."""
    from ..model.functional_rows import resolve_lexicon
    from .shards import ENCODER_FIELDS

    enc_fields = (*ENCODER_FIELDS, "seed") if encoder_spec.get("pretrained") is None else ENCODER_FIELDS
    fr, mp = cfg["functional_rows"], cfg["maps"]
    return {
        "encoder": {k: encoder_spec.get(k) for k in enc_fields},
        "functional_rows": {"lexicon": list(resolve_lexicon(fr["lexicon"])), "seed": fr["seed"], "init": fr["init"]},
        "maps": {"standardize": mp["standardize"], "eps": float(mp["eps"]),
                 "inject_functional_rows": bool(mp["inject_functional_rows"])},
    }


def record_digest(record: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a map record (stored in every map-shard sample)."""
    return "sha256:" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _show(value: Any) -> str:
    if isinstance(value, list) and len(value) > 4:
        return f"a {len(value)}-phrase list"
    return "null" if value is None else repr(value)


def record_diff(cached: dict[str, Any], want: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted field, cached, wanted)`` for every map-defining field that differs."""
    out = []
    for sec in ("encoder", "functional_rows", "maps"):
        a, b = (cached or {}).get(sec) or {}, want.get(sec) or {}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append((f"{sec}.{k}", a.get(k), b.get(k)))
    return out


def check_map_record(cached: dict[str, Any] | None, want: dict[str, Any], where: str) -> None:
    """Refuse a map cache made with another map-defining config.

    Raises:
        MapCacheError: one line naming ``where``, every differing field with both values and the fix.
    """
    if cached is None:
        raise MapCacheError(f"map cache '{where}' carries no map record, so it cannot be checked against this run's "
                            f"config. Fix: {MAP_CACHE_FIX}")
    diff = record_diff(cached, want)
    if diff:
        fields = "; ".join(f"{k}: {_show(h)} in the cache, {_show(w)} configured" for k, h, w in diff)
        sets = " ".join(f"{k}={_show(h)}" for k, h, _ in diff if not isinstance(h, list))
        raise MapCacheError(f"map cache '{where}' was made with another map config ({fields}). "
                            f"Fix: {'set ' + sets + ', or ' if sets else ''}{MAP_CACHE_FIX}")


def check_map_cache_config(cfg: dict) -> None:
    """A run with ``data.cache=maps`` must be one a map cache can serve.

    Raises:
        MapCacheError: ``loss.kind=paired`` or ``maps.standardize=batch`` (one line each)."""
    if cfg["loss"]["kind"] == "paired":
        raise MapCacheError("data.cache=maps cannot serve loss.kind=paired (it scores every image of a batch against "
                            "every caption, so it needs the embeddings). Fix: data.cache=embeddings, or loss.kind=mcq.")
    check_cacheable_maps(cfg)


def check_cacheable_maps(cfg: dict) -> None:
    """Maps a cache can hold (not ``maps.standardize=batch``).

    Raises:
        MapCacheError: one line with the fix."""
    if cfg["maps"]["standardize"] == "batch":
        raise MapCacheError("a map cache cannot hold maps.standardize=batch maps (one mean/std over the whole "
                            "batch: a map depends on its batch). Fix: cache embeddings (data.cache=embeddings, cache_features.kind=embeddings), "
                            "or maps.standardize=map.")


def uses_map_cache(cfg: dict) -> bool:
    """Whether a training run reads a map cache (in memory or map shards); checks it can."""
    d = cfg["data"]
    if d.get("cache", "embeddings") != "maps":
        return False
    if not ((d["source"] == "synthetic" and d["cache_features"]) or d["source"] == "features"):
        raise MapCacheError(f"data.cache=maps needs a cache, but data.source={d['source']} with data.cache_features="
                            f"{str(d['cache_features']).lower()} encodes live. Fix: data.cache_features=true (synthetic), "
                            "data.source=features with map shards, or data.cache=embeddings.")
    check_map_cache_config(cfg)
    return True


# ------------------------------------------------------------------ building maps
def map_head(cfg: dict, encoder: Any) -> Any:
    """The map half of a :class:`~dcsm.model.DCSMHead` (functional rows + map config, no CNN),
    from the ``functional_rows`` and ``maps`` sections: the same maps the head builds."""
    from torch import nn

    from ..model.functional_rows import FunctionalRows, resolve_lexicon
    from ..model.dcsm import DCSMHead, MapConfig

    fr = cfg["functional_rows"]
    rows = FunctionalRows(resolve_lexicon(fr["lexicon"]), encoder.tokenizer, encoder.num_patches, seed=fr["seed"],
                          init=fr["init"])
    return DCSMHead(rows, nn.Identity(), MapConfig(**cfg["maps"])).to(encoder.device)


@torch.no_grad()
def maps_of(head: Any, f: FeatureBatch) -> MapBatch:
    """Feature batch -> :class:`MapBatch` on the CPU (maps in the cache dtype, fp32 pooled cosines).
    The features are rounded to the embedding cache's dtype first, so the maps are exactly the
    ones the head builds from an embedding cache, up to their own fp16 rounding."""
    f = f.to_cache().to(next(iter(head.buffers())).device)
    maps = head.fp32_maps(f.patches, f.tokens, f.token_mask, f.token_ids)
    cos = torch.einsum("nd,nkd->nk", f.image_pooled.float(), f.text_pooled.float())
    keep = {k: v for k, v in f.extras.items()}
    out = MapBatch(maps.to(CACHE_DTYPE).cpu(), f.token_mask.cpu(), cos.to(POOLED_DTYPE).cpu(),
                   None if f.label is None else f.label.cpu(), extras=keep)
    return out.map(lambda t: t.cpu())


def cache_map_dataset(encoder: Any, head: Any, dataset: Dataset, batch_size: int, num_workers: int,
                      desc: str = "caching maps", progress: bool = True) -> MapBatch:
    """Encode a raw MCQ dataset once and keep its maps -> one concatenated CPU :class:`MapBatch`
    (the embeddings of one batch at a time only; the global RNG is left as it was)."""
    from ..progress import progress_bar
    from ..model.encode import encode_batch

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_mcq)
    with torch.random.fork_rng(devices=[]):
        batches = progress_bar(loader, progress, desc=desc, total=len(loader), unit="batch")
        return MapBatch.cat(maps_of(head, encode_batch(encoder, b)) for b in batches)


# ------------------------------------------------------------------ map shards
def map_members(key: str, sample: MapBatch | dict[str, torch.Tensor], record: dict, encoder: dict[str, Any],
                digest: str) -> list[tuple[str, bytes]]:
    """Members ``KEY.json`` + ``KEY.maps.safetensors`` + ``KEY.encoder.json`` of one sample's maps
    (``maps (K, L, P)``, ``token_mask (K, L)``, ``pooled_cos (K,)``, ``label``)."""
    from ..data.shards.format import FORMAT_VERSION
    from .shards import CHECKSUM_KEY, sample_members, tensor_checksum
    from .tensor_codec import encode_tensors

    mask = sample["token_mask"].detach().cpu().bool()
    d = {
        "maps": sample["maps"].detach().cpu()[mask].to(CACHE_DTYPE),
        "token_mask": mask,
        "pooled_cos": sample["pooled_cos"].detach().cpu().to(POOLED_DTYPE),
        "label": torch.as_tensor(int(sample["label"]), dtype=torch.long),
    }
    meta = {"format_version": FORMAT_VERSION, "record": digest, CHECKSUM_KEY: tensor_checksum(d)}
    return sample_members(key, MAP_EXT, encode_tensors(d, meta), record, encoder)


def _map_tensors(sample: dict, key: str) -> tuple[dict[str, Any], str]:
    """The tensors + metadata of a map sample's member (either format) and the member's name."""
    from ..data.shards.format import SampleError
    from .shards import load_tensor_member
    from .tensor_codec import decode_tensors

    if MAP_EXT in sample:
        tensors, meta = decode_tensors(sample[MAP_EXT], f"{key}.{MAP_EXT}")
        missing = [k for k in MAP_KEYS if k not in tensors]
        if missing:
            raise SampleError(f"{key}.{MAP_EXT} lacks {missing}")
        return {**tensors, **meta}, MAP_EXT
    if LEGACY_MAP_EXT in sample:
        return load_tensor_member(sample, key, LEGACY_MAP_EXT, MAP_KEYS), LEGACY_MAP_EXT
    raise SampleError(f"missing member {key}.{MAP_EXT}")


def decode_map_sample(sample: dict, *, digest: str | None = None, categories: Sequence[str] | None = None,
                      keep_meta: bool = False, encoder: dict[str, Any] | None = None, manifest_checked: bool = False,
                      **_: Any) -> dict:
    """A map-shard sample -> ``{maps (K, L, P), token_mask, pooled_cos, label, category, key}``.

    Raises:
        SampleError: a missing/corrupt member, a checksum mismatch, non-finite maps.
        MapCacheError: the sample's record digest differs from ``digest`` (another map config).
    """
    from ..data.shards.format import SampleError, common_fields, parse_record
    from .shards import CHECKSUM_KEY, check_sample_encoder, tensor_checksum

    key = sample["__key__"]
    if encoder is not None:
        check_sample_encoder(sample, encoder, manifest_checked)
    record = parse_record(sample)
    d, ext = _map_tensors(sample, key)
    if d.get(CHECKSUM_KEY) is not None and tensor_checksum(d) != d[CHECKSUM_KEY]:
        raise SampleError(f"{key}.{ext}: checksum mismatch (corrupted bytes); the sample is skipped")
    if digest is not None and d.get("record") != digest:
        raise MapCacheError(f"map shard '{sample.get('__url__', '?')}' (key {key}) was made with another map config "
                            f"than its manifest.json and this run. Fix: {MAP_CACHE_FIX}")
    mask, packed = d["token_mask"].bool(), d["maps"]
    if mask.dim() != 2 or packed.dim() != 2 or packed.shape[0] != int(mask.sum()):
        raise SampleError(f"{key}.{ext}: packed maps {tuple(packed.shape)} do not match mask {tuple(mask.shape)}")
    for name in ("maps", "pooled_cos"):
        if not bool(torch.isfinite(d[name]).all()):
            raise SampleError(f"{key}.{ext}: non-finite values (NaN/inf) in '{name}'; the sample is skipped")
    maps = packed.new_zeros(*mask.shape, packed.shape[-1])
    maps[mask] = packed
    out: dict[str, Any] = {"maps": maps, "token_mask": mask, "pooled_cos": d["pooled_cos"]}
    out.update(common_fields(sample, record, categories, keep_meta))
    return out
