"""A model with a NaN or infinite weight or setting is refused at load (one line naming it): its
scores would be garbage that an ``argmax`` turns into a confident answer.

Checked wherever a head is loaded (:func:`dcsm.checkpoints.load.load_checkpoint` for ``.ckpt``, head
exports and the authors' files; ``train.py`` resume): the head's tensors (CNN weights, functional
rows, pooled residual) and every number of the stored config.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import torch

from .safe_load import CheckpointError


class NonFiniteCheckpointError(CheckpointError):
    """A head tensor or a stored setting is NaN or infinite; the message names it."""


def _settings(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of nested dicts/lists (list items as ``key[i]``)."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _settings(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _settings(v, f"{prefix.rstrip('.')}[{i}].")
    else:
        yield prefix.rstrip("."), obj


def nonfinite_setting(cfg: Any) -> tuple[str, float] | None:
    """The first float setting of ``cfg`` (nested dicts/lists) that is NaN or infinite, as (key, value)."""
    for key, value in _settings(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            return key, value
    return None


def nonfinite_tensor(tensors: Mapping[str, Any]) -> tuple[str, int] | None:
    """The first floating tensor of ``tensors`` with a NaN or infinite entry, as (name, how many)."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                return name, bad
    return None


def check_finite(path: str, tensors: Mapping[str, Any], cfg: Any, what: str = "checkpoint") -> None:
    """Refuse a head whose ``tensors`` (name -> tensor) or stored ``cfg`` hold a NaN or infinity.

    Raises:
        NonFiniteCheckpointError: naming the file and the tensor or key.
    """
    fix = "Fix: use an earlier checkpoint of the run (training diverged) or retrain; dcsm does not score a model with NaN/inf."
    bad_setting = nonfinite_setting(cfg)
    if bad_setting is not None:
        key, value = bad_setting
        raise NonFiniteCheckpointError(f"{what} '{path}' stores the non-finite setting {key}={value}. "
                                       f"Fix: set {key} to a finite number (or re-export/retrain the model).")
    bad_tensor = nonfinite_tensor(tensors)
    if bad_tensor is not None:
        name, count = bad_tensor
        raise NonFiniteCheckpointError(f"{what} '{path}': head tensor '{name}' holds {count} NaN/inf value(s). {fix}")
