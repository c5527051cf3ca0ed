"""The paper's training layout -> plain samples -> shards -> a few paired training steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dcsm.commands.from_reference import main as from_reference
from dcsm.config import apply_overrides, load_yaml, to_plain
from dcsm.data.reference_layout import (
    ReferenceLayout,
    ReferenceLayoutError,
    scan_negation,
    scan_reference_data,
    scan_spatial,
)
from dcsm.data.shards import SkipCounter, decode_raw_sample, iter_shard, read_manifest

REPO = Path(__file__).resolve().parents[2]
ALL_SOURCES = "reference_data.sources=[spatial,attributes,smallbig,negation,coco]"


def _read(folder: Path) -> list[dict]:
    decode = lambda s: decode_raw_sample(s, None, with_opposite="optional", keep_meta=True)
    return [x for shard in sorted(folder.glob("shard-*.tar")) for x in iter_shard(str(shard), decode, SkipCounter())]


def _img(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 48), colour).save(path)


def draw_reference_tree(root: Path) -> Path:
    """3 spatial + 2 attribute + 1 small/big images with opposites, 2 negation pairs, 1 COCO crop."""
    spatial = root / "objaverse_train_composite_newrelations_withbg"
    for i, name in enumerate(["chair_above_lamp.png", "dog_leftof_cat.png", "mug_rightof_plate.png"]):
        _img(spatial / name, (30 * i, 0, 0))
        _img(spatial / f"CUTMIX_{name}", (0, 30 * i, 0))
    _img(spatial / "background.png", (9, 9, 9))  # no relation word: not a sample
    attrs = root / "objaverse_attributes_overlay_withbg"
    for i, name in enumerate(["red_cube_blue_ball.png", "green_car_yellow_tree.png"]):
        _img(attrs / name, (0, 0, 40 * i))
        _img(attrs / f"MIRROR_{name}", (40 * i, 40, 0))
    sb = root / "objaverse_smallbig_withbg"
    _img(sb / "small_dog_big_cat.png", (1, 2, 3))
    _img(sb / "MIRROR_small_dog_big_cat.png", (3, 2, 1))
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        _img(root / "groups" / "coco" / name, (100, 100, len(name) * 20))
    (root / "negated_pairs_cocotrain_v1.json").write_text(json.dumps([
        {"img1_path": "groups\\coco\\a.jpg", "img2_path": "groups\\coco\\b.jpg",
         "img1_obj": ["dog", "puppy"], "img2_obj": ["cat", "kitten"]},
        {"img1_path": "groups/coco/c.jpg", "img2_path": "groups/coco/d.jpg",
         "img1_obj": ["car", "automobile"], "img2_obj": ["bus", "coach"]},
    ]))
    _img(root / "COCO_train" / "white_plate_black_fork.jpg", (250, 250, 250))
    return root


def test_scan_builds_the_papers_captions_and_opposites(tmp_path: Path) -> None:
    root = draw_reference_tree(tmp_path)
    layout = ReferenceLayout(sources=("spatial", "attributes", "smallbig", "negation", "coco"))
    samples = scan_reference_data(root, layout)
    assert len(samples) == 2 * (3 + 2 + 1 + 2 + 1)  # two phrasings per image
    by_source = {}
    for s in samples:
        by_source.setdefault(s["source"], []).append(s)
    chair = by_source["spatial"][0]
    assert Path(chair["image"]).name == "chair_above_lamp.png" and Path(chair["opposite_image"]).name == "CUTMIX_chair_above_lamp.png"
    assert (chair["caption"], chair["opposite_caption"]) == ("A picture of a chair above a lamp", "A picture of a lamp above a chair")
    chair1 = by_source["spatial"][1]
    assert (chair1["caption"], chair1["opposite_caption"]) == ("A picture of a lamp below a chair", "A picture of a chair below a lamp")
    dog = by_source["spatial"][2]
    assert dog["caption"] == "A picture of a dog to the left of a cat"
    assert by_source["spatial"][3]["caption"] == "A picture of a cat to the right of a dog"
    car = by_source["attributes"][0]  # sorted: green_car_yellow_tree first
    assert Path(car["opposite_image"]).name == "MIRROR_green_car_yellow_tree.png" and car["category"] == "binding"
    assert (car["caption"], car["opposite_caption"]) == ("A picture of a green car and a yellow tree",
                                                          "A picture of a yellow car and a green tree")
    assert by_source["attributes"][1]["caption"] == "A picture of a yellow tree and a green car"
    assert by_source["smallbig"][0]["caption"] == "A picture of a small dog and a big cat"
    neg = by_source["negation"]
    assert Path(neg[0]["image"]) == root / "groups" / "coco" / "a.jpg"  # backslashes accepted
    assert Path(neg[0]["opposite_image"]) == root / "groups" / "coco" / "b.jpg"
    words = ("and not", "but no", "without")
    assert any(neg[0]["caption"] == f"An image of a dog {w} a cat" for w in words)
    assert any(neg[0]["opposite_caption"] == f"An image of a cat {w} a dog" for w in words)
    assert any(neg[1]["caption"] == f"An image of a puppy {w} a kitten" for w in words)  # phrasing 1: second names
    assert neg[0]["category"] == "negation"
    coco = by_source["coco"]
    assert coco[0]["opposite_image"] is None and coco[0]["caption"] == "A picture of a white plate and a black fork"
    assert scan_reference_data(root, layout) == samples  # deterministic (negation words are seeded)


def test_malformed_layout_names_file_and_field(tmp_path: Path) -> None:
    root = draw_reference_tree(tmp_path)
    _img(root / "objaverse_train_composite_newrelations_withbg" / "dog_above.png", (0, 0, 0))
    with pytest.raises(ReferenceLayoutError, match=r"dog_above\.png: file name: expected objectA_relation_objectB"):
        scan_spatial(root / "objaverse_train_composite_newrelations_withbg")
    bad = root / "bad.json"
    bad.write_text(json.dumps([{"img1_path": "a.jpg", "img2_path": "b.jpg", "img1_obj": ["dog", "puppy"]}]))
    with pytest.raises(ReferenceLayoutError, match=r"bad\.json: row 1: field 'img2_obj': key missing"):
        scan_negation(bad, root)
    bad.write_text(json.dumps([{"img1_path": "a.jpg", "img2_path": "b.jpg", "img1_obj": "dog", "img2_obj": ["cat", "x"]}]))
    with pytest.raises(ReferenceLayoutError, match=r"row 1: field 'img1_obj': expected a list of at least 2"):
        scan_negation(bad, root)
    with pytest.raises(ReferenceLayoutError, match=r"COCO_train.*drop 'coco'"):
        scan_reference_data(tmp_path / "objaverse_smallbig_withbg", ReferenceLayout(sources=("coco",)))


def test_tree_converts_to_shards_and_trains_paired(tmp_path: Path, encoder) -> None:
    from dcsm.train.fit import setup

    root = draw_reference_tree(tmp_path / "data")
    (root / "groups" / "coco" / "d.jpg").unlink()  # a missing opposite image: that row is skipped and listed
    out = tmp_path / "shards"
    manifests = from_reference([f"reference_data.data_path={root}", f"reference_data.out={out}", ALL_SOURCES,
                                "reference_data.samples_per_shard=4"])
    m = manifests["train"]
    assert set(manifests) == {"train"} and m["stats"]["rows"] == 18
    assert m["stats"]["missing_images"]["count"] == 2  # both phrasings of negation pair 2
    assert m["num_samples"] == 16 and m["num_shards"] == 4 and read_manifest(out / "train")["num_samples"] == 16
    samples = _read(out / "train")
    assert len(samples) == 16
    chair = samples[0]
    assert chair["meta"]["origin"].endswith("chair_above_lamp.png (phrasing 0)")
    assert sorted(chair["captions"]) == sorted(["A picture of a chair above a lamp", "A picture of a lamp above a chair"])
    assert chair["captions"][chair["label"]] == "A picture of a chair above a lamp"
    assert chair["captions"][chair["opposite_label"]] == "A picture of a lamp above a chair"
    assert chair["opposite_images"].getpixel((0, 0)) == (0, 0, 0) and chair["images"].getpixel((0, 0)) == (0, 0, 0)
    dog = samples[2]
    assert dog["images"].getpixel((0, 0)) == (30, 0, 0) and dog["opposite_images"].getpixel((0, 0)) == (0, 30, 0)
    coco = [s for s in samples if "COCO_train" in s["meta"]["image"]]
    assert len(coco) == 2 and all("opposite_images" not in s for s in coco)  # opposite caption only
    assert {s["captions"][1 - s["label"]] for s in coco} == {"A picture of a black plate and a white fork",
                                                              "A picture of a white fork and a black plate"}

    # a held-out split by image: both phrasings on the same side
    split = from_reference([f"reference_data.data_path={root}", f"reference_data.out={tmp_path / 'split'}",
                            "reference_data.val_fraction=0.5", "reference_data.seed=3"])
    assert set(split) == {"train", "val"}
    images = {name: {s["meta"]["image"] for s in _read(tmp_path / "split" / name)} for name in split}
    assert images["train"] and images["val"] and not images["train"] & images["val"]

    # train a few steps with the paired recipe on the converted shards (COCO rows, lacking an opposite
    # image, are skipped by the paired stream): convert without them
    plain = tmp_path / "plain"
    from_reference([f"reference_data.data_path={root}", f"reference_data.out={plain}"])
    cfg = to_plain(apply_overrides(load_yaml(REPO / "configs" / "smoke.yaml"), [
        f"run_dir={tmp_path / 'run'}", "data.source=shards", f"data.train_shards={plain / 'train'}", "loss.kind=paired",
        "data.batch_size=2", "data.num_workers=0", "data.shuffle_buffer=4", "logger.kind=none",
        "trainer.enable_progress_bar=false", "trainer.max_epochs=1", "optim.warmup_steps=1",
        "checkpoint.monitor=null",
    ]))
    cfg["trainer"]["max_steps"] = 2  # passed to lightning.Trainer as-is
    module, dm, trainer, _ = setup(cfg)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2 and module.samples_seen == 4
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    # the trained checkpoint scores through the Python API
    import dcsm

    scorer = dcsm.load(tmp_path / "run" / "checkpoints" / "last.ckpt", device="cpu")
    assert scorer.score([chair["images"]], ["a chair", "a lamp"]).shape == (1, 2)


def test_cli_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reference_data.data_path and reference_data.out are required"):
        from_reference([])
    with pytest.raises(ValueError, match="unknown config key"):
        from_reference([f"reference_data.data_pth={tmp_path}"])
