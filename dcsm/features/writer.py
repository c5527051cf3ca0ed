"""Feature-cache writer: run the frozen encoder once over raw shards, write feature shards.

One feature shard per raw shard, same file name, written atomically; the folder's
``manifest.json`` holds the encoder spec and per-shard counts and is updated after every
shard. Rerunning skips feature shards that exist and are complete (resumable); a folder made
with another encoder is refused unless ``overwrite``. Corrupt raw samples are skipped with
a warning and counted per shard in the manifest. Opposite images, when the raw samples have
them, are encoded too. Format: :mod:`dcsm.features.shards`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from ..data.shards.format import MANIFEST_NAME, ShardError, decode_raw_sample
from ..data.shards.manifest import expand_urls
from ..data.shards.read import iter_shard
from ..data.shards.skips import SkipCounter
from ..data.shards.write import count_tar_samples, write_tar
from ..model.encoders import FrozenCLIP
from ..io import atomic_write_json
from ..run_lock import RunDirLock
from ..model.batch import CACHE_DTYPE
from ..model.encode import encode_batch
from .map_cache import CACHE_KINDS, MAP_FORMAT, map_head, map_members, map_record, maps_of, record_digest
from .shards import FEATURE_DTYPES, FEATURE_FORMAT, encoder_mismatch, feature_manifest, feature_members
from ..progress import progress_bar

log = logging.getLogger(__name__)


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", path)
        return None


def _source_bytes(url: str) -> int | None:
    return os.path.getsize(url) if os.path.isfile(url) else None


def _batches(samples: Iterable[dict], batch_size: int) -> Iterable[list[dict]]:
    """Consecutive batches; a change in the number of options starts a new batch."""
    batch: list[dict] = []
    for s in samples:
        if batch and (len(batch) >= batch_size or len(s["captions"]) != len(batch[0]["captions"])):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


@torch.no_grad()
def encode_samples(encoder: FrozenCLIP, batch: list[dict], with_opposite: bool = True) -> list[dict[str, torch.Tensor]]:
    """Raw samples (``images`` tensors, ``captions``, ``label``) -> per-sample fp16 CPU features."""
    raw = {
        "images": torch.stack([s["images"] for s in batch]),
        "captions": [list(s["captions"]) for s in batch],
        "label": torch.tensor([s["label"] for s in batch]),
    }
    feats = encode_batch(encoder, raw).to_cache()
    out = [{k: v for k, v in feats.sample(i).items() if isinstance(v, torch.Tensor)} for i in range(len(batch))]
    opp = [i for i, s in enumerate(batch) if "opposite_images" in s] if with_opposite else []
    if opp:
        emb = encoder.encode_images(torch.stack([batch[i]["opposite_images"] for i in opp]))
        for j, i in enumerate(opp):
            out[i]["opposite_patches"] = emb.patches[j].cpu().to(CACHE_DTYPE)
            out[i]["opposite_image_pooled"] = emb.pooled[j].cpu().to(CACHE_DTYPE)
    return out


@torch.no_grad()
def encode_map_samples(encoder: FrozenCLIP, head: torch.nn.Module, batch: list[dict]) -> list[dict[str, torch.Tensor]]:
    """Raw samples -> per-sample maps ``(K, L, P)`` fp16, ``token_mask``, ``pooled_cos``, ``label`` (CPU)."""
    raw = {
        "images": torch.stack([s["images"] for s in batch]),
        "captions": [list(s["captions"]) for s in batch],
        "label": torch.tensor([s["label"] for s in batch]),
    }
    mb = maps_of(head, encode_batch(encoder, raw))
    return [{k: v for k, v in mb.sample(i).items() if isinstance(v, torch.Tensor)} for i in range(len(batch))]


def cache_shards(encoder: FrozenCLIP, shard_paths: str | Path | Sequence[str | Path], out_dir: str | Path,
                 batch_size: int, *, with_opposite: bool = True, overwrite: bool = False, progress: bool = True,
                 kind: str = "embeddings", dtype: str = "fp16", map_sections: dict | None = None) -> dict:
    """Encode every raw shard into ``out_dir/<same name>``; returns the manifest.

    ``kind``: ``embeddings`` (feature shards, floats in ``dtype``: fp16, or int8 patches and
    tokens with one fp16 scale per vector) or ``maps`` (map shards, :mod:`dcsm.features.map_cache`;
    ``map_sections`` = the run config's ``functional_rows`` + ``maps`` sections; no opposite images).

    A feature shard is skipped when it exists and (a) the manifest lists it with the same
    sample count and source size, or (b) the manifest has the same encoder spec but no entry
    for it (run killed between the shard's rename and the manifest update) and it is a
    readable tar. Otherwise it is (re)written. ``progress``: a bar per shard being encoded.

    Raises:
        ShardError: ``out_dir`` holds features of another encoder (unless ``overwrite``),
            duplicate shard names among the inputs, or ``batch_size < 1``.
        RunDirBusyError: another ``cache_shards`` (any process) is writing into ``out_dir``.
    """
    if batch_size < 1:
        raise ShardError(f"batch_size must be >= 1, got {batch_size}")
    if kind not in CACHE_KINDS:
        raise ShardError(f"unknown cache kind '{kind}'. Fix: cache_features.kind={'|'.join(CACHE_KINDS)}.")
    if dtype not in FEATURE_DTYPES:
        raise ShardError(f"unknown feature dtype '{dtype}'. Fix: cache_features.dtype={'|'.join(FEATURE_DTYPES)}.")
    if kind == "maps" and dtype != "fp16":
        raise ShardError(f"cache_features.dtype={dtype} is for embedding shards; map shards are fp16. "
                         "Fix: cache_features.dtype=fp16 with cache_features.kind=maps.")
    if kind == "maps" and map_sections is None:
        raise ShardError("a map cache needs the functional_rows and maps config sections (map_sections).")
    urls = expand_urls(shard_paths)
    names = [os.path.basename(u.rstrip("/")) for u in urls]
    if len(set(names)) != len(names):
        raise ShardError(f"input shards must have distinct file names (outputs share the names), got {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # one writer per folder: a second job would delete the first one's temp files and race its manifest
    with RunDirLock(out_dir, key="cache_features.out",
                    fix="wait for the other cache_features job to finish (rerunning resumes), or write to another out= folder"):
        return _cache_shards(encoder, urls, names, out_dir, batch_size, with_opposite, overwrite, progress,
                             kind, dtype, map_sections)


def _encode_shard(encoder: FrozenCLIP, url: str, name: str, skips: SkipCounter, batch_size: int, with_opposite: bool,
                  progress: bool, dtype: str, head: Any, digest: str | None) -> tuple[list[tuple[str, bytes]], int]:
    """One raw shard -> its feature (``head is None``) or map members, and the number of samples encoded."""
    spec = encoder.spec.to_dict()

    def decode(sample: dict) -> dict:
        return decode_raw_sample(sample, encoder.preprocess, with_opposite="optional" if with_opposite else False,
                                 categories=None, keep_meta=True)

    members: list[tuple[str, bytes]] = []
    count = 0
    batches = _batches(iter_shard(url, decode, skips), batch_size)
    for batch in progress_bar(batches, progress, desc=f"encoding {name}", unit="batch"):
        feats = encode_samples(encoder, batch, with_opposite) if head is None else encode_map_samples(encoder, head, batch)
        for s, f in zip(batch, feats):
            record = {"captions": s["captions"], "label": s["label"], "meta": s["meta"]}
            if head is None:
                members.extend(feature_members(s["key"], f, record, spec, int8=dtype == "int8"))
            else:
                members.extend(map_members(s["key"], f, record, spec, digest))
            count += 1
    return members, count


def _cache_shards(encoder: FrozenCLIP, urls: list[str], names: list[str], out_dir: Path, batch_size: int,
                  with_opposite: bool, overwrite: bool, progress: bool, kind: str = "embeddings", dtype: str = "fp16",
                  map_sections: dict | None = None) -> dict:
    """:func:`cache_shards` while holding ``out_dir``'s lock."""
    spec = encoder.spec.to_dict()  # carried by every sample too (checked on every read)
    kind_fields: dict[str, Any] = {"format": FEATURE_FORMAT, "map_record": None,
                                   "dtype": "float16" if kind == "maps" or dtype == "fp16" else dtype}
    if kind == "maps":
        kind_fields.update(format=MAP_FORMAT, map_record=map_record(map_sections, spec))
        with_opposite = False  # the paired loss cannot use a map cache
    old = _load_json(out_dir / MANIFEST_NAME)
    diff = encoder_mismatch(old.get("encoder"), encoder) if old is not None else []
    if old is not None and not diff:
        diff = [f"{k}: {'a record' if k == 'map_record' and old.get(k) else old.get(k)!r} in the folder, "
                f"{'another' if k == 'map_record' else repr(v)} now" for k, v in kind_fields.items() if old.get(k) != v]
    if diff and not overwrite:
        raise ShardError(
            f"{out_dir} holds features of another encoder or cache kind ({'; '.join(diff)}). "
            "Fix: use another out= folder, or overwrite=true."
        )
    manifest: dict[str, Any] = {**feature_manifest(encoder), **{k: v for k, v in kind_fields.items() if v is not None}}
    head = digest = None
    if kind == "maps":
        head, digest = map_head(map_sections, encoder), record_digest(kind_fields["map_record"])
    same_encoder = old is not None and not diff
    entries: dict[str, dict] = {e["name"]: e for e in (old or {}).get("shards", [])} if same_encoder else {}

    def save_manifest() -> dict:
        shards = sorted(entries.values(), key=lambda e: e["name"])
        manifest.update(
            num_shards=len(shards),
            num_samples=sum(e["count"] for e in shards),
            num_skipped=sum(e.get("skipped") or 0 for e in shards),
            shards=shards,
        )
        if _load_json(out_dir / MANIFEST_NAME) != json.loads(json.dumps(manifest)):
            atomic_write_json(out_dir / MANIFEST_NAME, manifest)
        return manifest

    for url, name in zip(urls, names):
        out = out_dir / name
        for tmp in out_dir.glob(f".{name}.*.tmp"):  # left by an interrupted run
            log.info("removing leftover temp file %s", tmp)
            tmp.unlink(missing_ok=True)
        src_bytes = _source_bytes(url)
        if not overwrite and out.is_file():
            n = count_tar_samples(out)
            e = entries.get(name)
            if e is not None and n == e["count"] and e.get("source_bytes") == src_bytes:
                log.info("%s: complete (%d samples), skipped", out, n)
                continue
            if e is None and same_encoder and n is not None:
                log.info("%s: complete (%d samples) but not in the manifest; adopted", out, n)
                entries[name] = {"name": name, "count": n, "bytes": out.stat().st_size, "skipped": None,
                                 "source": url, "source_bytes": src_bytes}
                save_manifest()
                continue
        skips = SkipCounter()
        members, count = _encode_shard(encoder, url, name, skips, batch_size, with_opposite, progress, dtype, head, digest)
        size = write_tar(out, members)
        entries[name] = {"name": name, "count": count, "bytes": size, "skipped": skips.count,
                         "skipped_examples": [str(r) for r in skips.examples[:10]],
                         "source": url, "source_bytes": src_bytes}
        log.info("%s: %d samples encoded (%d skipped)", out, count, skips.count)
        save_manifest()
    return save_manifest()
