"""Read the DCSM paper's released training data (``Raphoo/DCSM_Ideal_CLIP``) into plain samples.

The authors' data folder (their ``--data_path``; ``src/training/training_util.py``
``make_and_return_train_data`` and ``src/training/toydataset_dense.py``) holds:

* ``objaverse_train_composite_newrelations_withbg/`` -- **spatial**: ``A_{above|below|leftof|rightof}_B.png``
  (exactly three ``_`` fields) with the opposite scene ``CUTMIX_A_rel_B.png`` beside it. A
  file is a sample if its name contains none of ``CUTMIX`` and one of the four relation words
  and it ends in ``.png``/``.jpeg``/``.jpg`` (their ``ObjaverseDataset_spatial``).
* ``objaverse_attributes_overlay_withbg/`` and ``objaverse_smallbig_withbg/`` -- **attributes**
  (colours) and **small/big**: ``c1_A_c2_B.png`` (the first four ``_`` fields are read) with the
  opposite ``MIRROR_c1_A_c2_B.png``; names containing ``MIRROR`` are not samples
  (``ObjaverseDataset_color``).
* ``negated_pairs_cocotrain_v1.json`` -- **negation**: a JSON list of ``{"img1_path",
  "img2_path", "img1_obj", "img2_obj"}``; paths relative to the data folder (Windows
  backslashes accepted), ``img*_obj`` lists of object names, entry ``v`` used by phrasing ``v``
  (``Negation_Dataset``). The image of ``img1`` is the sample, ``img2`` its opposite.
* COCO crops in the same ``c1_A_c2_B`` naming but without ``MIRROR_`` opposites (their README:
  "the attribute-wise opposite_image for COCO_train is missing"): samples with the opposite
  caption and no opposite image.

Captions are built from the names as their dataset classes do, for both of their phrasings
(``settype`` 0 and 1; their training steps over both):

* spatial, words ``above``, ``below``, ``to the left of`` (``leftof``), ``to the right of``
  (``rightof``): phrasing 0 ``"A picture of a A rel a B"`` / opposite ``"A picture of a B rel a
  A"``; phrasing 1 ``"A picture of a B rel' a A"`` / ``"A picture of a A rel' a B"`` with rel' the
  inverse relation;
* attributes: phrasing 0 ``"A picture of a c1 A and a c2 B"`` / ``"A picture of a c2 A and a c1
  B"``; phrasing 1 ``"A picture of a c2 B and a c1 A"`` / ``"A picture of a c1 B and a c2 A"``;
* negation: ``"An image of a o1 W a o2"`` / ``"An image of a o2 W' a o1"`` with W, W' drawn
  from ``and not``, ``but no``, ``without`` (the authors draw them with ``random.choice`` on
  every access; here they are drawn once, seeded by (seed, entry, phrasing)).

Every sample is a plain dict ``{"image", "opposite_image" (None for COCO), "caption",
"opposite_caption", "category", "source", "origin"}`` with absolute image paths; images are not
opened here (the shard writer lists missing/unreadable ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "REFERENCE_SOURCES",
    "ReferenceLayoutError",
    "ReferenceLayout",
    "attribute_captions",
    "spatial_captions",
    "negation_captions",
    "scan_spatial",
    "scan_attributes",
    "scan_negation",
    "scan_reference_data",
]

IMAGE_SUFFIXES = (".png", ".jpeg", ".jpg")

#: The authors' caption prefixes (their dataset classes).
PICTURE_PREFIX = "A picture of a "
NEGATION_PREFIX = "An image of a "

#: Relation word in a spatial file name -> caption words, and its inverse.
SPATIAL_WORDS = {"above": "above", "below": "below", "rightof": "to the right of", "leftof": "to the left of"}
SPATIAL_INVERSE = {"above": "below", "below": "above", "rightof": "leftof", "leftof": "rightof"}
SPATIAL_OPPOSITE_PREFIX = "CUTMIX_"
SPATIAL_NAME_FIELDS = 3  # A_rel_B
ATTRIBUTE_OPPOSITE_PREFIX = "MIRROR_"
ATTRIBUTE_NAME_FIELDS = 4  # c1_A_c2_B
NEGATION_FIELDS = ("img1_path", "img2_path", "img1_obj", "img2_obj")
PHRASINGS = (0, 1)

#: Source -> training category (names of dcsm.data.synthetic.scenes's categories).
REFERENCE_SOURCES: dict[str, str] = {
    "spatial": "spatial",
    "attributes": "binding",
    "smallbig": "binding",
    "coco": "binding",
    "negation": "negation",
}


class ReferenceLayoutError(ValueError):
    """The paper's training data is not laid out as expected; names the file/field and the fix."""


@dataclass(frozen=True)
class ReferenceLayout:
    """Where each source lives under the data folder (defaults: the authors' names)."""

    spatial_dir: str = "objaverse_train_composite_newrelations_withbg"
    attributes_dir: str = "objaverse_attributes_overlay_withbg"
    smallbig_dir: str = "objaverse_smallbig_withbg"
    coco_dir: str = "COCO_train"
    negation_json: str = "negated_pairs_cocotrain_v1.json"
    negation_words: tuple[str, ...] = ("and not", "but no", "without")
    phrasings: tuple[int, ...] = PHRASINGS
    sources: tuple[str, ...] = ("spatial", "attributes", "smallbig", "negation")
    seed: int = 0

    def path_of(self, data_path: Path, source: str) -> Path:
        name = {
            "spatial": self.spatial_dir, "attributes": self.attributes_dir, "smallbig": self.smallbig_dir,
            "coco": self.coco_dir, "negation": self.negation_json,
        }[source]
        return data_path / name


# ---------------------------------------------------------------------------------------------
# captions
# ---------------------------------------------------------------------------------------------


def _check_phrasing(version: int) -> None:
    if version not in PHRASINGS:
        raise ValueError(f"phrasing must be one of {PHRASINGS}, got {version!r}")


def spatial_captions(a: str, rel: str, b: str, version: int) -> tuple[str, str]:
    """(caption, opposite caption) of ``A_rel_B`` in phrasing 0 or 1 (``rel`` as in the name)."""
    _check_phrasing(version)
    if version == 0:
        words = SPATIAL_WORDS[rel]
        return f"{PICTURE_PREFIX}{a} {words} a {b}", f"{PICTURE_PREFIX}{b} {words} a {a}"
    words = SPATIAL_WORDS[SPATIAL_INVERSE[rel]]
    return f"{PICTURE_PREFIX}{b} {words} a {a}", f"{PICTURE_PREFIX}{a} {words} a {b}"


def attribute_captions(c1: str, a: str, c2: str, b: str, version: int) -> tuple[str, str]:
    """(caption, opposite caption) of ``c1_A_c2_B`` in phrasing 0 or 1 (also NCD's two subsets)."""
    _check_phrasing(version)
    if version == 0:
        return f"{PICTURE_PREFIX}{c1} {a} and a {c2} {b}", f"{PICTURE_PREFIX}{c2} {a} and a {c1} {b}"
    return f"{PICTURE_PREFIX}{c2} {b} and a {c1} {a}", f"{PICTURE_PREFIX}{c1} {b} and a {c2} {a}"


def negation_captions(obj1: str, obj2: str, word: str, opposite_word: str) -> tuple[str, str]:
    """(caption, opposite caption) of a negation pair: image 1 shows obj1 and not obj2."""
    return f"{NEGATION_PREFIX}{obj1} {word} a {obj2}", f"{NEGATION_PREFIX}{obj2} {opposite_word} a {obj1}"


# ---------------------------------------------------------------------------------------------
# scanning
# ---------------------------------------------------------------------------------------------


def _image_names(folder: Path, skip_mark: str, source: str) -> list[str]:
    if not folder.is_dir():
        raise ReferenceLayoutError(
            f"{folder}: folder for source '{source}' not found. Fix: set its folder name in the config, or drop "
            f"'{source}' from reference_data.sources"
        )
    return sorted(f.name for f in folder.iterdir()
                  if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and skip_mark not in f.name)


def _sample(image: Path, opposite: Path | None, captions: tuple[str, str], source: str, origin: str) -> dict[str, Any]:
    return {
        "image": str(image), "opposite_image": None if opposite is None else str(opposite),
        "caption": captions[0], "opposite_caption": captions[1], "category": REFERENCE_SOURCES[source],
        "source": source, "origin": origin,
    }


def scan_spatial(folder: Path, phrasings: Sequence[int] = PHRASINGS) -> list[dict[str, Any]]:
    """Samples of the spatial folder: per ``A_rel_B`` image, one per phrasing, opposite ``CUTMIX_``.

    Raises:
        ReferenceLayoutError: a sample's name is not ``A_rel_B.ext`` with a known ``rel``.
    """
    out: list[dict[str, Any]] = []
    for name in _image_names(folder, SPATIAL_OPPOSITE_PREFIX.rstrip("_"), "spatial"):
        if not any(w in name for w in SPATIAL_WORDS):
            continue  # the authors' filter: not a relation image
        parts = Path(name).stem.split("_")
        if len(parts) != SPATIAL_NAME_FIELDS or parts[1] not in SPATIAL_WORDS or not all(parts):
            raise ReferenceLayoutError(
                f"{folder / name}: file name: expected objectA_relation_objectB.png with relation one of "
                f"{', '.join(SPATIAL_WORDS)}, got {name!r}. Fix: rename it (use '-' inside object names) or remove it"
            )
        a, rel, b = parts
        for v in phrasings:
            out.append(_sample(folder / name, folder / f"{SPATIAL_OPPOSITE_PREFIX}{name}", spatial_captions(a, rel, b, v),
                               "spatial", f"{folder / name} (phrasing {v})"))
    return out


def scan_attributes(folder: Path, source: str = "attributes", phrasings: Sequence[int] = PHRASINGS,
                    with_opposite: bool = True) -> list[dict[str, Any]]:
    """Samples of a ``c1_A_c2_B`` folder (attributes, small/big, or COCO with ``with_opposite=False``).

    Raises:
        ReferenceLayoutError: a name with fewer than four ``_`` fields.
    """
    out: list[dict[str, Any]] = []
    for name in _image_names(folder, ATTRIBUTE_OPPOSITE_PREFIX.rstrip("_"), source):
        parts = Path(name).stem.split("_")
        if len(parts) < ATTRIBUTE_NAME_FIELDS or not all(parts[:ATTRIBUTE_NAME_FIELDS]):
            raise ReferenceLayoutError(
                f"{folder / name}: file name: expected colour1_object1_colour2_object2.png, got {name!r}. "
                "Fix: rename it (use '-' inside words) or remove it"
            )
        c1, a, c2, b = parts[:ATTRIBUTE_NAME_FIELDS]
        opposite = folder / f"{ATTRIBUTE_OPPOSITE_PREFIX}{name}" if with_opposite else None
        for v in phrasings:
            out.append(_sample(folder / name, opposite, attribute_captions(c1, a, c2, b, v), source,
                               f"{folder / name} (phrasing {v})"))
    return out


def _negation_field(path: Path, row: int, entry: Any, key: str) -> Any:
    if key not in entry:
        raise ReferenceLayoutError(f"{path}: row {row}: field '{key}': key missing. Fix: give every entry {list(NEGATION_FIELDS)}")
    return entry[key]


def scan_negation(json_path: Path, data_path: Path, phrasings: Sequence[int] = PHRASINGS,
                  words: Sequence[str] = ("and not", "but no", "without"), seed: int = 0) -> list[dict[str, Any]]:
    """Samples of the negation pairs JSON (rows numbered from 1).

    Raises:
        ReferenceLayoutError: not a JSON list, or an entry with a missing/malformed field.
    """
    if not json_path.is_file():
        raise ReferenceLayoutError(
            f"{json_path}: negation pairs JSON not found. Fix: set reference_data.negation_json, or drop 'negation' "
            "from reference_data.sources"
        )
    if not words:
        raise ReferenceLayoutError("reference_data.negation_words is empty. Fix: give e.g. ['and not', 'but no', 'without']")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise ReferenceLayoutError(f"{json_path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, list):
        raise ReferenceLayoutError(f"{json_path}: top level: expected a JSON list of pairs, got {type(data).__name__}")
    out: list[dict[str, Any]] = []
    need = max(phrasings) + 1 if phrasings else 0
    for row, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            raise ReferenceLayoutError(f"{json_path}: row {row}: expected an object with {list(NEGATION_FIELDS)}, got {type(entry).__name__}")
        paths = []
        for key in NEGATION_FIELDS[:2]:
            p = _negation_field(json_path, row, entry, key)
            if not isinstance(p, str) or not p.strip():
                raise ReferenceLayoutError(f"{json_path}: row {row}: field '{key}': expected an image path, got {p!r}")
            paths.append(data_path / p.strip().replace("\\", "/"))
        objs = []
        for key in NEGATION_FIELDS[2:]:
            o = _negation_field(json_path, row, entry, key)
            if not isinstance(o, list) or len(o) < need or not all(isinstance(x, str) and x.strip() for x in o[:need]):
                raise ReferenceLayoutError(
                    f"{json_path}: row {row}: field '{key}': expected a list of at least {need} object names "
                    f"(one per phrasing), got {o!r}"
                )
            objs.append(o)
        for v in phrasings:
            rng = np.random.default_rng([seed, row, v])
            w1, w2 = (words[int(i)] for i in rng.integers(0, len(words), size=2))
            out.append(_sample(paths[0], paths[1], negation_captions(objs[0][v], objs[1][v], w1, w2), "negation",
                               f"{json_path}: row {row} (phrasing {v})"))
    return out


def scan_reference_data(data_path: str | Path, layout: ReferenceLayout | None = None) -> list[dict[str, Any]]:
    """All samples of the sources in ``layout.sources``, source by source, files in sorted order.

    Raises:
        ReferenceLayoutError: a missing source folder/file, a malformed name or JSON entry.
    """
    layout = layout or ReferenceLayout()
    root = Path(data_path)
    if not root.is_dir():
        raise ReferenceLayoutError(f"{root}: data folder not found. Fix: reference_data.data_path=<the paper's data folder>")
    unknown = [s for s in layout.sources if s not in REFERENCE_SOURCES]
    if unknown:
        raise ReferenceLayoutError(f"unknown source(s) {unknown}. Fix: reference_data.sources from {list(REFERENCE_SOURCES)}")
    bad = [v for v in layout.phrasings if v not in PHRASINGS]
    if bad or not layout.phrasings:
        raise ReferenceLayoutError(f"reference_data.phrasings must be a non-empty subset of {list(PHRASINGS)}, got {list(layout.phrasings)}")
    samples: list[dict[str, Any]] = []
    for source in layout.sources:
        where = layout.path_of(root, source)
        if source == "spatial":
            samples += scan_spatial(where, layout.phrasings)
        elif source == "negation":
            samples += scan_negation(where, root, layout.phrasings, layout.negation_words, layout.seed)
        else:
            samples += scan_attributes(where, source, layout.phrasings, with_opposite=source != "coco")
    return samples
