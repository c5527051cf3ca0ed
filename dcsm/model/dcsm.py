"""The DCSM scorer in one place: frozen encoder -> functional rows -> maps -> CNN -> scores.

:class:`DCSM` is what training, validation, ``evaluate.py`` and the benchmarks call::

    images (N, 3, H, W), options N x K strings
      -> DCSM.encode     -> FeatureBatch (patches (N,P,D), tokens (N,K,L,D), mask, ids, pooled)
      -> DCSMHead.maps   -> (N, K, L, P): cosine einsum, functional rows injected, padding zeroed, z-scored
      -> DCSMHead.scorer -> (N, K) scores

:class:`DCSMHead` is everything after CLIP (what a checkpoint holds); it consumes
embeddings, never images, so the same head scores live-encoded batches and cached features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .encoder_towers import baseline_logit
from .encoders import EncoderSpec, FrozenCLIP
from .batch import FeatureBatch, MapBatch
from .encode import encode_batch, ensure_features
from .functional_rows import FunctionalRows, resolve_lexicon
from .maps import build_maps
from .cnn import PooledResidual, ScorerConfig, build_pooled, build_scorer


@dataclass(frozen=True)
class MapConfig:
    """The ``maps:`` config section (defaults live in ``configs/default.yaml``)."""

    standardize: str
    eps: float
    inject_functional_rows: bool


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
        self, patches: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, pairing: str = "per_image"
    ) -> torch.Tensor:
        """Maps ``(B, K, L, P)`` (per_image: tokens ``(B, K, L, D)``) or ``(B, C, L, P)`` (all: tokens ``(C, L, D)``)."""
        inject = self.map_cfg.inject_functional_rows
        fr_index = self.functional_rows.index(ids) if inject else None
        rows = self.functional_rows.rows if inject else None
        return build_maps(
            patches, tokens, mask, fr_index, rows,
            pairing=pairing, standardize_mode=self.map_cfg.standardize, eps=self.map_cfg.eps,
        )

    def fp32_maps(
        self, patches: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, pairing: str = "per_image"
    ) -> torch.Tensor:
        """:meth:`maps` in fp32 even under bf16/fp16 autocast: they are small differences of
        cosines; the CNN then runs in whatever precision the trainer chose."""
        with torch.autocast(device_type=patches.device.type, enabled=False):
            return self.maps(patches.float(), tokens.float(), mask, ids, pairing)

    def forward(
        self, patches: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, pairing: str = "per_image",
        image_pooled: torch.Tensor | None = None, text_pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ``(B, K)`` for each image's own options or ``(B, C)`` for all pairs.

        ``image_pooled`` ``(B, D)`` and ``text_pooled`` (``(B, K, D)`` per_image, ``(C, D)`` all)
        are read by the pooled residual only (``scorer.pooled=residual``)."""
        scores = self.score_maps(self.fp32_maps(patches, tokens, mask, ids, pairing))
        if "pooled" not in self._modules:
            return scores
        if image_pooled is None or text_pooled is None:
            raise ValueError("scorer.pooled=residual needs the pooled image and caption embeddings (image_pooled, text_pooled).")
        eq = "bd,bkd->bk" if pairing == "per_image" else "bd,cd->bc"
        return self.pooled(scores, torch.einsum(eq, image_pooled.float(), text_pooled.float()))

    def score_cached(self, maps: torch.Tensor, pooled_cos: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, K)`` of cached maps ``(B, K, L, P)`` (a map cache, any float dtype: the
        CNN reads them as :meth:`forward` reads its fp32 maps) and pooled cosines ``(B, K)``."""
        scores = self.score_maps(maps.float())
        return self.pooled(scores, pooled_cos.float()) if "pooled" in self._modules else scores

    def score_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps ``(..., L, P)`` -> scores ``(...)`` (fp32)."""
        lead = maps.shape[:-2]
        weight_dtype = next(self.scorer.parameters()).dtype  # bf16-true / 16-true keep half weights
        return self.scorer(maps.flatten(0, -3).to(weight_dtype)).view(lead).float()


class DCSM(nn.Module):
    """Frozen encoder + trainable head: images (or their cached features) -> option scores.

    Args:
        encoder: the frozen CLIP wrapper (never trained, never saved).
        head: functional rows + maps + CNN.
    """

    def __init__(self, encoder: FrozenCLIP, head: DCSMHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def encode(self, images: torch.Tensor, options: list[list[str]]) -> FeatureBatch:
        """Images ``(N, 3, H, W)`` and N lists of K options -> :class:`FeatureBatch`."""
        return encode_batch(self.encoder, {"images": images, "captions": options})

    def features(self, x: torch.Tensor | FeatureBatch | MapBatch | dict[str, Any],
                 options: list[list[str]] | None = None) -> FeatureBatch | MapBatch:
        """Images + options, a raw batch dict (``images``, ``captions``, ...) or a
        :class:`FeatureBatch` -> :class:`FeatureBatch` (encoded only when needed); a
        :class:`~dcsm.features.map_cache.MapBatch` (map cache) as it is."""
        if isinstance(x, MapBatch):
            return x
        if isinstance(x, torch.Tensor):
            if options is None:
                raise ValueError("scoring images needs their caption options. Fix: call model(images, options).")
            return self.encode(x, options)
        return ensure_features(self.encoder, x)

    def forward(self, x: torch.Tensor | FeatureBatch | dict[str, Any], options: list[list[str]] | None = None) -> torch.Tensor:
        """DCSM scores ``(N, K)`` of each image's K options."""
        f = self.features(x, options)
        if isinstance(f, MapBatch):
            return self.head.score_cached(f.maps, f.pooled_cos)
        return self.head(f.patches, f.tokens, f.token_mask, f.token_ids, image_pooled=f.image_pooled, text_pooled=f.text_pooled)

    def maps(self, x: torch.Tensor | FeatureBatch | dict[str, Any], options: list[list[str]] | None = None) -> torch.Tensor:
        """The maps :meth:`forward` scores: ``(N, K, L, P)`` fp32."""
        f = self.features(x, options)
        if isinstance(f, MapBatch):
            return f.maps.float()
        return self.head.fp32_maps(f.patches, f.tokens, f.token_mask, f.token_ids)

    def baseline_scores(self, features: FeatureBatch | MapBatch) -> torch.Tensor:
        """Same-encoder baseline ``(N, K)`` with the model's own logit (cosine for CLIP models,
        ``logit_scale * cos + logit_bias`` for SigLIP; ``encoder.towers["baseline_logit"]`` names it),
        from the pooled cosines (:meth:`clip_scores`; a map cache stores them)."""
        return baseline_logit(self.encoder.model, self.clip_scores(features))

    @staticmethod
    def clip_scores(features: FeatureBatch | MapBatch) -> torch.Tensor:
        """Baseline of the same encoder: cosine of pooled image ``(N, D)`` and pooled option
        ``(N, K, D)`` embeddings -> ``(N, K)`` (a map cache stores them)."""
        if isinstance(features, MapBatch):
            return features.pooled_cos.float()
        return torch.einsum("nd,nkd->nk", features.image_pooled.float(), features.text_pooled.float())


def build_head(cfg: dict, encoder: FrozenCLIP) -> DCSMHead:
    """Functional rows + CNN for this encoder's map size, from the ``functional_rows``,
    ``maps`` and ``scorer`` config sections."""
    fr = cfg["functional_rows"]
    rows = FunctionalRows(
        resolve_lexicon(fr["lexicon"]), encoder.tokenizer, encoder.num_patches, seed=fr["seed"], init=fr["init"]
    )
    sc = ScorerConfig(**cfg["scorer"])
    scorer = build_scorer(sc, encoder.spec.max_tokens, encoder.num_patches, encoder.grid_size, encoder.spec.keep_cls)
    pooled = build_pooled(sc, scorer, float(encoder.model.logit_scale.exp()))
    return DCSMHead(rows, scorer, MapConfig(**cfg["maps"]), pooled)


def build_dcsm(cfg: dict, encoder: FrozenCLIP | None = None) -> DCSM:
    """:class:`DCSM` from the ``encoder``, ``functional_rows``, ``maps`` and ``scorer`` config
    sections; ``encoder`` shares an already-built one (e.g. with a feature-caching DataModule)."""
    encoder = encoder if encoder is not None else FrozenCLIP(EncoderSpec(**cfg["encoder"]))
    return DCSM(encoder, build_head(cfg, encoder))
