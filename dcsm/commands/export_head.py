"""Export a trained head to plain files: ``OUT.safetensors`` (tensors) + ``OUT.json`` (encoder
spec, functional-row, map and scorer settings; :mod:`dcsm.checkpoints.export`).

    dcsm-export-head export_head.checkpoint=runs/x/checkpoints/best.ckpt export_head.out=exports/x

The export loads with ``dcsm.load("exports/x.safetensors")``, ``dcsm.checkpoints.load.load_dcsm`` and
``evaluate.py eval.checkpoint=exports/x.safetensors`` without unpickling anything, and scores
exactly as the checkpoint does (the frozen CLIP is rebuilt from the recorded encoder spec).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..checkpoints.load import load_checkpoint
from ..checkpoints.export import export_head, is_head_export
from .runner import command_config

SECTION = "export_head"


def export_from_config(cfg: dict) -> dict[str, Any]:
    """Load ``export_head.checkpoint`` and write ``export_head.out``{.safetensors,.json}; returns the JSON written."""
    c = cfg[SECTION]
    for key in ("checkpoint", "out"):
        if not c[key]:
            raise ValueError(f"{SECTION}.{key} is not set. Fix: {SECTION}.{key}=PATH "
                             "(checkpoint: a .ckpt written by train.py; out: the export's path without suffix).")
    if is_head_export(c["checkpoint"]):
        raise ValueError(f"{SECTION}.checkpoint='{c['checkpoint']}' is already a head export. Fix: give the .ckpt it came from.")
    loaded = load_checkpoint(str(c["checkpoint"]))
    record = export_head(loaded.model, loaded.cfg, c["out"], hyper_parameters=loaded.hyper_parameters,
                         source=str(c["checkpoint"]), overwrite=bool(c["overwrite"]))
    print(f"head of {c['checkpoint']}: {record['num_parameters']} parameters, {record['num_tensors']} tensors ->\n"
          f"  {record['files']['tensors']}\n  {record['files']['config']}")
    return record


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``dcsm-export-head``: see the module docstring."""
    return export_from_config(command_config(argv))
