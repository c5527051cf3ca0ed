"""Seeded synthetic scenes with one-true-of-N captions and hard-negative opposite images.

Every sample is a deterministic function of ``(seed, split, index, image_size, num_options,
categories, style)``.  A scene belongs to one of three categories:

``spatial``
    Two objects A and B (different colour and shape) with A clearly ``rel`` of B.  Options:
    the positive, A/B swapped (true for the opposite image, where A and B swap places), and
    A with the two perpendicular relations.
``binding``
    Two objects differing in colour, shape and size.  Options: the positive, colours swapped
    (true for the opposite image, which swaps the two colours), sizes swapped, shapes swapped.
``negation``
    Object A (plus optionally a distractor D) is shown and object B is absent.  Options: the
    negated positive, "A and B" (true for the opposite image, which adds B), the roles
    swapped, and A with a wrong colour under the same negation template.

Rendering is randomised (background colour/noise, object size, position and colour jitter)
by a :class:`Style`; the ``shifted`` split uses the ``shifted`` style, whose backgrounds,
sizes and margins differ from ``default``.  The ``heldout`` split uses the ``heldout`` style
(diagonal two-colour stripes behind white-outlined objects): a renderer that neither the DCSM
scorer nor the small pretrained CLIP (:mod:`dcsm.data.synthetic.captioned`) ever trains on.  Geometry is sampled in fractions of the image
side, so the same ``(seed, split, index)`` gives the same scene layout at any image size.
"""

from __future__ import annotations

import operator
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = [
    "CATEGORIES",
    "COLOURS",
    "SHAPES",
    "RELATIONS",
    "SIZE_WORDS",
    "NEGATION_TEMPLATES",
    "SPLITS",
    "Style",
    "STYLES",
    "draw_shape",
    "SceneSample",
    "make_scene",
    "SyntheticScenes",
]

RGB = tuple[int, int, int]

# --------------------------------------------------------------------------- vocabulary

CATEGORIES: tuple[str, ...] = ("binding", "spatial", "negation")

#: Base object colours.  Pairwise L-infinity distance is >= 75, far above twice the largest
#: per-channel colour jitter of any style, so jittered colours are never ambiguous.
COLOURS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 215, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 180),
}

SHAPES: tuple[str, ...] = ("square", "circle", "triangle")

#: Relation key -> caption phrase.  "above"/"below" are in image coordinates (y grows down).
RELATIONS: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}

#: For each relation, the two relations on the perpendicular axis (used as hard negatives).
PERPENDICULAR: dict[str, tuple[str, str]] = {
    "left": ("above", "below"),
    "right": ("above", "below"),
    "above": ("left", "right"),
    "below": ("left", "right"),
}

SMALL, BIG = "small", "big"
SIZE_WORDS: tuple[str, ...] = (SMALL, BIG)

#: Negation templates; ``{a}``/``{b}`` are noun phrases with article ("a red square"),
#: ``{b_bare}`` is the noun phrase without article ("red square").
NEGATION_TEMPLATES: tuple[str, ...] = (
    "{a} with no {b_bare}",
    "{a} without {b}",
    "{a} and not {b}",
)
CONJUNCTION_TEMPLATE = "{a} and {b}"

SPLITS: tuple[str, ...] = ("train", "val", "test", "shifted", "heldout")
SHIFTED_SPLIT = "shifted"
HELDOUT_SPLIT = "heldout"
DEFAULT_STYLE = "default"
SHIFTED_STYLE = "shifted"
HELDOUT_STYLE = "heldout"
#: Background patterns: ``plain`` (flat colour, optional noise) or ``stripes`` (diagonal stripes).
BACKGROUND_PATTERNS: tuple[str, ...] = ("plain", "stripes")

# --------------------------------------------------------------------------- constants

MIN_NUM_OPTIONS = 2
MAX_NUM_OPTIONS = 4
MIN_IMAGE_SIZE = 32
#: Small and big sizes of every style are at least this ratio apart.
MIN_SIZE_RATIO = 1.6
#: Spatial scenes: minimum centre distance along the relation axis (fraction of side).
MIN_PRIMARY_SEPARATION = 0.30
#: Spatial scenes: upper bound for any style's cross-axis centre offset (fraction of side).
MAX_CROSS_OFFSET = 0.10
#: Minimum free space between object bounding boxes (fraction of side).
MIN_OBJECT_GAP = 0.03
#: Probability that a negation scene contains a distractor object D.
DISTRACTOR_PROBABILITY = 0.5
#: Rejection-sampling budget for non-overlapping placement.
MAX_OBJECT_TRIES = 100
MAX_LAYOUT_TRIES = 100
CHANNEL_MAX = 255


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Style:
    """A rendering distribution.

    Attributes:
        name: style name (key in :data:`STYLES`).
        background_palette: base background colours; one is drawn per scene.
        background_jitter: max per-channel uniform jitter added to the background colour.
        background_noise_std: std of per-pixel Gaussian noise on the background (0 = flat).
        small_size: (min, max) side of a small object, as a fraction of the image side.
        big_size: (min, max) side of a big object, as a fraction of the image side.
        margin: minimum distance between any object and the image border (fraction).
        position_jitter: in spatial scenes, max offset between the two object centres on the
            axis perpendicular to the relation (fraction, <= :data:`MAX_CROSS_OFFSET`).
        colour_jitter: max per-channel uniform jitter added to object colours.
        background_pattern: ``plain`` or ``stripes`` (diagonal stripes alternating the drawn
            background colour with ``stripe_rgb``).
        stripe_rgb: second stripe colour (``stripes`` only).
        stripe_period: stripe period as a fraction of the image side (``stripes`` only).
        outline_rgb: colour of an outline drawn around every object, or None (no outline).
        outline_width: outline width as a fraction of the image side (>= 1 pixel when set).

    The last five fields default to the plain, outline-free rendering, which draws no extra
    random numbers: ``default`` and ``shifted`` scenes are unchanged by their existence.
    """

    name: str
    background_palette: tuple[RGB, ...]
    background_jitter: int
    background_noise_std: float
    small_size: tuple[float, float]
    big_size: tuple[float, float]
    margin: float
    position_jitter: float
    colour_jitter: int
    background_pattern: str = "plain"
    stripe_rgb: RGB = (0, 0, 0)
    stripe_period: float = 0.1
    outline_rgb: RGB | None = None
    outline_width: float = 0.0

    def __post_init__(self) -> None:
        if self.background_pattern not in BACKGROUND_PATTERNS:
            raise ValueError(f"style {self.name!r}: background_pattern must be one of {BACKGROUND_PATTERNS}")
        if not self.background_palette:
            raise ValueError(f"style {self.name!r}: empty background palette")
        for lo, hi in (self.small_size, self.big_size):
            if not 0.0 < lo <= hi < 1.0:
                raise ValueError(f"style {self.name!r}: bad size range {(lo, hi)}")
        if self.big_size[0] < MIN_SIZE_RATIO * self.small_size[1]:
            raise ValueError(
                f"style {self.name!r}: big sizes must be >= {MIN_SIZE_RATIO}x small sizes"
            )
        if not 0.0 <= self.position_jitter <= MAX_CROSS_OFFSET:
            raise ValueError(
                f"style {self.name!r}: position_jitter must be in [0, {MAX_CROSS_OFFSET}]"
            )
        # Two big objects must fit side by side with the required spatial separation.
        span = 1.0 - 2.0 * self.margin - self.big_size[1]
        if span < max(MIN_PRIMARY_SEPARATION, self.big_size[1] + MIN_OBJECT_GAP):
            raise ValueError(f"style {self.name!r}: objects too big for the margin")

    def size_range(self, size_word: str) -> tuple[float, float]:
        """The (min, max) side fraction for ``"small"`` or ``"big"``."""
        return self.small_size if size_word == SMALL else self.big_size


STYLES: dict[str, Style] = {
    DEFAULT_STYLE: Style(
        name=DEFAULT_STYLE,
        background_palette=(
            (236, 236, 232),  # off-white
            (205, 205, 205),  # light grey
            (222, 212, 190),  # beige
            (196, 208, 222),  # pale blue-grey
            (172, 172, 168),  # mid grey
            (208, 222, 204),  # pale green-grey
        ),
        background_jitter=12,
        background_noise_std=0.0,
        small_size=(0.12, 0.16),
        big_size=(0.27, 0.33),
        margin=0.08,
        position_jitter=0.06,
        colour_jitter=10,
    ),
    SHIFTED_STYLE: Style(
        name=SHIFTED_STYLE,
        background_palette=(
            (40, 40, 44),  # charcoal
            (72, 72, 72),  # dark grey
            (96, 98, 102),  # slate
            (58, 50, 44),  # dark brown
            (44, 56, 64),  # dark teal-grey
            (118, 118, 118),  # mid-dark grey
        ),
        background_jitter=10,
        background_noise_std=14.0,
        small_size=(0.08, 0.11),
        big_size=(0.20, 0.25),
        margin=0.025,
        position_jitter=0.08,
        colour_jitter=14,
    ),
    # Held out of every training (DCSM scorer and the small CLIP's pretraining): stripes and
    # white outlines never occur there.
    HELDOUT_STYLE: Style(
        name=HELDOUT_STYLE,
        background_palette=(
            (150, 132, 112),  # sand
            (112, 138, 140),  # teal-grey
            (138, 118, 138),  # mauve-grey
        ),
        background_jitter=8,
        background_noise_std=0.0,
        small_size=(0.11, 0.14),
        big_size=(0.24, 0.29),
        margin=0.06,
        position_jitter=0.07,
        colour_jitter=10,
        background_pattern="stripes",
        stripe_rgb=(88, 88, 96),
        stripe_period=0.09,
        outline_rgb=(250, 250, 250),
        outline_width=0.015,
    ),
}


# --------------------------------------------------------------------------- samples


@dataclass
class SceneSample:
    """One synthetic scene.

    Attributes:
        image: RGB image, ``image_size x image_size``.
        opposite_image: the hard-negative scene for which ``captions[opposite_label]`` holds.
        captions: ``num_options`` distinct captions; exactly one is true for each image.
        label: index of the caption true for ``image``.
        opposite_label: index of the caption true for ``opposite_image`` (!= ``label``).
        category: one of :data:`CATEGORIES`.
        meta: JSON-serialisable description (objects of both images, relation, style, ...).
    """

    image: Image.Image
    opposite_image: Image.Image
    captions: list[str]
    label: int
    opposite_label: int
    category: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Obj:
    """An object in fractional image coordinates (centre and side length)."""

    role: str
    shape: str
    colour: str
    size_word: str
    side: float
    cx: float
    cy: float
    rgb: RGB

    def moved(self, cx: float, cy: float) -> "_Obj":
        return _Obj(self.role, self.shape, self.colour, self.size_word, self.side, cx, cy, self.rgb)

    def recoloured(self, colour: str, rgb: RGB) -> "_Obj":
        return _Obj(self.role, self.shape, colour, self.size_word, self.side, self.cx, self.cy, rgb)


@dataclass
class _Scene:
    """Category-builder output: objects of both images and options (positive, opposite, ...)."""

    objects: list[_Obj]
    opposite_objects: list[_Obj]
    options: list[tuple[str, str]]  # (kind, caption); [0] positive, [1] true for opposite
    extra_meta: dict[str, Any]


# --------------------------------------------------------------------------- text helpers


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(colour: str, shape: str, size_word: str | None = None, article: bool = True) -> str:
    """Noun phrase such as ``"a small red square"`` or ``"orange circle"``."""
    words = ([size_word] if size_word else []) + [colour, shape]
    body = " ".join(words)
    return f"{_article(words[0])} {body}" if article else body


# --------------------------------------------------------------------------- sampling helpers


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
) -> _Obj:
    side = _sample_side(rng, style, size_word)
    return _Obj(role, shape, colour, size_word, side, 0.0, 0.0, _jitter_colour(rng, colour, style))


# --------------------------------------------------------------------------- category builders


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
    np_a = _phrase(col_a, shape_a, size_a if use_sizes else None)
    np_b = _phrase(col_b, shape_b, size_b if use_sizes else None)
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
        return CONJUNCTION_TEMPLATE.format(a=_phrase(a[1], a[2], a[0]), b=_phrase(b[1], b[2], b[0]))

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
            a=_phrase(*x), b=_phrase(*y), b_bare=_phrase(*y, article=False)
        )

    a_kind, b_kind = (col_a, shape_a), (col_b, shape_b)
    options = [
        ("positive", neg(a_kind, b_kind)),
        ("conjunction", CONJUNCTION_TEMPLATE.format(a=_phrase(*a_kind), b=_phrase(*b_kind))),
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


_BUILDERS: dict[str, Callable[[np.random.Generator, Style], _Scene]] = {
    "spatial": _build_spatial,
    "binding": _build_binding,
    "negation": _build_negation,
}


# --------------------------------------------------------------------------- rendering


def _pixel_box(obj: _Obj, image_size: int) -> tuple[int, int, int, int]:
    """Half-open pixel bbox ``(x0, y0, x1, y1)``; at least one pixel wide."""
    half = obj.side / 2.0
    x0, x1 = round((obj.cx - half) * image_size), round((obj.cx + half) * image_size)
    y0, y1 = round((obj.cy - half) * image_size), round((obj.cy + half) * image_size)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _render_background(rng: np.random.Generator, style: Style, image_size: int) -> Image.Image:
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
    return Image.new("RGB", (image_size, image_size), colour)


def _stripes(image_size: int, rgb: RGB, stripe_rgb: RGB, period: float) -> Image.Image:
    """Diagonal stripes, half ``rgb`` and half ``stripe_rgb``, ``period`` x side apart."""
    pix = max(2.0, period * image_size)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    on = ((xx + yy) % pix) < pix / 2.0  # (S, S)
    arr = np.where(on[..., None], np.asarray(stripe_rgb, np.uint8), np.asarray(rgb, np.uint8))
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


def _render(background: Image.Image, objects: Sequence[_Obj], style: Style | None = None) -> Image.Image:
    image = background.copy()
    draw = ImageDraw.Draw(image)
    size = image.size[0]
    outline = style.outline_rgb if style is not None else None
    width = max(1, round(style.outline_width * size)) if outline is not None else 0
    for obj in objects:
        draw_shape(draw, obj.shape, _pixel_box(obj, size), obj.rgb, outline, width)
    return image


def _obj_meta(obj: _Obj, image_size: int) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- validation


def _split_code(split: str) -> int:
    """Stable (process-independent) integer code for a split name."""
    return zlib.crc32(split.encode("utf-8"))


def _validate(
    split: str,
    seed: int,
    image_size: int,
    num_options: int,
    categories: Sequence[str] | str,
    style: str | None,
) -> tuple[tuple[str, ...], Style]:
    """Check the generation arguments; return normalised categories and the resolved Style."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if isinstance(num_options, bool) or not isinstance(num_options, (int, np.integer)) \
            or not MIN_NUM_OPTIONS <= num_options <= MAX_NUM_OPTIONS:
        raise ValueError(
            f"num_options must be in {MIN_NUM_OPTIONS}..{MAX_NUM_OPTIONS}, got {num_options!r}"
        )
    cats = (categories,) if isinstance(categories, str) else tuple(categories)
    if not cats:
        raise ValueError(f"categories must be non-empty; allowed: {list(CATEGORIES)}")
    for cat in cats:
        if cat not in CATEGORIES:
            raise ValueError(f"unknown category {cat!r}; allowed: {list(CATEGORIES)}")
    if style is None:
        style = {SHIFTED_SPLIT: SHIFTED_STYLE, HELDOUT_SPLIT: HELDOUT_STYLE}.get(split, DEFAULT_STYLE)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; allowed: {list(STYLES)}")
    return cats, STYLES[style]


# --------------------------------------------------------------------------- public API


def make_scene(
    index: int,
    *,
    split: str = "train",
    seed: int = 0,
    image_size: int = 224,
    num_options: int = 4,
    categories: Sequence[str] = CATEGORIES,
    style: str | None = None,
) -> SceneSample:
    """Generate scene ``index`` of ``split``.

    Args:
        index: non-negative scene index.
        split: one of :data:`SPLITS`; part of the RNG seed.
        seed: non-negative base seed.
        image_size: side of the square output images in pixels (>= :data:`MIN_IMAGE_SIZE`).
        num_options: number of captions, 2..4; the positive and the opposite caption are
            always kept, then the first remaining negatives.
        categories: categories to cycle through; ``categories[index % len(categories)]``.
        style: a key of :data:`STYLES`; ``None`` means the split's own style (``shifted``,
            ``heldout``) for those splits and ``"default"`` otherwise.

    Returns:
        A :class:`SceneSample`, deterministic in all arguments.

    Raises:
        ValueError: for an unknown split/category/style, bad num_options, image size, seed
            or a negative index.
    """
    index = operator.index(index)
    if index < 0:
        raise ValueError(f"index must be non-negative, got {index}")
    cats, style_obj = _validate(split, seed, image_size, num_options, categories, style)
    category = cats[index % len(cats)]
    rng = np.random.default_rng([int(seed), _split_code(split), index])

    scene = _BUILDERS[category](rng, style_obj)
    background = _render_background(rng, style_obj, image_size)
    image = _render(background, scene.objects, style_obj)
    opposite_image = _render(background, scene.opposite_objects, style_obj)

    kept = scene.options[:num_options]
    order = [int(i) for i in rng.permutation(num_options)]
    captions = [kept[i][1] for i in order]
    kinds = [kept[i][0] for i in order]
    meta: dict[str, Any] = {
        "index": index,
        "seed": int(seed),
        "split": split,
        "style": style_obj.name,
        "category": category,
        "image_size": int(image_size),
        "objects": [_obj_meta(o, image_size) for o in scene.objects],
        "opposite_objects": [_obj_meta(o, image_size) for o in scene.opposite_objects],
        "option_kinds": kinds,
        **scene.extra_meta,
    }
    return SceneSample(
        image=image,
        opposite_image=opposite_image,
        captions=captions,
        label=order.index(0),
        opposite_label=order.index(1),
        category=category,
        meta=meta,
    )


class SyntheticScenes(torch.utils.data.Dataset):
    """A fixed-size dataset of :func:`make_scene` samples (generated on access).

    Items are :class:`SceneSample` objects holding PIL images, so a DataLoader needs a
    custom ``collate_fn``.
    """

    def __init__(
        self,
        size: int,
        *,
        split: str = "train",
        seed: int = 0,
        image_size: int = 224,
        num_options: int = 4,
        categories: Sequence[str] = CATEGORIES,
        style: str | None = None,
    ) -> None:
        size = operator.index(size)
        if size < 0:
            raise ValueError(f"size must be non-negative, got {size}")
        cats, style_obj = _validate(split, seed, image_size, num_options, categories, style)
        self.size = size
        self.split = split
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.num_options = int(num_options)
        self.categories = cats
        self.style = style_obj.name

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> SceneSample:
        requested = operator.index(i)
        index = requested + self.size if requested < 0 else requested
        if not 0 <= index < self.size:
            raise IndexError(f"index {requested} out of range for dataset of size {self.size}")
        return make_scene(
            index,
            split=self.split,
            seed=self.seed,
            image_size=self.image_size,
            num_options=self.num_options,
            categories=self.categories,
            style=self.style,
        )
