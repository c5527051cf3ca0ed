"""Scene geometry shared by the synthetic generators: objects placed in fractions of the image side
(so a scene is the same at any image size), noun phrases, non-overlapping placement. The task
families built on it (layouts per category, captions, options) are :mod:`.families`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .styles import Style
from .vocab import CHANNEL_MAX, COLOURS, MAX_LAYOUT_TRIES, MAX_OBJECT_TRIES, MIN_OBJECT_GAP, RGB


@dataclass(frozen=True)
class SceneObject:
    """An object in fractional image coordinates (centre and side length)."""

    role: str
    shape: str
    colour: str
    size_word: str
    side: float
    cx: float
    cy: float
    rgb: RGB

    def moved(self, cx: float, cy: float) -> "SceneObject":
        return SceneObject(self.role, self.shape, self.colour, self.size_word, self.side, cx, cy, self.rgb)

    def recoloured(self, colour: str, rgb: RGB) -> "SceneObject":
        return SceneObject(self.role, self.shape, colour, self.size_word, self.side, self.cx, self.cy, rgb)


@dataclass
class _Scene:
    """Category-builder output: objects of both images and options (positive, opposite, ...)."""

    objects: list[SceneObject]
    opposite_objects: list[SceneObject]
    options: list[tuple[str, str]]  # (kind, caption); [0] positive, [1] true for opposite
    extra_meta: dict[str, Any]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(colour: str, shape: str, size_word: str | None = None, article: bool = True) -> str:
    """Noun phrase such as ``"a small red square"`` or ``"orange circle"``."""
    words = ([size_word] if size_word else []) + [colour, shape]
    body = " ".join(words)
    return f"{_article(words[0])} {body}" if article else body


def _pick(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    """``k`` distinct items, as plain Python strings."""
    return [items[int(i)] for i in rng.choice(len(items), size=k, replace=False)]


def _jitter_colour(rng: np.random.Generator, colour: str, style: Style) -> RGB:
    base = np.asarray(COLOURS[colour], dtype=np.int64)
    j = style.colour_jitter
    rgb = np.clip(base + rng.integers(-j, j + 1, size=3), 0, CHANNEL_MAX)
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def _sample_side(rng: np.random.Generator, style: Style, size_word: str) -> float:
    lo, hi = style.size_range(size_word)
    return float(rng.uniform(lo, hi))


def _separated(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Whether boxes ``(cx, cy, side)`` are at least :data:`MIN_OBJECT_GAP` apart."""
    need = (a[2] + b[2]) / 2.0 + MIN_OBJECT_GAP
    return abs(a[0] - b[0]) >= need or abs(a[1] - b[1]) >= need


def _place_free(
    rng: np.random.Generator, style: Style, sides: Sequence[float]
) -> list[tuple[float, float]]:
    """Non-overlapping centres inside the style margin for objects of the given sides."""
    for _ in range(MAX_LAYOUT_TRIES):
        placed: list[tuple[float, float, float]] = []
        for side in sides:
            lo, hi = style.margin + side / 2.0, 1.0 - style.margin - side / 2.0
            for _ in range(MAX_OBJECT_TRIES):
                cx, cy = (float(v) for v in rng.uniform(lo, hi, size=2))
                if all(_separated((cx, cy, side), p) for p in placed):
                    placed.append((cx, cy, side))
                    break
            else:
                break
        if len(placed) == len(sides):
            return [(p[0], p[1]) for p in placed]
    raise RuntimeError(f"could not place {len(sides)} objects in style {style.name!r}")


def _make_obj(
    rng: np.random.Generator, style: Style, role: str, colour: str, shape: str, size_word: str
) -> SceneObject:
    side = _sample_side(rng, style, size_word)
    return SceneObject(role, shape, colour, size_word, side, 0.0, 0.0, _jitter_colour(rng, colour, style))
