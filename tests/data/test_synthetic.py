"""Tests for dcsm.data.synthetic.scenes: determinism, caption truth, vocabulary, styles, errors."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

from dcsm.data.synthetic.scenes import SceneSample, SyntheticScenes, make_scene
from dcsm.data.synthetic.styles import STYLES
from dcsm.data.synthetic.templates import RELATION_PHRASES
from dcsm.data.synthetic.vocab import (
    CATEGORIES,
    COLOURS,
    MIN_SIZE_RATIO,
    SHAPES,
    SPLITS,
)

SIZE = 224
N_PER_CATEGORY = 60


def _bytes(sample: SceneSample) -> tuple[bytes, bytes]:
    return sample.image.tobytes(), sample.opposite_image.tobytes()


def _samples(category: str, n: int = N_PER_CATEGORY, split: str = "train") -> list[SceneSample]:
    return [make_scene(i, split=split, categories=(category,)) for i in range(n)]


def _by_role(objects: list[dict]) -> dict[str, dict]:
    return {o["role"]: o for o in objects}


def _holds(rel: str, a: dict, b: dict, size: int = SIZE) -> bool:
    """Relation clearly holds between object centres: >= 25% apart, cross offset <= 10%."""
    (ax, ay), (bx, by) = a["centre"], b["centre"]
    dx, dy = bx - ax, by - ay  # > 0: B is right of / below A
    primary = {"left": dx, "right": -dx, "above": dy, "below": -dy}[rel]
    cross = abs(dy) if rel in ("left", "right") else abs(dx)
    return primary >= 0.25 * size and cross <= 0.10 * size


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _np(colour: str, shape: str, size: str | None = None) -> str:
    words = ([size] if size else []) + [colour, shape]
    return f"{_article(words[0])} {' '.join(words)}"


def _check_common(s: SceneSample, num_options: int = 4) -> None:
    assert len(s.captions) == num_options
    assert len(set(s.captions)) == num_options
    assert 0 <= s.label < num_options and 0 <= s.opposite_label < num_options
    assert s.label != s.opposite_label
    assert s.meta["option_kinds"][s.label] == "positive"
    assert s.image.mode == "RGB" and s.image.size == (SIZE, SIZE)
    assert s.opposite_image.mode == "RGB" and s.opposite_image.size == (SIZE, SIZE)
    assert s.image.tobytes() != s.opposite_image.tobytes()
    json.dumps(s.meta)  # JSON-serialisable


def _check_objects_drawn(image, objects: list[dict]) -> None:
    """Objects stay inside, do not overlap, and their centre pixel has their colour."""
    arr = np.asarray(image)
    for o in objects:
        x0, y0, x1, y1 = o["bbox"]
        assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
        cx, cy = (int(v) for v in o["centre"])
        assert tuple(arr[cy, cx]) == tuple(o["rgb"])
    for a, b in itertools.combinations(objects, 2):
        ax0, ay0, ax1, ay1 = a["bbox"]
        bx0, by0, bx1, by1 = b["bbox"]
        assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)


# --------------------------------------------------------------------------- determinism


def test_same_arguments_give_identical_samples() -> None:
    for split, i in [("train", 0), ("val", 7), ("shifted", 5)]:
        a, b = make_scene(i, split=split, seed=3), make_scene(i, split=split, seed=3)
        assert _bytes(a) == _bytes(b)
        assert a.captions == b.captions
        assert (a.label, a.opposite_label, a.meta) == (b.label, b.opposite_label, b.meta)


def test_different_split_or_seed_changes_content() -> None:
    base = [make_scene(i) for i in range(6)]
    for other in (
        [make_scene(i, split="val") for i in range(6)],
        [make_scene(i, split="test") for i in range(6)],
        [make_scene(i, seed=1) for i in range(6)],
    ):
        assert all(_bytes(a) != _bytes(b) for a, b in zip(base, other))
        assert [a.captions for a in base] != [b.captions for b in other]


def test_different_indices_differ() -> None:
    images = {make_scene(i).image.tobytes() for i in range(20)}
    assert len(images) == 20


def test_dataset_matches_make_scene_and_bounds() -> None:
    ds = SyntheticScenes(5, split="val", seed=2, num_options=3)
    assert len(ds) == 5
    ref = make_scene(4, split="val", seed=2, num_options=3)
    assert _bytes(ds[4]) == _bytes(ref) and ds[4].captions == ref.captions
    assert _bytes(ds[-1]) == _bytes(ref)
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds[-6]
    with pytest.raises(ValueError, match="bogus"):
        SyntheticScenes(5, split="bogus")


# --------------------------------------------------------------------------- balance


def test_category_balance_and_label_spread() -> None:
    samples = [make_scene(i) for i in range(30)]
    counts = {c: sum(s.category == c for s in samples) for c in CATEGORIES}
    assert counts == {c: 10 for c in CATEGORIES}
    assert [s.category for s in samples[:3]] == list(CATEGORIES)
    labels = {make_scene(i).label for i in range(60)}
    assert labels == {0, 1, 2, 3}  # options are shuffled


def test_category_subset() -> None:
    samples = [make_scene(i, categories=("negation", "spatial")) for i in range(10)]
    assert [s.category for s in samples] == ["negation", "spatial"] * 5


# --------------------------------------------------------------------------- caption truth


# Caption truth of every family (spatial, binding, negation) against the drawn objects, by an
# independent oracle: tests/data/test_synthetic_families.py.


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_coverage() -> None:
    words: set[str] = set()
    text = []
    for i in range(200):
        caps = make_scene(i, image_size=64).captions
        text.extend(caps)
        for c in caps:
            words.update(c.split())
    joined = "\n".join(text)
    assert set(COLOURS) >= {"red", "green", "blue", "yellow", "orange", "purple"}
    assert set(SHAPES) == {"square", "circle", "triangle"}
    for w in [*COLOURS, *SHAPES, "small", "big", "no", "not", "without", "above", "below", "on", "under", "behind"]:
        assert w in words, w
    for phrase in RELATION_PHRASES.values():
        assert phrase in joined, phrase


# --------------------------------------------------------------------------- styles


def _corners(img) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32)
    return np.stack([arr[:3, :3], arr[:3, -3:], arr[-3:, :3], arr[-3:, -3:]])


def test_shifted_style_differs() -> None:
    default = [make_scene(i, split="test") for i in range(30)]
    shifted = [make_scene(i, split="shifted") for i in range(30)]
    assert {s.meta["style"] for s in default} == {"default"}
    assert {s.meta["style"] for s in shifted} == {"shifted"}
    d_mean = np.mean([_corners(s.image).mean() for s in default])
    s_mean = np.mean([_corners(s.image).mean() for s in shifted])
    assert d_mean - s_mean > 60  # default light, shifted dark
    d_std = np.mean([_corners(s.image).std(axis=(1, 2)).mean() for s in default])
    s_std = np.mean([_corners(s.image).std(axis=(1, 2)).mean() for s in shifted])
    assert d_std < 1.0 < 5.0 < s_std  # flat vs noisy texture
    # explicit style override works on any split
    assert make_scene(0, split="train", style="shifted").meta["style"] == "shifted"
    # backgrounds vary within a style
    assert len({tuple(_corners(s.image)[0, 0, 0]) for s in default}) > 5
    # shifted sizes are smaller and objects come nearer the border
    d_side = max(o["side"] for s in default for o in s.meta["objects"])
    s_side = max(o["side"] for s in shifted for o in s.meta["objects"])
    assert s_side < d_side
    margin = STYLES["default"].margin * SIZE
    near_border = [
        min(o["bbox"][0], o["bbox"][1], SIZE - o["bbox"][2], SIZE - o["bbox"][3])
        for s in shifted for o in s.meta["objects"]
    ]
    assert min(near_border) < margin - 2


def test_colours_unambiguous_and_sizes_apart() -> None:
    max_jitter = max(st.colour_jitter for st in STYLES.values())
    for (_, c1), (_, c2) in itertools.combinations(COLOURS.items(), 2):
        assert np.abs(np.subtract(c1, c2)).max() > 2 * max_jitter + 30
    for st in STYLES.values():
        assert st.big_size[0] >= MIN_SIZE_RATIO * st.small_size[1]


# --------------------------------------------------------------------------- options / sizes


def test_num_options_two_and_three() -> None:
    for n in (2, 3):
        for i in range(12):
            s = make_scene(i, num_options=n)
            _check_common(s, num_options=n)
            full = make_scene(i)
            # same scene; kept options are the positive, the opposite, then the first negatives
            assert _bytes(s) == _bytes(full)
            assert s.captions[s.label] == full.captions[full.label]
            assert s.captions[s.opposite_label] == full.captions[full.opposite_label]
            assert set(s.captions) <= set(full.captions)


def test_image_size_honoured() -> None:
    for size in (32, 96, 300):
        s = make_scene(4, image_size=size)
        assert s.image.size == (size, size) and s.opposite_image.size == (size, size)
        for o in s.meta["objects"]:
            x0, y0, x1, y1 = o["bbox"]
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
    # same layout (fractions) at any size
    assert make_scene(4, image_size=96).captions == make_scene(4).captions


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"split": "holdout"}, "holdout"),
        ({"categories": ("spatial", "counting")}, "counting"),
        ({"num_options": 5}, "5"),
        ({"num_options": 1}, "1"),
        ({"style": "neon"}, "neon"),
        ({"image_size": 8}, "8"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        make_scene(0, **kwargs)
    with pytest.raises(ValueError, match=re.escape(bad)):
        SyntheticScenes(3, **kwargs)


def test_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError) as err:
        make_scene(0, split="holdout")
    assert all(s in str(err.value) for s in SPLITS)
    with pytest.raises(ValueError) as err:
        make_scene(0, categories=["colour"])
    assert all(c in str(err.value) for c in CATEGORIES)
    with pytest.raises(ValueError):
        make_scene(-1)
