"""Scene layouts per category: objects placed in fractions of the image side (so a scene is the
same at any image size), their captions and hard-negative options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .styles import Style
from .vocab import (
    CHANNEL_MAX,
    COLOURS,
    CONJUNCTION_TEMPLATE,
    DISTRACTOR_PROBABILITY,
    MAX_LAYOUT_TRIES,
    MAX_OBJECT_TRIES,
    MIN_OBJECT_GAP,
    MIN_PRIMARY_SEPARATION,
    NEGATION_TEMPLATES,
    PERPENDICULAR,
    RELATIONS,
    RGB,
    SHAPES,
    SIZE_WORDS,
)


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


def _build_spatial(rng: np.random.Generator, style: Style) -> _Scene:
    relations = tuple(RELATIONS)
    rel = relations[int(rng.integers(len(relations)))]
    col_a, col_b = _pick(rng, tuple(COLOURS), 2)
    shape_a, shape_b = _pick(rng, SHAPES, 2)
    size_a, size_b = (SIZE_WORDS[int(i)] for i in rng.integers(len(SIZE_WORDS), size=2))
    a = _make_obj(rng, style, "A", col_a, shape_a, size_a)
    b = _make_obj(rng, style, "B", col_b, shape_b, size_b)

    # Ranges use the larger side for both objects so that swapping positions stays valid.
    side = max(a.side, b.side)
    lo, hi = style.margin + side / 2.0, 1.0 - style.margin - side / 2.0
    d_min = max(MIN_PRIMARY_SEPARATION, side + MIN_OBJECT_GAP)
    d = float(rng.uniform(d_min, hi - lo))
    first = float(rng.uniform(lo, hi - d))
    near, far = first, first + d  # "near" = smaller coordinate (left / top)
    half_j = style.position_jitter / 2.0
    base = float(rng.uniform(lo + half_j, hi - half_j))
    off_a, off_b = (float(v) for v in rng.uniform(-half_j, half_j, size=2))
    a_primary, b_primary = (near, far) if rel in ("left", "above") else (far, near)
    if rel in ("left", "right"):
        a, b = a.moved(a_primary, base + off_a), b.moved(b_primary, base + off_b)
    else:
        a, b = a.moved(base + off_a, a_primary), b.moved(base + off_b, b_primary)
    opposite = [a.moved(b.cx, b.cy), b.moved(a.cx, a.cy)]

    use_sizes = size_a != size_b
    np_a = noun_phrase(col_a, shape_a, size_a if use_sizes else None)
    np_b = noun_phrase(col_b, shape_b, size_b if use_sizes else None)
    perp1, perp2 = PERPENDICULAR[rel]
    options = [
        ("positive", f"{np_a} {RELATIONS[rel]} {np_b}"),
        ("swapped", f"{np_b} {RELATIONS[rel]} {np_a}"),
        (f"perpendicular_{perp1}", f"{np_a} {RELATIONS[perp1]} {np_b}"),
        (f"perpendicular_{perp2}", f"{np_a} {RELATIONS[perp2]} {np_b}"),
    ]
    return _Scene([a, b], opposite, options, {"relation": rel})


def _build_binding(rng: np.random.Generator, style: Style) -> _Scene:
    c1, c2 = _pick(rng, tuple(COLOURS), 2)
    h1, h2 = _pick(rng, SHAPES, 2)
    s1, s2 = _pick(rng, SIZE_WORDS, 2)
    o1 = _make_obj(rng, style, "1", c1, h1, s1)
    o2 = _make_obj(rng, style, "2", c2, h2, s2)
    (x1, y1), (x2, y2) = _place_free(rng, style, [o1.side, o2.side])
    o1, o2 = o1.moved(x1, y1), o2.moved(x2, y2)
    opposite = [o1.recoloured(c2, o2.rgb), o2.recoloured(c1, o1.rgb)]

    def cap(a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
        return CONJUNCTION_TEMPLATE.format(a=noun_phrase(a[1], a[2], a[0]), b=noun_phrase(b[1], b[2], b[0]))

    options = [
        ("positive", cap((s1, c1, h1), (s2, c2, h2))),
        ("colour_swap", cap((s1, c2, h1), (s2, c1, h2))),
        ("size_swap", cap((s2, c1, h1), (s1, c2, h2))),
        ("shape_swap", cap((s1, c1, h2), (s2, c2, h1))),
    ]
    return _Scene([o1, o2], opposite, options, {"relation": None})


def _build_negation(rng: np.random.Generator, style: Style) -> _Scene:
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    ia, ib = (int(i) for i in rng.choice(len(kinds), size=2, replace=False))
    (col_a, shape_a), (col_b, shape_b) = kinds[ia], kinds[ib]
    with_distractor = bool(rng.random() < DISTRACTOR_PROBABILITY)
    specs = [("A", col_a, shape_a)]
    if with_distractor:
        rest = [k for k in kinds if k not in ((col_a, shape_a), (col_b, shape_b))]
        col_d, shape_d = rest[int(rng.integers(len(rest)))]
        specs.append(("D", col_d, shape_d))
    specs.append(("B", col_b, shape_b))
    objs = [
        _make_obj(rng, style, role, col, shape, SIZE_WORDS[int(rng.integers(len(SIZE_WORDS)))])
        for role, col, shape in specs
    ]
    centres = _place_free(rng, style, [o.side for o in objs])
    objs = [o.moved(cx, cy) for o, (cx, cy) in zip(objs, centres)]
    shown = [o for o in objs if o.role != "B"]

    template_id = int(rng.integers(len(NEGATION_TEMPLATES)))
    template = NEGATION_TEMPLATES[template_id]
    present = {(o.colour, o.shape) for o in objs}  # A, D and B: A' must be none of them
    wrong = [c for c in COLOURS if (c, shape_a) not in present]
    col_wrong = wrong[int(rng.integers(len(wrong)))]

    def neg(x: tuple[str, str], y: tuple[str, str]) -> str:
        return template.format(
            a=noun_phrase(*x), b=noun_phrase(*y), b_bare=noun_phrase(*y, article=False)
        )

    a_kind, b_kind = (col_a, shape_a), (col_b, shape_b)
    options = [
        ("positive", neg(a_kind, b_kind)),
        ("conjunction", CONJUNCTION_TEMPLATE.format(a=noun_phrase(*a_kind), b=noun_phrase(*b_kind))),
        ("role_swap", neg(b_kind, a_kind)),
        ("wrong_colour", neg((col_wrong, shape_a), b_kind)),
    ]
    extra = {
        "relation": None,
        "template": template_id,
        "absent": {"colour": col_b, "shape": shape_b},
        "distractor": with_distractor,
    }
    return _Scene(shown, objs, options, extra)


BUILDERS: dict[str, Callable[[np.random.Generator, Style], _Scene]] = {
    "spatial": _build_spatial,
    "binding": _build_binding,
    "negation": _build_negation,
}
