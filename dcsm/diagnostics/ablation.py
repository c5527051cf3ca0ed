"""Mean- and zero-ablation (soft pruning) of image-tower heads, attention layers and MLPs.

A component's output ``x`` is replaced in the forward pass by ``(1 - s) * x + s * m`` with
strength ``s`` in [0, 1] (0 = untouched, 1 = fully pruned) and ``m`` its dataset mean (``mean``,
per token position, over a named image set) or zero (``zero``). Downstream layers see the
change (total effect, as pruning does).

- a head ``("head", l, h)`` acts on its per-head output before the out-projection
  (``attn.hook_z``): the out-projection is linear, so this is exactly ablating the head's
  contribution; the projection's bias stays;
- an attention layer ``("attn", l)`` acts on the block's whole attention addition
  (``hook_attn_out``, bias included): mean-ablating it equals mean-ablating all its heads;
- an MLP ``("mlp", l)`` acts on ``hook_mlp_out``.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .hook_points import HookPoint, hooks

__all__ = ["Component", "AblationError", "ComponentMeans", "parse_component", "component_means", "ablate", "MODES"]

MODES = ("mean", "zero")
KINDS = ("head", "attn", "mlp")


class AblationError(ValueError):
    """Bad component, mode, strength, or missing means."""


@dataclass(frozen=True, order=True)
class Component:
    """One prunable part of the image tower: ``kind`` in ``head`` / ``attn`` / ``mlp``."""

    kind: str
    layer: int
    head: int | None = None

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}" if self.kind == "head" else f"L{self.layer}.{self.kind}"


def parse_component(spec: str | Component | Sequence) -> Component:
    """``"L3H5"`` / ``"L3.attn"`` / ``"L3.mlp"`` / ``("head", 3, 5)`` -> :class:`Component`."""
    if isinstance(spec, Component):
        return spec
    if isinstance(spec, str):
        m = re.fullmatch(r"L(\d+)H(\d+)", spec) or re.fullmatch(r"L(\d+)\.(attn|mlp)", spec)
        if m is None:
            raise AblationError(f"cannot parse component '{spec}'. Fix: write L<layer>H<head>, L<layer>.attn or L<layer>.mlp.")
        a, b = m.groups()
        return Component("head", int(a), int(b)) if b.isdigit() else Component(b, int(a))
    kind, layer, *rest = spec
    return Component(kind, int(layer), int(rest[0]) if rest and rest[0] is not None else None)


def _check(components: Sequence[Component], n_layers: int, n_heads: int) -> None:
    for c in components:
        if c.kind not in KINDS:
            raise AblationError(f"unknown component kind '{c.kind}'. Fix: use one of {KINDS}.")
        if not 0 <= c.layer < n_layers:
            raise AblationError(f"component {c}: layer {c.layer} out of range 0..{n_layers - 1}.")
        if c.kind == "head" and not (c.head is not None and 0 <= c.head < n_heads):
            raise AblationError(f"component {c}: head {c.head} out of range 0..{n_heads - 1}.")


@dataclass
class ComponentMeans:
    """Per-position dataset means of the image tower's components.

    z: ``(L, T, H, dh)`` per-head outputs before the out-projection.
    attn_out: ``(L, T, W)`` attention additions to the residual.
    mlp_out: ``(L, T, W)`` MLP additions.
    n_images: images averaged; source: name of the image set.
    """

    z: torch.Tensor
    attn_out: torch.Tensor
    mlp_out: torch.Tensor
    n_images: int
    source: str

    def to(self, device: torch.device | str) -> "ComponentMeans":
        return ComponentMeans(self.z.to(device), self.attn_out.to(device), self.mlp_out.to(device), self.n_images, self.source)


def _visual_blocks(encoder: nn.Module) -> nn.ModuleList:
    return getattr(encoder, "model", encoder).visual.transformer.resblocks


@torch.no_grad()
def component_means(encoder: nn.Module, batches: Iterable[torch.Tensor], source: str, progress: bool = True) -> ComponentMeans:
    """Dataset means over preprocessed image batches ``(B, 3, H, W)`` (one forward per batch).

    Raises:
        AblationError: no images.
    """
    model = getattr(encoder, "model", encoder)
    visual = model.visual
    sums: dict[str, torch.Tensor] = {}
    n = 0

    def add(x: torch.Tensor, hook: HookPoint) -> None:
        s = x.float().sum(dim=0)
        sums[hook.name] = sums[hook.name] + s if hook.name in sums else s

    pats = ["visual.blocks.*.attn.hook_z", "visual.blocks.*.hook_attn_out", "visual.blocks.*.hook_mlp_out"]
    with hooks(model, [(p, add) for p in pats]):
        for x in tqdm(batches, desc=f"means over {source}", disable=not progress, leave=False):
            visual(x.to(visual.proj.device, dtype=visual.proj.dtype))
            n += x.shape[0]
    if n == 0:
        raise AblationError(f"image set '{source}' is empty: component means need at least one image.")
    L = len(visual.transformer.resblocks)
    stack = lambda key: torch.stack([sums[f"visual.blocks.{l}.{key}"] for l in range(L)]) / n  # noqa: E731
    return ComponentMeans(stack("attn.hook_z"), stack("hook_attn_out"), stack("hook_mlp_out"), n, source)


@contextmanager
def ablate(
    encoder: nn.Module,
    components: Iterable[str | Component | Sequence],
    mode: str = "mean",
    strength: float = 1.0,
    means: ComponentMeans | None = None,
) -> Iterator[list[Component]]:
    """Soft-prune ``components`` of the image tower inside the ``with`` block (hooks removed on exit).

    Args:
        encoder: a :class:`~dcsm.model.encoders.FrozenCLIP` (or open_clip CLIP); every user of it
            (CLIP pooled scores, a DCSM scorer built on it) sees the ablation.
        mode: ``mean`` (needs ``means``) or ``zero``.
        strength: ``s`` in [0, 1].

    Raises:
        AblationError: unknown mode, strength outside [0, 1], bad component, missing means.
    """
    if mode not in MODES:
        raise AblationError(f"unknown ablation mode '{mode}'. Fix: use one of {MODES}.")
    if not 0.0 <= float(strength) <= 1.0:
        raise AblationError(f"ablation strength {strength} outside [0, 1]. Fix: 0 = untouched, 1 = fully pruned.")
    if mode == "mean" and means is None:
        raise AblationError("mode 'mean' needs dataset means. Fix: pass means=component_means(encoder, batches, name).")
    blocks = _visual_blocks(encoder)
    comps = sorted({parse_component(c) for c in components})
    _check(comps, len(blocks), blocks[0].attn.num_heads)
    s = float(strength)
    fwd: list = []
    H = blocks[0].attn.num_heads
    for l in sorted({c.layer for c in comps}):
        heads = [c.head for c in comps if c.layer == l and c.kind == "head"]
        if heads:
            mask = torch.zeros(H, dtype=torch.bool)
            mask[heads] = True
            fwd.append((f"visual.blocks.{l}.attn.hook_z", _mixer(s, mode, means.z[l] if means else None, mask)))
        for kind, key in (("attn", "attn_out"), ("mlp", "mlp_out")):
            if any(c.layer == l and c.kind == kind for c in comps):
                fwd.append((f"visual.blocks.{l}.hook_{key}", _mixer(s, mode, getattr(means, key)[l] if means else None, None)))
    with hooks(encoder, fwd):
        yield comps


def _mixer(s: float, mode: str, mean: torch.Tensor | None, head_mask: torch.Tensor | None):
    """Hook ``x -> (1 - s) x + s m`` (on the masked heads of ``(B, T, H, dh)`` when ``head_mask``)."""

    def fn(x: torch.Tensor, _hook: HookPoint) -> torch.Tensor:
        target = torch.zeros_like(x) if mode == "zero" else mean.to(x.device, x.dtype).expand_as(x)
        mixed = torch.lerp(x, target, s)
        if head_mask is None:
            return mixed
        return torch.where(head_mask.to(x.device)[None, None, :, None], mixed, x)

    return fn
