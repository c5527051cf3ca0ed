"""Drawing a scene: background (plain, noise, stripes), shapes, and each object's pixel box."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .layout import SceneObject
from .styles import Style
from .vocab import CHANNEL_MAX, RGB


__all__ = ["draw_shape"]

def _pixel_box(obj: SceneObject, image_size: int) -> tuple[int, int, int, int]:
    """Half-open pixel bbox ``(x0, y0, x1, y1)``; at least one pixel wide."""
    half = obj.side / 2.0
    x0, x1 = round((obj.cx - half) * image_size), round((obj.cx + half) * image_size)
    y0, y1 = round((obj.cy - half) * image_size), round((obj.cy + half) * image_size)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def render_background(rng: np.random.Generator, style: Style, image_size: int) -> Image.Image:
    palette = style.background_palette
    base = np.asarray(palette[int(rng.integers(len(palette)))], dtype=np.float32)
    j = style.background_jitter
    base = base + rng.integers(-j, j + 1, size=3).astype(np.float32)
    if style.background_noise_std > 0:
        noise = rng.standard_normal((image_size, image_size, 3), dtype=np.float32)
        arr = np.clip(base + noise * style.background_noise_std, 0, CHANNEL_MAX)
        return Image.fromarray(arr.astype(np.uint8))
    colour = tuple(int(v) for v in np.clip(base, 0, CHANNEL_MAX))
    if style.background_pattern == "stripes":
        return _stripes(image_size, colour, style.stripe_rgb, style.stripe_period)
    if style.background_pattern == "checks":
        return _checks(image_size, colour, style.stripe_rgb, style.stripe_period)
    return Image.new("RGB", (image_size, image_size), colour)


def _stripes(image_size: int, rgb: RGB, stripe_rgb: RGB, period: float) -> Image.Image:
    """Diagonal stripes, half ``rgb`` and half ``stripe_rgb``, ``period`` x side apart."""
    pix = max(2.0, period * image_size)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    on = ((xx + yy) % pix) < pix / 2.0  # (S, S)
    arr = np.where(on[..., None], np.asarray(stripe_rgb, np.uint8), np.asarray(rgb, np.uint8))
    return Image.fromarray(arr.astype(np.uint8))


def _checks(image_size: int, rgb: RGB, check_rgb: RGB, side: float) -> Image.Image:
    """A checkerboard of ``rgb`` and ``check_rgb`` squares, ``side`` x image side wide."""
    pix = max(1.0, side * image_size)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    on = ((xx // pix + yy // pix) % 2) == 1  # (S, S)
    arr = np.where(on[..., None], np.asarray(check_rgb, np.uint8), np.asarray(rgb, np.uint8))
    return Image.fromarray(arr.astype(np.uint8))


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], rgb: RGB,
    outline: RGB | None = None, width: int = 0,
) -> None:
    """Draw a filled ``shape`` into the half-open pixel box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    kw: dict[str, Any] = {"fill": rgb}
    if outline is not None and width > 0:
        kw.update(outline=outline, width=width)
    if shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), **kw)  # PIL boxes are inclusive
    elif shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), **kw)
    else:  # triangle, apex up
        draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2.0, y0)], **kw)


def render_scene(background: Image.Image, objects: Sequence[SceneObject], style: Style | None = None) -> Image.Image:
    image = background.copy()
    draw = ImageDraw.Draw(image)
    size = image.size[0]
    outline = style.outline_rgb if style is not None else None
    width = max(1, round(style.outline_width * size)) if outline is not None else 0
    for obj in objects:
        draw_shape(draw, obj.shape, _pixel_box(obj, size), obj.rgb, outline, width)
    return image


def object_meta(obj: SceneObject, image_size: int) -> dict[str, Any]:
    x0, y0, x1, y1 = _pixel_box(obj, image_size)
    return {
        "role": obj.role,
        "shape": obj.shape,
        "colour": obj.colour,
        "size": obj.size_word,
        "side": obj.side,
        "centre": [(x0 + x1) / 2.0, (y0 + y1) / 2.0],
        "bbox": [x0, y0, x1, y1],
        "rgb": list(obj.rgb),
    }
