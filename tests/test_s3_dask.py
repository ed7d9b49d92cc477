"""Object storage and clusters: request counts, overlapping reads, dask.distributed."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import make_adata
from s3server import S3Server
from zarr.storage import LocalStore, WrapperStore

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
    for n_rois in (32, 640):  # 2 shards and 40 shards of X (and of the Fneu layer)
        url = f"s3://{s3.new_bucket()}/exp.zarr"
        exp = zs.create_experiment(
            url, exp_id="RL109", storage_options=s3.options(), config=SMALL_SHARDS
        )
        exp.add_trial("t-005", _trial(n_rois))
        s3.reset()
        opened = zs.open_experiment(url, storage_options=s3.options())
        opening = s3.count()
        trial = opened.load_trial("t-005")
        counts[n_rois] = (opening, s3.count() - opening)
        assert trial.data.X.numblocks[0] == n_rois // 16
    assert counts[32] == counts[640], counts
    opening, loading = counts[640]
    assert opening <= 2 and loading <= 30, counts


class SlowStore(WrapperStore):  # type: ignore[type-arg]
    """Adds latency to every read and records how many are in flight at once."""

    def __init__(self, store: Any, latency: float = 0.05, stats: dict[str, int] | None = None):
        super().__init__(store)
        self.latency = latency
        self.stats = stats if stats is not None else {"now": 0, "max": 0, "reads": 0}
        self._lock = threading.Lock()

    def _with_store(self, store: Any) -> SlowStore:
        return type(self)(store, self.latency, self.stats)

    def with_read_only(self, read_only: bool = False) -> SlowStore:
        return type(self)(self._store.with_read_only(read_only), self.latency, self.stats)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        with self._lock:
            self.stats["now"] += 1
            self.stats["reads"] += 1
            self.stats["max"] = max(self.stats["max"], self.stats["now"])
        try:
            await asyncio.sleep(self.latency)
            return await self._store.get(key, prototype, byte_range)
        finally:
            with self._lock:
                self.stats["now"] -= 1


def test_reads_from_a_slow_store_overlap(tmp_path: Path) -> None:
    config = StorageConfig(shard_bytes=16 * 512 * 4, inner_rois=16, inner_frames=512)
    X = np.random.default_rng(0).random((64 * 16, 512)).astype(np.float32)
    zs.create_experiment(tmp_path / "e.zarr", exp_id="E", config=config).add_trial(
        "t", zs.AnnotatedData(X)
    )
    slow = SlowStore(LocalStore(str(tmp_path / "e.zarr")))
    data = zs.open_experiment(slow).load_trial("t").data
    assert data.X.numblocks == (64, 1)
    slow.stats.update(now=0, max=0, reads=0)
    t = time.perf_counter()
    np.testing.assert_array_equal(data.X.compute(), X)
    elapsed = time.perf_counter() - t
    # 64 shards, one request each (a whole shard is read at once), at 50 ms a request:
    # serial reads would take >= 3.2 s. dask's workers overlap them.
    assert slow.stats["reads"] >= 64
    assert slow.stats["max"] >= 2, slow.stats
    print(f"64 shards at 50 ms/request: {elapsed:.2f} s, {slow.stats}")


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


def test_cli_on_s3(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    exp = zs.create_experiment(url, exp_id="RL109", storage_options=s3.options())
    exp.add_trial("t-005", _trial(20, 300))
    opts = [arg for k, v in s3.options().items() for arg in ("--storage-option", f"{k}={v}")]
    assert main(["info", url, *opts]) == 0
    assert "trial 't-005': 20 ROIs x 300 frames" in capsys.readouterr().out
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


def test_an_obstore_store_works_the_same(s3: S3Server) -> None:
    obstore = pytest.importorskip("obstore.store")
    from zarr.storage import ObjectStore

    bucket = s3.new_bucket()
    store = ObjectStore(
        obstore.S3Store(
            bucket,
            prefix="exp.zarr",
            endpoint=s3.endpoint,
            access_key_id="testing",
            secret_access_key="testing",
            region="us-east-1",
            client_options={"allow_http": True},
        )
    )
    adata = _trial(40, 256)
    zs.create_experiment(store, exp_id="E").add_trial("t", adata)
    trial = zs.open_experiment(store, mode="r+").load_trial("t")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
    assert trial.save() == ["layers/dFF", "uns"]
    again = zs.open_experiment(store).load_trial("t").data
    np.testing.assert_array_equal(again.X.compute(), adata.X)
    np.testing.assert_array_equal(
        again.layers["dFF"].compute(), zs.normalize_dff(adata.X, normalize_pct=50)
    )
    assert isinstance(pickle.loads(pickle.dumps(store)), ObjectStore)  # ships to workers


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
    s3.outage_after = 40  # the service goes down in the middle of the save
    with pytest.raises(Exception, match=r"503|Service|Unavailable|SlowDown|Reduce"):
        trial.save()
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
