"""Hook points: values, replacement, and removal after the context (also after an exception)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcsm.model.encoders import FrozenCLIP
from dcsm.diagnostics.hook_points import HookError, _registry, capture, hook_point_names, hooks


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file tests open_clip's own ViT towers (block names, 224 px, checkpoint formats)."""
    return vit_b32_encoder


def _attached(model: nn.Module) -> int:
    """Forward (pre-)hooks on any module plus per-head attention overrides still installed."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks)
        n += int("forward" in m.__dict__)
    return n


def test_names_cover_both_towers(encoder: FrozenCLIP) -> None:
    names = hook_point_names(encoder)
    for n in ("visual.blocks.0.hook_resid_pre", "visual.blocks.11.attn.hook_result", "visual.blocks.5.attn.hook_pattern",
              "visual.blocks.3.hook_mlp_out", "visual.hook_resid_final", "visual.hook_ln_post",
              "text.blocks.11.attn.hook_z", "text.hook_ln_final"):
        assert n in names
    assert len([n for n in names if n.startswith("visual.blocks.")]) == 12 * 12


def test_values_match_the_fused_forward(encoder: FrozenCLIP) -> None:
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ref = encoder.encode_images(x).pooled
    blk = encoder.model.visual.transformer.resblocks[4]
    with capture(encoder, ["visual.blocks.4.attn.hook_result", "visual.blocks.4.hook_attn_out",
                           "visual.blocks.4.attn.hook_pattern", "visual.blocks.4.hook_resid_pre",
                           "visual.blocks.4.hook_resid_mid", "visual.blocks.4.hook_resid_post",
                           "visual.blocks.4.hook_mlp_out"]) as c:
        out = encoder.encode_images(x).pooled
    assert torch.allclose(out, ref, atol=1e-6)  # per-head path == nn.MultiheadAttention
    p = "visual.blocks.4."
    assert c[p + "attn.hook_result"].shape == (2, 50, 12, 768)
    assert torch.allclose(c[p + "attn.hook_result"].sum(2) + blk.attn.out_proj.bias, c[p + "hook_attn_out"], atol=1e-5)
    assert torch.allclose(c[p + "attn.hook_pattern"].sum(-1), torch.ones(2, 12, 50), atol=1e-5)
    assert torch.allclose(c[p + "hook_resid_pre"] + c[p + "hook_attn_out"], c[p + "hook_resid_mid"], atol=1e-5)
    assert torch.allclose(c[p + "hook_resid_mid"] + c[p + "hook_mlp_out"], c[p + "hook_resid_post"], atol=1e-5)


def test_text_tower_hooks_leave_text_embeddings_unchanged(encoder: FrozenCLIP) -> None:
    caps = ["a red square", "two blue circles to the left of a triangle"]
    ref = encoder.encode_texts(caps)
    with capture(encoder, ["text.blocks.*.attn.hook_pattern"]) as c:
        got = encoder.encode_texts(caps)
    assert torch.allclose(ref.pooled, got.pooled, atol=1e-5) and torch.allclose(ref.tokens, got.tokens, atol=1e-5)
    pat = c["text.blocks.0.attn.hook_pattern"]
    assert torch.all(pat[0, :, 0, 1:] == 0)  # causal: SOT attends to itself only


def test_replacement_changes_output_and_hooks_are_removed(encoder: FrozenCLIP) -> None:
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    ref = encoder.encode_images(x).pooled
    model = encoder.model
    with hooks(encoder, [("visual.blocks.11.hook_mlp_out", lambda t, h: torch.zeros_like(t)),
                         ("visual.blocks.*.attn.hook_z", lambda t, h: None)]):
        assert _attached(model) > 0
        changed = encoder.encode_images(x).pooled
    assert not torch.allclose(changed, ref, atol=1e-4)
    assert _attached(model) == 0 and _registry(encoder).active_taps == 0
    assert torch.allclose(encoder.encode_images(x).pooled, ref, atol=1e-6)


def test_hooks_are_removed_after_an_exception(encoder: FrozenCLIP) -> None:
    def boom(t: torch.Tensor, h) -> None:
        raise RuntimeError("inside hook")

    with pytest.raises(RuntimeError, match="inside hook"):
        with hooks(encoder, [("visual.blocks.2.attn.hook_pattern", boom), ("visual.hook_resid_final", boom)]):
            encoder.encode_images(torch.randn(1, 3, 224, 224))
    assert _attached(encoder.model) == 0 and _registry(encoder).active_taps == 0
    with pytest.raises(KeyError):
        with capture(encoder, ["visual.blocks.*.hook_resid_post"]):
            raise KeyError("user code fails")
    assert _attached(encoder.model) == 0


def test_nested_contexts_share_taps(encoder: FrozenCLIP) -> None:
    x = torch.randn(1, 3, 224, 224)
    calls: list[str] = []
    with hooks(encoder, [("visual.blocks.0.attn.hook_z", lambda t, h: calls.append("outer"))]):
        with hooks(encoder, [("visual.blocks.0.attn.hook_z", lambda t, h: calls.append("inner"))]):
            encoder.encode_images(x)
        encoder.encode_images(x)
    assert calls == ["outer", "inner", "outer"]  # each hook once per forward, inner gone after its context
    assert _attached(encoder.model) == 0


def test_errors_name_the_point(encoder: FrozenCLIP) -> None:
    with pytest.raises(HookError, match="no hook point matches 'visual.blocks.99.hook_z'"):
        with hooks(encoder, [("visual.blocks.99.hook_z", lambda t, h: None)]):
            pass
    with pytest.raises(HookError, match="read-only"):
        with hooks(encoder, [("visual.blocks.0.hook_resid_mid", lambda t, h: t * 2)]):
            encoder.encode_images(torch.randn(1, 3, 224, 224))
    assert _attached(encoder.model) == 0
