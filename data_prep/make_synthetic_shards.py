"""Write synthetic scenes (dcsm.data.synthetic) to WebDataset shards.

    python data_prep/make_synthetic_shards.py --out DIR --num-samples N --samples-per-shard M \
        --split train --seed 0 --image-size 224 --num-options 4

Sample ``i`` is ``make_scene(i, split=..., seed=...)``, key ``{split}-{i:08d}``, with its
opposite image as ``KEY.opp.png``; ``meta`` holds the scene description plus ``category``
and ``opposite_label``. Rerunning with the same arguments keeps complete shards (their
scenes are not even rendered again); other arguments into the same folder are refused unless
``--overwrite``. Layout: see ``dcsm/data/shards.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from dcsm.data.shards import write_shards
from dcsm.data.synthetic import CATEGORIES, SPLITS, STYLES, make_scene


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--num-samples", required=True, type=int)
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--num-options", type=int, default=4)
    p.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated subset of " + ",".join(CATEGORIES))
    p.add_argument("--style", default=None, choices=sorted(STYLES), help="default: 'shifted' for the shifted split")
    p.add_argument("--start-index", type=int, default=0, help="first scene index")
    p.add_argument("--image-format", default="png", choices=["png", "jpg"])
    p.add_argument("--prefix", default="shard")
    p.add_argument("--overwrite", action="store_true", help="rewrite all shards, even from other arguments")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    samples = SyntheticShardSamples(
        args.num_samples, split=args.split, seed=args.seed, image_size=args.image_size,
        num_options=args.num_options, categories=categories, style=args.style, start=args.start_index,
    )
    info = {"source": "synthetic", **samples.kwargs, "categories": list(categories), "num_samples": args.num_samples,
            "start_index": args.start_index, "image_format": args.image_format}
    manifest = write_shards(samples, args.out, args.samples_per_shard, args.prefix, info=info,
                            image_format=args.image_format, overwrite=args.overwrite)
    print(f"{args.out}: {manifest['num_shards']} shards, {manifest['num_samples']} samples ({manifest['pattern']})")
    return manifest


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:  # bad arguments / conflicting folder: one clear line, no traceback
        sys.exit(f"error: {err}")
