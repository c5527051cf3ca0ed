"""Tests for dcsm.eval.benchmark: WhatsUp / NegBench evaluation end to end.

Every expected number is computed here from scores obtained independently of the runner:
one image at a time through the encoder and the head (no dataset, collate or batching), then
argmax and accuracy / pair / set arithmetic written out by hand.
"""

from __future__ import annotations

import csv
import json
import random
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dcsm.eval.benchmark import run_benchmark, run_benchmark_from_config
from dcsm.config import load_yaml, to_plain
from dcsm.data.benchmarks.dataset import BenchmarkDataset, load_items, parse_baseline
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.model.heatmaps import render_heatmap, spatial_heatmap
from dcsm.model.dcsm import DCSM, build_dcsm
from dcsm.data.benchmarks.prompts import apply_prompt_style
from dcsm.eval.report import format_benchmark_table
from tests.conftest import TINY_SPEC

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
WHATSUP_A_FIXTURE = FIXTURES / "whatsup" / "controlled_images_dataset.json"
NEGBENCH_VOC_FIXTURE = FIXTURES / "negbench" / "VOC2007_mcq_llama3.1_rephrased.csv"
NEGBENCH_HEADER = ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2", "caption_3", "correct_answer_template"]
EXTRA_BASELINE = "ViT-S-32:none"
NO_LOGGER = {"kind": "none"}

A_PREPS = {  # preposition -> (file-name relation, caption relation)
    "left_of": ("left_of", "to the left of"),
    "right_of": ("right_of", "to the right of"),
    "on": ("on", "on"),
    "under": ("under", "under"),
}
B_PREPS = {
    "left_of": ("left_of", "to the left of"),
    "right_of": ("right_of", "to the right of"),
    "in-front_of": ("in-front_of", "in front of"),
    "behind": ("behind", "behind"),
}
PAIRS_OF = {  # subset -> the two preposition pairs (written out, not imported)
    "controlled_a": (("left_of", "right_of"), ("on", "under")),
    "controlled_b": (("left_of", "right_of"), ("in-front_of", "behind")),
}


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_cfg() -> dict:
    cfg = to_plain(load_yaml(REPO / "configs" / "smoke_random.yaml"))
    cfg["encoder"].update(model=TINY_SPEC.model, pretrained=TINY_SPEC.pretrained)
    cfg["logger"]["kind"] = "none"
    return cfg


@pytest.fixture(scope="module")
def module(smoke_cfg, encoder) -> DCSM:
    assert encoder.spec.to_dict() == EncoderSpec(**smoke_cfg["encoder"]).to_dict()
    torch.manual_seed(0)
    return build_dcsm(smoke_cfg, encoder).eval()


@pytest.fixture(scope="module")
def extra_encoder() -> FrozenCLIP:
    model, pretrained = EXTRA_BASELINE.split(":")
    return FrozenCLIP(EncoderSpec(model=model, pretrained=None, max_tokens=77))


def _draw(path: Path) -> None:
    """A small image whose content depends on its file name (so the scores differ per image)."""
    rng = random.Random(zlib.crc32(path.name.encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x, y, s = rng.randrange(44), rng.randrange(44), rng.randrange(8, 20)
        draw.rectangle([x, y, x + s, y + s], fill=tuple(rng.randrange(256) for _ in range(3)))
    im.save(path)


_IMAGE_CACHE: dict[tuple, object] = {}
_TEXT_CACHE: dict[tuple, object] = {}


def _cached_image(enc: FrozenCLIP, image: Path):
    key = (id(enc), str(image))
    if key not in _IMAGE_CACHE:
        _IMAGE_CACHE[key] = enc.encode_images(enc.preprocess(Image.open(image).convert("RGB")).unsqueeze(0))
    return _IMAGE_CACHE[key]


def _cached_texts(enc: FrozenCLIP, captions: list[str]) -> dict[str, torch.Tensor]:
    """Token/pooled embeddings of the captions in the given order; each set of options is
    encoded once (sorted), then indexed, so a reordered row costs nothing."""
    uniq = tuple(sorted(set(captions)))
    key = (id(enc), uniq)
    if key not in _TEXT_CACHE:
        t = enc.encode_texts(list(uniq))
        _TEXT_CACHE[key] = {"tokens": t.tokens, "mask": t.mask, "ids": t.ids, "pooled": t.pooled}
    pos = torch.tensor([uniq.index(c) for c in captions])
    return {k: v[pos] for k, v in _TEXT_CACHE[key].items()}


@torch.no_grad()
def loop_scores(module: DCSM, image: Path, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(dcsm (K,), clip (K,)) of one image and its options, one image at a time."""
    img = _cached_image(module.encoder, image)
    txt = _cached_texts(module.encoder, captions)
    dcsm = module.head(img.patches, txt["tokens"][None], txt["mask"][None], txt["ids"][None])[0]
    clip = txt["pooled"] @ img.pooled[0]
    return dcsm.cpu(), clip.cpu()


@torch.no_grad()
def loop_cosine(enc: FrozenCLIP, image: Path, captions: list[str]) -> torch.Tensor:
    return (_cached_texts(enc, captions)["pooled"] @ _cached_image(enc, image).pooled[0]).cpu()


def hand_metrics(rows: list[dict]) -> dict:
    """rows: {subset, group, pair_key, label, pred} -> accuracy overall / subset / group, pair, set."""
    ok = [r["pred"] == r["label"] for r in rows]
    out: dict = {"accuracy": sum(ok) / len(ok), "subset": {}, "group": {}, "pair": {}, "set": {}}
    subsets = defaultdict(list)
    for r, o in zip(rows, ok):
        subsets[r["subset"]].append((r, o))
    for sub, lst in subsets.items():
        out["subset"][sub] = sum(o for _, o in lst) / len(lst)
        groups = defaultdict(list)
        for r, o in lst:
            groups[r["group"]].append(o)
        out["group"][sub] = {g: sum(v) / len(v) for g, v in groups.items()}
        if sub in PAIRS_OF:
            slots: dict = defaultdict(dict)
            for r, o in lst:
                slots[r["pair_key"]][r["group"]] = o
            n_pair = sum(
                int(s.get(a, False) and s.get(b, False)) for s in slots.values() for a, b in PAIRS_OF[sub]
            )
            n_set = sum(int(all(s.get(p, False) for pair in PAIRS_OF[sub] for p in pair)) for s in slots.values())
            out["pair"][sub] = n_pair / (len(lst) / 2)
            out["set"][sub] = n_set / (len(lst) / 4)
    return out


def assert_metrics_equal(reported: dict, hand: dict) -> None:
    assert reported["accuracy"] == pytest.approx(hand["accuracy"])
    assert {s: v["accuracy"] for s, v in reported["per_subset"].items()} == pytest.approx(hand["subset"])
    for sub, groups in hand["group"].items():
        assert {g: v["accuracy"] for g, v in reported["per_group"][sub].items()} == pytest.approx(groups)
    assert reported["pair_accuracy"] == pytest.approx(hand["pair"])
    assert reported["set_accuracy"] == pytest.approx(hand["set"])


def _controlled_rows(pairs, preps, folder: str, root: Path, draw: bool = True) -> list[dict]:
    """One row per (object pair, preposition): raw path, canonical captions, group."""
    rows = []
    for o1, o2 in pairs:
        captions = [f"A {o1.replace('-', ' ')} {rel} a {o2}" for _, rel in preps.values()]
        for k, (group, (fname_rel, _)) in enumerate(preps.items()):
            raw = f"data/{folder}/{o1}_{fname_rel}_{o2}.jpeg"
            if draw:
                _draw(root / folder / Path(raw).name)
            rows.append({"raw": raw, "captions": captions, "true": k, "group": group, "pair_key": f"{o1}|{o2}"})
    return rows


def _styled(captions: list[str], style: str, benchmark: str) -> list[str]:
    return [apply_prompt_style(c, style, benchmark) for c in captions]


# ---------------------------------------------------------------------------------------------
# WhatsUp Controlled-A: designed outcome + hand-computed metrics, reference prompts
# ---------------------------------------------------------------------------------------------


def test_whatsup_controlled_a_matches_hand_computed(module, tmp_path):
    root = tmp_path / "data"
    rows = _controlled_rows([("mug", "table"), ("beer-bottle", "armchair")], A_PREPS, "controlled_images", root)
    style = "reference"
    # which rows the DCSM scorer should get right: pair 1 all four, pair 2 all but "on"
    want_right = [True, True, True, True, True, True, False, True]
    file_rows, expect_rows = [], []
    for row, right in zip(rows, want_right):
        styled = _styled(row["captions"], style, "controlled_a")
        dcsm, _ = loop_scores(module, root / "controlled_images" / Path(row["raw"]).name, styled)
        first = int(dcsm.argmax()) if right else int(dcsm.argmin())
        order = [first] + [k for k in range(4) if k != first]  # the file's correct option comes first
        file_rows.append({"image_path": row["raw"], "caption_options": [row["captions"][k] for k in order]})
        expect_rows.append({**row, "order": order})
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text(json.dumps(file_rows))

    out = tmp_path / "out" / "whatsup.json"
    report = run_benchmark(
        module, "whatsup", [ann], root, prompt_style=style, baselines=[], batch_size=3, num_workers=0,
        max_failures=4, output=out, logger_cfg=NO_LOGGER, progress=False,
    )

    # independent predictions, one image at a time, in the file's option order
    hand_rows = {"dcsm": [], "clip": []}
    for row in expect_rows:
        styled = _styled([row["captions"][k] for k in row["order"]], style, "controlled_a")
        dcsm, clip = loop_scores(module, root / "controlled_images" / Path(row["raw"]).name, styled)
        for name, s in (("dcsm", dcsm), ("clip", clip)):
            hand_rows[name].append(
                {"subset": "controlled_a", "group": row["group"], "pair_key": row["pair_key"], "label": 0, "pred": int(s.argmax())}
            )
    hand = {name: hand_metrics(r) for name, r in hand_rows.items()}

    # the designed DCSM outcome, worked out by hand: 7/8 right; pairs: 2 + 1 of 4; sets: 1 of 2
    dcsm = report["metrics"]["dcsm"]
    assert dcsm["accuracy"] == pytest.approx(7 / 8)
    assert dcsm["pair_accuracy"]["controlled_a"] == pytest.approx(3 / 4)
    assert dcsm["set_accuracy"]["controlled_a"] == pytest.approx(1 / 2)
    assert {g: v["accuracy"] for g, v in dcsm["per_group"]["controlled_a"].items()} == pytest.approx(
        {"left_of": 1.0, "right_of": 1.0, "on": 0.5, "under": 1.0}
    )
    # and both scorers equal their own hand-computed metrics
    assert_metrics_equal(dcsm, hand["dcsm"])
    assert_metrics_equal(report["metrics"]["clip"], hand["clip"])
    # the CLIP baseline and the DCSM scorer disagree on at least one row
    assert any(d["pred"] != c["pred"] for d, c in zip(hand_rows["dcsm"], hand_rows["clip"]))

    # report contents
    assert report["n_items"] == 8 and report["n_scored"] == 8
    assert report["missing_images"] == {"count": 0, "paths": []}
    assert report["prompt_style"] == style and report["dataset"] == "whatsup"
    assert report["model"] == TINY_SPEC.model and report["pretrained"] == TINY_SPEC.pretrained
    assert [f["row"] for f in report["failures"]] == [7]  # the one designed failure
    fail = report["failures"][0]
    assert fail["correct_caption"] == _styled(file_rows[6]["caption_options"], style, "controlled_a")[0]
    assert fail["correct_caption"].startswith("An image of A beer bottle ")
    assert fail["predicted_caption"] != fail["correct_caption"]
    assert json.loads(out.read_text()) == report
    md = out.with_suffix(".md").read_text()
    assert md == format_benchmark_table(report) + "\n"
    assert f"prompt style: `{style}`" in md
    assert "| controlled_a | pair accuracy | 8 | 75.0 |" in md
    assert "| controlled_a | set accuracy | 8 | 50.0 |" in md


# ---------------------------------------------------------------------------------------------
# WhatsUp Controlled-B with two images missing
# ---------------------------------------------------------------------------------------------


def _write_correct_first(rows: list[dict], ann: Path) -> Path:
    """A Controlled-B-format file of ``rows``, the correct option (the row's own preposition)
    first; each row gets the options as written under ``file_captions``."""
    file_rows = []
    for r in rows:
        caps = [r["captions"][r["true"]]] + [c for k, c in enumerate(r["captions"]) if k != r["true"]]
        file_rows.append({"image_path": r["raw"], "caption_options": caps})
        r["file_captions"] = caps
    ann.write_text(json.dumps(file_rows))
    return ann


def _hand_rows(module, cases: list[tuple[Path, dict]]) -> dict[str, list[dict]]:  # noqa: ANN001
    """Per-image loop scores of (image, row) -> hand metric rows per scorer (label 0: correct first)."""
    hand_rows: dict[str, list[dict]] = {"dcsm": [], "clip": []}
    for image, r in cases:
        dcsm, clip = loop_scores(module, image, r["file_captions"])
        for name, sc in (("dcsm", dcsm), ("clip", clip)):
            hand_rows[name].append(
                {"subset": "controlled_b", "group": r["group"], "pair_key": r["pair_key"], "label": 0, "pred": int(sc.argmax())}
            )
    return hand_rows


def test_two_missing_images_are_listed_and_the_rest_scored(module, tmp_path):
    root = tmp_path / "root"
    rows = _controlled_rows([("cube", "sphere"), ("cone", "cylinder")], B_PREPS, "controlled_clevr", root, draw=False)
    absent = {rows[2]["raw"], rows[5]["raw"]}
    for row in rows:
        if row["raw"] not in absent:
            _draw(root / "controlled_clevr" / Path(row["raw"]).name)
    ann = _write_correct_first(rows, tmp_path / "controlled_clevr_dataset.json")

    out = tmp_path / "b.json"
    report = run_benchmark(
        module, "whatsup", [ann], root, prompt_style="raw", baselines=[], batch_size=4, num_workers=0,
        max_failures=0, output=out, logger_cfg=None, progress=False,
    )
    assert report["missing_images"]["count"] == 2
    assert report["missing_images"]["paths"] == [rows[2]["raw"], rows[5]["raw"]]
    assert report["n_items"] == 8 and report["n_scored"] == 6
    assert report["metrics"]["dcsm"]["n"] == 6 and report["failures"] == []

    hand_rows = _hand_rows(module, [(root / "controlled_clevr" / Path(r["raw"]).name, r) for r in rows
                                    if r["raw"] not in absent])
    for name in ("dcsm", "clip"):
        assert_metrics_equal(report["metrics"][name], hand_metrics(hand_rows[name]))
    md = out.with_suffix(".md").read_text()
    assert "Missing images (2)" in md and all(p in md for p in absent)


# ---------------------------------------------------------------------------------------------
# Unreadable images (truncated JPEG, zero-byte file, text named .jpeg) beside a missing one
# ---------------------------------------------------------------------------------------------


def test_unreadable_images_are_counted_listed_and_the_rest_scored(module, tmp_path):
    root = tmp_path / "root"
    rows = _controlled_rows([("cube", "sphere"), ("cone", "cylinder")], B_PREPS, "controlled_clevr", root)
    path = {i: root / "controlled_clevr" / Path(rows[i]["raw"]).name for i in range(len(rows))}
    data = path[1].read_bytes()
    path[1].write_bytes(data[: len(data) // 2])  # truncated JPEG
    path[3].write_bytes(b"")  # zero-byte file
    path[4].write_text("not an image, just text\n")  # text named .jpeg
    path[6].unlink()  # missing, as before
    ann = _write_correct_first(rows, tmp_path / "controlled_clevr_dataset.json")

    out = tmp_path / "b.json"
    report = run_benchmark(
        module, "whatsup", [ann], root, prompt_style="raw", baselines=[], batch_size=3, num_workers=0,
        max_failures=8, output=out, logger_cfg=None, progress=False,
    )
    assert report["missing_images"] == {"count": 1, "paths": [rows[6]["raw"]]}
    unreadable = report["unreadable_images"]
    assert unreadable["count"] == 3
    assert [u["path"] for u in unreadable["items"]] == [str(path[1]), str(path[3]), str(path[4])]
    assert [u["row"] for u in unreadable["items"]] == [2, 4, 5]
    assert "truncated" in unreadable["items"][0]["reason"].lower()
    assert all(u["reason"].startswith(("OSError", "UnidentifiedImageError")) for u in unreadable["items"])
    assert report["n_items"] == 8 and report["n_scored"] == 4
    assert report["metrics"]["dcsm"]["n"] == 4 and report["metrics"]["clip"]["n"] == 4
    assert all(f["row"] in (1, 3, 6, 8) for f in report["failures"])

    kept = [i for i in range(8) if i not in (1, 3, 4, 6)]
    hand_rows = _hand_rows(module, [(path[i], rows[i]) for i in kept])
    for name in ("dcsm", "clip"):
        assert report["metrics"][name]["accuracy"] == pytest.approx(
            sum(h["pred"] == 0 for h in hand_rows[name]) / len(kept))
        assert {g: v["accuracy"] for g, v in report["metrics"][name]["per_group"]["controlled_b"].items()} == pytest.approx(
            hand_metrics(hand_rows[name])["group"]["controlled_b"])
    md = out.with_suffix(".md").read_text()
    assert "unreadable images: 3" in md and "Unreadable images (3; their rows are not scored)" in md
    assert all(f"`{path[i]}`" in md for i in (1, 3, 4))
    assert json.loads(out.read_text()) == report


# ---------------------------------------------------------------------------------------------
# COCO/GQA-spatial mixed with Controlled-A (2- and 4-option rows), reference prompts
# ---------------------------------------------------------------------------------------------


def test_whatsup_qa_mixed_with_controlled(module, tmp_path):
    root = tmp_path / "data"
    style = "reference"
    ctrl = _controlled_rows([("mug", "table")], A_PREPS, "controlled_images", root)
    ann_a = tmp_path / "controlled_images_dataset.json"
    a_rows = []
    for r in ctrl:
        caps = [r["captions"][r["true"]]] + [c for k, c in enumerate(r["captions"]) if k != r["true"]]
        a_rows.append({"image_path": r["raw"], "caption_options": caps})
    ann_a.write_text(json.dumps(a_rows))
    coco = [[1, "A dog on the left", "A dog on the right"], [2, "A dog on the right", "A dog on the left"],
            [3, "A cat on the top", "A cat on the bottom"]]
    gqa = [[10, "A cat to the left of a tree", "A cat to the right of a tree"],
           [11, "A cat behind a tree", "A cat in front of a tree"],
           [12, "A cat in front of a tree", "A cat behind a tree"]]
    ann_coco, ann_gqa = tmp_path / "coco_qa_one_obj.json", tmp_path / "vg_qa_two_obj.json"
    ann_coco.write_text(json.dumps(coco))
    ann_gqa.write_text(json.dumps(gqa))
    for image_id, *_ in coco:
        _draw(root / "val2017" / f"{image_id:012d}.jpg")
    for image_id, *_ in gqa:
        _draw(root / "vg_images" / f"{image_id}.jpg")

    out = tmp_path / "qa.json"
    report = run_benchmark(
        module, "whatsup", [ann_a, ann_coco, ann_gqa], root, prompt_style=style, baselines=[], batch_size=8,
        num_workers=0, max_failures=2, output=out, logger_cfg=NO_LOGGER, progress=False,
    )
    assert report["n_scored"] == 10 and report["subsets"] == ["controlled_a", "coco_qa_one", "gqa_qa_two"]

    hand_rows = {"dcsm": [], "clip": []}
    expected_groups = {"coco_qa_one": ["left", "right", "top"], "gqa_qa_two": ["left", "behind", "front"]}
    cases = [(root / "controlled_images" / Path(r["image_path"]).name, r["caption_options"], "controlled_a", g, "mug|table")
             for r, g in zip(a_rows, A_PREPS)]
    cases += [(root / "val2017" / f"{i:012d}.jpg", [c0, c1], "coco_qa_one", g, None)
              for (i, c0, c1), g in zip(coco, expected_groups["coco_qa_one"])]
    cases += [(root / "vg_images" / f"{i}.jpg", [c0, c1], "gqa_qa_two", g, None)
              for (i, c0, c1), g in zip(gqa, expected_groups["gqa_qa_two"])]
    for path, caps, subset, group, pair_key in cases:
        dcsm, clip = loop_scores(module, path, _styled(caps, style, subset))
        for name, s in (("dcsm", dcsm), ("clip", clip)):
            hand_rows[name].append({"subset": subset, "group": group, "pair_key": pair_key, "label": 0, "pred": int(s.argmax())})
    for name in ("dcsm", "clip"):
        assert_metrics_equal(report["metrics"][name], hand_metrics(hand_rows[name]))
    # reference prompts: COCO/GQA get no prefix but the eval-time word map
    assert _styled(["A cat behind a tree"], style, "gqa_qa_two") == ["A cat above a tree"]
    n_wrong = sum(r["pred"] != 0 for r in hand_rows["dcsm"])
    assert len(report["failures"]) == min(2, n_wrong)


# ---------------------------------------------------------------------------------------------
# NegBench: question types, an extra open_clip baseline, W&B offline
# ---------------------------------------------------------------------------------------------


def test_negbench_question_types_baseline_and_wandb(module, extra_encoder, tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_env"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    root = tmp_path / "images"
    rows = [
        ["data/coco/images/val2017/000000000101.jpg", 0, "A dog is in this image.", "There is no dog.", "A cat, but no dog.", "A car.", "positive"],
        ["data/coco/images/val2017/000000000101.jpg", 2, "A cat is present.", "A dog, not a cat.", "There is no cat in this image.", "A bus.", "negative"],
        ["data/coco/images/val2017/000000000102.jpg", 1, "A bus and a car.", "This image shows a bus, but no car.", "No bus.", "A car only.", "hybrid"],
        ["data/coco/images/val2017/000000000103.jpg", 3, "A person.", "A horse.", "A tree.", "No person is present.", "negative"],
        ["data/coco/images/val2017/000000000104.jpg", 1, "No chair.", "A chair is in this image.", "A table.", "A chair, but no table.", "positive"],
        ["data/coco/images/val2017/000000000105.jpg", 0, "A cup, but no plate.", "A plate, but no cup.", "A cup.", "A plate.", "hybrid"],
    ]
    csv_path = tmp_path / "COCO_val_mcq_test.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(NEGBENCH_HEADER)
        w.writerows(rows)
    for raw in {r[0] for r in rows}:
        _draw(root / "coco" / "images" / "val2017" / Path(raw).name)

    out = tmp_path / "eval" / "negbench.json"
    report = run_benchmark(
        module, "negbench", [csv_path], root, prompt_style="raw", baselines=[EXTRA_BASELINE], batch_size=4,
        num_workers=0, max_failures=2,
        output=out, logger_cfg={"kind": "wandb", "project": "dcsm-test", "name": None, "mode": "offline"}, progress=False,
    )
    assert report["scorers"] == ["dcsm", "clip", EXTRA_BASELINE]
    assert report["baselines"] == [{"name": EXTRA_BASELINE, "model": "ViT-S-32", "pretrained": None}]

    hand_rows = {"dcsm": [], "clip": [], EXTRA_BASELINE: []}
    for raw, label, *caps, qtype in rows:
        path = root / "coco" / "images" / "val2017" / Path(raw).name
        dcsm, clip = loop_scores(module, path, caps)
        extra = loop_cosine(extra_encoder, path, caps)
        for name, s in (("dcsm", dcsm), ("clip", clip), (EXTRA_BASELINE, extra)):
            hand_rows[name].append({"subset": "negbench_coco", "group": qtype, "pair_key": None, "label": label, "pred": int(s.argmax())})
    for name, hr in hand_rows.items():
        assert_metrics_equal(report["metrics"][name], hand_metrics(hr))
        assert set(report["metrics"][name]["per_group"]["negbench_coco"]) == {"positive", "negative", "hybrid"}

    # failures: the first (up to 2) rows the DCSM scorer gets wrong, in file order
    wrong_rows = [i + 1 for i, r in enumerate(hand_rows["dcsm"]) if r["pred"] != r["label"]]
    assert [f["row"] for f in report["failures"]] == wrong_rows[:2]
    # W&B offline run under the output's folder, with the failure images (image + 2 heatmaps each)
    runs = list((out.parent / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and report["wandb"]["mode"] == "offline"
    tables = list(runs[0].rglob("media/table/failures_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"][:2] == ["image", "source"] and "dcsm map (predicted)" in table["columns"]
    assert len(table["data"]) == len(report["failures"])
    assert [row[table["columns"].index("row")] for row in table["data"]] == wrong_rows[:2]
    # the failure heatmaps land as image files: in the offline run, and as PNGs beside the JSON
    assert report["failures"]
    media = sorted(runs[0].glob("files/media/images/failure_heatmaps_*.png"))
    assert len(media) == 2 * len(report["failures"])  # correct + predicted caption per failure
    assert len(report["failure_images"]) == 3 * len(report["failures"])  # + the image itself
    for path in map(Path, report["failure_images"]):
        assert path.parent.parent == out.parent and path.suffix == ".png"
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 0 and im.size[1] > 0
    assert report["failures"][0]["images"]["correct"] in report["failure_images"]
    md = out.with_suffix(".md").read_text()
    assert "prompt style: `raw`" in md and EXTRA_BASELINE in md and "| negbench_coco | hybrid | 2 |" in md


# ---------------------------------------------------------------------------------------------
# real published files: only the rows whose images were drawn are scored
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bench,fixture", [("whatsup", WHATSUP_A_FIXTURE), ("negbench", NEGBENCH_VOC_FIXTURE)], ids=["whatsup_a", "negbench_voc"]
)
def test_real_files_flow_end_to_end(bench, fixture, module, tmp_path):
    if not fixture.is_file():
        pytest.skip(f"fixture {fixture} absent (CI clones the repo with shared/ beside it)")
    if bench == "whatsup":
        raw_paths = [r["image_path"] for r in json.loads(fixture.read_text())]
        drawn = [tmp_path / "controlled_images" / Path(p).name for p in raw_paths[:3]]
    else:
        with open(fixture, encoding="utf-8-sig", newline="") as fh:
            raw_paths = [r["image_path"] for r in csv.DictReader(fh)]
        drawn = [tmp_path / Path(p).name for p in raw_paths[:3]]  # found by file name
    for p in drawn:
        _draw(p)
    names = {p.name for p in drawn}
    scored = [p for p in raw_paths if Path(p).name in names]
    report = run_benchmark(
        module, bench, [fixture], tmp_path, prompt_style="reference", baselines=[], batch_size=8, num_workers=0,
        max_failures=1, output=tmp_path / "out.json", logger_cfg=NO_LOGGER, progress=False,
    )
    assert report["n_items"] == len(raw_paths)
    assert report["n_scored"] == len(scored) >= 3
    assert report["missing_images"]["count"] == len(raw_paths) - len(scored)
    assert report["missing_images"]["paths"] == [p for p in raw_paths if Path(p).name not in names]
    assert report["metrics"]["dcsm"]["n"] == len(scored)
    json.loads((tmp_path / "out.json").read_text())  # strict JSON (no NaN)
    assert "prompt style: `reference`" in (tmp_path / "out.md").read_text()


def test_from_config_with_checkpoint(module, smoke_cfg, tmp_path):
    """A checkpoint written like train.py's loads through the config entry point and scores the
    same as the in-memory head."""
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(
        {"hyper_parameters": {"cfg": smoke_cfg, "categories": ["spatial"], "val_names": ["val"]},
         "state_dict": {"head." + k: v for k, v in module.head.state_dict().items()}},
        ckpt,
    )
    root = tmp_path / "data"
    rows = _controlled_rows([("mug", "table")], A_PREPS, "controlled_images", root)
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text(json.dumps([{"image_path": r["raw"], "caption_options": r["captions"]} for r in rows]))
    cfg = {**smoke_cfg, "eval": {**smoke_cfg["eval"], "checkpoint": str(ckpt), "benchmark": "whatsup",
                                 "annotation_files": [str(ann)], "image_root": str(root), "num_workers": 0,
                                 "batch_size": 2, "output": None}}
    report = run_benchmark_from_config(cfg, progress=False)
    assert Path(tmp_path / "run" / "eval_whatsup_raw.json").is_file()
    assert report["checkpoint"] == str(ckpt)
    preds = [int(loop_scores(module, root / "controlled_images" / Path(r["raw"]).name, r["captions"])[0].argmax()) for r in rows]
    hand = hand_metrics([{"subset": "controlled_a", "group": g, "pair_key": "mug|table", "label": 0, "pred": p}
                         for g, p in zip(A_PREPS, preds)])
    assert_metrics_equal(report["metrics"]["dcsm"], hand)


# ---------------------------------------------------------------------------------------------
# small units
# ---------------------------------------------------------------------------------------------


def test_parse_baseline():
    b = parse_baseline("ViT-B-32:openai")
    assert (b.name, b.model, b.pretrained) == ("ViT-B-32:openai", "ViT-B-32", "openai")
    b = parse_baseline("ViT-B-16:C:/ckpts/model:v2.pt")
    assert (b.model, b.pretrained) == ("ViT-B-16", "C:/ckpts/model:v2.pt")
    for tag in ("none", "NULL", ""):
        assert parse_baseline(f"ViT-S-32:{tag}").pretrained is None
    for bad in ("ViT-B-32", ":openai"):
        with pytest.raises(ValueError, match="MODEL:PRETRAINED"):
            parse_baseline(bad)


def test_dataset_batches_split_on_option_count(encoder, tmp_path):
    _draw(tmp_path / "val2017" / "000000000001.jpg")
    _draw(tmp_path / "controlled_images" / "mug_on_table.jpeg")
    one, ctrl, two = tmp_path / "coco_qa_one_obj.json", tmp_path / "controlled_images_dataset.json", tmp_path / "coco_qa_two_obj.json"
    one.write_text(json.dumps([[1, "A dog on the left", "A dog on the right"]] * 3))
    ctrl.write_text(json.dumps(
        [{"image_path": "data/controlled_images/mug_on_table.jpeg", "caption_options": ["A mug on a table", "x", "y", "z"]}]
    ))
    two.write_text(json.dumps([[2, "A dog to the left of a cat", "A dog to the right of a cat"], [1, "A b above a c", "A b below a c"]]))
    items = load_items("whatsup", [one, ctrl, two, one], tmp_path)
    assert [it.subset for it in items] == ["coco_qa_one"] * 3 + ["controlled_a"] + ["coco_qa_two"] * 2 + ["coco_qa_one"] * 3
    ds = BenchmarkDataset(items, encoder.preprocess, "reference", "whatsup")
    assert ds.missing == ["val2017/000000000002.jpg"] and ds.indices == [0, 1, 2, 3, 5, 6, 7, 8]
    assert ds.batches(4) == [[0, 1, 2], [3], [4, 5, 6, 7]]  # never mixes 2- and 4-option rows
    assert ds.batches(2) == [[0, 1], [2], [3], [4, 5], [6, 7]]
    sample = ds[3]
    assert sample["item_index"] == 3 and sample["images"].shape == (3, *encoder.image_size) and sample["label"] == 0
    assert sample["captions"] == ["An image of A mug above a table", "An image of x", "An image of y", "An image of z"]
    assert ds[4]["item_index"] == 5


def test_heatmap_rendering():
    grid = (2, 3)
    m = torch.zeros(4, 1 + 6)
    m[0, 1:] = torch.arange(6.0)
    m[1, 1:] = torch.arange(6.0) * 3
    m[2, 1:] = 100.0  # a functional-word row: left out
    mask = torch.tensor([True, True, True, False])
    fr = torch.tensor([False, False, True, False])
    heat = spatial_heatmap(m, mask, grid, keep_cls=True, functional=fr)
    assert heat.shape == grid
    np.testing.assert_allclose(heat, (torch.arange(6.0) * 2).reshape(grid).numpy())
    img = render_heatmap(heat, Image.new("RGB", (50, 40), "white"), size=32)
    assert img.size == (32, 32) and img.mode == "RGB"
    flat = render_heatmap(np.zeros(grid), size=16)  # constant map: no division by zero
    assert flat.size == (16, 16)


def test_bad_arguments(module, tmp_path):
    ann = tmp_path / "x.csv"
    ann.write_text(",".join(NEGBENCH_HEADER) + "\n")
    common = dict(baselines=[], batch_size=2, num_workers=0, max_failures=0, output=tmp_path / "o.json",
                  logger_cfg=None, progress=False)
    with pytest.raises(ValueError, match="prompt style"):
        run_benchmark(module, "negbench", [ann], tmp_path, prompt_style="fancy", **common)
    with pytest.raises(ValueError, match="image_root"):
        run_benchmark(module, "negbench", [ann], None, prompt_style="raw", **common)
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_benchmark(module, "imagenet", [ann], tmp_path, prompt_style="raw", **common)
    with pytest.raises(ValueError, match="annotation_files"):
        run_benchmark(module, "negbench", [], tmp_path, prompt_style="raw", **common)
    with pytest.raises(ValueError, match="given twice"):
        run_benchmark(module, "negbench", [ann], tmp_path, prompt_style="raw", **{**common, "baselines": ["ViT-S-32:none", "ViT-S-32:null"]})
