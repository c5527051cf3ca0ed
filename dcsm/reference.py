"""The authors' released DCSM checkpoints (``Raphoo/DCSM_Ideal_CLIP``) as a :class:`~dcsm.model.DCSM`.

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

import pickle
import types
from pathlib import Path
from typing import Any, Sequence

import torch

from .config import CONFIG_DIR, apply_overrides, load_yaml, to_plain
from .encoders import FrozenCLIP
from .model import DCSM, build_dcsm

REFERENCE_CONFIG = CONFIG_DIR / "reference.yaml"
STUBBED_PACKAGES = ("transformers", "tokenizers")  # pickled tokenizer objects we do not use
REQUIRED_KEYS = ("model_state_dict", "external_logic_token_embeddings")


class ReferenceCheckpointError(ValueError):
    """The file is not an authors' DCSM checkpoint, or its shapes do not fit the preset."""


class _Stub:
    """Stands in for an object of a package we do not need (e.g. the pickled CLIPTokenizer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in STUBBED_PACKAGES:
            return _Stub
        return super().find_class(module, name)


lenient_pickle = types.SimpleNamespace(Unpickler=_LenientUnpickler, load=pickle.load, __name__="dcsm_lenient_pickle")


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
    if not Path(path).is_file():
        raise FileNotFoundError(f"reference checkpoint '{path}' does not exist.")
    raw = torch.load(path, map_location="cpu", weights_only=False, pickle_module=lenient_pickle)
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
    return model.eval(), cfg
