"""Training throughput: live encoding vs cached features vs device-resident features; cache size.

    python benchmarks/train_throughput.py                              # benchmarks/train_throughput.yaml
    python benchmarks/train_throughput.py encoder.model=ViT-B-32 bench.samples=192 bench.batch_sizes=[32] \
        bench.precision=32-true bench.device=cpu                        # small CPU run
    python benchmarks/train_throughput.py bench.cache_bytes_models=[ViT-B-16,ViT-L-14] bench.paths=[]
    python benchmarks/train_throughput.py --config MY.yaml   # a YAML with 'base: train_throughput.yaml'

Every path runs the step ``train.py`` runs — ``DCSMModule.training_step`` + backward + AdamW —
on batches from the shard DataModule ``train.py`` builds; only the source differs:

- ``live``: raw image shards (``data.source=shards``), images decoded by the loader workers, the
  frozen CLIP run every step;
- ``cached``: feature shards written once by ``data_prep/cache_features.py``
  (``data.source=features``), streamed by the loader workers;
- ``resident``: the same feature batches kept on the device (no loader): the head's ceiling.

The shards are written by the ``data_prep`` command-line tools (``python -m data_prep.<tool>
section.key=value ...`` subprocesses; the encoder settings are this config's). The cached
paths need more samples than are worth encoding, so the feature shards are hard-linked under
extra names until one pass holds every timed batch (page-cache speed reads, as for a cache that
fits in memory). A *pair* is one (image, caption option): pairs/s = samples/s x options.

``bench.cache_bytes_models`` also measures the feature cache's bytes per sample: a real feature
shard written for a few scenes, the fp16 size from the shapes, the size with int8 patch
embeddings (``dcsm.features.quantize``), the disk a 1M-sample cache needs, and how far int8 features move
the DCSM scores of a random-init head from those of the fp16 features.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from dcsm.train.shard_data import ShardDataConfig, ShardDataModule
from dcsm.data.shards import write_tar
from dcsm.data.synthetic.scenes import SyntheticScenes
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.features import CACHE_DTYPE, FeatureBatch, encode_batch
from dcsm.features.shards import feature_members
from dcsm.train.module import DCSMModule
from dcsm.model.dcsm import build_dcsm
from dcsm.features.quantize import dequantize_int8, int8_bytes, quantize_int8
from dcsm.commands.runner import run_command
from write_results import REPO, bench_config, machine_info, save_result

DEFAULT_CONFIG = REPO / "benchmarks" / "train_throughput.yaml"
PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16}
PATHS = ("live", "cached", "resident")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"bench.device={name} but CUDA is not available. Fix: bench.device=cpu or auto.")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown bench.precision '{precision}'. Fix: use one of {sorted(PRECISIONS)}.")
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------- data


def override(key: str, value: Any) -> str:
    """``key=value`` as the config parser reads it back (None -> null, lists -> [a,b])."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (list, tuple)):
        text = f"[{','.join(str(v) for v in value)}]"
    else:
        text = str(value)
    return f"{key}={text}"


def data_prep(tool: str, *overrides: str) -> None:
    """Run ``python -m data_prep.<tool> key=value ...`` from the repository root (so this
    checkout's ``data_prep`` and ``dcsm`` are the ones run)."""
    cmd = [sys.executable, "-m", f"data_prep.{tool}", *overrides]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")


def write_shards(cfg: dict, work: Path, device: torch.device) -> tuple[Path, Path, float]:
    """Raw synthetic shards and their feature shards -> (raw dir, feature dir, caching seconds)."""
    b, d = cfg["bench"], cfg["data"]
    raw, feat = work / "raw", work / "feat"
    data_prep("make_synthetic_shards", *(override(f"synthetic_shards.{k}", v) for k, v in {
        "out": raw, "num_samples": b["samples"], "samples_per_shard": b["samples_per_shard"], "seed": d["seed"],
        "num_options": d["num_options"], "image_size": d["image_size"], "categories": d["categories"]}.items()))
    t0 = time.perf_counter()
    data_prep("cache_features", *(override(f"encoder.{k}", v) for k, v in cfg["encoder"].items()),
              *(override(f"cache_features.{k}", v) for k, v in {
                  "shards": raw, "out": feat, "batch_size": b["cache_batch_size"], "device": device, "opposite": False}.items()))
    return raw, feat, time.perf_counter() - t0


def replicated_urls(feat: Path, copies: int) -> list[str]:
    """The feature shards plus ``copies - 1`` hard-linked (or copied) aliases of each."""
    shards = sorted(feat.glob("*.tar"))
    urls = [str(s) for s in shards]
    for r in range(1, copies):
        for s in shards:
            alias = feat / f"rep{r:03d}-{s.name}"
            if not alias.exists():
                try:
                    os.link(s, alias)
                except OSError:
                    shutil.copyfile(s, alias)
            urls.append(str(alias))
    return urls


def loader(cfg: dict, source: str, urls: str | list[str], batch_size: int, samples: int, encoder: FrozenCLIP):
    """The DataModule train loader ``train.py`` would build for these shards."""
    d = cfg["data"]
    dm = ShardDataModule(ShardDataConfig(
        source=source, train_shards=urls, val_shards=None, shuffle_buffer=d["shuffle_buffer"], seed=d["seed"],
        batch_size=batch_size, num_workers=d["num_workers"], samples_per_epoch=samples,
        categories=tuple(d["categories"]), with_opposite=False,
    ), encoder)
    dm.setup("fit")
    return dm.train_dataloader()


# ----------------------------------------------------------------------------- timing


Batch = dict[str, Any] | FeatureBatch  # raw (live path) or feature batch (cached paths)


def to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, FeatureBatch):
        return batch.to(device, non_blocking=True)
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def measure(module: DCSMModule, batches: Iterable[Batch], device: torch.device, precision: str,
            warmup: int, timed: int) -> dict[str, Any]:
    """Seconds and samples of ``timed`` training steps after ``warmup`` (device-synchronised),
    with the wall-clock window (for GPU-utilisation samples) and the warm-up seconds."""
    opt = torch.optim.AdamW(module.head.parameters(), lr=1e-3)
    module.train()
    module.log = lambda *a, **k: None  # no trainer attached: logging is not what is timed
    seen, start, t_first = 0, None, time.perf_counter()
    out: dict[str, Any] = {}
    for i, batch in enumerate(batches):
        if i == warmup:
            sync(device)
            out.update(warmup_s=round(time.perf_counter() - t_first, 2), t_start=time.time())
            start, seen = time.perf_counter(), 0
        batch = to_device(batch, device)
        with autocast(precision, device):
            loss = module.training_step(batch, i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(batch) if isinstance(batch, FeatureBatch) else len(batch["label"])
        if i + 1 >= warmup + timed:
            break
    sync(device)
    if start is None:
        raise RuntimeError(f"the loader gave fewer than {warmup + 1} batches: raise bench.samples")
    secs = time.perf_counter() - start
    out.update(t_end=time.time(), seconds=round(secs, 3), samples=seen, samples_s=seen / secs, final_loss=float(loss.detach()))
    return out


def cycle(batches: list[Batch]) -> Iterator[Batch]:
    while True:
        yield from batches


def new_module(cfg: dict, encoder: FrozenCLIP, device: torch.device, compile_head: bool) -> DCSMModule:
    module = DCSMModule(cfg, encoder=encoder).to(device)
    if compile_head:
        module.model.head = torch.compile(module.model.head)
    return module


def throughput_rows(cfg: dict, encoder: FrozenCLIP, device: torch.device, work: Path) -> tuple[list[dict], dict]:
    """All path x batch-size x compile rows; a failing row is recorded, the rest still run."""
    b = cfg["bench"]
    k = cfg["data"]["num_options"]
    bad = [p for p in b["paths"] if p not in PATHS]
    if bad:
        raise ValueError(f"unknown bench.paths entry '{bad[0]}'. Fix: use some of {list(PATHS)}.")
    rows: list[dict] = []
    info: dict[str, Any] = {}
    # loader paths: the warm-up drains what the workers prefetched meanwhile (2 batches each),
    # so the timed batches are produced at the loader's steady rate, not taken from a full queue
    warm = max(b["warmup"], 2 * cfg["data"]["num_workers"])
    info["loader_warmup_batches"] = warm
    if not b["paths"]:
        return rows, info
    raw, feat, info["cache_s"] = write_shards(cfg, work, device)
    info["cache_samples_s"] = b["samples"] / info["cache_s"]

    def record(row: dict[str, Any], fn) -> None:
        try:
            row.update(fn())
            row["pairs_s"] = row["samples_s"] * k
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"[:300]
        print(" ".join(f"{a}={v:.4g}" if isinstance(v, float) else f"{a}={v}" for a, v in row.items()), flush=True)
        rows.append(row)

    if "live" in b["paths"]:
        bs = b["batch_sizes"][0]
        module = new_module(cfg, encoder, device, False)
        record({"path": "live", "batch_size": bs, "compile": False}, lambda: measure(
            module, loader(cfg, "shards", str(raw), bs, b["samples"], encoder), device, b["precision"], warm,
            b["live_batches"]))
    cached_paths = [p for p in ("resident", "cached") if p in b["paths"]]
    if cached_paths:
        need = (warm + b["timed_batches"] + 1) * max(b["batch_sizes"])
        copies = max(1, math.ceil(need / b["samples"]))
        urls = replicated_urls(feat, copies)
        info["feature_shard_copies"] = copies
        for bs in b["batch_sizes"]:
            for compile_head in (False, True) if bs == b["compile_batch_size"] else (False,):
                try:
                    module = new_module(cfg, encoder, device, compile_head)
                except Exception as err:
                    rows.append({"path": "+".join(cached_paths), "batch_size": bs, "compile": compile_head,
                                 "error": f"{type(err).__name__}: {err}"[:300]})
                    continue
                for path in cached_paths:
                    row = {"path": path, "batch_size": bs, "compile": compile_head}
                    if path == "cached":
                        record(row, lambda: measure(module, loader(cfg, "features", urls, bs, copies * b["samples"], encoder),
                                                    device, b["precision"], warm, b["timed_batches"]))
                    else:
                        def resident() -> dict[str, Any]:
                            it = iter(loader(cfg, "features", urls[: max(1, len(urls) // copies)], bs, b["samples"], encoder))
                            held = [to_device(next(it), device) for _ in range(min(4, b["samples"] // bs or 1))]
                            del it  # its workers stop
                            return measure(module, cycle(held), device, b["precision"], b["warmup"], b["timed_batches"])
                        record(row, resident)
                del module
    return rows, info


# ----------------------------------------------------------------------------- cache size


def cache_bytes(cfg: dict, model_name: str, device: torch.device, work: Path) -> dict[str, Any]:
    """Bytes per sample of a real feature shard (fp16, with opposite images as the caching tool
    writes them by default), the fp16 and int8-patch sizes from the shapes, and the int8 score error."""
    n = cfg["bench"]["cache_bytes_samples"]
    d = cfg["data"]
    ecfg = {**cfg["encoder"], "model": model_name}
    encoder = FrozenCLIP(EncoderSpec(**ecfg)).to(device)
    scenes = SyntheticScenes(n, split="test", seed=d["seed"], image_size=d["image_size"], num_options=d["num_options"],
                             categories=d["categories"])
    items = [scenes[i] for i in range(n)]
    raw = {"images": torch.stack([encoder.preprocess(s.image) for s in items]).to(device),
           "captions": [list(s.captions) for s in items], "label": torch.tensor([s.label for s in items])}
    opp = encoder.encode_images(torch.stack([encoder.preprocess(s.opposite_image) for s in items]).to(device))
    f = replace(encode_batch(encoder, raw), opposite_patches=opp.patches, opposite_image_pooled=opp.pooled)
    members = []
    for i, s in enumerate(items):
        sample = {key: v for key, v in f.sample(i).items() if isinstance(v, torch.Tensor)}
        members += feature_members(f"s{i:06d}", sample, {"captions": s.captions, "label": s.label, "meta": s.meta},
                                   encoder.spec.to_dict())
    shard = work / f"bytes-{model_name}.tar"
    size = write_tar(shard, members)
    P, D = encoder.num_patches, encoder.embed_dim
    K, L = f.token_mask.shape[1:]
    T = float(f.token_mask.sum()) / n  # real token rows per sample
    fp16 = 2 * (P * D + D + T * D + K * D) + K * L + 4 * K * L + 8  # + mask (bool) + ids (int32) + label
    int8 = fp16 - 2 * P * D + int8_bytes((P, D))
    opp_fp16, opp_int8 = 2 * (P * D + D), int8_bytes((P, D)) + 2 * D
    # int8 vs fp16 features through a random-init head of the configured architecture
    model = build_dcsm({**cfg, "encoder": ecfg}, encoder).to(device).eval()
    f16 = f.map(lambda t: t.to(CACHE_DTYPE) if t.is_floating_point() else t)
    with torch.no_grad():
        ref = model(f16)
        qp = replace(f16, patches=dequantize_int8(*quantize_int8(f16.patches)))
        qa = replace(qp, tokens=dequantize_int8(*quantize_int8(f16.tokens)))
        sp, sa = model(qp), model(qa)
    row = {
        "model": model_name, "num_patches": P, "embed_dim": D, "num_options": K, "max_tokens": L,
        "real_tokens_per_sample": T, "samples_in_shard": n, "with_opposite": True,
        "shard_bytes_per_sample": round(size / n), "fp16_bytes_per_sample": round(fp16 + opp_fp16),
        "fp16_bytes_per_sample_no_opposite": round(fp16), "int8_bytes_per_sample": round(int8 + opp_int8),
        "int8_bytes_per_sample_no_opposite": round(int8),
        "fp16_gb_per_million": size / n * 1e6 / 1e9,
        "fp16_gb_per_million_no_opposite": (size / n - opp_fp16) * 1e6 / 1e9,
        "int8_gb_per_million": (size / n - (fp16 + opp_fp16 - int8 - opp_int8)) * 1e6 / 1e9,
        "int8_score_max_abs_diff_patches": float((sp - ref).abs().max()),
        "int8_score_max_abs_diff_patches_tokens": float((sa - ref).abs().max()),
        "score_std": float(ref.std()),
        "int8_argmax_agreement": float((sa.argmax(1) == ref.argmax(1)).float().mean()),
    }
    print(" ".join(f"{a}={v:.4g}" if isinstance(v, float) else f"{a}={v}" for a, v in row.items()), flush=True)
    del encoder, model
    return row


# ----------------------------------------------------------------------------- main


def run(cfg: dict) -> dict[str, Any]:
    b = cfg["bench"]
    device = resolve_device(b["device"])
    if b["threads"]:
        torch.set_num_threads(int(b["threads"]))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    started = time.time()
    tmp = b["workdir"] is None
    work = Path(tempfile.mkdtemp(prefix="dcsm-bench-") if tmp else b["workdir"])
    work.mkdir(parents=True, exist_ok=True)
    rows, info, sizes, notes = [], {}, [], list(b["notes"])
    try:
        if b["paths"]:
            encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"])).to(device)
            rows, info = throughput_rows(cfg, encoder, device, work)
            del encoder
        for m in b["cache_bytes_models"]:
            try:
                sizes.append(cache_bytes(cfg, m, device, work))
            except Exception as err:
                notes.append(f"cache bytes for {m} failed: {type(err).__name__}: {err}"[:300])
    finally:
        if tmp:
            shutil.rmtree(work, ignore_errors=True)
    if info.get("cache_s"):
        notes.append(f"Caching {b['samples']} scenes with `data_prep/cache_features.py` (model load included) took "
                     f"{info['cache_s']:.1f} s ({info['cache_samples_s']:.0f} samples/s); the cached paths read "
                     f"{info.get('feature_shard_copies', 1)} aliases of each feature shard.")
    res = {
        "kind": "train_throughput",
        "machine": machine_info(device),
        "config": {"model": cfg["encoder"]["model"], "pretrained": cfg["encoder"]["pretrained"],
                   "precision": b["precision"], "num_options": cfg["data"]["num_options"],
                   "num_workers": cfg["data"]["num_workers"], "warmup": b["warmup"], "samples": b["samples"],
                   "max_tokens": cfg["encoder"]["max_tokens"], "scorer": cfg["scorer"], "maps": cfg["maps"]},
        "rows": rows,
        "cache_bytes": sizes,
        "info": info,
        "notes": notes,
        "started": started,
        "finished": time.time(),
    }
    save_result(res, b)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(bench_config(argv, DEFAULT_CONFIG))


if __name__ == "__main__":
    run_command(main)
