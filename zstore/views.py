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

from .errors import KeyNotFoundError

__all__ = ["trial_dataset", "trials_dataset"]


def trial_dataset(trial: Any, layers: Sequence[str] | None = None) -> Any:
    """The trial as a lazy ``xarray.Dataset`` (see :meth:`zstore.Trial.to_xarray`)."""
    import xarray as xr

    data = trial.data
    names = _layers(data, layers, f"trial {trial.trialID!r}")
    variables = {"X": (("roi", "time"), data.X)}
    variables.update({name: (("roi", "time"), data.layers[name]) for name in names})
    coords: dict[str, Any] = {
        "roi": ("roi", np.asarray(data.obs_names, dtype=str)),
        "time": ("time", _times(data)),
        "frame": ("time", np.asarray(data.var_names, dtype=str)),
    }
    taken = set(variables) | set(coords)
    for column in data.obs.columns:
        coords[_free(f"{column}", "obs", taken)] = ("roi", _column(data.obs[column]))
    for column in data.var.columns:
        if column != "time":
            coords[_free(f"{column}", "var", taken)] = ("time", _column(data.var[column]))
    return xr.Dataset(variables, coords=coords, attrs=_attrs(trial))


def trials_dataset(exp: Any, trial_ids: Sequence[str], layers: Sequence[str] | None) -> Any:
    """Trials of one experiment side by side along ``time`` (``trial`` a coordinate on
    it); they must have the same ROIs."""
    import xarray as xr

    if not trial_ids:
        raise ValueError(f"experiment {exp.expID!r}: no trials to put in a Dataset")
    parts = [trial_dataset(exp.load_trial(tid), layers) for tid in trial_ids]
    first = parts[0]
    for tid, part in zip(trial_ids[1:], parts[1:], strict=True):
        if not np.array_equal(part["roi"].values, first["roi"].values):
            raise ValueError(
                f"trial {tid!r} has different ROIs from trial {trial_ids[0]!r}; put trials "
                f"of one ROI set together (trials=[...])"
            )
    parts = [
        part.assign_coords(trial=("time", np.full(part.sizes["time"], tid)))
        for tid, part in zip(trial_ids, parts, strict=True)
    ]
    joined = xr.concat(
        parts, dim="time", data_vars="minimal", coords="different", compat="equals", join="outer"
    )
    joined.attrs = {k: v for k, v in first.attrs.items() if k != "trial"}
    joined.attrs["trials"] = list(trial_ids)
    return joined


def _layers(data: Any, layers: Sequence[str] | None, where: str) -> list[str]:
    if layers is None:
        return list(data.layers)
    if isinstance(layers, str):
        layers = [layers]
    missing = [name for name in layers if name not in data.layers]
    if missing:
        raise KeyNotFoundError(
            f"{where} has no layer(s) {missing}; its layers are {list(data.layers)}"
        )
    return list(layers)


def _times(data: Any) -> np.ndarray:
    """Session time of each frame (var ``time``); frame / fs, or the frame number, where
    a trial has no times."""
    if "time" in data.var.columns:
        time = pd.to_numeric(data.var["time"], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(time).all():
            return time
    fs = data.uns.get("fs")
    frames = np.arange(data.n_vars, dtype=np.float64)
    return frames / float(fs) if isinstance(fs, int | float) and fs > 0 else frames


def _column(series: pd.Series) -> np.ndarray:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return np.asarray(series.astype(str))
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        return np.asarray(series.astype(str))
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
    attrs["time_units"] = "s"
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
