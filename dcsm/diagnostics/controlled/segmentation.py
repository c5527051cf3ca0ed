"""Zero-shot segmentation from the per-patch decomposition, against the scenes' object masks.

One object per image (uniform placement, the variant's own scene style at the encoder's size). Each
patch position's direct contribution to the pooled embedding (all layers and heads, attended token
= that patch, :func:`dcsm.diagnostics.decomposition.decompose` with ``per_token=True``) is projected
on the object's caption embedding (``"a {colour} {shape}"``): an ``(h, w)`` map per image. A patch
is foreground when its score is above the image's mean patch score; the patch mask is upsampled
(nearest) to pixels. IoU with the drawn object's pixel mask, mean over images (mIoU). Baseline: a
centred box of side ``box`` (fraction of the image side), the same for every image.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ...data.synthetic.captioned import CaptionedConfig, make_captioned_scene
from ...data.synthetic.layout import noun_phrase
from ...data.synthetic.render import draw_shape
from ..decomposition import decompose
from ..position_sweep import preprocess

__all__ = ["object_mask", "patch_maps", "iou", "run_segmentation"]


def object_mask(meta: dict) -> torch.Tensor:
    """``(S, S)`` bool pixel mask of a one-object captioned scene (drawn as the scene draws it)."""
    size = int(meta["image_size"])
    _, shape, side, cx, cy = meta["objects"][0]
    im = Image.new("L", (size, size), 0)
    half = side / 2.0
    x0, y0 = round((cx - half) * size), round((cy - half) * size)
    box = (x0, y0, max(round((cx + half) * size), x0 + 1), max(round((cy + half) * size), y0 + 1))
    draw_shape(ImageDraw.Draw(im), shape, box, 255)
    return torch.from_numpy(np.asarray(im) > 0)


@torch.no_grad()
def patch_maps(enc: Any, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``(B, h, w)``: per patch, the heads' direct contribution to the pooled embedding ``@`` the
    image's unit text embedding ``texts (B, D)``."""
    d = decompose(enc, images, per_token=True)
    per_token = d.heads.sum(dim=(1, 2))[:, 1:]  # (B, P, D): drop the class token position
    h, w = enc.grid_size
    return torch.einsum("bpd,bd->bp", per_token.float(), texts.to(per_token.device).float()).view(-1, h, w).cpu()


def iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``(B,)`` IoU of bool masks ``(B, S, S)`` (1 when both are empty)."""
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def run_segmentation(enc: Any, scenes_section: dict, section: dict, batch_size: int) -> dict[str, Any]:
    """mIoU of the decomposition masks and of the centre box (``section``: ``controlled.segmentation``)."""
    side = int(enc.image_size[0])
    cfg = replace(CaptionedConfig.from_config(scenes_section), kind_weights=(1.0, 0.0, 0.0, 0.0, 0.0), image_size=(side, side))
    samples = [make_captioned_scene(i, seed=int(section["seed"]), cfg=cfg) for i in range(int(section["size"]))]
    gt = torch.stack([object_mask(s.meta) for s in samples])  # (N, S, S)
    x = preprocess(enc, [s.image for s in samples])
    captions = [noun_phrase(s.meta["objects"][0][0], s.meta["objects"][0][1]) for s in samples]
    texts = enc.encode_texts(captions).pooled.float()
    maps = torch.cat([patch_maps(enc, x[i: i + batch_size], texts[i: i + batch_size]) for i in range(0, len(samples), batch_size)])
    fg = maps > maps.flatten(1).mean(1)[:, None, None]  # (N, h, w)
    pred = F.interpolate(fg[:, None].float(), size=(side, side), mode="nearest")[:, 0] > 0.5
    lo, hi = round(side * (1 - float(section["box"])) / 2), round(side * (1 + float(section["box"])) / 2)
    box = torch.zeros(side, side, dtype=torch.bool)
    box[lo:hi, lo:hi] = True
    ours, base = iou(pred, gt), iou(box.expand_as(gt), gt)
    return {"n": len(samples), "miou": float(ours.mean()), "centre_box_miou": float(base.mean()),
            "miou_se": float(ours.std() / len(ours) ** 0.5), "centre_box_miou_se": float(base.std() / len(base) ** 0.5),
            "box": float(section["box"]), "foreground_fraction": float(gt.float().mean()),
            "mean_map": maps.mean(0).tolist(), "examples": {"maps": maps[:6].tolist(), "gt": gt[:6].int().tolist(),
                                                            "captions": captions[:6]}}
