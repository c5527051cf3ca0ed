"""WhatsUp Controlled-A / Controlled-B (the WhatsUp benchmark's controlled-images loader).

A JSON list of ``{"image_path": "data/controlled_images/<obj1>_<relation>_<obj2>.jpeg",
"caption_options": [correct, wrong1, wrong2, wrong3]}``. The original opens ``image_path``
relative to the repository root whose ``data/`` folder is the data root, i.e. the leading
``data/`` is the data root itself (the DCSM reference code strips those 5 characters and
joins its root). The relation comes from the file name: ``left_of``, ``right_of``, ``_on_``
else ``under`` (A); ``left_of``, ``right_of``, ``_in-front_of_`` else ``behind`` (B). The
object pair used for pair/set accuracy is (first ``_`` field, last ``_`` field without its
extension) of the file name; the relation slot is the second ``_`` field. The label of every
item is 0 (the first option is always correct); rows are numbered from 1. Semantics follow
the original code; nothing is copied from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .items import (
    DATA_PREFIX,
    MCQItem,
    PathLike,
    FIRST_ROW,
    check_caption,
    format_error,
    json_row_label,
    read_json_list,
    require_keys,
    type_name,
    resolve_image,
)


__all__ = ["load_whatsup_controlled"]

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
    rows = read_json_list(json_path, fix_list)
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
        label = json_row_label(index)
        require_keys(json_path, label, row, ("image_path", "caption_options"), fix_list, field="image_path")
        raw = row["image_path"]
        if not isinstance(raw, str) or not raw.strip():
            raise format_error(
                json_path, label, "image_path", f"expected a non-empty path string, got {raw!r}",
                "write the image path, e.g. 'data/controlled_images/mug_on_table.jpeg'",
            )
        options = row["caption_options"]
        fix_opts = f"give exactly {WHATSUP_NUM_OPTIONS} caption strings, the correct one first"
        if not isinstance(options, list):
            raise format_error(
                json_path, label, "caption_options",
                f"expected a list of {WHATSUP_NUM_OPTIONS} strings, got {type_name(options)}", fix_opts,
            )
        if len(options) != WHATSUP_NUM_OPTIONS:
            raise format_error(
                json_path, label, "caption_options",
                f"expected {WHATSUP_NUM_OPTIONS} options, got {len(options)}", fix_opts,
            )
        captions = tuple(
            check_caption(json_path, label, f"caption_options[{k}]", c, fix_opts) for k, c in enumerate(options)
        )
        file_name = Path(raw.replace("\\", "/")).name
        relation = _whatsup_relation(file_name, variant)
        fields = file_name.split(_NAME_FIELD_SEP)
        slot = fields[_SLOT_FIELD] if len(fields) > _SLOT_FIELD else None
        if slot != WHATSUP_RELATION_SLOT[relation]:
            raise format_error(
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
                row=index + FIRST_ROW,
                source=source,
            )
        )
    return items
