"""Loading a :class:`~dcsm.model.dcsm.DCSM` from a file: our ``.ckpt`` (written by ``train.py``),
a head export (``NAME.safetensors`` + ``NAME.json``, :mod:`dcsm.checkpoints.export`) or the authors'
released pickles (:mod:`dcsm.checkpoints.reference`).

Our checkpoints hold the head's state dict under ``head.*`` and the full run config under
``hyper_parameters.cfg`` (the encoder spec included); the frozen CLIP weights are never saved:
the encoder is rebuilt from its spec (pretrained tag, local file, or seeded random init).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import load_yaml, to_plain
from ..model.encoders import FrozenCLIP
from .encoder_match import check_encoder_model
from .finite_load import check_finite
from .export import check_head_tensors, is_head_export, read_export_config, read_head_tensors
from ..model.dcsm import DCSM, build_dcsm
from .reference import REFERENCE_CONFIG, dcsm_from_reference, is_reference_checkpoint
from .safe_load import read_checkpoint

HEAD_PREFIX = "head."
#: Config keys renamed since checkpoints were first written: (section, old name, new name).
RENAMED_KEYS = (("maps", "functional_rows", "inject_functional_rows"),)


@dataclass
class LoadedCheckpoint:
    """What a checkpoint file gives: the model, its config and the training metadata."""

    model: DCSM
    cfg: dict
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # our checkpoints' ``dcsm`` entry (samples_seen, ...)


def head_state(state_dict: dict[str, Any], path: str, model: DCSM) -> dict[str, Any]:
    """The ``head.*`` entries of a checkpoint's state dict, prefix removed; all must be there."""
    head = {k[len(HEAD_PREFIX):]: v for k, v in state_dict.items() if k.startswith(HEAD_PREFIX)}
    missing = [k for k in model.head.state_dict() if k not in head]
    if missing:
        raise KeyError(f"'{path}' lacks DCSM head weights {missing[:5]}; is it a dcsm checkpoint?")
    return head


def head_tensors(ckpt: dict) -> dict[str, Any]:
    """The ``head.*`` entries of a checkpoint's ``state_dict`` (full names), {} if it has none."""
    sd = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    return {k: v for k, v in sd.items() if k.startswith(HEAD_PREFIX)} if isinstance(sd, dict) else {}


def upgrade_config(cfg: dict) -> dict:
    """A stored config with its renamed keys under their current names."""
    for section, old, new in RENAMED_KEYS:
        sec = cfg.get(section)
        if isinstance(sec, dict) and old in sec and new not in sec:
            sec[new] = sec.pop(old)
    return cfg


def load_checkpoint(path: str, map_location: str | torch.device = "cpu", encoder: FrozenCLIP | None = None) -> LoadedCheckpoint:
    """Any supported checkpoint file -> :class:`LoadedCheckpoint` (model in eval mode)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint '{path}' does not exist. Fix: give the path of a .ckpt written by train.py (evaluate.py: eval.checkpoint=PATH)."
        )
    if is_head_export(path):  # NAME.safetensors + NAME.json (dcsm.checkpoints.export): nothing unpickled
        return load_export(path, map_location, encoder)
    ckpt = read_checkpoint(path, map_location)  # never runs code from the file (dcsm.checkpoints.safe_load)
    if is_reference_checkpoint(ckpt):
        model, cfg = dcsm_from_reference(ckpt, path, encoder)
        return LoadedCheckpoint(model, cfg)
    if not isinstance(ckpt, dict) or "cfg" not in ckpt.get("hyper_parameters", {}):
        raise ValueError(f"'{path}' is neither a dcsm checkpoint (no hyper_parameters.cfg) nor a DCSM_Ideal_CLIP one.")
    hp = ckpt["hyper_parameters"]
    hp["cfg"] = upgrade_config(hp["cfg"])
    check_finite(path, head_tensors(ckpt), hp["cfg"])  # before anything is built
    check_encoder_model(path, hp["cfg"], encoder)
    model = build_dcsm(hp["cfg"], encoder)
    model.head.load_state_dict(head_state(ckpt["state_dict"], path, model))
    return LoadedCheckpoint(model.eval(), hp["cfg"], hp, ckpt.get("dcsm", {}))


def load_export(path: str, map_location: str | torch.device = "cpu", encoder: FrozenCLIP | None = None) -> LoadedCheckpoint:
    """A head export (``NAME.safetensors`` or ``NAME.json``, :mod:`dcsm.checkpoints.export`) -> :class:`LoadedCheckpoint`."""
    cfg, hp = read_export_config(path)
    state = read_head_tensors(path)  # missing or changed files fail before the encoder is built
    check_finite(path, state, cfg, what="head export")
    check_encoder_model(path, cfg, encoder)
    model = build_dcsm(cfg, encoder)
    check_head_tensors(path, state, model.head.state_dict())
    model.head.load_state_dict(state)
    return LoadedCheckpoint(model.eval().to(map_location), cfg, hp)


def checkpoint_config(raw: Any) -> dict:
    """The run config a read checkpoint holds (``hyper_parameters.cfg``, renamed keys upgraded); {} if none."""
    hp = raw.get("hyper_parameters", {}) if isinstance(raw, dict) else {}
    return upgrade_config(dict(hp.get("cfg", {})))


def stored_config(path: str) -> dict:
    """The config a checkpoint, head export or the authors' released checkpoint was trained with
    (ours: renamed keys upgraded, {} if it holds none; the authors': ``configs/reference.yaml``)."""
    if is_head_export(path):
        return read_export_config(path)[0]
    raw = read_checkpoint(path)
    if is_reference_checkpoint(raw):
        return to_plain(load_yaml(REFERENCE_CONFIG))
    return checkpoint_config(raw)


def load_dcsm(path: str, map_location: str | torch.device = "cpu", encoder: FrozenCLIP | None = None) -> tuple[DCSM, dict]:
    """Our ``.ckpt`` or the authors' pickle -> (:class:`DCSM` in eval mode, its config dict)."""
    loaded = load_checkpoint(path, map_location, encoder)
    return loaded.model, loaded.cfg
