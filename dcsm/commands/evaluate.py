"""``evaluate.py``: a checkpoint on the synthetic splits (``eval.benchmark=synthetic``), on one
benchmark's own files (``whatsup``, ``whatsup_qa``, ``negbench``, ``clevr_bind``,
``vg_attribution``, ``ncd``, ``sugarcrepe``; :mod:`dcsm.eval.benchmark`), or on every benchmark
found under a data root (``eval.benchmark=all eval.data_root=DIR``; :mod:`dcsm.eval.suite`).

``eval.diagnostics=[heads, textspan, pruning, center_bias]`` also runs the diagnostics
(:mod:`dcsm.diagnostics.run`) on the checkpoint's encoder (pruning and center_bias score the
DCSM head too) or, without a checkpoint, on the bare ``encoder:`` (CLIP only); their JSON and
figures land in ``<run dir>/diagnostics/`` (with ``eval.output``: ``diagnostics/`` beside it), and a
later run of other diagnostics adds its numbers to the same ``diagnostics.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from ..eval.benchmark import run_benchmark_from_config
from ..eval.suite import SUITE_BENCHMARK, checkpoint_list, run_suite_from_config
from ..checkpoints.load import load_dcsm, stored_config
from ..config import ConfigError, to_plain
from ..config_checks import check_wandb_login, check_writable
from ..data.benchmarks.registry import BENCHMARKS
from ..model.encoders import EncoderSpec, FrozenCLIP
from ..model.dcsm import DCSM
from ..progress import progress_enabled
from ..eval.report import default_output, format_benchmark_table, run_folder
from .runner import command_config
from ..model.device import default_device

SYNTHETIC = "synthetic"
DIAGNOSTICS_DIR = "diagnostics"
MODEL_SECTIONS = ("encoder", "functional_rows", "maps", "scorer")  # come from the checkpoint
TRAIN_ONLY_SECTIONS = ("optim", "trainer", "checkpoint", "resume", "loss")  # nothing to evaluate with
HONOURED_MODEL_KEYS = ("encoder.pretrained",)  # the same weights from another place (a local file)


def command_line_keys(argv: Sequence[str] | None) -> list[str]:
    """The keys the user set as ``key=value`` (not the config file's defaults)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        i = args.index("--config")
        del args[i: i + 2]
    return [a.split("=", 1)[0] for a in args if "=" in a]


def _lookup(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def checked_overrides(cfg: dict, keys: Sequence[str], checkpoint: str, bench: str) -> tuple[FrozenCLIP | None, dict]:
    """Honour what an evaluation can honour, refuse the rest (one line naming the key).

    Returns an encoder to load the checkpoint with (``encoder.pretrained`` given: the checkpoint's
    encoder spec with those weights) or None, and the ``data.*`` overrides (synthetic splits).
    Raises :class:`ConfigError` for training-only keys, ``data.*`` on a benchmark run, and
    model-defining keys that differ from what the checkpoint was trained with.
    """
    for key in keys:
        if key.split(".")[0] in TRAIN_ONLY_SECTIONS:
            raise ConfigError(f"{key} has no effect in evaluate.py (it only sets training). Fix: drop {key}=...")
        if key.startswith("data.") and bench != SYNTHETIC:
            raise ConfigError(f"{key} has no effect on eval.benchmark={bench} (the benchmark's files set the data). Fix: drop {key}=...")
    saved = stored_config(checkpoint)
    for key in keys:
        if key.split(".")[0] in MODEL_SECTIONS and key not in HONOURED_MODEL_KEYS:
            new, old = _lookup(cfg, key), _lookup(saved, key)
            if new != old:
                raise ConfigError(
                    f"{key}={new!r} conflicts with checkpoint '{checkpoint}', trained with {old!r}: evaluate.py scores the "
                    f"model the checkpoint holds. Fix: drop {key}=..., or train a model with it."
                )
    encoder = None
    pretrained = cfg["encoder"]["pretrained"]
    if "encoder.pretrained" in keys and saved.get("encoder") and pretrained != saved["encoder"].get("pretrained"):
        encoder = FrozenCLIP(EncoderSpec(**{**saved["encoder"], "pretrained": pretrained}))
    data = {key.split(".", 1)[1]: _lookup(cfg, key) for key in keys if key.startswith("data.")}
    return encoder, data


def run_eval_diagnostics(cfg: dict, checkpoint: str | None, model: DCSM | None = None) -> dict[str, Any]:
    """``eval.diagnostics`` on the checkpoint's model (or ``model``), else on a bare
    ``FrozenCLIP(encoder)``; returns the diagnostics report (its JSON under ``files.json``)."""
    from ..diagnostics.run import run_diagnostics  # heavy (plots): only when asked for

    names = list(cfg["eval"]["diagnostics"])
    device = default_device()
    if model is None and checkpoint:
        model = load_dcsm(checkpoint)[0]
    if model is not None:
        model.to(device)
        encoder = model.encoder
    else:
        encoder = FrozenCLIP(EncoderSpec(**cfg["encoder"])).to(device)
    output = cfg["eval"].get("output")  # eval.output: the diagnostics land beside it
    out_dir = (Path(output).parent if output else run_folder(checkpoint, cfg["run_dir"])) / DIAGNOSTICS_DIR
    report = run_diagnostics(
        names, encoder, to_plain(cfg["diagnostics"]), out_dir,
        scorers={"dcsm": model} if model is not None else None,  # DCSM moves images to its encoder's device
        wandb_run=None, progress=progress_enabled(cfg),
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
    if ev["output"]:
        check_writable("eval.output", ev["output"], "file")
    if bench in BENCHMARKS:  # the one evaluation that logs a W&B run
        check_wandb_login(cfg)
    if len(ckpts) > 1 and bench != SUITE_BENCHMARK:
        raise ValueError(f"several checkpoints ({len(ckpts)}) are compared with eval.benchmark=all only. "
                         "Fix: eval.checkpoint=ONE_PATH, or eval.benchmark=all eval.data_root=DIR.")
    model = None
    diagnostics = None
    encoder, data_overrides = None, {}
    for ckpt in ckpts:  # every override is honoured or refused, never silently ignored
        encoder, data_overrides = checked_overrides(cfg, command_line_keys(argv), ckpt, bench)
    if encoder is not None and bench == SUITE_BENCHMARK:
        raise ConfigError("encoder.pretrained=... with eval.benchmark=all is not supported yet. Fix: evaluate one benchmark at a time.")
    if ckpts and bench in BENCHMARKS and (ev.get("diagnostics") or encoder is not None):
        model = load_dcsm(ckpts[0], encoder=encoder)[0]  # loaded once, shared with the benchmark run
    if ev.get("diagnostics"):
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
        from ..train.module import load_module  # Lightning: the synthetic path only
        from ..eval.synthetic import evaluate_and_report

        module = load_module(ckpts[0], encoder=encoder)
        module.cfg["data"].update(data_overrides)  # e.g. data.test_size: the splits scored
        ckpt = Path(ckpts[0])
        out = Path(ev["output"]) if ev["output"] else default_output(ckpt, cfg["run_dir"], f"eval_{bench}.json")
        report = evaluate_and_report(
            module.model, module.cfg, module.categories, ckpt, ev["splits"], ev["batch_size"], out, f"\nmetrics: {out}\n"
        )
    if diagnostics is not None:
        report["diagnostics"] = diagnostics["files"]
    return report
