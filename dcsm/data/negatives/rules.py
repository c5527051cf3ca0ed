"""The five rewrite rules (``relation_swap``, ``attribute_swap``, ``object_swap``,
``negation_toggle``, ``attribute_replace``): a caption -> its hard-negative rewrites."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from ..synthetic.vocab import COLOURS
from .parse import (
    COLOUR_WORDS,
    RELATION_OPPOSITES,
    SIZE_OPPOSITES,
    CONTRACTIONS,
    NounPhrase,
    POSITION_OPPOSITES,
    RELATION_TERMS,
    Text,
    changes_meaning,
    insert_words,
    match_phrases,
    is_plural,
    replace_span,
    set_word,
    find_structures,
    swap_spans,
)


__all__ = ["RULES", "FALLBACK_RULES", "attribute_swap", "relation_swap", "negation_toggle", "object_swap", "attribute_replace"]

log = logging.getLogger(__name__)


def _guard(rule: Callable[[Text], list[str]]) -> Callable[[str], list[str]]:
    """Public rule wrapper: parse, run, drop the caption itself and duplicates, never raise."""

    def wrapped(caption: str) -> list[str]:
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a string, got {type(caption).__name__}")
        text = Text.parse(caption)
        if not text.toks:
            return []
        try:
            candidates = rule(text)
        except Exception:  # a heuristic failing on odd text must not stop a dataset build
            log.debug("negative rule %s failed on %r", rule.__name__, caption, exc_info=True)
            return []
        seen = {normalize(caption)}
        out = []
        for c in candidates:
            if normalize(c) not in seen and c.strip():
                seen.add(normalize(c))
                out.append(c)
        return out

    wrapped.__name__ = rule.__name__.lstrip("_")
    wrapped.__doc__ = rule.__doc__
    return wrapped


def normalize(s: str) -> str:
    return " ".join(s.lower().split()).rstrip(" .!")


@_guard
def relation_swap(text: Text) -> list[str]:
    """Swap the noun phrases around a spatial relation, or replace a relation by its opposite.

    >>> relation_swap("a red cup to the left of a blue plate")
    ['a blue plate to the left of a red cup', 'a red cup to the right of a blue plate']
    """
    out: list[str] = []
    for s in find_structures(text):
        if s.kind != "relation":
            continue
        swapped = swap_spans(text.toks, (s.left.content, s.left.end), (s.right.content, s.right.end))
        out.append(text.with_toks(swapped).render())
        break
    for i, j, phrase in match_phrases(text, RELATION_TERMS):
        opposite = RELATION_OPPOSITES.get(phrase) or POSITION_OPPOSITES[phrase]
        out.append(text.with_toks(replace_span(text.toks, i, j, opposite.split())).render())
    return out


def _attr_positions(words: list[str], np_: NounPhrase, vocab: Sequence[str] | dict) -> list[int]:
    return [i for i in range(np_.content, np_.head) if words[i] in vocab]


@_guard
def attribute_swap(text: Text) -> list[str]:
    """Swap (or move) a colour or size adjective between two noun phrases.

    >>> attribute_swap("a red cup to the left of a blue plate")
    ['a blue cup to the left of a red plate']
    """
    words = text.words
    out: list[str] = []
    structs = find_structures(text)
    for vocab in (COLOUR_WORDS, SIZE_OPPOSITES):
        if structs:
            s = structs[0]
            pa, pb = _attr_positions(words, s.left, vocab), _attr_positions(words, s.right, vocab)
            if pa and pb:
                ia, ib = pa[0], pb[0]
                if words[ia] != words[ib]:
                    toks = set_word(set_word(text.toks, ia, text.toks[ib].word), ib, text.toks[ia].word)
                    new = text.with_toks(toks)
                    if changes_meaning(text, s, new):
                        out.append(new.render())
            elif (pa or pb) and (s.kind != "symmetric" or words[s.left.head] != words[s.right.head]):  # move the adjective to the other noun phrase, before its head
                src = pa[0] if pa else pb[0]
                dst_head = s.right.head if pa else s.left.head
                word = text.toks[src].word
                if src < dst_head:
                    toks = replace_span(insert_words(text.toks, dst_head, [word]), src, src + 1, [])
                else:
                    toks = insert_words(replace_span(text.toks, src, src + 1, []), dst_head, [word])
                out.append(text.with_toks(toks).render())
        else:  # no two noun phrases: swap two distinct adjectives that are not coordinated
            pos = [i for i, w in enumerate(words) if w in vocab]
            for a in range(len(pos)):
                for b in range(a + 1, len(pos)):
                    ia, ib = pos[a], pos[b]
                    between = words[ia + 1:ib]
                    if words[ia] != words[ib] and between and not set(between) <= {"and", "or"}:
                        toks = set_word(set_word(text.toks, ia, text.toks[ib].word), ib, text.toks[ia].word)
                        out.append(text.with_toks(toks).render())
                        break
                else:
                    continue
                break
    return out


@_guard
def object_swap(text: Text) -> list[str]:
    """Swap the head nouns of the two noun phrases around a connector; adjectives stay.

    >>> object_swap("a dog without a leash")
    ['a leash without a dog']
    """
    words = text.words
    for s in find_structures(text):
        ha, hb = s.left.head, s.right.head
        if words[ha] == words[hb] or is_plural(words[ha]) != is_plural(words[hb]):
            continue  # same noun, or a number mismatch ("two dogs" / "a ball")
        toks = set_word(set_word(text.toks, ha, text.toks[hb].word), hb, text.toks[ha].word)
        new = text.with_toks(toks)
        if not changes_meaning(text, s, new):
            continue
        return [new.render()]
    return []


def _article_for(word: str) -> list[str]:
    """Article for a noun phrase starting with ``word`` (none for a plural-looking word)."""
    w = word.lower()
    if is_plural(w):
        return []
    return ["an" if w[:1] in "aeiou" else "a"]


@_guard
def negation_toggle(text: Text) -> list[str]:
    """Remove the negation of a negated caption, or add one to a caption without negation.

    >>> negation_toggle("a dog without a leash")
    ['a dog with a leash', 'a dog and a leash']
    """
    words = text.words
    toks = text.toks
    n = len(words)
    out: list[str] = []
    negated = False
    for i, w in enumerate(words):
        if w == "without":
            negated = True
            out.append(text.with_toks(set_word(toks, i, "with")).render())
            if i > 0 and words[i - 1] != "and":
                out.append(text.with_toks(set_word(toks, i, "and")).render())
        elif w == "no" and i + 1 < n:
            negated = True
            # "with no blue circle" -> "with a blue circle"; "no dogs" -> "dogs"
            art = _article_for(words[i + 1])
            out.append(text.with_toks(replace_span(toks, i, i + 1, art)).render())
        elif w == "not":
            negated = True
            out.append(text.with_toks(replace_span(toks, i, i + 1, [])).render())
        elif w in CONTRACTIONS:
            negated = True
            out.append(text.with_toks(set_word(toks, i, CONTRACTIONS[w])).render())
    if negated:
        return out
    # add a negation
    for i, w in enumerate(words):
        if w == "with" and i > 0:
            out.append(text.with_toks(set_word(toks, i, "without")).render())
            break
    for s in find_structures(text):
        if s.kind == "symmetric" and s.phrase == "and":
            out.append(text.with_toks(set_word(toks, s.conn[0], "without")).render())
            break
    terms = match_phrases(text, RELATION_TERMS)
    if terms and terms[0][0] > 0:  # "a cup to the left of a plate" -> "a cup not to the left of a plate"
        out.append(text.with_toks(insert_words(toks, terms[0][0], ["not"])).render())
    for i, w in enumerate(words):
        if w in ("is", "are", "was", "were"):
            out.append(text.with_toks(insert_words(toks, i + 1, ["not"])).render())
            break
    if not out and words[0] in ("a", "an", "the", "some"):
        out.append(text.with_toks(set_word(toks, 0, "no")).render())
    return out


@_guard
def attribute_replace(text: Text) -> list[str]:
    """Replace one colour by every other colour, or a size word by its opposite.

    >>> attribute_replace("a big dog")
    ['a small dog']
    """
    out: list[str] = []
    for i, w in enumerate(text.words):
        if w in COLOURS or w in COLOUR_WORDS:
            for other in COLOUR_WORDS:
                if other != w and {other, w} != {"gray", "grey"}:
                    out.append(text.with_toks(set_word(text.toks, i, other)).render())
        elif w in SIZE_OPPOSITES:
            out.append(text.with_toks(set_word(text.toks, i, SIZE_OPPOSITES[w])).render())
    return out


#: Rule families used round-robin by :func:`make_negatives`.
RULES: dict[str, Callable[[str], list[str]]] = {
    "relation_swap": relation_swap,
    "attribute_swap": attribute_swap,
    "object_swap": object_swap,
    "negation_toggle": negation_toggle,
}
#: Used only when :data:`RULES` give fewer than ``k`` negatives.
FALLBACK_RULES: dict[str, Callable[[str], list[str]]] = {"attribute_replace": attribute_replace}
