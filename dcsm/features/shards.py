"""On-disk feature cache: feature shards, their manifest and the encoder-compatibility check.

Same names as the raw shards they come from, in another folder. One sample =

* ``KEY.feat.pth`` — one ``torch.save``'d dict (load with ``weights_only=True``):
  ``patches`` (P, D) fp16, ``image_pooled`` (D,) fp16, ``tokens`` (T, D) fp16 holding only
  the T = ``token_mask.sum()`` real token rows in row-major (option, position) order,
  ``token_mask`` (K, L) bool, ``token_ids`` (K, L) int32, ``text_pooled`` (K, D) fp16,
  ``label`` () int64, ``format_version`` int; optionally ``opposite_patches`` (P, D) and
  ``opposite_image_pooled`` (D,) fp16 when the raw sample had an opposite image; ``checksum``
  (str, ``"sha256:<hex>"`` of every tensor's name, dtype, shape and bytes, :func:`tensor_checksum`).
  Every read recomputes it: a mismatch (a flipped bit, overwritten bytes) or a non-finite
  feature value makes the sample corrupt (skipped and counted as lost). Samples cached before
  the checksum existed are read unverified (the run warns when its first shard has none: re-run
  ``cache_features`` to get them verified); their features are still checked for NaN/inf.
* ``KEY.json`` — the raw sample's JSON record, unchanged.
* ``KEY.encoder.json`` — the ``EncoderSpec`` dict of the encoder that made the features. Every
  read from a training run checks it against the configured encoder (manifest or not):
  features of another encoder stop the run with an :class:`EncoderMismatchError`. Shards
  cached before this member existed are read only when a ``manifest.json`` vouches for them.

:func:`feature_sample_pipeline` unpacks ``tokens`` back to ``(K, L, D)`` (zeros on padding)
and ``token_ids`` to int64, so samples batch into a :class:`FeatureBatch`. The folder's
``manifest.json`` has ``"format": "dcsm.feature_shards"`` and ``"encoder"`` (the
``EncoderSpec`` dict), ``num_patches``, ``embed_dim``, ``max_tokens``, ``dtype`` and per
shard ``count``, ``skipped``, ``source`` and ``source_bytes``.

Feature shards are written by :func:`dcsm.features.writer.cache_shards`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from webdataset import tariterators
from webdataset.gopen import gopen

from ..data.shards.format import FORMAT_VERSION, JSON_EXT, SampleError, common_fields, json_default, parse_record
from ..data.shards.read import ShardPipeline
from ..data.synthetic.vocab import CATEGORIES
from ..checkpoints.safe_load import check_torch_zip
from .quantize import dequantize_int8, quantize_int8
from ..model.batch import CACHE_DTYPE, FEATURE_KEYS

if TYPE_CHECKING:  # annotation only: the config check imports FEATURE_DTYPES and must not import open_clip
    from ..model.encoders import FrozenCLIP

log = logging.getLogger(__name__)
FEATURE_FORMAT = "dcsm.feature_shards"
FEATURE_EXT = "feat.pth"
ENCODER_EXT = "encoder.json"
RECACHE_FIX = ("re-cache them with this encoder: python data_prep/cache_features.py cache_features.shards=RAW_SHARDS "
               "cache_features.out=FEATURE_DIR cache_features.overwrite=true encoder.*=...")
FLOAT_KEYS = ("patches", "image_pooled", "text_pooled")
OPPOSITE_FLOAT_KEYS = ("opposite_patches", "opposite_image_pooled")
#: ``cache_features.dtype`` values: fp16 floats, or int8 patches and tokens (:mod:`dcsm.features.quantize`,
#: one fp16 scale per vector, stored as ``<key>_scale``; pooled embeddings stay fp16).
FEATURE_DTYPES = ("fp16", "int8")
INT8_KEYS = ("patches", "tokens", "opposite_patches")
SCALE_SUFFIX = "_scale"
#: Encoder fields a feature cache must share with the run that reads it (plus ``seed`` for random init).
ENCODER_FIELDS = ("model", "pretrained", "max_tokens", "keep_cls", "pad_rows", "patch_source", "tokenizer")


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
    return [f"{k}: {h!r} in the features, {w!r} configured" for k, h, w in encoder_diff(cached, encoder.spec.to_dict())]


class EncoderMismatchError(ValueError):
    """Feature shards were cached with another encoder than the run's (or cannot say which)."""


def encoder_diff(cached: dict[str, Any] | None, want: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, cached, wanted)`` for every feature-changing field that differs (``seed`` only
    for a random init); ``[]`` when compatible."""
    fields = (*ENCODER_FIELDS, "seed") if want.get("pretrained") is None else ENCODER_FIELDS
    have = {"pad_rows": "zero", "patch_source": "joint", "tokenizer": None, **(cached or {})}  # caches from before these existed
    return [(k, have.get(k), want.get(k)) for k in fields if have.get(k) != want.get(k)]


def check_sample_encoder(sample: dict, want: dict[str, Any], manifest_checked: bool) -> None:
    """A feature sample's ``KEY.encoder.json`` must match ``want`` (the run's ``EncoderSpec`` dict).

    Raises:
        EncoderMismatchError: naming the shard, the differing fields with both values and the
            fix; also for a sample without the member unless ``manifest_checked``.
    """
    shard = sample.get("__url__", "?")
    if ENCODER_EXT not in sample:
        if manifest_checked:
            return
        raise EncoderMismatchError(
            f"feature shard '{shard}' (key {sample['__key__']}) carries no encoder record and no manifest.json "
            f"beside it names its encoder, so it cannot be checked against encoder.*. Fix: {RECACHE_FIX}"
        )
    try:
        have = json.loads(sample[ENCODER_EXT])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SampleError(f"invalid JSON in {sample['__key__']}.{ENCODER_EXT}") from None
    diff = encoder_diff(have, want)
    if diff:
        fields = "; ".join(f"encoder.{k}: {h!r} in the shard, {w!r} configured" for k, h, w in diff)
        sets = " ".join(f"encoder.{k}={'null' if h is None else h}" for k, h, _ in diff)
        raise EncoderMismatchError(
            f"feature shard '{shard}' was cached with another encoder ({fields}). "
            f"Fix: set {sets} to train on these features, or {RECACHE_FIX}"
        )


def first_sample(url: str) -> dict | None:
    """The first grouped sample (raw members) of a shard; None when it has none or cannot be read."""
    try:
        stream = gopen(url)
    except (OSError, ValueError):
        return None
    try:
        files = tariterators.tar_file_expander([{"url": url, "stream": stream}], handler=lambda exn: False)
        return next(iter(tariterators.group_by_keys(files, handler=lambda exn: False)), None)
    except Exception:  # a corrupt shard: the stream skips and counts it
        return None
    finally:
        try:
            stream.close()
        except OSError:
            pass


def probe_encoder(url: str, want: dict[str, Any], manifest_checked: bool) -> None:
    """Check the first sample of ``url`` before training starts (one clear error in the main
    process; every sample is checked again while streaming). Warns about shards without
    per-sample records that only a manifest vouches for.

    Raises:
        EncoderMismatchError: as :func:`check_sample_encoder`.
    """
    sample = first_sample(url)
    if sample is None:
        return
    check_sample_encoder(sample, want, manifest_checked)
    if not has_checksum(sample):
        log.warning("feature shard '%s' was cached before per-sample checksums: its samples are read unverified "
                    "(NaN/inf still rejected). Fix: %s", url, RECACHE_FIX)
    if ENCODER_EXT not in sample:
        log.warning("feature shard '%s' carries no per-sample encoder record (cached by an older dcsm); only its "
                    "manifest.json was checked. Fix: %s", url, RECACHE_FIX)


def has_checksum(sample: dict) -> bool:
    """Whether a raw feature sample's ``feat.pth`` carries a checksum (True when unreadable:
    the stream then skips and counts it)."""
    if FEATURE_EXT not in sample:
        return True
    try:
        d = torch.load(io.BytesIO(sample[FEATURE_EXT]), map_location="cpu", weights_only=True)
    except Exception:
        return True
    return not isinstance(d, dict) or CHECKSUM_KEY in d


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


CHECKSUM_KEY = "checksum"
CHECKSUM_ALGO = "sha256"


def tensor_checksum(d: dict[str, Any]) -> str:
    """``"sha256:<hex>"`` over the tensors of a feature dict (sorted names; name, dtype, shape, bytes)."""
    h = hashlib.new(CHECKSUM_ALGO)
    for k in sorted(k for k, v in d.items() if isinstance(v, torch.Tensor)):
        t = d[k].detach().cpu().contiguous()
        h.update(f"{k}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"{CHECKSUM_ALGO}:{h.hexdigest()}"


def verify_features(d: dict[str, Any], key: str) -> None:
    """A loaded feature dict's checksum (when it has one) and finite float features.

    Raises:
        SampleError: checksum mismatch or a NaN/inf feature value (a corrupt sample).
    """
    want = d.get(CHECKSUM_KEY)
    if want is not None and tensor_checksum(d) != want:
        raise SampleError(f"{key}.{FEATURE_EXT}: checksum mismatch (corrupted bytes); the sample is skipped")
    for k in FLOAT_KEYS + OPPOSITE_FLOAT_KEYS + ("tokens",) + tuple(k + SCALE_SUFFIX for k in INT8_KEYS):
        t = d.get(k)
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise SampleError(f"{key}.{FEATURE_EXT}: non-finite values (NaN/inf) in '{k}'; the sample is skipped")


def feature_members(key: str, features: dict[str, torch.Tensor], record: dict,
                    encoder: dict[str, Any], int8: bool = False) -> list[tuple[str, bytes]]:
    """Members ``KEY.json`` + ``KEY.feat.pth`` + ``KEY.encoder.json`` of one sample's features
    (``(P, D)``, ``(K, L, D)``, ... tensors; floats are stored fp16, tokens packed to real rows;
    ``int8``: patches and tokens as int8 codes + an fp16 scale per vector, ``<key>_scale``);
    ``encoder`` is the ``EncoderSpec`` dict of the encoder that made them."""
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
    if int8:
        for k in INT8_KEYS:
            if k in d:
                d[k], d[k + SCALE_SUFFIX] = quantize_int8(d[k])
    return tensor_members(key, FEATURE_EXT, d, record, encoder)



def sample_members(key: str, ext: str, payload: bytes, record: dict, encoder: dict) -> list[tuple[str, bytes]]:
    """The members of one cached sample: ``KEY.json`` (record), ``KEY.<ext>`` (``payload``, its
    tensors) and ``KEY.encoder.json``."""
    return [
        (f"{key}.{JSON_EXT}", json.dumps(record, sort_keys=True, default=json_default).encode("utf-8")),
        (f"{key}.{ext}", payload),
        (f"{key}.{ENCODER_EXT}", json.dumps(encoder, sort_keys=True).encode("utf-8")),
    ]


def tensor_members(key: str, ext: str, d: dict[str, Any], record: dict, encoder: dict) -> list[tuple[str, bytes]]:
    """:func:`sample_members` with ``d`` and its :func:`tensor_checksum` as a plain ``torch.save``."""
    d[CHECKSUM_KEY] = tensor_checksum(d)
    buf = io.BytesIO()
    torch.save(d, buf)
    return sample_members(key, ext, buf.getvalue(), record, encoder)


def load_tensor_member(sample: dict, key: str, ext: str, need: Sequence[str]) -> dict[str, Any]:
    """``KEY.<ext>`` of a cached sample as a dict holding ``need``: a plain ``torch.save`` zip only
    (checked before any pickle byte), read with ``weights_only``.

    Raises:
        SampleError: unreadable, not a plain tensor file, or lacking keys of ``need``.
    """
    try:
        check_torch_zip(sample[ext], f"{key}.{ext}")  # plain torch.save zip only, before any pickle
        d = torch.load(io.BytesIO(sample[ext]), map_location="cpu", weights_only=True)
    except Exception as err:
        raise SampleError(f"unreadable {key}.{ext}: {type(err).__name__}: {err}") from None
    if not isinstance(d, dict) or any(k not in d for k in need):
        raise SampleError(f"{key}.{ext} lacks {[k for k in need if not isinstance(d, dict) or k not in d]}")
    return d

def decode_feature_sample(
    sample: dict,
    *,
    with_opposite: bool = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
    keep_captions: bool = False,
    encoder: dict[str, Any] | None = None,
    manifest_checked: bool = False,
) -> dict:
    """A feature-shard sample -> ``{patches, image_pooled, tokens, token_mask, token_ids,
    text_pooled, label, category, key}`` as a :class:`FeatureBatch` sample (one sample, fp16 floats,
    ``tokens`` unpacked to ``(K, L, D)``). ``with_opposite=True`` adds ``opposite_patches``,
    ``opposite_image_pooled`` and ``opposite_label`` and requires them. With ``encoder`` (an
    ``EncoderSpec`` dict) the sample's encoder record is checked first
    (:func:`check_sample_encoder`).

    Raises:
        SampleError: a missing or corrupt member.
        EncoderMismatchError: the features come from another encoder (or cannot say which).
    """
    key = sample["__key__"]
    if encoder is not None:
        check_sample_encoder(sample, encoder, manifest_checked)
    record = parse_record(sample)
    if FEATURE_EXT not in sample:
        raise SampleError(f"missing member {key}.{FEATURE_EXT}")
    d = load_tensor_member(sample, key, FEATURE_EXT, FEATURE_KEYS)
    verify_features(d, key)
    try:
        for k in INT8_KEYS:  # int8 shards (cache_features.dtype=int8): back to the cache dtype
            if k in d and d[k].dtype == torch.int8:
                d[k] = dequantize_int8(d[k], d[k + SCALE_SUFFIX], CACHE_DTYPE)
    except (KeyError, ValueError, TypeError) as err:
        raise SampleError(f"{key}.{FEATURE_EXT}: bad int8 features ({err})") from None
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
    out.update(common_fields(sample, record, categories, keep_meta))
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
    encoder: dict[str, Any] | None = None,
    manifest_checked: bool = False,
    **stream: Any,
) -> ShardPipeline:
    """Feature samples (one per item; keys as :data:`FEATURE_KEYS` + ``label``,
    ``category``, ``key``) from feature shards; batch them with :func:`collate_mcq`.
    Arguments as :func:`raw_sample_pipeline`; ``keep_captions`` also yields the caption texts;
    ``encoder``/``manifest_checked`` as :func:`decode_feature_sample` (every sample checked)."""
    decode = functools.partial(
        decode_feature_sample, with_opposite=with_opposite, categories=categories, keep_meta=keep_meta,
        keep_captions=keep_captions, encoder=encoder, manifest_checked=manifest_checked,
    )
    return ShardPipeline(urls, decode, **stream)
