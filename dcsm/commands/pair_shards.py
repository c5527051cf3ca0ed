"""Turn image-caption pairs (COCO-style) into multiple-choice WebDataset shards.

    python data_prep/make_pair_shards.py pair_shards.input=pairs.json pair_shards.image_root=IMAGES \
        pair_shards.out=DIR [pair_shards.num_options=4 pair_shards.samples_per_shard=1000 ...]

Settings: the ``pair_shards:`` section of ``configs/default.yaml``.

Input: a JSON list ``[{"image": "path.jpg", "caption": "a red cup to the left of a blue
plate"}, ...]`` or a CSV with header ``image,caption``. Optional per row: ``opposite_image``
(the hard-negative image, stored as ``KEY.opp.*``) with ``opposite_caption`` (its caption,
then one of the options, ``meta.opposite_label`` points to it), and ``category``. Rows are
numbered from 1 (first element of a JSON list, first data row of a CSV). Image paths are
resolved against ``image_root`` (absolute paths as given).

Each row becomes one sample with ``K = num_options`` captions: the positive plus ``K-1``
rule-based hard negatives from :mod:`dcsm.data.negatives` (relation swap, attribute swap,
object swap, negation toggle), shuffled per row (seeded by ``(seed, row)``); ``meta`` records
``row``, ``image``, ``option_kinds`` (``positive`` or the rule of each option) and
``category`` (given, or derived from the caption: negation / spatial / binding).

Rows that cannot become a sample are skipped, counted and listed in the manifest's ``stats``
(and summarised on stdout): ``missing_images`` (path not found), ``unreadable_images`` (PIL
cannot read it) and ``too_few_negatives`` (the rules give fewer than K-1 distinct
negatives). Malformed input (not a list, missing or non-string field) stops with an error
naming the file, the row and the field. JPEG and PNG files are stored byte for byte; other
formats are re-encoded as PNG.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..data.negatives.sample import caption_category, make_negatives_with_rules
from ..data.shards.format import encode_image
from ..data.shards.write import write_shards
from ..config_checks import check_writable
from .runner import command_config

SECTION = "pair_shards"

REQUIRED_FIELDS = ("image", "caption")
OPTIONAL_FIELDS = ("opposite_image", "opposite_caption", "category")
#: How many skipped rows the manifest lists by path/row (counts are always complete).
MAX_LISTED = 1000
_STORED_FORMATS = {"JPEG": "jpg", "PNG": "png"}


class PairInputError(ValueError):
    """Malformed pair file; the message names the file, the row and the field."""


@dataclass
class PairRow:
    row: int  # 1-based
    image: str
    caption: str
    opposite_image: str | None = None
    opposite_caption: str | None = None
    category: str | None = None


def _check_row(path: Path, row: int, item: Any) -> PairRow:
    where = f"{path}: row {row}"
    if not isinstance(item, dict):
        raise PairInputError(f"{where}: expected an object with fields {list(REQUIRED_FIELDS)}, got {type(item).__name__}")
    values: dict[str, Any] = {}
    for field in REQUIRED_FIELDS:
        if field not in item or item[field] is None:
            raise PairInputError(f"{where}: missing field '{field}'")
        v = item[field]
        if not isinstance(v, str) or not v.strip():
            raise PairInputError(f"{where}: field '{field}' must be a non-empty string, got {v!r}")
        values[field] = v.strip()
    for field in OPTIONAL_FIELDS:
        v = item.get(field)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise PairInputError(f"{where}: field '{field}' must be a string, got {v!r}")
        values[field] = v.strip()
    if ("opposite_caption" in values) != ("opposite_image" in values):
        raise PairInputError(f"{where}: fields 'opposite_image' and 'opposite_caption' go together")
    return PairRow(row=row, **values)


def load_pairs(path: str | Path) -> list[PairRow]:
    """Read and validate a JSON (list of objects) or CSV (header ``image,caption``) pair file.

    Raises:
        PairInputError: unreadable file, wrong top-level shape, missing/malformed field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise PairInputError(f"{path}: cannot read ({err.strerror or err})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [f for f in REQUIRED_FIELDS if f not in header]
        if missing:
            raise PairInputError(f"{path}: CSV header {header} lacks column(s) {missing} (need 'image,caption')")
        rows = []
        for i, item in enumerate(reader, start=1):
            if None in item:
                raise PairInputError(f"{path}: row {i} (line {reader.line_num}): more fields than the header has")
            rows.append(_check_row(path, i, item))
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PairInputError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, list):
        raise PairInputError(f"{path}: expected a JSON list of {{\"image\", \"caption\"}} objects, got {type(data).__name__}")
    return [_check_row(path, i, item) for i, item in enumerate(data, start=1)]


def _resolve(image_root: Path | None, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() or image_root is None else image_root / q


def _image_format(path: Path) -> str | None:
    """PIL format name if the file is a readable image, else None."""
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        return fmt or "UNKNOWN"
    except Exception:  # PIL raises many types for bad files
        return None


def _image_bytes(path: Path, fmt: str) -> tuple[bytes, str]:
    if fmt in _STORED_FORMATS:
        return path.read_bytes(), _STORED_FORMATS[fmt]
    with Image.open(path) as im:
        return encode_image(im.convert("RGB"), "png")


class PairSamples(Sequence):
    """Lazy shard samples of the rows that passed the checks (images read on access)."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:  # type: ignore[override]
        it = dict(self.items[i])
        it["image"], it["image_ext"] = _image_bytes(Path(it.pop("image_path")), it.pop("image_format"))
        if "opposite_path" in it:
            it["opposite_image"], it["opposite_image_ext"] = _image_bytes(Path(it.pop("opposite_path")), it.pop("opposite_format"))
        return it


def plan_samples(rows: Sequence[PairRow], *, image_root: Path | None, num_options: int, seed: int,
                 key_prefix: str) -> tuple[list[dict], dict]:
    """Check images and make negatives for every row -> (sample plans, skip statistics)."""
    if num_options < 2:
        raise ValueError(f"num_options must be >= 2, got {num_options}")
    plans: list[dict] = []
    stats: dict[str, Any] = {
        "rows": len(rows),
        "missing_images": {"count": 0, "items": []},
        "unreadable_images": {"count": 0, "items": []},
        "too_few_negatives": {"count": 0, "items": []},
    }

    def skip(kind: str, entry: dict) -> None:
        stats[kind]["count"] += 1
        if len(stats[kind]["items"]) < MAX_LISTED:
            stats[kind]["items"].append(entry)

    for r in rows:
        paths = {"image": _resolve(image_root, r.image)}
        if r.opposite_image:
            paths["opposite_image"] = _resolve(image_root, r.opposite_image)
        formats = {}
        bad = False
        for field, p in paths.items():
            if not p.is_file():
                skip("missing_images", {"row": r.row, "field": field, "path": str(p)})
                bad = True
            elif (fmt := _image_format(p)) is None:
                skip("unreadable_images", {"row": r.row, "field": field, "path": str(p)})
                bad = True
            else:
                formats[field] = fmt
        if bad:
            continue
        rng = np.random.default_rng([seed, r.row])
        fixed = [("positive", r.caption)] + ([("opposite", r.opposite_caption)] if r.opposite_caption else [])
        want = num_options - len(fixed)
        negs = make_negatives_with_rules(r.caption, want + len(fixed) - 1, rng)  # one spare per fixed extra
        negs = [(k, t) for k, t in negs if t not in {c for _, c in fixed}][:want]
        if len(negs) < want:
            skip("too_few_negatives", {"row": r.row, "caption": r.caption, "negatives": [t for _, t in negs]})
            continue
        options = fixed + negs
        order = [int(i) for i in rng.permutation(len(options))]
        captions = [options[i][1] for i in order]
        meta: dict[str, Any] = {
            "row": r.row,
            "image": r.image,
            "option_kinds": [options[i][0] for i in order],
            "category": r.category or caption_category(r.caption),
        }
        plan = {
            "__key__": f"{key_prefix}-{r.row:08d}",
            "image_path": str(paths["image"]),
            "image_format": formats["image"],
            "captions": captions,
            "label": order.index(0),
            "meta": meta,
        }
        if r.opposite_image:
            meta["opposite_image"] = r.opposite_image
            meta["opposite_label"] = order.index(1)
            plan["opposite_path"] = str(paths["opposite_image"])
            plan["opposite_format"] = formats["opposite_image"]
        plans.append(plan)
    stats["written"] = len(plans)
    return plans, stats


def make_pair_shards(input_path: str | Path, out_dir: str | Path, *, image_root: str | Path | None,
                     num_options: int, samples_per_shard: int, seed: int, prefix: str,
                     key_prefix: str | None, overwrite: bool) -> dict:
    """Validate ``input_path``, plan the samples and write the shards; returns the manifest
    (``stats`` holds the skipped rows)."""
    input_path = Path(input_path)
    rows = load_pairs(input_path)
    root = Path(image_root) if image_root is not None else None
    key_prefix = key_prefix or re.sub(r"[^A-Za-z0-9_-]+", "_", input_path.stem) or "pair"
    plans, stats = plan_samples(rows, image_root=root, num_options=num_options, seed=seed, key_prefix=key_prefix)
    info = {"source": "pairs", "input": str(input_path.resolve()), "image_root": str(root.resolve()) if root else None,
            "num_options": num_options, "seed": seed, "rows": len(rows), "key_prefix": key_prefix}
    return write_shards(PairSamples(plans), out_dir, samples_per_shard, prefix, info=info, stats=stats,
                        overwrite=overwrite)


def pair_shards(cfg: dict) -> dict:
    """Write the shards the ``pair_shards`` section describes and print a summary; returns the manifest."""
    c = cfg[SECTION]
    for key in ("input", "out"):
        if not c[key]:
            raise ValueError(f"{SECTION}.{key} is not set. Fix: {SECTION}.{key}=PATH.")
    check_writable(f"{SECTION}.out", c["out"], "folder")
    manifest = make_pair_shards(c["input"], c["out"], image_root=c["image_root"], num_options=c["num_options"],
                                samples_per_shard=c["samples_per_shard"], seed=c["seed"], prefix=c["prefix"],
                                key_prefix=c["key_prefix"], overwrite=c["overwrite"])
    print_summary(c["out"], manifest)
    return manifest


SKIP_KINDS = ("missing_images", "unreadable_images", "too_few_negatives")
SKIPS_SHOWN = 20


def print_summary(out: str | Path, manifest: dict) -> None:
    """Samples and shards written to ``out``, and the rows skipped, by reason (first few named)."""
    st = manifest["stats"]
    print(f"{out}: {manifest['num_samples']} samples in {manifest['num_shards']} shards from {st['rows']} rows")
    for kind in SKIP_KINDS:
        if st[kind]["count"]:
            print(f"  skipped {st[kind]['count']} row(s): {kind.replace('_', ' ')}")
            for item in st[kind]["items"][:SKIPS_SHOWN]:
                print(f"    row {item['row']}: {item.get('path') or repr(item.get('caption'))}")




def main(argv: Sequence[str] | None = None) -> dict:
    return pair_shards(command_config(argv))
