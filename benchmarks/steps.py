"""The measurements. A step is a plain function ``(d, n_rois, n_frames, n_trials) -> dict``.

``d`` is the run's scratch folder; the dict holds ``seconds`` and, where a throughput
applies, ``bytes``, plus anything the report shows. :data:`STEPS` lists them by name;
:mod:`benchmarks.step` runs one per process.

Steps import their libraries inside the function: the peak RSS of a step's process then
counts only what that step uses, and zstore's own steps also run with an older zstore
checkout (``--against``), which may lack modules the other steps import. Steps use
zstore's public API only (``zstore.arrays`` for the storage ceilings included).

The storage comparison (``--compare``) is here too, as functions the orchestrator calls
in its own process: :data:`STORAGE_CONFIGS`, :func:`storage_traces`,
:func:`storage_choice`.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

Result = dict[str, Any]
Step = Callable[[Path, int, int, int], Result]

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_ROWS = 32  # rows per reference_dff call (it works in float64: see reference_dff32)


# -- zstore ---------------------------------------------------------------------------------


def make(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """Synthetic Suite2p run; Fneu and spks are left zero (only F is ingested)."""
    import zstore.synthetic as syn

    t = time.perf_counter()
    plane = syn.write_suite2p_plane(
        d / "run",
        n_rois=n_rois,
        frames_per_file=[n_frames] * n_trials,
        non_cell_fraction=0.0,
        fneu_spks="zeros",
        seed=1,
    )
    return {"seconds": time.perf_counter() - t, "plane": str(plane)}


def zstore_ingest(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    import zstore as zs

    t = time.perf_counter()
    exp = zs.ingest_suite2p(d / "run/suite2p/plane0", d / "exp.zarr", overwrite=True, layers=())
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "bytes": _x_bytes(exp)}


def zstore_dff(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    import zstore as zs

    exp = zs.open_experiment(d / "exp.zarr", mode="r+")
    t = time.perf_counter()
    zs.compute_dff(exp, layer="dFF", normalize_pct=20, overwrite=True)
    return {"seconds": time.perf_counter() - t, "bytes": _x_bytes(exp)}


def zstore_open_load(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    import zstore as zs

    t = time.perf_counter()
    exp = zs.open_experiment(d / "exp.zarr")
    trial = exp.load_trial(exp.trialIDs[0])
    return {"seconds": time.perf_counter() - t, "shape": list(trial.data.shape)}


def zstore_one_trace(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """Median of 7 random ROIs' whole traces, one thread; each read once first (warm page
    cache and shard indexes, as a user reading traces in a loop has)."""
    import zstore as zs

    X = zs.open_experiment(d / "exp.zarr").load_trial("t-000").data.X
    rois = np.random.default_rng(0).choice(X.shape[0], 7, replace=False)
    times = []
    for roi in rois:
        X[int(roi)].compute(scheduler="sync")
        t = time.perf_counter()
        X[int(roi)].compute(scheduler="sync")
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "bytes": X.shape[1] * 4}


def zstore_window(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """Median of 5 windows of 1000 frames, all ROIs; each read once first (warm cache)."""
    import zstore as zs

    X = zs.open_experiment(d / "exp.zarr").load_trial("t-000").data.X
    starts = np.linspace(0, X.shape[1] - 1000, 5).astype(int)
    times = []
    for s in starts:
        X[:, int(s) : int(s) + 1000].compute()
        t = time.perf_counter()
        X[:, int(s) : int(s) + 1000].compute()
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "bytes": X.shape[0] * 1000 * 4}


def zstore_read_all(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """One whole trial's X read and reduced (sum per ROI), all cores."""
    import zstore as zs

    X = zs.open_experiment(d / "exp.zarr").load_trial("t-000").data.X
    t = time.perf_counter()
    X.sum(axis=1).compute()
    return {"seconds": time.perf_counter() - t, "bytes": X.nbytes}


def zstore_concat_mean(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    import zstore as zs

    t = time.perf_counter()
    allf = zs.open_experiment(d / "exp.zarr").concat(layer="dFF")
    allf.X.mean(axis=1).compute()
    return {"seconds": time.perf_counter() - t, "bytes": allf.X.nbytes}


def _x_bytes(exp: Any) -> int:
    return sum(exp.load_trial(t).data.X.nbytes for t in exp.trialIDs)


# -- the paths users take today -----------------------------------------------------------


def reference_dff32(F: np.ndarray) -> np.ndarray:
    """The reference tool's dF/F (``reference_dff``), row by row, into float32.

    ``reference_dff`` returns float64 and converts its input to float64 first; called on
    a whole trial it would hold two float64 copies of it, which is not what the tool users
    run does (it fills a float32 array row by row). Blocks of rows keep that footprint.
    """
    from zstore.processing.reference import reference_dff

    out = np.empty(F.shape, dtype=np.float32)
    for s in range(0, F.shape[0], REFERENCE_ROWS):
        out[s : s + REFERENCE_ROWS] = reference_dff(F[s : s + REFERENCE_ROWS], 20)
    return out


def inmemory(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """np.load of F, the reference dF/F in numpy, AnnData(...).write_zarr with defaults."""
    import warnings

    import anndata as ad

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    F_all = np.load(d / "run/suite2p/plane0/F.npy")
    nbytes = 0
    for k in range(n_trials):
        F = np.ascontiguousarray(F_all[:, k * n_frames : (k + 1) * n_frames])
        dff = reference_dff32(F)
        ad.AnnData(F, layers={"dFF": dff}).write_zarr(d / f"inmemory-{k}.zarr")
        nbytes += F.nbytes
        del F, dff
    return {"seconds": time.perf_counter() - t, "bytes": nbytes}


def anndata_lazy(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """anndata's lazy path: dask X from the same Zarr, dF/F as dask, write_zarr."""
    import warnings

    import anndata as ad
    import dask.array as da

    import zstore as zs

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    nbytes = 0
    exp = zs.open_experiment(d / "exp.zarr")  # the same stored X, through its Zarr group
    for tid in exp.trialIDs:
        X = da.from_zarr(exp.open_zarr(f"trials/{tid}")["X"])
        X = X.rechunk({0: X.chunks[0][0], 1: -1})
        dff = X.map_blocks(reference_dff32, dtype=np.float32)
        ad.AnnData(X, layers={"dFF": dff}).write_zarr(d / f"anndata-{tid}.zarr")
        nbytes += X.nbytes
    return {"seconds": time.perf_counter() - t, "bytes": nbytes}


def anndata_read_lazy(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    import warnings

    import anndata as ad
    import zarr

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    lazy = ad.experimental.read_lazy(zarr.open_group(d / "anndata-t-000.zarr", mode="r"))
    lazy.X[0].compute()
    return {"seconds": time.perf_counter() - t}


# -- this machine's ceilings ----------------------------------------------------------------


def _first_trial(d: Path, n_frames: int) -> np.ndarray:
    F = np.load(d / "run/suite2p/plane0/F.npy", mmap_mode="r")
    return np.ascontiguousarray(F[:, :n_frames])


def ceiling_copy(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    a = _first_trial(d, n_frames)
    b = np.empty_like(a)
    np.copyto(b, a)  # fault the pages in first: this row is the copy, not the faults
    t = time.perf_counter()
    np.copyto(b, a)
    return {"seconds": time.perf_counter() - t, "bytes": a.nbytes}


def ceiling_zarr(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """A zarr write and read of one trial's bytes, same codec and sharding, no compute."""
    import zarr

    from zstore.arrays import StorageConfig, create_matrix

    a = _first_trial(d, n_frames)
    g = zarr.open_group(d / "ceiling.zarr", mode="w")
    arr = create_matrix(g, "X", shape=a.shape, dtype=a.dtype, config=StorageConfig())
    write, read = _write_read_by_shard(arr, a)
    return {"seconds": write, "read_seconds": read, "bytes": a.nbytes}


def ceiling_kernel(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """zstore's dF/F kernel alone (normalize_dff on numpy), in memory, one trial, all cores."""
    import zstore as zs

    a = _first_trial(d, n_frames)
    blocks = np.array_split(np.arange(a.shape[0]), max(2, a.shape[0] // 64))

    def block_dff(rows: np.ndarray) -> np.ndarray:
        return zs.normalize_dff(a[rows[0] : rows[-1] + 1], normalize_pct=20)

    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(block_dff, blocks))
    return {"seconds": time.perf_counter() - t, "bytes": a.nbytes}


def kernel_vs_percentile(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """np.percentile(axis=1) against zstore's threshold selection and whole dF/F, one core.

    Fixed shapes, whatever the size; ``seconds`` is 0 (the report reads ``kernels``).
    """
    import zstore as zs

    out = {}
    for shape in [(640, 16368), (4096, 100000)]:
        x = (np.random.default_rng(0).gamma(2, 50, shape) + 300).astype(np.float32)
        out[f"{shape[0]}x{shape[1]}"] = {
            "np.percentile": best_of(lambda x=x: np.percentile(x, 20, axis=1)),
            "threshold": best_of(lambda x=x: _thresholds(x)),
            "dff": best_of(lambda x=x: zs.normalize_dff(x, normalize_pct=20)),
        }
    return {"seconds": 0.0, "kernels": out}


def _thresholds(x: np.ndarray) -> None:
    """zstore's threshold selection: one partition per row, then the minimum to its right."""
    lo = int(np.floor((x.shape[1] - 1) * 0.2))
    for s in range(0, x.shape[0], 20):
        part = np.partition(x[s : s + 20], lo, axis=1)
        part[:, lo + 1 :].min(axis=1)


def best_of(fn: Callable[[], object], n: int = 3) -> float:
    """The best of ``n`` timed calls of ``fn``, after one untimed warm-up call."""
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _write_read_by_shard(arr: Any, a: np.ndarray) -> tuple[float, float]:
    """Seconds to write ``a`` into the zarr array ``arr`` shard row by shard row, then read."""
    rows = arr.shards[0]
    t = time.perf_counter()
    for s in range(0, a.shape[0], rows):
        arr[s : s + rows] = a[s : s + rows]
    write = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, a.shape[0], rows):
        arr[s : s + rows]
    return write, time.perf_counter() - t


# -- S3 (--s3-against) ----------------------------------------------------------------------

S3_SHAPE = (2048, 20_000)


def s3_trial(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """One trial of :data:`S3_SHAPE` on moto's S3 server on 127.0.0.1, whatever the size.

    Writes it (``add_trial``), then, three times: open + load_trial, read all of X, one
    ROI's trace; each the median of the three, with the requests the server counted.
    """
    import logging

    import zstore as zs

    logging.disable(logging.WARNING)
    s3 = _load_s3server().S3Server().start()
    try:
        url = f"s3://{s3.new_bucket()}/exp.zarr"
        X = (np.random.default_rng(0).gamma(2, 50, S3_SHAPE) + 100).astype("float32")
        exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options())
        s3.reset()
        t = time.perf_counter()
        exp.add_trial("t", zs.AnnotatedData(X))
        out: Result = {"write_s": time.perf_counter() - t, "write_requests": s3.count()}
        runs = []
        for _ in range(3):
            s3.reset()
            t = time.perf_counter()
            trial = zs.open_experiment(url, storage_options=s3.options()).load_trial("t")
            opened = (time.perf_counter() - t, s3.count())
            s3.reset()
            t = time.perf_counter()
            trial.data.X.compute()
            whole = (time.perf_counter() - t, s3.count())
            s3.reset()
            t = time.perf_counter()
            trial.data.X[1234].compute(scheduler="sync")
            trace = (time.perf_counter() - t, s3.count())
            runs.append((opened, whole, trace))
        for i, name in enumerate(("open_load", "read_all", "one_trace")):
            best = sorted(runs, key=lambda r: r[i][0])[1][i]  # the median of 3
            out[name + "_s"], out[name + "_requests"] = best
        out["bytes"] = X.nbytes
        return out
    finally:
        s3.stop()


# -- inner chunk shapes on the storage engine (--chunk-shapes) ---------------------------------

CHUNK_SHAPES = ["32x16384", "16x16384", "16x8192", "64x8192", "32x4096", "16x4096", "8x8192"]
CHUNK_SHAPE_RUN = (4096, 100_000)


def chunk_shape_run(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """The synthetic run the chunk-shape steps share: one trial of 4096 x 100000."""
    import zstore.synthetic as syn

    t = time.perf_counter()
    rois, frames = CHUNK_SHAPE_RUN
    syn.write_suite2p_plane(
        d / "shapes", n_rois=rois, frames_per_file=[frames], non_cell_fraction=0.0,
        fneu_spks="zeros", seed=1,
    )  # fmt: skip
    return {"seconds": time.perf_counter() - t}


def chunk_shape(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """One inner chunk shape (``ZSTORE_BENCH_INNER``, e.g. ``32x16384``) on Icechunk,
    through zstore's API: add_trial of 4096 x 100000, then the whole trial read (sum
    per ROI), one trace (median of 7 ROIs, each read once first) and a 1000-frame window
    of all ROIs (median of 5, each read once first)."""
    import shutil

    import zstore as zs

    rois, frames = (int(n) for n in os.environ["ZSTORE_BENCH_INNER"].split("x"))
    F = np.load(d / "shapes/suite2p/plane0/F.npy", mmap_mode="r")
    store = d / f"shape-{rois}x{frames}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    exp = zs.create_experiment(
        store, exp_id="E", config=zs.StorageConfig(inner_rois=rois, inner_frames=frames)
    )
    t = time.perf_counter()
    exp.add_trial("t", zs.AnnotatedData(np.asarray(F)))
    write = time.perf_counter() - t
    X = zs.open_experiment(store).load_trial("t").data.X
    t = time.perf_counter()
    X.sum(axis=1).compute()
    read = time.perf_counter() - t

    def warm_median(reads: list[Callable[[], Any]]) -> float:
        times = []
        for read_one in reads:
            read_one()
            t = time.perf_counter()
            read_one()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    picked = np.random.default_rng(0).choice(X.shape[0], 7, replace=False)
    starts = np.linspace(0, X.shape[1] - 1000, 5).astype(int)
    trace = warm_median([lambda r=int(r): X[r].compute(scheduler="sync") for r in picked])
    window = warm_median([lambda s=int(s): X[:, s : s + 1000].compute() for s in starts])
    shutil.rmtree(store, ignore_errors=True)
    return {
        "inner": [rois, frames],
        "bytes": X.nbytes,
        "write_seconds": write,
        "read_seconds": read,
        "one_trace_seconds": trace,
        "window_seconds": window,
    }


# -- event-aligned windows (--events) -----------------------------------------------------

EVENTS_TRIAL = (4096, 100_000)
N_EVENTS = 1000


def events_trial(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """A stored trial of 4096 x 100000 float32 (1.64 GB) at 30 Hz, written by add_trial."""
    import dask.array as da
    import pandas as pd

    import zstore as zs

    rois, frames = EVENTS_TRIAL
    X = da.random.default_rng(0).gamma(2.0, 50.0, (rois, frames), chunks=(128, frames)) + 100
    var = pd.DataFrame({"time": np.arange(frames) / 30.0}, index=[str(i) for i in range(frames)])
    t = time.perf_counter()
    exp = zs.create_experiment(d / "events.zarr", exp_id="E", overwrite=True)
    exp.add_trial("t", zs.AnnotatedData(X.astype(np.float32), var=var, uns={"fs": 30.0}))
    return {"seconds": time.perf_counter() - t, "bytes": rois * frames * 4}


def _events() -> np.ndarray:
    return np.sort(np.random.default_rng(1).uniform(1.0, EVENTS_TRIAL[1] / 30.0 - 2.0, N_EVENTS))


def zstore_event_windows(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """1000 events x 4096 ROIs x 3 s (91 frames at 30 Hz) from the stored trial, averaged
    over events (so the result, not the windows, is held): streamed by zstore."""
    import zstore as zs

    trial = zs.open_experiment(d / "events.zarr").load_trial("t")
    t = time.perf_counter()
    w = zs.event_windows(trial, _events(), before=1.0, after=2.0, layer=None)
    mean = w.mean("event").values
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "shape": list(mean.shape), "bytes": N_EVENTS * 4096 * 91 * 4}


def numpy_event_windows(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """The same windows with numpy from the trial held in memory (loading it not timed):
    one fancy index of every event's frames, then the mean over events."""
    import zstore as zs

    X = np.asarray(zs.open_experiment(d / "events.zarr").load_trial("t").data.X)
    t = time.perf_counter()
    frames = np.rint(_events() * 30.0).astype(np.int64)
    lags = np.arange(-30, 61)
    mean = np.zeros((X.shape[0], len(lags)), dtype=np.float64)
    for start in range(0, len(frames), 100):  # 100 events at a time: 150 MB of windows
        idx = frames[start : start + 100, None] + lags[None, :]
        mean += X[:, idx].sum(axis=1)
    mean /= len(frames)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "shape": list(mean.shape), "bytes": N_EVENTS * 4096 * 91 * 4}


# -- NWB export (--nwb) -------------------------------------------------------------------


def zstore_export_nwb(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """The stored trial of events_trial (4096 x 100000 float32, 1.64 GB) exported to NWB
    by zs.export_nwb, streaming; ZSTORE_BENCH_NWB_COMPRESSION picks the HDF5 filter."""
    import os

    import zstore as zs
    from zstore.nwb import export_nwb

    compression = os.environ.get("ZSTORE_BENCH_NWB_COMPRESSION", "gzip")
    exp = zs.open_experiment(d / "events.zarr")
    out = d / f"export-{compression}.nwb"
    t = time.perf_counter()
    export_nwb(
        exp,
        out,
        session_start_time="2026-05-01T10:00:00+00:00",
        compression=None if compression == "none" else compression,
        progress=False,
    )
    seconds = time.perf_counter() - t
    size = out.stat().st_size
    out.unlink()
    rois, frames = EVENTS_TRIAL
    return {
        "seconds": seconds,
        "bytes": rois * frames * 4,
        "file_bytes": size,
        "compression": compression,
    }


# -- collections (--collection) ---------------------------------------------------------------

COLLECTION_TRIALS = 5


def collection_scale(d: Path, n_rois: int, n_frames: int, n_trials: int) -> Result:
    """A synthetic collection of ``ZSTORE_BENCH_EXPERIMENTS`` experiments x 5 trials
    (8 ROIs x 50 frames each) on moto's S3 server, or on local disk
    (``ZSTORE_BENCH_WHERE=local``); then, three times each (the median): open +
    table(), and open one experiment + load one trial, with the requests the server
    counted. Peak RSS is the step's process (moto's server runs in it too on S3)."""
    import logging

    import zstore as zs
    import zstore.synthetic as syn

    logging.disable(logging.WARNING)
    n_exp = int(os.environ.get("ZSTORE_BENCH_EXPERIMENTS", "200"))
    local = os.environ.get("ZSTORE_BENCH_WHERE") == "local"
    subjects = [f"S{i:03d}" for i in range(max(1, n_exp // 4))]
    server = None if local else _load_s3server().S3Server().start()
    try:
        if server is None:
            url, options = str(d / f"lab-{n_exp}.zarr"), None
        else:
            url, options = f"s3://{server.new_bucket()}/lab.zarr", server.options()
        t = time.perf_counter()
        syn.write_collection(
            url, subjects=subjects, sessions=["d1", "d2"], n_planes=2,
            n_trials=COLLECTION_TRIALS, storage_options=options,
        )  # fmt: skip
        out: Result = {"build_s": time.perf_counter() - t, "where": "local" if local else "s3"}
        runs = []
        added = []
        for _ in range(3):
            if server is not None:
                server.reset()
            before = _reset_peak_rss()
            t = time.perf_counter()
            col = zs.open_collection(url, storage_options=options)
            table = col.table()
            opened = (time.perf_counter() - t, server.count() if server else None)
            added.append(_vm_kb("VmHWM") - before)
            if server is not None:
                server.reset()
            t = time.perf_counter()
            col.open_experiment(col.experimentIDs[-1]).load_trial("t-002")
            one = (time.perf_counter() - t, server.count() if server else None)
            runs.append((opened, one))
        for i, name in enumerate(("open_table", "open_trial")):
            best = sorted(runs, key=lambda r: r[i][0])[1][i]
            out[name + "_s"], out[name + "_requests"] = best
        out["experiments"] = len(col)
        out["trials"] = len(table)
        out["open_table_added_mb"] = max(added) / 1024
        return out
    finally:
        if server is not None:
            server.stop()


def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5); return it (kB),
    so a later VmHWM minus it is the peak that the work in between added."""
    Path("/proc/self/clear_refs").write_text("5")
    return _vm_kb("VmRSS")


def _load_s3server() -> Any:
    """The tests' S3 server (tests/s3server.py of this repository), imported by path."""
    spec = importlib.util.spec_from_file_location("s3server", ROOT / "tests" / "s3server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the storage comparison (--compare) -----------------------------------------------------

STORAGE_CONFIGS: list[tuple[str, int, tuple[int, int]]] = [
    # (codec, level, inner chunk): codecs at the default inner chunk, then inner chunks
    *(
        (codec, level, (16, 8192))
        for codec, level in [
            ("none", 0),
            ("blosc-lz4", 5),
            ("blosc-lz4-bit", 5),
            ("blosc-zstd", 1),
            ("blosc-zstd-bit", 1),
            ("zstd", 0),
            ("zstd", 1),
            ("zstd", 3),
        ]
    ),
    *(
        ("blosc-lz4", 5, inner)
        for inner in [
            (32, 16384),
            (16, 16384),
            (16, 32768),
            (64, 8192),
            (8, 8192),
            (16, 4096),
            (32, 4096),
        ]
    ),
]


def storage_traces(work: Path) -> np.ndarray:
    """Realistic traces for the storage comparison: 1024 synthetic GCaMP-like ROIs x
    100000 frames (410 MB; long enough that a trace spans several inner chunks)."""
    import zstore.synthetic as syn

    plane = syn.write_suite2p_plane(
        work, n_rois=1024, frames_per_file=[100_000], fneu_spks="zeros", seed=5
    )
    return np.load(plane / "F.npy")


def storage_choice(
    F: np.ndarray, work: Path, codec: str, level: int, inner: tuple[int, int]
) -> Result:
    """One codec x inner chunk through zstore's shard pipeline: write F shard row by shard
    row with one writer, read it whole, one trace (best of 5) and one 1000-frame window
    of all ROIs (best of 3; so both on a warm page cache); the bytes stored."""
    import zarr

    from zstore.arrays import StorageConfig, create_matrix
    from zstore.shards import ShardFormat, ShardReader, ShardWriter

    cfg = StorageConfig(codec=codec, clevel=level, inner_rois=inner[0], inner_frames=inner[1])
    group = zarr.open_group(work / "c.zarr", mode="w")
    arr = create_matrix(group, "X", shape=F.shape, dtype=F.dtype, config=cfg)
    fmt = ShardFormat.of(arr)
    assert fmt is not None, "zstore's matrices are always in zstore's shard format"
    writer, reader = ShardWriter(arr, fmt), ShardReader(arr, fmt, "bench")
    rows = fmt.shard[0]
    t = time.perf_counter()
    for s in range(0, F.shape[0], rows):
        writer[s : s + rows] = F[s : s + rows]
    write = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, F.shape[0], rows):
        reader.read((slice(s, s + rows), slice(None)))
    read = time.perf_counter() - t
    return {
        "codec": codec,
        "level": level,
        "inner": list(inner),
        "bytes": F.nbytes,
        "stored": arr.nbytes_stored(),
        "write_seconds": write,
        "read_seconds": read,
        "one_trace_seconds": best_of(lambda: reader.read((slice(77, 78), slice(None))), 5),
        "window_seconds": best_of(lambda: reader.read((slice(None), slice(20_000, 21_000))), 3),
    }


STEPS: dict[str, Step] = {
    # The main table's steps, in the order they run ("make" first: the others read its run).
    "make": make,
    "kernel_vs_percentile": kernel_vs_percentile,
    "zstore_ingest": zstore_ingest,
    "zstore_dff": zstore_dff,
    "zstore_open_load": zstore_open_load,
    "zstore_one_trace": zstore_one_trace,
    "zstore_window": zstore_window,
    "zstore_read_all": zstore_read_all,
    "zstore_concat_mean": zstore_concat_mean,
    "inmemory": inmemory,
    "anndata_lazy": anndata_lazy,
    "anndata_read_lazy": anndata_read_lazy,
    "ceiling_copy": ceiling_copy,
    "ceiling_zarr": ceiling_zarr,
    "ceiling_kernel": ceiling_kernel,
    # Run only by --s3-against / --s3-pipelines.
    "s3_trial": s3_trial,
    # Run only by --events.
    "events_trial": events_trial,
    "zstore_event_windows": zstore_event_windows,
    "numpy_event_windows": numpy_event_windows,
    # Run only by --nwb (after events_trial).
    "zstore_export_nwb": zstore_export_nwb,
    # Run only by --chunk-shapes.
    "chunk_shape_run": chunk_shape_run,
    "chunk_shape": chunk_shape,
    # Run only by --collection.
    "collection_scale": collection_scale,
}
