"""Multiple-choice metrics, for every evaluation (validation, synthetic splits, benchmarks).

:func:`category_accuracy`: DCSM and CLIP accuracy per category of scored synthetic/shard samples.

:func:`mcq_metrics`: benchmark items (:class:`dcsm.data.benchmarks.items.MCQItem`): overall,
per-subset and per-group accuracy, plus the WhatsUp Controlled-A/B pair and set accuracy
defined as in the WhatsUp benchmark's own evaluation:

* each object pair (``MCQItem.pair_key``) has four relation slots, initially "wrong"; each item
  sets its slot to whether it was answered correctly (a later duplicate overwrites);
* pair: +1 if left_of and right_of are both correct, +1 if on and under (A) / in-front_of and
  behind (B) are both correct; ``pair_accuracy = pair_correct / (n / 2)``;
* set: +1 if all four slots are correct; ``set_accuracy = set_correct / (n / 4)``;

with ``n`` the number of items of that subset passed in. The original prints these as
percentages; here every accuracy is a fraction in [0, 1]. Groups are reported per subset
(``per_group[subset][group]``) so that e.g. NegBench COCO and VOC question types stay apart.

Ties (:data:`TIE_RULE`): every evaluation turns scores into a choice with :func:`top_choice`,
which returns :data:`TIE` when two or more options share the top score. Options that are equal
after truncation (past ``encoder.max_tokens`` or CLIP's context) score bit-identically, and a
plain argmax would pick the first of them, which in WhatsUp files is the answer; a tie
therefore never counts as correct, and the tied items are counted (``n_tied``).

Non-finite scores (:data:`NONFINITE_RULE`): a row with any NaN or infinite score (a broken
head, a NaN weight, ``maps.eps: NaN``) is never an answer: :func:`top_choice` returns
:data:`NONFINITE` (argmax of all-NaN would return option 0, in many files the answer), the item
counts as wrong (also in WhatsUp pair/set accuracy) and is counted (``n_nonfinite``).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any, Sequence

import torch

from ..data.benchmarks.items import MCQItem

__all__ = ["category_accuracy", "mcq_metrics", "top_choice", "TIE", "TIE_RULE", "NONFINITE", "NONFINITE_RULE",
           "CONTROLLED_PAIRS", "warn_nonfinite"]

log = logging.getLogger("dcsm")

#: :func:`top_choice`'s prediction when the top score is shared; never equal to a label.
TIE = -1
#: The tie rule, written into every report.
TIE_RULE = "a tie for the top score counts as wrong; tied items are counted as n_tied"
#: :func:`top_choice`'s prediction when a row has a NaN/inf score; never equal to a label.
NONFINITE = -2
#: The non-finite rule, written into every report.
NONFINITE_RULE = "an item with a NaN or infinite score for any option counts as wrong; such items are counted as n_nonfinite"

#: Controlled subsets -> the two relation pairs whose joint correctness makes a "pair".
CONTROLLED_PAIRS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "controlled_a": (("left_of", "right_of"), ("on", "under")),
    "controlled_b": (("left_of", "right_of"), ("in-front_of", "behind")),
}
_ITEMS_PER_PAIR = 2  # denominators of the original: n / 2 pairs ...
_ITEMS_PER_SET = 4  # ... and n / 4 sets


def top_choice(scores: torch.Tensor) -> torch.Tensor:
    """The chosen option of each row of scores ``(..., K)`` -> long ``(...)``.

    The index of the top score when it is unique, :data:`TIE` (-1) when two or more options
    share it (exact equality: options that are identical after truncation have identical ids and
    embeddings, hence bit-identical scores; distinct real-valued scores practically never tie);
    :data:`NONFINITE` (-2) when any score of the row is NaN or infinite (checked first).
    """
    if scores.dim() == 0 or scores.shape[-1] == 0:
        raise ValueError(f"scores must have shape (..., K) with K >= 1 options, got {tuple(scores.shape)}")
    top = scores.max(dim=-1, keepdim=True).values
    shared = (scores == top).sum(dim=-1) > 1
    choice = torch.where(shared, torch.full_like(shared, TIE, dtype=torch.long), scores.argmax(dim=-1))
    broken = ~torch.isfinite(scores).all(dim=-1)
    return torch.where(broken, torch.full_like(choice, NONFINITE), choice)


def _as_index_list(predictions: Sequence[int] | torch.Tensor) -> list[int]:
    """Predictions as a list of Python ints; a tensor must be 1-D."""
    if isinstance(predictions, torch.Tensor):
        if predictions.dim() != 1:
            raise ValueError(
                f"predictions must be a 1-D tensor of option indices, got shape {tuple(predictions.shape)}; "
                "take top_choice over the option scores first"
            )
        if predictions.is_floating_point():
            raise ValueError("predictions must be integer option indices, got a floating-point tensor")
        return [int(v) for v in predictions.tolist()]
    return [int(v) for v in predictions]


def _accuracy(correct: int, total: int) -> float:
    return correct / total if total else math.nan


def _pair_and_set(items: list[MCQItem], correct: list[bool], subset: str) -> tuple[float, float]:
    """Pair and set accuracy of one controlled subset, as the WhatsUp evaluation computes them."""
    pairs = CONTROLLED_PAIRS[subset]
    slots = [rel for pair in pairs for rel in pair]
    table: dict[str, dict[str, bool]] = {}
    for item in items:
        table.setdefault(str(item.pair_key), {rel: False for rel in slots})
    for item, ok in zip(items, correct):
        table[str(item.pair_key)][str(item.group)] = ok
    pair_correct = 0
    set_correct = 0
    for slot_ok in table.values():
        pair_correct += sum(1 for a, b in pairs if slot_ok[a] and slot_ok[b])
        if sum(slot_ok.values()) == len(slots):
            set_correct += 1
    n = len(items)
    return _accuracy(pair_correct, n / _ITEMS_PER_PAIR), _accuracy(set_correct, n / _ITEMS_PER_SET)


def mcq_metrics(items: Sequence[MCQItem], predictions: Sequence[int] | torch.Tensor) -> dict[str, Any]:
    """Accuracy of predicted option indices over benchmark items.

    Args:
        items: the evaluated items (the caller leaves out items without an image).
        predictions: one predicted option index per item, aligned with ``items``, or
            :data:`TIE` (-1) for a tie or :data:`NONFINITE` (-2) for a NaN/inf score
            (:func:`top_choice`), both counted as wrong.

    Returns:
        ``{"accuracy", "n", "per_subset": {subset: {"accuracy", "n"}},
        "per_group": {subset: {group: {"accuracy", "n"}}},
        "pair_accuracy": {subset: float}, "set_accuracy": {subset: float},
        "n_tied": int, "n_tied_per_subset": {subset: int},
        "n_tied_per_group": {subset: {group: int}}, "n_nonfinite": int,
        "n_nonfinite_per_subset": {subset: int}, "n_nonfinite_per_group": {subset: {group: int}}}``; pair and set accuracy hold WhatsUp
        controlled subsets only. Empty inputs give NaN accuracies.
    """
    preds = _as_index_list(predictions)
    if len(preds) != len(items):
        raise ValueError(f"got {len(preds)} predictions for {len(items)} items; they must be aligned one to one")
    for i, (item, pred) in enumerate(zip(items, preds)):
        if pred not in (TIE, NONFINITE) and not 0 <= pred < len(item.captions):
            raise ValueError(
                f"prediction {pred} at position {i} is out of range for {len(item.captions)} options "
                f"({item.source} row {item.row})"
            )
    correct = [pred == item.label for item, pred in zip(items, preds)]  # TIE/NONFINITE are never a label
    tied = [pred == TIE for pred in preds]
    broken = [pred == NONFINITE for pred in preds]

    by_subset: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_subset[item.subset].append(i)

    per_subset: dict[str, dict[str, float | int]] = {}
    per_group: dict[str, dict[str, dict[str, float | int]]] = {}
    tied_subset: dict[str, int] = {}
    tied_group: dict[str, dict[str, int]] = {}
    broken_subset: dict[str, int] = {}
    broken_group: dict[str, dict[str, int]] = {}
    pair_accuracy: dict[str, float] = {}
    set_accuracy: dict[str, float] = {}
    for subset, idx in by_subset.items():
        n_ok = sum(correct[i] for i in idx)
        per_subset[subset] = {"accuracy": _accuracy(n_ok, len(idx)), "n": len(idx)}
        tied_subset[subset] = sum(tied[i] for i in idx)
        broken_subset[subset] = sum(broken[i] for i in idx)
        groups: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            if items[i].group is not None:
                groups[str(items[i].group)].append(i)
        if groups:
            per_group[subset] = {
                g: {"accuracy": _accuracy(sum(correct[i] for i in gi), len(gi)), "n": len(gi)}
                for g, gi in sorted(groups.items())
            }
            tied_group[subset] = {g: sum(tied[i] for i in gi) for g, gi in sorted(groups.items())}
            broken_group[subset] = {g: sum(broken[i] for i in gi) for g, gi in sorted(groups.items())}
        if subset in CONTROLLED_PAIRS:
            pa, sa = _pair_and_set([items[i] for i in idx], [correct[i] for i in idx], subset)
            pair_accuracy[subset] = pa
            set_accuracy[subset] = sa

    return {
        "accuracy": _accuracy(sum(correct), len(items)),
        "n": len(items),
        "per_subset": per_subset,
        "per_group": per_group,
        "pair_accuracy": pair_accuracy,
        "set_accuracy": set_accuracy,
        "n_tied": sum(tied),
        "n_tied_per_subset": tied_subset,
        "n_tied_per_group": tied_group,
        "n_nonfinite": sum(broken),
        "n_nonfinite_per_subset": broken_subset,
        "n_nonfinite_per_group": broken_group,
    }


def category_accuracy(scores: dict[str, torch.Tensor], categories: Sequence[str], key: str = "category") -> dict[str, dict[str, float]]:
    """Accuracy of DCSM and CLIP per category and overall; a tie for the top score counts as
    wrong, and so does a row with a NaN/inf score (:func:`top_choice`).

    Returns ``{"dcsm": {"all": acc, cat: acc, ...}, "clip": {...}, "n": {"all": N, cat: n},
    "n_tied": {"dcsm": {"all": n, cat: n}, "clip": {...}}, "n_nonfinite": {same layout}}``; with a
    ``blind`` key in ``scores`` also ``"n_blind": {"all": n, cat: n}`` and ``"answerable": {"dcsm":
    {"all": acc, cat: acc}, "clip": {...}}`` (accuracy on the items that are not encoder-blind).
    """
    label = scores["label"]
    choice = {m: top_choice(scores[m]) for m in ("dcsm", "clip")}
    correct = {m: (c == label).float() for m, c in choice.items()}
    tied = {m: c == TIE for m, c in choice.items()}
    broken = {m: c == NONFINITE for m, c in choice.items()}
    cat = scores[key] if key in scores else torch.zeros_like(label)
    names = list(categories) if key in scores else ["all"]
    result: dict[str, dict[str, float]] = {m: {"all": float(c.mean()) if len(c) else float("nan")} for m, c in correct.items()}
    result["n"] = {"all": int(len(label))}
    n_tied = {m: {"all": int(t.sum())} for m, t in tied.items()}
    n_broken = {m: {"all": int(b.sum())} for m, b in broken.items()}
    for i, name in enumerate(names):
        sel = cat == i
        result["n"][name] = int(sel.sum())
        for m, c in correct.items():
            result[m][name] = float(c[sel].mean()) if sel.any() else float("nan")
            n_tied[m][name] = int(tied[m][sel].sum())
            n_broken[m][name] = int(broken[m][sel].sum())
    result["n_tied"] = n_tied  # type: ignore[assignment]
    result["n_nonfinite"] = n_broken  # type: ignore[assignment]
    if "blind" in scores:  # items no head on this encoder can answer (dcsm.eval.blind), and accuracy without them
        blind = scores["blind"].bool()
        result["n_blind"] = {"all": int(blind.sum()), **{name: int(blind[cat == i].sum()) for i, name in enumerate(names)}}
        sight = [("all", ~blind)] + [(name, (cat == i) & ~blind) for i, name in enumerate(names)]
        result["answerable"] = {m: {name: float(c[sel].mean()) if sel.any() else float("nan") for name, sel in sight}  # type: ignore[assignment]
                                for m, c in correct.items()}
    return result


def warn_nonfinite(counts: dict[str, int], where: str) -> None:
    """One log warning per evaluation when any scorer (``counts``: scorer -> items with a NaN/inf
    score) produced non-finite scores; nothing when all are 0."""
    bad = {name: n for name, n in counts.items() if n}
    if bad:
        log.warning(
            "%s: %s item(s) had NaN or infinite scores and count as wrong (%s). The model or its settings are broken "
            "(a NaN weight, maps.eps, an overflow): check the checkpoint.", where,
            ", ".join(f"{name} {n}" for name, n in bad.items()), NONFINITE_RULE,
        )
