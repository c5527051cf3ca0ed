"""Progress bars: on by default on the long loops (also when stderr is not a terminal), all off
with the one config key ``progress``."""

from __future__ import annotations

import pytest

from dcsm.data.synthetic.dataset import SyntheticDataConfig
from dcsm.train.synthetic_data import SyntheticDataModule
from dcsm.model.encoders import FrozenCLIP
from dcsm.eval.loop import evaluate_synthetic
from dcsm.model.dcsm import build_dcsm
from dcsm.commands.runner import command_config
from tests.conftest import TINY_OVERRIDES

TINY = ["data.val_size=4", "data.encode_batch_size=2", "data.num_workers=0", "data.image_size=64",
        *TINY_OVERRIDES]


def _encode_and_score(cfg: dict, encoder: FrozenCLIP) -> None:
    data = SyntheticDataConfig.from_config(cfg)
    features = SyntheticDataModule(data, encoder).build("val")  # the in-memory feature cache
    assert len(features) == 4
    model = build_dcsm(cfg, encoder).eval()
    evaluate_synthetic(model, data, ["val"], batch_size=2, device="cpu")


@pytest.mark.parametrize("flag", ["true", "false"])
def test_progress_key_switches_every_bar(flag: str, encoder: FrozenCLIP, capsys: pytest.CaptureFixture) -> None:
    cfg = command_config(TINY + [f"progress={flag}"])
    assert cfg["progress"] is (flag == "true")
    assert cfg["trainer"]["enable_progress_bar"] is (flag == "true")  # Lightning's bar follows the one key
    capsys.readouterr()
    _encode_and_score(cfg, encoder)
    err = capsys.readouterr().err
    if flag == "true":  # stderr is not a terminal here: the bars are written anyway
        assert "encoding val: 100%" in err and "2/2 [" in err
        assert "scoring val: 100%" in err
    else:
        assert "encoding val" not in err and "scoring val" not in err and "%|" not in err


def test_progress_is_on_by_default() -> None:
    cfg = command_config([])
    assert cfg["progress"] is True and cfg["trainer"]["enable_progress_bar"] is True


def test_progress_does_not_change_the_random_stream(encoder: FrozenCLIP) -> None:
    """Iterating a tqdm-wrapped DataLoader draws from the global RNG differently: the feature
    cache must leave it untouched, or a run's dropout (and its numbers) depend on ``progress``."""
    import torch

    states = []
    for flag in ("true", "false"):
        data = SyntheticDataConfig.from_config(command_config(TINY + [f"progress={flag}"]))
        torch.manual_seed(0)
        SyntheticDataModule(data, encoder).build("val")
        states.append(torch.get_rng_state())
    torch.manual_seed(0)
    assert torch.equal(states[0], states[1]) and torch.equal(states[0], torch.get_rng_state())
