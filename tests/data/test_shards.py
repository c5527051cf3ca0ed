"""Tests for WebDataset shards (dcsm.data.shards), hard negatives (dcsm.data.negatives) and the
data_prep CLIs (synthetic shards, pair shards, feature cache)."""

from __future__ import annotations

import json
import shutil
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from torchvision.transforms.functional import pil_to_tensor

from dcsm.data.negatives.rules import (
    FALLBACK_RULES,
    RULES,
    attribute_replace,
    attribute_swap,
    negation_toggle,
    object_swap,
    relation_swap,
)
from dcsm.data.negatives.sample import caption_category, make_negatives, make_negatives_with_rules
from dcsm.data.shards import (
    SampleError,
    ShardError,
    SkipCounter,
    SkippedSampleWarning,
    count_tar_samples,
    raw_sample_pipeline,
    read_manifest,
    shard_subset,
    write_shards,
    write_tar,
)
from dcsm.data.synthetic.scenes import make_scene
from dcsm.data.synthetic.vocab import CATEGORIES
from dcsm.features import collate_mcq, encode_batch
from dcsm.features.shards import feature_sample_pipeline

from dcsm.commands import pair_shards as make_pair_shards
from dcsm.commands import synthetic_shards as make_synthetic_shards
from dcsm.features import writer as cache_features

N, PER_SHARD, SEED, SIZE = 20, 6, 3, 64
SYNTH_ARGS = [f"synthetic_shards.num_samples={N}", f"synthetic_shards.samples_per_shard={PER_SHARD}",
              "synthetic_shards.split=train", f"synthetic_shards.seed={SEED}", f"synthetic_shards.image_size={SIZE}",
              "synthetic_shards.num_options=4"]


def _members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _rewrite(path: Path, fn) -> None:
    """Rewrite a tar with ``fn(name, data) -> data | None`` (None drops the member)."""
    members = [(n, fn(n, d)) for n, d in _members(path)]
    write_tar(path, [(n, d) for n, d in members if d is not None])


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "raw"
    make_synthetic_shards.main([f"synthetic_shards.out={out}", *SYNTH_ARGS])
    return out


# --------------------------------------------------------------------------- writing


def test_synthetic_shards_layout_and_manifest(synth: Path) -> None:
    m = read_manifest(synth)
    assert m["format"] == "dcsm.raw_shards"
    assert [e["name"] for e in m["shards"]] == [f"shard-{i:06d}.tar" for i in range(4)]
    assert [e["count"] for e in m["shards"]] == [6, 6, 6, 2]
    assert (m["num_shards"], m["num_samples"], m["samples_per_shard"]) == (4, 20, 6)
    assert m["pattern"] == "shard-{000000..000003}.tar"
    assert m["info"]["seed"] == SEED and m["info"]["image_size"] == SIZE
    assert sorted(p.name for p in synth.iterdir()) == ["manifest.json"] + [f"shard-{i:06d}.tar" for i in range(4)]
    for i, e in enumerate(m["shards"]):
        path = synth / e["name"]
        assert e["bytes"] == path.stat().st_size
        names = [n for n, _ in _members(path)]
        keys = [f"train-{j:08d}" for j in range(6 * i, min(6 * i + 6, N))]
        assert names == [f"{k}.{ext}" for k in keys for ext in ("json", "png", "opp.png")]
        assert count_tar_samples(path) == e["count"]
    record = json.loads(dict(_members(synth / "shard-000000.tar"))["train-00000000.json"])
    assert set(record) == {"captions", "label", "meta"}
    assert record["meta"]["category"] in CATEGORIES and isinstance(record["meta"]["opposite_label"], int)


def test_rerun_skips_complete_shards_and_ignores_temp_files(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    shutil.copytree(synth, out)
    before = _mtimes(out)
    manifest_before = (out / "manifest.json").read_text()
    make_synthetic_shards.main([f"synthetic_shards.out={out}", *SYNTH_ARGS])
    assert _mtimes(out) == before
    assert (out / "manifest.json").read_text() == manifest_before

    # an interrupted run: a leftover temp file, a missing shard and a truncated (incomplete) one
    tmp = out / ".shard-000001.tar.abc123.tmp"
    tmp.write_bytes(b"half a shard")
    (out / "shard-000002.tar").unlink()
    _rewrite(out / "shard-000003.tar", lambda n, d: d if n.startswith("train-00000018") else None)
    assert count_tar_samples(out / "shard-000003.tar") == 1
    kept = {k: v for k, v in _mtimes(out).items() if k in ("shard-000000.tar", "shard-000001.tar")}
    m = make_synthetic_shards.main([f"synthetic_shards.out={out}", *SYNTH_ARGS])
    after = _mtimes(out)
    assert {k: after[k] for k in kept} == kept
    assert sorted(after) == [f"shard-{i:06d}.tar" for i in range(4)]
    assert not tmp.exists()
    assert [e["count"] for e in m["shards"]] == [6, 6, 6, 2]
    assert (out / "manifest.json").read_text() == manifest_before
    for name in ("shard-000002.tar", "shard-000003.tar"):  # rewritten byte-identically
        assert (out / name).read_bytes() == (synth / name).read_bytes()

    with pytest.raises(ShardError, match="image_size"):
        make_synthetic_shards.main([f"synthetic_shards.out={out}", *SYNTH_ARGS[:-2], "synthetic_shards.image_size=32",
                                    "synthetic_shards.num_options=4"])


def test_write_shards_from_iterable_and_validation(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 8), "red")
    samples = [{"__key__": f"s{i}", "image": img, "captions": ["a", "b"], "label": i % 2} for i in range(5)]
    m = write_shards(iter(samples), tmp_path / "it", 2, image_format="jpg")
    assert [e["count"] for e in m["shards"]] == [2, 2, 1]
    assert [n for n, _ in _members(tmp_path / "it" / "shard-000002.tar")] == ["s4.json", "s4.jpg"]
    before = _mtimes(tmp_path / "it")
    write_shards(iter(samples), tmp_path / "it", 2, image_format="jpg")
    assert _mtimes(tmp_path / "it") == before
    with pytest.raises(ShardError, match="key"):
        write_shards([{**samples[0], "__key__": "a.b"}], tmp_path / "bad1", 2)
    with pytest.raises(ShardError, match="label"):
        write_shards([{**samples[0], "label": 2}], tmp_path / "bad2", 2)
    with pytest.raises(ShardError, match="duplicate"):
        write_shards([samples[0], samples[0]], tmp_path / "bad3", 2)
    with pytest.raises(ShardError, match="image_ext"):
        write_shards([{**samples[0], "image": b"\xff\xd8"}], tmp_path / "bad4", 2)


# --------------------------------------------------------------------------- reading


def test_read_back_matches_make_scene(synth: Path) -> None:
    p = raw_sample_pipeline(synth, None, with_opposite=True, keep_meta=True)
    samples = list(p)
    assert p.skips.count == 0
    assert [s["key"] for s in samples] == [f"train-{i:08d}" for i in range(N)]
    for i, s in enumerate(samples):
        scene = make_scene(i, split="train", seed=SEED, image_size=SIZE, num_options=4)
        assert s["captions"] == scene.captions
        assert s["label"] == scene.label
        assert s["opposite_label"] == scene.opposite_label
        assert s["category"] == CATEGORIES.index(scene.category)
        assert s["meta"]["index"] == i
        assert np.array_equal(np.asarray(s["images"]), np.asarray(scene.image))  # png is lossless
        assert np.array_equal(np.asarray(s["opposite_images"]), np.asarray(scene.opposite_image))


def test_urls_forms_and_deterministic_shuffle(synth: Path) -> None:
    pattern = str(synth / "shard-{000000..000003}.tar")
    by_pattern = [s["key"] for s in raw_sample_pipeline(pattern, None)]
    by_list = [s["key"] for s in raw_sample_pipeline([str(synth / f"shard-{i:06d}.tar") for i in range(4)], None)]
    by_pipe = [s["key"] for s in raw_sample_pipeline(f"pipe:cat {synth / 'shard-000001.tar'}", None)]
    assert by_pattern == by_list == [f"train-{i:08d}" for i in range(N)]
    assert by_pipe == [f"train-{i:08d}" for i in range(6, 12)]

    def order(epoch: int) -> list[str]:
        p = raw_sample_pipeline(synth, None, shuffle_buffer=5, seed=7)
        p.set_epoch(epoch)
        return [s["key"] for s in p]

    e0, e1 = order(0), order(1)
    assert e0 == order(0) and sorted(e0) == sorted(e1) == by_pattern
    assert e0 != by_pattern and e0 != e1


def test_shard_subset_is_partition() -> None:
    urls = [f"s{i}" for i in range(10)]
    for shuffle in (False, True):
        parts = [shard_subset(urls, rank=r, world_size=2, worker=w, num_workers=2, seed=1, epoch=3, shuffle=shuffle)
                 for r in range(2) for w in range(2)]
        flat = [u for p in parts for u in p]
        assert sorted(flat) == sorted(urls) and len(flat) == len(urls)
        assert [len(p) for p in parts] == [3, 2, 3, 2]
    with pytest.raises(ShardError):
        shard_subset(urls, rank=2, world_size=2)
    with pytest.raises(ShardError, match="rank and world_size"):
        raw_sample_pipeline(urls, None, rank=0)


def test_two_ranks_two_workers_see_every_key_once(synth: Path) -> None:
    all_keys = sorted(f"train-{i:08d}" for i in range(N))
    for epoch in (0, 1):
        per_rank = []
        for rank in (0, 1):
            p = raw_sample_pipeline(synth, pil_to_tensor, shuffle_buffer=4, seed=5, rank=rank, world_size=2)
            p.set_epoch(epoch)
            loader = DataLoader(p, batch_size=3, num_workers=2, collate_fn=collate_mcq)
            keys = [k for batch in loader for k in batch["key"]]
            assert all(b["images"].shape[1:] == (3, SIZE, SIZE) for b in loader)
            per_rank.append(keys)
        union = per_rank[0] + per_rank[1]
        assert sorted(union) == all_keys, f"epoch {epoch}: duplicates or gaps"
        assert not set(per_rank[0]) & set(per_rank[1])
        assert all(per_rank)  # 4 shards over 2 ranks x 2 workers: nobody idle


def test_corrupt_samples_are_skipped_counted_and_named(synth: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(synth, bad)
    _rewrite(bad / "shard-000001.tar", lambda n, d: b"not an image at all" if n == "train-00000007.png" else d)
    _rewrite(bad / "shard-000002.tar", lambda n, d: b'{"captions": [' if n == "train-00000013.json" else d)
    expected = [f"train-{i:08d}" for i in range(N) if i not in (7, 13)]

    with pytest.warns(SkippedSampleWarning) as record:
        p = raw_sample_pipeline(bad, None)
        keys = [s["key"] for s in p]
    assert keys == expected
    assert p.skips.count == 2
    messages = [str(w.message) for w in record if issubclass(w.category, SkippedSampleWarning)]
    assert any("shard-000001.tar" in m and "train-00000007" in m and "image" in m for m in messages)
    assert any("shard-000002.tar" in m and "train-00000013" in m and "JSON" in m for m in messages)
    assert {(r.shard.rsplit("/", 1)[-1], r.key) for r in p.skips.examples} == {
        ("shard-000001.tar", "train-00000007"), ("shard-000002.tar", "train-00000013")}

    # the counter is shared with DataLoader worker processes
    p = raw_sample_pipeline(bad, pil_to_tensor)
    with pytest.warns(SkippedSampleWarning):
        p.skips.record("probe", None, "main-process record")  # keeps pytest.warns satisfied
        keys = [k for b in DataLoader(p, batch_size=4, num_workers=2, collate_fn=collate_mcq) for k in b["key"]]
    assert sorted(keys) == expected and p.skips.count == 3

    # a missing member, a missing shard and a truncated shard are skipped and counted as well
    _rewrite(bad / "shard-000000.tar", lambda n, d: None if n == "train-00000002.json" else d)
    with open(bad / "shard-000003.tar", "r+b") as f:
        f.truncate(1000)  # inside the first member
    counter = SkipCounter()
    with pytest.warns(SkippedSampleWarning):
        keys = [s["key"] for s in raw_sample_pipeline(
            [str(bad / "shard-000000.tar"), str(bad / "nope.tar"), str(bad / "shard-000003.tar")], None, skips=counter)]
    assert keys == [f"train-{i:08d}" for i in range(6) if i != 2]
    reasons = [r.reason for r in counter.examples]
    assert counter.count == 3, reasons
    assert "missing member" in reasons[0] and "cannot open" in reasons[1] and "unreadable shard" in reasons[2]

    # strict mode: the handler raises
    with pytest.warns(SkippedSampleWarning), pytest.raises(SampleError, match="train-00000013"):
        list(raw_sample_pipeline(str(bad / "shard-000002.tar"), None, handler=wds.reraise_exception))


# --------------------------------------------------------------------------- negatives


def test_relation_swap() -> None:
    assert relation_swap("a red cup to the left of a blue plate") == [
        "a blue plate to the left of a red cup", "a red cup to the right of a blue plate"]
    assert relation_swap("A small cat on a big table.") == ["A big table on a small cat.", "A small cat under a big table."]
    assert relation_swap("a person in front of a bus") == ["a bus in front of a person", "a person behind a bus"]
    assert relation_swap("a red square above a blue circle")[1] == "a red square below a blue circle"
    assert relation_swap("a cup on the left") == ["a cup on the right"]
    assert relation_swap("a cat next to a dog") == []  # symmetric: swapping is no negative
    assert relation_swap("a dog without a leash") == []


def test_attribute_swap() -> None:
    assert attribute_swap("a red cup to the left of a blue plate") == ["a blue cup to the left of a red plate"]
    assert attribute_swap("an orange circle without a purple square") == ["a purple circle without an orange square"]
    assert attribute_swap("a big red square and a small blue circle") == [
        "a big blue square and a small red circle", "a small red square and a big blue circle"]
    assert attribute_swap("a red cup on a plate") == ["a cup on a red plate"]  # moved to the other phrase
    assert attribute_swap("a red cup holding a blue straw") == ["a blue cup holding a red straw"]
    assert attribute_swap("a red and blue shirt") == []
    assert attribute_swap("a red cup and a blue cup") == []  # same nouns: swap changes nothing


def test_object_swap() -> None:
    assert object_swap("a dog without a leash") == ["a leash without a dog"]
    assert object_swap("a red cup to the left of a blue plate") == ["a red plate to the left of a blue cup"]
    assert object_swap("an apple on a table") == ["a table on an apple"]  # articles follow the nouns
    assert object_swap("a black cat and a white dog") == ["a black dog and a white cat"]
    assert object_swap("a cat and a dog") == []  # "a dog and a cat" means the same
    assert object_swap("two dogs playing with a ball") == []  # number mismatch


def test_negation_toggle() -> None:
    assert negation_toggle("a dog without a leash") == ["a dog with a leash", "a dog and a leash"]
    assert negation_toggle("a red square with no blue circle") == ["a red square with a blue circle"]
    assert negation_toggle("a red square and not a green triangle") == ["a red square and a green triangle"]
    assert negation_toggle("The dog isn't black") == ["The dog is black"]
    assert negation_toggle("There are no people") == ["There are people"]
    assert negation_toggle("a dog with a leash") == ["a dog without a leash"]
    assert negation_toggle("a red cup to the left of a blue plate") == ["a red cup not to the left of a blue plate"]
    assert negation_toggle("a cat and a dog") == ["a cat without a dog"]
    assert negation_toggle("a dog") == ["no dog"]


def test_make_negatives_properties() -> None:
    cap = "a red cup to the left of a blue plate"
    rule_out = {name: set(fn(cap)) for name, fn in {**RULES, **FALLBACK_RULES}.items()}
    for seed in range(5):
        pairs = make_negatives_with_rules(cap, 3, np.random.default_rng(seed))
        texts = [t for _, t in pairs]
        assert len(texts) == 3 and len(set(texts)) == 3 and cap not in texts
        assert all(t in rule_out[name] for name, t in pairs)
        assert len({name for name, _ in pairs}) == 3  # spread over rule families
    assert make_negatives(cap, 3, 11) == make_negatives(cap, 3, np.random.default_rng(11))
    assert make_negatives(cap, 3, 11) == make_negatives(cap, 3, 11)
    assert len(make_negatives(cap, 50, 0)) == len(set().union(*rule_out.values()))  # every candidate, no more
    assert make_negatives("a dog without a leash", 5, 0) == make_negatives("a dog without a leash", 5, 0)
    assert sorted(make_negatives("a dog without a leash", 5, 0)) == sorted(
        ["a leash without a dog", "a dog with a leash", "a dog and a leash"])
    assert make_negatives("a big dog", 1, 0) == ["no big dog"]
    assert sorted(make_negatives("a big dog", 2, 0)) == ["a small dog", "no big dog"]  # + fallback attribute_replace
    assert "a blue dog" in attribute_replace("a red dog")
    for odd in ["", "   ", "sunset", "!!!", "ünïcödé ☃", "a", "no", "not not not", "on on on", "a " * 200,
                "the left of the right", "With no", "a cup on", "on a table"]:
        out = make_negatives(odd, 3, 0)
        assert len(out) == len(set(out)) <= 3 and odd not in out
    assert make_negatives("a dog", 0, 0) == []
    with pytest.raises(TypeError):
        make_negatives(None, 3, 0)  # type: ignore[arg-type]
    assert [caption_category(c) for c in ("a dog without a leash", "a cup on a table", "a red cup")] == [
        "negation", "spatial", "binding"]


# --------------------------------------------------------------------------- pair shards


def _draw(path: Path, colour: str) -> None:
    im = Image.new("RGB", (48, 40), "white")
    ImageDraw.Draw(im).ellipse((4, 4, 30, 30), fill=colour)
    im.save(path)


def test_pair_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "images"
    root.mkdir()
    for name, colour in [("cup.jpg", "red"), ("dog.png", "brown"), ("cat.jpg", "gray"), ("ball.png", "green")]:
        _draw(root / name, colour)
    rows = [
        {"image": "cup.jpg", "caption": "a red cup to the left of a blue plate"},
        {"image": "dog.png", "caption": "a dog without a leash"},
        {"image": "cat.jpg", "caption": "A small cat on a big table."},
        {"image": "ball.png", "caption": "a green ball next to a yellow box", "opposite_image": "cup.jpg",
         "opposite_caption": "a yellow ball next to a green box"},
        {"image": "gone/missing.jpg", "caption": "a cat under a chair"},
        {"image": "dog.png", "caption": "sunset"},
    ]
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps(rows))
    out = tmp_path / "pairs"
    argv = [f"pair_shards.input={pairs}", f"pair_shards.image_root={root}", f"pair_shards.out={out}",
            "pair_shards.num_options=4", "pair_shards.samples_per_shard=3", "pair_shards.seed=0"]
    m = make_pair_shards.main(argv)
    printed = capsys.readouterr().out
    assert str(root / "gone" / "missing.jpg") in printed and "sunset" in printed
    assert [e["count"] for e in m["shards"]] == [3, 1] and m["num_samples"] == 4
    st = m["stats"]
    assert st["rows"] == 6 and st["written"] == 4
    assert st["missing_images"] == {"count": 1, "items": [
        {"row": 5, "field": "image", "path": str(root / "gone" / "missing.jpg")}]}
    assert st["too_few_negatives"]["count"] == 1 and st["too_few_negatives"]["items"][0]["row"] == 6
    assert st["unreadable_images"]["count"] == 0

    p = raw_sample_pipeline(out, None, keep_meta=True)
    samples = {s["meta"]["row"]: s for s in p}
    assert p.skips.count == 0 and sorted(samples) == [1, 2, 3, 4]
    for row, s in samples.items():
        caption = rows[row - 1]["caption"]
        caps, kinds = s["captions"], s["meta"]["option_kinds"]
        assert len(caps) == 4 and len(set(caps)) == 4
        assert caps[s["label"]] == caption and kinds[s["label"]] == "positive"
        for text, kind in zip(caps, kinds):
            if kind not in ("positive", "opposite"):
                assert text in RULES[kind](caption) or text in FALLBACK_RULES.get(kind, lambda c: [])(caption)
        assert s["images"].size == (48, 40)
    assert samples[2]["meta"]["category"] == "negation" and samples[1]["meta"]["category"] == "spatial"
    opp = samples[4]
    assert opp["captions"][opp["meta"]["opposite_label"]] == "a yellow ball next to a green box"
    members = dict(_members(out / "shard-000000.tar"))
    assert members["pairs-00000001.jpg"] == (root / "cup.jpg").read_bytes()  # stored byte for byte
    assert members["pairs-00000002.png"] == (root / "dog.png").read_bytes()
    assert dict(_members(out / "shard-000001.tar"))["pairs-00000004.opp.jpg"] == (root / "cup.jpg").read_bytes()

    before = _mtimes(out)
    make_pair_shards.main(argv)  # idempotent
    assert _mtimes(out) == before


def test_pair_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": "a.jpg", "caption": "a dog"}, {"image": "b.jpg"}]))
    with pytest.raises(make_pair_shards.PairInputError, match=r"bad\.json: row 2: missing field 'caption'"):
        make_pair_shards.load_pairs(bad)
    bad.write_text(json.dumps([{"image": 3, "caption": "a dog"}]))
    with pytest.raises(make_pair_shards.PairInputError, match=r"bad\.json: row 1: field 'image' must be"):
        make_pair_shards.load_pairs(bad)
    bad.write_text(json.dumps({"image": "a.jpg"}))
    with pytest.raises(make_pair_shards.PairInputError, match="JSON list"):
        make_pair_shards.load_pairs(bad)
    bad.write_text("[{")
    with pytest.raises(make_pair_shards.PairInputError, match="invalid JSON at line 1"):
        make_pair_shards.load_pairs(bad)
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text('image,caption\na.jpg,"a dog, on a mat"\nb.jpg,\n')
    with pytest.raises(make_pair_shards.PairInputError, match=r"pairs\.csv: row 2: field 'caption'"):
        make_pair_shards.load_pairs(csv_file)
    csv_file.write_text("path,text\na.jpg,a dog\n")
    with pytest.raises(make_pair_shards.PairInputError, match=r"lacks column\(s\) \['image', 'caption'\]"):
        make_pair_shards.load_pairs(csv_file)
    csv_file.write_text('image,caption\na.jpg,"a dog, on a mat"\n')
    assert make_pair_shards.load_pairs(csv_file)[0].caption == "a dog, on a mat"


# --------------------------------------------------------------------------- feature cache


def test_cache_features_roundtrip(encoder, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_synthetic_shards.main([f"synthetic_shards.out={raw}", "synthetic_shards.num_samples=3",
                                "synthetic_shards.samples_per_shard=2", "synthetic_shards.image_size=64",
                                "synthetic_shards.num_options=2"])
    pattern = str(raw / "shard-{000000..000001}.tar")
    feat = tmp_path / "feat"
    m = cache_features.cache_shards(encoder, pattern, feat, batch_size=1)  # batch boundary inside a shard
    # .dcsm.lock: one cache_features job per folder (a kernel flock, free once the job ends)
    assert sorted(p.name for p in feat.iterdir()) == [".dcsm.lock", "manifest.json", "shard-000000.tar", "shard-000001.tar"]
    assert m["encoder"] == encoder.spec.to_dict() and m["format"] == "dcsm.feature_shards"
    assert [e["count"] for e in m["shards"]] == [2, 1] and m["num_samples"] == 3 and m["num_skipped"] == 0
    assert (m["num_patches"], m["embed_dim"], m["max_tokens"]) == (encoder.num_patches, encoder.embed_dim, 20)
    assert [n for n, _ in _members(feat / "shard-000000.tar")] == [
        "train-00000000.json", "train-00000000.feat.pth", "train-00000000.encoder.json",
        "train-00000001.json", "train-00000001.feat.pth", "train-00000001.encoder.json"]

    before = _mtimes(feat)
    leftover = feat / ".shard-000001.tar.k2j3.tmp"
    leftover.write_bytes(b"interrupted")
    assert cache_features.cache_shards(encoder, pattern, feat, batch_size=1) == m  # resumable: nothing re-encoded
    assert _mtimes(feat) == before and not leftover.exists()
    other = types.SimpleNamespace(spec=types.SimpleNamespace(to_dict=lambda: {"model": "ViT-B-16"}))
    with pytest.raises(ShardError, match="encoder"):
        cache_features.cache_shards(other, pattern, feat, batch_size=3)

    cached = {s["key"]: s for s in feature_sample_pipeline(feat, with_opposite=True)}
    raws = list(raw_sample_pipeline(pattern, encoder.preprocess, with_opposite=True))
    assert sorted(cached) == [s["key"] for s in raws]
    batch = collate_mcq([{k: v for k, v in s.items() if not k.startswith("opposite")} for s in raws])
    ref = encode_batch(encoder, batch)
    opp = encoder.encode_images(torch.stack([s["opposite_images"] for s in raws]))
    for i, key in enumerate(batch["key"]):
        c = cached[key]
        assert c["patches"].dtype == torch.float16 and c["patches"].shape == (encoder.num_patches, encoder.embed_dim)
        assert c["tokens"].shape == (2, 20, encoder.embed_dim) and c["token_ids"].dtype == torch.long
        for k in ("patches", "image_pooled", "tokens", "text_pooled"):
            torch.testing.assert_close(c[k].float(), getattr(ref, k)[i].float(), atol=2e-3, rtol=0, msg=k)
        assert torch.equal(c["token_mask"], ref.token_mask[i]) and torch.equal(c["token_ids"], ref.token_ids[i])
        assert c["label"] == int(ref.label[i]) and c["category"] == int(batch["category"][i])
        torch.testing.assert_close(c["opposite_patches"].float(), opp.patches[i], atol=2e-3, rtol=0)
        torch.testing.assert_close(c["opposite_image_pooled"].float(), opp.pooled[i], atol=2e-3, rtol=0)
    fb = collate_mcq(list(feature_sample_pipeline(feat)))  # batches like dcsm.features feature batches
    assert fb.tokens.shape == (3, 2, 20, encoder.embed_dim) and fb.label.dtype == torch.long
    assert not any(k.startswith("opposite") for k in fb.tensors())
