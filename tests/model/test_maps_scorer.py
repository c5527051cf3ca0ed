"""Batched maps equal their per-pair definition; scorers stay small and can learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcsm.model.maps import build_maps, inject_rows, similarity, standardize
from dcsm.config import DEFAULT_CONFIG, load_yaml, to_plain
from dcsm.model.cnn import MAX_PARAMS, ScorerConfig, build_scorer, count_params

DEFAULT_SCORER = to_plain(load_yaml(DEFAULT_CONFIG))["scorer"]


def scorer_cfg(**overrides: object) -> ScorerConfig:
    """The default.yaml scorer section with ``overrides``."""
    return ScorerConfig(**{**DEFAULT_SCORER, **overrides})

B, C, K, L, P, D, E = 3, 5, 4, 6, 16, 8, 4


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_all_pairs_map_equals_per_pair_matmul() -> None:
    patches, tokens = _unit(B, P, D), _unit(C, L, D, seed=1)
    maps = similarity(patches, tokens, "all")
    assert maps.shape == (B, C, L, P)
    for b in range(B):
        for c in range(C):
            assert torch.allclose(maps[b, c], tokens[c] @ patches[b].T, atol=1e-6)


def test_per_image_map_equals_per_pair_matmul() -> None:
    patches, tokens = _unit(B, P, D), _unit(B, K, L, D, seed=1)
    maps = similarity(patches, tokens, "per_image")
    assert maps.shape == (B, K, L, P)
    assert torch.allclose(maps[2, 3], tokens[2, 3] @ patches[2].T, atol=1e-6)
    assert maps.abs().max() <= 1 + 1e-6


def test_functional_rows_injected_and_padding_masked() -> None:
    patches, tokens = _unit(B, P, D), _unit(B, K, L, D, seed=1)
    mask = torch.ones(B, K, L, dtype=torch.bool)
    mask[:, :, 4:] = False
    fr_index = torch.full((B, K, L), -1)
    fr_index[0, 1, 2] = 3
    fr_index[1, 0, 5] = 0  # on a padded position: must be ignored
    rows = torch.rand(E, P)
    maps = build_maps(patches, tokens, mask, fr_index, rows, pairing="per_image", standardize_mode="none")
    assert torch.equal(maps[0, 1, 2], rows[3])
    assert torch.all(maps[..., 4:, :] == 0)
    assert torch.allclose(maps[0, 0, 1], tokens[0, 0, 1] @ patches[0].T, atol=1e-6)


def test_all_pairs_injection_broadcasts_caption_rows() -> None:
    maps = torch.zeros(B, C, L, P)
    fr_index = torch.full((C, L), -1)
    fr_index[2, 1] = 1
    rows = torch.rand(E, P)
    out = inject_rows(maps, fr_index, rows)
    assert all(torch.equal(out[b, 2, 1], rows[1]) for b in range(B))
    assert out.sum() == pytest.approx(B * rows[1].sum().item(), rel=1e-5)


def test_map_standardisation_is_per_map_and_batch_independent() -> None:
    maps = torch.randn(2, K, L, P) * 3 + 1
    mask = torch.ones(2, K, L, dtype=torch.bool)
    mask[:, :, -2:] = False
    z = standardize(maps, mask, "map")
    real = z[0, 0][mask[0, 0]]
    assert real.mean().abs() < 1e-5 and (real.std(unbiased=False) - 1).abs() < 1e-4
    assert torch.all(z[..., -2:, :] == 0)
    assert torch.allclose(standardize(maps[:1], mask[:1], "map"), z[:1])  # no dependence on the batch
    zb = standardize(maps, mask, "batch")
    expected = (maps - maps.mean()) / (maps.std() + 1e-6) * mask.unsqueeze(-1)  # stats over all rows, pads zeroed
    assert torch.allclose(zb, expected, atol=1e-5)
    zi = standardize(maps, torch.ones_like(mask), "image")
    assert torch.allclose(zi[1].mean(), torch.tensor(0.0), atol=1e-5) and (zi[1].std() - 1).abs() < 1e-4


def test_row_level_keeps_where_and_whether_a_token_matches() -> None:
    """row_level = the row z-scores + one constant per row: the row's peak as a z-score of the map's
    real rows. A word whose object is absent (a flat, low row) gets a low level; a row z-score alone
    cannot tell it from one whose object is present."""
    maps = torch.randn(2, K, L, P) * 0.02
    maps[0, 0, 1, 5] += 1.0  # row 1 of the first map: one strong match (the object is there)
    mask = torch.ones(2, K, L, dtype=torch.bool)
    mask[:, :, -2:] = False
    z = standardize(maps, mask, "row_level")
    rows = standardize(maps, mask, "row")
    offset = z - rows  # (2, K, L, P): one constant per row
    assert torch.allclose(offset, offset[..., :1].expand_as(offset), atol=1e-4)
    assert torch.all(z[..., -2:, :] == 0)  # pad rows stay zero and do not enter the statistics
    real = maps[0, 0, :-2]
    mean, std = real.mean(), real.std(unbiased=False)
    assert offset[0, 0, 1, 0].item() == pytest.approx(((real[1].max() - mean) / (std + 1e-6)).item(), rel=1e-4)
    assert offset[0, 0, 1, 0] > offset[0, 0, 0, 0] + 2  # the matching row stands out; its shape alone would not say so
    assert torch.allclose(standardize(maps[:1], mask[:1], "row_level"), z[:1])  # no dependence on the batch


@pytest.mark.parametrize(("layout", "channels"), [("grid", 32), ("map", 4), ("reference", 4)])
def test_scorer_shapes_and_size(layout: str, channels: int) -> None:
    cfg = scorer_cfg(layout=layout, channels=channels)
    net = build_scorer(cfg, num_tokens=30, num_patches=196, grid=(14, 14), keep_cls=False)
    assert net(torch.randn(7, 30, 196)).shape == (7,)
    assert count_params(net) < MAX_PARAMS


def test_reference_layout_matches_the_authors_parameter_shapes() -> None:
    net = build_scorer(scorer_cfg(layout="reference", channels=4, hidden=128), 30, 197, (14, 14), keep_cls=True)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "conv1.weight": (4, 1, 3, 3), "conv1.bias": (4,), "conv2.weight": (4, 4, 3, 3), "conv2.bias": (4,),
        "fc1.weight": (128, 23640), "fc1.bias": (128,), "fc2.weight": (1, 128), "fc2.bias": (1,),
    }


def test_grid_layout_rejects_cls_column() -> None:
    with pytest.raises(ValueError, match="keep_cls=false"):
        build_scorer(scorer_cfg(layout="grid"), 30, 197, (14, 14), keep_cls=True)


def test_oversized_scorer_rejected() -> None:
    with pytest.raises(ValueError, match="parameters"):
        build_scorer(scorer_cfg(layout="map", channels=64, hidden=512), 77, 197, (14, 14), keep_cls=True)


def _train(net: torch.nn.Module, maps: torch.Tensor, labels: torch.Tensor, steps: int, lr: float = 1e-3) -> list[float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        scores = net(maps.flatten(0, 1)).view(maps.shape[:2])
        loss = F.cross_entropy(scores, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_scorer_overfits_a_fixed_batch() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(8, 4, 12, 49, generator=g)
    labels = torch.randint(0, 4, (8,), generator=g)
    torch.manual_seed(0)
    net = build_scorer(scorer_cfg(layout="grid", dropout=0.0, conv_dropout=0.0), 12, 49, (7, 7), False)
    losses = _train(net, maps, labels, steps=150)
    assert losses[-1] < 0.1 * losses[0]


def _planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two options per sample: rows 1 ("A") and 3 ("B") light up on the left/right half of the
    7x7 grid. In the positive A is left of B; in the negative they are swapped. Noise elsewhere."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, 2, 8, 7, 7, generator=g) * 0.5
    left, right = torch.zeros(7, 7), torch.zeros(7, 7)
    left[:, :3], right[:, 4:] = 1.0, 1.0
    jitter = torch.rand(n, 1, 1, generator=g) * 0.5 + 0.75  # varying signal strength
    maps[:, 0, 1] += left * jitter
    maps[:, 0, 3] += right * jitter
    maps[:, 1, 1] += right * jitter
    maps[:, 1, 3] += left * jitter
    labels = torch.randint(0, 2, (n,), generator=g)
    swap = labels == 1
    maps[swap] = maps[swap].flip(1)  # positive at index `label`
    return maps.flatten(-2), labels


def test_scorer_learns_planted_left_right_relation() -> None:
    train_maps, train_labels = _planted(256, seed=0)
    test_maps, test_labels = _planted(256, seed=1)
    torch.manual_seed(0)
    net = build_scorer(scorer_cfg(layout="grid", channels=8, hidden=32), 8, 49, (7, 7), False)
    _train(net, train_maps, train_labels, steps=150, lr=3e-3)
    net.eval()
    with torch.no_grad():
        pred = net(test_maps.flatten(0, 1)).view(256, 2).argmax(1)
    assert (pred == test_labels).float().mean() > 0.9
