"""Run the frozen encoder once over raw shards and write feature shards (fp16).

    python data_prep/cache_features.py --shards 'DIR/shard-{000000..000003}.tar' --out FEATDIR \
        --model ViT-B-32 --pretrained none --max-tokens 20 --batch-size 64

One feature shard per raw shard, same file name, written atomically; the folder's
``manifest.json`` holds the encoder spec and per-shard counts and is updated after every
shard. Rerunning skips feature shards that exist and are complete (resumable); a folder made
with another encoder is refused unless ``--overwrite``. Corrupt raw samples are skipped with
a warning and counted per shard in the manifest. Opposite images, when the raw samples have
them, are encoded too (``--no-opposite`` to skip). Format: see ``dcsm/data/shards.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from dcsm.data.shards import (
    FEATURE_FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ShardError,
    SkipCounter,
    count_tar_samples,
    decode_raw_sample,
    expand_urls,
    feature_members,
    iter_shard,
    write_tar,
)
from dcsm.encoders import EncoderSpec, FrozenCLIP
from dcsm.features import encode_batch, to_cache
from dcsm.io import atomic_write_json

log = logging.getLogger("cache_features")


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
    feats = to_cache(encode_batch(encoder, raw))
    out = [{k: v[i] for k, v in feats.items() if isinstance(v, torch.Tensor)} for i in range(len(batch))]
    opp = [i for i, s in enumerate(batch) if "opposite_images" in s] if with_opposite else []
    if opp:
        emb = encoder.encode_images(torch.stack([batch[i]["opposite_images"] for i in opp]))
        for j, i in enumerate(opp):
            out[i]["opposite_patches"] = emb.patches[j].cpu().half()
            out[i]["opposite_image_pooled"] = emb.pooled[j].cpu().half()
    return out


def cache_shards(encoder: FrozenCLIP, shard_paths: str | Path | Sequence[str | Path], out_dir: str | Path,
                 batch_size: int = 64, *, with_opposite: bool = True, overwrite: bool = False) -> dict:
    """Encode every raw shard into ``out_dir/<same name>``; returns the manifest.

    A feature shard is skipped when it exists and (a) the manifest lists it with the same
    sample count and source size, or (b) the manifest has the same encoder spec but no entry
    for it (run killed between the shard's rename and the manifest update) and it is a
    readable tar. Otherwise it is (re)written.

    Raises:
        ShardError: ``out_dir`` holds features of another encoder (unless ``overwrite``),
            duplicate shard names among the inputs, or ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ShardError(f"batch_size must be >= 1, got {batch_size}")
    urls = expand_urls(shard_paths)
    names = [os.path.basename(u.rstrip("/")) for u in urls]
    if len(set(names)) != len(names):
        raise ShardError(f"input shards must have distinct file names (outputs share the names), got {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = encoder.spec.to_dict()
    old = _load_json(out_dir / MANIFEST_NAME)
    if old is not None and old.get("encoder") != spec and not overwrite:
        raise ShardError(
            f"{out_dir} holds features of encoder {old.get('encoder')}, not {spec}. "
            "Fix: use another --out folder, or --overwrite."
        )
    same_encoder = old is not None and old.get("encoder") == spec
    entries: dict[str, dict] = {e["name"]: e for e in (old or {}).get("shards", [])} if same_encoder else {}
    manifest: dict[str, Any] = {
        "format": FEATURE_FORMAT,
        "version": FORMAT_VERSION,
        "encoder": spec,
        "num_patches": encoder.num_patches,
        "embed_dim": encoder.embed_dim,
        "max_tokens": encoder.spec.max_tokens,
        "dtype": "float16",
    }

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
        for batch in _batches(iter_shard(url, decode, skips), batch_size):
            for s, f in zip(batch, encode_samples(encoder, batch, with_opposite)):
                record = {"captions": s["captions"], "label": s["label"], "meta": s["meta"]}
                members.extend(feature_members(s["key"], f, record))
                count += 1
        size = write_tar(out, members)
        entries[name] = {"name": name, "count": count, "bytes": size, "skipped": skips.count,
                         "skipped_examples": [str(r) for r in skips.examples[:10]],
                         "source": url, "source_bytes": src_bytes}
        log.info("%s: %d samples encoded (%d skipped)", out, count, skips.count)
        save_manifest()
    return save_manifest()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, nargs="+", help="raw shard urls / brace patterns / a shard folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--pretrained", default="openai", help="open_clip tag, checkpoint path, or 'none' (random init)")
    p.add_argument("--max-tokens", type=int, default=30)
    p.add_argument("--keep-cls", action="store_true")
    p.add_argument("--pad-rows", default="zero", choices=("zero", "eot"), help="eot: the reference preset's EOT pad rows")
    p.add_argument("--seed", type=int, default=0, help="random-init seed (pretrained none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-opposite", action="store_true", help="do not encode opposite images")
    p.add_argument("--overwrite", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    pretrained = None if args.pretrained.lower() in ("none", "null", "") else args.pretrained
    spec = EncoderSpec(model=args.model, pretrained=pretrained, max_tokens=args.max_tokens, keep_cls=args.keep_cls,
                       seed=args.seed, pad_rows=args.pad_rows)
    encoder = FrozenCLIP(spec).to(args.device)
    manifest = cache_shards(encoder, args.shards, args.out, args.batch_size, with_opposite=not args.no_opposite,
                            overwrite=args.overwrite)
    print(f"{args.out}: {manifest['num_shards']} feature shards, {manifest['num_samples']} samples, "
          f"{manifest['num_skipped']} skipped")
    return manifest


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        sys.exit(f"error: {err}")
