"""How far int8 embedding shards (``cache_features.dtype=int8``) move a *trained* head's scores.

    python benchmarks/int8_scores.py bench.checkpoint=runs/smoke/checkpoints/best-....ckpt

Encodes a synthetic split with the checkpoint's encoder, sends every sample through the real
feature-shard member writer and reader twice (fp16 and int8: ``feature_members`` ->
``decode_feature_sample``) and scores both with the head: max / mean abs score change, the spread
(std) of the scores and of the CNN's part, argmax agreement and accuracy of each. Prints JSON.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import torch

from dcsm.data.synthetic.dataset import SyntheticDataConfig, scene_dataset
from dcsm.model.batch import FeatureBatch, collate_mcq
from dcsm.features.memory import cache_dataset
from dcsm.features.shards import decode_feature_sample, feature_members
from dcsm.io import atomic_write_json
from dcsm.train.module import load_module
from dcsm.commands.runner import run_command
from write_results import REPO, bench_config

DEFAULT_CONFIG = REPO / "benchmarks" / "int8_scores.yaml"


def through_shards(f: FeatureBatch, int8: bool) -> FeatureBatch:
    out = []
    for i in range(len(f)):
        s = {k: v for k, v in f.sample(i).items() if isinstance(v, torch.Tensor)}
        members = dict(feature_members(f"k{i}", s, {"captions": [""] * s["tokens"].shape[0], "label": int(s["label"]),
                                                    "meta": {}}, {}, int8=int8))
        sample = {"__key__": f"k{i}", **{n.split(".", 1)[1]: d for n, d in members.items()}}
        out.append(decode_feature_sample(sample, categories=None))
    return collate_mcq(out)


@torch.no_grad()
def run(cfg: dict) -> dict[str, Any]:
    b = cfg["bench"]
    if not b["checkpoint"]:
        raise ValueError("bench.checkpoint is not set. Fix: bench.checkpoint=PATH.ckpt (written by train.py).")
    module = load_module(b["checkpoint"]).eval()
    data = replace(SyntheticDataConfig.from_config(module.cfg), test_size=b["size"], val_size=b["size"],
                   shifted_size=b["size"], heldout_size=b["size"], progress=False)
    feats = cache_dataset(module.encoder, scene_dataset(data, b["split"], module.encoder.preprocess), b["batch_size"], 0,
                          progress=False)
    f16, f8 = through_shards(feats, False), through_shards(feats, True)
    model = module.model
    s16, s8 = model(f16), model(f8)
    cnn = model.head.score_maps(model.maps(f16))
    d = (s16 - s8).abs()
    res = {"checkpoint": str(b["checkpoint"]), "split": b["split"], "samples": len(f16),
           "max_abs_change": d.max().item(), "mean_abs_change": d.mean().item(), "score_std": s16.std().item(),
           "cnn_score_std": cnn.std().item(), "argmax_agree": (s16.argmax(1) == s8.argmax(1)).float().mean().item(),
           "acc_fp16": (s16.argmax(1) == f16.label).float().mean().item(),
           "acc_int8": (s8.argmax(1) == f8.label).float().mean().item()}
    print(json.dumps(res, indent=1))
    if b["output"]:
        atomic_write_json(b["output"], res)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(bench_config(argv, DEFAULT_CONFIG))


if __name__ == "__main__":
    run_command(main)
