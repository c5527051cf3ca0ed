"""Rule-based hard-negative captions for free-form positive captions (COCO-style pairs).

The rule families are those of the synthetic generator (:mod:`dcsm.data.synthetic.scenes`), applied
to text with light heuristics instead of a parser:

``relation_swap``
    Around a spatial relation phrase ("a red cup *to the left of* a blue plate"): swap the two
    noun phrases ("a blue plate to the left of a red cup") or replace the relation by its
    opposite ("... to the right of ..."). Opposites: left <-> right, above <-> below,
    on / on top of / over <-> under, beneath / underneath -> above, in front of <-> behind.
    Symmetric relations ("next to", "beside", "near") are never swapped.
``attribute_swap``
    Swap a colour or size adjective between the two noun phrases ("a blue cup to the left of
    a red plate"), or move it to the other noun phrase when only one has it.
``object_swap``
    Swap the head nouns of the two noun phrases, attributes stay ("a red plate to the left of
    a blue cup"; "a leash without a dog").
``negation_toggle``
    Remove a negation ("without" -> "with"/"and", "with no X" -> "with a X", "not" dropped,
    "isn't" -> "is") or add one ("with" -> "without", "not" before a relation, "is" -> "is
    not", a leading "a"/"the" -> "no").
``attribute_replace`` (fallback only)
    Replace one colour/size word by another value; used by :func:`make_negatives` only when
    the families above give fewer than ``k`` negatives.

Two noun phrases are found around the first *connector* (a relation phrase, a negation
connector such as "without"/"with no"/"and not", or "and"/"with"/"next to") whose both sides
hold a noun phrase: the left one runs back from the connector to a determiner, the right one
forward to the next preposition, conjunction, verb-like word or punctuation. Words are
matched case-insensitively; separators, punctuation and a capitalised first word are kept;
"a"/"an" is fixed before words that changed.

Every rule returns a list of candidate strings (possibly empty); none raises on odd input.
A negative can be semantically close to the positive for unusual sentences (the heuristics
know no grammar); that is the usual trade-off of rule-based hard negatives.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .synthetic.scenes import COLOURS, RELATIONS, SIZE_WORDS

log = logging.getLogger(__name__)

__all__ = [
    "COLOUR_WORDS",
    "SIZE_OPPOSITES",
    "RELATION_OPPOSITES",
    "NEGATION_WORDS",
    "RULES",
    "FALLBACK_RULES",
    "attribute_swap",
    "relation_swap",
    "negation_toggle",
    "object_swap",
    "attribute_replace",
    "make_negatives",
    "make_negatives_with_rules",
    "caption_category",
]

# --------------------------------------------------------------------------- vocabulary

#: Colour adjectives: the synthetic generator's colours first, then common extra ones.
COLOUR_WORDS: tuple[str, ...] = tuple(COLOURS) + ("black", "white", "brown", "pink", "gray", "grey")

#: Size adjective -> its opposite (the synthetic generator's small/big first).
SIZE_OPPOSITES: dict[str, str] = {
    SIZE_WORDS[0]: SIZE_WORDS[1],
    SIZE_WORDS[1]: SIZE_WORDS[0],
    "large": "small",
    "little": "big",
    "tiny": "huge",
    "huge": "tiny",
    "tall": "short",
    "short": "tall",
}

_OPPOSITE_KEY = {"left": "right", "right": "left", "above": "below", "below": "above"}

#: Asymmetric relation phrase -> opposite phrase (synthetic RELATIONS first, then 3-D ones).
RELATION_OPPOSITES: dict[str, str] = {
    **{RELATIONS[k]: RELATIONS[_OPPOSITE_KEY[k]] for k in RELATIONS if k in _OPPOSITE_KEY},
    "on the left of": "on the right of",
    "on the right of": "on the left of",
    "left of": "right of",
    "right of": "left of",
    "on top of": "under",
    "on": "under",
    "over": "under",
    "under": "on",
    "beneath": "above",
    "underneath": "above",
    "in front of": "behind",
    "behind": "in front of",
}

#: Relation phrases that are not connectors but still have an opposite ("a cup on the left").
_POSITION_OPPOSITES: dict[str, str] = {
    "on the left": "on the right",
    "on the right": "on the left",
    "the left": "the right",
    "the right": "the left",
    "the top": "the bottom",
    "the bottom": "the top",
}

_SYMMETRIC_CONNECTORS = ("next to", "beside", "near", "alongside", "and")
#: Negation connectors: the left noun phrase is present, the right one absent.
_NEGATION_CONNECTORS = ("without", "with no", "and not", "and no", "but not", "but no", "and without")

#: Words that mark a negation (for :func:`caption_category` and toggling).
NEGATION_WORDS: tuple[str, ...] = (
    "no", "not", "without", "none", "nothing", "nobody", "absent",
    "isn't", "aren't", "doesn't", "don't", "wasn't", "weren't", "can't", "won't",
)
_CONTRACTIONS = {
    "isn't": "is", "aren't": "are", "doesn't": "does", "don't": "do", "wasn't": "was",
    "weren't": "were", "can't": "can", "won't": "will", "hasn't": "has", "haven't": "have",
}

_DETERMINERS = frozenset(
    "a an the some this that these those one two three four five several many his her its "
    "their my your our another each every".split()
)
_STOP = frozenset(
    "on in at of to with without by near from for under above below behind beside next into "
    "onto over inside outside beneath underneath across along alongside around against "
    "between through toward towards and or but while that which who whom whose where when as "
    "is are was were be been being has have had not no there here it than then".split()
)
_VERBISH = frozenset(
    "is are was were be being been sits stands lies sit stand lie sat stood lay placed "
    "located positioned seen shown appears appear hangs hang rests rest".split()
)
_IRREGULAR_PLURALS = frozenset("people children men women mice geese teeth feet sheep".split())
#: Nouns that name a place in the image, not an object ("on the left"): never a noun phrase.
_POSITION_NOUNS = frozenset("left right top bottom middle center centre side front back background foreground".split())
_PUNCT = re.compile(r"[,;:.!?()\[\]\"]")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


# --------------------------------------------------------------------------- token list


@dataclass(frozen=True)
class _Tok:
    sep: str  # text before the word (whitespace, punctuation)
    word: str
    changed: bool = False


@dataclass(frozen=True)
class _Text:
    toks: tuple[_Tok, ...]
    tail: str
    cap_first: bool

    @staticmethod
    def parse(caption: str) -> "_Text":
        toks: list[_Tok] = []
        pos = 0
        for m in _WORD.finditer(caption):
            toks.append(_Tok(caption[pos:m.start()], m.group(0)))
            pos = m.end()
        tail = caption[pos:]
        cap_first = False
        if toks:
            w = toks[0].word
            if w[0].isupper() and (len(w) == 1 or not w.isupper()):
                cap_first = True
                toks[0] = replace(toks[0], word=w[0].lower() + w[1:])
        return _Text(tuple(toks), tail, cap_first)

    @property
    def words(self) -> list[str]:
        return [t.word.lower() for t in self.toks]

    def with_toks(self, toks: Sequence[_Tok]) -> "_Text":
        return _Text(tuple(toks), self.tail, self.cap_first)

    def render(self) -> str:
        toks = list(self.toks)
        # a/an agreement in front of words that changed
        for i in range(len(toks) - 1):
            art = toks[i].word
            if art.lower() in ("a", "an") and (toks[i + 1].changed or toks[i].changed):
                want = "an" if toks[i + 1].word[:1].lower() in "aeiou" else "a"
                if art[0].isupper():
                    want = want.capitalize()
                toks[i] = replace(toks[i], word=want)
        if toks and self.cap_first:
            toks[0] = replace(toks[0], word=toks[0].word[0].upper() + toks[0].word[1:])
        if toks and toks[0].sep.strip() == "" and toks[0].sep:
            toks[0] = replace(toks[0], sep="")  # no leading space after removals
        return "".join(t.sep + t.word for t in toks) + self.tail


def _replace_span(toks: Sequence[_Tok], i: int, j: int, new_words: Sequence[str]) -> list[_Tok]:
    """Replace ``toks[i:j]`` by ``new_words`` (first takes the slot's separator)."""
    out = list(toks[:i])
    sep = toks[i].sep if i < len(toks) else " "
    for n, w in enumerate(new_words):
        out.append(_Tok(sep if n == 0 else " ", w, True))
    rest = list(toks[j:])
    if not new_words and rest and i < len(toks):
        # removal: the next word keeps the removed slot's separator if that held punctuation
        if _PUNCT.search(toks[i].sep) or i == 0:
            rest[0] = replace(rest[0], sep=toks[i].sep)
    return out + rest


def _insert(toks: Sequence[_Tok], i: int, words: Sequence[str]) -> list[_Tok]:
    """Insert ``words`` before ``toks[i]``."""
    out = list(toks[:i])
    if i < len(toks):
        out.append(_Tok(toks[i].sep, words[0], True))
        out.extend(_Tok(" ", w, True) for w in words[1:])
        out.append(replace(toks[i], sep=" "))
        out.extend(toks[i + 1:])
    else:
        out.extend(_Tok(" ", w, True) for w in words)
    return out


def _swap_spans(toks: Sequence[_Tok], a: tuple[int, int], b: tuple[int, int]) -> list[_Tok]:
    """Swap the non-overlapping spans ``a`` before ``b``; moved words are marked changed."""
    (a0, a1), (b0, b1) = a, b

    def moved(span: Sequence[_Tok], sep: str) -> list[_Tok]:
        return [_Tok(sep if n == 0 else t.sep, t.word, True) for n, t in enumerate(span)]

    return (
        list(toks[:a0]) + moved(toks[b0:b1], toks[a0].sep) + list(toks[a1:b0])
        + moved(toks[a0:a1], toks[b0].sep) + list(toks[b1:])
    )


def _set_word(toks: Sequence[_Tok], i: int, word: str) -> list[_Tok]:
    out = list(toks)
    out[i] = _Tok(toks[i].sep, word, True)
    return out


# --------------------------------------------------------------------------- phrase matching


def _phrase_table(phrases: Sequence[str]) -> list[tuple[str, ...]]:
    return sorted({tuple(p.split()) for p in phrases}, key=len, reverse=True)


def _match_phrases(text: _Text, table: list[tuple[str, ...]]) -> list[tuple[int, int, str]]:
    """Non-overlapping occurrences, scanning left to right, longest phrase first at each start.
    A phrase does not match across punctuation."""
    words = text.words
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(words):
        for p in table:
            j = i + len(p)
            if tuple(words[i:j]) == p and not any(_PUNCT.search(text.toks[m].sep) for m in range(i + 1, j)):
                out.append((i, j, " ".join(p)))
                i = j
                break
        else:
            i += 1
    return out


_CONNECTOR_KIND: dict[str, str] = {
    **{p: "relation" for p in RELATION_OPPOSITES},
    **{p: "symmetric" for p in _SYMMETRIC_CONNECTORS},
    **{p: "negation" for p in _NEGATION_CONNECTORS},
    "with": "with",
}
_CONNECTORS = _phrase_table(list(_CONNECTOR_KIND))
_RELATION_TERMS = _phrase_table([*RELATION_OPPOSITES, *_POSITION_OPPOSITES])


@dataclass(frozen=True)
class _NP:
    start: int  # first token (determiner if any)
    content: int  # first token after the determiner
    end: int  # exclusive; head noun = end - 1

    @property
    def head(self) -> int:
        return self.end - 1


@dataclass(frozen=True)
class _Structure:
    left: _NP
    conn: tuple[int, int]
    right: _NP
    phrase: str
    kind: str  # relation | symmetric | negation | with


def _is_verbish(words: list[str], i: int) -> bool:
    w = words[i]
    if w in _VERBISH:
        return True
    if len(w) >= 5 and (w.endswith("ing") or w.endswith("ed")):
        # "a man sitting" / "a car parked" (verb) vs "a building" / "a painted wall" (noun, adjective)
        prev = words[i - 1] if i > 0 else ""
        return prev not in _DETERMINERS and prev not in COLOUR_WORDS and prev not in SIZE_OPPOSITES and prev != ""
    return False


def _is_attribute(word: str) -> bool:
    """A colour or size adjective: never the head noun of a noun phrase ("a red and blue shirt")."""
    return word in COLOUR_WORDS or word in SIZE_OPPOSITES


def _plural(word: str) -> bool:
    w = word.lower()
    return w in _IRREGULAR_PLURALS or (w.endswith("s") and not w.endswith("ss") and len(w) > 3)


def _np_before(text: _Text, c: int) -> _NP | None:
    words = text.words
    j = c - 1
    while j >= 0 and _is_verbish(words, j) and not _PUNCT.search(text.toks[j + 1].sep if j + 1 < len(words) else ""):
        j -= 1
    end = j + 1
    if end <= 0 or words[j] in _STOP or words[j] in _DETERMINERS or _is_attribute(words[j]):
        return None
    i = j
    while i >= 0:
        w = words[i]
        if w in _DETERMINERS:
            return _NP(i, i + 1, end)
        if w in _STOP or _is_verbish(words, i):
            return _NP(i + 1, i + 1, end)
        if i < end - 1 and _PUNCT.search(text.toks[i + 1].sep):
            return _NP(i + 1, i + 1, end)
        i -= 1
    return _NP(0, 0, end)


def _np_after(text: _Text, e: int) -> _NP | None:
    words = text.words
    n = len(words)
    if e >= n or _PUNCT.search(text.toks[e].sep):
        return None
    i = e + 1 if words[e] in _DETERMINERS else e
    k = i
    while k < n:
        if k > e and _PUNCT.search(text.toks[k].sep):
            break
        if words[k] in _STOP or words[k] in _DETERMINERS or _is_verbish(words, k):
            break
        k += 1
    if k == i or words[k - 1] in _POSITION_NOUNS or _is_attribute(words[k - 1]):
        return None
    return _NP(e, i, k)


def _structures(text: _Text) -> list[_Structure]:
    out = []
    for c0, c1, phrase in _match_phrases(text, _CONNECTORS):
        left, right = _np_before(text, c0), _np_after(text, c1)
        if left is not None and right is not None:
            out.append(_Structure(left, (c0, c1), right, phrase, _CONNECTOR_KIND[phrase]))
    return out


def _np_text(text: _Text, np_: _NP) -> str:
    return " ".join(text.words[np_.content:np_.end])


def _changes_meaning(text: _Text, s: _Structure, new: _Text) -> bool:
    """For symmetric connectors "A and B" == "B and A": the swap must change the NP multiset."""
    if s.kind != "symmetric":
        return True
    before = sorted([_np_text(text, s.left), _np_text(text, s.right)])
    after = sorted([_np_text(new, s.left), _np_text(new, s.right)])
    return before != after


# --------------------------------------------------------------------------- rules


def _guard(rule: Callable[[_Text], list[str]]) -> Callable[[str], list[str]]:
    """Public rule wrapper: parse, run, drop the caption itself and duplicates, never raise."""

    def wrapped(caption: str) -> list[str]:
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a string, got {type(caption).__name__}")
        text = _Text.parse(caption)
        if not text.toks:
            return []
        try:
            candidates = rule(text)
        except Exception:  # a heuristic failing on odd text must not stop a dataset build
            log.debug("negative rule %s failed on %r", rule.__name__, caption, exc_info=True)
            return []
        seen = {_norm(caption)}
        out = []
        for c in candidates:
            if _norm(c) not in seen and c.strip():
                seen.add(_norm(c))
                out.append(c)
        return out

    wrapped.__name__ = rule.__name__.lstrip("_")
    wrapped.__doc__ = rule.__doc__
    return wrapped


def _norm(s: str) -> str:
    return " ".join(s.lower().split()).rstrip(" .!")


@_guard
def relation_swap(text: _Text) -> list[str]:
    """Swap the noun phrases around a spatial relation, or replace a relation by its opposite.

    >>> relation_swap("a red cup to the left of a blue plate")
    ['a blue plate to the left of a red cup', 'a red cup to the right of a blue plate']
    """
    out: list[str] = []
    for s in _structures(text):
        if s.kind != "relation":
            continue
        swapped = _swap_spans(text.toks, (s.left.content, s.left.end), (s.right.content, s.right.end))
        out.append(text.with_toks(swapped).render())
        break
    for i, j, phrase in _match_phrases(text, _RELATION_TERMS):
        opposite = RELATION_OPPOSITES.get(phrase) or _POSITION_OPPOSITES[phrase]
        out.append(text.with_toks(_replace_span(text.toks, i, j, opposite.split())).render())
    return out


def _attr_positions(words: list[str], np_: _NP, vocab: Sequence[str] | dict) -> list[int]:
    return [i for i in range(np_.content, np_.head) if words[i] in vocab]


@_guard
def attribute_swap(text: _Text) -> list[str]:
    """Swap (or move) a colour or size adjective between two noun phrases.

    >>> attribute_swap("a red cup to the left of a blue plate")
    ['a blue cup to the left of a red plate']
    """
    words = text.words
    out: list[str] = []
    structs = _structures(text)
    for vocab in (COLOUR_WORDS, SIZE_OPPOSITES):
        if structs:
            s = structs[0]
            pa, pb = _attr_positions(words, s.left, vocab), _attr_positions(words, s.right, vocab)
            if pa and pb:
                ia, ib = pa[0], pb[0]
                if words[ia] != words[ib]:
                    toks = _set_word(_set_word(text.toks, ia, text.toks[ib].word), ib, text.toks[ia].word)
                    new = text.with_toks(toks)
                    if _changes_meaning(text, s, new):
                        out.append(new.render())
            elif (pa or pb) and (s.kind != "symmetric" or words[s.left.head] != words[s.right.head]):  # move the adjective to the other noun phrase, before its head
                src = pa[0] if pa else pb[0]
                dst_head = s.right.head if pa else s.left.head
                word = text.toks[src].word
                if src < dst_head:
                    toks = _replace_span(_insert(text.toks, dst_head, [word]), src, src + 1, [])
                else:
                    toks = _insert(_replace_span(text.toks, src, src + 1, []), dst_head, [word])
                out.append(text.with_toks(toks).render())
        else:  # no two noun phrases: swap two distinct adjectives that are not coordinated
            pos = [i for i, w in enumerate(words) if w in vocab]
            for a in range(len(pos)):
                for b in range(a + 1, len(pos)):
                    ia, ib = pos[a], pos[b]
                    between = words[ia + 1:ib]
                    if words[ia] != words[ib] and between and not set(between) <= {"and", "or"}:
                        toks = _set_word(_set_word(text.toks, ia, text.toks[ib].word), ib, text.toks[ia].word)
                        out.append(text.with_toks(toks).render())
                        break
                else:
                    continue
                break
    return out


@_guard
def object_swap(text: _Text) -> list[str]:
    """Swap the head nouns of the two noun phrases around a connector; adjectives stay.

    >>> object_swap("a dog without a leash")
    ['a leash without a dog']
    """
    words = text.words
    for s in _structures(text):
        ha, hb = s.left.head, s.right.head
        if words[ha] == words[hb] or _plural(words[ha]) != _plural(words[hb]):
            continue  # same noun, or a number mismatch ("two dogs" / "a ball")
        toks = _set_word(_set_word(text.toks, ha, text.toks[hb].word), hb, text.toks[ha].word)
        new = text.with_toks(toks)
        if not _changes_meaning(text, s, new):
            continue
        return [new.render()]
    return []


def _article_for(word: str) -> list[str]:
    """Article for a noun phrase starting with ``word`` (none for a plural-looking word)."""
    w = word.lower()
    if _plural(w):
        return []
    return ["an" if w[:1] in "aeiou" else "a"]


@_guard
def negation_toggle(text: _Text) -> list[str]:
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
            out.append(text.with_toks(_set_word(toks, i, "with")).render())
            if i > 0 and words[i - 1] != "and":
                out.append(text.with_toks(_set_word(toks, i, "and")).render())
        elif w == "no" and i + 1 < n:
            negated = True
            # "with no blue circle" -> "with a blue circle"; "no dogs" -> "dogs"
            art = _article_for(words[i + 1])
            out.append(text.with_toks(_replace_span(toks, i, i + 1, art)).render())
        elif w == "not":
            negated = True
            out.append(text.with_toks(_replace_span(toks, i, i + 1, [])).render())
        elif w in _CONTRACTIONS:
            negated = True
            out.append(text.with_toks(_set_word(toks, i, _CONTRACTIONS[w])).render())
    if negated:
        return out
    # add a negation
    for i, w in enumerate(words):
        if w == "with" and i > 0:
            out.append(text.with_toks(_set_word(toks, i, "without")).render())
            break
    for s in _structures(text):
        if s.kind == "symmetric" and s.phrase == "and":
            out.append(text.with_toks(_set_word(toks, s.conn[0], "without")).render())
            break
    terms = _match_phrases(text, _RELATION_TERMS)
    if terms and terms[0][0] > 0:  # "a cup to the left of a plate" -> "a cup not to the left of a plate"
        out.append(text.with_toks(_insert(toks, terms[0][0], ["not"])).render())
    for i, w in enumerate(words):
        if w in ("is", "are", "was", "were"):
            out.append(text.with_toks(_insert(toks, i + 1, ["not"])).render())
            break
    if not out and words[0] in ("a", "an", "the", "some"):
        out.append(text.with_toks(_set_word(toks, 0, "no")).render())
    return out


@_guard
def attribute_replace(text: _Text) -> list[str]:
    """Replace one colour by every other colour, or a size word by its opposite.

    >>> attribute_replace("a big dog")
    ['a small dog']
    """
    out: list[str] = []
    for i, w in enumerate(text.words):
        if w in COLOURS or w in COLOUR_WORDS:
            for other in COLOUR_WORDS:
                if other != w and {other, w} != {"gray", "grey"}:
                    out.append(text.with_toks(_set_word(text.toks, i, other)).render())
        elif w in SIZE_OPPOSITES:
            out.append(text.with_toks(_set_word(text.toks, i, SIZE_OPPOSITES[w])).render())
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


# --------------------------------------------------------------------------- sampling

RngLike = np.random.Generator | random.Random | int | None


def _randbelow(rng: np.random.Generator | random.Random, n: int) -> int:
    return rng.randrange(n) if isinstance(rng, random.Random) else int(rng.integers(n))


def make_negatives_with_rules(caption: str, k: int, rng: RngLike = None) -> list[tuple[str, str]]:
    """Up to ``k`` distinct hard negatives of ``caption`` as ``(rule_name, text)`` pairs.

    Rule families of :data:`RULES` take turns in an rng-shuffled order, each contributing a
    random one of its remaining candidates, so the negatives are spread over families; the
    :data:`FALLBACK_RULES` fill up only if needed. Fewer than ``k`` come back when the rules do
    not apply (e.g. ``"sunset"`` gives none). Deterministic for a seeded ``rng``.

    Args:
        caption: positive caption.
        k: number of negatives wanted (``<= 0`` gives ``[]``).
        rng: ``numpy.random.Generator``, ``random.Random``, an int seed or ``None``.
    """
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a string, got {type(caption).__name__}")
    if k <= 0 or not caption.strip():
        return []
    gen = rng if isinstance(rng, (np.random.Generator, random.Random)) else np.random.default_rng(rng)
    seen = {_norm(caption)}
    out: list[tuple[str, str]] = []
    for rules in (RULES, FALLBACK_RULES):
        pools = {name: list(fn(caption)) for name, fn in rules.items()}
        names = [n for n in rules if pools[n]]
        order = [names[i] for i in (np.random.default_rng(_randbelow(gen, 2**31)).permutation(len(names)))]
        while len(out) < k and any(pools[n] for n in order):
            for name in order:
                if len(out) >= k:
                    break
                pool = pools[name]
                while pool:
                    cand = pool.pop(_randbelow(gen, len(pool)))
                    if _norm(cand) not in seen:
                        seen.add(_norm(cand))
                        out.append((name, cand))
                        break
        if len(out) >= k:
            break
    return out


def make_negatives(caption: str, k: int, rng: RngLike = None) -> list[str]:
    """Up to ``k`` distinct hard-negative captions, all different from ``caption``.

    See :func:`make_negatives_with_rules`; this returns the texts only.
    """
    return [text for _, text in make_negatives_with_rules(caption, k, rng)]


def caption_category(caption: str) -> str:
    """The synthetic category a caption belongs to: ``"negation"`` if it holds a negation
    word, else ``"spatial"`` if it holds a relation phrase, else ``"binding"``."""
    text = _Text.parse(caption)
    words = text.words
    if any(w in NEGATION_WORDS for w in words):
        return "negation"
    if _match_phrases(text, _RELATION_TERMS):
        return "spatial"
    return "binding"
