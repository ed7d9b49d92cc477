"""Suite2p plane folders: traces memory-mapped, pickles loaded safely, trials planned.

Two generations are read:

* classic: ``F.npy Fneu.npy spks.npy iscell.npy stat.npy ops.npy`` (flat ops dict,
  the file list under ``filelist``);
* suite2p >= 1.0: the same traces plus ``db.npy``, ``settings.npy`` (nested dicts),
  ``reg_outputs.npy`` and ``detect_outputs.npy``; ``ops.npy`` (their merge, nested) only
  while ``save_ops_orig`` is on. The file list is ``file_list``.

Both become one flat ``ops`` mapping: top-level keys first, then keys of nested dicts.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Suite2pFormatError
from .safe_pickle import load_pickled_npy

__all__ = ["Suite2pPlane", "TrialRange", "open_suite2p", "plan_trials"]

TRACES = ("F", "Fneu", "spks")
V1_FILES = ("db", "settings", "reg_outputs", "detect_outputs")


@dataclasses.dataclass(frozen=True)
class TrialRange:
    """Frames ``[start, stop)`` of the run that make up one trial, and their files."""

    trial_id: str
    start: int
    stop: int
    files: tuple[str, ...] = ()

    @property
    def n_frames(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass
class Suite2pPlane:
    """One Suite2p plane folder, opened lazily: traces are read-only memory maps."""

    path: Path
    generation: str  # "classic" or "v1"
    traces: dict[str, np.ndarray]  # F, Fneu, spks: memmaps (n_rois, n_frames)
    iscell: np.ndarray  # (n_rois, 2)
    stat: np.ndarray  # object array of dicts
    ops: dict[str, Any]  # flat

    @property
    def n_rois(self) -> int:
        return int(self.traces["F"].shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.traces["F"].shape[1])

    @property
    def file_list(self) -> list[str]:
        files = self.ops.get("filelist", self.ops.get("file_list"))
        if files is None:
            return []
        return [str(f) for f in np.atleast_1d(np.asarray(files, dtype=object))]

    @property
    def frames_per_file(self) -> list[int] | None:
        fpf = self.ops.get("frames_per_file")
        return None if fpf is None else [int(n) for n in np.atleast_1d(fpf)]

    @property
    def fs(self) -> float | None:
        fs = self.ops.get("fs")
        return None if fs is None else float(fs)


def open_suite2p(plane_dir: str | os.PathLike[str]) -> Suite2pPlane:
    """Open a Suite2p plane folder of either generation and check its files agree.

    Examples
    --------
    >>> import tempfile, zstore.synthetic as syn
    >>> from zstore.io.suite2p import open_suite2p
    >>> plane = syn.write_suite2p_plane(tempfile.mkdtemp(), n_rois=8, frames_per_file=[50, 40])
    >>> s2p = open_suite2p(plane)
    >>> s2p.n_rois, s2p.n_frames, s2p.frames_per_file
    (8, 90, [50, 40])
    """
    path = Path(plane_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Suite2p plane folder {path} does not exist; pass the folder that holds F.npy "
            f"(usually .../suite2p/plane0)"
        )
    missing = [f"{n}.npy" for n in (*TRACES, "iscell", "stat") if not (path / f"{n}.npy").exists()]
    if missing:
        raise Suite2pFormatError(
            f"{path} is missing {', '.join(missing)}: a Suite2p plane folder holds F.npy, "
            f"Fneu.npy, spks.npy, iscell.npy and stat.npy; point at the plane folder "
            f"(e.g. suite2p/plane0) of a finished run"
        )
    traces = {name: _load_matrix(path / f"{name}.npy") for name in TRACES}
    iscell = np.asarray(_load_matrix(path / "iscell.npy", ndim=None))
    stat = load_pickled_npy(path / "stat.npy")
    ops, generation = _load_ops(path)
    plane = Suite2pPlane(path, generation, traces, iscell, np.asarray(stat, dtype=object), ops)
    _check_consistency(plane)
    return plane


def _load_matrix(file: Path, ndim: int | None = 2) -> np.ndarray:
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except OSError as err:
        raise Suite2pFormatError(f"{file} could not be read: {err}") from None
    except Exception as err:  # numpy's header parser raises a zoo (EOFError, SyntaxError, ...)
        raise Suite2pFormatError(
            f"{file} is not a numeric .npy array ({err}); it may be truncated or not a "
            f"Suite2p output: re-export it"
        ) from None
    if ndim is not None and arr.ndim != ndim:
        raise Suite2pFormatError(
            f"{file} has shape {arr.shape}; expected a 2-D array of ROIs x frames"
        )
    if arr.dtype.kind not in "fiub":
        raise Suite2pFormatError(f"{file} has dtype {arr.dtype}; expected numbers")
    return arr


def _load_ops(path: Path) -> tuple[dict[str, Any], str]:
    v1_present = [n for n in V1_FILES if (path / f"{n}.npy").exists()]
    parts: list[Any] = []
    if (path / "ops.npy").exists():
        parts.append(load_pickled_npy(path / "ops.npy"))
    for name in v1_present:
        parts.append(load_pickled_npy(path / f"{name}.npy"))
    if not parts:
        raise Suite2pFormatError(
            f"{path} has neither ops.npy (suite2p < 1.0) nor db.npy/settings.npy "
            f"(suite2p >= 1.0): the run's settings and file list are unknown; copy them "
            f"from the run's output folder"
        )
    for part in parts:
        if not isinstance(part, Mapping):
            raise Suite2pFormatError(
                f"{path}: a settings file holds {type(part).__name__}, expected a dict"
            )
    ops: dict[str, Any] = {}
    for part in parts:
        _merge_flat(ops, part)
    return ops, "v1" if v1_present else "classic"


def _merge_flat(into: dict[str, Any], mapping: Mapping[str, Any]) -> None:
    """Top-level keys first (first file wins), then the keys of nested dicts."""
    nested = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            nested.append(value)
        into.setdefault(str(key), value)
    for value in nested:
        _merge_flat(into, value)


def _check_consistency(plane: Suite2pPlane) -> None:
    where = plane.path
    n_rois, n_frames = plane.traces["F"].shape
    for name in ("Fneu", "spks"):
        shape = plane.traces[name].shape
        if shape[0] != n_rois:
            raise Suite2pFormatError(
                f"{name}.npy has {shape[0]} ROIs but F.npy has {n_rois} in {where}; the "
                f"files come from different runs: re-export the plane folder"
            )
        if shape[1] != n_frames:
            raise Suite2pFormatError(
                f"{name}.npy has {shape[1]} frames but F.npy has {n_frames} in {where}; the "
                f"files come from different runs or one is truncated"
            )
    if plane.iscell.ndim != 2 or plane.iscell.shape[0] != n_rois:
        raise Suite2pFormatError(
            f"iscell.npy has shape {plane.iscell.shape} but F.npy has {n_rois} ROIs in "
            f"{where}; expected ({n_rois}, 2)"
        )
    if len(plane.stat) != n_rois:
        raise Suite2pFormatError(
            f"stat.npy has {len(plane.stat)} ROIs but F.npy has {n_rois} rows in {where}; "
            f"the files come from different runs"
        )
    fpf = plane.frames_per_file
    nframes = plane.ops.get("nframes")
    if fpf is not None and nframes is not None and sum(fpf) != int(nframes):
        raise Suite2pFormatError(
            f"ops['frames_per_file'] sums to {sum(fpf)} frames but ops['nframes'] is "
            f"{int(nframes)} in {where}; the settings files do not match this run"
        )
    if fpf is not None and sum(fpf) != n_frames:
        raise Suite2pFormatError(
            f"ops['frames_per_file'] sums to {sum(fpf)} frames but F.npy has {n_frames} "
            f"in {where}; the settings files do not match the traces"
        )
    if fpf is not None and plane.file_list and len(fpf) != len(plane.file_list):
        raise Suite2pFormatError(
            f"ops lists {len(plane.file_list)} files but {len(fpf)} frames_per_file "
            f"entries in {where}"
        )


# -- trials ---------------------------------------------------------------------------


TrialSpec = Mapping[str, Sequence[str] | tuple[int, int]] | None


def plan_trials(plane: Suite2pPlane, trials: TrialSpec = None) -> list[TrialRange]:
    """Frame ranges of the trials of a run, in run order.

    ``trials`` is ``None`` (one trial per file, ID = the file's stem), ``{id: [file,
    ...]}`` (consecutive files of the run) or ``{id: (start, stop)}`` (frame ranges).
    Files are matched by full path, name or stem. Frames of a file are located by
    ``frames_per_file`` in the run's file order, never by the order trials are given.

    Examples
    --------
    >>> import tempfile, zstore.synthetic as syn
    >>> from zstore.io.suite2p import open_suite2p, plan_trials
    >>> plane = open_suite2p(syn.write_suite2p_plane(tempfile.mkdtemp(), n_rois=4,
    ...                      frames_per_file=[50, 40, 30]))
    >>> [(t.trial_id, t.start, t.stop) for t in plan_trials(plane)]
    [('t-000', 0, 50), ('t-001', 50, 90), ('t-002', 90, 120)]
    >>> [(t.trial_id, t.start, t.stop) for t in plan_trials(plane, {"a": (10, 20)})]
    [('a', 10, 20)]
    """
    if trials is None:
        ranges = _one_trial_per_file(plane)
    else:
        if not isinstance(trials, Mapping) or not trials:
            raise ValueError(
                "trials must be None, {trial_id: [file names]} or {trial_id: (start, stop)}, "
                f"got {trials!r}"
            )
        ranges = [_range_of(plane, str(tid), spec) for tid, spec in trials.items()]
    _check_ranges(ranges, plane)
    return sorted(ranges, key=lambda r: r.start)


def _file_offsets(plane: Suite2pPlane) -> tuple[list[str], list[int]]:
    files, fpf = plane.file_list, plane.frames_per_file
    if not files or fpf is None:
        raise Suite2pFormatError(
            f"{plane.path}: ops has no file list with frames_per_file, so trials cannot be "
            f"found by file; pass trials={{'t-1': (start_frame, stop_frame), ...}}"
        )
    return files, [0, *np.cumsum(fpf).tolist()]


def _one_trial_per_file(plane: Suite2pPlane) -> list[TrialRange]:
    files, offsets = _file_offsets(plane)
    stems = [Path(f).stem for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(
            f"files of the run share the stems {dupes}, so they cannot name trials; pass "
            f"trials={{trial_id: [file names]}}"
        )
    return [
        TrialRange(stem, offsets[i], offsets[i + 1], (files[i],)) for i, stem in enumerate(stems)
    ]


def _range_of(plane: Suite2pPlane, trial_id: str, spec: Any) -> TrialRange:
    if isinstance(spec, tuple | list) and len(spec) == 2 and all(_is_int(v) for v in spec):
        start, stop = int(spec[0]), int(spec[1])
        return TrialRange(trial_id, start, stop)
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, Sequence) or not spec or not all(isinstance(f, str) for f in spec):
        raise ValueError(
            f"trial {trial_id!r}: expected a list of file names or a (start, stop) frame "
            f"range, got {spec!r}"
        )
    files, offsets = _file_offsets(plane)
    index = [_find_file(files, name, trial_id) for name in spec]
    if sorted(index) != list(range(min(index), max(index) + 1)) or len(set(index)) != len(index):
        raise ValueError(
            f"trial {trial_id!r}: its files {list(spec)} are not consecutive in the run "
            f"(run order: {[Path(f).name for f in files]}); a trial must be one contiguous "
            f"block of frames"
        )
    first, last = min(index), max(index)
    return TrialRange(
        trial_id, offsets[first], offsets[last + 1], tuple(files[i] for i in range(first, last + 1))
    )


def _find_file(files: list[str], name: str, trial_id: str) -> int:
    for key in (lambda f: f, lambda f: Path(f).name, lambda f: Path(f).stem):
        hits = [i for i, f in enumerate(files) if key(f) == name]
        if len(hits) == 1:
            return hits[0]
    raise ValueError(
        f"trial {trial_id!r}: file {name!r} is not in the run's file list; the files are "
        f"{[Path(f).name for f in files]}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_ranges(ranges: list[TrialRange], plane: Suite2pPlane) -> None:
    from ..names import check_name

    for r in ranges:
        check_name(r.trial_id, kind="trial ID")
        if not 0 <= r.start < r.stop <= plane.n_frames:
            raise ValueError(
                f"trial {r.trial_id!r}: frames [{r.start}, {r.stop}) are not a non-empty "
                f"range within the run's {plane.n_frames} frames"
            )
    ordered = sorted(ranges, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        if b.start < a.stop:
            raise ValueError(
                f"trials {a.trial_id!r} [{a.start}, {a.stop}) and {b.trial_id!r} "
                f"[{b.start}, {b.stop}) overlap; each frame belongs to one trial"
            )
