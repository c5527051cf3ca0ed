"""The map cache (data.cache=maps) and the batched in-memory loader: scores and a training
step from cached maps equal the embedding path within fp16 tolerance; map-defining config
mismatches and the paired loss are refused in one line; map shards round-trip."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import dcsm.commands.cache_features as cache_features_cmd
import dcsm.commands.synthetic_shards as make_synthetic_shards
import dcsm.commands.train as train_cmd
from dcsm.data.synthetic.dataset import SyntheticDataConfig
from dcsm.train.synthetic_data import SyntheticDataModule
from dcsm.train.shard_data import ShardDataConfig, ShardDataModule
from dcsm.model.encoders import EncoderSpec, FrozenCLIP
from dcsm.model.batch import FeatureBatch, collate_mcq
from dcsm.features.map_cache import MapBatch, MapCacheError, uses_map_cache
from dcsm.features.memory import FeatureDataset, place_caches
from dcsm.train.module import DCSMModule, mcq_loss
from dcsm.commands.runner import USAGE_EXIT, command_config, run_command

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
SMALL = ["data.train_size=24", "data.val_size=8", "data.shifted_size=8", "data.num_workers=0", "progress=false",
         "data.encode_batch_size=12", "data.batch_size=8", "logger.kind=none"]
# fp16 maps (z-scores up to ~5 -> ~2.5e-3 rounding) through a small CNN
ATOL = 1e-2


def _cfg(*over: str) -> dict:
    return command_config(["--config", str(SMOKE), *SMALL, *over])


@pytest.fixture(scope="module")
def toy() -> FrozenCLIP:
    return FrozenCLIP(EncoderSpec(**_cfg()["encoder"]))


def _train_set(cfg: dict, toy: FrozenCLIP) -> FeatureDataset:
    dm = SyntheticDataModule(SyntheticDataConfig.from_config(cfg), toy)
    dm.setup("fit")
    assert dm.cache_place == "cpu"
    return dm.datasets["train"]


@pytest.mark.parametrize("standardize", ["row", "row_level", "map"])
def test_map_cache_scores_and_training_step_equal_the_embedding_path(standardize: str, toy: FrozenCLIP) -> None:
    cfg_e, cfg_m = _cfg(f"maps.standardize={standardize}"), _cfg(f"maps.standardize={standardize}", "data.cache=maps")
    emb, maps = _train_set(cfg_e, toy), _train_set(cfg_m, toy)
    idx = [5, 0, 17, 3, 9, 11, 2, 23]
    fe, fm = emb.__getitems__(idx), maps.__getitems__(idx)
    assert isinstance(fe, FeatureBatch) and isinstance(fm, MapBatch)
    assert fm.maps.dtype == torch.float16 and fm.maps.shape == (8, 4, 20, toy.num_patches)
    assert torch.equal(fe.label, fm.label) and torch.equal(fe.extras["index"], fm.extras["index"])

    torch.manual_seed(0)
    module = DCSMModule(cfg_e, encoder=toy).eval()
    with torch.no_grad():
        torch.nn.init.normal_(module.head.pooled.scale, 1.0)  # the residual counts too (it starts at 0)
        se, sm = module.model(fe), module.model(fm)
        assert torch.allclose(module.model.maps(fe), module.model.maps(fm), atol=4e-3)  # fp16 rounding of z-scores
    assert se.shape == sm.shape == (8, 4) and se.std() > 1e-3
    assert torch.allclose(se, sm, atol=ATOL), (se - sm).abs().max()
    assert torch.equal(module.model.clip_scores(fm), module.model.clip_scores(fe))

    # one training step (dropout on, same RNG) from each cache: same loss, same updated head
    steps = []
    for f in (fe, fm):
        m = copy.deepcopy(module).train()
        opt = torch.optim.AdamW(m.head.parameters(), lr=1e-3)
        torch.manual_seed(1)
        loss, _ = mcq_loss(m.model, f)
        loss.backward()
        opt.step()
        steps.append((loss.detach(), [p.detach().clone() for p in m.head.parameters()]))
    (le, pe), (lm, pm) = steps
    assert torch.allclose(le, lm, atol=ATOL), (le, lm)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(pe, pm))
    assert any(not torch.equal(a, b) for a, b in zip(pe, module.head.parameters()))  # the step moved the head


def test_batched_loader_gathers_whole_batches_like_per_sample_collation(toy: FrozenCLIP) -> None:
    for cfg in (_cfg(), _cfg("data.cache=maps")):
        ds = _train_set(cfg, toy)
        idx = [3, 1, 20]
        whole = ds.__getitems__(idx)
        one_by_one = collate_mcq([ds[i] for i in idx])
        a, b = whole.tensors(), one_by_one.tensors()
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
        loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate_mcq)
        first = next(iter(loader))
        assert type(first) is type(whole) and torch.equal(first.label, ds.__getitems__(list(range(8))).label)
    assert place_caches([ds], "auto", torch.device("cpu"), 0.5) == "cpu"
    with pytest.raises(ValueError, match="data.cache_device"):
        place_caches([ds], "gpu", torch.device("cpu"), 0.5)


def test_feature_batch_copies_to_cuda_are_non_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    t = torch.zeros(2, 3)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **kw: seen.append(kw) or self)
    FeatureBatch.from_dict({k: t for k in ("patches", "image_pooled", "tokens", "token_mask", "token_ids",
                                           "text_pooled")}).to("cuda")
    assert seen and all(kw.get("non_blocking") is True for kw in seen)


def test_paired_loss_and_batch_standardisation_are_refused_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(MapCacheError, match="loss.kind=paired"):
        uses_map_cache(_cfg("data.cache=maps", "loss.kind=paired"))
    with pytest.raises(MapCacheError, match="maps.standardize=batch"):
        uses_map_cache(_cfg("data.cache=maps", "maps.standardize=batch"))
    assert not uses_map_cache(_cfg("loss.kind=paired"))  # embeddings: fine
    with pytest.raises(MapCacheError, match="data.cache_features=true"):  # never silently ignored
        uses_map_cache(_cfg("data.cache=maps", "data.cache_features=false"))
    with pytest.raises(SystemExit) as exc:
        run_command(train_cmd.main, ["--config", str(SMOKE), "data.cache=maps", "loss.kind=paired", "run_dir=/nonexistent/x"])
    assert exc.value.code == USAGE_EXIT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "loss.kind=paired" in err and "Fix:" in err


def test_map_shards_roundtrip_and_refuse_another_map_config(toy: FrozenCLIP, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    raw, feat, maps = tmp_path / "raw", tmp_path / "feat", tmp_path / "maps"
    make_synthetic_shards.main([f"synthetic_shards.out={raw}", "synthetic_shards.num_samples=6",
                                "synthetic_shards.samples_per_shard=3", "synthetic_shards.image_size=96",
                                "synthetic_shards.num_options=4", "progress=false"])
    monkeypatch.setattr(cache_features_cmd, "FrozenCLIP", lambda spec: toy)
    base = ["--config", str(SMOKE), f"cache_features.shards={raw}", "cache_features.device=cpu", "progress=false"]
    cache_features_cmd.main([*base, f"cache_features.out={feat}"])
    m = cache_features_cmd.main([*base, f"cache_features.out={maps}", "cache_features.kind=maps"])
    assert m["format"] == "dcsm.map_shards" and m["map_record"]["maps"]["standardize"] == "row" and m["num_samples"] == 6
    with pytest.raises(ValueError, match="cache_features.dtype=int8 is for embedding shards"):
        cache_features_cmd.main([*base, f"cache_features.out={tmp_path / 'x'}", "cache_features.kind=maps",
                                 "cache_features.dtype=int8"])
    with pytest.raises(ValueError, match="another encoder or cache kind"):  # a map folder is not overwritten by embeddings
        cache_features_cmd.main([*base, f"cache_features.out={maps}"])

    def stream(folder: Path, *over: str) -> list:
        cfg = _cfg("data.source=features", f"data.train_shards={folder}", "data.shuffle_buffer=0", *over)
        dm = ShardDataModule(ShardDataConfig.from_config(cfg), toy)
        dm.setup("fit")
        return sorted((b for b in dm.train_dataloader()), key=lambda b: b.extras["key"][0])

    fe = FeatureBatch.cat(stream(feat))
    fm = MapBatch.cat(stream(maps, "data.cache=maps"))
    order_e, order_m = list(fe.extras["key"]), list(fm.extras["key"])
    fm = MapBatch.from_dict({k: (v[[order_m.index(k2) for k2 in order_e]] if isinstance(v, torch.Tensor) else v)
                             for k, v in fm.tensors().items()})
    torch.manual_seed(0)
    module = DCSMModule(_cfg(), encoder=toy).eval()
    with torch.no_grad():
        assert torch.allclose(module.model(fe), module.model(fm), atol=ATOL)
        assert torch.allclose(module.model.clip_scores(fe), module.model.clip_scores(fm), atol=1e-6)

    with pytest.raises(ValueError, match=r"maps\.eps: 1e-06 in the cache, 1e-05 configured") as err:
        stream(maps, "data.cache=maps", "maps.eps=1e-5")
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)
    with pytest.raises(ValueError, match="functional_rows.seed"):
        stream(maps, "data.cache=maps", "functional_rows.seed=7")
    with pytest.raises(ValueError, match="not map shards"):
        stream(feat, "data.cache=maps")
    with pytest.raises(ValueError, match="holds map shards"):
        stream(maps)


@pytest.mark.slow
def test_train_py_runs_from_the_map_cache_end_to_end(tmp_path: Path) -> None:
    """train.py with data.cache=maps: fits, validates from the cached maps, writes metrics.json."""
    import json

    run_dir = tmp_path / "run"
    report = train_cmd.main(["--config", str(SMOKE), "data.cache=maps", "data.train_size=32", "data.val_size=8",
                             "data.shifted_size=8", "data.test_size=8", "data.heldout_size=8", "data.heldout_templates_size=8", "data.batch_size=16",
                             "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "logger.kind=csv", f"run_dir={run_dir}", "resume=null",
                             "progress=false", "eval.splits=[test]"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metrics"]["test"]["n"]["all"] == 8 and report["metrics"]["test"]["dcsm"]["all"] >= 0
    csv = next(run_dir.rglob("metrics.csv")).read_text()
    assert "val/acc" in csv and "val/clip_acc" in csv and "train/loss" in csv


def test_cache_device_auto_places_a_cache_that_fits_on_the_accelerator(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The CUDA decisions of data.cache_device, with the device's free memory and moves faked (no GPU here)."""
    ds = FeatureDataset(MapBatch(torch.zeros(4, 2, 3, 5, dtype=torch.float16), torch.ones(4, 2, 3, dtype=torch.bool),
                                 torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)))
    moves: list[str] = []
    monkeypatch.setattr(ds, "to_device", lambda device: moves.append(f"to {device}"))
    monkeypatch.setattr(ds, "pin", lambda: moves.append("pin"))
    cuda = torch.device("cuda", 0)
    nbytes = ds.nbytes()
    caplog.set_level("INFO", logger="dcsm.features.memory")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (4 * nbytes, 8 * nbytes))
    assert place_caches([ds], "auto", cuda, 0.5) == "cuda:0" and moves == ["to cuda:0"]
    assert "fits in 50% of cuda:0's free memory" in caplog.text and "kept there" in caplog.text
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (nbytes, 8 * nbytes))
    assert place_caches([ds], "auto", cuda, 0.5) == "pinned" and moves[-1] == "pin"
    assert "exceeds" in caplog.text and "pinned host memory" in caplog.text
    assert place_caches([ds], "accelerator", cuda, 0.5) == "cuda:0" and moves[-1] == "to cuda:0"
    assert place_caches([ds], "cpu", cuda, 0.5) == "pinned" and moves[-1] == "pin"


def _map_sample(k: int = 3, length: int = 5, p: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(k, length, dtype=torch.bool)
    mask[:, :3] = True
    return {"maps": torch.randn(k, length, p, generator=g), "token_mask": mask,
            "pooled_cos": torch.randn(k, generator=g), "label": torch.tensor(1)}


def _members(sample: dict) -> dict:
    from dcsm.features.map_cache import map_members

    members = map_members("s0", sample, {"captions": ["a", "b", "c"], "label": 1, "meta": {}}, {"model": "x"}, "d1")
    return {"__key__": "s0", **{name.split(".", 1)[1]: data for name, data in members}}


def test_map_shard_members_are_safetensors_read_without_pickle_and_equal_what_was_written() -> None:
    from dcsm.features.map_cache import MAP_EXT, decode_map_sample

    sample = _map_sample()
    raw = _members(sample)
    assert MAP_EXT == "maps.safetensors" and raw[MAP_EXT][8:9] == b"{"  # a JSON header, not a zip/pickle
    out = decode_map_sample(raw, digest="d1", categories=None)
    want = sample["maps"].half() * sample["token_mask"][..., None]
    assert torch.equal(out["maps"], want) and torch.equal(out["token_mask"], sample["token_mask"])
    assert torch.equal(out["pooled_cos"], sample["pooled_cos"]) and out["label"] == 1
    with pytest.raises(MapCacheError, match="another map config"):
        decode_map_sample(raw, digest="other", categories=None)


@pytest.mark.parametrize("damage", ["flip_tensor_byte", "truncate", "pickle_in_its_place", "empty", "huge_header"])
def test_a_damaged_or_foreign_map_member_is_a_skipped_sample_never_unpickled(damage: str) -> None:
    import pickle

    from dcsm.data.shards.format import SampleError
    from dcsm.features.map_cache import MAP_EXT, decode_map_sample

    raw = _members(_map_sample())
    data = bytearray(raw[MAP_EXT])
    if damage == "flip_tensor_byte":
        data[-3] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "pickle_in_its_place":
        data = bytearray(pickle.dumps({"maps": torch.zeros(2)}))
    elif damage == "empty":
        data = bytearray()
    else:
        data[:8] = (1 << 40).to_bytes(8, "little")
    raw[MAP_EXT] = bytes(data)
    with pytest.raises(SampleError, match=r"s0\.maps\.safetensors") as err:
        decode_map_sample(raw, digest="d1", categories=None)
    assert "\n" not in str(err.value)


def test_first_release_map_shards_still_read() -> None:
    """``KEY.maps.pth`` (a torch.save zip, read weights-only) as the first map cache wrote it."""
    import io

    from dcsm.data.shards.format import FORMAT_VERSION
    from dcsm.features.map_cache import LEGACY_MAP_EXT, MAP_EXT, decode_map_sample
    from dcsm.features.shards import tensor_checksum

    sample = _map_sample()
    raw = _members(sample)
    mask = sample["token_mask"]
    d = {"format_version": FORMAT_VERSION, "maps": sample["maps"][mask].half(), "token_mask": mask,
         "pooled_cos": sample["pooled_cos"], "label": torch.tensor(1), "record": "d1"}
    d["checksum"] = tensor_checksum(d)
    buf = io.BytesIO()
    torch.save(d, buf)
    del raw[MAP_EXT]
    raw[LEGACY_MAP_EXT] = buf.getvalue()
    out = decode_map_sample(raw, digest="d1", categories=None)
    assert torch.equal(out["maps"], sample["maps"].half() * mask[..., None])
