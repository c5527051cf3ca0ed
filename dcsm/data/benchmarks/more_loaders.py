"""Loaders for the other public benchmarks the DCSM paper reports, reading the files unchanged.

Every loader returns :class:`dcsm.data.benchmarks.loaders.MCQItem` rows (VG-Attribution: the
:class:`BoxedMCQItem` subclass, which adds the crop box), numbers rows from 1, leaves
``image_path`` None for images that are not on disk (they are listed, the rest is scored) and
raises :class:`dcsm.data.benchmarks.loaders.BenchmarkFormatError` naming the file, the row and the field.
Semantics follow the original code; nothing is copied from it.

* **CLEVR-bind** (``marthaflinderslewis/clip-binding``, ``datasets/clevr_dataset.py``
  ``ObjectDataset``; read the same way by the DCSM reference, ``CLEVR_bind``):
  ``two_object/{train,val,gen}.csv`` with columns looked up by name: ``file_name``, ``pos``,
  ``neg_0`` .. ``neg_3`` (other columns are ignored). Options ``(pos, neg_0, ..., neg_3)``,
  label 0. Images ``two_object/images/{split}/{file_name}``. Subset ``clevr_bind_{split}``.
* **VG-Attribution** (ARO, ``mertyg/vision-language-models-are-bows``,
  ``dataset_zoo/aro_datasets.py`` ``VG_Attribution``): ``visual_genome_attribution.json``, a
  list of objects of which we read ``image_path`` (relative to the ``images/`` folder; the DCSM
  reference names it ``VG_100K/``), ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h`` (the image is
  cropped to ``(x, y, x + w, y + h)`` before scoring, as the original does), ``true_caption``,
  ``false_caption`` and, optionally, ``attributes`` (two words; group ``"{a0}_{a1}"``, the
  original's per-attribute-pair label). Options in the original's order
  ``(false_caption, true_caption)``, label 1. Subset ``vg_attribution``.
* **NCD** (the DCSM reference's ``NCD_colorful_composite_squares`` folder, read by
  ``COCODataset_color_nooppimg``): every ``.png``/``.jpeg``/``.jpg`` file whose name does not
  contain ``MIRROR``, named ``c1_A_c2_B.ext`` (colour, object, colour, object; further ``_``
  fields are ignored, as the reference does). Each image gives two items, the reference's two
  NCD subsets, both in subset ``ncd``: group ``order_ab`` (reference ``ncd_subset1``) with
  options ``("A picture of a c1 A and a c2 B", "A picture of a c2 A and a c1 B")`` and group
  ``order_ba`` (``ncd_subset2``) with ``("A picture of a c2 B and a c1 A", "A picture of a c1
  B and a c2 A")``; label 0. Files are read in sorted order (the reference uses the directory
  order).
* **SugarCrepe** (``RAIVNLab/sugar-crepe``, ``main_eval.py``): seven JSON files
  ``{add_att, add_obj, replace_att, replace_obj, replace_rel, swap_att, swap_obj}.json``, each
  an object ``{id: {"filename", "caption", "negative_caption"}}`` over COCO val2017 images
  (``filename`` relative to the val2017 folder). Options ``(caption, negative_caption)``,
  label 0. Subset ``sugarcrepe_{name}``. The original counts a tie as wrong (``pos > neg``);
  a tie for the top score counts as wrong (dcsm.eval.metrics.TIE_RULE).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from .loaders import (
    BENCHMARK_LOADERS,
    BenchmarkFormatError,
    MCQItem,
    PathLike,
    _check_caption,
    _csv_records,
    _error,
    _json_row_label,
    _read_json,
    _require_keys,
    resolve_image,
)
from ..reference_layout import IMAGE_SUFFIXES, attribute_captions

__all__ = [
    "BoxedMCQItem",
    "load_clevr_bind",
    "load_vg_attribution",
    "load_ncd",
    "load_sugarcrepe",
    "open_item_image",
    "MORE_BENCHMARK_LOADERS",
    "CLEVR_BIND_SPLITS",
    "SUGARCREPE_SUBSETS",
    "NCD_GROUPS",
]

_ENCODING = "utf-8-sig"  # UTF-8 with or without a byte-order mark

# --- CLEVR-bind -------------------------------------------------------------------------------
CLEVR_BIND_SPLITS = ("train", "val", "gen")
CLEVR_FILE_COLUMN = "file_name"
CLEVR_POS_COLUMN = "pos"
CLEVR_NEG_PREFIX = "neg_"
CLEVR_MIN_NEGATIVES = 1
CLEVR_IMAGE_DIR = "images"  # two_object/images/{split}/
CLEVR_CORRECT_INDEX = 0

# --- VG-Attribution ---------------------------------------------------------------------------
VGA_SUBSET = "vg_attribution"
VGA_BOX_FIELDS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
VGA_REQUIRED = ("image_path", *VGA_BOX_FIELDS, "true_caption", "false_caption")
VGA_OPTION_FIELDS = ("false_caption", "true_caption")  # the original's order
VGA_CORRECT_INDEX = 1
VGA_ATTRIBUTE_COUNT = 2

# --- NCD --------------------------------------------------------------------------------------
NCD_SUBSET = "ncd"
NCD_SKIP_MARK = "MIRROR"
NCD_NAME_FIELDS = 4  # c1_A_c2_B
NCD_GROUPS = ("order_ab", "order_ba")  # reference ncd_subset1 / ncd_subset2 (its settype 0 / 1)
NCD_CORRECT_INDEX = 0

# --- SugarCrepe -------------------------------------------------------------------------------
SUGARCREPE_SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
SUGARCREPE_PREFIX = "sugarcrepe_"
SUGARCREPE_FIELDS = ("filename", "caption", "negative_caption")
SUGARCREPE_CORRECT_INDEX = 0


@dataclass(frozen=True)
class BoxedMCQItem(MCQItem):
    """An MCQItem whose image is scored cropped to ``crop_box`` = (left, top, right, bottom) px."""

    crop_box: tuple[float, float, float, float] | None = None


def open_item_image(item: MCQItem) -> Image.Image:
    """The item's image as RGB, cropped to its ``crop_box`` if it has one (VG-Attribution).

    Raises:
        ValueError: the item has no image on disk (``image_path`` is None).
    """
    if item.image_path is None:
        raise ValueError(f"{Path(item.source).name}: row {item.row}: image '{item.raw_image_path}' was not found")
    with Image.open(item.image_path) as im:
        rgb = im.convert("RGB")
    box = getattr(item, "crop_box", None)
    return rgb.crop(box) if box is not None else rgb


# ---------------------------------------------------------------------------------------------
# CLEVR-bind
# ---------------------------------------------------------------------------------------------


def _clevr_split(csv_path: PathLike) -> str:
    stem = Path(csv_path).stem.lower()
    if stem not in CLEVR_BIND_SPLITS:
        raise ValueError(
            f"cannot tell the CLEVR-bind split from the name {Path(csv_path).name!r}; keep the original names "
            f"{'/'.join(s + '.csv' for s in CLEVR_BIND_SPLITS)} or pass subset='clevr_bind_<split>'"
        )
    return stem


def _resolve_clevr_image(file_name: str, image_root: PathLike | None, split: str) -> Path | None:
    """``image_root/file_name``; if ``image_root`` is the ``two_object`` folder, ``images/{split}/``."""
    return resolve_image(file_name, image_root) or resolve_image(f"{CLEVR_IMAGE_DIR}/{split}/{file_name}", image_root)


def load_clevr_bind(csv_path: PathLike, image_root: PathLike | None, subset: str | None = None) -> list[MCQItem]:
    """Load a CLEVR-bind two-object CSV (``two_object/train.csv``, ``val.csv`` or ``gen.csv``).

    Args:
        csv_path: the CSV as published; columns ``file_name``, ``pos``, ``neg_0``.. by name.
        image_root: the split's image folder (``two_object/images/{split}``) or the
            ``two_object`` folder; None leaves every ``image_path`` None.
        subset: subset name; None -> ``clevr_bind_{train|val|gen}`` from the file name.

    Returns:
        One item per data row: options ``(pos, neg_0, ...)``, label 0, no group.
    """
    p = Path(csv_path)
    split = _clevr_split(p) if subset is None else (subset.rsplit("_", 1)[-1] if "_" in subset else subset)
    sub = f"clevr_bind_{split}" if subset is None else subset
    fix_header = "the header must name file_name,pos,neg_0,neg_1,neg_2,neg_3 (CLEVR-bind two_object CSV)"
    items: list[MCQItem] = []
    reader = None
    try:
        with open(p, encoding=_ENCODING, newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise _error(p, "0 (header line 1)", CLEVR_FILE_COLUMN, "file is empty", fix_header)
            header = [h.strip() for h in header]
            negs: list[str] = []
            while f"{CLEVR_NEG_PREFIX}{len(negs)}" in header:
                negs.append(f"{CLEVR_NEG_PREFIX}{len(negs)}")
            missing = [c for c in (CLEVR_FILE_COLUMN, CLEVR_POS_COLUMN) if c not in header]
            if len(negs) < CLEVR_MIN_NEGATIVES:
                missing.append(f"{CLEVR_NEG_PREFIX}0")
            if missing:
                raise _error(
                    p, "1 (and every row; header line 1)", missing[0],
                    f"column missing from the header (found: {', '.join(header)})", fix_header,
                )
            col = {name: i for i, name in enumerate(header)}
            option_cols = [CLEVR_POS_COLUMN, *negs]
            for row_no, where, record in _csv_records(reader, header, p):
                name = record[col[CLEVR_FILE_COLUMN]].strip()
                if not name:
                    raise _error(p, where, CLEVR_FILE_COLUMN, "empty file name", "write the image file name")
                captions = tuple(
                    _check_caption(p, where, c, record[col[c]], "give every option a non-empty caption")
                    for c in option_cols
                )
                items.append(MCQItem(
                    raw_image_path=name, image_path=_resolve_clevr_image(name, image_root, split),
                    captions=captions, label=CLEVR_CORRECT_INDEX, subset=sub, group=None, pair_key=None,
                    row=row_no, source=str(p),
                ))
    except csv.Error as exc:
        line = reader.line_num if reader is not None else "?"
        raise BenchmarkFormatError(
            f"{p.name}: line {line}: malformed CSV ({exc}). Fix: close every quoted caption (file: {p})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BenchmarkFormatError(f"{p.name}: not valid UTF-8 ({exc.reason}). Fix: save the file as UTF-8 (file: {p})") from exc
    return items


# ---------------------------------------------------------------------------------------------
# VG-Attribution
# ---------------------------------------------------------------------------------------------


def _number(path: Path, where: str, field: str, value: Any, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(path, where, field, f"expected a number, got {value!r}", fix)
    return float(value)


def load_vg_attribution(json_path: PathLike, image_root: PathLike | None) -> list[MCQItem]:
    """Load ARO's ``visual_genome_attribution.json``.

    Args:
        json_path: the JSON list as published.
        image_root: folder the ``image_path`` fields are relative to (ARO ``images/``, the DCSM
            reference's ``VG_100K/``); None leaves every ``image_path`` None.

    Returns:
        :class:`BoxedMCQItem` rows: options ``(false_caption, true_caption)``, label 1,
        ``crop_box`` from the bbox fields, group = ``"{attr0}_{attr1}"`` (None without
        ``attributes``).
    """
    p = Path(json_path)
    fix = ("each row must be an object with image_path, bbox_x, bbox_y, bbox_w, bbox_h, true_caption, "
           "false_caption (ARO visual_genome_attribution.json)")
    rows = _read_json(p, list, "a JSON list", fix)
    items: list[MCQItem] = []
    for index, row in enumerate(rows):
        where = _json_row_label(index)
        _require_keys(p, where, row, VGA_REQUIRED, fix)
        raw = row["image_path"]
        if not isinstance(raw, str) or not raw.strip():
            raise _error(p, where, "image_path", f"expected a non-empty path string, got {raw!r}", fix)
        x, y, w, h = (_number(p, where, k, row[k], "write the box in pixels") for k in VGA_BOX_FIELDS)
        if w <= 0 or h <= 0:
            field = "bbox_w" if w <= 0 else "bbox_h"
            raise _error(p, where, field, f"box size must be positive, got {row[field]!r}", "write the box in pixels")
        captions = tuple(_check_caption(p, where, k, row[k], fix) for k in VGA_OPTION_FIELDS)
        group = None
        attrs = row.get("attributes")
        if attrs is not None:
            if (not isinstance(attrs, list) or len(attrs) < VGA_ATTRIBUTE_COUNT
                    or not all(isinstance(a, str) for a in attrs[:VGA_ATTRIBUTE_COUNT])):
                raise _error(p, where, "attributes", f"expected a list of two attribute words, got {attrs!r}",
                             "write the two attributes, e.g. [\"white\", \"black\"], or drop the key")
            group = "_".join(attrs[:VGA_ATTRIBUTE_COUNT])
        items.append(BoxedMCQItem(
            raw_image_path=raw, image_path=resolve_image(raw, image_root), captions=captions,
            label=VGA_CORRECT_INDEX, subset=VGA_SUBSET, group=group, pair_key=None, row=index + 1,
            source=str(p), crop_box=(x, y, x + w, y + h),
        ))
    return items


# ---------------------------------------------------------------------------------------------
# NCD
# ---------------------------------------------------------------------------------------------


def load_ncd(folder: PathLike, image_root: PathLike | None = None) -> list[MCQItem]:
    """Load the NCD folder (``c1_A_c2_B.png`` images, captions from the name).

    Args:
        folder: the folder of images (the reference's ``NCD_colorful_composite_squares``).
        image_root: unused (the images are the folder itself); accepted for the common
            ``(annotation, image_root)`` loader signature.

    Returns:
        Two items per image (groups ``order_ab`` then ``order_ba``), label 0, subset ``ncd``;
        ``row`` = 1-based position of the image in the sorted listing.

    Raises:
        BenchmarkFormatError: the folder holds no image, or a name has fewer than four ``_`` fields.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BenchmarkFormatError(f"{root}: not a folder. Fix: point at the NCD image folder (NCD_colorful_composite_squares)")
    names = sorted(
        f.name for f in root.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and NCD_SKIP_MARK not in f.name
    )
    if not names:
        raise BenchmarkFormatError(
            f"{root.name}: no .png/.jpeg/.jpg images (other than MIRROR_ ones). Fix: point at the NCD image folder "
            f"(folder: {root})"
        )
    items: list[MCQItem] = []
    for index, name in enumerate(names):
        parts = Path(name).stem.split("_")
        if len(parts) < NCD_NAME_FIELDS or not all(parts[:NCD_NAME_FIELDS]):
            raise _error(
                root / name, f"{index + 1} (file {name})", "file name",
                f"expected colour1_object1_colour2_object2.ext, got {len(parts)} '_' field(s)",
                "rename it to e.g. red_apple_green_pear.png (use '-' inside words) or remove it",
            )
        c1, a, c2, b = parts[:NCD_NAME_FIELDS]
        for version, group in enumerate(NCD_GROUPS):
            items.append(MCQItem(
                raw_image_path=name, image_path=root / name, captions=attribute_captions(c1, a, c2, b, version),
                label=NCD_CORRECT_INDEX, subset=NCD_SUBSET, group=group, pair_key=None, row=index + 1,
                source=str(root),
            ))
    return items


# ---------------------------------------------------------------------------------------------
# SugarCrepe
# ---------------------------------------------------------------------------------------------


def load_sugarcrepe(json_path: PathLike, image_root: PathLike | None, subset: str | None = None) -> list[MCQItem]:
    """Load one SugarCrepe file (e.g. ``swap_att.json``).

    Args:
        json_path: the JSON object ``{id: {"filename", "caption", "negative_caption"}}``.
        image_root: the COCO ``val2017`` folder (``filename`` is relative to it).
        subset: subset name; None -> ``sugarcrepe_{stem}`` for the seven published names.

    Returns:
        One item per id in file order: options ``(caption, negative_caption)``, label 0, group
        = the edit kind (``add``/``replace``/``swap``).
    """
    p = Path(json_path)
    stem = p.stem.lower()
    if subset is None:
        if stem not in SUGARCREPE_SUBSETS:
            raise ValueError(
                f"cannot tell the SugarCrepe subset from the name {p.name!r}; keep the published names "
                f"({', '.join(s + '.json' for s in SUGARCREPE_SUBSETS)}) or pass subset='sugarcrepe_<name>'"
            )
        subset = SUGARCREPE_PREFIX + stem
    fix = 'the file must be a JSON object {"0": {"filename": ..., "caption": ..., "negative_caption": ...}, ...}'
    data = _read_json(p, dict, "a JSON dict", fix)
    kind = stem.split("_")[0] if "_" in stem else None
    items: list[MCQItem] = []
    for index, (key, row) in enumerate(data.items()):
        where = f"{index + 1} (id {key!r})"
        _require_keys(p, where, row, SUGARCREPE_FIELDS, fix, unit="entry")
        name = row["filename"]
        if not isinstance(name, str) or not name.strip():
            raise _error(p, where, "filename", f"expected an image file name, got {name!r}", "write e.g. 000000565045.jpg")
        captions = tuple(_check_caption(p, where, f, row[f], fix) for f in SUGARCREPE_FIELDS[1:])
        items.append(MCQItem(
            raw_image_path=name, image_path=resolve_image(name, image_root), captions=captions,
            label=SUGARCREPE_CORRECT_INDEX, subset=subset, group=kind, pair_key=None, row=index + 1, source=str(p),
        ))
    return items


#: Loader name -> loader, registered in ``dcsm.data.benchmarks.loaders.BENCHMARK_LOADERS``.
MORE_BENCHMARK_LOADERS: dict[str, Callable[..., list[MCQItem]]] = {
    "clevr_bind": load_clevr_bind,
    "vg_attribution": load_vg_attribution,
    "ncd": load_ncd,
    "sugarcrepe": load_sugarcrepe,
}

BENCHMARK_LOADERS.update(MORE_BENCHMARK_LOADERS)
