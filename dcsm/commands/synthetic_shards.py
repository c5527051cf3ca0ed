"""Write synthetic scenes (:mod:`dcsm.data.synthetic.scenes`) to WebDataset shards.

    python data_prep/make_synthetic_shards.py synthetic_shards.out=DIR synthetic_shards.num_samples=N \
        [synthetic_shards.split=train synthetic_shards.samples_per_shard=M ...]

Settings: the ``synthetic_shards:`` section of ``configs/default.yaml`` (scene size, options,
categories and seed default to the ``data:`` section's). Sample ``i`` is
``make_scene(i, split=..., seed=...)``, key ``{split}-{i:08d}``, with its opposite image as
``KEY.opp.png``; ``meta`` holds the scene description plus ``category`` and ``opposite_label``.
Rerunning with the same settings keeps complete shards (their scenes are not even rendered
again); other settings into the same folder are refused unless ``overwrite=true``. Layout:
:mod:`dcsm.data.shards.format`.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..data.shards.write import write_shards
from ..data.synthetic.scenes import make_scene
from ..data.synthetic.vocab import CATEGORIES, SPLITS
from ..config_checks import check_writable
from .runner import command_config

SECTION = "synthetic_shards"


class SyntheticShardSamples(Sequence):
    """Lazy sequence of shard samples: scene ``start + i`` is rendered on access only."""

    def __init__(self, num_samples: int, *, split: str, seed: int, image_size: int, num_options: int,
                 categories: Sequence[str] = CATEGORIES, style: str | None = None, start: int = 0) -> None:
        if num_samples < 0 or start < 0:
            raise ValueError(f"num_samples and start must be >= 0, got {num_samples}, {start}")
        self.num_samples, self.start = num_samples, start
        self.kwargs = dict(split=split, seed=seed, image_size=image_size, num_options=num_options,
                           categories=tuple(categories), style=style)
        make_scene(0, **self.kwargs)  # validate the arguments now, not in the middle of a run

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= i < self.num_samples:
            raise IndexError(i)
        index = self.start + i
        s = make_scene(index, **self.kwargs)
        return {
            "__key__": f"{self.kwargs['split']}-{index:08d}",
            "image": s.image,
            "opposite_image": s.opposite_image,
            "captions": s.captions,
            "label": s.label,
            "meta": {**s.meta, "category": s.category, "opposite_label": s.opposite_label},
        }


def make_synthetic_shards(cfg: dict) -> dict:
    """Write the shards the ``synthetic_shards`` section describes; returns the manifest."""
    c = cfg[SECTION]
    if not c["out"]:
        raise ValueError(f"no output folder. Fix: {SECTION}.out=DIR.")
    check_writable(f"{SECTION}.out", c["out"], "folder")
    if c["num_samples"] is None:
        raise ValueError(f"number of scenes not set. Fix: {SECTION}.num_samples=N.")
    if c["split"] not in SPLITS:
        raise ValueError(f"unknown {SECTION}.split '{c['split']}'. Fix: use one of {SPLITS}.")
    categories = tuple(c["categories"])
    samples = SyntheticShardSamples(
        c["num_samples"], split=c["split"], seed=c["seed"], image_size=c["image_size"],
        num_options=c["num_options"], categories=categories, style=c["style"], start=c["start_index"],
    )
    info = {"source": "synthetic", **samples.kwargs, "categories": list(categories), "num_samples": c["num_samples"],
            "start_index": c["start_index"], "image_format": c["image_format"]}
    manifest = write_shards(samples, c["out"], c["samples_per_shard"], c["prefix"], info=info,
                            image_format=c["image_format"], overwrite=c["overwrite"])
    print(f"{c['out']}: {manifest['num_shards']} shards, {manifest['num_samples']} samples ({manifest['pattern']})")
    return manifest


def main(argv: Sequence[str] | None = None) -> dict:
    return make_synthetic_shards(command_config(argv))
