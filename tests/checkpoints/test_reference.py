"""The authors' checkpoint format loads into the reference preset and scores."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.features import encode_batch
from dcsm.checkpoints.reference import ReferenceCheckpointError, load_reference_checkpoint

RANDOM_CLIP = ["encoder.pretrained=null"]


class CrossModalConvNetwork(nn.Module):
    """Same parameter names and shapes as the authors' network (img_seq=197, text_seq=30)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 197 * 30, 128)
        self.fc2 = nn.Linear(128, 1)


@pytest.fixture(scope="module")
def b16() -> FrozenCLIP:
    return FrozenCLIP(EncoderSpec(model="ViT-B-16", pretrained=None, max_tokens=30, keep_cls=True, pad_rows="eot"))


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A file shaped like theirs, incl. a pickled object of a `transformers` class."""
    torch.manual_seed(0)
    net = CrossModalConvNetwork()
    emb = nn.Embedding(11, 197)
    with torch.no_grad():
        emb.weight = nn.Parameter((F.normalize(emb.weight, dim=1) + 1) / 3)
    fake = types.ModuleType("transformers")
    tokenizer_cls = type("CLIPTokenizer", (), {"__module__": "transformers"})
    fake.CLIPTokenizer = tokenizer_cls
    sys.modules["transformers"] = fake
    try:
        path = tmp_path_factory.mktemp("ref") / "dcsm_obja_ckpt.pt"
        torch.save({"epoch": 26, "model_state_dict": net.state_dict(), "optimizer_state_dict": {},
                    "clip_text_tokenizer": tokenizer_cls(), "external_logic_token_embeddings": emb,
                    "learned_lookup": None}, path)
    finally:
        del sys.modules["transformers"]  # loading must work without it
    return path, {"net": net.state_dict(), "rows": emb.weight.detach().clone()}


def test_authors_checkpoint_loads_weights_and_rows(authors_checkpoint, b16: FrozenCLIP) -> None:  # noqa: ANN001
    path, expected = authors_checkpoint
    module = load_reference_checkpoint(path, encoder=b16, overrides=RANDOM_CLIP)
    for k, v in expected["net"].items():
        assert torch.equal(module.head.scorer.state_dict()[k], v), k
    assert torch.equal(module.head.functional_rows.rows, expected["rows"])
    assert module.head.functional_rows.phrases[:3] == ("above", "below", "left")


def test_loaded_reference_model_scores_options(authors_checkpoint, b16: FrozenCLIP) -> None:  # noqa: ANN001
    module = load_reference_checkpoint(authors_checkpoint[0], encoder=b16, overrides=RANDOM_CLIP)
    batch = {"images": torch.randn(2, 3, 224, 224), "label": torch.tensor([0, 1]),
             "captions": [["An image of a mug above a table", "An image of a table above a mug"]] * 2}
    f = encode_batch(b16, batch)
    assert f.tokens.shape == (2, 2, 30, 512) and f.patches.shape == (2, 197, 512)
    assert f.token_mask.all()  # the reference keeps its EOT pad rows in the map
    with torch.no_grad():
        scores = module(f)
        maps = module.maps(f)
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()
    # per-image z-score over all of that image's maps (their evaluation), unbiased std
    assert maps[0].mean().abs() < 1e-5 and (maps[0].std() - 1).abs() < 1e-4
    above = module.head.functional_rows.phrases.index("above")
    idx = module.head.functional_rows.index(f.token_ids[0, 0])
    assert (idx == above).sum() == 1  # "above" marked at its BPE position


def test_not_a_reference_checkpoint(tmp_path: Path, b16: FrozenCLIP) -> None:
    bad = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ReferenceCheckpointError, match="missing field"):
        load_reference_checkpoint(bad, encoder=b16, overrides=RANDOM_CLIP)


def test_load_module_recognises_the_authors_format(authors_checkpoint, b16: FrozenCLIP) -> None:  # noqa: ANN001
    from dcsm.train.module import load_module

    module = load_module(str(authors_checkpoint[0]), encoder=b16)
    assert module.cfg["scorer"]["layout"] == "reference" and module.cfg["encoder"]["keep_cls"] is True
    assert torch.equal(module.head.functional_rows.rows, authors_checkpoint[1]["rows"])


def test_authors_checkpoint_with_a_nan_weight_is_refused(authors_checkpoint, b16: FrozenCLIP, tmp_path: Path) -> None:  # noqa: ANN001
    from dcsm.checkpoints.finite_load import NonFiniteCheckpointError
    from dcsm.checkpoints.safe_load import read_checkpoint

    raw = read_checkpoint(authors_checkpoint[0])
    raw["model_state_dict"]["fc1.weight"][0, 5] = float("nan")
    raw["clip_text_tokenizer"] = None  # the stand-in is not re-savable; the loader does not need it
    bad = tmp_path / "nan.pt"
    torch.save(raw, bad)
    with pytest.raises(NonFiniteCheckpointError, match=r"nan\.pt': head tensor 'scorer\.fc1\.weight' holds 1 NaN/inf"):
        load_reference_checkpoint(bad, encoder=b16, overrides=RANDOM_CLIP)


def test_authors_checkpoint_refuses_an_encoder_of_another_model(authors_checkpoint) -> None:  # noqa: ANN001
    # before: a grid mismatch read as a malformed file ("... has shape ..."); a same-grid model loaded
    toy = FrozenCLIP(EncoderSpec(model="dcsm-toy-ViT", pretrained=None, max_tokens=30, keep_cls=True, pad_rows="eot"))
    with pytest.raises(ValueError, match=r"trained on encoder.model=ViT-B-16, not on the encoder given \(dcsm-toy-ViT\)"):
        load_reference_checkpoint(authors_checkpoint[0], encoder=toy, overrides=RANDOM_CLIP)
