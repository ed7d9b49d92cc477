"""The session around the traces in an NWB export: the paq channels (var columns) as
acquisition TimeSeries and the trials table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import emit_user_warning
from .plan import Plan

__all__ = ["add_channels", "add_trials"]


def add_channels(pynwb: Any, nwbfile: Any, plan: Plan, first: Any) -> None:
    """Each var column but ``time`` (paq channels at the frames' clock edges) as a
    TimeSeries in acquisition, on the traces' time base."""
    paq = plan.first.uns.get("paq") or {}
    names = [str(c) for c in paq.get("chan_names", [])]
    units = dict(zip(names, (str(u) for u in paq.get("units", [])), strict=False))
    hardware = dict(zip(names, (str(h) for h in paq.get("hw_chans", [])), strict=False))
    rate = paq.get("rate")
    columns: list[str] = []
    for trial in plan.trials:
        columns += [str(c) for c in trial.data.var.columns if c != "time" and c not in columns]
    when = (
        {"timestamps": first}
        if first.rate is None
        else {"starting_time": first.starting_time, "rate": first.rate}
    )
    skipped = []
    for column in columns:
        data = _channel(plan, column)
        if data is None:
            skipped.append(column)
            continue
        if column in names:
            description = (
                f"PackIO channel {column!r}"
                + (f" (hardware channel {hardware[column]})" if column in hardware else "")
                + (f", recorded at {rate:g} Hz," if isinstance(rate, int | float) else "")
                + " sampled at each imaging frame's clock edge"
            )
        else:
            description = f"var column {column!r}: one value per imaging frame"
        nwbfile.add_acquisition(
            pynwb.TimeSeries(
                name=column,
                data=data,
                unit=units.get(column, "n.a."),
                description=description,
                **when,
            )
        )
    if skipped:
        emit_user_warning(
            f"export_nwb: var column(s) {skipped} were left out of the NWB file: their "
            f"values are not numbers or booleans"
        )


def _channel(plan: Plan, column: str) -> np.ndarray | None:
    """A var column over all trials (NaN where a trial lacks it), or None if not numeric."""
    parts = []
    for trial in plan.trials:
        var = trial.data.var
        if column not in var.columns:
            parts.append(np.full(var.shape[0], np.nan, dtype=np.float32))
            continue
        values = var[column]
        if not (
            pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype)
        ):
            return None
        small = values.dtype == np.float32 or values.dtype.itemsize <= 2
        dtype = np.float32 if small else np.float64
        parts.append(values.to_numpy(dtype=dtype, na_value=np.nan))
    return np.concatenate(parts)


def add_trials(nwbfile: Any, plan: Plan) -> None:
    nwbfile.add_trial_column(name="trial_id", description="the trial's ID in zstore")
    nwbfile.add_trial_column(
        name="first_frame", description="the trial's first row (frame) in the series"
    )
    nwbfile.add_trial_column(name="n_frames", description="the trial's number of frames")
    step = 1.0 / plan.fs if plan.fs else 0.0
    for k, (tid, times) in enumerate(zip(plan.trial_ids, plan.times, strict=True)):
        nwbfile.add_trial(
            start_time=float(times[0]),
            stop_time=float(times[-1]) + step,  # the end of its last frame
            trial_id=tid,
            first_frame=int(plan.first_frames[k]),
            n_frames=len(times),
        )
