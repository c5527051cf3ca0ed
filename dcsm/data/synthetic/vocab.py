"""The synthetic scenes' vocabulary (categories, colours, shapes, relations, size words, negation
templates, splits) and the layout limits every scene obeys."""

from __future__ import annotations


__all__ = ["CATEGORIES", "COLOURS", "SHAPES", "RELATIONS", "SIZE_WORDS", "NEGATION_TEMPLATES", "SPLITS"]

RGB = tuple[int, int, int]


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
