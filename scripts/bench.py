"""Benchmarks: zstore against the paths users take today, and this machine's ceilings.

Every step runs in a fresh subprocess, timed, with its peak RSS. Ratios in the table
are relative to zstore's row for the same work, so a noisy machine still compares
fairly. Usage: scripts/bench --size small|medium|large [--out BENCHMARKS.md].
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES = {
    # name: (ROIs, frames per trial, trials)
    "small": (1024, 20_000, 3),
    "medium": (4096, 200_000, 3),
    "large": (4096, 1_000_000, 3),  # 49 GB of F: 2x this machine's RAM
    "fits": (4096, 550_000, 3),  # the largest run this machine's disk holds (27 GB of F)
}
GB = 1e9


# -- steps: each runs in its own process and returns {"seconds": ..., **extra} ---------------


def step_make(d: Path, n_rois: int, n_frames: int, n_trials: int) -> dict[str, Any]:
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


def step_zstore_ingest(d: Path, **_: Any) -> dict[str, Any]:
    import zstore as zs

    t = time.perf_counter()
    exp = zs.ingest_suite2p(d / "run/suite2p/plane0", d / "exp.zarr", overwrite=True, layers=())
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "bytes": _x_bytes(exp)}


def step_zstore_dff(d: Path, **_: Any) -> dict[str, Any]:
    import zstore as zs

    exp = zs.open_experiment(d / "exp.zarr", mode="r+")
    t = time.perf_counter()
    zs.compute_dff(exp, layer="dFF", normalize_pct=20, overwrite=True)
    return {"seconds": time.perf_counter() - t, "bytes": _x_bytes(exp)}


def step_zstore_open_load(d: Path, **_: Any) -> dict[str, Any]:
    import zstore as zs

    t = time.perf_counter()
    exp = zs.open_experiment(d / "exp.zarr")
    trial = exp.load_trial(exp.trialIDs[0])
    return {"seconds": time.perf_counter() - t, "shape": list(trial.data.shape)}


def step_zstore_one_trace(d: Path, **_: Any) -> dict[str, Any]:
    import numpy as np

    import zstore as zs

    X = zs.open_experiment(d / "exp.zarr").load_trial("t-000").data.X
    rois = np.random.default_rng(0).choice(X.shape[0], 7, replace=False)
    times = []
    for roi in rois:
        t = time.perf_counter()
        X[int(roi)].compute(scheduler="sync")
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "bytes": X.shape[1] * 4}


def step_zstore_window(d: Path, **_: Any) -> dict[str, Any]:
    import numpy as np

    import zstore as zs

    X = zs.open_experiment(d / "exp.zarr").load_trial("t-000").data.X
    starts = np.linspace(0, X.shape[1] - 1000, 5).astype(int)
    times = []
    for s in starts:
        t = time.perf_counter()
        X[:, int(s) : int(s) + 1000].compute()
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "bytes": X.shape[0] * 1000 * 4}


def step_zstore_concat_mean(d: Path, **_: Any) -> dict[str, Any]:
    import zstore as zs

    t = time.perf_counter()
    allf = zs.open_experiment(d / "exp.zarr").concat(layer="dFF")
    allf.X.mean(axis=1).compute()
    return {"seconds": time.perf_counter() - t, "bytes": allf.X.nbytes}


S3_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import logging; logging.disable(logging.WARNING)
import numpy as np, zstore as zs
from s3server import S3Server
s3 = S3Server().start()
url = f"s3://{s3.new_bucket()}/exp.zarr"
X = (np.random.default_rng(0).gamma(2, 50, (2048, 20000)) + 100).astype("float32")
exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options())
s3.reset(); t = time.perf_counter()
exp.add_trial("t", zs.AnnotatedData(X))
out = {"write_s": time.perf_counter() - t, "write_requests": s3.count()}
runs = []
for _ in range(3):
    s3.reset(); t = time.perf_counter()
    trial = zs.open_experiment(url, storage_options=s3.options()).load_trial("t")
    opened = (time.perf_counter() - t, s3.count())
    s3.reset(); t = time.perf_counter(); trial.data.X.compute()
    whole = (time.perf_counter() - t, s3.count())
    s3.reset(); t = time.perf_counter(); trial.data.X[1234].compute(scheduler="sync")
    trace = (time.perf_counter() - t, s3.count())
    runs.append((opened, whole, trace))
for i, name in enumerate(("open_load", "read_all", "one_trace")):
    best = sorted(runs, key=lambda r: r[i][0])[1][i]  # the median of 3
    out[name + "_s"], out[name + "_requests"] = best
out["bytes"] = X.nbytes
print("RESULT " + json.dumps(out))
s3.stop()
"""


def _describe_source(src: str) -> str:
    """A checkout as 'commit abc1234 (path)' (installed metadata names one version only)."""
    commit = subprocess.run(
        ["git", "-C", src, "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    return f"{commit[:60]} ({src})" if commit else src


def compare_s3(source: str) -> str:
    """One trial on a local S3 server (moto): this zstore against another, same data."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    results = {}
    for which, src in (("other", source), ("this", None)):
        env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
        proc = subprocess.run(
            [sys.executable, "-c", S3_SCRIPT, tests],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        results[which] = json.loads(line[-1][7:]) if line else {"error": proc.stderr[-300:]}
        print(f"  s3 {which}: {results[which]}", flush=True)
    a, b = results["other"], results["this"]
    lines = [
        "One trial of 2048 ROIs x 20000 frames (164 MB) on moto's S3 server on 127.0.0.1; "
        "median of 3; requests counted by the server. Other: "
        f"{_describe_source(source)}; this: "
        f"{_describe_source(str(Path(__file__).resolve().parent.parent))}.",
        "",
        "| what | other: time | other: requests | this: time | this: requests |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("write", "add_trial (write the trial)"),
        ("open_load", "open_experiment + load_trial"),
        ("read_all", "read all of X"),
        ("one_trace", "one ROI's whole trace"),
    ):
        lines.append(
            f"| {label} | {a[key + '_s']:.3f} s | {a[key + '_requests']} | "
            f"{b[key + '_s']:.3f} s | {b[key + '_requests']} |"
        )
    gb = b["bytes"] / GB
    lines.append(
        f"\nWhole-trial read throughput: other {gb / a['read_all_s']:.2f} GB/s, "
        f"this {gb / b['read_all_s']:.2f} GB/s."
    )
    return "\n".join(lines) + "\n"


def _reference_dff(F: Any, pct: float = 20) -> Any:
    """The reference tool's dF/F, row by row, as users run it today."""
    import numpy as np

    out = np.empty(F.shape, dtype=np.float32)
    for i, row in enumerate(F):
        t = np.percentile(row, pct)
        f0 = np.mean(row[row < t])
        out[i] = (row - f0) / abs(f0) * 100
    return out


def step_inmemory(d: Path, n_frames: int, n_trials: int, **_: Any) -> dict[str, Any]:
    """np.load of F, the reference dF/F in numpy, AnnData(...).write_zarr with defaults."""
    import warnings

    import anndata as ad
    import numpy as np

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    F_all = np.load(d / "run/suite2p/plane0/F.npy")
    nbytes = 0
    for k in range(n_trials):
        F = np.ascontiguousarray(F_all[:, k * n_frames : (k + 1) * n_frames])
        dff = _reference_dff(F)
        ad.AnnData(F, layers={"dFF": dff}).write_zarr(d / f"inmemory-{k}.zarr")
        nbytes += F.nbytes
        del F, dff
    return {"seconds": time.perf_counter() - t, "bytes": nbytes}


def step_anndata_lazy(d: Path, **_: Any) -> dict[str, Any]:
    """anndata's lazy path: dask X from the same Zarr, dF/F as dask, write_zarr."""
    import warnings

    import anndata as ad
    import dask.array as da
    import numpy as np
    import zarr

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    nbytes = 0
    for tid in sorted(p.name for p in (d / "exp.zarr/trials").iterdir() if p.is_dir()):
        X = da.from_zarr(zarr.open_array(d / f"exp.zarr/trials/{tid}/X", mode="r"))
        X = X.rechunk({0: X.chunks[0][0], 1: -1})
        dff = X.map_blocks(_reference_dff, dtype=np.float32)
        ad.AnnData(X, layers={"dFF": dff}).write_zarr(d / f"anndata-{tid}.zarr")
        nbytes += X.nbytes
    return {"seconds": time.perf_counter() - t, "bytes": nbytes}


def step_anndata_read_lazy(d: Path, **_: Any) -> dict[str, Any]:
    import warnings

    import anndata as ad
    import zarr

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    lazy = ad.experimental.read_lazy(zarr.open_group(d / "anndata-t-000.zarr", mode="r"))
    lazy.X[0].compute()
    return {"seconds": time.perf_counter() - t}


def step_ceiling_copy(d: Path, n_rois: int, n_frames: int, **_: Any) -> dict[str, Any]:
    import numpy as np

    a = np.load(d / "run/suite2p/plane0/F.npy", mmap_mode="r")[:, :n_frames]
    a = np.ascontiguousarray(a)
    b = np.empty_like(a)
    np.copyto(b, a)  # fault the pages in first: this row is the copy, not the faults
    t = time.perf_counter()
    np.copyto(b, a)
    return {"seconds": time.perf_counter() - t, "bytes": a.nbytes}


def step_ceiling_zarr(d: Path, n_rois: int, n_frames: int, **_: Any) -> dict[str, Any]:
    """A zarr write and read of one trial's bytes, same codec and sharding, no compute."""
    import numpy as np
    import zarr

    from zstore.arrays import StorageConfig, create_matrix

    a = np.ascontiguousarray(np.load(d / "run/suite2p/plane0/F.npy", mmap_mode="r")[:, :n_frames])
    g = zarr.open_group(d / "ceiling.zarr", mode="w")
    arr = create_matrix(g, "X", shape=a.shape, dtype=a.dtype, config=StorageConfig())
    rows = arr.shards[0]
    t = time.perf_counter()
    for s in range(0, a.shape[0], rows):
        arr[s : s + rows] = a[s : s + rows]
    write = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, a.shape[0], rows):
        arr[s : s + rows]
    read = time.perf_counter() - t
    return {"seconds": write, "read_seconds": read, "bytes": a.nbytes}


def step_ceiling_kernel(d: Path, n_frames: int, **_: Any) -> dict[str, Any]:
    """zstore's dF/F kernel alone, in memory, on one trial, both cores."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from zstore.processing.dff import _dff_block

    a = np.ascontiguousarray(np.load(d / "run/suite2p/plane0/F.npy", mmap_mode="r")[:, :n_frames])
    params = {"baseline": "percentile", "normalize_pct": 20.0}
    blocks = np.array_split(np.arange(a.shape[0]), max(2, a.shape[0] // 64))
    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(lambda rows: _dff_block(a[rows[0] : rows[-1] + 1], params), blocks))
    return {"seconds": time.perf_counter() - t, "bytes": a.nbytes}


def step_kernel_vs_percentile(d: Path, **_: Any) -> dict[str, Any]:
    """np.percentile(axis=1) against zstore's threshold selection and whole dF/F."""
    import numpy as np

    from zstore.processing.dff import _dff_block

    out = {}
    for shape in [(640, 16368), (4096, 100000)]:
        x = (np.random.default_rng(0).gamma(2, 50, shape) + 300).astype(np.float32)
        params = {"baseline": "percentile", "normalize_pct": 20.0}
        out[f"{shape[0]}x{shape[1]}"] = {
            "np.percentile": _best(lambda x=x: np.percentile(x, 20, axis=1)),
            "threshold": _best(lambda x=x: _thresholds(x)),
            "dff": _best(lambda x=x, p=params: _dff_block(x, p)),
        }
    return {"seconds": 0.0, "kernels": out}


def _thresholds(x: Any) -> None:
    import numpy as np

    lo = int(np.floor((x.shape[1] - 1) * 0.2))
    for s in range(0, x.shape[0], 20):
        part = np.partition(x[s : s + 20], lo, axis=1)
        part[:, lo + 1 :].min(axis=1)


def _best(fn: Any, n: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def compare_storage(out: Path | None) -> str:
    """Codec x inner chunk on realistic traces (synthetic GCaMP-like F), one core."""
    import tempfile

    import numpy as np
    import zarr

    import zstore.synthetic as syn
    from zstore.arrays import StorageConfig, create_matrix

    work = Path(tempfile.mkdtemp())
    plane = syn.write_suite2p_plane(
        work, n_rois=512, frames_per_file=[40_000], fneu_spks="zeros", seed=5
    )
    F = np.load(plane / "F.npy")
    lines = [
        "| codec | level | inner chunk | ratio | write (GB/s) | read (GB/s) | one trace (ms) | 1000-frame window (ms) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    configs = [(c, lvl, (16, 8192)) for c, lvl in [
        ("none", 0), ("blosc-lz4", 5), ("blosc-lz4-bit", 5), ("blosc-zstd", 1), ("blosc-zstd-bit", 1),
        ("zstd", 0), ("zstd", 1), ("zstd", 3)]]  # fmt: skip
    configs += [
        ("blosc-lz4", 5, inner) for inner in [(16, 32768), (32, 16384), (64, 8192), (8, 16384)]
    ]
    for codec, level, inner in configs:
        cfg = StorageConfig(codec=codec, clevel=level, inner_rois=inner[0], inner_frames=inner[1])
        group = zarr.open_group(work / "c.zarr", mode="w")
        arr = create_matrix(group, "X", shape=F.shape, dtype=F.dtype, config=cfg)
        rows = arr.shards[0]
        t = time.perf_counter()
        for s in range(0, F.shape[0], rows):
            arr[s : s + rows] = F[s : s + rows]
        write = time.perf_counter() - t
        t = time.perf_counter()
        for s in range(0, F.shape[0], rows):
            arr[s : s + rows]
        read = time.perf_counter() - t
        one = _best(lambda arr=arr: arr[77, :], 5)
        window = _best(lambda arr=arr: arr[:, 20_000:21_000], 3)
        stored = arr.nbytes_stored()
        lines.append(
            f"| {codec} | {level} | {inner[0]}x{inner[1]} | {F.nbytes / stored:.2f} | {F.nbytes / GB / write:.2f} | "
            f"{F.nbytes / GB / read:.2f} | {one * 1000:.1f} | {window * 1000:.1f} |"
        )
        print(lines[-1], flush=True)
    shutil.rmtree(work, ignore_errors=True)
    text = (
        f"Storage choices on {F.shape[0]} x {F.shape[1]} synthetic GCaMP-like traces "
        f"({F.nbytes / 1e6:.0f} MB), written shard by shard with one writer (`scripts/bench --compare`):\n\n"
        + "\n".join(lines)
        + "\n"
    )
    if out:
        out.write_text(text)
    return text


def _x_bytes(exp: Any) -> int:
    return sum(exp.load_trial(t).data.X.nbytes for t in exp.trialIDs)


STEPS = {name[5:]: fn for name, fn in globals().items() if name.startswith("step_")}


# -- orchestration ------------------------------------------------------------------------


def run_step(name: str, d: Path, size: str, source: str | None = None) -> dict[str, Any]:
    """Run one step in a fresh interpreter; add its peak RSS (VmHWM of that process:
    ru_maxrss after fork+exec would start at the parent's RSS).

    ``source``: a checkout of another zstore version to import instead of this one.
    """
    code = (
        "import json, sys; sys.path.insert(1, sys.argv[1]); import bench; "
        "r = bench.run_here(sys.argv[2], sys.argv[3], sys.argv[4]); "
        "r['peak_mb'] = bench.peak_mb(); "
        "print('RESULT ' + json.dumps(r))"
    )
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = source
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), name, str(d), size],
        capture_output=True,
        text=True,
        env=env,
        cwd=d,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_here(name: str, d: str, size: str) -> dict[str, Any]:
    n_rois, n_frames, n_trials = SIZES[size]
    return STEPS[name](Path(d), n_rois=n_rois, n_frames=n_frames, n_trials=n_trials)


ROWS = [
    # (step, label, how throughput is counted)
    ("zstore_ingest", "zstore: ingest (F -> X, all trials)", "bytes"),
    ("zstore_dff", "zstore: dF/F computed and saved, all trials", "bytes"),
    ("zstore_open_load", "zstore: open + load_trial", None),
    ("zstore_one_trace", "zstore: one ROI's whole trace", "bytes"),
    ("zstore_window", "zstore: all ROIs, 1000-frame window", "bytes"),
    ("zstore_concat_mean", "zstore: concat(dFF) mean per ROI", "bytes"),
    ("inmemory", "today: np.load + reference dF/F + AnnData.write_zarr", "bytes"),
    ("anndata_lazy", "anndata lazy: dask X + dask dF/F + write_zarr", "bytes"),
    ("anndata_read_lazy", "anndata lazy: read_lazy + one trace", None),
    ("ceiling_copy", "ceiling: numpy memory copy (one trial)", "bytes"),
    ("ceiling_zarr", "ceiling: zarr write, same codec (one trial)", "bytes"),
    ("ceiling_kernel", "ceiling: dF/F kernel alone in memory (one trial)", "bytes"),
]
COMPARE = {
    "inmemory": "zstore_dff",
    "anndata_lazy": "zstore_dff",
    "ceiling_kernel": "zstore_dff",
    "ceiling_zarr": "zstore_ingest",
    "ceiling_copy": "zstore_ingest",
    "anndata_read_lazy": "zstore_one_trace",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--out", default=None, help="write the report (Markdown) here")
    parser.add_argument("--dir", default="bench-data", help="scratch folder (default bench-data)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data")
    parser.add_argument(
        "--compare", action="store_true", help="compare codecs and chunk shapes instead"
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated steps to leave out (e.g. anndata_lazy)"
    )
    parser.add_argument(
        "--s3-against",
        default=None,
        metavar="SRC",
        help="compare one trial on a local S3 server (moto) with another zstore checkout",
    )
    parser.add_argument(
        "--against",
        default=None,
        metavar="SRC",
        help="a checkout of another zstore (e.g. a git worktree of 0.1): run zstore's steps "
        "with both, on the same data, and compare them",
    )
    args = parser.parse_args()
    if args.s3_against:
        report = compare_s3(args.s3_against)
        print(report)
        if args.out:
            Path(args.out).write_text(report)
        return
    if args.compare:
        print(compare_storage(Path(args.out) if args.out else None))
        return
    n_rois, n_frames, n_trials = SIZES[args.size]
    d = Path(args.dir) / args.size
    skipped = set(args.skip.split(","))
    # F, zstore's X and dF/F (~0.8 each after compression), then the baselines' stores
    factor = 2.8 if {"inmemory", "anndata_lazy"} <= skipped else 6
    need = n_rois * n_frames * n_trials * 4 * factor
    free = shutil.disk_usage(
        Path(args.dir).parent if not Path(args.dir).exists() else args.dir
    ).free
    if need > free:
        sys.exit(
            f"size {args.size} needs about {need / GB:.0f} GB of disk, {free / GB:.0f} GB are free"
        )
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    print(
        f"size {args.size}: {n_rois} ROIs x {n_frames} frames x {n_trials} trials ({n_rois * n_frames * n_trials * 4 / GB:.1f} GB of F)"
    )
    results: dict[str, dict[str, Any]] = {}
    if args.against:
        report = compare_versions(d, args.size, args.against)
        print(report)
        if args.out:
            Path(args.out).write_text(report)
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
        return
    for name in ["make", "kernel_vs_percentile", *(row[0] for row in ROWS)]:
        if name in ("inmemory",) and n_rois * n_frames * 4 * 3 > 0.8 * _ram():
            results[name] = {"error": "does not fit in this machine's memory"}
            continue
        if name in args.skip.split(","):
            results[name] = {"error": "not run at this size (--skip)"}
            continue
        t = time.perf_counter()
        results[name] = run_step(name, d, args.size)
        print(
            f"  {name:<22} {time.perf_counter() - t:7.1f} s  {json.dumps(results[name])[:140]}",
            flush=True,
        )
    report = render(results, args.size)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)


ZSTORE_STEPS = [row for row in ROWS if row[0].startswith("zstore_")]


def compare_versions(d: Path, size: str, source: str) -> str:
    """zstore's own steps with another zstore checkout and with this one, same data.

    Each version gets its own folder for its store; the synthetic run is shared.
    """
    made = run_step("make", d, size)
    print(f"  make {json.dumps(made)[:120]}", flush=True)
    other = d / "other"
    other.mkdir()
    (other / "run").symlink_to(d / "run")
    results: dict[str, dict[str, dict[str, Any]]] = {"other": {}, "this": {}}
    for name, _, _ in ZSTORE_STEPS:
        for which, folder, src in (("other", other, source), ("this", d, None)):
            results[which][name] = run_step(name, folder, size, src)
            print(f"  {which:<5} {name:<22} {json.dumps(results[which][name])[:120]}", flush=True)
    versions = {
        which: _describe_source(src or str(Path(__file__).resolve().parent.parent))
        for which, src in (("other", source), ("this", None))
    }
    n_rois, n_frames, n_trials = SIZES[size]
    lines = [
        f"Size `{size}`: {n_rois} ROIs x {n_frames} frames x {n_trials} trials; "
        f"`scripts/bench --size {size} --against {source}`; other: {versions['other']}; "
        f"this: {versions['this']}.",
        "",
        "| step | other: time | this: time | this / other | other: peak RSS (MB) | this: peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def seconds(r: dict[str, Any]) -> str:
        if "error" in r:
            return "error"
        t = r["seconds"]
        return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"

    for name, label, _ in ZSTORE_STEPS:
        a, b = results["other"][name], results["this"][name]
        ratio = (
            f"{b['seconds'] / a['seconds']:.2f}x" if "error" not in a and "error" not in b else "-"
        )
        lines.append(
            f"| {label} | {seconds(a)} | {seconds(b)} | {ratio} | "
            f"{a.get('peak_mb', 0):.0f} | {b.get('peak_mb', 0):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def render(results: dict[str, dict[str, Any]], size: str) -> str:
    from importlib.metadata import version

    import dask
    import numpy
    import zarr

    import zstore

    n_rois, n_frames, n_trials = SIZES[size]
    lines = [
        f"## Size `{size}`: {n_rois} ROIs x {n_frames} frames x {n_trials} trials "
        f"({n_rois * n_frames * 4 / GB:.2f} GB of X per trial)",
        "",
        f"Command: `scripts/bench --size {size} --out BENCHMARKS.md`; machine: {os.cpu_count()} cores, "
        f"{_ram() / 2**30:.0f} GiB, Python {platform.python_version()}; zstore {zstore.__version__}, "
        f"zarr {zarr.__version__}, anndata {version('anndata')}, dask {dask.__version__}, numpy {numpy.__version__}.",
        "",
        "| step | time (s) | throughput (GB/s) | peak RSS (MB) | vs zstore |",
        "|---|---:|---:|---:|---|",
    ]
    for name, label, _ in ROWS:
        r = results.get(name, {})
        if "error" in r:
            lines.append(f"| {label} | - | - | - | {r['error']} |")
            continue
        seconds = r["seconds"]
        gbps = f"{r['bytes'] / GB / seconds:.3f}" if r.get("bytes") and seconds else "-"
        ratio = "-"
        other = results.get(COMPARE.get(name, ""), {})
        if other and "error" not in other and r.get("bytes") and other.get("bytes"):
            mine = r["bytes"] / seconds
            theirs = other["bytes"] / other["seconds"]
            ratio = f"zstore is {theirs / mine:.2f}x its throughput"
        elif other and "error" not in other:
            ratio = f"zstore takes {other['seconds'] / seconds:.2f}x its time"
        time_text = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f}"
        lines.append(f"| {label} | {time_text} | {gbps} | {r.get('peak_mb', 0):.0f} | {ratio} |")
    zarr_row = results.get("ceiling_zarr", {})
    if "read_seconds" in zarr_row:
        lines.append(
            f"\nZarr read of the same trial (same codec, no compute): {zarr_row['read_seconds']:.2f} s "
            f"({zarr_row['bytes'] / GB / zarr_row['read_seconds']:.3f} GB/s)."
        )
    kernels = results.get("kernel_vs_percentile", {}).get("kernels", {})
    if kernels:
        lines += ["", "dF/F kernel, one core, in memory (best of 3):", "",
                  "| matrix | np.percentile(axis=1) | zstore threshold | speed-up | zstore whole dF/F |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for shape, k in kernels.items():
            lines.append(
                f"| {shape} | {k['np.percentile']:.3f} s | {k['threshold']:.3f} s | "
                f"{k['np.percentile'] / k['threshold']:.1f}x | {k['dff']:.3f} s |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
