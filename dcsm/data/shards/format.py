"""Raw shard format: one multiple-choice sample per tar key, and its manifest.

``DIR/shard-000000.tar``, ``shard-000001.tar``, ... (plain, uncompressed tar). One sample =
consecutive members sharing a key ``KEY`` (no ``.`` or ``/`` in it):

* ``KEY.png`` or ``KEY.jpg`` — the image;
* ``KEY.opp.png`` / ``KEY.opp.jpg`` — optional opposite (hard-negative) image;
* ``KEY.json`` — ``{"captions": [c0, c1, ...], "label": i, "meta": {...}}`` where
  ``captions[label]`` is the true caption of the image. ``meta`` carries ``category``
  (a name, e.g. ``"spatial"``), ``opposite_label`` (the caption true for the opposite image,
  when there is one) and any provenance (index, seed, source row, option kinds, ...).

``DIR/manifest.json`` (written atomically, after the shards)::

    {"format": "dcsm.raw_shards", "version": 1, "prefix": "shard", "samples_per_shard": M,
     "num_shards": S, "num_samples": N, "pattern": "shard-{000000..000003}.tar",
     "shards": [{"name": "shard-000000.tar", "count": 6, "bytes": 123456}, ...],
     "info": {...inputs that produced the shards...}, "stats": {...}}
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from webdataset import tariterators

from ..synthetic.vocab import CATEGORIES

RAW_FORMAT = "dcsm.raw_shards"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: Image member extensions accepted when reading (writers use ``png`` or ``jpg``).
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
OPPOSITE_PREFIX = "opp."
JSON_EXT = "json"
FEATURE_EXT = "feat.pth"
#: Fixed member mtime: identical inputs give byte-identical shards.
TAR_MTIME = 946684800  # 2000-01-01
JPEG_QUALITY = 95
_KEY_RE = re.compile(r"^[^./\s][^./]*$")
_TMP_RE_TEMPLATE = r"^\.{prefix}-\d+\.tar\..*\.tmp$"


class ShardError(ValueError):
    """Shards cannot be written or read as asked (bad arguments, conflicting folder)."""


class SampleError(ValueError):
    """One sample of a shard is unusable (the reader skips and counts it)."""




def shard_name(prefix: str, index: int) -> str:
    """``{prefix}-{index:06d}.tar``."""
    return f"{prefix}-{index:06d}.tar"



def _split_name(name: str) -> tuple[str | None, str | None]:
    return tariterators.base_plus_ext(name)



def encode_image(image: Image.Image, fmt: str = "png") -> tuple[bytes, str]:
    """PIL image -> (bytes, extension) in ``png`` (lossless) or ``jpg`` (quality 95)."""
    fmt = fmt.lower()
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
        return buf.getvalue(), "png"
    if fmt in ("jpg", "jpeg"):
        image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue(), "jpg"
    raise ShardError(f"image_format must be 'png' or 'jpg', got {fmt!r}")


def _image_member(sample: dict, field: str, fmt: str) -> tuple[bytes, str]:
    value = sample[field]
    if isinstance(value, Image.Image):
        return encode_image(value, fmt)
    if isinstance(value, (bytes, bytearray)):
        ext = str(sample.get(f"{field}_ext", "")).lower().lstrip(".")
        if ext == "jpeg":
            ext = "jpg"
        if ext not in IMAGE_EXTS:
            raise ShardError(
                f"sample {sample.get('__key__')!r}: '{field}' is bytes, so '{field}_ext' must be one of "
                f"{list(IMAGE_EXTS)}, got {ext!r}"
            )
        return bytes(value), ext
    raise ShardError(f"sample {sample.get('__key__')!r}: '{field}' must be a PIL image or bytes, got {type(value).__name__}")


def _raw_record(sample: dict) -> dict:
    key = sample.get("__key__")
    captions, label = sample.get("captions"), sample.get("label")
    if not isinstance(captions, (list, tuple)) or not captions or not all(isinstance(c, str) for c in captions):
        raise ShardError(f"sample {key!r}: 'captions' must be a non-empty list of strings, got {captions!r}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(captions):
        raise ShardError(f"sample {key!r}: 'label' must be an int in [0, {len(captions)}), got {label!r}")
    meta = sample.get("meta", {}) or {}
    if not isinstance(meta, dict):
        raise ShardError(f"sample {key!r}: 'meta' must be a dict, got {type(meta).__name__}")
    return {"captions": list(captions), "label": int(label), "meta": meta}


def _raw_members(sample: dict, image_format: str) -> list[tuple[str, bytes]]:
    key = sample.get("__key__")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ShardError(f"sample key must be a non-empty string without '.', '/' or leading space, got {key!r}")
    record = _raw_record(sample)
    data, ext = _image_member(sample, "image", image_format)
    members = [(f"{key}.{JSON_EXT}", json.dumps(record, sort_keys=True, default=json_default).encode("utf-8")),
               (f"{key}.{ext}", data)]
    if sample.get("opposite_image") is not None:
        odata, oext = _image_member(sample, "opposite_image", image_format)
        members.append((f"{key}.{OPPOSITE_PREFIX}{oext}", odata))
    return members


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path,)):
        return str(obj)
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON-serialisable")

def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=json_default))



def parse_record(sample: dict) -> dict:
    if JSON_EXT not in sample:
        raise SampleError(f"missing member {sample['__key__']}.{JSON_EXT}")
    try:
        record = json.loads(sample[JSON_EXT])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SampleError(f"invalid JSON in {sample['__key__']}.{JSON_EXT}: {err}") from None
    if not isinstance(record, dict):
        raise SampleError(f"{sample['__key__']}.{JSON_EXT} is not a JSON object")
    captions, label = record.get("captions"), record.get("label")
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
        raise SampleError(f"{sample['__key__']}.{JSON_EXT}: 'captions' must be a non-empty list of strings")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(captions):
        raise SampleError(f"{sample['__key__']}.{JSON_EXT}: 'label' must be an int in [0, {len(captions)})")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise SampleError(f"{sample['__key__']}.{JSON_EXT}: 'meta' must be an object")
    record["meta"] = meta
    return record


def _decode_image(sample: dict, prefix: str) -> Image.Image | None:
    for ext in IMAGE_EXTS:
        name = prefix + ext
        if name in sample:
            try:
                with Image.open(io.BytesIO(sample[name])) as im:
                    im.load()
                    return im.convert("RGB")
            except Exception as err:  # PIL raises many types for bad bytes
                detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", " (bytes)", str(err))
                raise SampleError(f"unreadable image {sample['__key__']}.{name}: {type(err).__name__}: {detail}") from None
    return None


def _category_index(meta: dict, categories: Sequence[str]) -> int:
    cat = meta.get("category")
    return list(categories).index(cat) if cat in categories else -1


def common_fields(sample: dict, record: dict, categories: Sequence[str] | None, keep_meta: bool) -> dict:
    out: dict[str, Any] = {"label": record["label"]}
    if categories is not None:
        out["category"] = _category_index(record["meta"], categories)
    out["key"] = sample["__key__"]
    if sample.get("__url__"):  # which shard: named by errors about the sample (e.g. a batch mixing option counts)
        out["shard"] = str(sample["__url__"])
    if keep_meta:
        out["meta"] = record["meta"]
    return out


def decode_raw_sample(
    sample: dict,
    transform: Callable | None,
    *,
    with_opposite: bool | str = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
) -> dict:
    """A webdataset sample dict (``__key__``, ``png``, ``json``, ...) -> raw MCQ sample.

    Returns ``{"images": transform(PIL), "captions": [...], "label": int, "category": int,
    "key": str}`` (+ ``"meta"`` if ``keep_meta``; ``category`` is the index of
    ``meta["category"]`` in ``categories``, -1 if absent/unknown, no key if ``categories`` is
    None). ``with_opposite=True`` adds ``"opposite_images"`` and ``"opposite_label"`` and
    requires them; ``"optional"`` adds them when present.

    Raises:
        SampleError: a missing or corrupt member.
    """
    record = parse_record(sample)
    image = _decode_image(sample, "")
    if image is None:
        raise SampleError(f"missing image member {sample['__key__']}.{{{','.join(IMAGE_EXTS)}}}")
    tf = transform or (lambda x: x)
    out: dict[str, Any] = {"images": tf(image), "captions": record["captions"]}
    out.update(common_fields(sample, record, categories, keep_meta))
    if with_opposite:
        opp = _decode_image(sample, OPPOSITE_PREFIX)
        opp_label = record["meta"].get("opposite_label")
        if opp is None or not isinstance(opp_label, int):
            if with_opposite != "optional":
                raise SampleError(
                    f"sample {sample['__key__']} has no opposite image/opposite_label (with_opposite=True)"
                )
        else:
            out["opposite_images"] = tf(opp)
            out["opposite_label"] = opp_label
    return out
