"""Issue 27: every controlled pretraining config (configs/pretrain_controlled_*.yaml) pretrains two
steps on CPU through the one pretraining command (tiny sizes via overrides), and the mean-pooled
model config (dcsm-tiny-ViT-avg) pools as open_clip's ``pool_type: avg`` says, through FrozenCLIP."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors import safe_open

from dcsm.config import CONFIG_DIR
from dcsm.model.encoders import EncoderSpec, FrozenCLIP

VARIANTS = {"centred": "dcsm-tiny-ViT", "meanpool": "dcsm-tiny-ViT-avg", "uniform": "dcsm-tiny-ViT",
            "spurious": "dcsm-tiny-ViT"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_controlled_config_pretrains_two_steps_on_cpu(variant: str, tmp_path) -> None:
    from dcsm.commands.pretrain_toy_clip import main

    out = tmp_path / variant
    record = main([
        "--config", str(CONFIG_DIR / f"pretrain_controlled_{variant}.yaml"), f"out_dir={out}", "optim.steps=2",
        "optim.batch_size=6", "optim.warmup_steps=1", "data.num_workers=0", "eval.size=4", "eval.splits=[test]",
        "eval.fixed_scenes=2", "trainer.enable_progress_bar=false",
    ])
    model = VARIANTS[variant]
    weights = out / f"{model}.safetensors"
    saved = json.loads((out / f"{model}.record.json").read_text())
    assert saved["model"] == model == record["model"] and saved["samples"] == 12
    assert saved["config"]["scenes"] == record["config"]["scenes"]
    own = saved["own_binding"]  # binding on held-out scenes of its own distribution, 4 swaps
    assert own["n"] == 4 and own["seed"] == 1000 and sum(own["chosen"].values()) == 4
    assert own["accuracy"] == own["chosen"]["positive"] / 4
    expect = {"centred": ("gaussian", "none"), "meanpool": ("gaussian", "none"), "uniform": ("uniform", "none"),
              "spurious": ("uniform", "shape_colour")}[variant]
    assert (saved["config"]["scenes"]["placement"], saved["config"]["scenes"]["background_cue"]) == expect
    assert weights.stat().st_size <= 10_000_000  # shippable: fp16, <= 10 MB
    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    enc = FrozenCLIP(EncoderSpec(model=model, pretrained=str(weights), max_tokens=20))
    assert enc.grid_size == (8, 8) and enc.image_tower.pooling == ("average" if variant == "meanpool" else "class token")


def test_mean_pooled_tower_pools_the_mean_of_its_projected_patches() -> None:
    torch.manual_seed(0)
    enc = FrozenCLIP(EncoderSpec(model="dcsm-tiny-ViT-avg", pretrained=None, max_tokens=20, seed=0))
    assert enc.model.visual.pool_type == "avg"
    x = torch.randn(3, 3, 64, 64)
    pooled, patches = enc.image_tower(x)  # (B, D), (B, P, D) before normalisation
    torch.testing.assert_close(pooled, patches.mean(dim=1), atol=1e-5, rtol=1e-5)
    ref = enc.model.encode_image(x)
    ref = ref[0] if isinstance(ref, tuple) else ref  # FrozenCLIP asks the tower for its tokens too
    torch.testing.assert_close(enc.encode_images(x).pooled, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-5)
    cls = open_clip.create_model("dcsm-tiny-ViT")
    assert cls.visual.pool_type == "tok"


def test_binding_probe_seed_equal_to_the_training_seed_is_refused(tmp_path) -> None:
    from dcsm.commands.pretrain_toy_clip import main
    from dcsm.config import ConfigError

    with pytest.raises(ConfigError, match=r"eval.own_seed=7 is the training stream \(seed=7\).*Fix"):
        main(["--config", str(CONFIG_DIR / "pretrain_controlled_uniform.yaml"), f"out_dir={tmp_path}", "seed=7",
              "eval.own_seed=7"])
    assert not list(tmp_path.iterdir())  # refused before anything was written
