"""Run diagnostics on an encoder and write their files: ``diagnostics.json``, PNG plots and Markdown
tables beside it, the same logged to W&B when a run is active or given.

``heads`` = decomposition over the image set -> TextSpan per head -> concept-consistency scores and
ranking (``head_scores.png``); ``textspan`` = the per-head TextSpan table (``textspan.md``);
``pruning`` = top/bottom/random head pruning on the task (``pruning.png``), for CLIP and every
injected scorer. ``pruning`` and ``heads`` compute the TextSpan they need. ``center_bias`` = the
position sweep, per-patch heatmaps, mitigations and Cross-Eyed protocol of
:mod:`dcsm.diagnostics.center_bias` (``center_bias_*.png``, ``center_bias.md``), for CLIP and every
injected scorer.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any, Sequence

import open_clip
import torch
from tqdm.auto import tqdm

from ..io import atomic_write_json

from .ablation import component_means
from .decomposition import decompose
from .names import DIAGNOSTICS, HEAD_DIAGNOSTICS
from .head_scores import load_lexicon, rank_heads, score_heads
from .plots import head_score_grid, pruning_curves, textspan_markdown
from .pruning import ScoreFn, clip_scorer, run_pruning, synthetic_task
from .textspan import load_text_bank, text_bank, textspan_heads

log = logging.getLogger(__name__)

__all__ = ["DIAGNOSTICS", "DiagnosticsConfigError", "run_diagnostics"]

REPORT_NAME = "diagnostics.json"
REQUIRED = {"heads": ("image_set", "task", "text_bank", "concept_lexicon", "textspan", "heads", "pruning", "batch_size"),
            "center_bias": ("center_bias", "batch_size")}


class DiagnosticsConfigError(ValueError):
    """Unknown diagnostic name or a missing ``diagnostics.*`` key."""


def _check(names: Sequence[str], cfg: dict) -> None:
    bad = [n for n in names if n not in DIAGNOSTICS]
    if bad:
        raise DiagnosticsConfigError(f"unknown diagnostic '{bad[0]}'. Fix: choose from {list(DIAGNOSTICS)}.")
    needed = [k for group, keys in REQUIRED.items() for k in keys
              if (group == "heads" and set(names) & set(HEAD_DIAGNOSTICS)) or group in names]
    missing = [k for k in dict.fromkeys(needed) if k not in cfg]
    if missing:
        raise DiagnosticsConfigError(f"config key 'diagnostics.{missing[0]}' is missing. Fix: start from "
                                     "configs/default.yaml's diagnostics section.")


def _task(encoder, section: dict, num_options: int | None = None):
    return synthetic_task(
        encoder.preprocess, split=section["split"], size=int(section["size"]), seed=int(section["seed"]),
        render_size=int(section.get("render_size") or encoder.image_size[0]),
        num_options=int(num_options or section.get("num_options", 4)),
        categories=tuple(section.get("categories") or ("binding", "spatial", "negation")),
    )


@torch.no_grad()
def run_diagnostics(
    names: Sequence[str],
    encoder,
    cfg: dict,
    out_dir: str | Path,
    scorers: dict[str, ScoreFn] | None = None,
    wandb_run: Any = None,
    progress: bool = True,
    wandb_prefix: str = "diagnostics",
) -> dict:
    """Run ``names`` (subset of ``heads``, ``textspan``, ``pruning``, ``center_bias``) on ``encoder`` (a FrozenCLIP).

    Args:
        cfg: the ``diagnostics:`` config section as a plain dict.
        scorers: extra scorers evaluated under pruning and center_bias, ``{name: fn(images, options) -> (N, K)}``;
            they must run on this same encoder (e.g. ``{"dcsm": dcsm_model}``; a :class:`~dcsm.model.dcsm.DCSM`
            itself also gets center_bias's patch heatmap).
        wandb_run: a W&B run to log to; default: the active ``wandb.run`` if any.

    Returns the report, also written to ``out_dir/diagnostics.json`` — merged with the one
    there (:func:`merge_previous`): running ``heads`` and then ``center_bias`` keeps both.
    """
    names = list(dict.fromkeys(names))
    _check(names, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bs = int(cfg["batch_size"])
    report: dict[str, Any] = {"meta": {
        "diagnostics": names, "encoder": encoder.spec.to_dict(), "config": cfg,
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__, "python": platform.python_version()},
        "device": str(encoder.device),
    }}
    files: dict[str, str] = {}
    if set(names) & set(HEAD_DIAGNOSTICS):
        _run_head_diagnostics(names, encoder, cfg, out, scorers, progress, report, files)
    if "center_bias" in names:
        from .center_bias import run_center_bias  # rendering and plots only when asked for

        report["center_bias"], cb_files = run_center_bias(encoder, cfg["center_bias"], out, scorers, bs, progress)
        files.update(cb_files)
    report["files"] = files
    json_path = out / REPORT_NAME
    _log_wandb(report, files, wandb_run, wandb_prefix)
    report = merge_previous(json_path, report, names)
    atomic_write_json(json_path, report)
    report["files"]["json"] = str(json_path)
    return report


def merge_previous(json_path: Path, report: dict, names: Sequence[str]) -> dict:
    """``report`` merged into the ``diagnostics.json`` already at ``json_path``: a run of other
    diagnostics on the same encoder keeps the earlier ones' numbers and files (the sections this
    run made replace their old versions; ``meta.runs`` says which run made which section). An
    earlier report of another encoder is kept beside it as ``diagnostics-<time>.json``."""
    import time

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sections = [k for k in report if k not in ("meta", "files")]
    report["meta"]["runs"] = {k: {"diagnostics": list(names), "time": stamp} for k in sections}
    try:
        old = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else None
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        return report
    if old.get("meta", {}).get("encoder") != report["meta"]["encoder"]:
        keep = json_path.with_name(f"diagnostics-{time.strftime('%Y%m%d-%H%M%S')}.json")
        json_path.rename(keep)
        log.warning("%s held diagnostics of another encoder; kept as %s", json_path, keep.name)
        return report
    merged = {k: v for k, v in old.items() if k not in ("meta", "files") and k not in report}
    runs = {k: v for k, v in old.get("meta", {}).get("runs", {}).items() if k in merged}
    runs.update({k: {"diagnostics": old.get("meta", {}).get("diagnostics", []), "time": None} for k in merged if k not in runs})
    meta = {**report["meta"], "diagnostics": list(dict.fromkeys([*old.get("meta", {}).get("diagnostics", []), *names])),
            "runs": {**runs, **report["meta"]["runs"]}}
    files = {k: v for k, v in old.get("files", {}).items() if k != "json" and Path(v).exists()}
    files.update(report["files"])
    return {"meta": meta, **merged, **{k: report[k] for k in sections}, "files": files}


def _run_head_diagnostics(names: Sequence[str], encoder, cfg: dict, out: Path, scorers: dict[str, ScoreFn] | None,
                          progress: bool, report: dict, files: dict[str, str]) -> None:
    """heads / textspan / pruning: fills ``report`` and ``files`` in place."""
    bs = int(cfg["batch_size"])
    image_set = _task(encoder, cfg["image_set"])
    report["meta"]["image_set"] = image_set.name
    # decomposition -> TextSpan -> scores (everything needs the ranking or the table)
    heads = torch.cat([decompose(encoder, x, per_token=False).heads.cpu()
                       for x, _ in tqdm(image_set.batches(bs), desc="decomposing image set", disable=not progress, leave=False)])
    bank = load_text_bank(cfg["text_bank"])
    T = text_bank(encoder, bank, batch_size=max(bs, 64), progress=progress).cpu()
    ts = cfg["textspan"]
    spans = textspan_heads(heads, T, bank, m=int(ts["m"]), span_rank=ts.get("span_rank"), progress=progress)
    hs = cfg["heads"]
    scores = score_heads(spans, T, load_lexicon(cfg["concept_lexicon"]), k=int(hs["top_k"]), weighting=hs["weighting"])
    ranked = rank_heads(scores)
    report["meta"]["text_bank"] = {"path": cfg["text_bank"], "texts": len(bank)}
    if "heads" in names or "pruning" in names:
        report["heads"] = {"scores": [s.to_dict() for s in scores], "ranking": [f"L{s.layer}H{s.head}" for s in ranked],
                           "formula": f"max over concept groups of the {hs['weighting']}-weighted share of the top-"
                                      f"{hs['top_k']} TextSpan texts in that group"}
        files["head_scores_png"] = str(head_score_grid(scores, out / "head_scores.png",
                                                       title=f"{encoder.spec.model} ({encoder.spec.pretrained}): head scores"))
    if "textspan" in names or "heads" in names:
        report["textspan"] = [s.to_dict() for s in spans]
        files["textspan_md"] = str(textspan_markdown(spans, ranked, out / "textspan.md"))
    if "pruning" in names:
        pc = cfg["pruning"]
        task = _task(encoder, cfg["task"])
        means = component_means(encoder, [x for x, _ in image_set.batches(bs)], source=image_set.name, progress=progress) \
            if pc["mode"] == "mean" else None
        all_scorers = {"clip": clip_scorer(encoder), **(scorers or {})}
        report["pruning"] = run_pruning(encoder, [(s.layer, s.head) for s in ranked], task, all_scorers,
                                        ks=pc["ks"], seeds=pc["seeds"], mode=pc["mode"], strength=float(pc["strength"]),
                                        means=means, batch_size=bs, progress=progress)
        files["pruning_png"] = str(pruning_curves(report["pruning"], out / "pruning.png",
                                                  title=f"{encoder.spec.model} ({encoder.spec.pretrained}) on {task.name}"))


def _log_wandb(report: dict, files: dict[str, str], run: Any, prefix: str) -> None:
    """Images and tables to W&B, only when a run is given or active (W&B is optional here)."""
    if run is None:
        try:
            import wandb
        except ImportError:
            return
        run = wandb.run
    if run is None:
        return
    import wandb

    data: dict[str, Any] = {}
    for key, name in (("head_scores_png", "head_score_grid"), ("pruning_png", "pruning_curves"),
                      ("center_bias_cells_png", "center_bias/cells"), ("center_bias_patches_png", "center_bias/patches"),
                      ("center_bias_mitigations_png", "center_bias/mitigations")):
        if key in files:
            data[f"{prefix}/{name}"] = wandb.Image(files[key])
    if "heads" in report:
        rows = [[f"L{s['layer']}H{s['head']}", s["score"], s["concept"], s["count"], s["similarity"], "; ".join(s["texts"])]
                for s in report["heads"]["scores"]]
        data[f"{prefix}/head_scores"] = wandb.Table(columns=["head", "score", "concept", "count", "similarity", "texts"], data=rows)
    if "textspan" in report:
        rows = [[f"L{s['layer']}H{s['head']}", i, t, v] for s in report["textspan"] for i, (t, v) in enumerate(zip(s["texts"], s["variance"]))]
        data[f"{prefix}/textspan"] = wandb.Table(columns=["head", "step", "text", "variance_share"], data=rows)
    if "pruning" in report:
        rows = [[name, kind, p["k"], p["acc"], p["std"], p["drop"], p["n"]]
                for name, c in report["pruning"]["curves"].items() for kind, pts in c.items() for p in pts]
        data[f"{prefix}/pruning"] = wandb.Table(columns=["scorer", "heads", "k", "acc", "std", "drop", "runs"], data=rows)
        for name, b in report["pruning"]["baseline"].items():
            data[f"{prefix}/baseline_acc/{name}"] = b["acc"]
    if "center_bias" in report:
        data.update({f"{prefix}/{k}": v for k, v in center_bias_metrics(report["center_bias"]).items()})
    run.log(data)


def center_bias_metrics(section: dict) -> dict[str, float]:
    """Scalars of a center_bias report: per scorer ``center_bias/<scorer>_{acc,ratio,diff}`` (ratio left
    out when undefined)."""
    out = {}
    for name, s in section["baseline"].items():
        out[f"center_bias/{name}_acc"] = s["acc"]
        out[f"center_bias/{name}_diff"] = s["diff"]
        if s["ratio"] is not None:
            out[f"center_bias/{name}_ratio"] = s["ratio"]
    return out
