"""Read what an offline W&B run left on disk: its ``run-*.wandb`` record log (config, summary and
history records; wandb 0.31 offline writes no ``wandb-summary.json``/``config.yaml`` until synced)
and its ``files/media`` folder."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Iterator

BLOCK, HEADER = 32768, 7  # LevelDB log blocks; ':W&B' + magic + version header; record header crc/len/type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def run_dirs(run_dir: Path) -> list[Path]:
    """The offline W&B run folders of a training ``run_dir``."""
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def records(wandb_file: Path) -> Iterator[Any]:
    """Every ``wandb_internal_pb2.Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = wandb_file.read_bytes()
    assert data[:4] == b":W&B", f"{wandb_file} is not a W&B record log"
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and n == 0:  # zero padding to the block end
            pos += left
            continue
        chunk, pos = data[pos + HEADER:pos + HEADER + n], pos + HEADER + n
        if kind in (FIRST, FULL):
            buf = chunk
        else:
            buf += chunk
        if kind in (FULL, LAST):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _finished(wandb_file: Path, timeout: float) -> None:
    """Wait until the run's ``exit`` record is on disk and the file stopped growing: the W&B
    service writes the log after ``wandb.finish()`` returns."""
    deadline = time.monotonic() + timeout
    size = -1
    while time.monotonic() < deadline:
        now = wandb_file.stat().st_size
        if now == size and any(r.WhichOneof("record_type") == "exit" for r in records(wandb_file)):
            return
        size = now
        time.sleep(0.5)
    raise AssertionError(f"{wandb_file} holds no exit record after {timeout:.0f} s: the run did not finish")


def read_run(offline_dir: Path, timeout: float = 60.0) -> dict[str, Any]:
    """``{"config": {key: value}, "summary": {key: value}, "history": [{key: value}]}`` of a
    finished offline run folder (values JSON-decoded; later updates win)."""
    wandb_file = next(offline_dir.glob("run-*.wandb"))
    _finished(wandb_file, timeout)
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for rec in records(wandb_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            config.update({_key(u): json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            config.update({_key(u): json.loads(u.value_json) for u in rec.config.update})
        elif kind == "summary":
            summary.update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
    return {"config": config, "summary": summary, "history": history}


def media(offline_dir: Path, kind: str, prefix: str) -> list[Path]:
    """Media files of ``kind`` (``images``, ``table``) logged under key ``prefix``."""
    return sorted((offline_dir / "files" / "media" / kind / prefix).rglob("*.*"))
