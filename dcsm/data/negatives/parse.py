"""Reading a caption for the negative rules: vocabulary (colours, sizes, relations and their
opposites, negation words), a token list with span edits, noun phrases around connectors."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from ..synthetic.vocab import COLOURS, RELATIONS, SIZE_WORDS


__all__ = ["COLOUR_WORDS", "SIZE_OPPOSITES", "RELATION_OPPOSITES", "NEGATION_WORDS"]

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
POSITION_OPPOSITES: dict[str, str] = {
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
CONTRACTIONS = {
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


@dataclass(frozen=True)
class _Tok:
    sep: str  # text before the word (whitespace, punctuation)
    word: str
    changed: bool = False


@dataclass(frozen=True)
class Text:
    toks: tuple[_Tok, ...]
    tail: str
    cap_first: bool

    @staticmethod
    def parse(caption: str) -> "Text":
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
        return Text(tuple(toks), tail, cap_first)

    @property
    def words(self) -> list[str]:
        return [t.word.lower() for t in self.toks]

    def with_toks(self, toks: Sequence[_Tok]) -> "Text":
        return Text(tuple(toks), self.tail, self.cap_first)

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


def replace_span(toks: Sequence[_Tok], i: int, j: int, new_words: Sequence[str]) -> list[_Tok]:
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


def insert_words(toks: Sequence[_Tok], i: int, words: Sequence[str]) -> list[_Tok]:
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


def swap_spans(toks: Sequence[_Tok], a: tuple[int, int], b: tuple[int, int]) -> list[_Tok]:
    """Swap the non-overlapping spans ``a`` before ``b``; moved words are marked changed."""
    (a0, a1), (b0, b1) = a, b

    def moved(span: Sequence[_Tok], sep: str) -> list[_Tok]:
        return [_Tok(sep if n == 0 else t.sep, t.word, True) for n, t in enumerate(span)]

    return (
        list(toks[:a0]) + moved(toks[b0:b1], toks[a0].sep) + list(toks[a1:b0])
        + moved(toks[a0:a1], toks[b0].sep) + list(toks[b1:])
    )


def set_word(toks: Sequence[_Tok], i: int, word: str) -> list[_Tok]:
    out = list(toks)
    out[i] = _Tok(toks[i].sep, word, True)
    return out


def _phrase_table(phrases: Sequence[str]) -> list[tuple[str, ...]]:
    return sorted({tuple(p.split()) for p in phrases}, key=len, reverse=True)


def match_phrases(text: Text, table: list[tuple[str, ...]]) -> list[tuple[int, int, str]]:
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
RELATION_TERMS = _phrase_table([*RELATION_OPPOSITES, *POSITION_OPPOSITES])


@dataclass(frozen=True)
class NounPhrase:
    start: int  # first token (determiner if any)
    content: int  # first token after the determiner
    end: int  # exclusive; head noun = end - 1

    @property
    def head(self) -> int:
        return self.end - 1


@dataclass(frozen=True)
class _Structure:
    left: NounPhrase
    conn: tuple[int, int]
    right: NounPhrase
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


def is_plural(word: str) -> bool:
    w = word.lower()
    return w in _IRREGULAR_PLURALS or (w.endswith("s") and not w.endswith("ss") and len(w) > 3)


def _np_before(text: Text, c: int) -> NounPhrase | None:
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
            return NounPhrase(i, i + 1, end)
        if w in _STOP or _is_verbish(words, i):
            return NounPhrase(i + 1, i + 1, end)
        if i < end - 1 and _PUNCT.search(text.toks[i + 1].sep):
            return NounPhrase(i + 1, i + 1, end)
        i -= 1
    return NounPhrase(0, 0, end)


def _np_after(text: Text, e: int) -> NounPhrase | None:
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
    return NounPhrase(e, i, k)


def find_structures(text: Text) -> list[_Structure]:
    out = []
    for c0, c1, phrase in match_phrases(text, _CONNECTORS):
        left, right = _np_before(text, c0), _np_after(text, c1)
        if left is not None and right is not None:
            out.append(_Structure(left, (c0, c1), right, phrase, _CONNECTOR_KIND[phrase]))
    return out


def _np_text(text: Text, np_: NounPhrase) -> str:
    return " ".join(text.words[np_.content:np_.end])


def changes_meaning(text: Text, s: _Structure, new: Text) -> bool:
    """For symmetric connectors "A and B" == "B and A": the swap must change the NP multiset."""
    if s.kind != "symmetric":
        return True
    before = sorted([_np_text(text, s.left), _np_text(text, s.right)])
    after = sorted([_np_text(new, s.left), _np_text(new, s.right)])
    return before != after
