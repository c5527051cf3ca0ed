"""SigLIP2, PE-Core, EVA02 and MobileCLIP2 under the DCSM head (issue 25).

Fast tests use small random-init stand-ins with the families' real open_clip configs and timm
entry points (tests/encoder_families.py); one slow test builds the real configs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from dcsm.commands.evaluate import main as evaluate_main
from dcsm.commands.train import main as train_main
from dcsm.config import load_yaml, to_plain
from dcsm.model.encoder_towers import COSINE_LOGIT, SIGMOID_LOGIT, TimmTokenTower
from dcsm.model.encoders import EncoderSpec, FrozenCLIP, UnsupportedModelError
from dcsm.features.shards import encoder_mismatch, feature_manifest
from dcsm.model.dcsm import build_dcsm
from dcsm.commands.runner import USAGE_EXIT, run_command
from tests.model import encoder_families as ef
from tests.suite_helpers import draw_suite_tree

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke_random.yaml"
FAMILIES = list(ef.TRUNKS)
NON_CAUSAL = ("SigLIP2", "MobileCLIP2")  # no_causal_mask: true in their open_clip configs
CAPS = ["a red square to the left of a blue circle", "no dog", "a cup"]
OTHERS = ["a big green triangle above a small yellow star and a purple hexagon", "two cats"]

_BUILT: dict[str, FrozenCLIP] = {}


def enc_of(family: str, **spec) -> FrozenCLIP:
    """One small encoder per family per session (building takes ~0.5 s, MobileCLIP2 ~2 s)."""
    key = f"{family}{sorted(spec.items())}"
    if key not in _BUILT:
        _BUILT[key] = FrozenCLIP(EncoderSpec(model=ef.name(family), pretrained=None, max_tokens=12, **spec))
    return _BUILT[key]


def images(enc: FrozenCLIP, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, *enc.image_size, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ pooled equality, patch paths
@pytest.mark.parametrize("family", FAMILIES)
def test_pooled_embeddings_equal_open_clip(family: str) -> None:
    enc = enc_of(family)
    x = images(enc)
    emb = enc.encode_images(x)
    assert emb.patches.shape == (2, 16, enc.embed_dim)  # 64 px / 16 (ViTs), 128 px / 32 (FastViT): 4 x 4
    assert torch.allclose(emb.pooled, F.normalize(enc.model.encode_image(x), dim=-1), atol=1e-5)
    assert torch.allclose(emb.patches.norm(dim=-1), torch.ones(2, 16), atol=1e-5)
    txt = enc.encode_texts(CAPS)
    assert torch.allclose(txt.pooled, F.normalize(enc.model.encode_text(enc.tokenize(CAPS)), dim=-1), atol=1e-5)
    assert txt.mask.sum(1).tolist() == [12, 4, 4]  # SOT + words + EOT (CLIP BPE)
    norms = txt.tokens.norm(dim=-1)
    assert torch.allclose(norms[txt.mask], torch.ones(int(txt.mask.sum())), atol=1e-5) and torch.all(norms[~txt.mask] == 0)


def test_towers_are_described_per_family() -> None:
    got = {f: (enc_of(f).towers["pooling"], enc_of(f).towers["text_causal"], enc_of(f).towers["baseline_logit"]) for f in FAMILIES}
    assert got == {
        "SigLIP2": ("MAP head", False, SIGMOID_LOGIT),
        "PE-Core": ("MAP head", True, COSINE_LOGIT),
        "EVA02": ("class token", True, COSINE_LOGIT),
        "MobileCLIP2": ("average", False, COSINE_LOGIT),
    }


@pytest.mark.parametrize("family", ["SigLIP2", "PE-Core"])
def test_map_head_patch_is_the_head_on_that_token_alone(family: str) -> None:
    """MAP pooling of a one-token sequence is exactly "attention = identity": a patch's embedding
    equals the tower's own pooled output for that token alone."""
    enc = enc_of(family)
    tower = enc.image_tower
    assert isinstance(tower, TimmTokenTower)
    trunk, head = enc.model.visual.trunk, enc.model.visual.head
    x = images(enc, 1)
    with torch.no_grad():
        tokens = trunk.forward_features(x)
        for i in (0, 5, 15):
            j = tower.num_prefix + i
            alone = head(trunk.forward_head(tokens[:, j : j + 1]))  # attn pool over the single token
            assert torch.allclose(enc.encode_images(x).patches[0, i], F.normalize(alone[0], dim=-1), atol=1e-5)


def test_class_token_patch_is_the_pooled_path_applied_to_patches() -> None:
    enc = enc_of("EVA02")
    trunk, head = enc.model.visual.trunk, enc.model.visual.head
    x = images(enc, 1)
    with torch.no_grad():
        tokens = trunk.forward_features(x)
        manual = head(trunk.head(trunk.fc_norm(tokens[:, trunk.num_prefix_tokens:])))
        assert torch.allclose(head(trunk.head(trunk.fc_norm(tokens[:, 0]))), enc.model.encode_image(x), atol=1e-5)
    assert torch.allclose(enc.encode_images(x).patches, F.normalize(manual, dim=-1), atol=1e-5)


def test_conv_trunk_positions_average_to_the_pooled_embedding() -> None:
    """MobileCLIP2 (FastViT): each position through the linear fc; their mean is encode_image."""
    enc = enc_of("MobileCLIP2")
    x = images(enc)
    with torch.no_grad():
        pooled, patches = enc.image_tower(x)  # not normalised
    assert patches.shape == (2, 16, enc.embed_dim)
    assert torch.allclose(patches.mean(dim=1), enc.model.encode_image(x), atol=1e-5)
    assert torch.allclose(pooled, enc.model.encode_image(x), atol=1e-5)


# ------------------------------------------------------------------ text: causal or not
@pytest.mark.parametrize("family", NON_CAUSAL)
def test_non_causal_caption_tokens_do_not_depend_on_the_batch(family: str) -> None:
    enc = enc_of(family)
    alone = enc.encode_texts(CAPS[1:2])
    for batch in (CAPS, [OTHERS[0], CAPS[1]], [CAPS[1], *OTHERS]):
        got = enc.encode_texts(batch)
        i = batch.index(CAPS[1])
        assert torch.allclose(got.tokens[i], alone.tokens[0], atol=1e-6)
        assert torch.allclose(got.pooled[i], alone.pooled[0], atol=1e-6)


@pytest.mark.parametrize("family", NON_CAUSAL)
def test_non_causal_tower_runs_the_full_context(family: str) -> None:
    """No causal-prefix shortcut: the tokens equal the tower's own full-context forward, and running
    only the first n positions would give other tokens (the shortcut is wrong here)."""
    enc = enc_of(family)
    text = enc.model.text
    ids = enc.tokenize(CAPS)
    assert ids.shape[1] == text.context_length
    text.output_tokens = True
    try:
        _, full = text(ids)
    finally:
        text.output_tokens = False
    ref = F.normalize(enc.text_tower.project(full), dim=-1)[:, :12]
    got = enc.encode_texts(CAPS)
    assert torch.allclose(got.tokens[got.mask], ref[got.mask], atol=1e-5)
    n = int(enc.lengths(ids).max())
    short, _ = enc.text_tower(ids, n)
    assert not torch.allclose(F.normalize(short, dim=-1)[got.mask[:, :n]], ref[:, :n][got.mask[:, :n]], atol=1e-3)


@pytest.mark.parametrize("family", ["PE-Core", "EVA02"])
def test_causal_prefix_shortcut_is_exact(family: str) -> None:
    enc = enc_of(family)
    ids = enc.tokenize(CAPS)
    text = enc.model.text
    text.output_tokens = True
    try:
        _, full = text(ids)
    finally:
        text.output_tokens = False
    ref = F.normalize(enc.text_tower.project(full), dim=-1)[:, :12]
    got = enc.encode_texts(CAPS)
    assert torch.allclose(got.tokens[got.mask], ref[got.mask], atol=1e-5)


def test_siglip2_dcsm_scores_do_not_depend_on_the_other_captions() -> None:
    """Acceptance: a random-init SigLIP2-architecture DCSM head scores a caption the same whatever
    the other captions of the batch are."""
    enc = enc_of("SigLIP2")
    model = build_dcsm(to_plain(load_yaml(SMOKE)), enc).eval()
    x = images(enc, 2)
    a = model(x, [[CAPS[0], CAPS[1]], [CAPS[2], CAPS[1]]])
    b = model(x, [[CAPS[0], OTHERS[0]], [OTHERS[1], CAPS[1]]])
    assert torch.allclose(a[0, 0], b[0, 0], atol=1e-5) and torch.allclose(a[1, 1], b[1, 1], atol=1e-5)


class _LocalTokenizer:
    """A stand-in for a local non-CLIP (SentencePiece-style) tokenizer: word ids from 3 up, EOS=1,
    pad 0 to the context length, as open_clip's HFTokenizer pads."""

    def __init__(self, context_length: int) -> None:
        self.context_length = context_length

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for r, t in enumerate(texts):
            ids = [3 + (sum(map(ord, w)) % 4000) for w in t.split()][: self.context_length - 1] + [1]
            out[r, : len(ids)] = torch.tensor(ids)
        return out


def test_siglip2_architecture_with_a_local_tokenizer() -> None:
    """Lengths/masks come from the pad id for a non-CLIP tokenizer (last pooling), pooled equal."""
    enc = FrozenCLIP(EncoderSpec(model=ef.name("SigLIP2"), pretrained=None, max_tokens=12))
    enc.tokenizer = _LocalTokenizer(enc.context_length)
    got = enc.encode_texts(CAPS)
    assert got.mask.sum(1).tolist() == [11, 3, 3]  # words + EOS, no SOT
    assert torch.allclose(got.pooled, F.normalize(enc.model.encode_text(enc.tokenize(CAPS)), dim=-1), atol=1e-5)
    alone = enc.encode_texts(CAPS[1:2])
    assert torch.allclose(got.tokens[1], alone.tokens[0], atol=1e-6)


def test_siglip2_tokenizer_needs_its_files_or_says_how() -> None:
    """The real SigLIP2 name asks for its Hugging Face tokenizer; offline or without transformers
    that is one EncoderLoadError naming encoder.tokenizer, not a traceback from the hub."""
    from dcsm.model.encoders import EncoderLoadError, load_tokenizer

    try:
        tok = load_tokenizer(EncoderSpec(model="ViT-B-16-SigLIP2", pretrained=None), None)
    except EncoderLoadError as err:
        assert "encoder.tokenizer=<dir>" in str(err) and "\n" not in str(err)
    else:  # the files are cached here: the real tokenizer
        assert not isinstance(tok, open_clip.tokenizer.SimpleTokenizer)
    with pytest.raises(EncoderLoadError, match="another vocabulary"):
        load_tokenizer(EncoderSpec(model="ViT-B-16-SigLIP2", pretrained="webli", tokenizer="ViT-B-16"), None)


# ------------------------------------------------------------------ options and refusals
def test_trunk_tokens_option() -> None:
    enc = enc_of("SigLIP2", patch_source="trunk")  # timm_proj none: trunk width == joint width
    x = images(enc, 1)
    with torch.no_grad():
        tokens = enc.model.visual.trunk.forward_features(x)
    assert torch.allclose(enc.encode_images(x).patches, F.normalize(tokens, dim=-1), atol=1e-5)
    with pytest.raises(UnsupportedModelError, match="64-d but its joint space is 48-d"):
        FrozenCLIP(EncoderSpec(model=ef.name("PE-Core"), pretrained=None, patch_source="trunk"))


def test_unsupported_towers_say_why_in_one_line() -> None:
    for model, why in (("RN50", "attention"), (ef.name("ConvNeXt"), "ConvNeXt normalises after pooling")):
        with pytest.raises(UnsupportedModelError, match=why) as err:
            FrozenCLIP(EncoderSpec(model=model, pretrained=None))
        assert "\n" not in str(err.value) and "eval.baselines" in str(err.value)


def test_eot_pad_rows_refused_for_non_causal_towers() -> None:
    with pytest.raises(UnsupportedModelError, match="pad_rows=zero"):
        FrozenCLIP(EncoderSpec(model=ef.name("SigLIP2"), pretrained=None, pad_rows="eot"))


def test_feature_cache_records_and_refuses_new_fields() -> None:
    enc = enc_of("SigLIP2")
    manifest = feature_manifest(enc)
    assert manifest["encoder"]["patch_source"] == "joint" and manifest["encoder"]["tokenizer"] is None
    assert encoder_mismatch(manifest["encoder"], enc) == []
    other = enc_of("SigLIP2", patch_source="trunk")
    assert encoder_mismatch(manifest["encoder"], other) == ["patch_source: 'joint' in the features, 'trunk' configured"]
    old = {k: v for k, v in manifest["encoder"].items() if k not in ("patch_source", "tokenizer")}  # older caches
    assert encoder_mismatch(old, enc) == []


# ------------------------------------------------------------------ train.py / evaluate.py
TINY = ["data.train_size=8", "data.val_size=4", "data.test_size=4", "data.shifted_size=4", "data.batch_size=4",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "optim.warmup_steps=1", "logger.kind=none",
        "encoder.max_tokens=12", "progress=false"]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_train_and_evaluate_each_family(family: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    report = train_main(["--config", str(SMOKE), f"run_dir={run}", f"encoder.model={ef.name(family)}", "encoder.pretrained=null", *TINY])
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["model"] == ef.name(family) and saved["clip_logit"] == enc_of(family).towers["baseline_logit"]
    assert saved["encoder_towers"]["pooling"] == enc_of(family).towers["pooling"]
    for split in ("test", "shifted"):
        assert saved["metrics"][split]["n"]["all"] == 4
        assert 0.0 <= saved["metrics"][split]["dcsm"]["all"] <= 1.0
    if family != "SigLIP2":
        return
    tree = draw_suite_tree(tmp_path / "data")  # a fixture WhatsUp benchmark: evaluate.py on the checkpoint
    out = tmp_path / "whatsup.json"
    rep = evaluate_main(["eval.benchmark=whatsup", f"eval.annotation_files=[{tree / 'controlled_images_dataset.json'}]",
                         f"eval.image_root={tree}", f"eval.checkpoint={report['checkpoint']}", f"eval.output={out}",
                         "eval.num_workers=0", "eval.batch_size=3", "logger.kind=none"])
    assert json.loads(out.read_text())["clip_logit"] == SIGMOID_LOGIT
    assert rep["n_scored"] > 0 and 0.0 <= rep["metrics"]["dcsm"]["accuracy"] <= 1.0


def test_unsupported_family_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_command(train_main, ["--config", str(SMOKE), f"run_dir={tmp_path}", "encoder.model=RN50", "encoder.pretrained=null", *TINY])
    assert exit_.value.code == USAGE_EXIT
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "RN50" in err[0] and "attention" in err[0] and "Fix:" in err[0]


# ------------------------------------------------------------------ the real configs (slow)
@pytest.mark.slow
@pytest.mark.parametrize("model", ["ViT-B-16-SigLIP2", "PE-Core-B-16", "EVA02-B-16", "MobileCLIP2-S0"])
def test_real_configs_pooled_equality(model: str) -> None:
    logging.disable(logging.WARNING)
    try:
        spec = EncoderSpec(model=model, pretrained=None, max_tokens=16, tokenizer="ViT-B-16" if "SigLIP" in model else None)
        enc = FrozenCLIP(spec)
    finally:
        logging.disable(logging.NOTSET)
    x = images(enc, 1)
    emb = enc.encode_images(x)
    g = enc.grid_size
    assert emb.patches.shape == (1, g[0] * g[1], enc.embed_dim)
    assert torch.allclose(emb.pooled, F.normalize(enc.model.encode_image(x), dim=-1), atol=1e-5)
    txt = enc.encode_texts(CAPS[:2])
    assert torch.allclose(txt.pooled, F.normalize(enc.model.encode_text(enc.tokenize(CAPS[:2])), dim=-1), atol=1e-5)


def test_head_diagnostics_refuse_timm_towers_in_one_line() -> None:
    from dcsm.diagnostics.hook_points import HookError, hook_point_names

    with pytest.raises(HookError, match="VisionTransformer blocks; this model's image tower is a TimmModel") as err:
        hook_point_names(enc_of("EVA02"))
    assert "\n" not in str(err.value)


def test_baseline_uses_the_models_own_logit() -> None:
    """SigLIP: logit_scale * cos + logit_bias (what its sigmoid loss scores); CLIP-style: the cosine."""
    for family, siglip in (("SigLIP2", True), ("EVA02", False)):
        enc = enc_of(family)
        model = build_dcsm(to_plain(load_yaml(SMOKE)), enc).eval()
        f = model.encode(images(enc), [CAPS, CAPS[::-1]])
        cos = torch.einsum("nd,nkd->nk", f.image_pooled.float(), f.text_pooled.float())
        got = model.baseline_scores(f)
        m = enc.model
        want = m.logit_scale.exp() * cos + m.logit_bias if siglip else cos
        assert torch.allclose(got, want, atol=1e-5) and torch.equal(got.argmax(1), cos.argmax(1))
        assert siglip == (not torch.allclose(got, cos))
