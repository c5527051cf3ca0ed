"""Two training-free center-bias mitigations, each with a strength ``s`` in [0, 1] (0 = identity).

* **Visual prompting**: a ring (ellipse outline) or box (rectangle outline) drawn around an image
  region, alpha-blended into the pixels with weight ``s``: ``pixel' = pixel + s * (colour - pixel)``
  on the outline, unchanged elsewhere.
* **Attention redistribution at the final pooling**: in one transformer block of the image tower
  (default the last, whose class-token output is what ``ln_post`` and ``proj`` pool), the class
  token's attention over the patch tokens is moved toward a prior while its total patch mass
  ``m`` and its attention to itself are kept: ``a'_p = (1 - s) * a_p + s * m * prior_p`` (prior
  sums to 1 over patches), so every attention row still sums to 1. Only the class-token query
  row changes: patch tokens (and so DCSM's maps) are untouched in that block.

``s = 0`` is the identity exactly: nothing is drawn and no hook is attached (attaching one would
switch the block from PyTorch's fused attention to the per-head computation, which differs in
the last float bits).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .hook_points import HookPoint, hooks

__all__ = ["PROMPT_SHAPES", "PRIORS", "MitigationError", "check_strength", "outline_mask", "visual_prompt",
           "attention_prior", "redistribute_attention"]

PROMPT_SHAPES = ("ring", "box")
PRIORS = ("uniform", "border")
CLS = 0  # open_clip puts the class token first


class MitigationError(ValueError):
    """Bad mitigation setting (strength outside [0, 1], unknown prior or prompt shape, bad layer)."""


def check_strength(strength: float, key: str = "strength") -> float:
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise MitigationError(f"{key}={strength!r} is outside [0, 1]. Fix: use 0 (identity) .. 1 (full strength).")
    return s


def outline_mask(size: tuple[int, int], box: Sequence[float], shape: str, width: int) -> np.ndarray:
    """Bool ``(H, W)`` mask of a ring (ellipse) or box outline of ``width`` pixels inside ``box``
    ``(x0, y0, x1, y1)`` (inclusive pixel corners, clipped to the image)."""
    if shape not in PROMPT_SHAPES:
        raise MitigationError(f"unknown prompt shape '{shape}'. Fix: use one of {list(PROMPT_SHAPES)}.")
    w, h = size
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(w - 1.0, x1), min(h - 1.0, y1)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    (draw.ellipse if shape == "ring" else draw.rectangle)((x0, y0, x1, y1), outline=255, width=max(1, int(width)))
    return np.asarray(canvas) > 0


def visual_prompt(image: Image.Image, box: Sequence[float], strength: float, colour: Sequence[int] = (0, 0, 0),
                  shape: str = "ring", width: int = 2) -> Image.Image:
    """``image`` with a ``shape`` outline around ``box`` blended in at ``strength`` (0: the same image)."""
    s = check_strength(strength, "prompt strength")
    if s == 0.0:
        return image
    arr = np.asarray(image.convert("RGB")).astype(np.float32)  # (H, W, 3)
    mask = outline_mask(image.size, box, shape, width)[..., None]
    target = np.asarray(colour, dtype=np.float32)[None, None, :]
    out = np.where(mask, arr + s * (target - arr), arr)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def attention_prior(grid_size: tuple[int, int], kind: str) -> torch.Tensor:
    """``(gh * gw,)`` prior over patch positions (row-major, sums to 1).

    ``uniform``: 1 / P each. ``border``: proportional to ``d + 1/2``, ``d`` the Chebyshev distance
    of the patch from the grid centre in patches, so the border ring weighs most and no patch zero.
    """
    if kind not in PRIORS:
        raise MitigationError(f"unknown attention prior '{kind}'. Fix: use one of {list(PRIORS)}.")
    gh, gw = grid_size
    if kind == "uniform":
        w = torch.ones(gh * gw)
    else:
        ys = (torch.arange(gh, dtype=torch.float32) - (gh - 1) / 2).abs()
        xs = (torch.arange(gw, dtype=torch.float32) - (gw - 1) / 2).abs()
        w = (torch.maximum(ys[:, None], xs[None, :]) + 0.5).flatten()
    return w / w.sum()


def _block_index(encoder, layer: int) -> int:
    model = getattr(encoder, "model", encoder)
    n = len(model.visual.transformer.resblocks)
    if not -n <= int(layer) < n:
        raise MitigationError(f"attention_layer={layer} is out of range for an image tower of {n} blocks. "
                              f"Fix: use -1 (the last block) .. {n - 1}.")
    return int(layer) % n


@contextmanager
def redistribute_attention(encoder, strength: float, prior: str = "uniform", layer: int = -1) -> Iterator[None]:
    """Within the block, the image tower's class token attends ``(1-s) * attn + s * prior`` over
    patches in block ``layer`` (see module docstring). ``s = 0`` attaches nothing.

    Hooks are removed on exit (also after an exception).
    """
    s = check_strength(strength, "attention strength")
    block = _block_index(encoder, layer)
    if s == 0.0:
        yield
        return
    model = getattr(encoder, "model", encoder)
    grid = tuple(model.visual.grid_size)
    weights = attention_prior(grid, prior)

    def reweight(pattern: torch.Tensor, hook: HookPoint) -> torch.Tensor:  # (B, H, Tq, Tk)
        n_patch = pattern.shape[-1] - 1
        if n_patch != weights.numel():
            raise MitigationError(f"{hook.name}: {n_patch} patch keys but a {grid[0]} x {grid[1]} prior. "
                                  "Fix: use a ViT without extra (register) tokens.")
        row = pattern[:, :, CLS, CLS + 1:]  # (B, H, P): the class token's attention over patches
        mass = row.sum(dim=-1, keepdim=True)
        new = pattern.clone()
        new[:, :, CLS, CLS + 1:] = (1.0 - s) * row + s * mass * weights.to(row)
        return new

    with hooks(model, [(f"visual.blocks.{block}.attn.hook_pattern", reweight)]):
        yield
