"""Head-pruning experiments: prune the top-k, bottom-k and k random heads, measure the accuracy drop.

Heads are soft-pruned (:func:`dcsm.diagnostics.ablation.ablate`) on the encoder itself, so CLIP's
zero-shot multiple-choice score (argmax of pooled image-caption cosine) and every injected
scorer built on the same encoder (e.g. a DCSM model: ``scorer(images, options) -> (N, K)``) see
the same pruned heads. A tie between the correct option and another counts as wrong (and is
counted). Random draws use one seed each; top/bottom are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .ablation import Component, ComponentMeans, ablate

__all__ = ["Task", "ScoreFn", "synthetic_task", "clip_scorer", "is_correct", "accuracy", "run_pruning"]

#: ``scorer(images (N, 3, H, W), options: N lists of K captions) -> scores (N, K)``
ScoreFn = Callable[[torch.Tensor, list[list[str]]], torch.Tensor]


@dataclass
class Task:
    """A multiple-choice task in memory: images ``(N, 3, H, W)``, options, labels ``(N,)``, categories."""

    name: str
    images: torch.Tensor
    options: list[list[str]]
    labels: torch.Tensor
    categories: list[str]

    def batches(self, batch_size: int) -> list[tuple[torch.Tensor, list[list[str]]]]:
        return [(self.images[i: i + batch_size], self.options[i: i + batch_size]) for i in range(0, len(self.labels), batch_size)]


def synthetic_task(transform: Callable, split: str, size: int, seed: int, render_size: int, num_options: int,
                   categories: Sequence[str]) -> Task:
    """Synthetic scenes (``dcsm.data``) of one split as a :class:`Task` (rendered once, kept in memory)."""
    from ..config import DEFAULT_CONFIG, load_yaml, to_plain
    from ..data.synthetic.dataset import SyntheticDataConfig, scene_dataset

    run_cfg = to_plain(load_yaml(DEFAULT_CONFIG))  # the synthetic data's one home; this task's keys on top
    run_cfg["data"].update({f"{split}_size": size}, image_size=render_size, num_options=num_options,
                           categories=list(categories), seed=seed)
    cfg = SyntheticDataConfig.from_config(run_cfg)
    ds = scene_dataset(cfg, split, transform)
    items = [ds[i] for i in range(len(ds))]
    return Task(
        name=f"synthetic/{split}[{size}] seed {seed}",
        images=torch.stack([it["images"] for it in items]),
        options=[list(it["captions"]) for it in items],
        labels=torch.tensor([it["label"] for it in items]),
        categories=[ds.categories[it["category"]] for it in items],
    )


def clip_scorer(encoder) -> ScoreFn:
    """CLIP zero-shot MCQ: cosine of pooled image and caption embeddings. Text embeddings are cached
    (pruning acts on the image tower only)."""
    cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def score(images: torch.Tensor, options: list[list[str]]) -> torch.Tensor:
        new = sorted({c for opts in options for c in opts} - cache.keys())
        if new:
            for c, e in zip(new, encoder.encode_texts(new).pooled):
                cache[c] = e
        img = encoder.encode_images(images).pooled  # (N, D) unit norm
        txt = torch.stack([torch.stack([cache[c] for c in opts]) for opts in options]).to(img.device)  # (N, K, D)
        return torch.einsum("nd,nkd->nk", img, F.normalize(txt, dim=-1))

    return score


def is_correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bool ``(N,)``: the true option ``labels (N,)`` alone holds the top score of ``scores (N, K)``
    (a tie for the top counts as wrong)."""
    at_top = scores == scores.max(dim=1, keepdim=True).values
    return at_top.gather(1, labels[:, None].to(scores.device))[:, 0] & (at_top.sum(dim=1) == 1)


def accuracy(scores: torch.Tensor, labels: torch.Tensor, categories: list[str]) -> dict:
    """Accuracy with ties counted wrong, overall and per category, plus the tie count."""
    scores, labels = scores.float().cpu(), labels.cpu()
    top = scores.max(dim=1).values
    correct_score = scores.gather(1, labels[:, None])[:, 0]
    tied = ((scores == top[:, None]).sum(dim=1) > 1) & (correct_score == top)
    right = is_correct(scores, labels)
    cats = sorted(set(categories))
    per = {c: float(right[[i for i, k in enumerate(categories) if k == c]].float().mean()) for c in cats}
    return {"acc": float(right.float().mean()), "per_category": per, "ties": int(tied.sum()), "n": len(labels)}


@torch.no_grad()
def _evaluate(task: Task, scorers: dict[str, ScoreFn], batch_size: int) -> dict[str, dict]:
    out = {}
    for name, scorer in scorers.items():
        scores = torch.cat([scorer(x, o).float().cpu() for x, o in task.batches(batch_size)])
        out[name] = accuracy(scores, task.labels, task.categories)
    return out


def run_pruning(
    encoder,
    ranking: Sequence[tuple[int, int]],
    task: Task,
    scorers: dict[str, ScoreFn],
    ks: Sequence[int],
    seeds: Sequence[int],
    mode: str = "mean",
    strength: float = 1.0,
    means: ComponentMeans | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Accuracy of every scorer with the top-k / bottom-k / k random heads of ``ranking`` pruned.

    ``ranking``: all heads as ``(layer, head)``, best first. Also reports the unpruned baseline and
    every attention layer ablated whole (``all_attention``: equals pruning all heads in ``mean`` mode).
    """
    n_heads = len(ranking)
    ks = sorted({int(k) for k in ks if 0 < int(k) <= n_heads})
    runs: list[tuple[str, int, int | None, list[tuple[int, int]]]] = []
    for k in ks:
        runs.append(("top", k, None, list(ranking[:k])))
        runs.append(("bottom", k, None, list(ranking[-k:])))
        for s in seeds:
            runs.append(("random", k, int(s), random.Random(int(s)).sample(list(ranking), k)))
    result: dict = {"mode": mode, "strength": strength, "task": task.name, "ks": ks, "seeds": list(seeds),
                    "n_heads": n_heads, "baseline": _evaluate(task, scorers, batch_size)}
    L = max(l for l, _ in ranking) + 1
    with ablate(encoder, [Component("attn", l) for l in range(L)], mode=mode, strength=strength, means=means):
        result["all_attention"] = _evaluate(task, scorers, batch_size)
    rows = []
    for kind, k, seed, heads in tqdm(runs, desc="pruning runs", disable=not progress, leave=False):
        with ablate(encoder, [Component("head", l, h) for l, h in heads], mode=mode, strength=strength, means=means):
            acc = _evaluate(task, scorers, batch_size)
        rows.append({"kind": kind, "k": k, "seed": seed, "heads": [f"L{l}H{h}" for l, h in heads], "scores": acc})
    result["runs"] = rows
    result["curves"] = curves(rows, list(scorers), ks, result["baseline"])
    return result


def curves(rows: list[dict], scorer_names: list[str], ks: list[int], baseline: dict) -> dict:
    """``{scorer: {kind: [{"k", "acc", "std", "drop"}]}}``; std over seeds for ``random`` (0 otherwise)."""
    out: dict = {}
    for name in scorer_names:
        base = baseline[name]["acc"]
        out[name] = {}
        for kind in ("top", "bottom", "random"):
            pts = []
            for k in ks:
                accs = torch.tensor([r["scores"][name]["acc"] for r in rows if r["kind"] == kind and r["k"] == k])
                if len(accs):
                    mean = float(accs.mean())
                    std = float(accs.std(unbiased=False)) if len(accs) > 1 else 0.0
                    pts.append({"k": k, "acc": mean, "std": std, "drop": base - mean, "n": len(accs)})
            out[name][kind] = pts
    return out
