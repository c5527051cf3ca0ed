"""Score multiple-choice options with CLIP and DCSM models from one image forward pass.

Each batch of images is encoded once; CLIP's scores are pooled image-caption cosines, a
:class:`~dcsm.model.dcsm.DCSM` scorer reads the same embeddings (its head only), and any other
``scorer(images, options) -> (N, K)`` is called on the images. Captions come from a
:class:`TextTable` (each distinct caption encoded once). With ``attribute=True`` each DCSM model
also returns gradient x input of the true option's score over its map's patch axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..model.batch import FeatureBatch
from ..model.dcsm import DCSM
from .pruning import ScoreFn

__all__ = ["CLIP", "TextTable", "PassResult", "score_pass", "dcsm_patch_attribution"]

CLIP = "clip"


class TextTable:
    """Embeddings of a fixed set of captions, encoded once: ``tokens (C, L, D)``, ``mask``, ``ids``,
    ``pooled (C, D)`` on the encoder's device, looked up by caption."""

    def __init__(self, encoder, captions: Sequence[str]) -> None:
        self.captions = list(dict.fromkeys(captions))
        self.position = {c: i for i, c in enumerate(self.captions)}
        emb = encoder.encode_texts(self.captions)
        self.tokens, self.mask, self.ids, self.pooled = emb.tokens, emb.mask, emb.ids, emb.pooled

    def index(self, options: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(N, K)`` row of each option (every option must be in the table)."""
        return torch.tensor([[self.position[c] for c in opts] for opts in options], dtype=torch.long)


@dataclass
class PassResult:
    """One pass over a set: pooled image embeddings ``(N, D)``, scores ``{scorer: (N, K)}`` and,
    when asked, DCSM patch attributions ``{scorer: (N, P)}`` (all on the CPU)."""

    pooled: torch.Tensor
    scores: dict[str, torch.Tensor]
    attributions: dict[str, torch.Tensor] = field(default_factory=dict)


def dcsm_patch_attribution(model: DCSM, f: FeatureBatch, labels: torch.Tensor) -> torch.Tensor:
    """Gradient x input of the true option's DCSM score over its map, summed over token rows:
    ``(N, P)`` (P the map's columns, incl. a CLS column when the encoder keeps one).

    The CLIP-logit residual (``scorer.pooled=residual``) has no patch axis and is left out. The
    gradient is taken w.r.t. the maps only (parameters' ``.grad`` are not touched).
    """
    n = len(labels)
    pick = labels.to(f.tokens.device)[:, None]
    sel = lambda t: t[torch.arange(n, device=t.device)[:, None], pick]  # noqa: E731 - (N, 1, ...)
    with torch.enable_grad():
        maps = model.head.fp32_maps(f.patches, sel(f.tokens), sel(f.token_mask), sel(f.token_ids))
        maps = maps.detach().requires_grad_(True)  # (N, 1, L, P)
        score = model.head.score_maps(maps)  # (N, 1)
        (grad,) = torch.autograd.grad(score.sum(), maps)
    return (grad * maps).detach()[:, 0].sum(dim=1).float()  # (N, P)


def _features(img, table: TextTable, idx: torch.Tensor) -> FeatureBatch:
    dev = img.patches.device
    idx = idx.to(table.pooled.device)
    return FeatureBatch(patches=img.patches, image_pooled=img.pooled, tokens=table.tokens[idx].to(dev),
                        token_mask=table.mask[idx].to(dev), token_ids=table.ids[idx].to(dev),
                        text_pooled=table.pooled[idx].to(dev))


@torch.no_grad()
def score_pass(encoder, images: torch.Tensor, options: Sequence[Sequence[str]], table: TextTable,
               scorers: dict[str, ScoreFn] | None, batch_size: int, labels: torch.Tensor | None = None,
               attribute: bool = False) -> PassResult:
    """Scores of every image's options by CLIP (``"clip"``) and every scorer, one encoder pass.

    Args:
        images: ``(N, 3, H, W)`` preprocessed.
        options: N lists of K captions (all in ``table``).
        labels: ``(N,)`` true options (needed for ``attribute``).
        attribute: also DCSM patch attributions of the true option (:func:`dcsm_patch_attribution`).
    """
    idx_all = table.index(options)
    pooled, scores, attrs = [], {CLIP: []}, {}
    for i in range(0, len(images), batch_size):
        x, idx = images[i: i + batch_size], idx_all[i: i + batch_size]
        img = encoder.encode_images(x)
        pooled.append(img.pooled.cpu())
        txt = F.normalize(table.pooled[idx.to(table.pooled.device)].to(img.pooled.device), dim=-1)  # (n, K, D)
        scores[CLIP].append(torch.einsum("nd,nkd->nk", img.pooled, txt).float().cpu())
        f = None
        for name, scorer in (scorers or {}).items():
            if isinstance(scorer, DCSM):
                f = f if f is not None else _features(img, table, idx)
                s = scorer(f)
                if attribute and labels is not None:
                    attrs.setdefault(name, []).append(dcsm_patch_attribution(scorer, f, labels[i: i + batch_size]).cpu())
            else:
                s = scorer(x, [list(o) for o in options[i: i + batch_size]])
            scores.setdefault(name, []).append(s.float().cpu())
    return PassResult(torch.cat(pooled), {k: torch.cat(v) for k, v in scores.items()},
                      {k: torch.cat(v) for k, v in attrs.items()})
