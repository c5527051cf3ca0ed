"""Seeded synthetic scenes with one-true-of-N captions and hard-negative opposite images.

Every sample is a deterministic function of ``(seed, split, index, image_size, num_options,
categories, style)``.  A scene belongs to one of three categories:

``spatial``
    Two objects A and B in one of eight relations (left/right/above/below, on/under by
    stacking, in front of/behind by occlusion), asked as WhatsUp and COCO-spatial ask.
``binding``
    Two objects: colour/size/shape swaps (CLEVR-bind) or attribute-object pairs with swapped or
    replaced attributes and objects (SugarCrepe).
``negation``
    NegBench's multiple choice: affirmation, negation and hybrid questions about a present and
    an absent object, with NegBench's wrong options.

The layouts, captions and options are :mod:`dcsm.data.synthetic.families`; the wordings
:mod:`dcsm.data.synthetic.templates`.  Option 0 of a builder is true for ``image``, option 1
for ``opposite_image``.  The ``heldout_templates`` split uses the default renderer and only the
held-out templates, which no other split uses.

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
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .families import BUILDERS
from .render import object_meta, render_scene, render_background
from .styles import STYLES, Style
from .vocab import (
    CATEGORIES,
    DEFAULT_STYLE,
    HELDOUT_SPLIT,
    HELDOUT_STYLE,
    HELDOUT_TEMPLATES_SPLIT,
    MAX_NUM_OPTIONS,
    MIN_IMAGE_SIZE,
    MIN_NUM_OPTIONS,
    SHIFTED_SPLIT,
    SHIFTED_STYLE,
    SPLITS,
)


__all__ = ["SceneSample", "make_scene", "SyntheticScenes"]

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

    pool = "heldout" if split == HELDOUT_TEMPLATES_SPLIT else "train"
    scene = BUILDERS[category](rng, style_obj, pool)
    background = render_background(rng, style_obj, image_size)
    image = render_scene(background, scene.objects, style_obj)
    opposite_image = render_scene(background, scene.opposite_objects, style_obj)

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
        "objects": [object_meta(o, image_size) for o in scene.objects],
        "opposite_objects": [object_meta(o, image_size) for o in scene.opposite_objects],
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
