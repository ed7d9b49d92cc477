"""Orchestration: the sizes, each step in a fresh interpreter, and the comparisons.

Every step runs as ``python -m benchmarks.step NAME DIR SIZE`` in its own process, with
``PYTHONPATH`` set to this repository, or to ``SRC`` and then this repository to run
another zstore checkout (``SRC`` first: its zstore shadows this one, and this
repository still provides ``benchmarks``). The working directory is the step's scratch
folder, never a checkout: ``-m`` puts it first on ``sys.path``. Each step reports the
files it imported; a step that imported zstore from the wrong checkout counts as failed.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    # name: (ROIs, frames per trial, trials)
    "small": (1024, 20_000, 3),
    "medium": (4096, 200_000, 3),
    "large": (4096, 1_000_000, 3),  # 49 GB of F: 2x this machine's RAM
    "fits": (4096, 550_000, 3),  # the largest run this machine's disk holds (27 GB of F)
}
GB = report.GB

Result = dict[str, Any]


def run_step(
    name: str, d: Path, size: str, source: str | None = None, env: dict[str, str] | None = None
) -> Result:
    """Step ``name`` in a fresh interpreter, on the scratch folder ``d`` (also its working
    directory); with ``source``, a checkout of another zstore to import instead of this one.

    Returns the step's result (with ``peak_mb``, see benchmarks.step), or ``{"error": ...}``.
    """
    d = d.resolve()
    checkout = Path(source).resolve() if source else ROOT
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(checkout), str(ROOT)])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.step", name, str(d), size],
        capture_output=True,
        text=True,
        env=env,
        cwd=d,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: Result = json.loads(line[7:])
            wrong = _wrong_import(result, checkout)
            return {"error": wrong} if wrong else result
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def _wrong_import(result: Result, source: Path) -> str | None:
    """Why ``result`` was not measured with zstore from ``source`` and this benchmarks."""
    for key, expected in (("zstore_file", source), ("benchmarks_file", ROOT)):
        path = result.get(key)
        if path and not Path(path).resolve().is_relative_to(expected.resolve()):
            return f"{key} is {path}, not in {expected}"
    return None


def describe_source(src: str) -> str:
    """A checkout as 'commit abc1234 (path)' (installed metadata names one version only)."""
    commit = subprocess.run(
        ["git", "-C", src, "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    return f"{commit[:60]} ({src})" if commit else src


def check_disk(scratch: Path, size: str, skipped: set[str]) -> None:
    """Exit if the scratch folder's disk cannot hold a run of ``size``."""
    n_rois, n_frames, n_trials = SIZES[size]
    # F, zstore's X and dF/F (~0.8 each after compression), then the baselines' stores
    factor = 2.8 if {"inmemory", "anndata_lazy"} <= skipped else 6
    need = n_rois * n_frames * n_trials * 4 * factor
    free = shutil.disk_usage(scratch if scratch.exists() else scratch.parent).free
    if need > free:
        sys.exit(f"size {size} needs about {need / GB:.0f} GB of disk, {free / GB:.0f} GB are free")


def run_table(d: Path, size: str, skipped: set[str]) -> str:
    """Every step of the main table on a fresh synthetic run in ``d``; the report."""
    n_rois, n_frames, _ = SIZES[size]
    results: dict[str, Result] = {}
    for name in ["make", "kernel_vs_percentile", *(step for step, _ in report.ROWS)]:
        if name == "inmemory" and n_rois * n_frames * 4 * 3 > 0.8 * _ram():
            results[name] = {"error": "does not fit in this machine's memory"}
            continue
        if name in skipped:
            results[name] = {"error": "not run at this size (--skip)"}
            continue
        t = time.perf_counter()
        results[name] = run_step(name, d, size)
        print(
            f"  {name:<22} {time.perf_counter() - t:7.1f} s  {json.dumps(results[name])[:140]}",
            flush=True,
        )
    return report.main_table(results, size, SIZES[size], _machine())


def compare_versions(d: Path, size: str, source: str) -> str:
    """zstore's own steps with another zstore checkout and with this one, same data.

    Each version gets its own folder for its store; the synthetic run is shared (a
    symlink to it in the other version's folder).
    """
    made = run_step("make", d, size)
    print(f"  make {json.dumps(made)[:120]}", flush=True)
    other = d / "other"
    other.mkdir()
    (other / "run").symlink_to(d / "run")
    results: dict[str, dict[str, Result]] = {"other": {}, "this": {}}
    for name, _ in report.ZSTORE_ROWS:
        for which, folder, src in (("other", other, source), ("this", d, None)):
            results[which][name] = run_step(name, folder, size, src)
            print(f"  {which:<5} {name:<22} {json.dumps(results[which][name])[:120]}", flush=True)
    versions = {"other": describe_source(source), "this": describe_source(str(ROOT))}
    return report.versions_table(results, size, SIZES[size], source, versions)


PIPELINES = {
    # label: environment of the step's process
    "zarr-python pipeline, 2 workers": {"ZSTORE_CODEC_PIPELINE": "zarr"},
    "zstore pipeline, 1 worker": {"DASK_NUM_WORKERS": "1", "ZSTORE_CODEC_THREADS": "1"},
    "zstore pipeline, 2 workers": {},
}


def compare_pipelines(d: Path, size: str) -> str:
    """zstore's steps with zarr-python's codec pipeline and with zstore's own (1 and 2
    workers), same data; the ceilings (kernel alone, raw zarr write) in the same run."""
    made = run_step("make", d, size)
    print(f"  make {json.dumps(made)[:120]}", flush=True)
    results: dict[str, dict[str, Result]] = {}
    for which, env in PIPELINES.items():
        results[which] = {}
        for name, _ in report.ZSTORE_ROWS:
            results[which][name] = run_step(name, d, size, env=env)
            print(f"  {which:<34} {name:<20} {json.dumps(results[which][name])[:110]}", flush=True)
    ceilings = {name: run_step(name, d, size) for name in ("ceiling_zarr", "ceiling_kernel")}
    print(f"  ceilings {json.dumps(ceilings)[:200]}", flush=True)
    return report.pipelines_table(results, size, SIZES[size]) + report.targets(
        results[list(PIPELINES)[-1]], ceilings
    )


def compare_s3(source: str | None) -> str:
    """One trial on a local S3 server (moto), same data: this zstore against another
    checkout, or (``source=None``) zarr-python's codec pipeline against zstore's."""
    results = {}
    runs: tuple[tuple[str, str | None, dict[str, str] | None], ...] = (
        (("other", source, None), ("this", None, None))
        if source
        else (("other", None, {"ZSTORE_CODEC_PIPELINE": "zarr"}), ("this", None, None))
    )
    with tempfile.TemporaryDirectory() as scratch:
        for which, src, env in runs:
            results[which] = run_step("s3_trial", Path(scratch), "small", src, env=env)
            print(f"  s3 {which}: {results[which]}", flush=True)
    for which, r in results.items():
        if "error" in r:
            sys.exit(f"the S3 run with {which} zstore failed: {r['error']}")
    this = describe_source(str(ROOT))
    labels = (
        (describe_source(source), this)
        if source
        else (f"zarr-python's codec pipeline ({this})", f"zstore's shard pipeline ({this})")
    )
    return report.s3_table(results["other"], results["this"], *labels)


def compare_chunk_shapes(d: Path) -> str:
    """Inner chunk shapes through zstore's API on Icechunk, each in its own process."""
    from .steps import CHUNK_SHAPE_RUN, CHUNK_SHAPES

    made = run_step("chunk_shape_run", d, "small")
    print(f"  chunk_shape_run {json.dumps(made)[:120]}", flush=True)
    rows = []
    for shape in CHUNK_SHAPES:
        result = run_step("chunk_shape", d, "small", env={"ZSTORE_BENCH_INNER": shape})
        print(f"  {shape}: {json.dumps(result)[:200]}", flush=True)
        if "error" in result:
            sys.exit(f"the chunk-shape benchmark failed at {shape}: {result['error']}")
        rows.append(result)
    return report.chunk_shape_table(rows, CHUNK_SHAPE_RUN)


def compare_events(d: Path) -> str:
    """Event-aligned windows from a stored trial (zstore) against numpy on the trial held
    in memory; each in its own process."""
    made = run_step("events_trial", d, "small")
    print(f"  events_trial {json.dumps(made)[:120]}", flush=True)
    results = {
        name: run_step(name, d, "small") for name in ("zstore_event_windows", "numpy_event_windows")
    }
    for name, r in results.items():
        print(f"  {name} {json.dumps(r)[:160]}", flush=True)
        if "error" in r:
            sys.exit(f"the event-window benchmark failed at {name}: {r['error']}")
    return report.events_table(results)


NWB_COMPRESSIONS = ("gzip", "lzf", "none")


def compare_nwb(d: Path) -> str:
    """NWB export of one stored trial of 1.64 GB, with each HDF5 filter, each in its own
    process: time and peak RSS."""
    made = run_step("events_trial", d, "small")
    print(f"  events_trial {json.dumps(made)[:120]}", flush=True)
    results = []
    for compression in NWB_COMPRESSIONS:
        env = {"ZSTORE_BENCH_NWB_COMPRESSION": compression}
        result = run_step("zstore_export_nwb", d, "small", env=env)
        print(f"  export_nwb {compression}: {json.dumps(result)[:160]}", flush=True)
        if "error" in result:
            sys.exit(f"the NWB benchmark failed ({compression}): {result['error']}")
        results.append(result)
    return report.nwb_table(results)


COLLECTION_SIZES = (20, 200)


def compare_collections(d: Path) -> str:
    """Open + table() and one trial's load, for collections of 20 and 200 experiments x
    5 trials, on moto's S3 server and on local disk, each in its own process."""
    results = []
    for where in ("s3", "local"):
        for n in COLLECTION_SIZES:
            env = {"ZSTORE_BENCH_EXPERIMENTS": str(n), "ZSTORE_BENCH_WHERE": where}
            result = run_step("collection_scale", d, "small", env=env)
            print(f"  collection {where} {n}: {json.dumps(result)[:200]}", flush=True)
            if "error" in result:
                sys.exit(f"the collection benchmark failed: {result['error']}")
            results.append(result)
    return report.collection_table(results)


def compare_storage() -> str:
    """Codec x inner chunk on realistic traces (synthetic GCaMP-like F), one core, in this
    process; prints each row as it is measured."""
    from .steps import STORAGE_CONFIGS, storage_choice, storage_traces

    work = Path(tempfile.mkdtemp())
    try:
        F = storage_traces(work)
        rows = []
        for codec, level, inner in STORAGE_CONFIGS:
            rows.append(report.storage_row(storage_choice(F, work, codec, level, inner)))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report.storage_table(rows, (F.shape[0], F.shape[1]), F.nbytes)


def main(
    *,
    size: str,
    out: Path | None,
    scratch: Path,
    keep: bool,
    compare: bool,
    skip: set[str],
    s3_against: str | None,
    against: str | None,
    pipelines: bool = False,
    s3_pipelines: bool = False,
    collection: bool = False,
    chunk_shapes: bool = False,
    events: bool = False,
    nwb: bool = False,
) -> None:
    """What ``scripts/bench`` does with its options (see benchmarks.__main__)."""
    if s3_against or s3_pipelines:
        _emit(compare_s3(s3_against), out)
        return
    if compare:
        _emit(compare_storage(), out)
        return
    if nwb:
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as work:
            _emit(compare_nwb(Path(work)), out)
        return
    if events:
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as work:
            _emit(compare_events(Path(work)), out)
        return
    if chunk_shapes:
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as work:
            _emit(compare_chunk_shapes(Path(work)), out)
        return
    if collection:
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as work:
            _emit(compare_collections(Path(work)), out)
        return
    check_disk(scratch, size, skip)
    d = scratch / size
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    print(report.size_heading(size, SIZES[size]))
    if pipelines:
        _emit(compare_pipelines(d, size), out)
    else:
        _emit(compare_versions(d, size, against) if against else run_table(d, size, skip), out)
    if not keep:
        shutil.rmtree(d, ignore_errors=True)


def _emit(text: str, out: Path | None) -> None:
    print(text)
    if out:
        out.write_text(text)


def _machine() -> dict[str, Any]:
    """This machine and the versions this checkout runs with, for the report."""
    from importlib.metadata import version

    import dask
    import numpy
    import zarr

    import zstore

    return {
        "cores": os.cpu_count(),
        "ram": _ram(),
        "python": platform.python_version(),
        "zstore": zstore.__version__,
        "zarr": zarr.__version__,
        "anndata": version("anndata"),
        "dask": dask.__version__,
        "numpy": numpy.__version__,
    }


def _ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
