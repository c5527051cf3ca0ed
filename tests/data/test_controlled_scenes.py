"""Issue 27: the controlled pretraining scenes really carry the statistics their configs plant,
measured on 1,000 drawn scenes of each shipped config (configs/pretrain_controlled_*.yaml)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from dcsm.config import CONFIG_DIR, parse_cli, to_plain
from dcsm.config_checks import check_config
from dcsm.data.synthetic.captioned import CUE_COLOURS, CaptionedConfig, make_captioned_scene
from dcsm.data.synthetic.vocab import COLOURS, SHAPES

N = 1000
PRETRAIN_DEFAULTS = CONFIG_DIR / "pretrain_toy_clip.yaml"


def scenes_config(variant: str) -> CaptionedConfig:
    cfg = check_config(to_plain(parse_cli(["--config", str(CONFIG_DIR / f"pretrain_controlled_{variant}.yaml")],
                                          default=PRETRAIN_DEFAULTS)))
    return CaptionedConfig.from_config(cfg["scenes"])


@pytest.fixture(scope="module")
def drawn() -> dict[str, list]:
    cfgs = {v: scenes_config(v) for v in ("uniform", "centred", "spurious")}
    return {v: [make_captioned_scene(i, seed=0, cfg=c) for i in range(N)] for v, c in cfgs.items()}


def centre_distance(samples: list) -> np.ndarray:
    """L-inf distance of every object's centre from the image centre (fraction of the side)."""
    return np.array([max(abs(o[3] - 0.5), abs(o[4] - 0.5)) for s in samples for o in s.meta["objects"]])


def test_centred_scenes_are_concentrated_and_uniform_ones_are_not(drawn: dict) -> None:
    cen, uni = centre_distance(drawn["centred"]), centre_distance(drawn["uniform"])
    assert scenes_config("centred").placement == "gaussian" and scenes_config("centred").centre_sigma == 0.10
    # uniform: one object's centre is uniform over the free area (side <= 0.32): E|x - 0.5| ~ 0.17 per axis
    assert 0.22 < uni.mean() < 0.27 and (uni > 0.3).mean() > 0.2
    assert cen.mean() < 0.19 and (cen > 0.3).mean() < 0.07 and (cen > 0.35).mean() < 0.03
    singles = np.array([max(abs(s.meta["objects"][0][3] - 0.5), abs(s.meta["objects"][0][4] - 0.5))
                        for s in drawn["centred"] if s.kind == "single"])
    # one object: the L-inf norm of two N(0, 0.1^2) has median ~0.11 (before truncation)
    assert 0.08 < np.median(singles) < 0.14
    # the rest of the distribution is the uniform one's: same kinds of captions
    assert {s.kind for s in drawn["centred"]} == {s.kind for s in drawn["uniform"]}


def test_spurious_background_predicts_the_first_shape_as_configured(drawn: dict) -> None:
    sp = drawn["spurious"]
    target = scenes_config("spurious").cue_agreement
    assert target == 0.8  # the shipped spurious model's setting (README: at 0.95 no ablation could uncover shape)
    agree = np.array([s.meta["cue_shape"] == s.meta["objects"][0][1] for s in sp])
    assert abs(agree.mean() - target) <= 0.03, agree.mean()
    # the background's pixels (a corner, minus texture) sit near the cue shape's colour
    for s in sp[:100]:
        corner = np.asarray(s.image)[:3, :3].reshape(-1, 3).astype(float).mean(0)
        nearest = min(CUE_COLOURS, key=lambda k: np.abs(corner - CUE_COLOURS[k]).max())
        objects_near_corner = any(o[3] - o[2] / 2 < 0.06 and o[4] - o[2] / 2 < 0.06 for o in s.meta["objects"])
        if s.meta["background"] == "flat" and not objects_near_corner:
            assert nearest == s.meta["cue_shape"]
    # every disagreeing shape colour occurs (the minority groups exist)
    pairs = {(s.meta["objects"][0][1], s.meta["cue_shape"]) for s in sp}
    assert pairs == {(a, b) for a in SHAPES for b in SHAPES}


def test_no_caption_mentions_the_background(drawn: dict) -> None:
    vocab = set(COLOURS) | set(SHAPES) | {"squares", "circles", "triangles"}
    banned = re.compile(r"background|black|white|teal|dark|bright|grey|gray")
    for s in drawn["spurious"]:
        assert not banned.search(s.caption), s.caption
    # and the captions are drawn as in uniform scenes: same caption for the same index when the
    # scene RNG stream has not diverged (the cue is drawn after the caption)
    same = sum(a.caption == b.caption for a, b in zip(drawn["spurious"], drawn["uniform"]))
    assert same == N
    assert all(any(w in vocab for w in s.caption.split()) for s in drawn["spurious"])


def test_default_scenes_are_unchanged_by_the_new_options() -> None:
    """The uniform variant draws exactly today's scenes (same RNG stream), image for image."""
    base, uni = CaptionedConfig(), CaptionedConfig(placement="uniform", background_cue="none")
    for i in range(20):
        a, b = make_captioned_scene(i, seed=1, cfg=base), make_captioned_scene(i, seed=1, cfg=uni)
        assert a.image.tobytes() == b.image.tobytes() and a.meta == b.meta and "cue_shape" not in a.meta


#: sha256 of the first 300 captions of stream 0 with the default config, as the shipped small CLIP
#: (dcsm/weights) was pretrained on them: a new option must not move the stream
DEFAULT_CAPTIONS_SHA256 = "53ee6bcba8ec6cae174a7621a07a805bd5df2e9d562abcf4e9fea8a786894b52"


def test_pair_wording_and_keeps_the_shipped_caption_stream() -> None:
    captions = "\n".join(make_captioned_scene(i, seed=0, cfg=CaptionedConfig(pair_wording="and")).caption for i in range(300))
    assert hashlib.sha256(captions.encode()).hexdigest() == DEFAULT_CAPTIONS_SHA256
    assert CaptionedConfig().pair_wording == "and"
    assert scenes_config("uniform").pair_wording == "and"  # the controlled variants too (pretrain_toy_clip.yaml)


def test_pair_wording_binding_templates_uses_the_training_templates_only() -> None:
    from dcsm.data.synthetic.templates import template_pool

    cfg = CaptionedConfig(pair_wording="binding_templates")
    pairs = [make_captioned_scene(i, seed=0, cfg=cfg) for i in range(400)]
    pairs = [p.caption for p in pairs if p.kind == "pair"]
    assert len(pairs) > 50
    patterns = {t: re.compile("^" + re.escape(t).replace(re.escape("{a}"), "(an? .+)").replace(re.escape("{b}"), "(an? .+)") + "$")
                for t in template_pool("binding", which="all")}
    used = {t for c in pairs for t, pat in patterns.items() if pat.match(c)}
    assert used == set(template_pool("binding", which="train"))  # every training wording, "together with" among them
    assert not used & set(template_pool("binding", which="heldout"))  # held-out wordings stay unseen by the encoder too
    assert sum("together with" in c for c in pairs) > 10


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="pair_wording"):
        CaptionedConfig(pair_wording="with")
    with pytest.raises(ValueError, match="placement"):
        CaptionedConfig(placement="centre")
    with pytest.raises(ValueError, match="centre_sigma"):
        CaptionedConfig(centre_sigma=0.0)
    with pytest.raises(ValueError, match="cue_agreement"):
        CaptionedConfig(cue_agreement=1.5)


@pytest.mark.parametrize("variant", ["uniform", "centred", "spurious"])
def test_binding_probe_draws_held_out_scenes_of_the_variant_with_four_binding_swaps(variant: str) -> None:
    from dcsm.data.synthetic.captioned import BINDING_OPTIONS, binding_probe

    cfg = scenes_config(variant)
    images, options = binding_probe(cfg, 40, seed=1000)
    assert len(images) == len(options) == 40 and BINDING_OPTIONS[0] == "positive"
    trained = {make_captioned_scene(i, seed=0, cfg=cfg).image.tobytes() for i in range(200)}
    assert not trained & {im.tobytes() for im in images}  # another stream than the training seed's
    for opts in options:
        assert len(set(opts)) == 4  # four different scenes described ...
        assert len({tuple(sorted(o.split())) for o in opts}) == 1  # ... with the same words
        words = opts[0].split()
        assert words.count("small") == words.count("big") == 1 and words[2] != words[-1]  # sizes differ, shapes differ
    if variant == "centred":  # the probe keeps the variant's placement
        probe = binding_probe(cfg, 40, seed=1000)[0]
        assert probe[0].tobytes() == images[0].tobytes()
