"""Object storage and clusters: request counts, overlapping reads, dask.distributed."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import make_adata
from s3server import S3Server

import zstore as zs
from zstore.arrays import StorageConfig
from zstore.cli import main

SMALL_SHARDS = StorageConfig(shard_bytes=16 * 1024 * 4, inner_rois=16, inner_frames=1024)


def _trial(n_rois: int, n_frames: int = 1024, seed: int = 0) -> zs.AnnotatedData:
    adata = make_adata(n_rois, n_frames, seed=seed)
    adata.obsm["ypix"] = zs.RaggedArray.from_arrays([np.arange(5)] * n_rois, dtype="int16")
    return adata


def test_open_and_load_take_few_requests_whatever_the_shards(s3: S3Server) -> None:
    counts = {}
    for shard_rois in (16, 320):  # 40 shards and 2 shards of X (and of the Fneu layer)
        url = f"s3://{s3.new_bucket()}/exp.zarr"
        config = StorageConfig(shard_bytes=shard_rois * 1024 * 4, inner_rois=16, inner_frames=1024)
        exp = zs.create_experiment(url, exp_id="RL109", storage_options=s3.options(), config=config)
        exp.add_trial("t-005", _trial(640))
        s3.reset()
        opened = zs.open_experiment(url, storage_options=s3.options())
        opening = s3.count()
        trial = opened.load_trial("t-005")
        counts[shard_rois] = (opening, s3.count() - opening)
        assert trial.data.X.numblocks[0] == 640 // shard_rois
        s3.reset()
        trial.data.X[7].compute()  # one ROI's trace: its manifest, the shard index, a chunk
        assert s3.count() <= 3, s3.requests
    assert counts[16] == counts[320], counts
    opening, loading = counts[16]
    # open: the repository, its config, the branch and one snapshot; load: a manifest
    # and (when not inlined) a chunk per obs/var/uns/obsm array, never X or layers
    assert opening <= 6 and loading <= 30, counts


def test_reads_from_a_slow_store_overlap(tmp_path: Path, s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/e.zarr"
    config = StorageConfig(shard_bytes=16 * 512 * 4, inner_rois=16, inner_frames=512)
    X = np.random.default_rng(0).random((64 * 16, 512)).astype(np.float32)
    zs.create_experiment(url, exp_id="E", config=config, storage_options=s3.options()).add_trial(
        "t", zs.AnnotatedData(X)
    )
    data = zs.open_experiment(url, storage_options=s3.options()).load_trial("t").data
    assert data.X.numblocks == (64, 1)
    s3.reset()
    s3.latency = 0.05
    try:
        t = time.perf_counter()
        np.testing.assert_array_equal(data.X.compute(), X)
        elapsed = time.perf_counter() - t
    finally:
        s3.latency = 0.0
    # 64 shards, one request each, at 50 ms a request: serial reads would take >= 3.2 s.
    assert s3.count_of("/chunks/") >= 64
    assert s3.max_in_flight >= 2, s3.max_in_flight
    print(f"64 shards at 50 ms/request: {elapsed:.2f} s, {s3.max_in_flight} in flight at most")


def test_everything_sent_to_workers_pickles(tmp_path: Path, s3: S3Server) -> None:
    for store in (tmp_path / "e.zarr", f"s3://{s3.new_bucket()}/e.zarr"):
        options = s3.options() if str(store).startswith("s3://") else None
        exp = zs.create_experiment(store, exp_id="E", storage_options=options)
        exp.add_trial("t", _trial(20, 64))
        trial = zs.open_experiment(store, storage_options=options).load_trial("t")
        dff = zs.normalize_dff(trial.data.X, normalize_pct=50)
        graph = dict(dff.__dask_graph__())
        again = pickle.loads(pickle.dumps(graph))
        assert set(again) == set(graph)
        np.testing.assert_array_equal(
            dask.get(again, dff.__dask_keys__()[0][0]), dff.blocks[0].compute()
        )


@pytest.fixture(scope="module")
def cluster_client() -> Any:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_dff_under_distributed_equals_threaded(
    where: str, tmp_path: Path, s3: S3Server, cluster_client: Any
) -> None:
    if where == "s3":
        store, options = f"s3://{s3.new_bucket()}/e.zarr", s3.options()
    else:
        store, options = str(tmp_path / "e.zarr"), None
    exp = zs.create_experiment(store, exp_id="E", storage_options=options, config=SMALL_SHARDS)
    for k in range(2):
        exp.add_trial(f"t-{k}", _trial(100, 2048, seed=k))
    # the cluster is the default scheduler here (a Client is active)
    zs.compute_dff(
        zs.open_experiment(store, mode="r+", storage_options=options), layer="dFF", normalize_pct=30
    )
    with dask.config.set(scheduler="threads"):
        for tid in ("t-0", "t-1"):
            data = zs.open_experiment(store, storage_options=options).load_trial(tid).data
            threaded = zs.normalize_dff(data.X, normalize_pct=30).compute()
            np.testing.assert_array_equal(data.layers["dFF"].compute(), threaded)
    assert sum(cluster_client.nthreads().values()) == 2


def test_a_collection_computes_a_selection_on_a_cluster(s3: S3Server, cluster_client: Any) -> None:
    url, options = f"s3://{s3.new_bucket()}/lab.zarr", s3.options()
    col = zs.create_collection(url, storage_options=options, config=SMALL_SHARDS)
    for name in ("A", "B"):
        exp = col.create_experiment(name, metadata={"subject": name})
        for k in range(2):
            exp.add_trial(f"t-{k}", _trial(100, 2048, seed=k + ord(name)))
    col = zs.open_collection(url, mode="r+", storage_options=options)
    done = zs.compute_dff(col, where="subject == 'B'", normalize_pct=30)  # on the cluster
    assert done == ["B/t-0", "B/t-1"]
    col = zs.open_collection(url, storage_options=options)
    assert col.table()["layers"].tolist() == ["Fneu", "Fneu", "Fneu,dFF", "Fneu,dFF"]
    with dask.config.set(scheduler="threads"):
        for tid in ("t-0", "t-1"):
            data = col.open_experiment("B").load_trial(tid).data
            threaded = zs.normalize_dff(data.X, normalize_pct=30).compute()
            np.testing.assert_array_equal(data.layers["dFF"].compute(), threaded)


def test_cli_on_s3(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    exp = zs.create_experiment(url, exp_id="RL109", storage_options=s3.options())
    exp.add_trial("t-005", _trial(20, 300))
    opts = [arg for k, v in s3.options().items() for arg in ("--storage-option", f"{k}={v}")]
    assert main(["info", url, *opts]) == 0
    out = capsys.readouterr().out
    assert "experiment 'RL109' at s3://" in out and "1 trial, 300 frames" in out
    assert next(line.split()[:5] for line in out.splitlines() if line.startswith("  t-005 ")) == [
        "t-005",
        "30",
        "300",
        "10.00",
        "20",
    ]
    assert main(["dff", url, "--pct", "50", *opts]) == 0
    assert "saved layer 'dFF' for 1 trials" in capsys.readouterr().out
    data = zs.open_experiment(url, storage_options=s3.options()).load_trial("t-005").data
    expected = zs.normalize_dff(np.asarray(data.X), normalize_pct=50)
    np.testing.assert_array_equal(np.asarray(data.layers["dFF"]), expected)


def test_dask_graph_of_a_trial_is_lazy_over_s3(s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    zs.create_experiment(url, exp_id="E", storage_options=s3.options()).add_trial(
        "t", _trial(16, 64)
    )
    s3.reset()
    X = zs.open_experiment(url, storage_options=s3.options()).load_trial("t").data.X
    before = s3.count()
    assert isinstance(X, da.Array) and not [k for k in s3.requests if "/X/c" in k[1]]
    X[:2].compute()
    assert s3.count() > before


def test_object_store_faults_are_retried_or_reported_clearly(s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    adata = _trial(40, 512)
    exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options(), config=SMALL_SHARDS)
    exp.add_trial("t", adata)
    # reads: a few 503 and 500 answers on the way are retried; the data is right
    s3.faults = [503, 500, 503]
    data = zs.open_experiment(url, storage_options=s3.options()).load_trial("t").data
    s3.faults = [503, 503, 500, 503]
    np.testing.assert_array_equal(data.X.compute(), adata.X)
    assert not s3.faults, "every injected fault was met and retried"
    # writes: faults during a save are retried, and the saved layer is right
    trial = zs.open_experiment(url, mode="r+", storage_options=s3.options()).load_trial("t")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
    s3.faults = [503, 500, 503, 500]
    assert trial.save() == ["layers/dFF", "uns"]
    again = zs.open_experiment(url, storage_options=s3.options()).load_trial("t").data
    np.testing.assert_array_equal(
        again.layers["dFF"].compute(), zs.normalize_dff(adata.X, normalize_pct=50)
    )


def test_a_persistent_outage_is_a_clear_error_and_the_store_stays_consistent(s3: S3Server) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    adata = _trial(40, 512)
    zs.create_experiment(
        url, exp_id="E", storage_options=s3.options(), config=SMALL_SHARDS
    ).add_trial("t", adata)
    trial = zs.open_experiment(url, mode="r+", storage_options=s3.options()).load_trial("t")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
    trial.data.add_obs("depth", np.ones(40))
    s3.outage_after = 4  # the service goes down in the middle of the save
    try:
        # the outage meets either a read of X (for dF/F) or a write: both name the trial
        with pytest.raises(OSError, match=r"(trial 't'|failed: ).*service error"):
            trial.save()
    finally:
        s3.outage_after = None
    # readers still see the state before the failed save, whole
    data = zs.open_experiment(url, storage_options=s3.options()).load_trial("t").data
    assert "dFF" not in data.layers and "depth" not in data.obs
    np.testing.assert_array_equal(data.X.compute(), adata.X)
    # and the same save, once the service is back, completes
    retry = zs.open_experiment(url, mode="r+", storage_options=s3.options()).load_trial("t")
    retry.data.add_layer("dFF", zs.normalize_dff(retry.data.X, normalize_pct=50))
    retry.data.add_obs("depth", np.ones(40))
    assert retry.save() == ["layers/dFF", "obs", "uns"]


def test_compute_dff_requests_grow_linearly_with_the_trials(s3: S3Server) -> None:
    counts = {}
    for n_trials in (2, 4, 8):
        url = f"s3://{s3.new_bucket()}/exp.zarr"
        exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options())
        for k in range(n_trials):
            exp.add_trial(f"t-{k}", _trial(16, 128, seed=k))
        exp = zs.open_experiment(url, mode="r+", storage_options=s3.options())
        s3.reset()
        zs.compute_dff(exp, layer="dFF", normalize_pct=30)
        counts[n_trials] = s3.count()
    per_trial = [(counts[4] - counts[2]) / 2, (counts[8] - counts[4]) / 4]
    print(f"compute_dff requests for 2, 4, 8 trials: {counts}")
    # linear: each trial costs the same; a listing per trial would grow it with N
    assert abs(per_trial[1] - per_trial[0]) <= 0.1 * per_trial[0], counts
