"""compile.head: off on CPU under auto, in place when on (checkpoint keys unchanged), bad values refused."""

from __future__ import annotations

import pytest
import torch

from dcsm.train.module import DCSMModule, compile_head
from dcsm.commands.runner import command_config
from tests.conftest import TINY_OVERRIDES


def test_compile_head_auto_is_off_on_cpu_and_on_keeps_state_dict_keys(encoder) -> None:  # noqa: ANN001
    cfg = command_config(TINY_OVERRIDES)
    assert cfg["compile"] == {"head": "auto", "mode": "default"}
    module = DCSMModule(cfg, encoder=encoder)
    keys = sorted(module.state_dict())
    assert not compile_head(module.head, "auto", "default", torch.device("cpu"))
    assert module.head._compiled_call_impl is None
    module.configure_model()  # no trainer: the module's device (cpu), auto -> off
    assert module.compiled is False
    assert compile_head(module.head, True, "default", torch.device("cpu"))  # lazy: compiles at the first call
    assert module.head._compiled_call_impl is not None and module.head.scorer._compiled_call_impl is not None
    assert sorted(module.state_dict()) == keys  # checkpoints are unchanged
    with pytest.raises(ValueError, match="compile.head"):
        compile_head(module.head, "yes", "default", torch.device("cpu"))
