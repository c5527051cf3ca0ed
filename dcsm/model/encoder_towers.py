"""Image and text towers of open_clip models as per-patch / per-token embeddings in the joint space.

:func:`image_tower` and :func:`text_tower` wrap a model's towers (or raise
:class:`UnsupportedTowerError` with one line saying why); :class:`dcsm.model.encoders.FrozenCLIP`
uses them. Every tower returns its pooled embedding through the model's own code path, so it equals
``encode_image`` / ``encode_text``; the per-patch / per-token embeddings are defined per pooling kind:

========================  ======================================================================
image pooling             patch tokens in the joint space
========================  ======================================================================
class token (open_clip    ``ln_post(token) @ proj`` (what the class token gets)
ViT; timm ``token``:      ``head(fc_norm(token))`` then open_clip's adapter head
EVA02, MobileCLIP2-B)
MAP / attention-latent    each token through the pooling head's value projection, its output
(SigLIP/SigLIP2, PE-Core) projection and its residual MLP (the head with attention replaced by
                          the identity, as dense-feature work does), then ``fc_norm``/``head``
average (conv trunks:     each position of the last feature map through the (linear) classifier
MobileCLIP2-S*, FastViT)  ``fc`` and the adapter head: their mean is the pooled embedding
========================  ======================================================================

``patch_source='trunk'`` keeps the trunk's own tokens (after its final norm, no head) instead;
they are only comparable with text tokens where the trunk width equals the joint dimension.

Text: the tower's final norm, then ``text_projection`` (with its bias where it has one). A causal
tower is run only up to the batch's longest caption (exact: no position sees a later one); a
non-causal one (SigLIP/SigLIP2, MobileCLIP2-S*) always runs the full context it was trained with,
so a caption's tokens never depend on its batch-mates.
"""

from __future__ import annotations

from typing import Callable

import open_clip
import torch
from open_clip.transformer import TextTransformer, VisionTransformer, text_global_pool
from torch import nn

from .choices import PATCH_SOURCES  # re-exported: encoder.patch_source values


class UnsupportedTowerError(ValueError):
    """A tower without a well-defined per-patch / per-token path into the joint space."""


# ====================================================================== images
class ImageTower(nn.Module):
    """Base: ``forward(images (B,3,H,W)) -> (pooled (B,D), patches (B,P,D'))``, not normalised.

    Attributes:
        grid_size: ``(gh, gw)`` of the patch grid (``P = gh * gw``).
        image_size: ``(H, W)`` input size.
        pooling: how the tower pools (``class token``, ``MAP head``, ``average``).
        patch_path: one line saying where the patch tokens come from.
    """

    grid_size: tuple[int, int]
    image_size: tuple[int, int]
    pooling: str
    patch_path: str

    def __init__(self, visual: nn.Module, patch_source: str) -> None:
        super().__init__()
        if patch_source not in PATCH_SOURCES:
            raise ValueError(f"unknown encoder.patch_source '{patch_source}'. Fix: use one of {PATCH_SOURCES}.")
        self.visual = visual
        self.patch_source = patch_source
        self.image_size = tuple(open_clip.transformer.to_2tuple(visual.image_size))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.visual.parameters()).dtype


class OpenClipViTTower(ImageTower):
    """open_clip's ``VisionTransformer`` with class-token (or mean, ``pool_type="avg"``) pooling:
    ``ln_post`` tokens ``@ proj``."""

    pooling = "class token"

    def __init__(self, visual: VisionTransformer, patch_source: str) -> None:
        super().__init__(visual, patch_source)
        if visual.attn_pool is not None or visual.final_ln_after_pool or visual.pool_type not in ("tok", "avg"):
            raise UnsupportedTowerError(
                f"its VisionTransformer pools with pool_type={visual.pool_type!r}, attn_pool={visual.attn_pool is not None}, "
                f"final_ln_after_pool={visual.final_ln_after_pool}; only class-token or mean pooling after ln_post has a "
                "per-patch projection here"
            )
        visual.output_tokens = True
        if visual.pool_type == "avg":  # the pooled embedding is the mean of the projected patch tokens
            self.pooling = "average"
        self.grid_size = tuple(visual.grid_size)
        self.patch_path = "ln_post(patch token) @ visual.proj (as the class token)"
        if patch_source == "trunk":
            self.patch_path = "ln_post(patch token), no projection"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.visual(images)  # tokens: after ln_post, before proj
        return pooled, tokens if self.patch_source == "trunk" else tokens @ self.visual.proj


def _adapter_head_is_per_token(head: nn.Module) -> bool:
    """open_clip's TimmModel head (``proj`` Linear / ``mlp`` / empty) acts on the last dim only."""
    return all(isinstance(m, (nn.Linear, nn.Dropout, nn.Identity, nn.GELU, nn.Sequential)) or type(m).__name__ == "Mlp"
               for m in head.modules())


class TimmTokenTower(ImageTower):
    """A timm ViT-style trunk (``forward_features`` -> ``(B, N, C)`` tokens) inside open_clip's
    ``TimmModel``: class-token, MAP (attention-latent) or average pooling."""

    def __init__(self, visual: nn.Module, patch_source: str) -> None:
        super().__init__(visual, patch_source)
        trunk = visual.trunk
        if not _adapter_head_is_per_token(visual.head):
            raise UnsupportedTowerError(
                f"its open_clip head {[type(m).__name__ for m in visual.head.children()]} pools again (attention "
                "pooling), so its patch tokens have no projection into the joint space"
            )
        self.num_prefix = int(getattr(trunk, "num_prefix_tokens", 0))
        self.grid_size = tuple(int(g) for g in trunk.patch_embed.grid_size)
        attn_pool = getattr(trunk, "attn_pool", None)
        if attn_pool is not None:
            if getattr(attn_pool, "pos_embed", None) is not None:
                raise UnsupportedTowerError("its MAP head adds its own position embedding; per-token values are not defined here")
            self.pooling = "MAP head"
            self.patch_path = "token -> MAP head value + output projection + residual MLP (attention = identity) -> fc_norm -> head"
        elif trunk.global_pool in ("token", "avg"):
            self.pooling = "class token" if trunk.global_pool == "token" else "average"
            self.patch_path = "patch token -> fc_norm -> head (as the pooled token)"
        else:
            raise UnsupportedTowerError(f"its timm trunk pools with global_pool={trunk.global_pool!r}, which has no per-token path")
        if patch_source == "trunk":
            self.patch_path = "trunk token after its final norm, no head"

    def _map_per_token(self, x: torch.Tensor) -> torch.Tensor:
        """Each token ``(B, N, C)`` through the MAP head with attention replaced by the identity."""
        pool = self.visual.trunk.attn_pool
        C = x.shape[-1]
        v = pool.kv(x).unflatten(-1, (2, C))[..., 1, :]  # (B, N, C): heads concatenated as in the pooled path
        y = pool.proj(v)
        return y + pool.mlp(pool.norm(y)) if pool.mlp is not None else y

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trunk, head = self.visual.trunk, self.visual.head
        tokens = trunk.forward_features(images)  # (B, N, C) after the trunk's final norm
        pooled = head(trunk.forward_head(tokens))  # == TimmModel.forward == encode_image
        if self.patch_source == "trunk":
            return pooled, tokens[:, self.num_prefix:]
        x = self._map_per_token(tokens)[:, self.num_prefix:] if trunk.attn_pool is not None else tokens[:, self.num_prefix:]
        x = trunk.head(trunk.head_drop(trunk.fc_norm(x)))
        return pooled, head(x)


class TimmConvTower(ImageTower):
    """A timm convolutional trunk (``forward_features`` -> ``(B, C, h, w)``) whose head averages
    the map and then applies a linear ``fc``: each position through ``fc`` (and the adapter's
    per-vector head) is a patch, and the mean of the positions' embeddings is the pooled one."""

    pooling = "average"

    def __init__(self, visual: nn.Module, patch_source: str) -> None:
        super().__init__(visual, patch_source)
        trunk = visual.trunk
        chead = getattr(trunk, "head", None)
        pool = getattr(chead, "global_pool", None)
        fc = getattr(chead, "fc", None)
        if type(chead).__name__ != "ClassifierHead" or getattr(pool, "pool_type", None) != "avg" or not isinstance(fc, (nn.Linear, nn.Identity)):
            raise UnsupportedTowerError(
                f"its convolutional trunk's head ({type(chead).__name__}, pool={getattr(pool, 'pool_type', None)!r}) is not "
                "average pooling followed by a linear layer (ConvNeXt normalises after pooling), so the feature map's "
                "positions have no well-defined projection into the joint space"
            )
        if not _adapter_head_is_per_token(visual.head) or any(type(m).__name__ == "Mlp" for m in visual.head.modules()):
            raise UnsupportedTowerError("its open_clip head after the average pool is not linear, so positions have no projection")
        reduction = int(trunk.feature_info[-1]["reduction"])
        self.grid_size = (self.image_size[0] // reduction, self.image_size[1] // reduction)
        self.patch_path = "each position of the last feature map -> fc -> head (their mean is the pooled embedding)"
        if patch_source == "trunk":
            self.patch_path = "each position of the last feature map, no projection"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trunk, head = self.visual.trunk, self.visual.head
        fmap = trunk.forward_features(images)  # (B, C, h, w)
        pooled = head(trunk.forward_head(fmap))
        x = fmap.flatten(2).transpose(1, 2)  # (B, h*w, C), row-major like the ViT grid
        if self.patch_source == "trunk":
            return pooled, x
        return pooled, head(trunk.head.fc(x))


def image_tower(visual: nn.Module, patch_source: str = "joint") -> ImageTower:
    """The :class:`ImageTower` for an open_clip model's ``visual``.

    Raises:
        UnsupportedTowerError: one line saying why this tower has no per-patch path.
    """
    if isinstance(visual, VisionTransformer):
        return OpenClipViTTower(visual, patch_source)
    if type(visual).__name__ == "TimmModel":
        trunk = visual.trunk
        if hasattr(trunk, "patch_embed") and hasattr(trunk, "forward_head") and hasattr(trunk, "fc_norm"):
            return TimmTokenTower(visual, patch_source)
        if hasattr(trunk, "feature_info") and hasattr(trunk, "forward_head"):
            return TimmConvTower(visual, patch_source)
        raise UnsupportedTowerError(f"its timm trunk {type(trunk).__name__} is neither a ViT-style token trunk nor a conv trunk with an average-pool head")
    if type(visual).__name__ == "ModifiedResNet":
        raise UnsupportedTowerError(
            "its ResNet tower pools with attention (attnpool) whose output projection mixes positions; no per-position "
            "projection into the joint space is implemented"
        )
    raise UnsupportedTowerError(f"its image tower {type(visual).__name__} has no per-patch path")


# ====================================================================== text
class TextTower(nn.Module):
    """The text transformer of a ``CLIP`` (attributes on the model) or ``CustomTextCLIP``
    (``model.text``, an open_clip ``TextTransformer``).

    Attributes:
        causal: the tower masks attention causally (prefix shortcut exact).
        pool_type: open_clip's text pooling (``argmax``, ``last``, ``eos``, ``first``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if isinstance(model, open_clip.CLIP):
            self.holder = model  # CLIP keeps the text tower's parts on itself
            self.pool_type = model.text_pool_type
            self.eos_id = getattr(model, "text_eos_id", None)
            self.use_pad_mask = False
        else:
            text = getattr(model, "text", None)
            if not isinstance(text, TextTransformer):
                raise UnsupportedTowerError(
                    f"its text tower is {type(text).__name__} (a Hugging Face model), not open_clip's TextTransformer; "
                    "its per-token outputs are not read here"
                )
            if text.cls_emb is not None:
                raise UnsupportedTowerError("its text tower appends a class token (CoCa) and norms after pooling")
            self.holder = text
            self.pool_type = text.pool_type
            self.eos_id = text.eos_id
            self.use_pad_mask = bool(text.use_pad_mask)
        if self.pool_type not in ("argmax", "last", "eos", "first"):
            raise UnsupportedTowerError(f"its text tower pools with pool_type={self.pool_type!r}")
        self.causal = self.holder.attn_mask is not None
        self.pad_id = getattr(self.holder, "pad_id", 0)

    @property
    def width(self) -> int:
        return self.holder.token_embedding.weight.shape[1]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` after the final norm -> joint space (bias included where there is one)."""
        proj = self.holder.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def forward(self, ids: torch.Tensor, n: int, key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(C, n, D)`` and pooled ``(C, D)`` (not normalised) of the first ``n`` positions of ``ids``.

        ``n`` must be the full context for a non-causal tower. ``key_mask`` ``(C, >=n)``: HF-style
        padding, no query attends to a masked key.
        """
        t = self.holder
        ids_n = ids[:, :n]
        cast = t.transformer.get_cast_dtype()
        x = t.token_embedding(ids_n).to(cast) + t.positional_embedding[:n].to(cast)
        mask = t.attn_mask[:n, :n] if t.attn_mask is not None else None
        heads = t.transformer.resblocks[0].attn.num_heads
        if self.use_pad_mask:  # as TextTransformer._build_additive_mask
            key_mask = (ids_n != self.pad_id) if key_mask is None else key_mask[:, :n] & (ids_n != self.pad_id)
        if key_mask is not None:
            blocked = torch.zeros(len(ids_n), 1, n, device=x.device, dtype=x.dtype).masked_fill(
                ~key_mask[:, :n].to(x.device).unsqueeze(1), float("-inf"))
            base = mask.to(x.dtype) if mask is not None else torch.zeros(n, n, device=x.device, dtype=x.dtype)
            mask = (base + blocked).repeat_interleave(heads, dim=0)
        x = self.project(t.ln_final(t.transformer(x, attn_mask=mask)))  # (C, n, D)
        pool_ids = ids_n if key_mask is None or self.use_pad_mask else ids_n * key_mask[:, :n].to(ids_n.device)
        pooled = text_global_pool(x, pool_ids, self.pool_type, eos_token_id=self.eos_id)
        return x, pooled


def text_tower(model: nn.Module) -> TextTower:
    """The :class:`TextTower` of an open_clip model (raises :class:`UnsupportedTowerError`)."""
    return TextTower(model)


def is_clip_bpe(tokenizer: Callable) -> bool:
    """open_clip's CLIP BPE tokenizer (EOT is its highest id, id 0 is the token "!")."""
    return isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer)


def real_lengths(ids: torch.Tensor, tokenizer: Callable, pad_id: int = 0) -> torch.Tensor:
    """Real tokens per row of ``(C, n)`` ids. CLIP BPE: up to the first EOT (its highest id;
    not ``ids != 0``: id 0 is "!"). Other tokenizers: up to the last non-pad id."""
    if tokenizer is None or is_clip_bpe(tokenizer):
        return ids.argmax(dim=1) + 1
    real = (ids != pad_id).int()
    last = real.shape[1] - torch.flip(real, dims=[1]).argmax(dim=1)  # 1 + index of the last real id
    return torch.where(real.any(dim=1), last, torch.zeros_like(last))


def describe(model: nn.Module, img: ImageTower, txt: TextTower) -> dict:
    """What the feature cache and metrics record about the towers."""
    bias = getattr(model, "logit_bias", None)
    return {
        "image_tower": type(img).__name__,
        "pooling": img.pooling,
        "patch_path": img.patch_path,
        "text_causal": txt.causal,
        "text_pool": txt.pool_type,
        "baseline_logit": SIGMOID_LOGIT if bias is not None else COSINE_LOGIT,
    }


#: ``baseline_logit`` names recorded in the metrics JSON.
COSINE_LOGIT = "cosine"
SIGMOID_LOGIT = "logit_scale * cosine + logit_bias (SigLIP's sigmoid logit)"


def baseline_logit(model: nn.Module, cosine: torch.Tensor) -> torch.Tensor:
    """The model's own image-text logit from unit-norm cosines: SigLIP's ``logit_scale * cos +
    logit_bias`` (the logit its sigmoid loss was trained on; ``sigmoid`` of it is the match
    probability, kept in logit form because fp32 ``sigmoid`` saturates to 1.0 above ~17 and would tie
    options the logit tells apart) where the model has a bias, else the cosine (CLIP's
    ``logit_scale * cos`` ranks the same). The argmax is the cosine's either way."""
    bias = getattr(model, "logit_bias", None)
    if bias is None:
        return cosine
    return model.logit_scale.exp().float() * cosine + bias.float()


__all__ = [
    "PATCH_SOURCES", "UnsupportedTowerError", "ImageTower", "OpenClipViTTower", "TimmTokenTower", "TimmConvTower",
    "TextTower", "image_tower", "text_tower", "real_lengths", "is_clip_bpe", "describe", "baseline_logit",
]
