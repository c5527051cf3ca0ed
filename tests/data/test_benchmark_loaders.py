"""Tests for dcsm.data.benchmarks (loaders), dcsm.benchmark_metrics and dcsm.data.benchmarks.prompts."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from dcsm.eval.metrics import mcq_metrics
from dcsm.data.benchmarks.items import BenchmarkFormatError, MCQItem, missing_images, resolve_image
from dcsm.data.benchmarks.negbench import load_negbench_mcq
from dcsm.data.benchmarks.registry import load_benchmark
from dcsm.data.benchmarks.whatsup import load_whatsup_controlled
from dcsm.data.benchmarks.whatsup_qa import load_whatsup_qa
from dcsm.data.benchmarks.prompts import PROMPT_STYLES, apply_prompt_style

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
WHATSUP_A_FIXTURE = FIXTURES / "whatsup" / "controlled_images_dataset.json"
NEGBENCH_COCO_FIXTURE = FIXTURES / "negbench" / "COCO_val_mcq_llama3.1_rephrased.csv"
NEGBENCH_VOC_FIXTURE = FIXTURES / "negbench" / "VOC2007_mcq_llama3.1_rephrased.csv"

WHATSUP_A_ROWS = 412
NEGBENCH_COCO_ROWS = 5914
NEGBENCH_VOC_ROWS = 5031
NUM_OPTIONS = 4
IMAGE_SIZE = (8, 8)
BOM = "\ufeff"
NEGBENCH_HEADER = "image_path,correct_answer,caption_0,caption_1,caption_2,caption_3,correct_answer_template"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"fixture {path} absent (CI clones the repo with shared/ beside it)")
    return path


def _draw(path: Path, color: str = "red") -> None:
    """Write a tiny image at ``path`` (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", IMAGE_SIZE, color).save(path)


def _csv_type_counts(path: Path) -> tuple[int, Counter, set[int]]:
    """Independent count of rows, question types and answer labels with the csv module."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return len(rows), Counter(r["correct_answer_template"] for r in rows), {int(r["correct_answer"]) for r in rows}


# ------------------------------------------------------------------------------------------
# real fixture files
# ------------------------------------------------------------------------------------------


def test_whatsup_fixture_loads() -> None:
    path = _need(WHATSUP_A_FIXTURE)
    items = load_whatsup_controlled(path, None)
    assert len(items) == WHATSUP_A_ROWS
    assert {it.subset for it in items} == {"controlled_a"}
    assert all(len(it.captions) == NUM_OPTIONS and it.label == 0 for it in items)
    groups = Counter(it.group for it in items)
    assert set(groups) == {"left_of", "right_of", "on", "under"}
    # independent check: the relation is the second "_" field of the file name
    raw = json.loads(path.read_text(encoding="utf-8"))
    slot_to_group = {"left": "left_of", "right": "right_of", "on": "on", "under": "under"}
    expected = Counter(slot_to_group[r["image_path"].split("/")[-1].split("_")[1]] for r in raw)
    assert groups == expected
    pairs = Counter(it.pair_key for it in items)
    assert set(pairs.values()) == {NUM_OPTIONS} and len(pairs) == WHATSUP_A_ROWS // NUM_OPTIONS
    assert items[0].raw_image_path == raw[0]["image_path"]
    assert items[0].captions == tuple(raw[0]["caption_options"])
    assert missing_images(items) == [r["image_path"] for r in raw]  # no image root given


@pytest.mark.parametrize(
    ("path", "n_rows", "subset", "observed"),
    [
        (NEGBENCH_COCO_FIXTURE, NEGBENCH_COCO_ROWS, "negbench_coco", {"positive": 2032, "negative": 1870, "hybrid": 2012}),
        (NEGBENCH_VOC_FIXTURE, NEGBENCH_VOC_ROWS, "negbench_voc", {"positive": 682, "negative": 2121, "hybrid": 2228}),
    ],
)
def test_negbench_fixture_loads(path: Path, n_rows: int, subset: str, observed: dict[str, int]) -> None:
    _need(path)
    items = load_negbench_mcq(path, None)
    assert len(items) == n_rows
    csv_rows, csv_types, csv_labels = _csv_type_counts(path)
    assert csv_rows == n_rows
    types = Counter(it.group for it in items)
    assert set(types) == {"positive", "negative", "hybrid"}
    assert types == csv_types
    assert dict(types) == observed  # counts observed in the published files
    assert all(0 <= it.label < NUM_OPTIONS for it in items)
    assert {it.label for it in items} == csv_labels
    assert all(len(it.captions) == NUM_OPTIONS for it in items)
    assert {it.subset for it in items} == {subset}
    assert items[0].row == 1 and items[-1].row == n_rows


def test_negbench_fixture_quoted_comma_caption() -> None:
    path = _need(NEGBENCH_COCO_FIXTURE)
    first = load_negbench_mcq(path, None)[0]
    assert first.raw_image_path == "data/coco/images/val2017/000000397133.jpg"
    assert first.captions[0] == "This image features a knife, but no car is present."


# ------------------------------------------------------------------------------------------
# tiny synthetic files
# ------------------------------------------------------------------------------------------

A_PAIRS = (("mug", "table"), ("beer-bottle", "armchair"))
A_RELATIONS = (("left_of", "to the left of"), ("right_of", "to the right of"), ("on", "on"), ("under", "under"))
B_RELATIONS = (
    ("left_of", "to the left of"),
    ("right_of", "to the right of"),
    ("in-front_of", "in front of"),
    ("behind", "behind"),
)


def _controlled_rows(pairs: tuple[tuple[str, str], ...], relations: tuple[tuple[str, str], ...], folder: str) -> list[dict]:
    rows = []
    for o1, o2 in pairs:
        for rel, words in relations:
            others = [w for _, w in relations if w != words]
            rows.append(
                {
                    "image_path": f"data/{folder}/{o1}_{rel}_{o2}.jpeg",
                    "caption_options": [f"A {o1} {words} a {o2}"] + [f"A {o1} {w} a {o2}" for w in others],
                }
            )
    return rows


@pytest.fixture()
def whatsup_a(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    root = tmp_path / "data"
    rows = _controlled_rows(A_PAIRS, A_RELATIONS, "controlled_images")
    for r in rows:
        _draw(root / r["image_path"].removeprefix("data/"))
    ann = root / "controlled_images_dataset.json"
    ann.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return ann, root, rows


@pytest.fixture()
def whatsup_b(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    root = tmp_path / "data"
    rows = _controlled_rows((("cube", "sphere"),), B_RELATIONS, "controlled_clevr")
    for r in rows:
        _draw(root / r["image_path"].removeprefix("data/"), "blue")
    ann = root / "controlled_clevr_dataset.json"
    ann.write_text(json.dumps(rows), encoding="utf-8")
    return ann, root, rows


def test_whatsup_controlled_a(whatsup_a: tuple[Path, Path, list[dict]]) -> None:
    ann, root, rows = whatsup_a
    items = load_whatsup_controlled(ann, root)
    assert len(items) == len(rows)
    assert [it.group for it in items] == [rel for _ in A_PAIRS for rel, _ in A_RELATIONS]
    assert [it.pair_key for it in items[:4]] == ["mug|table"] * 4
    assert items[4].pair_key == "beer-bottle|armchair"
    assert all(it.label == 0 and it.subset == "controlled_a" for it in items)
    assert items[2].image_path == root / "controlled_images" / "mug_on_table.jpeg"
    assert items[2].raw_image_path == "data/controlled_images/mug_on_table.jpeg"
    assert items[2].row == 3 and items[2].source == str(ann)
    assert missing_images(items) == []
    # the image folder itself also works as the root (lookup by file name)
    assert load_whatsup_controlled(ann, root / "controlled_images")[0].image_path is not None
    assert load_benchmark("whatsup", ann, root) == items


def test_whatsup_controlled_b(whatsup_b: tuple[Path, Path, list[dict]]) -> None:
    ann, root, _ = whatsup_b
    items = load_whatsup_controlled(ann, root)  # variant B inferred from the file name
    assert [it.group for it in items] == ["left_of", "right_of", "in-front_of", "behind"]
    assert {it.subset for it in items} == {"controlled_b"}
    assert {it.pair_key for it in items} == {"cube|sphere"}
    assert items[2].image_path == root / "controlled_clevr" / "cube_in-front_of_sphere.jpeg"
    with pytest.raises(BenchmarkFormatError, match="variant"):
        load_whatsup_controlled(ann, root, variant="A")


def test_whatsup_reference_renamed_images_found(tmp_path: Path) -> None:
    """Images renamed on disk by the DCSM reference (_on_ -> _above_) are still found."""
    rows = _controlled_rows((("mug", "table"),), A_RELATIONS, "controlled_images")
    for r in rows:
        name = r["image_path"].removeprefix("data/").replace("_on_", "_above_").replace("_under_", "_below_")
        _draw(tmp_path / name)
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text(json.dumps(rows), encoding="utf-8")
    items = load_whatsup_controlled(ann, tmp_path)
    assert missing_images(items) == []
    assert items[2].image_path == tmp_path / "controlled_images" / "mug_above_table.jpeg"


def test_whatsup_metrics_pair_and_set(whatsup_a: tuple[Path, Path, list[dict]], whatsup_b: tuple[Path, Path, list[dict]]) -> None:
    items_a = load_whatsup_controlled(whatsup_a[0], whatsup_a[1])
    items_b = load_whatsup_controlled(whatsup_b[0], whatsup_b[1])
    # A, pair mug|table: all four right; pair beer-bottle|armchair: left_of wrong, rest right.
    preds_a = [0, 0, 0, 0, 1, 0, 0, 0]
    # B: right_of wrong.
    preds_b = [0, 2, 0, 0]
    m = mcq_metrics(items_a + items_b, preds_a + preds_b)
    assert m["n"] == 12
    assert m["accuracy"] == pytest.approx(10 / 12)
    assert m["per_subset"]["controlled_a"] == {"accuracy": pytest.approx(7 / 8), "n": 8}
    assert m["per_subset"]["controlled_b"] == {"accuracy": pytest.approx(3 / 4), "n": 4}
    per_prep_a = {g: v["accuracy"] for g, v in m["per_group"]["controlled_a"].items()}
    assert per_prep_a == {"left_of": 0.5, "right_of": 1.0, "on": 1.0, "under": 1.0}
    # pairs (whatsup_vlms): mug|table gives 2 (left/right, on/under), beer-bottle gives 1 (on/under)
    # -> 3 / (8 / 2); sets: only mug|table -> 1 / (8 / 4)
    assert m["pair_accuracy"]["controlled_a"] == pytest.approx(3 / 4)
    assert m["set_accuracy"]["controlled_a"] == pytest.approx(1 / 2)
    # B: left/right broken, front/behind right -> 1 / (4 / 2); no full set
    assert m["pair_accuracy"]["controlled_b"] == pytest.approx(1 / 2)
    assert m["set_accuracy"]["controlled_b"] == 0.0
    # tensor predictions give the same result
    assert mcq_metrics(items_a, torch.tensor(preds_a)) == mcq_metrics(items_a, preds_a)
    with pytest.raises(ValueError, match="aligned"):
        mcq_metrics(items_a, preds_a[:-1])


def _write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_whatsup_qa_coco_and_gqa(tmp_path: Path) -> None:
    coco_one = _write_json(
        tmp_path / "coco_qa_one_obj.json",
        [[397133, "A photo of a dog on the left", "A photo of a dog on the right"],
         ["139", "A photo of a cat on the top", "A photo of a cat on the bottom"]],
    )
    coco_two = _write_json(
        tmp_path / "coco_qa_two_obj.json",
        [[397133, "A dog to the left of a cat", "A dog to the right of a cat"],
         [139, "A cup above a table", "A cup below a table"],
         [139, "A cup below a table", "A cup above a table"]],
    )
    gqa_one = _write_json(tmp_path / "vg_qa_one_obj.json", [[2345, "A tree on the top", "A tree on the bottom"]])
    gqa_two = _write_json(
        tmp_path / "vg_qa_two_obj.json",
        [[2345, "A man in front of a car", "A man behind a car"],
         [17, "A man behind a car", "A man in front of a car"],
         [17, "A lamp on a desk", "A lamp under a desk"]],
    )
    _draw(tmp_path / "val2017" / "000000397133.jpg")
    _draw(tmp_path / "vg_images" / "2345.jpg")

    one = load_whatsup_qa(coco_one, tmp_path)
    assert [it.raw_image_path for it in one] == ["val2017/000000397133.jpg", "val2017/000000000139.jpg"]
    assert one[0].image_path == tmp_path / "val2017" / "000000397133.jpg"
    assert one[1].image_path is None
    assert [it.group for it in one] == ["left", "top"]
    assert all(it.label == 0 and len(it.captions) == 2 for it in one)
    assert {it.subset for it in one} == {"coco_qa_one"}

    two = load_whatsup_qa(coco_two, tmp_path)
    assert [it.group for it in two] == ["left", "above", "below"] and two[0].subset == "coco_qa_two"

    g1 = load_whatsup_qa(gqa_one, tmp_path)
    assert g1[0].subset == "gqa_qa_one" and g1[0].group == "top"
    assert g1[0].image_path == tmp_path / "vg_images" / "2345.jpg"
    g2 = load_benchmark("whatsup_qa", gqa_two, tmp_path)
    assert [it.group for it in g2] == ["front", "behind", "top"]
    assert missing_images(g2) == ["vg_images/17.jpg", "vg_images/17.jpg"]

    m = mcq_metrics(two, [0, 1, 0])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_group"]["coco_qa_two"]["above"] == {"accuracy": 0.0, "n": 1}
    assert m["pair_accuracy"] == {} and m["set_accuracy"] == {}


def _negbench_csv(path: Path, rows: list[list[str]], header: str = NEGBENCH_HEADER, bom: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if bom:
            fh.write(BOM)
        fh.write(header + "\r\n")
        csv.writer(fh).writerows(rows)
    return path


NEG_ROWS = [
    ["data/coco/images/val2017/000000000001.jpg", "0", "A dog, but no cat.", "A cat, but no dog.", "A cat.", "No dog.", "hybrid"],
    ["data/coco/images/val2017/000000000002.jpg", "2", "A chair.", "No chair.", "There is no table.", "A table.", "negative"],
    ["data/coco/images/val2017/000000000003.jpg", "3", "No car.", "A bus, no car.", "No bus.", "A car is here.", "positive"],
    ["data/coco/images/val2017/000000000004.jpg", "1", "A cup.", "No cup, but a plate.", "A plate.", "No plate.", "hybrid"],
]


def test_negbench_bom_quotes_and_metrics(tmp_path: Path) -> None:
    ann = _negbench_csv(tmp_path / "COCO_val_mcq_llama3.1_rephrased.csv", NEG_ROWS)
    assert ann.read_bytes().startswith(BOM.encode("utf-8"))
    assert b'"A dog, but no cat."' in ann.read_bytes()
    root = tmp_path / "images"
    _draw(root / "coco/images/val2017/000000000001.jpg")  # found after stripping data/
    _draw(root / "data/coco/images/val2017/000000000002.jpg")  # found as given
    _draw(root / "000000000003.jpg")  # found by file name
    _draw(root / "000000000004.jpg")
    items = load_negbench_mcq(ann, root)
    assert [it.label for it in items] == [0, 2, 3, 1]
    assert [it.group for it in items] == ["hybrid", "negative", "positive", "hybrid"]
    assert items[0].captions[0] == "A dog, but no cat." and items[0].captions[1] == "A cat, but no dog."
    assert items[0].subset == "negbench_coco"
    assert items[0].image_path == root / "coco/images/val2017/000000000001.jpg"
    assert items[1].image_path == root / "data/coco/images/val2017/000000000002.jpg"
    assert items[2].image_path == root / "000000000003.jpg"
    assert missing_images(items) == []
    assert load_benchmark("negbench", ann, root, subset="mine")[0].subset == "mine"

    m = mcq_metrics(items, [0, 2, 0, 2])  # right, right, wrong, wrong
    assert m["accuracy"] == pytest.approx(0.5)
    by_type = m["per_group"]["negbench_coco"]
    assert by_type["hybrid"] == {"accuracy": 0.5, "n": 2}
    assert by_type["negative"] == {"accuracy": 1.0, "n": 1}
    assert by_type["positive"] == {"accuracy": 0.0, "n": 1}
    assert math.isnan(mcq_metrics([], [])["accuracy"])


def test_negbench_without_bom_and_voc_subset(tmp_path: Path) -> None:
    ann = _negbench_csv(tmp_path / "VOC2007_mcq_llama3.1_rephrased.csv", NEG_ROWS[:1], bom=False)
    items = load_negbench_mcq(ann, tmp_path)
    assert items[0].subset == "negbench_voc" and items[0].captions[0] == "A dog, but no cat."


def test_missing_images_lists_exact_raw_paths(tmp_path: Path) -> None:
    ann = _negbench_csv(tmp_path / "COCO_val_mcq.csv", NEG_ROWS)
    _draw(tmp_path / "val2017" / "000000000001.jpg")
    _draw(tmp_path / "val2017" / "000000000004.jpg")
    items = load_negbench_mcq(ann, tmp_path / "val2017")
    assert missing_images(items) == [NEG_ROWS[1][0], NEG_ROWS[2][0]]
    assert items[0].image_path == tmp_path / "val2017" / "000000000001.jpg"
    assert items[3].image_path == tmp_path / "val2017" / "000000000004.jpg"


def test_resolve_image_order(tmp_path: Path) -> None:
    _draw(tmp_path / "x" / "a.jpg")
    _draw(tmp_path / "data" / "x" / "a.jpg")
    assert resolve_image("data/x/a.jpg", tmp_path, strip_prefix="data/") == tmp_path / "x" / "a.jpg"
    assert resolve_image("data/x/a.jpg", tmp_path) == tmp_path / "data" / "x" / "a.jpg"
    assert resolve_image("elsewhere/a.jpg", tmp_path / "x") == tmp_path / "x" / "a.jpg"
    assert resolve_image("nope.jpg", tmp_path) is None


# ------------------------------------------------------------------------------------------
# malformed inputs
# ------------------------------------------------------------------------------------------


def _assert_names(exc: pytest.ExceptionInfo, file_name: str, row: str, field: str) -> None:
    msg = str(exc.value)
    assert file_name in msg and f"row {row}" in msg and f"'{field}'" in msg and "Fix:" in msg, msg


def test_negbench_missing_column(tmp_path: Path) -> None:
    header = NEGBENCH_HEADER.replace(",correct_answer_template", "")
    ann = _negbench_csv(tmp_path / "bad_missing.csv", [r[:-1] for r in NEG_ROWS], header=header)
    with pytest.raises(BenchmarkFormatError) as exc:
        load_negbench_mcq(ann, None)
    _assert_names(exc, "bad_missing.csv", "1", "correct_answer_template")


def test_negbench_out_of_range_answer(tmp_path: Path) -> None:
    rows = [list(r) for r in NEG_ROWS]
    rows[2][1] = "4"
    ann = _negbench_csv(tmp_path / "bad_range.csv", rows)
    with pytest.raises(BenchmarkFormatError) as exc:
        load_negbench_mcq(ann, None)
    _assert_names(exc, "bad_range.csv", "3", "correct_answer")


@pytest.mark.parametrize(
    ("col", "value", "field"),
    [(6, "affirmation", "correct_answer_template"), (4, "  ", "caption_2"), (1, "zero", "correct_answer")],
)
def test_negbench_bad_values(tmp_path: Path, col: int, value: str, field: str) -> None:
    rows = [list(r) for r in NEG_ROWS]
    rows[1][col] = value
    ann = _negbench_csv(tmp_path / "bad_value.csv", rows)
    with pytest.raises(BenchmarkFormatError) as exc:
        load_negbench_mcq(ann, None)
    _assert_names(exc, "bad_value.csv", "2", field)


def test_negbench_malformed_csv_syntax(tmp_path: Path) -> None:
    ann = tmp_path / "broken.csv"
    ann.write_text(NEGBENCH_HEADER + '\nx.jpg,0,"unterminated,b,c,d,positive\n', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"broken\.csv.*line"):
        load_negbench_mcq(ann, None)


def test_whatsup_wrong_type(tmp_path: Path) -> None:
    rows = _controlled_rows((("mug", "table"),), A_RELATIONS, "controlled_images")
    rows[1]["caption_options"] = 7
    ann = _write_json(tmp_path / "controlled_images_dataset.json", rows)
    with pytest.raises(BenchmarkFormatError) as exc:
        load_whatsup_controlled(ann, None)
    _assert_names(exc, "controlled_images_dataset.json", "2", "caption_options")
    assert "got int" in str(exc.value)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("image_path"), "image_path"),
        (lambda r: r["caption_options"].pop(), "caption_options"),
        (lambda r: r["caption_options"].__setitem__(3, ""), "caption_options[3]"),
        (lambda r: r.__setitem__("image_path", "data/controlled_images/mug-table.jpeg"), "image_path"),
    ],
)
def test_whatsup_bad_rows(tmp_path: Path, mutate, field: str) -> None:
    rows = _controlled_rows((("mug", "table"),), A_RELATIONS, "controlled_images")
    mutate(rows[2])
    ann = _write_json(tmp_path / "controlled_images_dataset.json", rows)
    with pytest.raises(BenchmarkFormatError) as exc:
        load_whatsup_controlled(ann, None)
    _assert_names(exc, "controlled_images_dataset.json", "3", field)


def test_bad_json(tmp_path: Path) -> None:
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text('[\n  {"image_path": "data/controlled_images/a_on_b.jpeg",\n  "caption_options": [}\n]', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"controlled_images_dataset\.json: line 3"):
        load_whatsup_controlled(ann, None)
    qa = tmp_path / "coco_qa_one_obj.json"
    qa.write_text("[[1, 2", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"coco_qa_one_obj\.json: line 1"):
        load_whatsup_qa(qa, None)


def test_whatsup_qa_bad_row(tmp_path: Path) -> None:
    ann = _write_json(tmp_path / "coco_qa_two_obj.json", [[1, "A a left of b", "A a right of b"], [2, "only one"]])
    with pytest.raises(BenchmarkFormatError) as exc:
        load_whatsup_qa(ann, None)
    _assert_names(exc, "coco_qa_two_obj.json", "2", "row")
    ann = _write_json(tmp_path / "vg_qa_one_obj.json", [[None, "A tree on the top", "A tree on the bottom"]])
    with pytest.raises(BenchmarkFormatError) as exc:
        load_whatsup_qa(ann, None)
    _assert_names(exc, "vg_qa_one_obj.json", "1", "[0] image_id")


def test_unknown_benchmark_name() -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("aro", "x.json", None)


# ------------------------------------------------------------------------------------------
# prompts
# ------------------------------------------------------------------------------------------


def test_prompt_styles() -> None:
    assert PROMPT_STYLES == ("raw", "reference")
    cap = "A beer bottle on a armchair"
    for bench in ("whatsup", "negbench", "synthetic", "anything"):
        assert apply_prompt_style(cap, "raw", bench) == cap
    assert apply_prompt_style(cap, "reference", "whatsup") == "An image of A beer bottle above a armchair"
    assert apply_prompt_style("A mug under a table", "reference", "whatsup") == "An image of A mug below a table"
    assert apply_prompt_style("A mug to the left of a table", "reference", "controlled_a") == (
        "An image of A mug to the left of a table"
    )
    assert apply_prompt_style("A cube behind a sphere", "reference", "whatsup") == "An image of A cube above a sphere"
    assert apply_prompt_style("A cube in front of a sphere", "reference", "whatsup") == (
        "An image of A cube below a sphere"
    )
    # COCO/GQA-spatial: no prefix, no on/under mapping, but the eval-time 3-D words map
    assert apply_prompt_style("A man behind a car", "reference", "whatsup_qa") == "A man above a car"
    assert apply_prompt_style("A lamp on a desk", "reference", "whatsup_qa") == "A lamp on a desk"
    assert apply_prompt_style("A tree on the top", "reference", "gqa_qa_one") == "A tree on the above"
    assert apply_prompt_style("No dog, but a cat.", "reference", "negbench") == "No dog, but a cat."
    assert apply_prompt_style("a red square", "reference", "clevr_bind") == "An image of a a red square"
    assert apply_prompt_style("a red square above a blue circle", "reference", "synthetic") == (
        "a red square above a blue circle"
    )
    with pytest.raises(ValueError, match="prompt style"):
        apply_prompt_style(cap, "fancy", "whatsup")
    with pytest.raises(ValueError, match="benchmark"):
        apply_prompt_style(cap, "reference", "unknown_bench")


def test_mcq_item_is_frozen(tmp_path: Path) -> None:
    item = MCQItem("a.jpg", None, ("x", "y"), 0, "s", None, None, 1, "f.csv")
    with pytest.raises(AttributeError):
        item.label = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="out of range"):
        mcq_metrics([item], [2])
