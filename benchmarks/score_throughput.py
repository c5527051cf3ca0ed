"""Scoring throughput: plain CLIP cosine vs the DCSM scorer end to end vs the DCSM head alone.

    python benchmarks/score_throughput.py                                   # benchmarks/score_throughput.yaml
    python benchmarks/score_throughput.py bench.models=[ViT-B-16,ViT-L-14] bench.output=score.json
    python benchmarks/score_throughput.py bench.device=cpu bench.batch_size=16 bench.precisions=[fp32]
    python benchmarks/score_throughput.py --config MY.yaml   # a YAML with 'base: score_throughput.yaml'

Same encoder weights, same images and the same B x K captions for every path:

(a) plain CLIP: open_clip ``encode_image`` + ``encode_text`` (full 77-token context), normalised
    cosine of each image with its K options;
(b) DCSM end to end: ``DCSM(images, options)`` (``DCSM.encode``: patch + token embeddings, then the head);
(c) ``DCSM(features)`` on (b)'s :class:`~dcsm.features.FeatureBatch` in the cache dtype (the cached
    training/evaluation path: the head alone).

A pair is one (image, caption option): pairs/s = B x K / seconds per batch. Writes a JSON
(``bench.output``) and a table into ``benchmarks/RESULTS.md`` (``bench.results_md``).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from dcsm.data.synthetic.scenes import SyntheticScenes
from dcsm.model.encoders import FrozenCLIP
from dcsm.features import CACHE_DTYPE, FeatureBatch
from dcsm.model.dcsm import DCSM, build_dcsm
from dcsm.commands.runner import run_command
from write_results import REPO, bench_config, machine_info, save_result

DEFAULT_CONFIG = REPO / "benchmarks" / "score_throughput.yaml"
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"bench.device={name} but CUDA is not available. Fix: bench.device=cpu or auto.")
    return torch.device(name)


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """fp32: nothing; bf16: autocast to bfloat16 on the device."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown bench.precisions entry '{precision}'. Fix: use {sorted(PRECISIONS)}.")
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls after ``warmup`` untimed ones (device-synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


@contextlib.contextmanager
def plain_visual(encoder: FrozenCLIP) -> Iterator[None]:
    """open_clip's own image path: the visual tower returns the pooled embedding only."""
    visual = encoder.model.visual
    old, visual.output_tokens = visual.output_tokens, False
    try:
        yield
    finally:
        visual.output_tokens = old


def scene_batch(cfg: dict, encoder: FrozenCLIP, n: int, split: str) -> tuple[torch.Tensor, list[list[str]]]:
    """``n`` synthetic scenes -> preprocessed images ``(n, 3, H, W)`` and n lists of K captions."""
    d = cfg["data"]
    scenes = SyntheticScenes(n, split=split, seed=d["seed"], image_size=d["image_size"], num_options=d["num_options"],
                             categories=d["categories"])
    items = [scenes[i] for i in range(n)]
    return torch.stack([encoder.preprocess(s.image) for s in items]), [list(s.captions) for s in items]


@torch.no_grad()
def plain_clip(encoder: FrozenCLIP, images: torch.Tensor, captions: list[list[str]]) -> torch.Tensor:
    """(a): scores ``(N, K)`` as a plain open_clip user computes them."""
    model = encoder.model
    n, k = len(captions), len(captions[0])
    ids = encoder.tokenizer([c for opts in captions for c in opts]).to(images.device)
    with plain_visual(encoder):
        img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(ids), dim=-1)
    return torch.einsum("nd,nkd->nk", img.float(), txt.float().view(n, k, -1))


@torch.no_grad()
def dcsm_scores(model: DCSM, *inputs: Any) -> torch.Tensor:
    """(b) ``model(images, options)``: live features + head; (c) ``model(features)``: the head
    alone -> scores ``(N, K)``."""
    return model(*inputs)


def cached(features: FeatureBatch) -> FeatureBatch:
    """Feature batch with floats in the cache dtype, on their device (what a cached loader yields)."""
    return features.map(lambda t: t.to(CACHE_DTYPE) if t.is_floating_point() else t)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_model(cfg: dict, model_name: str, device: torch.device) -> list[dict[str, Any]]:
    """All precisions of one model; a failing precision is recorded, the others still run."""
    b = cfg["bench"]
    cfg = {**cfg, "encoder": {**cfg["encoder"], "model": model_name}}
    t0 = time.perf_counter()
    model = build_dcsm(cfg).to(device).eval()
    encoder = model.encoder
    build_s = time.perf_counter() - t0
    images, captions = scene_batch(cfg, encoder, b["batch_size"], b["split"])
    images = images.to(device)
    n, k = len(captions), len(captions[0])
    pairs = n * k
    unique = len({c for opts in captions for c in opts})
    # fairness check: (a)'s cosine is the CLIP baseline that (b)'s features carry too
    f32 = model.encode(images, captions)  # encoding runs without autograd
    check = float((plain_clip(encoder, images, captions) - DCSM.clip_scores(f32)).abs().max())
    rows = []
    for precision in b["precisions"]:
        row: dict[str, Any] = {"model": model_name, "precision": precision, "batch_size": n, "num_options": k,
                               "unique_captions": unique, "build_s": round(build_s, 1), "clip_vs_pooled_max_abs_diff": check}
        try:
            with precision_context(precision, device):
                feats = cached(model.encode(images, captions))
                paths = {
                    "clip": lambda: plain_clip(encoder, images, captions),
                    "dcsm": lambda: dcsm_scores(model, images, captions),
                    "head": lambda: dcsm_scores(model, feats),
                }
                for name, fn in paths.items():
                    reset_peak(device)
                    times = timed(fn, device, b["warmup"], b["repeats"])
                    med = statistics.median(times)
                    row.update({f"{name}_ms": med * 1e3, f"{name}_pairs_s": pairs / med,
                                f"{name}_times_ms": [round(t * 1e3, 2) for t in times], f"{name}_peak_mib": peak_mib(device)})
            row["ratio"] = row["dcsm_pairs_s"] / row["clip_pairs_s"]
        except Exception as err:  # e.g. bf16 unsupported on this device: keep the other rows
            row["error"] = f"{type(err).__name__}: {err}"[:300]
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if not k.endswith("times_ms")),
              flush=True)
        rows.append(row)
    del encoder, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def run(cfg: dict) -> dict[str, Any]:
    b = cfg["bench"]
    device = resolve_device(b["device"])
    if b["threads"]:
        torch.set_num_threads(int(b["threads"]))
    if int(b["batch_size"]) < 1 or int(b["repeats"]) < 1:
        raise ValueError("bench.batch_size and bench.repeats must be >= 1.")
    started = time.time()
    rows = [r for m in b["models"] for r in bench_model(cfg, m, device)]
    res = {
        "kind": "score_throughput",
        "machine": machine_info(device),
        "config": {"batch_size": b["batch_size"], "num_options": cfg["data"]["num_options"], "repeats": b["repeats"],
                   "warmup": b["warmup"], "pretrained": cfg["encoder"]["pretrained"], "max_tokens": cfg["encoder"]["max_tokens"],
                   "scorer": cfg["scorer"], "maps": cfg["maps"]},
        "rows": rows,
        "notes": list(b["notes"]),
        "started": started,
        "finished": time.time(),
    }
    save_result(res, b)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(bench_config(argv, DEFAULT_CONFIG))


if __name__ == "__main__":
    run_command(main)
