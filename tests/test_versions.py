"""Versions users see: history, earlier versions, refresh, gc; and the ways out of zstore
(export to plain anndata, migration from zstore 0.1)."""

from __future__ import annotations

import datetime
import itertools
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import make_adata

import zstore as zs
import zstore.leases
import zstore.transaction
from zstore.arrays import StorageConfig
from zstore.cli import main
from zstore.errors import MissingChunkError, VersionNotFoundError

DATA = Path(__file__).parent / "data"


def _experiment(path: Path) -> zs.Experiment:
    exp = zs.create_experiment(path, exp_id="RL109")
    exp.add_trial("t-005", make_adata(20, 200))
    exp.add_trial("t-006", make_adata(20, 200, seed=1))
    return exp


def test_history_says_when_and_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = _experiment(tmp_path / "e.zarr")
    zs.compute_dff(exp, layer="dFF", normalize_pct=20, trials=["t-005"])
    commits = exp.history()
    assert [c.message for c in commits] == [
        "save trial 't-005': layers/dFF by normalize_dff baseline=percentile "
        "normalize_pct=20.0, uns",
        "add trial 't-006'",
        "add trial 't-005'",
        "create experiment 'RL109'",
        "Repository initialized",
    ]
    assert commits[0].changes == ("trials/t-005/layers/dFF", "trials/t-005/uns")
    assert commits[0].version == exp.version
    assert all(a.time >= b.time for a, b in itertools.pairwise(commits))
    assert main(["history", str(tmp_path / "e.zarr"), "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith(exp.version) and "layers/dFF" in out[0]


def test_an_earlier_version_opens_read_only_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    exp = _experiment(path)
    before = exp.version
    when = datetime.datetime.now(datetime.UTC)
    time.sleep(0.05)
    exp.remove_trial("t-006")
    trial = exp.load_trial("t-005")
    trial.data.layers["Fneu"] = trial.data.X * 9
    trial.save()
    for version in (before, when):
        old = zs.open_experiment(path, version=version)
        assert old.version == before and old.trialIDs == ["t-005", "t-006"]
        np.testing.assert_array_equal(
            old.load_trial("t-005").data.layers["Fneu"].compute(),
            make_adata(20, 200).layers["Fneu"],
        )
    with pytest.raises(ValueError, match="opens read-only: pass mode='r'"):
        zs.open_experiment(path, mode="r+", version=before)
    with pytest.raises(PermissionError, match="opened at version"):
        zs.open_experiment(path, version=before).refresh()
    with pytest.raises(VersionNotFoundError, match=r"has no version 0000.*zstore history"):
        zs.open_experiment(path, version="0000000000000000000A")


def test_a_reader_sees_new_trials_after_refresh(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    _experiment(path)
    reader = zs.open_experiment(path)
    zs.open_experiment(path, mode="r+").add_trial("t-007", make_adata(20, 200))
    assert reader.trialIDs == ["t-005", "t-006"]
    with pytest.raises(KeyError, match=r"exp.refresh\(\) sees trials added since opening"):
        reader.load_trial("t-007")
    assert reader.refresh().trialIDs == ["t-005", "t-006", "t-007"]


def _four_shards(store: Any, options: Any = None) -> tuple[zs.Experiment, np.ndarray]:
    """An experiment with one trial 't' whose X is 4 shards of random floats."""
    config = StorageConfig(shard_bytes=16 * 256 * 4, inner_rois=16, inner_frames=256)
    X = np.random.default_rng(0).random((64, 256)).astype(np.float32)
    exp = zs.create_experiment(store, exp_id="E", config=config, storage_options=options)
    exp.add_trial("t", zs.AnnotatedData(X))
    return exp, X


def _objects(path: Path) -> int:
    return sum(1 for p in (path / "chunks").iterdir())


def test_gc_reclaims_replaced_data_and_old_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "e.zarr"
    exp, X = _four_shards(path)
    reader = exp.load_trial("t")
    for k in range(3):
        trial = exp.load_trial("t")
        trial.data.layers["dFF"] = trial.data.X * (k + 2)
        trial.save()
    objects = _objects(path)
    assert objects == 4 * 4  # X, and three versions of dFF: 4 shards each
    # keeping 1 day: nothing is old enough
    report = exp.collect_garbage(keep=datetime.timedelta(days=1))
    assert report.versions_expired == 0 and _objects(path) == objects
    assert main(["gc", str(path), "--keep", "0", "--dry-run"]) == 0
    rehearsal = capsys.readouterr().out
    assert "would expire 5 versions; would delete 0 chunks" in rehearsal
    assert _objects(path) == objects
    assert main(["gc", str(path), "--keep", "0", "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "expired 5 versions; deleted 8 chunks" in out and "younger than --grace" in out
    assert _objects(path) == 8  # X and the newest dFF
    data = zs.open_experiment(path).load_trial("t").data
    np.testing.assert_array_equal(data.layers["dFF"].compute(), X * 4)
    assert zs.verify_experiment(zs.open_experiment(path)) == []
    # a trial loaded from a version gc removed says so, and reads nothing wrong
    np.testing.assert_array_equal(reader.data.X.compute(), X)  # X is still used
    old = zs.open_experiment(path)
    assert [c.message for c in old.history()][-1] == "Repository initialized"


HOLDING_WRITER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, zstore as zs
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    exp = zs.open_experiment(sys.argv[1], mode="r+", storage_options=options)
    trial = exp.load_trial("t")
    def slow(block):
        if block.size:  # (dask also calls it on an empty block, to infer the output)
            open(sys.argv[2], "w").close()  # chunks are being written now
            time.sleep(1.5)
        return block * 5
    trial.data.layers["late"] = trial.data.X.map_blocks(slow, dtype=np.float32)
    trial.save()
    print("saved")
    """
)


def test_gc_never_touches_a_write_under_way(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    _, X = _four_shards(path)
    flag = tmp_path / "writing"
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLDING_WRITER, str(path), str(flag)],
        stdout=subprocess.PIPE,
        text=True,
    )
    while not flag.exists():
        time.sleep(0.01)
    time.sleep(2.0)  # some shards of the new layer are written, not committed
    report = zs.open_experiment(path, mode="r+").collect_garbage(
        keep=datetime.timedelta(0), grace=datetime.timedelta(0)
    )
    assert report.writers_running == 1 and report.chunks_deleted == 0
    out, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0 and "saved" in out
    data = zs.open_experiment(path).load_trial("t").data
    np.testing.assert_array_equal(data.layers["late"].compute(), X * 5)
    assert zs.verify_experiment(zs.open_experiment(path)) == []


def test_gc_reclaims_what_a_killed_write_left(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    _, X = _four_shards(path)
    flag = tmp_path / "writing"
    writer = subprocess.Popen([sys.executable, "-c", HOLDING_WRITER, str(path), str(flag)])
    while not flag.exists():
        time.sleep(0.01)
    time.sleep(2.5)  # the first wave of shards is written, the second is being computed
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    left = _objects(path)
    assert left > 4, "the killed write left chunk objects behind"
    exp = zs.open_experiment(path, mode="r+")
    assert "late" not in exp.load_trial("t").data.layers
    report = exp.collect_garbage(keep=datetime.timedelta(days=30))
    assert report.writers_running == 0 and report.chunks_deleted == 0  # younger than grace
    report = exp.collect_garbage(keep=datetime.timedelta(days=30), grace=datetime.timedelta(0))
    assert report.writers_running == 0 and report.chunks_deleted == left - 4
    assert _objects(path) == 4
    np.testing.assert_array_equal(zs.open_experiment(path).load_trial("t").data.X.compute(), X)


def test_a_trial_of_a_collected_version_says_so(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    exp = _experiment(path)
    reader = exp.load_trial("t-005")
    trial = exp.load_trial("t-005")
    trial.data.layers["Fneu"] = trial.data.X * 9
    trial.save()
    exp.collect_garbage(keep=datetime.timedelta(0), grace=datetime.timedelta(0))
    with pytest.raises(MissingChunkError, match=r"no longer exists: `zstore gc` removed it"):
        reader.data.layers["Fneu"].compute()


# -- the ways out: export to plain anndata, and in: migrate from 0.1 ------------------------


def _same(plain: ad.AnnData, data: zs.AnnotatedData) -> None:
    assert type(plain) is ad.AnnData
    np.testing.assert_array_equal(np.asarray(plain.X), data.X.compute())
    assert set(plain.layers) == set(data.layers)
    for name in data.layers:
        np.testing.assert_array_equal(np.asarray(plain.layers[name]), data.layers[name].compute())
    pd.testing.assert_frame_equal(plain.obs, data.obs)
    pd.testing.assert_frame_equal(plain.var, data.var)
    np.testing.assert_array_equal(plain.obsm["med"], data.obsm["med"])
    assert [list(a) for a in plain.obsm["ypix"]] == [list(a) for a in data.obsm["ypix"]]
    np.testing.assert_array_equal(plain.uns["meanImg"], data.uns["meanImg"])
    assert plain.uns["ops"]["nested"]["depth"] == data.uns["ops"]["nested"]["depth"]


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_export_writes_what_plain_anndata_reads(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "e.zarr"
    exp = _experiment(path)
    zs.compute_dff(exp, layer="dFF")
    out = tmp_path / f"t-005{suffix}"
    assert main(["export", str(path), "--trial", "t-005", "--to", str(out)]) == 0
    assert f"exported trial 't-005' of 'RL109' to {out}" in capsys.readouterr().out
    read = ad.read_h5ad if suffix == ".h5ad" else ad.read_zarr
    _same(read(out), exp.load_trial("t-005").data)
    whole = tmp_path / f"all{suffix}"
    zs.export(exp, whole)
    plain = read(whole)
    allf = exp.concat(layer="dFF")
    assert plain.shape == (20, 400) and sorted(plain.layers) == ["Fneu", "dFF"]
    np.testing.assert_array_equal(plain.layers["dFF"], allf.X.compute())
    assert plain.var["trial"].tolist() == ["t-005"] * 200 + ["t-006"] * 200
    assert set(plain.uns["trials_uns"]) == {"t-005", "t-006"}
    with pytest.raises(FileExistsError, match="never replaces files"):
        zs.export(exp, whole)


def test_migrate_keeps_exactly_what_zstore_0_1_showed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.zarr"
    shutil.copytree(DATA / "zstore-0.1.zarr", old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["migrate", str(old), str(tmp_path / "new.zarr")]) == 0
    out = capsys.readouterr()
    assert "migrated 2 trials of 'RL101'" in out.out
    assert "trial 't-c' was never committed" in out.err
    assert "trial 't-b' X: shard(s) ['0.0'] are not stored" in out.err
    assert not [w for w in caught if issubclass(w.category, zs.ZstoreWarning)]
    exp = zs.open_experiment(tmp_path / "new.zarr")
    assert exp.expID == "RL101" and exp.trialIDs == ["t-a", "t-b"]
    a = exp.load_trial("t-a").data
    # the save that was killed after journalling obs and uns: 0.1 showed the old ones
    assert a.obs.columns.tolist() == ["npix", "iscell"] and a.uns["note"] == "original"
    rng = np.random.default_rng(1)
    X = (rng.gamma(2, 30, (40, 64)) + 100).astype(np.float32)
    np.testing.assert_array_equal(a.X.compute(), X)
    np.testing.assert_array_equal(a.layers["dFF"].compute(), zs.normalize_dff(X, normalize_pct=20))
    assert [list(m) for m in a.obsm["ypix"][:3]] == [[0], [1, 2], [2, 3, 4]]
    b = exp.load_trial("t-b").data
    assert not b.X[:16].compute().any()  # what 0.1 read for its missing shard
    assert exp.config.inner_rois == 16 and exp.config.inner_frames == 32
    assert zs.verify_experiment(exp) == []
    assert main(["migrate", str(old), str(tmp_path / "new.zarr")]) == 1  # never over it


def test_migrate_from_and_to_s3(s3: Any) -> None:
    import s3fs

    bucket = s3.new_bucket()
    fs = s3fs.S3FileSystem(**s3.options(), use_listings_cache=False)
    fs.put(str(DATA / "zstore-0.1.zarr"), f"{bucket}/old.zarr", recursive=True)
    before = {p: fs.info(p)["size"] for p in fs.find(f"{bucket}/old.zarr")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zs.ZstoreWarning)
        exp = zs.migrate(
            f"s3://{bucket}/old.zarr",
            f"s3://{bucket}/new.zarr",
            storage_options=s3.options(),
            new_storage_options=s3.options(),
        )
    assert exp.trialIDs == ["t-a", "t-b"] and exp.load_trial("t-a").data.uns["note"] == "original"
    assert {p: fs.info(p)["size"] for p in fs.find(f"{bucket}/old.zarr")} == before


def test_gc_on_s3_spares_writes_under_way_and_reclaims_dead_ones(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    url, options = f"s3://{s3.new_bucket()}/e.zarr", s3.options()
    exp, X = _four_shards(url, options)
    argv = [sys.executable, "-c", HOLDING_WRITER, url, str(tmp_path / "w"), json.dumps(options)]
    writer = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    while not (tmp_path / "w").exists():
        time.sleep(0.01)
    time.sleep(2.0)
    report = exp.collect_garbage(keep=datetime.timedelta(0), grace=datetime.timedelta(0))
    assert report.writers_running == 1 and report.chunks_deleted == 0
    assert writer.communicate(timeout=120)[0].strip() == "saved"
    data = zs.open_experiment(url, storage_options=options).load_trial("t").data
    np.testing.assert_array_equal(data.layers["late"].compute(), X * 5)
    # a writer killed mid-write: its lease goes stale, then its leftovers are reclaimed
    (tmp_path / "w").unlink()
    writer = subprocess.Popen([*argv[:-2], str(tmp_path / "w"), json.dumps(options)])
    while not (tmp_path / "w").exists():
        time.sleep(0.01)
    time.sleep(2.5)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    monkeypatch.setattr(zstore.leases, "STALE_AFTER", datetime.timedelta(0))
    monkeypatch.setattr(zstore.leases, "SKEW", datetime.timedelta(0))
    monkeypatch.setattr(zstore.transaction, "SKEW", datetime.timedelta(0))
    exp = zs.open_experiment(url, mode="r+", storage_options=options)
    report = exp.collect_garbage(keep=datetime.timedelta(0), grace=datetime.timedelta(0))
    assert report.writers_running == 0 and report.chunks_deleted > 0
    assert zs.verify_experiment(exp) == []


def test_gc_keeps_the_versions_a_running_writer_rebases_over(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    exp = zs.create_experiment(path, exp_id="E")
    for tid in ("t", "u"):
        exp.add_trial(tid, make_adata(16, 100, seed=len(tid)))
    flag = tmp_path / "w"
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLDING_WRITER, str(path), str(flag)], stdout=subprocess.PIPE
    )
    while not flag.exists():
        time.sleep(0.01)
    other = zs.open_experiment(path, mode="r+").load_trial("u")  # moves main past its base
    other.data.add_obs("depth", np.arange(16.0))
    other.save()
    report = zs.open_experiment(path, mode="r+").collect_garbage(
        keep=datetime.timedelta(0), grace=datetime.timedelta(0)
    )
    assert report.writers_running == 1
    out, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0 and b"saved" in out  # rebased over 'u', not refused
    data = zs.open_experiment(path).load_trial("t").data
    assert "late" in data.layers and zs.verify_experiment(zs.open_experiment(path)) == []


def test_a_time_before_the_kept_versions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    exp = _experiment(path)
    time.sleep(0.05)
    when = datetime.datetime.now(datetime.UTC)
    time.sleep(0.05)
    trial = exp.load_trial("t-005")
    trial.data.add_obs("depth", np.arange(20.0))
    trial.save()
    exp.collect_garbage(keep=datetime.timedelta(0), grace=datetime.timedelta(0))
    with pytest.raises(VersionNotFoundError, match=r"keeps no version from .*expired by"):
        zs.open_experiment(path, version=when)
    before_creation = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(VersionNotFoundError, match="has no version 2000-01-01"):
        zs.open_experiment(path, version=before_creation)


PAUSED_S3_WRITER = textwrap.dedent(
    """
    import datetime, json, os, signal, sys
    import numpy as np, zstore as zs, zstore.leases as leases
    leases.STALE_AFTER = datetime.timedelta(seconds=4)  # a day, in real life
    leases.HEARTBEAT = 0.2
    url, options, flag = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    trial = zs.open_experiment(url, mode="r+", storage_options=options).load_trial("t")
    def pause(block, block_info=None):
        if block.size and block_info[0]["array-location"][0][0] >= 32 and not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGSTOP)  # a laptop asleep, a VM paused
        return block * 2
    trial.data.add_layer("late", trial.data.X.map_blocks(pause, dtype=np.float32))
    try:
        trial.save()
        print("saved")
    except Exception as err:
        print(type(err).__name__, err)
    """
)


def test_an_s3_writer_paused_past_its_lease_gives_up(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    url, options = f"s3://{s3.new_bucket()}/e.zarr", s3.options()
    _four_shards(url, options)
    flag = tmp_path / "paused"
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSED_S3_WRITER, url, json.dumps(options), str(flag)],
        stdout=subprocess.PIPE,
        text=True,
    )
    while not flag.exists():
        time.sleep(0.01)
    time.sleep(5)  # longer than its lease may go unrenewed
    monkeypatch.setattr(zstore.leases, "STALE_AFTER", datetime.timedelta(seconds=4))
    exp = zs.open_experiment(url, mode="r+", storage_options=options)
    report = exp.collect_garbage(keep=datetime.timedelta(0), grace=datetime.timedelta(0))
    assert report.writers_running == 0 and report.chunks_deleted > 0  # took its shards
    writer.send_signal(signal.SIGCONT)
    # A request in flight when it paused may wait out Icechunk's idle-stream timeout (60 s)
    # and its retries before the writer gets to its lease check: give it time.
    out, _ = writer.communicate(timeout=600)
    assert out.startswith("ConflictError") and "nothing was saved" in out, out
    exp = zs.open_experiment(url, storage_options=options)
    assert "late" not in exp.load_trial("t").data.layers
    assert zs.verify_experiment(exp) == []
