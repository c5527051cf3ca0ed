"""The synthetic task families in the public benchmarks' formats: layouts, captions and options.

``spatial``
    Two objects A and B in one of eight relations (:data:`~.templates.RELATION_PHRASES`):
    left/right/above/below (separated along one axis, COCO-spatial's four), on/under (touching,
    stacked vertically; WhatsUp Controlled-A) and in front of/behind (overlapping: the front object
    is drawn over the other and sits lower, as nearer objects do in a photo; WhatsUp Controlled-B).
    Options, one template for all: the positive; the opposite (true for the opposite image, where
    A and B trade places / depth order): either A and B swapped ("B rel A") or the inverse relation
    ("A inv B"), as WhatsUp and COCO-spatial ask; then A with the two relations of another axis
    (left/right scenes: above/below, on/under or in front of/behind; every other scene: left/right).
``binding``
    Two objects. ``full`` (CLEVR-bind): size, colour and shape differ; options swap colours (true
    for the opposite image, which swaps them), sizes, shapes. ``pairs`` (attribute-object pairs,
    SugarCrepe's edits): colour + shape; options swap colours (opposite), replace one colour by one
    absent from the scene, replace one shape by the third shape.
``negation``
    NegBench's multiple choice: a present object P (plus a distractor D half of the time) and an
    absent object N, asked as one of three question types (NegBench's names): ``positive``
    ("this image features P"), ``negative`` ("there is no N in this image") or ``hybrid``
    ("this image features P, but not N"). Wrong options follow NegBench: the hybrid with P and N
    swapped, N affirmed, P negated; exactly one option holds for the image and one (N affirmed, or
    P negated for ``positive``) for the opposite image (N added, or P removed for ``positive``).

Every builder takes ``pool`` (``train``/``heldout``/``all`` of :func:`~.templates.template_pool`)
and optional keywords that fix a draw (the format-transfer files use them); everything else comes
from ``rng``, so a scene is deterministic in its generator's seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .layout import _Scene, SceneObject, _make_obj, _pick, _place_free, noun_phrase
from .styles import Style
from .templates import INVERSE_RELATION, RELATION_PHRASES, fill, template_pool
from .vocab import (
    COLOURS,
    DISTRACTOR_PROBABILITY,
    MIN_OBJECT_GAP,
    MIN_PRIMARY_SEPARATION,
    SHAPES,
    SIZE_WORDS,
)

__all__ = ["BUILDERS", "SPATIAL_RELATIONS", "QUESTION_TYPES", "BINDING_VARIANTS", "build_spatial",
           "build_binding", "build_negation"]

SPATIAL_RELATIONS: tuple[str, ...] = tuple(RELATION_PHRASES)
PLANAR = ("left", "right", "above", "below")
STACKED = ("on", "under")
DEPTH = ("front", "behind")
#: The other axes a left/right scene asks about; every other scene is asked left/right.
_CONTRASTS = (("above", "below"), STACKED, DEPTH)
OPPOSITE_KINDS = ("swapped", "inverse")
QUESTION_TYPES: tuple[str, ...] = ("positive", "negative", "hybrid")
BINDING_VARIANTS: tuple[str, ...] = ("full", "pairs")
#: front/behind: horizontal centre distance as a fraction of the side (overlap 1 - this), and the
#: front object's downward shift as a fraction of the side.
DEPTH_DX = (0.55, 0.75)
DEPTH_DY = (0.15, 0.30)
#: on/under: the top object's horizontal offset, fraction of the smaller side.
STACK_DX = 0.15


def _choice(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _planar(rng: np.random.Generator, style: Style, a: SceneObject, b: SceneObject, rel: str
            ) -> tuple[list[SceneObject], list[SceneObject]]:
    """A clearly ``rel`` of B, separated along the relation axis; the opposite swaps places."""
    side = max(a.side, b.side)  # both ranges use the larger side so that swapping stays valid
    lo, hi = style.margin + side / 2.0, 1.0 - style.margin - side / 2.0
    d = float(rng.uniform(max(MIN_PRIMARY_SEPARATION, side + MIN_OBJECT_GAP), hi - lo))
    near = float(rng.uniform(lo, hi - d))
    half_j = style.position_jitter / 2.0
    base = float(rng.uniform(lo + half_j, hi - half_j))
    off_a, off_b = (float(v) for v in rng.uniform(-half_j, half_j, size=2))
    a_p, b_p = (near, near + d) if rel in ("left", "above") else (near + d, near)
    if rel in ("left", "right"):
        a, b = a.moved(a_p, base + off_a), b.moved(b_p, base + off_b)
    else:
        a, b = a.moved(base + off_a, a_p), b.moved(base + off_b, b_p)
    return [a, b], [a.moved(b.cx, b.cy), b.moved(a.cx, a.cy)]


def _stacked(rng: np.random.Generator, style: Style, a: SceneObject, b: SceneObject, rel: str
             ) -> tuple[list[SceneObject], list[SceneObject]]:
    """A on (touching, directly above) or under B; the opposite stacks them the other way."""
    height = a.side + b.side
    top = float(rng.uniform(style.margin, 1.0 - style.margin - height))
    side = max(a.side, b.side)
    x = float(rng.uniform(style.margin + side / 2.0, 1.0 - style.margin - side / 2.0))
    shift = STACK_DX * min(a.side, b.side)
    dx = float(rng.uniform(-shift, shift))
    dx = float(np.clip(x + dx, style.margin + side / 2.0, 1.0 - style.margin - side / 2.0)) - x

    def stack(upper: SceneObject, lower: SceneObject) -> list[SceneObject]:
        return [upper.moved(x + dx, top + upper.side / 2.0), lower.moved(x, top + upper.side + lower.side / 2.0)]

    on, under = stack(a, b), stack(b, a)[::-1]  # [A, B] in both
    return (on, under) if rel == "on" else (under, on)


def _depth(rng: np.random.Generator, style: Style, a: SceneObject, b: SceneObject, rel: str
           ) -> tuple[list[SceneObject], list[SceneObject]]:
    """A in front of B (overlapping, drawn last, lower) or behind it; lists are in drawing order.
    Both objects have the same side (``a``'s), so the one behind stays mostly visible."""
    s = a.side
    b = SceneObject(b.role, b.shape, b.colour, a.size_word, s, 0.0, 0.0, b.rgb)
    dx = float(rng.uniform(*DEPTH_DX)) * s * (1 if rng.random() < 0.5 else -1)
    dy = float(rng.uniform(*DEPTH_DY)) * s
    lo, hi = style.margin + s / 2.0, 1.0 - style.margin - s / 2.0
    x0 = float(rng.uniform(lo + max(0.0, -dx), hi - max(0.0, dx)))  # the back object's centre
    y0 = float(rng.uniform(lo, hi - dy))
    back, front = (x0, y0), (x0 + dx, y0 + dy)
    a_front = [b.moved(*back), a.moved(*front)]  # drawn back to front
    a_behind = [a.moved(*back), b.moved(*front)]
    return (a_front, a_behind) if rel == "front" else (a_behind, a_front)


def _geometry(rel: str) -> Callable[..., tuple[list[SceneObject], list[SceneObject]]]:
    return _planar if rel in PLANAR else _stacked if rel in STACKED else _depth


def build_spatial(rng: np.random.Generator, style: Style, pool: str = "train", *, relation: str | None = None,
                  contrast: tuple[str, str] | None = None, opposite_kind: str | None = None,
                  kinds: tuple[tuple[str, str], tuple[str, str]] | None = None) -> _Scene:
    """A ``spatial`` scene; ``relation`` / ``contrast`` (the two other relations asked) /
    ``opposite_kind`` (``swapped``/``inverse``) / ``kinds`` (A's and B's (colour, shape)) fix those draws."""
    rel = relation if relation is not None else _choice(rng, SPATIAL_RELATIONS)
    if kinds is None:
        col_a, col_b = _pick(rng, tuple(COLOURS), 2)
        shape_a, shape_b = _pick(rng, SHAPES, 2)
    else:
        (col_a, shape_a), (col_b, shape_b) = kinds
    size_a, size_b = (SIZE_WORDS[int(i)] for i in rng.integers(len(SIZE_WORDS), size=2))
    a = _make_obj(rng, style, "A", col_a, shape_a, size_a)
    b = _make_obj(rng, style, "B", col_b, shape_b, size_b)
    objects, opposite = _geometry(rel)(rng, style, a, b, rel)
    same_size = rel in DEPTH or size_a == size_b  # depth scenes draw both at A's size
    np_a = noun_phrase(col_a, shape_a, None if same_size else size_a)
    np_b = noun_phrase(col_b, shape_b, None if same_size else size_b)
    template = _choice(rng, template_pool("spatial", which=pool))
    if contrast is None:
        contrast = _CONTRASTS[int(rng.integers(len(_CONTRASTS)))] if rel in ("left", "right") else ("left", "right")
    kind = opposite_kind if opposite_kind is not None else _choice(rng, OPPOSITE_KINDS)

    def cap(x: str, r: str, y: str) -> str:
        return fill(template, a=x, b=y, rel=RELATION_PHRASES[r])

    opp = ("swapped", cap(np_b, rel, np_a)) if kind == "swapped" else ("inverse", cap(np_a, INVERSE_RELATION[rel], np_b))
    options = [("positive", cap(np_a, rel, np_b)), opp,
               *((f"other_{r}", cap(np_a, r, np_b)) for r in contrast)]
    extra = {"relation": rel, "template": template, "a": np_a, "b": np_b, "contrast": list(contrast)}
    return _Scene(objects, opposite, options, extra)


def build_binding(rng: np.random.Generator, style: Style, pool: str = "train", *, variant: str | None = None) -> _Scene:
    """A ``binding`` scene (``variant``: ``full`` or ``pairs``, drawn when None)."""
    variant = variant if variant is not None else _choice(rng, BINDING_VARIANTS)
    c1, c2 = _pick(rng, tuple(COLOURS), 2)
    h1, h2 = _pick(rng, SHAPES, 2)
    s1, s2 = _pick(rng, SIZE_WORDS, 2) if variant == "full" else \
        [SIZE_WORDS[int(i)] for i in rng.integers(len(SIZE_WORDS), size=2)]
    o1, o2 = _make_obj(rng, style, "1", c1, h1, s1), _make_obj(rng, style, "2", c2, h2, s2)
    (x1, y1), (x2, y2) = _place_free(rng, style, [o1.side, o2.side])
    o1, o2 = o1.moved(x1, y1), o2.moved(x2, y2)
    opposite = [o1.recoloured(c2, o2.rgb), o2.recoloured(c1, o1.rgb)]
    template = _choice(rng, template_pool("binding", which=pool))
    sized = variant == "full"

    def cap(a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
        return fill(template, a=noun_phrase(a[1], a[2], a[0] if sized else None),
                    b=noun_phrase(b[1], b[2], b[0] if sized else None))

    if sized:
        options = [("positive", cap((s1, c1, h1), (s2, c2, h2))), ("colour_swap", cap((s1, c2, h1), (s2, c1, h2))),
                   ("size_swap", cap((s2, c1, h1), (s1, c2, h2))), ("shape_swap", cap((s1, c1, h2), (s2, c2, h1)))]
    else:
        absent = [c for c in COLOURS if c not in (c1, c2)]
        c3, h3 = _choice(rng, absent), next(h for h in SHAPES if h not in (h1, h2))
        first = bool(rng.random() < 0.5)  # which object the replacements edit
        att = ((s1, c3, h1), (s2, c2, h2)) if first else ((s1, c1, h1), (s2, c3, h2))
        obj = ((s1, c1, h3), (s2, c2, h2)) if first else ((s1, c1, h1), (s2, c2, h3))
        options = [("positive", cap((s1, c1, h1), (s2, c2, h2))), ("colour_swap", cap((s1, c2, h1), (s2, c1, h2))),
                   ("replace_att", cap(*att)), ("replace_obj", cap(*obj))]
    extra = {"relation": None, "template": template, "variant": variant}
    return _Scene([o1, o2], opposite, options, extra)


def build_negation(rng: np.random.Generator, style: Style, pool: str = "train", *,
                   question_type: str | None = None) -> _Scene:
    """A ``negation`` scene as a NegBench question (``question_type`` drawn when None)."""
    qtype = question_type if question_type is not None else _choice(rng, QUESTION_TYPES)
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    ip, i_n = (int(i) for i in rng.choice(len(kinds), size=2, replace=False))
    specs = [("P", *kinds[ip]), ("N", *kinds[i_n])]
    with_distractor = bool(rng.random() < DISTRACTOR_PROBABILITY)
    if with_distractor:
        rest = [k for k in kinds if k not in (kinds[ip], kinds[i_n])]
        specs.append(("D", *rest[int(rng.integers(len(rest)))]))
    objs = [_make_obj(rng, style, role, col, shape, SIZE_WORDS[int(rng.integers(len(SIZE_WORDS)))])
            for role, col, shape in specs]
    centres = _place_free(rng, style, [o.side for o in objs])
    objs = [o.moved(cx, cy) for o, (cx, cy) in zip(objs, centres)]
    shown = [o for o in objs if o.role != "N"]
    opposite = [o for o in objs if o.role == "D"] if qtype == "positive" else objs  # P removed / N added
    t_aff, t_neg, t_hyb = (_choice(rng, template_pool(f, which=pool)) for f in ("affirm", "negate", "hybrid"))
    p, n = noun_phrase(*kinds[ip]), noun_phrase(*kinds[i_n])

    def aff(x: str) -> str:
        return fill(t_aff, p=x)

    def neg(x: str) -> str:
        return fill(t_neg, n=x)

    def hyb(x: str, y: str) -> str:
        return fill(t_hyb, p=x, n=y)

    wrong = [("hybrid_swap", hyb(n, p)), ("absent_affirmed", aff(n)), ("present_negated", neg(p))]
    if qtype == "positive":
        options = [("positive", aff(p)), wrong[2], wrong[0], wrong[1]]
    else:
        options = [("positive", neg(n) if qtype == "negative" else hyb(p, n)), wrong[1], wrong[0], wrong[2]]
    used = {"positive": [t_aff, t_neg, t_hyb], "negative": [t_neg, t_aff, t_hyb], "hybrid": [t_hyb, t_aff, t_neg]}
    extra = {"relation": None, "question_type": qtype, "template": used[qtype][0], "templates": used[qtype],
             "present": p, "absent": n, "distractor": with_distractor}
    return _Scene(shown, opposite, options, extra)


BUILDERS: dict[str, Callable[..., _Scene]] = {
    "spatial": build_spatial,
    "binding": build_binding,
    "negation": build_negation,
}

