"""CLEVR-bind, VG-Attribution, NCD and SugarCrepe loaders; data-root discovery; the suite table."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dcsm.eval.metrics import mcq_metrics
from dcsm.data.benchmarks.items import BenchmarkFormatError, missing_images
from dcsm.data.benchmarks.registry import load_benchmark
from dcsm.data.benchmarks.clevr_bind import load_clevr_bind
from dcsm.data.benchmarks.items import BoxedMCQItem, open_item_image
from dcsm.data.benchmarks.ncd import load_ncd
from dcsm.data.benchmarks.sugarcrepe import load_sugarcrepe
from dcsm.data.benchmarks.vg_attribution import load_vg_attribution
from dcsm.data.benchmarks.discovery import discover_benchmarks, load_found
from dcsm.data.benchmarks.registry import SUITE_SUBSETS
from dcsm.data.benchmarks.prompts import apply_prompt_style
from dcsm.eval.suite_table import render_csv, render_markdown, suite_json


def _img(path: Path, size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _clevr_csv(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("", "file_name", "pos", "neg_0", "neg_1", "neg_2", "neg_3")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, r in enumerate(rows):
            w.writerow([i, *r])  # a leading pandas-style index column, ignored
    return path


CLEVR_ROWS = [
    ["CLEVR_0.png", "gray cube and red sphere", "red cube and gray sphere", "gray sphere and red cube",
     "blue cube and red sphere", "gray cube and blue sphere"],
    ["CLEVR_1.png", "blue cylinder and green cube", "green cylinder and blue cube", "blue cube and green cylinder",
     "red cylinder and green cube", "blue cylinder and red cube"],
    ["CLEVR_2.png", "red sphere and cyan cube", "cyan sphere and red cube", "red cube and cyan sphere",
     "red sphere and gray cube", "brown sphere and cyan cube"],
]


# ---------------------------------------------------------------------------------------------
# CLEVR-bind
# ---------------------------------------------------------------------------------------------


def test_clevr_bind_reads_columns_by_name_and_lists_missing_images(tmp_path: Path) -> None:
    two = tmp_path / "clevr_bind" / "two_object"
    csv_path = _clevr_csv(two / "val.csv", CLEVR_ROWS)
    _img(two / "images" / "val" / "CLEVR_0.png")
    _img(two / "images" / "val" / "CLEVR_2.png")  # CLEVR_1 absent
    items = load_clevr_bind(csv_path, two / "images" / "val")
    assert [it.subset for it in items] == ["clevr_bind_val"] * 3
    assert items[0].captions == tuple(CLEVR_ROWS[0][1:]) and items[0].label == 0 and len(items[0].captions) == 5
    assert [it.row for it in items] == [1, 2, 3]
    assert missing_images(items) == ["CLEVR_1.png"]
    # the two_object folder works as image root too (images/{split}/ found beneath it)
    assert load_clevr_bind(csv_path, two)[2].image_path == two / "images" / "val" / "CLEVR_2.png"
    scored = [it for it in items if it.image_path is not None]
    # hand-computed: predictions 0 (right) and 3 (wrong) -> 1/2
    assert mcq_metrics(scored, [0, 3])["per_subset"] == {"clevr_bind_val": {"accuracy": 0.5, "n": 2}}
    assert load_benchmark("clevr_bind", csv_path, None)[0].captions == items[0].captions


@pytest.mark.parametrize(
    "header, rows, needle",
    [
        (("file_name", "pos", "neg_1"), [["a.png", "x", "y"]], "row 1 (and every row; header line 1): field 'neg_0'"),
        (("file_name", "pos", "neg_0", "neg_1"), [["a.png", "x", "y"]], "row 1 (line 2): field 'neg_1'"),
        (("file_name", "pos", "neg_0"), [["a.png", "x", "y"], ["b.png", " ", "z"]], "row 2 (line 3): field 'pos'"),
        (("file_name", "pos", "neg_0"), [["", "x", "y"]], "row 1 (line 2): field 'file_name'"),
    ],
)
def test_clevr_bind_malformed_names_file_row_field(tmp_path: Path, header, rows, needle) -> None:
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    with pytest.raises(BenchmarkFormatError) as err:
        load_clevr_bind(path, tmp_path)
    assert str(err.value).startswith("train.csv: ") and needle in str(err.value) and "Fix:" in str(err.value)


def test_clevr_bind_unknown_split_name_asks_for_subset(tmp_path: Path) -> None:
    path = _clevr_csv(tmp_path / "mine.csv", CLEVR_ROWS[:1])
    with pytest.raises(ValueError, match="subset='clevr_bind_<split>'"):
        load_clevr_bind(path, None)
    assert load_clevr_bind(path, None, subset="clevr_bind_gen")[0].subset == "clevr_bind_gen"


# ---------------------------------------------------------------------------------------------
# VG-Attribution
# ---------------------------------------------------------------------------------------------

VGA_ROWS = [
    {"image_id": 1, "image_path": "2345.jpg", "bbox_x": 4, "bbox_y": 2, "bbox_w": 20, "bbox_h": 10,
     "obj1_name": "shirt", "obj2_name": "pants", "attributes": ["white", "black"],
     "true_caption": "the white shirt and the black pants", "false_caption": "the black shirt and the white pants"},
    {"image_id": 2, "image_path": "77.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 8.5, "bbox_h": 8,
     "obj1_name": "car", "obj2_name": "road", "attributes": ["red", "wet"],
     "true_caption": "the red car and the wet road", "false_caption": "the wet car and the red road"},
    {"image_id": 3, "image_path": "2345.jpg", "bbox_x": 1, "bbox_y": 1, "bbox_w": 5, "bbox_h": 5,
     "obj1_name": "shirt", "obj2_name": "pants", "attributes": ["white", "black"],
     "true_caption": "the white shirt and the black pants", "false_caption": "the black shirt and the white pants"},
]


def test_vg_attribution_original_order_crop_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "visual_genome_attribution.json"
    path.write_text(json.dumps(VGA_ROWS))
    _img(tmp_path / "images" / "2345.jpg", size=(60, 40))
    items = load_vg_attribution(path, tmp_path / "images")
    assert all(isinstance(it, BoxedMCQItem) for it in items)
    assert items[0].captions == (VGA_ROWS[0]["false_caption"], VGA_ROWS[0]["true_caption"]) and items[0].label == 1
    assert items[0].crop_box == (4.0, 2.0, 24.0, 12.0) and items[0].group == "white_black"
    assert missing_images(items) == ["77.jpg"]
    assert open_item_image(items[0]).size == (20, 10)  # cropped as ARO does
    scored = [it for it in items if it.image_path is not None]
    # hand-computed: row 1 predicts 1 (true caption: right), row 3 predicts 0 (wrong) -> 1/2
    m = mcq_metrics(scored, [1, 0])
    assert m["accuracy"] == 0.5 and m["per_group"]["vg_attribution"]["white_black"] == {"accuracy": 0.5, "n": 2}


@pytest.mark.parametrize(
    "row_index, change, needle",
    [
        (1, {"bbox_w": None}, "row 2 (list index 1): field 'bbox_w'"),
        (0, {"bbox_h": 0}, "row 1 (list index 0): field 'bbox_h'"),
        (2, {"true_caption": ""}, "row 3 (list index 2): field 'true_caption'"),
        (1, {"attributes": "red"}, "row 2 (list index 1): field 'attributes'"),
        (0, {"image_path": 7}, "row 1 (list index 0): field 'image_path'"),
    ],
)
def test_vg_attribution_malformed_names_file_row_field(tmp_path: Path, row_index: int, change: dict, needle: str) -> None:
    rows = [dict(r) for r in VGA_ROWS]
    rows[row_index].update(change)
    if change.get("bbox_w", 1) is None:
        del rows[row_index]["bbox_w"]
    path = tmp_path / "visual_genome_attribution.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(BenchmarkFormatError) as err:
        load_vg_attribution(path, tmp_path)
    assert str(err.value).startswith("visual_genome_attribution.json: ") and needle in str(err.value)


# ---------------------------------------------------------------------------------------------
# NCD
# ---------------------------------------------------------------------------------------------


def test_ncd_two_phrasings_per_image_from_the_name(tmp_path: Path) -> None:
    ncd = tmp_path / "NCD_colorful_composite_squares"
    _img(ncd / "red_apple_green_pear.png")
    _img(ncd / "blue_cup_yellow_plate.jpg")
    _img(ncd / "MIRROR_red_apple_green_pear.png")  # not a sample
    (ncd / "notes.txt").write_text("ignored")
    items = load_ncd(ncd)
    assert len(items) == 4 and {it.subset for it in items} == {"ncd"}
    first = items[0]  # sorted: blue_cup_yellow_plate first
    assert first.raw_image_path == "blue_cup_yellow_plate.jpg" and first.group == "order_ab" and first.label == 0
    assert first.captions == ("A picture of a blue cup and a yellow plate", "A picture of a yellow cup and a blue plate")
    assert items[1].group == "order_ba"
    assert items[1].captions == ("A picture of a yellow plate and a blue cup", "A picture of a blue plate and a yellow cup")
    # hand-computed: 3 of 4 right; per group 1/2 and 2/2
    m = mcq_metrics(items, [0, 1, 0, 0])
    assert m["accuracy"] == 0.75
    assert m["per_group"]["ncd"] == {"order_ab": {"accuracy": 1.0, "n": 2}, "order_ba": {"accuracy": 0.5, "n": 2}}
    # NCD gets no prefix in the reference prompts, only the 3-D word map
    assert apply_prompt_style(first.captions[0], "reference", "ncd") == first.captions[0]


def test_ncd_malformed_name_and_empty_folder(tmp_path: Path) -> None:
    _img(tmp_path / "ncd" / "red_apple.png")
    with pytest.raises(BenchmarkFormatError) as err:
        load_ncd(tmp_path / "ncd")
    assert str(err.value).startswith("red_apple.png: row 1 (file red_apple.png): field 'file name'")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkFormatError, match="no .png/.jpeg/.jpg images"):
        load_ncd(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# SugarCrepe
# ---------------------------------------------------------------------------------------------

SC_ROWS = {
    "0": {"filename": "000000565045.jpg", "caption": "Blue bathroom with two white towels.",
          "negative_caption": "White bathroom with two blue towels."},
    "1": {"filename": "000000526706.jpg", "caption": "A baby cow gets milk from its mother.",
          "negative_caption": "A mother cow gets milk from its baby."},
    "7": {"filename": "000000000139.jpg", "caption": "A dog left of a cat.", "negative_caption": "A cat left of a dog."},
}


def test_sugarcrepe_reads_the_id_object_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "swap_att.json"
    path.write_text(json.dumps(SC_ROWS))
    val = tmp_path / "val2017"
    _img(val / "000000565045.jpg")
    _img(val / "000000000139.jpg")
    items = load_sugarcrepe(path, val)
    assert [it.subset for it in items] == ["sugarcrepe_swap_att"] * 3 and [it.row for it in items] == [1, 2, 3]
    assert items[2].captions == ("A dog left of a cat.", "A cat left of a dog.") and items[2].label == 0
    assert items[0].group == "swap" and missing_images(items) == ["000000526706.jpg"]
    scored = [it for it in items if it.image_path is not None]
    assert mcq_metrics(scored, [1, 0])["accuracy"] == 0.5  # hand-computed
    with pytest.raises(ValueError, match="subset='sugarcrepe_<name>'"):
        shutil.copy(path, tmp_path / "other.json")
        load_sugarcrepe(tmp_path / "other.json", val)


@pytest.mark.parametrize(
    "content, needle",
    [
        ({"0": SC_ROWS["0"], "5": {"filename": "x.jpg", "caption": "a"}}, "row 2 (id '5'): field 'negative_caption'"),
        ({"0": {"filename": "", "caption": "a", "negative_caption": "b"}}, "row 1 (id '0'): field 'filename'"),
        ({"3": ["x.jpg", "a", "b"]}, "row 1 (id '3'): field 'row'"),
        ([SC_ROWS["0"]], "top level: expected a JSON dict"),
    ],
)
def test_sugarcrepe_malformed_names_file_row_field(tmp_path: Path, content, needle: str) -> None:
    path = tmp_path / "add_obj.json"
    path.write_text(json.dumps(content))
    with pytest.raises(BenchmarkFormatError) as err:
        load_sugarcrepe(path, tmp_path)
    assert str(err.value).startswith("add_obj.json: ") and needle in str(err.value)


# ---------------------------------------------------------------------------------------------
# discovery + table
# ---------------------------------------------------------------------------------------------


def _suite_tree(root: Path, whatsup_fixture: Path | None) -> None:
    """A miniature data root: everything except CLEVR-bind gen and NegBench VOC."""
    if whatsup_fixture is not None:
        shutil.copy(whatsup_fixture, root / "controlled_images_dataset.json")
        rows = json.loads(whatsup_fixture.read_text())
        _img(root / rows[0]["image_path"][len("data/"):])
    (root / "controlled_clevr_dataset.json").write_text(json.dumps([
        {"image_path": "data/controlled_clevr/cube_left_of_sphere.jpeg",
         "caption_options": ["a cube left of a sphere", "a cube right of a sphere", "a cube behind a sphere", "a cube in-front of a sphere"]},
    ]))
    (root / "coco_qa_one_obj.json").write_text(json.dumps([[139, "a dog on the left", "a dog on the right"]]))
    (root / "coco_qa_two_obj.json").write_text(json.dumps([[139, "a dog to the left of a cat", "a cat to the left of a dog"]]))
    (root / "vg_qa_one_obj.json").write_text(json.dumps([[5, "a tree on the left", "a tree on the right"]]))
    (root / "vg_qa_two_obj.json").write_text(json.dumps([[5, "a tree behind a car", "a car behind a tree"]]))
    _img(root / "val2017" / "000000000139.jpg")
    _img(root / "vg_images" / "5.jpg")
    _img(root / "NCD_colorful_composite_squares" / "red_apple_green_pear.png")
    for split in ("train", "val"):
        _clevr_csv(root / "clevr_bind" / "two_object" / f"{split}.csv", CLEVR_ROWS[:2])
        _img(root / "clevr_bind" / "two_object" / "images" / split / "CLEVR_0.png")
    (root / "visual_genome_attribution.json").write_text(json.dumps(VGA_ROWS))
    _img(root / "VG_100K" / "2345.jpg", size=(60, 40))  # the DCSM reference's folder name
    for name in ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj"):
        (root / "sugarcrepe").mkdir(exist_ok=True)
        (root / "sugarcrepe" / f"{name}.json").write_text(json.dumps({"0": SC_ROWS["7"]}))
    neg = root / "negbench"
    neg.mkdir()
    (neg / "COCO_val_mcq_llama3.1_rephrased.csv").write_text(
        "image_path,correct_answer,caption_0,caption_1,caption_2,caption_3,correct_answer_template\n"
        "data/coco/images/val2017/000000000139.jpg,1,no cat here,a dog but no cat,a cat,a cat and a dog,negative\n"
    )


def test_discovery_finds_the_public_layout_and_lists_two_absent_as_skipped(tmp_path: Path, shared_fixtures: Path) -> None:
    _suite_tree(tmp_path, shared_fixtures / "whatsup" / "controlled_images_dataset.json")
    found, skipped = discover_benchmarks(tmp_path)
    assert skipped == [
        ("clevr_bind_gen", str(tmp_path / "clevr_bind" / "two_object" / "gen.csv")),
        ("negbench_voc", str(tmp_path / "negbench" / "VOC2007_mcq_llama3.1_rephrased.csv")),
    ]
    assert [f[0] for f in found] == [s for s in SUITE_SUBSETS if s not in ("clevr_bind_gen", "negbench_voc")]
    by = {f[0]: f for f in found}
    assert by["clevr_bind_val"][3] == tmp_path / "clevr_bind" / "two_object" / "images" / "val"
    assert by["vg_attribution"][3] == tmp_path / "VG_100K"
    assert by["sugarcrepe_swap_obj"][3] == tmp_path / "val2017" and by["negbench_coco"][3] == tmp_path / "val2017"
    assert by["ncd"][2] == [tmp_path / "NCD_colorful_composite_squares"]
    counts = {}
    for entry in found:
        items = load_found(entry)
        assert items and {it.subset for it in items} == {entry[0]}, entry
        counts[entry[0]] = sum(it.image_path is not None for it in items)
    assert counts["controlled_a"] == 1  # the real Controlled-A file, one image drawn
    assert counts["negbench_coco"] == 1 and counts["coco_qa_two"] == 1 and counts["vg_attribution"] == 2
    assert counts["clevr_bind_train"] == 1 and counts["ncd"] == 2 and counts["sugarcrepe_add_att"] == 1

    results = {"dcsm": {s: 0.5 for s in counts}, "ViT-B-16:openai": {s: 0.25 for s in counts}}
    results["dcsm"]["ncd"] = float("nan")
    md = render_markdown(results, counts=counts, skipped=skipped, title="suite")
    lines = md.splitlines()
    assert lines[2] == "| subset | n | dcsm | ViT-B-16:openai |"
    assert "| COCO-spatial one | 1 | 50.0 | 25.0 |" in lines and "| NCD | 2 | n/a | 25.0 |" in lines
    assert "| CLEVR-bind gen | - | skipped | skipped |" in lines
    assert f"- NegBench VOC (`negbench_voc`): expected `{tmp_path / 'negbench' / 'VOC2007_mcq_llama3.1_rephrased.csv'}`" in lines
    table_rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| subset")]
    assert len(table_rows) == len(SUITE_SUBSETS)  # every suite row, in suite order
    assert table_rows[0].startswith("| COCO-spatial one") and table_rows[-1].startswith("| NegBench VOC")

    rows = list(csv.DictReader(io.StringIO(render_csv(results, counts=counts, skipped=skipped))))
    assert [r["subset"] for r in rows] == list(SUITE_SUBSETS)
    assert rows[0]["dcsm"] == "0.5000" and rows[0]["status"] == "ok"
    gen = next(r for r in rows if r["subset"] == "clevr_bind_gen")
    assert gen["status"] == "skipped" and gen["expected_path"].endswith("two_object/gen.csv")

    js = suite_json(results, {"dcsm": {"model": "ViT-B-16", "pretrained": "openai", "checkpoint": "x.ckpt"},
                              "ViT-B-16:openai": {"model": "ViT-B-16", "pretrained": "openai"}},
                    counts=counts, skipped=skipped)
    rec = js["results"][0]
    assert {"dataset", "model", "pretrained", "task", "language", "metrics"} <= set(rec)
    assert rec["dataset"] == "coco_qa_one" and rec["metrics"] == {"acc": 0.5, "n": 1} and rec["checkpoint"] == "x.ckpt"
    assert len(js["results"]) == 2 * len(counts) - 1  # the NaN cell is left out
    assert {s["dataset"] for s in js["skipped"]} == {"clevr_bind_gen", "negbench_voc"}


def test_discovery_empty_root_skips_everything_and_rejects_bad_input(tmp_path: Path) -> None:
    found, skipped = discover_benchmarks(tmp_path)
    assert found == [] and [s for s, _ in skipped] == list(SUITE_SUBSETS)
    with pytest.raises(ValueError, match="not a folder"):
        discover_benchmarks(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown suite subset"):
        discover_benchmarks(tmp_path, subsets=("whatsup_c",))


def test_reference_prompts_know_the_new_subsets() -> None:
    assert apply_prompt_style("gray cube behind red sphere", "reference", "clevr_bind_gen") == "An image of a gray cube above red sphere"
    assert apply_prompt_style("the white shirt", "reference", "vg_attribution") == "An image of the white shirt"
    assert apply_prompt_style("a cat on top", "reference", "sugarcrepe_swap_obj") == "a cat on above"
