"""WebDataset shards of multiple-choice samples and of cached frozen-CLIP features.

Raw shards (DESIGN.md §2)
-------------------------
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

Feature shards
--------------
Same names as the raw shards they come from, in another folder. One sample =

* ``KEY.feat.pth`` — one ``torch.save``'d dict (load with ``weights_only=True``):
  ``patches`` (P, D) fp16, ``image_pooled`` (D,) fp16, ``tokens`` (T, D) fp16 holding only
  the T = ``token_mask.sum()`` real token rows in row-major (option, position) order,
  ``token_mask`` (K, L) bool, ``token_ids`` (K, L) int32, ``text_pooled`` (K, D) fp16,
  ``label`` () int64, ``format_version`` int; optionally ``opposite_patches`` (P, D) and
  ``opposite_image_pooled`` (D,) fp16 when the raw sample had an opposite image.
* ``KEY.json`` — the raw sample's JSON record, unchanged.

:func:`feature_sample_pipeline` unpacks ``tokens`` back to ``(K, L, D)`` (zeros on padding)
and ``token_ids`` to int64, so samples match :mod:`dcsm.features` batches. The folder's
``manifest.json`` has ``"format": "dcsm.feature_shards"`` and ``"encoder"`` (the
``EncoderSpec`` dict), ``num_patches``, ``embed_dim``, ``max_tokens``, ``dtype`` and per
shard ``count``, ``skipped``, ``source`` and ``source_bytes``.

Reading
-------
:func:`raw_sample_pipeline` and :func:`feature_sample_pipeline` return a
:class:`ShardPipeline` (a ``webdataset.DataPipeline``): shard list (brace patterns, lists,
``pipe:`` urls, or a folder with a manifest) -> deterministic shard shuffle per
``(seed, epoch)`` -> split by node (rank/world size, injectable) and by DataLoader worker ->
tar reading -> decoding -> buffer shuffle seeded by ``(seed, epoch, rank, worker)``.
A corrupt sample (unreadable image, invalid JSON, missing member, bad tensor file) or an
unreadable shard is skipped with a :class:`SkippedSampleWarning` naming shard and key, and
counted in the pipeline's :class:`SkipCounter` (shared with DataLoader worker processes).
Call :meth:`ShardPipeline.set_epoch` before each epoch (the epoch is shared with persistent
workers too).

Every shard gets the same shard order on all ranks, so the rank/worker split is a partition:
each key is read exactly once per epoch across all ranks and workers. With DDP, use a number
of shards divisible by ``world_size * num_workers`` so that ranks see equal sample counts
(a warning says when it is not).
"""

from __future__ import annotations

import ctypes
import functools
import io
import json
import logging
import math
import multiprocessing as mp
import multiprocessing.context as mp_context
import os
import re
import tarfile
import warnings
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from webdataset import tariterators
from webdataset.gopen import gopen

from ..io import atomic_write, atomic_write_json
from .synthetic import CATEGORIES

log = logging.getLogger(__name__)

__all__ = [
    "RAW_FORMAT",
    "FEATURE_FORMAT",
    "MANIFEST_NAME",
    "IMAGE_EXTS",
    "ShardError",
    "SampleError",
    "SkippedSampleWarning",
    "SkipRecord",
    "SkipCounter",
    "shard_name",
    "write_tar",
    "count_tar_samples",
    "write_shards",
    "read_manifest",
    "shard_urls",
    "expand_urls",
    "shard_subset",
    "encode_image",
    "decode_raw_sample",
    "decode_feature_sample",
    "feature_members",
    "iter_shard",
    "StreamState",
    "ShardPipeline",
    "raw_sample_pipeline",
    "feature_sample_pipeline",
]

RAW_FORMAT = "dcsm.raw_shards"
FEATURE_FORMAT = "dcsm.feature_shards"
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

FEATURE_FLOAT_KEYS = ("patches", "image_pooled", "text_pooled")
OPPOSITE_FEATURE_KEYS = ("opposite_patches", "opposite_image_pooled")


class ShardError(ValueError):
    """Shards cannot be written or read as asked (bad arguments, conflicting folder)."""


class SampleError(ValueError):
    """One sample of a shard is unusable (the reader skips and counts it)."""


class SkippedSampleWarning(UserWarning):
    """A corrupt sample or shard was skipped while reading."""


# --------------------------------------------------------------------------- skip counter


@dataclass(frozen=True)
class SkipRecord:
    shard: str
    key: str | None
    reason: str

    def __str__(self) -> str:
        return f"shard {self.shard}, key {self.key if self.key is not None else '?'}: {self.reason}"


class _Shared:
    """Process-shared values (count, epoch, example log) for DataLoader workers.

    Shared through fork, or through pickling while a worker process is being spawned; any
    other pickling (or deepcopy) gives a snapshot / the same object.
    """

    def __init__(self, example_bytes: int) -> None:
        # a spawn-context lock can be inherited by fork workers and pickled to spawn/forkserver
        # workers; a fork-context one cannot be sent to spawned workers
        ctx = mp.get_context("spawn")
        self.value = ctx.Value(ctypes.c_longlong, 0)
        self.buf = ctx.Array(ctypes.c_char, max(example_bytes, 1), lock=False)
        self.used = ctx.Value(ctypes.c_longlong, 0, lock=False)
        self.example_bytes = example_bytes

    def __getstate__(self) -> dict:
        if mp_context.get_spawning_popen() is not None:
            return {"shared": (self.value, self.buf, self.used), "example_bytes": self.example_bytes}
        return {"snapshot": (self.value.value, bytes(self.buf[: self.used.value])), "example_bytes": self.example_bytes}

    def __setstate__(self, state: dict) -> None:
        self.example_bytes = state["example_bytes"]
        if "shared" in state:
            self.value, self.buf, self.used = state["shared"]
            return
        self.__init__(self.example_bytes)
        value, data = state["snapshot"]
        self.value.value = value
        self.buf[: len(data)] = data
        self.used.value = len(data)

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


class SkipCounter:
    """Counts skipped samples/shards; readable after iteration, also across DataLoader workers.

    Attributes:
        count: number of skips so far (all processes).
        examples: the first ``max_examples`` :class:`SkipRecord` (all processes).

    Each skip also emits a :class:`SkippedSampleWarning` naming shard and key (the first
    ``max_warnings`` per process; then one note that further ones are only counted).
    """

    def __init__(self, max_examples: int = 50, max_warnings: int = 20) -> None:
        self.max_examples = max_examples
        self.max_warnings = max_warnings
        self._shared = _Shared(example_bytes=max(max_examples, 0) * 512)
        self._warned = 0

    @property
    def count(self) -> int:
        return int(self._shared.value.value)

    @property
    def examples(self) -> list[SkipRecord]:
        sh = self._shared
        with sh.value.get_lock():
            data = bytes(sh.buf[: sh.used.value])
        return [SkipRecord(**json.loads(line)) for line in data.decode("utf-8").splitlines() if line]

    def reset(self) -> None:
        sh = self._shared
        with sh.value.get_lock():
            sh.value.value = 0
            sh.used.value = 0

    def record(self, shard: str, key: str | None, reason: str) -> SkipRecord:
        rec = SkipRecord(str(shard), key, reason)
        sh = self._shared
        with sh.value.get_lock():
            sh.value.value += 1
            n_examples = bytes(sh.buf[: sh.used.value]).count(b"\n")
            if n_examples < self.max_examples:
                line = (json.dumps(rec.__dict__) + "\n").encode("utf-8")
                if len(line) > 512:
                    line = (json.dumps({**rec.__dict__, "reason": rec.reason[:300]}) + "\n").encode("utf-8")
                start = sh.used.value
                if start + len(line) <= len(sh.buf):
                    sh.buf[start: start + len(line)] = line
                    sh.used.value = start + len(line)
        if self._warned < self.max_warnings:
            warnings.warn(f"skipped corrupt sample: {rec}", SkippedSampleWarning, stacklevel=2)
        elif self._warned == self.max_warnings:
            warnings.warn(
                f"more than {self.max_warnings} skipped samples in this process; further ones are "
                "only counted (SkipCounter.count / .examples)", SkippedSampleWarning, stacklevel=2,
            )
        self._warned += 1
        return rec

    def __repr__(self) -> str:
        return f"SkipCounter(count={self.count})"


class _SharedInt:
    """An int shared with DataLoader workers (same pickling rules as :class:`SkipCounter`)."""

    def __init__(self, value: int = 0) -> None:
        self._shared = _Shared(example_bytes=0)
        self._shared.value.value = int(value)

    @property
    def value(self) -> int:
        return int(self._shared.value.value)

    @value.setter
    def value(self, v: int) -> None:
        self._shared.value.value = int(v)


# --------------------------------------------------------------------------- writing


def shard_name(prefix: str, index: int) -> str:
    """``{prefix}-{index:06d}.tar``."""
    return f"{prefix}-{index:06d}.tar"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = 0o644
    info.uname = info.gname = ""
    return info


def write_tar(path: str | Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write ``(name, data)`` members to a tar at ``path`` atomically; returns its size in bytes."""
    members = list(members)

    def write(f: Any) -> None:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))

    atomic_write(path, write)
    return os.path.getsize(path)


def _split_name(name: str) -> tuple[str | None, str | None]:
    return tariterators.base_plus_ext(name)


def count_tar_samples(path: str | Path) -> int | None:
    """Number of distinct sample keys in a tar, or ``None`` if it cannot be read."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            keys = {_split_name(m.name)[0] for m in tar.getmembers() if m.isreg()}
    except (OSError, tarfile.TarError, EOFError):
        return None
    keys.discard(None)
    return len(keys)


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
    members = [(f"{key}.{JSON_EXT}", json.dumps(record, sort_keys=True, default=_json_default).encode("utf-8")),
               (f"{key}.{ext}", data)]
    if sample.get("opposite_image") is not None:
        odata, oext = _image_member(sample, "opposite_image", image_format)
        members.append((f"{key}.{OPPOSITE_PREFIX}{oext}", odata))
    return members


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path,)):
        return str(obj)
    raise TypeError(f"meta value of type {type(obj).__name__} is not JSON-serialisable")


def _load_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignoring unreadable %s (%s)", path, err)
        return None


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _write_manifest_if_changed(out_dir: Path, manifest: dict) -> None:
    path = out_dir / MANIFEST_NAME
    if _load_manifest(out_dir) != _json_roundtrip(manifest):
        atomic_write_json(path, manifest)


def _remove_temp_files(out_dir: Path, prefix: str) -> None:
    pattern = re.compile(_TMP_RE_TEMPLATE.format(prefix=re.escape(prefix)))
    for p in out_dir.iterdir():
        if pattern.match(p.name):
            log.info("removing leftover temp file %s of an interrupted run", p)
            p.unlink(missing_ok=True)


def _brace_pattern(prefix: str, n: int) -> str:
    if n == 0:
        return ""
    if n == 1:
        return shard_name(prefix, 0)
    return f"{prefix}-{{{0:06d}..{n - 1:06d}}}.tar"


def write_shards(
    samples: Iterable[dict] | Sequence[dict],
    out_dir: str | Path,
    samples_per_shard: int,
    prefix: str = "shard",
    *,
    info: dict | None = None,
    stats: dict | None = None,
    image_format: str = "png",
    overwrite: bool = False,
) -> dict:
    """Write raw MCQ samples to ``out_dir/{prefix}-NNNNNN.tar`` shards + ``manifest.json``.

    Each sample is a dict ``{"__key__": str, "image": PIL.Image | bytes, "captions": [...],
    "label": int, "meta": {...}}`` with optional ``"opposite_image"``; an image given as bytes
    needs ``"image_ext"`` / ``"opposite_image_ext"`` (``"jpg"``/``"png"``); PIL images are
    encoded as ``image_format``.

    Resumable: a shard that already exists with the expected number of samples is kept as is
    (not rewritten). When ``samples`` is a sequence (``len`` + indexing), the samples of kept
    shards are never materialised, so a lazy sequence skips their generation cost too.
    Shards are written to a temp file and renamed; leftover temp files of an interrupted run
    are removed. Shards past the new last one (from an earlier, larger run) are removed.

    Args:
        info: description of the inputs; stored in the manifest and compared on rerun: a
            folder holding shards made from other inputs raises :class:`ShardError` unless
            ``overwrite``.
        stats: extra statistics stored in the manifest (not compared).
        overwrite: rewrite every shard.

    Returns:
        The manifest dict (also written to ``out_dir/manifest.json``).
    """
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ShardError(f"samples_per_shard must be a positive int, got {samples_per_shard!r}")
    if not prefix or "/" in prefix or "." in prefix:
        raise ShardError(f"prefix must be non-empty without '/' or '.', got {prefix!r}")
    encode_image(Image.new("RGB", (1, 1)), image_format)  # validates image_format early
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = _json_roundtrip(info or {})
    old = _load_manifest(out_dir)
    if old is not None and not overwrite:
        mismatch = [
            (name, old.get(name), want)
            for name, want in (("format", RAW_FORMAT), ("prefix", prefix), ("samples_per_shard", samples_per_shard), ("info", info))
            if old.get(name) != want
        ]
        if mismatch:
            name, have, want = mismatch[0]
            if name == "info" and isinstance(have, dict):
                fields = sorted(k for k in {*have, *want} if have.get(k) != want.get(k))
                name = "info." + ",".join(fields)
                have, want = {k: have.get(k) for k in fields}, {k: want.get(k) for k in fields}
            raise ShardError(
                f"{out_dir} already holds shards made differently ({name}: {have!r} there, {want!r} now). "
                "Fix: write to a new folder, or pass overwrite=True (--overwrite) to replace them."
            )
    _remove_temp_files(out_dir, prefix)

    indexable = isinstance(samples, SequenceABC) or (hasattr(samples, "__len__") and hasattr(samples, "__getitem__"))
    entries: list[dict] = []
    seen_keys: set[str] = set()
    written = kept = 0

    def handle(index: int, expected: int | None, get_chunk: Callable[[], list[dict]]) -> bool:
        nonlocal written, kept
        path = out_dir / shard_name(prefix, index)
        chunk: list[dict] | None = None
        if expected is None:
            chunk = get_chunk()
            if not chunk:
                return False
            expected = len(chunk)
        if not overwrite and path.is_file() and count_tar_samples(path) == expected:
            entries.append({"name": path.name, "count": expected, "bytes": path.stat().st_size})
            kept += 1
            return True
        chunk = chunk if chunk is not None else get_chunk()
        members: list[tuple[str, bytes]] = []
        for s in chunk:
            key = s.get("__key__")
            if key in seen_keys:
                raise ShardError(f"duplicate sample key {key!r}: keys must be unique across shards")
            seen_keys.add(key)
            members.extend(_raw_members(s, image_format))
        size = write_tar(path, members)
        entries.append({"name": path.name, "count": len(chunk), "bytes": size})
        written += 1
        return True

    if indexable:
        n = len(samples)
        for s in range(math.ceil(n / samples_per_shard)):
            lo, hi = s * samples_per_shard, min((s + 1) * samples_per_shard, n)
            handle(s, hi - lo, lambda lo=lo, hi=hi: [samples[i] for i in range(lo, hi)])
    else:
        it = iter(samples)
        s = 0
        while handle(s, None, lambda: list(islice(it, samples_per_shard))):
            s += 1

    stale_re = re.compile(rf"^{re.escape(prefix)}-(\d+)\.tar$")
    for p in sorted(out_dir.iterdir()):
        m = stale_re.match(p.name)
        if m and int(m.group(1)) >= len(entries):
            log.warning("removing stale shard %s (past the last shard of this run)", p)
            p.unlink()

    manifest = {
        "format": RAW_FORMAT,
        "version": FORMAT_VERSION,
        "prefix": prefix,
        "samples_per_shard": samples_per_shard,
        "num_shards": len(entries),
        "num_samples": sum(e["count"] for e in entries),
        "pattern": _brace_pattern(prefix, len(entries)),
        "shards": entries,
        "info": info,
        "stats": _json_roundtrip(stats or {}),
    }
    _write_manifest_if_changed(out_dir, manifest)
    log.info("%s: %d shards (%d written, %d kept), %d samples", out_dir, len(entries), written, kept, manifest["num_samples"])
    return manifest


# --------------------------------------------------------------------------- urls


def read_manifest(path: str | Path) -> dict:
    """The manifest of a shard folder (or the manifest file itself)."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise ShardError(f"no {MANIFEST_NAME} in {path}. Fix: give shard urls, or write the shards first.") from None
    except json.JSONDecodeError as err:
        raise ShardError(f"{file}: invalid JSON ({err})") from None


def shard_urls(path: str | Path) -> list[str]:
    """Paths of the shards a folder's manifest lists."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return [str(folder / e["name"]) for e in read_manifest(path)["shards"]]


def expand_urls(urls: str | Path | Sequence[str | Path]) -> list[str]:
    """Shard urls from a brace pattern (``shard-{000000..000009}.tar``; ``::`` joins several),
    a list, ``pipe:``/``http`` urls, or a folder holding a ``manifest.json``."""
    if isinstance(urls, Path):
        urls = str(urls)
    if isinstance(urls, str):
        if os.path.isdir(urls):
            return shard_urls(urls)
        out = wds.shardlists.expand_urls(urls)
    else:
        out = []
        for u in urls:
            out.extend(expand_urls(u))
    if not out:
        raise ShardError(f"no shard urls in {urls!r}")
    return out


def shard_subset(
    urls: Sequence[str],
    *,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = False,
) -> list[str]:
    """The shards one (rank, worker) reads: the (optionally shuffled per ``(seed, epoch)``)
    list, every ``world_size``-th from ``rank``, then every ``num_workers``-th from
    ``worker``. Identical inputs on all ranks make the subsets a partition."""
    if not 0 <= rank < world_size or not 0 <= worker < num_workers:
        raise ShardError(f"bad split: rank {rank} of {world_size}, worker {worker} of {num_workers}")
    urls = list(urls)
    if shuffle:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(urls))
        urls = [urls[i] for i in order]
    return urls[rank::world_size][worker::num_workers]


# --------------------------------------------------------------------------- decoding


def _parse_record(sample: dict) -> dict:
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


def _common_fields(sample: dict, record: dict, categories: Sequence[str] | None, keep_meta: bool) -> dict:
    out: dict[str, Any] = {"label": record["label"]}
    if categories is not None:
        out["category"] = _category_index(record["meta"], categories)
    out["key"] = sample["__key__"]
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
    record = _parse_record(sample)
    image = _decode_image(sample, "")
    if image is None:
        raise SampleError(f"missing image member {sample['__key__']}.{{{','.join(IMAGE_EXTS)}}}")
    tf = transform or (lambda x: x)
    out: dict[str, Any] = {"images": tf(image), "captions": record["captions"]}
    out.update(_common_fields(sample, record, categories, keep_meta))
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


def feature_members(key: str, features: dict[str, torch.Tensor], record: dict) -> list[tuple[str, bytes]]:
    """Members ``KEY.json`` + ``KEY.feat.pth`` of one sample's features (``(P, D)``,
    ``(K, L, D)``, ... tensors; floats are stored fp16, tokens packed to real rows)."""
    mask = features["token_mask"].detach().cpu().bool()
    tokens = features["tokens"].detach().cpu()
    d: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "token_mask": mask.clone(),
        "token_ids": features["token_ids"].detach().cpu().to(torch.int32).clone(),
        "tokens": tokens[mask].to(torch.float16).clone(),
        "label": torch.as_tensor(int(features["label"]), dtype=torch.long),
    }
    for k in FEATURE_FLOAT_KEYS + OPPOSITE_FEATURE_KEYS:
        if k in features:
            d[k] = features[k].detach().cpu().to(torch.float16).clone()  # clone: never save a batch's storage
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
    text_pooled, label, category, key}`` as in :mod:`dcsm.features` (one sample, fp16 floats,
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
    need = ("patches", "image_pooled", "tokens", "token_mask", "token_ids", "text_pooled")
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
        if any(k not in d for k in OPPOSITE_FEATURE_KEYS) or not isinstance(opp_label, int):
            raise SampleError(f"sample {key} has no opposite-image features/opposite_label (with_opposite=True)")
        out.update({k: d[k] for k in OPPOSITE_FEATURE_KEYS}, opposite_label=opp_label)
    return out


# --------------------------------------------------------------------------- reading


def _default_handler(exn: Exception) -> bool:
    return True


class StreamState:
    """Set by :func:`iter_shard` when a handler asked to stop the whole stream."""

    def __init__(self) -> None:
        self.stopped = False


def _tar_samples(url: str, skips: SkipCounter, handler: Callable[[Exception], bool], state: StreamState) -> Iterator[dict]:
    """The grouped samples of one shard; a tar-level error is counted once and ends the shard."""
    last: dict[str, Any] = {"key": None, "seen": set()}

    def on_error(exn: Exception) -> bool:
        first = str(exn.args[0]) if exn.args else str(exn)
        what = f"{type(exn).__name__}: {first.split(' @ ')[0]}"
        if what not in last["seen"]:  # tarfile re-raises the same error at two levels
            last["seen"].add(what)
            after = f" (after key {last['key']})" if last["key"] else ""
            skips.record(url, None, f"unreadable shard{after}: {what}")
            keep_going = bool(handler(exn))
            state.stopped = state.stopped or not keep_going
        return not state.stopped

    try:
        stream = gopen(url)
    except (OSError, ValueError) as exn:  # missing file, unknown url scheme, ...
        skips.record(url, None, f"cannot open shard: {type(exn).__name__}: {exn}")
        state.stopped = not handler(exn)
        return
    finished = False
    try:
        files = tariterators.tar_file_expander([{"url": url, "stream": stream}], handler=on_error)
        for sample in tariterators.group_by_keys(files, handler=on_error):
            last["key"] = sample["__key__"]
            yield sample
        finished = True
    finally:
        try:
            stream.close()  # a pipe: url reports a failed command here
        except OSError as exn:
            if finished:
                on_error(exn)


def iter_shard(
    url: str,
    decode: Callable[[dict], dict],
    skips: SkipCounter,
    handler: Callable[[Exception], bool] = _default_handler,
    state: StreamState | None = None,
) -> Iterator[dict]:
    """Decoded samples of one shard in file order; corrupt ones are skipped and counted.

    ``handler(exn)`` is called after each skip (after counting and warning): return True to
    go on, False to stop (``state.stopped`` is set), or raise (e.g.
    ``webdataset.reraise_exception``) for strict mode.
    """
    state = state if state is not None else StreamState()
    for sample in _tar_samples(url, skips, handler, state):
        try:
            yield decode(sample)
        except SampleError as err:
            skips.record(url, sample.get("__key__"), str(err))
            if not handler(err):
                state.stopped = True
        if state.stopped:
            return


def _buffer_shuffle(src: Iterable[dict], bufsize: int, rng: np.random.Generator) -> Iterator[dict]:
    if bufsize <= 1:
        yield from src
        return
    buf: list[dict] = []
    for sample in src:
        if len(buf) < bufsize:
            buf.append(sample)
            continue
        i = int(rng.integers(len(buf)))
        buf[i], sample = sample, buf[i]
        yield sample
    order = rng.permutation(len(buf))
    for i in order:
        yield buf[i]


def _dist_info() -> tuple[int, int] | None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return None


class ShardPipeline(wds.DataPipeline):
    """Iterable dataset over shards: split by node/worker, decode, skip+count, buffer shuffle.

    Attributes:
        urls: all shard urls (before splitting).
        skips: the :class:`SkipCounter` (shared with DataLoader workers).
        epoch: current epoch (shared with persistent DataLoader workers); see :meth:`set_epoch`.
    """

    def __init__(
        self,
        urls: str | Path | Sequence[str | Path],
        decode: Callable[[dict], dict],
        *,
        shuffle_buffer: int = 0,
        seed: int = 0,
        epoch: int = 0,
        shuffle_shards: bool | None = None,
        split_by_node: bool = True,
        split_by_worker: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        handler: Callable[[Exception], bool] | None = None,
        skips: SkipCounter | None = None,
    ) -> None:
        super().__init__()
        if (rank is None) != (world_size is None):
            raise ShardError("give both rank and world_size, or neither (then torch.distributed / env decide)")
        if shuffle_buffer < 0:
            raise ShardError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.urls = expand_urls(urls)
        self.decode = decode
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self._epoch = _SharedInt(epoch)
        self.shuffle_shards = self.shuffle_buffer > 1 if shuffle_shards is None else bool(shuffle_shards)
        self.split_by_node = split_by_node
        self.split_by_worker = split_by_worker
        if rank is None and split_by_node:
            info = _dist_info()
            if info is not None:
                rank, world_size = info
        self.rank, self.world_size = rank, world_size
        self.handler = handler or _default_handler
        self.skips = skips if skips is not None else SkipCounter()
        self.pipeline = [self._shards, self._samples, self._shuffle]

    # -- epoch
    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Shard order and shuffle buffer depend on ``(seed, epoch)``; call before each epoch."""
        self._epoch.value = epoch

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if state["rank"] is None and self.split_by_node:  # resolve in the main process before spawning
            info = _dist_info()
            if info is not None:
                state["rank"], state["world_size"] = info
        return state

    # -- stages
    def node_info(self) -> tuple[int, int]:
        if not self.split_by_node:
            return 0, 1
        if self.rank is not None:
            return self.rank, self.world_size
        info = _dist_info()
        if info is not None:
            return info
        rank, world, _, _ = wds.utils.pytorch_worker_info()
        return rank, world

    def worker_info(self) -> tuple[int, int]:
        if not self.split_by_worker:
            return 0, 1
        winfo = torch.utils.data.get_worker_info()
        if winfo is not None:
            return winfo.id, winfo.num_workers
        _, _, worker, num_workers = wds.utils.pytorch_worker_info()
        return worker, num_workers

    def _shards(self) -> Iterator[str]:
        rank, world = self.node_info()
        worker, nworkers = self.worker_info()
        if len(self.urls) % (world * nworkers) and (world > 1 or nworkers > 1) and rank == 0 and worker == 0:
            log.warning(
                "%d shards over %d rank(s) x %d worker(s): readers get unequal shard counts "
                "(with DDP, use a multiple of world_size * num_workers shards)", len(self.urls), world, nworkers,
            )
        yield from shard_subset(
            self.urls, rank=rank, world_size=world, worker=worker, num_workers=nworkers,
            seed=self.seed, epoch=self.epoch, shuffle=self.shuffle_shards,
        )

    def _samples(self, urls: Iterable[str]) -> Iterator[dict]:
        state = StreamState()
        for url in urls:
            yield from iter_shard(url, self.decode, self.skips, self.handler, state)
            if state.stopped:
                return

    def _shuffle(self, src: Iterable[dict]) -> Iterator[dict]:
        rank, worker = self.node_info()[0], self.worker_info()[0]
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker, 1])
        return _buffer_shuffle(src, self.shuffle_buffer, rng)


def raw_sample_pipeline(
    urls: str | Path | Sequence[str | Path],
    transform: Callable | None,
    *,
    with_opposite: bool = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
    **stream: Any,
) -> ShardPipeline:
    """Raw MCQ samples ``{"images", "captions", "label", "category", "key"}`` from raw shards.

    Args:
        urls: brace pattern / list / ``pipe:`` url / folder with a manifest.
        transform: PIL image -> tensor (e.g. ``FrozenCLIP.preprocess``); None keeps PIL.
        with_opposite: also yield ``opposite_images``/``opposite_label`` (samples without them
            are skipped and counted).
        categories: names for the ``category`` index (None: no ``category`` key).
        keep_meta: also yield the JSON ``meta`` dict.
        stream: :class:`ShardPipeline` options —
            ``shuffle_buffer`` (0/1 = file order), ``seed``/``epoch`` (shard order and buffer
            shuffle are deterministic in them), ``shuffle_shards`` (default: when
            ``shuffle_buffer > 1``), ``split_by_node``/``split_by_worker``, ``rank``/``world_size``
            (default: torch.distributed, then env RANK/WORLD_SIZE), ``handler`` (called with the
            exception after each counted skip: True go on, False stop, raise fail), ``skips``
            (a :class:`SkipCounter` to count into).
    """
    decode = functools.partial(
        decode_raw_sample, transform=transform, with_opposite=with_opposite, categories=categories, keep_meta=keep_meta,
    )
    return ShardPipeline(urls, decode, **stream)


def feature_sample_pipeline(
    urls: str | Path | Sequence[str | Path],
    *,
    with_opposite: bool = False,
    categories: Sequence[str] | None = CATEGORIES,
    keep_meta: bool = False,
    keep_captions: bool = False,
    **stream: Any,
) -> ShardPipeline:
    """Feature samples (one per item; keys as :data:`dcsm.features.FEATURE_KEYS` + ``label``,
    ``category``, ``key``) from feature shards; batch them with ``dcsm.features.collate_mcq``.
    Arguments as :func:`raw_sample_pipeline`; ``keep_captions`` also yields the caption texts."""
    decode = functools.partial(
        decode_feature_sample, with_opposite=with_opposite, categories=categories, keep_meta=keep_meta,
        keep_captions=keep_captions,
    )
    return ShardPipeline(urls, decode, **stream)
