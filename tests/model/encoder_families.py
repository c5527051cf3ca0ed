"""Small random-init stand-ins of the 2025-26 open_clip families, registered offline for fast tests.

Each ``dcsm-test-<family>`` config copies the real open_clip config of its family (same timm
architecture entry point, pooling, text-tower flags: ``no_causal_mask``, ``pool_type``,
``proj_bias``, ``init_logit_bias``) and only shrinks widths/depths/image size, so the code paths
are the real ones. The timm trunks are the real entry points called with smaller sizes.
"""

from __future__ import annotations

import copy

import open_clip
import timm
from open_clip.factory import _MODEL_CONFIGS
from timm.models import register_model

#: family -> (real open_clip config the test one copies, timm entry point, timm size overrides)
TRUNKS = {
    "SigLIP2": ("ViT-B-16-SigLIP2", "vit_base_patch16_siglip_224", dict(img_size=64, embed_dim=64, depth=2, num_heads=2)),
    "PE-Core": ("PE-Core-B-16", "vit_pe_core_base_patch16_224",
                dict(img_size=64, embed_dim=64, depth=2, num_heads=2, attn_pool_num_heads=2, ref_feat_shape=(4, 4))),
    "EVA02": ("EVA02-B-16", "eva02_base_patch16_clip_224", dict(img_size=64, embed_dim=64, depth=2, num_heads=2)),
    "MobileCLIP2": ("MobileCLIP2-S0", "fastvit_mci0", {}),  # conv trunk: already small; image size from config
}
#: Refused families' small stand-ins: name -> (real config, timm trunk that replaces its own).
REFUSED = {"ConvNeXt": ("convnext_base", "convnext_atto")}
TEXT = dict(width=64, heads=2, layers=2)
TIMM_EXTRA = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _tiny_entry(base: str, over: dict):
    def entry(pretrained: bool = False, **kwargs):  # noqa: ARG001 - never pretrained
        kwargs = {k: v for k, v in kwargs.items() if k not in TIMM_EXTRA}
        return timm.create_model(base, pretrained=False, **{**over, **kwargs})

    return entry


def name(family: str) -> str:
    """Registered open_clip model name of a family's small stand-in (no "siglip" in it: open_clip
    would pick its SigLIP tokenizer, a download, by that substring)."""
    return f"dcsm-test-{family.replace('SigLIP2', 'S2L')}"


def register() -> None:
    """Register the timm trunks and open_clip configs (idempotent)."""
    for family, (real, base, over) in TRUNKS.items():
        if name(family) in _MODEL_CONFIGS:
            continue
        trunk = base
        if over:
            trunk = f"dcsm_test_{family.lower().replace('-', '_')}"
            fn = _tiny_entry(base, over)
            fn.__name__ = trunk
            if trunk not in timm.list_models(trunk):
                register_model(fn)
        cfg = copy.deepcopy(open_clip.get_model_config(real))
        cfg["embed_dim"] = 48
        cfg["vision_cfg"]["timm_model_name"] = trunk
        cfg["vision_cfg"]["image_size"] = 64 if over else 128
        if cfg["vision_cfg"].get("timm_proj") == "none":  # SigLIP: trunk width is the joint width
            cfg["embed_dim"] = over["embed_dim"]
        cfg["text_cfg"].update(TEXT, context_length=min(cfg["text_cfg"]["context_length"], 32))
        cfg["text_cfg"]["vocab_size"] = 49408  # the CLIP tokenizer's ids (the real SigLIP2 vocabulary is 256000)
        cfg["text_cfg"].pop("hf_tokenizer_name", None)
        cfg["text_cfg"].pop("tokenizer_kwargs", None)
        _MODEL_CONFIGS[name(family)] = cfg
    for family, (real, trunk) in REFUSED.items():
        cfg = copy.deepcopy(open_clip.get_model_config(real))
        cfg["vision_cfg"]["timm_model_name"] = trunk
        cfg["text_cfg"].update(TEXT)
        _MODEL_CONFIGS[name(family)] = cfg


register()
