"""Exact head decomposition: terms sum to encode_image (raw and normalised) on two ViT sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcsm.diagnostics.decomposition import decompose
from dcsm.model.encoders import FrozenCLIP
from tests.diag_models import small_vit_encoder


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file pins open_clip ViT-B-32 shapes (224 px, 49 patches, 512-d, 12 x 12 heads)."""
    return vit_b32_encoder

@pytest.fixture(scope="module")
def small_encoder(tmp_path_factory: pytest.TempPathFactory) -> FrozenCLIP:
    enc = small_vit_encoder(tmp_path_factory.mktemp("cfg"))
    _randomise_norms(enc)
    return enc


def _randomise_norms(enc: FrozenCLIP) -> None:
    """Non-trivial ln_post gain/bias and out-projection biases (random init leaves them 1 / 0)."""
    g = torch.Generator().manual_seed(1)
    v = enc.model.visual
    v.ln_post.weight.copy_(1 + 0.3 * torch.randn(v.ln_post.weight.shape, generator=g))
    v.ln_post.bias.copy_(0.2 * torch.randn(v.ln_post.bias.shape, generator=g))
    for blk in v.transformer.resblocks:
        blk.attn.out_proj.bias.copy_(0.1 * torch.randn(blk.attn.out_proj.bias.shape, generator=g))


def _encode_image(enc: FrozenCLIP, x: torch.Tensor) -> torch.Tensor:
    return enc.model.visual(x)[0]  # output_tokens=True: (pooled, tokens)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1)).max())


@pytest.mark.parametrize(("per_token", "spread_bias"), [(True, True), (False, False)])
def test_sum_equals_encode_image_vit_b32(encoder: FrozenCLIP, per_token: bool, spread_bias: bool) -> None:
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    d = decompose(encoder, x, per_token=per_token, spread_bias=spread_bias)
    L, H = 12, 12
    assert d.heads.shape == ((2, L, H, 50, 512) if per_token else (2, L, H, 512))
    assert d.mlps.shape == (2, L, 512) and d.embedding.shape == (2, 512) and d.scale.shape == (2,)
    ref = _encode_image(encoder, x)
    assert _rel(d.total(), ref) < 1e-4
    assert _rel(F.normalize(d.total(), dim=-1), encoder.encode_images(x).pooled) < 1e-4
    if spread_bias:
        assert d.bias.abs().max() == 0


@pytest.mark.parametrize("spread_bias", [True, False])
def test_sum_equals_encode_image_small_vit_with_layerscale_and_biases(small_encoder: FrozenCLIP, spread_bias: bool) -> None:
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    d = decompose(small_encoder, x, spread_bias=spread_bias)
    assert d.heads.shape == (3, 3, 3, 17, 48)
    ref = _encode_image(small_encoder, x)
    assert _rel(d.total(), ref) < 1e-4
    assert _rel(F.normalize(d.total(), dim=-1), small_encoder.encode_images(x).pooled) < 1e-4
    # per-token and token-summed head terms agree
    d2 = decompose(small_encoder, x, per_token=False, spread_bias=spread_bias)
    assert torch.allclose(d.head_terms(), d2.heads, atol=1e-5)
    if not spread_bias:  # the bias term is real here: out-projection biases and ln_post's beta
        assert d.bias.abs().max() > 1e-3


def test_decomposition_speed_script_tiny(tmp_path: Path) -> None:
    """The GPU benchmark's CPU smoke mode runs and writes its JSON with an exact reconstruction."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("decomposition_speed", Path(__file__).parents[2] / "benchmarks" / "decomposition_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "speed.json"
    res = mod.main(["--config", str(Path(__file__).parents[2] / "benchmarks" / "decomposition_speed_tiny.yaml"), f"bench.output={out}"])
    assert json.loads(out.read_text()) == res
    assert res["images"] == 4 and res["max_relative_error_per_token"] < 1e-4
