"""A Suite2p run (plus one PackIO .paq per trial) -> an experiment store, streaming.

Each trial's X (F, or F - neuropil_coeff * Fneu), Fneu and spks are read from the .npy
memory maps one block of ROIs at a time and written one shard per task; obs, obsm and
var are built from stat.npy, iscell.npy and the trial's .paq; uns keeps a plain subset
of ops. Peak memory is a few shards, whatever the size of the run.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import dask.array as da
import numpy as np
import pandas as pd

from . import validate
from .annotated import AnnotatedData
from .arrays import StorageConfig, plan_chunks
from .collection import Collection, create_collection, open_collection, stored_kind
from .errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    InvalidNameError,
    PaqFormatError,
    PathNotFoundError,
    ReadOnlyError,
    Suite2pFormatError,
    emit_user_warning,
)
from .experiment import Experiment
from .io._files import check_regular, input_failure
from .io.paq import PaqData, frame_times, read_paq
from .io.suite2p import (
    MASK_FIELDS,
    Suite2pPlane,
    TrialRange,
    TrialSpec,
    check_folder,
    file_name,
    open_suite2p,
    plan_trials,
    stat_column_names,
)
from .names import check_column, check_name, suggest_name
from .opening import create_with_trials, plain_metadata
from .processing import neuropil_correct
from .progress import ProgressOption, reporting
from .ragged import RaggedArray
from .storable import check_names
from .store import COLLECTION_ENCODING, StoreLike
from .summary import summarize_ingest

__all__ = ["SessionClock", "find_planes", "ingest_suite2p"]

#: ops keys copied into each trial's uns (when present).
OPS_KEYS = (
    "fs", "Ly", "Lx", "nframes", "meanImg", "meanImgE", "max_proj", "Vcorr",
    "filelist", "frames_per_file", "neucoeff", "tau",
)  # fmt: skip
#: stat fields that are per-pixel or ragged: they go to obsm (masks) or are not kept.
_ARRAY_FIELDS = {
    "ypix",
    "xpix",
    "lam",
    "soma_crop",
    "overlap",
    "neuropil_mask",
    "ipix",
    "ipix_neuropil",
}

TrialProgress = Callable[[str, int, int], None]
"""Called as ``progress(trial_id, shards_done, shards_total)`` during ingest."""


def _check_ingest_arguments(**args: Any) -> list[str]:
    """Refuse ingest_suite2p arguments of the wrong type (before any work), with a
    zstore error naming the argument; ``layers`` as a list."""
    where = "ingest_suite2p"
    validate.path_argument(args["path"], name="path", where=where, fix="pass a Suite2p folder")
    if isinstance(args["store"], str | os.PathLike):
        validate.path_argument(args["store"], name="store", where=where)
    for name in ("subject", "session", "exp_id"):
        validate.optional_text(args[name], name=name, where=where, fix=f"pass {name}='<text>'")
    if not isinstance(args["paq_channel"], str):
        raise ArgumentTypeError(
            f"{where}: paq_channel must be a channel name (str), got "
            f"{validate.shown(args['paq_channel'])}; pass paq_channel='frame_clock'"
        )
    for name in ("cells_only", "overwrite"):
        validate.boolean(args[name], name=name, where=where)
    validate.finite_number(args["neuropil_coeff"], name="neuropil_coeff", where=where,
                           fix="pass neuropil_coeff=0.7")  # fmt: skip
    validate.progress_option(args["progress"], where=where)
    examples = {
        "metadata": "{'date': '2024-05-01'}",
        "trials": "{'t-001': (0, 900)}",
        "paq": "{'t-001': 'run1.paq'}",
        "storage_options": "{...}",
    }
    for name, example in examples.items():
        if args[name] is not None and not isinstance(args[name], Mapping):
            raise ArgumentTypeError(
                f"{where}: {name} must be a dict or None, got "
                f"{validate.shown(args[name])}; pass {name}={example}"
            )
    if args["config"] is not None and not isinstance(args["config"], StorageConfig):
        raise ArgumentTypeError(
            f"{where}: config must be a zs.StorageConfig or None, got "
            f"{validate.shown(args['config'])}; pass config=zs.StorageConfig(...)"
        )
    layers = args["layers"]
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Sequence) or not all(isinstance(x, str) for x in layers):
        raise ArgumentTypeError(
            f"{where}: layers must be a list of layer names (str), got "
            f"{validate.shown(layers)}; pass layers=('Fneu', 'spks'), or layers=() for none"
        )
    return list(layers)


def ingest_suite2p(
    path: str | os.PathLike[str],
    store: StoreLike | Collection,
    *,
    subject: str | None = None,
    session: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    trials: TrialSpec = None,
    paq: Mapping[str, str | os.PathLike[str]] | None = None,
    exp_id: str | None = None,
    cells_only: bool = True,
    neuropil_coeff: float = 0.0,
    paq_channel: str = "frame_clock",
    layers: Sequence[str] = ("Fneu", "spks"),
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    config: StorageConfig | None = None,
    progress: ProgressOption | TrialProgress = None,
) -> Experiment | Collection:
    """Ingest a Suite2p run (one plane, or every plane) into a store, streaming.

    Parameters
    ----------
    path
        A Suite2p plane folder (``.../suite2p/plane0``), a ``suite2p`` folder holding
        ``plane0..planeN`` (every plane is ingested, each its own experiment), or the
        folder above ``suite2p``; of suite2p < 1.0 or >= 1.0.
    store
        Where to write: a :class:`~zstore.Collection` or the path/URL of one (the new
        experiments are appended, the others are never touched), or the path of a new
        experiment (today's one-plane store). When nothing is at ``store`` yet, a
        collection is created if ``path`` holds several planes or ``subject`` or
        ``session`` is given, else an experiment.
    subject, session
        Recorded with each experiment (the collection's table shows them) and used for
        its ID, ``<subject>_<session>_plane<k>``. ``subject`` defaults to the folder
        above ``suite2p``.
    metadata
        Anything else to record with each experiment (``{"date": "2024-05-01",
        "genotype": "..."}``): text, numbers, booleans or dates; a column of the table.
    trials
        ``None``: one trial per file of the run (ID = file stem); ``{id: [files]}``:
        consecutive files per trial; ``{id: (start, stop)}``: frame ranges.
    paq
        ``{trial_id: path}`` of PackIO files; each trial's var then holds the paq
        channels at its frames, indexed by the frame clock's edge samples.
    exp_id
        The experiment ID (default: the folder above ``suite2p``).
    cells_only
        Keep only ROIs with ``iscell[:, 0] == 1``.
    neuropil_coeff
        X = F - neuropil_coeff * Fneu (0: X = F).
    paq_channel
        The frame clock channel of the paq files.
    layers
        Which of Suite2p's other traces to store as layers (``"Fneu"``, ``"spks"``).
    overwrite
        Replace a zstore experiment at ``store``, or in a collection the experiments
        with the same IDs (a new version; the old data stays readable until ``zstore
        gc``). Anything zstore did not write is never replaced.
    storage_options, config
        See :func:`zstore.create_experiment`.
    progress
        ``True``: a progress bar over the shards of every trial (tqdm: a widget in
        Jupyter, text on a terminal); ``False``: none; ``None`` (default): a bar in an
        interactive session (Jupyter, IPython, the Python prompt) only. A callable is
        called with ``(trial_id, shards_done, shards_total)`` while writing (in a
        collection ``"<experiment>/<trial>"``).

    Frame times (var ``time``) are seconds from the session's start: trials follow one
    another as the run's frames do (from ``frames_per_file`` and ``fs``; within a trial
    from the paq frame clock when a paq file is given), and each plane's frames carry
    its offset in the volume (``k / (fs * nplanes)``). Each trial's start is in
    ``uns["trial"]["start_s"]``.

    The returned Experiment or Collection carries ``ingest_summary``, a
    :class:`zstore.IngestSummary` of what was written: per plane the ROIs kept of the
    run's total and why, per trial its frames, duration and the paq channels matched
    (``print(exp.ingest_summary)`` reads as ``zstore ingest`` prints it).

    Examples
    --------
    >>> import icechunk, tempfile, warnings, zstore as zs, zstore.synthetic as syn
    >>> plane, paqs = syn.write_suite2p_run(tempfile.mkdtemp(), n_rois=20, frames_per_file=[90, 60])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     exp = zs.ingest_suite2p(plane, icechunk.in_memory_storage(), paq=paqs, exp_id="RL109")
    >>> print(caught[0].message)
    t-000.paq: 98 frame clock edges for 90 imaging frames of trial 't-000'; keeping the first 90
    >>> exp.trialIDs
    ['t-000', 't-001']
    >>> exp.load_trial("t-001").data.var.columns.tolist()
    ['frame_clock', 'running', 'lick', 'stim', 'time']
    """
    layers = _check_ingest_arguments(
        path=path, store=store, subject=subject, session=session, metadata=metadata,
        trials=trials, paq=paq, exp_id=exp_id, cells_only=cells_only,
        neuropil_coeff=neuropil_coeff, paq_channel=paq_channel, layers=layers,
        overwrite=overwrite, storage_options=storage_options, config=config,
        progress=progress,
    )  # fmt: skip
    unknown = sorted(set(layers) - {"Fneu", "spks"})
    if unknown:
        raise InvalidArgumentError(
            f"ingest_suite2p: layers may name 'Fneu' and 'spks', got {unknown}; pass "
            f"layers=('Fneu', 'spks') or a part of it"
        )
    given = sorted({"subject", "session", "plane"} & set(metadata or {}))
    if given:
        raise ValueError(
            f"metadata {given} are set by ingest_suite2p itself: pass subject= and session= "
            f"(the plane comes from the folder name, plane<k>)"
        )
    planes = find_planes(path)
    several = len(planes) > 1 or bool(subject or session)
    kind = None if isinstance(store, Collection) else stored_kind(store, storage_options)
    if isinstance(store, Collection) or kind == COLLECTION_ENCODING or several:
        if isinstance(store, Collection) and store.mode == "r":
            raise ReadOnlyError(
                f"the collection at {store.location} was opened read-only; open it with "
                f"zs.open_collection(..., mode='r+') to ingest into it"
            )
        if exp_id is not None:
            check_name(exp_id, kind="exp_id")
        subject = subject or _default_exp_id(planes[0][1])
        planned: dict[str, Any] = {}
        for k, plane_dir in planes:
            plane = open_suite2p(plane_dir)
            pid = _checked_exp_id(exp_id, subject, session, k, len(planes))
            built = _build_trials(
                plane, k, trials, paq, cells_only, neuropil_coeff, paq_channel, layers, config
            )
            info = {**dict(metadata or {}), "subject": subject, "session": session, "plane": k}
            planned[pid] = (plain_metadata(info, where=f"experiment {pid!r}"), built)
        # every plane is built and checked: only now is a new collection created
        collection = (
            store
            if isinstance(store, Collection)
            else open_collection(store, mode="r+", storage_options=storage_options)
            if kind == COLLECTION_ENCODING
            else create_collection(store, storage_options=storage_options)
        )
        n_trials = sum(len(built) for _, built in planned.values())
        with reporting(progress, desc=f"ingest {subject}", parts=n_trials) as report:
            collection.append(
                planned,
                overwrite=overwrite,
                progress=report or False,  # off here: not decided again by append
                message=f"ingest {Path(path)} as experiments {list(planned)}",
            )
        collection.ingest_summary = summarize_ingest(
            collection.location, {pid: built for pid, (_, built) in planned.items()}
        )
        return collection
    ((k, plane_dir),) = planes
    target = cast(StoreLike, store)  # not a Collection: handled above
    plane = open_suite2p(plane_dir)
    built = _build_trials(
        plane, k, trials, paq, cells_only, neuropil_coeff, paq_channel, layers, config
    )
    # One transaction: the experiment (or its replacement) appears whole, or not at all.
    exp_id = exp_id or _default_exp_id(plane.path)
    info = {"subject": subject, "session": session, **dict(metadata or {})}
    with reporting(progress, desc=f"ingest {exp_id}", parts=len(built)) as report:
        exp = create_with_trials(
            target,
            exp_id,
            overwrite,
            storage_options,
            config,
            trials=built,
            progress=report,
            message=f"ingest {plane.path} as experiment {exp_id!r}: trials {list(built)}",
            metadata={k: v for k, v in info.items() if v is not None},
        )
    exp.ingest_summary = summarize_ingest(exp.location, {exp_id: built})
    return exp


def find_planes(path: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(plane index, folder)`` of each Suite2p plane under ``path``: the plane folder
    itself, the ``plane0..planeN`` of a ``suite2p`` folder, or those of ``path/suite2p``.

    Examples
    --------
    >>> import tempfile, zstore.synthetic as syn
    >>> root = syn.write_suite2p_planes(tempfile.mkdtemp(), n_planes=2, n_rois=6,
    ...                                 frames_per_file=[20])
    >>> [(k, p.name) for k, p in find_planes(root)]
    [(0, 'plane0'), (1, 'plane1')]
    """
    folder = Path(path)
    check_folder(folder)  # a file, a broken link or nothing: PathNotFoundError
    if any((folder / f"{name}.npy").exists() for name in ("F", "stat", "iscell")):
        return [(_plane_index(folder), folder)]
    planes = sorted(
        (int(m.group(1)), child)
        for child in folder.iterdir()
        if child.is_dir() and (m := _PLANE.fullmatch(child.name))
    )
    if planes:
        return planes
    if (folder / "suite2p").is_dir():
        return find_planes(folder / "suite2p")
    raise Suite2pFormatError(
        f"{folder} holds no Suite2p plane: expected F.npy, stat.npy and iscell.npy there, "
        f"or plane0, plane1, ... folders (a suite2p output folder); found "
        f"{sorted(p.name for p in folder.iterdir())[:10]}"
    )


_PLANE = re.compile(r"plane(\d+)")


def _plane_index(folder: Path) -> int:
    match = _PLANE.fullmatch(folder.name)
    return int(match.group(1)) if match else 0


def _plane_exp_id(
    exp_id: str | None, subject: str, session: str | None, k: int, n_planes: int
) -> str:
    if exp_id is not None:
        return exp_id if n_planes == 1 else f"{exp_id}_plane{k}"
    return "_".join(p for p in (subject, session, f"plane{k}") if p)


def _checked_exp_id(
    exp_id: str | None, subject: str, session: str | None, k: int, n_planes: int
) -> str:
    """The experiment ID of plane ``k``, checked part by part (subject, session) and as a
    whole, with a message naming the argument it is built from."""
    fix = "pass subject= and session= that are valid names, or exp_id= with the ID itself"
    how = (
        f"the experiment ID is built as <subject>_<session>_plane<k> from subject="
        f"{subject!a} and session={session!a}; {fix}"
        if exp_id is None
        else f"the experiment ID is built as <exp_id>_plane<k> from exp_id={exp_id!a}"
    )
    parts = [("exp_id", exp_id)] if exp_id is not None else [("subject", subject)]
    if exp_id is None and session is not None:
        parts.append(("session", session))
    for argument, value in parts:
        _check_part(value, argument, how)
    pid = _plane_exp_id(exp_id, subject, session, k, n_planes)
    _check_part(pid, "experiment ID", how)
    return pid


def _check_part(value: object, argument: str, how: str) -> None:
    try:
        check_name(value, kind=argument)
    except InvalidNameError as err:
        raise InvalidNameError(f"{err} ({how})") from None


def _build_trials(
    plane: Suite2pPlane,
    k: int,
    trials: TrialSpec,
    paq: Mapping[str, str | os.PathLike[str]] | None,
    cells_only: bool,
    neuropil_coeff: float,
    paq_channel: str,
    layers: Sequence[str],
    config: StorageConfig | None,
) -> dict[str, tuple[AnnotatedData, dict[str, Any]]]:
    """Every trial of one plane, built lazily and checked (nothing is written)."""
    ranges = plan_trials(plane, trials)
    paq_files = _check_paq_map(paq, ranges)
    keep = _kept_rois(plane, cells_only)
    n_cells = int(np.sum(plane.iscell[:, 0] == 1))
    obs, masks = _obs_and_masks(plane, keep)
    config = config or StorageConfig()
    clock = SessionClock(frame_rate(plane), _plane_offset(plane, k))
    ops = _ops_subset(plane)
    # Every trial is built (lazily) and checked before the store is touched: a bad
    # paq in the last trial must not leave a store with the first trials in it.
    out = {}
    for trial in ranges:
        paq_data = read_paq(paq_files[trial.trial_id]) if trial.trial_id in paq_files else None
        adata = _trial_data(
            plane,
            trial,
            keep,
            obs,
            masks,
            paq_data,
            paq_channel,
            neuropil_coeff,
            config,
            clock,
            ops,
        )
        for name in ("Fneu", "spks"):
            if name not in layers:
                del adata.layers[name]
        check_names(adata, f"trial {trial.trial_id!r}")  # before the store is touched
        out[trial.trial_id] = (
            adata,
            {
                "source": "suite2p",
                "plane_dir": str(plane.path),
                "plane": k,
                "suite2p_generation": plane.generation,
                "frames": [trial.start, trial.stop],
                "paq": str(paq_files[trial.trial_id]) if paq_data is not None else None,
                "neuropil_coeff": float(neuropil_coeff),
                "cells_only": bool(cells_only),
                # for the ingest summary and `zstore info`: the run's ROIs, its cells
                "rois": {"total": int(plane.n_rois), "cells": n_cells},
                "paq_clock_edges": adata.uns.get("paq", {}).get("clock_edges"),
            },
        )
    return out


def _plane_offset(plane: Suite2pPlane, k: int) -> float:
    """When plane ``k``'s frames were taken within each volume (0 for one plane)."""
    try:
        nplanes = int(plane.ops.get("nplanes", 1) or 1)
    except (TypeError, ValueError):
        nplanes = 1
    fs = frame_rate(plane, warn=False)
    if nplanes <= 1 or fs is None:
        return 0.0
    return (k % nplanes) / (fs * nplanes)


def frame_rate(plane: Suite2pPlane, *, warn: bool = True) -> float | None:
    """The plane's frame rate from ops ``fs``: a positive finite number, else None (with
    a warning: frame times are then left empty, or taken from the paq frame clock)."""
    value = plane.ops.get("fs")
    fs = plane.fs  # a number (checked when the plane was opened) or None
    if fs is not None and np.isfinite(fs) and fs > 0:
        return fs
    if warn and value is not None:
        emit_user_warning(
            f"{plane.path}: ops fs = {value!r} is not a frame rate (a positive number of "
            f"frames per second); frame times come from the paq frame clock if given, "
            f"else they are left empty (NaN), and uns['fs'] is not set"
        )
    return None


class SessionClock:
    """Session time for one plane's trials, in the order of the run's frames.

    A trial starts at its first frame's place in the run (``frame / fs``, plus the
    plane's offset in the volume), and never before the previous trial's last frame:
    paq clocks may run a little slower than ``fs``, and concatenated trials must keep
    strictly increasing times.
    """

    def __init__(self, fs: float | None, offset: float):
        self.fs = fs if fs and np.isfinite(fs) and fs > 0 else None
        self.offset = offset
        self.last: float | None = None
        self.step: float | None = 1 / self.fs if self.fs else None

    def place(self, first_frame: int, relative: np.ndarray) -> tuple[np.ndarray, float | None]:
        """``relative`` times (seconds from the trial's first frame) in session time,
        and the trial's start (None when neither fs nor a frame clock gives times)."""
        if len(relative) == 0 or not np.isfinite(relative).all():
            return relative, None
        self.step = self.step or _median_step(relative)
        start = first_frame / self.fs + self.offset if self.fs else 0.0
        if self.last is not None and start <= self.last:
            # no frame rate known yet (one-frame trials without fs): just after the last
            start = self.last + self.step if self.step else float(np.nextafter(self.last, np.inf))
        times = relative + start
        self.last = float(times[-1])
        return times, start


def _median_step(times: np.ndarray) -> float | None:
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    return step if step > 0 else None


def _default_exp_id(plane_dir: Path) -> str:
    parts = plane_dir.resolve().parts
    if "suite2p" in parts:
        i = len(parts) - 1 - parts[::-1].index("suite2p")
        if i > 0:
            return parts[i - 1]
    return plane_dir.name


def _check_paq_map(
    paq: Mapping[str, str | os.PathLike[str]] | None, ranges: list[TrialRange]
) -> dict[str, Path]:
    if paq is None:
        return {}
    if not isinstance(paq, Mapping):
        raise ArgumentTypeError(f"paq must map trial IDs to .paq files, got {type(paq).__name__}")
    ids = [r.trial_id for r in ranges]
    unknown = sorted(set(paq) - set(ids))
    if unknown:
        raise InvalidArgumentError(
            f"paq names trials {unknown} that are not in the run; its trials are {ids}"
        )
    files = {}
    for tid, file in paq.items():
        if not isinstance(file, str | os.PathLike):
            raise ArgumentTypeError(
                f"paq[{tid!r}] is {type(file).__name__} {file!r}; expected the path of the "
                f"trial's .paq file (a str or pathlib.Path)"
            )
        files[tid] = Path(file)
    missing = {tid: str(p) for tid, p in files.items() if not p.exists()}
    if missing:
        raise PathNotFoundError(
            f"paq files not found: {missing}; paq= maps trial IDs to existing .paq files"
        )
    for file in files.values():  # before anything is opened: a FIFO would hang
        check_regular(file, PaqFormatError, "Pass the path of the recorded .paq file")
    return files


def _kept_rois(plane: Suite2pPlane, cells_only: bool) -> np.ndarray:
    if not cells_only:
        return np.arange(plane.n_rois)
    keep = np.flatnonzero(plane.iscell[:, 0] == 1)
    if len(keep) == 0:
        raise Suite2pFormatError(
            f"iscell.npy in {plane.path} marks none of its {plane.n_rois} ROIs as cells; "
            f"pass cells_only=False to ingest every ROI"
        )
    return keep


def _obs_and_masks(
    plane: Suite2pPlane, keep: np.ndarray
) -> tuple[pd.DataFrame, dict[str, RaggedArray]]:
    rois = plane.stat[keep]
    obs = pd.DataFrame(_stat_columns(rois, keep, plane.path / "stat.npy"))
    obs.index = pd.Index([str(i) for i in keep])
    obs["iscell"] = plane.iscell[keep, 0].astype(bool)
    obs["iscell_prob"] = plane.iscell[keep, 1].astype(np.float64)
    masks: dict[str, RaggedArray] = {}
    for key, kind in zip(MASK_FIELDS, ("i", "i", "f"), strict=True):
        have = [key in roi for roi in rois]
        if not any(have):
            continue
        if not all(have):
            lacking = [int(keep[i]) for i, h in enumerate(have) if not h]
            raise Suite2pFormatError(
                f"stat.npy in {plane.path}: ROI(s) {lacking[:10]} have no {key!r} while the "
                f"other ROIs do; their masks cannot be stored. Re-run suite2p's detection, "
                f"or drop those ROIs from stat.npy, F.npy, Fneu.npy, spks.npy and iscell.npy"
            )
        parts = [np.asarray(roi[key]).ravel() for roi in rois]
        masks[key] = RaggedArray.from_arrays(
            parts, dtype=_mask_dtype(parts, key, kind, keep, plane.path)
        )
    return obs, masks


def _stat_columns(rois: np.ndarray, keep: np.ndarray, file: Path) -> dict[str, Any]:
    """One obs column per scalar stat field (``med`` as ``med_y``, ``med_x``): numbers
    (NaN where a ROI lacks the field) or text. Per-pixel and array fields are not kept."""
    fields: dict[str, None] = {}
    for roi in rois:
        fields.update(dict.fromkeys(roi))
    names = stat_column_names(fields, file)  # stat keys named like zstore's own columns
    columns: dict[str, Any] = {}
    for key in fields:
        if key in _ARRAY_FIELDS:
            continue
        values = [_unwrapped(roi.get(key)) for roi in rois]
        if key == "med":
            med = np.array(
                [(np.nan, np.nan) if v is None else np.ravel(v) for v in values], dtype=float
            )
            if not np.isnan(med).any():
                med = med.astype(np.int64)  # pixel coordinates
            columns["med_y"], columns["med_x"] = med[:, 0], med[:, 1]
            continue
        kinds = [_value_kind(v) for v in values]
        if "array" in kinds or "other" in kinds:
            continue  # not one value per ROI: not an obs column
        present = {k for k in kinds if k != "missing"}
        if len(present) > 1:
            first = {k: int(keep[kinds.index(k)]) for k in sorted(present)}
            raise Suite2pFormatError(
                f"{file}: key {key!r} holds numbers in entry {first['number']} and text in "
                f"entry {first['text']}; a ROI statistic holds one kind of value. Re-export "
                f"stat.npy from suite2p, or make {key!r} numbers (or text) in every entry"
            )
        _check_column_name(key, file, int(keep[next(i for i, r in enumerate(rois) if key in r)]))
        if "text" in kinds:
            text = pd.array(values, dtype="string") if "missing" in kinds else values
            columns[names[key]] = text
        else:
            columns[names[key]] = _numbers([np.nan if v is None else v for v in values])
    return columns


def _numbers(values: list[Any]) -> np.ndarray:
    """Python or numpy numbers as one array: bool, int64 or float64 as they allow."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array
    return pd.to_numeric(pd.Series(values, dtype=object)).to_numpy()  # e.g. huge ints


_KIND_OF_TYPE = {type(None): "missing", float: "number", int: "number", str: "text"}


def _unwrapped(value: Any) -> Any:
    """A 0-d array as its item; anything else as it is."""
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _value_kind(value: Any) -> str:
    """'missing', 'number', 'text', 'array' (one value per pixel, or any array) or 'other'."""
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:
        return kind
    if value is None:
        return "missing"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return "number"
    return "array" if isinstance(value, list | tuple) else "other"


def _check_column_name(key: str, file: Path, entry: int) -> None:
    try:
        check_column(key, kind="obs column name")
    except InvalidNameError as err:
        why = str(err).split(" cannot be stored: ", 1)[-1].split("; ", 1)[0]  # the reason
        new = "index_" if key == "_index" else suggest_name(key)
        to = f" (e.g. to {new!r})" if new not in (None, key) else ""
        raise Suite2pFormatError(
            f"{file} entry {entry}: its key {key!r} cannot be an obs column ({why}). "
            f"Rename the key{to} in every entry of stat.npy, or re-export it from suite2p"
        ) from None


def _mask_dtype(
    parts: list[np.ndarray], key: str, kind: str, keep: np.ndarray, where: Path
) -> np.dtype:
    """The smallest dtype that holds every value of a mask field exactly."""
    if kind == "f":
        values = [p for p in parts if p.size]
        big = max((float(np.nanmax(np.abs(p.astype(np.float64)))) for p in values), default=0.0)
        return np.dtype(np.float32 if big < np.finfo(np.float32).max else np.float64)
    for i, p in enumerate(parts):
        if p.size and (p.dtype.kind not in "iub"):
            bad = not np.all(np.isfinite(p)) or not np.array_equal(p, np.round(p))
            if p.dtype.kind not in "f" or bad:
                raise Suite2pFormatError(
                    f"stat.npy in {where}: ROI {int(keep[i])} has {key} values that are not "
                    f"whole pixel coordinates (dtype {p.dtype}, e.g. {p[:3].tolist()}); "
                    f"pixel masks must be integers"
                )
    lo = min((int(p.min()) for p in parts if p.size), default=0)
    hi = max((int(p.max()) for p in parts if p.size), default=0)
    for dtype in (np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _trial_data(
    plane: Suite2pPlane,
    trial: TrialRange,
    keep: np.ndarray,
    obs: pd.DataFrame,
    masks: dict[str, RaggedArray],
    paq: PaqData | None,
    paq_channel: str,
    neuropil_coeff: float,
    config: StorageConfig,
    clock: SessionClock,
    ops: dict[str, Any],
) -> AnnotatedData:
    shape = (len(keep), trial.n_frames)
    rows = plan_chunks(shape, 4, config)[0][0]
    traces = {
        name: da.from_array(
            _TraceReader(
                plane.traces[name], plane.path / f"{name}.npy", keep, trial.start, trial.stop
            ),
            chunks=(rows, trial.n_frames),
            name=f"suite2p-{name}-{trial.trial_id}-{os.fspath(plane.path)}",
            asarray=False,
            fancy=False,
            meta=np.empty((0, 0), dtype=np.float32),
        )
        for name in ("F", "Fneu", "spks")
    }
    X = (
        traces["F"]
        if neuropil_coeff == 0
        else neuropil_correct(traces["F"], traces["Fneu"], coeff=neuropil_coeff)
    )
    var, clock_edges = _var(plane, trial, paq, paq_channel)
    var["time"], start = clock.place(trial.start, var["time"].to_numpy(dtype=np.float64))
    uns = _uns(plane, trial, paq, ops)
    uns["trial"]["start_s"] = np.nan if start is None else float(start)
    if clock_edges is not None:  # how many the paq had: the first n_frames are used
        uns["paq"]["clock_edges"] = clock_edges
    adata = AnnotatedData(X, obs=obs.copy(), var=var, uns=uns)
    adata.layers["Fneu"] = traces["Fneu"]
    adata.layers["spks"] = traces["spks"]
    for key, ragged in masks.items():
        adata.obsm[key] = ragged
    return adata


class _TraceReader:
    """Rows ``keep`` and frames ``[start, stop)`` of a Suite2p .npy matrix, read on demand.

    Each read maps the file, copies its block and unmaps it: pages touched by one block
    are not kept resident, so RSS stays at a few blocks. Picklable (holds the path). A
    file that changed since the plane was opened (truncated, rewritten with another
    shape, replaced by a pipe) raises Suite2pFormatError: the ingest then stores nothing.
    """

    def __init__(self, opened: np.ndarray, path: Path, keep: np.ndarray, start: int, stop: int):
        self.path = str(path)
        self.file_shape, self.file_dtype = tuple(opened.shape), np.dtype(opened.dtype)
        self.keep = keep
        self.start, self.stop = start, stop
        self.shape = (len(keep), stop - start)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        row_slice, col_slice = key
        rows = self.keep[row_slice]
        cols = range(self.stop - self.start)[col_slice]
        mm = self._open()
        try:
            out = np.empty((len(rows), len(cols)), dtype=np.float32)
            a, b = self.start + cols.start, self.start + cols.stop
            # Consecutive suite2p rows are contiguous on disk: read runs of them at once.
            for i, j in _runs(rows):
                out[i:j] = mm[rows[i] : rows[j - 1] + 1, a:b]
        finally:
            del mm
        return out

    def _open(self) -> np.ndarray:
        changed = (
            f"{self.path} changed while it was being ingested (it was a {self.file_dtype} "
            f"array of shape {self.file_shape} when the plane folder was opened)"
        )
        fix = (
            "nothing was stored. Ingest again once the file is complete (not while suite2p "
            "or a copy is still writing it)"
        )
        try:
            check_regular(self.path, Suite2pFormatError, fix)
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise Suite2pFormatError(f"{changed}: it was deleted; {fix}") from None
        except Suite2pFormatError as err:
            raise Suite2pFormatError(f"{changed}: {err}") from None
        except Exception as err:  # truncated: "mmap length is greater than file size", ...
            failure = input_failure(err, self.path, then="nothing was stored")
            if failure is not None:  # too many open files, no memory: not the file's fault
                raise failure from None
            raise Suite2pFormatError(
                f"{changed}: it is truncated or damaged ({err}); {fix}"
            ) from None
        if tuple(mm.shape) != self.file_shape or mm.dtype != self.file_dtype:
            found = f"a {mm.dtype} array of shape {tuple(mm.shape)}"
            del mm
            raise Suite2pFormatError(f"{changed}: it now holds {found}; {fix}")
        return mm


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    bounds = [0, *breaks.tolist(), len(rows)]
    return list(itertools.pairwise(bounds))


def _var(
    plane: Suite2pPlane, trial: TrialRange, paq: PaqData | None, channel: str
) -> tuple[pd.DataFrame, int | None]:
    """The trial's var, and the number of frame clock edges in its paq (None: no paq)."""
    n = trial.n_frames
    if paq is None:
        fs = frame_rate(plane, warn=False)
        var = pd.DataFrame(index=pd.Index([str(i) for i in range(n)]))
        var["time"] = np.arange(n) / fs if fs else np.full(n, np.nan)
        return var, None
    if channel not in paq.chan_names:
        raise PaqFormatError(
            f"{paq.path} has no frame clock channel {channel!r} (its channels are "
            f"{paq.chan_names}); pass paq_channel= (or --paq-channel) with the right name"
        )
    edges = frame_times(paq, channel=channel)
    found = len(edges)
    if len(edges) < n:
        raise PaqFormatError(
            f"{paq.path} has {len(edges)} frame clock edges but trial {trial.trial_id!r} has "
            f"{n} imaging frames; the paq does not belong to this trial, or the recording "
            f"stopped early"
        )
    if len(edges) > n:
        emit_user_warning(
            f"{paq.path.name}: {len(edges)} frame clock edges for {n} imaging frames of "
            f"trial {trial.trial_id!r}; keeping the first {n}"
        )
        edges = edges[:n]
    var = pd.DataFrame(
        {
            name: np.asarray(paq.data[i, edges], dtype=np.float32)
            for i, name in enumerate(_column_names(paq))
        },
        index=pd.Index([str(e) for e in edges]),
    )
    var["time"] = (edges - edges[0]) / paq.rate
    return var, found


def _column_names(paq: PaqData) -> list[str]:
    """One var column per paq channel. A name that cannot be a column (empty, with '/',
    control or zero-width characters, reserved), a repeated name, or 'time' (the column
    zstore adds) gets a new name, and the user is told which channel of which file."""
    names: list[str] = []
    for i, name in enumerate(paq.chan_names):
        new, why = _channel_column(name, i)
        base, k = new, 2
        while new in names:
            new, why = f"{base}_{k}", why or "a repeated name"
            k += 1
        if new != name:
            emit_user_warning(
                f"{paq.path}: channel {i} is named {name!r} ({why}); it is stored as var "
                f"column {new!r}"
            )
        names.append(new)
    return names


#: var columns zstore fills itself, and why a paq channel may not take their name.
_ZSTORE_VAR_COLUMNS = {
    "time": "zstore's own frame times are 'time'",
    "trial": "exp.concat() and concatenated exports label each frame's trial in 'trial'",
}


def _channel_column(name: str, i: int) -> tuple[str, str]:
    """A var column name for channel ``i`` named ``name``, and why it differs ('' if not):
    the name itself, else the close name :func:`zstore.names.suggest_name` gives (``a_b``
    for ``a/b``), else ``channel_<i>``."""
    if name in _ZSTORE_VAR_COLUMNS:
        return f"paq_{name}", _ZSTORE_VAR_COLUMNS[name]
    try:
        return check_column(name, kind="var column"), ""
    except InvalidNameError as err:
        why = str(err).split(" cannot be stored: ", 1)[-1].split("; ", 1)[0]  # the reason
    suggested = suggest_name(name)
    if suggested is None or suggested == "_index" or suggested in _ZSTORE_VAR_COLUMNS:
        return f"channel_{i}", why
    return suggested, why


def _uns(
    plane: Suite2pPlane, trial: TrialRange, paq: PaqData | None, ops: dict[str, Any]
) -> dict[str, Any]:
    uns: dict[str, Any] = {
        **({"fs": fs} if (fs := frame_rate(plane, warn=False)) is not None else {}),
        "suite2p": dict(ops),
        "trial": {
            "frame_start": trial.start,
            "frame_stop": trial.stop,
            "files": np.array([file_name(f) for f in trial.files], dtype=str),
        },
    }
    if paq is not None:
        uns["paq"] = {
            "file": paq.path.name,
            "rate": paq.rate,
            "chan_names": np.array(paq.chan_names, dtype=str),
            "hw_chans": np.array(paq.hw_chans, dtype=str),
            "units": np.array(paq.units, dtype=str),
        }
    return uns


def _ops_subset(plane: Suite2pPlane) -> dict[str, Any]:
    """The ops kept in each trial's ``uns["suite2p"]``: those of OPS_KEYS that are plain
    data. Any other value (a date, a dict, bytes) is left out, with a warning."""
    ops: dict[str, Any] = {}
    for key in OPS_KEYS:
        if plane.ops.get(key) is None:
            continue
        value = _plain(plane.ops[key])
        if value is None:
            emit_user_warning(
                f"{plane.ops_source(key)} is {type(plane.ops[key]).__name__} "
                f"{plane.ops[key]!r:.60}; only numbers, text and arrays of them are kept, so "
                f"uns['suite2p'][{key!r}] is not stored"
            )
            continue
        ops[key] = value
    if "filelist" not in ops and plane.file_list:
        ops["filelist"] = np.array(plane.file_list, dtype=str)
    return ops


def _plain(value: Any) -> Any:
    """A value anndata can write without pickling (numbers, str, numeric or str arrays),
    or None if ``value`` is not one."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item() if value.dtype.kind in "biufU" else None
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError):  # ragged
            return None
    if not isinstance(value, np.ndarray):
        return None
    if value.dtype.kind in "biufU":
        return value
    if value.dtype.kind == "O" and all(isinstance(v, str) for v in value.ravel().tolist()):
        return value.astype(str)
    return None
