"""Where the controlled variants' weights live and how they load (through :class:`FrozenCLIP`).

``<weights_dir>/<variant>_s<seed>/<model>.safetensors`` beside ``<model>.record.json``, as the
pretraining command writes them with ``out_dir=<weights_dir>/<variant>_s<seed>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...model.encoders import EncoderSpec, FrozenCLIP

__all__ = ["VARIANTS", "HEAD_FILE", "variant_dir", "find_weights", "load_variant", "load_head"]

#: a DCSM head trained on a run (data_prep/controlled_heads.sh): ``<heads_dir>/<variant>_s<seed>/head.safetensors``
HEAD_FILE = "head.safetensors"
#: variant -> its pretraining config (configs/pretrain_controlled_<variant>.yaml)
VARIANTS: tuple[str, ...] = ("centred", "meanpool", "uniform", "spurious")


def variant_dir(weights_dir: str | Path, variant: str, seed: int) -> Path:
    """The folder of one pretraining run."""
    return Path(weights_dir) / f"{variant}_s{int(seed)}"


def find_weights(weights_dir: str | Path, variant: str, seed: int) -> tuple[Path, dict] | None:
    """``(safetensors path, record)`` of a run, or None when the folder holds no record."""
    records = sorted(variant_dir(weights_dir, variant, seed).glob("*.record.json"))
    if not records:
        return None
    record = json.loads(records[0].read_text())
    path = records[0].parent / record["weights"]
    return (path, record) if path.is_file() else None


def load_variant(weights_dir: str | Path, variant: str, seed: int, device: str = "cpu") -> tuple[FrozenCLIP, dict]:
    """The frozen encoder of one run and its record.

    Raises:
        FileNotFoundError: no weights for this variant and seed.
    """
    found = find_weights(weights_dir, variant, seed)
    if found is None:
        raise FileNotFoundError(f"no weights for variant '{variant}' seed {seed} under '{weights_dir}'. Fix: run "
                                f"python data_prep/pretrain_toy_clip.py --config configs/pretrain_controlled_{variant}.yaml "
                                f"seed={seed} out_dir={variant_dir(weights_dir, variant, seed)}")
    path, record = found
    max_tokens = record["config"]["eval"]["max_tokens"]  # the caption length its own evaluation used
    enc = FrozenCLIP(EncoderSpec(model=record["model"], pretrained=str(path), max_tokens=max_tokens)).to(device)
    return enc, record


def load_head(heads_dir: str | Path, variant: str, seed: int, encoder: FrozenCLIP) -> Any:
    """The DCSM head exported for one run, on that run's ``encoder`` (a
    :class:`~dcsm.model.dcsm.DCSM` in eval mode, called as ``model(images, options) -> (N, K)``),
    or None when the run has no head. The export's config must name the encoder's model
    (:func:`dcsm.checkpoints.encoder_match.check_encoder_model`)."""
    from ...checkpoints.load import load_dcsm

    path = variant_dir(heads_dir, variant, seed) / HEAD_FILE
    if not path.is_file():
        return None
    return load_dcsm(str(path), encoder=encoder)[0]  # in eval mode
