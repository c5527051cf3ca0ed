"""Writing raw shards: deterministic tars, resumable ``write_shards`` and its manifest."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import tarfile
from collections.abc import Sequence as SequenceABC
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from PIL import Image

from ...io import atomic_write, atomic_write_json
from .format import (
    FORMAT_VERSION, MANIFEST_NAME, RAW_FORMAT, TAR_MTIME, ShardError, _json_roundtrip, _raw_members,
    _split_name, encode_image, shard_name,
)

log = logging.getLogger(__name__)
_TMP_RE_TEMPLATE = r"^\.{prefix}-\d+\.tar\..*\.tmp$"


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



def count_tar_samples(path: str | Path) -> int | None:
    """Number of distinct sample keys in a tar, or ``None`` if it cannot be read."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            keys = {_split_name(m.name)[0] for m in tar.getmembers() if m.isreg()}
    except (OSError, tarfile.TarError, EOFError):
        return None
    keys.discard(None)
    return len(keys)



def _load_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignoring unreadable %s (%s)", path, err)
        return None



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
    _check_write_args(samples_per_shard, prefix, image_format)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = _json_roundtrip(info or {})
    old = _load_manifest(out_dir)
    if old is not None and not overwrite:
        _check_same_inputs(out_dir, old, prefix, samples_per_shard, info)
    _remove_temp_files(out_dir, prefix)

    indexable = isinstance(samples, SequenceABC) or (hasattr(samples, "__len__") and hasattr(samples, "__getitem__"))
    shards = _ShardWriter(out_dir, prefix, image_format, overwrite)
    if indexable:
        n = len(samples)
        for s in range(math.ceil(n / samples_per_shard)):
            lo, hi = s * samples_per_shard, min((s + 1) * samples_per_shard, n)
            shards.handle(s, hi - lo, lambda lo=lo, hi=hi: [samples[i] for i in range(lo, hi)])
    else:
        it = iter(samples)
        s = 0
        while shards.handle(s, None, lambda: list(islice(it, samples_per_shard))):
            s += 1
    entries, written, kept = shards.entries, shards.written, shards.kept
    _remove_stale_shards(out_dir, prefix, len(entries))

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



def _check_write_args(samples_per_shard: int, prefix: str, image_format: str) -> None:
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ShardError(f"samples_per_shard must be a positive int, got {samples_per_shard!r}")
    if not prefix or "/" in prefix or "." in prefix:
        raise ShardError(f"prefix must be non-empty without '/' or '.', got {prefix!r}")
    encode_image(Image.new("RGB", (1, 1)), image_format)  # validates image_format early


def _check_same_inputs(out_dir: Path, old: dict, prefix: str, samples_per_shard: int, info: dict) -> None:
    """A folder of shards made differently (format, prefix, shard size, inputs) is not resumed into."""
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


class _ShardWriter:
    """Writes (or keeps, when complete on disk) one shard at a time; sample keys unique across shards."""

    def __init__(self, out_dir: Path, prefix: str, image_format: str, overwrite: bool) -> None:
        self.out_dir, self.prefix, self.image_format, self.overwrite = out_dir, prefix, image_format, overwrite
        self.entries: list[dict] = []
        self.seen_keys: set[str] = set()
        self.written = self.kept = 0

    def handle(self, index: int, expected: int | None, get_chunk: Callable[[], list[dict]]) -> bool:
        """Shard ``index`` of ``expected`` samples (None: as many as ``get_chunk`` gives); False when
        there are no samples left."""
        path = self.out_dir / shard_name(self.prefix, index)
        chunk: list[dict] | None = None
        if expected is None:
            chunk = get_chunk()
            if not chunk:
                return False
            expected = len(chunk)
        if not self.overwrite and path.is_file() and count_tar_samples(path) == expected:
            self.entries.append({"name": path.name, "count": expected, "bytes": path.stat().st_size})
            self.kept += 1
            return True
        chunk = chunk if chunk is not None else get_chunk()
        members: list[tuple[str, bytes]] = []
        for s in chunk:
            key = s.get("__key__")
            if key in self.seen_keys:
                raise ShardError(f"duplicate sample key {key!r}: keys must be unique across shards")
            self.seen_keys.add(key)
            members.extend(_raw_members(s, self.image_format))
        size = write_tar(path, members)
        self.entries.append({"name": path.name, "count": len(chunk), "bytes": size})
        self.written += 1
        return True


def _remove_stale_shards(out_dir: Path, prefix: str, n_shards: int) -> None:
    """Shards past the last one of this run (from an earlier, larger run) are removed."""
    stale_re = re.compile(rf"^{re.escape(prefix)}-(\d+)\.tar$")
    for p in sorted(out_dir.iterdir()):
        m = stale_re.match(p.name)
        if m and int(m.group(1)) >= n_shards:
            log.warning("removing stale shard %s (past the last shard of this run)", p)
            p.unlink()
