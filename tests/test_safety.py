"""Data safety: every case that lost or corrupted data in zstore 0.1, one test each.

Overwrite deletes only what zstore wrote; a failed write (an element anndata cannot
store, a lazy array that raises, a full disk, no memory) leaves the previous version
whole; a layer computed from the one it replaces is right; a trial whose metadata is
damaged is reported and its ID is not reused; in-place edits are saved; the storage
configuration is part of the store. Kills, concurrent writers and readers racing a
writer are in test_crash.py; missing and damaged chunks in test_integrity.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dask.array as da
import icechunk
import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import Where, make_adata
from s3server import S3Server

import zstore as zs
import zstore.synthetic as syn
from zstore.arrays import StorageConfig
from zstore.cli import main
from zstore.errors import (
    ExperimentExistsError,
    InvalidNameError,
    Suite2pFormatError,
    TrialExistsError,
    UnsafeOverwriteError,
)
from zstore.io.safe_pickle import load_pickled_npy


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


# -- overwrite deletes only what zstore wrote ---------------------------------------------


def test_overwrite_refuses_a_folder_holding_source_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `zstore ingest PLANE RL110 --overwrite`: the experiment folder typed for the store
    run = tmp_path / "RL110"
    plane, _ = syn.write_suite2p_run(run, n_rois=12, frames_per_file=[40])
    before = _files(run)
    assert main(["ingest", str(plane), str(run), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert f"{run} holds data that is not a zstore experiment (paq, suite2p)" in err
    assert "never deletes or replaces what it did not write" in err
    assert f"choose a new path such as {run}.zarr" in err
    assert _files(run) == before, "the source folder is untouched"
    with pytest.raises(UnsafeOverwriteError):
        zs.ingest_suite2p(plane, run, overwrite=True)
    with pytest.raises(UnsafeOverwriteError):
        zs.create_experiment(plane, exp_id="E", overwrite=True)
    assert _files(run) == before
    # the way out works
    assert main(["ingest", str(plane), f"{run}.zarr"]) == 0


def test_the_exists_error_suggests_a_new_path_first(tmp_path: Path) -> None:
    zs.create_experiment(tmp_path / "RL110.zarr", exp_id="RL110").add_trial("t", make_adata(4, 10))
    with pytest.raises(ExperimentExistsError) as err:
        zs.create_experiment(tmp_path / "RL110.zarr", exp_id="RL110")
    text = str(err.value)
    assert text.index("choose a new path") < text.index("overwrite=True")
    assert "RL110-2.zarr" in text


def test_overwrite_never_deletes_other_objects_in_a_bucket(s3: S3Server) -> None:
    import s3fs

    bucket = s3.new_bucket()
    fs = s3fs.S3FileSystem(**s3.options(), use_listings_cache=False)
    fs.pipe(f"{bucket}/notes.txt", b"lab notes")
    zs.create_experiment(
        f"s3://{bucket}/RL109.zarr", exp_id="RL109", storage_options=s3.options()
    ).add_trial("t", make_adata(4, 10))
    before = set(fs.find(bucket))
    for url in (f"s3://{bucket}", f"s3://{bucket}/"):
        with pytest.raises(UnsafeOverwriteError, match=r"notes\.txt"):
            zs.create_experiment(url, exp_id="X", overwrite=True, storage_options=s3.options())
    assert set(fs.find(bucket)) == before
    # replacing the experiment itself deletes nothing either: it is a new version
    zs.create_experiment(
        f"s3://{bucket}/RL109.zarr", exp_id="RL110", overwrite=True, storage_options=s3.options()
    )
    assert before <= set(fs.find(bucket))
    assert fs.cat_file(f"{bucket}/notes.txt") == b"lab notes"


def test_a_zstore_0_1_store_is_never_overwritten_or_misread(tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "zstore-0.1.zarr", old)
    before = _files(old)
    with pytest.raises(zs.errors.LegacyFormatError, match="zstore migrate"):
        zs.open_experiment(old)
    with pytest.raises(ExperimentExistsError, match=r"zstore 0\.1's format"):
        zs.create_experiment(old, exp_id="E", overwrite=True)
    assert _files(old) == before


# -- a failed write leaves the previous version ---------------------------------------------


def _raises(exc: type[BaseException]) -> Any:
    def block(x: np.ndarray) -> np.ndarray:
        if x.size:
            raise exc("boom from a lazy array")
        return x

    return block


def test_a_failed_replacement_of_a_trial_keeps_the_old_one(where: Where) -> None:
    adata = make_adata(20, 50)
    exp = where.create(exp_id="E")
    exp.add_trial("t", adata)
    bad_uns = make_adata(20, 50, seed=1)
    bad_uns.uns["tags"] = {"a", "b"}  # anndata cannot store a set
    complex_x = zs.AnnotatedData(np.ones((20, 50), dtype=np.complex64))
    lazy = make_adata(20, 50, seed=2)
    lazy.X = da.from_array(lazy.X, chunks=(10, 50)).map_blocks(
        _raises(RuntimeError), dtype=np.float32
    )
    for new, error in (
        (bad_uns, Exception),
        (complex_x, zs.errors.UnstorableValueError),
        (lazy, RuntimeError),
    ):
        with pytest.raises(error):
            exp.add_trial("t", new, overwrite=True)
        data = where.open().load_trial("t").data
        np.testing.assert_array_equal(data.X.compute(), adata.X)
        np.testing.assert_array_equal(data.layers["Fneu"].compute(), adata.layers["Fneu"])
        assert "tags" not in data.uns
    assert next(c.message for c in where.open().history()) == "add trial 't'"


@pytest.mark.parametrize("failure", ["uns key with /", "lazy layer raises", "MemoryError"])
def test_a_failed_layer_replacement_keeps_the_old_layer(where: Where, failure: str) -> None:
    adata = make_adata(20, 50)
    exp = where.create(exp_id="E")
    exp.add_trial("t", adata)
    trial = where.open(mode="r+").load_trial("t")
    trial.data.layers["Fneu"] = trial.data.X * 3  # a replacement of a stored layer
    if failure == "uns key with /":
        trial.data.uns["a/b"] = 1
        error: type[BaseException] = InvalidNameError
    else:
        error = RuntimeError if failure == "lazy layer raises" else MemoryError
        trial.data.layers["extra"] = trial.data.X.map_blocks(_raises(error), dtype=np.float32)
    with pytest.raises((error, ValueError)):
        trial.save()
    data = where.open().load_trial("t").data
    np.testing.assert_array_equal(data.layers["Fneu"].compute(), adata.layers["Fneu"])
    assert "extra" not in data.layers


EFBIG_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    import zstore as zs
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    trial = zs.open_experiment(sys.argv[1], mode="r+").load_trial("t")
    trial.data.layers["Fneu"] = trial.data.X * 3
    try:
        trial.save()
    except OSError as err:
        print("refused:", type(err).__name__, err)
    """
)


def test_a_full_disk_during_a_layer_replacement_keeps_the_old_layer(tmp_path: Path) -> None:
    adata = make_adata(64, 2000)
    zs.create_experiment(tmp_path / "e.zarr", exp_id="E").add_trial("t", adata)
    done = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(tmp_path / "e.zarr")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert "refused: StoreError" in done.stdout and "File too large" in done.stdout, done.stdout
    data = zs.open_experiment(tmp_path / "e.zarr").load_trial("t").data
    np.testing.assert_array_equal(data.layers["Fneu"].compute(), adata.layers["Fneu"])


def test_a_layer_computed_from_the_layer_it_replaces_is_right(where: Where) -> None:
    adata = make_adata(20, 50)
    adata.layers["dFF"] = zs.normalize_dff(adata.X, normalize_pct=20)
    where.create(exp_id="E").add_trial("t", adata)
    trial = where.open(mode="r+").load_trial("t")
    layers = trial.data.layers
    old = layers["dFF"]
    layers["B"] = old * 2
    layers["dFF"] = trial.data.X * 3
    assert sorted(trial.save()) == ["layers/B", "layers/dFF"]
    data = where.open().load_trial("t").data
    np.testing.assert_array_equal(data.layers["B"].compute(), adata.layers["dFF"] * 2)
    np.testing.assert_array_equal(data.layers["dFF"].compute(), adata.X * 3)


# -- what is stored is what was meant ----------------------------------------------------------


def test_a_trial_without_metadata_is_reported_and_its_id_not_reused(where: Where) -> None:
    exp = where.create(exp_id="E")
    exp.add_trial("t-1", make_adata(4, 10))
    # a trial group written by another tool (or damaged): no zstore attributes
    storage = zs.store.resolve(where.store, storage_options=where.options).storage
    session = icechunk.Repository.open(storage).writable_session("main")
    zarr.open_group(session.store, path="trials/t-2", mode="w").create_array(
        "X", shape=(4, 10), dtype="f4"
    )
    session.commit("a foreign trial")
    exp = where.open(mode="r+")
    assert exp.trialIDs == ["t-1", "t-2"], "listed, not silently dropped"
    with pytest.raises(ValueError, match="trial 't-2': its group has no zstore trial attributes"):
        exp.load_trial("t-2")
    damage = zs.verify_experiment(exp)
    assert [(d.trial, d.error) for d in damage if not d.array] == [
        ("t-2", "metadata: the trial group has no zstore trial attributes"),
        ("t-2", "metadata: obs is missing"),
        ("t-2", "metadata: var is missing"),
    ]
    with pytest.raises(TrialExistsError, match="trial 't-2' already exists"):
        exp.add_trial("t-2", make_adata(4, 10))
    exp.add_trial("t-2", make_adata(4, 10), overwrite=True)
    assert zs.verify_experiment(exp) == []


def test_in_place_edits_of_obsm_and_uns_arrays_are_saved(where: Where) -> None:
    where.create(exp_id="E").add_trial("t", make_adata(10, 20))
    trial = where.open(mode="r+").load_trial("t")
    trial.data.obsm["med"][3] = [-1, -2]
    trial.data.uns["meanImg"][0, 0] = 42.0
    assert trial.save() == ["uns", "obsm/med"]
    data = where.open().load_trial("t").data
    assert data.obsm["med"][3].tolist() == [-1, -2]
    assert data.uns["meanImg"][0, 0] == 42.0
    assert trial.save() == []


def test_the_storage_config_is_part_of_the_store(where: Where) -> None:
    config = StorageConfig(shard_bytes=8 * 128 * 4, inner_rois=8, inner_frames=32, codec="zstd")
    where.create(exp_id="E", config=config).add_trial("t", make_adata(30, 100))
    exp = where.open(mode="r+")
    assert exp.config == config
    exp.add_trial("u", make_adata(30, 100))
    trial = exp.load_trial("u")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=20))
    trial.save()
    for arr in exp.load_trial("u").storage():
        assert arr["chunks"] == (8, 32) and arr["shards"] == (8, 128), arr
        assert arr["codecs"] == ["ZstdCodec", "Crc32cCodec"], arr


# -- nothing silently lost on ingest ---------------------------------------------------------


def _plane_with(tmp_path: Path, edit: Any) -> Path:
    plane = syn.write_suite2p_plane(tmp_path / "run", n_rois=6, frames_per_file=[30])
    np.save(plane / "iscell.npy", np.ones((6, 2)))
    stat = load_pickled_npy(plane / "stat.npy")
    edit(stat)
    np.save(plane / "stat.npy", stat, allow_pickle=True)
    return plane


def test_masks_keep_every_value(tmp_path: Path) -> None:
    def far(stat: Any) -> None:
        stat[2]["ypix"] = np.array([-40000, 5, 70000])
        stat[2]["xpix"] = np.array([1.0, 2.0, 3.0])  # whole numbers stored as floats
        stat[2]["lam"] = np.array([0.5, 0.25, 0.25])

    exp = zs.ingest_suite2p(_plane_with(tmp_path, far), tmp_path / "e.zarr")
    masks = exp.load_trial(exp.trialIDs[0]).data.obsm
    assert masks["ypix"][2].tolist() == [-40000, 5, 70000]
    assert masks["ypix"].dtype == np.int32
    assert masks["xpix"][2].tolist() == [1, 2, 3]


def test_masks_that_cannot_be_stored_are_errors_naming_the_roi(tmp_path: Path) -> None:
    def fractional(stat: Any) -> None:
        stat[4]["xpix"] = stat[4]["xpix"] + 0.5  # one value per pixel, not whole

    with pytest.raises(Suite2pFormatError, match="ROI 4 has xpix values that are not whole"):
        zs.ingest_suite2p(_plane_with(tmp_path / "a", fractional), tmp_path / "a.zarr")

    def lacking(stat: Any) -> None:
        del stat[3]["xpix"]

    with pytest.raises(Suite2pFormatError, match=r"ROI\(s\) \[3\] have no 'xpix'"):
        zs.ingest_suite2p(_plane_with(tmp_path / "b", lacking), tmp_path / "b.zarr")
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_paq_channels_with_one_name_or_named_time_are_all_kept(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path / "run", n_rois=6, frames_per_file=[40])
    syn.write_paq_for_trial(tmp_path / "base.paq", 40, extra_edges=0)
    base = zs.read_paq(tmp_path / "base.paq")
    clock = base.chan_names.index("frame_clock")
    n = base.data.shape[1]
    data = np.stack([base.data[clock], np.full(n, 1.0), np.full(n, 2.0), np.full(n, 3.0)])
    names = ["frame_clock", "lick", "lick", "time"]
    zs.write_paq(tmp_path / "t.paq", data, rate=base.rate, chan_names=names)
    with pytest.warns(zs.ZstoreWarning) as caught:
        exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr", paq={"t-000": tmp_path / "t.paq"})
    texts = [str(w.message) for w in caught]
    assert any(
        "channel 2 is named 'lick' (a repeated name); it is stored as var column 'lick_2'" in t
        for t in texts
    ), texts
    assert any("channel 3 is named 'time'" in t and "'paq_time'" in t for t in texts), texts
    var = exp.load_trial("t-000").data.var
    assert (var["lick"] == 1).all() and (var["lick_2"] == 2).all() and (var["paq_time"] == 3).all()
    assert var["time"].iloc[0] == 0 and (np.diff(var["time"]) > 0).all()  # zstore's own times
    assert os.path.exists(tmp_path / "t.paq")


# -- found by the red team ---------------------------------------------------------------------


def test_a_creation_killed_before_its_first_commit_can_be_done_again(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    child = textwrap.dedent(
        """
        import os, signal, sys, zstore as zs, zstore.transaction as T
        create = T.Repo.create.__func__
        def killed(cls, place):
            create(cls, place)
            os.kill(os.getpid(), signal.SIGKILL)
        T.Repo.create = classmethod(killed)
        zs.create_experiment(sys.argv[1], exp_id="E")
        """
    )
    assert subprocess.run([sys.executable, "-c", child, str(path)]).returncode == -9
    with pytest.raises(zs.errors.NotAnExperimentError, match="empty Icechunk repository"):
        zs.open_experiment(path)
    zs.create_experiment(path, exp_id="E").add_trial("t", make_adata(4, 10))
    assert zs.open_experiment(path).trialIDs == ["t"]


def test_another_tools_repository_is_never_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.zarr"
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(path)))
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_array("precious", shape=(3,), dtype="i4")
    session.commit("someone's data")
    session = repo.writable_session("main")
    del zarr.open_group(session.store, mode="a")["precious"]
    session.commit("moved it aside")  # main is empty now; its history is not
    for overwrite in (False, True):
        with pytest.raises(UnsafeOverwriteError, match="history of its own"):
            zs.create_experiment(path, exp_id="E", overwrite=overwrite)
    assert len(list(repo.ancestry(branch="main"))) == 3


@pytest.mark.parametrize("name", ["zarr.json", ".zattrs", "ZARR.JSON"])
def test_zarr_metadata_names_are_refused_everywhere(where: Where, name: str) -> None:
    exp = where.create(exp_id="E")
    with pytest.raises(InvalidNameError, match="name of Zarr's own metadata"):
        exp.add_trial(name, make_adata(4, 10))
    adata = make_adata(4, 10)
    adata.uns["nested"] = {name: 1}
    with pytest.raises(InvalidNameError, match=r"uns\['nested'\] key"):
        exp.add_trial("t", adata)
    exp.add_trial("t", make_adata(4, 10))
    trial = exp.load_trial("t")
    trial.data.layers[name] = trial.data.X * 2
    with pytest.raises(InvalidNameError):
        trial.save()
    assert exp.trialIDs == ["t"] and list(where.open().load_trial("t").data.layers) == ["Fneu"]


def test_missing_text_stays_missing_and_is_saved_once(where: Where) -> None:
    obs = pd.DataFrame(
        {"label": np.array([np.nan, "x", "y", None], dtype=object)}, index=list("0123")
    )
    exp = where.create(exp_id="E")
    with pytest.warns(zs.ZstoreWarning, match="obs column 'label' holds text .* missing values"):
        exp.add_trial("t", zs.AnnotatedData(np.ones((4, 3), dtype="float32"), obs=obs))
    label = where.open().load_trial("t").data.obs["label"]
    assert label.isna().tolist() == [True, False, False, True]
    assert label.dropna().tolist() == ["x", "y"]
    trial = where.open(mode="r+").load_trial("t")
    assert trial.save() == []


def test_the_categories_order_and_the_index_name_are_saved(where: Where) -> None:
    obs = pd.DataFrame({"kind": pd.Categorical(["soma", "dendrite", "soma"])}, index=list("012"))
    where.create(exp_id="E").add_trial("t", zs.AnnotatedData(np.ones((3, 4), "f4"), obs=obs))
    trial = where.open(mode="r+").load_trial("t")
    trial.data.obs["kind"] = trial.data.obs["kind"].cat.reorder_categories(["soma", "dendrite"])
    trial.data.obs.index.name = "roi"
    assert trial.save() == ["obs"]
    trial.data.uns["names"] = ["a", "b"]  # a list reads back as an array: saved once
    assert trial.save() == ["uns"] and trial.save() == []
    data = where.open().load_trial("t").data
    assert list(data.obs["kind"].cat.categories) == ["soma", "dendrite"]
    assert data.obs.index.name == "roi"


def test_odd_local_targets_are_refused_without_a_crash(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("data")
    for target in (tmp_path / "link", tmp_path / "file" / "e.zarr"):
        with pytest.raises(UnsafeOverwriteError):
            zs.create_experiment(target, exp_id="E", overwrite=True)
    assert (tmp_path / "file").read_text() == "data"


def test_migrate_never_writes_inside_the_old_store(tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "zstore-0.1.zarr", old)
    with pytest.raises(ValueError, match="inside the old store"):
        zs.migrate(old, old / "new.zarr")
    assert not (old / "new.zarr").exists()


def test_a_local_repository_named_by_its_icechunk_storage_gets_the_same_locks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.zarr"
    zs.create_experiment(path, exp_id="E")
    place = zs.store.resolve(icechunk.local_filesystem_storage(str(path)))
    assert place.local == path  # so commits take the OS lock and writers hold leases
    child = textwrap.dedent(
        """
        import sys, numpy as np, icechunk, zstore as zs
        exp = zs.open_experiment(icechunk.local_filesystem_storage(sys.argv[1]), mode="r+")
        for i in range(10):
            exp.add_trial(f"{sys.argv[2]}{i}", zs.AnnotatedData(np.ones((8, 50), "f4")))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", child, str(path), name]) for name in "ab"]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(zs.open_experiment(path).trialIDs) == 20  # no commit lost


def test_values_anndata_would_change_are_converted_or_refused(where: Where) -> None:
    exp = where.create(exp_id="E")
    exp.add_trial("t", zs.AnnotatedData(np.ones((4, 3), dtype="float32")))
    trial = where.open(mode="r+").load_trial("t")
    data = trial.data
    data.obs["snr"] = np.array([1.5, np.nan, 3.0, 4.0], dtype=object)
    data.obs["n"] = np.array([1, None, 3, 4], dtype=object)
    data.var["ok"] = np.array([True, False, None], dtype=object)
    data.uns["fs"] = np.float64(30.0)  # a numpy scalar reads back as a Python float
    with pytest.warns(zs.ZstoreWarning) as caught:
        assert trial.save() == ["obs", "var", "uns"]
    assert len(caught) == 3 and trial.save() == []
    stored = where.open().load_trial("t").data
    np.testing.assert_array_equal(stored.obs["snr"], [1.5, np.nan, 3.0, 4.0])
    assert stored.obs["n"].tolist()[0] == 1 and stored.obs["n"].isna().tolist()[1]
    assert stored.var["ok"].isna().tolist() == [False, False, True]
    versions = len(where.open().history())
    refused = {
        "obs": lambda d: d.obs.__setitem__("mixed", np.array(["soma", 2, None, "x"], object)),
        "uns list": lambda d: d.uns.__setitem__("notes", ["ok", None]),
        "uns dicts": lambda d: d.uns.__setitem__("params", [{"sigma": 2}]),
        "obsm frame": lambda d: d.obsm.__setitem__(
            "meta", pd.DataFrame({"r": [b"V1", b"x", b"y", b"z"]}, index=d.obs_names)
        ),
    }
    for what, edit in refused.items():
        trial = where.open(mode="r+").load_trial("t")
        edit(trial.data)
        with pytest.raises(ValueError, match=r"would store .* as text"):
            trial.save()
        assert len(where.open().history()) == versions, what


def test_the_users_own_processing_records_are_kept(where: Where) -> None:
    adata = zs.AnnotatedData(np.arange(20, dtype="float32").reshape(4, 5) + 1)
    adata.uns["processing"] = {"motion_correction": {"method": "rigid", "max_shift": 10}}
    where.create(exp_id="E").add_trial("t", adata)
    trial = where.open(mode="r+").load_trial("t")
    trial.data.add_obs("depth", np.arange(4.0))
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
    trial.save()
    del trial.data.layers["dFF"]
    trial.save()
    stored = where.open().load_trial("t").data.uns["processing"]
    assert stored == {"motion_correction": {"max_shift": 10, "method": "rigid"}}


def test_index_names_and_links_into_the_source_are_refused(tmp_path: Path) -> None:
    import shutil

    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    adata = zs.AnnotatedData(np.ones((3, 4), dtype="float32"))
    adata.obs.index.name = "zarr.json"
    with pytest.raises(InvalidNameError, match=r"obs index name 'zarr\.json'"):
        exp.add_trial("t", adata)
    old = tmp_path / "old.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "zstore-0.1.zarr", old)
    (tmp_path / "link").symlink_to(old)
    with pytest.raises(ValueError, match="inside the old store"):
        zs.migrate(old, tmp_path / "link" / "new.zarr")
    assert sorted(p.name for p in old.iterdir()) == [
        "trials",
        "zarr.json",
        "zstore-journal",
        "zstore-locks",
    ]
