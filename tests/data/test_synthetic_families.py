"""The synthetic task families (dcsm.data.synthetic.families) and the template split: every option's
truth decided by an independent oracle from the drawn objects, the benchmarks' option structures,
and held-out templates never reaching train/val scenes."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from dcsm.data.synthetic.families import QUESTION_TYPES, SPATIAL_RELATIONS, build_negation, build_spatial
from dcsm.data.synthetic.scenes import SceneSample, make_scene
from dcsm.data.synthetic.styles import STYLES
from dcsm.data.synthetic.templates import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, fill, template_pool
from dcsm.data.synthetic.vocab import SPLITS

from tests.synthetic_oracle import SIZE, caption_true, parse

N = 90


def _samples(category: str, n: int = N, split: str = "train") -> list[SceneSample]:
    return [make_scene(i, split=split, categories=(category,), image_size=SIZE) for i in range(n)]


def _one_hot_truth(s: SceneSample) -> None:
    """Exactly the labelled option holds for the image, the opposite-labelled one for the opposite."""
    truth = [caption_true(c, s.category, s.meta["objects"]) for c in s.captions]
    opp = [caption_true(c, s.category, s.meta["opposite_objects"]) for c in s.captions]
    assert truth == [k == s.label for k in range(len(s.captions))], (s.captions, s.meta)
    assert opp == [k == s.opposite_label for k in range(len(s.captions))], (s.captions, s.meta)
    assert len(set(s.captions)) == len(s.captions) and s.label != s.opposite_label
    json.dumps(s.meta)


def _centre_pixel(image, obj: dict) -> tuple[int, ...]:
    cx, cy = (int(v) for v in obj["centre"])
    return tuple(np.asarray(image)[cy, cx])


@pytest.mark.parametrize("split", ["train", "heldout_templates", "shifted"])
def test_spatial_options_true_exactly_as_labelled(split: str) -> None:
    seen = Counter()
    for s in _samples("spatial", split=split):
        _one_hot_truth(s)
        rel = s.meta["relation"]
        seen[rel] += 1
        kinds = s.meta["option_kinds"]
        assert kinds[s.opposite_label] in ("swapped", "inverse")
        for image, objs in ((s.image, s.meta["objects"]), (s.opposite_image, s.meta["opposite_objects"])):
            # every object shows its own colour at its centre: the one behind stays visible
            assert all(_centre_pixel(image, o) == tuple(o["rgb"]) for o in objs)
        if rel in ("on", "under", "front", "behind"):
            others = {k.removeprefix("other_") for k in kinds if k.startswith("other_")}
            assert others == {"left", "right"}  # WhatsUp A/B ask these with on/under, in front/behind
    assert set(seen) == set(SPATIAL_RELATIONS)


def test_spatial_wordings_are_whatsup_minimal_pairs() -> None:
    """All options of a scene share one template and both objects; only the relation or order changes."""
    for s in _samples("spatial", 40):
        parsed = [parse(c, "spatial") for c in s.captions]
        assert len({t for t, _ in parsed}) == 1 and parsed[0][0] == s.meta["template"]
        objs = [{(f["a_colour"], f["a_shape"]), (f["b_colour"], f["b_shape"])} for _, f in parsed]
        assert all(o == objs[0] for o in objs)


def test_forced_relations_and_contrasts() -> None:
    rng = np.random.default_rng(0)
    sc = build_spatial(rng, STYLES["transfer"], "all", relation="under", contrast=("left", "right"),
                       opposite_kind="inverse")
    assert sc.extra_meta["relation"] == "under" and [k for k, _ in sc.options][:2] == ["positive", "inverse"]
    assert " on " in sc.options[1][1] and " under " in sc.options[0][1]


def test_binding_variants_true_exactly_as_labelled() -> None:
    variants = Counter()
    for s in _samples("binding"):
        _one_hot_truth(s)
        variants[s.meta["variant"]] += 1
        kinds = s.meta["option_kinds"]
        assert kinds[s.opposite_label] == "colour_swap"
        expected = {"full": {"size_swap", "shape_swap"}, "pairs": {"replace_att", "replace_obj"}}[s.meta["variant"]]
        assert expected <= set(kinds)
        o1, o2 = s.meta["objects"]
        p1, p2 = s.meta["opposite_objects"]
        assert (p1["colour"], p2["colour"]) == (o2["colour"], o1["colour"]) and p1["bbox"] == o1["bbox"]
    assert set(variants) == {"full", "pairs"}


def test_negation_follows_negbench_question_types_and_options() -> None:
    types = Counter()
    distractors = 0
    for s in _samples("negation", 120):
        _one_hot_truth(s)
        qtype = s.meta["question_type"]
        types[qtype] += 1
        distractors += s.meta["distractor"]
        kinds = dict(zip(s.meta["option_kinds"], s.captions))
        # NegBench's wrong options: the hybrid with the two objects swapped, the absent object
        # affirmed, the present object negated
        p, n = s.meta["present"], s.meta["absent"]
        assert parse(kinds["hybrid_swap"], "hybrid")[1]["a_colour"] == n.split()[1]
        assert parse(kinds["absent_affirmed"], "affirm") is not None
        assert parse(kinds["present_negated"], "negate") is not None
        family = {"positive": "affirm", "negative": "negate", "hybrid": "hybrid"}[qtype]
        assert parse(kinds["positive"], family) is not None
        # the absent object is not drawn: no object of its colour and shape in the image
        drawn = {(o["colour"], o["shape"]) for o in s.meta["objects"]}
        assert tuple(n.split()[1:]) not in drawn and tuple(p.split()[1:]) in drawn
    assert set(types) == set(QUESTION_TYPES) and min(types.values()) >= 25
    assert 0 < distractors < 120


def test_negation_wordings_cover_the_benchmark_phrasings() -> None:
    text = " ".join(" ".join(make_scene(i, categories=("negation",), image_size=32).captions) for i in range(300))
    for phrase in (" no ", " not ", " without ", "does not feature", "there is no", "but not", "absent"):
        assert phrase in text, phrase


def test_forced_question_type() -> None:
    for qtype in QUESTION_TYPES:
        sc = build_negation(np.random.default_rng(1), STYLES["default"], "train", question_type=qtype)
        assert sc.extra_meta["question_type"] == qtype


# --------------------------------------------------------------------------- the template split


def test_template_pools_are_disjoint_and_filled() -> None:
    for family, pool in TRAIN_TEMPLATES.items():
        held = HELDOUT_TEMPLATES[family]
        assert held and pool and not set(held) & set(pool)
        assert template_pool(family, "train") == pool and template_pool(family, "val") == pool
        assert template_pool(family, "heldout_templates") == held
        assert template_pool(family, which="all") == pool + held
    assert "heldout_templates" in SPLITS
    assert fill("{P} is here, no {n_bare}", p="a red square", n="an orange circle") == \
        "A red square is here, no orange circle"
    with pytest.raises(ValueError, match="unknown template family"):
        template_pool("colour")


@pytest.mark.parametrize("split", ["train", "val", "test", "shifted", "heldout"])
def test_no_heldout_template_reaches_other_splits(split: str) -> None:
    """Every caption of train/val (and the other evaluation splits) is worded by a training
    template and by no held-out one: checked on the text, not on the generator's records."""
    for i in range(240):
        s = make_scene(i, split=split, image_size=32)
        families = {"spatial": ["spatial"], "binding": ["binding"],
                    "negation": ["affirm", "negate", "hybrid"]}[s.category]
        for cap in s.captions:
            assert any(parse(cap, f, "train") for f in families), cap
            assert not any(parse(cap, f, "heldout") for f in families), cap
        assert s.meta["template"] in {t for f in families for t in TRAIN_TEMPLATES[f]}


def test_heldout_templates_split_uses_only_heldout_wordings() -> None:
    used = set()
    for i in range(240):
        s = make_scene(i, split="heldout_templates", image_size=32)
        assert s.meta["style"] == "default"
        families = {"spatial": ["spatial"], "binding": ["binding"],
                    "negation": ["affirm", "negate", "hybrid"]}[s.category]
        for cap in s.captions:
            assert any(parse(cap, f, "heldout") for f in families), cap
            assert not any(parse(cap, f, "train") for f in families), cap
        used.update(s.meta.get("templates", [s.meta["template"]]))
    assert used == {t for v in HELDOUT_TEMPLATES.values() for t in v}


def test_captions_fit_the_smoke_token_budget() -> None:
    """configs/smoke.yaml keeps 20 tokens (SOT..EOT): no caption of any split may be truncated."""
    import open_clip

    import dcsm.model.encoders  # noqa: F401  (registers dcsm-toy-ViT)

    tok = open_clip.get_tokenizer("dcsm-toy-ViT")
    caps = [c for split in ("train", "heldout_templates") for i in range(300)
            for c in make_scene(i, split=split, image_size=32).captions]
    assert int((tok(caps) != 0).sum(dim=1).max()) <= 20
