"""Convert the DCSM paper's released training data into our image shards.

    python data_prep/from_reference.py reference_data.data_path=DATA reference_data.out=OUT [key=value ...]
    python data_prep/from_reference.py --config my.yaml

Knobs: the ``reference_data`` section of ``configs/from_reference.yaml`` (its one home). The
layout, the file name patterns and the captions are described in
:mod:`dcsm.data.reference_layout`. Every image becomes one shard sample per phrasing, with its
opposite image (``KEY.opp.*``; none for COCO crops) and the opposite caption as one of the
options (``meta.opposite_label`` when the opposite image exists), ready for
``loss.kind=paired data.source=shards``. Missing or unreadable images are skipped and listed in
the manifest's ``stats``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Sequence

from ..config_checks import check_config, check_writable
from .runner import OWN_DEFAULTS
from ..config import parse_cli, to_plain
from ..data.reference_layout import ReferenceLayout, scan_reference_data
from ..data.shards import write_shards
from .pair_shards import PairRow, PairSamples, plan_samples, print_summary

CONFIG = OWN_DEFAULTS[__name__]
SECTION = "reference_data"
KEY_PREFIX = "reference"
SPLIT_BUCKETS = 10_000  # resolution of val_fraction


def write_samples(samples: Sequence[dict[str, Any]], out_dir: str | Path, *, num_options: int, samples_per_shard: int,
                  seed: int, prefix: str = "shard", overwrite: bool = False, info: dict | None = None) -> dict:
    """The one bridge to the pair-shard writer: plain samples -> shards + manifest (returned).

    ``samples`` are :func:`dcsm.data.reference_layout.scan_reference_data` dicts; row ``i``
    (1-based) becomes key ``reference-{i:08d}``.
    """
    rows = [PairRow(row=i, image=s["image"], caption=s["caption"], opposite_image=s["opposite_image"],
                    opposite_caption=s["opposite_caption"], category=s["category"])
            for i, s in enumerate(samples, start=1)]
    plans, stats = plan_samples(rows, image_root=None, num_options=num_options, seed=seed, key_prefix=KEY_PREFIX)
    for plan in plans:  # where each sample came from, for inspection
        plan["meta"]["origin"] = samples[plan["meta"]["row"] - 1]["origin"]
    info = {"source": "reference", "num_options": num_options, "seed": seed, "rows": len(rows), **(info or {})}
    return write_shards(PairSamples(plans), out_dir, samples_per_shard, prefix, info=info, stats=stats, overwrite=overwrite)


def _is_val(image: str, seed: int, fraction: float) -> bool:
    """Deterministic image-level split: both phrasings of an image land on the same side."""
    return zlib.crc32(f"{seed}:{Path(image).name}".encode()) % SPLIT_BUCKETS < fraction * SPLIT_BUCKETS


def convert(cfg: dict[str, Any]) -> dict[str, dict]:
    """Scan ``cfg['data_path']`` and write ``out/train`` (+ ``out/val``); returns the manifests by split."""
    if not cfg.get("data_path") or not cfg.get("out"):
        raise ValueError(f"{SECTION}.data_path and {SECTION}.out are required. "
                         f"Fix: {SECTION}.data_path=<the paper's data folder> {SECTION}.out=<shard folder>")
    check_writable(f"{SECTION}.out", cfg["out"], "folder")
    fraction = float(cfg["val_fraction"])
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{SECTION}.val_fraction must be in [0, 1), got {fraction}")
    layout = ReferenceLayout(
        spatial_dir=cfg["spatial_dir"], attributes_dir=cfg["attributes_dir"], smallbig_dir=cfg["smallbig_dir"],
        coco_dir=cfg["coco_dir"], negation_json=cfg["negation_json"], negation_words=tuple(cfg["negation_words"]),
        phrasings=tuple(cfg["phrasings"]), sources=tuple(cfg["sources"]), seed=int(cfg["seed"]),
    )
    samples = scan_reference_data(cfg["data_path"], layout)
    splits = {"train": [s for s in samples if not _is_val(s["image"], layout.seed, fraction)]}
    if fraction > 0:
        splits["val"] = [s for s in samples if _is_val(s["image"], layout.seed, fraction)]
        if not splits["val"]:
            raise ValueError(f"{SECTION}.val_fraction={fraction} held out no image of {len(samples)} samples. "
                             f"Fix: raise it, or {SECTION}.val_fraction=0 (no val split)")
    info = {"data_path": str(Path(cfg["data_path"]).resolve()), "sources": list(layout.sources),
            "phrasings": list(layout.phrasings), "val_fraction": fraction}
    return {
        split: write_samples(rows, Path(cfg["out"]) / split, num_options=int(cfg["num_options"]),
                             samples_per_shard=int(cfg["samples_per_shard"]), seed=int(cfg["seed"]),
                             prefix=cfg["prefix"], overwrite=bool(cfg["overwrite"]), info={**info, "split": split})
        for split, rows in splits.items()
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    """``[--config FILE] [reference_data.KEY=value ...]`` (defaults: ``configs/from_reference.yaml``)."""
    cfg = check_config(to_plain(parse_cli(argv, default=CONFIG)))[SECTION]
    manifests = convert(cfg)
    for split, m in manifests.items():
        print_summary(Path(cfg["out"]) / split, m)
    return manifests
