"""Pretrain the small offline CLIP (dcsm-toy-ViT) on captioned synthetic scenes.

    python data_prep/pretrain_toy_clip.py [--config configs/pretrain_toy_clip.yaml] [key=value ...]

Writes ``<out_dir>/dcsm-toy-ViT.safetensors`` (fp16) and ``<out_dir>/dcsm-toy-ViT.record.json``.
Copy both into ``dcsm/weights/`` to ship them (``encoder.model=dcsm-toy-ViT encoder.pretrained=toy``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in a checkout

from dcsm.cli import run_cli  # noqa: E402
from dcsm.pretrain import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
