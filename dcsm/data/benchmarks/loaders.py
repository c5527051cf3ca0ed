"""Loaders for public multiple-choice benchmarks, reading the published files unchanged.

Supported formats (semantics follow the original code; nothing is copied from it):

* **WhatsUp Controlled-A / Controlled-B** (the WhatsUp benchmark's controlled-images
  loader): a JSON list of
  ``{"image_path": "data/controlled_images/<obj1>_<relation>_<obj2>.jpeg",
  "caption_options": [correct, wrong1, wrong2, wrong3]}``. The original opens ``image_path``
  relative to the repository root whose ``data/`` folder is the data root, i.e. the leading
  ``data/`` is the data root itself (the DCSM reference code strips those 5 characters and
  joins its root). The relation comes from the file name: ``left_of``, ``right_of``, ``_on_``
  else ``under`` (A); ``left_of``, ``right_of``, ``_in-front_of_`` else ``behind`` (B). The
  object pair used for pair/set accuracy is (first ``_`` field, last ``_`` field without its
  extension) of the file name; the relation slot is the second ``_`` field.
* **WhatsUp COCO-spatial / GQA-spatial** (its COCO and GQA question loaders): a JSON list of
  ``[image_id, correct_caption, wrong_caption]``; images ``val2017/{id:012d}.jpg`` (COCO) and
  ``vg_images/{id}.jpg`` (GQA). Groups are the original's per-preposition labels: the last
  word of the correct caption for one-object files; for two-object files ``left``/``right``
  (``"left of"``/``"right of"``), then ``above`` else ``below`` (COCO) or ``front``
  (``"front of"``), ``behind`` else ``top`` (GQA).
* **NegBench MCQ** (the NegBench MCQ loader and evaluation): CSV with header
  ``image_path,correct_answer,caption_0..caption_3,correct_answer_template``; columns are
  looked up by name; ``correct_answer`` is the index of the right caption and
  ``correct_answer_template`` the question type (``positive``/``negative``/``hybrid``).

The label of every WhatsUp item is 0 (the first option is always correct). Rows are numbered
from 1 (first data row of a CSV, first element of a JSON list).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "BenchmarkFormatError",
    "MCQItem",
    "resolve_image",
    "load_whatsup_controlled",
    "load_whatsup_qa",
    "load_negbench_mcq",
    "load_benchmark",
    "missing_images",
    "NEGBENCH_QUESTION_TYPES",
    "BENCHMARK_LOADERS",
]

PathLike = str | Path

#: Prefix of WhatsUp / NegBench image paths: the original repositories' data folder.
DATA_PREFIX = "data/"

# --- WhatsUp Controlled-A/B -------------------------------------------------------------------
WHATSUP_NUM_OPTIONS = 4
WHATSUP_CORRECT_INDEX = 0
WHATSUP_SUBSETS = {"A": "controlled_a", "B": "controlled_b"}
#: Substring of the file name -> preposition, tried in order; the last entry is the fallback.
_WHATSUP_RELATION_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "A": (("left_of", "left_of"), ("right_of", "right_of"), ("_on_", "on")),
    "B": (("left_of", "left_of"), ("right_of", "right_of"), ("_in-front_of_", "in-front_of")),
}
_WHATSUP_FALLBACK_RELATION = {"A": "under", "B": "behind"}
#: Preposition -> the second "_" field of a well-formed file name (the original's slot key).
WHATSUP_RELATION_SLOT = {
    "left_of": "left",
    "right_of": "right",
    "on": "on",
    "under": "under",
    "in-front_of": "in-front",
    "behind": "behind",
}
_NAME_FIELD_SEP = "_"
_PAIR_KEY_SEP = "|"
_SLOT_FIELD = 1
#: The DCSM reference renames on/under images on disk (src/util/models_and_dataloaders.py,
#: ``rename_whatsup_files``); such renamed copies are found as a fallback.
_REFERENCE_RENAMES = (("_on_", "_above_"), ("_under_", "_below_"))

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

# --- NegBench ---------------------------------------------------------------------------------
NEGBENCH_QUESTION_TYPES = ("positive", "negative", "hybrid")
NEGBENCH_REQUIRED_COLUMNS = ("image_path", "correct_answer", "correct_answer_template")
NEGBENCH_CAPTION_PREFIX = "caption_"
NEGBENCH_MIN_OPTIONS = 2
_NEGBENCH_SUBSETS = (("coco", "negbench_coco"), ("voc", "negbench_voc"))
_CSV_ENCODING = "utf-8-sig"  # reads UTF-8 with or without a byte-order mark
_HEADER_LINE = 1
_FIRST_ROW = 1


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


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _error(path: PathLike, row: int | str, field: str, problem: str, fix: str) -> BenchmarkFormatError:
    """Build a BenchmarkFormatError with the standard ``file: row: field: problem. Fix`` text."""
    p = Path(path)
    return BenchmarkFormatError(f"{p.name}: row {row}: field '{field}': {problem}. Fix: {fix} (file: {p})")


def _json_row_label(index: int) -> str:
    """Human row label for a JSON list element: 1-based row plus the 0-based list index."""
    return f"{index + _FIRST_ROW} (list index {index})"


def _type_name(value: Any) -> str:
    return type(value).__name__


def _read_json(path: PathLike, expected: type, what: str, fix: str) -> Any:
    """Parse a JSON file whose top level must be an ``expected`` (``what`` names it in the error)."""
    p = Path(path)
    try:
        with open(p, encoding=_CSV_ENCODING) as fh:
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
            f"{p.name}: top level: expected {what}, got {_type_name(data)}. Fix: {fix} (file: {p})"
        )
    return data


def _read_json_list(path: PathLike, fix: str) -> list[Any]:
    """Parse a JSON file whose top level must be a list of rows."""
    return _read_json(path, list, "a JSON list of rows", fix)


def _check_caption(path: PathLike, row: int | str, field: str, value: Any, fix: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise a BenchmarkFormatError."""
    if not isinstance(value, str):
        raise _error(path, row, field, f"expected a caption string, got {_type_name(value)}", fix)
    if not value.strip():
        raise _error(path, row, field, "caption is empty", fix)
    return value


def _require_keys(path: PathLike, where: str, row: Any, keys: tuple[str, ...] | list[str], fix: str,
                  *, field: str = "row", unit: str = "row") -> dict:
    """``row`` is a JSON object holding every key of ``keys``; returns it.

    Raises:
        BenchmarkFormatError: naming ``field`` (not an object) or the first missing key.
    """
    if not isinstance(row, dict):
        raise _error(path, where, field, f"expected an object, got {_type_name(row)}", fix)
    for key in keys:
        if key not in row:
            raise _error(path, where, key, "key missing", f"add '{key}' to every {unit}; {fix}")
    return row


def _csv_records(reader: Any, header: list[str], path: PathLike) -> Iterator[tuple[int, str, list[str]]]:
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
            raise _error(
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


# ---------------------------------------------------------------------------------------------
# WhatsUp Controlled-A / -B
# ---------------------------------------------------------------------------------------------


def _whatsup_relation(file_name: str, variant: str) -> str:
    """Preposition of a controlled image from its file name, with the original's rules."""
    for needle, relation in _WHATSUP_RELATION_RULES[variant]:
        if needle in file_name:
            return relation
    return _WHATSUP_FALLBACK_RELATION[variant]


def _whatsup_pair_key(file_name: str) -> str:
    """Object-pair id: first "_" field and last "_" field (extension removed) of the name."""
    fields = Path(file_name).stem.split(_NAME_FIELD_SEP)
    return f"{fields[0]}{_PAIR_KEY_SEP}{fields[-1]}"


def _infer_whatsup_variant(json_path: PathLike, rows: list[Any]) -> str:
    """A for controlled_images*, B for controlled_clevr*; otherwise from the file names."""
    name = Path(json_path).name.lower()
    if "clevr" in name:
        return "B"
    if "controlled_images" in name:
        return "A"
    b_slots = {WHATSUP_RELATION_SLOT["in-front_of"], WHATSUP_RELATION_SLOT["behind"]}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("image_path"), str):
            fields = Path(row["image_path"]).name.split(_NAME_FIELD_SEP)
            if len(fields) > _SLOT_FIELD and fields[_SLOT_FIELD] in b_slots:
                return "B"
    return "A"


def _resolve_whatsup_image(raw: str, image_root: PathLike | None) -> Path | None:
    """resolve_image with the ``data/`` prefix stripped, then the reference's renamed copies."""
    found = resolve_image(raw, image_root, strip_prefix=DATA_PREFIX)
    if found is not None or image_root is None:
        return found
    renamed = raw
    for old, new in _REFERENCE_RENAMES:
        renamed = renamed.replace(old, new)
    if renamed != raw:
        return resolve_image(renamed, image_root, strip_prefix=DATA_PREFIX)
    return None


def load_whatsup_controlled(
    json_path: PathLike, image_root: PathLike | None, variant: str | None = None
) -> list[MCQItem]:
    """Load WhatsUp Controlled-A (``controlled_images_dataset.json``) or -B (``controlled_clevr``).

    Args:
        json_path: the annotation JSON, unchanged from the original release.
        image_root: folder holding ``controlled_images/`` / ``controlled_clevr/`` (the original
            ``data/`` root), or the image folder itself; None leaves every ``image_path`` None.
        variant: "A" or "B"; None infers it from the file name (controlled_clevr -> B).

    Returns:
        One MCQItem per row, label 0, group = preposition, pair_key = object pair.
    """
    fix_list = "the file must be a JSON list of {'image_path': str, 'caption_options': [4 strings]}"
    rows = _read_json_list(json_path, fix_list)
    if variant is None:
        variant = _infer_whatsup_variant(json_path, rows)
    variant = str(variant).upper()
    if variant not in WHATSUP_SUBSETS:
        raise ValueError(f"variant must be one of {sorted(WHATSUP_SUBSETS)} or None, got {variant!r}")
    subset = WHATSUP_SUBSETS[variant]
    allowed = [r for _, r in _WHATSUP_RELATION_RULES[variant]] + [_WHATSUP_FALLBACK_RELATION[variant]]
    source = str(json_path)
    items: list[MCQItem] = []
    for index, row in enumerate(rows):
        label = _json_row_label(index)
        _require_keys(json_path, label, row, ("image_path", "caption_options"), fix_list, field="image_path")
        raw = row["image_path"]
        if not isinstance(raw, str) or not raw.strip():
            raise _error(
                json_path, label, "image_path", f"expected a non-empty path string, got {raw!r}",
                "write the image path, e.g. 'data/controlled_images/mug_on_table.jpeg'",
            )
        options = row["caption_options"]
        fix_opts = f"give exactly {WHATSUP_NUM_OPTIONS} caption strings, the correct one first"
        if not isinstance(options, list):
            raise _error(
                json_path, label, "caption_options",
                f"expected a list of {WHATSUP_NUM_OPTIONS} strings, got {_type_name(options)}", fix_opts,
            )
        if len(options) != WHATSUP_NUM_OPTIONS:
            raise _error(
                json_path, label, "caption_options",
                f"expected {WHATSUP_NUM_OPTIONS} options, got {len(options)}", fix_opts,
            )
        captions = tuple(
            _check_caption(json_path, label, f"caption_options[{k}]", c, fix_opts) for k, c in enumerate(options)
        )
        file_name = Path(raw.replace("\\", "/")).name
        relation = _whatsup_relation(file_name, variant)
        fields = file_name.split(_NAME_FIELD_SEP)
        slot = fields[_SLOT_FIELD] if len(fields) > _SLOT_FIELD else None
        if slot != WHATSUP_RELATION_SLOT[relation]:
            raise _error(
                json_path, label, "image_path",
                f"file name {file_name!r} does not encode a Controlled-{variant} relation "
                f"({', '.join(allowed)}) as its second '_' field",
                "name images <object1>_<relation>_<object2>.jpeg with '-' inside object names, "
                "or pass variant='A'/'B' matching the file (B uses in-front_of/behind)",
            )
        items.append(
            MCQItem(
                raw_image_path=raw,
                image_path=_resolve_whatsup_image(raw, image_root),
                captions=captions,
                label=WHATSUP_CORRECT_INDEX,
                subset=subset,
                group=relation,
                pair_key=_whatsup_pair_key(file_name),
                row=index + _FIRST_ROW,
                source=source,
            )
        )
    return items


# ---------------------------------------------------------------------------------------------
# WhatsUp COCO-spatial / GQA-spatial
# ---------------------------------------------------------------------------------------------


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
    rows = _read_json_list(json_path, f"the file must be a JSON list of rows; {fix_row}")
    subset = f"{src}_qa_{count}"
    items: list[MCQItem] = []
    for index, row in enumerate(rows):
        label = _json_row_label(index)
        if not isinstance(row, list):
            raise _error(json_path, label, "row", f"expected a list, got {_type_name(row)}", fix_row)
        if len(row) != len(QA_ROW_FIELDS):
            raise _error(
                json_path, label, "row", f"expected {len(QA_ROW_FIELDS)} entries, got {len(row)}", fix_row
            )
        image_id = row[0]
        id_ok = (isinstance(image_id, int) and not isinstance(image_id, bool)) or (
            isinstance(image_id, str) and image_id.strip() != ""
        )
        if not id_ok:
            raise _error(
                json_path, label, f"[0] {QA_ROW_FIELDS[0]}",
                f"expected an integer or string image id, got {_type_name(image_id)}", fix_row,
            )
        captions = tuple(
            _check_caption(json_path, label, f"[{k}] {QA_ROW_FIELDS[k]}", row[k], fix_row)
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
                row=index + _FIRST_ROW,
                source=str(json_path),
            )
        )
    return items


# ---------------------------------------------------------------------------------------------
# NegBench MCQ
# ---------------------------------------------------------------------------------------------


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
        with open(p, encoding=_CSV_ENCODING, newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise _error(csv_path, f"0 (header line {_HEADER_LINE})", "image_path", "file is empty", fix_header)
            header = [h.strip() for h in header]
            caption_cols = _caption_columns(header)
            missing = [c for c in NEGBENCH_REQUIRED_COLUMNS if c not in header]
            if len(caption_cols) < NEGBENCH_MIN_OPTIONS:
                missing.append(f"{NEGBENCH_CAPTION_PREFIX}{len(caption_cols)}")
            if missing:
                raise _error(
                    csv_path, f"{_FIRST_ROW} (and every row; header line {_HEADER_LINE})", missing[0],
                    f"column missing from the header (found: {', '.join(header)})", fix_header,
                )
            col = {name: i for i, name in enumerate(header)}
            n_options = len(caption_cols)
            for row_no, where, record in _csv_records(reader, header, csv_path):
                raw = record[col["image_path"]].strip()
                if not raw:
                    raise _error(csv_path, where, "image_path", "empty image path", "write the image path")
                answer_text = record[col["correct_answer"]].strip()
                try:
                    answer = int(answer_text)
                except ValueError:
                    raise _error(
                        csv_path, where, "correct_answer",
                        f"expected an integer option index, got {answer_text!r}",
                        f"write the index (0..{n_options - 1}) of the correct caption",
                    ) from None
                if not 0 <= answer < n_options:
                    raise _error(
                        csv_path, where, "correct_answer",
                        f"index {answer} out of range for {n_options} options",
                        f"write the index (0..{n_options - 1}) of the correct caption",
                    )
                qtype = record[col["correct_answer_template"]].strip()
                if qtype not in NEGBENCH_QUESTION_TYPES:
                    raise _error(
                        csv_path, where, "correct_answer_template",
                        f"unknown question type {qtype!r}",
                        f"use one of {', '.join(NEGBENCH_QUESTION_TYPES)} (lower case)",
                    )
                captions = tuple(
                    _check_caption(csv_path, where, c, record[col[c]], "give every option a non-empty caption")
                    for c in caption_cols
                )
                items.append(
                    MCQItem(
                        raw_image_path=raw,
                        image_path=resolve_image(raw, image_root, strip_prefix=DATA_PREFIX),
                        captions=captions,
                        label=answer,
                        subset=sub,
                        group=qtype,
                        pair_key=None,
                        row=row_no,
                        source=str(csv_path),
                    )
                )
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


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------

BENCHMARK_LOADERS: dict[str, Callable[..., list[MCQItem]]] = {
    "whatsup": load_whatsup_controlled,
    "whatsup_qa": load_whatsup_qa,
    "negbench": load_negbench_mcq,
}


def load_benchmark(name: str, annotation_file: PathLike, image_root: PathLike | None, **kw: Any) -> list[MCQItem]:
    """Load a benchmark by name ("whatsup", "whatsup_qa", "negbench"); ``kw`` go to its loader."""
    key = name.lower()
    if key not in BENCHMARK_LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARK_LOADERS)}")
    return BENCHMARK_LOADERS[key](annotation_file, image_root, **kw)


def missing_images(items: list[MCQItem] | tuple[MCQItem, ...]) -> list[str]:
    """Raw image paths of the items whose image was not found, in item order."""
    return [item.raw_image_path for item in items if item.image_path is None]

