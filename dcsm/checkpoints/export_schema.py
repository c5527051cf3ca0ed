"""The schema of a head export's JSON (:mod:`dcsm.checkpoints.export`): every field's type, range and
presence is checked before anything is built, and a violation is one line naming the field.

* :func:`json_depth_exceeds`: the nesting-depth limit checked before ``json.loads`` (no ``RecursionError``).
* :func:`record_check`: the whole record (model sections with sane upper
  bounds, so no field can ask for a billion-channel allocation) and ``run_config`` against the
  shape of ``configs/default.yaml`` (known keys only, leaf types as there).

The bounds are sanity caps only; :func:`dcsm.checkpoints.export.check_config_fits` then requires the
numbers to match the export's own tensors before the model is built.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from ..model.encoder_towers import PATCH_SOURCES
from ..model.encoders import PAD_ROWS
from ..model.functional_rows import ROW_INITS
from ..model.maps import STANDARDIZE_MODES
from ..model.cnn import LAYOUTS, POOLED

#: Deepest JSON nesting an export may have (a real one has 4 levels).
MAX_JSON_DEPTH = 32
#: Largest export JSON read (a real one is a few kB).
MAX_JSON_BYTES = 16 << 20
#: Sanity caps (far above any real head; the tensors-fit check is the exact one).
MAX_TOKENS = 1024
MAX_CHANNELS = 4096
MAX_HIDDEN = 1 << 20
MAX_PHRASES = 4096
MAX_TEXT = 4096
MAX_LIST = 100_000
SEED_RANGE = (0, 2**63 - 1)
SHA256 = re.compile(r"[0-9a-f]{64}")


class SchemaError(ValueError):
    """``key``: the dotted field name; ``why``: what it must be."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}{'' if why.startswith('=') else ' '}{why}")
        self.key, self.why = key, why


Check = Callable[[Any, str], None]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(lo: int, hi: int) -> Check:
    def check(v: Any, key: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise SchemaError(key, f"={_show(v)} must be a whole number in [{lo}, {hi}]")
    return check


def number(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(v: Any, key: str) -> None:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            span = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
            raise SchemaError(key, f"={_show(v)} must be a finite number in {span}")
    return check


def boolean(v: Any, key: str) -> None:
    if not isinstance(v, bool):
        raise SchemaError(key, f"={_show(v)} must be true or false")


def text(max_len: int = MAX_TEXT, choices: tuple[str, ...] | None = None, pattern: re.Pattern | None = None,
         nullable: bool = False) -> Check:
    def check(v: Any, key: str) -> None:
        if v is None and nullable:
            return
        if not isinstance(v, str) or not 0 < len(v) <= max_len:
            raise SchemaError(key, f"={_show(v)} must be a non-empty string{' or null' if nullable else ''}")
        if choices is not None and v not in choices:
            raise SchemaError(key, f"={_show(v)} must be one of {list(choices)}")
        if pattern is not None and not pattern.fullmatch(v):
            raise SchemaError(key, f"={_show(v)} must match {pattern.pattern}")
    return check


def listof(item: Check, max_len: int = MAX_LIST, min_len: int = 0) -> Check:
    def check(v: Any, key: str) -> None:
        if not isinstance(v, list) or not min_len <= len(v) <= max_len:
            raise SchemaError(key, f"={_show(v)} must be a list of {min_len}..{max_len} items")
        for i, x in enumerate(v):
            item(x, f"{key}[{i}]")
    return check


@dataclass
class Obj:
    """A JSON object: ``fields`` (name -> check), the names that must be there; others are refused."""

    fields: dict[str, Check]
    required: tuple[str, ...] = ()

    def __call__(self, v: Any, key: str) -> None:
        if not isinstance(v, dict):
            raise SchemaError(key, f"must be an object, not {type(v).__name__}")
        prefix = f"{key}." if key else ""
        for name in self.required:
            if name not in v:
                raise SchemaError(f"{prefix}{name}", "is missing")
        for name, value in v.items():
            if name not in self.fields:
                raise SchemaError(f"{prefix}{name}", f"is not a known key (known: {', '.join(sorted(self.fields))})")
            self.fields[name](value, f"{prefix}{name}")


def _required_obj(fields: dict[str, Check]) -> Obj:
    return Obj(fields, tuple(fields))


ENCODER = Obj({
    "model": text(200), "pretrained": text(MAX_TEXT, nullable=True), "max_tokens": integer(1, MAX_TOKENS),
    "keep_cls": boolean, "seed": integer(*SEED_RANGE), "pad_rows": text(choices=PAD_ROWS),
    "patch_source": text(choices=PATCH_SOURCES), "tokenizer": text(MAX_TEXT, nullable=True),  # optional: newer exports
}, ("model", "pretrained", "max_tokens", "keep_cls", "seed", "pad_rows"))
FUNCTIONAL_ROWS = _required_obj({
    "lexicon": listof(text(256), MAX_PHRASES), "seed": integer(*SEED_RANGE), "init": text(choices=ROW_INITS),
})
MAPS = _required_obj({
    "standardize": text(choices=STANDARDIZE_MODES), "eps": number(0.0, 1.0, lo_open=True), "inject_functional_rows": boolean,
})
SCORER = _required_obj({
    "layout": text(choices=LAYOUTS), "channels": integer(1, MAX_CHANNELS), "hidden": integer(1, MAX_HIDDEN),
    "dropout": number(0.0, 1.0, hi_open=True), "conv_dropout": number(0.0, 1.0, hi_open=True), "pooled": text(choices=POOLED),
})


def _scalar(v: Any, key: str) -> None:
    if v is None or isinstance(v, (bool, int)) or (isinstance(v, str) and len(v) <= MAX_TEXT):
        return
    number(-math.inf, math.inf)(v, key)


def _scalar_or_list(v: Any, key: str) -> None:
    (listof(_scalar) if isinstance(v, list) else _scalar)(v, key)


def _like(default: Any, lenient: bool = False) -> Check:
    """A check for a value shaped like ``default`` (a value of configs/default.yaml); ``lenient``:
    any scalar or list of scalars (``trainer:`` is passed to Lightning as-is: devices 1, "auto", [0, 1])."""
    if isinstance(default, dict):
        return Obj({k: _like(v, lenient) for k, v in default.items()})
    if lenient or default is None:
        return _scalar_or_list
    if isinstance(default, bool):
        return boolean
    if isinstance(default, int):
        return integer(-(2**63), 2**63 - 1)
    if isinstance(default, float):
        return number(-math.inf, math.inf)
    if isinstance(default, str):
        return text(MAX_TEXT, nullable=True)
    return listof(_scalar)  # a list


@lru_cache(maxsize=1)
def run_config_check() -> Obj:
    """``run_config``: the non-model sections of configs/default.yaml, known keys only."""
    from ..config import DEFAULT_CONFIG, load_yaml, to_plain  # omegaconf only when an export is read

    default = to_plain(load_yaml(DEFAULT_CONFIG))
    model_sections = ("encoder", "functional_rows", "maps", "scorer")
    return Obj({k: _like(v, lenient=k == "trainer") for k, v in default.items() if k not in model_sections})


def record_check(max_version: int) -> Obj:
    return Obj({
        "format": text(), "format_version": integer(1, max_version), "dcsm_version": text(100, nullable=True),
        "tensors": text(255, pattern=re.compile(r"[^/\\]+\.safetensors")), "sha256": text(pattern=SHA256),
        "config_sha256": text(pattern=SHA256), "num_tensors": integer(0, MAX_LIST), "num_parameters": integer(0, 2**63 - 1),
        "encoder": ENCODER, "functional_rows": FUNCTIONAL_ROWS, "maps": MAPS, "scorer": SCORER,
        "categories": listof(text(200), 1000), "val_names": listof(text(200), 1000),
        "source_checkpoint": text(MAX_TEXT, nullable=True), "run_config": run_config_check(),
    }, required=("format", "format_version", "tensors", "sha256", "encoder", "functional_rows", "maps", "scorer"))


def json_depth_exceeds(raw: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``raw`` nests arrays/objects deeper than ``limit`` (strings skipped), without parsing it."""
    depth, in_str, escaped = 0, False, False
    for ch in raw:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False
