"""Center-bias diagnostic: a planted centre-only CLIP, mitigation identities, determinism, the
centre/border statistics, the Cross-Eyed splits, files and the evaluate.py / callback entry points."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import lightning as L
import numpy as np
import open_clip
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from dcsm.diagnostics import center_bias as cbm
from dcsm.diagnostics.callback import DiagnosticsCallback
from dcsm.diagnostics.center_bias import run_mitigations, run_sweep
from dcsm.diagnostics.position_sweep import (
    CenterBiasConfigError,
    SweepConfig,
    cell_accuracy,
    centre_border_cells,
    centre_border_ratio,
    render_sweep,
)
from dcsm.diagnostics.cross_eyed import (centred_by_boxes, centred_by_file_name, objects_from_file_name,
                                         run_cross_eyed)
from dcsm.diagnostics.mitigations import MitigationError, attention_prior, redistribute_attention, visual_prompt
from dcsm.diagnostics.option_scoring import TextTable
from dcsm.diagnostics.run import run_diagnostics
from dcsm.model.encoders import EncoderSpec, FrozenCLIP, TextEmbeddings
from dcsm.model.dcsm import DCSM, build_head
from test_diagnostics_runner import HostModule
from tests.diag_models import small_vit_encoder

REPO = Path(__file__).resolve().parents[2]


def default_section() -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "default.yaml")["diagnostics"], resolve=True)
    return cfg


def tiny_section(**kw) -> dict:
    """A sweep of 3 x 3 cells x 2 objects; one strength per mitigation; 4 synthetic Cross-Eyed scenes."""
    s = copy.deepcopy(default_section()["center_bias"])
    s.update(grid=3, colours=["red", "blue"], shapes=["square"], object_size=0.2, num_options=2, n_bootstrap=50, **kw)
    s["mitigations"].update(prompt_strengths=[1.0], attention_strengths=[1.0])
    s["cross_eyed"]["synthetic"].update(size=4)
    return s


# ----------------------------------------------------------------------------- a planted CLIP
PLANTED = {  # 32 px, 8 px patches -> a 4 x 4 grid: one sweep cell per patch
    "embed_dim": 4,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 8, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 1, "layers": 1},
}
BG = (205, 205, 205)
COLOURS = ["red", "green", "blue"]
EPS = 0.01  # the class token's own (red) colour: what a pooling that sees no object reports


class PlantedCLIP(FrozenCLIP):
    """Image tower: patch colour minus background in 3 channels; the class token attends (almost)
    only to the 4 centre patches; pooled = their mean colour. Text tower: a colour's caption embeds
    as the pooled embedding of that colour drawn in a centre cell."""

    prototypes: dict[str, torch.Tensor] = {}

    def encode_texts(self, captions):  # noqa: D102 - planted
        base = super().encode_texts(captions)
        pooled = torch.stack([self.prototypes[next(c for c in COLOURS if c in cap)] for cap in captions])
        return TextEmbeddings(base.tokens, base.mask, base.ids, pooled)


def planted_section() -> dict:
    s = copy.deepcopy(default_section()["center_bias"])
    s.update(grid=4, centre_ring=1, object_size=0.25, colours=COLOURS, shapes=["square"], background=list(BG),
             background_jitter=0, position_jitter=0.0, render_size=32, num_options=3, n_bootstrap=200)
    return s


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> PlantedCLIP:
    path = tmp_path_factory.mktemp("planted") / "dcsm-test-planted.json"
    path.write_text(json.dumps(PLANTED))
    open_clip.add_model_config(path)
    enc = PlantedCLIP(EncoderSpec(model="dcsm-test-planted", pretrained=None, max_tokens=10))
    v = enc.model.visual
    for name in ("ln_pre", "ln_post"):
        setattr(v, name, torch.nn.Identity())
    blk = v.transformer.resblocks[0]
    blk.ln_1, blk.ln_2 = torch.nn.Identity(), torch.nn.Identity()
    mean, std = torch.tensor(open_clip.OPENAI_DATASET_MEAN), torch.tensor(open_clip.OPENAI_DATASET_STD)
    norm = lambda rgb: (torch.tensor(rgb, dtype=torch.float32) / 255 - mean) / std  # noqa: E731
    with torch.no_grad():
        for p in v.parameters():
            p.zero_()
        for c in range(3):  # channels 0..2: the patch's mean normalised colour
            v.conv1.weight[c, c] = 1.0 / 64
        from dcsm.data.synthetic.vocab import COLOURS as RGB
        v.class_embedding[:3] = EPS * (norm(RGB["red"]) - norm(BG))
        v.class_embedding[3] = 1.0  # query flag
        v.positional_embedding[1:, :3] = -norm(BG)  # background -> 0
        centre = torch.zeros(4, 4)
        centre[1:3, 1:3] = 1
        v.positional_embedding[1:, 4] = centre.flatten()  # key flag on the centre patches
        W = 8
        blk.attn.in_proj_weight[0, 3] = 10.0  # q <- query flag
        blk.attn.in_proj_weight[W, 4] = 10.0  # k <- centre flag: CLS->centre logit 100/sqrt(8)
        for c in range(3):
            blk.attn.in_proj_weight[2 * W + c, c] = 1.0  # v <- colour
            blk.attn.out_proj.weight[c, c] = 1.0
            v.proj[c, c] = 1.0
    enc.prototypes = {}
    for colour in COLOURS:
        im = Image.new("RGB", (32, 32), BG)
        ImageDraw.Draw(im).rectangle((8, 8, 15, 15), fill=RGB[colour])  # centre cell (1, 1)
        enc.prototypes[colour] = enc.encode_images(enc.preprocess(im)[None]).pooled[0]
    return enc


def test_planted_centre_pooling_has_ratio_above_one_and_attention_redistribution_moves_it_to_one(planted) -> None:
    cfg = SweepConfig.from_dict(planted_section())
    base = run_sweep(planted, cfg, None, 16)["scores"]
    for name in ("clip", "clip_zero_shot"):
        s = base[name]
        assert s["centre_acc"] == 1.0 and s["border_acc"] == pytest.approx(1 / 3)  # only the red objects at the border
        assert s["ratio"] == pytest.approx(3.0) and s["ratio"] > 1 and s["ratio_ci"][0] > 1
        assert s["n_centre"] == 4 * 3 and s["n_border"] == 12 * 3
    assert base["clip"]["cell_acc"][1][1] == 1.0 and base["clip"]["cell_acc"][0][0] == pytest.approx(1 / 3)
    for prior in ("uniform", "border"):
        full = run_sweep(planted, cfg, None, 16, attention={"strength": 1.0, "prior": prior, "layer": -1})["scores"]
        for name in ("clip", "clip_zero_shot"):
            assert abs(full[name]["ratio"] - 1) < abs(base[name]["ratio"] - 1)
            assert full[name]["ratio"] == pytest.approx(1.0) and full[name]["acc"] == 1.0
    half = run_sweep(planted, cfg, None, 16, attention={"strength": 0.5, "prior": "uniform", "layer": -1})["scores"]
    assert 1.0 <= half["clip"]["ratio"] < base["clip"]["ratio"]


def test_strength_zero_changes_no_number(planted) -> None:
    enc = planted
    cfg = SweepConfig.from_dict(planted_section())
    sweep = render_sweep(cfg, 32)
    x = torch.stack([enc.preprocess(im) for im in sweep.images])
    ref = enc.encode_images(x)
    with redistribute_attention(enc, 0.0, "border"):
        same = enc.encode_images(x)
    assert torch.equal(ref.pooled, same.pooled) and torch.equal(ref.patches, same.patches)
    with redistribute_attention(enc, 1.0, "uniform"):
        moved = enc.encode_images(x)
    assert not torch.allclose(ref.pooled, moved.pooled, atol=1e-3)
    torch.testing.assert_close(ref.patches, moved.patches)  # the CLS row only (per-head path: equal up to rounding)
    assert torch.equal(enc.encode_images(x).pooled, ref.pooled)  # hooks gone after the context
    im = sweep.images[5]
    assert np.array_equal(np.asarray(visual_prompt(im, (0, 0, 15, 15), 0.0)), np.asarray(im))
    drawn = np.asarray(visual_prompt(im, (0, 0, 15, 15), 1.0, colour=(0, 0, 0), shape="box", width=1))
    assert (drawn[0, :16] == 0).all() and np.array_equal(drawn[4:12, 4:12], np.asarray(im)[4:12, 4:12])
    half = np.asarray(visual_prompt(im, (0, 0, 15, 15), 0.5, colour=(0, 0, 0), shape="box", width=1))
    assert half[0, 0, 0] == round(BG[0] / 2)
    table = TextTable(enc, cfg.vocabulary())
    section = planted_section()["mitigations"] | {"prompt_strengths": [0.0], "attention_strengths": [0.0]}
    mit = run_mitigations(enc, cfg, section, None, 16, sweep, table, progress=False)
    base = run_sweep(enc, cfg, None, 16, sweep=sweep, table=table)["scores"]
    assert mit["visual_prompt"][0]["scores"] == base and mit["attention"][0]["scores"] == base


def test_mitigation_settings_are_checked(planted) -> None:
    with pytest.raises(MitigationError, match=r"attention strength=1.5 is outside \[0, 1\]"):
        with redistribute_attention(planted, 1.5):
            pass
    with pytest.raises(MitigationError, match="attention_layer=3 is out of range"):
        with redistribute_attention(planted, 0.5, layer=3):
            pass
    with pytest.raises(MitigationError, match="unknown attention prior 'centre'"):
        attention_prior((4, 4), "centre")
    w = attention_prior((4, 4), "border").view(4, 4)
    assert w.sum() == pytest.approx(1.0) and w[0, 0] == w.max() and w[1, 1] == w.min() and w[0, 0] == pytest.approx(2 * w[1, 1])  # d + 1/2: 2 vs 1
    bad = planted_section()
    bad["mitigations"]["prompt_strengths"] = [0.0, 2.0]
    with pytest.raises(CenterBiasConfigError, match="mitigations.prompt_strengths"):
        cbm.check_mitigations(bad["mitigations"])
    with pytest.raises(CenterBiasConfigError, match="object_size: 0.3 does not fit a cell"):
        SweepConfig.from_dict(planted_section() | {"object_size": 0.3})
    with pytest.raises(CenterBiasConfigError, match="centre_ring: 2 is not a ring"):
        SweepConfig.from_dict(planted_section() | {"centre_ring": 2})
    with pytest.raises(CenterBiasConfigError, match="colours: unknown or empty: \\['teal'\\]"):
        SweepConfig.from_dict(planted_section() | {"colours": ["red", "teal"]})


# ----------------------------------------------------------------------------- statistics and determinism
def test_centre_border_geometry_and_ratio_statistics() -> None:
    centre, border = centre_border_cells(5, 1)
    assert int(centre.sum()) == 9 and int(border.sum()) == 16 and not (centre & border).any()
    assert centre.view(5, 5)[1:4, 1:4].all() and border.view(5, 5)[0].all() and border.view(5, 5)[:, 4].all()
    centre2, _ = centre_border_cells(5, 2)
    assert centre2.nonzero().flatten().tolist() == [12]
    cells = torch.arange(25).repeat(4)  # 4 images per cell
    correct = torch.zeros(100, dtype=torch.bool)
    correct[centre[cells]] = True  # every centre image right
    correct[:50] |= border[cells[:50]]  # border images right in 2 of their 4 repeats
    s = centre_border_ratio(correct, cells, 5, 1, 500, 0.9, seed=0)
    assert (s["centre_acc"], s["border_acc"], s["ratio"], s["diff"]) == (1.0, 0.5, 2.0, 0.5)
    assert s["ratio_ci"][0] < 2.0 < s["ratio_ci"][1] and s["diff_ci"][0] < 0.5 < s["diff_ci"][1]
    assert s == centre_border_ratio(correct, cells, 5, 1, 500, 0.9, seed=0)  # seeded
    acc = cell_accuracy(correct, cells, 5)
    assert acc[2, 2] == 1.0 and acc[0, 0] == 0.5
    none = centre_border_ratio(correct & centre[cells], cells, 5, 1, 100, 0.9, seed=0)
    assert none["ratio"] is None and none["ratio_undefined"] == 100 and none["ratio_ci"] == [None, None]


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> FrozenCLIP:
    return small_vit_encoder(tmp_path_factory.mktemp("cfg"), "dcsm-test-center-ViT")


def test_sweep_is_deterministic_for_a_seed(enc: FrozenCLIP) -> None:
    s = tiny_section()
    cfg = SweepConfig.from_dict(s)
    a, b = render_sweep(cfg, 64), render_sweep(cfg, 64)
    assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images] and a.options == b.options
    assert len(a.images) == 9 * 2 and a.cells.tolist() == list(range(9)) * 2
    c = render_sweep(SweepConfig.from_dict(s | {"seed": 1}), 64)
    assert [im.tobytes() for im in c.images] != [im.tobytes() for im in a.images]
    r1 = run_sweep(enc, cfg, None, 8)
    r2 = run_sweep(enc, cfg, None, 8)
    assert r1 == r2


# ----------------------------------------------------------------------------- Cross-Eyed
def test_cross_eyed_split_by_file_name_and_by_boxes(tmp_path: Path, enc: FrozenCLIP) -> None:
    assert objects_from_file_name("data/controlled_images/beer-bottle_on_armchair.jpeg") == ("beer bottle", "armchair")
    assert centred_by_file_name("data/controlled_images/beer-bottle_on_armchair.jpeg")
    for name in ("mug_left_of_plate.jpeg", "mug_right_of_plate.jpeg", "mug_under_table.jpeg", "onion_left_of_bowl.jpeg"):
        assert not centred_by_file_name(name)
    with pytest.raises(ValueError, match="'mug.jpeg' is not <object1>_<relation>_<object2>"):
        objects_from_file_name("mug.jpeg")
    # 100 px image, central square of side 50: centres within [25, 75]
    assert centred_by_boxes([[40, 40, 60, 60], [60, 30, 76, 46]], 100, 0.5)  # centres (50, 50), (68, 38)
    assert not centred_by_boxes([[40, 40, 60, 60], [0, 40, 20, 60]], 100, 0.5)  # second centre x = 10
    assert centred_by_boxes([[15, 15, 35, 35]], 100, 0.5) and not centred_by_boxes([[14, 15, 34, 35]], 100, 0.5)
    # a WhatsUp file with drawn images: 1 centred (_on_), 2 off-centre, 1 row without an image
    rows = [{"image_path": f"data/controlled_images/{n}.jpeg", "caption_options": [f"{n} {i}" for i in range(4)]}
            for n in ("mug_on_table", "mug_left_of_plate", "cup_right_of_plate", "cup_on_table")]
    ann = tmp_path / "controlled_images_dataset.json"
    ann.write_text(json.dumps(rows))
    for n in ("mug_on_table", "mug_left_of_plate", "cup_right_of_plate"):
        (tmp_path / "controlled_images").mkdir(exist_ok=True)
        Image.new("RGB", (64, 64), (30 * len(n), 90, 120)).save(tmp_path / "controlled_images" / f"{n}.jpeg")
    cfg = tiny_section()["cross_eyed"] | {"annotation_files": [str(ann)], "image_root": str(tmp_path)}
    out = run_cross_eyed(enc, cfg, None, 8, 64)
    w = out["whatsup"]
    assert w["rows_without_image"] == 1
    clip = w["scores"]["clip"]
    assert (clip["n"], clip["n_centred"], clip["n_off_centre"]) == (3, 1, 2) and sum(clip["choices"].values()) == 3
    syn = out["synthetic"]["scores"]["clip"]
    assert syn["n"] == 4 and syn["n_centred"] + syn["n_off_centre"] == 4
    assert out["captions"] == ["a {o1} and a {o2}", "a {o1}", "a {o2}", "a cat and a refrigerator"]


# ----------------------------------------------------------------------------- files, runner, entry points
def small_dcsm(encoder: FrozenCLIP) -> DCSM:
    from dcsm.config import DEFAULT_CONFIG, load_yaml, to_plain

    cfg = to_plain(load_yaml(DEFAULT_CONFIG))
    torch.manual_seed(0)
    return DCSM(encoder, build_head(cfg, encoder)).eval()


def test_runner_writes_files_whose_figures_hold_the_json_numbers(enc: FrozenCLIP, tmp_path: Path, monkeypatch) -> None:
    import dcsm.diagnostics.plots as plots

    seen: dict[str, object] = {}
    for fn in ("cell_accuracy_heatmaps", "patch_heatmaps", "mitigation_curves"):
        real = getattr(plots, fn)
        monkeypatch.setattr(plots, fn, lambda *a, _real=real, _fn=fn, **k: seen.setdefault(_fn, copy.deepcopy(a)) and _real(*a, **k))
    cfg = default_section() | {"center_bias": tiny_section(), "batch_size": 8}
    model = small_dcsm(enc)
    grads_before = [p.grad for p in model.parameters()]
    rep = run_diagnostics(["center_bias"], enc, cfg, tmp_path / "out", scorers={"dcsm": model}, progress=False)
    assert [p.grad for p in model.parameters()] == grads_before  # attribution touches no parameter gradient
    out = tmp_path / "out"
    saved = json.loads((out / "diagnostics.json").read_text())["center_bias"]
    for png in ("center_bias_cells.png", "center_bias_patches.png", "center_bias_mitigations.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(saved["baseline"]) == {"clip_zero_shot", "clip", "dcsm"}
    cells, centre = seen["cell_accuracy_heatmaps"][:2]
    assert cells == {n: s["cell_acc"] for n, s in saved["baseline"].items()} and centre == saved["sweep"]["centre_cells"]
    maps = seen["patch_heatmaps"][0]
    assert maps["clip: patch contribution"] == saved["heatmaps"]["clip"]["patch_contribution"]
    assert maps["dcsm: grad x input"] == saved["heatmaps"]["dcsm"]["patch_attribution"]
    assert np.array(maps["dcsm: grad x input"]).shape == (4, 4)  # the small ViT's 4 x 4 patch grid
    assert seen["mitigation_curves"][0] == saved["mitigations"]
    ring = saved["heatmaps"]["dcsm"]["patch_attribution_ring_means"]  # 4 x 4 grid: border ring, inner 2 x 2
    grid = np.array(saved["heatmaps"]["dcsm"]["patch_attribution"])
    assert ring == pytest.approx([np.delete(grid.flatten(), [5, 6, 9, 10]).mean(), grid[1:3, 1:3].mean()])
    h = saved["heatmaps"]["clip"]
    assert h["mean_patch_sum"] == pytest.approx(np.array(h["patch_contribution"]).sum(), abs=1e-5)
    assert h["mean_cosine"] == pytest.approx(h["mean_patch_sum"] + h["mean_cls_position"] + h["mean_rest"])
    # the decomposition's parts add up to the CLIP cosine of pooled image and true caption
    sweep = render_sweep(SweepConfig.from_dict(tiny_section()), 64)
    x = torch.stack([enc.preprocess(im) for im in sweep.images])
    t = enc.encode_texts([o[0] for o in sweep.options]).pooled
    assert h["mean_cosine"] == pytest.approx(float((enc.encode_images(x).pooled * t).sum(-1).mean()), abs=1e-4)
    md = (out / "center_bias.md").read_text()
    assert "| clip | " in md and "| dcsm | " in md and "Cross-Eyed" in md
    assert rep["files"]["center_bias_cells_png"] == str(out / "center_bias_cells.png")


def test_evaluate_center_bias_writes_the_files(tmp_path: Path) -> None:
    from dcsm.commands.evaluate import main as evaluate

    rep = evaluate(["eval.diagnostics=[center_bias]", "encoder.model=dcsm-toy-ViT", "encoder.pretrained=null",
                    f"run_dir={tmp_path / 'bare'}", "diagnostics.batch_size=16", "diagnostics.center_bias.grid=3",
                    "diagnostics.center_bias.colours=[red,blue]", "diagnostics.center_bias.shapes=[circle]",
                    "diagnostics.center_bias.object_size=0.2", "diagnostics.center_bias.num_options=2",
                    "diagnostics.center_bias.n_bootstrap=20", "diagnostics.center_bias.mitigations.prompt_strengths=[0.5]",
                    "diagnostics.center_bias.mitigations.attention_strengths=[0.5]",
                    "diagnostics.center_bias.cross_eyed.synthetic.size=2"])
    out = tmp_path / "bare" / "diagnostics"
    files = rep["diagnostics"]["files"]
    assert Path(files["json"]) == out / "diagnostics.json"
    for f in ("center_bias_cells.png", "center_bias_patches.png", "center_bias_mitigations.png", "center_bias.md"):
        assert (out / f).is_file()
    saved = json.loads((out / "diagnostics.json").read_text())
    assert saved["center_bias"]["sweep"]["n_images"] == 9 * 2 and saved["center_bias"]["sweep"]["render_size"] == 96
    assert "heads" not in saved  # only what was asked for ran


def test_callback_logs_center_bias_images_to_wandb(enc: FrozenCLIP, tmp_path: Path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = default_section() | {"center_bias": tiny_section(), "batch_size": 8}
    cb = DiagnosticsCallback(["center_bias"], cfg, out_dir=tmp_path / "diag")
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=2)
    logger = WandbLogger(project="dcsm-test", save_dir=str(tmp_path), mode="offline")
    trainer = L.Trainer(max_epochs=1, callbacks=[cb], logger=logger, enable_progress_bar=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(HostModule(model=small_dcsm(enc)), data, data)
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()
    assert (tmp_path / "diag" / "epoch_000" / "center_bias_cells.png").is_file()
    rep = cb.reports[0]["center_bias"]
    assert set(rep["baseline"]) == {"clip_zero_shot", "clip", "dcsm"} and "dcsm" in rep["heatmaps"]
    images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
    assert len(images) >= 3  # cells, patches, mitigations
