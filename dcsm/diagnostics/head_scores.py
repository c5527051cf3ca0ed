"""LLM-free concept-consistency score per head, from its top-k TextSpan texts, and a ranking.

Concept groups come from a lexicon (``{group: [words or phrases]}``, JSON; the shipped one
covers colour, shape, size, position, texture, count, object, scene). A text belongs to every
group one of whose entries it contains as whole words (lower case).

For a head with top-k TextSpan texts ``t_1..t_k`` and their variance shares ``v_1..v_k`` (of the
head's total variance over the image set):

- ``score`` (the ranking key, in [0, 1]) = ``max_g sum_i w_i [g in groups(t_i)]`` with
  ``w_i = v_i`` (``weighting: variance``: the share of the head's variance that its texts of one
  concept explain) or ``w_i = 1 / k`` (``weighting: uniform``: the fraction of the top-k texts in
  one group, the LLM-free analogue of a 0-k concept-consistency count);
- ``concept`` = the maximising group (ties: lexicon order);
- ``count`` = how many of the k texts are in that group;
- ``similarity`` = mean pairwise cosine similarity of the k texts' CLIP embeddings (secondary;
  breaks ties in the ranking).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .textspan import SpanResult

__all__ = ["HeadScore", "LexiconError", "load_lexicon", "concept_groups", "score_heads", "rank_heads", "WEIGHTINGS"]

WEIGHTINGS = ("variance", "uniform")


class LexiconError(ValueError):
    """Concept lexicon missing or malformed."""


@dataclass
class HeadScore:
    layer: int
    head: int
    score: float
    concept: str | None
    count: int
    similarity: float
    texts: list[str]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "head": self.head, "score": round(self.score, 6), "concept": self.concept,
                "count": self.count, "similarity": round(self.similarity, 6), "texts": self.texts}


def load_lexicon(path: str) -> dict[str, list[str]]:
    """``{group: [entries]}`` from a JSON file (keys starting with ``_`` are comments); ``default`` = shipped."""
    p = Path(__file__).parent / "data" / "concept_lexicon.json" if path == "default" else Path(path)
    if not p.is_file():
        raise LexiconError(f"concept lexicon '{p}' does not exist. Fix: set diagnostics.concept_lexicon to a JSON "
                           "file {group: [words]} or 'default'.")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LexiconError(f"concept lexicon '{p}' is not valid JSON (line {err.lineno}): {err.msg}.") from err
    lex = {k: v for k, v in raw.items() if not k.startswith("_")}
    bad = [k for k, v in lex.items() if not (isinstance(v, list) and v and all(isinstance(w, str) for w in v))]
    if not lex or bad:
        raise LexiconError(f"concept lexicon '{p}': group '{bad[0] if bad else '-'}' must map to a non-empty list of "
                           "strings. Fix: {\"colour\": [\"red\", ...], ...}.")
    return lex


def _patterns(lexicon: dict[str, list[str]]) -> dict[str, re.Pattern]:
    return {g: re.compile(r"(?<![\w-])(" + "|".join(re.escape(w.lower()) for w in sorted(ws, key=len, reverse=True)) + r")(?![\w-])")
            for g, ws in lexicon.items()}


def concept_groups(text: str, lexicon: dict[str, list[str]], _cache: dict = {}) -> set[str]:  # noqa: B006 - memo
    """Groups whose entries occur in ``text`` as whole words."""
    key = id(lexicon)
    if key not in _cache:
        _cache[key] = (lexicon, _patterns(lexicon))
    pats = _cache[key][1]
    low = text.lower()
    return {g for g, p in pats.items() if p.search(low)}


def score_heads(
    spans: list[SpanResult],
    text_embeddings: torch.Tensor,
    lexicon: dict[str, list[str]],
    k: int,
    weighting: str = "variance",
) -> list[HeadScore]:
    """One :class:`HeadScore` per TextSpan result (same order). ``text_embeddings (M, D)`` unit-norm."""
    if weighting not in WEIGHTINGS:
        raise LexiconError(f"unknown head-score weighting '{weighting}'. Fix: use one of {WEIGHTINGS}.")
    groups = list(lexicon)
    out = []
    for s in spans:
        idx = s.indices[:k]
        texts = s.texts[:k]
        if not idx:
            out.append(HeadScore(s.layer, s.head, 0.0, None, 0, 0.0, []))
            continue
        member = torch.tensor([[g in concept_groups(t, lexicon) for g in groups] for t in texts], dtype=torch.float64)  # (k, G)
        w = s.variance[: len(idx)].double() if weighting == "variance" else torch.full((len(idx),), 1.0 / k, dtype=torch.float64)
        per_group = w @ member  # (G,)
        best = int(per_group.argmax())
        score = float(per_group[best])
        e = text_embeddings[idx].double()
        sim = e @ e.T
        n = len(idx)
        similarity = float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))) if n > 1 else 1.0
        concept = groups[best] if score > 0 else None
        out.append(HeadScore(s.layer, s.head, score, concept, int(member[:, best].sum()) if concept else 0, similarity, texts))
    return out


def rank_heads(scores: list[HeadScore]) -> list[HeadScore]:
    """Highest score first; ties by higher similarity, then lower (layer, head)."""
    return sorted(scores, key=lambda s: (-s.score, -s.similarity, s.layer, s.head))
