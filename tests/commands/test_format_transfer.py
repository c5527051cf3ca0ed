"""Format-transfer files (dcsm.commands.format_transfer): every file is read back UNCHANGED by its real
loader (rows, options, labels and groups as drawn), found by the suite's discovery, drawn in a style
no training uses, written atomically; bad settings are one line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dcsm.commands.format_transfer as ft
from dcsm.commands.runner import USAGE_EXIT, run_command
from dcsm.data.benchmarks.discovery import discover_benchmarks, load_found
from dcsm.data.synthetic.styles import STYLES
from dcsm.data.synthetic.transfer import TRANSFER_FILES

ROWS = 8
ARGS = [f"format_transfer.rows={ROWS}", "format_transfer.image_size=48", "progress=false"]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ft")
    manifest = ft.main([f"format_transfer.out={out}", *ARGS])
    return out, manifest


def test_every_file_round_trips_through_its_real_loader(written: tuple[Path, dict]) -> None:
    out, manifest = written
    found, _ = discover_benchmarks(out)
    assert {f[0] for f in found} == set(TRANSFER_FILES) == set(manifest["files"])
    for entry in found:
        subset = entry[0]
        items = load_found(entry)
        rows = manifest["files"][subset]["rows"]
        assert len(items) == len(rows) == (ROWS if not subset.startswith("controlled") else ROWS // 4 * 4)
        for item, row in zip(items, rows):
            assert item.subset == subset
            assert list(item.captions) == row["captions"] and item.label == row["label"] == 0
            assert item.group == row["group"]
            assert item.image_path is not None and item.image_path == (out / row["image"]).resolve() or \
                item.image_path.resolve() == (out / row["image"]).resolve()
            with Image.open(item.image_path) as im:
                assert im.size == (48, 48) and im.mode == "RGB"
        assert len({i.image_path for i in items}) == len(items)  # one image per row


def test_groups_cover_each_format(written: tuple[Path, dict]) -> None:
    files = written[1]["files"]
    groups = {k: {r["group"] for r in v["rows"]} for k, v in files.items()}
    assert groups["controlled_a"] == {"on", "under", "left_of", "right_of"}
    assert groups["controlled_b"] == {"in-front_of", "behind", "left_of", "right_of"}
    assert groups["coco_qa_two"] == {"left", "right", "above", "below"}
    assert groups["gqa_qa_two"] == {"left", "right", "front", "behind"}
    assert groups["negbench_coco"] == {"positive", "negative", "hybrid"}
    # WhatsUp: every object pair in all four relations, so pair and set accuracy are meaningful
    a_rows = files["controlled_a"]["rows"]
    assert len(a_rows) % 4 == 0
    whatsup = json.loads((written[0] / "controlled_images_dataset.json").read_text())
    assert all(len(r["caption_options"]) == 4 and r["image_path"].startswith("data/controlled_images/") for r in whatsup)


def test_negbench_options_follow_negbench(written: tuple[Path, dict]) -> None:
    import csv

    path = written[0] / "negbench" / "COCO_val_mcq_llama3.1_rephrased.csv"
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["image_path", "correct_answer", "caption_0", "caption_1", "caption_2",
                                     "caption_3", "correct_answer_template"]
        rows = list(reader)
    for r in rows:
        assert r["image_path"].startswith("data/coco/images/val2017/") and r["correct_answer"] == "0"
        caps = [r[f"caption_{k}"] for k in range(4)]
        assert all(c[0].isupper() and c.endswith(".") for c in caps)
        if r["correct_answer_template"] == "negative":
            assert any(w in caps[0] for w in (" no ", " not ", "absent", "No "))


def test_images_use_the_transfer_style(written: tuple[Path, dict]) -> None:
    """Checkerboard background: the check colour of the transfer style is in every image's corner."""
    out, manifest = written
    check = np.asarray(STYLES["transfer"].stripe_rgb, dtype=np.int16)
    for subset in ("controlled_a", "negbench_coco", "clevr_bind_val"):
        row = manifest["files"][subset]["rows"][0]
        arr = np.asarray(Image.open(out / row["image"]).convert("RGB"), dtype=np.int16)
        assert np.abs(arr.reshape(-1, 3) - check).max(axis=1).min() <= 12  # JPEG-close to the check colour


def test_same_settings_rewrite_the_same_bytes_other_settings_are_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ft"
    args = [f"format_transfer.out={out}", "format_transfer.files=[coco_qa_two]", *ARGS]
    ft.main(args)
    first = (out / "coco_qa_two_obj.json").read_bytes()
    ft.main(args)
    assert (out / "coco_qa_two_obj.json").read_bytes() == first
    with pytest.raises(SystemExit) as e:
        run_command(ft.main, [*args, "format_transfer.seed=1"])
    assert e.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "overwrite=true" in err
    ft.main([*args, "format_transfer.seed=1", "format_transfer.overwrite=true"])
    assert (out / "coco_qa_two_obj.json").read_bytes() != first


@pytest.mark.parametrize("bad, expected", [
    ([], "format_transfer.out"),
    (["format_transfer.rows=3"], "format_transfer.rows"),
    (["format_transfer.style=nope"], "format_transfer.style"),
    (["format_transfer.templates=some"], "format_transfer.templates"),
    (["format_transfer.files=[whatsup_c]"], "format_transfer.files"),
    (["format_transfer.image_size=8"], "format_transfer.image_size"),
])
def test_bad_settings_are_one_line(bad: list[str], expected: str, tmp_path: Path, capsys) -> None:
    out = [] if not bad else [f"format_transfer.out={tmp_path / 'o'}"]
    with pytest.raises(SystemExit) as e:
        run_command(ft.main, [*out, *bad])
    assert e.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and expected in err
    assert not (tmp_path / "o").exists()


def test_out_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(SystemExit) as e:
        run_command(ft.main, [f"format_transfer.out={f}"])
    assert e.value.code == USAGE_EXIT and "is a file" in capsys.readouterr().err


def test_a_full_disk_leaves_only_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Writes go through dcsm.io.atomic_write: a failure midway leaves no partial file, no temp file
    and no manifest (which is written last), and is one line."""
    real = ft.atomic_write
    calls = {"n": 0}

    def failing(path, write):
        calls["n"] += 1
        if calls["n"] == 12:
            def half(fh):
                fh.write(b"partial")
                raise OSError(28, "No space left on device")
            return real(path, half)
        return real(path, write)

    monkeypatch.setattr(ft, "atomic_write", failing)
    out = tmp_path / "ft"
    with pytest.raises(SystemExit) as e:
        run_command(ft.main, [f"format_transfer.out={out}", *ARGS])
    err = capsys.readouterr().err.strip()
    assert e.value.code == USAGE_EXIT and err.startswith("error: ") and err.count("\n") == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 11 and not (out / ft.MANIFEST).exists()
    assert not [p for p in files if p.name.endswith(".tmp")]
    for p in files:
        if p.suffix in (".jpeg", ".jpg", ".png"):
            Image.open(p).verify()  # whole images only
        else:
            json.loads(p.read_text())  # the annotation written before the failure is whole


@pytest.mark.slow  # ~2 min on 2 busy cores: 88 images through a random-init ViT-B-32
def test_evaluate_scores_every_file_through_the_real_loaders(written: tuple[Path, dict], encoder,
                                                             tmp_path: Path) -> None:
    """evaluate.py eval.benchmark=all on the written tree: every file is scored, every row counted,
    per question type / relation as drawn; nothing is skipped for a missing image."""
    import contextlib
    import io

    from dcsm.commands.evaluate import main as evaluate
    from tests.suite_helpers import write_checkpoint

    out, manifest = written
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", encoder)
    with contextlib.redirect_stdout(io.StringIO()):
        report = evaluate(["eval.benchmark=all", f"eval.data_root={out}", f"eval.checkpoint={ckpt}",
                           "eval.num_workers=0", "eval.batch_size=8", "logger.kind=none", "progress=false"])
    for subset, f in manifest["files"].items():
        assert report["counts"][subset] == len(f["rows"]), subset
        for column in ("dcsm", "clip"):
            m = report["metrics"][column][subset]
            assert m["n"] == len(f["rows"]) and 0.0 <= m["accuracy"] <= 1.0
            groups = {r["group"] for r in f["rows"]} - {None}
            if len(groups) > 1:
                per = m["per_group"][subset]
                assert set(per) == groups and sum(g["n"] for g in per.values()) == len(f["rows"])
    assert not any(v.get("count") for v in report.get("missing_images", {}).values())
