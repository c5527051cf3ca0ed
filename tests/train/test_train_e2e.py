"""train.py / evaluate.py end to end on a tiny synthetic run (the shipped small CLIP, configs/smoke.yaml, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcsm.commands.evaluate import main as evaluate_main
from dcsm.commands.train import main as train_main
from dcsm.config import ConfigError, parse_cli
from dcsm.train.module import load_module

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")
TINY = [
    "data.train_size=24", "data.val_size=6", "data.test_size=6", "data.shifted_size=6", "data.heldout_size=6",
    "data.heldout_templates_size=6",
    "data.batch_size=8", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
    "optim.warmup_steps=1",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run")
    report = train_main(["--config", SMOKE, f"run_dir={run_dir}", "logger.kind=wandb", "logger.mode=offline", *TINY])
    return run_dir, report


def test_train_writes_checkpoint_metrics_and_offline_wandb(trained: tuple[Path, dict]) -> None:
    run_dir, report = trained
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["model"] == "dcsm-toy-ViT" and saved["pretrained"] == "toy" and saved["dataset"] == "synthetic"
    for split in ("test", "shifted"):
        m = saved["metrics"][split]
        assert m["n"] == {"all": 6, "binding": 2, "spatial": 2, "negation": 2}
        assert set(m["dcsm"]) == set(m["clip"]) == {"all", "binding", "spatial", "negation"}
        assert all(0.0 <= v <= 1.0 for v in m["dcsm"].values())
    assert "| test | binding | 2 |" in (run_dir / "metrics.md").read_text()
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B offline run directory missing"


def test_checkpoint_holds_head_rows_and_spec_not_clip(trained: tuple[Path, dict]) -> None:
    run_dir, _ = trained
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    keys = ckpt["state_dict"].keys()
    assert "head.functional_rows.rows" in keys
    assert not any(k.startswith("encoder.") for k in keys)
    assert ckpt["dcsm"]["encoder"]["model"] == "dcsm-toy-ViT"
    assert ckpt["global_step"] == 6  # 2 epochs x 3 batches
    size_mb = (run_dir / "checkpoints" / "last.ckpt").stat().st_size / 2**20
    assert size_mb < 20, f"checkpoint is {size_mb:.0f} MiB: CLIP weights leaked into it"


def test_evaluate_reproduces_training_metrics_from_checkpoint(trained: tuple[Path, dict]) -> None:
    run_dir, report = trained
    ckpt = report["checkpoint"]
    out = run_dir / "eval.json"
    ev = evaluate_main([f"eval.checkpoint={ckpt}", f"eval.output={out}", "eval.batch_size=4"])
    assert json.loads(out.read_text())["metrics"] == ev["metrics"]
    for split in ("test", "shifted"):
        assert ev["metrics"][split]["dcsm"] == pytest.approx(report["metrics"][split]["dcsm"])
        assert ev["metrics"][split]["clip"] == pytest.approx(report["metrics"][split]["clip"])


def test_loaded_rows_equal_trained_rows(trained: tuple[Path, dict]) -> None:
    run_dir, report = trained
    module = load_module(report["checkpoint"])
    ckpt = torch.load(report["checkpoint"], weights_only=False)
    assert torch.equal(module.head.functional_rows.rows, ckpt["state_dict"]["head.functional_rows.rows"])


@pytest.mark.slow
def test_resume_continues_step_count(tmp_path: Path) -> None:
    common = ["--config", SMOKE, f"run_dir={tmp_path}", "logger.kind=none", *TINY]
    train_main([*common, "trainer.max_epochs=1"])
    first = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == 3
    train_main([*common, "trainer.max_epochs=2", "resume=auto"])
    second = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 6 and second["epoch"] == 1


def test_unknown_override_key_fails_loudly() -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        parse_cli(["--config", SMOKE, "trainer.max_epohcs=3"])


def test_evaluate_without_checkpoint_explains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eval.checkpoint"):
        evaluate_main([])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_main([f"eval.checkpoint={tmp_path / 'missing.ckpt'}"])


def test_cli_prints_user_errors_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), f"eval.checkpoint={tmp_path / 'none.ckpt'}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: checkpoint") and "Traceback" not in proc.stderr


def test_paired_loss_equals_per_pair_definition(encoder) -> None:  # noqa: ANN001
    import torch.nn.functional as F

    from dcsm.config import load_yaml
    from dcsm.config import to_plain
    from dcsm.train.module import DCSMModule, paired_loss

    cfg = to_plain(load_yaml(SMOKE))
    cfg["scorer"]["pooled"] = "none"  # the head alone, as the per-pair loop below calls it
    module = DCSMModule(cfg, encoder=encoder).eval()
    caps = [["a red square above a blue circle", "a blue circle above a red square", "a cup", "no dog"],
            ["a green triangle without a red circle", "a green triangle and a red circle", "a plate", "a cat"]]
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.randn(2, 3, *encoder.image_size, generator=g), "opposite_images": torch.randn(2, 3, *encoder.image_size, generator=g),
             "captions": caps, "label": torch.tensor([0, 0]), "opposite_label": torch.tensor([1, 1])}
    from dcsm.features import encode_batch

    f = encode_batch(encoder, batch)
    with torch.no_grad():
        loss, _ = paired_loss(module.model, f)
        images = [f.patches[0], f.patches[1], f.opposite_patches[0], f.opposite_patches[1]]
        texts = [(0, 0), (1, 0), (0, 1), (1, 1)]  # (sample, option): positives, then opposite captions
        scores = torch.zeros(4, 4)
        for i, img in enumerate(images):  # one pair at a time, through the same head
            for j, (n, k) in enumerate(texts):
                scores[i, j] = module.head(img[None], f.tokens[n, k][None, None], f.token_mask[n, k][None, None],
                                           f.token_ids[n, k][None, None])[0, 0]
        target = torch.arange(4)
        manual = (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)) / 2
    assert torch.allclose(loss, manual, atol=1e-5)


@pytest.mark.slow
def test_paired_recipe_trains_end_to_end(tmp_path: Path) -> None:
    report = train_main(["--config", SMOKE, f"run_dir={tmp_path}", "logger.kind=none", "loss.kind=paired", *TINY])
    ckpt = torch.load(report["checkpoint"], weights_only=False)
    assert ckpt["hyper_parameters"]["cfg"]["loss"]["kind"] == "paired"
    assert ckpt["dcsm"]["samples_seen"] > 0 and set(report["metrics"]) == {"test", "shifted", "heldout", "heldout_templates"}


@pytest.mark.slow
def test_gradient_accumulation_reaches_the_trainer(tmp_path: Path) -> None:
    report = train_main(["--config", SMOKE, f"run_dir={tmp_path}", "logger.kind=none", *TINY,
                         "trainer.accumulate_grad_batches=2", "eval.splits=[]"])
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # 3 batches per epoch -> optimizer steps after batch 2 and 3, x 2 epochs
    assert ckpt["dcsm"]["samples_seen"] == 2 * 24 and report["metrics"] == {}


def test_resume_refuses_a_run_with_another_model_config(trained: tuple[Path, dict]) -> None:
    run_dir, _ = trained
    with pytest.raises(ConfigError, match="scorer.channels: 32 in the checkpoint, 8 now"):
        train_main(["--config", SMOKE, f"run_dir={run_dir}", "logger.kind=none", *TINY, "scorer.channels=8"])


@pytest.mark.slow
def test_bf16_mixed_precision_trains(tmp_path: Path) -> None:
    report = train_main(["--config", SMOKE, f"run_dir={tmp_path}", "logger.kind=none", *TINY,
                         "trainer.precision=bf16-mixed", "trainer.max_epochs=1", "eval.splits=[test]"])
    assert 0.0 <= report["metrics"]["test"]["dcsm"]["all"] <= 1.0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"]["head.scorer.fc1.weight"].dtype == torch.float32  # mixed: fp32 master weights


def test_evaluate_honours_or_refuses_every_override(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """No silent override: data.* sets the synthetic splits scored; a model key that differs from the
    checkpoint and a training-only key are refused with one line naming the key."""
    _, report = trained
    ckpt = report["checkpoint"]
    ev = evaluate_main([f"eval.checkpoint={ckpt}", f"eval.output={tmp_path / 'e.json'}", "data.test_size=3", "eval.splits=[test]"])
    assert ev["metrics"]["test"]["n"]["all"] == 3
    with pytest.raises(ConfigError, match=r"encoder.model='ViT-B-16' conflicts with checkpoint .* trained with 'dcsm-toy-ViT'"):
        evaluate_main([f"eval.checkpoint={ckpt}", "encoder.model=ViT-B-16"])
    with pytest.raises(ConfigError, match=r"trainer.max_epochs has no effect in evaluate.py"):
        evaluate_main([f"eval.checkpoint={ckpt}", "trainer.max_epochs=3"])
    evaluate_main([f"eval.checkpoint={ckpt}", f"eval.output={tmp_path / 'f.json'}", "encoder.model=dcsm-toy-ViT", "eval.splits=[test]",
                   "data.test_size=3"])  # the checkpoint's own value is fine
