"""The "Is CLIP Cross-Eyed?" protocol on WhatsUp-format data and on our synthetic scenes.

Each image with objects ``o1``, ``o2`` gets four captions: ``"a {o1} and a {o2}"`` (correct),
``"a {o1}"``, ``"a {o2}"`` and an unrelated pair (``"a cat and a refrigerator"``); CLIP (pooled
cosine) and every scorer pick one; accuracy is split by centred vs off-centre layout.

* WhatsUp files (``<o1>_<relation>_<o2>.jpeg``): ``o1`` and ``o2`` are the first and last ``_``
  fields of the file name with ``-`` read as a space; the layout is *centred* when the name
  contains ``_on_`` (the objects are stacked in the middle), off-centre otherwise — the rule of
  the authors' public WhatsUp script.
* Synthetic scenes (:func:`~dcsm.data.synthetic.scenes.make_scene`): ``o`` is ``"{colour} {shape}"``;
  the layout is *centred* when every object's box centre lies in the central square of side
  ``centre_region`` x the image side, off-centre otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..data.benchmarks.whatsup import load_whatsup_controlled
from ..data.synthetic.scenes import make_scene
from .option_scoring import TextTable, score_pass
from .pruning import ScoreFn, is_correct

__all__ = ["CENTRED_MARK", "objects_from_file_name", "centred_by_file_name", "centred_by_boxes", "captions_for",
           "whatsup_set", "synthetic_set", "cross_eyed_scores", "run_cross_eyed"]

CENTRED_MARK = "_on_"
NAME_SEP = "_"
OPTION_NAMES = ("pair", "first", "second", "unrelated")


def objects_from_file_name(name: str) -> tuple[str, str]:
    """``("beer bottle", "armchair")`` from ``.../beer-bottle_on_armchair.jpeg``.

    Raises:
        ValueError: fewer than three ``_`` fields (no ``<o1>_<relation>_<o2>`` name).
    """
    stem = Path(name.replace("\\", "/")).stem
    parts = stem.split(NAME_SEP)
    if len(parts) < 3:
        raise ValueError(f"image file name '{name}' is not <object1>_<relation>_<object2>.<ext>. "
                         "Fix: name WhatsUp images as the benchmark does, e.g. mug_left_of_plate.jpeg.")
    return parts[0].replace("-", " "), parts[-1].replace("-", " ")


def centred_by_file_name(name: str) -> bool:
    """True when the file name marks the stacked (centred) layout: it contains ``_on_``."""
    return CENTRED_MARK in Path(name.replace("\\", "/")).name


def centred_by_boxes(boxes: Sequence[Sequence[float]], image_size: int, centre_region: float) -> bool:
    """True when every box ``(x0, y0, x1, y1)`` (pixels, half-open) has its centre inside the central
    square of side ``centre_region * image_size``."""
    b = torch.as_tensor(boxes, dtype=torch.float64).view(-1, 4)
    centres = (b[:, :2] + b[:, 2:]) / 2
    half = centre_region * image_size / 2
    return bool(((centres - image_size / 2).abs() <= half).all())


def captions_for(o1: str, o2: str, cfg: dict) -> list[str]:
    """The protocol's four captions, the correct pair first."""
    return [cfg["pair"].format(o1=o1, o2=o2), cfg["single"].format(o=o1), cfg["single"].format(o=o2), cfg["unrelated"]]


def whatsup_set(files: Sequence[str], image_root: str | None) -> tuple[list[Path], list[list[str]], list[bool], int]:
    """Images of WhatsUp files that exist on disk -> paths, object pairs, centred flags, rows without image."""
    paths, pairs, centred, missing = [], [], [], 0
    for f in files:
        for item in load_whatsup_controlled(f, image_root):
            if item.image_path is None:
                missing += 1
                continue
            name = Path(item.raw_image_path.replace("\\", "/")).name
            paths.append(item.image_path)
            pairs.append(list(objects_from_file_name(name)))
            centred.append(centred_by_file_name(name))
    return paths, pairs, centred, missing


def synthetic_set(syn: dict, size: int) -> tuple[list[Image.Image], list[list[str]], list[bool]]:
    """Synthetic two-object scenes -> images, object pairs, centred-by-boxes flags."""
    images, pairs, centred = [], [], []
    for i in range(int(syn["size"])):
        s = make_scene(i, split=syn["split"], seed=int(syn["seed"]), image_size=size, categories=list(syn["categories"]))
        objs = s.meta["objects"][:2]
        images.append(s.image)
        pairs.append([f"{o['colour']} {o['shape']}" for o in objs])
        centred.append(centred_by_boxes([o["bbox"] for o in objs], size, float(syn["centre_region"])))
    return images, pairs, centred


def cross_eyed_scores(scores: torch.Tensor, centred: torch.Tensor) -> dict[str, Any]:
    """Accuracy overall, centred and off-centre, and how often each option was picked (ties: wrong)."""
    ok = is_correct(scores, torch.zeros(len(scores), dtype=torch.long))
    pick = scores.argmax(dim=1)
    acc = lambda m: float(ok[m].float().mean()) if m.any() else None  # noqa: E731
    return {"acc": acc(torch.ones_like(centred)), "centred_acc": acc(centred), "off_centre_acc": acc(~centred),
            "n": len(ok), "n_centred": int(centred.sum()), "n_off_centre": int((~centred).sum()),
            "choices": dict(zip(OPTION_NAMES, torch.bincount(pick, minlength=4).tolist()))}


def _score_set(encoder, images: torch.Tensor, pairs: list[list[str]], centred: list[bool], cfg: dict,
               scorers: dict[str, ScoreFn] | None, batch_size: int) -> dict[str, Any]:
    options = [captions_for(o1, o2, cfg) for o1, o2 in pairs]
    table = TextTable(encoder, [c for o in options for c in o])
    res = score_pass(encoder, images, options, table, scorers, batch_size)
    flags = torch.tensor(centred, dtype=torch.bool)
    return {name: cross_eyed_scores(s, flags) for name, s in res.scores.items()}


@torch.no_grad()
def run_cross_eyed(encoder, cfg: dict, scorers: dict[str, ScoreFn] | None, batch_size: int, render_size: int) -> dict:
    """``{"whatsup": {...} | None, "synthetic": {...}}`` per scorer (see :func:`cross_eyed_scores`)."""
    out: dict[str, Any] = {"captions": captions_for("{o1}", "{o2}", cfg), "whatsup": None}
    files = list(cfg.get("annotation_files") or [])
    if files:
        paths, pairs, centred, missing = whatsup_set(files, cfg.get("image_root"))
        out["whatsup"] = {"files": files, "rows_without_image": missing, "rule": f"centred: file name contains '{CENTRED_MARK}'"}
        if paths:
            x = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])
            out["whatsup"]["scores"] = _score_set(encoder, x, pairs, centred, cfg, scorers, batch_size)
    syn = cfg["synthetic"]
    if int(syn["size"]) > 0:
        images, pairs, centred = synthetic_set(syn, render_size)
        x = torch.stack([encoder.preprocess(im) for im in images])
        out["synthetic"] = {"split": syn["split"], "seed": syn["seed"], "categories": list(syn["categories"]),
                            "rule": f"centred: every object's box centre in the central {syn['centre_region']} x side square",
                            "scores": _score_set(encoder, x, pairs, centred, cfg, scorers, batch_size)}
    return out
