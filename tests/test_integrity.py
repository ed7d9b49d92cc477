"""Integrity: damaged or missing stored data is an error naming it, never wrong numbers.

A flipped byte fails a crc32c checksum; a chunk object that was deleted or truncated
cannot be read (Icechunk's manifest knows every chunk's size), so it is an error, not
the fill value; ``zstore verify`` lists all of it, on local disk and on S3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import chunk_object
from s3server import S3Server

import zstore as zs
from zstore._compat import read_bytes
from zstore.arrays import StorageConfig
from zstore.cli import main
from zstore.errors import CorruptChunkError, MissingChunkError
from zstore.verify import verify_experiment

CONFIG = StorageConfig(shard_bytes=16 * 256 * 4, inner_rois=16, inner_frames=128)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _experiment(path: Path, n_rois: int = 64, seed: int = 0) -> tuple[zs.Experiment, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n_rois, 256)).astype(np.float32)
    # random values: small chunks that compress below 512 bytes are kept inline in
    # Icechunk's manifest, with no object of their own to lose
    obs = pd.DataFrame({"npix": rng.random(n_rois)}, index=[str(i) for i in range(n_rois)])
    exp = zs.create_experiment(path, exp_id="E", config=CONFIG)
    exp.add_trial("t-005", zs.AnnotatedData(X, obs=obs))
    return exp, X


def test_a_flipped_byte_is_found_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp, X = _experiment(tmp_path / "e.zarr")
    assert verify_experiment(exp) == []
    assert main(["verify", str(tmp_path / "e.zarr")]) == 0
    assert "every chunk reads back" in capsys.readouterr().out

    shard = chunk_object(tmp_path / "e.zarr", exp, "trials/t-005/X/c/1/0")  # ROIs 16-31
    _flip(shard, 100)  # inside the first inner chunk's compressed bytes
    data = zs.open_experiment(tmp_path / "e.zarr").load_trial("t-005").data
    np.testing.assert_array_equal(data.X[:16].compute(), X[:16])  # other shards still read
    with pytest.raises(CorruptChunkError, match=r"trial 't-005' X: .*failed its crc32c checksum"):
        data.X[16:32].compute()
    damage = verify_experiment(zs.open_experiment(tmp_path / "e.zarr"))
    assert [(d.trial, d.array, d.chunk) for d in damage] == [("t-005", "X", (1, 0))]
    assert main(["verify", str(tmp_path / "e.zarr")]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED trial 't-005' X chunk 1.0: checksum mismatch" in out


def test_a_damaged_shard_index_loses_the_shard_but_says_so(tmp_path: Path) -> None:
    exp, _ = _experiment(tmp_path / "e.zarr", n_rois=32, seed=1)
    shard = chunk_object(tmp_path / "e.zarr", exp, "trials/t-005/X/c/0/0")
    _flip(shard, shard.stat().st_size - 10)  # the index sits at the end of the shard
    damage = verify_experiment(zs.open_experiment(tmp_path / "e.zarr"))
    assert damage and {d.array for d in damage} == {"X"}
    assert all(d.chunk[0] == 0 for d in damage)


@pytest.mark.parametrize("how", ["deleted", "truncated to 0 bytes"])
def test_a_lost_shard_is_an_error_not_zeros(
    tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exp, X = _experiment(tmp_path / "e.zarr")
    shard = chunk_object(tmp_path / "e.zarr", exp, "trials/t-005/X/c/2/0")  # ROIs 32-47
    if how == "deleted":
        shard.unlink()
    else:
        shard.write_bytes(b"")
    data = zs.open_experiment(tmp_path / "e.zarr").load_trial("t-005").data
    np.testing.assert_array_equal(data.X[:32].compute(), X[:32])
    with pytest.raises(MissingChunkError, match=r"trial 't-005' X: a stored chunk in region"):
        data.X.compute()
    with pytest.raises(MissingChunkError, match="the store was damaged"):
        data.X[40].compute()
    damage = verify_experiment(zs.open_experiment(tmp_path / "e.zarr"))
    assert [(d.array, d.chunk) for d in damage] == [("X", (2, 0))]
    assert "cannot be read" in damage[0].error
    assert main(["verify", str(tmp_path / "e.zarr")]) == 1
    assert "DAMAGED trial 't-005' X chunk 2.0" in capsys.readouterr().out


def test_a_lost_chunk_of_an_obs_column_is_an_error_naming_it(tmp_path: Path) -> None:
    exp, _ = _experiment(tmp_path / "e.zarr", n_rois=300)  # npix: 2.4 kB, not inlined
    chunk_object(tmp_path / "e.zarr", exp, "trials/t-005/obs/npix/c/0").unlink()
    reopened = zs.open_experiment(tmp_path / "e.zarr")
    with pytest.raises(MissingChunkError, match=r"trial 't-005' obs: stored data cannot be read"):
        reopened.load_trial("t-005")
    damage = verify_experiment(reopened)
    assert [(d.trial, d.array) for d in damage] == [("t-005", "obs/npix")]


def test_a_lost_object_on_s3_is_an_error_not_zeros(s3: S3Server) -> None:
    import s3fs

    bucket = s3.new_bucket()
    url = f"s3://{bucket}/e.zarr"
    X = np.random.default_rng(3).random((64, 256)).astype(np.float32)
    exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options(), config=CONFIG)
    exp.add_trial("t", zs.AnnotatedData(X))
    wanted = read_bytes(exp.open_zarr().store, "trials/t/X/c/1/0")
    fs = s3fs.S3FileSystem(**s3.options(), use_listings_cache=False)
    objects = [p for p in fs.ls(f"{bucket}/e.zarr/chunks") if fs.cat_file(p) == wanted]
    assert len(objects) == 1
    fs.rm(objects[0])
    data = zs.open_experiment(url, storage_options=s3.options()).load_trial("t").data
    np.testing.assert_array_equal(data.X[:16].compute(), X[:16])
    with pytest.raises(MissingChunkError, match=r"trial 't' X: a stored chunk"):
        data.X[16:32].compute()
    damage = verify_experiment(zs.open_experiment(url, storage_options=s3.options()))
    assert [(d.array, d.chunk) for d in damage] == [("X", (1, 0))]


def test_verify_checks_every_element_of_every_trial(tmp_path: Path) -> None:
    exp, _ = _experiment(tmp_path / "e.zarr", n_rois=200)
    adata = exp.load_trial("t-005").data
    trial = zs.open_experiment(tmp_path / "e.zarr", mode="r+").load_trial("t-005")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=30))
    rng = np.random.default_rng(0)
    trial.data.obsm["ypix"] = zs.RaggedArray.from_arrays(
        [rng.integers(0, 512, i % 50 + 1) for i in range(200)], dtype="int16"
    )
    trial.data.uns["meanImg"] = rng.random((64, 64))
    trial.save()
    saved = zs.open_experiment(tmp_path / "e.zarr")
    assert verify_experiment(saved) == []
    for key in (
        "trials/t-005/layers/dFF/c/0/0",
        "trials/t-005/obsm/ypix/node1-data/c/0",
        "trials/t-005/uns/meanImg/c/0/0",
    ):
        chunk_object(tmp_path / "e.zarr", saved, key).unlink()
    damage = verify_experiment(zs.open_experiment(tmp_path / "e.zarr"))
    assert {d.array for d in damage} == {"layers/dFF", "obsm/ypix/node1-data", "uns/meanImg"}
    assert adata.shape == (200, 256)


@pytest.mark.parametrize("element", ["obs/npix/c/0", "obsm/ypix/node1-data/c/0"])
def test_a_flipped_byte_in_obs_or_masks_is_an_error_not_a_value(
    tmp_path: Path, element: str
) -> None:
    # obs, var, uns and masks carry crc32c too: random floats do not compress, so
    # without it a flipped byte decoded to a different value
    exp, _ = _experiment(tmp_path / "e.zarr", n_rois=300)
    rng = np.random.default_rng(0)
    trial = zs.open_experiment(tmp_path / "e.zarr", mode="r+").load_trial("t-005")
    trial.data.obsm["ypix"] = zs.RaggedArray.from_arrays(
        [rng.integers(0, 512, 30) for _ in range(300)], dtype="int16"
    )
    trial.save()
    exp = zs.open_experiment(tmp_path / "e.zarr")
    _flip(chunk_object(tmp_path / "e.zarr", exp, f"trials/t-005/{element}"), 60)
    reopened = zs.open_experiment(tmp_path / "e.zarr")
    if element.startswith("obs/"):
        with pytest.raises(
            CorruptChunkError, match="trial 't-005' obs: stored data failed its crc32c"
        ):
            reopened.load_trial("t-005")
    damage = verify_experiment(reopened)
    assert [d.array for d in damage] == ["/".join(element.split("/")[:-2])]
    assert "checksum mismatch" in damage[0].error


def test_a_shortened_obs_chunk_is_an_error_naming_it(tmp_path: Path) -> None:
    exp, _ = _experiment(tmp_path / "e.zarr", n_rois=300)
    obj = chunk_object(tmp_path / "e.zarr", exp, "trials/t-005/obs/npix/c/0")
    obj.write_bytes(obj.read_bytes()[:-1])
    with pytest.raises(CorruptChunkError, match="trial 't-005' obs"):
        zs.open_experiment(tmp_path / "e.zarr").load_trial("t-005")


def test_lost_manifests_and_snapshots_are_reported(tmp_path: Path) -> None:
    import shutil

    exp, _ = _experiment(tmp_path / "e.zarr")
    manifests = tmp_path / "m.zarr"
    shutil.copytree(tmp_path / "e.zarr", manifests)
    for path in (manifests / "manifests").iterdir():
        path.unlink()
    damage = verify_experiment(zs.open_experiment(manifests))
    assert "X" in {d.array for d in damage}
    assert all("cannot be read" in d.error for d in damage)
    snapshot = tmp_path / "s.zarr"
    shutil.copytree(tmp_path / "e.zarr", snapshot)
    (snapshot / "snapshots" / exp.version).unlink()
    with pytest.raises(OSError, match=rf"the metadata of version {exp.version} .*is damaged"):
        zs.open_experiment(snapshot)
