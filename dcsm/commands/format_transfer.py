"""Write format-transfer files: synthetic scenes in each public benchmark's own format
(:mod:`dcsm.data.synthetic.transfer`), laid out as a data root that ``evaluate.py`` scores with the
real loaders::

    python data_prep/make_format_transfer.py format_transfer.out=runs/format_transfer
    python evaluate.py eval.benchmark=all eval.data_root=runs/format_transfer eval.checkpoint=CKPT

Settings: the ``format_transfer:`` section of ``configs/default.yaml``. Every file is written
atomically (annotation files after their images), and ``format_transfer.json`` last: the settings
and each file's rows. Rerunning with the same settings rewrites the same bytes; other settings
into a folder that holds format-transfer files are refused unless ``overwrite=true``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..config import ConfigError
from ..config_checks import check_writable
from ..data.synthetic.transfer import TRANSFER_FILES, write_transfer_file
from ..io import atomic_write, atomic_write_json
from ..progress import progress_bar, progress_enabled
from .runner import command_config

SECTION = "format_transfer"
MANIFEST = "format_transfer.json"
SETTINGS = ("rows", "seed", "image_size", "style", "templates", "files")


def _settings(c: dict) -> dict[str, Any]:
    return {k: (list(c[k]) if isinstance(c[k], (list, tuple)) else c[k]) for k in SETTINGS}


def _check_out(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    manifest = out / MANIFEST
    if not manifest.is_file() or overwrite:
        return
    try:
        old = json.loads(manifest.read_text(encoding="utf-8")).get("settings")
    except (OSError, ValueError, AttributeError):
        old = None
    if old != settings:
        raise ConfigError(
            f"{SECTION}.out={str(out)!r} holds format-transfer files made with other settings ({manifest}). "
            f"Fix: {SECTION}.overwrite=true, or another {SECTION}.out."
        )


def format_transfer(cfg: dict) -> dict[str, Any]:
    """Write the files the ``format_transfer`` section asks for; returns the manifest written."""
    c = cfg[SECTION]
    if not c["out"]:
        raise ConfigError(f"{SECTION}.out is required. Fix: {SECTION}.out=FOLDER.")
    names = list(c["files"]) or list(TRANSFER_FILES)
    out = Path(c["out"])
    check_writable(f"{SECTION}.out", out, "folder")
    settings = _settings(c)
    _check_out(out, settings, bool(c["overwrite"]))
    files = {}
    for name in progress_bar(names, progress_enabled(cfg), desc="format-transfer files", unit="file"):
        f = write_transfer_file(name, c["rows"], c["seed"], c["style"], c["image_size"], c["templates"])
        for rel, data in f.images.items():
            atomic_write(out / rel, lambda fh, d=data: fh.write(d))
        atomic_write(out / f.annotation, lambda fh, d=f.data: fh.write(d))
        files[name] = {"annotation": f.annotation, "rows": f.rows}
    manifest = {"settings": settings, "files": files}
    atomic_write_json(out / MANIFEST, manifest)
    n = sum(len(v["rows"]) for v in files.values())
    print(f"wrote {len(files)} format-transfer files ({n} rows, style {c['style']!r}) under {out}; score them with:\n"
          f"  python evaluate.py eval.benchmark=all eval.data_root={out} eval.checkpoint=CKPT")
    return manifest


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return format_transfer(command_config(argv))
