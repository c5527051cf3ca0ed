"""What every benchmark loader returns and shares: :class:`MCQItem` (one image, its caption
options, the correct index; :class:`BoxedMCQItem` adds a crop box), :class:`BenchmarkFormatError`
(names the file, the 1-based row, the field, what was found and the fix), and the readers the
loaders share (JSON, CSV rows, captions, image paths)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from PIL import Image


__all__ = ["BenchmarkFormatError", "MCQItem", "resolve_image", "missing_images"]

PathLike = str | Path

#: Prefix of WhatsUp / NegBench image paths: the original repositories' data folder.
DATA_PREFIX = "data/"


CSV_ENCODING = "utf-8-sig"  # reads UTF-8 with or without a byte-order mark
HEADER_LINE = 1
FIRST_ROW = 1


class BenchmarkFormatError(ValueError):
    """A benchmark annotation file does not have the expected format.

    The message names the file, the row (1-based), the field, what was found and how to fix it.
    """


@dataclass(frozen=True)
class MCQItem:
    """One multiple-choice question: an image and its caption options."""

    raw_image_path: str
    """Image path exactly as written in the file (COCO/GQA: the path derived from the id)."""
    image_path: Path | None
    """The image on disk, or None if it was not found under the image root."""
    captions: tuple[str, ...]
    """Options as in the file; prompt styles are applied later (dcsm.data.benchmarks.prompts)."""
    label: int
    """Index of the correct option."""
    subset: str
    """e.g. controlled_a, controlled_b, coco_qa_one, gqa_qa_two, negbench_coco, negbench_voc."""
    group: str | None
    """WhatsUp: preposition; NegBench: question type; COCO/GQA: preposition (original groups)."""
    pair_key: str | None
    """WhatsUp controlled: object-pair id ("obj1|obj2") used for pair/set accuracy."""
    row: int
    """1-based row in the source file."""
    source: str
    """Path of the annotation file the item came from."""


def format_error(path: PathLike, row: int | str, field: str, problem: str, fix: str) -> BenchmarkFormatError:
    """Build a BenchmarkFormatError with the standard ``file: row: field: problem. Fix`` text."""
    p = Path(path)
    return BenchmarkFormatError(f"{p.name}: row {row}: field '{field}': {problem}. Fix: {fix} (file: {p})")


def json_row_label(index: int) -> str:
    """Human row label for a JSON list element: 1-based row plus the 0-based list index."""
    return f"{index + FIRST_ROW} (list index {index})"


def type_name(value: Any) -> str:
    return type(value).__name__


def read_json(path: PathLike, expected: type, what: str, fix: str) -> Any:
    """Parse a JSON file whose top level must be an ``expected`` (``what`` names it in the error)."""
    p = Path(path)
    try:
        with open(p, encoding=CSV_ENCODING) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise BenchmarkFormatError(
            f"{p.name}: line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}). "
            f"Fix: repair the JSON syntax or re-download the file (file: {p})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BenchmarkFormatError(
            f"{p.name}: not valid UTF-8 ({exc.reason} at byte {exc.start}). "
            f"Fix: save the file as UTF-8 (file: {p})"
        ) from exc
    if not isinstance(data, expected):
        raise BenchmarkFormatError(
            f"{p.name}: top level: expected {what}, got {type_name(data)}. Fix: {fix} (file: {p})"
        )
    return data


def read_json_list(path: PathLike, fix: str) -> list[Any]:
    """Parse a JSON file whose top level must be a list of rows."""
    return read_json(path, list, "a JSON list of rows", fix)


def check_caption(path: PathLike, row: int | str, field: str, value: Any, fix: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise a BenchmarkFormatError."""
    if not isinstance(value, str):
        raise format_error(path, row, field, f"expected a caption string, got {type_name(value)}", fix)
    if not value.strip():
        raise format_error(path, row, field, "caption is empty", fix)
    return value


def require_keys(path: PathLike, where: str, row: Any, keys: tuple[str, ...] | list[str], fix: str,
                  *, field: str = "row", unit: str = "row") -> dict:
    """``row`` is a JSON object holding every key of ``keys``; returns it.

    Raises:
        BenchmarkFormatError: naming ``field`` (not an object) or the first missing key.
    """
    if not isinstance(row, dict):
        raise format_error(path, where, field, f"expected an object, got {type_name(row)}", fix)
    for key in keys:
        if key not in row:
            raise format_error(path, where, key, "key missing", f"add '{key}' to every {unit}; {fix}")
    return row


def csv_records(reader: Any, header: list[str], path: PathLike) -> Iterator[tuple[int, str, list[str]]]:
    """Non-blank records of a ``csv.reader`` past its header: ``(row number, row label, record)``,
    each checked to hold one value per header column."""
    row_no = 0
    for record in reader:
        if not record:  # blank line
            continue
        row_no += 1
        where = f"{row_no} (line {reader.line_num})"
        if len(record) != len(header):
            field = header[len(record)] if len(record) < len(header) else "(extra values)"
            raise format_error(
                path, where, field, f"expected {len(header)} comma-separated values, got {len(record)}",
                "quote captions that contain commas and give one value per header column",
            )
        yield row_no, where, record


def resolve_image(raw_path: str, image_root: PathLike | None, *, strip_prefix: str | None = None) -> Path | None:
    """Find an annotation's image under ``image_root``.

    Tries, in order: ``root / raw`` with ``strip_prefix`` removed (if given and present),
    ``root / raw`` as given, then ``root / basename(raw)``. Returns the first existing file,
    or None if none exists (or ``image_root`` is None).
    """
    if image_root is None or not raw_path:
        return None
    root = Path(image_root)
    candidates: list[Path] = []
    if strip_prefix and raw_path.startswith(strip_prefix):
        candidates.append(root / raw_path[len(strip_prefix):])
    candidates.append(root / raw_path)
    candidates.append(root / Path(raw_path.replace("\\", "/")).name)
    for cand in candidates:
        if cand.is_file():
            return cand
    return None


def missing_images(items: list[MCQItem] | tuple[MCQItem, ...]) -> list[str]:
    """Raw image paths of the items whose image was not found, in item order."""
    return [item.raw_image_path for item in items if item.image_path is None]



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
