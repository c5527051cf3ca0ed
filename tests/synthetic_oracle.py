"""A caption oracle for the synthetic families, independent of the generator: parse a caption with
the template pools (as regular expressions) and decide its truth from a scene's drawn objects."""

from __future__ import annotations

import re
from functools import lru_cache

from dcsm.data.synthetic.templates import HELDOUT_TEMPLATES, RELATION_PHRASES, TRAIN_TEMPLATES

SIZE = 224
_NP = r"(?:an?|An?) (?:(?P<{k}_size>small|big) )?(?P<{k}_colour>\w+) (?P<{k}_shape>\w+)"
_BARE = r"(?:(?P<{k}_size>small|big) )?(?P<{k}_colour>\w+) (?P<{k}_shape>\w+)"
_REL = "(?P<rel>" + "|".join(re.escape(p) for p in RELATION_PHRASES.values()) + ")"
_PHRASE_REL = {v: k for k, v in RELATION_PHRASES.items()}


def _regex(template: str) -> re.Pattern:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos:m.start()])
        name = m.group(1)
        key = name.lower().removesuffix("_bare")
        key = {"p": "a", "n": "b"}.get(key, key)
        out += _REL if name == "rel" else (_BARE if name.endswith("_bare") else _NP).format(k=key)
        pos = m.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "$")


@lru_cache(maxsize=None)
def _compiled(pool: str) -> dict[str, list[tuple[str, re.Pattern]]]:
    pools = {"train": [TRAIN_TEMPLATES], "heldout": [HELDOUT_TEMPLATES],
             "all": [TRAIN_TEMPLATES, HELDOUT_TEMPLATES]}[pool]
    return {fam: [(t, _regex(t)) for p in pools for t in p[fam]] for fam in TRAIN_TEMPLATES}


def parse(caption: str, family: str, pool: str = "all") -> tuple[str, dict] | None:
    """(template, fields) of the first template of ``family`` in ``pool`` matching ``caption``."""
    for template, rx in _compiled(pool)[family]:
        m = rx.match(caption)
        if m:
            return template, m.groupdict()
    return None


def _find(objects: list[dict], fields: dict, key: str) -> int | None:
    """Index of the drawn object the noun phrase ``key`` names (colour + shape, size if named)."""
    for i, o in enumerate(objects):
        if (o["colour"], o["shape"]) == (fields[f"{key}_colour"], fields[f"{key}_shape"]) and \
                fields[f"{key}_size"] in (None, o["size"]):
            return i
    return None


def relation_holds(rel: str, objects: list[dict], i: int, j: int, size: int = SIZE) -> bool:
    """Whether object ``i`` is ``rel`` of object ``j`` in the drawn image (lists in drawing order)."""
    a, b = objects[i], objects[j]
    (ax, ay), (bx, by) = a["centre"], b["centre"]
    ax0, ay0, ax1, ay1 = a["bbox"]
    bx0, by0, bx1, by1 = b["bbox"]
    overlap_x = min(ax1, bx1) - max(ax0, bx0)
    overlap_y = min(ay1, by1) - max(ay0, by0)
    apart = overlap_x <= 0 or overlap_y <= 0
    if rel in ("left", "right", "above", "below"):
        dx, dy = bx - ax, by - ay
        primary = {"left": dx, "right": -dx, "above": dy, "below": -dy}[rel]
        cross = abs(dy) if rel in ("left", "right") else abs(dx)
        return apart and primary >= 0.25 * size and cross <= 0.10 * size
    if rel in ("on", "under"):
        upper, lower = (a, b) if rel == "on" else (b, a)
        touching = abs(upper["bbox"][3] - lower["bbox"][1]) <= 1
        return touching and overlap_x >= 0.5 * min(ax1 - ax0, bx1 - bx0)
    front, back = (i, j) if rel == "front" else (j, i)
    f, k = objects[front], objects[back]
    return not apart and front > back and f["centre"][1] > k["centre"][1]


def caption_true(caption: str, category: str, objects: list[dict]) -> bool:
    """Truth of a caption of ``category`` for an image holding ``objects``."""
    if category == "spatial":
        template, f = parse(caption, "spatial")
        i, j = _find(objects, f, "a"), _find(objects, f, "b")
        return i is not None and j is not None and relation_holds(_PHRASE_REL[f["rel"]], objects, i, j)
    if category == "binding":
        template, f = parse(caption, "binding")
        i, j = _find(objects, f, "a"), _find(objects, f, "b")
        return i is not None and j is not None and i != j
    for family in ("hybrid", "affirm", "negate"):
        got = parse(caption, family)
        if got is None:
            continue
        f = got[1]
        present = _find(objects, f, "a") is not None if "a_colour" in f and f["a_colour"] else None
        absent = _find(objects, f, "b") is None if "b_colour" in f and f["b_colour"] else None
        return {"hybrid": bool(present and absent), "affirm": bool(present), "negate": bool(absent)}[family]
    raise AssertionError(f"no negation template matches {caption!r}")
