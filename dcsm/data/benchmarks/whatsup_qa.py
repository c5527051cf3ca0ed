"""WhatsUp COCO-spatial / GQA-spatial (the WhatsUp benchmark's COCO and GQA question loaders).

A JSON list of ``[image_id, correct_caption, wrong_caption]``; images ``val2017/{id:012d}.jpg``
(COCO) and ``vg_images/{id}.jpg`` (GQA). Groups are the original's per-preposition labels: the
last word of the correct caption for one-object files; for two-object files ``left``/``right``
(``"left of"``/``"right of"``), then ``above`` else ``below`` (COCO) or ``front``
(``"front of"``), ``behind`` else ``top`` (GQA). Label 0; rows are numbered from 1. Semantics
follow the original code; nothing is copied from it."""

from __future__ import annotations

from pathlib import Path

from .items import (
    MCQItem,
    PathLike,
    FIRST_ROW,
    check_caption,
    format_error,
    json_row_label,
    read_json_list,
    type_name,
    resolve_image,
)


__all__ = ["load_whatsup_qa"]

# --- WhatsUp COCO/GQA spatial -----------------------------------------------------------------
QA_ROW_FIELDS = ("image_id", "correct_caption", "wrong_caption")
QA_CORRECT_INDEX = 0
QA_SOURCES = ("coco", "gqa")
QA_OBJECT_COUNTS = ("one", "two")
COCO_ID_WIDTH = 12
_QA_SOURCE_ALIASES = {"coco": "coco", "gqa": "gqa", "vg": "gqa"}
#: Two-object relation rules (substring of the correct caption -> group), then the fallback.
_QA_TWO_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "coco": (("left of", "left"), ("right of", "right"), ("above", "above")),
    "gqa": (("left of", "left"), ("right of", "right"), ("front of", "front"), ("behind", "behind")),
}
_QA_TWO_FALLBACK = {"coco": "below", "gqa": "top"}


def _infer_qa_source(json_path: PathLike) -> str:
    stem = Path(json_path).stem.lower()
    if stem.startswith("coco"):
        return "coco"
    if stem.startswith("vg") or "gqa" in stem:
        return "gqa"
    raise ValueError(
        f"cannot tell COCO from GQA by the name {Path(json_path).name!r}; pass source='coco' or 'gqa'"
    )


def _infer_qa_objects(json_path: PathLike) -> str:
    fields = Path(json_path).stem.lower().replace("-", "_").split("_")
    for count in QA_OBJECT_COUNTS:
        if count in fields:
            return count
    raise ValueError(
        f"cannot tell one- from two-object by the name {Path(json_path).name!r}; "
        "pass objects='one' or 'two' (or keep the original names *_qa_one_obj.json / *_qa_two_obj.json)"
    )


def _qa_group(correct_caption: str, source: str, objects: str) -> str:
    """The original per-preposition label of a COCO/GQA spatial item."""
    if objects == "one":
        return correct_caption.split()[-1]
    for needle, group in _QA_TWO_RULES[source]:
        if needle in correct_caption:
            return group
    return _QA_TWO_FALLBACK[source]


def _qa_image_path(image_id: int | str, source: str) -> str:
    if source == "coco":
        return f"val2017/{str(image_id).zfill(COCO_ID_WIDTH)}.jpg"
    return f"vg_images/{image_id}.jpg"


def load_whatsup_qa(
    json_path: PathLike,
    image_root: PathLike | None,
    source: str | None = None,
    objects: str | None = None,
) -> list[MCQItem]:
    """Load WhatsUp COCO-spatial / GQA-spatial (``coco_qa_{one,two}_obj.json``, ``vg_qa_*``).

    Args:
        json_path: JSON list of ``[image_id, correct_caption, wrong_caption]``.
        image_root: folder holding ``val2017/`` / ``vg_images/`` (or the image folder itself).
        source: "coco" or "gqa" ("vg" accepted); None infers it from the file name.
        objects: "one" or "two"; None infers it from the file name.

    Returns:
        MCQItems with label 0, subset ``{source}_qa_{objects}``, group = original preposition,
        and raw_image_path = the derived relative path (``val2017/000000123456.jpg``).
    """
    src = _infer_qa_source(json_path) if source is None else _QA_SOURCE_ALIASES.get(str(source).lower())
    if src not in QA_SOURCES:
        raise ValueError(f"source must be one of {QA_SOURCES} (or 'vg'), got {source!r}")
    count = _infer_qa_objects(json_path) if objects is None else str(objects).lower()
    if count not in QA_OBJECT_COUNTS:
        raise ValueError(f"objects must be one of {QA_OBJECT_COUNTS}, got {objects!r}")
    fix_row = "each row must be [image_id, correct_caption, wrong_caption]"
    rows = read_json_list(json_path, f"the file must be a JSON list of rows; {fix_row}")
    subset = f"{src}_qa_{count}"
    items: list[MCQItem] = []
    for index, row in enumerate(rows):
        label = json_row_label(index)
        if not isinstance(row, list):
            raise format_error(json_path, label, "row", f"expected a list, got {type_name(row)}", fix_row)
        if len(row) != len(QA_ROW_FIELDS):
            raise format_error(
                json_path, label, "row", f"expected {len(QA_ROW_FIELDS)} entries, got {len(row)}", fix_row
            )
        image_id = row[0]
        id_ok = (isinstance(image_id, int) and not isinstance(image_id, bool)) or (
            isinstance(image_id, str) and image_id.strip() != ""
        )
        if not id_ok:
            raise format_error(
                json_path, label, f"[0] {QA_ROW_FIELDS[0]}",
                f"expected an integer or string image id, got {type_name(image_id)}", fix_row,
            )
        captions = tuple(
            check_caption(json_path, label, f"[{k}] {QA_ROW_FIELDS[k]}", row[k], fix_row)
            for k in range(1, len(QA_ROW_FIELDS))
        )
        rel = _qa_image_path(image_id, src)
        items.append(
            MCQItem(
                raw_image_path=rel,
                image_path=resolve_image(rel, image_root),
                captions=captions,
                label=QA_CORRECT_INDEX,
                subset=subset,
                group=_qa_group(captions[QA_CORRECT_INDEX], src, count),
                pair_key=None,
                row=index + FIRST_ROW,
                source=str(json_path),
            )
        )
    return items
