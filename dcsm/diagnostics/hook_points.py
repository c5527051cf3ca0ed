"""Named hook points on a frozen open_clip CLIP (TransformerLens-style), added and removed by context.

Every point is a :class:`HookPoint` (an identity module) with a dotted name. A hook is
``fn(tensor, hook) -> tensor | None``: it reads the tensor and may return a replacement.
Hooks live only inside :func:`hooks` (or :func:`capture`); they are removed when the context
exits, also after an exception. Outside a context the model runs open_clip's own forward with
nothing attached.

Names (``{tower}`` is ``visual`` or ``text``; ``l`` the block index; shapes batch-first,
``T`` tokens, ``W`` width, ``H`` heads, ``dh = W / H``):

==========================================  ===================  ==========================================
name                                        shape                what
==========================================  ===================  ==========================================
``{tower}.blocks.{l}.hook_resid_pre``       (B, T, W)            residual stream entering block l
``{tower}.blocks.{l}.hook_resid_mid``       (B, T, W)            after the attention add (read-only)
``{tower}.blocks.{l}.hook_resid_post``      (B, T, W)            residual stream leaving block l
``{tower}.blocks.{l}.hook_attn_out``        (B, T, W)            attention's addition to the residual
``{tower}.blocks.{l}.hook_mlp_act``         (B, T, mlp_width)    MLP hidden activation
``{tower}.blocks.{l}.hook_mlp_out``         (B, T, W)            MLP's addition to the residual
``{tower}.blocks.{l}.attn.hook_q|k|v``      (B, T, H, dh)        per-head queries, keys, values
``{tower}.blocks.{l}.attn.hook_pattern``    (B, H, Tq, Tk)       attention probabilities
``{tower}.blocks.{l}.attn.hook_z``          (B, T, H, dh)        per-head output before the out-projection
``{tower}.blocks.{l}.attn.hook_result``     (B, T, H, W)         per-head output through its slice of the
                                                                 out-projection, before the sum over heads
                                                                 (and before its bias)
``{tower}.hook_resid_final``                (B, T, W)            transformer output (before ln_post/ln_final)
``visual.hook_ln_post``                     (B, T, W)            after ``ln_post``
``text.hook_ln_final``                      (B, T, W)            after ``ln_final``
==========================================  ===================  ==========================================

Residual, MLP and final points are plain PyTorch forward hooks on open_clip's own modules.
The ``attn.*`` points need what ``nn.MultiheadAttention`` does not expose, so while one of them
is hooked that block's attention runs an explicit per-head computation with the same weights
(the only re-implemented piece of the forward pass); otherwise the fused kernel runs.
"""

from __future__ import annotations

import fnmatch
import math
import types
import weakref
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

__all__ = ["HookPoint", "HookError", "HookFn", "hook_point_names", "hooks", "capture", "towers"]

#: ``fn(tensor, hook) -> replacement or None``
HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]

BLOCK_POINTS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_act", "hook_mlp_out")
ATTN_POINTS = ("hook_q", "hook_k", "hook_v", "hook_pattern", "hook_z", "hook_result")
READ_ONLY = ("hook_resid_mid",)


class HookError(ValueError):
    """Unknown hook point name, unsupported block type, or a write to a read-only point."""


class HookPoint(nn.Module):
    """Identity module with a name; user hooks are its forward hooks."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def add_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        read_only = self.name.rsplit(".", 1)[-1] in READ_ONLY

        def call(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            new = fn(output, self)
            if new is not None and read_only:
                raise HookError(f"hook point '{self.name}' is read-only: its hook must return None. "
                                "Fix: change hook_attn_out or hook_mlp_out instead.")
            return new

        return self.register_forward_hook(call)

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


def towers(model: nn.Module) -> dict[str, nn.Module]:
    """``{"visual": transformer, "text": transformer}`` of an open_clip CLIP (text only if present).

    Raises:
        HookError: an image tower other than open_clip's ``VisionTransformer`` (timm trunks).
    """
    if not hasattr(model.visual, "transformer"):
        raise HookError(
            f"hook points (diagnostics) read open_clip's VisionTransformer blocks; this model's image tower is a "
            f"{type(model.visual).__name__} ({type(getattr(model.visual, 'trunk', model.visual)).__name__}). "
            "Fix: run eval.diagnostics on a ViT CLIP model such as ViT-B-16, or leave eval.diagnostics empty."
        )
    out = {"visual": model.visual.transformer}
    if hasattr(model, "transformer") and hasattr(model.transformer, "resblocks"):
        out["text"] = model.transformer
    return out


def _open_clip_model(encoder_or_model: nn.Module) -> nn.Module:
    """The open_clip CLIP inside a :class:`~dcsm.model.encoders.FrozenCLIP` (or the CLIP itself)."""
    return getattr(encoder_or_model, "model", encoder_or_model)


# ----------------------------------------------------------------------------- per-head attention
def per_head_attention(
    attn: nn.MultiheadAttention,
    points: dict[str, HookPoint],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``nn.MultiheadAttention``'s eval forward, per head, through ``points`` (``hook_q`` ... ``hook_result``).

    Inputs ``(B, T, W)`` (or ``(T, B, W)`` when not batch-first); ``attn_mask`` ``(Tq, Tk)`` or
    ``(B*H, Tq, Tk)``, float (added) or bool (True = blocked). Returns the attention output.
    ``hook_result`` is materialised only while hooked ((B, T, H, W) is large).
    """
    if not attn.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    B, Tq, W = query.shape
    Tk, H = key.shape[1], attn.num_heads
    dh = W // H
    if attn._qkv_same_embed_dim:
        wq, wk, wv = attn.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight
    bq, bk, bv = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    q = points["hook_q"](F.linear(query, wq, bq).view(B, Tq, H, dh))
    k = points["hook_k"](F.linear(key, wk, bk).view(B, Tk, H, dh))
    v = points["hook_v"](F.linear(value, wv, bv).view(B, Tk, H, dh))
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / math.sqrt(dh)
    if attn_mask is not None:
        m = attn_mask.view(B, H, Tq, Tk) if attn_mask.dim() == 3 else attn_mask
        scores = scores.masked_fill(m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    if key_padding_mask is not None:
        kpm = key_padding_mask[:, None, None, :]
        scores = scores.masked_fill(kpm, float("-inf")) if kpm.dtype == torch.bool else scores + kpm.float()
    pattern = points["hook_pattern"](scores.softmax(dim=-1).to(v.dtype))
    z = points["hook_z"](torch.einsum("bhqk,bkhd->bqhd", pattern, v))
    w_o, b_o = attn.out_proj.weight, attn.out_proj.bias
    if points["hook_result"]._forward_hooks:
        result = points["hook_result"](torch.einsum("bqhd,whd->bqhw", z, w_o.view(W, H, dh)))
        out = result.sum(dim=2) + (b_o if b_o is not None else 0)
    else:
        out = F.linear(z.reshape(B, Tq, W), w_o, b_o)
    return out if attn.batch_first else out.transpose(0, 1)


# ----------------------------------------------------------------------------- registry
class _Registry:
    """All hook points of one open_clip model and the reference-counted taps that feed them."""

    def __init__(self, model: nn.Module) -> None:
        self.points: dict[str, HookPoint] = {}
        self._taps: dict[str, tuple[int, list]] = {}  # location -> (refcount, undo callables)
        self._where: dict[str, tuple[str, Callable[[], list]]] = {}  # point name -> (location, installer)
        for tower, tr in towers(model).items():
            for l, block in enumerate(tr.resblocks):
                if not isinstance(block, ResidualAttentionBlock) or not isinstance(block.attn, nn.MultiheadAttention):
                    raise HookError(
                        f"{tower} block {l} is a {type(block).__name__}; hook points support open_clip's "
                        "ResidualAttentionBlock with nn.MultiheadAttention (not the 'custom' block). "
                        "Fix: use a standard ViT CLIP model (ViT-B-32, ViT-B-16, ...)."
                    )
                self._add_block(tower, l, block)
            self._add_module_point(f"{tower}.hook_resid_final", tr)
        self._add_module_point("visual.hook_ln_post", model.visual.ln_post)
        if "text" in towers(model):
            self._add_module_point("text.hook_ln_final", model.ln_final)

    # -- point construction
    def _point(self, name: str) -> HookPoint:
        self.points[name] = HookPoint(name)
        return self.points[name]

    def _add_module_point(self, name: str, module: nn.Module, loc: str | None = None) -> None:
        point = self._point(name)

        def install() -> list:
            h = module.register_forward_hook(lambda _m, _i, out: point(out) if point._forward_hooks else None)
            return [h.remove]

        self._where[name] = (loc or name, install)

    def _add_pre_point(self, name: str, module: nn.Module) -> None:
        point = self._point(name)

        def pre(_m: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
            if not point._forward_hooks:
                return None
            return (point(args[0]), *args[1:]), kwargs

        def install() -> list:
            return [module.register_forward_pre_hook(pre, with_kwargs=True).remove]

        self._where[name] = (name, install)

    def _add_block(self, tower: str, l: int, block: ResidualAttentionBlock) -> None:
        p = f"{tower}.blocks.{l}"
        self._add_pre_point(f"{p}.hook_resid_pre", block)
        self._add_pre_point(f"{p}.hook_resid_mid", block.ln_2)  # ln_2's input is the mid residual
        self._add_module_point(f"{p}.hook_resid_post", block)
        self._add_module_point(f"{p}.hook_attn_out", block.ls_1)
        self._add_module_point(f"{p}.hook_mlp_act", block.mlp[1])
        self._add_module_point(f"{p}.hook_mlp_out", block.ls_2)
        attn_points = {n: self._point(f"{p}.attn.{n}") for n in ATTN_POINTS}
        attn = block.attn

        def forward(self_attn: nn.MultiheadAttention, query, key, value, key_padding_mask=None, need_weights=True,
                    attn_mask=None, average_attn_weights=True, is_causal=False):  # noqa: ARG001 - MHA signature
            return per_head_attention(self_attn, attn_points, query, key, value, attn_mask, key_padding_mask), None

        def install() -> list:
            attn.forward = types.MethodType(forward, attn)  # instance attribute shadows the class method
            return [lambda: attn.__dict__.pop("forward", None)]

        for n in ATTN_POINTS:  # all share one location: the override is installed once
            self._where[f"{p}.attn.{n}"] = (f"{p}.attn", install)

    # -- taps
    def acquire(self, name: str) -> None:
        loc, install = self._where[name]
        count, undo = self._taps.get(loc, (0, []))
        self._taps[loc] = (count + 1, undo if count else install())

    def release(self, name: str) -> None:
        loc, _ = self._where[name]
        count, undo = self._taps[loc]
        if count > 1:
            self._taps[loc] = (count - 1, undo)
            return
        del self._taps[loc]
        for u in undo:
            u()

    @property
    def active_taps(self) -> int:
        return len(self._taps)


_REGISTRIES: "weakref.WeakKeyDictionary[nn.Module, _Registry]" = weakref.WeakKeyDictionary()


def _registry(encoder_or_model: nn.Module) -> _Registry:
    model = _open_clip_model(encoder_or_model)
    if model not in _REGISTRIES:
        _REGISTRIES[model] = _Registry(model)
    return _REGISTRIES[model]


def hook_point_names(encoder_or_model: nn.Module) -> list[str]:
    """All hook point names of a FrozenCLIP (or open_clip CLIP), in model order."""
    return list(_registry(encoder_or_model).points)


def resolve(encoder_or_model: nn.Module, pattern: str) -> list[str]:
    """Names matching ``pattern`` (exact, or ``fnmatch`` wildcards such as ``visual.blocks.*.attn.hook_z``).

    Raises:
        HookError: nothing matches (the message lists similar names).
    """
    names = hook_point_names(encoder_or_model)
    hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not hits:
        tail = pattern.rsplit(".", 1)[-1]
        similar = [n for n in names if n.endswith(tail)][:4] or names[:4]
        raise HookError(f"no hook point matches '{pattern}'. Fix: use a name from hook_point_names(), e.g. {similar}.")
    return hits


@contextmanager
def hooks(encoder_or_model: nn.Module, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[dict[str, HookPoint]]:
    """Attach ``[(name_or_pattern, fn), ...]`` for the duration of the ``with`` block.

    Yields the hook points by name. On exit (normal or by exception) every hook and every tap
    this context added is removed; nested contexts share taps by reference count.
    """
    reg = _registry(encoder_or_model)
    resolved = [(name, fn) for pattern, fn in fwd_hooks for name in resolve(encoder_or_model, pattern)]
    handles: list = []
    acquired: list[str] = []
    try:
        for name, fn in resolved:
            handles.append(reg.points[name].add_hook(fn))
            reg.acquire(name)
            acquired.append(name)
        yield reg.points
    finally:
        for h in handles:
            h.remove()
        for name in reversed(acquired):
            reg.release(name)


@contextmanager
def capture(
    encoder_or_model: nn.Module, patterns: Sequence[str], transform: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the tensors at the named points: ``with capture(enc, ["visual.blocks.*.hook_resid_post"]) as cache``.

    ``cache[name]`` holds the last forward's tensor (detached; ``transform`` applied first, e.g.
    ``lambda x: x[:, 0]`` to keep the CLS position only).
    """
    cache: dict[str, torch.Tensor] = {}

    def store(x: torch.Tensor, hook: HookPoint) -> None:
        cache[hook.name] = (transform(x) if transform is not None else x).detach()

    with hooks(encoder_or_model, [(p, store) for p in patterns]):
        yield cache
