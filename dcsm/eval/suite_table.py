"""The suite table: one row per benchmark subset, one column per model (Markdown, CSV, JSON).

Inputs are plain dicts, so any evaluation loop can fill them:

* ``results[model][subset]`` = accuracy in [0, 1] (None/NaN = not computed);
* ``counts[subset]`` = number of scored items (optional);
* ``skipped`` = ``[(subset, expected path)]`` from :func:`dcsm.data.benchmarks.discovery.discover_benchmarks`.

Rows follow the suite order (``dcsm.data.benchmarks.registry.SUITE``); subsets outside the suite come
after it, sorted. The JSON holds one record per (model, subset) with CLIP_benchmark's keys
(``dataset``, ``model``, ``pretrained``, ``task``, ``language``, ``metrics``).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

from ..data.benchmarks.registry import SUITE
from .report import LANGUAGE, TASK

__all__ = ["suite_rows", "render_markdown", "render_csv", "suite_json", "SKIPPED"]

SKIPPED = "skipped"
MISSING = "n/a"
PERCENT_DECIMALS = 1
FRACTION_DECIMALS = 4
_LABELS = {e.subset: e.label for e in SUITE}
_ORDER = {e.subset: i for i, e in enumerate(SUITE)}

Results = Mapping[str, Mapping[str, float | None]]


def _ok(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def suite_rows(results: Results, skipped: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Subsets to show: every subset with a result or skipped, suite order first."""
    subsets = {s for per_model in results.values() for s in per_model} | {s for s, _ in skipped}
    return sorted(subsets, key=lambda s: (_ORDER.get(s, len(_ORDER)), s))


def render_markdown(results: Results, models: Sequence[str] | None = None, *, counts: Mapping[str, int] | None = None,
                    skipped: Sequence[tuple[str, str]] = (), title: str | None = None) -> str:
    """Markdown table of accuracies in % (one decimal), then the skipped subsets and their expected paths."""
    models = list(results) if models is None else list(models)
    skip = dict(skipped)
    lines = [f"## {title}", ""] if title else []
    lines += ["| subset | n | " + " | ".join(models) + " |", "|---|---:|" + "---:|" * len(models)]
    for subset in suite_rows(results, skipped):
        label = _LABELS.get(subset, subset)
        if subset in skip:
            lines.append(f"| {label} | - | " + " | ".join([SKIPPED] * len(models)) + " |")
            continue
        n = counts.get(subset, "") if counts else ""
        cells = []
        for m in models:
            v = results.get(m, {}).get(subset)
            cells.append(f"{100 * float(v):.{PERCENT_DECIMALS}f}" if _ok(v) else MISSING)
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Skipped (files not found):", ""]
        lines += [f"- {_LABELS.get(s, s)} (`{s}`): expected `{path}`" for s, path in skipped]
    return "\n".join(lines) + "\n"


def render_csv(results: Results, models: Sequence[str] | None = None, *, counts: Mapping[str, int] | None = None,
               skipped: Sequence[tuple[str, str]] = ()) -> str:
    """CSV ``subset,label,n,<model...>,status,expected_path``; accuracies as fractions (4 decimals)."""
    models = list(results) if models is None else list(models)
    skip = dict(skipped)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subset", "label", "n", *models, "status", "expected_path"])
    for subset in suite_rows(results, skipped):
        label = _LABELS.get(subset, subset)
        if subset in skip:
            w.writerow([subset, label, "", *([""] * len(models)), SKIPPED, skip[subset]])
            continue
        vals = [results.get(m, {}).get(subset) for m in models]
        w.writerow([subset, label, counts.get(subset, "") if counts else "",
                    *(f"{float(v):.{FRACTION_DECIMALS}f}" if _ok(v) else "" for v in vals), "ok", ""])
    return buf.getvalue()


def suite_json(results: Results, models: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None, *,
               counts: Mapping[str, int] | None = None, skipped: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """``{"task", "results": [CLIP_benchmark records], "skipped": [{"dataset", "expected_path"}]}``.

    ``models`` maps a column name to its ``{"model", "pretrained", ...}`` description (extra keys
    are copied into the record); a plain list uses the column name as ``model``.
    """
    if models is None or not isinstance(models, Mapping):
        models = {m: {} for m in (list(results) if models is None else models)}
    records = []
    for subset in suite_rows(results):
        for name, info in models.items():
            v = results.get(name, {}).get(subset)
            if not _ok(v):
                continue
            rec = {"dataset": subset, "model": info.get("model", name), "pretrained": info.get("pretrained"),
                   "task": TASK, "language": LANGUAGE, "column": name,
                   "metrics": {"acc": float(v), **({"n": counts[subset]} if counts and subset in counts else {})}}
            rec.update({k: val for k, val in info.items() if k not in rec})
            records.append(rec)
    return {"task": TASK, "results": records, "skipped": [{"dataset": s, "expected_path": p} for s, p in skipped]}
