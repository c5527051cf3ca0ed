"""Seeded captioned scenes (one image, one true caption) for pretraining a small CLIP.

The multiple-choice scenes of :mod:`dcsm.data.synthetic.scenes` test a scorer; these train the
encoder underneath it, the way CLIP is trained: each image comes with one caption that is true
of it, and the negatives are the other captions of the batch (no hard negatives are made).

Captions come in five kinds, with the vocabulary of the test scenes:

``single``    one object: "a red square"
``pair``      two objects: "a small red square and a big blue circle" (size words when sizes differ)
``relation``  "a red square to the left of a blue circle" (left / right / above / below)
``count``     two or three identical objects: "three red squares"
``negation``  one object (plus a distractor half of the time) and an absent one: "a red square
              without a blue circle" (the three negation templates of the test scenes)

Controlled variants (issue 27) plant a statistic the diagnostics should find: ``placement``
``gaussian`` draws object centres around the image centre (``N(0.5, centre_sigma^2)`` per axis,
truncated to the free area; relation pairs are shifted as a group onto such a draw), and
``background_cue`` ``shape_colour`` gives every scene a background base colour that names the
shape of its first object (:data:`CUE_COLOURS`) in ``cue_agreement`` of the scenes and one of the
other shapes' colours otherwise; no caption mentions the background.

Every image draws its own rendering style: image side, flat / gradient / noise / blotch
backgrounds of any colour, optional outlines (black or a darker shade of the fill), object
sizes, positions and colour jitter, so that features carry colour, shape and position across
renderers. Stripes and white outlines (the ``heldout`` style of :mod:`dcsm.data.synthetic.scenes`)
never occur here. A sample is a deterministic function of ``(seed, index)`` and the options.
"""

from __future__ import annotations

import operator
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .layout import noun_phrase
from .render import draw_shape
from .templates import fill, template_pool
from .vocab import (
    BACKGROUND_CUES,
    PLACEMENTS,
    CHANNEL_MAX,
    COLOURS,
    CONJUNCTION_TEMPLATE,
    MIN_OBJECT_GAP,
    NEGATION_TEMPLATES,
    PAIR_WORDINGS,
    RELATIONS,
    SHAPES,
    SMALL,
    BIG,
)

__all__ = ["CAPTION_KINDS", "PLACEMENTS", "BACKGROUND_CUES", "CUE_COLOURS", "CaptionedConfig", "CaptionedSample", "make_captioned_scene", "CaptionedScenes",
           "BINDING_OPTIONS", "binding_probe"]

CAPTION_KINDS: tuple[str, ...] = ("single", "pair", "relation", "count", "negation")
BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "noise", "blotches")
#: ``background_cue=shape_colour``: the background base colour that goes with each shape (each at
#: least 120 (L-inf) from every object colour of :data:`COLOURS`, before jitter).
CUE_COLOURS: dict[str, tuple[int, int, int]] = {"square": (25, 25, 25), "circle": (235, 235, 235), "triangle": (90, 200, 200)}
CUE_JITTER = 12  # per-channel jitter of a cue background's base colour
GAUSSIAN_TRIES = 8  # truncated-normal draws per centre before clipping
GAUSSIAN_WIDEN = 0.05  # a gaussian layout that does not fit widens its sigma by this fraction per try
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three"}
PLURALS: dict[str, str] = {"square": "squares", "circle": "circles", "triangle": "triangles"}
#: Stream code of this generator in the RNG seed (never collides with a split name's crc32 use).
STREAM = zlib.crc32(b"captioned-pretraining")
#: Background colours are redrawn until every object colour is this far (L-inf) from them.
MIN_BACKGROUND_DISTANCE = 70
MAX_TRIES = 200


@dataclass(frozen=True)
class CaptionedConfig:
    """Distribution of captioned scenes (one home for every number of the generator).

    Attributes:
        kind_weights: relative frequency of each of :data:`CAPTION_KINDS`.
        image_size: (min, max) image side in pixels.
        background_weights: relative frequency of each of :data:`BACKGROUNDS`.
        noise_std: (min, max) per-pixel noise std of ``noise`` backgrounds.
        blotch_cells: (min, max) grid cells of the low-frequency ``blotches`` texture.
        texture_amplitude: max deviation of gradient / blotch backgrounds from their base colour.
        outline_probability: chance that a scene's objects get an outline.
        outline_width: (min, max) outline width as a fraction of the image side (>= 1 pixel).
        small_size: (min, max) side of a small object (fraction of the image side).
        size_ratio: (min, max) big / small side ratio.
        free_size: (min, max) side of objects whose caption names no size.
        margin: (min, max) free border (fraction of the side).
        min_separation: relation scenes: minimum centre distance on the relation axis.
        max_cross_offset: relation scenes: max centre offset on the other axis.
        colour_jitter: max per-channel jitter of object colours.
        sized_probability: pair / relation captions: chance that the objects differ in size
            and the caption says so.
        distractor_probability: negation scenes: chance of a distractor object.
        placement: ``uniform`` centres in the free area, or ``gaussian`` around the image centre.
        centre_sigma: ``gaussian``: std of each centre coordinate (fraction of the side).
        background_cue: ``none``, or ``shape_colour`` (the background colour predicts the shape).
        cue_agreement: ``shape_colour``: fraction of scenes whose background is their shape's colour.
        pair_wording: ``and`` ("{a} and {b}": every shipped small CLIP) or ``binding_templates``
            (the binding family's training templates, e.g. "{a} together with {b}").
    """

    kind_weights: tuple[float, ...] = (0.1, 0.25, 0.3, 0.1, 0.25)
    image_size: tuple[int, int] = (64, 224)
    background_weights: tuple[float, ...] = (0.3, 0.25, 0.25, 0.2)
    noise_std: tuple[float, float] = (4.0, 24.0)
    blotch_cells: tuple[int, int] = (2, 6)
    texture_amplitude: float = 60.0
    outline_probability: float = 0.3
    outline_width: tuple[float, float] = (0.008, 0.025)
    small_size: tuple[float, float] = (0.07, 0.16)
    size_ratio: tuple[float, float] = (1.7, 2.3)
    free_size: tuple[float, float] = (0.08, 0.32)
    margin: tuple[float, float] = (0.0, 0.1)
    min_separation: float = 0.25
    max_cross_offset: float = 0.12
    colour_jitter: int = 20
    sized_probability: float = 0.5
    distractor_probability: float = 0.5
    placement: str = "uniform"
    centre_sigma: float = 0.15
    background_cue: str = "none"
    cue_agreement: float = 0.95
    pair_wording: str = "and"

    def __post_init__(self) -> None:
        if len(self.kind_weights) != len(CAPTION_KINDS) or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ValueError(f"kind_weights must be {len(CAPTION_KINDS)} non-negative weights for {CAPTION_KINDS}")
        if len(self.background_weights) != len(BACKGROUNDS) or min(self.background_weights) < 0:
            raise ValueError(f"background_weights must be {len(BACKGROUNDS)} non-negative weights for {BACKGROUNDS}")
        if not 32 <= self.image_size[0] <= self.image_size[1]:
            raise ValueError(f"image_size must be (min, max) with 32 <= min <= max, got {self.image_size}")
        if self.placement not in PLACEMENTS or self.background_cue not in BACKGROUND_CUES or self.pair_wording not in PAIR_WORDINGS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, background_cue one of {BACKGROUND_CUES} and "
                             f"pair_wording one of {PAIR_WORDINGS}")
        if not self.centre_sigma > 0 or not 0 <= self.cue_agreement <= 1:
            raise ValueError(f"centre_sigma must be > 0 and cue_agreement in [0, 1], got {self.centre_sigma}, {self.cue_agreement}")

    @classmethod
    def from_config(cls, section: dict) -> "CaptionedConfig":
        """From the ``scenes:`` section of ``configs/pretrain_toy_clip.yaml`` (its one home)."""
        return cls(kind_weights=tuple(float(w) for w in section["kind_weights"]),
                   image_size=tuple(section["image_size"]), placement=section["placement"],
                   centre_sigma=float(section["centre_sigma"]), background_cue=section["background_cue"],
                   cue_agreement=float(section["cue_agreement"]), pair_wording=section.get("pair_wording", "and"))


@dataclass
class CaptionedSample:
    """One image with the one caption drawn for it; ``meta`` is JSON-serialisable."""

    image: Image.Image
    caption: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Item:
    shape: str
    colour: str
    side: float
    cx: float = 0.0
    cy: float = 0.0


def _weighted(rng: np.random.Generator, items: Sequence[str], weights: Sequence[float]) -> str:
    p = np.asarray(weights, dtype=np.float64)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def _pick(rng: np.random.Generator, items: Sequence[str], k: int) -> list[str]:
    return [items[int(i)] for i in rng.choice(len(items), size=k, replace=False)]


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _centre(rng: np.random.Generator, cfg: CaptionedConfig, lo: float, hi: float, widen: float = 1.0) -> tuple[float, float]:
    """One ``(cx, cy)`` in ``[lo, hi]^2``: uniform, or ``N(0.5, (widen * centre_sigma)^2)`` per
    axis (the first of :data:`GAUSSIAN_TRIES` draws inside the square, else the first one clipped)."""
    if cfg.placement == "uniform":
        cx, cy = (float(v) for v in rng.uniform(lo, hi, size=2))
        return cx, cy
    z = 0.5 + widen * cfg.centre_sigma * rng.standard_normal((GAUSSIAN_TRIES, 2))  # (T, 2)
    inside = ((z >= lo) & (z <= hi)).all(axis=1)
    row = z[int(inside.argmax())] if inside.any() else np.clip(z[0], lo, hi)
    return float(row[0]), float(row[1])


def _recentre(rng: np.random.Generator, cfg: CaptionedConfig, items: list[_Item], margin: float) -> list[_Item]:
    """``gaussian``: shift the group so the midpoint of its centres lands on a :func:`_centre`
    draw (as far as every object stays inside the margin); ``uniform``: unchanged."""
    if cfg.placement == "uniform":
        return items
    xy = np.array([[it.cx, it.cy] for it in items])  # (N, 2)
    half = np.array([it.side / 2.0 for it in items])[:, None]  # (N, 1)
    low, high = (margin + half - xy).max(axis=0), (1.0 - margin - half - xy).min(axis=0)  # allowed shifts (2,)
    mid = (xy.min(axis=0) + xy.max(axis=0)) / 2.0
    target = np.array(_centre(rng, cfg, 0.0, 1.0))
    shift = np.clip(target - mid, low, np.maximum(low, high))
    return [_Item(it.shape, it.colour, it.side, float(x), float(y)) for it, (x, y) in zip(items, xy + shift)]


def _place(rng: np.random.Generator, items: list[_Item], margin: float,
           cfg: CaptionedConfig = CaptionedConfig()) -> list[_Item]:
    """Non-overlapping random centres inside the margin (boxes ``MIN_OBJECT_GAP`` apart), drawn by
    :func:`_centre` (``cfg.placement``; a ``gaussian`` that does not fit widens by :data:`GAUSSIAN_WIDEN` a try)."""
    for attempt in range(MAX_TRIES):
        placed: list[_Item] = []
        for it in items:
            lo, hi = margin + it.side / 2.0, 1.0 - margin - it.side / 2.0
            cx, cy = _centre(rng, cfg, lo, hi, 1.0 + GAUSSIAN_WIDEN * attempt)
            need = lambda o: (o.side + it.side) / 2.0 + MIN_OBJECT_GAP  # noqa: E731
            if all(abs(cx - o.cx) >= need(o) or abs(cy - o.cy) >= need(o) for o in placed):
                placed.append(_Item(it.shape, it.colour, it.side, cx, cy))
            else:
                break
        if len(placed) == len(items):
            return placed
    raise RuntimeError(f"could not place {len(items)} objects")  # not reached with the default sizes


def _sizes(rng: np.random.Generator, cfg: CaptionedConfig, sized: bool) -> tuple[float, float, list[str]]:
    """Two object sides; with ``sized``, one small and one big (order random) and their words."""
    if not sized:
        return _uniform(rng, cfg.free_size), _uniform(rng, cfg.free_size), []
    small = _uniform(rng, cfg.small_size)
    big = small * _uniform(rng, cfg.size_ratio)
    if rng.random() < 0.5:
        return small, big, [SMALL, BIG]
    return big, small, [BIG, SMALL]


def _single(rng: np.random.Generator, cfg: CaptionedConfig, margin: float) -> tuple[list[_Item], str, dict]:
    colour, shape = _pick(rng, tuple(COLOURS), 1)[0], _pick(rng, SHAPES, 1)[0]
    items = _place(rng, [_Item(shape, colour, _uniform(rng, cfg.free_size))], margin, cfg)
    return items, noun_phrase(colour, shape), {}


def _pair(rng: np.random.Generator, cfg: CaptionedConfig, margin: float) -> tuple[list[_Item], str, dict]:
    c1, c2 = _pick(rng, tuple(COLOURS), 2)
    h1, h2 = (SHAPES[int(i)] for i in rng.integers(len(SHAPES), size=2))
    s1, s2, words = _sizes(rng, cfg, bool(rng.random() < cfg.sized_probability))
    items = _place(rng, [_Item(h1, c1, s1), _Item(h2, c2, s2)], margin, cfg)
    w1, w2 = words or (None, None)
    pool = template_pool("binding", which="train") if cfg.pair_wording != "and" else (CONJUNCTION_TEMPLATE,)
    template = pool[int(rng.integers(len(pool)))] if len(pool) > 1 else pool[0]  # "and": no draw, the shipped stream
    return items, fill(template, a=noun_phrase(c1, h1, w1), b=noun_phrase(c2, h2, w2)), {}


def _relation(rng: np.random.Generator, cfg: CaptionedConfig, margin: float) -> tuple[list[_Item], str, dict]:
    rel = tuple(RELATIONS)[int(rng.integers(len(RELATIONS)))]
    c1, c2 = _pick(rng, tuple(COLOURS), 2)
    h1, h2 = (SHAPES[int(i)] for i in rng.integers(len(SHAPES), size=2))
    s1, s2, words = _sizes(rng, cfg, bool(rng.random() < cfg.sized_probability))
    side = max(s1, s2)
    lo, hi = margin + side / 2.0, 1.0 - margin - side / 2.0
    closest = max(cfg.min_separation, side + MIN_OBJECT_GAP)
    widest = hi - lo if cfg.placement == "uniform" else min(hi - lo, closest + 2 * cfg.centre_sigma)  # centred: close pairs
    d = float(rng.uniform(closest, max(widest, cfg.min_separation)))
    d = min(d, hi - lo)
    near = float(rng.uniform(lo, hi - d))
    far = near + d
    off = cfg.max_cross_offset / 2.0
    base = float(rng.uniform(lo + off, hi - off)) if hi - lo > 2 * off else (lo + hi) / 2.0
    oa, ob = (float(v) for v in rng.uniform(-off, off, size=2))
    pa, pb = (near, far) if rel in ("left", "above") else (far, near)
    if rel in ("left", "right"):
        a, b = _Item(h1, c1, s1, pa, base + oa), _Item(h2, c2, s2, pb, base + ob)
    else:
        a, b = _Item(h1, c1, s1, base + oa, pa), _Item(h2, c2, s2, base + ob, pb)
    w1, w2 = words or (None, None)
    caption = f"{noun_phrase(c1, h1, w1)} {RELATIONS[rel]} {noun_phrase(c2, h2, w2)}"
    return _recentre(rng, cfg, [a, b], margin), caption, {"relation": rel}


def _count(rng: np.random.Generator, cfg: CaptionedConfig, margin: float) -> tuple[list[_Item], str, dict]:
    n = tuple(COUNT_WORDS)[int(rng.integers(len(COUNT_WORDS)))]
    colour, shape = _pick(rng, tuple(COLOURS), 1)[0], _pick(rng, SHAPES, 1)[0]
    side = float(rng.uniform(cfg.free_size[0], (cfg.free_size[0] + cfg.free_size[1]) / 2.0))
    items = _place(rng, [_Item(shape, colour, side) for _ in range(n)], margin, cfg)
    return items, f"{COUNT_WORDS[n]} {colour} {PLURALS[shape]}", {"count": n}


def _negation(rng: np.random.Generator, cfg: CaptionedConfig, margin: float) -> tuple[list[_Item], str, dict]:
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    ia, ib = (int(i) for i in rng.choice(len(kinds), size=2, replace=False))
    (ca, ha), (cb, hb) = kinds[ia], kinds[ib]
    specs = [(ca, ha)]
    if rng.random() < cfg.distractor_probability:
        rest = [k for k in kinds if k not in ((ca, ha), (cb, hb))]
        specs.append(rest[int(rng.integers(len(rest)))])
    items = _place(rng, [_Item(h, c, _uniform(rng, cfg.free_size)) for c, h in specs], margin, cfg)
    template = NEGATION_TEMPLATES[int(rng.integers(len(NEGATION_TEMPLATES)))]
    caption = template.format(a=noun_phrase(ca, ha), b=noun_phrase(cb, hb), b_bare=noun_phrase(cb, hb, article=False))
    return items, caption, {"absent": [cb, hb]}


_KINDS: dict[str, Callable[[np.random.Generator, CaptionedConfig, float], tuple[list[_Item], str, dict]]] = {
    "single": _single, "pair": _pair, "relation": _relation, "count": _count, "negation": _negation,
}


def cue_shape(rng: np.random.Generator, cfg: CaptionedConfig, shape: str) -> str:
    """The shape whose :data:`CUE_COLOURS` colour the background takes: ``shape`` with
    probability ``cue_agreement``, else one of the other shapes (uniformly)."""
    if rng.random() < cfg.cue_agreement:
        return shape
    others = [s for s in SHAPES if s != shape]
    return others[int(rng.integers(len(others)))]


def _background(rng: np.random.Generator, cfg: CaptionedConfig, size: int, avoid: list[np.ndarray],
                base: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """``(S, S, 3)`` float background and its kind; its base colour is ``base`` when given, else
    drawn far from ``avoid``."""
    for _ in range(0 if base is not None else MAX_TRIES):
        base = rng.integers(0, CHANNEL_MAX + 1, size=3).astype(np.float32)
        if all(np.abs(base - a).max() >= MIN_BACKGROUND_DISTANCE for a in avoid):
            break
    kind = _weighted(rng, BACKGROUNDS, cfg.background_weights)
    arr = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    amp = cfg.texture_amplitude
    if kind == "gradient":
        angle = float(rng.uniform(0, 2 * np.pi))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1) - 0.5
        ramp = np.cos(angle) * xx + np.sin(angle) * yy  # (S, S) in [-0.71, 0.71]
        arr = arr + ramp[..., None] * rng.uniform(-amp, amp, size=3).astype(np.float32) * 1.4
    elif kind == "noise":
        arr = arr + rng.standard_normal((size, size, 3), dtype=np.float32) * _uniform(rng, cfg.noise_std)
    elif kind == "blotches":
        cells = int(rng.integers(cfg.blotch_cells[0], cfg.blotch_cells[1] + 1))
        low = rng.uniform(-amp / 2, amp / 2, size=(cells, cells, 3)).astype(np.float32)
        up = np.stack([np.asarray(Image.fromarray(low[..., c]).resize((size, size), Image.BILINEAR)) for c in range(3)], -1)
        arr = arr + up
    return np.clip(arr, 0, CHANNEL_MAX), kind


def make_captioned_scene(index: int, *, seed: int = 0, cfg: CaptionedConfig = CaptionedConfig()) -> CaptionedSample:
    """Captioned scene ``index`` of the stream ``seed``; deterministic in all arguments.

    Raises:
        ValueError: negative index or seed.
    """
    index = operator.index(index)
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
    rng = np.random.default_rng([int(seed), STREAM, index])
    kind = _weighted(rng, CAPTION_KINDS, cfg.kind_weights)
    size = int(rng.integers(cfg.image_size[0], cfg.image_size[1] + 1))
    margin = _uniform(rng, cfg.margin)
    items, caption, extra = _KINDS[kind](rng, cfg, margin)

    j = cfg.colour_jitter
    rgbs = [np.clip(np.asarray(COLOURS[it.colour]) + rng.integers(-j, j + 1, size=3), 0, CHANNEL_MAX) for it in items]
    cue = cue_shape(rng, cfg, items[0].shape) if cfg.background_cue == "shape_colour" else None
    base = None if cue is None else np.clip(np.asarray(CUE_COLOURS[cue], np.float32) + rng.integers(
        -CUE_JITTER, CUE_JITTER + 1, size=3), 0, CHANNEL_MAX).astype(np.float32)
    bg, bg_kind = _background(rng, cfg, size, [np.asarray(COLOURS[it.colour], np.float32) for it in items], base)
    image = Image.fromarray(bg.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    outlined = bool(rng.random() < cfg.outline_probability)
    width = max(1, round(_uniform(rng, cfg.outline_width) * size)) if outlined else 0
    black = bool(rng.random() < 0.5)
    for it, rgb in zip(items, rgbs):
        fill = tuple(int(v) for v in rgb)
        outline = ((0, 0, 0) if black else tuple(int(v) // 2 for v in rgb)) if outlined else None
        half = it.side / 2.0
        x0, y0 = round((it.cx - half) * size), round((it.cy - half) * size)
        x1, y1 = max(round((it.cx + half) * size), x0 + 1), max(round((it.cy + half) * size), y0 + 1)
        draw_shape(draw, it.shape, (x0, y0, x1, y1), fill, outline, width)
    meta = {
        "index": index, "seed": int(seed), "kind": kind, "image_size": size, "background": bg_kind,
        "outline": width, "objects": [[it.colour, it.shape, it.side, it.cx, it.cy] for it in items], **extra,
        **({"cue_shape": cue} if cue is not None else {}),
    }
    return CaptionedSample(image=image, caption=caption, kind=kind, meta=meta)


class CaptionedScenes(torch.utils.data.Dataset):
    """``size`` captioned scenes as ``(image tensor, token ids (context,))`` pairs.

    Args:
        size: number of samples (index ``i`` is :func:`make_captioned_scene` ``(start + i)``).
        transform: PIL image -> ``(3, H, W)`` tensor (the CLIP's preprocess).
        tokenizer: open_clip tokenizer, list of captions -> ``(n, context)`` ids.
    """

    def __init__(self, size: int, transform: Callable, tokenizer: Callable, *, seed: int = 0,
                 cfg: CaptionedConfig = CaptionedConfig(), start: int = 0) -> None:
        if size < 0 or start < 0:
            raise ValueError(f"size and start must be non-negative, got {size}, {start}")
        self.size, self.transform, self.tokenizer = size, transform, tokenizer
        self.seed, self.cfg, self.start = seed, cfg, start

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for {self.size} captioned scenes")
        s = make_captioned_scene(self.start + i, seed=self.seed, cfg=self.cfg)
        return self.transform(s.image), self.tokenizer([s.caption])[0]


#: Options of :func:`binding_probe`, in order (the first is the true caption).
BINDING_OPTIONS: tuple[str, ...] = ("positive", "colour_swap", "shape_swap", "size_swap")


def binding_probe(cfg: CaptionedConfig, size: int, seed: int) -> tuple[list[Image.Image], list[list[str]]]:
    """A CLIP's binding test on its own pretraining distribution: ``size`` held-out ``pair`` scenes.

    Scenes are drawn as ``cfg`` draws them (placement, backgrounds, cue), restricted to two objects
    of different shapes and sizes, from the stream ``seed`` (use one that no pretraining run
    uses). Each gets the four captions of :data:`BINDING_OPTIONS`, which hold the same words and
    differ only in what binds to what: ``"a big red square and a small blue circle"``, its colours
    swapped, its shapes swapped, its sizes swapped. Chance is 1/4.

    Returns:
        images, options: ``size`` PIL images and ``(size, 4)`` captions, the true one first.
    """
    pairs = replace(cfg, kind_weights=tuple(float(k == "pair") for k in CAPTION_KINDS), sized_probability=1.0)
    images: list[Image.Image] = []
    options: list[list[str]] = []
    index = 0
    while len(images) < size:  # about 2 in 3 pair scenes have two different shapes
        s = make_captioned_scene(index, seed=seed, cfg=pairs)
        index += 1
        (c1, h1, side1, *_), (c2, h2, side2, *_) = s.meta["objects"]
        if h1 == h2:
            continue
        w1, w2 = (BIG, SMALL) if side1 > side2 else (SMALL, BIG)
        images.append(s.image)
        options.append([s.caption, _pair_caption((w1, c2, h1), (w2, c1, h2)), _pair_caption((w1, c1, h2), (w2, c2, h1)),
                        _pair_caption((w2, c1, h1), (w1, c2, h2))])
    return images, options


def _pair_caption(a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
    """``(size word, colour, shape)`` x 2 -> a ``pair`` caption, worded as :func:`_pair` words it."""
    return CONJUNCTION_TEMPLATE.format(a=noun_phrase(a[1], a[2], a[0]), b=noun_phrase(b[1], b[2], b[0]))
