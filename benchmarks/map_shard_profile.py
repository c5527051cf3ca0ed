"""Where the time of reading map shards goes: one batch of map-shard samples (ViT-B-16 shapes)
written by the real member writer, read back through the real pipeline and decoder, timed and
profiled (cProfile, cumulative time per function, and the share of the main steps).

    python benchmarks/map_shard_profile.py [bench.samples=256 ...]

Writes ``bench.output`` (JSON) and prints it.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from dcsm.commands.runner import run_command
from dcsm.data.shards.read import ShardPipeline
from dcsm.data.shards.write import write_tar
from dcsm.features.map_cache import decode_map_sample, map_members, map_record, record_digest
from dcsm.io import atomic_write_json
from dcsm.model.batch import collate_mcq
from write_results import REPO, bench_config, machine_info, repo_path

DEFAULT_CONFIG = REPO / "benchmarks" / "map_shard_profile.yaml"
#: the steps reported as shares of a pass: (label, function name as cProfile keys it)
#: (the first map shards held torch.save zips: benchmarks/results/map_shard_profile_pth_members.json
#: has their profile, where torch.load's weights-only unpickler took 52%)
STEPS = (("read tar members", "tar_file_iterator"), ("safetensors member decode (no pickle)", "decode_tensors"),
         ("sha256 of the tensors", "tensor_checksum"), ("decode_map_sample in all", "decode_map_sample"),
         ("collate_mcq (stack the batch)", "collate_mcq"))


def write_batch(cfg: dict, path: Path) -> Path:
    b = cfg["bench"]
    k, rows = cfg["data"]["num_options"], cfg["encoder"]["max_tokens"]
    spec = {"model": "ViT-B-16", "pretrained": None}
    digest = record_digest(map_record(cfg, spec))
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(k * rows, dtype=torch.bool)
    mask[torch.randperm(k * rows, generator=g)[: b["real_rows"]]] = True
    members = []
    for i in range(b["samples"]):
        s = {"maps": torch.randn(k, rows, b["num_patches"], generator=g).half(), "token_mask": mask.view(k, rows),
             "pooled_cos": torch.randn(k, generator=g).half(), "label": torch.tensor(0), "category": torch.tensor(0)}
        members += map_members(f"s{i:06d}", s, {"captions": ["a"] * k, "label": 0, "meta": {}}, spec, digest)
    write_tar(path, members)
    return path, digest


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = bench_config(argv, DEFAULT_CONFIG)
    b = cfg["bench"]
    with tempfile.TemporaryDirectory() as tmp:
        shard, digest = write_batch(cfg, Path(tmp) / "maps.tar")

        def one_pass() -> int:
            samples = list(ShardPipeline(str(shard), lambda s: decode_map_sample(s, digest=digest, categories=None)))
            collate_mcq(samples)
            return len(samples)

        one_pass()  # warm-up: imports, file cache
        times = []
        for _ in range(b["repeats"]):
            t = time.perf_counter()
            n = one_pass()
            times.append(time.perf_counter() - t)
        prof = cProfile.Profile()
        prof.enable()
        one_pass()
        prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    total = max(v[3] for v in stats.values())
    cum = {}
    for (file, _, name), v in stats.items():
        cum[name] = max(cum.get(name, 0.0), v[3])
    shares = {label: round(cum.get(fn, 0.0) / total, 3) for label, fn in STEPS}
    top = sorted(((v[3], f"{Path(f).name}:{name}") for (f, _, name), v in stats.items()), reverse=True)[: b["top"]]
    result = {"machine": machine_info(torch.device("cpu")), "samples": n, "ms_per_sample": 1e3 * statistics.median(times) / n,
              "ms_per_batch": 1e3 * statistics.median(times), "profiled_pass_s": total, "shares": shares,
              "top_cumulative_s": [{"function": name, "s": round(s, 4)} for s, name in top]}
    if b["output"]:
        atomic_write_json(repo_path(b["output"]), result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    run_command(main)
