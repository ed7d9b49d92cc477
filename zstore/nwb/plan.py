"""What an NWB export holds: the trials, checked to fit one file (the same ROIs, times
that increase, one frame rate), and the layers they all have."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from ..arrays import StorageConfig
from ..errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
)

__all__ = ["Plan", "select_trials"]


def select_trials(source: Any, trial_ids: Sequence[str] | None) -> tuple[Any, list[Any]]:
    """The experiment and the loaded trials that ``source`` (and ``trial_ids``) name."""
    from ..experiment import Experiment, Trial

    if isinstance(source, Experiment):
        if isinstance(trial_ids, str):
            trial_ids = [trial_ids]
        ids = list(trial_ids) if trial_ids is not None else source.trialIDs
        if not ids:
            raise InvalidArgumentError(
                f"export_nwb: experiment {source.expID!r} has no trials to export"
            )
        return source, [source.load_trial(tid) for tid in ids]
    if trial_ids is not None:
        raise ArgumentTypeError(
            "export_nwb: trials= selects trials of an Experiment; with Trials, pass the "
            "ones to export as the first argument"
        )
    loaded = (
        [source]
        if isinstance(source, Trial)
        else list(source)
        if isinstance(source, list | tuple)
        else []
    )
    if not loaded or not all(isinstance(t, Trial) for t in loaded):
        raise ArgumentTypeError(
            f"export_nwb: expected an Experiment, a Trial or a list of Trials, got "
            f"{type(source).__name__}"
        )
    experiments = {(t.experiment.location, t.experiment.expID) for t in loaded}
    if len(experiments) > 1:
        raise InvalidArgumentError(
            f"export_nwb: the trials come from {len(experiments)} experiments "
            f"{sorted(e for _, e in experiments)}; one NWB file holds trials of one "
            f"experiment (one field of view): export each experiment to its own file"
        )
    return loaded[0].experiment, loaded


class Plan:
    """The trials to export, checked to fit one file: same ROIs, times that increase,
    one frame rate; the layers they all have."""

    def __init__(self, exp: Any, loaded: list[Any], layers: Sequence[str] | None):
        from ..views import frame_times

        self.exp = exp
        self.trials = loaded
        self.trial_ids = [t.trialID for t in loaded]
        self.first = loaded[0].data
        if self.first.n_obs == 0:
            raise IncompatibleDataError(
                f"export_nwb: trial {self.trial_ids[0]!r} has no ROIs to export"
            )
        for trial in loaded[1:]:
            if not trial.data.obs_names.equals(self.first.obs_names):
                raise IncompatibleDataError(
                    f"export_nwb: trial {trial.trialID!r} has different ROIs from trial "
                    f"{self.trial_ids[0]!r}; one file holds trials of one ROI set: export "
                    f"them separately (trials=[...])"
                )
        common = [n for n in self.first.layers if all(n in t.data.layers for t in loaded)]
        if layers is None:
            self.layers = common
        else:
            wanted = [layers] if isinstance(layers, str) else list(layers)
            missing = [n for n in wanted if n not in common]
            if missing:
                have = {t.trialID: list(t.data.layers) for t in loaded}
                raise KeyNotFoundError(
                    f"export_nwb: layer(s) {missing} are not in every trial exported; "
                    f"the trials' layers are {have}"
                )
            self.layers = wanted
        self.times: list[np.ndarray] = []
        for trial in loaded:
            times, kind = frame_times(trial.data)
            if kind == "frames":
                raise IncompatibleDataError(
                    f"export_nwb: trial {trial.trialID!r} has no frame times (var 'time' "
                    f"is missing or not finite) and no frame rate (uns 'fs'); NWB needs "
                    f"times in seconds: add var 'time' or set uns['fs'] and save the trial"
                )
            if len(times) == 0:
                raise IncompatibleDataError(f"export_nwb: trial {trial.trialID!r} has no frames")
            self.times.append(times)
        self.time = np.concatenate(self.times)
        if len(self.time) > 1 and not np.all(np.diff(self.time) > 0):
            raise IncompatibleDataError(
                f"export_nwb: the frame times of trials {self.trial_ids} do not increase "
                f"(a trial's var 'time' restarts, or trials overlap); NWB needs one time "
                f"axis: export one trial per file, or store session time in var['time']"
            )
        rates = {tid: _fs(t.data.uns) for tid, t in zip(self.trial_ids, loaded, strict=True)}
        known = {r for r in rates.values() if r is not None}
        if len(known) > 1:
            raise IncompatibleDataError(
                f"export_nwb: the trials have different frame rates {rates} (uns 'fs'); "
                f"one imaging plane has one rate: export them to separate files"
            )
        step = float(np.median(np.diff(self.time))) if len(self.time) > 1 else 0.0
        self.fs = known.pop() if known else (1.0 / step if step > 0 else None)
        self.first_frames = np.concatenate([[0], np.cumsum([len(t) for t in self.times])])

    def matrices(self, layer: str | None) -> list[Any]:
        return [t.data.matrix(layer) for t in self.trials]

    def inner_frames(self, layer: str | None) -> int:
        """Frames per inner chunk of the stored matrix (the largest over the trials;
        the default configuration's for a layer not saved yet)."""
        found = []
        for tid in self.trial_ids:
            group = self.exp.open_zarr(f"trials/{tid}")
            array = group.get("X" if layer is None else f"layers/{layer}")
            if isinstance(array, zarr.Array):
                found.append(int(array.chunks[1]))
        return max(found) if found else StorageConfig().inner_frames

    def processing(self, layer: str) -> dict[str, Any]:
        record = self.first.uns.get("processing", {})
        found = record.get(layer) if isinstance(record, Mapping) else None
        return dict(found) if isinstance(found, Mapping) else {}


def _fs(uns: Mapping[str, Any]) -> float | None:
    for value in (uns.get("fs"), (uns.get("suite2p") or {}).get("fs")):
        if isinstance(value, int | float | np.number) and not isinstance(value, bool):
            fs = float(value)
            if np.isfinite(fs) and fs > 0:
                return fs
    return None
