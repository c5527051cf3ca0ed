"""Encoder-blind items (dcsm.eval.blind): an item is blind exactly when a wrong option reaches
the scorer as the correct one does (same real token rows, same functional rows, same pooled
embedding); counted per category in the synthetic report, with accuracy on the other items."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcsm.config import load_yaml, to_plain
from dcsm.eval.blind import BLIND_TOLERANCE, encoder_blind
from dcsm.eval.loop import score_loader
from dcsm.eval.metrics import category_accuracy
from dcsm.eval.report import format_synthetic_table
from dcsm.model.dcsm import build_dcsm

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
N, K, L, D = 1, 3, 5, 8


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = F.normalize(torch.randn(N, K, L, D, generator=g), dim=-1)
    mask = torch.ones(N, K, L, dtype=torch.bool)
    mask[..., -1] = False
    tokens = tokens * mask.unsqueeze(-1)
    functional = torch.full((N, K, L), -1)
    pooled = F.normalize(torch.randn(N, K, D, generator=g), dim=-1)
    return tokens, mask, functional, pooled


def _copy_label_to(option: int, tokens, mask, functional, pooled) -> None:  # noqa: ANN001
    for t in (tokens, mask, functional, pooled):
        t[:, option] = t[:, 0]


LABEL = torch.zeros(N, dtype=torch.long)


def test_distinct_options_are_not_blind() -> None:
    assert not encoder_blind(*_batch(), LABEL).any()


def test_an_option_identical_to_the_label_is_blind_whatever_its_padding() -> None:
    tokens, mask, functional, pooled = _batch()
    _copy_label_to(2, tokens, mask, functional, pooled)
    tokens[:, 2, -1] = 5.0  # a padded row: not read by the scorer
    tokens[:, 2, 0] *= 1.0 + 1e-6  # float noise
    assert encoder_blind(tokens, mask, functional, pooled, LABEL).all()
    assert encoder_blind(tokens, mask, functional, pooled, torch.full((N,), 2)).all()  # the same pair, either way round
    assert not encoder_blind(tokens, mask, functional, pooled, torch.ones(N, dtype=torch.long)).any()  # option 1: unique


@pytest.mark.parametrize("change", ["one_row", "functional_row", "mask", "pooled"])
def test_any_difference_the_scorer_reads_makes_it_answerable(change: str) -> None:
    tokens, mask, functional, pooled = _batch()
    _copy_label_to(2, tokens, mask, functional, pooled)
    if change == "one_row":
        tokens[:, 2, 1] = F.normalize(tokens[:, 2, 1] + 0.05 * torch.ones(D), dim=-1)  # cos ~0.99 < 1 - tol
    elif change == "functional_row":  # "left" vs "right": same embedding after a collapse, different fixed rows
        functional[:, 0, 2], functional[:, 2, 2] = 3, 4
    elif change == "mask":
        mask[:, 2, -1] = True
    else:
        pooled[:, 2] = F.normalize(pooled[:, 2] + 0.05 * torch.ones(D), dim=-1)
    assert not encoder_blind(tokens, mask, functional, pooled, LABEL).any()


def test_tolerance_is_below_fp16_resolution() -> None:
    assert BLIND_TOLERANCE <= 1e-4


def test_the_toy_clip_erases_every_word_after_with(encoder) -> None:  # noqa: ANN001
    """The shipped dcsm-toy-ViT saw "with" only in "X with no Y" captions: every token after it
    reaches the scorer as the same vector, so options that differ only there are blind; the same
    difference after "and" is not (README: Binding and the toy CLIP's blind spot)."""
    model = build_dcsm(to_plain(load_yaml(SMOKE)), encoder).eval()
    images = torch.rand(2, 3, 96, 96)
    options = [["a green triangle together with a red square", "a green triangle together with a blue circle", "a red square"],
               ["there is a green triangle and a red square", "there is a green triangle and a blue circle", "a red square"]]
    batch = {"images": images, "captions": options, "label": torch.zeros(2, dtype=torch.long),
             "category": torch.zeros(2, dtype=torch.long)}
    scores = score_loader(model, [batch])
    assert scores["blind"].tolist() == [True, False]
    res = category_accuracy(scores, ["binding"])
    assert res["n_blind"] == {"all": 1, "binding": 1}
    assert set(res["answerable"]["dcsm"]) == {"all", "binding"}
    table = format_synthetic_table({"test": res}, ["binding"])
    assert "- test binding: 1 of 2 blind; on the other 1: DCSM" in table
