"""Functional rows: fixed random map rows for functional words (spatial relations, negation).

A lexicon entry is a word or multi-word phrase ("to the left of"). Each caption's BPE ids are
matched against the entries' BPE id sequences; every token position covered by a match gets
that entry's row. Overlapping matches resolve to the longest entry, so "to the left of"
claims all four of its tokens before "left" can claim one. Matching on BPE positions (not a
whitespace split, as the reference code does) keeps SOT and multi-token words aligned.

Rows are seeded per entry from ``(seed, crc32(phrase))``: adding an entry does not change the
other rows. They are buffers (saved in every checkpoint, never trained).
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

SPATIAL_WORDS: tuple[str, ...] = (
    "to the left of", "to the right of", "on the left of", "on the right of",
    "on the left", "on the right", "left of", "right of", "left", "right",
    "above", "below", "on top of", "on", "under", "underneath", "beneath",
    "behind", "in front of", "next to", "beside", "near", "far from", "between", "inside",
    "small", "big", "large", "tiny",
)
NEGATION_WORDS: tuple[str, ...] = (
    "no", "not", "without", "but", "absent", "none", "nothing", "neither", "nor", "never",
)
DEFAULT_LEXICON: tuple[str, ...] = SPATIAL_WORDS + NEGATION_WORDS

# The reference initialises rows as (unit-norm Gaussian + 1) / 3; kept as the default so
# rows sit in the same range as the reference's (and its checkpoints' rows load as-is).
INIT_SHIFT = 1.0
INIT_DIVISOR = 3.0
ROW_INITS = ("reference", "gaussian")


def resolve_lexicon(lexicon: str | Sequence[str]) -> tuple[str, ...]:
    """``"default"`` -> :data:`DEFAULT_LEXICON`; a sequence -> normalised, de-duplicated phrases."""
    if isinstance(lexicon, str):
        if lexicon != "default":
            raise ValueError(f"unknown lexicon name '{lexicon}'. Fix: use 'default' or a list of phrases.")
        return DEFAULT_LEXICON
    phrases = tuple(dict.fromkeys(" ".join(p.lower().split()) for p in lexicon))
    if any(not p for p in phrases):
        raise ValueError("the functional-word lexicon holds an empty phrase. Fix: remove it.")
    return phrases


def init_rows(phrases: Sequence[str], num_patches: int, seed: int, init: str = "reference") -> torch.Tensor:
    """Seeded rows ``(E, P)``, one per phrase, independent of the other phrases."""
    if init not in ROW_INITS:
        raise ValueError(f"unknown functional-row init '{init}'. Fix: use one of {ROW_INITS}.")
    rows = []
    for phrase in phrases:  # init only, E ~ 40 entries
        g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(phrase.encode())) % (2**63))
        v = torch.randn(num_patches, generator=g)
        rows.append((F.normalize(v, dim=0) + INIT_SHIFT) / INIT_DIVISOR if init == "reference" else v)
    return torch.stack(rows)


def phrase_token_ids(phrases: Sequence[str], tokenizer: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """BPE ids of each phrase without SOT/EOT -> ids ``(E, Lmax)`` (0-padded), lengths ``(E,)``."""
    full = tokenizer(list(phrases))  # (E, context) with SOT ... EOT 0...
    lengths = (full != 0).sum(dim=1) - 2
    if (lengths <= 0).any():
        bad = phrases[int((lengths <= 0).nonzero()[0])]
        raise ValueError(f"lexicon phrase {bad!r} tokenizes to nothing. Fix: remove it.")
    lmax = int(lengths.max())
    ids = full[:, 1 : 1 + lmax] * (torch.arange(lmax) < lengths.unsqueeze(1))
    return ids, lengths


class FunctionalRows(nn.Module):
    """Lexicon + fixed rows. ``index(ids)`` marks token positions, ``rows`` replaces them.

    Buffers (saved with the model): ``rows (E, P)``, ``phrase_ids (E, Lmax)``, ``phrase_len (E,)``.
    """

    def __init__(
        self,
        phrases: Sequence[str],
        tokenizer: Callable,
        num_patches: int,
        seed: int = 0,
        init: str = "reference",
    ) -> None:
        super().__init__()
        self.phrases: tuple[str, ...] = tuple(phrases)
        ids, lengths = phrase_token_ids(self.phrases, tokenizer)
        self.register_buffer("rows", init_rows(self.phrases, num_patches, seed, init))
        self.register_buffer("phrase_ids", ids)
        self.register_buffer("phrase_len", lengths)

    def index(self, ids: torch.Tensor) -> torch.Tensor:
        """Entry index per token position: ids ``(..., L)`` -> ``(..., L)`` long, -1 = no entry."""
        shape = ids.shape
        flat = ids.reshape(-1, shape[-1])  # (C, L)
        C, L = flat.shape
        E, lmax = self.phrase_ids.shape
        # windows[c, s, k] = ids[c, s + k] (0 past the end): (C, L, lmax)
        windows = F.pad(flat, (0, lmax)).unfold(1, lmax, 1)[:, :L]
        used = torch.arange(lmax, device=ids.device) < self.phrase_len.unsqueeze(1)  # (E, lmax)
        eq = windows.unsqueeze(2) == self.phrase_ids.view(1, 1, E, lmax)  # (C, L, E, lmax)
        starts = (eq | ~used).all(dim=-1)  # (C, L, E): entry e starts at s
        # cover[c, p, e]: some match of e starting at p - k (k < len_e) covers p
        cover = torch.zeros_like(starts)
        for k in range(lmax):  # phrase length (<= 4), not tokens
            shifted = F.pad(starts, (0, 0, k, 0))[:, :L] & (k < self.phrase_len)
            cover |= shifted
        # longest covering entry wins; ties go to the earlier entry
        priority = self.phrase_len * (E + 1) + (E - torch.arange(E, device=ids.device))
        score = torch.where(cover, priority, torch.zeros_like(priority))
        best = score.argmax(dim=-1)
        out = torch.where(cover.any(dim=-1), best, torch.full_like(best, -1))
        return out.reshape(shape)

    def extra_repr(self) -> str:
        return f"entries={len(self.phrases)}, num_patches={self.rows.shape[1]}"
