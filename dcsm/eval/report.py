"""The one report writer: metrics JSON (CLIP_benchmark-style keys) + Markdown table + W&B run,
for synthetic evaluation (``train.py``/``evaluate.py``) and the benchmarks alike."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import atomic_write_json, atomic_write_text
from .metrics import NONFINITE_RULE, TIE_RULE

#: CLIP_benchmark-style ``task`` and ``language`` of every report.
TASK = "multiple_choice"
LANGUAGE = "en"
#: Scorer names of every benchmark report: the DCSM head, its encoder's pooled CLIP cosine.
DCSM_SCORER = "dcsm"
CLIP_SCORER = "clip"
MISSING_SHOWN_IN_TABLE = 20
SUMMARY_KEYS = ("n_items", "n_scored")


def nan_to_none(obj: Any) -> Any:
    """Strict JSON: NaN/inf (e.g. accuracy of an empty subset) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def tie_rule_line() -> str:
    """The line under every Markdown table that states how ties count."""
    return f"Ties: {TIE_RULE}."


def nonfinite_warning(counts: dict[str, int]) -> list[str]:
    """Markdown lines warning about items with NaN/inf scores (``counts``: "where" -> items);
    none when every count is 0."""
    bad = [f"{where}: {n}" for where, n in counts.items() if n]
    if not bad:
        return []
    return ["", f"**Warning: {sum(counts.values())} item(s) had NaN or infinite scores and count as wrong** "
            f"({'; '.join(bad)}); the model or its settings are broken: check the checkpoint. Rule: {NONFINITE_RULE}."]


def format_synthetic_table(results: dict[str, dict[str, dict[str, float]]], categories: Sequence[str]) -> str:
    """Markdown table: one row per split x category, DCSM vs CLIP accuracy (%); under it the tie
    rule and, where any, the number of tied items per split (all categories) and a warning
    naming the items with NaN/inf scores per split and scorer."""
    lines = ["| split | category | n | DCSM acc (%) | CLIP acc (%) |", "|---|---|---:|---:|---:|"]
    tied_notes, blind_notes = [], []
    nonfinite: dict[str, int] = {}
    for split, res in results.items():
        for name in [*categories, "all"]:
            if name not in res["n"]:
                continue
            lines.append(
                f"| {split} | {name} | {res['n'][name]} | {100 * res['dcsm'][name]:.1f} | {100 * res['clip'][name]:.1f} |"
            )
        tied = {m: res.get("n_tied", {}).get(m, {}).get("all", 0) for m in ("dcsm", "clip")}
        if any(tied.values()):
            tied_notes.append(f"- {split}: n tied DCSM {tied['dcsm']}, CLIP {tied['clip']}")
        for m, label in (("dcsm", "DCSM"), ("clip", "CLIP")):
            nonfinite[f"{split} {label}"] = res.get("n_nonfinite", {}).get(m, {}).get("all", 0)
        blind, seen = res.get("n_blind", {}), res.get("answerable", {})
        for name in [c for c in categories if blind.get(c)]:
            blind_notes.append(f"- {split} {name}: {blind[name]} of {res['n'][name]} blind; on the other "
                               f"{res['n'][name] - blind[name]}: DCSM {100 * seen['dcsm'][name]:.1f}, CLIP {100 * seen['clip'][name]:.1f}")
    lines += ["", tie_rule_line()]
    if tied_notes:
        lines += ["", "Tied items (counted wrong):", *tied_notes]
    if blind_notes:
        lines += ["", "Encoder-blind items (a wrong option reaches the scorer as the same token rows and pooled embedding as "
                  "the correct one: a coin flip for DCSM and CLIP alike; scored as usual above):", *blind_notes]
    lines += nonfinite_warning(nonfinite)
    return "\n".join(lines)





def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * float(value):.1f}"


def format_benchmark_table(report: dict[str, Any]) -> str:
    """Markdown: a header naming model, checkpoint and prompt style, then one row per subset,
    per group (preposition / question type), pair and set accuracy, and overall; one accuracy
    column (%) per scorer; an ``n tied`` row per subset where a scorer had ties; the tie rule;
    the items whose options became identical after truncation; then the missing and the unreadable
    images. Items with NaN/inf scores: an ``n non-finite`` row and a warning above the table."""
    metrics: dict[str, Any] = report["metrics"]
    scorers = list(report.get("scorers") or metrics)
    first = metrics[scorers[0]]
    missing = report.get("missing_images", {"count": 0, "paths": []})
    unreadable = report.get("unreadable_images", {"count": 0, "items": []})
    lines = [
        f"# {report['dataset']}: multiple-choice accuracy (%)",
        "",
        f"- model: `{report['model']}` pretrained: `{report['pretrained']}`",
        f"- checkpoint: `{report.get('checkpoint')}`",
        f"- prompt style: `{report['prompt_style']}`",
        f"- annotation files: {', '.join(f'`{f}`' for f in report.get('annotation_files', []))}",
        f"- scored {report['n_scored']} of {report['n_items']} items; missing images: {missing['count']}; "
        f"unreadable images: {unreadable['count']}",
        *nonfinite_warning({s: metrics[s].get("n_nonfinite", 0) for s in scorers if isinstance(metrics[s], dict)}),
        "",
        "| subset | metric | n | " + " | ".join(scorers) + " |",
        "|---|---|---:|" + "---:|" * len(scorers),
    ]

    def row(subset: str, metric: str, n: Any, get: Callable[[dict[str, Any]], Any]) -> None:
        vals = []
        for s in scorers:
            try:
                vals.append(_pct(get(metrics[s])))
            except (KeyError, TypeError):
                vals.append("n/a")
        lines.append(f"| {subset} | {metric} | {n} | " + " | ".join(vals) + " |")

    def tied_row(subset: str, n: Any, get: Callable[[dict[str, Any]], Any], what: str = "n tied") -> None:
        counts = [get(metrics[s]) if isinstance(metrics[s], dict) else None for s in scorers]
        if any(counts):
            lines.append(f"| {subset} | {what} | {n} | " + " | ".join("n/a" if c is None else str(c) for c in counts) + " |")

    for subset, sub in first["per_subset"].items():
        row(subset, "accuracy", sub["n"], lambda m, s=subset: m["per_subset"][s]["accuracy"])
        tied_row(subset, sub["n"], lambda m, s=subset: m.get("n_tied_per_subset", {}).get(s))
        tied_row(subset, sub["n"], lambda m, s=subset: m.get("n_nonfinite_per_subset", {}).get(s), "n non-finite")
        for group, g in first.get("per_group", {}).get(subset, {}).items():
            row(subset, group, g["n"], lambda m, s=subset, gr=group: m["per_group"][s][gr]["accuracy"])
        if subset in first.get("pair_accuracy", {}):
            row(subset, "pair accuracy", sub["n"], lambda m, s=subset: m["pair_accuracy"][s])
            row(subset, "set accuracy", sub["n"], lambda m, s=subset: m["set_accuracy"][s])
    row("all", "accuracy", first["n"], lambda m: m["accuracy"])
    tied_row("all", first["n"], lambda m: m.get("n_tied"))
    tied_row("all", first["n"], lambda m: m.get("n_nonfinite"), "n non-finite")
    lines += ["", tie_rule_line()]
    trunc = {s: n for s, n in (report.get("n_truncation_identical") or {}).items() if n}
    if trunc:
        lines += ["", "Items whose options differ as text but are identical after truncation to encoder.max_tokens "
                  "(they tie): " + ", ".join(f"{s} {n}" for s, n in trunc.items())]
    if missing["count"]:
        lines += ["", f"Missing images ({missing['count']}):", ""]
        lines += [f"- `{p}`" for p in missing["paths"][:MISSING_SHOWN_IN_TABLE]]
        if missing["count"] > MISSING_SHOWN_IN_TABLE:
            lines.append(f"- ... {missing['count'] - MISSING_SHOWN_IN_TABLE} more (all listed in the metrics JSON)")
    if unreadable["count"]:
        lines += ["", f"Unreadable images ({unreadable['count']}; their rows are not scored):", ""]
        lines += [f"- `{r['path']}`: {r['reason']}" for r in unreadable["items"][:MISSING_SHOWN_IN_TABLE]]
        if unreadable["count"] > MISSING_SHOWN_IN_TABLE:
            lines.append(f"- ... {unreadable['count'] - MISSING_SHOWN_IN_TABLE} more (all listed in the metrics JSON)")
    return "\n".join(lines)


def _flatten(prefix: str, obj: Any, out: dict[str, float]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and obj is not None:
        out[prefix] = obj


def log_wandb(
    report: dict[str, Any],
    logger_cfg: dict,
    output: Path,
    config_keys: Sequence[str],
    markdown: str,
    extra: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One W&B run (``logger.mode``; offline writes under ``output``'s folder): the metrics as
    summary, the Markdown table, and whatever ``extra(wandb)`` returns to log (e.g. a failure
    table). Returns ``{"mode", "dir", "run_id"}`` for the report."""
    import wandb

    wandb_dir = output.parent
    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=logger_cfg["project"],
        name=logger_cfg.get("name") or f"eval_{report['dataset']}_{report['prompt_style']}",
        mode=logger_cfg["mode"],
        dir=str(wandb_dir),
        job_type="evaluate",
        config={k: report.get(k) for k in config_keys},
    )
    try:
        summary: dict[str, float] = {}
        _flatten("", report["metrics"], summary)
        summary.update({k: report[k] for k in SUMMARY_KEYS if isinstance(report.get(k), (int, float))})
        if "missing_images" in report:
            summary["missing_images"] = report["missing_images"]["count"]
        if "unreadable_images" in report:
            summary["unreadable_images"] = report["unreadable_images"]["count"]
        run.summary.update(summary)
        run.summary["prompt_style"] = report.get("prompt_style")
        run.log({"metrics_markdown": wandb.Html(f"<pre>{markdown}</pre>"), **(extra(wandb) if extra else {})})
        info = {"mode": logger_cfg["mode"], "dir": str(Path(run.dir).parent), "run_id": run.id}
    finally:
        run.finish()
    return info



def run_folder(checkpoint: str | Path | None, run_dir: str | Path) -> Path:
    """A checkpoint's run folder (``RUN/checkpoints/x.ckpt`` -> ``RUN``), else ``run_dir``."""
    return Path(checkpoint).resolve().parent.parent if checkpoint else Path(run_dir)


def default_output(checkpoint: str | Path | None, run_dir: str | Path, name: str) -> Path:
    """Where a report goes when ``eval.output`` is unset: ``name`` in :func:`run_folder`."""
    return run_folder(checkpoint, run_dir) / name


def write_report(
    output: Path,
    report: dict[str, Any],
    markdown: str,
    logger_cfg: dict | None = None,
    wandb_config_keys: Sequence[str] = (),
    wandb_extra: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Metrics JSON at ``output`` + Markdown beside it (``.md``), both atomic; then, with
    ``logger.kind=wandb`` in ``logger_cfg``, a W&B run, recorded in the JSON as ``wandb``.
    Results are written first, so that a W&B problem never loses them. Every report states the
    tie rule (``tie_rule``)."""
    report.setdefault("tie_rule", TIE_RULE)
    report.setdefault("nonfinite_rule", NONFINITE_RULE)
    atomic_write_json(output, report)
    atomic_write_text(output.with_suffix(".md"), markdown + "\n")
    if logger_cfg and logger_cfg.get("kind") == "wandb":
        report["wandb"] = log_wandb(report, logger_cfg, output, wandb_config_keys, markdown, wandb_extra)
        atomic_write_json(output, report)
    return report
