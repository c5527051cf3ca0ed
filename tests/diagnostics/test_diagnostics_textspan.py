"""TextSpan (orthonormal directions, variance bookkeeping), head scores, and a planted head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcsm.diagnostics.decomposition import decompose, readout
from dcsm.diagnostics.head_scores import LexiconError, concept_groups, load_lexicon, rank_heads, score_heads
from dcsm.diagnostics.textspan import TextBankError, load_text_bank, text_bank, textspan, textspan_heads
from dcsm.model.encoders import FrozenCLIP

from tests.diag_models import small_vit_encoder


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file tests open_clip's own ViT towers (block names, 224 px, checkpoint formats)."""
    return vit_b32_encoder

BANK = ["the colour red", "something blue", "a green patch", "a yellow object", "a square", "a circle shape",
        "a drawing of a triangle", "a star", "a small object", "something huge", "a tall thing",
        "something in the left", "an object at the top", "something below something else", "a striped surface",
        "a furry texture", "something shiny", "three objects", "many shapes", "a single thing", "a dog",
        "a photo of a car", "a picture of a chair", "a beach scene", "a view of the forest", "at the kitchen"]


def test_directions_orthonormal_and_remaining_variance_never_increases(encoder: FrozenCLIP) -> None:
    x = torch.randn(10, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    heads = decompose(encoder, x, per_token=False).heads  # (10, 12, 12, 512)
    T = text_bank(encoder, BANK, progress=False)
    for l, h in [(0, 0), (6, 3), (11, 11)]:
        idx, var, rem, dirs, total = textspan(heads[:, l, h], T, m=6)
        assert len(idx) == 6 and len(set(idx)) == 6 and total > 0
        assert torch.allclose(dirs @ dirs.T, torch.eye(6), atol=1e-5)
        assert torch.all(rem[1:] <= rem[:-1] + 1e-9) and torch.all(var >= 0)
        assert torch.allclose(1 - rem, var.cumsum(0).to(rem.dtype), atol=1e-6)  # explained + remaining = total
        # span_rank bounds what can be explained: the first 2 principal directions only
        _, var2, rem2, _, _ = textspan(heads[:, l, h], T, m=6, span_rank=2)
        assert len(var2) == 2 and rem2[-1] >= rem[-1] - 1e-9


def test_per_step_variance_can_increase_for_a_finite_bank() -> None:
    """Why the module reports 'remaining' as the monotone quantity: a greedy counterexample."""
    X = torch.zeros(4, 3)
    X[:, 0] = torch.tensor([-3.0, -1.0, 1.0, 3.0])  # nearly all variance along e1
    X[:, 1] = 1e-2 * torch.tensor([1.0, -1.0, 1.0, -1.0])  # a little along e2, e3: the span is 3-D
    X[:, 2] = 1e-2 * torch.tensor([1.0, -1.0, -1.0, 1.0])
    t1 = torch.tensor([1.0, 1.0, 1.0]) / 3 ** 0.5  # variance share 1/3: picked first
    t2 = torch.nn.functional.normalize(torch.tensor([0.55, -0.6, -0.6]), dim=0)  # share 0.30 now, 0.67 after t1 is removed
    idx, var, rem, _, _ = textspan(X, torch.stack([t1, t2]), m=2)
    assert idx == [0, 1] and var[1] > var[0] and rem[1] < rem[0]


def test_planted_head_is_found_and_scores_highest(tmp_path: Path) -> None:
    enc = small_vit_encoder(tmp_path, "dcsm-test-planted-ViT")
    visual = enc.model.visual
    T = text_bank(enc, BANK, progress=False)
    target = BANK.index("the colour red")
    L, H, dh = 2, 1, 32
    blk = visual.transformer.resblocks[L]
    # rewire head (2, 1): its output (after out-projection, LayerScale, linearised ln_post, proj) is
    # (z . a) * T[target]: one known direction whose strength varies with the image
    R = readout(visual, torch.eye(96) * blk.ls_1.gamma)  # (W, D): residual direction -> output direction
    w = torch.linalg.lstsq(R.T, T[target][:, None]).solution[:, 0]  # (W,), w @ R == T[target]
    assert torch.allclose(w @ R, T[target], atol=1e-4)
    a = torch.randn(dh, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        blk.attn.out_proj.weight[:, H * dh:(H + 1) * dh] = w[:, None] * a[None, :]
    x = torch.randn(24, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    heads = decompose(enc, x, per_token=False).heads  # (24, 3, 3, 48)
    spans = textspan_heads(heads, T, BANK, m=5, progress=False)
    planted = next(s for s in spans if (s.layer, s.head) == (L, H))
    assert planted.texts[0] == "the colour red" and planted.variance[0] > 0.99
    lex = load_lexicon("default")
    scores = score_heads(spans, T, lex, k=5)
    ranked = rank_heads(scores)
    assert (ranked[0].layer, ranked[0].head) == (L, H) and ranked[0].concept == "colour"
    assert ranked[0].score > 0.99 and ranked[0].score > ranked[1].score + 0.1
    uniform = {(s.layer, s.head): s for s in score_heads(spans, T, lex, k=5, weighting="uniform")}
    assert all(0 <= s.score <= 1 for s in uniform.values())


def test_shipped_bank_and_lexicon(tmp_path: Path) -> None:
    bank = load_text_bank("default")
    lex = load_lexicon("default")
    assert 2000 <= len(bank) <= 6000 and len(set(bank)) == len(bank)
    assert set(lex) >= {"colour", "shape", "size", "position", "texture", "count", "object", "scene"}
    assert all(concept_groups(t, lex) for t in bank)  # every text falls in a concept group
    assert concept_groups("a red square on the left", lex) == {"colour", "shape", "position"}
    assert concept_groups("a redder squarely thing", lex) == set()  # whole words only
    (tmp_path / "bad.json").write_text('{"colour": []}')
    with pytest.raises(LexiconError, match="group 'colour' must map to a non-empty list"):
        load_lexicon(str(tmp_path / "bad.json"))
    with pytest.raises(TextBankError, match="does not exist"):
        load_text_bank(str(tmp_path / "missing.txt"))
