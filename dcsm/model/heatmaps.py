"""DCSM heatmaps: chosen options' maps ``(L, P)`` with their functional rows, one caption's map ->
its patch-grid heatmap, and a picture of it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:  # type hints only: the model imports nothing from here
    from .batch import FeatureBatch
    from .dcsm import DCSMHead

HEATMAP_SIZE = 224
HEATMAP_ALPHA = 0.55


@torch.no_grad()
def option_maps(
    head: "DCSMHead", f: "FeatureBatch", samples: torch.Tensor, options: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The maps the head scores, for chosen options of chosen samples of a feature batch.

    Args:
        head: the trained head (its map settings and functional rows).
        f: features of N samples with K options.
        samples: ``(n,)`` long, sample indices into ``f``.
        options: ``(n, j)`` long, option indices per chosen sample (e.g. correct and predicted).
    Returns:
        maps ``(n, j, L, P)`` fp32, real-token mask ``(n, j, L)`` and functional-row mask
        ``(n, j, L)`` (None when ``maps.inject_functional_rows`` is off), all on ``f``'s device.
    """
    rows = samples.to(f.tokens.device)[:, None]
    options = options.to(f.tokens.device)
    tok, msk, ids = f.tokens[rows, options], f.token_mask[rows, options], f.token_ids[rows, options]
    maps = head.fp32_maps(f.patches[rows[:, 0]], tok, msk, ids)
    fr = head.functional_rows.index(ids) >= 0 if head.map_cfg.inject_functional_rows else None
    return maps, msk, fr



def spatial_heatmap(
    dcsm_map: torch.Tensor, mask: torch.Tensor, grid_size: Sequence[int], keep_cls: bool, functional: torch.Tensor | None = None
) -> np.ndarray:
    """One caption's map ``(L, P)`` -> ``(gh, gw)`` patch-grid heatmap.

    The mean over the caption's real token rows (functional-word rows left out when
    ``functional`` marks them and others remain); column 0 (CLS) is dropped when ``keep_cls``.
    """
    m = dcsm_map.detach().float().cpu()
    if keep_cls:
        m = m[:, 1:]
    rows = mask.detach().cpu().bool().clone()
    if functional is not None:
        plain = rows & ~functional.detach().cpu().bool()
        if plain.any():
            rows = plain
    sel = m[rows] if rows.any() else m
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if sel.shape[-1] != gh * gw:
        raise ValueError(f"map has {sel.shape[-1]} patch columns, expected {gh}x{gw}={gh * gw}")
    return sel.mean(dim=0).reshape(gh, gw).numpy()


def _colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB; matplotlib's viridis if installed, else a built-in ramp."""
    try:
        from matplotlib import colormaps  # optional: not a dependency

        return (colormaps["viridis"](values)[..., :3] * 255).astype(np.uint8)
    except Exception:
        stops = np.array([[48, 18, 59], [40, 120, 240], [40, 200, 130], [250, 220, 40], [220, 40, 20]], dtype=float)
        pos = values * (len(stops) - 1)
        lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
        frac = (pos - lo)[..., None]
        return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8)


def render_heatmap(heatmap: np.ndarray, image: Image.Image | None = None, size: int = HEATMAP_SIZE) -> Image.Image:
    """A ``(gh, gw)`` heatmap as an RGB PIL image (min-max scaled, nearest-upsampled), blended
    over ``image`` (resized to the same size) when given."""
    h = np.asarray(heatmap, dtype=float)
    span = float(h.max() - h.min())
    norm = (h - h.min()) / span if span > 0 and math.isfinite(span) else np.zeros_like(h)
    heat = Image.fromarray(_colormap(norm)).resize((size, size), Image.NEAREST)
    if image is None:
        return heat
    return Image.blend(image.convert("RGB").resize((size, size), Image.BILINEAR), heat, HEATMAP_ALPHA)
