"""Frozen open_clip wrapper: per-patch and per-token embeddings in CLIP's joint space.

Supported for DCSM maps (see :mod:`dcsm.model.encoder_towers` for how each tower reaches the joint space):
- open_clip ``CLIP`` models with a ``VisionTransformer`` image tower (``ViT-B-32``, ``ViT-B-16``,
  ``ViT-L-14``, ... and their ``-quickgelu`` variants);
- ``CustomTextCLIP`` models with a timm ViT-style trunk and open_clip's ``TextTransformer``:
  SigLIP / SigLIP2 and PE-Core (MAP head), EVA02 and MobileCLIP2-B (class token);
- timm convolutional trunks with an average-pool + linear head: MobileCLIP2-S0..S4 (FastViT).

Refused at load time with a one-line :class:`UnsupportedModelError` saying why (every one of them
still works as a pooled baseline, :class:`PooledCLIP`): ResNet towers (attention pooling), ConvNeXt
(norm after pooling), CoCa and Hugging Face text towers.

All embeddings are L2-normalised; the pooled ones equal ``encode_image`` / ``encode_text``.

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
from torch import nn

from . import toy_clip  # registers the package's small offline CLIP config with open_clip
from .choices import PAD_ROWS  # re-exported: encoder.pad_rows values
from .tokenizer import EncoderLoadError, load_tokenizer
from .encoder_towers import (
    PATCH_SOURCES, UnsupportedTowerError, describe, image_tower, is_clip_bpe, real_lengths, text_tower,
)

log = logging.getLogger(__name__)


class UnsupportedModelError(ValueError):
    """The requested open_clip model family has no per-patch/per-token code path yet."""


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
            only) and kept in the map as ordinary rows (causal CLIP-BPE towers only).
        patch_source: ``joint``: patch tokens projected into the joint space as the tower's
            pooling projects its pooled token (:mod:`dcsm.model.encoder_towers`); ``trunk``: the trunk's
            own tokens (only where the trunk width equals the joint dimension).
        tokenizer: ``None``: the model's own tokenizer (``open_clip.get_tokenizer``; SigLIP's is a
            Hugging Face download, found in the HF cache); a local Hugging Face tokenizer folder;
            or another open_clip model's name whose tokenizer to use (only with ``pretrained=None``:
            architecture tests offline).
    """

    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    max_tokens: int = 30
    keep_cls: bool = False
    seed: int = 0
    pad_rows: str = "zero"
    patch_source: str = "joint"
    tokenizer: str | None = None

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


#: What the DCSM patch/token path cannot read (named in its errors).
UNSUPPORTED_TOWERS = "ResNet (RN50, ...) and ConvNeXt image towers, CoCa and Hugging Face text towers"
#: The way such a model can still be scored.
AS_BASELINE = "it still works as a pooled-cosine baseline: eval.baselines=['{name}:PRETRAINED']"


def _check_supported(model: nn.Module, name: str) -> None:
    if isinstance(model, open_clip.CoCa) or not isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        raise UnsupportedModelError(
            f"model '{name}' is a {type(model).__name__}; DCSM maps need an open_clip CLIP/CustomTextCLIP model "
            f"(not supported: {UNSUPPORTED_TOWERS}); {AS_BASELINE.format(name=name)}. "
            "Fix: encoder.model=a ViT, SigLIP2, PE-Core, EVA02 or MobileCLIP2 model."
        )


def _towers(model: nn.Module, name: str, patch_source: str) -> tuple:
    """Image and text tower adapters, or a one-line :class:`UnsupportedModelError` saying why."""
    try:
        return image_tower(model.visual, patch_source), text_tower(model)
    except UnsupportedTowerError as err:
        raise UnsupportedModelError(
            f"model '{name}' is not supported for DCSM maps: {err}; {AS_BASELINE.format(name=name)}. "
            "Fix: encoder.model=a ViT, SigLIP2, PE-Core, EVA02 or MobileCLIP2 model."
        ) from None


def build_open_clip(spec: EncoderSpec) -> tuple[nn.Module, Callable, Callable]:
    """Create the open_clip model, its eval image transform and its tokenizer, for the
    patch/token path (:class:`FrozenCLIP`).

    Raises:
        EncoderLoadError: unknown model name or a local checkpoint path that does not exist.
        UnsupportedModelError: a model family without a patch/token code path.
    """
    model, preprocess, tokenizer = create_open_clip(spec)
    _check_supported(model, spec.model)
    _towers(model, spec.model, spec.patch_source)
    return model, preprocess, tokenizer


def check_model_name(name: str, key: str = "encoder.model") -> None:
    """Raises :class:`EncoderLoadError` (one line naming ``key``) unless open_clip knows ``name``."""
    known = open_clip.list_models()
    if name not in known:
        close = [m for m in known if name.lower().split("-")[0] in m.lower()][:8]
        raise EncoderLoadError(
            f"unknown open_clip model name {key}='{name}'. Fix: use one of open_clip.list_models(), "
            f"e.g. {close or ['ViT-B-16', 'ViT-B-32']}."
        )


def create_open_clip(spec: EncoderSpec) -> tuple[nn.Module, Callable, Callable]:
    """Any open_clip model (no tower check), its eval image transform and its tokenizer.

    Raises:
        EncoderLoadError: unknown model name or a local checkpoint path that does not exist.
    """
    check_model_name(spec.model)
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
    return model, preprocess, load_tokenizer(spec, model)


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
        if spec.patch_source not in PATCH_SOURCES:
            raise ValueError(f"unknown encoder.patch_source '{spec.patch_source}'. Fix: use one of {PATCH_SOURCES}.")
        self.spec = spec
        model, self.preprocess, self.tokenizer = create_open_clip(spec)
        _check_supported(model, spec.model)
        model.requires_grad_(False)
        self.model = model.eval()
        self.image_tower, self.text_tower = _towers(model, spec.model, spec.patch_source)
        clip_bpe = is_clip_bpe(self.tokenizer)
        if spec.pad_rows == "eot" and not (clip_bpe and self.text_tower.causal):
            raise UnsupportedModelError(
                f"encoder.pad_rows=eot (the reference's EOT padding) needs a causal text tower with CLIP's BPE tokenizer; "
                f"'{spec.model}' has a {'causal' if self.text_tower.causal else 'non-causal'} tower and "
                f"{type(self.tokenizer).__name__}. Fix: encoder.pad_rows=zero."
            )
        self.context_length: int = int(getattr(self.tokenizer, "context_length", None) or self.text_tower.holder.context_length)
        grid = self.image_tower.grid_size
        self.num_patches: int = grid[0] * grid[1] + int(spec.keep_cls)
        self.grid_size: tuple[int, int] = tuple(grid)
        self.embed_dim: int = self._joint_dim()
        self.image_size: tuple[int, int] = tuple(self.image_tower.image_size)
        self.towers: dict = describe(model, self.image_tower, self.text_tower)
        self._warned_truncation = False
        if spec.patch_source == "trunk":
            width = self._patch_width()
            if width != self.embed_dim:
                raise UnsupportedModelError(
                    f"encoder.patch_source=trunk: '{spec.model}' trunk tokens are {width}-d but its joint space is "
                    f"{self.embed_dim}-d, so they cannot be compared with text tokens. Fix: encoder.patch_source=joint."
                )

    def _joint_dim(self) -> int:
        """D of the joint space (the text projection's output)."""
        proj = self.text_tower.holder.text_projection
        if proj is None:
            return self.text_tower.width
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    def _patch_width(self) -> int:
        """Width of one patch token as :attr:`image_tower` returns it (a dry run on one image)."""
        with torch.no_grad():
            x = torch.zeros(1, 3, *self.image_size, device=self.device, dtype=self.image_tower.dtype)
            return int(self.image_tower(x)[1].shape[-1])

    def train(self, mode: bool = True) -> "FrozenCLIP":  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.visual.parameters()).device

    # ---------------------------------------------------------------- images
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> ImageEmbeddings:
        """Encode preprocessed images ``(B, 3, H, W)`` -> patches ``(B, P, D)``, pooled ``(B, D)``.

        Patches per :attr:`towers` ``["patch_path"]`` (:mod:`dcsm.model.encoder_towers`); pooled equals
        the normalised ``encode_image``."""
        pooled, patches = self.image_tower(images.to(self.device, dtype=self.image_tower.dtype))
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

    def lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """Real tokens per row of ``(C, n)`` ids: SOT..EOT for CLIP's BPE (not ``ids != 0``: id 0
        is the token "!"; EOT is its highest id, argmax returns its first position); up to the last
        non-pad id for other tokenizers."""
        return real_lengths(ids, self.tokenizer, self.text_tower.pad_id)

    def real_mask(self, ids: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Bool ``(C, width)``: True on the real tokens of each row of ``(C, n)`` ids (width defaults to n)."""
        width = ids.shape[1] if width is None else width
        return torch.arange(width, device=ids.device) < self.lengths(ids).unsqueeze(1)

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

        Returns unit-norm ``(C, n, D)`` token embeddings for the first ``n`` positions and the
        unit-norm pooled ``(C, D)``. A causal tower with argmax/eos/first pooling runs only the
        first ``n`` positions (n = the longest caption incl. EOT, at least ``min_positions``):
        exact, no position attends to a later one and the pooled EOT lies inside them. A
        non-causal tower (or ``last`` pooling) runs the full context it was trained with, so a
        caption's tokens do not depend on its batch-mates.
        """
        ids = ids.to(self.device)
        txt = self.text_tower
        shortcut = txt.causal and txt.pool_type != "last"
        n = int(self.lengths(ids).max()) if shortcut else ids.shape[1]
        n = min(max(n, min_positions), ids.shape[1])
        x, pooled = txt(ids, n, key_mask=key_mask)
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
