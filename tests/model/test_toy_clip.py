"""The small offline CLIP: captioned scenes, the pretraining command, the shipped weights,
the held-out rendering style and the pooled-similarity residual of the scorer."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from dcsm.data.synthetic.captioned import BACKGROUNDS, CAPTION_KINDS, make_captioned_scene
from dcsm.data.synthetic.scenes import make_scene
from dcsm.data.synthetic.styles import STYLES
from dcsm.data.synthetic.vocab import COLOURS
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.features import FeatureBatch
from dcsm.config import DEFAULT_CONFIG, load_yaml, to_plain
from dcsm.model.dcsm import DCSM, build_head
from dcsm.model import toy_clip


# --------------------------------------------------------------------------- scenes


def test_existing_styles_unchanged_golden() -> None:
    """Adding styles must not move a single byte of the default / shifted scenes. (Pinned again in
    issue #26, whose task families changed the scenes' layouts and captions; the styles did not move.)"""
    h = hashlib.sha256()
    for split in ("train", "test", "shifted"):
        for i in range(6):
            s = make_scene(i, split=split, image_size=64)
            h.update(s.image.tobytes())
            h.update(s.opposite_image.tobytes())
            h.update("|".join(s.captions).encode())
    assert h.hexdigest() == "3d417631e42880d56974068e93184a5d8feec3ee4268cb73bfe727ce59871c89"


def test_heldout_split_uses_striped_outlined_style() -> None:
    s = make_scene(1, split="heldout", image_size=96)
    assert s.meta["style"] == "heldout" and s.meta["split"] == "heldout"
    corner = np.asarray(s.image)[:12, :12].reshape(-1, 3)
    assert len({tuple(p) for p in corner}) == 2  # two stripe colours
    assert tuple(STYLES["heldout"].stripe_rgb) in {tuple(p) for p in corner}
    obj = s.meta["objects"][0]
    x0, y0, x1, y1 = obj["bbox"]
    assert tuple(np.asarray(s.image)[y0 + (y1 - y0) // 2, x0]) == STYLES["heldout"].outline_rgb or obj["shape"] != "square"
    cx, cy = (int(v) for v in obj["centre"])
    assert tuple(np.asarray(s.image)[cy, cx]) == tuple(obj["rgb"])


def test_captioned_scenes_deterministic_varied_and_in_vocabulary() -> None:
    a, b = make_captioned_scene(7, seed=3), make_captioned_scene(7, seed=3)
    assert a.image.tobytes() == b.image.tobytes() and a.caption == b.caption
    assert make_captioned_scene(7, seed=4).image.tobytes() != a.image.tobytes()
    samples = [make_captioned_scene(i) for i in range(150)]
    assert {s.kind for s in samples} == set(CAPTION_KINDS)
    assert {s.meta["background"] for s in samples} == set(BACKGROUNDS)
    assert len({s.image.size for s in samples}) > 20  # image sizes vary
    assert any(s.meta["outline"] > 0 for s in samples) and any(s.meta["outline"] == 0 for s in samples)
    for s in samples:
        words = s.caption.split()
        assert any(c in words for c in COLOURS), s.caption
        if s.kind == "relation":
            assert any(r in s.caption for r in ("left of", "right of", "above", "below"))
        if s.kind == "count":
            assert words[0] in ("two", "three") and words[-1].endswith("s")
    with pytest.raises(ValueError, match="non-negative"):
        make_captioned_scene(-1)


# --------------------------------------------------------------------------- pretraining command


def test_pretraining_command_runs_a_few_steps_on_cpu(tmp_path) -> None:
    from dcsm.commands.pretrain_toy_clip import main

    out = tmp_path / "toy"
    record = main([
        f"out_dir={out}", "optim.steps=2", "optim.batch_size=8", "optim.warmup_steps=1", "data.num_workers=0",
        "eval.size=6", "eval.splits=[test]", "eval.fixed_scenes=3", "trainer.enable_progress_bar=false",
    ])
    weights = out / "dcsm-toy-ViT.safetensors"
    saved = json.loads((out / "dcsm-toy-ViT.record.json").read_text())
    assert saved["samples"] == 16 and saved["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert set(saved["clip_cosine"]["test"]) == {"binding", "spatial", "negation", "all"}
    assert saved["train_wall_s"] > 0 and record["weights"] == weights.name
    assert weights.stat().st_size < 20_000_000
    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    # the exported file loads as an encoder (path) and is what was evaluated
    enc = FrozenCLIP(EncoderSpec(model="dcsm-toy-ViT", pretrained=str(weights), max_tokens=20))
    assert enc.grid_size == (8, 8) and enc.embed_dim == 128


# --------------------------------------------------------------------------- shipped weights


@pytest.fixture(scope="module")
def toy_encoder() -> FrozenCLIP:
    return FrozenCLIP(EncoderSpec(model="dcsm-toy-ViT", pretrained="toy", max_tokens=20))


def test_shipped_weights_are_fp16_small_and_recorded() -> None:
    rec = toy_clip.load_record()
    assert toy_clip.WEIGHTS_FILE.stat().st_size < 20_000_000
    assert hashlib.sha256(toy_clip.WEIGHTS_FILE.read_bytes()).hexdigest() == rec["sha256"]
    with safe_open(str(toy_clip.WEIGHTS_FILE), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}


#: CLIP cosine accuracy of the shipped weights on the record's fixed scenes (first 50 ``test`` scenes,
#: 96 px). The record's own figure (``fixed_scenes.accuracy`` 0.80) was measured on the scenes before
#: issue #26 gave them the benchmarks' formats (NegBench questions, eight relations): same weights,
#: harder scenes (binding 1.00, spatial 0.12, negation 0.44 of these 50).
FIXED_SCENES_ACCURACY = 0.52


def test_shipped_weights_give_recorded_clip_accuracy_on_fixed_scenes(toy_encoder: FrozenCLIP) -> None:
    from dcsm.commands.pretrain_toy_clip import clip_cosine_accuracy

    fixed = toy_clip.load_record()["fixed_scenes"]
    acc = clip_cosine_accuracy(toy_encoder, fixed["split"], fixed["n"], fixed["image_size"], 50, "cpu")
    assert round(acc["all"], 2) == FIXED_SCENES_ACCURACY
    assert FIXED_SCENES_ACCURACY > 0.4  # far above chance (0.25): these are trained weights


def test_toy_tag_only_for_the_toy_model() -> None:
    assert toy_clip.resolve_pretrained("ViT-B-32", "toy") == "toy"
    assert toy_clip.resolve_pretrained("dcsm-toy-ViT", None) is None
    assert toy_clip.resolve_pretrained("dcsm-toy-ViT", "toy") == str(toy_clip.WEIGHTS_FILE)


# --------------------------------------------------------------------------- pooled residual


def _features(encoder: FrozenCLIP, n: int = 6) -> FeatureBatch:
    from dcsm.data.synthetic.dataset import SyntheticDataConfig, scene_dataset
    from dcsm.features import collate_mcq, ensure_features

    run_cfg = to_plain(load_yaml(DEFAULT_CONFIG))
    run_cfg["data"].update(test_size=n, image_size=64)
    ds = scene_dataset(SyntheticDataConfig.from_config(run_cfg), "test", encoder.preprocess)
    return ensure_features(encoder, collate_mcq([ds[i] for i in range(n)]))


def test_pooled_residual_starts_as_clip_and_is_opt_in(encoder: FrozenCLIP) -> None:
    cfg = to_plain(load_yaml(DEFAULT_CONFIG))
    cfg["encoder"] = encoder.spec.to_dict()
    plain = build_head(cfg, encoder)
    assert not any(k.startswith("pooled") for k in plain.state_dict())  # off: state dict unchanged
    cfg["scorer"]["pooled"] = "residual"
    head = build_head(cfg, encoder).eval()
    f = _features(encoder)
    scale = float(encoder.model.logit_scale.exp())
    assert torch.allclose(DCSM(encoder, head)(f), scale * DCSM.clip_scores(f), atol=1e-5)
    assert float(head.pooled.scale) == pytest.approx(scale)
    with pytest.raises(ValueError, match="pooled"):
        head(f.patches, f.tokens, f.token_mask, f.token_ids)
    cfg["scorer"]["pooled"] = "bogus"
    with pytest.raises(ValueError, match="scorer.pooled"):
        build_head(cfg, encoder)
