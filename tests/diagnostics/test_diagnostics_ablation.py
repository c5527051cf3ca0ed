"""Mean/zero ablation (soft pruning): exact head effect, layer == all heads, strength, errors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import torch

from dcsm.diagnostics.ablation import AblationError, Component, ablate, component_means, parse_component
from dcsm.diagnostics.decomposition import decompose, readout
from dcsm.model.encoders import FrozenCLIP
from dcsm.diagnostics.hook_points import _registry, capture, hooks


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file tests open_clip's own ViT towers (block names, 224 px, checkpoint formats)."""
    return vit_b32_encoder


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def means(encoder: FrozenCLIP, images: torch.Tensor):
    return component_means(encoder, [images[:2], images[2:]], source="random-4", progress=False)


def test_zero_ablating_one_head_removes_exactly_its_contribution(encoder: FrozenCLIP, images: torch.Tensor) -> None:
    x = images[:2]
    L, h = 11, 7
    visual = encoder.model.visual
    cls = lambda t: t[:, 0]  # noqa: E731
    pats = [f"visual.blocks.{L}.hook_attn_out", "visual.hook_resid_final"]
    with capture(encoder, pats, transform=cls) as clean:
        d = decompose(encoder, x, spread_bias=False)
    with ablate(encoder, [f"L{L}H{h}"], mode="zero"):
        with capture(encoder, pats, transform=cls) as cut:
            d_cut = decompose(encoder, x, spread_bias=False)
    # the attention output at CLS loses exactly the head's contribution; through ln_post linearised
    # at the clean image's scale, that is the head's decomposition term
    delta = clean[pats[0]] - cut[pats[0]]
    head_term = d.head_terms()[:, L, h]
    assert torch.allclose(readout(visual, delta) / d.scale[:, None], head_term, atol=1e-6, rtol=1e-4)
    assert head_term.norm(dim=-1).min() > 1e-3
    # in the ablated model that head contributes nothing; every other head is unchanged (up to the new scale)
    assert d_cut.head_terms()[:, L, h].abs().max() < 1e-6
    others = torch.ones(12, 12, dtype=torch.bool)
    others[L, h] = False
    rescale = (d_cut.scale / d.scale)[:, None, None]
    assert torch.allclose(d_cut.head_terms()[:, others] * rescale, d.head_terms()[:, others], atol=1e-6, rtol=1e-4)
    # the last MLP has nothing downstream: zeroing it changes the final residual by exactly its term
    with ablate(encoder, [f"L{L}.mlp"], mode="zero"):
        with capture(encoder, pats, transform=cls) as no_mlp:
            encoder.encode_images(x)
    delta = clean["visual.hook_resid_final"] - no_mlp["visual.hook_resid_final"]
    assert torch.allclose(readout(visual, delta) / d.scale[:, None], d.mlps[:, L], atol=1e-6, rtol=1e-4)


def test_mean_ablating_all_heads_of_a_layer_equals_the_layer(encoder: FrozenCLIP, images: torch.Tensor, means) -> None:
    x = images[:2]
    with ablate(encoder, [Component("head", 3, h) for h in range(12)], mode="mean", means=means):
        by_heads = encoder.encode_images(x).pooled
    with ablate(encoder, ["L3.attn"], mode="mean", means=means):
        by_layer = encoder.encode_images(x).pooled
    clean = encoder.encode_images(x).pooled
    assert torch.allclose(by_heads, by_layer, atol=1e-5)
    assert (by_heads - clean).abs().max() > 1e-3


def test_strength_interpolates_the_head_output(encoder: FrozenCLIP, images: torch.Tensor, means) -> None:
    x = images[:1]
    seen = {}
    with capture(encoder, ["visual.blocks.2.attn.hook_z"]) as c:
        encoder.encode_images(x)
    clean = c["visual.blocks.2.attn.hook_z"]
    for s in (0.0, 0.5, 1.0):
        with ablate(encoder, ["L2H4"], mode="mean", strength=s, means=means):
            with hooks_after(encoder, "visual.blocks.2.attn.hook_z", seen, s):
                encoder.encode_images(x)
    mean = means.z[2][None]
    assert torch.allclose(seen[0.0], clean, atol=1e-6)
    assert torch.allclose(seen[0.5][:, :, 4], 0.5 * (clean[:, :, 4] + mean[:, :, 4]), atol=1e-5)
    assert torch.allclose(seen[1.0][:, :, 4], mean[:, :, 4].expand_as(clean[:, :, 4]), atol=1e-6)
    assert torch.allclose(seen[1.0][:, :, 3], clean[:, :, 3], atol=1e-6)  # other heads untouched
    assert _registry(encoder).active_taps == 0


@contextmanager
def hooks_after(encoder: FrozenCLIP, name: str, store: dict, key: float) -> Iterator[None]:
    """Record the tensor after the ablation hook (a point's hooks run in registration order)."""
    with hooks(encoder, [(name, lambda t, h: store.__setitem__(key, t.detach().clone()))]):
        yield


def test_parse_and_errors(encoder: FrozenCLIP, means) -> None:
    assert parse_component("L3H5") == Component("head", 3, 5)
    assert parse_component("L10.mlp") == Component("mlp", 10)
    assert parse_component(("attn", 2)) == Component("attn", 2)
    with pytest.raises(AblationError, match="cannot parse component 'layer3'"):
        parse_component("layer3")
    with pytest.raises(AblationError, match="unknown ablation mode"):
        with ablate(encoder, ["L0H0"], mode="drop"):
            pass
    with pytest.raises(AblationError, match=r"strength 1.5 outside \[0, 1\]"):
        with ablate(encoder, ["L0H0"], mode="zero", strength=1.5):
            pass
    with pytest.raises(AblationError, match="needs dataset means"):
        with ablate(encoder, ["L0H0"], mode="mean"):
            pass
    with pytest.raises(AblationError, match="head 12 out of range"):
        with ablate(encoder, ["L0H12"], mode="mean", means=means):
            pass
    assert means.n_images == 4 and means.z.shape == (12, 50, 12, 64) and means.source == "random-4"
