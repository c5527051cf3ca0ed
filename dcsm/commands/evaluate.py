"""``evaluate.py``: a checkpoint on the synthetic splits (``eval.benchmark=synthetic``), on one
benchmark's own files (``whatsup``, ``whatsup_qa``, ``negbench``, ``clevr_bind``,
``vg_attribution``, ``ncd``, ``sugarcrepe``; :mod:`dcsm.benchmark_eval`), or on every benchmark
found under a data root (``eval.benchmark=all eval.data_root=DIR``; :mod:`dcsm.benchmark_suite`).

``eval.diagnostics=[heads, textspan, pruning]`` also runs the head diagnostics
(:mod:`dcsm.diagnostics.runner`) on the checkpoint's encoder (pruning scores the DCSM head too)
or, without a checkpoint, on the bare ``encoder:`` (CLIP only); their JSON lands in
``<run dir>/diagnostics/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..benchmark_eval import run_benchmark_from_config
from ..benchmark_suite import SUITE_BENCHMARK, checkpoint_list, run_suite_from_config
from ..checkpoints import load_dcsm
from ..config import to_plain
from ..data.benchmark_dataset import BENCHMARKS
from ..encoders import EncoderSpec, FrozenCLIP
from ..model import DCSM
from ..report import format_benchmark_table
from ..runner import command_config, default_device

SYNTHETIC = "synthetic"
DIAGNOSTICS_DIR = "diagnostics"


def _run_dir(cfg: dict, checkpoint: str | None) -> Path:
    """A checkpoint's run folder (``RUN/checkpoints/x.ckpt`` -> ``RUN``), else ``run_dir``."""
    return Path(checkpoint).resolve().parent.parent if checkpoint else Path(cfg["run_dir"])


def run_eval_diagnostics(cfg: dict, checkpoint: str | None, model: DCSM | None = None) -> dict[str, Any]:
    """``eval.diagnostics`` on the checkpoint's model (or ``model``), else on a bare
    ``FrozenCLIP(encoder)``; returns the diagnostics report (its JSON under ``files.json``)."""
    from ..diagnostics.runner import run_diagnostics  # heavy (plots): only when asked for

    names = list(cfg["eval"]["diagnostics"])
    device = default_device()
    if model is None and checkpoint:
        model = load_dcsm(checkpoint)[0]
    if model is not None:
        model.to(device)
        encoder = model.encoder
    else:
        encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"])).to(device)
    out_dir = _run_dir(cfg, checkpoint) / DIAGNOSTICS_DIR
    report = run_diagnostics(
        names, encoder, to_plain(cfg["diagnostics"]), out_dir,
        scorers={"dcsm": lambda x, o: model(x.to(model.encoder.device), o)} if model is not None else None,
        wandb_run=None,
    )
    print(f"\ndiagnostics: {report['files']['json']}\n")
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``evaluate.py``: see the module docstring; returns the report written."""
    cfg = command_config(argv)
    ev = cfg["eval"]
    bench = str(ev["benchmark"]).lower()
    known = (SYNTHETIC, SUITE_BENCHMARK, *BENCHMARKS)
    if bench not in known:
        raise ValueError(f"unknown eval.benchmark '{ev['benchmark']}'. Fix: eval.benchmark={'|'.join(known)}.")
    ckpts = checkpoint_list(ev["checkpoint"])
    if len(ckpts) > 1 and bench != SUITE_BENCHMARK:
        raise ValueError(f"several checkpoints ({len(ckpts)}) are compared with eval.benchmark=all only. "
                         "Fix: eval.checkpoint=ONE_PATH, or eval.benchmark=all eval.data_root=DIR.")
    model = None
    diagnostics = None
    if ev.get("diagnostics"):
        if ckpts and bench in BENCHMARKS:
            model = load_dcsm(ckpts[0])[0]  # loaded once, shared with the benchmark run
        diagnostics = run_eval_diagnostics(cfg, ckpts[0] if ckpts else None, model)
        if not ckpts and bench != SUITE_BENCHMARK:
            return {"diagnostics": diagnostics}

    if bench == SUITE_BENCHMARK:
        report = run_suite_from_config(cfg)
        print(f"\nresults: {report['output']} (+ .md, .csv)\n")
        print(report["table"])
    elif not ckpts:
        raise ValueError("evaluate.py needs eval.checkpoint=<path to a .ckpt written by train.py> "
                         "(or eval.diagnostics=[...] alone, or eval.benchmark=all with eval.baselines).")
    elif bench in BENCHMARKS:
        report = run_benchmark_from_config({**cfg, "eval": {**ev, "checkpoint": ckpts[0]}}, model=model)
        print(f"\nmetrics: {report['output']}\n")
        print(format_benchmark_table(report))
    else:
        from ..lit import load_module  # Lightning: the synthetic path only
        from .train import evaluate_and_report

        module = load_module(ckpts[0])
        ckpt = Path(ckpts[0])
        out = Path(ev["output"]) if ev["output"] else ckpt.parent.parent / f"eval_{bench}.json"
        report = evaluate_and_report(module, ckpt, ev["splits"], ev["batch_size"], out, f"\nmetrics: {out}\n")
    if diagnostics is not None:
        report["diagnostics"] = diagnostics["files"]
    return report
