"""int8 embedding feature shards (cache_features.dtype=int8): smaller than fp16, read back as
fp16, and what they do to a *trained* head's scores.

The 1e-2 bar of benchmarks/RESULTS.md (max abs score change) held on random-init heads, whose
CNN scores spread ~1e-2. A trained head's CNN scores spread ~1-5 and int8 then moves them by
~0.05-0.15 (measured, smoke config): the absolute bar is missed; what holds is a change of a
few percent of the score spread with every argmax kept. This test pins that."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dcsm.commands.cache_features as cache_features_cmd
import dcsm.commands.synthetic_shards as make_synthetic_shards
from dcsm.data.shards.format import SampleError
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.model.batch import FeatureBatch, collate_mcq
from dcsm.features.shards import decode_feature_sample, feature_sample_pipeline
from dcsm.train.module import DCSMModule, mcq_loss
from dcsm.commands.runner import command_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
RELATIVE_BAR = 0.05  # int8 score change / spread of the trained CNN's scores (measured 0.01-0.035)


#: Steps to fit the 32 scenes, and the loss (without dropout) that counts as fitted: far under chance (ln 4 =
#: 1.39). Before issue #26 the scenes fitted to < 0.05 in 60 steps; its NegBench / WhatsUp-format scenes hold
#: minimal pairs (which object is negated, one noun replaced) that a head separates by small margins, ~0.12
#: after 150 steps.
FIT_STEPS = 60
FITTED_LOSS = 0.3


def _features(folder: Path) -> FeatureBatch:
    samples = sorted(feature_sample_pipeline(folder), key=lambda s: s["key"])
    return collate_mcq(samples)


def test_int8_shards_are_smaller_and_keep_a_trained_heads_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = command_config(["--config", str(SMOKE)])
    toy = FrozenCLIP(EncoderSpec(**cfg["encoder"]))
    raw = tmp_path / "raw"
    make_synthetic_shards.main([f"synthetic_shards.out={raw}", "synthetic_shards.num_samples=32",
                                "synthetic_shards.samples_per_shard=16", "synthetic_shards.image_size=96",
                                "synthetic_shards.num_options=4", "progress=false"])
    monkeypatch.setattr(cache_features_cmd, "FrozenCLIP", lambda spec: toy)
    base = ["--config", str(SMOKE), f"cache_features.shards={raw}", "cache_features.device=cpu", "progress=false"]
    m16 = cache_features_cmd.main([*base, f"cache_features.out={tmp_path / 'fp16'}"])
    m8 = cache_features_cmd.main([*base, f"cache_features.out={tmp_path / 'int8'}", "cache_features.dtype=int8"])
    assert m16["dtype"] == "float16" and m8["dtype"] == "int8"
    size = lambda m: sum(e["bytes"] for e in m["shards"])  # noqa: E731
    assert size(m8) < 0.75 * size(m16)

    f16, f8 = _features(tmp_path / "fp16"), _features(tmp_path / "int8")
    assert f8.patches.dtype == torch.float16 and f8.tokens.shape == f16.tokens.shape
    assert 0 < (f8.patches - f16.patches).abs().max() < 1e-2  # quantised, not copied

    # a head trained on the fp16 features until it fits them (its scores spread far wider than at init)
    torch.manual_seed(0)
    module = DCSMModule(cfg, encoder=toy)
    init_std = module.model(f16).std().item()
    opt = torch.optim.AdamW(module.head.parameters(), lr=3e-3)
    for _ in range(FIT_STEPS):
        loss, _ = mcq_loss(module.model, f16)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        loss, _ = mcq_loss(module.model, f16)  # the fit, without dropout
        s16, s8 = module.model(f16), module.model(f8)
        cnn = module.head.score_maps(module.model.maps(f16))  # the trained part (the residual is fp16 either way)
    # trained: it fits the 32 scenes, and its scores spread wider than at init (there: CLIP's logit-scaled pooled
    # cosine, the residual of the smoke config)
    assert loss.item() < FITTED_LOSS and s16.std().item() > init_std
    change = (s16 - s8).abs().max().item()
    print(f"int8 score change on a trained head: {change:.2e} (CNN score std {cnn.std().item():.2f})")
    assert cnn.std().item() > 0.5  # a trained CNN (it starts at 0 with the residual)
    assert change < RELATIVE_BAR * cnn.std().item(), (change, cnn.std().item())
    assert torch.equal(s16.argmax(1), s8.argmax(1))


def test_int8_sample_without_its_scales_is_a_corrupt_sample() -> None:
    import io
    import json

    from dcsm.features.shards import feature_members

    feats = {"patches": torch.randn(4, 8), "image_pooled": torch.randn(8), "tokens": torch.randn(2, 3, 8),
             "token_mask": torch.ones(2, 3, dtype=torch.bool), "token_ids": torch.ones(2, 3, dtype=torch.long),
             "text_pooled": torch.randn(2, 8), "label": 0}
    members = dict(feature_members("k", feats, {"captions": ["a", "b"], "label": 0, "meta": {}}, {}, int8=True))
    sample = {"__key__": "k", **{n.removeprefix("k."): d for n, d in members.items()}}
    ok = decode_feature_sample(sample, categories=None)
    assert ok["patches"].dtype == torch.float16 and torch.allclose(ok["patches"].float(), feats["patches"], atol=0.05)
    d = torch.load(io.BytesIO(sample["feat.pth"]), weights_only=True)
    del d["patches_scale"], d["checksum"]
    buf = io.BytesIO()
    torch.save(d, buf)
    with pytest.raises(SampleError, match="int8"):
        decode_feature_sample({**sample, "feat.pth": buf.getvalue()}, categories=None)
    assert json.loads(sample["encoder.json"]) == {}
