"""Issue 27: every controlled experiment runs end to end on tiny random-init models through the
command (``data_prep/controlled.py``), writes JSON + PNG + Markdown side by side with the numbers
the JSON holds, and logs to an offline W&B run when the logger is configured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import open_clip
import pytest
import torch

from dcsm.commands.pretrain_toy_clip import export_fp16
from dcsm.diagnostics.controlled.center import seed_interval
from dcsm.diagnostics.controlled.models import VARIANTS, find_weights, variant_dir
from dcsm.diagnostics.controlled.segmentation import iou, object_mask
from dcsm.diagnostics.controlled.spurious import group_accuracy
from dcsm.data.synthetic.captioned import CaptionedConfig, make_captioned_scene
from tests.wandb_offline import read_run

MODELS = {"centred": "dcsm-tiny-ViT", "meanpool": "dcsm-tiny-ViT-avg", "uniform": "dcsm-tiny-ViT", "spurious": "dcsm-tiny-ViT"}
TINY = ["controlled.seeds=[0,1]", "diagnostics.center_bias.n_bootstrap=50", "diagnostics.center_bias.colours=[red,blue]",
        "controlled.spurious.size=45", "controlled.spurious.select_size=27", "controlled.spurious.random_seeds=[0,1]",
        "controlled.spurious.ks=[1,2]", "controlled.pruning.ks=[1,2]", "controlled.pruning.seeds=[0]",
        "controlled.segmentation.size=8",
        "controlled.mitigations.strengths=[0.5,1.0]", "controlled.mitigations.runs=1", "controlled.batch_size=32"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init tiny models for every variant, seed 0 and 1 (meanpool: seed 0 only), as the
    pretraining command lays them out."""
    root = tmp_path_factory.mktemp("weights")
    for v in VARIANTS:
        for s in ((0,) if v == "meanpool" else (0, 1)):
            torch.manual_seed(s)
            model = MODELS[v]
            d = variant_dir(root, v, s)
            sha = export_fp16(open_clip.create_model(model), d / f"{model}.safetensors")
            (d / f"{model}.record.json").write_text(json.dumps({"model": model, "weights": f"{model}.safetensors", "sha256": sha,
                                                                       "config": {"eval": {"max_tokens": 20}}}))
    return root


def test_every_experiment_writes_json_png_markdown(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dcsm.commands.controlled import main

    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "out"
    files = main([f"controlled.out_dir={out}", f"controlled.weights_dir={weights}", f"run_dir={tmp_path / 'run'}",
                  "logger.kind=wandb", "logger.mode=offline", *TINY])
    assert set(files) == {"center_bias", "mitigations", "spurious", "pruning", "segmentation"}
    for name, f in files.items():
        assert Path(f["json"]).parent == Path(f["png"]).parent == Path(f["md"]).parent == out
        assert Path(f["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        doc = json.loads(Path(f["json"]).read_text())
        assert doc["meta"]["experiment"] == name and f"controlled.experiments=[{name}]" in doc["meta"]["command"]
        assert doc["meta"]["command"] in Path(f["md"]).read_text()

    cb = json.loads(Path(files["center_bias"]["json"]).read_text())["result"]
    assert set(cb["runs"]) == {"centred", "meanpool", "uniform"} and cb["missing"] == ["meanpool_s1"]
    assert set(cb["runs"]["centred"]) == {"0", "1"} and set(cb["runs"]["meanpool"]) == {"0"}
    r0, r1 = (cb["runs"]["centred"][s]["clip"]["ratio"] for s in ("0", "1"))
    over = cb["over_seeds"]["centred"]["clip"]["ratio"]
    assert over["n"] == 2 and math.isclose(over["mean"], (r0 + r1) / 2)
    md = Path(files["center_bias"]["md"]).read_text()
    assert f"| centred | clip | 2 | {over['mean']:.2f} |" in md and "meanpool_s1" in md

    mit = json.loads(Path(files["mitigations"]["json"]).read_text())["result"]["runs"]["centred_s0"]
    assert [r["strength"] for r in mit["visual_prompt"]] == [0.0, 0.5, 1.0] == [r["strength"] for r in mit["attention"]]

    sp = json.loads(Path(files["spurious"]["json"]).read_text())["result"]
    assert sp["n_test"] == 45 and len(sp["ranking"]) == 16 and [a["k"] for a in sp["ablations"]] == [1, 2]
    assert sp["ablations"][1]["cue_heads"] == sp["ranking"][:2] and len(sp["ablations"][0]["random"]) == 2
    assert sum(map(sum, sp["baseline"]["group_n"])) == 45 and len(sp["top_heads"]) == 2
    a = sp["ablations"][0]
    assert math.isclose(a["worst_group_gain_over_random"], a["gain_worst_group"] - a["random_gain_worst_group"])
    assert f"{100 * a['worst_group_gain_over_random']:+.1f}" in Path(files["spurious"]["md"]).read_text()

    pr = json.loads(Path(files["pruning"]["json"]).read_text())["result"]
    assert set(pr) == {"centred_s0", "spurious_s0"} and pr["centred_s0"]["ks"] == [1, 2]
    assert set(pr["spurious_s0"]["baseline"]["clip"]["per_category"]) == {"aligned", "conflicting"}
    assert set(pr["centred_s0"]["baseline"]["clip"]["per_category"]) == {"centre", "border"}  # grid 5, centre_ring 1: nothing between
    assert len(pr["centred_s0"]["ranking"]) == 16 and pr["centred_s0"]["baseline"]["clip"]["n"] == 2 * 3 * 25

    seg = json.loads(Path(files["segmentation"]["json"]).read_text())["result"]["uniform_s0"]
    assert seg["n"] == 8 and 0 <= seg["miou"] <= 1 and 0 <= seg["centre_box_miou"] <= 1
    assert f"{seg['miou']:.3f}" in Path(files["segmentation"]["md"]).read_text()

    run = next((tmp_path / "run" / "wandb").glob("offline-run-*"))
    logged = {k for h in read_run(run)["history"] for k in h}
    for name in files:  # an image and the Markdown table per experiment landed in the offline run
        assert {f"controlled/{name}/figure/path", f"controlled/{name}/table/path"} <= logged
    assert list((run / "files" / "media" / "images").rglob("*.png"))


def test_a_missing_variant_is_one_error_line(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dcsm.commands.runner import USAGE_EXIT, run_command

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exc:
        run_command("dcsm.commands.controlled", [f"controlled.weights_dir={empty}", f"controlled.out_dir={tmp_path / 'o'}",
                                                  "controlled.experiments=[spurious]", "logger.kind=none"])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spurious" in err[0] and "Fix:" in err[0]
    assert find_weights(empty, "spurious", 0) is None


def test_statistics_helpers() -> None:
    s = seed_interval([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and math.isclose(s["ci"][1] - 2.0, 4.303 * 1.0 / math.sqrt(3))
    assert seed_interval([1.5])["ci"] == [None, None] and seed_interval([None])["mean"] is None
    correct = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=torch.bool)
    shape, cue = torch.arange(9) // 3, torch.arange(9) % 3  # one image per group
    g = group_accuracy(correct, shape, cue)
    assert g["worst_group"] == 0.0 and math.isclose(g["aligned"], 2 / 3, rel_tol=1e-6) and math.isclose(g["conflicting"], 4 / 6, rel_tol=1e-6)
    # the drawn mask covers the object's pixels: the scene's pixels there are the object's colour
    s = make_captioned_scene(3, seed=0, cfg=CaptionedConfig(kind_weights=(1, 0, 0, 0, 0), image_size=(64, 64)))
    m = object_mask(s.meta)
    assert m.shape == (64, 64) and 0 < m.float().mean() < 0.2
    assert iou(m[None], m[None]).item() == 1.0 and iou(m[None], ~m[None]).item() == 0.0


def _export_random_head(weights: Path, heads: Path, variant: str, seed: int, model_name: str | None = None) -> Path:
    """A random-init DCSM head on a run's encoder, exported where data_prep/controlled_heads.sh puts it."""
    from dcsm.checkpoints.export import export_head
    from dcsm.config import load_yaml, parse_cli, to_plain, CONFIG_DIR
    from dcsm.model.dcsm import build_dcsm
    from dcsm.model.encoders import EncoderSpec, FrozenCLIP

    model = model_name or MODELS[variant]
    wfile = variant_dir(weights, variant, seed) / f"{MODELS[variant]}.safetensors"
    cfg = to_plain(parse_cli(["--config", str(CONFIG_DIR / "controlled_head.yaml"), f"encoder.model={model}",
                              f"encoder.pretrained={wfile}"]))
    torch.manual_seed(seed)
    enc = FrozenCLIP(EncoderSpec(**cfg["encoder"]))
    export_head(build_dcsm(cfg, enc), cfg, variant_dir(heads, variant, seed) / "head")
    return variant_dir(heads, variant, seed) / "head.safetensors"


def test_dcsm_heads_are_scored_beside_clip_where_a_run_has_one(weights: Path, tmp_path: Path) -> None:
    from dcsm.commands.controlled import main

    heads = tmp_path / "heads"
    _export_random_head(weights, heads, "centred", 0)
    _export_random_head(weights, heads, "meanpool", 0)
    out = tmp_path / "out"
    files = main([f"controlled.out_dir={out}", f"controlled.weights_dir={weights}", f"controlled.heads_dir={heads}",
                  "controlled.experiments=[center_bias,mitigations,pruning]", "logger.kind=none",
                  "controlled.pruning.variants=[centred]", *TINY])
    doc = json.loads(Path(files["center_bias"]["json"]).read_text())
    cb = doc["result"]
    assert set(cb["runs"]["centred"]["0"]) == {"clip", "clip_zero_shot", "dcsm"}  # the run with a head
    assert set(cb["runs"]["centred"]["1"]) == {"clip", "clip_zero_shot"} == set(cb["runs"]["uniform"]["0"])  # without
    assert "dcsm" in cb["runs"]["meanpool"]["0"]
    over = cb["over_seeds"]["centred"]["dcsm"]["ratio"]
    assert over["n"] == 1 and over["mean"] == cb["runs"]["centred"]["0"]["dcsm"]["ratio"]
    assert "dcsm" not in cb["over_seeds"]["uniform"]
    d = cb["runs"]["centred"]["0"]["dcsm"]
    assert 0.0 <= d["acc"] <= 1.0 and f"| centred | 0 | dcsm | {100 * d['acc']:.1f} |" in Path(files["center_bias"]["md"]).read_text()
    assert doc["meta"]["weights"]["centred_s0"]["head"] == str(heads / "centred_s0" / "head.safetensors")
    mit = json.loads(Path(files["mitigations"]["json"]).read_text())["result"]["runs"]["centred_s0"]
    assert all("dcsm" in row["scores"] for rows in mit.values() for row in rows)
    pr = json.loads(Path(files["pruning"]["json"]).read_text())["result"]["centred_s0"]
    assert set(pr["curves"]) == {"clip", "dcsm"} and "| centred_s0 | dcsm | 1 |" in Path(files["pruning"]["md"]).read_text()


def test_a_head_trained_on_another_model_is_one_error_line(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dcsm.commands.runner import USAGE_EXIT, run_command

    heads = tmp_path / "heads"
    _export_random_head(weights, heads, "meanpool", 0, model_name="dcsm-tiny-ViT")  # a class-token head in meanpool's place
    with pytest.raises(SystemExit) as exc:
        run_command("dcsm.commands.controlled", [f"controlled.weights_dir={weights}", f"controlled.heads_dir={heads}",
                                                  f"controlled.out_dir={tmp_path / 'o'}", "controlled.experiments=[center_bias]",
                                                  "logger.kind=none", *TINY])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dcsm-tiny-ViT-avg" in err[0] and "Fix:" in err[0]


@pytest.mark.slow
def test_heads_script_trains_and_exports_a_head_the_experiments_load(weights: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from dcsm.diagnostics.controlled.models import load_head, load_variant

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "VARIANTS": "centred meanpool", "SEEDS": "0", "WEIGHTS_DIR": str(weights),
           "HEADS_DIR": str(tmp_path / "heads"), "RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    tiny = ["data.train_size=64", "data.val_size=16", "data.test_size=16", "trainer.max_epochs=1", "progress=false"]
    done = subprocess.run(["bash", "data_prep/controlled_heads.sh", *tiny], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for variant, model in (("centred", "dcsm-tiny-ViT"), ("meanpool", "dcsm-tiny-ViT-avg")):
        head_json = json.loads((tmp_path / "heads" / f"{variant}_s0" / "head.json").read_text())
        assert head_json["encoder"]["model"] == model
        assert head_json["encoder"]["pretrained"] == str(variant_dir(weights, variant, 0) / f"{model}.safetensors")
        enc, _ = load_variant(weights, variant, 0)
        scores = load_head(tmp_path / "heads", variant, 0, enc)(torch.rand(2, 3, 64, 64), [["a red square", "a blue circle"]] * 2)
        assert scores.shape == (2, 2) and torch.isfinite(scores).all()
    again = subprocess.run(["bash", "data_prep/controlled_heads.sh", *tiny], cwd=repo, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "skip centred_s0" in again.stdout  # a run with a head is not retrained
