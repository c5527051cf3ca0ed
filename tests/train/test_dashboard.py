"""The training dashboard (dcsm.train.dashboard): epoch panels, final table, summary keys, run config and
encoder record, diagnostics in the same run, CSV, rank zero only; on tiny toy-CLIP runs."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from dcsm.commands.train import main as train_main
from dcsm.train.dashboard import DashboardCallback, final_summary, final_table
from tests.wandb_offline import media, read_run, run_dirs

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")  # the shipped toy CLIP: 96 px, 8 x 8 patches
CATEGORIES = ("binding", "spatial", "negation")
TINY = [
    "data.train_size=24", "data.val_size=24", "data.test_size=6", "data.shifted_size=6", "data.heldout_size=6",
    "data.heldout_templates_size=6", "data.batch_size=8", "trainer.enable_progress_bar=false", "optim.warmup_steps=1", "trainer.log_every_n_steps=1",
    "dashboard.per_category=2",
]
EPOCHS, KEEP = 3, 2
DIAG = ["diagnostics.callback=[heads]", "diagnostics.every_n_epochs=3", "diagnostics.image_set.size=6",
        "diagnostics.task.size=6", "diagnostics.textspan.m=3", "diagnostics.heads.top_k=2", "diagnostics.batch_size=6"]


def _small_bank(tmp: Path) -> Path:
    lines = (REPO / "dcsm" / "diagnostics" / "data" / "text_bank.txt").read_text().splitlines()[:40]
    bank = tmp / "bank.txt"
    bank.write_text("\n".join(lines) + "\n")
    return bank


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    import wandb

    run_dir = tmp_path_factory.mktemp("dash")
    report = train_main(["--config", SMOKE, f"run_dir={run_dir}", "logger.kind=wandb", "logger.mode=offline", *TINY,
                         f"trainer.max_epochs={EPOCHS}", f"dashboard.keep_epochs={KEEP}", *DIAG,
                         f"diagnostics.text_bank={_small_bank(run_dir)}"])
    wandb.finish()
    read_run(run_dirs(run_dir)[0])  # waits until the W&B service has written the whole run
    return run_dir, report


def test_offline_run_holds_epoch_panels(offline_run: tuple[Path, dict]) -> None:
    run_dir, _ = offline_run
    (wdir,) = run_dirs(run_dir)  # one run: panels, table and diagnostics all in it
    pngs = media(wdir, "images", "panel/val")
    assert len(pngs) == EPOCHS * len(CATEGORIES)  # every category, every epoch
    assert {p.name.split("_")[0] for p in pngs} == set(CATEGORIES)
    history = read_run(wdir)["history"]
    steps = [h for h in history if "panel/val/spatial/_type" in h]
    assert len(steps) == EPOCHS and all(h["panel/val/spatial/_type"] == "image-file" for h in steps)
    assert all({f"panel/val/{c}/_type" for c in CATEGORIES} <= set(h) for h in steps)  # one step per epoch
    # PNGs under run_dir, newest KEEP epochs only
    kept = sorted(p.name for p in (run_dir / "panels").iterdir())
    assert kept == [f"epoch_{e:03d}" for e in range(EPOCHS - KEEP, EPOCHS)]
    last = run_dir / "panels" / f"epoch_{EPOCHS - 1:03d}"
    info = json.loads((last / "panel.json").read_text())
    assert info["rank"] == 0 and info["epoch"] == EPOCHS - 1 and info["split"] == "val"
    assert [e["category"] for e in info["examples"]] == [c for c in CATEGORIES for _ in range(2)]
    assert all(e["index"] % 3 == CATEGORIES.index(e["category"]) for e in info["examples"])
    first = json.loads((run_dir / "panels" / f"epoch_{EPOCHS - KEEP:03d}" / "panel.json").read_text())
    assert [e["index"] for e in first["examples"]] == [e["index"] for e in info["examples"]]  # a fixed panel
    with Image.open(last / "val_spatial.png") as im:
        assert im.width > 600 and im.height > 250  # 2 rows x 5 columns


def test_offline_run_holds_final_table_and_summary(offline_run: tuple[Path, dict]) -> None:
    run_dir, report = offline_run
    (wdir,) = run_dirs(run_dir)
    (table_file,) = media(wdir, "table", "final")
    table = json.loads(table_file.read_text())
    assert table["columns"][:5] == ["split", "category", "n", "acc", "clip_acc"]
    assert {"n_tied", "clip_n_tied"} <= set(table["columns"])
    rows = {(r[0], r[1]): dict(zip(table["columns"], r)) for r in table["data"]}
    splits = ("test", "shifted", "heldout", "heldout_templates")  # configs/smoke.yaml's eval.splits
    assert set(rows) == {(s, c) for s in splits for c in (*CATEGORIES, "all")}
    summary = read_run(wdir)["summary"]
    for split in splits:
        m = report["metrics"][split]
        for cat in (*CATEGORIES, "all"):
            suffix = "" if cat == "all" else f"_{cat}"
            assert rows[(split, cat)]["n"] == m["n"][cat] == summary[f"{split}/n{suffix}"]
            assert rows[(split, cat)]["acc"] == pytest.approx(m["dcsm"][cat])
            assert summary[f"{split}/acc{suffix}"] == pytest.approx(m["dcsm"][cat])
            assert summary[f"{split}/clip_acc{suffix}"] == pytest.approx(m["clip"][cat])
            assert summary[f"{split}/n_tied{suffix}"] == m["n_tied"]["dcsm"][cat]
            assert summary[f"{split}/clip_n_tied{suffix}"] == m["n_tied"]["clip"][cat]


def test_offline_run_config_holds_run_config_and_encoder_record(offline_run: tuple[Path, dict]) -> None:
    run_dir, _ = offline_run
    config = read_run(run_dirs(run_dir)[0])["config"]
    rec = config["encoder_record"]
    assert rec["model"] == "dcsm-toy-ViT" and rec["pretrained"] == "toy" and rec["grid_size"] == [8, 8]
    assert len(rec["weights_sha256"]) == 64
    assert config["dashboard"]["per_category"] == 2 and config["trainer"]["max_epochs"] == EPOCHS


def test_diagnostics_callback_lands_in_the_training_run(offline_run: tuple[Path, dict]) -> None:
    run_dir, _ = offline_run
    (wdir,) = run_dirs(run_dir)
    assert (run_dir / "diagnostics" / "epoch_002" / "head_scores.png").is_file()
    assert media(wdir, "images", "diagnostics")  # the head-score grid
    assert media(wdir, "table", "diagnostics")  # head-score and TextSpan tables
    assert any("diagnostics/head_score_grid/_type" in h for h in read_run(wdir)["history"])


def test_csv_logger_writes_the_final_table(tmp_path: Path) -> None:
    report = train_main(["--config", SMOKE, f"run_dir={tmp_path}", "logger.kind=csv", *TINY, "trainer.max_epochs=1",
                         "dashboard.per_category=1"])
    (path,) = (tmp_path / "csv").rglob("final_metrics.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 4 * (len(CATEGORIES) + 1)  # test, shifted, heldout, heldout_templates (configs/smoke.yaml)
    by = {(r["split"], r["category"]): r for r in rows}
    m = report["metrics"]["heldout"]
    assert int(by[("heldout", "spatial")]["n"]) == m["n"]["spatial"]
    assert float(by[("heldout", "all")]["acc"]) == pytest.approx(m["dcsm"]["all"])
    assert int(by[("heldout", "all")]["clip_n_tied"]) == m["n_tied"]["clip"]["all"]
    hparams = (path.parent / "hparams.yaml").read_text()
    assert "encoder_record:" in hparams and "weights_sha256:" in hparams
    assert (tmp_path / "panels" / "epoch_000" / "val_negation.png").is_file()  # PNG panels with any logger


def test_raw_shard_runs_get_panels_from_the_validation_shards(tmp_path: Path) -> None:
    from dcsm.commands.synthetic_shards import main as make_shards

    for split, n in (("train", 12), ("val", 9)):
        make_shards([f"synthetic_shards.out={tmp_path / split}", f"synthetic_shards.num_samples={n}",
                     f"synthetic_shards.split={split}", "synthetic_shards.samples_per_shard=6", "synthetic_shards.image_size=96"])
    run_dir = tmp_path / "run"
    train_main(["--config", SMOKE, f"run_dir={run_dir}", "logger.kind=csv", *TINY, "trainer.max_epochs=1",
                "data.source=shards", f"data.train_shards={tmp_path / 'train'}", f"data.val_shards={tmp_path / 'val'}",
                "data.shuffle_buffer=4", "eval.splits=[test]"])
    info = json.loads((run_dir / "panels" / "epoch_000" / "panel.json").read_text())
    assert [(e["category"], e["index"]) for e in info["examples"]] == [  # first 2 per category in file order
        ("binding", 0), ("binding", 3), ("spatial", 1), ("spatial", 4), ("negation", 2), ("negation", 5)]
    assert all((run_dir / "panels" / "epoch_000" / f"val_{c}.png").is_file() for c in CATEGORIES)


def test_final_table_takes_every_count_column() -> None:
    nan = float("nan")
    results = {"test": {
        "dcsm": {"all": 0.5, "a": 1.0, "b": nan}, "clip": {"all": 0.25, "a": 0.5, "b": nan},
        "n": {"all": 2, "a": 2, "b": 0},
        "n_tied": {"dcsm": {"all": 1, "a": 1, "b": 0}, "clip": {"all": 0, "a": 0, "b": 0}},
        "n_nonfinite": {"dcsm": {"all": 3, "a": 3, "b": 0}, "clip": {"all": 0, "a": 0, "b": 0}},  # a future count
    }}
    columns, rows = final_table(results, ["a", "b"])
    assert columns == ["split", "category", "n", "acc", "clip_acc", "n_tied", "clip_n_tied", "n_nonfinite", "clip_n_nonfinite"]
    assert rows[0] == ["test", "a", 2, 1.0, 0.5, 1, 0, 3, 0]
    assert rows[1][3] is None and rows[1][4] is None  # empty category: no accuracy, not NaN
    summary = final_summary(columns, rows)
    assert summary["test/n_nonfinite_a"] == 3 and summary["test/clip_n_nonfinite"] == 0 and summary["test/acc"] == 0.5
    assert "test/acc_b" not in summary and not any(isinstance(v, float) and math.isnan(v) for v in summary.values())
    # totals without a per-category split (per scorer, or one number) go to the `all` row only
    results["test"]["n_nonfinite"] = {"dcsm": 3, "clip": 0}
    results["test"]["n_skipped"] = 1
    columns, rows = final_table(results, ["a", "b"])
    assert columns[-3:] == ["n_nonfinite", "clip_n_nonfinite", "n_skipped"]
    assert rows[0][-3:] == [None, None, None] and rows[2][:2] == ["test", "all"] and rows[2][-3:] == [3, 0, 1]


def test_bad_dashboard_knob_names_key_and_fix(tmp_path: Path) -> None:
    from dcsm.config import load_yaml, to_plain

    cfg = to_plain(load_yaml(SMOKE))
    cfg["dashboard"]["keep_epochs"] = 0
    with pytest.raises(ValueError, match=r"dashboard.keep_epochs must be an integer >= 1, got 0. Fix: dashboard.keep_epochs=1"):
        DashboardCallback(cfg, tmp_path)


def test_callback_does_nothing_off_rank_zero(tmp_path: Path) -> None:
    from dcsm.config import load_yaml, to_plain

    cfg = to_plain(load_yaml(SMOKE)) | {"run_dir": str(tmp_path)}
    cb = DashboardCallback(cfg, tmp_path)

    class Loud:  # any use of the module or a logger fails the test
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"rank 1 touched .{name}")

    trainer = SimpleNamespace(is_global_zero=False, sanity_checking=False, current_epoch=0, global_step=1, loggers=[Loud()])
    cb.on_fit_start(trainer, Loud())
    cb.panel = SimpleNamespace(images=[1], split="val")  # as if rank 0 had built it
    cb.on_validation_end(trainer, Loud())
    assert not (tmp_path / "panels").exists()


@pytest.mark.slow
def test_ddp_run_logs_media_from_rank_zero_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["--config", SMOKE, f"run_dir={run_dir}", "logger.kind=wandb", "logger.mode=offline", *TINY,
            "trainer.max_epochs=2", "trainer.devices=2", "trainer.strategy=ddp_spawn", "trainer.accelerator=cpu"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(cwd.iterdir())  # the spawned ranks wrote no media into ./wandb of the working directory
    (wdir,) = run_dirs(run_dir)  # rank 1 opened no run of its own
    summary = read_run(wdir)["summary"]
    assert len(media(wdir, "images", "panel/val")) == 2 * len(CATEGORIES)  # not doubled by rank 1
    for epoch in (0, 1):
        assert json.loads((run_dir / "panels" / f"epoch_{epoch:03d}" / "panel.json").read_text())["rank"] == 0
    (table_file,) = media(wdir, "table", "final")
    assert json.loads(table_file.read_text())["columns"][:3] == ["split", "category", "n"]
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert summary["test/acc_spatial"] == pytest.approx(metrics["test"]["dcsm"]["spatial"])
