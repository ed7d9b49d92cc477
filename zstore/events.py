"""Event-aligned windows: traces around stimulus onsets, across trials, lazily.

``event_windows`` cuts, for every event, the frames from ``before`` seconds before it to
``after`` seconds after it, for every ROI, on the trial's frame grid: the result is a
lazy ``xarray.DataArray`` with dims ``("event", "roi", "lag")``. Each event sits on the
frame nearest its time; lags are whole frames (``k / fs``). Frames outside the trial
(an event near its start or end) are NaN; an event beyond the trial's frames is an
error. Reading streams: one task per block of ROIs (a shard's rows) reads only the
spans of frames the windows cover, and cuts at most ~16 MB of windows at a time, so
memory stays at a few shards whatever the number of events or the size of the trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd

from .errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
)
from .rois import resolve_rois
from .validate import finite_number, positive_number, shown
from .views import _times, _where, frame_times, layer_quantity

__all__ = ["event_windows", "events_from_channel"]

#: Windows closer than this many frames are read as one span (one request per shard).
MERGE_FRAMES = 16384
#: Events cut per task: at most this many, and few enough that a task's windows stay
#: within TASK_BYTES (long windows: fewer events a task).
EVENTS_PER_TASK = 256
TASK_BYTES = 16 * 2**20


def events_from_channel(source: Any, channel: str, threshold: float) -> Any:
    """Onset times (seconds, session time) where the var column ``channel`` (a paq
    channel) rises above ``threshold``: the frames where it is above and the frame
    before is not. A channel already above at the first frame is no onset there.

    ``source`` is a Trial (returns a 1-D array of times) or an Experiment (returns a
    DataFrame with columns ``trial`` and ``time``, every trial's onsets).

    Examples
    --------
    >>> import icechunk, numpy as np, pandas as pd, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> var = pd.DataFrame({"time": np.arange(8) / 2, "stim": [0, 0, 5, 5, 0, 5, 5, 5]},
    ...                    index=[str(i) for i in range(8)])
    >>> trial = exp.add_trial("t", zs.AnnotatedData(np.ones((2, 8), "float32"), var=var))
    >>> zs.events_from_channel(trial, "stim", threshold=2.5)
    array([1. , 2.5])
    """
    here = "events_from_channel"
    _check_source(source, here)
    if not isinstance(channel, str):
        raise ArgumentTypeError(
            f"{here}: channel must be the name of a var column (a paq channel, a str), got "
            f"{shown(channel)}; pass channel='stim'"
        )
    threshold = finite_number(
        threshold, name="threshold", where=here, fix="pass threshold=<volts>, e.g. 2.5"
    )
    if hasattr(source, "trialIDs"):
        rows = []
        for tid in source.trialIDs:
            for t in events_from_channel(source.load_trial(tid), channel, threshold):
                rows.append((tid, float(t)))
        return pd.DataFrame(rows, columns=["trial", "time"])
    data = source.data
    if channel not in data.var.columns:
        raise KeyNotFoundError(
            f"trial {source.trialID!r} has no var column {channel!r}; its columns (paq "
            f"channels) are {list(data.var.columns)}"
        )
    values = pd.to_numeric(data.var[channel], errors="coerce").to_numpy(dtype=np.float64)
    above = values > threshold
    onsets = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    return _times(data)[onsets]


def event_windows(
    source: Any,
    events: Any,
    *,
    before: float,
    after: float,
    layer: str | None = "dFF",
    baseline: tuple[float, float] | None = None,
    rois: Any = None,
    iloc: Any = None,
) -> Any:
    """Every ROI's trace around every event: a lazy ``xarray.DataArray`` with dims
    ``("event", "roi", "lag")``.

    Parameters
    ----------
    source
        A Trial, or an Experiment (events then name their trial, or fall in one by
        session time).
    events
        Times in seconds (session time, as var ``time``): a list or array, a pandas
        Series, or a DataFrame with columns ``trial`` and ``time``
        (:func:`events_from_channel` gives either).
    before, after
        Seconds before and after each event (>= 0). Lags run from ``-round(before *
        fs)`` to ``round(after * fs)`` frames, in seconds on the ``lag`` coordinate.
    layer
        The matrix to cut (``None`` or ``"X"``: X).
    baseline
        ``(start, stop)`` lags in seconds: subtract each window's mean over them (NaN
        frames left out).
    rois, iloc
        Cut only these ROIs: ``rois`` by stored ID (``[5, 12]`` or ``['5', '12']``; an
        ID that is not stored is a :class:`~zstore.errors.RoiNotFoundError` naming the
        nearest stored IDs), ``iloc`` by row position. Default: every ROI.

    Frames outside a trial are NaN (an event near its edge); an event more than half a
    frame beyond a trial's frames, times that do not increase, or a trial with neither
    times nor fs, is an error. Coordinates: ``event`` (0..n-1), ``event_time``, ``trial``,
    ``roi`` (the stored ROI IDs), ``lag``; attrs ``experiment``, ``layer``, ``quantity``
    and ``units`` (``"%"`` for dF/F). Nothing is read until computed.

    Examples
    --------
    >>> import icechunk, numpy as np, pandas as pd, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> X = np.arange(20, dtype="float32").reshape(2, 10)
    >>> var = pd.DataFrame({"time": np.arange(10) / 10}, index=[str(i) for i in range(10)])
    >>> trial = exp.add_trial("t", zs.AnnotatedData(X, var=var, uns={"fs": 10.0}))
    >>> w = zs.event_windows(trial, [0.3, 0.9], before=0.1, after=0.2, layer=None)
    >>> w.dims, w.sizes["lag"], w.values[0, 0].tolist(), w.values[1, 1].tolist()
    (('event', 'roi', 'lag'), 4, [2.0, 3.0, 4.0, 5.0], [18.0, 19.0, nan, nan])
    """
    import xarray as xr

    here = "event_windows"
    before = positive_number(
        before, name="before", where=here, fix="pass before=<number of seconds>", allow_zero=True
    )
    after = positive_number(
        after, name="after", where=here, fix="pass after=<number of seconds>", allow_zero=True
    )
    if layer is not None and not isinstance(layer, str):
        raise ArgumentTypeError(
            f"{here}: layer must be a layer name (a str) or None for X, got {shown(layer)}; "
            f"pass layer='dFF'"
        )
    _check_source(source, here)
    table = _event_table(source, events)
    trials = _trials_of(source, table)
    parts = []
    grids = {}
    for tid, picked in table.groupby("trial", sort=False):
        trial = trials[tid]
        times = _checked_times(trial)
        fs = _frame_rate(trial, times)
        n_before, n_after = _lags(before, after, fs, len(times), tid)
        grids[tid] = (fs, n_before, n_after)
        event_times = picked["time"].to_numpy(dtype=np.float64)
        _check_inside(times, event_times, 1 / fs, tid)
        frames = _nearest_frames(times, event_times, tid)
        matrix = trial.data.matrix(None if layer in (None, "X") else layer)
        parts.append((picked.index.to_numpy(), _windows(matrix, frames, n_before, n_after), trial))
    first_grid = next(iter(grids.values()))
    differ = {
        t: g
        for t, g in grids.items()
        if g[1:] != first_grid[1:] or not np.isclose(g[0], first_grid[0], rtol=1e-3)
    }
    if differ:
        rates = {t: round(g[0], 4) for t, g in grids.items()}
        raise IncompatibleDataError(
            f"the trials' frame rates differ ({rates}): lags cannot share one frame grid; "
            f"cut windows per trial"
        )
    fs, n_before, n_after = first_grid
    first = parts[0][2]
    for _, _, trial in parts[1:]:
        if not trial.data.obs_names.equals(first.data.obs_names):
            raise IncompatibleDataError(
                f"trial {trial.trialID!r} has different ROIs from trial {first.trialID!r}; "
                f"cut windows of one ROI set"
            )
    order = np.concatenate([index for index, _, _ in parts])
    stacked = da.concatenate([block for _, block, _ in parts], axis=0)
    stacked = stacked[np.argsort(order, kind="stable")] if len(parts) > 1 else stacked
    lag = np.arange(-n_before, n_after + 1) / fs
    exp_id = getattr(getattr(first, "experiment", None), "expID", None)
    chosen = resolve_rois(first.data.obs_names, rois, iloc=iloc, where=_where(first))
    quantity, units = layer_quantity(first.data, layer)
    out = xr.DataArray(
        stacked,
        dims=("event", "roi", "lag"),
        coords={
            "event": np.arange(len(table)),
            "event_time": ("event", table["time"].to_numpy(dtype=np.float64)),
            "trial": ("event", table["trial"].astype(str).to_numpy()),
            "roi": np.asarray(first.data.obs_names, dtype=str),
            "lag": lag,
        },
        name=layer or "X",
        attrs={
            "fs": fs,
            "lag_units": "s",
            "layer": layer or "X",
            "quantity": quantity,
            **({"units": units} if units else {}),
            **({"experiment": str(exp_id)} if exp_id is not None else {}),
        },
    )
    if rois is not None or iloc is not None:
        out = out.isel(roi=chosen)
    if baseline is not None:
        try:
            lo, hi = (float(v) for v in baseline)
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"baseline must be (start, stop) lags in seconds, e.g. (-1, 0), got {baseline!r}"
            ) from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise InvalidArgumentError(
                f"baseline must be (start, stop) with start <= stop, got {baseline}"
            )
        window = out.sel(lag=slice(lo - 0.5 / fs, hi + 0.5 / fs))
        if window.sizes["lag"] == 0:
            raise InvalidArgumentError(
                f"baseline {baseline} holds no lag of the windows (lags run from "
                f"{lag[0]:.4g} to {lag[-1]:.4g} s): widen before= or move the baseline"
            )
        mean = window.mean("lag", skipna=True)
        out = (out - mean).assign_attrs(out.attrs, baseline=[float(lo), float(hi)])
    return out


def _lags(before: float, after: float, fs: float, n_frames: int, trial_id: str) -> tuple[int, int]:
    """Frames before and after an event; a side longer than the trial is an error (its
    frames would all be NaN, and the windows might not fit in memory)."""
    lags = []
    for name, seconds in (("before", before), ("after", after)):
        frames = seconds * fs
        if frames > max(n_frames, 1):
            raise InvalidArgumentError(
                f"event_windows: {name}={seconds:g} s is {frames:.4g} frames at {fs:g} Hz, "
                f"longer than trial {trial_id!r} ({n_frames} frames, "
                f"{n_frames / fs:.4g} s); pass {name}=<seconds> shorter than the trial"
            )
        lags.append(round(frames))
    return lags[0], lags[1]


def _check_source(source: Any, where: str) -> None:
    """``source``: a stored Trial or Experiment."""
    from .experiment import Experiment, Trial

    if not isinstance(source, Experiment | Trial):
        raise ArgumentTypeError(
            f"{where} reads a stored Trial or Experiment, got {shown(source)}; pass "
            f"exp.load_trial(ID) or the experiment"
        )


def _event_table(source: Any, events: Any) -> pd.DataFrame:
    if isinstance(events, pd.DataFrame):
        if "time" not in events.columns:
            raise InvalidArgumentError(
                f"events as a DataFrame need a 'time' column (and 'trial' for an "
                f"experiment); got columns {list(events.columns)}"
            )
        table = pd.DataFrame({"time": pd.to_numeric(events["time"], errors="coerce").to_numpy()})
        if "trial" in events.columns:
            table["trial"] = [None if _missing(t) else str(t) for t in events["trial"]]
    else:
        times = _event_times(events)
        table = pd.DataFrame({"time": times})
    if table.empty:
        raise InvalidArgumentError("no events given")
    if not np.isfinite(table["time"].to_numpy(dtype=np.float64)).all():
        raise InvalidArgumentError("event times must be finite numbers of seconds")
    if "trial" not in table.columns:
        table["trial"] = None
    return table.reset_index(drop=True)


def _event_times(events: Any) -> np.ndarray:
    """Event times given as a list, array or Series of numbers, as float64."""
    wrong = ArgumentTypeError(
        f"event_windows: events must be times in seconds (a list, array or Series of "
        f"numbers) or a DataFrame with 'trial' and 'time' columns, got {shown(events)}; "
        f"pass events=[1.5, 3.0] or zs.events_from_channel(...)"
    )
    if isinstance(events, dict | str | bytes | bytearray | set | frozenset) or events is None:
        raise wrong
    try:
        found = np.asarray(events)
    except (TypeError, ValueError):  # ragged lists, objects numpy cannot hold
        raise wrong from None
    if found.dtype.kind not in "iuf":
        raise wrong
    return found.astype(np.float64).reshape(-1)


def _missing(value: Any) -> bool:
    """None, NaN, pd.NA or NaT (one value; an array is not missing)."""
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and value != value)
    )


def _trials_of(source: Any, table: pd.DataFrame) -> dict[str, Any]:
    """The loaded trials the events fall in; fills the table's ``trial`` column."""
    if not hasattr(source, "trialIDs"):  # one trial
        named = {t for t in table["trial"] if t is not None and t != source.trialID}
        if named:
            raise InvalidArgumentError(
                f"events name trials {sorted(named)}, but the source is trial "
                f"{source.trialID!r}; pass the experiment to cut windows across trials"
            )
        table["trial"] = source.trialID
        return {source.trialID: source}
    trials: dict[str, Any] = {}
    missing = table["trial"].isna()
    for tid in dict.fromkeys(table["trial"][~missing]):
        if tid not in source.trialIDs:
            raise KeyNotFoundError(
                f"events name trial {tid!r}, which is not in experiment {source.expID!r}; "
                f"its trials are {source.trialIDs}"
            )
        trials[tid] = source.load_trial(tid)
    if missing.any():  # place each event in the trial whose frames hold it
        spans = _frame_spans(source, trials)
        for i in np.flatnonzero(missing.to_numpy()):
            t = table.at[i, "time"]
            inside = [tid for tid, (lo, hi) in spans.items() if lo <= t <= hi]
            if not inside:
                raise InvalidArgumentError(
                    f"event at {t} s falls in no trial of experiment {source.expID!r} "
                    f"(each trial's frames, half a frame either side: "
                    f"{ {k: (round(a, 3), round(b, 3)) for k, (a, b) in list(spans.items())[:5]} }"
                    f"); give events as a DataFrame with a 'trial' column"
                )
            table.at[i, "trial"] = inside[0]
            if inside[0] not in trials:
                trials[inside[0]] = source.load_trial(inside[0])
    return trials


def _frame_spans(exp: Any, loaded: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each trial's first and last frame time, half a frame either side (loads every
    trial's metadata: obs, var, uns)."""
    spans = {}
    for tid in exp.trialIDs:
        trial = loaded.get(tid) or exp.load_trial(tid)
        times, kind = frame_times(trial.data)
        if kind == "frames" or len(times) == 0:
            continue
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        spans[tid] = (float(times[0]) - step / 2, float(times[-1]) + step / 2)
    return spans


def _checked_times(trial: Any) -> np.ndarray:
    """The trial's frame times, which windows need to be real and increasing."""
    data = trial.data
    times, kind = frame_times(data)
    if "time" in data.var.columns and kind != "time":
        raise IncompatibleDataError(
            f"trial {trial.trialID!r}: var 'time' has missing or non-numeric values, so "
            f"events cannot be placed on its frames; fix var['time'] and save the trial"
        )
    if kind == "frames":
        raise IncompatibleDataError(
            f"trial {trial.trialID!r} has neither frame times (var 'time') nor a frame "
            f"rate (uns['fs']): seconds mean nothing for it; set trial.data.uns['fs']"
        )
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise IncompatibleDataError(
            f"trial {trial.trialID!r}: var 'time' does not increase from frame to frame, "
            f"so an event's nearest frame is not defined; fix var['time']"
        )
    return times


def _check_inside(times: np.ndarray, events: np.ndarray, step: float, trial_id: str) -> None:
    """Every event within the trial's frames (half a frame either side)."""
    outside = events[(events < times[0] - step / 2) | (events > times[-1] + step / 2)]
    if len(outside):
        raise InvalidArgumentError(
            f"event(s) at {outside[:5].tolist()} s lie outside trial {trial_id!r}, whose "
            f"frames run from {times[0]:.6g} to {times[-1]:.6g} s (session time, var "
            f"'time'); give each event's time on that clock, in its own trial"
        )


def _frame_rate(trial: Any, times: np.ndarray) -> float:
    fs = trial.data.uns.get("fs")
    if isinstance(fs, int | float) and not isinstance(fs, bool) and np.isfinite(fs) and fs > 0:
        return float(fs)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    if step > 0:
        return 1 / step
    raise IncompatibleDataError(
        f"trial {trial.trialID!r} has no frame rate (uns['fs']) and no frame times to "
        f"take one from; set trial.data.uns['fs']"
    )


def _nearest_frames(times: np.ndarray, events: np.ndarray, trial_id: str) -> np.ndarray:
    if len(times) == 0:
        raise IncompatibleDataError(f"trial {trial_id!r} has no frames")
    right = np.clip(np.searchsorted(times, events), 1, len(times) - 1) if len(times) > 1 else 0
    if len(times) == 1:
        return np.zeros(len(events), dtype=np.int64)
    left = right - 1
    nearer_left = np.abs(events - times[left]) <= np.abs(times[right] - events)
    return np.where(nearer_left, left, right).astype(np.int64)


def _windows(matrix: da.Array, frames: np.ndarray, n_before: int, n_after: int) -> da.Array:
    """``(events, rois, lags)`` around ``frames``: one task per block of ROIs, reading
    only the spans of frames the windows cover."""
    n_frames = matrix.shape[1]
    dtype = np.result_type(matrix.dtype, np.float32)  # NaN where a window leaves the trial
    starts = frames - n_before
    width = n_before + n_after + 1
    spans = _spans(np.clip(starts, 0, n_frames), np.clip(starts + width, 0, n_frames))
    blocks = []
    row = 0
    for rows in matrix.chunks[0]:
        per_task = max(1, min(EVENTS_PER_TASK, TASK_BYTES // max(1, rows * width * 8)))
        groups = [starts[i : i + per_task] for i in range(0, len(starts), per_task)]
        pieces = dask.delayed(list)([matrix[row : row + rows, a:b] for a, b in spans])
        parts = [
            da.from_delayed(
                dask.delayed(_cut)(pieces, spans, group, width, dtype),
                shape=(len(group), rows, width),
                dtype=dtype,
            )
            for group in groups
        ]
        blocks.append(da.concatenate(parts, axis=0))
        row += rows
    if not blocks:
        return da.zeros((len(frames), 0, width), dtype=dtype)
    return da.concatenate(blocks, axis=1)


def _spans(starts: np.ndarray, stops: np.ndarray) -> list[tuple[int, int]]:
    """Frame ranges covering every window, merged when closer than MERGE_FRAMES."""
    spans: list[tuple[int, int]] = []
    for a, b in sorted(zip(starts.tolist(), stops.tolist(), strict=True)):
        if b <= a:
            continue
        if spans and a <= spans[-1][1] + MERGE_FRAMES:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans


def _cut(
    pieces: Sequence[np.ndarray],
    spans: Sequence[tuple[int, int]],
    starts: np.ndarray,
    width: int,
    dtype: np.dtype,
) -> np.ndarray:
    rows = pieces[0].shape[0] if pieces else 0
    out = np.full((len(starts), rows, width), np.nan, dtype=dtype)
    bounds = np.array([a for a, _ in spans], dtype=np.int64)
    for i, start in enumerate(starts.tolist()):
        lo, hi = max(start, 0), start + width
        if not spans or hi <= lo:
            continue
        k = int(np.searchsorted(bounds, lo, side="right")) - 1
        if k < 0:
            continue
        a, b = spans[k]
        hi = min(hi, b)
        if hi <= lo:
            continue
        out[i, :, lo - start : hi - start] = pieces[k][:, lo - a : hi - a]
    return out
