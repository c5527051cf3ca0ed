"""Draw a *miniature* image set for the real WhatsUp / NegBench annotation files.

The published images cannot be downloaded here, so this renders a stand-in image for the
first rows of each annotation file, at the path the file names, to show the whole evaluation
path on the real formats. Figures computed on it are NOT benchmark results.

WhatsUp Controlled-A rows get two shapes laid out by the relation in their file name
(object 1 left of / right of / on / under object 2); NegBench rows get one or two shapes.

    python data_prep/make_miniature_benchmarks.py miniature_benchmarks.fixtures=../shared/fixtures \
        [miniature_benchmarks.out=runs/miniature miniature_benchmarks.rows=24]

Settings: the ``miniature_benchmarks:`` section of ``configs/default.yaml``.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..config_checks import check_writable
from ..data.synthetic.vocab import COLOURS
from ..io import atomic_write
from .runner import command_config

SECTION = "miniature_benchmarks"

SIZE = 224
HALF = 28  # half side of a drawn object, px
OFFSET = 56  # centre offset between the two objects, px
# relation in the Controlled-A file name -> (dx, dy) of object 1 relative to object 2
LAYOUT = {"left_of": (-OFFSET, 0), "right_of": (OFFSET, 0), "on": (0, -OFFSET), "under": (0, OFFSET)}


def _draw(path: Path, offsets: list[tuple[int, int]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(200, 256, 3)))
    draw = ImageDraw.Draw(img)
    colours = list(COLOURS.values())
    for i, (dx, dy) in enumerate(offsets):
        cx, cy = SIZE // 2 + dx, SIZE // 2 + dy
        box = (cx - HALF, cy - HALF, cx + HALF, cy + HALF)
        colour = colours[int(rng.integers(len(colours)))]
        (draw.rectangle if i == 0 else draw.ellipse)(box, fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def whatsup(annotation: Path, out: Path, rows: int) -> list[str]:
    drawn = []
    for row in json.loads(annotation.read_text())[:rows]:
        rel = next((r for r in LAYOUT if f"_{r}_" in Path(row["image_path"]).name), "under")
        dx, dy = LAYOUT[rel]
        rel_path = row["image_path"].removeprefix("data/")
        _draw(out / rel_path, [(dx // 2, dy // 2), (-dx // 2, -dy // 2)], zlib.crc32(rel_path.encode()))
        drawn.append(rel_path)
    return drawn


def negbench(annotation: Path, out: Path, rows: int) -> list[str]:
    drawn = []
    with annotation.open(newline="", encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= rows:
                break
            name = Path(row["image_path"]).name
            two = zlib.crc32(name.encode()) % 2 == 0
            _draw(out / name, [(-OFFSET // 2, 0), (OFFSET // 2, 0)] if two else [(0, 0)], zlib.crc32(name.encode()))
            drawn.append(name)
    return drawn


def miniature_benchmarks(cfg: dict) -> dict[str, list[str]]:
    """Draw the images the ``miniature_benchmarks`` section asks for; returns the drawn paths."""
    c = cfg[SECTION]
    fx, out = Path(c["fixtures"]), Path(c["out"])
    check_writable(f"{SECTION}.out", out, "folder")
    n_w = whatsup(fx / "whatsup" / "controlled_images_dataset.json", out / "whatsup", c["rows"])
    n_n = negbench(fx / "negbench" / "VOC2007_mcq_llama3.1_rephrased.csv", out / "negbench_voc", c["rows"])
    print(f"drew {len(n_w)} WhatsUp images under {out / 'whatsup'} and {len(n_n)} NegBench VOC images under {out / 'negbench_voc'}")
    return {"whatsup": n_w, "negbench_voc": n_n}


def main(argv: Sequence[str] | None = None) -> dict[str, list[str]]:
    return miniature_benchmarks(command_config(argv))
