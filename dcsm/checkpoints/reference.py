"""The authors' released DCSM checkpoints (``Raphoo/DCSM_Ideal_CLIP``) as a :class:`~dcsm.model.dcsm.DCSM`.

Their files are ``torch.save`` pickles with ``model_state_dict`` (the ``CrossModalConvNetwork``:
``conv1``, ``conv2``, ``fc1``, ``fc2``), ``external_logic_token_embeddings`` (a pickled
``nn.Embedding(11, 197)``: the fixed functional rows), a pickled Hugging Face tokenizer and the
frozen CLIP weights. We need only the first two: the file is unpickled with stand-ins for
``transformers`` objects, so ``transformers`` need not be installed.

The model is built from ``configs/reference.yaml`` (ViT-B/16 openai, 197 x 30 map with CLS and
EOT pad rows, their CNN and row order, per-image z-score). Functional rows are placed at BPE
positions (the authors place them at whitespace-word indices, which SOT shifts by one); scores
therefore differ from their code for captions holding one of the 11 words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import CONFIG_DIR, apply_overrides, load_yaml, to_plain
from ..model.encoders import FrozenCLIP
from ..model.dcsm import DCSM, build_dcsm
from .encoder_match import check_encoder_model
from .finite_load import check_finite
from .safe_load import read_checkpoint

REFERENCE_CONFIG = CONFIG_DIR / "reference.yaml"
REQUIRED_KEYS = ("model_state_dict", "external_logic_token_embeddings")


class ReferenceCheckpointError(ValueError):
    """The file is not an authors' DCSM checkpoint, or its shapes do not fit the preset."""


def _rows_tensor(obj: Any, path: str) -> torch.Tensor:
    """The (11, 197) weight of the pickled ``nn.Embedding`` (or a state dict / tensor of it)."""
    weight = getattr(obj, "weight", None)
    if weight is None and isinstance(obj, dict):
        weight = obj.get("weight")
    if weight is None and isinstance(obj, torch.Tensor):
        weight = obj
    if not isinstance(weight, torch.Tensor):
        raise ReferenceCheckpointError(
            f"{path}: field 'external_logic_token_embeddings' holds {type(obj).__name__}, not an nn.Embedding or tensor."
        )
    return weight.detach().float().cpu()


def load_reference_checkpoint(
    path: str | Path, encoder: FrozenCLIP | None = None, overrides: Sequence[str] = ()
) -> DCSM:
    """Authors' checkpoint -> :class:`DCSM` (head weights and functional rows loaded).

    Args:
        path: their ``.pt`` file (e.g. ``pretrained_models/dcsm_obja_ckpt.pt``).
        encoder: a ready encoder to share (must match the preset: ViT-B-16, keep_cls, 30 rows).
        overrides: ``key=value`` overrides of ``configs/reference.yaml`` (e.g. a local CLIP
            file as ``encoder.pretrained=/path/ViT-B-16.pt``).
    """
    path = str(path)
    raw = read_checkpoint(path)  # restricted unpickler: tensors, nn.Embedding, inert tokenizer stand-ins
    return dcsm_from_reference(raw, path, encoder, overrides)[0]


def is_reference_checkpoint(raw: Any) -> bool:
    return isinstance(raw, dict) and all(k in raw for k in REQUIRED_KEYS)


def dcsm_from_reference(
    raw: Any, path: str, encoder: FrozenCLIP | None = None, overrides: Sequence[str] = ()
) -> tuple[DCSM, dict]:
    """An unpickled authors' checkpoint -> (:class:`DCSM`, its config); see :func:`load_reference_checkpoint`."""
    missing = [k for k in REQUIRED_KEYS if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise ReferenceCheckpointError(f"{path}: missing field(s) {missing}; not a DCSM_Ideal_CLIP checkpoint.")
    if raw.get("learned_lookup") is not None:
        raise ReferenceCheckpointError(f"{path}: field 'learned_lookup' is set; learned lookups are not supported yet.")
    cfg = to_plain(apply_overrides(load_yaml(REFERENCE_CONFIG), list(overrides)))
    check_encoder_model(str(path), cfg, encoder)
    model = build_dcsm(cfg, encoder)
    rows = _rows_tensor(raw["external_logic_token_embeddings"], path)
    ours = model.head.functional_rows.rows
    if rows.shape != ours.shape:
        raise ReferenceCheckpointError(
            f"{path}: field 'external_logic_token_embeddings' has shape {tuple(rows.shape)}, the preset expects "
            f"{tuple(ours.shape)} (11 words x 197 map columns)."
        )
    try:
        model.head.scorer.load_state_dict(raw["model_state_dict"])
    except RuntimeError as err:
        raise ReferenceCheckpointError(f"{path}: field 'model_state_dict' does not fit the reference CNN: {err}") from err
    ours.copy_(rows)
    check_finite(path, model.head.state_dict(), cfg)  # the authors' CNN weights and functional rows
    return model.eval(), cfg
