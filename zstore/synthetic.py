"""Realistic synthetic Suite2p runs and PackIO files, for the demo, tests and benchmarks.

Traces look like GCaMP recordings: a per-ROI baseline that drifts and bleaches, calcium
transients (Poisson spikes through an exponential decay), shot noise; neuropil is a
scaled, smoother copy of the local background. ROIs are disks with Gaussian weights on
a ``Ly x Lx`` field; about a fifth are not cells (iscell 0), interleaved with the cells.
Matrices are written block by block into .npy memory maps, so any size fits in memory.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io.paq import write_paq

__all__ = ["write_paq_for_trial", "write_suite2p_plane", "write_suite2p_run"]

_BLOCK_BYTES = 64 << 20


def write_suite2p_plane(
    folder: str | os.PathLike[str],
    *,
    n_rois: int = 64,
    frames_per_file: Sequence[int] = (300, 300, 300),
    generation: str = "classic",
    save_ops: bool = True,
    fs: float = 30.0,
    Ly: int = 256,
    Lx: int = 256,
    non_cell_fraction: float = 0.2,
    file_names: Sequence[str] | None = None,
    fneu_spks: str = "simulated",
    seed: int = 0,
    plane_index: int = 0,
    nplanes: int = 1,
) -> Path:
    """Write a Suite2p plane folder (``<folder>/suite2p/plane<plane_index>``); return its
    path. ``nplanes`` is recorded in ops (a plane of a multi-plane run).

    ``generation`` is ``"classic"`` (ops.npy with ``filelist``) or ``"v1"`` (suite2p >=
    1.0: db, settings, reg_outputs, detect_outputs, and ops.npy only if ``save_ops``).
    Files are named ``t-000.tif``, ``t-001.tif``, ... unless ``file_names`` is given.
    ``fneu_spks="zeros"`` leaves Fneu.npy and spks.npy all zero (sparse files: quick to
    make and free on disk, for benchmarks that ingest only F).

    Examples
    --------
    >>> import tempfile, zstore.synthetic as syn
    >>> plane = syn.write_suite2p_plane(tempfile.mkdtemp(), n_rois=10, frames_per_file=[40, 60])
    >>> sorted(p.name for p in plane.iterdir())
    ['F.npy', 'Fneu.npy', 'iscell.npy', 'ops.npy', 'spks.npy', 'stat.npy']
    """
    if generation not in ("classic", "v1"):
        raise ValueError(f"generation must be 'classic' or 'v1', got {generation!r}")
    rng = np.random.default_rng(seed)
    plane = Path(folder) / "suite2p" / f"plane{int(plane_index)}"
    plane.mkdir(parents=True, exist_ok=True)
    frames_per_file = [int(n) for n in frames_per_file]
    n_frames = sum(frames_per_file)
    names = (
        list(file_names)
        if file_names is not None
        else [f"t-{i:03d}.tif" for i in range(len(frames_per_file))]
    )
    if len(names) != len(frames_per_file):
        raise ValueError(f"{len(names)} file names for {len(frames_per_file)} files")
    data_path = str(Path(folder).resolve() / "raw")
    files = [f"{data_path}/{name}" for name in names]

    stat, centers = _stat(rng, n_rois, Ly, Lx, generation)
    if fneu_spks not in ("simulated", "zeros"):
        raise ValueError(f"fneu_spks must be 'simulated' or 'zeros', got {fneu_spks!r}")
    _write_traces(plane, rng, n_rois, n_frames, fs, simulate_others=fneu_spks == "simulated")
    iscell = np.zeros((n_rois, 2), dtype=np.float64)
    iscell[:, 1] = rng.uniform(0.55, 0.99, n_rois)
    non_cells = rng.random(n_rois) < non_cell_fraction
    iscell[non_cells, 1] = rng.uniform(0.01, 0.45, int(non_cells.sum()))
    iscell[:, 0] = (iscell[:, 1] > 0.5).astype(np.float64)
    np.save(plane / "iscell.npy", iscell)
    np.save(plane / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)

    images = _images(rng, centers, Ly, Lx)
    when = datetime.datetime(2026, 3, 14, 15, 9, 26)
    if generation == "classic":
        ops = {
            "filelist": files, "frames_per_file": np.array(frames_per_file),
            "nframes": n_frames, "fs": fs, "Ly": Ly, "Lx": Lx, "tau": 1.0,
            "neucoeff": 0.7, "nplanes": int(nplanes), "nchannels": 1, "save_path": str(plane),
            "data_path": [data_path], "date_proc": when, "timing": {"total": 12.5},
            **images,
        }  # fmt: skip
        if save_ops:
            np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
        return plane
    db = {"data_path": [data_path], "file_list": files, "nplanes": int(nplanes), "nchannels": 1,
          "fs": fs, "save_path0": str(folder)}  # fmt: skip
    settings = {
        "tau": 1.0, "fs": fs,
        "run": {"do_registration": 1, "do_detection": True, "do_deconvolution": True},
        "io": {"save_ops_orig": save_ops, "delete_bin": False},
        "registration": {"nimg_init": 300, "batch_size": 500, "smooth_sigma": 1.15},
        "detection": {"threshold_scaling": 1.0, "max_overlap": 0.75},
        "extraction": {"neucoeff": 0.7, "inner_neuropil_radius": 2},
    }  # fmt: skip
    reg_outputs = {"Ly": Ly, "Lx": Lx, "nframes": n_frames,
                   "frames_per_file": np.array(frames_per_file),
                   "meanImg": images["meanImg"], "meanImgE": images["meanImgE"],
                   "refImg": images["meanImg"].astype(np.int16),
                   "yoff": rng.normal(0, 1, n_frames).astype(np.float32),
                   "xoff": rng.normal(0, 1, n_frames).astype(np.float32)}  # fmt: skip
    detect_outputs = {"Vcorr": images["Vcorr"], "max_proj": images["max_proj"],
                      "yrange": [0, Ly], "xrange": [0, Lx]}  # fmt: skip
    for name, value in (("db", db), ("settings", settings), ("reg_outputs", reg_outputs),
                        ("detect_outputs", detect_outputs)):  # fmt: skip
        np.save(plane / f"{name}.npy", np.array(value, dtype=object), allow_pickle=True)
    if save_ops:
        merged: dict[str, Any] = {**db, **settings, **reg_outputs, **detect_outputs}
        merged["date_proc"] = when.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
        np.save(plane / "ops.npy", np.array(merged, dtype=object), allow_pickle=True)
    return plane


def _stat(
    rng: np.random.Generator,
    n_rois: int,
    Ly: int,
    Lx: int,
    generation: str,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    centers = np.stack(
        [rng.integers(8, max(9, Ly - 8), n_rois), rng.integers(8, max(9, Lx - 8), n_rois)], 1
    )
    stat = []
    for y0, x0 in centers:
        radius = rng.uniform(3.0, 7.0)
        r = int(np.ceil(radius))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        inside = (yy**2 + xx**2) <= radius**2
        ypix = np.clip(yy[inside] + y0, 0, Ly - 1).astype(np.int32)
        xpix = np.clip(xx[inside] + x0, 0, Lx - 1).astype(np.int32)
        lam = np.exp(-(yy[inside] ** 2 + xx[inside] ** 2) / (radius**2)).astype(np.float32)
        lam /= lam.sum()
        npix = int(inside.sum())
        roi = {
            "ypix": ypix, "xpix": xpix, "lam": lam, "med": [int(y0), int(x0)],
            "footprint": float(rng.uniform(0.5, 2.0)), "mrs": float(rng.uniform(0.5, 1.5)),
            "mrs0": float(rng.uniform(0.5, 1.5)), "compact": float(rng.uniform(1.0, 1.3)),
            "solidity": float(rng.uniform(0.8, 1.0)), "npix": npix, "npix_soma": npix,
            "soma_crop": np.ones(npix, dtype=bool), "overlap": rng.random(npix) < 0.05,
            "radius": float(radius), "aspect_ratio": float(rng.uniform(1.0, 1.5)),
            "npix_norm_no_crop": float(npix / 60), "npix_norm": float(npix / 60),
            "skew": float(rng.uniform(0.5, 4.0)), "std": float(rng.uniform(10, 60)),
            "neuropil_mask": rng.integers(0, Ly * Lx, 4 * npix).astype(np.int32),
        }  # fmt: skip
        if generation == "v1":
            roi["snr"] = float(rng.uniform(1.0, 10.0))
        stat.append(roi)
    return stat, centers


def _write_traces(
    plane: Path,
    rng: np.random.Generator,
    n_rois: int,
    n_frames: int,
    fs: float,
    *,
    simulate_others: bool,
) -> None:
    from scipy.signal import lfilter

    shape = (n_rois, n_frames)
    for name in ("F", "Fneu", "spks"):
        # create the files (sparse until written); blocks are written through short-lived
        # maps below, so dirty pages are flushed and released block by block.
        created = np.lib.format.open_memmap(
            plane / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape
        )
        del created
    decay = np.exp(-1.0 / (fs * 0.7))  # GCaMP6s-like 0.7 s decay
    t = np.arange(n_frames, dtype=np.float32) / np.float32(fs)
    duration = max(float(t[-1]), 1.0) if n_frames else 1.0
    step = max(1, _BLOCK_BYTES // max(1, 4 * n_frames * 6))
    for start in range(0, n_rois, step):
        rows = min(step, n_rois - start)
        base = rng.uniform(150, 900, (rows, 1)).astype(np.float32)
        bleach = np.exp(-t[None] / rng.uniform(2, 6, (rows, 1)).astype(np.float32) / duration)
        drift = 1 + 0.05 * np.sin(
            2 * np.pi * t[None] / rng.uniform(60, 300, (rows, 1)).astype(np.float32)
        )
        spikes = (
            rng.random((rows, n_frames), dtype=np.float32) < rng.uniform(0.002, 0.03, (rows, 1))
        ).astype(np.float32)
        spikes *= rng.gamma(2.0, 0.6, (rows, n_frames)).astype(np.float32)
        calcium = lfilter([1.0], [1.0, -decay], spikes, axis=1).astype(np.float32)
        baseline = base * (0.7 + 0.3 * bleach) * drift
        noise = rng.standard_normal((rows, n_frames), dtype=np.float32)
        F = baseline * (1 + calcium) + noise * np.sqrt(baseline) * 1.5
        blocks = {"F": F}
        if simulate_others:
            blocks["Fneu"] = 0.6 * baseline + noise[::-1] * np.sqrt(baseline)
            blocks["spks"] = spikes * base
        for name, block in blocks.items():
            target = np.load(plane / f"{name}.npy", mmap_mode="r+")
            target[start : start + rows] = block
            target.flush()
            del target


def _images(
    rng: np.random.Generator, centers: np.ndarray, Ly: int, Lx: int
) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:Ly, 0:Lx]
    mean = 200 + 40 * np.sin(yy / 37.0) * np.cos(xx / 53.0) + rng.normal(0, 8, (Ly, Lx))
    for y0, x0 in centers:
        mean += 250 * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / 18.0)
    mean = mean.astype(np.float32)
    return {
        "meanImg": mean,
        "meanImgE": ((mean - mean.min()) / max(float(np.ptp(mean)), 1e-6)).astype(np.float32),
        "max_proj": (mean * 1.8).astype(np.float32),
        "Vcorr": (mean / mean.max()).astype(np.float32),
    }


def write_paq_for_trial(
    path: str | os.PathLike[str],
    n_frames: int,
    *,
    fs: float = 30.0,
    rate: float = 2000.0,
    extra_edges: int = 8,
    lead_in: float = 1.0,
    stray_pulse: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Write a .paq for a trial of ``n_frames`` frames; return the frame edge samples.

    Channels: ``frame_clock`` (a 5 V pulse per frame, plus ``extra_edges`` trailing
    pulses as real rigs give, and a stray pulse well before imaging), ``running``
    (a smooth speed trace), ``lick`` (sparse pulses) and ``stim`` (square pulses).
    """
    rng = np.random.default_rng(seed)
    period = rate / fs
    start = int(lead_in * rate)
    n_edges = n_frames + extra_edges
    edges = (start + np.round(np.arange(n_edges) * period)).astype(np.int64)
    n_samples = int(edges[-1] + lead_in * rate + period) if n_edges else start * 2
    clock = np.zeros(n_samples, dtype=np.float32)
    width = max(1, int(period // 4))
    for offset in range(width):
        clock[np.minimum(edges + offset, n_samples - 1)] = 5.0
    if stray_pulse and start > 3 * 2000:
        clock[10 : 10 + width] = 5.0  # a stray pulse far before the imaging bout
    running = np.cumsum(rng.normal(0, 0.01, n_samples)).astype(np.float32)
    running = np.abs(running - np.linspace(0, float(running[-1]), n_samples, dtype=np.float32))
    lick = (rng.random(n_samples) < 2.0 / rate).astype(np.float32) * 5
    stim = ((np.arange(n_samples) // int(5 * rate)) % 2).astype(np.float32) * 5
    write_paq(
        path,
        np.stack([clock, running, lick, stim]),
        rate=rate,
        chan_names=["frame_clock", "running", "lick", "stim"],
        hw_chans=["ai0", "ai1", "ai2", "ai3"],
        units=["V", "cm/s", "V", "V"],
    )
    return edges


def write_suite2p_planes(
    folder: str | os.PathLike[str], *, n_planes: int = 2, seed: int = 0, **kwargs: Any
) -> Path:
    """A multi-plane Suite2p run: ``<folder>/suite2p/plane0..plane<n_planes-1>``, each
    plane its own ROIs (``kwargs`` as :func:`write_suite2p_plane`); returns the
    ``suite2p`` folder.

    Examples
    --------
    >>> import tempfile, zstore.synthetic as syn
    >>> root = syn.write_suite2p_planes(tempfile.mkdtemp(), n_planes=3, n_rois=5,
    ...                                 frames_per_file=[20, 30])
    >>> sorted(p.name for p in root.iterdir())
    ['plane0', 'plane1', 'plane2']
    """
    for k in range(n_planes):
        write_suite2p_plane(folder, plane_index=k, nplanes=n_planes, seed=seed + 101 * k, **kwargs)
    return Path(folder) / "suite2p"


def write_collection(
    store: Any,
    *,
    subjects: Sequence[str] = ("RL109", "RL110"),
    sessions: Sequence[str] = ("2024-05-01", "2024-05-02"),
    n_planes: int = 2,
    n_trials: int = 3,
    n_rois: int = 8,
    n_frames: int = 50,
    fs: float = 30.0,
    batch: int = 50,
    seed: int = 0,
    **options: Any,
) -> Any:
    """A collection of subjects x sessions x planes experiments with ``n_trials`` small
    synthetic trials each (no Suite2p files: quick, for tests and benchmarks of many
    experiments). Appended ``batch`` experiments per transaction; returns the collection.

    Examples
    --------
    >>> import icechunk, zstore.synthetic as syn
    >>> col = syn.write_collection(icechunk.in_memory_storage(), n_trials=2)
    >>> len(col), len(col.table())
    (8, 16)
    """
    import pandas as pd

    from .annotated import AnnotatedData
    from .collection import create_collection

    rng = np.random.default_rng(seed)
    col = create_collection(store, **options)
    planned: dict[str, Any] = {}
    for subject in subjects:
        for day, session in enumerate(sessions):
            for k in range(n_planes):
                trials = {}
                for t in range(n_trials):
                    X = (rng.gamma(2.0, 50.0, (n_rois, n_frames)) + 100).astype(np.float32)
                    start = (t * n_frames) / fs + k / (fs * n_planes)
                    var = pd.DataFrame(
                        {"time": start + np.arange(n_frames) / fs},
                        index=pd.Index([str(i) for i in range(n_frames)]),
                    )
                    obs = pd.DataFrame(index=pd.Index([str(i) for i in range(n_rois)]))
                    uns = {"fs": fs, "trial": {"start_s": start}}
                    trials[f"t-{t:03d}"] = (AnnotatedData(X, obs=obs, var=var, uns=uns), None)
                meta = {"subject": subject, "session": session, "plane": k, "day": day}
                planned[f"{subject}_{session}_plane{k}"] = (meta, trials)
                if len(planned) == batch:
                    col.append(planned)
                    planned = {}
    if planned:
        col.append(planned)
    return col


def write_suite2p_run(
    folder: str | os.PathLike[str],
    *,
    n_rois: int = 64,
    frames_per_file: Sequence[int] = (300, 300, 300),
    generation: str = "classic",
    paq_rate: float = 2000.0,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[Path, dict[str, Path]]:
    """A plane folder plus one .paq per trial (``<folder>/paq/<trial>.paq``).

    Returns ``(plane_dir, {trial_id: paq_path})`` with trial IDs the files' stems.

    Examples
    --------
    >>> import tempfile, zstore.synthetic as syn
    >>> plane, paqs = syn.write_suite2p_run(tempfile.mkdtemp(), n_rois=8, frames_per_file=[60, 90])
    >>> sorted(paqs)
    ['t-000', 't-001']
    """
    plane = write_suite2p_plane(
        folder, n_rois=n_rois, frames_per_file=frames_per_file, generation=generation,
        seed=seed, **kwargs,
    )  # fmt: skip
    fs = float(kwargs.get("fs", 30.0))
    names = kwargs.get("file_names") or [f"t-{i:03d}.tif" for i in range(len(frames_per_file))]
    paq_dir = Path(folder) / "paq"
    paq_dir.mkdir(exist_ok=True)
    paqs = {}
    for i, (name, n) in enumerate(zip(names, frames_per_file, strict=True)):
        trial_id = Path(name).stem
        paqs[trial_id] = paq_dir / f"{trial_id}.paq"
        write_paq_for_trial(paqs[trial_id], n, fs=fs, rate=paq_rate, seed=seed + i)
    return plane, paqs
