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

from dataclasses import dataclass
from pathlib import Path

from . import more_loaders as benchmarks_more  # noqa: F401 - registers CLEVR-bind, VG-Attribution, NCD, SugarCrepe loaders
from .loaders import BENCHMARK_LOADERS, MCQItem, PathLike, load_benchmark

__all__ = ["SuiteEntry", "SUITE", "SUITE_SUBSETS", "discover_benchmarks", "load_found"]

SUGARCREPE_FILES = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
_NEGBENCH_DIRS = ("negbench", "NegBench/evaluation data/images", "images")
_NEGBENCH_COCO = "COCO_val_mcq_llama3.1_rephrased.csv"
_NEGBENCH_VOC = "VOC2007_mcq_llama3.1_rephrased.csv"
_COCO_IMAGES = ("val2017", "coco/images/val2017")
_VOC_IMAGES = ("VOC2007/JPEGImages", "voc2007/VOCdevkit/VOC2007/JPEGImages")


@dataclass(frozen=True)
class SuiteEntry:
    """One row of the suite table and where its files live under the data root."""

    subset: str
    """Row key = the ``MCQItem.subset`` its loader produces."""
    label: str
    """Row label in the table."""
    loader: str
    """Key of ``dcsm.data.benchmarks.loaders.BENCHMARK_LOADERS``."""
    annotation: tuple[str, ...]
    """Annotation file (NCD: folder) candidates, relative to the data root, first = canonical."""
    image_root: tuple[str, ...]
    """Image-root candidates (first existing wins, else the first), relative to the data root,
    or to the annotation's folder when ``images_beside``; "" = that folder itself."""
    images_beside: bool = False


def _clevr(split: str) -> SuiteEntry:
    return SuiteEntry(
        f"clevr_bind_{split}", f"CLEVR-bind {split}", "clevr_bind",
        (f"clevr_bind/two_object/{split}.csv", f"two_object/{split}.csv"), (f"images/{split}",), images_beside=True,
    )


def _sugarcrepe(name: str) -> SuiteEntry:
    return SuiteEntry(
        f"sugarcrepe_{name}", f"SugarCrepe {name}", "sugarcrepe",
        (f"sugarcrepe/{name}.json", f"sugar-crepe/data/{name}.json"), _COCO_IMAGES,
    )


#: The suite in table order.
SUITE: tuple[SuiteEntry, ...] = (
    SuiteEntry("coco_qa_one", "COCO-spatial one", "whatsup_qa", ("coco_qa_one_obj.json",), ("",)),
    SuiteEntry("coco_qa_two", "COCO-spatial two", "whatsup_qa", ("coco_qa_two_obj.json",), ("",)),
    SuiteEntry("gqa_qa_one", "GQA-spatial one", "whatsup_qa", ("vg_qa_one_obj.json",), ("",)),
    SuiteEntry("gqa_qa_two", "GQA-spatial two", "whatsup_qa", ("vg_qa_two_obj.json",), ("",)),
    SuiteEntry("controlled_a", "WhatsUp A", "whatsup", ("controlled_images_dataset.json",), ("",)),
    SuiteEntry("controlled_b", "WhatsUp B", "whatsup", ("controlled_clevr_dataset.json",), ("",)),
    SuiteEntry("ncd", "NCD", "ncd", ("NCD_colorful_composite_squares", "ncd"), ("",), images_beside=False),
    *(_clevr(s) for s in ("train", "val", "gen")),
    SuiteEntry("vg_attribution", "VG-Attribution", "vg_attribution", ("visual_genome_attribution.json",),
               ("images", "VG_100K")),
    *(_sugarcrepe(n) for n in SUGARCREPE_FILES),
    SuiteEntry("negbench_coco", "NegBench COCO", "negbench", tuple(f"{d}/{_NEGBENCH_COCO}" for d in _NEGBENCH_DIRS),
               _COCO_IMAGES),
    SuiteEntry("negbench_voc", "NegBench VOC", "negbench", tuple(f"{d}/{_NEGBENCH_VOC}" for d in _NEGBENCH_DIRS),
               _VOC_IMAGES),
)
SUITE_SUBSETS: tuple[str, ...] = tuple(e.subset for e in SUITE)

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
        is_dir = entry.loader == "ncd"
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
