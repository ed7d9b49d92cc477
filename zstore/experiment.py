"""Experiment and Trial: list, load, add and save trials of an experiment store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anndata as ad
import dask.array as da
import pandas as pd
import zarr
from zarr.abc.store import Store

from .annotated import AnnotatedData
from .arrays import Progress, StorageConfig
from .errors import ExperimentExistsError, ReadOnlyError, TrialNotFoundError
from .names import check_name
from .store import (
    StoreLike,
    create_root,
    describe_store,
    list_trials,
    make_store,
    open_root,
    open_trial_group,
    trial_lock,
    trial_path,
    zstore_attrs,
)
from .trialio import StoredState, describe_arrays, read_trial, save_trial, write_trial

__all__ = ["Experiment", "Trial", "compute_dff", "create_experiment", "open_experiment"]


class Experiment:
    """An experiment store: many trials of one field of view, each an AnnotatedData.

    Create one with :func:`create_experiment` or :func:`zstore.ingest_suite2p`, open one
    with :func:`open_experiment`.
    """

    def __init__(self, store: Store, root: zarr.Group, *, mode: str, config: StorageConfig):
        self.store = store
        self.mode = mode
        self.config = config
        self._root = root

    @property
    def expID(self) -> str:
        """The experiment's ID."""
        return str(zstore_attrs(self._root)["expID"])

    @property
    def trialIDs(self) -> list[str]:
        """IDs of the trials, in the order they were added (listed from the store)."""
        return [r.trial_id for r in list_trials(self._root) if r.complete]

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self.trialIDs

    def __len__(self) -> int:
        return len(self.trialIDs)

    def __repr__(self) -> str:
        ids = self.trialIDs
        return (
            f"Experiment {self.expID!r} at {describe_store(self.store)} "
            f"(mode={self.mode!r}): {len(ids)} trials {ids}"
        )

    def _repr_html_(self) -> str:
        from .display import html_experiment

        return html_experiment(self)

    def load_trial(self, trial_id: str) -> Trial:
        """Open one trial lazily: reads its metadata, obs, var and uns, no chunk of X.

        Examples
        --------
        >>> import numpy as np, zarr, zstore as zs
        >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109")
        >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> trial = exp.load_trial("t-005")
        >>> trial.data
        Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 4 × 10
        """
        check_name(trial_id, kind="trial ID")
        if trial_id not in self.trialIDs:
            raise TrialNotFoundError(
                f"trial {trial_id!r} is not in experiment {self.expID!r} at "
                f"{describe_store(self.store)}; its trials are {self.trialIDs}"
            )
        group = open_trial_group(self.store, trial_id, mode="r")
        data, state = read_trial(group, trial_id)
        return Trial(self, trial_id, data, state)

    def add_trial(
        self,
        trial_id: str,
        adata: ad.AnnData,
        *,
        overwrite: bool = False,
        provenance: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> Trial:
        """Write ``adata`` as a new trial, streaming X and layers shard by shard.

        X and layers may be numpy or dask arrays; a dask array is never loaded whole.
        The trial becomes visible to readers only when it is completely written.

        Examples
        --------
        >>> import numpy as np, zarr, zstore as zs
        >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109")
        >>> trial = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> exp.trialIDs
        ['t-005']
        """
        self._require_writable(f"add trial {trial_id!r}")
        check_name(trial_id, kind="trial ID")
        if not isinstance(adata, ad.AnnData):
            raise TypeError(
                f"add_trial({trial_id!r}): expected an AnnotatedData (or AnnData), got "
                f"{type(adata).__name__}; wrap arrays with zs.AnnotatedData(X, obs, var)"
            )
        if trial_id in self.trialIDs and not overwrite:
            raise ExperimentExistsError(
                f"trial {trial_id!r} already exists in experiment {self.expID!r}; pass "
                f"overwrite=True to replace it, or choose another trial ID"
            )
        with trial_lock(self.store, trial_id):
            # mode="w" clears what is there: a replaced trial, or one whose write died.
            group = zarr.open_group(self.store, path=trial_path(trial_id), mode="w", zarr_format=3)
            write_trial(
                group, trial_id, adata, config=self.config, provenance=provenance, progress=progress
            )
        return self.load_trial(trial_id)

    def concat(
        self, layer: str | None = None, *, trials: Sequence[str] | None = None
    ) -> AnnotatedData:
        """All trials' frames side by side, lazily: one AnnotatedData of ROIs x all frames.

        ``X`` is each trial's X (or ``layer``) concatenated along frames in trial order;
        ``var`` is the trials' var tables with a ``trial`` column (index
        ``"<trial>:<frame>"``); ``obs`` and the masks are the ROIs' (every trial must have
        the same ROIs). Reads metadata, obs, var and uns only.

        Examples
        --------
        >>> import numpy as np, zarr, zstore as zs
        >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109")
        >>> for tid in ["t-005", "t-006"]:
        ...     _ = exp.add_trial(tid, zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> allf = exp.concat()
        >>> allf, allf.var["trial"].unique().tolist()
        (Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 4 × 20, ['t-005', 't-006'])
        """
        ids = list(trials) if trials is not None else self.trialIDs
        if not ids:
            raise ValueError(f"experiment {self.expID!r} has no trials to concatenate")
        loaded = [self.load_trial(tid) for tid in ids]
        first = loaded[0].data
        differ = [t.trialID for t in loaded[1:] if not t.data.obs_names.equals(first.obs_names)]
        if differ:
            raise ValueError(
                f"trials {differ} have different ROIs from trial {ids[0]!r}; concatenate "
                f"trials of the same ROI set (pass trials=[...])"
            )
        blocks = []
        for trial in loaded:
            if layer is None:
                blocks.append(trial.data.X)
            elif layer in trial.data.layers:
                blocks.append(trial.data.layers[layer])
            else:
                raise KeyError(
                    f"trial {trial.trialID!r} has no layer {layer!r} (its layers: "
                    f"{list(trial.data.layers)}); compute it first, e.g. "
                    f"zs.compute_dff(exp, layer={layer!r})"
                )
        var = pd.concat([t.data.var.assign(trial=t.trialID) for t in loaded], axis=0, join="outer")
        var.index = pd.Index([f"{t.trialID}:{name}" for t in loaded for name in t.data.var_names])
        var["trial"] = pd.Categorical(var["trial"], categories=ids)
        data = AnnotatedData(
            da.concatenate(blocks, axis=1),
            obs=first.obs.copy(),
            var=var,
            uns={"trials": ids, "layer": layer or "X"},
        )
        for key, value in first.obsm.items():
            data.obsm._data[key] = value  # aligned by construction: same ROIs
        return data

    def _require_writable(self, action: str) -> None:
        if self.mode == "r":
            raise ReadOnlyError(
                f"cannot {action}: experiment {self.expID!r} was opened read-only; open it "
                f"with zs.open_experiment(store, mode='r+') to write"
            )


class Trial:
    """One trial of an experiment: ``trial.data`` is a lazy AnnotatedData over the store."""

    def __init__(
        self, experiment: Experiment, trial_id: str, data: AnnotatedData, state: StoredState
    ):
        self.experiment = experiment
        self.trialID = trial_id
        self.data = data
        self._state = state

    def __repr__(self) -> str:
        layers = list(self.data.layers)
        return (
            f"Trial {self.trialID!r} of experiment {self.experiment.expID!r}: "
            f"{self.data.n_obs} ROIs × {self.data.n_vars} frames, layers {layers}"
        )

    def _repr_html_(self) -> str:
        from .display import html_trial

        return html_trial(self)

    def storage(self) -> list[dict[str, Any]]:
        """How X and each layer are stored: shape, dtype, shards, chunks, codecs, sizes.

        Reads metadata and lists the stored objects; no chunk data.
        """
        group = open_trial_group(self.experiment.store, self.trialID, mode="r")
        return describe_arrays(group)

    def save(self, *, progress: Progress | None = None) -> list[str]:
        """Stream what changed since loading into the store; return what was written.

        New layers are computed and written one task per shard; added or removed obs
        and var columns, uns and obsm entries are rewritten. Saved layers then read
        lazily from the store instead of their in-memory graph.

        Examples
        --------
        >>> import numpy as np, zarr, zstore as zs
        >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109")
        >>> F = np.arange(1, 41, dtype="float32").reshape(4, 10)
        >>> trial = exp.add_trial("t-005", zs.AnnotatedData(F))
        >>> trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
        >>> trial.save()
        ['layers/dFF', 'uns']
        >>> trial.data.uns["processing"]["dFF"]["source"]
        'X'
        """
        exp = self.experiment
        if exp.mode == "r":
            raise ReadOnlyError(
                f"trial {self.trialID!r} was opened read-only; open the experiment with "
                f"zs.open_experiment(store, mode='r+') to save it"
            )
        with trial_lock(exp.store, self.trialID):
            group = open_trial_group(exp.store, self.trialID, mode="r+")
            changed = save_trial(
                group, self.trialID, self.data, self._state, config=exp.config, progress=progress
            )
        if changed:
            self._reload(changed)
        return changed

    def _reload(self, changed: list[str]) -> None:
        """Point what was written at the store, keeping ``self.data`` the same object."""
        fresh, state = read_trial(
            open_trial_group(self.experiment.store, self.trialID, mode="r"), self.trialID
        )
        for key in changed:
            attr, _, name = key.partition("/")
            if attr == "layers" and name in fresh.layers:
                self.data.layers[name] = fresh.layers[name]
            elif attr in ("obsm", "varm", "obsp", "varp") and name in getattr(fresh, attr):
                getattr(self.data, attr)._data[name] = getattr(fresh, attr)[name]
        state.aligned = {
            f"{attr}/{k}": id(v)
            for attr in ("obsm", "varm", "obsp", "varp")
            for k, v in getattr(self.data, attr).items()
        }
        state.matrices = {
            "X": self._state.matrices["X"],
            **{f"layers/{k}": v.name for k, v in self.data.layers.items()},
        }
        self._state = state


def create_experiment(
    store: StoreLike,
    *,
    exp_id: str,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    config: StorageConfig | None = None,
) -> Experiment:
    """Create an empty experiment store.

    Parameters
    ----------
    store
        A local path, an ``s3://`` URL or a zarr Store.
    exp_id
        The experiment's ID (e.g. the animal and session, ``"RL109"``).
    overwrite
        Replace whatever the store holds. Without it, a store that holds Zarr data is
        an error.
    storage_options
        Passed to fsspec for URLs (endpoint, credentials, ...).
    config
        Chunking and compression of X and layers (:class:`zstore.StorageConfig`).

    Examples
    --------
    >>> import zarr, zstore as zs
    >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109")
    >>> exp.expID, exp.trialIDs
    ('RL109', [])
    """
    zstore = make_store(store, mode="r+", storage_options=storage_options)
    root = create_root(zstore, exp_id=exp_id, overwrite=overwrite)
    return Experiment(zstore, root, mode="r+", config=config or StorageConfig())


def open_experiment(
    store: StoreLike,
    *,
    mode: str = "r",
    storage_options: Mapping[str, Any] | None = None,
    config: StorageConfig | None = None,
) -> Experiment:
    """Open an existing experiment store, ``mode="r"`` to read or ``"r+"`` to write.

    Examples
    --------
    >>> import zarr, zstore as zs
    >>> store = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109").store
    >>> zs.open_experiment(store).expID
    'RL109'
    """
    zstore = make_store(store, mode=mode, storage_options=storage_options)
    root = open_root(zstore, mode=mode)
    return Experiment(zstore, root, mode=mode, config=config or StorageConfig())


def compute_dff(
    exp: Experiment,
    *,
    layer: str = "dFF",
    normalize_pct: float = 20,
    baseline: str = "percentile",
    trials: Sequence[str] | None = None,
    overwrite: bool = False,
    source: str | None = None,
    fs: float | None = None,
    sig_baseline: float = 10.0,
    win_baseline: float = 60.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[str]:
    """Compute and save dF/F for every trial (or those named), one trial after another.

    Streams: each trial's X (or ``source`` layer) is read, normalised and written one
    shard per task, so memory stays at a few shards whatever the experiment's size.
    ``baseline="maximin"`` takes ``fs`` from each trial's ``uns["fs"]`` unless given.
    Returns the trials written.

    Examples
    --------
    >>> import numpy as np, zarr, zstore as zs
    >>> exp = zs.create_experiment(zarr.storage.MemoryStore(), exp_id="RL109")
    >>> F = np.arange(1, 41, dtype="float32").reshape(4, 10)
    >>> _ = exp.add_trial("t-005", zs.AnnotatedData(F))
    >>> zs.compute_dff(exp, layer="dFF", normalize_pct=20)
    ['t-005']
    >>> exp.load_trial("t-005").data.uns["processing"]["dFF"]["normalize_pct"]
    20.0
    """
    from .processing import normalize_dff

    exp._require_writable(f"save layer {layer!r}")
    check_name(layer, kind="layer name")
    ids = list(trials) if trials is not None else exp.trialIDs
    unknown = [t for t in ids if t not in exp.trialIDs]
    if unknown:
        raise TrialNotFoundError(
            f"trials {unknown} are not in experiment {exp.expID!r}; its trials are {exp.trialIDs}"
        )
    loaded = [exp.load_trial(tid) for tid in ids]
    existing = [t.trialID for t in loaded if layer in t.data.layers]
    if existing and not overwrite:
        raise ExperimentExistsError(
            f"trials {existing} already have a layer {layer!r}; pass overwrite=True "
            f"(--overwrite) to recompute it, or choose another layer name"
        )
    for trial in loaded:
        data = trial.data
        if source is None:
            values = data.X
        elif source in data.layers:
            values = data.layers[source]
        else:
            raise KeyError(f"trial {trial.trialID!r} has no layer {source!r} to compute dF/F from")
        trial_fs = fs if fs is not None else data.uns.get("fs")
        dff = normalize_dff(
            values,
            normalize_pct=normalize_pct,
            baseline=baseline,
            fs=trial_fs if baseline == "maximin" else None,
            sig_baseline=sig_baseline,
            win_baseline=win_baseline,
            roi_names=data.obs_names,
        )
        data.add_layer(layer, dff)
        report = None
        if progress is not None:
            tid = trial.trialID
            report = lambda done, total, tid=tid: progress(tid, done, total)  # noqa: E731
        trial.save(progress=report)
    return ids
