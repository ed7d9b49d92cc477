"""Shared fixtures: store kinds, a read counter, a scheduler that forbids computing."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import icechunk
import icechunk.store
import numpy as np
import pandas as pd
import pytest
from s3server import S3Server

import zstore as zs


class ReadCounter:
    """Counts reads per key through every Icechunk store of the process.

    zstore reads through Icechunk sessions (never through a zarr store the tests could
    wrap), so the counter patches ``IcechunkStore.get`` and ``get_partial_values`` for
    the duration of a test; keys are the Zarr keys (``trials/t/X/c/0/0``).
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def chunk_reads(self) -> dict[str, int]:
        """Reads of anything but metadata documents."""
        return {k: v for k, v in self.counts.items() if not k.endswith("zarr.json")}

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> ReadCounter:
    """Counts every key read through Icechunk while the test runs."""
    counter = ReadCounter()
    get = icechunk.store.IcechunkStore.get
    get_partial = icechunk.store.IcechunkStore.get_partial_values

    async def counted_get(self: Any, key: str, prototype: Any, byte_range: Any = None) -> Any:
        counter.add(key)
        return await get(self, key, prototype, byte_range)

    async def counted_partial(self: Any, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            counter.add(key)
        return await get_partial(self, prototype, key_ranges)

    monkeypatch.setattr(icechunk.store.IcechunkStore, "get", counted_get)
    monkeypatch.setattr(icechunk.store.IcechunkStore, "get_partial_values", counted_partial)
    return counter


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


class Where:
    """A place for an experiment and the options to reach it: ``where.create(...)``."""

    def __init__(self, store: Any, options: dict[str, Any] | None = None):
        self.store = store
        self.options = options

    def create(self, **kwargs: Any) -> zs.Experiment:
        return zs.create_experiment(self.store, storage_options=self.options, **kwargs)

    def open(self, **kwargs: Any) -> zs.Experiment:
        return zs.open_experiment(self.store, storage_options=self.options, **kwargs)

    def __repr__(self) -> str:
        return f"Where({self.store!r})"


@pytest.fixture(params=["local", "memory", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """A fresh place of each kind the round-trip suite covers."""
    if request.param == "local":
        return Where(str(tmp_path / "exp.zarr"))
    if request.param == "memory":
        return Where(icechunk.in_memory_storage())
    s3 = request.getfixturevalue("s3")
    return Where(f"s3://{s3.new_bucket()}/exp.zarr", s3.options())


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


def chunk_object(repo_dir: Path, exp: zs.Experiment, key: str) -> Path:
    """The file in an Icechunk repository's ``chunks/`` that holds the Zarr chunk ``key``.

    Icechunk names chunk objects by ID; the shard's bytes, read through zstore's own
    session, identify its file.
    """
    import zarr

    from zstore._compat import read_bytes

    store = exp.open_zarr().store
    assert isinstance(store, zarr.abc.store.Store)
    wanted = read_bytes(store, key)
    assert wanted is not None, f"no chunk {key}"
    for path in sorted((repo_dir / "chunks").iterdir()):
        if path.stat().st_size == len(wanted) and path.read_bytes() == wanted:
            return path
    raise AssertionError(f"no object in {repo_dir}/chunks holds {key}")


__all__ = [
    "ReadCounter",
    "Where",
    "chunk_object",
    "make_adata",
    "raise_if_dask_computes",
]
