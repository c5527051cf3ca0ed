"""Exact decomposition of the pooled image embedding into direct contributions.

The CLS residual after the last block is a sum: the embedding (``ln_pre`` output at CLS), plus
for every layer ``l`` the attention output at CLS — per head ``h`` and attended token ``t``,
``pattern[h, 0, t] * v[t, h] @ W_O[:, h]^T`` (times LayerScale), plus the out-projection bias —
plus the MLP output at CLS. ``ln_post`` is linearised per image: with ``sigma`` the standard
deviation of that final residual (as LayerNorm computes it), ``ln_post(r) = sum_c (c - mean(c))
* g / sigma + beta``; centring is linear, so every term ``c`` maps to ``((c - mean(c)) * g /
sigma) @ proj``. The terms sum to ``encode_image`` exactly (up to float rounding).

Under an active ablation (``dcsm.diagnostics.ablation``) a head's output before the
out-projection (``z``) is replaced; its term then follows the replaced ``z`` and, per token, the
difference from ``sum_t pattern * v`` is spread evenly over the tokens.

Bias handling (``spread_bias=True``, DESIGN §3): the out-projection bias of layer ``l`` is
spread evenly over that layer's ``H * T`` head-token terms, and ``beta @ proj`` evenly over all
terms, so ``bias`` is zero and every term is a share of the embedding. With
``spread_bias=False`` both stay in ``bias``; then a head's term is exactly what zeroing that
head's output removes from the final residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .hook_points import hooks

__all__ = ["Decomposition", "decompose", "readout", "ln_post_scale"]


@dataclass
class Decomposition:
    """Direct contributions to the (unnormalised) pooled image embedding, each ``(..., D)``.

    embedding: ``(B, D)`` the CLS embedding entering block 0.
    heads: ``(B, L, H, T, D)`` per layer, head and attended token; ``(B, L, H, D)`` when
        decomposed with ``per_token=False`` (summed over tokens).
    mlps: ``(B, L, D)`` per layer.
    bias: ``(B, D)`` out-projection biases and ``ln_post``'s bias (zero when spread).
    scale: ``(B,)`` the per-image ``ln_post`` standard deviation used for the linearisation.
    """

    embedding: torch.Tensor
    heads: torch.Tensor
    mlps: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor

    @property
    def per_token(self) -> bool:
        return self.heads.dim() == 5

    def head_terms(self) -> torch.Tensor:
        """``(B, L, H, D)``: each head's contribution summed over tokens."""
        return self.heads.sum(dim=3) if self.per_token else self.heads

    def total(self) -> torch.Tensor:
        """``(B, D)``: the sum of all terms == ``encode_image`` (unnormalised)."""
        heads = self.heads.flatten(1, -2).sum(dim=1)
        return self.embedding + heads + self.mlps.sum(dim=1) + self.bias

    def to(self, device: torch.device | str) -> "Decomposition":
        return Decomposition(*(t.to(device) for t in (self.embedding, self.heads, self.mlps, self.bias, self.scale)))


def ln_post_scale(visual: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """``(B,)`` LayerNorm standard deviation of final residuals ``(B, W)`` (population variance + eps)."""
    r = resid.float()
    return (r.var(dim=-1, unbiased=False) + visual.ln_post.eps).sqrt()


def readout(visual: nn.Module, terms: torch.Tensor) -> torch.Tensor:
    """Linearised ``ln_post`` (without 1/sigma and bias) then ``proj``: ``(..., W) -> (..., D)``."""
    t = terms.float()
    t = (t - t.mean(dim=-1, keepdim=True)) * visual.ln_post.weight.float()
    return t @ visual.proj.float()


def _head_readout(visual: nn.Module, block: nn.Module) -> torch.Tensor:
    """``(H, dh, D)``: per-head value -> output direction (W_O slice, LayerScale, centring, g, proj)."""
    attn = block.attn
    W, H = attn.embed_dim, attn.num_heads
    w_o = attn.out_proj.weight.float().view(W, H, W // H).permute(1, 2, 0)  # (H, dh, W)
    gamma = getattr(block.ls_1, "gamma", None)
    if gamma is not None:
        w_o = w_o * gamma.float()
    return readout(visual, w_o)


def _layer_bias(block: nn.Module) -> torch.Tensor:
    """``(W,)`` attention out-projection bias as added to the residual (after LayerScale)."""
    attn = block.attn
    b = attn.out_proj.bias
    b = torch.zeros(attn.embed_dim, device=attn.out_proj.weight.device) if b is None else b.float()
    gamma = getattr(block.ls_1, "gamma", None)
    return b * gamma.float() if gamma is not None else b


@torch.no_grad()
def decompose(encoder: nn.Module, images: torch.Tensor, per_token: bool = True, spread_bias: bool = True) -> Decomposition:
    """Decompose ``encode_image`` of preprocessed ``images (B, 3, H, W)`` (one forward pass).

    Args:
        encoder: a :class:`~dcsm.model.encoders.FrozenCLIP` (or an open_clip CLIP).
        per_token: keep the attended-token axis (``(B, L, H, T, D)``, memory ``B*L*H*T*D`` floats);
            ``False`` sums it inside the einsum (``(B, L, H, D)``).
        spread_bias: spread biases over the terms (see module docstring).

    Active hooks and ablations on the encoder apply: the decomposition is of the model as it runs.
    """
    model = getattr(encoder, "model", encoder)
    visual = model.visual
    blocks = visual.transformer.resblocks
    pats = ["visual.blocks.0.hook_resid_pre", "visual.hook_resid_final", "visual.blocks.*.hook_mlp_out",
            "visual.blocks.*.attn.hook_v", "visual.blocks.*.attn.hook_pattern", "visual.blocks.*.attn.hook_z"]

    def keep(x: torch.Tensor, name: str) -> torch.Tensor:  # only what reaches CLS
        if name.endswith("hook_pattern"):
            return x[:, :, 0]  # (B, H, T): the CLS query's row
        return x if name.endswith("hook_v") else x[:, 0]  # values of all tokens; residuals at CLS

    device = visual.proj.device
    cache: dict[str, torch.Tensor] = {}
    with hooks(model, [(p, lambda x, hook: cache.__setitem__(hook.name, keep(x, hook.name))) for p in pats]):
        pooled = visual(images.to(device, dtype=visual.proj.dtype))
    pooled = pooled[0] if isinstance(pooled, tuple) else pooled
    scale = ln_post_scale(visual, cache["visual.hook_resid_final"])  # (B,)
    inv = (1.0 / scale)[:, None]
    L, H = len(blocks), blocks[0].attn.num_heads
    B, T = images.shape[0], cache["visual.blocks.0.attn.hook_v"].shape[1]
    heads = []
    for l, blk in enumerate(blocks):
        # per-token values reaching CLS: pattern[h, 0, t] * v[t, h]; z (as the model ran, after any
        # ablation hook) is their sum; a replaced z differs, and the difference is spread over tokens
        a, v = cache[f"visual.blocks.{l}.attn.hook_pattern"].float(), cache[f"visual.blocks.{l}.attn.hook_v"].float()
        z = cache[f"visual.blocks.{l}.attn.hook_z"].float()  # (B, H, dh)
        R = _head_readout(visual, blk)  # (H, dh, D)
        if per_token:
            zt = torch.einsum("bht,bthd->bhtd", a, v)
            zt = zt + ((z - zt.sum(dim=2)) / T)[:, :, None]
            heads.append(torch.einsum("bhtd,hde->bhte", zt, R))
        else:
            heads.append(torch.einsum("bhd,hde->bhe", z, R))
    heads = torch.stack(heads, dim=1)  # (B, L, H, [T,] D)
    heads = heads * (inv[:, :, None, None, None] if per_token else inv[:, :, None, None])
    mlps = torch.stack([readout(visual, cache[f"visual.blocks.{l}.hook_mlp_out"]) for l in range(L)], dim=1) * inv[:, None]
    embedding = readout(visual, cache["visual.blocks.0.hook_resid_pre"]) * inv
    layer_bias = readout(visual, torch.stack([_layer_bias(b) for b in blocks]))  # (L, D), before 1/sigma
    beta = (visual.ln_post.bias.float() @ visual.proj.float()) if visual.ln_post.bias is not None else 0.0
    if not spread_bias:
        bias = layer_bias.sum(dim=0)[None] * inv + beta
        return Decomposition(embedding, heads, mlps, bias.expand(B, -1).contiguous(), scale)
    n_terms = L * H * T + L + 1  # head-token terms, MLPs, embedding
    per_term = beta / n_terms if torch.is_tensor(beta) else torch.zeros_like(embedding[0])
    head_share = layer_bias[None] * inv[:, :, None] / (H * T) + per_term  # (B, L, D) per head-token term
    if per_token:
        heads = heads + head_share[:, :, None, None, :]
    else:
        heads = heads + T * head_share[:, :, None, :]
    return Decomposition(embedding + per_term, heads, mlps + per_term, torch.zeros_like(embedding), scale)
