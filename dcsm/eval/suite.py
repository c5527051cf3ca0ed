"""``evaluate.py eval.benchmark=all``: every benchmark found under one data root, one table.

The data root is laid out as the public repositories lay it out (see
:mod:`dcsm.data.benchmarks.discovery`). Every subset found is scored by

* each DCSM checkpoint (column ``dcsm``; with several checkpoints ``dcsm:<run name>``),
* the plain CLIP cosine of that checkpoint's frozen encoder, from the same forward pass
  (column ``clip``; with several checkpoints ``clip:<model>:<pretrained>``, once per encoder),
* each open_clip baseline of ``eval.baselines`` (column ``MODEL:PRETRAINED``),

with the shared scoring loop of :mod:`dcsm.eval.benchmark`. A subset whose annotation file is
absent, or none of whose images is on disk, is listed as skipped with the path it expected.

Outputs, written atomically next to each other: the JSON (CLIP_benchmark records, one per
(column, subset), plus the full per-group metrics and missing-image counts), a Markdown table
(``.md``) and a CSV (``.csv``) with a row per subset and a column per scorer
(:mod:`dcsm.eval.suite_table`). A tie for the top score counts as wrong (``tie_rule``, stated under
the Markdown table); tied items are counted per column and subset (``n_tied``), and items whose
options are identical after truncation per DCSM column and subset (``n_truncation_identical``).
Items with a NaN/inf score count as wrong and are counted per column and subset
(``n_nonfinite``), with a warning in the log and under the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from .benchmark import (
    CLIP_SCORER,
    DCSM_SCORER,
    count_truncation_identical,
    score_baseline_on,
    score_dcsm_and_clip,
    scored_indices,
    warn_unreadable,
    MISSING_SHOWN_IN_LOG,
)
from ..checkpoints.load import load_dcsm
from ..data.benchmarks.dataset import BaselineSpec, BenchmarkDataset, parse_baseline
from ..data.benchmarks.items import MCQItem
from ..data.benchmarks.discovery import discover_benchmarks, load_found
from ..data.benchmarks.registry import SUITE_SUBSETS
from ..io import atomic_write_json, atomic_write_text
from .metrics import NONFINITE_RULE, TIE_RULE, mcq_metrics, top_choice, warn_nonfinite
from ..model.dcsm import DCSM
from ..progress import progress_enabled
from ..data.benchmarks.prompts import check_prompt_style
from .report import default_output, nan_to_none, nonfinite_warning, tie_rule_line
from ..model.device import default_device
from .suite_table import render_csv, render_markdown, suite_json

__all__ = ["SuiteSubset", "load_suite", "run_suite", "run_suite_from_config", "SUITE_BENCHMARK"]

log = logging.getLogger(__name__)

#: ``eval.benchmark`` value that runs the whole suite.
SUITE_BENCHMARK = "all"
NO_IMAGES = "no image found under"


@dataclass
class SuiteSubset:
    """One found subset: its loader, files and loaded items."""

    subset: str
    loader: str
    files: list[Path]
    image_root: Path
    items: list[MCQItem]


def load_suite(data_root: str | Path, subsets: Sequence[str] | None = None) -> tuple[list[SuiteSubset], list[tuple[str, str]]]:
    """Discover and load every subset under ``data_root`` (all files are read before anything
    is scored, so a malformed file stops the run at once).

    Returns:
        ``(subsets with at least one image on disk, skipped [(subset, expected path)])``, both in
        suite order; a subset whose files exist but whose images do not is skipped with its
        image folder.
    """
    found, skipped = discover_benchmarks(data_root, None if subsets is None else tuple(subsets))
    loaded: list[SuiteSubset] = []
    for entry in found:
        subset, loader, files, image_root = entry
        items = load_found(entry)
        if not any(it.image_path is not None for it in items):
            skipped.append((subset, f"{image_root} ({NO_IMAGES} it)"))
            continue
        loaded.append(SuiteSubset(subset, loader, list(files), Path(image_root), items))
    skipped.sort(key=lambda sp: SUITE_SUBSETS.index(sp[0]))
    return loaded, skipped


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}#{i}", i + 1
    taken.add(out)
    return out


def _run_name(checkpoint: str | Path) -> str:
    """``runs/NAME/checkpoints/best.ckpt`` -> ``NAME``; other paths -> the file stem."""
    p = Path(checkpoint)
    return p.parent.parent.name if p.parent.name == "checkpoints" and p.parent.parent.name else p.stem


def _encoder_name(model: DCSM) -> str:
    spec = model.encoder.spec
    return f"{spec.model}:{spec.pretrained if spec.pretrained is not None else 'none'}"


def run_suite(
    models: Sequence[tuple[DCSM, str | Path | None]],
    data_root: str | Path,
    *,
    prompt_style: str,
    baselines: Sequence[str],
    batch_size: int,
    num_workers: int,
    output: str | Path,
    subsets: Sequence[str] | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Score every subset under ``data_root`` with each model, its encoder's CLIP and the baselines.

    Args:
        models: ``(DCSM, checkpoint path or None)`` per DCSM column (may be empty when baselines
            are given).
        data_root: the folder laid out as in :mod:`dcsm.data.benchmarks.discovery`.
        prompt_style: "raw" or "reference" (written into every output).
        baselines: extra open_clip baselines, ``"MODEL:PRETRAINED"``.
        batch_size, num_workers: data loading.
        output: the JSON path; ``.md`` and ``.csv`` are written beside it.
        subsets: restrict to these suite subset keys (default: all).
        progress: tqdm bars.
        device: where models and baselines run (None: cuda if available, else cpu).

    Returns:
        The JSON report: :func:`dcsm.eval.suite_table.suite_json` keys plus ``columns``,
        ``accuracy[column][subset]``, ``counts``, ``metrics[column][subset]`` (``mcq_metrics``),
        ``missing_images[subset]``, ``unreadable_images[subset]`` (path and reason of each image that
        exists but cannot be read; its rows are not scored), ``data_root``, ``prompt_style``, ``markdown``, ``csv``.
    """
    check_prompt_style(prompt_style)
    if not models and not baselines:
        raise ValueError("nothing to score. Fix: eval.checkpoint=PATH (or a list of paths) and/or eval.baselines=[MODEL:PRETRAINED].")
    device = default_device(device)
    parsed = [parse_baseline(b) for b in baselines]
    output = Path(output)
    loaded, skipped = load_suite(data_root, subsets)
    for s, path in skipped:
        log.warning("suite: %s skipped: expected %s", s, path)
    cols = _SuiteColumns()
    for model, ckpt in models:
        cols.score_model(model, ckpt, single=len(models) == 1, loaded=loaded, prompt_style=prompt_style, device=device,
                         batch_size=batch_size, num_workers=num_workers, progress=progress)
    for b in parsed:
        cols.score_baseline(b, loaded, prompt_style, device, batch_size, num_workers, progress)
    report, markdown, accuracy = _suite_report(cols, loaded, skipped, data_root, prompt_style, output)
    atomic_write_json(output, report)
    atomic_write_text(output.with_suffix(".md"), markdown)
    atomic_write_text(output.with_suffix(".csv"), render_csv(accuracy, list(cols.columns), counts=report["counts"], skipped=skipped))
    report["table"] = markdown
    return report


class _SuiteColumns:
    """The suite's columns as they are scored: each column's description and its predictions per
    subset, each subset's dataset (unreadable images of every column merged), truncation counts."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.columns: dict[str, dict[str, Any]] = {}
        self.preds: dict[str, dict[str, dict[int, int]]] = {}  # column -> subset -> item index -> prediction
        self.datasets: dict[str, BenchmarkDataset] = {}
        self.truncated: dict[str, dict[str, int]] = {}
        self.clip_done: set[str] = set()

    def score_model(self, model: DCSM, ckpt: str | Path | None, *, single: bool, loaded: Sequence[SuiteSubset],
                    prompt_style: str, device: str, batch_size: int, num_workers: int, progress: bool) -> None:
        """One DCSM column (and its encoder's CLIP column, once per encoder) on every subset."""
        model.to(device)
        name = _unique(DCSM_SCORER if single else f"{DCSM_SCORER}:{_run_name(ckpt) if ckpt else 'model'}", self.taken)
        enc_key = _encoder_name(model)
        clip_name = None
        if enc_key not in self.clip_done:
            self.clip_done.add(enc_key)
            clip_name = _unique(CLIP_SCORER if single else f"{CLIP_SCORER}:{enc_key}", self.taken)
        spec = model.encoder.spec
        self.columns[name] = {"model": spec.model, "pretrained": spec.pretrained, "scorer": DCSM_SCORER,
                              "checkpoint": None if ckpt is None else str(ckpt)}
        if clip_name:
            self.columns[clip_name] = {"model": spec.model, "pretrained": spec.pretrained, "scorer": CLIP_SCORER}
        for sub in loaded:
            ds = BenchmarkDataset(sub.items, model.encoder.preprocess, prompt_style, sub.loader)
            self.datasets.setdefault(sub.subset, ds)
            self.truncated.setdefault(name, {})[sub.subset] = count_truncation_identical(model.encoder, ds).get(sub.subset, 0)
            dcsm, clip, _ = score_dcsm_and_clip(model, ds, batch_size, num_workers, 0, progress)
            self.datasets[sub.subset].unreadable.update(ds.unreadable)
            self.preds.setdefault(name, {})[sub.subset] = {i: int(top_choice(v)) for i, v in dcsm.items()}
            if clip_name:
                self.preds.setdefault(clip_name, {})[sub.subset] = {i: int(top_choice(v)) for i, v in clip.items()}
        model.to("cpu")  # one model on the device at a time

    def score_baseline(self, b: BaselineSpec, loaded: Sequence[SuiteSubset], prompt_style: str, device: str,
                       batch_size: int, num_workers: int, progress: bool) -> None:
        """One extra baseline's column on every subset."""
        name = _unique(b.name, self.taken)
        self.columns[name] = {"model": b.model, "pretrained": b.pretrained, "scorer": "baseline"}
        scored_by = score_baseline_on(b, [(sub.subset, sub.items, sub.loader) for sub in loaded], prompt_style, device,
                                      batch_size, num_workers, progress)
        for subset, (ds, scores) in scored_by.items():
            self.datasets.setdefault(subset, ds)
            self.datasets[subset].unreadable.update(ds.unreadable)
            self.preds.setdefault(name, {})[subset] = {i: int(top_choice(v)) for i, v in scores.items()}


def _suite_report(cols: _SuiteColumns, loaded: Sequence[SuiteSubset], skipped: list[tuple[str, str]],
                  data_root: str | Path, prompt_style: str, output: Path) -> tuple[dict[str, Any], str, dict[str, dict]]:
    """The JSON report (NaN -> None), the Markdown table with its notes, and the accuracies as
    computed (NaN kept, for the CSV): metrics over the rows every column scored."""
    datasets, preds = cols.datasets, cols.preds
    scored = {s.subset: scored_indices(datasets[s.subset], {c: per[s.subset] for c, per in preds.items()}) for s in loaded}
    unreadable = {s.subset: datasets[s.subset].unreadable_report() for s in loaded}
    for s in loaded:
        warn_unreadable(unreadable[s.subset], s.subset, output)
    metrics = {
        col: {s: mcq_metrics([datasets[s].all_items[i] for i in scored[s]], [p[i] for i in scored[s]]) for s, p in per.items()}
        for col, per in preds.items()
    }
    accuracy = {col: {s: m["accuracy"] for s, m in per.items()} for col, per in metrics.items()}
    counts = {s.subset: len(scored[s.subset]) for s in loaded}
    names = list(cols.columns)
    title = f"Benchmark suite: multiple-choice accuracy (%), prompt style `{prompt_style}`"
    n_tied = {col: {s: m["n_tied"] for s, m in per.items()} for col, per in metrics.items()}
    n_nonfinite = {col: {s: m["n_nonfinite"] for s, m in per.items()} for col, per in metrics.items()}
    warn_nonfinite({f"{col} {s}": n for col, per in n_nonfinite.items() for s, n in per.items()}, "suite")
    markdown = (render_markdown(accuracy, names, counts=counts, skipped=skipped, title=title).rstrip("\n")
                + _tie_notes(n_tied, cols.truncated) + _nonfinite_notes(n_nonfinite) + _unreadable_notes(unreadable) + "\n")
    report: dict[str, Any] = {
        **suite_json(accuracy, cols.columns, counts=counts, skipped=skipped),
        "dataset": SUITE_BENCHMARK,
        "data_root": str(data_root),
        "prompt_style": prompt_style,
        "columns": cols.columns,
        "accuracy": accuracy,
        "counts": counts,
        "metrics": metrics,
        "tie_rule": TIE_RULE,
        "n_tied": n_tied,
        "nonfinite_rule": NONFINITE_RULE,
        "n_nonfinite": n_nonfinite,
        "n_truncation_identical": cols.truncated,
        "annotation_files": {s.subset: [str(f) for f in s.files] for s in loaded},
        "missing_images": {s.subset: {"count": len(datasets[s.subset].missing), "paths": datasets[s.subset].missing}
                           for s in loaded},
        "unreadable_images": unreadable,
        "dcsm_version": __version__,
        "output": str(output),
        "markdown": str(output.with_suffix(".md")),
        "csv": str(output.with_suffix(".csv")),
    }
    return nan_to_none(report), markdown, accuracy

def _unreadable_notes(unreadable: dict[str, dict[str, Any]]) -> str:
    """A line under the suite table naming the unreadable images per subset (none: nothing)."""
    rows = [f"`{r['path']}` ({s}): {r['reason']}" for s, u in unreadable.items() for r in u["items"]]
    if not rows:
        return ""
    shown = rows[:MISSING_SHOWN_IN_LOG] + ([f"... {len(rows) - MISSING_SHOWN_IN_LOG} more (all in the JSON)"]
                                          if len(rows) > MISSING_SHOWN_IN_LOG else [])
    return f"\n\nUnreadable images ({len(rows)}; their rows are not scored): " + "; ".join(shown)


def _nonfinite_notes(n_nonfinite: dict[str, dict[str, int]]) -> str:
    """The warning under the suite table naming the columns and subsets with NaN/inf scores."""
    lines = nonfinite_warning({f"{col} {s}": n for col, per in n_nonfinite.items() for s, n in per.items()})
    return "\n" + "\n".join(lines) if lines else ""


def _tie_notes(n_tied: dict[str, dict[str, int]], truncated: dict[str, dict[str, int]]) -> str:
    """Lines under the suite table: the tie rule, then the non-zero tie and truncation counts."""
    lines = ["", "", tie_rule_line()]
    tied = [f"{col} {s}: {n}" for col, per in n_tied.items() for s, n in per.items() if n]
    if tied:
        lines += ["", "Tied items (counted wrong): " + ", ".join(tied)]
    trunc = [f"{col} {s}: {n}" for col, per in truncated.items() for s, n in per.items() if n]
    if trunc:
        lines += ["", "Items whose options are identical after truncation to encoder.max_tokens: " + ", ".join(trunc)]
    return "\n".join(lines)


def checkpoint_list(value: Any) -> list[str]:
    """``eval.checkpoint``: null, one path or a list of paths -> list of paths."""
    if value in (None, "", []):
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def run_suite_from_config(cfg: dict, progress: bool | None = None) -> dict[str, Any]:
    """``evaluate.py eval.benchmark=all eval.data_root=DIR [eval.checkpoint=PATH|[P1,P2]]
    [eval.baselines=[...]]``; output defaults to ``<first checkpoint's run dir>/eval_all_<style>.json``
    (no checkpoint: ``<run_dir>/eval_all_<style>.json``)."""
    ev = cfg["eval"]
    if not ev.get("data_root"):
        raise ValueError("eval.benchmark=all needs eval.data_root=<folder laid out as the public benchmark repos>.")
    ckpts = checkpoint_list(ev["checkpoint"])
    name = f"eval_{SUITE_BENCHMARK}_{ev['prompt_style']}.json"
    out = Path(ev["output"]) if ev["output"] else default_output(ckpts[0] if ckpts else None, cfg["run_dir"], name)
    models = [(load_dcsm(c)[0], c) for c in ckpts]
    return run_suite(
        models, ev["data_root"], prompt_style=ev["prompt_style"], baselines=list(ev["baselines"] or []),
        batch_size=int(ev["batch_size"]), num_workers=int(ev["num_workers"]), output=out,
        progress=progress_enabled(cfg) if progress is None else progress,
    )
