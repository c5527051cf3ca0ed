"""A trained head as two plain files: ``NAME.safetensors`` (the head's tensors) + ``NAME.json``
(everything needed to rebuild it), loadable without unpickling anything.

The JSON holds the encoder spec (the frozen CLIP is rebuilt from it, never saved), the
``functional_rows`` settings with the lexicon written out as its phrases (the rows themselves
are tensors in the safetensors file), the ``maps`` and ``scorer`` sections, the SHA-256 of the
safetensors file, and the source run's config and metadata (categories, validation names),
so that :func:`dcsm.load`, :func:`dcsm.checkpoints.load.load_dcsm` and ``evaluate.py`` score an
export exactly as they score the checkpoint it came from.

Reading an export trusts nothing in it: the JSON is parsed behind a depth limit, every field is
checked against :mod:`dcsm.checkpoints.export_schema` (type, range, required, no unknown keys), then the
``config_sha256`` digest (SHA-256 of the canonical JSON of every other field, the tensors'
``sha256`` included) and the tensors' digest are compared, and the head's numbers must match the
tensors' shapes (:func:`check_config_fits`) — all before anything is built. Format version 2 adds
``config_sha256``; version-1 exports (no config digest) still load with the same schema check.
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

from .export_schema import MAX_JSON_BYTES, MAX_JSON_DEPTH, SchemaError, json_depth_exceeds, record_check
from ..model.functional_rows import resolve_lexicon
from ..model.dcsm import DCSM
from .safe_load import CheckpointError

FORMAT = "dcsm-head"
#: 2: ``config_sha256`` covers the JSON (1: only the tensors' ``sha256``; still read).
FORMAT_VERSION = 2
CONFIG_DIGEST_KEY = "config_sha256"
TENSORS_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".json"
#: Config sections that define the model; all are in the JSON.
MODEL_SECTIONS = ("encoder", "functional_rows", "maps", "scorer")


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
        raw = path.read_text(encoding="utf-8")
        if json_depth_exceeds(raw):  # let read_export_config name the problem
            return True
        return json.loads(raw).get("format") == FORMAT
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


def config_digest(record: dict) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of every field but ``config_sha256``."""
    body = {k: v for k, v in record.items() if k != CONFIG_DIGEST_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


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
    record[CONFIG_DIGEST_KEY] = config_digest(record)
    from ..io import atomic_write_json  # here, not at the top: dcsm.io imports Lightning, loading an export must not

    atomic_write_json(json_path, record)
    return {**record, "files": {"tensors": str(tensors_path), "config": str(json_path)}}


def read_export_record(path: str | Path) -> dict:
    """An export's JSON, checked: depth-limited parse, format, schema of every field, config digest.

    Raises:
        HeadExportError: missing file, invalid or too deeply nested JSON, another format, a field
            of the wrong type/range, missing or unknown (named), a JSON changed after export.
    """
    tensors_path, json_path = export_paths(path)
    fix = "Fix: export the head again with dcsm-export-head (both files, same name, side by side)."
    if not json_path.is_file():
        raise HeadExportError(f"head export '{tensors_path}' has no config '{json_path}' beside it. {fix}")
    if json_path.stat().st_size > MAX_JSON_BYTES:
        raise HeadExportError(f"head export config '{json_path}' is larger than {MAX_JSON_BYTES >> 20} MiB "
                              f"(a real one is a few kB). {fix}")
    try:
        raw = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise HeadExportError(f"head export config '{json_path}' is unreadable ({type(err).__name__}: {err}). {fix}") from None
    if json_depth_exceeds(raw):
        raise HeadExportError(f"head export config '{json_path}' nests deeper than {MAX_JSON_DEPTH} levels "
                              f"(a real one has 4). {fix}")
    try:
        record = json.loads(raw)
    except ValueError as err:
        raise HeadExportError(f"head export config '{json_path}' is unreadable ({type(err).__name__}: {err}). {fix}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise HeadExportError(f"'{json_path}' is not a dcsm head export (format: {got!r}, expected {FORMAT!r}). {fix}")
    version = record.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise HeadExportError(f"'{json_path}': format_version {version} is newer than this dcsm reads "
                              f"({FORMAT_VERSION}). Fix: upgrade dcsm.")
    try:
        record_check(FORMAT_VERSION)(record, "")
        if version >= 2 and CONFIG_DIGEST_KEY not in record:
            raise SchemaError(CONFIG_DIGEST_KEY, "is missing")  # format_version 2 records it
    except SchemaError as err:
        detail = f"lacks key '{err.key}'" if err.why == "is missing" else f"field {err}"
        raise HeadExportError(f"head export config '{json_path}' {detail}. {fix}") from None
    if CONFIG_DIGEST_KEY in record and config_digest(record) != record[CONFIG_DIGEST_KEY]:
        raise HeadExportError(f"head export config '{json_path}' does not match its {CONFIG_DIGEST_KEY} (changed after "
                              f"export: a hand edit of any field). {fix}")
    return record


def read_export_config(path: str | Path) -> tuple[dict, dict]:
    """An export's JSON -> (its full config: the run config with the model sections on top, its
    hyper-parameters ``categories``/``val_names``); checked by :func:`read_export_record`.

    Raises:
        HeadExportError: see :func:`read_export_record`.
    """
    record = read_export_record(path)
    cfg = {**copy.deepcopy(record.get("run_config") or {}), **{k: copy.deepcopy(record[k]) for k in MODEL_SECTIONS}}
    hp = {"cfg": cfg, "categories": tuple(record.get("categories", ())), "val_names": tuple(record.get("val_names", ("val",)))}
    return cfg, hp


def read_head_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """An export's tensors, checked against the SHA-256 its JSON records and against the head its
    JSON describes (:func:`check_config_fits`), before anything is built.

    Raises:
        HeadExportError: missing, changed or corrupt file; a config number its tensors contradict.
    """
    tensors_path, json_path = export_paths(path)
    fix = "Fix: export the head again with dcsm-export-head."
    record = read_export_record(path)
    if not tensors_path.is_file():
        raise HeadExportError(f"head export '{tensors_path}' does not exist (its config is '{json_path}'). {fix}")
    if _sha256(tensors_path) != record["sha256"]:
        raise HeadExportError(f"'{tensors_path}' does not match the sha256 in '{json_path}' (changed after export). {fix}")
    try:
        state = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise HeadExportError(f"'{tensors_path}' is unreadable ({type(err).__name__}: {err}). {fix}") from None
    check_config_fits(path, record, state)
    return state


def _dim(state: dict[str, torch.Tensor], name: str, axis: int) -> int | None:
    t = state.get(name)
    return int(t.shape[axis]) if isinstance(t, torch.Tensor) and t.dim() > axis else None


def check_config_fits(path: str | Path, record: dict, state: dict[str, torch.Tensor]) -> None:
    """The JSON's head sizes match the export's tensors, so building the head allocates no more
    than the tensors file holds (``scorer.channels``/``hidden``, ``encoder.max_tokens``, the
    lexicon size, ``scorer.pooled``).

    Raises:
        HeadExportError: naming the field, its value and what the tensors say.
    """
    tensors_path, json_path = export_paths(path)
    sc, enc = record["scorer"], record["encoder"]
    rows, fc1_in = _dim(state, "functional_rows.rows", 1), _dim(state, "scorer.fc1.weight", 1)
    in_ch = _dim(state, "scorer.conv1.weight", 1)
    found = {
        "scorer.channels": (sc["channels"], _dim(state, "scorer.conv1.weight", 0)),
        "scorer.hidden": (sc["hidden"], _dim(state, "scorer.fc1.weight", 0)),
        "functional_rows.lexicon": (len(resolve_lexicon(record["functional_rows"]["lexicon"])), _dim(state, "functional_rows.rows", 0)),
        "scorer.pooled": (sc["pooled"] == "residual", "pooled.scale" in state),
    }
    if sc["layout"] == "grid":
        found["encoder.max_tokens"] = (enc["max_tokens"], in_ch)
    elif rows is not None and fc1_in is not None:
        found["encoder.max_tokens"] = (enc["max_tokens"] * sc["channels"] * rows, fc1_in)
    for key, (want, have) in found.items():
        if have is None or want != have:
            raise HeadExportError(
                f"head export config '{json_path}': {key} does not fit the tensors in '{tensors_path}' "
                f"({_fit_detail(key, record, state)}). Fix: export the head again with dcsm-export-head.")


def _fit_detail(key: str, record: dict, state: dict[str, torch.Tensor]) -> str:
    shapes = {k: tuple(v.shape) for k, v in state.items() if k in ("scorer.conv1.weight", "scorer.fc1.weight", "functional_rows.rows")}
    section, name = key.split(".")
    value = record[section][name]
    return f"{key}={value if not isinstance(value, list) else f'{len(value)} phrases'}; tensor shapes {shapes}"


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
