"""A model on the synthetic splits: score them, write the report (``metrics.json`` of ``train.py``,
``eval_synthetic.json`` of ``evaluate.py``) and print its table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..data.synthetic.dataset import SyntheticDataConfig
from .loop import evaluate_synthetic
from ..model.dcsm import DCSM
from .report import TASK, format_synthetic_table, write_report
from ..model.device import default_device


def synthetic_report(model: DCSM, checkpoint: Path, results: dict[str, Any],
                     training_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The synthetic-evaluation report (CLIP_benchmark-style keys); ``training_data``: what the
    training stream skipped (:func:`dcsm.train.fit.data_summary`), when it reads shards."""
    spec = model.encoder.spec
    extra = {"training_data": training_data} if training_data else {}
    return {
        "model": spec.model,
        "pretrained": spec.pretrained,
        "dataset": "synthetic",
        "task": TASK,
        "prompt_style": "raw",
        "checkpoint": str(checkpoint),
        "dcsm_version": __version__,
        "encoder": spec.to_dict(),
        "encoder_towers": model.encoder.towers,
        "clip_logit": model.encoder.towers["baseline_logit"],  # what the "clip" column scores with
        "metrics": results,
        **extra,
    }


def evaluate_and_report(
    model: DCSM, cfg: dict, categories: Sequence[str], checkpoint: Path, splits: Sequence[str], batch_size: int,
    out: Path, header: str, training_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``model`` on the synthetic ``splits`` its run config ``cfg`` describes (``data:``), write
    the report to ``out`` and print its table (rows: ``categories``, the model's trained categories)."""
    data = SyntheticDataConfig.from_config(cfg)
    results = evaluate_synthetic(model, data, splits, batch_size, default_device())
    table = format_synthetic_table(results, categories)
    report = write_report(out, synthetic_report(model, checkpoint, results, training_data), table)
    print(header)
    print(table)
    return report
