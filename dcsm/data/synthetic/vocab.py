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

#: Relation key -> caption phrase of the small CLIP's pretraining captions (dcsm.data.synthetic.captioned);
#: "above"/"below" are in image coordinates (y grows down). The scorer's scenes use all eight
#: relations of dcsm.data.synthetic.templates.RELATION_PHRASES.
RELATIONS: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}

SMALL, BIG = "small", "big"
SIZE_WORDS: tuple[str, ...] = (SMALL, BIG)

#: The small CLIP's pretraining negation captions (dcsm.data.synthetic.captioned); ``{a}``/``{b}`` are
#: noun phrases with article ("a red square"), ``{b_bare}`` without ("red square"). The scorer's
#: scenes are worded by dcsm.data.synthetic.templates (these three are among its hybrid templates).
NEGATION_TEMPLATES: tuple[str, ...] = (
    "{a} with no {b_bare}",
    "{a} without {b}",
    "{a} and not {b}",
)
CONJUNCTION_TEMPLATE = "{a} and {b}"

#: ``heldout_templates``: the default renderer, worded only with the held-out templates of
#: :mod:`dcsm.data.synthetic.templates` (every other split uses the training templates).
SPLITS: tuple[str, ...] = ("train", "val", "test", "shifted", "heldout", "heldout_templates")
SHIFTED_SPLIT = "shifted"
HELDOUT_SPLIT = "heldout"
HELDOUT_TEMPLATES_SPLIT = "heldout_templates"
DEFAULT_STYLE = "default"
SHIFTED_STYLE = "shifted"
HELDOUT_STYLE = "heldout"
#: The format-transfer files' renderer (checkerboard backgrounds, dark outlines): no split and no
#: training (scorer or the small CLIP's pretraining) draws a checkerboard.
TRANSFER_STYLE = "transfer"
#: Background patterns: ``plain`` (flat colour, optional noise), ``stripes`` (diagonal stripes) or
#: ``checks`` (a checkerboard of the drawn colour and ``stripe_rgb``).
BACKGROUND_PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks")


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
#: Captioned pretraining scenes (dcsm.data.synthetic.captioned): object placement and background cue.
PLACEMENTS: tuple[str, ...] = ("uniform", "gaussian")
#: pretraining ``pair`` captions: ``and`` only "{a} and {b}" (the shipped small CLIPs), or
#: ``binding_templates`` the training templates of the binding family (dcsm.data.synthetic.templates),
#: "with" among them: a CLIP that saw "with" only in "X with no Y" learns to erase what follows it
PAIR_WORDINGS: tuple[str, ...] = ("and", "binding_templates")
BACKGROUND_CUES: tuple[str, ...] = ("none", "shape_colour")
#: configs/pretrain_toy_clip.yaml ``scenes:`` rules as data, ``key: (kind, *args)`` (dcsm.config_schema.TABLE_KINDS);
#: what depends on another key (min <= max, weights summing > 0) is checked by CaptionedConfig
SCENE_KEYS: dict[str, tuple] = {
    "kind_weights": ("floats", 0.0, None, 5), "image_size": ("ints", 32, None, 2), "placement": ("choice", PLACEMENTS),
    "centre_sigma": ("float", 0.0, None, True), "background_cue": ("choice", BACKGROUND_CUES), "cue_agreement": ("float", 0.0, 1.0),
    "pair_wording": ("choice", PAIR_WORDINGS),
}
