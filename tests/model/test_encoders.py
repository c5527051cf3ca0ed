"""Frozen encoder wrapper: exact agreement with open_clip, unit norms, errors."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from dcsm.model.encoders import EncoderLoadError, EncoderSpec, FrozenCLIP, UnsupportedModelError, build_open_clip


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file tests open_clip's own ViT towers (block names, 224 px, checkpoint formats)."""
    return vit_b32_encoder


def _reference_image(enc: FrozenCLIP, x: torch.Tensor) -> torch.Tensor:
    enc.model.visual.output_tokens = False
    try:
        return F.normalize(enc.model.encode_image(x), dim=-1)
    finally:
        enc.model.visual.output_tokens = True


def test_pooled_image_equals_open_clip(encoder: FrozenCLIP) -> None:
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    emb = encoder.encode_images(x)
    assert emb.patches.shape == (2, 49, 512)
    assert torch.allclose(emb.pooled, _reference_image(encoder, x), atol=1e-5)
    assert torch.allclose(emb.patches.norm(dim=-1), torch.ones(2, 49), atol=1e-5)


def test_patches_are_projected_ln_post_tokens(encoder: FrozenCLIP) -> None:
    """Patches = ln_post(final tokens) @ proj, recomputed here from a forward hook."""
    x = torch.randn(1, 3, 224, 224)
    seen = {}
    h = encoder.model.visual.transformer.register_forward_hook(lambda m, i, o: seen.setdefault("x", o))
    try:
        emb = encoder.encode_images(x)
    finally:
        h.remove()
    v = encoder.model.visual
    manual = F.normalize(v.ln_post(seen["x"])[:, 1:] @ v.proj, dim=-1)
    assert torch.allclose(emb.patches, manual, atol=1e-5)


def test_pooled_text_equals_open_clip_and_tokens_unit_norm(encoder: FrozenCLIP) -> None:
    caps = ["a red square to the left of a blue circle", "no dog", "a cup", "no dog"]
    emb = encoder.encode_texts(caps)
    ref = F.normalize(encoder.model.encode_text(encoder.tokenize(caps)), dim=-1)
    assert torch.allclose(emb.pooled, ref, atol=1e-5)
    assert emb.tokens.shape == (4, 20, 512)
    lengths = emb.mask.sum(1).tolist()
    assert lengths == [12, 4, 4, 4]  # SOT + words + EOT
    norms = emb.tokens.norm(dim=-1)
    assert torch.allclose(norms[emb.mask], torch.ones(int(emb.mask.sum())), atol=1e-5)
    assert torch.all(norms[~emb.mask] == 0)


def test_text_tokens_equal_full_context_forward(encoder: FrozenCLIP) -> None:
    """The causal-prefix shortcut gives the same per-token outputs as the full 77-token pass."""
    caps = ["a small red square above a big green triangle", "a cup"]
    ids = encoder.tokenize(caps)
    m = encoder.model
    seen = {}
    h = m.ln_final.register_forward_hook(lambda mod, i, o: seen.setdefault("x", o))
    try:
        m.encode_text(ids)
    finally:
        h.remove()
    full = F.normalize(seen["x"] @ m.text_projection, dim=-1)[:, :20]
    emb = encoder.encode_texts(caps)
    assert torch.allclose(emb.tokens[emb.mask], full[emb.mask], atol=1e-5)


def test_random_init_is_reproducible_and_leaves_global_rng(encoder: FrozenCLIP) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    other = FrozenCLIP(encoder.spec)
    after = torch.rand(1)
    assert torch.equal(before, after), "building an encoder must not consume the global RNG"
    for (n, a), (_, b) in zip(encoder.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), n


def test_encoder_is_frozen_and_stays_in_eval(encoder: FrozenCLIP) -> None:
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training


def test_keep_cls_prepends_pooled_column() -> None:
    enc = FrozenCLIP(EncoderSpec(model="ViT-B-32", pretrained=None, max_tokens=8, keep_cls=True))
    emb = enc.encode_images(torch.randn(1, 3, 224, 224))
    assert enc.num_patches == 50 and emb.patches.shape == (1, 50, 512)
    assert torch.allclose(emb.patches[:, 0], emb.pooled, atol=1e-6)


def test_long_caption_is_truncated_with_warning(encoder: FrozenCLIP, caplog: pytest.LogCaptureFixture) -> None:
    long = " ".join(["a red square to the left of a blue circle"] * 4)
    encoder._warned_truncation = False  # it warns once per encoder; an earlier test may have used the session encoder's once
    with caplog.at_level(logging.WARNING, logger="dcsm.model.encoders"):
        emb = encoder.encode_texts([long, "a cup"])
    assert "max_tokens=20" in caplog.text and "truncated" in caplog.text
    assert emb.mask[0].all() and emb.tokens.shape[1] == 20
    ref = F.normalize(encoder.model.encode_text(encoder.tokenize([long])), dim=-1)
    assert torch.allclose(emb.pooled[0], ref[0], atol=1e-5)  # pooled uses the whole caption


def test_empty_caption_list_raises(encoder: FrozenCLIP) -> None:
    with pytest.raises(ValueError, match="empty caption list"):
        encoder.encode_texts([])


def test_unknown_model_name_raises() -> None:
    with pytest.raises(EncoderLoadError, match="unknown open_clip model name encoder.model='ViT-Q-99'"):
        FrozenCLIP(EncoderSpec(model="ViT-Q-99", pretrained=None))


def test_missing_checkpoint_file_raises(tmp_path) -> None:
    missing = tmp_path / "nope" / "clip.pt"
    with pytest.raises(EncoderLoadError, match="does not exist"):
        FrozenCLIP(EncoderSpec(model="ViT-B-32", pretrained=str(missing)))


def test_local_checkpoint_file_loads(tmp_path, encoder: FrozenCLIP) -> None:
    path = tmp_path / "clip.pt"
    torch.save(encoder.model.state_dict(), path)
    enc = FrozenCLIP(EncoderSpec(model="ViT-B-32", pretrained=str(path), max_tokens=20, seed=99))
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(enc.encode_images(x).patches, encoder.encode_images(x).patches, atol=1e-6)


def test_resnet_tower_is_rejected_clearly() -> None:
    with pytest.raises(UnsupportedModelError, match="ResNet"):
        build_open_clip(EncoderSpec(model="RN50", pretrained=None))


def test_exclamation_mark_token_is_not_padding(encoder: FrozenCLIP) -> None:
    """BPE id 0 is "!": masks and lengths must come from the EOT position, not from id != 0."""
    caps = ['wow!"" a dog', "a cup"]
    ids = encoder.tokenize(caps)
    assert (ids[0, 1:int(ids[0].argmax())] == 0).any(), "test premise: the caption holds token id 0"
    emb = encoder.encode_texts(caps)
    n = int(ids[0].argmax()) + 1
    assert emb.mask[0].sum() == n and emb.mask[0, :n].all()
    ref = F.normalize(encoder.model.encode_text(ids), dim=-1)
    assert torch.allclose(emb.pooled, ref, atol=1e-5)


def test_eot_pad_rows_do_not_depend_on_the_batch() -> None:
    """Reference preset: a caption's EOT-padded rows are the same alone or beside a longer caption."""
    enc = FrozenCLIP(EncoderSpec(model="ViT-B-32", pretrained=None, max_tokens=30, pad_rows="eot"))
    short = "a red cube"
    long_ = "a red cube to the left of a blue ball which is above a green square and below a yellow circle"
    alone = enc.encode_texts([short])
    both = enc.encode_texts([short, long_])
    assert alone.mask.all() and both.mask.all()
    assert torch.allclose(alone.tokens[0], both.tokens[0], atol=1e-5)
    assert (alone.tokens[0].norm(dim=-1) > 0.99).all()  # every kept row is a real, encoded row
