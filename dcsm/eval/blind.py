"""Encoder-blind items: the correct option and a wrong one reach the scorer as the same input.

A head reads only what the frozen encoder gives it: the caption's token rows (functional words
replaced by their fixed rows) and, with the pooled residual, the pooled caption embedding. When
the correct option and some wrong option agree on all of these, no head on this encoder can
tell them apart, and neither can CLIP's pooled cosine: the item is a coin flip for both, decided
by float noise. Real causes: captions that differ only past ``encoder.max_tokens`` or the text
tower's context length, and text towers that erase words (the shipped ``dcsm-toy-ViT`` maps
every token after "with" to the same vector, README "Binding and the toy CLIP's blind spot").

Counting them separates what the head gets wrong from what the encoder never showed it; they
are still scored (and counted wrong on a tie) like every other item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: an option counts as the same input as the label when every real token row and the pooled
#: embedding have cosine >= 1 - BLIND_TOLERANCE with the label's (differences below fp16 resolution)
BLIND_TOLERANCE = 1e-4


def encoder_blind(tokens: torch.Tensor, mask: torch.Tensor, functional: torch.Tensor | None, pooled: torch.Tensor,
                  label: torch.Tensor, tol: float = BLIND_TOLERANCE) -> torch.Tensor:
    """Which items have a wrong option the scorer receives as the correct one.

    Args:
        tokens: ``(N, K, L, D)`` token rows (unit norm, zero on padding).
        mask: ``(N, K, L)`` bool, real rows.
        functional: ``(N, K, L)`` functional-row entry per position (-1: none), or None when
            functional rows are not injected.
        pooled: ``(N, K, D)`` pooled caption embeddings.
        label: ``(N,)`` index of the correct option.
    Returns:
        ``(N,)`` bool.
    """
    n, k = tokens.shape[:2]
    rows = torch.arange(n, device=tokens.device)
    pick = lambda t: t[rows, label].unsqueeze(1)  # noqa: E731 - (N, 1, ...) the label's
    t = tokens.float()
    row_cos = (F.normalize(t, dim=-1) * F.normalize(pick(t), dim=-1)).sum(-1)  # (N, K, L)
    same_rows = (row_cos >= 1 - tol) | ~mask  # padded rows: compared through the masks below
    if functional is not None:  # a functional word's row is its fixed vector, whatever the embedding
        same_rows &= functional == pick(functional)
    same_mask = (mask == pick(mask)).all(-1)  # (N, K)
    pooled_cos = F.cosine_similarity(pooled.float(), pick(pooled).float(), dim=-1)  # (N, K)
    same = same_rows.all(-1) & same_mask & (pooled_cos >= 1 - tol)
    same[rows, label] = False
    return same.any(dim=1)
