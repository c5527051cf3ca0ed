"""Test helpers that damage feature shards the way real storage and pipelines do: regroup
samples into uneven shards, cut a tar, overwrite or flip bytes of one sample's features,
append a sample twice, strip the checksum (a cache from before checksums)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Callable

import torch

from dcsm.data.shards import MANIFEST_NAME, write_tar
from dcsm.features.shards import CHECKSUM_KEY, FEATURE_EXT

Sample = list[tuple[str, bytes]]


def read_samples(tar_path: Path) -> list[Sample]:
    """The members of a tar grouped by key, in file order."""
    samples: list[Sample] = []
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            key = m.name.split(".", 1)[0]
            if not samples or samples[-1][0][0].split(".", 1)[0] != key:
                samples.append([])
            samples[-1].append((m.name, tar.extractfile(m).read()))
    return samples


def regroup(src: Path, out: Path, sizes: list[int]) -> Path:
    """Feature shards of ``sizes`` samples each (in key order) from ``src``, with a manifest."""
    samples = [s for p in sorted(src.glob("shard-*.tar")) for s in read_samples(p)]
    assert sum(sizes) <= len(samples)
    manifest = json.loads((src / MANIFEST_NAME).read_text())
    out.mkdir(parents=True)
    entries, start = [], 0
    for i, n in enumerate(sizes):
        name = f"shard-{i:06d}.tar"
        size = write_tar(out / name, [m for sample in samples[start:start + n] for m in sample])
        entries.append({"name": name, "count": n, "bytes": size, "skipped": 0, "source": "regrouped", "source_bytes": None})
        start += n
    manifest.update(shards=entries, num_shards=len(entries), num_samples=sum(sizes))
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    return out


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def rewrite(tar_path: Path, change: Callable[[list[Sample]], list[Sample]]) -> None:
    """Rewrite a shard's samples in place (the manifest is left as it was)."""
    write_tar(tar_path, [m for s in change(read_samples(tar_path)) for m in s])


def edit_feature_bytes(tar_path: Path, index: int, edit: Callable[[bytes, bytes], bytes]) -> str:
    """Change the raw serialized bytes of sample ``index``'s ``patches`` tensor inside its
    ``feat.pth`` (``edit(member_bytes, patches_bytes) -> member_bytes``); returns its key."""
    def change(samples: list[Sample]) -> list[Sample]:
        sample = samples[index]
        for j, (name, data) in enumerate(sample):
            if name.endswith(FEATURE_EXT):
                patches = torch.load(io.BytesIO(data), weights_only=True)["patches"].numpy().tobytes()
                assert data.count(patches) == 1
                sample[j] = (name, edit(data, patches))
        return samples
    key = read_samples(tar_path)[index][0][0].split(".", 1)[0]
    rewrite(tar_path, change)
    return key


def overwrite_ff(data: bytes, patches: bytes) -> bytes:
    """64 bytes of the tensor overwritten with 0xFF (fp16 NaN), as the issue's probe did."""
    at = data.index(patches)
    return data[:at] + b"\xff" * 64 + data[at + 64:]


def flip_bit(data: bytes, patches: bytes) -> bytes:
    """One bit of one feature value flipped (a finite value stays finite)."""
    at = data.index(patches) + 10
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def append_duplicate(tar_path: Path, index: int = 0) -> None:
    """Append sample ``index`` again at the end of the shard (same key)."""
    rewrite(tar_path, lambda samples: samples + [list(samples[index])])


def strip_checksums(tar_path: Path) -> None:
    """Re-save every ``feat.pth`` without its checksum (a shard cached before checksums)."""
    def change(samples: list[Sample]) -> list[Sample]:
        out = []
        for sample in samples:
            new = []
            for name, data in sample:
                if name.endswith(FEATURE_EXT):
                    d = torch.load(io.BytesIO(data), weights_only=True)
                    d.pop(CHECKSUM_KEY, None)
                    buf = io.BytesIO()
                    torch.save(d, buf)
                    data = buf.getvalue()
                new.append((name, data))
            out.append(new)
        return out
    rewrite(tar_path, change)
