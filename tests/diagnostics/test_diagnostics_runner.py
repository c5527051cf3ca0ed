"""run_diagnostics end to end on a small random-init ViT: files, pruning identities, callback, W&B."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from dcsm.diagnostics.callback import DiagnosticsCallback
from dcsm.diagnostics.run import DiagnosticsConfigError, run_diagnostics
from dcsm.model.encoders import FrozenCLIP
from tests.diag_models import small_vit_encoder

REPO = Path(__file__).resolve().parents[2]


def small_cfg() -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "default.yaml")["diagnostics"], resolve=True)
    cfg["image_set"]["size"] = 12
    cfg["task"]["size"] = 12
    cfg["textspan"]["m"] = 4
    cfg["heads"]["top_k"] = 3
    cfg["pruning"].update(ks=[1, 4, 9, 100], seeds=[0, 1])
    cfg["batch_size"] = 6
    bank = REPO / "dcsm" / "diagnostics" / "data" / "text_bank.txt"
    cfg["text_bank"] = str(bank)
    return cfg


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> FrozenCLIP:
    return small_vit_encoder(tmp_path_factory.mktemp("cfg"), "dcsm-test-runner-ViT")


def patch_scorer(encoder: FrozenCLIP):
    """A stand-in for DCSM: scores from patch embeddings of the same (ablated) encoder."""
    def score(images: torch.Tensor, options: list[list[str]]) -> torch.Tensor:
        patches = encoder.encode_images(images).patches  # (N, P, D)
        flat = [c for o in options for c in o]
        txt = encoder.encode_texts(flat).pooled.view(len(options), len(options[0]), -1)
        return torch.einsum("npd,nkd->nkp", patches, txt).amax(dim=-1)
    return score


def test_all_diagnostics_write_files_and_pruning_identities(enc: FrozenCLIP, tmp_path: Path, monkeypatch) -> None:
    import dcsm.diagnostics.run as runner

    small_bank = load_small_bank(tmp_path)
    cfg = small_cfg() | {"text_bank": str(small_bank)}
    rep = run_diagnostics(["heads", "textspan", "pruning"], enc, cfg, tmp_path / "out", scorers={"patch": patch_scorer(enc)},
                          progress=False)
    out = tmp_path / "out"
    saved = json.loads((out / "diagnostics.json").read_text())
    assert saved["heads"]["ranking"] == rep["heads"]["ranking"] and len(rep["heads"]["ranking"]) == 9
    for png in ("head_scores.png", "pruning.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "textspan.md").read_text().splitlines()
    assert len(md) == 2 + 9 and md[2].startswith(f"| {rep['heads']['ranking'][0]} |")
    pr = rep["pruning"]
    assert pr["ks"] == [1, 4, 9]  # 100 > 9 heads: dropped
    assert len(pr["runs"]) == 3 * (2 + 2)
    for name in ("clip", "patch"):
        top_all = next(r for r in pr["runs"] if r["kind"] == "top" and r["k"] == 9)["scores"][name]
        assert top_all == pr["all_attention"][name]  # pruning every head == mean-ablating every attention layer
        rnd = pr["curves"][name]["random"]
        assert [p["n"] for p in rnd] == [2, 2, 2] and rnd[-1]["std"] == pytest.approx(0.0)  # all 9 heads: same set
        assert 0.0 <= pr["baseline"][name]["acc"] <= 1.0
        assert set(pr["baseline"][name]["per_category"]) <= {"binding", "spatial", "negation"}
    assert rep["meta"]["encoder"]["model"] == "dcsm-test-runner-ViT" and rep["meta"]["versions"]["open_clip"]


def load_small_bank(tmp_path: Path) -> Path:
    lines = (REPO / "dcsm" / "diagnostics" / "data" / "text_bank.txt").read_text().splitlines()
    p = tmp_path / "bank.txt"
    p.write_text("\n".join(lines[::40]) + "\n")  # ~76 texts spread over all groups
    return p


def test_errors(enc: FrozenCLIP, tmp_path: Path) -> None:
    with pytest.raises(DiagnosticsConfigError, match="unknown diagnostic 'centre'"):
        run_diagnostics(["centre"], enc, small_cfg(), tmp_path)
    cfg = small_cfg()
    del cfg["textspan"]
    with pytest.raises(DiagnosticsConfigError, match="'diagnostics.textspan' is missing"):
        run_diagnostics(["heads"], enc, cfg, tmp_path)


class HostModule(L.LightningModule):
    """A trivial module that carries what the diagnostics callback looks for (``encoder=`` or
    ``model=``) and trains one scalar, so a Trainer reaches validation end."""

    def __init__(self, **modules: torch.nn.Module) -> None:
        super().__init__()
        for name, module in modules.items():
            setattr(self, name, module)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", (self.w - batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_callback_runs_at_validation_end_and_logs_to_wandb_offline(enc: FrozenCLIP, tmp_path: Path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = small_cfg() | {"text_bank": str(load_small_bank(tmp_path))}
    cb = DiagnosticsCallback(["heads"], cfg, out_dir=tmp_path / "diag", every_n_epochs=1)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=2)
    logger = WandbLogger(project="dcsm-test", save_dir=str(tmp_path), mode="offline")
    trainer = L.Trainer(max_epochs=1, callbacks=[cb], logger=logger, enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(HostModule(encoder=enc), data, data)
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()
    assert (tmp_path / "diag" / "epoch_000" / "diagnostics.json").is_file()
    assert (tmp_path / "diag" / "epoch_000" / "head_scores.png").is_file()
    assert len(cb.reports) == 1 and "pruning" not in cb.reports[0]
    images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
    tables = list((run_dir / "files" / "media" / "table").rglob("*.table.json"))
    assert images and len(tables) >= 2  # head-score grid, head-score and TextSpan tables landed in the offline run
