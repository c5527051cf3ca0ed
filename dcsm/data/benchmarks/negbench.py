"""NegBench MCQ (the NegBench MCQ loader and evaluation).

CSV with header ``image_path,correct_answer,caption_0..caption_3,correct_answer_template``;
columns are looked up by name; ``correct_answer`` is the index of the right caption and
``correct_answer_template`` the question type (``positive``/``negative``/``hybrid``). Rows are
numbered from 1 (first data row). Semantics follow the original code; nothing is copied from it."""

from __future__ import annotations

import csv
from pathlib import Path

from .items import (
    BenchmarkFormatError,
    DATA_PREFIX,
    MCQItem,
    PathLike,
    CSV_ENCODING,
    FIRST_ROW,
    HEADER_LINE,
    check_caption,
    csv_records,
    format_error,
    resolve_image,
)


__all__ = ["load_negbench_mcq", "NEGBENCH_QUESTION_TYPES"]

# --- NegBench ---------------------------------------------------------------------------------
NEGBENCH_QUESTION_TYPES = ("positive", "negative", "hybrid")
NEGBENCH_REQUIRED_COLUMNS = ("image_path", "correct_answer", "correct_answer_template")
NEGBENCH_CAPTION_PREFIX = "caption_"
NEGBENCH_MIN_OPTIONS = 2
_NEGBENCH_SUBSETS = (("coco", "negbench_coco"), ("voc", "negbench_voc"))


def _negbench_subset(csv_path: PathLike) -> str:
    stem = Path(csv_path).stem
    low = stem.lower()
    for needle, subset in _NEGBENCH_SUBSETS:
        if low.startswith(needle):
            return subset
    return stem


def _caption_columns(header: list[str]) -> list[str]:
    """caption_0, caption_1, ... as long as they are present (contiguous from 0)."""
    cols: list[str] = []
    while f"{NEGBENCH_CAPTION_PREFIX}{len(cols)}" in header:
        cols.append(f"{NEGBENCH_CAPTION_PREFIX}{len(cols)}")
    return cols


def _negbench_item(
    csv_path: PathLike, image_root: PathLike | None, subset: str, col: dict[str, int], caption_cols: list[str],
    row_no: int, where: str, record: list[str],
) -> MCQItem:
    """One data row -> :class:`MCQItem`; :class:`BenchmarkFormatError` names the row and the field."""
    n_options = len(caption_cols)
    raw = record[col["image_path"]].strip()
    if not raw:
        raise format_error(csv_path, where, "image_path", "empty image path", "write the image path")
    answer_text = record[col["correct_answer"]].strip()
    try:
        answer = int(answer_text)
    except ValueError:
        raise format_error(
            csv_path, where, "correct_answer",
            f"expected an integer option index, got {answer_text!r}",
            f"write the index (0..{n_options - 1}) of the correct caption",
        ) from None
    if not 0 <= answer < n_options:
        raise format_error(
            csv_path, where, "correct_answer",
            f"index {answer} out of range for {n_options} options",
            f"write the index (0..{n_options - 1}) of the correct caption",
        )
    qtype = record[col["correct_answer_template"]].strip()
    if qtype not in NEGBENCH_QUESTION_TYPES:
        raise format_error(
            csv_path, where, "correct_answer_template",
            f"unknown question type {qtype!r}",
            f"use one of {', '.join(NEGBENCH_QUESTION_TYPES)} (lower case)",
        )
    captions = tuple(
        check_caption(csv_path, where, c, record[col[c]], "give every option a non-empty caption")
        for c in caption_cols
    )
    return MCQItem(
        raw_image_path=raw,
        image_path=resolve_image(raw, image_root, strip_prefix=DATA_PREFIX),
        captions=captions,
        label=answer,
        subset=subset,
        group=qtype,
        pair_key=None,
        row=row_no,
        source=str(csv_path),
    )


def load_negbench_mcq(csv_path: PathLike, image_root: PathLike | None, subset: str | None = None) -> list[MCQItem]:
    """Load a NegBench multiple-choice CSV (e.g. ``COCO_val_mcq_llama3.1_rephrased.csv``).

    Args:
        csv_path: UTF-8 CSV (with or without BOM); captions holding commas are quoted.
        image_root: folder the ``image_path`` column is resolved against: ``data/`` stripped,
            as given, then by file name (e.g. a ``val2017/`` folder).
        subset: subset name; None -> ``negbench_coco`` / ``negbench_voc`` from the file name,
            else the file stem.

    Returns:
        One MCQItem per data row: label = ``correct_answer``, group = question type.
    """
    p = Path(csv_path)
    sub = _negbench_subset(csv_path) if subset is None else subset
    fix_header = (
        "the header must be image_path,correct_answer,caption_0,...,caption_3,correct_answer_template "
        "(NegBench MCQ format)"
    )
    items: list[MCQItem] = []
    try:
        with open(p, encoding=CSV_ENCODING, newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise format_error(csv_path, f"0 (header line {HEADER_LINE})", "image_path", "file is empty", fix_header)
            header = [h.strip() for h in header]
            caption_cols = _caption_columns(header)
            missing = [c for c in NEGBENCH_REQUIRED_COLUMNS if c not in header]
            if len(caption_cols) < NEGBENCH_MIN_OPTIONS:
                missing.append(f"{NEGBENCH_CAPTION_PREFIX}{len(caption_cols)}")
            if missing:
                raise format_error(
                    csv_path, f"{FIRST_ROW} (and every row; header line {HEADER_LINE})", missing[0],
                    f"column missing from the header (found: {', '.join(header)})", fix_header,
                )
            col = {name: i for i, name in enumerate(header)}
            for row_no, where, record in csv_records(reader, header, csv_path):
                items.append(_negbench_item(csv_path, image_root, sub, col, caption_cols, row_no, where, record))
    except csv.Error as exc:
        raise BenchmarkFormatError(
            f"{p.name}: line {reader.line_num}: malformed CSV ({exc}). "
            f"Fix: close every quoted caption and escape inner quotes as \"\" (file: {p})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BenchmarkFormatError(
            f"{p.name}: not valid UTF-8 ({exc.reason} at byte {exc.start}). Fix: save the file as UTF-8 (file: {p})"
        ) from exc
    return items
