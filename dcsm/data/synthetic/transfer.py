"""Format-transfer files: synthetic scenes written in each public benchmark's own file format.

Each writer draws ``rows`` scenes (with :mod:`.families`, in a renderer style of its caller's choice,
by default ``transfer``, whose checkerboards no split and no training draws) and returns the
annotation file and images exactly as the public release lays them out under a data root, plus the rows as drawn
(image path, options, label, group as the loader names it), so that a test can check what the real loader of
:mod:`dcsm.data.benchmarks` reads back. Files (paths relative to the data root):

========================================  ==============================================
``controlled_images_dataset.json``         WhatsUp Controlled-A: on / under / left / right
``controlled_clevr_dataset.json``          WhatsUp Controlled-B: in front of / behind / left / right
``coco_qa_two_obj.json``                   COCO-spatial two objects: left / right / above / below
``vg_qa_two_obj.json``                     GQA-spatial two objects: left / right / in front of / behind
``negbench/COCO_val_mcq_llama3.1_rephrased.csv``  NegBench MCQ: positive / negative / hybrid
``clevr_bind/two_object/val.csv``          CLEVR-bind: pos + colour / size / shape swaps, a replaced colour
``sugarcrepe/{swap_att,replace_att,replace_obj,replace_rel,swap_obj}.json``  SugarCrepe
========================================  ==============================================

WhatsUp files hold every object pair in all four relations of its subset (pair and set accuracy
are meaningful); the NegBench captions come from the template pools of :mod:`.templates`
(``templates``: ``all``, ``train`` or ``heldout``), written as sentences (capitalised, final
period) as NegBench's are; the other formats have one fixed wording, as their releases do.
A file is a deterministic function of ``(seed, file, row)`` and the settings.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from .families import build_binding, build_negation, build_spatial, QUESTION_TYPES
from .layout import _Scene, noun_phrase
from .render import render_background, render_scene
from .styles import STYLES, Style
from .templates import INVERSE_RELATION, RELATION_PHRASES
from .vocab import COLOURS, SHAPES

__all__ = ["TransferFile", "TRANSFER_FILES", "write_transfer_file"]

STREAM = zlib.crc32(b"format-transfer")
COCO_ID_WIDTH = 12
#: First image id per COCO-named family (all share val2017/): ids never collide.
_ID_BASE = {"coco_qa": 1, "negbench": 1_000_000, "sugarcrepe": 2_000_000}
_WHATSUP = {
    # variant: (annotation file, image folder, relations in option order)
    "A": ("controlled_images_dataset.json", "controlled_images", ("on", "under", "left", "right")),
    "B": ("controlled_clevr_dataset.json", "controlled_clevr", ("front", "behind", "left", "right")),
}
#: Relation -> the file-name slot WhatsUp's loader reads (second "_" field and what follows).
_WHATSUP_SLOT = {"on": "on", "under": "under", "left": "left_of", "right": "right_of",
                 "front": "in-front_of", "behind": "behind"}
#: Relation -> the group WhatsUp's loader reports.
_WHATSUP_GROUP = {"left": "left_of", "right": "right_of", "front": "in-front_of"}
_QA = {"coco": ("coco_qa_two_obj.json", ("left", "right", "above", "below")),
       "gqa": ("vg_qa_two_obj.json", ("left", "right", "front", "behind"))}
SUGARCREPE_FILES = ("swap_att", "replace_att", "replace_obj", "replace_rel", "swap_obj")


@dataclass(frozen=True)
class TransferFile:
    """One written file: its annotation bytes, images ``{relative path: bytes}`` and the rows as drawn
    (``{"image": relative path, "captions": [...], "label": int, "group": str | None}``)."""

    name: str
    annotation: str
    data: bytes
    images: dict[str, bytes]
    rows: list[dict[str, Any]]


def _rng(seed: int, name: str, row: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), STREAM, zlib.crc32(name.encode()), int(row)])


def _image(rng: np.random.Generator, scene: _Scene, style: Style, size: int, fmt: str) -> bytes:
    img: Image.Image = render_scene(render_background(rng, style, size), scene.objects, style)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _kinds(rng: np.random.Generator) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two (colour, shape) kinds differing in colour and shape."""
    ca, cb = (list(COLOURS)[int(i)] for i in rng.choice(len(COLOURS), 2, replace=False))
    sa, sb = (SHAPES[int(i)] for i in rng.choice(len(SHAPES), 2, replace=False))
    return (ca, sa), (cb, sb)


def _spatial_caption(a: tuple[str, str], rel: str, b: tuple[str, str]) -> str:
    return f"{_cap(noun_phrase(*a))} {RELATION_PHRASES[rel]} {noun_phrase(*b)}"


def _whatsup(variant: str, rows: int, seed: int, style: Style, size: int, pool: str) -> TransferFile:
    annotation, folder, relations = _WHATSUP[variant]
    records, images, drawn = [], {}, []
    for pair in range(max(1, rows // len(relations))):
        a, b = _kinds(_rng(seed, annotation, pair))
        for k, rel in enumerate(relations):
            rng = _rng(seed, annotation, (pair + 1) * 100 + k)
            scene = build_spatial(rng, style, pool, relation=rel, kinds=(a, b))
            name = f"{a[0]}-{a[1]}-{pair:04d}_{_WHATSUP_SLOT[rel]}_{b[0]}-{b[1]}.jpeg"
            images[f"{folder}/{name}"] = _image(rng, scene, style, size, "JPEG")
            options = [_spatial_caption(a, r, b) for r in (rel, *(r for r in relations if r != rel))]
            records.append({"image_path": f"data/{folder}/{name}", "caption_options": options})
            drawn.append({"image": f"{folder}/{name}", "captions": options, "label": 0,
                          "group": _WHATSUP_GROUP.get(rel, rel)})
    return TransferFile(f"controlled_{variant.lower()}", annotation, json.dumps(records, indent=4).encode(), images, drawn)


def _qa(source: str, rows: int, seed: int, style: Style, size: int, pool: str) -> TransferFile:
    annotation, relations = _QA[source]
    records, images, drawn = [], {}, []
    for i in range(rows):
        rng = _rng(seed, annotation, i)
        rel = relations[i % len(relations)]
        a, b = _kinds(rng)
        scene = build_spatial(rng, style, pool, relation=rel, kinds=(a, b))
        image_id = _ID_BASE["coco_qa"] + i
        path = f"val2017/{image_id:0{COCO_ID_WIDTH}d}.jpg" if source == "coco" else f"vg_images/{image_id}.jpg"
        images[path] = _image(rng, scene, style, size, "JPEG")
        options = [_spatial_caption(a, rel, b), _spatial_caption(a, INVERSE_RELATION[rel], b)]
        records.append([image_id, *options])
        drawn.append({"image": path, "captions": options, "label": 0, "group": rel})
    return TransferFile(f"{source}_qa_two", annotation, json.dumps(records).encode(), images, drawn)


_NEGBENCH_ORDER = ("positive", "hybrid_swap", "absent_affirmed", "present_negated")


def _negbench(rows: int, seed: int, style: Style, size: int, pool: str) -> TransferFile:
    annotation = "negbench/COCO_val_mcq_llama3.1_rephrased.csv"
    header = ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3",
              "correct_answer_template"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    images, drawn = {}, []
    for i in range(rows):
        rng = _rng(seed, annotation, i)
        qtype = QUESTION_TYPES[i % len(QUESTION_TYPES)]
        scene = build_negation(rng, style, pool, question_type=qtype)
        by_kind = dict(scene.options)
        options = [_sentence(by_kind[k]) for k in _NEGBENCH_ORDER]
        name = f"{_ID_BASE['negbench'] + i:0{COCO_ID_WIDTH}d}.jpg"
        images[f"val2017/{name}"] = _image(rng, scene, style, size, "JPEG")
        writer.writerow([f"data/coco/images/val2017/{name}", 0, *options, qtype])
        drawn.append({"image": f"val2017/{name}", "captions": options, "label": 0, "group": qtype})
    return TransferFile("negbench_coco", annotation, buf.getvalue().encode("utf-8"), images, drawn)


def _binding_phrase(objs: list[tuple[str, str, str | None]]) -> str:
    (c1, h1, s1), (c2, h2, s2) = objs
    return f"{noun_phrase(c1, h1, s1)} and {noun_phrase(c2, h2, s2)}"


def _clevr_bind(rows: int, seed: int, style: Style, size: int, pool: str) -> TransferFile:
    annotation = "clevr_bind/two_object/val.csv"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file_name", "pos", "neg_0", "neg_1", "neg_2", "neg_3"])
    images, drawn = {}, []
    for i in range(rows):
        rng = _rng(seed, annotation, i)
        scene = build_binding(rng, style, pool, variant="full")
        (c1, h1, s1), (c2, h2, s2) = ((o.colour, o.shape, o.size_word) for o in scene.objects)
        c3 = [c for c in COLOURS if c not in (c1, c2)][int(rng.integers(len(COLOURS) - 2))]
        options = [_binding_phrase(x) for x in (
            [(c1, h1, s1), (c2, h2, s2)], [(c2, h1, s1), (c1, h2, s2)], [(c1, h1, s2), (c2, h2, s1)],
            [(c1, h2, s1), (c2, h1, s2)], [(c3, h1, s1), (c2, h2, s2)])]
        name = f"{i:06d}.png"
        images[f"clevr_bind/two_object/images/val/{name}"] = _image(rng, scene, style, size, "PNG")
        writer.writerow([name, *options])
        drawn.append({"image": f"clevr_bind/two_object/images/val/{name}", "captions": options, "label": 0,
                      "group": None})
    return TransferFile("clevr_bind_val", annotation, buf.getvalue().encode("utf-8"), images, drawn)


def _sugarcrepe_pair(kind: str, rng: np.random.Generator, style: Style, pool: str, i: int) -> tuple[_Scene, str, str]:
    if kind in ("replace_rel", "swap_obj"):
        rel = tuple(RELATION_PHRASES)[i % len(RELATION_PHRASES)]
        a, b = _kinds(rng)
        scene = build_spatial(rng, style, pool, relation=rel, kinds=(a, b))
        wrong = _spatial_caption(a, INVERSE_RELATION[rel], b) if kind == "replace_rel" else _spatial_caption(b, rel, a)
        return scene, _spatial_caption(a, rel, b), wrong
    scene = build_binding(rng, style, pool, variant="pairs")
    (c1, h1), (c2, h2) = ((o.colour, o.shape) for o in scene.objects)
    if kind == "swap_att":
        wrong = [(c2, h1, None), (c1, h2, None)]
    elif kind == "replace_att":
        c3 = [c for c in COLOURS if c not in (c1, c2)][int(rng.integers(len(COLOURS) - 2))]
        wrong = [(c3, h1, None), (c2, h2, None)]
    else:
        h3 = next(h for h in SHAPES if h not in (h1, h2))
        wrong = [(c1, h1, None), (c2, h3, None)]
    return scene, _cap(_binding_phrase([(c1, h1, None), (c2, h2, None)])), _cap(_binding_phrase(wrong))


def _sugarcrepe(kind: str, rows: int, seed: int, style: Style, size: int, pool: str) -> TransferFile:
    annotation = f"sugarcrepe/{kind}.json"
    base = _ID_BASE["sugarcrepe"] + SUGARCREPE_FILES.index(kind) * 100_000
    records, images, drawn = {}, {}, []
    for i in range(rows):
        rng = _rng(seed, annotation, i)
        scene, caption, negative = _sugarcrepe_pair(kind, rng, style, pool, i)
        name = f"{base + i:0{COCO_ID_WIDTH}d}.jpg"
        images[f"val2017/{name}"] = _image(rng, scene, style, size, "JPEG")
        records[str(i)] = {"filename": name, "caption": caption + ".", "negative_caption": negative + "."}
        drawn.append({"image": f"val2017/{name}", "captions": [caption + ".", negative + "."], "label": 0,
                      "group": kind.split("_")[0]})
    return TransferFile(f"sugarcrepe_{kind}", annotation, json.dumps(records, indent=1).encode(), images, drawn)


Writer = Callable[[int, int, Style, int, str], TransferFile]
#: File key (= the suite subset its loader reports) -> writer ``(rows, seed, style, image_size, pool)``.
TRANSFER_FILES: dict[str, Writer] = {
    "controlled_a": lambda *a: _whatsup("A", *a),
    "controlled_b": lambda *a: _whatsup("B", *a),
    "coco_qa_two": lambda *a: _qa("coco", *a),
    "gqa_qa_two": lambda *a: _qa("gqa", *a),
    "negbench_coco": _negbench,
    "clevr_bind_val": _clevr_bind,
    **{f"sugarcrepe_{k}": (lambda k: lambda *a: _sugarcrepe(k, *a))(k) for k in SUGARCREPE_FILES},
}


def write_transfer_file(name: str, rows: int, seed: int, style: str, image_size: int, templates: str) -> TransferFile:
    """Draw one format-transfer file (a key of :data:`TRANSFER_FILES`) in memory."""
    return TRANSFER_FILES[name](rows, seed, STYLES[style], image_size, templates)
