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
from .shards import encoder_mismatch, feature_manifest, feature_members
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


def cache_shards(encoder: FrozenCLIP, shard_paths: str | Path | Sequence[str | Path], out_dir: str | Path,
                 batch_size: int, *, with_opposite: bool = True, overwrite: bool = False, progress: bool = True) -> dict:
    """Encode every raw shard into ``out_dir/<same name>``; returns the manifest.

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
    urls = expand_urls(shard_paths)
    names = [os.path.basename(u.rstrip("/")) for u in urls]
    if len(set(names)) != len(names):
        raise ShardError(f"input shards must have distinct file names (outputs share the names), got {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # one writer per folder: a second job would delete the first one's temp files and race its manifest
    with RunDirLock(out_dir, key="cache_features.out",
                    fix="wait for the other cache_features job to finish (rerunning resumes), or write to another out= folder"):
        return _cache_shards(encoder, urls, names, out_dir, batch_size, with_opposite, overwrite, progress)


def _cache_shards(encoder: FrozenCLIP, urls: list[str], names: list[str], out_dir: Path, batch_size: int,
                  with_opposite: bool, overwrite: bool, progress: bool) -> dict:
    """:func:`cache_shards` while holding ``out_dir``'s lock."""
    old = _load_json(out_dir / MANIFEST_NAME)
    diff = encoder_mismatch(old.get("encoder"), encoder) if old is not None else []
    if diff and not overwrite:
        raise ShardError(
            f"{out_dir} holds features of another encoder ({'; '.join(diff)}). "
            "Fix: use another out= folder, or overwrite=true."
        )
    same_encoder = old is not None and not diff
    entries: dict[str, dict] = {e["name"]: e for e in (old or {}).get("shards", [])} if same_encoder else {}
    manifest: dict[str, Any] = feature_manifest(encoder)
    spec = encoder.spec.to_dict()  # carried by every sample too (checked on every read)

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

        def decode(sample: dict) -> dict:
            return decode_raw_sample(sample, encoder.preprocess, with_opposite="optional" if with_opposite else False,
                                     categories=None, keep_meta=True)

        members: list[tuple[str, bytes]] = []
        count = 0
        batches = _batches(iter_shard(url, decode, skips), batch_size)
        for batch in progress_bar(batches, progress, desc=f"encoding {name}", unit="batch"):
            for s, f in zip(batch, encode_samples(encoder, batch, with_opposite)):
                record = {"captions": s["captions"], "label": s["label"], "meta": s["meta"]}
                members.extend(feature_members(s["key"], f, record, spec))
                count += 1
        size = write_tar(out, members)
        entries[name] = {"name": name, "count": count, "bytes": size, "skipped": skips.count,
                         "skipped_examples": [str(r) for r in skips.examples[:10]],
                         "source": url, "source_bytes": src_bytes}
        log.info("%s: %d samples encoded (%d skipped)", out, count, skips.count)
        save_manifest()
    return save_manifest()
