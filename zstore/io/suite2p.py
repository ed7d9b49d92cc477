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
import errno
import itertools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import (
    InvalidArgumentError,
    PathNotFoundError,
    Suite2pFormatError,
    emit_user_warning,
)
from ._files import check_regular, input_failure
from .safe_pickle import load_pickled_npy

__all__ = [
    "DERIVED_COLUMNS",
    "Suite2pPlane",
    "TrialRange",
    "check_folder",
    "file_name",
    "file_stem",
    "open_suite2p",
    "plan_trials",
    "stat_column_names",
]

TRACES = ("F", "Fneu", "spks")
V1_FILES = ("db", "settings", "reg_outputs", "detect_outputs")
#: stat fields that hold one ROI's pixels: numbers, one per pixel, as many in each
MASK_FIELDS = ("ypix", "xpix", "lam")
_REEXPORT = "re-export the plane folder from suite2p"
#: ops ``fs`` (Hz) that can be an imaging frame rate; a positive fs outside is refused.
FS_RANGE = (0.01, 100_000.0)
#: obs columns zstore makes itself: ``med`` becomes ``med_y``, ``med_x``; iscell.npy
#: becomes ``iscell`` (label) and ``iscell_prob`` (classifier probability)
DERIVED_COLUMNS = ("med_y", "med_x", "iscell", "iscell_prob")
_PLANE_FILES = "F.npy, Fneu.npy, spks.npy, iscell.npy, stat.npy and ops.npy"


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
    iscell: np.ndarray  # (n_rois, 2); the probability column NaN when the file has none
    stat: np.ndarray  # object array of dicts
    ops: dict[str, Any]  # flat
    #: which file each ops key came from (``ops.npy``, ``reg_outputs.npy``, ...)
    ops_files: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def n_rois(self) -> int:
        return int(self.traces["F"].shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.traces["F"].shape[1])

    def ops_source(self, key: str) -> str:
        """``"<folder>/ops.npy: ops['fs']"``: where an ops key was read, for messages."""
        return f"{self.path / self.ops_files.get(key, 'ops.npy')}: ops[{key!r}]"

    @property
    def file_list(self) -> list[str]:
        key = "filelist" if "filelist" in self.ops else "file_list"
        return _file_list(self.ops.get(key), self.ops_source(key))

    @property
    def frames_per_file(self) -> list[int] | None:
        return _frames_per_file(self.ops.get("frames_per_file"), self.ops_source("frames_per_file"))

    @property
    def fs(self) -> float | None:
        """ops ``fs`` as a float (maybe NaN or not positive: see ``ingest.frame_rate``)."""
        value = self.ops.get("fs")
        if value is None:
            return None
        where = self.ops_source("fs")
        fs = _one_number(value, where, "the frame rate in Hz (e.g. 30.0)")
        if np.isfinite(fs) and fs > 0 and not FS_RANGE[0] <= fs <= FS_RANGE[1]:
            raise Suite2pFormatError(
                f"{where} is {fs!r}; expected the frame rate in Hz, between {FS_RANGE[0]:g} "
                f"and {FS_RANGE[1]:g} for imaging (e.g. 30.0). Correct it in that file "
                f"(ops['fs'] = <frames per second>; np.save it again), or {_REEXPORT}"
            )
        return fs


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
    check_folder(path, "Suite2p plane folder")
    for name in (*TRACES, "iscell", "stat", "ops", *V1_FILES):
        _check_link(path / f"{name}.npy")
    missing = [f"{n}.npy" for n in (*TRACES, "iscell", "stat") if not (path / f"{n}.npy").exists()]
    if missing:
        raise Suite2pFormatError(
            f"{path} is missing {', '.join(missing)}: a Suite2p plane folder holds F.npy, "
            f"Fneu.npy, spks.npy, iscell.npy and stat.npy; point at the plane folder "
            f"(e.g. suite2p/plane0) of a finished run"
        )
    for name in (*TRACES, "iscell", "stat", "ops", *V1_FILES):
        if (path / f"{name}.npy").exists():  # before anything is opened: a FIFO would hang
            check_regular(
                path / f"{name}.npy", Suite2pFormatError, f"Copy the real {name}.npy there"
            )
    traces = {name: _load_matrix(path / f"{name}.npy") for name in TRACES}
    iscell = _load_iscell(path / "iscell.npy", int(traces["F"].shape[0]))
    stat = _check_stat(load_pickled_npy(path / "stat.npy"), path / "stat.npy")
    ops, sources, generation = _load_ops(path)
    plane = Suite2pPlane(path, generation, traces, iscell, stat, ops, sources)
    _check_consistency(plane)
    return plane


def check_folder(path: Path, what: str = "Suite2p folder") -> None:
    """Refuse a ``path`` that is not a folder (missing, a file, a broken link) with a
    PathNotFoundError saying which folder to pass instead."""
    if path.is_dir():
        return
    usual = (
        f"pass a plane folder (.../suite2p/plane0, the one holding {_PLANE_FILES}) or a "
        f"suite2p folder holding plane0, plane1 and so on"
    )
    link = _link_problem(path)
    if link is not None:
        raise PathNotFoundError(f"{what} {path} is {link}; {usual}")
    if path.exists():
        parent = path.parent
        holds = " (it holds F.npy)" if (parent / "F.npy").exists() else ""
        raise PathNotFoundError(
            f"{what} {path} is a file, but a folder was expected: {usual}. Pass the folder "
            f"that holds the file instead: {parent}{holds}"
        )
    raise PathNotFoundError(f"{what} {path} does not exist; {usual}")


def _link_problem(path: Path) -> str | None:
    """Why the symbolic link ``path`` cannot be followed (dangling, a loop), or None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as err:
        target = os.readlink(path)
        if err.errno == errno.ELOOP:
            return f"a symbolic link to {target} that loops back to itself (a symlink loop)"
        if isinstance(err, FileNotFoundError):
            return f"a symbolic link to {target}, which does not exist (a dangling symlink)"
        return f"a symbolic link to {target} that cannot be followed ({err.strerror})"
    return None


def _check_link(file: Path) -> None:
    problem = _link_problem(file)
    if problem is not None:
        raise Suite2pFormatError(
            f"{file} is {problem}. Point the link at the real {file.name}, or copy the "
            f"real file there"
        )


def _load_matrix(file: Path, ndim: int | None = 2) -> np.ndarray:
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except OSError as err:
        # too many open files, no permission to read: said as such, not as a bad file
        raise input_failure(err, file) or Suite2pFormatError(
            f"{file} could not be read: {err}"
        ) from None
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


def _load_iscell(file: Path, n_rois: int) -> np.ndarray:
    """iscell as (n_rois, 2): (label, probability). A file of labels only (one column, or
    1-D) is read with NaN probabilities, if every label is 0 or 1 (else it could be
    probabilities: refused)."""
    iscell = np.asarray(_load_matrix(file, ndim=None))
    if iscell.ndim == 2 and iscell.shape[1] not in (1, 2):
        raise Suite2pFormatError(
            f"{file} has shape {iscell.shape}: {iscell.shape[1]} columns, not the expected "
            f"({n_rois}, 2), one row per ROI of F.npy with columns (is-cell label 0 or 1, "
            f"classifier probability). Re-export it from suite2p; or save the "
            f"two columns with np.save(..., np.column_stack([labels, probabilities]))"
        )
    if iscell.ndim == 2 and iscell.shape[1] == 2:
        _check_labels(iscell[:, 0], file)
        _check_probabilities(iscell[:, 1], file)
    if iscell.shape not in ((n_rois,), (n_rois, 1)) or n_rois == 0:
        return iscell  # (n_rois, 2), or checked against F with the other files
    labels = iscell.reshape(n_rois).astype(np.float64)
    if not np.isin(labels, (0.0, 1.0)).all():
        odd = labels[~np.isin(labels, (0.0, 1.0))]
        raise Suite2pFormatError(
            f"{file} has shape {iscell.shape}: one column, whose values are not all 0 or 1 "
            f"(e.g. {odd[:3].tolist()}), not the expected ({n_rois}, 2) = (is-cell label, "
            f"probability). Re-export it from suite2p; or save the labels (0 or 1) with "
            f"np.save(..., np.column_stack([labels, probabilities]))"
        )
    emit_user_warning(
        f"{file} holds only the is-cell labels (shape {iscell.shape}), no classifier "
        f"probabilities; obs['iscell_prob'] is NaN"
    )
    return np.column_stack([labels, np.full(n_rois, np.nan)])


def _check_labels(labels: np.ndarray, file: Path) -> None:
    """Every is-cell label (iscell.npy column 0) is 0 or 1, else an error naming the rows."""
    values = labels.astype(np.float64)
    bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
    if len(bad):
        raise Suite2pFormatError(
            f"{file}: the is-cell label (column 0) of {_rows_found(bad, values)}; expected "
            f"0 (not a cell) or 1 (a cell) in every row. Label those ROIs in suite2p's GUI "
            f"and save again, or set column 0 to 0 or 1 and np.save the file"
        )


def _rows_found(bad: np.ndarray, values: np.ndarray) -> str:
    """``ROI row(s) [3, 7] is [nan, 2.0]``: the first ten bad rows and three values."""
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    return f"ROI row(s) {bad[:10].tolist()}{more} is {values[bad[:3]].tolist()}"


def _check_probabilities(probs: np.ndarray, file: Path) -> None:
    """Every classifier probability (iscell.npy column 1) is in [0, 1], else an error
    naming the rows. A column that is NaN throughout (labels saved without
    probabilities) is accepted: obs['iscell_prob'] is then NaN."""
    values = probs.astype(np.float64)
    if np.isnan(values).all():
        return
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if len(bad):
        raise Suite2pFormatError(
            f"{file}: the classifier probability (column 1) of {_rows_found(bad, values)}; "
            f"expected a number from 0 to 1 in every row (or NaN "
            f"in every row, for labels without probabilities). Re-export iscell.npy from "
            f"suite2p, or set column 1 to probabilities in [0, 1] and np.save the file"
        )


def _load_ops(path: Path) -> tuple[dict[str, Any], dict[str, str], str]:
    """The flat ops, the file each of its keys came from, and the generation."""
    v1_present = [n for n in V1_FILES if (path / f"{n}.npy").exists()]
    names = (["ops"] if (path / "ops.npy").exists() else []) + v1_present
    if not names:
        raise Suite2pFormatError(
            f"{path} has neither ops.npy (suite2p < 1.0) nor db.npy/settings.npy "
            f"(suite2p >= 1.0): the run's settings and file list are unknown; copy them "
            f"from the run's output folder"
        )
    ops: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in names:
        part = load_pickled_npy(path / f"{name}.npy")
        if not isinstance(part, Mapping):
            raise Suite2pFormatError(
                f"{path / f'{name}.npy'} holds {type(part).__name__}, expected a dict of "
                f"settings; {_REEXPORT}"
            )
        _merge_flat(ops, sources, part, f"{name}.npy")
    return ops, sources, "v1" if v1_present else "classic"


def _merge_flat(
    into: dict[str, Any], sources: dict[str, str], mapping: Mapping[Any, Any], source: str
) -> None:
    """Top-level keys first (first file wins), then the keys of nested dicts."""
    nested = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            nested.append(value)
        if str(key) not in into:
            into[str(key)] = value
            sources[str(key)] = source
    for value in nested:
        _merge_flat(into, sources, value, source)


# -- stat.npy -------------------------------------------------------------------------


def _check_stat(stat: Any, file: Path) -> np.ndarray:
    """stat as a 1-D object array of dicts whose values zstore can read, or an error
    naming the entry and key."""
    if isinstance(stat, Mapping) or not isinstance(stat, np.ndarray) or stat.ndim != 1:
        shape = getattr(stat, "shape", None)
        found = f"shape {shape}" if shape is not None else f"a {type(stat).__name__}"
        raise Suite2pFormatError(
            f"{file} holds {found}; expected a 1-D array of one dict per ROI (Suite2p's "
            f"ROI statistics); {_REEXPORT}"
        )
    for i, roi in enumerate(stat):
        if not isinstance(roi, Mapping):
            raise Suite2pFormatError(
                f"{file} entry {i} is {_describe(roi)}; expected a dict of the ROI's "
                f"statistics (ypix, xpix, lam, med, npix, ...). The file is not Suite2p's "
                f"stat.npy or was damaged: {_REEXPORT}"
            )
        for key, value in roi.items():
            if not isinstance(key, str):
                raise Suite2pFormatError(
                    f"{file} entry {i} has the key {key!r} ({type(key).__name__}); expected "
                    f"text keys (field names such as 'npix', 'med'). {_REEXPORT}, or rename "
                    f"the key in every entry"
                )
            problem = _stat_value_problem(key, value)
            if problem:
                raise Suite2pFormatError(
                    f"{file} entry {i}, key {key!r}: expected {problem}, found "
                    f"{_describe(value)}. {_REEXPORT}, or remove the key from every entry "
                    f"(for roi in stat: roi.pop({key!r}, None); then np.save)"
                )
        _check_mask_sizes(roi, file, i)
    return np.asarray(stat, dtype=object)


_NUMBER = bool | int | float | np.bool_ | np.integer | np.floating


def _stat_value_problem(key: str, value: Any) -> str | None:
    """What a stat value should have been, or None if it is fine."""
    if key == "med":
        arr = _numeric(value)
        if value is None or (arr is not None and arr.size == 2):
            return None
        return "[y, x]: the ROI's median pixel, two numbers"
    if key in MASK_FIELDS:
        arr = _numeric(value)
        if arr is not None and arr.ndim <= 1:
            return None
        kind = "weights" if key == "lam" else "coordinates"
        return f"a 1-D array of the ROI's pixel {kind} (numbers)"
    if value is None or isinstance(value, _NUMBER | str):
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufU":
        return None
    if isinstance(value, list | tuple) and _numeric(value) is not None:
        return None
    return "a number, text or an array of numbers"


def _numeric(value: Any) -> np.ndarray | None:
    """``value`` as an array of real numbers (or booleans), else None."""
    if value is None or isinstance(value, str | bytes | Mapping):
        return None
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        return None
    if arr.dtype.kind == "O" and arr.size and all(_is_int(v) for v in arr.flat):
        return arr.astype(np.float64)  # Python ints beyond int64 (10**30): read as floats
    return arr if arr.dtype.kind in "biuf" else None


def _check_mask_sizes(roi: Mapping[str, Any], file: Path, i: int) -> None:
    sizes = {key: np.size(roi[key]) for key in MASK_FIELDS if key in roi}
    if len(set(sizes.values())) > 1:
        raise Suite2pFormatError(
            f"{file} entry {i}: its pixel mask fields have different lengths "
            f"({', '.join(f'{k}: {n}' for k, n in sizes.items())}); expected one value per "
            f"pixel in each. The file is damaged: {_REEXPORT}"
        )


def _describe(value: Any) -> str:
    """``a list ([1, 2])``: a value's type and a short repr, for messages."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    article = "an" if type(value).__name__[:1] in "aeiou" else "a"
    return "None" if value is None else f"{article} {type(value).__name__} ({text})"


# -- ops values -----------------------------------------------------------------------


def _file_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | np.str_):
        return [str(value)]
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(items, list | tuple) and all(isinstance(f, str) and f for f in items):
        return [str(f) for f in items]
    raise Suite2pFormatError(
        f"{where} is {_describe(value)}; expected the run's input files, a list of paths "
        f"(text). Correct it in that file (the files in the order suite2p read them), or "
        f"{_REEXPORT}"
    )


def _frames_per_file(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    arr = _numeric(value)
    if arr is None or arr.ndim > 1 or arr.dtype.kind == "b":
        problem = _describe(value)
    else:
        flat = np.atleast_1d(arr).astype(np.float64)
        if np.all(np.isfinite(flat)) and np.all(flat >= 0) and np.all(flat == np.round(flat)):
            return [int(n) for n in flat]
        problem = f"{flat.tolist()[:10]}"
    raise Suite2pFormatError(
        f"{where} is {problem}; expected the number of frames of each file of the run (a "
        f"1-D list of whole numbers >= 0, one per file of its file list). Correct it in that "
        f"file, or {_REEXPORT}"
    )


def _one_number(value: Any, where: str, meaning: str) -> float:
    arr = _numeric(value)
    if arr is not None and arr.size == 1 and arr.dtype.kind != "b":
        return float(arr.reshape(()))
    raise Suite2pFormatError(
        f"{where} is {_describe(value)}; expected one number, {meaning}. Correct it in "
        f"that file, or {_REEXPORT}"
    )


def _whole_number(value: Any, where: str, meaning: str) -> int:
    number = _one_number(value, where, meaning)
    if not np.isfinite(number) or number < 0 or number != int(number):
        shown = _describe(value) if isinstance(value, np.ndarray) else repr(value)
        raise Suite2pFormatError(
            f"{where} is {shown}; expected a whole number >= 0, {meaning}. Correct it in "
            f"that file, or {_REEXPORT}"
        )
    return int(number)


def _check_nplanes(plane: Suite2pPlane) -> None:
    """ops ``nplanes`` (planes of the run, for each plane's time offset): one whole number
    >= 1 when present."""
    value = plane.ops.get("nplanes")
    if value is None:
        return
    where, meaning = plane.ops_source("nplanes"), "the number of planes of the run (1 or more)"
    number = _one_number(value, where, meaning) if np.ndim(value) == 0 else None
    if number is None or not np.isfinite(number) or number < 1 or number != int(number):
        raise Suite2pFormatError(
            f"{where} is {_describe(value)}; expected one whole number >= 1, {meaning}. "
            f"Correct it in that file, or {_REEXPORT}"
        )


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
    files = plane.file_list  # each of these raises if its ops value is not usable
    plane.fs  # noqa: B018
    fpf = plane.frames_per_file
    _check_nplanes(plane)
    nframes = plane.ops.get("nframes")
    raw = nframes.item() if isinstance(nframes, np.generic) else nframes  # for messages
    if nframes is not None:
        meaning = f"the number of frames of the run (F.npy has {n_frames})"
        nframes = _whole_number(nframes, plane.ops_source("nframes"), meaning)
    if fpf is not None and nframes is not None and sum(fpf) != nframes:
        raise Suite2pFormatError(
            f"ops['frames_per_file'] sums to {sum(fpf)} frames but ops['nframes'] is "
            f"{raw!r} in {where}; the settings files do not match this run (F.npy has "
            f"{n_frames} frames). Correct them in {plane.ops_source('nframes')}, or "
            f"{_REEXPORT}"
        )
    if nframes is not None and nframes != n_frames:
        raise Suite2pFormatError(
            f"{plane.ops_source('nframes')} is {raw!r}; expected a whole number >= 0 "
            f"matching F.npy's frame count ({n_frames}). The settings files do not match "
            f"the traces: correct nframes in that file, or {_REEXPORT}"
        )
    if fpf is not None and sum(fpf) != n_frames:
        raise Suite2pFormatError(
            f"ops['frames_per_file'] sums to {sum(fpf)} frames but F.npy has {n_frames} "
            f"in {where}; the settings files do not match the traces"
        )
    if fpf is not None and files and len(fpf) != len(files):
        raise Suite2pFormatError(
            f"ops lists {len(files)} files but {len(fpf)} frames_per_file entries in {where}"
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
            raise InvalidArgumentError(
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
    from ..errors import InvalidNameError
    from ..names import check_name

    files, offsets = _file_offsets(plane)
    stems = [file_stem(f) for f in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        key = "filelist" if "filelist" in plane.ops else "file_list"
        raise Suite2pFormatError(
            f"files of the run share the stems {dupes}, so they cannot name trials "
            f"({plane.ops_source(key)}); pass trials={{trial_id: [file names]}}"
        )
    for file, stem in zip(files, stems, strict=True):
        try:
            check_name(stem, kind="trial ID")
        except InvalidNameError as err:
            raise InvalidNameError(
                f"{err} (it is the name of the run's file {file!r}); pass "
                f"trials={{trial_id: [file names]}} to name the trials yourself"
            ) from None
    return [
        TrialRange(stem, offsets[i], offsets[i + 1], (files[i],)) for i, stem in enumerate(stems)
    ]


_SEPARATORS = re.compile(r"[\\/]")


def file_name(path: str) -> str:
    """The last part of a path written on any system: both '/' and '\\' separate (a
    Windows file list read on Linux gives ``a.tif`` for ``C:\\data\\a.tif``)."""
    return _SEPARATORS.split(path)[-1]


def file_stem(path: str) -> str:
    """:func:`file_name` without its last suffix: ``C:\\data\\t-005.tif`` -> ``t-005``."""
    return PurePosixPath(file_name(path)).stem if file_name(path) else ""


def _range_of(plane: Suite2pPlane, trial_id: str, spec: Any) -> TrialRange:
    if isinstance(spec, tuple | list) and len(spec) == 2 and all(_is_int(v) for v in spec):
        start, stop = int(spec[0]), int(spec[1])
        return TrialRange(trial_id, start, stop)
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, Sequence) or not spec or not all(isinstance(f, str) for f in spec):
        raise InvalidArgumentError(
            f"trial {trial_id!r}: expected a list of file names or a (start, stop) frame "
            f"range, got {spec!r}"
        )
    files, offsets = _file_offsets(plane)
    index = [_find_file(files, name, trial_id) for name in spec]
    if sorted(index) != list(range(min(index), max(index) + 1)) or len(set(index)) != len(index):
        raise InvalidArgumentError(
            f"trial {trial_id!r}: its files {list(spec)} are not consecutive in the run "
            f"(run order: {[file_name(f) for f in files]}); a trial must be one contiguous "
            f"block of frames"
        )
    first, last = min(index), max(index)
    return TrialRange(
        trial_id, offsets[first], offsets[last + 1], tuple(files[i] for i in range(first, last + 1))
    )


def _find_file(files: list[str], name: str, trial_id: str) -> int:
    for key in (lambda f: f, file_name, file_stem):
        hits = [i for i, f in enumerate(files) if key(f) == name]
        if len(hits) == 1:
            return hits[0]
    raise InvalidArgumentError(
        f"trial {trial_id!r}: file {name!r} is not in the run's file list; the files are "
        f"{[file_name(f) for f in files]}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_ranges(ranges: list[TrialRange], plane: Suite2pPlane) -> None:
    from ..names import check_name

    for r in ranges:
        check_name(r.trial_id, kind="trial ID")
        if not 0 <= r.start < r.stop <= plane.n_frames:
            raise InvalidArgumentError(
                f"trial {r.trial_id!r}: frames [{r.start}, {r.stop}) are not a non-empty "
                f"range within the run's {plane.n_frames} frames: {_range_problem(r, plane)}"
            )
    ordered = sorted(ranges, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        if b.start < a.stop:
            raise InvalidArgumentError(
                f"trials {a.trial_id!r} [{a.start}, {a.stop}) and {b.trial_id!r} "
                f"[{b.start}, {b.stop}) overlap; each frame belongs to one trial"
            )


def _range_problem(r: TrialRange, plane: Suite2pPlane) -> str:
    """What is wrong with the frame range ``[r.start, r.stop)``, and the fix."""
    n = plane.n_frames
    fix = f"pass trials={{{r.trial_id!r}: (start, stop)}} with 0 <= start < stop <= {n}"
    if r.start < 0:
        return f"frames count from 0, found start {r.start}; {fix}"
    if r.stop <= r.start:
        return f"stop ({r.stop}) must be greater than start ({r.start}); {fix}"
    return f"stop ({r.stop}) is past the last frame (F.npy has {n} frames, 0 to {n - 1}); {fix}"


# -- obs columns from stat.npy --------------------------------------------------------


_DERIVED_FROM = {
    "med_y": "stat's 'med' (the ROI's median pixel, y)",
    "med_x": "stat's 'med' (the ROI's median pixel, x)",
    "iscell": "iscell.npy column 0 (the is-cell label)",
    "iscell_prob": "iscell.npy column 1 (the classifier probability)",
}


def stat_column_names(keys: Iterable[str], file: Path) -> dict[str, str]:
    """The obs column of each stat key: the key itself, or ``stat_<key>`` when zstore
    makes a column of that name itself (:data:`DERIVED_COLUMNS`; ``med_y``/``med_x`` only
    when stat also has ``med``), with a ZstoreWarning naming both: no value is lost."""
    keys = list(keys)
    derived = {c for c in DERIVED_COLUMNS if c.startswith("iscell") or "med" in keys}
    taken = set(keys) | derived
    names: dict[str, str] = {}
    for key in keys:
        if key not in derived:
            names[key] = key
            continue
        new, k = f"stat_{key}", 2
        while new in taken:
            new, k = f"stat_{key}_{k}", k + 1
        taken.add(new)
        names[key] = new
        emit_user_warning(
            f"{file}: its entries have a key {key!r}, the name of the obs column zstore "
            f"makes from {_DERIVED_FROM[key]}; stat's {key!r} is stored as obs column "
            f"{new!r} and obs[{key!r}] holds zstore's own. Rename the key in stat.npy to "
            f"choose the name yourself"
        )
    return names
