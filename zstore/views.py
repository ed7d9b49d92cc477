"""Analysis-ready views of trials: lazy xarray Datasets with coordinates.

A trial's matrices become data variables with dims ``("roi", "time")``: ``roi`` holds
the stored ROI IDs (obs_names), ``time`` the frames' session time in seconds (var
``time``), every obs column is a coordinate on ``roi`` and every var column (paq
channels) a coordinate on ``time``. The arrays stay the trial's dask arrays, so
``ds.dFF.sel(time=slice(10, 20))`` reads only the chunks of that window.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
)
from .rois import resolve_rois
from .validate import name_list

__all__ = ["frame_times", "layer_quantity", "trial_dataset", "trials_dataset", "trials_tsdframe"]


def trial_dataset(trial: Any, layers: Sequence[str] | None = None, *, rois: Any = None) -> Any:
    """The trial as a lazy ``xarray.Dataset`` (see :meth:`zstore.Trial.to_xarray`);
    ``rois``: the stored ROI IDs to keep (default all)."""
    import xarray as xr

    data = trial.data
    names = _layers(data, layers, f"trial {trial.trialID!r}")
    times, kind = frame_times(data)
    coords: dict[str, Any] = {
        "roi": ("roi", np.asarray(data.obs_names, dtype=str)),
        "time": ("time", times),
        "frame": ("time", np.asarray(data.var_names, dtype=str)),
    }
    taken = set(coords) | {"X"}
    variables = {"X": (("roi", "time"), data.X)}
    for name in names:  # a layer named like X or a coordinate gets a "layer_" prefix
        variables[_free(str(name), "layer", taken)] = (("roi", "time"), data.layers[name])
    for column in data.obs.columns:
        coords[_free(f"{column}", "obs", taken)] = ("roi", _column(data.obs[column]))
    for column in data.var.columns:
        if column != "time":
            coords[_free(f"{column}", "var", taken)] = ("time", _column(data.var[column]))
    attrs = _attrs(trial)
    attrs["time_units"] = "frames" if kind == "frames" else "s"
    out = xr.Dataset(variables, coords=coords, attrs=attrs)
    if rois is not None:
        out = out.isel(roi=resolve_rois(data.obs_names, rois, where=_where(trial)))
    return out


def trials_dataset(
    exp: Any, trial_ids: Sequence[str], layers: Sequence[str] | None, *, rois: Any = None
) -> Any:
    """Trials of one experiment side by side along ``time`` (``trial`` a coordinate on
    it); they must have the same ROIs."""
    import xarray as xr

    if not trial_ids:
        raise InvalidArgumentError(f"experiment {exp.expID!r}: no trials to put in a Dataset")
    loaded = [exp.load_trial(tid) for tid in trial_ids]
    if layers is None:  # the layers every trial has
        layers = [n for n in loaded[0].data.layers if all(n in t.data.layers for t in loaded)]
    parts = [trial_dataset(trial, layers, rois=rois) for trial in loaded]
    first = parts[0]
    for tid, part in zip(trial_ids[1:], parts[1:], strict=True):
        if not np.array_equal(part["roi"].values, first["roi"].values):
            raise IncompatibleDataError(
                f"trial {tid!r} has different ROIs from trial {trial_ids[0]!r}; put trials "
                f"of one ROI set together (trials=[...])"
            )
    parts = [
        part.assign_coords(trial=("time", np.full(part.sizes["time"], tid)))
        for tid, part in zip(trial_ids, parts, strict=True)
    ]
    # a paq channel some trials lack is NaN in those; ROI coordinates are the first trial's
    on_time = {name for part in parts for name, c in part.coords.items() if c.dims == ("time",)}
    parts = [
        part.assign_coords(
            {
                name: ("time", np.full(part.sizes["time"], np.nan))
                for name in on_time - set(part.coords)
            }
        )
        for part in parts
    ]
    joined = xr.concat(
        parts, dim="time", data_vars="minimal", coords="minimal", compat="override", join="outer"
    )
    joined.attrs = {k: v for k, v in first.attrs.items() if k != "trial"}
    joined.attrs["trials"] = list(trial_ids)
    return joined


def trials_tsdframe(trials: Sequence[Any], layer: str | None, *, rois: Any = None) -> Any:
    """Loaded trials of one experiment as one ``pynapple.TsdFrame`` (time in seconds, one column
    per ROI, named by its stored ID; obs columns as metadata; the trials as its
    ``time_support``, an IntervalSet with a ``trial`` column). The values stay the
    store's lazy arrays (``load_array=False``): reading happens when pynapple indexes."""
    try:
        import pynapple as nap
    except ImportError:
        raise ImportError("to_pynapple needs pynapple: pip install 'zstore[pynapple]'") from None
    import dask.array as da

    if layer is not None and not isinstance(layer, str):
        raise ArgumentTypeError(
            f"to_pynapple: layer must be a layer name (a str) or None for X, got "
            f"{layer!r} ({type(layer).__name__}); pass layer='dFF'"
        )
    if not trials:
        raise InvalidArgumentError("to_pynapple: no trials to convert; pass trials=[...]")
    trial_ids = [t.trialID for t in trials]
    first = trials[0].data
    for trial in trials[1:]:
        if not trial.data.obs_names.equals(first.obs_names):
            raise IncompatibleDataError(
                f"trial {trial.trialID!r} has different ROIs from trial {trial_ids[0]!r}; "
                f"convert trials of one ROI set"
            )
    times = [_times(t.data) for t in trials]
    starts, ends = [], []
    for trial, t in zip(trials, times, strict=True):
        if len(t) == 0:
            raise IncompatibleDataError(f"trial {trial.trialID!r} has no frames")
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        starts.append(float(t[0]))
        ends.append(float(t[-1]) + (step / 2 if step > 0 else 0.0))  # not the next start
    everything = np.concatenate(times)
    if not np.all(np.diff(everything) > 0):
        raise IncompatibleDataError(
            f"the frame times of trials {list(trial_ids)} do not increase (each trial's var "
            f"'time' restarts, or trials overlap): pynapple needs one time axis; convert "
            f"one trial at a time, or store session time in var['time']"
        )
    matrices = [t.data.matrix(None if layer in (None, "X") else layer) for t in trials]
    values = da.concatenate(matrices, axis=1).T if len(matrices) > 1 else matrices[0].T
    support = nap.IntervalSet(start=starts, end=ends, metadata={"trial": list(trial_ids)})
    columns = np.asarray(first.obs_names, dtype=str)
    metadata = pd.DataFrame(
        {str(c): _column(first.obs[c]) for c in first.obs.columns}, index=columns
    )
    if rois is not None:
        keep = resolve_rois(columns, rois, where=_where(trials[0]))
        values, columns, metadata = values[:, keep], columns[keep], metadata.iloc[keep]
    return nap.TsdFrame(
        t=everything,
        d=values,
        columns=columns,
        time_support=support,
        load_array=False,
        metadata=metadata if len(metadata.columns) else None,
    )


def _where(trial: Any) -> str:
    """``trial 't-000' of 'RL109'``: where ROIs are looked up, for error messages."""
    exp = getattr(getattr(trial, "experiment", None), "expID", None)
    return f"trial {trial.trialID!r}" + (f" of {exp!r}" if exp is not None else "")


def _layers(data: Any, layers: Sequence[str] | None, where: str) -> list[str]:
    layers = name_list(layers, name="layers", what="layer name", where=where, example="'dFF'")
    if layers is None:
        return list(data.layers)
    missing = [name for name in layers if name not in data.layers]
    if missing:
        raise KeyNotFoundError(
            f"{where} has no layer(s) {missing}; its layers are {list(data.layers)}"
        )
    return list(layers)


#: Suite2p's traces that ingest stores as layers (no processing record): what they hold.
_SUITE2P_LAYERS = {"Fneu": ("Fneu", "a.u."), "spks": ("spks", "a.u.")}


def layer_quantity(data: Any, layer: str | None) -> tuple[str, str | None]:
    """What the matrix ``layer`` of ``data`` holds and its unit, for labels: X is
    ``("F", "a.u.")``; a layer made by :func:`zstore.normalize_dff` (its ``uns
    ["processing"]`` record, or the provenance of an unsaved lazy layer) is
    ``("dF/F", "%")``; a neuropil-corrected F ``(layer, "a.u.")``; anything else
    ``(layer, None)``: the unit is not known."""
    if layer is None or layer == "X":
        return "F", "a.u."
    records = data.uns.get("processing", {})
    record = records.get(layer) if isinstance(records, dict) else None
    if not isinstance(record, dict) and layer in data.layers:
        from .processing.provenance import provenance_of

        record = provenance_of(data.layers[layer])
    function = record.get("function") if isinstance(record, dict) else None
    if function == "normalize_dff":
        return ("dF/F" if layer == "dFF" else f"dF/F ({layer})"), "%"
    if function == "neuropil_correct":
        return layer, "a.u."
    return _SUITE2P_LAYERS.get(layer, (layer, None))


def frame_times(data: Any) -> tuple[np.ndarray, str]:
    """Each frame's time and where it came from: ``"time"`` (var ``time``, session
    seconds), ``"fs"`` (frame / uns fs, where var has no usable times) or ``"frames"``
    (frame numbers: neither is known)."""
    if "time" in data.var.columns:
        time = pd.to_numeric(data.var["time"], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(time).all():
            return time, "time"
    frames = np.arange(data.n_vars, dtype=np.float64)
    fs = data.uns.get("fs")
    if isinstance(fs, int | float) and not isinstance(fs, bool) and np.isfinite(fs) and fs > 0:
        return frames / float(fs), "fs"
    return frames, "frames"


def _times(data: Any) -> np.ndarray:
    return frame_times(data)[0]


def _column(series: pd.Series) -> np.ndarray:
    if (
        isinstance(series.dtype, pd.CategoricalDtype)
        or series.dtype == object
        or pd.api.types.is_string_dtype(series.dtype)
    ):  # text, with missing values kept missing (None), not the text 'nan'
        return np.array([None if pd.isna(v) else str(v) for v in series], dtype=object)
    if pd.api.types.is_extension_array_dtype(series.dtype):  # nullable ints, booleans
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()


def _free(name: str, kind: str, taken: set[str]) -> str:
    """``name``, or ``<kind>_<name>`` when a variable or coordinate already has it."""
    out = name if name not in taken else f"{kind}_{name}"
    while out in taken:
        out = f"{kind}_{out}"
    taken.add(out)
    return out


def _attrs(trial: Any) -> dict[str, Any]:
    uns = trial.data.uns
    attrs: dict[str, Any] = {"experiment": trial.experiment.expID, "trial": trial.trialID}
    fs = uns.get("fs")
    if isinstance(fs, int | float):
        attrs["fs"] = float(fs)
    for key in ("processing", "trial"):
        value = uns.get(key)
        if isinstance(value, dict):
            attrs[f"uns_{key}"] = json.dumps(value, default=_plain, sort_keys=True)
    return attrs


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
