"""Caption wordings of the synthetic task families, and the template split.

Every family has a pool of templates; a few of each are *held out*: they never occur in the
``train``/``val``/``test``/``shifted``/``heldout`` splits and are the only wordings of the
``heldout_templates`` split, which measures how much of a skill survives a wording the scorer
never trained on. The wordings follow the public benchmarks' files (NegBench's affirmation /
negation / hybrid MCQ captions, WhatsUp's "A X on a Y", CLEVR-bind's attribute-object pairs);
no benchmark row is copied.

Placeholders: ``{a}``/``{b}`` (also ``{p}``, present object, and ``{n}``, absent object) are noun
phrases with article ("a red square"); ``{A}``/``{P}``/``{N}`` the same, capitalised; ``{b_bare}``/
``{n_bare}`` without article ("red square"); ``{rel}`` a relation phrase (:data:`RELATION_PHRASES`).
"""

from __future__ import annotations

import string
from typing import Mapping

from .vocab import HELDOUT_TEMPLATES_SPLIT

__all__ = [
    "RELATION_PHRASES", "INVERSE_RELATION", "TEMPLATE_FAMILIES", "TRAIN_TEMPLATES", "HELDOUT_TEMPLATES",
    "template_pool", "fill",
]

#: Relation key -> caption phrase (WhatsUp's wording). above/below/on/under: image coordinates;
#: on/under: touching (vertical stacking); front/behind: overlapping, the front object drawn over.
RELATION_PHRASES: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
    "on": "on",
    "under": "under",
    "front": "in front of",
    "behind": "behind",
}
INVERSE_RELATION: dict[str, str] = {
    "left": "right", "right": "left", "above": "below", "below": "above",
    "on": "under", "under": "on", "front": "behind", "behind": "front",
}

#: Family -> (training templates, held-out templates).
_POOLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # two objects in a relation
    "spatial": (
        ("{a} {rel} {b}", "{A} is {rel} {b}", "there is {a} {rel} {b}", "in this image, {a} is {rel} {b}",
         "this image shows {a} {rel} {b}"),
        ("{A} is located {rel} {b}", "we see {a} {rel} {b}"),
    ),
    # two attribute-object pairs
    "binding": (
        ("{a} and {b}", "there is {a} and {b}", "this image shows {a} and {b}", "{a} together with {b}"),
        ("{a} along with {b}", "we see {a} and {b}"),
    ),
    # NegBench "positive": the present object is affirmed
    "affirm": (
        ("this image features {p}", "{P} is present in this image", "this image shows {p}",
         "there is {p} in this image", "{P} is in this image"),
        ("this image contains {p}", "{P} can be seen in this image"),
    ),
    # NegBench "negative": the absent object is negated
    "negate": (
        ("this image does not feature {n}", "there is no {n_bare} in this image", "{N} is not present in this image",
         "no {n_bare} is present in this image", "this image shows no {n_bare}", "{N} is absent from this image"),
        ("this image does not contain {n}", "no {n_bare} can be seen in this image"),
    ),
    # NegBench "hybrid": the present object affirmed, the absent one negated
    "hybrid": (
        ("this image features {p}, but not {n}", "{P} is present in this image, but there is no {n_bare}",
         "this image shows {p} but no {n_bare}", "{P} is present, but {n} is absent", "{p} with no {n_bare}",
         "{p} without {n}", "{p} and not {n}"),
        ("there is {p} but no {n_bare} in this image", "this image shows {p}, with no {n_bare} in sight"),
    ),
}
TEMPLATE_FAMILIES: tuple[str, ...] = tuple(_POOLS)
TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {k: v[0] for k, v in _POOLS.items()}
HELDOUT_TEMPLATES: dict[str, tuple[str, ...]] = {k: v[1] for k, v in _POOLS.items()}
#: ``format_transfer.templates`` choices: which pool the format-transfer files draw from.
TEMPLATE_CHOICES: tuple[str, ...] = ("all", "train", "heldout")


def template_pool(family: str, split: str | None = None, which: str | None = None) -> tuple[str, ...]:
    """The templates of ``family`` that ``split`` may use (``heldout_templates``: the held-out ones,
    every other split: the training ones), or ``which`` of :data:`TEMPLATE_CHOICES` when given."""
    if family not in _POOLS:
        raise ValueError(f"unknown template family {family!r}; allowed: {list(_POOLS)}")
    if which is None:
        which = "heldout" if split == HELDOUT_TEMPLATES_SPLIT else "train"
    if which not in TEMPLATE_CHOICES:
        raise ValueError(f"unknown template pool {which!r}; allowed: {list(TEMPLATE_CHOICES)}")
    train, held = _POOLS[family]
    return {"train": train, "heldout": held, "all": train + held}[which]


def _capitalised(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def fill(template: str, **phrases: str) -> str:
    """Fill ``template``; ``{A}``/``{P}``/``{N}`` and ``*_bare`` forms derive from the given phrases
    (``a``/``p``/``n`` with article; ``*_bare`` drop the article's first word)."""
    values: dict[str, str] = dict(phrases)
    for key, phrase in phrases.items():
        if key in ("a", "b", "p", "n"):
            values[key.upper()] = _capitalised(phrase)
            values[f"{key}_bare"] = phrase.split(" ", 1)[1]
    return template.format_map(values)


def placeholders(template: str) -> set[str]:
    """The placeholder names a template uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def all_templates(pools: Mapping[str, tuple[str, ...]]) -> set[str]:
    return {t for v in pools.values() for t in v}
