"""Small open_clip ViT configs for the diagnostics tests (a second ViT size, built in a second)."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip

from dcsm.model.encoders import EncoderSpec, FrozenCLIP

SMALL_VIT = {  # a second ViT size: 3 heads of width 32, LayerScale, 64 px, patch 16
    "embed_dim": 48,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 96, "head_width": 32, "patch_size": 16, "ls_init_value": 0.5},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def small_vit_encoder(tmp_dir: Path, name: str = "dcsm-test-small-ViT") -> FrozenCLIP:
    path = tmp_dir / f"{name}.json"
    path.write_text(json.dumps(SMALL_VIT))
    open_clip.add_model_config(path)
    return FrozenCLIP(EncoderSpec(model=name, pretrained=None, seed=3))
