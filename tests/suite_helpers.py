"""Shared by the suite and API tests: a miniature data root and a tiny random-init checkpoint."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from dcsm.config import apply_overrides, load_yaml, to_plain
from dcsm.model.encoders import FrozenCLIP
from dcsm.model.dcsm import build_dcsm
from tests.conftest import TINY_OVERRIDES
from tests.data.test_benchmarks_more import _suite_tree

REPO = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The two suite subsets the miniature tree leaves out (and the paths they are expected at).
ABSENT = ("clevr_bind_gen", "negbench_voc")


def tiny_cfg() -> dict:
    """configs/default.yaml with the conftest encoder (the small CLIP, max_tokens 20)."""
    return to_plain(apply_overrides(load_yaml(REPO / "configs" / "default.yaml"), [
        *TINY_OVERRIDES, "maps.standardize=row", "logger.kind=none",
    ]))


def _pattern(path: Path) -> None:
    """Redraw an image (same size) with content that depends on its name, so scores differ per image."""
    with Image.open(path) as im:
        size = im.size
    rng = random.Random(zlib.crc32(path.name.encode()))
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        s = rng.randrange(4, max(5, min(size) // 2))
        draw.rectangle([x, y, x + s, y + s], fill=tuple(rng.randrange(256) for _ in range(3)))
    im.save(path)


def draw_suite_tree(root: Path) -> Path:
    """Every suite benchmark except CLEVR-bind gen and NegBench VOC, laid out as the public repos."""
    root.mkdir(parents=True, exist_ok=True)
    _suite_tree(root, None)
    rows = [{"image_path": f"data/controlled_images/mug_{rel}_table.jpeg",
             "caption_options": [f"A mug {cap} a table", "A mug on a table", "A mug under a table", "A mug to the right of a table"]}
            for rel, cap in (("left_of", "to the left of"), ("under", "under"))]
    rows[1]["caption_options"] = ["A mug under a table", "A mug on a table", "A mug to the left of a table", "A mug to the right of a table"]
    (root / "controlled_images_dataset.json").write_text(json.dumps(rows))
    for r in rows:
        p = root / r["image_path"][len("data/"):]
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 40)).save(p)
    (root / "controlled_clevr").mkdir()
    Image.new("RGB", (48, 40)).save(root / "controlled_clevr" / "cube_left_of_sphere.jpeg")
    for p in root.rglob("*"):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            _pattern(p)
    return root


def write_checkpoint(path: Path, encoder: FrozenCLIP, seed: int = 0) -> Path:
    """A checkpoint as train.py writes it (config + ``head.*`` state dict) of a random-init head."""
    cfg = tiny_cfg()
    torch.manual_seed(seed)
    model = build_dcsm(cfg, encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"cfg": cfg}, "state_dict": {"head." + k: v for k, v in model.head.state_dict().items()}}, path)
    return path
