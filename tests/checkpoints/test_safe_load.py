"""Checkpoints load without running code from the file; bad files fail with one clear error."""

from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from dcsm.checkpoints.safe_load import CheckpointError, InertStub, UnsafeCheckpointError, read_checkpoint


class _Payload:
    """Pickles as a call to os.system: loading it with plain pickle would run the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"cfg": _Payload(marker)}}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt.*refused.*(posix|os|nt)\.system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_plain_weights_checkpoint_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.ckpt"
    sd = OrderedDict(w=torch.arange(3.0))
    torch.save({"state_dict": sd, "hyper_parameters": {"cfg": {"a": [1, 2], "b": None}}, "epoch": 3}, path)
    ck = read_checkpoint(path)
    assert torch.equal(ck["state_dict"]["w"], sd["w"]) and ck["hyper_parameters"]["cfg"] == {"a": [1, 2], "b": None}


def test_authors_pickle_loads_with_inert_tokenizer(tmp_path: Path) -> None:
    fake = types.ModuleType("transformers")
    tok_cls = type("CLIPTokenizer", (), {"__module__": "transformers"})
    fake.CLIPTokenizer = tok_cls
    sys.modules["transformers"] = fake
    try:
        tok = tok_cls()
        tok.vocab = {"a": 1}
        emb = nn.Embedding(11, 197)
        path = tmp_path / "dcsm_obja_ckpt.pt"
        torch.save({"model_state_dict": OrderedDict(w=torch.ones(2)), "clip_text_tokenizer": tok,
                    "external_logic_token_embeddings": emb, "train_loss": [0.5, 0.4]}, path)
    finally:
        del sys.modules["transformers"]
    ck = read_checkpoint(path)
    assert isinstance(ck["clip_text_tokenizer"], InertStub) and ck["clip_text_tokenizer"].state == {"vocab": {"a": 1}}
    assert isinstance(ck["external_logic_token_embeddings"], nn.Embedding)
    assert torch.equal(ck["external_logic_token_embeddings"].weight, emb.weight)


def test_other_module_classes_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "lin.pt"
    torch.save({"model_state_dict": {}, "learned_lookup": nn.Linear(2, 2)}, path)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        read_checkpoint(path)


@pytest.mark.parametrize("kind", ["empty", "text", "random", "truncated"])
def test_unreadable_files_name_the_file_and_the_fix(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "last.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        torch.save({"state_dict": {"w": torch.randn(1000)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "resume=null" in msg and "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")
