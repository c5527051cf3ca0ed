"""SugarCrepe (``RAIVNLab/sugar-crepe``, ``main_eval.py``).

Seven JSON files ``{add_att, add_obj, replace_att, replace_obj, replace_rel, swap_att,
swap_obj}.json``, each an object ``{id: {"filename", "caption", "negative_caption"}}`` over COCO
val2017 images (``filename`` relative to the val2017 folder). Options ``(caption,
negative_caption)``, label 0. Subset ``sugarcrepe_{name}``. The original counts a tie as wrong
(``pos > neg``); a tie for the top score counts as wrong (dcsm.eval.metrics.TIE_RULE).
Semantics follow the original code; nothing is copied from it."""

from __future__ import annotations

from pathlib import Path

from .items import MCQItem, PathLike, check_caption, format_error, read_json, require_keys, resolve_image


# --- SugarCrepe -------------------------------------------------------------------------------
SUGARCREPE_SUBSETS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
SUGARCREPE_PREFIX = "sugarcrepe_"
SUGARCREPE_FIELDS = ("filename", "caption", "negative_caption")
SUGARCREPE_CORRECT_INDEX = 0


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
    data = read_json(p, dict, "a JSON dict", fix)
    kind = stem.split("_")[0] if "_" in stem else None
    items: list[MCQItem] = []
    for index, (key, row) in enumerate(data.items()):
        where = f"{index + 1} (id {key!r})"
        require_keys(p, where, row, SUGARCREPE_FIELDS, fix, unit="entry")
        name = row["filename"]
        if not isinstance(name, str) or not name.strip():
            raise format_error(p, where, "filename", f"expected an image file name, got {name!r}", "write e.g. 000000565045.jpg")
        captions = tuple(check_caption(p, where, f, row[f], fix) for f in SUGARCREPE_FIELDS[1:])
        items.append(MCQItem(
            raw_image_path=name, image_path=resolve_image(name, image_root), captions=captions,
            label=SUGARCREPE_CORRECT_INDEX, subset=subset, group=kind, pair_key=None, row=index + 1, source=str(p),
        ))
    return items
