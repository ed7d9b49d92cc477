"""Shared fixtures: store kinds, a read-counting store, a scheduler that forbids computing."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np
import pandas as pd
import pytest
import zarr
from s3server import S3Server
from zarr.storage import LocalStore, MemoryStore, WrapperStore

import zstore as zs
import zstore.store


class CountingStore(WrapperStore):  # type: ignore[type-arg]
    """Counts reads (get) per key, like anndata's AccessTrackingStore."""

    def __init__(self, store: Any, counts: collections.Counter[str] | None = None):
        super().__init__(store)
        self.counts: collections.Counter[str] = (
            counts if counts is not None else collections.Counter()
        )
        self._lock = threading.Lock()

    def _with_store(self, store: Any) -> CountingStore:
        return type(self)(store, self.counts)

    def with_read_only(self, read_only: bool = False) -> CountingStore:
        return type(self)(self._store.with_read_only(read_only), self.counts)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        with self._lock:
            self.counts[key] += 1
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        with self._lock:
            for key, _ in key_ranges:
                self.counts[key] += 1
        return await self._store.get_partial_values(prototype, key_ranges)

    async def getsize(self, key: str) -> int:
        # the base class would read the whole object to measure it
        return await self._store.getsize(key)

    async def getsize_prefix(self, prefix: str) -> int:
        return await self._store.getsize_prefix(prefix)

    def chunk_reads(self) -> dict[str, int]:
        """Reads of anything but metadata documents."""
        return {k: v for k, v in self.counts.items() if not k.endswith("zarr.json")}

    def reset(self) -> None:
        self.counts.clear()


@contextlib.contextmanager
def raise_if_dask_computes() -> Iterator[None]:
    """Fail if anything is computed with dask (xarray's helper of the same name)."""

    def scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a dask computation was triggered where none was expected")

    with dask.config.set(scheduler=scheduler):
        yield


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3-compatible server (moto) on 127.0.0.1, for the whole session."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_url(s3: S3Server) -> str:
    """A fresh s3:// location in a fresh bucket."""
    return f"s3://{s3.new_bucket()}/exp.zarr"


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A fresh, empty store of each kind the round-trip suite covers."""
    if request.param == "local":
        return LocalStore(str(tmp_path / "exp.zarr"))
    if request.param == "memory":
        return MemoryStore()
    s3 = request.getfixturevalue("s3")
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    return zs.store.make_store(url, mode="r+", storage_options=s3.options())


def make_adata(n_rois: int = 40, n_frames: int = 300, *, seed: int = 0) -> zs.AnnotatedData:
    """A small trial with every kind of element a user stores."""
    rng = np.random.default_rng(seed)
    X = (rng.gamma(2.0, 50.0, (n_rois, n_frames)) + 100).astype(np.float32)
    obs = pd.DataFrame(
        {
            "npix": rng.integers(20, 200, n_rois),
            "radius": rng.random(n_rois).astype(np.float32) * 5,
            "iscell": rng.random(n_rois) > 0.3,
            "label": [f"roi{i}" for i in range(n_rois)],
            "kind": pd.Categorical(rng.choice(["soma", "dendrite"], n_rois)),
        },
        index=[str(i * 3) for i in range(n_rois)],
    )
    var = pd.DataFrame(
        {"time": np.arange(n_frames) / 30.0, "stim": rng.random(n_frames) > 0.9},
        index=[str(i) for i in range(n_frames)],
    )
    uns = {
        "fs": 30.0,
        "Ly": 512,
        "meanImg": rng.random((8, 8)).astype(np.float32),
        "ops": {"tau": 1.5, "filelist": ["a.tif", "b.tif"], "nested": {"depth": 3}},
    }
    adata = zs.AnnotatedData(X, obs=obs, var=var, uns=uns)
    adata.obsm["med"] = rng.integers(0, 512, (n_rois, 2))
    adata.obsm["ypix"] = zs.RaggedArray.from_arrays(
        [rng.integers(0, 512, rng.integers(1, 30)) for _ in range(n_rois)], dtype="int16"
    )
    adata.layers["Fneu"] = (X * 0.5).astype(np.float32)
    return adata


def open_counting(store: Any) -> CountingStore:
    return CountingStore(store)


__all__ = ["CountingStore", "make_adata", "open_counting", "raise_if_dask_computes", "zarr"]
