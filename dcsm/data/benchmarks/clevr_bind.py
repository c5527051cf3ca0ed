"""CLEVR-bind (``marthaflinderslewis/clip-binding``, ``datasets/clevr_dataset.py``
``ObjectDataset``; read the same way by the DCSM reference, ``CLEVR_bind``).

``two_object/{train,val,gen}.csv`` with columns looked up by name: ``file_name``, ``pos``,
``neg_0`` .. ``neg_3`` (other columns are ignored). Options ``(pos, neg_0, ..., neg_3)``,
label 0. Images ``two_object/images/{split}/{file_name}``. Subset ``clevr_bind_{split}``.
Semantics follow the original code; nothing is copied from it."""

from __future__ import annotations

import csv
from pathlib import Path

from .items import (
    BenchmarkFormatError,
    MCQItem,
    PathLike,
    CSV_ENCODING,
    check_caption,
    csv_records,
    format_error,
    resolve_image,
)


# --- CLEVR-bind -------------------------------------------------------------------------------
CLEVR_BIND_SPLITS = ("train", "val", "gen")
CLEVR_FILE_COLUMN = "file_name"
CLEVR_POS_COLUMN = "pos"
CLEVR_NEG_PREFIX = "neg_"
CLEVR_MIN_NEGATIVES = 1
CLEVR_IMAGE_DIR = "images"  # two_object/images/{split}/
CLEVR_CORRECT_INDEX = 0


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
        with open(p, encoding=CSV_ENCODING, newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise format_error(p, "0 (header line 1)", CLEVR_FILE_COLUMN, "file is empty", fix_header)
            header = [h.strip() for h in header]
            negs: list[str] = []
            while f"{CLEVR_NEG_PREFIX}{len(negs)}" in header:
                negs.append(f"{CLEVR_NEG_PREFIX}{len(negs)}")
            missing = [c for c in (CLEVR_FILE_COLUMN, CLEVR_POS_COLUMN) if c not in header]
            if len(negs) < CLEVR_MIN_NEGATIVES:
                missing.append(f"{CLEVR_NEG_PREFIX}0")
            if missing:
                raise format_error(
                    p, "1 (and every row; header line 1)", missing[0],
                    f"column missing from the header (found: {', '.join(header)})", fix_header,
                )
            col = {name: i for i, name in enumerate(header)}
            option_cols = [CLEVR_POS_COLUMN, *negs]
            for row_no, where, record in csv_records(reader, header, p):
                name = record[col[CLEVR_FILE_COLUMN]].strip()
                if not name:
                    raise format_error(p, where, CLEVR_FILE_COLUMN, "empty file name", "write the image file name")
                captions = tuple(
                    check_caption(p, where, c, record[col[c]], "give every option a non-empty caption")
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
