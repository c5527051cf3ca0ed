"""Multiple-choice scoring shared by validation, ``evaluate.py`` and the benchmarks.

Every image is encoded once for all its K options and all options are scored in one batch;
the CLIP baseline is the cosine of the same encoder's pooled embeddings.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from .encoders import FrozenCLIP
from .features import ensure_features
from .model import DCSMHead


def clip_scores(features: dict[str, Any]) -> torch.Tensor:
    """Baseline: cosine of pooled image ``(N, D)`` and pooled option ``(N, K, D)`` embeddings -> ``(N, K)``."""
    return torch.einsum("nd,nkd->nk", features["image_pooled"].float(), features["text_pooled"].float())


def dcsm_scores(head: DCSMHead, features: dict[str, Any]) -> torch.Tensor:
    """Head scores ``(N, K)`` of a feature batch."""
    return head(features["patches"], features["tokens"], features["token_mask"], features["token_ids"],
                image_pooled=features.get("image_pooled"), text_pooled=features.get("text_pooled"))


@torch.no_grad()
def score_batch(head: DCSMHead, encoder: FrozenCLIP | None, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Raw or feature batch -> ``{"dcsm": (N, K), "clip": (N, K), "label": (N,)}`` on CPU."""
    f = ensure_features(encoder, batch)
    return {"dcsm": dcsm_scores(head, f).cpu(), "clip": clip_scores(f).cpu(), "label": f["label"].cpu()}


@torch.no_grad()
def score_loader(head: DCSMHead, encoder: FrozenCLIP | None, batches: Iterable[dict[str, Any]], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Score every batch; returns concatenated ``dcsm``/``clip`` ``(N, K)`` scores, ``label`` and
    any per-sample tensor keys of the batches (e.g. ``category``)."""
    out: dict[str, list[torch.Tensor]] = {}
    was_training = head.training
    head.eval()
    try:
        for batch in batches:
            moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            res = score_batch(head, encoder, moved)
            for k, v in batch.items():
                if isinstance(v, torch.Tensor) and v.dim() == 1 and k not in res:
                    res[k] = v.cpu()
            for k, v in res.items():
                out.setdefault(k, []).append(v)
    finally:
        head.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def category_accuracy(scores: dict[str, torch.Tensor], categories: Sequence[str], key: str = "category") -> dict[str, dict[str, float]]:
    """Accuracy of DCSM and CLIP per category and overall.

    Returns ``{"dcsm": {"all": acc, cat: acc, ...}, "clip": {...}, "n": {"all": N, cat: n}}``.
    """
    label = scores["label"]
    correct = {m: (scores[m].argmax(dim=1) == label).float() for m in ("dcsm", "clip")}
    cat = scores[key] if key in scores else torch.zeros_like(label)
    names = list(categories) if key in scores else ["all"]
    result: dict[str, dict[str, float]] = {m: {"all": float(c.mean()) if len(c) else float("nan")} for m, c in correct.items()}
    result["n"] = {"all": int(len(label))}
    for i, name in enumerate(names):
        sel = cat == i
        result["n"][name] = int(sel.sum())
        for m, c in correct.items():
            result[m][name] = float(c[sel].mean()) if sel.any() else float("nan")
    return result


def format_table(results: dict[str, dict[str, dict[str, float]]], categories: Sequence[str]) -> str:
    """Markdown table: one row per split x category, DCSM vs CLIP accuracy (%)."""
    lines = ["| split | category | n | DCSM acc (%) | CLIP acc (%) |", "|---|---|---:|---:|---:|"]
    for split, res in results.items():
        for name in [*categories, "all"]:
            if name not in res["n"]:
                continue
            lines.append(
                f"| {split} | {name} | {res['n'][name]} | {100 * res['dcsm'][name]:.1f} | {100 * res['clip'][name]:.1f} |"
            )
    return "\n".join(lines)
