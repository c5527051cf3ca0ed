"""Extra baselines: any open_clip model (ResNet, timm towers) scores by its pooled cosine, while the
DCSM patch/token path refuses such towers with one line naming what is unsupported."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dcsm.commands.train as train_cmd
from dcsm.eval.benchmark import run_benchmark
from dcsm.config import load_yaml, to_plain
from dcsm.model.encoders import EncoderSpec, FrozenCLIP, UnsupportedModelError
from dcsm.model.dcsm import build_dcsm
from dcsm.commands.runner import USAGE_EXIT, run_command
from tests.eval.test_benchmark_eval import B_PREPS, _controlled_rows

REPO = Path(__file__).resolve().parents[2]
RESNET = "RN50"
TIMM = "convnext_tiny"  # a timm ConvNeXt image tower with the built-in text tower: builds offline at random init
SEED = 0


@torch.no_grad()
def _hand_predictions(name: str, images: list[Path], options: list[list[str]]) -> list[int]:
    """Argmax of the pooled cosine, one image at a time, straight from open_clip (seeded random init
    as EncoderSpec.seed does)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    preds = []
    for image, opts in zip(images, options):
        img = F.normalize(model.encode_image(preprocess(Image.open(image).convert("RGB")).unsqueeze(0)), dim=-1)[0]
        txt = F.normalize(model.encode_text(tokenizer(opts)), dim=-1)
        preds.append(int((txt @ img).argmax()))
    return preds


def test_resnet_and_timm_baselines_score_a_drawn_benchmark(encoder: FrozenCLIP, tmp_path: Path) -> None:
    root = tmp_path / "data"
    rows = _controlled_rows([("cube", "sphere")], B_PREPS, "controlled_clevr", root)
    file_rows = [{"image_path": r["raw"], "caption_options": [r["captions"][r["true"]]]
                  + [c for k, c in enumerate(r["captions"]) if k != r["true"]]} for r in rows]
    ann = tmp_path / "controlled_clevr_dataset.json"
    ann.write_text(json.dumps(file_rows))
    cfg = to_plain(load_yaml(REPO / "configs" / "smoke_random.yaml"))
    torch.manual_seed(0)
    model = build_dcsm(cfg, encoder).eval()

    report = run_benchmark(
        model, "whatsup", [ann], root, prompt_style="raw", baselines=[f"{RESNET}:none", f"{TIMM}:none"], batch_size=4,
        num_workers=0, max_failures=0, output=tmp_path / "out.json", logger_cfg=None, progress=False,
    )
    assert report["scorers"] == ["dcsm", "clip", f"{RESNET}:none", f"{TIMM}:none"]
    images = [root / "controlled_clevr" / Path(r["raw"]).name for r in rows]
    options = [r["caption_options"] for r in file_rows]
    for name in (RESNET, TIMM):
        preds = _hand_predictions(name, images, options)
        got = report["metrics"][f"{name}:none"]
        assert got["n"] == 4
        assert got["accuracy"] == pytest.approx(sum(p == 0 for p in preds) / 4)  # label 0: the file's first option
        assert {g: v["accuracy"] for g, v in got["per_group"]["controlled_b"].items()} == pytest.approx(
            {r["group"]: float(p == 0) for r, p in zip(rows, preds)})
    md = (tmp_path / "out.md").read_text()
    assert f"{RESNET}:none" in md and f"{TIMM}:none" in md


def test_dcsm_path_refuses_resnet_and_convnext_towers_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(UnsupportedModelError) as err:
        FrozenCLIP(EncoderSpec(model=TIMM, pretrained=None))
    msg = str(err.value)
    assert "\n" not in msg and f"model '{TIMM}' is not supported for DCSM maps" in msg
    assert "(ConvNeXt normalises after pooling), so the feature map's positions have no well-defined projection" in msg
    assert f"eval.baselines=['{TIMM}:PRETRAINED']" in msg

    with pytest.raises(SystemExit) as exc:  # through the train command: exit 2, one line, nothing trained
        run_command(train_cmd.main, ["--config", "smoke_random", f"run_dir={tmp_path}", f"encoder.model={RESNET}",
                                     "logger.kind=none"])
    assert exc.value.code == USAGE_EXIT
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: model '{RESNET}' is not supported for DCSM maps: its ResNet tower pools with attention")
    assert f"eval.baselines=['{RESNET}:PRETRAINED']" in line and "Fix: encoder.model=" in line
    assert not (tmp_path / "checkpoints").exists()
