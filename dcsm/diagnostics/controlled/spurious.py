"""The spurious background cue: worst-group accuracy of CLIP zero-shot shape recognition, the
heads that carry the background, and mean-ablating them against as many random heads.

**Scenes.** One object per image (any colour and shape, uniform placement) on a background of one
of the three cue colours (:data:`dcsm.data.synthetic.captioned.CUE_COLOURS`), drawn uniformly,
so the 9 groups (shape x background colour) are balanced; 3 groups agree with the pretraining
correlation and 6 go against it. Two disjoint sets: ``select`` (ranks heads, gives the means of
mean-ablation) and ``test`` (every accuracy reported).

**Task.** The image against ``"a {colour} {shape}"`` for the 3 shapes (its own colour): zero-shot
shape recognition. Worst-group accuracy = the lowest of the 9 group accuracies (a tie counts wrong).

**Cue score of a head.** With the exact decomposition of the pooled embedding
(:func:`dcsm.diagnostics.decomposition.decompose`), head ``(l, h)``'s direct contribution ``c``
to the three captions' logits, on the select images whose background goes against their shape:
``mean(c[background's shape] - c[true shape])``. Positive: the head votes for the shape the
background stands for. Heads ranked by it; TextSpan (over the default text bank) and the concept
score of :mod:`dcsm.diagnostics.head_scores` describe the top ones.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Sequence

import torch

from ...data.synthetic.captioned import CaptionedConfig, make_captioned_scene
from ...data.synthetic.layout import noun_phrase
from ...data.synthetic.vocab import SHAPES
from ..ablation import Component, ablate, component_means
from ..decomposition import decompose
from ..head_scores import load_lexicon, score_heads
from ..position_sweep import preprocess
from ..pruning import clip_scorer, is_correct
from ..textspan import load_text_bank, text_bank, textspan_heads

__all__ = ["CueSet", "cue_set", "group_accuracy", "cue_scores", "run_spurious"]


class CueSet:
    """Preprocessed images ``(N, 3, H, W)``, options (3 captions each), ``shape``/``cue`` ``(N,)`` indices into SHAPES."""

    def __init__(self, images: torch.Tensor, options: list[list[str]], shape: torch.Tensor, cue: torch.Tensor) -> None:
        self.images, self.options, self.shape, self.cue = images, options, shape, cue

    def batches(self, batch_size: int) -> list[tuple[torch.Tensor, list[list[str]]]]:
        return [(self.images[i: i + batch_size], self.options[i: i + batch_size]) for i in range(0, len(self.shape), batch_size)]


def cue_set(enc: Any, scenes_section: dict, size: int, seed: int) -> CueSet:
    """``size`` one-object scenes with balanced cue backgrounds (stream ``seed``), through the encoder's preprocess."""
    side = int(enc.image_size[0])
    cfg = replace(CaptionedConfig.from_config(scenes_section), kind_weights=(1.0, 0.0, 0.0, 0.0, 0.0),
                  image_size=(side, side), background_cue="shape_colour", cue_agreement=1.0 / 3.0)
    samples = [make_captioned_scene(i, seed=seed, cfg=cfg) for i in range(size)]
    objs = [s.meta["objects"][0] for s in samples]
    options = [[noun_phrase(o[0], shape) for shape in SHAPES] for o in objs]
    shape = torch.tensor([SHAPES.index(o[1]) for o in objs])
    cue = torch.tensor([SHAPES.index(s.meta["cue_shape"]) for s in samples])
    return CueSet(preprocess(enc, [s.image for s in samples]), options, shape, cue)


def group_accuracy(correct: torch.Tensor, shape: torch.Tensor, cue: torch.Tensor) -> dict[str, Any]:
    """Accuracy per (shape, background) group ``(S, S)``, worst group, mean, aligned and conflicting."""
    S = len(SHAPES)
    g = shape * S + cue
    n = torch.bincount(g, minlength=S * S).float()
    acc = torch.bincount(g, weights=correct.float(), minlength=S * S) / n.clamp_min(1)
    present = n > 0
    agree = shape == cue
    return {"acc": float(correct.float().mean()), "worst_group": float(acc[present].min()),
            "aligned": float(correct[agree].float().mean()), "conflicting": float(correct[~agree].float().mean()),
            "group_acc": acc.view(S, S).tolist(), "group_n": n.view(S, S).int().tolist()}


@torch.no_grad()
def _evaluate(enc: Any, data: CueSet, batch_size: int) -> dict[str, Any]:
    score = clip_scorer(enc)
    scores = torch.cat([score(x, o).cpu() for x, o in data.batches(batch_size)])  # (N, 3)
    return group_accuracy(is_correct(scores, data.shape), data.shape, data.cue)


@torch.no_grad()
def cue_scores(enc: Any, data: CueSet, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, H)`` cue score per head (module docstring) and the ``(N, L, H, D)`` head outputs."""
    heads = torch.cat([decompose(enc, x, per_token=False).heads.cpu() for x, _ in data.batches(batch_size)])
    texts = enc.encode_texts([c for opts in data.options for c in opts]).pooled.float().cpu()
    T = texts.view(len(data.options), len(SHAPES), -1)  # (N, 3, D) unit norm
    logits = torch.einsum("nlhd,nkd->nlhk", heads, T)  # (N, L, H, 3)
    idx = torch.arange(len(data.shape))
    diff = logits[idx, :, :, data.cue] - logits[idx, :, :, data.shape]  # (N, L, H)
    against = data.shape != data.cue
    return diff[against].mean(dim=0), heads


def _describe(heads: torch.Tensor, enc: Any, top: list[tuple[int, int]], m: int) -> list[dict]:
    """TextSpan texts and concept score of the ``top`` heads (over the select set's head outputs)."""
    bank = load_text_bank("default")
    T = text_bank(enc, bank, progress=False).cpu()
    spans = textspan_heads(heads[:, :, :], T, bank, m=m, span_rank=None, progress=False)
    scores = {(s.layer, s.head): s for s in score_heads(spans, T, load_lexicon("default"), k=min(5, m))}
    by = {(s.layer, s.head): s for s in spans}
    return [{"head": f"L{l}H{h}", "textspan": by[(l, h)].texts, "concept": scores[(l, h)].concept,
             "concept_score": scores[(l, h)].score} for l, h in top]


def run_spurious(enc: Any, scenes_section: dict, section: dict, batch_size: int) -> dict[str, Any]:
    """The whole experiment on the spurious variant (``section``: ``controlled.spurious``)."""
    select = cue_set(enc, scenes_section, int(section["select_size"]), int(section["select_seed"]))
    test = cue_set(enc, scenes_section, int(section["size"]), int(section["test_seed"]))
    score, heads = cue_scores(enc, select, batch_size)
    L, H = score.shape
    order = [(int(i) // H, int(i) % H) for i in torch.argsort(score.flatten(), descending=True)]
    means = component_means(enc, [x for x, _ in select.batches(batch_size)], source="spurious select set", progress=False)
    baseline = _evaluate(enc, test, batch_size)
    ablations = []
    for k in sorted({int(k) for k in section["ks"] if 0 < int(k) <= L * H}):
        with ablate(enc, [Component("head", l, h) for l, h in order[:k]], mode="mean", means=means):
            cue_heads = _evaluate(enc, test, batch_size)
        rand = []
        for s in section["random_seeds"]:
            picked = random.Random(int(s)).sample(order, k)
            with ablate(enc, [Component("head", l, h) for l, h in picked], mode="mean", means=means):
                rand.append({"seed": int(s), "heads": [f"L{l}H{h}" for l, h in picked], **_evaluate(enc, test, batch_size)})
        ablations.append(_ablation_row(k, order[:k], cue_heads, rand, baseline))
    top = order[: max(int(k) for k in section["ks"])]
    return {"n_select": len(select.shape), "n_test": len(test.shape), "shapes": list(SHAPES),
            "cue_score": score.tolist(), "ranking": [f"L{l}H{h}" for l, h in order], "baseline": baseline,
            "top_heads": _describe(heads, enc, top, int(section["textspan_m"])), "ablations": ablations}


def _ablation_row(k: int, heads: Sequence[tuple[int, int]], cue: dict, rand: list[dict], base: dict) -> dict[str, Any]:
    mean = lambda key: sum(r[key] for r in rand) / len(rand)  # noqa: E731
    out = {"k": k, "cue_heads": [f"L{l}H{h}" for l, h in heads], "cue": cue, "random": rand}
    for key in ("worst_group", "acc", "conflicting", "aligned"):
        out[f"random_mean_{key}"] = mean(key)
        out[f"gain_{key}"] = cue[key] - base[key]
        out[f"random_gain_{key}"] = mean(key) - base[key]
    out["worst_group_gain_over_random"] = out["gain_worst_group"] - out["random_gain_worst_group"]
    return out
