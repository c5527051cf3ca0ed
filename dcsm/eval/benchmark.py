"""Benchmark evaluation: WhatsUp (Controlled-A/B, COCO/GQA-spatial), NegBench MCQ, CLEVR-bind,
VG-Attribution, NCD and SugarCrepe files (the whole suite at once: :mod:`dcsm.eval.suite`).

``run_benchmark`` scores every row of the benchmark's own annotation files with

* the trained :class:`~dcsm.model.dcsm.DCSM` (``dcsm``),
* the plain CLIP cosine of the *same* frozen encoder (``clip``), from the same forward pass:
  each image is encoded once for all its options and all options are scored in one batch,
* any further open_clip baselines (``"MODEL:PRETRAINED"`` or ``"MODEL:/path/to/ckpt.pt"``),
  scored by their own pooled cosine with their own image transform,

and reports accuracy per subset and per group (WhatsUp: preposition; NegBench: question type)
plus WhatsUp Controlled-A/B pair and set accuracy (:func:`dcsm.eval.metrics.mcq_metrics`).

A tie for the top score counts as wrong (:data:`dcsm.eval.metrics.TIE_RULE`, written into every
report); tied items are counted per scorer and subset (``n_tied``), and so are items with a NaN
or infinite score (``n_nonfinite``, :data:`dcsm.eval.metrics.NONFINITE_RULE`: wrong, and warned about). Items with options that
differ as text but are identical after truncation to ``encoder.max_tokens`` are counted per
subset (``n_truncation_identical``) and named in a warning: the map cannot tell them apart.

Outputs, all written atomically: a metrics JSON in the CLIP_benchmark spirit (``model``,
``pretrained``, ``dataset``, ``task``, ``metrics`` ...), a Markdown table next to it (same
name, ``.md``), the DCSM failure examples as PNG files in a folder beside them
(``<name>_failures/``: the image and the heatmaps of the correct and the predicted caption,
listed in the JSON under ``failure_images`` and per failure) and, with ``logger.kind=wandb``
(offline by default), a W&B run with the metrics, those PNGs as an image list
(``failure_heatmaps``, which W&B writes as media files, offline too) and a table of the
failure examples. The prompt style used is written into
every output. Rows whose image is not found are reported with their paths and counted; the
other rows are scored; so are rows whose image exists but cannot be read (truncated, empty, not
an image): counted and listed with the reason (``unreadable_images``), the rest scored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import __version__
from ..checkpoints.load import load_dcsm
from ..data.benchmarks.dataset import BaselineSpec, BenchmarkDataset, load_items, parse_baseline
from ..data.benchmarks.items import MCQItem
from ..model.encoders import FrozenCLIP, PooledCLIP
from .loop import score_batches
from ..model.heatmaps import option_maps, spatial_heatmap
from .metrics import NONFINITE_RULE, TIE_RULE, mcq_metrics, top_choice, warn_nonfinite
from ..model.dcsm import DCSM
from ..progress import progress_bar, progress_enabled
from ..data.benchmarks.prompts import check_prompt_style
from .report import CLIP_SCORER, DCSM_SCORER, LANGUAGE, TASK, default_output, format_benchmark_table, nan_to_none, write_report
from ..model.device import default_device
from .failures import failure_records, wandb_failures, save_failure_images


__all__ = ["run_benchmark", "run_benchmark_from_config", "score_dcsm_and_clip", "score_baseline", "score_baseline_on", "truncation_identical", "count_truncation_identical"]

log = logging.getLogger(__name__)

MISSING_SHOWN_IN_LOG = 10


WANDB_CONFIG_KEYS = ("model", "pretrained", "dataset", "prompt_style", "checkpoint", "annotation_files", "image_root")


def score_dcsm_and_clip(
    model: DCSM, dataset: BenchmarkDataset, batch_size: int, num_workers: int, max_failures: int, progress: bool
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], list[dict[str, Any]]]:
    """One pass of the shared scoring loop: DCSM and same-encoder CLIP scores per item index,
    and the first failures (DCSM wrong, ties included) with their heatmaps for the correct and the
    best-scored other caption (``"shown"``: the prediction, or for a tie a tied rival)."""
    head, spec = model.head, model.encoder.spec
    dcsm_out: dict[int, torch.Tensor] = {}
    clip_out: dict[int, torch.Tensor] = {}
    failures: list[dict[str, Any]] = []
    loader = progress_bar(dataset.loader(batch_size, num_workers), progress, desc=f"{dataset.benchmark}: dcsm+clip",
                          total=len(dataset.batches(batch_size)), unit="batch")
    for scores, f in score_batches(model, loader, model.encoder.device):
        dcsm, clip, label = scores["dcsm"].float(), scores["clip"].float(), scores["label"]
        pred = top_choice(dcsm)
        rival = dcsm.scatter(1, label[:, None], float("-inf")).argmax(dim=1)  # best option other than the label
        for r, idx in enumerate(scores["item_index"].tolist()):
            dcsm_out[idx], clip_out[idx] = dcsm[r], clip[r]
        for r in (pred != label).nonzero().flatten().tolist():
            if len(failures) >= max_failures:
                break
            maps, msk, fr = option_maps(head, f, torch.tensor([r]), torch.tensor([[int(label[r]), int(rival[r])]]))
            heat = [
                spatial_heatmap(maps[0, j], msk[0, j], model.encoder.grid_size, spec.keep_cls, None if fr is None else fr[0, j])
                for j in range(2)
            ]
            failures.append({"item_index": int(scores["item_index"][r]), "shown": int(rival[r]), "heatmaps": heat})
    return dcsm_out, clip_out, failures


@torch.no_grad()
def score_baseline(
    encoder: PooledCLIP, dataset: BenchmarkDataset, batch_size: int, num_workers: int, name: str, progress: bool
) -> dict[int, torch.Tensor]:
    """Pooled-cosine scores ``(K,)`` of an extra baseline (any open_clip model) per item index:
    unit-norm ``encode_image`` against unit-norm ``encode_text`` of each item's options."""
    out: dict[int, torch.Tensor] = {}
    for batch in progress_bar(dataset.loader(batch_size, num_workers), progress, desc=f"{dataset.benchmark}: {name}",
                              total=len(dataset.batches(batch_size)), unit="batch"):
        captions: list[list[str]] = batch["captions"]
        n, k = len(captions), len(captions[0])
        img = encoder.encode_images(batch["images"])  # (n, D)
        txt = encoder.encode_texts([c for opts in captions for c in opts]).view(n, k, -1)  # (n, K, D)
        scores = torch.einsum("nkd,nd->nk", txt, img).cpu()
        for r, idx in enumerate(batch["item_index"].tolist()):
            out[idx] = scores[r]
    return out


def score_baseline_on(
    baseline: BaselineSpec, subsets: Sequence[tuple[str | None, list[MCQItem], str]], prompt_style: str,
    device: str | torch.device, batch_size: int, num_workers: int, progress: bool,
) -> dict[str | None, tuple[BenchmarkDataset, dict[int, torch.Tensor]]]:
    """One extra baseline on each ``(key, items, benchmark name)``: its encoder is built once,
    on ``device``, and freed after; ``key`` -> (the items as its preprocessing sees them,
    :func:`score_baseline` scores)."""
    enc = PooledCLIP(baseline.encoder_spec()).to(device)
    out: dict[str | None, tuple[BenchmarkDataset, dict[int, torch.Tensor]]] = {}
    for key, items, benchmark in subsets:
        ds = BenchmarkDataset(items, enc.preprocess, prompt_style, benchmark)
        name = baseline.name if key is None else f"{key} {baseline.name}"
        out[key] = ds, score_baseline(enc, ds, batch_size, num_workers, name, progress)
    del enc
    return out


def scored_indices(dataset: BenchmarkDataset, scores: dict[str, dict[int, torch.Tensor]]) -> list[int]:
    """Item indices (report order) that every scorer scored: the found images minus the
    unreadable ones."""
    return [i for i in dataset.indices if i not in dataset.unreadable and all(i in per for per in scores.values())]


def warn_unreadable(unreadable: dict[str, Any], benchmark: str, output: str | Path) -> None:
    """One warning naming the first unreadable images (all are listed in the report)."""
    if not unreadable["count"]:
        return
    shown = "\n  ".join(f"{r['path']}: {r['reason']}" for r in unreadable["items"][:MISSING_SHOWN_IN_LOG])
    more = unreadable["count"] - MISSING_SHOWN_IN_LOG
    log.warning(
        "%d image(s) of %s could not be read (truncated, empty or not an image); their rows are skipped and listed in %s:"
        "\n  %s%s", unreadable["count"], benchmark, output, shown, f"\n  ... {more} more" if more > 0 else "",
    )


def truncation_identical(encoder: FrozenCLIP, dataset: BenchmarkDataset) -> list[int]:
    """Positions in ``dataset.items`` of the items with two options whose (prompt-styled) captions
    differ but whose kept token ids (``encoder.truncate`` to ``max_tokens``, after the tokenizer's
    own cut at CLIP's context) are identical: their maps are identical, so they tie.

    All options are tokenized in one call and compared by row id (``torch.unique``), not per token.
    """
    if not len(dataset):
        return []
    flat = [c for caps in dataset.captions for c in caps]
    kept, _ = encoder.truncate(encoder.tokenize(flat), flat)
    row_id = torch.unique(kept, dim=0, return_inverse=True)[1].tolist()  # (C,) one id per distinct kept row
    out, start = [], 0
    for i, caps in enumerate(dataset.captions):
        ids = row_id[start : start + len(caps)]
        start += len(caps)
        if len(set(ids)) < len(set(caps)):  # two different texts collapsed onto one kept row
            out.append(i)
    return out


def count_truncation_identical(encoder: FrozenCLIP, dataset: BenchmarkDataset) -> dict[str, int]:
    """:func:`truncation_identical` counted per subset (every scored subset listed, 0 included);
    one warning names the first such item."""
    counts = {it.subset: 0 for it in dataset.items}
    found = truncation_identical(encoder, dataset)
    for i in found:
        counts[dataset.items[i].subset] += 1
    if found:
        item = dataset.items[found[0]]
        log.warning(
            "%d item(s) of %s have options that differ as text but are identical after truncation to "
            "encoder.max_tokens=%d, e.g. %s row %s (%s); they score as ties, which count as wrong. "
            "Fix: raise encoder.max_tokens (at most the text context) or shorten the options.",
            len(found), dataset.benchmark, encoder.spec.max_tokens, item.source, item.row, dataset.captions[found[0]],
        )
    return counts


def run_benchmark(
    model: DCSM,
    benchmark: str,
    annotation_files: Sequence[str | Path],
    image_root: str | Path | None,
    *,
    prompt_style: str,
    baselines: Sequence[str],
    batch_size: int,
    num_workers: int,
    max_failures: int,
    output: str | Path,
    logger_cfg: dict | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score a benchmark with the DCSM head, its encoder's CLIP cosine and extra baselines.

    Args:
        model: a :class:`~dcsm.model.dcsm.DCSM`, e.g. from :func:`dcsm.checkpoints.load.load_dcsm`.
        benchmark: "whatsup" (Controlled-A/B and COCO/GQA-spatial files), "whatsup_qa",
            "negbench", "clevr_bind", "vg_attribution", "ncd" (the image folder) or "sugarcrepe".
        annotation_files: the benchmark's own JSON/CSV files, unchanged.
        image_root: folder the files' image paths resolve against.
        prompt_style: "raw" or "reference"; written into every output.
        baselines: extra open_clip baselines, ``"MODEL:PRETRAINED"`` or ``"MODEL:/path.pt"``.
        batch_size, num_workers: data loading.
        max_failures: how many DCSM failures (first in file order) go into the JSON and W&B.
        output: metrics JSON path; the Markdown table is written next to it as ``.md``.
        logger_cfg: the config's ``logger`` section; kind ``wandb`` logs a run (mode from the
            config, offline by default) under ``output``'s folder; other kinds log nothing more.
        progress: show tqdm progress bars.
        checkpoint: the checkpoint path, recorded in the outputs.
        device: move the model there first; None keeps it where it is.

    Returns:
        The report written to ``output`` (see module doc); ``metrics`` maps every scorer name
        (``dcsm``, ``clip``, then each baseline's ``MODEL:PRETRAINED``) to ``mcq_metrics``.
    """
    check_prompt_style(prompt_style)
    output = Path(output)
    benchmark = str(benchmark).lower()
    parsed = _check_run_args(image_root, max_failures, baselines)
    if device is not None:
        model.to(device)
    items, dataset = load_benchmark_items(model, benchmark, annotation_files, image_root, prompt_style, output)
    n_truncation_identical = count_truncation_identical(model.encoder, dataset)
    scores, failures = score_benchmark(
        model, items, dataset, parsed, prompt_style, benchmark, batch_size, num_workers, max_failures, progress
    )
    report = benchmark_report(
        model, items, dataset, scores, failures, parsed, benchmark, prompt_style, annotation_files, image_root,
        output, checkpoint, n_truncation_identical,
    )
    return write_report(
        output, report, format_benchmark_table(report), logger_cfg, WANDB_CONFIG_KEYS, wandb_failures(report)
    )


def _check_run_args(image_root: str | Path | None, max_failures: int, baselines: Sequence[str]) -> list[BaselineSpec]:
    """The one-line errors of :func:`run_benchmark`'s arguments; the parsed baselines."""
    if image_root is None:
        raise ValueError("no image root given. Fix: eval.image_root=<folder the annotation files' image paths resolve against>.")
    if not Path(image_root).is_dir():
        raise ValueError(f"image root '{image_root}' is not a folder. Fix: check eval.image_root.")
    if max_failures < 0:
        raise ValueError(f"max_failures must be >= 0, got {max_failures}.")
    parsed = [parse_baseline(b) for b in (baselines or [])]
    names = [DCSM_SCORER, CLIP_SCORER] + [b.name for b in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"baseline(s) {dupes} given twice. Fix: list each baseline once in eval.baselines.")
    return parsed


def load_benchmark_items(
    model: DCSM, benchmark: str, annotation_files: Sequence[str | Path], image_root: str | Path, prompt_style: str,
    output: Path,
) -> tuple[list[MCQItem], BenchmarkDataset]:
    """Load step: the files' items and their dataset under ``model``'s preprocessing; one warning
    names the first missing images (all are listed in the report at ``output``)."""
    items = load_items(benchmark, annotation_files, image_root)
    dataset = BenchmarkDataset(items, model.encoder.preprocess, prompt_style, benchmark)
    if dataset.missing:
        shown = "\n  ".join(dataset.missing[:MISSING_SHOWN_IN_LOG])
        more = len(dataset.missing) - MISSING_SHOWN_IN_LOG
        log.warning(
            "%d of %d images not found under image root '%s'; their rows are skipped and listed in %s:\n  %s%s",
            len(dataset.missing), len(items), image_root, output, shown, f"\n  ... {more} more" if more > 0 else "",
        )
    if len(dataset) == 0:
        log.warning("no image of %s was found under '%s': nothing scored. Fix: check eval.image_root.", benchmark, image_root)
    return items, dataset


def score_benchmark(
    model: DCSM, items: list[MCQItem], dataset: BenchmarkDataset, baselines: Sequence[BaselineSpec], prompt_style: str,
    benchmark: str, batch_size: int, num_workers: int, max_failures: int, progress: bool,
) -> tuple[dict[str, dict[int, torch.Tensor]], list[dict[str, Any]]]:
    """Score step: scorer name (``dcsm``, ``clip``, each baseline) -> item index -> scores ``(K,)``,
    and the first ``max_failures`` DCSM failures; the baselines' unreadable images join ``dataset``'s."""
    if not len(dataset):
        return {n: {} for n in [DCSM_SCORER, CLIP_SCORER] + [b.name for b in baselines]}, []
    scores: dict[str, dict[int, torch.Tensor]] = {}
    scores[DCSM_SCORER], scores[CLIP_SCORER], failures = score_dcsm_and_clip(
        model, dataset, batch_size, num_workers, max_failures, progress
    )
    for b in baselines:
        bds, scores[b.name] = score_baseline_on(
            b, [(None, items, benchmark)], prompt_style, model.encoder.device, batch_size, num_workers, progress
        )[None]
        dataset.unreadable.update(bds.unreadable)
    return scores, failures


def benchmark_report(
    model: DCSM, items: list[MCQItem], dataset: BenchmarkDataset, scores: dict[str, dict[int, torch.Tensor]],
    failures: list[dict[str, Any]], baselines: Sequence[BaselineSpec], benchmark: str, prompt_style: str,
    annotation_files: Sequence[str | Path], image_root: str | Path, output: Path, checkpoint: str | Path | None,
    n_truncation_identical: dict[str, int],
) -> dict[str, Any]:
    """Report step: metrics per scorer over the rows every scorer scored, failure records and their
    PNGs (written beside ``output``), counts and provenance (see module doc); NaN -> None."""
    names = [DCSM_SCORER, CLIP_SCORER] + [b.name for b in baselines]
    scored_idx = scored_indices(dataset, scores)
    unreadable = dataset.unreadable_report()
    warn_unreadable(unreadable, benchmark, output)
    scored = [items[i] for i in scored_idx]
    metrics = {
        n: mcq_metrics(scored, [int(top_choice(scores[n][i])) for i in scored_idx]) for n in names
    }
    warn_nonfinite({n: m["n_nonfinite"] for n, m in metrics.items()}, benchmark)
    failure_files = save_failure_images(output, failures, items)
    spec = model.encoder.spec
    report: dict[str, Any] = {
        "model": spec.model,
        "pretrained": spec.pretrained,
        "dataset": benchmark,
        "task": TASK,
        "language": LANGUAGE,
        "prompt_style": prompt_style,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "annotation_files": [str(f) for f in annotation_files],
        "image_root": str(image_root),
        "subsets": list(dict.fromkeys(it.subset for it in items)),
        "n_items": len(items),
        "n_scored": len(scored_idx),
        "missing_images": {"count": len(dataset.missing), "paths": list(dataset.missing)},
        "unreadable_images": unreadable,
        "scorers": names,
        "baselines": [{"name": b.name, "model": b.model, "pretrained": b.pretrained} for b in baselines],
        "encoder": spec.to_dict(),
        "encoder_towers": model.encoder.towers,
        "clip_logit": model.encoder.towers["baseline_logit"],
        "metrics": metrics,
        "tie_rule": TIE_RULE,
        "nonfinite_rule": NONFINITE_RULE,
        "n_truncation_identical": n_truncation_identical,
        "failures": failure_records(items, failures, failure_files, scores, prompt_style, benchmark),
        "failure_images": [path for files in failure_files for path in files.values()],
        "dcsm_version": __version__,
        "output": str(output),
        "markdown": str(output.with_suffix(".md")),
    }
    return nan_to_none(report)

def run_benchmark_from_config(cfg: dict, model: DCSM | None = None, progress: bool | None = None) -> dict[str, Any]:
    """``evaluate.py eval.benchmark=<one of BENCHMARKS> ...``: load ``eval.checkpoint``
    (unless a model is given), run :func:`run_benchmark` with the ``eval`` and ``logger``
    config sections; output defaults to ``<checkpoint dir>/../eval_<benchmark>_<style>.json``;
    progress bars as the config's ``progress`` says (unless given)."""
    ev = cfg["eval"]
    ckpt = ev["checkpoint"]
    if model is None:
        if not ckpt:
            raise ValueError("evaluate.py needs eval.checkpoint=<path to a .ckpt written by train.py>.")
        model = load_dcsm(str(ckpt))[0]
    device = default_device()
    name = f"eval_{ev['benchmark']}_{ev['prompt_style']}.json"
    out = Path(ev["output"]) if ev["output"] else default_output(ckpt, cfg["run_dir"], name)
    return run_benchmark(
        model,
        ev["benchmark"],
        list(ev["annotation_files"] or []),
        ev["image_root"],
        prompt_style=ev["prompt_style"],
        baselines=list(ev["baselines"] or []),
        batch_size=int(ev["batch_size"]),
        num_workers=int(ev["num_workers"]),
        max_failures=int(ev["max_failures"]),
        output=out,
        logger_cfg=cfg["logger"],
        progress=progress_enabled(cfg) if progress is None else progress,
        checkpoint=ckpt,
        device=device,
    )
