"""The Markdown the benchmarks print and write: pure functions from results to text.

A result is a step's dict (see :mod:`benchmarks.steps`); one with an ``error`` key is a
step that failed or was not run, and shows as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Result = Mapping[str, Any]

GB = 1e9

ROWS: list[tuple[str, str]] = [
    # (step, label) in the main table, in this order
    ("zstore_ingest", "zstore: ingest (F -> X, all trials)"),
    ("zstore_dff", "zstore: dF/F computed and saved, all trials"),
    ("zstore_open_load", "zstore: open + load_trial"),
    ("zstore_one_trace", "zstore: one ROI's whole trace (warm cache)"),
    ("zstore_window", "zstore: all ROIs, 1000-frame window (warm cache)"),
    ("zstore_read_all", "zstore: one whole trial's X read"),
    ("zstore_concat_mean", "zstore: concat(dFF) mean per ROI"),
    ("inmemory", "today: np.load + reference dF/F + AnnData.write_zarr"),
    ("anndata_lazy", "anndata lazy: dask X + dask dF/F + write_zarr"),
    ("anndata_read_lazy", "anndata lazy: read_lazy + one trace"),
    ("ceiling_copy", "ceiling: numpy memory copy (one trial)"),
    ("ceiling_zarr", "ceiling: zarr write, same codec (one trial)"),
    ("ceiling_kernel", "ceiling: dF/F kernel alone in memory (one trial)"),
]
ZSTORE_ROWS = [(step, label) for step, label in ROWS if step.startswith("zstore_")]
COMPARE = {
    # step: the zstore step doing the same work, for the "vs zstore" column
    "inmemory": "zstore_dff",
    "anndata_lazy": "zstore_dff",
    "ceiling_kernel": "zstore_dff",
    "ceiling_zarr": "zstore_ingest",
    "ceiling_copy": "zstore_ingest",
    "anndata_read_lazy": "zstore_one_trace",
}


def size_heading(size: str, dims: tuple[int, int, int]) -> str:
    """The line printed before a run: the size and the gigabytes of F it makes."""
    n_rois, n_frames, n_trials = dims
    return (
        f"size {size}: {n_rois} ROIs x {n_frames} frames x {n_trials} trials "
        f"({n_rois * n_frames * n_trials * 4 / GB:.1f} GB of F)"
    )


def main_table(
    results: Mapping[str, Result],
    size: str,
    dims: tuple[int, int, int],
    machine: Mapping[str, Any],
) -> str:
    """The size table: every row's time, throughput, peak RSS and ratio to zstore's row;
    then zarr's read ceiling and the dF/F kernel table.

    ``machine``: ``cores``, ``ram`` (bytes), ``python`` and the versions of ``zstore``,
    ``zarr``, ``anndata``, ``dask`` and ``numpy``.
    """
    n_rois, n_frames, n_trials = dims
    m = machine
    lines = [
        f"## Size `{size}`: {n_rois} ROIs x {n_frames} frames x {n_trials} trials "
        f"({n_rois * n_frames * 4 / GB:.2f} GB of X per trial)",
        "",
        f"Command: `scripts/bench --size {size} --out BENCHMARKS.md`; machine: {m['cores']} "
        f"cores, {m['ram'] / 2**30:.0f} GiB, Python {m['python']}; zstore {m['zstore']}, "
        f"zarr {m['zarr']}, anndata {m['anndata']}, dask {m['dask']}, numpy {m['numpy']}.",
        "",
        "| step | time (s) | throughput (GB/s) | peak RSS (MB) | vs zstore |",
        "|---|---:|---:|---:|---|",
    ]
    for name, label in ROWS:
        r = results.get(name, {})
        if "error" in r:
            lines.append(f"| {label} | - | - | - | {r['error']} |")
            continue
        seconds = r["seconds"]
        gbps = f"{r['bytes'] / GB / seconds:.3f}" if r.get("bytes") and seconds else "-"
        time_text = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f}"
        ratio = _vs_zstore(r, results.get(COMPARE.get(name, ""), {}))
        lines.append(f"| {label} | {time_text} | {gbps} | {r.get('peak_mb', 0):.0f} | {ratio} |")
    zarr_row = results.get("ceiling_zarr", {})
    if "read_seconds" in zarr_row:
        read = zarr_row["read_seconds"]
        lines.append(
            f"\nZarr read of the same trial (same codec, no compute): {read:.2f} s "
            f"({zarr_row['bytes'] / GB / read:.3f} GB/s)."
        )
    kernels = results.get("kernel_vs_percentile", {}).get("kernels", {})
    if kernels:
        lines += [
            "",
            "dF/F kernel, one core, in memory (best of 3):",
            "",
            "| matrix | np.percentile(axis=1) | zstore threshold | speed-up | zstore whole dF/F |",
            "|---|---:|---:|---:|---:|",
        ]
        for shape, k in kernels.items():
            lines.append(
                f"| {shape} | {k['np.percentile']:.3f} s | {k['threshold']:.3f} s | "
                f"{k['np.percentile'] / k['threshold']:.1f}x | {k['dff']:.3f} s |"
            )
    return "\n".join(lines) + "\n"


def _vs_zstore(r: Result, zstore: Result) -> str:
    """A row against zstore's row for the same work: throughputs if both have bytes."""
    if not zstore or "error" in zstore:
        return "-"
    if r.get("bytes") and zstore.get("bytes"):
        mine = r["bytes"] / r["seconds"]
        theirs = zstore["bytes"] / zstore["seconds"]
        return f"zstore is {theirs / mine:.2f}x its throughput"
    return f"zstore takes {zstore['seconds'] / r['seconds']:.2f}x its time"


def pipelines_table(
    results: Mapping[str, Mapping[str, Result]], size: str, dims: tuple[int, int, int]
) -> str:
    """zstore's steps under each codec pipeline and worker count (see run.PIPELINES),
    with the ceilings measured in the same run."""
    n_rois, n_frames, n_trials = dims
    names = list(results)
    lines = [
        f"Size `{size}`: {n_rois} ROIs x {n_frames} frames x {n_trials} trials; "
        f"`scripts/bench --size {size} --pipelines`.",
        "",
        "| step | " + " | ".join(names) + " | peak RSS (MB), " + names[-1] + " |",
        "|---|" + "---:|" * len(names) + "---:|",
    ]
    for name, label in ZSTORE_ROWS:
        cells = []
        for which in names:
            r = results[which].get(name, {})
            speed = f" ({r['bytes'] / r['seconds'] / GB:.2f} GB/s)" if r.get("bytes") else ""
            cells.append(_seconds(r) + speed if r and "error" not in r else "-")
        last = results[names[-1]].get(name, {})
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {last.get('peak_mb', 0):.0f} |")
    return "\n".join(lines) + "\n"


def versions_table(
    results: Mapping[str, Mapping[str, Result]],
    size: str,
    dims: tuple[int, int, int],
    source: str,
    versions: Mapping[str, str],
) -> str:
    """zstore's steps with another checkout (``results["other"]``) and this one
    (``results["this"]``); ``versions``: each one described (see run.describe_source)."""
    n_rois, n_frames, n_trials = dims
    lines = [
        f"Size `{size}`: {n_rois} ROIs x {n_frames} frames x {n_trials} trials; "
        f"`scripts/bench --size {size} --against {source}`; other: {versions['other']}; "
        f"this: {versions['this']}.",
        "",
        "| step | other: time | this: time | this / other | other: peak RSS (MB) "
        "| this: peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in ZSTORE_ROWS:
        a, b = results["other"][name], results["this"][name]
        ratio = (
            f"{b['seconds'] / a['seconds']:.2f}x" if "error" not in a and "error" not in b else "-"
        )
        lines.append(
            f"| {label} | {_seconds(a)} | {_seconds(b)} | {ratio} | "
            f"{a.get('peak_mb', 0):.0f} | {b.get('peak_mb', 0):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(r: Result) -> str:
    if "error" in r:
        return "error"
    t = r["seconds"]
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"


S3_ROWS = [
    ("write", "add_trial (write the trial)"),
    ("open_load", "open_experiment + load_trial"),
    ("read_all", "read all of X"),
    ("one_trace", "one ROI's whole trace"),
]


def s3_table(other: Result, this: Result, other_source: str, this_source: str) -> str:
    """The S3 comparison: time and requests of each operation, with each checkout."""
    lines = [
        "One trial of 2048 ROIs x 20000 frames (164 MB) on moto's S3 server on 127.0.0.1; "
        f"median of 3; requests counted by the server. Other: {other_source}; "
        f"this: {this_source}.",
        "",
        "| what | other: time | other: requests | this: time | this: requests |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in S3_ROWS:
        lines.append(
            f"| {label} | {other[key + '_s']:.3f} s | {other[key + '_requests']} | "
            f"{this[key + '_s']:.3f} s | {this[key + '_requests']} |"
        )
    gb = this["bytes"] / GB
    lines.append(
        f"\nWhole-trial read throughput: other {gb / other['read_all_s']:.2f} GB/s, "
        f"this {gb / this['read_all_s']:.2f} GB/s."
    )
    return "\n".join(lines) + "\n"


def events_table(results: Mapping[str, Result]) -> str:
    """Event-aligned windows: zstore from the store against numpy in memory."""
    labels = {
        "zstore_event_windows": "zstore: event_windows(...).mean('event') from the stored trial",
        "numpy_event_windows": "numpy: the same from the trial held in memory (load not timed)",
    }
    lines = [
        "1000 events x 4096 ROIs x 3 s (91 frames at 30 Hz) around random times of one "
        "stored trial of 4096 x 100000 float32 (1.64 GB), mean over events; each in its "
        "own process (`scripts/bench --events`).",
        "",
        "| what | time | peak RSS (MB) |",
        "|---|---:|---:|",
    ]
    for name, label in labels.items():
        r = results[name]
        lines.append(f"| {label} | {r['seconds']:.2f} s | {r['peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def nwb_table(results: list[Result]) -> str:
    """NWB export of one stored trial: each HDF5 filter's time, file size and peak RSS."""
    lines = [
        "NWB export (`zs.export_nwb`) of one stored trial of 4096 ROIs x 100000 frames "
        "float32 (1.64 GB, random gamma traces: they compress less than real ones) to one "
        ".nwb file, each in its own process (`scripts/bench --nwb`).",
        "",
        "| HDF5 compression | time | throughput | file size | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['compression']} | {r['seconds']:.1f} s | {r['bytes'] / r['seconds'] / 1e6:.0f} "
            f"MB/s | {r['file_bytes'] / GB:.2f} GB | {r['peak_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def chunk_shape_table(rows: list[Result], shape: tuple[int, int]) -> str:
    """Inner chunk shapes on Icechunk through zstore's API (see steps.chunk_shape)."""
    lines = [
        f"Inner chunk shapes on the storage engine: one trial of {shape[0]} x {shape[1]} "
        f"float32 ({shape[0] * shape[1] * 4 / GB:.2f} GB), blosc-lz4, written with "
        f"add_trial and read through zstore (`scripts/bench --chunk-shapes`); trace and "
        f"window on a warm cache, medians.",
        "",
        "| inner chunk | write (GB/s) | whole trial read (GB/s) | one trace (ms) | "
        "1000-frame window, all ROIs (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        gb = r["bytes"] / GB
        lines.append(
            f"| {r['inner'][0]}x{r['inner'][1]} | {gb / r['write_seconds']:.2f} | "
            f"{gb / r['read_seconds']:.2f} | {r['one_trace_seconds'] * 1000:.1f} | "
            f"{r['window_seconds'] * 1000:.0f} |"
        )
    return "\n".join(lines) + "\n"


def collection_table(results: list[Result]) -> str:
    """Open + table() and one trial, per collection size and storage (median of 3)."""

    def requests(n: Any) -> str:
        return "-" if n is None else str(n)

    lines = [
        "Synthetic collections of N experiments x 5 trials (`scripts/bench --collection`), "
        "each in its own process; median of 3; requests counted by moto's server; memory "
        "added: the peak RSS of open + table() above the process's RSS before it (VmHWM "
        "reset with /proc/self/clear_refs).",
        "",
        "| storage | experiments | trials | open + table(): time | requests | memory added "
        "(MB) | one trial: time | requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['where']} | {r['experiments']} | {r['trials']} | "
            f"{r['open_table_s'] * 1000:.0f} ms | {requests(r['open_table_requests'])} | "
            f"{r['open_table_added_mb']:.1f} | "
            f"{r['open_trial_s'] * 1000:.0f} ms | {requests(r['open_trial_requests'])} |"
        )
    return "\n".join(lines) + "\n"


def storage_row(r: Result) -> str:
    """One codec x inner chunk of the storage comparison (see steps.storage_choice)."""
    inner_rois, inner_frames = r["inner"]
    nbytes = r["bytes"]
    return (
        f"| {r['codec']} | {r['level']} | {inner_rois}x{inner_frames} | "
        f"{nbytes / r['stored']:.2f} | {nbytes / GB / r['write_seconds']:.2f} | "
        f"{nbytes / GB / r['read_seconds']:.2f} | {r['one_trace_seconds'] * 1000:.1f} | "
        f"{r['window_seconds'] * 1000:.1f} |"
    )


STORAGE_HEADER = [
    "| codec | level | inner chunk | ratio | write (GB/s) | read (GB/s) | one trace (ms) "
    "| 1000-frame window (ms) |",
    "|---|---:|---|---:|---:|---:|---:|---:|",
]


def storage_table(rows: Sequence[str], shape: tuple[int, int], nbytes: int) -> str:
    """The storage comparison: ``rows`` from :func:`storage_row`, on traces of ``shape``."""
    return (
        f"Storage choices on {shape[0]} x {shape[1]} synthetic GCaMP-like traces "
        f"({nbytes / 1e6:.0f} MB), written shard by shard with one writer "
        "(`scripts/bench --compare`):\n\n" + "\n".join([*STORAGE_HEADER, *rows]) + "\n"
    )


def targets(zstore: Mapping[str, Result], ceilings: Mapping[str, Result]) -> str:
    """Issue 13's targets, each with the figure measured and whether it holds."""

    def speed(r: Result, seconds: str = "seconds") -> float:
        return r["bytes"] / r[seconds] / GB if r and "error" not in r and r.get("bytes") else 0.0

    dff, kernel = speed(zstore.get("zstore_dff", {})), speed(ceilings.get("ceiling_kernel", {}))
    ingest, raw = speed(zstore.get("zstore_ingest", {})), speed(ceilings.get("ceiling_zarr", {}))
    trace = zstore.get("zstore_one_trace", {}).get("seconds", float("nan")) * 1e3
    window = zstore.get("zstore_window", {}).get("seconds", float("nan")) * 1e3
    read = speed(zstore.get("zstore_read_all", {}))
    peak = max((r.get("peak_mb", 0) for r in zstore.values()), default=0)
    dff_ratio = dff / kernel if kernel else 0.0
    ingest_ratio = ingest / raw if raw else 0.0
    rows = [  # (target, what was measured, whether it holds)
        (
            "dF/F computed and saved >= 0.8x the kernel alone",
            f"{dff:.2f} / {kernel:.2f} GB/s ({dff_ratio:.2f}x)",
            dff_ratio >= 0.8,
        ),
        (
            "ingest >= 0.8x a raw zarr-python write",
            f"{ingest:.2f} / {raw:.2f} GB/s ({ingest_ratio:.2f}x)",
            ingest_ratio >= 0.8,
        ),
        ("whole-trial read >= 1 GB/s", f"{read:.2f} GB/s", read >= 1.0),
        ("one trace < 10 ms", f"{trace:.1f} ms", trace < 10),
        ("1000-frame window < 150 ms", f"{window:.1f} ms", window < 150),
        ("peak RSS of every step < 1 GB", f"{peak:.0f} MB", peak < 1000),
    ]
    lines = ["", "| target | measured | holds |", "|---|---:|---|"]
    for label, shown, holds in rows:
        lines.append(f"| {label} | {shown} | {'yes' if holds else 'no'} |")
    return "\n".join(lines) + "\n"
