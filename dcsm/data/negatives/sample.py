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

import random

import numpy as np

from .parse import NEGATION_WORDS, RELATION_TERMS, Text, match_phrases
from .rules import FALLBACK_RULES, RULES, normalize


__all__ = ["make_negatives", "make_negatives_with_rules", "caption_category"]

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
    seen = {normalize(caption)}
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
                    if normalize(cand) not in seen:
                        seen.add(normalize(cand))
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
    text = Text.parse(caption)
    words = text.words
    if any(w in NEGATION_WORDS for w in words):
        return "negation"
    if match_phrases(text, RELATION_TERMS):
        return "spatial"
    return "binding"
