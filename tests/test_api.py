"""dcsm.load -> Scorer: scores equal evaluate.py's for the same checkpoint and rows; shapes; no Lightning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dcsm
from dcsm.commands.evaluate import main as evaluate
from dcsm.data.benchmarks.dataset import load_items, styled_captions
from dcsm.data.benchmarks.items import open_item_image
from dcsm.model.heatmaps import spatial_heatmap
from tests.suite_helpers import REPO, draw_suite_tree, write_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, encoder):
    tmp = tmp_path_factory.mktemp("api")
    tree = draw_suite_tree(tmp / "data")
    ckpt = write_checkpoint(tmp / "run" / "checkpoints" / "best.ckpt", encoder)
    return tree, ckpt, dcsm.load(ckpt, device="cpu", batch_size=2)


def test_scores_equal_evaluate_for_the_same_rows(setup, tmp_path: Path) -> None:
    """Every row evaluate.py lists as a failure carries its DCSM and CLIP scores (max_failures
    covers all rows); the API gives the same numbers and the same accuracy."""
    tree, ckpt, scorer = setup
    for bench, ann, root in (("vg_attribution", tree / "visual_genome_attribution.json", tree / "VG_100K"),
                             ("sugarcrepe", tree / "sugarcrepe" / "swap_att.json", tree / "val2017"),
                             ("whatsup", tree / "controlled_images_dataset.json", tree)):
        rep = evaluate([f"eval.benchmark={bench}", f"eval.annotation_files=[{ann}]", f"eval.image_root={root}",
                        f"eval.checkpoint={ckpt}", f"eval.output={tmp_path / bench}.json", "eval.max_failures=1000",
                        "eval.num_workers=0", "eval.batch_size=3", "logger.kind=none"])
        items = [it for it in load_items(bench, [ann], root) if it.image_path is not None]
        images = [open_item_image(it) for it in items]  # VG-Attribution: cropped to its box
        options = [styled_captions(it, "raw", bench) for it in items]
        s = scorer.score_options(images, options)
        c = scorer.clip_score_options(images, options)
        assert s.shape == (len(items), len(options[0]))
        acc = (s.argmax(1) == torch.tensor([it.label for it in items])).float().mean().item()
        assert rep["metrics"]["dcsm"]["accuracy"] == pytest.approx(acc)
        by_row = {(f["source"], f["row"]): f for f in rep["failures"]}
        wrong = [i for i, it in enumerate(items) if int(s[i].argmax()) != it.label]
        assert len(by_row) == len(wrong)
        for i in wrong:
            f = by_row[(items[i].source, items[i].row)]
            assert f["dcsm_scores"] == pytest.approx(s[i].tolist(), abs=2e-4)
            assert f["clip_scores"] == pytest.approx(c[i].tolist(), abs=2e-4)


def test_score_all_pairs_maps_heatmaps(setup) -> None:
    tree, _, scorer = setup
    paths = sorted((tree / "val2017").glob("*.jpg")) + sorted((tree / "VG_100K").glob("*.jpg"))
    images = [*paths, scorer.preprocess(open_item_image_path(paths[0]))]  # a path, a path, a tensor
    caps = ["a red cube", "a dog to the left of a cat", "no cat", "the white shirt and the black pants", "a tree"]
    s = scorer.score(images, caps)
    assert s.shape == (3, 5)
    per = scorer.score_options(images, [caps] * 3)
    assert torch.allclose(s, per, atol=1e-5)
    assert torch.allclose(s[2], s[0], atol=1e-5)  # the tensor is the first image, preprocessed
    scorer.caption_chunk = 2  # chunking captions changes nothing
    assert torch.allclose(scorer.score(images, caps), s, atol=1e-5)
    opts = [caps[:2], caps[2:4], caps[3:5]]
    m = scorer.maps(images, opts)
    enc = scorer.model.encoder
    assert m.shape == (3, 2, enc.spec.max_tokens, enc.num_patches)
    h = scorer.heatmaps(images, opts)
    assert h.shape == (3, 2, *enc.grid_size)
    f = scorer.model.encode(scorer.images_tensor(images), opts)
    fr = scorer.model.head.functional_rows.index(f.token_ids) >= 0
    for b in range(3):
        for k in range(2):
            ref = spatial_heatmap(m[b, k], f.token_mask[b, k], enc.grid_size, enc.spec.keep_cls, fr[b, k])
            assert torch.allclose(h[b, k], torch.from_numpy(ref), atol=1e-5)
    with pytest.raises(ValueError, match="same number"):
        scorer.score_options(images, [caps[:2], caps[:3], caps[:2]])
    with pytest.raises(ValueError, match="one list of captions per image"):
        scorer.score_options(images, [caps])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scorer.score([tree / "absent.jpg"], caps)


def open_item_image_path(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def test_import_is_light_and_load_never_imports_lightning(setup, encoder) -> None:
    _, ckpt, _ = setup
    side = encoder.image_size[0]
    code = (
        "import sys, dcsm\n"
        "assert 'torch' not in sys.modules, 'import dcsm pulled torch'\n"
        f"s = dcsm.load({str(ckpt)!r}, device='cpu')\n"
        "import torch\n"
        f"print(tuple(s.score_options([torch.zeros(3, {side}, {side})], [['a', 'b']]).shape))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-2:] == ["(1, 2)", "[]"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dcsm.load(REPO / "absent.ckpt")
    with pytest.raises(AttributeError):
        dcsm.no_such_name  # noqa: B018
