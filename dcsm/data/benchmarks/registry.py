"""The one list of benchmarks: each one's name, loader, and rows in the suite table.

Everything else derives from :data:`REGISTRY`: :data:`BENCHMARKS` (the ``eval.benchmark``
choices besides ``synthetic`` and ``all``), :data:`BENCHMARK_LOADERS`, the suite
(:data:`SUITE`, in table order) and where :func:`~dcsm.data.benchmarks.discovery.discover_benchmarks`
looks for each subset's files under a data root. Adding a benchmark = one loader file in this
folder + one :class:`Benchmark` line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .clevr_bind import CLEVR_BIND_SPLITS, load_clevr_bind
from .items import MCQItem, PathLike
from .ncd import load_ncd
from .negbench import load_negbench_mcq
from .sugarcrepe import SUGARCREPE_SUBSETS, load_sugarcrepe
from .vg_attribution import load_vg_attribution
from .whatsup import load_whatsup_controlled
from .whatsup_qa import load_whatsup_qa


@dataclass(frozen=True)
class SuiteEntry:
    """One row of the suite table and where its files live under the data root."""

    subset: str
    """Row key = the ``MCQItem.subset`` its loader produces."""
    label: str
    """Row label in the table."""
    loader: str
    """Name of the :class:`Benchmark` whose loader reads it (a key of :data:`BENCHMARK_LOADERS`)."""
    annotation: tuple[str, ...]
    """Annotation file (NCD: folder) candidates, relative to the data root, first = canonical."""
    image_root: tuple[str, ...]
    """Image-root candidates (first existing wins, else the first), relative to the data root,
    or to the annotation's folder when ``images_beside``; "" = that folder itself."""
    images_beside: bool = False


@dataclass(frozen=True)
class Benchmark:
    """One benchmark format: ``eval.benchmark=<name>`` reads its files with ``load``."""

    name: str
    load: Callable[..., list[MCQItem]]
    """``load(annotation_file, image_root, **kw) -> [MCQItem]``."""
    suite: tuple[SuiteEntry, ...] = ()
    """Its rows in the ``eval.benchmark=all`` table, in table order."""
    folder: bool = False
    """The "annotation file" is a folder (NCD)."""


_NEGBENCH_DIRS = ("negbench", "NegBench/evaluation data/images", "images")
_NEGBENCH_COCO = "COCO_val_mcq_llama3.1_rephrased.csv"
_NEGBENCH_VOC = "VOC2007_mcq_llama3.1_rephrased.csv"
_COCO_IMAGES = ("val2017", "coco/images/val2017")
_VOC_IMAGES = ("VOC2007/JPEGImages", "voc2007/VOCdevkit/VOC2007/JPEGImages")


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


def _negbench(subset: str, label: str, csv_name: str, images: tuple[str, ...]) -> SuiteEntry:
    return SuiteEntry(subset, label, "negbench", tuple(f"{d}/{csv_name}" for d in _NEGBENCH_DIRS), images)


#: Every benchmark, in suite-table order.
REGISTRY: tuple[Benchmark, ...] = (
    Benchmark("whatsup_qa", load_whatsup_qa, suite=(
        SuiteEntry("coco_qa_one", "COCO-spatial one", "whatsup_qa", ("coco_qa_one_obj.json",), ("",)),
        SuiteEntry("coco_qa_two", "COCO-spatial two", "whatsup_qa", ("coco_qa_two_obj.json",), ("",)),
        SuiteEntry("gqa_qa_one", "GQA-spatial one", "whatsup_qa", ("vg_qa_one_obj.json",), ("",)),
        SuiteEntry("gqa_qa_two", "GQA-spatial two", "whatsup_qa", ("vg_qa_two_obj.json",), ("",)),
    )),
    Benchmark("whatsup", load_whatsup_controlled, suite=(
        SuiteEntry("controlled_a", "WhatsUp A", "whatsup", ("controlled_images_dataset.json",), ("",)),
        SuiteEntry("controlled_b", "WhatsUp B", "whatsup", ("controlled_clevr_dataset.json",), ("",)),
    )),
    Benchmark("ncd", load_ncd, folder=True, suite=(
        SuiteEntry("ncd", "NCD", "ncd", ("NCD_colorful_composite_squares", "ncd"), ("",), images_beside=False),
    )),
    Benchmark("clevr_bind", load_clevr_bind, suite=tuple(_clevr(s) for s in CLEVR_BIND_SPLITS)),
    Benchmark("vg_attribution", load_vg_attribution, suite=(
        SuiteEntry("vg_attribution", "VG-Attribution", "vg_attribution", ("visual_genome_attribution.json",),
                   ("images", "VG_100K")),
    )),
    Benchmark("sugarcrepe", load_sugarcrepe, suite=tuple(_sugarcrepe(n) for n in SUGARCREPE_SUBSETS)),
    Benchmark("negbench", load_negbench_mcq, suite=(
        _negbench("negbench_coco", "NegBench COCO", _NEGBENCH_COCO, _COCO_IMAGES),
        _negbench("negbench_voc", "NegBench VOC", _NEGBENCH_VOC, _VOC_IMAGES),
    )),
)

#: ``eval.benchmark`` names (besides ``synthetic`` and ``all``). ``whatsup`` also takes
#: COCO/GQA-spatial files (recognised by their rows being lists); ``whatsup_qa`` takes those
#: only; ``ncd`` takes its image folder instead of a file.
BENCHMARKS: tuple[str, ...] = tuple(b.name for b in REGISTRY)
#: Benchmarks whose "annotation file" is a folder.
FOLDER_BENCHMARKS: tuple[str, ...] = tuple(b.name for b in REGISTRY if b.folder)
#: Name -> loader.
BENCHMARK_LOADERS: dict[str, Callable[..., list[MCQItem]]] = {b.name: b.load for b in REGISTRY}
#: The suite in table order.
SUITE: tuple[SuiteEntry, ...] = tuple(e for b in REGISTRY for e in b.suite)
SUITE_SUBSETS: tuple[str, ...] = tuple(e.subset for e in SUITE)


def load_benchmark(name: str, annotation_file: PathLike, image_root: PathLike | None, **kw: Any) -> list[MCQItem]:
    """Load a benchmark by name (one of :data:`BENCHMARKS`); ``kw`` go to its loader."""
    key = name.lower()
    if key not in BENCHMARK_LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARK_LOADERS)}")
    return BENCHMARK_LOADERS[key](annotation_file, image_root, **kw)
