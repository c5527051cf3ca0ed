"""The DCSM head: functional rows + map construction + CNN scorer (everything after CLIP).

It consumes embeddings, never images, so the same head scores live-encoded batches and
cached features alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .functional_rows import FunctionalRows
from .maps import build_maps
from .scorer import PooledResidual


@dataclass(frozen=True)
class MapConfig:
    standardize: str = "map"
    eps: float = 1e-6
    functional_rows: bool = True


class DCSMHead(nn.Module):
    """Scores (image, caption) pairs from their embeddings.

    Args:
        rows: the functional-row module (lexicon + fixed rows, part of the state dict).
        scorer: CNN mapping ``(N, L, P)`` maps to ``(N,)`` scores.
        map_cfg: standardisation mode and whether functional rows are injected.
        pooled: optional CLIP-logit residual (``scorer.pooled=residual``); forward then needs
            the pooled embeddings.
    """

    def __init__(self, rows: FunctionalRows, scorer: nn.Module, map_cfg: MapConfig, pooled: PooledResidual | None = None) -> None:
        super().__init__()
        self.functional_rows = rows
        self.scorer = scorer
        self.map_cfg = map_cfg
        if pooled is not None:  # registered only when used: state dicts without it are unchanged
            self.pooled = pooled

    def maps(
        self, patches: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, pairing: str = "paired"
    ) -> torch.Tensor:
        """Maps ``(B, K, L, P)`` (paired: tokens ``(B, K, L, D)``) or ``(B, C, L, P)`` (all: tokens ``(C, L, D)``)."""
        use_rows = self.map_cfg.functional_rows
        fr_index = self.functional_rows.index(ids) if use_rows else None
        rows = self.functional_rows.rows if use_rows else None
        return build_maps(
            patches, tokens, mask, fr_index, rows,
            pairing=pairing, standardize_mode=self.map_cfg.standardize, eps=self.map_cfg.eps,
        )

    def forward(
        self, patches: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, pairing: str = "paired",
        image_pooled: torch.Tensor | None = None, text_pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ``(B, K)`` for paired options or ``(B, C)`` for all pairs.

        ``image_pooled`` ``(B, D)`` and ``text_pooled`` (``(B, K, D)`` paired, ``(C, D)`` all) are
        needed by the pooled residual only."""
        # Maps and their z-scores in fp32 even under bf16/fp16 autocast: they are small
        # differences of cosines; the CNN then runs in whatever precision the trainer chose.
        with torch.autocast(device_type=patches.device.type, enabled=False):
            maps = self.maps(patches.float(), tokens.float(), mask, ids, pairing)
        lead = maps.shape[:-2]
        weight_dtype = next(self.scorer.parameters()).dtype  # bf16-true / 16-true keep half weights
        scores = self.scorer(maps.flatten(0, -3).to(weight_dtype)).view(lead).float()
        if "pooled" not in self._modules:
            return scores
        if image_pooled is None or text_pooled is None:
            raise ValueError("scorer.pooled=residual needs the pooled image and caption embeddings (image_pooled, text_pooled).")
        eq = "bd,bkd->bk" if pairing == "paired" else "bd,cd->bc"
        return self.pooled(scores, torch.einsum(eq, image_pooled.float(), text_pooled.float()))
