"""VG-Attribution (ARO, ``mertyg/vision-language-models-are-bows``, ``dataset_zoo/aro_datasets.py``
``VG_Attribution``).

``visual_genome_attribution.json``, a list of objects of which we read ``image_path`` (relative
to the ``images/`` folder; the DCSM reference names it ``VG_100K/``), ``bbox_x``, ``bbox_y``,
``bbox_w``, ``bbox_h`` (the image is cropped to ``(x, y, x + w, y + h)`` before scoring, as the
original does: :class:`~dcsm.data.benchmarks.items.BoxedMCQItem`), ``true_caption``,
``false_caption`` and, optionally, ``attributes`` (two words; group ``"{a0}_{a1}"``, the
original's per-attribute-pair label). Options in the original's order ``(false_caption,
true_caption)``, label 1. Subset ``vg_attribution``. Semantics follow the original code;
nothing is copied from it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .items import (
    BoxedMCQItem,
    MCQItem,
    PathLike,
    check_caption,
    format_error,
    json_row_label,
    read_json,
    require_keys,
    resolve_image,
)


# --- VG-Attribution ---------------------------------------------------------------------------
VGA_SUBSET = "vg_attribution"
VGA_BOX_FIELDS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
VGA_REQUIRED = ("image_path", *VGA_BOX_FIELDS, "true_caption", "false_caption")
VGA_OPTION_FIELDS = ("false_caption", "true_caption")  # the original's order
VGA_CORRECT_INDEX = 1
VGA_ATTRIBUTE_COUNT = 2


def _number(path: Path, where: str, field: str, value: Any, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise format_error(path, where, field, f"expected a number, got {value!r}", fix)
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
    rows = read_json(p, list, "a JSON list", fix)
    items: list[MCQItem] = []
    for index, row in enumerate(rows):
        where = json_row_label(index)
        require_keys(p, where, row, VGA_REQUIRED, fix)
        raw = row["image_path"]
        if not isinstance(raw, str) or not raw.strip():
            raise format_error(p, where, "image_path", f"expected a non-empty path string, got {raw!r}", fix)
        x, y, w, h = (_number(p, where, k, row[k], "write the box in pixels") for k in VGA_BOX_FIELDS)
        if w <= 0 or h <= 0:
            field = "bbox_w" if w <= 0 else "bbox_h"
            raise format_error(p, where, field, f"box size must be positive, got {row[field]!r}", "write the box in pixels")
        captions = tuple(check_caption(p, where, k, row[k], fix) for k in VGA_OPTION_FIELDS)
        group = None
        attrs = row.get("attributes")
        if attrs is not None:
            if (not isinstance(attrs, list) or len(attrs) < VGA_ATTRIBUTE_COUNT
                    or not all(isinstance(a, str) for a in attrs[:VGA_ATTRIBUTE_COUNT])):
                raise format_error(p, where, "attributes", f"expected a list of two attribute words, got {attrs!r}",
                             "write the two attributes, e.g. [\"white\", \"black\"], or drop the key")
            group = "_".join(attrs[:VGA_ATTRIBUTE_COUNT])
        items.append(BoxedMCQItem(
            raw_image_path=raw, image_path=resolve_image(raw, image_root), captions=captions,
            label=VGA_CORRECT_INDEX, subset=VGA_SUBSET, group=group, pair_key=None, row=index + 1,
            source=str(p), crop_box=(x, y, x + w, y + h),
        ))
    return items
