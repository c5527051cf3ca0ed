"""A trained head as two plain files: ``NAME.safetensors`` (the head's tensors) + ``NAME.json``
(everything needed to rebuild it), loadable without unpickling anything.

The JSON holds the encoder spec (the frozen CLIP is rebuilt from it, never saved), the
``functional_rows`` settings with the lexicon written out as its phrases (the rows themselves
are tensors in the safetensors file), the ``maps`` and ``scorer`` sections, the SHA-256 of the
safetensors file, and the source run's config and metadata (categories, validation names),
so that :func:`dcsm.load`, :func:`dcsm.checkpoints.load_dcsm` and ``evaluate.py`` score an
export exactly as they score the checkpoint it came from.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .functional_rows import resolve_lexicon
from .model import DCSM
from .safe_load import CheckpointError

FORMAT = "dcsm-head"
FORMAT_VERSION = 1
TENSORS_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".json"
#: Config sections that define the model; all are in the JSON.
MODEL_SECTIONS = ("encoder", "functional_rows", "maps", "scorer")
#: Top-level JSON keys a loader needs.
REQUIRED_KEYS = ("format", "format_version", "tensors", "sha256", *MODEL_SECTIONS)


class HeadExportError(CheckpointError):
    """An export's files are missing, changed or malformed; the message names the file and key."""


def export_paths(path: str | Path) -> tuple[Path, Path]:
    """``NAME``, ``NAME.json`` or ``NAME.safetensors`` -> (tensors path, JSON path)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (TENSORS_SUFFIX, CONFIG_SUFFIX) else path
    return stem.with_name(stem.name + TENSORS_SUFFIX), stem.with_name(stem.name + CONFIG_SUFFIX)


def is_head_export(path: str | Path) -> bool:
    """True for a ``.safetensors`` file or a JSON file that says ``"format": "dcsm-head"``."""
    path = Path(path)
    if path.suffix == TENSORS_SUFFIX:
        return True
    if path.suffix != CONFIG_SUFFIX or not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _installed_version() -> str | None:
    """The installed dcsm's version (read from its metadata: importing the package here would
    close an import circle through dcsm.load)."""
    try:
        return metadata.version("dcsm")
    except metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_head(model: DCSM, cfg: dict, out: str | Path, *, hyper_parameters: dict | None = None,
                source: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write ``model.head`` to ``OUT.safetensors`` and its rebuild config to ``OUT.json``.

    Args:
        model: the trained :class:`DCSM` (its encoder spec is recorded, not its weights).
        cfg: the run config the model was built from (``encoder``, ``functional_rows``, ``maps``,
            ``scorer`` and whatever else the run had, kept for evaluation).
        out: output path stem (``.json`` / ``.safetensors`` suffixes are stripped).
        hyper_parameters: ``categories`` / ``val_names`` of the run (kept for evaluation).
        source: the checkpoint the head came from (recorded).
        overwrite: replace existing files.

    Returns:
        The JSON written, plus ``files`` (the two paths).

    Raises:
        HeadExportError: an output exists and ``overwrite`` is False.
    """
    tensors_path, json_path = export_paths(out)
    existing = [str(p) for p in (tensors_path, json_path) if p.exists()]
    if existing and not overwrite:
        raise HeadExportError(f"{existing[0]} exists. Fix: export_head.overwrite=true, or another export_head.out=...")
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    # clones: safetensors refuses tensors that share storage
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.head.state_dict().items()}
    tmp = tensors_path.with_name(f".{tensors_path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    tmp.replace(tensors_path)
    spec = model.encoder.spec.to_dict()
    sections = {sec: copy.deepcopy(cfg[sec]) for sec in MODEL_SECTIONS if sec != "encoder"}
    sections["functional_rows"]["lexicon"] = list(resolve_lexicon(sections["functional_rows"]["lexicon"]))
    hp = hyper_parameters or {}
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dcsm_version": _installed_version(),
        "tensors": tensors_path.name,
        "sha256": _sha256(tensors_path),
        "num_tensors": len(state),
        "num_parameters": int(sum(p.numel() for p in model.head.parameters())),
        "encoder": spec,
        **sections,
        "categories": list(hp.get("categories", ())),
        "val_names": list(hp.get("val_names", ("val",))),
        "source_checkpoint": source,
        "run_config": {k: v for k, v in cfg.items() if k not in MODEL_SECTIONS},
    }
    from .io import atomic_write_json  # here, not at the top: dcsm.io imports Lightning, loading an export must not

    atomic_write_json(json_path, record)
    return {**record, "files": {"tensors": str(tensors_path), "config": str(json_path)}}


def read_export_config(path: str | Path) -> tuple[dict, dict]:
    """An export's JSON -> (its full config: the run config with the model sections on top, its
    hyper-parameters ``categories``/``val_names``); checks the format and required keys.

    Raises:
        HeadExportError: missing file, invalid JSON, another format, a missing key.
    """
    tensors_path, json_path = export_paths(path)
    fix = "Fix: export the head again with dcsm-export-head (both files, same name, side by side)."
    if not json_path.is_file():
        raise HeadExportError(f"head export '{tensors_path}' has no config '{json_path}' beside it. {fix}")
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise HeadExportError(f"head export config '{json_path}' is unreadable ({type(err).__name__}: {err}). {fix}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise HeadExportError(f"'{json_path}' is not a dcsm head export (format: {got!r}, expected {FORMAT!r}). {fix}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise HeadExportError(f"head export config '{json_path}' lacks key '{missing[0]}'. {fix}")
    if record["format_version"] > FORMAT_VERSION:
        raise HeadExportError(f"'{json_path}': format_version {record['format_version']} is newer than this dcsm reads "
                              f"({FORMAT_VERSION}). Fix: upgrade dcsm.")
    bad = [k for k in MODEL_SECTIONS if not isinstance(record[k], dict)]
    if bad:
        raise HeadExportError(f"head export config '{json_path}': key '{bad[0]}' must be an object. {fix}")
    cfg = {**copy.deepcopy(record.get("run_config") or {}), **{k: copy.deepcopy(record[k]) for k in MODEL_SECTIONS}}
    hp = {"cfg": cfg, "categories": tuple(record.get("categories", ())), "val_names": tuple(record.get("val_names", ("val",)))}
    return cfg, hp


def read_head_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """An export's tensors, checked against the SHA-256 its JSON records (before anything is built).

    Raises:
        HeadExportError: missing, changed or corrupt file.
    """
    tensors_path, json_path = export_paths(path)
    fix = "Fix: export the head again with dcsm-export-head."
    if not tensors_path.is_file():
        raise HeadExportError(f"head export '{tensors_path}' does not exist (its config is '{json_path}'). {fix}")
    record = json.loads(json_path.read_text(encoding="utf-8"))
    if _sha256(tensors_path) != record["sha256"]:
        raise HeadExportError(f"'{tensors_path}' does not match the sha256 in '{json_path}' (changed after export). {fix}")
    try:
        return load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise HeadExportError(f"'{tensors_path}' is unreadable ({type(err).__name__}: {err}). {fix}") from None


def check_head_tensors(path: str | Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """The export's tensors fit the head rebuilt from its config (``expected``: its state dict).

    Raises:
        HeadExportError: a missing or unexpected tensor, or a shape mismatch (named).
    """
    tensors_path, json_path = export_paths(path)
    fix = "Fix: export the head again with dcsm-export-head."
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks tensor '{missing[0]}'" if missing else f"has unexpected tensor '{extra[0]}'"
        raise HeadExportError(f"'{tensors_path}' {what} for the head its config '{json_path}' describes. {fix}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise HeadExportError(f"'{tensors_path}': tensor '{k}' has shape {tuple(state[k].shape)}, the head built from "
                                  f"'{json_path}' needs {tuple(v.shape)}. {fix}")
