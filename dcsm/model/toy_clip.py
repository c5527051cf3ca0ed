"""The small offline CLIP: its open_clip model config and the weights shipped in the package.

``dcsm-toy-ViT`` is an open_clip ViT CLIP (96 px images, 12 px patches -> an 8 x 8 grid, width
192, 4 layers; text width 128, 4 layers, context 32; joint space 128-d) pretrained by
``data_prep/pretrain_toy_clip.py`` on captioned synthetic scenes. Importing this module
registers the config with open_clip (``open_clip.add_model_config``), so the name works
wherever a model name does; the pretrained tag ``toy`` resolves to the shipped fp16
safetensors file. It is an offline stand-in for a real CLIP, nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip

TOY_MODEL = "dcsm-toy-ViT"
TOY_TAG = "toy"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_DIR = PACKAGE_DIR / "model_configs"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / f"{TOY_MODEL}.safetensors"
RECORD_FILE = WEIGHTS_DIR / f"{TOY_MODEL}.record.json"  # how the weights were made, what they score


def register() -> None:
    """Register the package's model configs with open_clip (idempotent)."""
    if TOY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def resolve_pretrained(model: str, pretrained: str | None) -> str | None:
    """``pretrained=toy`` for ``dcsm-toy-ViT`` -> the shipped weights file; anything else unchanged.

    Raises:
        FileNotFoundError: the tag is asked for but the package carries no weights file.
    """
    if model != TOY_MODEL or pretrained != TOY_TAG:
        return pretrained
    if not WEIGHTS_FILE.is_file():
        raise FileNotFoundError(
            f"encoder.pretrained={TOY_TAG}: the shipped weights '{WEIGHTS_FILE}' are missing. "
            "Fix: reinstall dcsm, regenerate them with data_prep/pretrain_toy_clip.py, or use encoder.pretrained=null."
        )
    return str(WEIGHTS_FILE)


def load_record() -> dict:
    """The JSON written with the shipped weights (command, wall time, CLIP cosine accuracies)."""
    return json.loads(RECORD_FILE.read_text())


register()
