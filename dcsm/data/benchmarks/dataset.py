"""Benchmark items as a dataset: annotation files -> :class:`MCQItem` rows -> raw MCQ samples
(prompt-styled options, images loaded by row), and extra open_clip baselines' specs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ...model.encoders import EncoderSpec
from ...model.batch import collate_mcq
from .prompts import REFERENCE_BENCHMARKS, apply_prompt_style, check_prompt_style
from .items import MCQItem, missing_images, open_item_image
from .registry import BENCHMARKS, FOLDER_BENCHMARKS, load_benchmark

#: ``pretrained`` values of a baseline spec meaning random init.
RANDOM_INIT_TAGS = ("none", "null", "")
#: Key of a sample (and a batch) that stands for an unreadable image: the reason (a batch: [(item_index, reason)]).
UNREADABLE_KEY = "unreadable"
#: Text rows kept by baseline encoders (only their pooled embeddings are used).
BASELINE_MAX_TOKENS = 77


def _is_qa_file(path: Path) -> bool:
    """True if a WhatsUp JSON holds COCO/GQA-spatial rows (lists), not controlled rows (dicts)."""
    if path.suffix.lower() != ".json":
        return False
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False  # let the controlled loader report the problem with its own message
    return isinstance(data, list) and bool(data) and isinstance(data[0], list)


def load_items(benchmark: str, annotation_files: Sequence[str | Path], image_root: str | Path | None) -> list[MCQItem]:
    """Items of every annotation file, in file order then row order.

    ``benchmark="whatsup"`` loads Controlled-A/B files and, recognised by their content,
    COCO/GQA-spatial files; ``"whatsup_qa"`` and ``"negbench"`` use their own loader.

    Raises:
        ValueError: unknown benchmark, no files, or a file that does not exist.
        dcsm.data.benchmarks.items.BenchmarkFormatError: a file in the wrong format (names the row).
    """
    name = str(benchmark).lower()
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}. Fix: eval.benchmark=one of {', '.join(BENCHMARKS)} (or synthetic).")
    files = [Path(f) for f in (annotation_files or [])]
    if not files:
        raise ValueError(
            f"no annotation files for benchmark '{name}'. Fix: eval.annotation_files=[path/to/file, ...] "
            "(the benchmark's own JSON/CSV files, unchanged)."
        )
    want_dir = name in FOLDER_BENCHMARKS
    absent = [str(f) for f in files if not (f.is_dir() if want_dir else f.is_file())]
    if absent:
        kind = "folder(s)" if want_dir else "file(s)"
        raise ValueError(f"annotation {kind} not found: {absent}. Fix: check eval.annotation_files.")
    items: list[MCQItem] = []
    for f in files:
        loader = "whatsup_qa" if name == "whatsup" and _is_qa_file(f) else name
        items.extend(load_benchmark(loader, f, image_root))
    return items


def _prompt_benchmark(item: MCQItem, benchmark: str) -> str:
    """The name whose reference-prompt rules apply to ``item``: its subset if known, else the family."""
    if item.subset.lower() in REFERENCE_BENCHMARKS:
        return item.subset
    return benchmark


def styled_captions(item: MCQItem, prompt_style: str, benchmark: str) -> list[str]:
    """The item's options as the prompt style presents them."""
    target = _prompt_benchmark(item, benchmark)
    return [apply_prompt_style(c, prompt_style, target) for c in item.captions]


def open_rgb(item: MCQItem) -> Image.Image:
    """The item's image as RGB (cropped to its box for VG-Attribution); unreadable files are named."""
    try:
        return open_item_image(item)
    except Exception as err:  # corrupt or unreadable file: name it
        raise OSError(
            f"cannot read image '{item.image_path}': {type(err).__name__}: {err}. Fix: replace or remove the file."
        ) from err


class BenchmarkDataset(Dataset):
    """Raw multiple-choice samples of the benchmark items whose image was found.

    Items without an image are excluded up front; their raw paths are in :attr:`missing`. Items
    whose image exists but cannot be read (truncated, empty, not an image) are left out of the
    batches of :meth:`loader` and recorded in :attr:`unreadable` (item index -> reason).

    Args:
        items: benchmark items (e.g. from :func:`load_items`), in report order.
        preprocess: the encoder's image transform (PIL RGB -> tensor).
        prompt_style: "raw" or "reference" (``dcsm.data.benchmarks.prompts``).
        benchmark: benchmark family, for items whose subset has no prompt rules of its own.

    Each sample is ``{"images": tensor, "captions": [K prompt-styled options], "label": int,
    "item_index": index into items}``.
    """

    def __init__(
        self,
        items: Sequence[MCQItem],
        preprocess: Callable[[Image.Image], torch.Tensor],
        prompt_style: str = "raw",
        benchmark: str = "whatsup",
    ) -> None:
        check_prompt_style(prompt_style)
        self.all_items = list(items)
        self.preprocess = preprocess
        self.prompt_style = prompt_style
        self.benchmark = benchmark
        self.indices = [i for i, it in enumerate(self.all_items) if it.image_path is not None]
        self.items = [self.all_items[i] for i in self.indices]
        self.missing = missing_images(self.all_items)
        self.unreadable: dict[int, str] = {}  # item index -> why its image could not be read (met while loading)
        self.captions = [styled_captions(it, prompt_style, benchmark) for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        try:
            image = open_item_image(item)
        except Exception as err:  # truncated, empty, not an image: PIL raises many types; counted, not fatal
            return {UNREADABLE_KEY: f"{type(err).__name__}: {' '.join(str(err).split())}", "item_index": self.indices[i]}
        return {
            "images": self.preprocess(image),
            "captions": list(self.captions[i]),
            "label": int(item.label),
            "item_index": self.indices[i],
        }

    def batches(self, batch_size: int) -> list[list[int]]:
        """Consecutive index batches of at most ``batch_size``, never mixing option counts
        (WhatsUp controlled rows have 4 options, COCO/GQA rows 2)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}. Fix: eval.batch_size=64.")
        out: list[list[int]] = []
        cur: list[int] = []
        k_cur = None
        for i, caps in enumerate(self.captions):
            if cur and (len(cur) >= batch_size or len(caps) != k_cur):
                out.append(cur)
                cur = []
            cur.append(i)
            k_cur = len(caps)
        if cur:
            out.append(cur)
        return out

    def loader(self, batch_size: int, num_workers: int = 0) -> Iterator[dict[str, Any]]:
        """Raw batches of the readable items (:meth:`batches`); unreadable images are left out
        and recorded in :attr:`unreadable` as they are met."""
        loader = DataLoader(
            self, batch_sampler=self.batches(batch_size), num_workers=num_workers, collate_fn=_collate_readable,
            persistent_workers=False,
        )
        for batch in loader:
            for idx, reason in batch.pop(UNREADABLE_KEY, []):
                self.unreadable[idx] = reason
            if batch:
                yield batch

    def unreadable_report(self) -> dict[str, Any]:
        """``{"count", "items": [{"path", "source", "row", "reason"}]}`` of the unreadable images
        met so far, in item order."""
        rows = []
        for idx in sorted(self.unreadable):
            it = self.all_items[idx]
            rows.append({"path": str(it.image_path), "source": it.source, "row": it.row, "reason": self.unreadable[idx]})
        return {"count": len(rows), "items": rows}


def _collate_readable(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`collate_mcq` of the readable samples (none: an empty batch), plus
    ``UNREADABLE_KEY``: [(item_index, reason)] of the others."""
    bad = [(s["item_index"], s[UNREADABLE_KEY]) for s in samples if UNREADABLE_KEY in s]
    good = [s for s in samples if UNREADABLE_KEY not in s]
    out = collate_mcq(good) if good else {}
    if bad:
        out[UNREADABLE_KEY] = bad
    return out


@dataclass(frozen=True)
class BaselineSpec:
    """An extra open_clip baseline: ``name`` (metrics key), model name and pretrained tag/path."""

    name: str
    model: str
    pretrained: str | None

    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(model=self.model, pretrained=self.pretrained, max_tokens=BASELINE_MAX_TOKENS, keep_cls=False)


def parse_baseline(spec: str) -> BaselineSpec:
    """``"MODEL:PRETRAINED"`` -> BaselineSpec. Only the first ':' splits, so the pretrained part
    may be a path holding ':'; ``none``/``null`` (any case) or nothing after ':' = random init.

    Raises:
        ValueError: no ':' or an empty model name.
    """
    text = str(spec).strip()
    model, sep, pretrained = text.partition(":")
    model, pretrained = model.strip(), pretrained.strip()
    if not sep or not model:
        raise ValueError(
            f"baseline {spec!r} is not of the form MODEL:PRETRAINED. Fix: e.g. 'ViT-B-32:openai', "
            "'ViT-B-16:/path/to/ckpt.pt' or 'ViT-B-32:none' (random init)."
        )
    tag = None if pretrained.lower() in RANDOM_INIT_TAGS else pretrained
    return BaselineSpec(name=f"{model}:{pretrained if tag is not None else 'none'}", model=model, pretrained=tag)
