"""``evaluate.py``: a checkpoint on the synthetic splits (``eval.benchmark=synthetic``) or on a
benchmark's own files (``whatsup``, ``whatsup_qa``, ``negbench``; :mod:`dcsm.benchmark_eval`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..benchmark_eval import run_benchmark_from_config
from ..data.benchmark_dataset import BENCHMARKS
from ..lit import load_module
from ..report import format_benchmark_table
from ..runner import command_config
from .train import evaluate_and_report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``evaluate.py``: a checkpoint on the synthetic splits or a benchmark's own files."""
    cfg = command_config(argv)
    ev = cfg["eval"]
    if not ev["checkpoint"]:
        raise ValueError("evaluate.py needs eval.checkpoint=<path to a .ckpt written by train.py>.")
    if ev["benchmark"] in BENCHMARKS:  # whatsup | whatsup_qa | negbench: the published files
        report = run_benchmark_from_config(cfg)
        print(f"\nmetrics: {report['output']}\n")
        print(format_benchmark_table(report))
        return report
    if ev["benchmark"] != "synthetic":
        raise ValueError(
            f"unknown eval.benchmark '{ev['benchmark']}'. Fix: eval.benchmark=synthetic|{'|'.join(BENCHMARKS)}."
        )
    module = load_module(ev["checkpoint"])
    ckpt = Path(ev["checkpoint"])
    out = Path(ev["output"]) if ev["output"] else ckpt.parent.parent / f"eval_{ev['benchmark']}.json"
    return evaluate_and_report(module, ckpt, ev["splits"], ev["batch_size"], out, f"\nmetrics: {out}\n")
