"""Int8 per-vector quantisation of cached embeddings: error bounds, sizes, and DCSM scores vs fp16."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dcsm.config import load_yaml, to_plain
from dcsm.data.synthetic.scenes import SyntheticScenes
from dcsm.features import CACHE_DTYPE
from dcsm.model.dcsm import build_dcsm
from dcsm.features.quantize import dequantize_int8, int8_bytes, quantize_int8
from tests.conftest import REPO, TINY_SPEC

SCORE_TOL = 1e-2  # the bar for offering int8 as a cache format: scores within 1e-2 of fp16 features


def test_roundtrip_error_is_below_half_a_step_per_vector() -> None:
    x = torch.nn.functional.normalize(torch.randn(3, 49, 512), dim=-1).half()
    codes, scale = quantize_int8(x)
    assert codes.dtype == torch.int8 and codes.shape == x.shape
    assert scale.dtype == torch.float16 and scale.shape == (3, 49)
    back = dequantize_int8(codes, scale, torch.float32)
    err = (back - x.float()).abs()
    assert torch.all(err <= scale.float().unsqueeze(-1) / 2 + 1e-6)
    assert int(codes.abs().max()) == 127  # the largest entry of each vector uses the full range
    cos = torch.nn.functional.cosine_similarity(back, x.float(), dim=-1)
    assert float(cos.min()) > 0.9999


def test_zero_vectors_and_sizes() -> None:
    x = torch.zeros(2, 4, 8)
    x[0, 1] = torch.arange(8) - 3.5
    codes, scale = quantize_int8(x)
    back = dequantize_int8(codes, scale)
    assert torch.equal(back[1], torch.zeros(4, 8, dtype=torch.float16))  # padding rows stay exact zeros
    assert torch.allclose(back[0, 1].float(), x[0, 1], atol=float(scale[0, 1]) / 2 + 1e-3)
    assert int8_bytes((196, 512)) == 196 * 514  # vs 196 * 1024 in fp16
    with pytest.raises(TypeError):
        quantize_int8(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="one scale per vector"):
        dequantize_int8(codes, scale[:, :2])


def test_int8_cached_features_keep_dcsm_scores_within_1e_2_of_fp16(encoder) -> None:
    """Random-init encoder + default head (per-map z-scores, the config that amplifies small
    cosine changes most): int8 patches (and tokens) move no score by more than 1e-2."""
    cfg = to_plain(load_yaml(REPO / "configs" / "default.yaml"))
    cfg["encoder"] = {**cfg["encoder"], **TINY_SPEC.to_dict()}
    torch.manual_seed(0)
    model = build_dcsm(cfg, encoder).eval()
    scenes = SyntheticScenes(16, split="test", seed=0, image_size=224, num_options=4)
    items = [scenes[i] for i in range(16)]
    images = torch.stack([encoder.preprocess(s.image) for s in items])
    with torch.no_grad():
        f = model.encode(images, [list(s.captions) for s in items])
    f = f.map(lambda t: t.to(CACHE_DTYPE) if t.is_floating_point() else t)
    assert f.patches.dtype == CACHE_DTYPE and f.token_ids.dtype == torch.long
    with torch.no_grad():
        ref = model(f)
        assert ref.shape == (16, 4)
        q_patches = replace(f, patches=dequantize_int8(*quantize_int8(f.patches)))
        q_all = replace(q_patches, tokens=dequantize_int8(*quantize_int8(f.tokens)))
        for q in (q_patches, q_all):
            diff = float((model(q) - ref).abs().max())
            assert diff < SCORE_TOL, diff
            assert diff > 0  # the quantisation did change the inputs
