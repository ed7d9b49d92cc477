"""dF/F per ROI, as the reference tool defines it, on numpy (eager) or dask (lazy) arrays.

Percentile baseline (the reference, default), per ROI over the whole trace::

    t = percentile(row, pct); f0 = mean(row[row < t]); dff = (row - f0) / |f0| * 100

Maximin baseline (suite2p's, for drift and bleaching): Gaussian smoothing, then a running
minimum, then a running maximum over ``win_baseline`` seconds.

A row with a NaN, or with nothing strictly below ``t``, becomes all-NaN; one warning
names those ROIs (for dask input: when the result is computed, or saved, once; the
report travels with the lazy result, see :mod:`zstore.processing.provenance`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..errors import ArgumentTypeError, InvalidArgumentError, emit_user_warning
from ..validate import choice, dense_matrix, finite_number, positive_number, shown
from .provenance import NaNRows, derived

__all__ = [
    "dff_params",
    "differing_settings",
    "neuropil_correct",
    "normalize_dff",
    "recorded_settings",
    "settings_text",
]

BASELINES = ("percentile", "maximin")
_ROWS_PER_PASS_BYTES = 16 << 20  # rows handed to a kernel at once (its copies' size)
_DFF_PASS_BYTES = 2 << 20  # float64 rows per pass of the arithmetic: stays in cache


def normalize_dff(
    arr: Any,
    *,
    normalize_pct: float = 20,
    baseline: str = "percentile",
    fs: float | None = None,
    sig_baseline: float = 10.0,
    win_baseline: float = 60.0,
    roi_names: Sequence[Any] | None = None,
) -> Any:
    """dF/F of every ROI (row) over its whole trace, in percent; float32 out.

    Parameters
    ----------
    arr
        ROIs x frames. numpy in: numpy out. dask in: a lazy dask array (one task per
        block of ROIs; the frame axis is made one chunk first).
    normalize_pct
        Percentile defining the baseline threshold (``baseline="percentile"``), in
        (0, 100] (at 0 no frame lies below the threshold: every ROI would be all-NaN).
    baseline
        ``"percentile"`` (the reference definition) or ``"maximin"``.
    fs, sig_baseline, win_baseline
        For ``"maximin"``: frame rate (Hz, finite, > 0), Gaussian sigma (frames, >= 0,
        at most the trace's length) and the running min/max window (seconds, finite,
        > 0; a window longer than the trace acts as the whole trace).
    roi_names
        Names used for the ROIs in the warning about all-NaN rows (default: row
        indices).

    Examples
    --------
    >>> import numpy as np, zstore as zs
    >>> F = np.array([[1.0, 2.0, 3.0, 4.0, 10.0]], dtype="float32")
    >>> zs.normalize_dff(F, normalize_pct=50)
    array([[-33.333332,  33.333332, 100.      , 166.66667 , 566.6667  ]],
          dtype=float32)
    """
    arr = _check_matrix(arr, "normalize_dff")
    params = dff_params(
        normalize_pct=normalize_pct,
        baseline=baseline,
        fs=fs,
        sig_baseline=sig_baseline,
        win_baseline=win_baseline,
        n_frames=arr.shape[1],
    )
    roi_names = _check_roi_names(roi_names, arr.shape[0], "normalize_dff")
    if isinstance(arr, da.Array):
        return _lazy(arr, params, roi_names)
    data = np.asarray(arr)
    out, bad = _dff_block(data, params)
    if bad.any():
        rows = np.flatnonzero(bad)
        labels = [roi_names[int(i)] for i in rows] if roi_names is not None else rows.tolist()
        emit_user_warning(_nan_message(np.asarray(labels, dtype=object), len(data), params))
    return out


def neuropil_correct(F: Any, Fneu: Any, *, coeff: float = 0.7) -> Any:
    """``F - coeff * Fneu`` in float32; lazy for dask input.

    Examples
    --------
    >>> import numpy as np, zstore as zs
    >>> zs.neuropil_correct(np.array([[10.0]]), np.array([[4.0]]), coeff=0.5)
    array([[8.]], dtype=float32)
    """
    where = "neuropil_correct"
    coeff = finite_number(coeff, name="coeff", where=where, fix="pass coeff=0.7 (suite2p's)")
    F = dense_matrix(F, name="F", where=where)
    Fneu = dense_matrix(Fneu, name="Fneu", where=where)
    if tuple(F.shape) != tuple(Fneu.shape):
        raise InvalidArgumentError(
            f"{where}: F has shape {F.shape} but Fneu has shape {Fneu.shape}; pass F and "
            f"Fneu of one plane (ROIs x frames), of the same shape"
        )
    if isinstance(F, da.Array) or isinstance(Fneu, da.Array):
        F, Fneu = da.asarray(F), da.asarray(Fneu)
        out = (F.astype(np.float32) - np.float32(coeff) * Fneu.astype(np.float32)).astype(
            np.float32
        )
        record = {"function": "neuropil_correct", "coeff": float(coeff), "input": F}
        return derived(out, {**record, "neuropil": Fneu})
    return (np.asarray(F, np.float32) - np.float32(coeff) * np.asarray(Fneu, np.float32)).astype(
        np.float32
    )


def dff_params(
    *,
    normalize_pct: Any = 20,
    baseline: Any = "percentile",
    fs: Any = None,
    sig_baseline: Any = 10.0,
    win_baseline: Any = 60.0,
    n_frames: int | None = None,
    fs_later: bool = False,
    where: str = "normalize_dff",
) -> dict[str, Any]:
    """The parameters of :func:`normalize_dff`, checked, as recorded with the layer.

    ``normalize_pct`` is a percentile in (0, 100]: at 0 the threshold is each trace's
    minimum and no frame lies below it, so every ROI would be all-NaN. For
    ``baseline="maximin"``: ``fs`` (Hz) and ``win_baseline`` (s) finite and > 0,
    ``sig_baseline`` (frames) finite and >= 0, and with ``n_frames`` (the trace's
    length) no larger than it: a Gaussian wider than the trace is no smoothing of it
    (and its kernel alone can exceed memory). A running window longer than the trace
    acts as the whole trace (the result is the same). Every parameter given is
    checked, whichever baseline uses it; with ``fs_later`` a missing ``fs`` is no
    error (the caller takes each trial's). Raises ArgumentTypeError or
    InvalidArgumentError naming the parameter and ``where``.

    Examples
    --------
    >>> dff_params(normalize_pct=50)
    {'baseline': 'percentile', 'normalize_pct': 50.0}
    """
    baseline = choice(baseline, BASELINES, name="baseline", where=where)
    pct = finite_number(normalize_pct, name="normalize_pct", where=where, fix=_PCT_FIX)
    if not 0 < pct <= 100:
        why = (
            " (the 0th percentile is each trace's minimum: no frame lies below it, so "
            "every ROI would be all-NaN)"
            if pct == 0
            else ""
        )
        raise InvalidArgumentError(
            f"{where}: normalize_pct must be a percentile in (0, 100], got "
            f"{normalize_pct!r}{why}; {_PCT_FIX}"
        )
    rate = None
    if fs is not None:
        rate = positive_number(fs, name="fs", where=where, fix=_FS_FIX)
    sig = positive_number(
        sig_baseline, name="sig_baseline", where=where, fix=_SIG_FIX, allow_zero=True
    )
    win = positive_number(win_baseline, name="win_baseline", where=where, fix=_WIN_FIX)
    if baseline == "percentile":
        return {"baseline": "percentile", "normalize_pct": pct}
    if n_frames is not None and sig > max(n_frames, 1):
        raise InvalidArgumentError(
            f"{where}: sig_baseline={sig_baseline!r} frames is wider than the trace "
            f"({n_frames} frames): the Gaussian would smooth over more than the whole "
            f"trace; {_SIG_FIX}"
        )
    if rate is None and not fs_later:
        raise InvalidArgumentError(
            f"{where}: baseline='maximin' needs the frame rate: {_FS_FIX} (e.g. "
            f"trial.data.uns['fs']), got fs=None"
        )
    return {"baseline": "maximin", "fs": rate, "sig_baseline": sig, "win_baseline": win}


#: The parameters of each baseline, as :func:`dff_params` returns and a record holds them.
_BASELINE_PARAMS = {
    "percentile": ("baseline", "normalize_pct"),
    "maximin": ("baseline", "fs", "sig_baseline", "win_baseline"),
}


def recorded_settings(record: Any) -> dict[str, Any] | None:
    """The dF/F settings (as :func:`dff_params` gives them, plus ``source`` when
    recorded) of a layer's processing record (``uns["processing"][layer]``), or None
    when the record is not one of :func:`normalize_dff`'s.

    >>> recorded_settings({"function": "normalize_dff", "source": "X",
    ...                    "baseline": "percentile", "normalize_pct": 50.0})
    {'baseline': 'percentile', 'normalize_pct': 50.0, 'source': 'X'}
    """
    if not isinstance(record, Mapping) or record.get("function") != "normalize_dff":
        return None
    keys = _BASELINE_PARAMS.get(str(record.get("baseline")))
    if keys is None:
        return None
    out = {k: record.get(k) for k in keys}
    if "source" in record:
        out["source"] = record["source"]
    return out


def differing_settings(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """The settings in which ``requested`` (:func:`dff_params`'s, plus ``source``)
    differs from ``stored`` (:func:`recorded_settings`'s). A requested ``fs`` of None
    (each trial's own frame rate) and a key either side lacks are not compared.

    >>> differing_settings({"baseline": "percentile", "normalize_pct": 50.0},
    ...                    {"baseline": "percentile", "normalize_pct": 20.0})
    ['normalize_pct']
    """
    keys = dict.fromkeys([*stored, *requested])
    return [
        k
        for k in keys
        if k in stored
        and k in requested
        and not (k == "fs" and requested[k] is None)
        and not _same(stored[k], requested[k])
    ]


def settings_text(settings: Mapping[str, Any]) -> str:
    """Settings as keyword arguments joined by "and" (``normalize_pct=50 and
    baseline='percentile'``), the form the command line maps to its flags; ``source``
    (a stored path, "X" or "layers/<name>") as ``source=<name>`` or left out for X.

    >>> settings_text({"baseline": "percentile", "normalize_pct": 50.0, "source": "X"})
    "normalize_pct=50 and baseline='percentile'"
    """
    order = ("normalize_pct", "baseline", "fs", "sig_baseline", "win_baseline", "source")
    parts = []
    for key in sorted(settings, key=lambda k: order.index(k) if k in order else len(order)):
        value = settings[key]
        if key == "source":
            if value in (None, "X"):
                continue
            value = str(value).removeprefix("layers/")
        if key == "fs" and value is None:
            continue
        shown_value = f"{value:g}" if isinstance(value, float) else repr(value)
        parts.append(f"{key}={shown_value}")
    return " and ".join(parts)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(float(a) == float(b))
    return bool(a == b)


_PCT_FIX = "pass normalize_pct=<percent in (0, 100]>, e.g. normalize_pct=20"
_FS_FIX = "pass fs=<Hz>"
_SIG_FIX = "pass sig_baseline=<frames>, e.g. sig_baseline=10 (suite2p's default)"
_WIN_FIX = "pass win_baseline=<seconds>, e.g. win_baseline=60 (suite2p's default)"


def _check_matrix(arr: Any, where: str) -> Any:
    """``arr`` as a 2-D numeric numpy or dask array (lists of lists are converted)."""
    out = dense_matrix(arr, name="arr", where=where)
    if out.ndim != 2:
        raise InvalidArgumentError(
            f"{where}: arr must be a 2-D array of ROIs x frames, got shape {tuple(out.shape)}; "
            f"pass one trial's matrix (trial.data.X)"
        )
    if any(math.isnan(n) for n in out.shape):
        raise InvalidArgumentError(
            f"{where}: arr has unknown chunk sizes (shape {out.shape}); call "
            f"arr.compute_chunk_sizes() first"
        )
    return out


def _check_roi_names(names: Any, n_rows: int, where: str) -> Sequence[Any] | None:
    if names is None:
        return None
    if (
        isinstance(names, str | bytes | Mapping | set | frozenset)
        or not hasattr(names, "__len__")
        or getattr(names, "ndim", 1) != 1
    ):
        raise ArgumentTypeError(
            f"{where}: roi_names must be a list of one name per ROI (e.g. "
            f"trial.data.obs_names), got {shown(names)}"
        )
    if len(names) != n_rows:
        raise InvalidArgumentError(
            f"{where}: roi_names has {len(names)} names but arr has {n_rows} ROIs (rows); "
            f"pass roi_names=trial.data.obs_names, one name per row"
        )
    return list(names)


# -- the kernels ---------------------------------------------------------------------------


def _dff_block(x: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """dF/F of a block of rows; returns (float32 dff, bool mask of all-NaN rows)."""
    n_rows, n_frames = x.shape
    out = np.empty(x.shape, dtype=np.float32)
    bad = np.zeros(n_rows, dtype=bool)
    step = max(1, _ROWS_PER_PASS_BYTES // max(1, 8 * n_frames))
    kernel = _percentile_rows if params["baseline"] == "percentile" else _maximin_rows
    # Division by a zero baseline gives inf, as in the reference; values beyond the
    # float32 range become inf when cast to the float32 output.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, n_rows, step):
            rows = slice(start, start + step)
            out[rows], bad[rows] = kernel(x[rows], params)
    return out, bad


def _percentile_rows(x: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The reference percentile dF/F, exactly, with one partial selection per row.

    ``np.percentile`` (method "linear") needs the order statistics at floor(h) and
    floor(h) + 1, h = (n - 1) * pct / 100; it partitions at both, which costs ~7x a
    single partition here. One partition at floor(h) puts every value <= it on the left
    and the rest on the right, whose minimum is the next order statistic. Frames
    strictly below t are then all on the left (t never exceeds that minimum), so the
    baseline mean reads only the left part. Threshold and mean are float64: a float32
    threshold can round onto a tied value and change which frames count as below it.
    """
    n_rows, n = x.shape
    if n == 0:
        return np.empty(x.shape, np.float32), np.ones(n_rows, dtype=bool)
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.dtype.itemsize > 8:
        x = x.astype(np.float64)
    q = np.true_divide(params["normalize_pct"], 100)
    virtual = (n - 1) * q
    if virtual >= n - 1:
        lo, gamma = n - 1, 0.0
    else:
        lo = int(np.floor(virtual))
        gamma = float(virtual - lo)
    part = np.partition(x, lo, axis=1)
    a = part[:, lo].astype(np.float64)
    b = part[:, lo + 1 :].min(axis=1).astype(np.float64) if lo + 1 < n else a
    # numpy's _lerp, in the same order of operations, so t is bit-identical.
    diff = b - a
    t = (b - diff * (1 - gamma)) if gamma >= 0.5 else (a + diff * gamma)
    left = part[:, : lo + 1]
    below = left < t[:, None]
    count = below.sum(axis=1)
    f0 = np.add.reduce(left, axis=1, where=below, dtype=np.float64) / count
    # A NaN sorts last in the partition, so it lands in a or b and makes t NaN: then no
    # frame is below t (count 0), and the row needs no separate NaN scan.
    bad = (count == 0) | ~np.isfinite(f0)
    out = np.empty(x.shape, dtype=np.float32)
    # The arithmetic in float64, as the reference, in passes of rows that stay in cache:
    # subtract straight from the input, divide in place, scale into the float32 output.
    step = max(1, _DFF_PASS_BYTES // (8 * n))
    buf = np.empty((min(step, n_rows), n), dtype=np.float64)
    scale = np.abs(f0)
    for start in range(0, n_rows, step):
        rows = slice(start, start + step)
        tmp = buf[: len(x[rows])]
        np.subtract(x[rows], f0[rows, None], out=tmp, dtype=np.float64)
        tmp /= scale[rows, None]
        np.multiply(tmp, 100.0, out=out[rows], casting="same_kind")
    out[bad] = np.nan
    return out, bad


def _maximin_rows(x: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d

    x64 = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x64).all(axis=1)
    if x64.shape[1] == 0:
        return x64.astype(np.float32), np.ones(len(x64), dtype=bool)
    # A window of 2n - 1 frames covers the whole trace at every frame (scipy reflects at
    # the edges): any longer one gives the same result, and could not be allocated.
    frames = params["win_baseline"] * params["fs"]
    win = max(1, int(min(frames, 2 * x64.shape[1] - 1)))
    smooth = (
        gaussian_filter1d(x64, params["sig_baseline"], axis=1, mode="nearest")
        if params["sig_baseline"] > 0
        else x64
    )
    f0 = maximum_filter1d(minimum_filter1d(smooth, win, axis=1), win, axis=1)
    dff = (x64 - f0) / np.abs(f0) * 100.0
    dff[bad] = np.nan
    return dff.astype(np.float32), np.asarray(bad)


# -- lazy (dask) path ------------------------------------------------------------------------


def _lazy(arr: da.Array, params: dict[str, Any], roi_names: Sequence[Any] | None) -> da.Array:
    if arr.numblocks[1] != 1:
        arr = arr.rechunk({1: -1})
    describe = functools.partial(_nan_message, n_rows=arr.shape[0], params=params)
    nan_rows = NaNRows(arr.shape[0], describe, roi_names)
    out = da.map_blocks(
        _dff_dask_block,
        arr,
        params=params,
        nan_rows=nan_rows,
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        name=f"normalize_dff-{tokenize(arr.name, params)}",
    )
    return derived(out, {"function": "normalize_dff", **params, "input": arr}, nan_rows=nan_rows)


def _dff_dask_block(
    x: np.ndarray, params: dict[str, Any], nan_rows: NaNRows, block_info: Any = None
) -> np.ndarray:
    out, bad = _dff_block(np.asarray(x), params)
    if bad.any():
        first_row = block_info[0]["array-location"][0][0] if block_info else 0
        nan_rows.add(np.flatnonzero(bad) + first_row)
    return out


def _nan_message(labels: np.ndarray, n_rows: int, params: dict[str, Any]) -> str:
    shown = [label.item() if isinstance(label, np.generic) else label for label in labels[:20]]
    more = f" and {len(labels) - 20} more" if len(labels) > 20 else ""
    if params.get("baseline") == "percentile":
        why = f"a NaN in the trace, or no frame below the {params['normalize_pct']:g}th percentile"
    else:
        why = "a NaN or infinite value in the trace"
    return (
        f"normalize_dff: {len(labels)} of {n_rows} ROIs have an all-NaN dF/F ({why}): "
        f"ROIs {shown}{more}"
    )
