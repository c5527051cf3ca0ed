"""CNN scorers over DCSM maps: ``(N, L, P)`` maps -> ``(N,)`` scores.

Layouts (``scorer.layout``):
- ``map``: the map as a 1-channel ``L x P`` image (patch axis in raster order).
- ``reference``: the authors' ``CrossModalConvNetwork``: the same network fed the transposed
  ``P x L`` image (their maps are image-tokens x text-tokens, which fixes fc1's flatten
  order). With ``channels=4, hidden=128`` on a 197 x 30 map, parameter names and shapes
  equal theirs (``conv1``, ``conv2``, ``fc1``, ``fc2``), so their state dicts load.
- ``grid``: P reshaped to its ``g x g`` patch grid, the L token rows as channels, so the
  convolutions see true 2-D neighbourhoods (needs ``keep_cls: false``).

Pooled similarity (``scorer.pooled``), any layout:
- ``none``: the CNN's score alone (maps only; the default, the reference's behaviour);
- ``residual``: ``score = CNN(map) + s * cos(pooled image, pooled caption)``, the CNN's last
  layer zero-initialised and ``s`` a learned scale starting at the encoder's own CLIP logit
  scale, so an untrained head ranks exactly as CLIP does and training learns a correction
  on top of it: the scorer starts from what CLIP's pooled embedding knows instead of having
  to rediscover it from the maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

LAYOUTS = ("map", "grid", "reference")
# compile.head: auto = on when training on CUDA, off on CPU (dcsm.train.module.compile_head); compile.mode
COMPILE_CHOICES = ("auto", True, False)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
POOLED = ("none", "residual")
MAX_PARAMS = 5_000_000
KERNEL = 3
PADDING = 1  # 'same' convolutions: the flattened size is layout-determined


@dataclass(frozen=True)
class ScorerConfig:
    """The ``scorer:`` config section (defaults live in ``configs/default.yaml``)."""

    layout: str
    channels: int
    hidden: int
    dropout: float
    conv_dropout: float
    pooled: str


class MapCNN(nn.Module):
    """1-channel ``(L, P)`` image -> score. Attribute names follow the reference network."""

    def __init__(self, num_tokens: int, num_patches: int, cfg: ScorerConfig, patches_first: bool = False) -> None:
        super().__init__()
        c = cfg.channels
        self.patches_first = patches_first
        self.conv1 = nn.Conv2d(1, c, KERNEL, padding=PADDING)
        self.conv2 = nn.Conv2d(c, c, KERNEL, padding=PADDING)
        self.dropout_conv = nn.Dropout2d(cfg.conv_dropout)
        self.fc1 = nn.Linear(c * num_tokens * num_patches, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, 1)
        self.dropout_fc = nn.Dropout(cfg.dropout)
        self.relu = nn.ReLU()

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """maps ``(N, L, P)`` -> scores ``(N,)``."""
        x = (maps.transpose(-1, -2) if self.patches_first else maps).unsqueeze(1)
        x = self.dropout_conv(self.relu(self.conv1(x)))
        x = self.dropout_conv(self.relu(self.conv2(x)))
        x = self.dropout_fc(self.relu(self.fc1(x.flatten(1))))
        return self.fc2(x).squeeze(-1)


class GridCNN(nn.Module):
    """Token rows as channels over the ``(g_h, g_w)`` patch grid -> score."""

    def __init__(self, num_tokens: int, grid: tuple[int, int], cfg: ScorerConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.grid = tuple(grid)
        self.conv1 = nn.Conv2d(num_tokens, c, KERNEL, padding=PADDING)
        self.conv2 = nn.Conv2d(c, c, KERNEL, padding=PADDING)
        self.dropout_conv = nn.Dropout2d(cfg.conv_dropout)
        self.fc1 = nn.Linear(c * grid[0] * grid[1], cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, 1)
        self.dropout_fc = nn.Dropout(cfg.dropout)
        self.relu = nn.ReLU()

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """maps ``(N, L, P)`` with ``P = g_h * g_w`` -> scores ``(N,)``."""
        x = maps.unflatten(-1, self.grid)  # (N, L, g_h, g_w)
        x = self.dropout_conv(self.relu(self.conv1(x)))
        x = self.dropout_conv(self.relu(self.conv2(x)))
        x = self.dropout_fc(self.relu(self.fc1(x.flatten(1))))
        return self.fc2(x).squeeze(-1)


class PooledResidual(nn.Module):
    """``scores + scale * pooled cosine``: CLIP's own logit as a residual under the CNN's score."""

    def __init__(self, init_scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))

    def forward(self, scores: torch.Tensor, pooled_cosine: torch.Tensor) -> torch.Tensor:
        """scores and pooled cosines of the same shape (e.g. ``(B, K)``) -> ``(B, K)``."""
        return scores + self.scale * pooled_cosine.to(scores.dtype)


def build_pooled(cfg: ScorerConfig, net: nn.Module, clip_logit_scale: float) -> PooledResidual | None:
    """The ``scorer.pooled`` module (None for ``none``); ``residual`` zero-initialises ``net.fc2``
    so that the untrained head scores exactly ``clip_logit_scale * cos``."""
    if cfg.pooled == "none":
        return None
    if cfg.pooled != "residual":
        raise ValueError(f"unknown scorer.pooled '{cfg.pooled}'. Fix: use one of {POOLED}.")
    nn.init.zeros_(net.fc2.weight)
    nn.init.zeros_(net.fc2.bias)
    return PooledResidual(clip_logit_scale)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_scorer(cfg: ScorerConfig, num_tokens: int, num_patches: int, grid: tuple[int, int], keep_cls: bool) -> nn.Module:
    """Build the configured CNN and check it stays under :data:`MAX_PARAMS` parameters."""
    if cfg.layout in ("map", "reference"):
        net: nn.Module = MapCNN(num_tokens, num_patches, cfg, patches_first=cfg.layout == "reference")
    elif cfg.layout == "grid":
        if keep_cls or math.prod(grid) != num_patches:
            raise ValueError(
                f"scorer.layout=grid needs the map's {num_patches} columns to be the {grid[0]}x{grid[1]} "
                "patch grid. Fix: set encoder.keep_cls=false, or use scorer.layout=map."
            )
        net = GridCNN(num_tokens, grid, cfg)
    else:
        raise ValueError(f"unknown scorer.layout '{cfg.layout}'. Fix: use one of {LAYOUTS}.")
    n = count_params(net)
    if n > MAX_PARAMS:
        raise ValueError(
            f"scorer has {n:,} parameters (> {MAX_PARAMS:,}). Fix: lower scorer.channels or scorer.hidden."
        )
    return net
