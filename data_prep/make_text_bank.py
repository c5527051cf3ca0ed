"""Write the default TextSpan text bank from the concept lexicon (deterministic, no randomness).

Short visual descriptions: single concepts (colours, shapes, sizes, positions, textures, counts,
common objects, scenes) and two-concept combinations (colour + shape, size + shape, colour +
object, shape + position, count + object, texture + object, object + scene). Every concept word
comes from ``dcsm/diagnostics/data/concept_lexicon.json``, so every text falls into at least
one concept group.

    python data_prep/make_text_bank.py            # rewrites dcsm/diagnostics/data/text_bank.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "dcsm" / "diagnostics" / "data"

SHAPE_ADJECTIVES = {"round", "square-shaped", "triangular", "rectangular", "circular", "curved", "angular", "pointed"}
POSITION_NOUNS = ["left", "right", "top", "bottom", "center", "centre", "middle", "corner", "edge", "foreground",
                  "background", "top-left", "top-right", "bottom-left", "bottom-right"]
POSITION_PREPS = ["above", "below", "under", "behind", "in front of", "next to", "beside", "near"]
POSITION_ADJS = ["upper", "lower", "far", "close-up", "distant", "off-center"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
COUNT_PHRASES = ["a single object", "a single thing", "a pair of objects", "a couple of things", "several objects",
                 "several shapes", "many objects", "many shapes", "a few objects", "a few shapes", "dozens of objects",
                 "a crowd of people", "a group of things", "a group of shapes", "lots of things", "lots of shapes",
                 "no objects", "no shapes at all", "none of the shapes", "an empty picture", "an empty scene",
                 "one object alone", "only one thing", "only two things", "numerous items", "numerous small things"]
IRREGULAR = {"man": "men", "woman": "women", "child": "children", "person": "people", "knife": "knives", "leaf": "leaves",
             "sheep": "sheep", "fish": "fish", "baby": "babies", "butterfly": "butterflies", "cherry": "cherries"}
BASIC_COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "grey", "cyan",
                 "magenta", "violet", "turquoise", "gold", "silver", "navy", "lime", "beige"]
BASIC_SIZES = ["small", "big", "large", "tiny", "huge", "little", "tall", "short", "wide", "narrow"]


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    if last in IRREGULAR:
        p = IRREGULAR[last]
    elif last.endswith(("s", "sh", "ch", "x")):
        p = last + "es"
    else:
        p = last + "s"
    return f"{head} {p}".strip()


def build(lex: dict[str, list[str]]) -> list[str]:
    colours, sizes, textures = lex["colour"], lex["size"], lex["texture"]
    shapes = [s for s in lex["shape"] if s not in SHAPE_ADJECTIVES]
    objects, scenes = lex["object"], lex["scene"]
    texts: list[str] = []
    for c in colours:
        texts += [f"{article(c + ' object')}", f"something {c}", f"the colour {c}", f"{article(c + ' patch')}", f"{c} paint"]
    for s in shapes:
        texts += [article(s), f"{article(s)} shape", f"an outline of {article(s)}", f"a drawing of {article(s)}"]
    for s in SHAPE_ADJECTIVES:
        texts += [f"something {s}", f"{article(s + ' object')}"]
    for z in sizes:
        texts += [f"{article(z + ' object')}", f"something {z}", f"{article(z + ' thing')}"]
    for p in POSITION_NOUNS:
        texts += [f"something in the {p}", f"an object at the {p}", f"the {p} of the image"]
    for p in POSITION_PREPS:
        texts += [f"something {p} something else", f"an object {p} another one"]
    for p in POSITION_ADJS:
        texts += [f"{article(p + ' view')}", f"the {p} part of the picture"]
    for t in textures:
        texts += [f"{article(t + ' surface')}", f"{article(t + ' texture')}", f"something {t}", f"{article(t + ' pattern')}"]
    for n in NUMBERS[1:]:
        texts += [f"{n} objects", f"{n} things", f"a picture of {n} items"]
    texts += COUNT_PHRASES
    for o in objects:
        texts += [article(o), f"a photo of {article(o)}", f"a picture of {article(o)}", f"{article(o)} in the image"]
    for s in scenes:
        texts += [f"{article(s + ' scene')}", f"a photo of {article(s)}", f"a view of the {s}", f"at the {s}"]
    # two-concept combinations
    texts += [article(f"{c} {s}") for c in BASIC_COLOURS for s in shapes]
    texts += [article(f"{z} {s}") for z in BASIC_SIZES for s in shapes]
    texts += [article(f"{c} {o}") for c in BASIC_COLOURS[:12] for o in objects[:40] if o != "orange fruit"]
    texts += [f"{article(s)} on the {p}" for s in shapes for p in ("left", "right", "top", "bottom")]
    texts += [f"{article(s)} in the {p}" for s in shapes for p in ("center", "corner")]
    texts += [f"{n} {plural(o)}" for n in NUMBERS[1:5] for o in objects[:40]]
    texts += [article(f"{t} {o}") for t in textures[:10] for o in objects[:30]]
    texts += [f"{article(o)} in {article(s)}" for o in objects[:20] for s in scenes[:10]]
    seen: set[str] = set()
    return [t for t in texts if not (t in seen or seen.add(t))]


def main(argv: list[str] | None = None) -> Path:
    lex = {k: v for k, v in json.loads((DATA / "concept_lexicon.json").read_text()).items() if not k.startswith("_")}
    texts = build(lex)
    out = DATA / "text_bank.txt"
    out.write_text("\n".join(texts) + "\n")
    print(f"wrote {len(texts)} texts to {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
