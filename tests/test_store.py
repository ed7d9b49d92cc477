"""The experiment store: round trips of every element, laziness, saving, errors."""

from __future__ import annotations

import os
from typing import Any

import anndata as ad
import dask.array as da
import icechunk
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from conftest import ReadCounter, Where, make_adata, raise_if_dask_computes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zstore as zs
from zstore.arrays import StorageConfig


def assert_same_trial(got: zs.AnnotatedData, want: ad.AnnData) -> None:
    np.testing.assert_array_equal(np.asarray(got.X), np.asarray(want.X))
    assert set(got.layers) == set(want.layers)
    for name in want.layers:
        np.testing.assert_array_equal(np.asarray(got.layers[name]), np.asarray(want.layers[name]))
    pd.testing.assert_frame_equal(got.obs, want.obs)
    pd.testing.assert_frame_equal(got.var, want.var)
    assert got.uns["fs"] == want.uns["fs"]
    np.testing.assert_array_equal(got.uns["meanImg"], want.uns["meanImg"])
    assert got.uns["ops"]["nested"]["depth"] == 3
    assert list(got.uns["ops"]["filelist"]) == ["a.tif", "b.tif"]
    np.testing.assert_array_equal(got.obsm["med"], want.obsm["med"])
    for a, b in zip(got.obsm["ypix"], want.obsm["ypix"], strict=True):
        assert a.dtype == np.int16
        np.testing.assert_array_equal(a, b)


def test_round_trip_of_every_element(where: Where) -> None:
    adata = make_adata()
    exp = where.create(exp_id="RL109")
    exp.add_trial("t-005", adata)
    again = where.open()
    assert again.expID == "RL109"
    assert again.trialIDs == ["t-005"]
    trial = again.load_trial("t-005")
    assert isinstance(trial.data, zs.AnnotatedData)
    assert isinstance(trial.data.X, da.Array)
    assert_same_trial(trial.data, adata)


def test_trials_listed_in_the_order_added(where: Where) -> None:
    exp = where.create(exp_id="RL109")
    for tid in ["t-013", "t-005", "t-006"]:
        exp.add_trial(tid, make_adata(5, 20))
    assert where.open().trialIDs == ["t-013", "t-005", "t-006"]


def test_plain_anndata_and_xarray_read_a_trial(tmp_path: Any) -> None:
    path = tmp_path / "exp.zarr"
    adata = make_adata()
    zs.create_experiment(path, exp_id="RL109").add_trial("t-005", adata)
    # The recipe of README and docs/FORMAT.md: Icechunk's session store, then plain tools.
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))
    session = repo.readonly_session("main")
    group = zarr.open_group(session.store, path="trials/t-005", mode="r")
    plain = ad.read_zarr(group)
    assert type(plain) is ad.AnnData
    np.testing.assert_array_equal(plain.X, adata.X)
    np.testing.assert_array_equal(plain.layers["Fneu"], adata.layers["Fneu"])
    pd.testing.assert_frame_equal(plain.obs, adata.obs)
    assert [list(a) for a in plain.obsm["ypix"]] == [list(a) for a in adata.obsm["ypix"]]
    lazy = ad.experimental.read_lazy(group)
    assert lazy.shape == adata.shape
    np.testing.assert_array_equal(np.asarray(lazy.X), adata.X)
    ds = xr.open_zarr(session.store, group="trials/t-005", consolidated=False)
    assert ds["X"].dims == ("roi", "frame")
    np.testing.assert_array_equal(ds["X"].values, adata.X)
    x = zarr.open_array(session.store, path="trials/t-005/X", mode="r")
    assert x.metadata.dimension_names == ("roi", "frame")
    assert x.shards is not None and x.shards[1] >= adata.n_vars
    assert any(type(c).__name__ == "Crc32cCodec" for c in x.compressors)
    # and zstore hands out the same group for its own version
    exp = zs.open_experiment(path)
    assert ad.read_zarr(exp.open_zarr("trials/t-005")).shape == adata.shape


def test_open_and_load_read_no_chunk_of_x_or_layers(tmp_path: Any, reads: ReadCounter) -> None:
    exp = zs.create_experiment(tmp_path / "exp.zarr", exp_id="RL109")
    exp.add_trial("t-005", make_adata(200, 500))
    reads.reset()
    with raise_if_dask_computes():
        trial = zs.open_experiment(tmp_path / "exp.zarr").load_trial("t-005")
        repr(trial.data), str(trial.data), repr(trial)
        trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
        trial.data[:10, :20]
    chunk_reads = reads.chunk_reads()
    assert not [k for k in chunk_reads if "/X/" in k or "/layers/" in k], chunk_reads
    assert not [k for k in chunk_reads if "/obsm/ypix/" in k], chunk_reads
    assert [k for k in chunk_reads if "/obs/" in k], "obs is read at load"
    x = trial.data.X[:3, :7].compute()
    assert [k for k in reads.chunk_reads() if "/X/" in k]
    np.testing.assert_array_equal(x, exp.load_trial("t-005").data.X[:3, :7].compute())


def test_masks_are_read_lazily_one_slice_at_a_time(tmp_path: Any, reads: ReadCounter) -> None:
    exp = zs.create_experiment(tmp_path / "exp.zarr", exp_id="RL109")
    adata = make_adata(100, 50)
    exp.add_trial("t-005", adata)
    trial = zs.open_experiment(tmp_path / "exp.zarr").load_trial("t-005")
    reads.reset()
    first = trial.data.obsm["ypix"][:5]
    assert len(first) == 5 and all(a.dtype == np.int16 for a in first)
    for got, want in zip(first, adata.obsm["ypix"][:5], strict=True):
        np.testing.assert_array_equal(got, want)
    assert sum(reads.chunk_reads().values()) == 2, reads.counts
    view = trial.data[10:20]
    np.testing.assert_array_equal(view.obsm["ypix"][0], adata.obsm["ypix"][10])


def test_save_streams_new_layers_and_columns(where: Where) -> None:
    exp = where.create(exp_id="RL109")
    adata = make_adata()
    exp.add_trial("t-005", adata)
    trial = where.open(mode="r+").load_trial("t-005")
    dff = zs.normalize_dff(trial.data.X, normalize_pct=50)
    trial.data.add_layer("dFF", dff)
    trial.data.add_obs("depth", np.arange(trial.data.n_obs, dtype=float))
    trial.data.del_var("stim")
    assert trial.save() == ["layers/dFF", "obs", "var", "uns"]
    saved = trial.data.layers["dFF"]
    assert saved.name == f"zstore-{trial.version}-t-005-layers/dFF" != dff.name
    assert trial.save() == []
    again = where.open().load_trial("t-005")
    np.testing.assert_array_equal(
        np.asarray(again.data.layers["dFF"]), zs.normalize_dff(adata.X, normalize_pct=50)
    )
    assert "depth" in again.data.obs and "stim" not in again.data.var
    del trial.data.layers["Fneu"]
    assert trial.save() == ["layers/Fneu"]
    del trial.data.layers["dFF"]
    assert trial.save() == ["layers/dFF", "uns"]
    assert "processing" not in where.open().load_trial("t-005").data.uns
    assert "Fneu" not in where.open().load_trial("t-005").data.layers


def test_save_of_uns_and_obsm_changes(where: Where) -> None:
    exp = where.create(exp_id="RL109")
    exp.add_trial("t-005", make_adata(10, 20))
    trial = where.open(mode="r+").load_trial("t-005")
    trial.data.add_layer("dFF", np.zeros(trial.data.shape, dtype=np.float32))
    trial.data.uns["processing"] = {"dFF": {"normalize_pct": 50}, "gone": {"by": "hand"}}
    trial.data.obsm["xpix"] = zs.RaggedArray.from_arrays(
        [np.arange(i + 1) for i in range(10)], dtype="int16"
    )
    del trial.data.obsm["med"]
    assert sorted(trial.save()) == ["layers/dFF", "obsm/med", "obsm/xpix", "uns"]
    again = where.open().load_trial("t-005").data
    # the user's own records are kept as written (zstore's own go with their layers)
    assert again.uns["processing"] == {"dFF": {"normalize_pct": 50}, "gone": {"by": "hand"}}
    assert list(again.obsm["xpix"][3]) == [0, 1, 2, 3] and "med" not in again.obsm


def test_read_only_trials_refuse_to_save(where: Where) -> None:
    where.create(exp_id="RL109").add_trial("t-005", make_adata(5, 20))
    exp = where.open()
    trial = exp.load_trial("t-005")
    trial.data.add_obs("depth", np.ones(5))
    with pytest.raises(PermissionError, match=r"open_experiment\(store, mode='r\+'\)"):
        trial.save()
    with pytest.raises(PermissionError, match="opened read-only"):
        exp.add_trial("t-006", make_adata(5, 20))


def test_x_is_written_once(where: Where) -> None:
    where.create(exp_id="RL109").add_trial("t-005", make_adata(5, 20))
    trial = where.open(mode="r+").load_trial("t-005")
    trial.data.X = trial.data.X * 2
    with pytest.raises(ValueError, match="X is the raw fluorescence and is written once"):
        trial.save()


def test_a_layer_can_be_replaced_by_a_function_of_itself(where: Where) -> None:
    adata = make_adata(5, 20)
    where.create(exp_id="RL109").add_trial("t-005", adata)
    trial = where.open(mode="r+").load_trial("t-005")
    trial.data.layers["Fneu"] = trial.data.layers["Fneu"] * 2  # reads the stored version
    assert trial.save() == ["layers/Fneu"]
    again = where.open().load_trial("t-005").data
    np.testing.assert_array_equal(again.layers["Fneu"].compute(), adata.layers["Fneu"] * 2)


def test_existing_trial_or_store_needs_overwrite(where: Where) -> None:
    exp = where.create(exp_id="RL109")
    exp.add_trial("t-005", make_adata(5, 20))
    with pytest.raises(FileExistsError, match="trial 't-005' already exists"):
        exp.add_trial("t-005", make_adata(5, 20))
    exp.add_trial("t-005", make_adata(6, 20), overwrite=True)
    assert exp.load_trial("t-005").data.n_obs == 6
    with pytest.raises(FileExistsError, match=r"choose a new path.*pass overwrite=True"):
        where.create(exp_id="RL110")
    replaced = where.create(exp_id="RL110", overwrite=True)
    assert replaced.trialIDs == [] and replaced.expID == "RL110"
    # the replaced experiment is still in the history, whole
    before = next(c for c in replaced.history() if c.message == "replace trial 't-005'")
    old = where.open(version=before.version)
    assert old.expID == "RL109" and old.load_trial("t-005").data.n_obs == 6


def test_errors_name_the_input_and_the_fix(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match=r"no zstore experiment at .*missing\.zarr"):
        zs.open_experiment(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "plain.zarr", mode="w").attrs["x"] = 1
    with pytest.raises(ValueError, match="is not a zstore experiment: it holds"):
        zs.open_experiment(tmp_path / "plain.zarr")
    exp = zs.create_experiment(tmp_path / "exp.zarr", exp_id="RL109")
    with pytest.raises(KeyError) as err:
        exp.load_trial("t-404")
    assert "trial 't-404' is not in experiment 'RL109'" in str(err.value)
    with pytest.raises(ValueError, match=r"trial ID '\.\./escape' cannot be stored"):
        exp.add_trial("../escape", make_adata(2, 3))
    with pytest.raises(TypeError, match="expected an AnnotatedData"):
        exp.add_trial("t-1", np.zeros((2, 3)))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"mode must be one of \('r', 'r\+'\), got 'w'; pass mode='r' or mode='r\+'",
    ):
        zs.open_experiment(tmp_path / "exp.zarr", mode="w")
    assert not os.path.exists(tmp_path / "escape")


def test_newer_format_is_refused(tmp_path: Any) -> None:
    zs.create_experiment(tmp_path / "exp.zarr", exp_id="RL109")
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "exp.zarr")))
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="r+")
    root.attrs["zstore"] = {**root.attrs["zstore"], "encoding-version": "9.0.0"}  # type: ignore[dict-item]
    session.commit("from the future")
    with pytest.raises(ValueError, match="newer than this zstore reads"):
        zs.open_experiment(tmp_path / "exp.zarr")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_rois=st.integers(1, 70),
    n_frames=st.integers(1, 90),
    lazy=st.booleans(),
    chunk=st.integers(1, 50),
)
def test_add_and_load_any_shape(n_rois: int, n_frames: int, lazy: bool, chunk: int) -> None:
    rng = np.random.default_rng(n_rois * 1000 + n_frames)
    X = rng.standard_normal((n_rois, n_frames)).astype(np.float32)
    data = da.from_array(X, chunks=(chunk, chunk)) if lazy else X
    config = StorageConfig(shard_bytes=16 * 4 * 16, inner_rois=4, inner_frames=8)
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E", config=config)
    exp.add_trial("t", zs.AnnotatedData(data))
    trial = exp.load_trial("t")
    shard_rows = zs.arrays.plan_chunks(X.shape, 4, config)[0][0]
    assert trial.data.X.chunks[0][0] == min(shard_rows, n_rois)
    np.testing.assert_array_equal(trial.data.X.compute(), X)


def test_html_reprs_describe_without_reading_chunks(tmp_path: Any, reads: ReadCounter) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="RL109")
    exp.add_trial("t-005", make_adata(40, 100))
    opened = zs.open_experiment(tmp_path / "e.zarr")
    trial = opened.load_trial("t-005")
    reads.reset()
    with raise_if_dask_computes():
        html = trial._repr_html_() + opened._repr_html_() + trial.data._repr_html_()
    assert "Experiment &#x27;RL109&#x27;" in html and "t-005" in html
    assert "40×100 float32, lazy (dask)" in html
    assert "blosc" in html.lower() and "uncompressed" in html
    assert "RaggedArray(n=40, dtype=int16, lazy)" in html
    assert not [k for k in reads.chunk_reads() if "/c/" in k and "/X/" in k]


def test_the_zarr_stores_users_hold_name_places(tmp_path: Any, s3: Any) -> None:
    from zarr.storage import FsspecStore, LocalStore, MemoryStore

    memory = MemoryStore()
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    fsspec = FsspecStore.from_url(url, storage_options=s3.options())
    for store in (LocalStore(str(tmp_path / "e.zarr")), memory, fsspec):
        zs.create_experiment(store, exp_id="E").add_trial("t", make_adata(4, 10))
        assert zs.open_experiment(store).load_trial("t").data.shape == (4, 10)
    assert zs.open_experiment(tmp_path / "e.zarr").trialIDs == ["t"]  # the same folder
    assert zs.open_experiment(url, storage_options=s3.options()).trialIDs == ["t"]
    with pytest.raises(TypeError, match="cannot keep an experiment in a ZipStore"):
        zs.create_experiment(zarr.storage.ZipStore(tmp_path / "e.zip", mode="w"), exp_id="E")
