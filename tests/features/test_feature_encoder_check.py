"""Feature shards carry their encoder in every sample; a run configured with another encoder
stops with one line naming the shard, the field, both values and the fix, manifest or not."""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from dcsm.commands.synthetic_shards import main as make_synthetic_shards
from dcsm.config import load_yaml, to_plain
from dcsm.train.shard_data import ShardDataConfig, ShardDataModule
from dcsm.model.encoders import FrozenCLIP
from dcsm.features.shards import EncoderMismatchError, feature_sample_pipeline
from dcsm.features.writer import cache_shards


@pytest.fixture(scope="module")
def encoder(vit_b32_encoder):
    """This file tests open_clip's own ViT towers (block names, 224 px, checkpoint formats)."""
    return vit_b32_encoder

REPO = Path(__file__).resolve().parents[2]
N, PER_SHARD = 4, 2


@pytest.fixture(scope="module")
def feat(tmp_path_factory: pytest.TempPathFactory, encoder: FrozenCLIP) -> Path:
    root = tmp_path_factory.mktemp("enc_check")
    make_synthetic_shards([f"synthetic_shards.out={root / 'raw'}", f"synthetic_shards.num_samples={N}",
                           f"synthetic_shards.samples_per_shard={PER_SHARD}", "synthetic_shards.image_size=32"])
    cache_shards(encoder, sorted(str(p) for p in (root / "raw").glob("shard-*.tar")), root / "feat", batch_size=8)
    return root / "feat"


def _encoder(encoder: FrozenCLIP, **change) -> SimpleNamespace:
    return SimpleNamespace(spec=type(encoder.spec)(**{**encoder.spec.to_dict(), **change}))


def _dm(urls: str, encoder, **data) -> ShardDataModule:  # noqa: ANN001
    cfg = to_plain(load_yaml(REPO / "configs" / "smoke_random.yaml"))
    cfg["data"].update(source="features", train_shards=urls, shuffle_buffer=0, batch_size=2, num_workers=0, **data)
    dm = ShardDataModule(ShardDataConfig.from_config(cfg), encoder)
    dm.trainer = SimpleNamespace(world_size=1, current_epoch=0, fit_loop=None)
    return dm


def _drop_encoder_records(src: Path, dst: Path) -> None:
    """A copy of a feature shard as an older dcsm wrote it (no KEY.encoder.json)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            if not m.name.endswith(".encoder.json"):
                tout.addfile(m, io.BytesIO(tin.extractfile(m).read()))


@pytest.mark.parametrize("change, message", [
    ({"seed": 1}, "encoder.seed: 0 in the shard, 1 configured"),
    ({"model": "ViT-B-16"}, "encoder.model: 'ViT-B-32' in the shard, 'ViT-B-16' configured"),
])
def test_features_of_another_encoder_are_refused_without_a_manifest(
    tmp_path: Path, feat: Path, encoder: FrozenCLIP, change: dict, message: str
) -> None:
    for name in ("shard-000000.tar", "shard-000001.tar"):
        shutil.copy(feat / name, tmp_path / name)  # tar paths, no manifest.json
    urls = str(tmp_path / "shard-{000000..000001}.tar")
    with pytest.raises(EncoderMismatchError) as err:
        _dm(urls, _encoder(encoder, **change), samples_per_epoch=N).setup("fit")
    text = str(err.value)
    assert "\n" not in text and "shard-000000.tar" in text and message in text and "cache_features.py" in text
    # every sample is checked while streaming too (shards past the first one, mixed folders)
    with pytest.raises(EncoderMismatchError, match="shard-00000"):
        list(feature_sample_pipeline(urls, encoder=_encoder(encoder, **change).spec.to_dict()))
    dm = _dm(urls, encoder, samples_per_epoch=N)  # the encoder they were cached with reads them
    dm.setup("fit")
    assert len([k for b in dm.train_dataloader() for k in b.extras["key"]]) == N


def test_shards_without_encoder_records_need_a_manifest(tmp_path: Path, feat: Path, encoder: FrozenCLIP,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "old"
    shutil.copytree(feat, old)
    for tar in old.glob("shard-*.tar"):
        _drop_encoder_records(feat / tar.name, tar)
    with caplog.at_level(logging.WARNING):
        dm = _dm(str(old), encoder)  # the folder's manifest.json names the encoder: read, with a warning
        dm.setup("fit")
        assert len([k for b in dm.train_dataloader() for k in b.extras["key"]]) == N
    assert any("no per-sample encoder record" in r.getMessage() for r in caplog.records)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(old / "shard-000000.tar", bare / "shard-000000.tar")
    with pytest.raises(EncoderMismatchError, match="carries no encoder record and no manifest.json"):
        _dm(str(bare / "shard-000000.tar"), encoder, samples_per_epoch=PER_SHARD).setup("fit")
