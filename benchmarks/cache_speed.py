"""Host batching, training speed per cache kind, and cache bytes — issue #24's benchmark.

    python benchmarks/cache_speed.py                       # benchmarks/cache_speed.yaml, ~2-3 min on 2 CPU cores
    python benchmarks/cache_speed.py bench.compile=true    # + the compiled head (CPU: ~2 more minutes)

Measured in one process, the compared variants interleaved (one batch of each in turn), so
load from other jobs hits every variant alike; read the ratios.

1. **Host batching** (ms per batch at 64 / 256 / 1,024): the in-memory cache's old path
   (per-sample ``__getitem__`` + ``collate_mcq``) vs one gather per key
   (:meth:`~dcsm.features.memory.FeatureDataset.__getitems__`), against the head's own training
   step at ``bench.batch_size`` (the target: batching <= 10% of the step).
2. **Training pairs/s**, the same head (``configs/default.yaml``: ViT-B-16 random init, grid CNN),
   ``DCSMModule.training_step`` + backward + AdamW per batch: ``live`` (raw images, the frozen
   CLIP every step, a small batch), ``embedding_shards`` / ``map_shards`` (feature / map shards
   read and decoded in the main process, ``num_workers=0``), ``embeddings_memory`` /
   ``maps_memory`` (the in-memory caches through the batched loader), ``head_resident``
   (embedding batches already in place: the head's own speed) and ``maps_resident``. Features are
   random unit-norm vectors of ViT-B-16's shapes (speed does not depend on the values).
3. **Bytes per sample** and the disk / memory of a 1M-sample cache per cache kind (embeddings
   fp16 with and without opposite images, int8, maps), ViT-B-16 and ViT-L-14: exact arithmetic
   from the shapes (on-disk packed rows; in memory the rows are unpacked to ``max_tokens``),
   plus the measured tar + ``torch.save`` overhead per sample of the shards written in (2).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dcsm.data.synthetic.dataset import SceneMCQ
from dcsm.data.shards import write_tar
from dcsm.data.shards.read import ShardPipeline
from dcsm.data.synthetic.scenes import SyntheticScenes
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.features import FeatureBatch
from dcsm.model.batch import collate_mcq
from dcsm.features.map_cache import MapBatch, decode_map_sample, map_head, map_members, maps_of, record_digest, map_record
from dcsm.features.memory import FeatureDataset, place_caches
from dcsm.features.shards import feature_members, feature_sample_pipeline
from dcsm.train.module import DCSMModule, compile_head
from dcsm.commands.runner import run_command
from write_results import REPO, bench_config, machine_info, machine_line, save_result, table, versions_line

DEFAULT_CONFIG = REPO / "benchmarks" / "cache_speed.yaml"
SECTION = "cache_speed.py"
# open_clip model configs of the sizes in the bytes table (no model is built for them)
SHAPES = {"ViT-B-16": (196, 512), "ViT-L-14": (256, 768), "ViT-B-32": (49, 512)}


def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_features(n: int, p: int, d: int, k: int, length: int, rows: tuple[int, int], seed: int = 0) -> FeatureBatch:
    """Unit-norm fp16 features of n samples (ViT shapes), real rows per option in [rows)."""
    g = torch.Generator().manual_seed(seed)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1).half()  # noqa: E731
    mask = torch.arange(length) < torch.randint(rows[0], rows[1], (n, k, 1), generator=g)
    ids = torch.randint(1, 49407, (n, k, length), generator=g) * mask
    return FeatureBatch(patches=unit(n, p, d), image_pooled=unit(n, d), tokens=unit(n, k, length, d) * mask[..., None],
                        token_mask=mask, token_ids=ids, text_pooled=unit(n, k, d), label=torch.randint(0, k, (n,), generator=g),
                        extras={"index": torch.arange(n), "category": torch.zeros(n, dtype=torch.long)})


# ----------------------------------------------------------------------------- 1. host batching
def batching_rows(ds: FeatureDataset, sizes: list[int], repeats: int, head_step: Callable[[], None],
                  step_batch: int) -> tuple[list[dict[str, Any]], float]:
    """ms per batch of both batching paths at each size; at ``step_batch`` a head step is timed
    in the same rounds. Returns the rows and the head step's median ms."""
    rows, steps = [], []
    g = torch.Generator().manual_seed(1)
    for bs in sizes:
        old, new = [], []
        for _ in range(repeats):  # interleaved
            idx = torch.randperm(len(ds), generator=g)[:bs].tolist()
            t = time.perf_counter()
            collate_mcq([ds[i] for i in idx])
            old.append(time.perf_counter() - t)
            t = time.perf_counter()
            ds.__getitems__(idx)
            new.append(time.perf_counter() - t)
            if bs == step_batch:
                t = time.perf_counter()
                head_step()
                steps.append(time.perf_counter() - t)
        o, n = 1e3 * statistics.median(old), 1e3 * statistics.median(new)
        rows.append({"batch": bs, "per_sample_ms": o, "gather_ms": n, "speedup": o / n})
    return rows, 1e3 * statistics.median(steps) if steps else float("nan")


# ----------------------------------------------------------------------------- 2. training paths
def new_module(cfg: dict, encoder: FrozenCLIP, device: torch.device) -> tuple[DCSMModule, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = DCSMModule(cfg, encoder=encoder).to(device).train()
    module.log = lambda *a, **k: None  # no trainer: Lightning's logging is not what is timed
    return module, torch.optim.AdamW(module.head.parameters(), lr=1e-3)


def step(module: DCSMModule, opt: torch.optim.Optimizer, batch: Any) -> None:
    loss = module.training_step(batch, 0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def forever(make: Callable[[], Any]) -> Iterator[Any]:
    while True:
        yield from make()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> int:
    return write_tar(path, members)


def training_rows(cfg: dict, encoder: FrozenCLIP, feats: FeatureBatch, device: torch.device, work: Path,
                  info: dict) -> list[dict[str, Any]]:
    b = cfg["bench"]
    bs, paths = b["batch_size"], list(b["paths"])
    module, opt = new_module(cfg, encoder, device)
    head = map_head(cfg, encoder)
    n = len(feats)
    spec = encoder.spec.to_dict()
    maps = MapBatch.cat(maps_of(head, feats.map(lambda t: t[i:i + bs])) for i in range(0, n, bs))
    emb_mem, map_mem = FeatureDataset(feats), FeatureDataset(maps)
    info["memory_bytes_per_sample"] = {"embeddings": emb_mem.nbytes() / n, "maps": map_mem.nbytes() / n}
    info["cache_place"] = place_caches([emb_mem, map_mem], "auto", device, 0.5)
    sources: dict[str, Iterator[Any]] = {}
    if "embedding_shards" in paths or "map_shards" in paths:
        rec = {"captions": ["a"] * feats.tokens.shape[1], "label": 0, "meta": {}}
        digest = record_digest(map_record(cfg, spec))
        emb_members, map_members_ = [], []
        for i in range(n):
            s = {k: v for k, v in feats.sample(i).items() if isinstance(v, torch.Tensor)}
            emb_members += feature_members(f"s{i:06d}", s, {**rec, "label": int(s["label"])}, spec)
            m = {k: v for k, v in maps.sample(i).items() if isinstance(v, torch.Tensor)}
            map_members_ += map_members(f"s{i:06d}", m, {**rec, "label": int(m["label"])}, spec, digest)
        info["shard_bytes_per_sample"] = {"embeddings": write_shard(work / "emb.tar", emb_members) / n,
                                          "maps": write_shard(work / "maps.tar", map_members_) / n}
        decode = lambda s: decode_map_sample(s, digest=digest, categories=None)  # noqa: E731
        if "embedding_shards" in paths:
            sources["embedding_shards"] = forever(lambda: DataLoader(
                feature_sample_pipeline(str(work / "emb.tar"), categories=None), batch_size=bs, collate_fn=collate_mcq))
        if "map_shards" in paths:
            sources["map_shards"] = forever(lambda: DataLoader(
                ShardPipeline(str(work / "maps.tar"), decode), batch_size=bs, collate_fn=collate_mcq))
    loader = lambda ds: forever(lambda: DataLoader(ds, batch_size=bs, shuffle=True, collate_fn=collate_mcq))  # noqa: E731
    sources["embeddings_memory"] = loader(emb_mem)
    sources["maps_memory"] = loader(map_mem)
    resident_e = feats.map(lambda t: t[:bs]).to(device)
    resident_m = maps.map(lambda t: t[:bs]).to(device)
    sources["head_resident"] = forever(lambda: [resident_e])
    sources["maps_resident"] = forever(lambda: [resident_m])
    if "live" in paths:
        scenes = SyntheticScenes(64, split="train", seed=0, image_size=cfg["data"]["image_size"],
                                 num_options=cfg["data"]["num_options"], categories=tuple(cfg["data"]["categories"]))
        raw = SceneMCQ(scenes, encoder.preprocess, tuple(cfg["data"]["categories"]))
        sources["live"] = forever(lambda: DataLoader(raw, batch_size=b["live_batch_size"], collate_fn=collate_mcq))
    compiled = None
    if b["compile"]:
        compiled = new_module(cfg, encoder, device)
        compile_head(compiled[0].head, True, cfg["compile"]["mode"], device)
        sources["head_resident_compiled"] = forever(lambda: [resident_e])
        paths.append("head_resident_compiled")
    times: dict[str, list[float]] = {p: [] for p in paths}
    sizes: dict[str, int] = {}
    for r in range(b["warmup"] + b["timed_batches"]):  # round-robin: one batch of every path in turn
        for p in paths:
            mod, o = compiled if p == "head_resident_compiled" else (module, opt)
            sync(device)
            t = time.perf_counter()
            batch = next(sources[p])
            batch = batch.to(device) if hasattr(batch, "to") and not isinstance(batch, dict) else {
                k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            step(mod, o, batch)
            sync(device)
            if r >= b["warmup"]:
                times[p].append(time.perf_counter() - t)
                sizes[p] = len(batch["captions"]) if isinstance(batch, dict) else len(batch)
    k = cfg["data"]["num_options"]
    rows = []
    for p in paths:
        s = sum(times[p])
        rows.append({"path": p, "batch": sizes[p], "steps": len(times[p]), "seconds": s,
                     "ms_per_step": 1e3 * statistics.median(times[p]), "pairs_s": sizes[p] * k * len(times[p]) / s})
    ref = next(r["pairs_s"] for r in rows if r["path"] == "head_resident")
    for r in rows:
        r["vs_head_resident"] = r["pairs_s"] / ref
    return rows


# ----------------------------------------------------------------------------- 3. bytes
def bytes_rows(cfg: dict, overhead: dict[str, float] | None) -> list[dict[str, Any]]:
    b = cfg["bench"]
    k, length, t = cfg["data"]["num_options"], cfg["encoder"]["max_tokens"], float(b["bytes_real_rows"])
    out = []
    for model in b["bytes_models"]:
        p, d = SHAPES[model]
        common = k * length * (1 + 4) + 8  # token_mask (bool) + token_ids (int32) + label
        emb = p * d * 2 + d * 2 + t * d * 2 + k * d * 2 + common
        opp = p * d * 2 + d * 2
        int8 = p * (d + 2) + d * 2 + t * (d + 2) + k * d * 2 + common
        maps = t * p * 2 + k * length + k * 4 + 8  # packed rows fp16 + mask + pooled cosines fp32 + label
        mem_emb = p * d * 2 + d * 2 + k * length * d * 2 + k * d * 2 + k * length * (1 + 8) + 8  # tokens unpacked, ids int64
        mem_maps = k * length * p * 2 + k * length + k * 4 + 8
        ov = overhead or {}
        row = {"model": model, "P": p, "D": d, "real_rows": t,
               "embeddings_fp16_opposite": emb + opp, "embeddings_fp16": emb, "embeddings_int8": int8, "maps": maps,
               "memory_embeddings": mem_emb, "memory_maps": mem_maps, "maps_vs_fp16": maps / emb,
               "overhead_embeddings": ov.get("embeddings"), "overhead_maps": ov.get("maps")}
        out.append(row)
    return out


# ----------------------------------------------------------------------------- render
def render(res: dict[str, Any]) -> tuple[str, str, str]:
    m, c = res["machine"], res["config"]
    heading = f"{machine_line(m)} — {c['model']} shapes (random init), {c['num_options']} options"
    lines = [f"Versions: {versions_line(m)}.", ""]
    lines += [f"**Host batching** (in-memory cache, {c['samples']} samples; median of {c['collate_repeats']} interleaved "
              f"repeats): the old per-sample `__getitem__` + `collate_mcq` vs one gather per key.", ""]
    step_ms = res["head_step_ms"]
    lines += table(["batch", "per-sample + collate, ms", "one gather per key, ms", "speed-up", "gather / head step"],
                   [[r["batch"], f"{r['per_sample_ms']:,.1f}", f"{r['gather_ms']:,.1f}", f"{r['speedup']:.1f}x",
                     f"{100 * r['gather_ms'] / step_ms:.1f}%" if r["batch"] == c["batch_size"] else "—"]
                    for r in res["batching"]])
    lines += ["", f"Head step at batch {c['batch_size']} (resident embeddings, median): {step_ms:,.0f} ms.", ""]
    lines += [f"**Training pairs/s**, the same head, {c['timed_batches']} timed steps per path after {c['warmup']} "
              "warm-up, paths interleaved round-robin (one batch each in turn); a step = fetch + copy + "
              "`training_step` + backward + AdamW.", ""]
    lines += table(["path", "batch", "steps", "ms per step", "pairs/s", "vs head alone (resident)"],
                   [[r["path"], r["batch"], r["steps"], f"{r['ms_per_step']:,.0f}", f"{r['pairs_s']:,.1f}",
                     f"{r['vs_head_resident']:.2f}x"] for r in res["training"]])
    ov = res["info"].get("shard_bytes_per_sample", {})
    lines += ["", f"**Cache bytes per sample** ({c['num_options']} options, max_tokens {c['max_tokens']}, "
              f"{res['bytes'][0]['real_rows'] if res['bytes'] else '?'} real token rows) and a {res['bytes_samples']:,}-sample "
              "cache, from the shapes (on disk: tokens / map rows packed to the real rows; in memory: unpacked to "
              "max_tokens, as the in-memory caches hold them).", ""]
    gb = lambda x: f"{x * res['bytes_samples'] / 1e9:,.1f}"  # noqa: E731
    lines += table(["model", "P x D", "emb. fp16 + opposite", "emb. fp16", "emb. int8", "maps", "maps / emb. fp16",
                    "1M disk GB: fp16+opp / fp16 / int8 / maps", "1M memory GB: emb. / maps"],
                   [[r["model"], f"{r['P']} x {r['D']}", f"{r['embeddings_fp16_opposite']:,.0f}",
                     f"{r['embeddings_fp16']:,.0f}", f"{r['embeddings_int8']:,.0f}", f"{r['maps']:,.0f}",
                     f"1/{1 / r['maps_vs_fp16']:.1f}",
                     f"{gb(r['embeddings_fp16_opposite'])} / {gb(r['embeddings_fp16'])} / {gb(r['embeddings_int8'])} / {gb(r['maps'])}",
                     f"{gb(r['memory_embeddings'])} / {gb(r['memory_maps'])}"] for r in res["bytes"]])
    if ov:
        lines += ["", f"Measured shards of (2) ({c['model']} shapes, {res['info'].get('mean_real_rows', 0):.1f} real rows): "
                  f"{ov['embeddings']:,.0f} bytes/sample (embeddings fp16, no opposite) and {ov['maps']:,.0f} (maps), "
                  f"i.e. maps = 1/{ov['embeddings'] / ov['maps']:.1f} of the embedding shard with the tar and member overhead (embeddings: torch.save zips; maps: safetensors)."]
    lines += [""] + [f"{x}" for x in res.get("notes", [])]
    return SECTION, heading, "\n".join(lines).strip()


# ----------------------------------------------------------------------------- run
def run(cfg: dict) -> dict[str, Any]:
    b = cfg["bench"]
    device = resolve_device(b["device"])
    if b["threads"]:
        torch.set_num_threads(int(b["threads"]))
    started = time.time()
    encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"])).to(device)
    p, d = encoder.num_patches, encoder.embed_dim
    feats = random_features(b["samples"], p, d, cfg["data"]["num_options"], cfg["encoder"]["max_tokens"],
                            tuple(b["real_rows"]))
    info: dict[str, Any] = {"mean_real_rows": float(feats.token_mask.sum((1, 2)).float().mean())}
    with tempfile.TemporaryDirectory(prefix="dcsm-cache-speed-") as work:
        training = training_rows(cfg, encoder, feats, device, Path(work), info)
    module, opt = new_module(cfg, encoder, device)
    resident = feats.map(lambda t: t[:b["batch_size"]]).to(device)

    def head_step() -> None:
        sync(device)
        step(module, opt, resident)
        sync(device)

    head_step()  # warm-up
    batching, head_step_ms = batching_rows(FeatureDataset(feats), list(b["collate_batch_sizes"]), b["collate_repeats"],
                                           head_step, b["batch_size"])
    notes = list(b["notes"])
    res = {
        "kind": "cache_speed", "machine": machine_info(device),
        "config": {"model": cfg["encoder"]["model"], "num_options": cfg["data"]["num_options"],
                   "max_tokens": cfg["encoder"]["max_tokens"], "samples": b["samples"], "batch_size": b["batch_size"],
                   "timed_batches": b["timed_batches"], "warmup": b["warmup"], "collate_repeats": b["collate_repeats"],
                   "maps": cfg["maps"], "scorer": cfg["scorer"]},
        "batching": batching, "head_step_ms": head_step_ms, "training": training,
        "bytes": bytes_rows(cfg, info.get("shard_bytes_per_sample")), "bytes_samples": b["bytes_samples"],
        "info": info, "notes": notes, "started": started, "finished": time.time(),
    }
    save_result(res, b)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(bench_config(argv, DEFAULT_CONFIG))


if __name__ == "__main__":
    run_command(main)
