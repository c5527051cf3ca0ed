"""Find every benchmark of the paper's suite under one data root, laid out as the public repos lay it out.

Expected tree (the DCSM reference's ``root_dir``, which is ``whatsup_vlms``' ``data/`` folder,
plus the other repositories' files; alternatives in brackets are also recognised)::

    DATA_ROOT/
      controlled_images_dataset.json  controlled_images/*.jpeg     WhatsUp A   (whatsup_vlms)
      controlled_clevr_dataset.json   controlled_clevr/*.jpeg      WhatsUp B
      coco_qa_one_obj.json  coco_qa_two_obj.json                   COCO-spatial one/two
      vg_qa_one_obj.json    vg_qa_two_obj.json    vg_images/       GQA-spatial one/two
      val2017/                                                     COCO val2017 images (COCO-spatial,
                                                                   SugarCrepe, NegBench COCO)
      NCD_colorful_composite_squares/c1_A_c2_B.png  [ncd/]         NCD (DCSM reference)
      clevr_bind/two_object/{train,val,gen}.csv                    CLEVR-bind (clip-binding)
      clevr_bind/two_object/images/{train,val,gen}/                [two_object/... at the root]
      visual_genome_attribution.json  images/  [VG_100K/]          VG-Attribution (ARO)
      sugarcrepe/{add_att,add_obj,replace_att,replace_obj,         SugarCrepe (its data/ folder)
                  replace_rel,swap_att,swap_obj}.json  [sugar-crepe/data/]
      negbench/COCO_val_mcq_llama3.1_rephrased.csv                 NegBench (its data/images/ CSVs)
      negbench/VOC2007_mcq_llama3.1_rephrased.csv  [NegBench/evaluation data/images/]
      VOC2007/JPEGImages/  [voc2007/VOCdevkit/VOC2007/JPEGImages/] VOC2007 images

A benchmark is *found* when its annotation file (NCD: its folder) exists; its images may be
partly or wholly absent (the loaders list missing images, the rest is scored). Otherwise it is
*skipped*, with the path it expected (the first alternative).
"""

from __future__ import annotations

from pathlib import Path

from .items import MCQItem, PathLike
from .registry import BENCHMARK_LOADERS, FOLDER_BENCHMARKS, SUITE, SUITE_SUBSETS, load_benchmark

__all__ = ["discover_benchmarks", "load_found"]

Found = tuple[str, str, list[Path], Path]
Skipped = tuple[str, str]


def _first_existing(base: Path, candidates: tuple[str, ...], want_dir: bool) -> Path | None:
    for rel in candidates:
        p = base / rel if rel else base
        if (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def discover_benchmarks(data_root: PathLike, subsets: tuple[str, ...] | None = None) -> tuple[list[Found], list[Skipped]]:
    """Which suite subsets are present under ``data_root`` (pure: reads the tree, loads nothing).

    Args:
        data_root: the folder laid out as in this module's docstring.
        subsets: restrict to these subset keys (default: the whole suite, ``SUITE_SUBSETS``).

    Returns:
        ``(found, skipped)`` in table order: ``found`` = ``[(subset, loader name, [annotation
        file or folder], image root)]``, ``skipped`` = ``[(subset, expected path)]``.

    Raises:
        ValueError: ``data_root`` is not a folder, or an unknown subset key.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise ValueError(f"data root '{root}' is not a folder. Fix: eval.data_root=<folder laid out as the public repos>")
    wanted = SUITE_SUBSETS if subsets is None else tuple(subsets)
    unknown = [s for s in wanted if s not in SUITE_SUBSETS]
    if unknown:
        raise ValueError(f"unknown suite subset(s) {unknown}. Fix: use names from {list(SUITE_SUBSETS)}")
    found: list[Found] = []
    skipped: list[Skipped] = []
    for entry in SUITE:
        if entry.subset not in wanted:
            continue
        is_dir = entry.loader in FOLDER_BENCHMARKS
        ann = _first_existing(root, entry.annotation, want_dir=is_dir)
        if ann is None:
            skipped.append((entry.subset, str(root / entry.annotation[0])))
            continue
        if is_dir:
            images = ann
        else:
            base = ann.parent if entry.images_beside else root
            images = _first_existing(base, entry.image_root, want_dir=True) or (base / entry.image_root[0])
        found.append((entry.subset, entry.loader, [ann], images))
    return found, skipped


def load_found(found: Found) -> list[MCQItem]:
    """Items of one ``found`` entry (its loader names them by the canonical file names: ``subset``)."""
    _, loader, files, image_root = found
    if loader not in BENCHMARK_LOADERS:
        raise ValueError(f"no loader named {loader!r}; expected one of {sorted(BENCHMARK_LOADERS)}")
    items: list[MCQItem] = []
    for f in files:
        items.extend(load_benchmark(loader, f, image_root))
    return items
