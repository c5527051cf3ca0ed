"""Frozen open_clip wrapper: per-patch and per-token embeddings in CLIP's joint space.

Supported: open_clip ``CLIP`` models with a ``VisionTransformer`` image tower and the
built-in causal text transformer (``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14``, ... and their
``-quickgelu`` variants), from a pretrained tag, a local checkpoint file, or random init.

Not supported yet for DCSM maps (a one-line ``UnsupportedModelError`` naming the tower is raised
at load time; every one of them works as a pooled baseline, :class:`PooledCLIP`):
- timm image towers (incl. SigLIP / SigLIP2 and ``timm/...`` hub models): patch tokens and
  projection live inside timm's head;
- ResNet image towers (``RN50``, ...): no patch tokens, attention pooling instead of ``proj``;
- CoCa (attentional pooler between tokens and projection) and models with a Hugging Face
  text tower (``CustomTextCLIP``).

Embeddings: patch tokens come from open_clip's own forward with
``visual.output_tokens = True`` (after ``ln_post``), projected by ``visual.proj``;
text tokens are the transformer outputs after ``ln_final`` projected by ``text_projection``.
All are L2-normalised.

:class:`PooledCLIP` wraps *any* open_clip model (the ones above included) for what baselines
need: unit-norm ``encode_image`` / ``encode_text`` embeddings, nothing per patch or token.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from . import toy_clip  # registers the package's small offline CLIP config with open_clip

log = logging.getLogger(__name__)


PAD_ROWS = ("zero", "eot")


class UnsupportedModelError(ValueError):
    """The requested open_clip model family has no per-patch/per-token code path yet."""


class EncoderLoadError(ValueError):
    """The encoder could not be built from the given spec (unknown name, missing file)."""


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild the frozen encoder; stored in every checkpoint.

    Attributes:
        model: open_clip model name, e.g. ``"ViT-B-16"``.
        pretrained: open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b88k"``, ...), a
            path to a local checkpoint file, or ``None`` for random init (tests).
        max_tokens: text rows L of every map (SOT..EOT, padded/truncated to this).
        keep_cls: prepend the pooled image embedding as map column 0 (the reference's 197
            columns for ViT-B/16).
        seed: seed for random init when ``pretrained`` is ``None`` (reproducible tests).
        pad_rows: ``zero``: rows past EOT are padding (masked, zero in the map); ``eot``: the
            reference's layout — captions padded to ``max_tokens`` with the EOT token, padded
            positions encoded with Hugging Face's padding mask (they attend to the real tokens
            only) and kept in the map as ordinary rows.
    """

    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    max_tokens: int = 30
    keep_cls: bool = False
    seed: int = 0
    pad_rows: str = "zero"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImageEmbeddings:
    """Output of :meth:`FrozenCLIP.encode_images`.

    patches: ``(B, P, D)`` unit-norm patch embeddings (P includes the CLS column when
        ``keep_cls``).
    pooled: ``(B, D)`` unit-norm pooled image embedding (== normalised ``encode_image``).
    """

    patches: torch.Tensor
    pooled: torch.Tensor


@dataclass
class TextEmbeddings:
    """Output of :meth:`FrozenCLIP.encode_texts`.

    tokens: ``(C, L, D)`` unit-norm token embeddings, zero on padded positions.
    mask: ``(C, L)`` bool, True for real tokens (SOT..EOT, possibly truncated).
    ids: ``(C, L)`` long BPE ids of the kept positions (0 on padding).
    pooled: ``(C, D)`` unit-norm pooled text embedding (== normalised ``encode_text``, from
        the untruncated caption).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    ids: torch.Tensor
    pooled: torch.Tensor


#: What the DCSM patch/token path cannot read yet (named in its errors).
UNSUPPORTED_TOWERS = "ResNet (RN50, ...), timm (ConvNeXt, SigLIP, EVA, ...) image towers, CoCa and Hugging Face text towers"
#: The way such a model can still be scored.
AS_BASELINE = "it still works as a pooled-cosine baseline: eval.baselines=['{name}:PRETRAINED']"


def _check_supported(model: nn.Module, name: str) -> None:
    if not isinstance(model, open_clip.CLIP) or isinstance(model, open_clip.CoCa):
        raise UnsupportedModelError(
            f"model '{name}' is a {type(model).__name__}; DCSM maps need open_clip CLIP models with a "
            f"VisionTransformer and the built-in text transformer (not supported yet: {UNSUPPORTED_TOWERS}); "
            f"{AS_BASELINE.format(name=name)}. Fix: encoder.model=a ViT CLIP model such as ViT-B-16 or ViT-B-32."
        )
    if not isinstance(model.visual, VisionTransformer):
        raise UnsupportedModelError(
            f"model '{name}' has a {type(model.visual).__name__} image tower; DCSM maps need open_clip's "
            f"VisionTransformer (not supported yet: {UNSUPPORTED_TOWERS}); {AS_BASELINE.format(name=name)}. "
            "Fix: encoder.model=a ViT CLIP model such as ViT-B-16 or ViT-B-32."
        )
    v = model.visual
    if v.attn_pool is not None or v.final_ln_after_pool or v.pool_type != "tok":
        raise UnsupportedModelError(
            f"model '{name}' pools its image tokens with pool_type={v.pool_type!r}, "
            f"attn_pool={v.attn_pool is not None}, final_ln_after_pool={v.final_ln_after_pool}; "
            "dcsm needs CLS-token pooling after ln_post. Fix: choose a standard ViT CLIP model."
        )


def build_open_clip(spec: EncoderSpec) -> tuple[nn.Module, Callable, Callable]:
    """Create the open_clip model, its eval image transform and its tokenizer, for the
    patch/token path (:class:`FrozenCLIP`).

    Raises:
        EncoderLoadError: unknown model name or a local checkpoint path that does not exist.
        UnsupportedModelError: a model family without a patch/token code path.
    """
    model, preprocess, tokenizer = create_open_clip(spec)
    _check_supported(model, spec.model)
    return model, preprocess, tokenizer


def create_open_clip(spec: EncoderSpec) -> tuple[nn.Module, Callable, Callable]:
    """Any open_clip model (no tower check), its eval image transform and its tokenizer.

    Raises:
        EncoderLoadError: unknown model name or a local checkpoint path that does not exist.
    """
    known = open_clip.list_models()
    if spec.model not in known:
        close = [m for m in known if spec.model.lower().split("-")[0] in m.lower()][:8]
        raise EncoderLoadError(
            f"unknown open_clip model name '{spec.model}'. Fix: use one of open_clip.list_models(), "
            f"e.g. {close or ['ViT-B-16', 'ViT-B-32']}."
        )
    pretrained = toy_clip.resolve_pretrained(spec.model, spec.pretrained)  # 'toy' -> shipped file
    looks_like_path = pretrained is not None and (
        os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )
    if looks_like_path and not os.path.isfile(pretrained):
        raise EncoderLoadError(
            f"checkpoint file '{pretrained}' does not exist. Fix: give an existing local file, an "
            f"open_clip pretrained tag (see open_clip.list_pretrained_tags_by_model('{spec.model}')), "
            "or pretrained=null for random init."
        )
    try:
        # random init is part of the spec (seeded), without touching the caller's RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            model, _, preprocess = open_clip.create_model_and_transforms(spec.model, pretrained=pretrained)
    except Exception as err:  # unknown tag, corrupt file, or a download that cannot happen offline
        raise EncoderLoadError(
            f"could not load '{spec.model}' with pretrained='{pretrained}': {type(err).__name__}: {err}. "
            "Fix: on a machine without internet, give a local checkpoint file as pretrained=<path>, "
            "or pretrained=null for random init."
        ) from err
    tokenizer = open_clip.get_tokenizer(spec.model)
    return model, preprocess, tokenizer


class PooledCLIP(nn.Module):
    """Any frozen open_clip model (ViT, ResNet, timm/SigLIP, CoCa, Hugging Face text towers) as
    pooled embeddings only: what a baseline's cosine needs. Same freezing as :class:`FrozenCLIP`.

    Only ``spec.model``, ``spec.pretrained`` and ``spec.seed`` are used (captions are encoded whole,
    with the model's own tokenizer and context length).
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        model, self.preprocess, self.tokenizer = create_open_clip(spec)
        model.requires_grad_(False)
        self.model = model.eval()

    def train(self, mode: bool = True) -> "PooledCLIP":  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images ``(B, 3, H, W)`` -> unit-norm ``(B, D)`` (fp32)."""
        dtype = next(self.model.visual.parameters()).dtype
        return F.normalize(self.model.encode_image(images.to(self.device, dtype=dtype)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, captions: Sequence[str]) -> torch.Tensor:
        """C captions -> unit-norm ``(C, D)`` (fp32); identical captions are encoded once."""
        if len(captions) == 0:
            raise ValueError("empty caption list: each image needs at least one caption to score.")
        where = {c: i for i, c in enumerate(dict.fromkeys(captions))}  # caption -> row of its unique encoding
        emb = F.normalize(self.model.encode_text(self.tokenizer(list(where)).to(self.device)).float(), dim=-1)
        return emb if len(where) == len(captions) else emb[torch.tensor([where[c] for c in captions], device=emb.device)]


class FrozenCLIP(nn.Module):
    """A frozen open_clip CLIP that returns unit-norm patch and token embeddings.

    The model is put in eval mode, its parameters have ``requires_grad=False`` and
    :meth:`train` is a no-op, so Lightning's ``model.train()`` never enables dropout in it.
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        if spec.pad_rows not in PAD_ROWS:
            raise ValueError(f"unknown encoder.pad_rows '{spec.pad_rows}'. Fix: use one of {PAD_ROWS}.")
        self.spec = spec
        model, self.preprocess, self.tokenizer = build_open_clip(spec)
        model.visual.output_tokens = True
        model.requires_grad_(False)
        self.model = model.eval()
        self.context_length: int = model.context_length
        grid = model.visual.grid_size
        self.num_patches: int = grid[0] * grid[1] + int(spec.keep_cls)
        self.grid_size: tuple[int, int] = tuple(grid)
        self.embed_dim: int = model.visual.output_dim
        self.image_size: tuple[int, int] = tuple(model.visual.image_size)
        self._warned_truncation = False

    def train(self, mode: bool = True) -> "FrozenCLIP":  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.model.visual.proj.device

    # ---------------------------------------------------------------- images
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> ImageEmbeddings:
        """Encode preprocessed images ``(B, 3, H, W)`` -> patches ``(B, P, D)``, pooled ``(B, D)``."""
        visual = self.model.visual
        pooled, tokens = visual(images.to(self.device, dtype=visual.proj.dtype))
        patches = tokens @ visual.proj  # (B, grid², D): tokens are after ln_post, before proj
        if self.spec.keep_cls:
            patches = torch.cat([pooled.unsqueeze(1), patches], dim=1)
        return ImageEmbeddings(F.normalize(patches.float(), dim=-1), F.normalize(pooled.float(), dim=-1))

    # ---------------------------------------------------------------- text
    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """BPE ids ``(C, context_length)`` with SOT/EOT, as open_clip's tokenizer makes them.

        Raises:
            ValueError: empty caption list or a non-string caption.
        """
        if len(captions) == 0:
            raise ValueError("empty caption list: each image needs at least one caption to score.")
        bad = [i for i, c in enumerate(captions) if not isinstance(c, str)]
        if bad:
            raise ValueError(f"captions must be strings; caption {bad[0]} is {type(captions[bad[0]]).__name__}.")
        return self.tokenizer(list(captions))

    @staticmethod
    def lengths(ids: torch.Tensor) -> torch.Tensor:
        """Real tokens (SOT..EOT) per row of ``(C, n)`` ids. Not ``ids != 0``: id 0 is the token "!".
        EOT is CLIP's highest id, and argmax returns its first position."""
        return ids.argmax(dim=1) + 1

    @classmethod
    def real_mask(cls, ids: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Bool ``(C, width)``: True on SOT..EOT of each row of ``(C, n)`` ids (width defaults to n)."""
        width = ids.shape[1] if width is None else width
        return torch.arange(width, device=ids.device) < cls.lengths(ids).unsqueeze(1)

    def truncate(self, ids: torch.Tensor, captions: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the first ``max_tokens`` positions of ``(C, context)`` ids -> ids, mask ``(C, L)``.

        Captions whose SOT..EOT span is longer than ``max_tokens`` lose their tail (incl. EOT)
        in the map; a warning names them. The pooled embedding is unaffected.
        """
        L = self.spec.max_tokens
        lengths = self.lengths(ids)
        too_long = (lengths > L).nonzero().flatten().tolist()
        if too_long and not self._warned_truncation:  # once per encoder: not once per batch
            self._warned_truncation = True
            first = too_long[0]
            name = repr(captions[first]) if captions is not None else f"#{first}"
            log.warning(
                "%d caption(s) exceed max_tokens=%d and are truncated in the map, e.g. caption %s "
                "(%d tokens). Raise encoder.max_tokens to keep them whole. Further truncations are not reported.",
                len(too_long), L, name, int(lengths[first]),
            )
        kept = ids[:, :L]
        if kept.shape[1] < L:
            kept = F.pad(kept, (0, L - kept.shape[1]))
        mask = self.real_mask(ids, L)
        return kept * mask, mask

    def _eot_padded(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids padded with EOT up to ``max_tokens``, as HF's CLIP tokenizer pads."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        pad = ~self.real_mask(ids) & (positions < self.spec.max_tokens)
        eot = ids.max(dim=1, keepdim=True).values  # CLIP's EOT is the highest id (open_clip's argmax pooling)
        return torch.where(pad, eot.expand_as(ids), ids)

    @torch.no_grad()
    def encode_token_ids(
        self, ids: torch.Tensor, key_mask: torch.Tensor | None = None, min_positions: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token and pooled text embeddings of full-context ids ``(C, context)``.

        Returns unit-norm ``(C, n, D)`` token embeddings for the first ``n`` positions (n = the
        longest caption incl. EOT, at least ``min_positions``) and the unit-norm pooled ``(C, D)``.
        Running the causal text transformer on only the first ``n`` positions is exact: no
        position attends to a later one, and the EOT used for pooling lies inside the first ``n``.
        """
        m = self.model
        ids = ids.to(self.device)
        n = int(self.lengths(ids).max()) if m.attn_mask is not None else ids.shape[1]
        n = min(max(n, min_positions), ids.shape[1])
        ids_n = ids[:, :n]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(ids_n).to(cast) + m.positional_embedding[:n].to(cast)
        mask = m.attn_mask[:n, :n] if m.attn_mask is not None else None
        if key_mask is not None:  # HF-style padding: no query attends to a padded key
            blocked = torch.zeros(len(ids_n), 1, n, device=x.device, dtype=x.dtype).masked_fill(
                ~key_mask[:, :n].to(x.device).unsqueeze(1), float("-inf"))
            mask = (mask.to(x.dtype) + blocked).repeat_interleave(m.transformer.resblocks[0].attn.num_heads, dim=0)
        x = m.ln_final(m.transformer(x, attn_mask=mask))  # (C, n, width)
        proj = m.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj  # (C, n, D)
        pool_ids = ids_n if key_mask is None else ids_n * key_mask[:, :n].to(ids_n.device)  # first EOT, not a pad
        pooled = open_clip.transformer.text_global_pool(x, pool_ids, m.text_pool_type, eos_token_id=m.text_eos_id)
        return F.normalize(x.float(), dim=-1), F.normalize(pooled.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, captions: Sequence[str]) -> TextEmbeddings:
        """Encode C captions -> tokens ``(C, L, D)``, mask ``(C, L)``, ids ``(C, L)``, pooled ``(C, D)``.

        Identical captions are encoded once (options repeat across images).
        """
        ids = self.tokenize(captions)
        return self.encode_ids(ids, captions)

    @torch.no_grad()
    def encode_ids(self, ids: torch.Tensor, captions: Sequence[str] | None = None) -> TextEmbeddings:
        """As :meth:`encode_texts`, from full-context ids ``(C, context)``."""
        eot = self.spec.pad_rows == "eot"
        kept, mask = self.truncate(ids, captions)
        if eot:
            ids = self._eot_padded(ids)
            kept, mask = ids[:, : self.spec.max_tokens], torch.ones_like(mask)  # pad rows are map rows
        uniq, inverse = torch.unique(ids, dim=0, return_inverse=True)
        # eot: the padded rows are map rows, so encode all max_tokens positions whatever the
        # batch's longest caption (else a caption's rows would depend on its batch-mates)
        tok_u, pooled_u = self.encode_token_ids(
            uniq, key_mask=self.real_mask(uniq) if eot else None, min_positions=self.spec.max_tokens if eot else 0
        )
        tokens, pooled = tok_u[inverse.to(tok_u.device)], pooled_u[inverse.to(pooled_u.device)]
        L = self.spec.max_tokens
        tokens = tokens[:, :L]
        if tokens.shape[1] < L:
            tokens = F.pad(tokens, (0, 0, 0, L - tokens.shape[1]))
        mask = mask.to(tokens.device)
        tokens = tokens * mask.unsqueeze(-1)
        return TextEmbeddings(tokens=tokens, mask=mask, ids=kept.to(tokens.device), pooled=pooled)
