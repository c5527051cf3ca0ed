"""The one model (DCSM), its typed feature batch and the one command runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcsm.config import load_yaml, to_plain
from dcsm.model.encoders import FrozenCLIP
from dcsm.features import CACHE_DTYPE, FeatureBatch, collate_mcq
from dcsm.model.dcsm import DCSM, build_dcsm
from dcsm.commands.runner import USAGE_EXIT, command_config, run_command


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file pins open_clip ViT-B-32 shapes (224 px, 49 patches, 512-d, 12 x 12 heads)."""
    return vit_b32_encoder

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke_random.yaml"
OPTIONS = [["a red square above a blue circle", "a blue circle above a red square", "no dog"],
           ["a cat", "a green triangle left of a cup", "not a cup"]]


@pytest.fixture(scope="module")
def model(encoder: FrozenCLIP) -> DCSM:
    torch.manual_seed(0)
    return build_dcsm(to_plain(load_yaml(SMOKE)), encoder).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_images_and_features_give_the_same_scores(model: DCSM, images: torch.Tensor) -> None:
    with torch.no_grad():
        f = model.encode(images, OPTIONS)
        assert isinstance(f, FeatureBatch) and len(f) == 2
        assert f.patches.shape == (2, 49, 512) and f.tokens.shape == (2, 3, 20, 512)
        assert f.token_mask.dtype == torch.bool and f.token_ids.dtype == torch.long and f.text_pooled.shape == (2, 3, 512)
        from_images, from_features = model(images, OPTIONS), model(f)
        maps = model.maps(f)
    assert from_images.shape == (2, 3) and torch.equal(from_images, from_features)
    assert maps.shape == (2, 3, 20, 49) and maps.dtype == torch.float32
    assert torch.equal(model.head.score_maps(maps), from_features)  # the maps it scored
    clip = model.clip_scores(f)
    assert torch.allclose(clip[1, 2], f.image_pooled[1] @ f.text_pooled[1, 2])


def test_images_need_their_options(model: DCSM, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="options"):
        model(images)


def test_feature_batch_cache_collate_and_extras(model: DCSM, images: torch.Tensor) -> None:
    raw = {"images": images, "captions": OPTIONS, "label": torch.tensor([0, 1]), "category": torch.tensor([1, 2])}
    f = model.features(raw)
    assert f.extras == {"category": raw["category"]} and torch.equal(f.label, raw["label"])
    cached = f.to_cache()
    assert cached.patches.dtype == CACHE_DTYPE and cached.token_ids.dtype == torch.long
    samples = [cached.sample(i) for i in range(len(cached))]
    again = collate_mcq(samples)
    assert isinstance(again, FeatureBatch) and torch.equal(again.tokens, cached.tokens)
    assert torch.equal(again.extras["category"], raw["category"])
    both = FeatureBatch.cat([cached, cached])
    assert len(both) == 4 and both.extras["category"].tolist() == [1, 2, 1, 2]
    with pytest.raises(ValueError, match="lacks"):
        FeatureBatch.from_dict({"patches": cached.patches})


def test_runner_reads_config_and_prints_user_errors_in_one_line(capsys: pytest.CaptureFixture) -> None:
    cfg = command_config(["--config", str(SMOKE), "cache_features.out=x", "data.seed=3"])
    assert cfg["cache_features"]["out"] == "x" and cfg["synthetic_shards"]["seed"] == 3  # one home: data.seed

    def bad(argv: object) -> None:
        raise ValueError("cache_features.shards is not set. Fix: cache_features.shards=PATH.")

    with pytest.raises(SystemExit) as exc:
        run_command(bad, [])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip()
    assert err == "error: cache_features.shards is not set. Fix: cache_features.shards=PATH."
