"""The one scoring loop, shared by validation, synthetic evaluation and the benchmarks.

Every image is encoded once for all its K options and all options are scored in one batch by
the :class:`~dcsm.model.dcsm.DCSM`; the CLIP baseline is the same encoder's own logit of its pooled
embeddings (cosine; SigLIP: ``logit_scale * cos + logit_bias``). Metrics: :mod:`dcsm.eval.metrics`; reports: :mod:`dcsm.eval.report`.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from ..data.synthetic.dataset import SyntheticDataConfig, scene_dataset
from ..model.batch import FeatureBatch, collate_mcq
from .blind import encoder_blind
from .metrics import category_accuracy, warn_nonfinite
from ..model.dcsm import DCSM
from ..progress import progress_bar


@torch.no_grad()
def score_batch(model: DCSM, batch: dict[str, Any] | FeatureBatch, to_cpu: bool = True) -> dict[str, torch.Tensor]:
    """Raw or feature batch -> ``{"dcsm": (N, K), "clip": (N, K), "label": (N,)}`` plus the
    batch's per-sample 1-D tensors (``category``, ``index``, ``item_index``, ...)."""
    f = model.features(batch)
    out = {"dcsm": model(f), "clip": model.baseline_scores(f), "label": f.label}
    out.update({k: v for k, v in f.extras.items() if isinstance(v, torch.Tensor) and v.dim() == 1})
    return {k: v.cpu() for k, v in out.items()} if to_cpu else out


def score_batches(
    model: DCSM, batches: Iterable[dict[str, Any] | FeatureBatch], device: torch.device | str = "cpu"
) -> Iterator[tuple[dict[str, torch.Tensor], FeatureBatch]]:
    """The one scoring loop: every batch moved to ``device``, encoded (unless cached) and scored
    in eval mode -> (:func:`score_batch` result on CPU, the batch's features on ``device``)."""
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            moved = batch.to(device) if isinstance(batch, FeatureBatch) else {
                k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
            }
            with torch.no_grad():
                f = model.features(moved)
                yield score_batch(model, f), f
    finally:
        model.train(was_training)


def score_loader(
    model: DCSM, batches: Iterable[dict[str, Any] | FeatureBatch], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Concatenated :func:`score_batches` results: ``dcsm``/``clip`` ``(N, K)`` scores, ``label``
    and any per-sample tensor keys of the batches (e.g. ``category``); K must not vary. Also
    ``blind`` ``(N,)`` (:func:`~dcsm.eval.blind.encoder_blind`) for labelled batches with token rows
    (not a map cache): the reports count it; validation and the benchmarks do not pay for it."""
    out: dict[str, list[torch.Tensor]] = {}
    head = model.head
    for scores, f in score_batches(model, batches, device):
        if isinstance(f, FeatureBatch) and f.label is not None:
            functional = head.functional_rows.index(f.token_ids) if head.map_cfg.inject_functional_rows else None
            scores = {**scores, "blind": encoder_blind(f.tokens, f.token_mask, functional, f.text_pooled, f.label).cpu()}
        for k, v in scores.items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def evaluate_synthetic(
    model: DCSM, data: SyntheticDataConfig, splits: Sequence[str], batch_size: int, device: str | torch.device
) -> dict[str, Any]:
    """Per-split, per-category accuracy of DCSM and the CLIP baseline on synthetic splits (a
    progress bar per split when ``data.progress``); items with NaN/inf scores count as wrong,
    are counted (``n_nonfinite``) and warned about."""
    model.to(device)
    results = {}
    for split in splits:
        ds = scene_dataset(data, split, model.encoder.preprocess)
        loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate_mcq, num_workers=0)
        batches = progress_bar(loader, data.progress, desc=f"scoring {split}", total=len(loader), unit="batch")
        results[split] = category_accuracy(score_loader(model, batches, device), data.categories)
        warn_nonfinite({m: n["all"] for m, n in results[split]["n_nonfinite"].items()}, f"synthetic split {split}")
    return results
