"""Integrity: a flipped byte in a stored chunk is an error naming the array and chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zstore as zs
from zstore.arrays import StorageConfig
from zstore.cli import main
from zstore.errors import CorruptChunkError
from zstore.verify import verify_experiment

CONFIG = StorageConfig(shard_bytes=16 * 256 * 4, inner_rois=16, inner_frames=128)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_found_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X = np.random.default_rng(0).random((64, 256)).astype(np.float32)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E", config=CONFIG)
    exp.add_trial("t-005", zs.AnnotatedData(X))
    assert verify_experiment(exp) == []
    assert main(["verify", str(tmp_path / "e.zarr")]) == 0
    assert "every chunk reads back" in capsys.readouterr().out

    shard = tmp_path / "e.zarr/trials/t-005/X/c/1/0"  # the second shard: ROIs 16-31
    _flip(shard, 100)  # inside the first inner chunk's compressed bytes
    data = zs.open_experiment(tmp_path / "e.zarr").load_trial("t-005").data
    np.testing.assert_array_equal(data.X[:16].compute(), X[:16])  # other shards still read
    with pytest.raises(CorruptChunkError, match=r"trial 't-005' X .*failed its crc32c checksum"):
        data.X[16:32].compute()
    damage = verify_experiment(zs.open_experiment(tmp_path / "e.zarr"))
    assert [(d.trial, d.array, d.chunk) for d in damage] == [("t-005", "X", (1, 0))]
    assert main(["verify", str(tmp_path / "e.zarr")]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED trial 't-005' X chunk 1.0: checksum mismatch" in out


def test_a_damaged_shard_index_loses_the_shard_but_says_so(tmp_path: Path) -> None:
    X = np.random.default_rng(1).random((32, 256)).astype(np.float32)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E", config=CONFIG)
    exp.add_trial("t", zs.AnnotatedData(X))
    shard = tmp_path / "e.zarr/trials/t/X/c/0/0"
    _flip(shard, shard.stat().st_size - 10)  # the index sits at the end of the shard
    damage = verify_experiment(zs.open_experiment(tmp_path / "e.zarr"))
    assert damage and {d.array for d in damage} == {"X"}
    assert all(d.chunk[0] == 0 for d in damage)
