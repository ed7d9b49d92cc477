"""Experiment and Trial: list, load, add and save the trials of an experiment.

An Experiment is pinned to one version of its store (``exp.version``): listing and
loading read that version, whatever other processes commit meanwhile, until
``exp.refresh()``. A loaded Trial is pinned to the version it was read from: its lazy
arrays compute exactly what was stored then. Every write is one transaction
(:mod:`zstore.transaction`) and moves the experiment to the version it committed.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import anndata as ad
import dask.array as da
import pandas as pd
import zarr
from zarr.errors import ContainsArrayError, GroupNotFoundError

from . import _compat
from .annotated import ALIGNED, AnnotatedData
from .arrays import Progress, StorageConfig
from .changes import StoredState, diff
from .documents import (
    check_experiment_root,
    list_trials,
    open_trial_group,
    parse_format_version,
)
from .errors import (
    ArgumentTypeError,
    ConflictError,
    ExperimentNotFoundError,
    FormatVersionError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
    LayerExistsError,
    NotAnExperimentError,
    ReadOnlyError,
    TrialChangedError,
    TrialExistsError,
    TrialNotFoundError,
    ZstoreWarning,
    emit_user_warning,
)
from .images import (
    IMAGES,
    ImageReader,
    ImageWriter,
    create_image,
    dangling,
    restore_source,
    settle_images,
)
from .names import check_name, equivalent_name, shown_name, stored_name
from .progress import ProgressOption, reporting
from .storable import check_processing, prepare
from .store import (
    COLLECTION_ENCODING,
    ENCODING_VERSION,
    EXPERIMENT_ENCODING,
    TRIALS,
)
from .table import query_table, read_table
from .transaction import Commit, GarbageReport, Guard, Repo, Transaction
from .trialio import (
    apply_changes,
    describe_arrays,
    read_trial,
    update_processing,
    write_trial,
)
from .validate import boolean, duration, optional_text, progress_option, shown, trial_ids

if TYPE_CHECKING:
    from .summary import IngestSummary

__all__ = ["Experiment", "Trial", "compute_dff"]

MODES = ("r", "r+")


class Experiment:
    """An experiment store: many trials of one field of view, each an AnnotatedData.

    Create one with :func:`create_experiment` or :func:`zstore.ingest_suite2p`, open one
    with :func:`open_experiment`.
    """

    #: What :func:`zstore.ingest_suite2p` wrote, on the object it returns (else None).
    ingest_summary: IngestSummary | None = None

    def __init__(
        self, repo: Repo, *, mode: str, session: Any, pinned: bool = False, prefix: str = ""
    ):
        self._repo = repo
        self.mode = mode
        self._pinned = pinned
        # "" for an experiment that is its repository; "experiments/<id>" in a collection
        self._prefix = prefix
        self._use(session)

    # -- the version this object reads ------------------------------------------------

    def _move_to(self, version: str) -> None:
        self._use(self._repo.session(version))

    def _use(self, session: Any) -> None:
        where = self.location
        root = self._repo.root(session)
        if root is not None and self._prefix:
            node = root.get(self._prefix)
            if not isinstance(node, zarr.Group):
                exp_id = self._prefix.rsplit("/", 1)[-1]
                raise ExperimentNotFoundError(
                    f"experiment {exp_id!r} is not in the collection at "
                    f"{self._repo.place.label} (version {session.snapshot_id}); it was "
                    f"removed, or never added"
                )
            root = node
        if root is None:
            self._repo.check_snapshot(str(session.snapshot_id))
            raise NotAnExperimentError(
                f"{where} is an empty Icechunk repository (a creation that was interrupted?); "
                f"create the experiment again there with zs.create_experiment(...) or "
                f"`zstore ingest`"
            )
        meta = _experiment_attrs(root, where)
        self._session = session
        self._root = root
        self._meta = meta
        self._trial_ids: list[str] | None = None
        # the summary images of this version, each read once (zstore.images)
        self._images = ImageReader(root, f"experiment {meta.get('expID')!r} at {where}")

    @property
    def version(self) -> str:
        """The version (snapshot ID) this object reads; see :meth:`history`."""
        return str(self._session.snapshot_id)

    @property
    def location(self) -> str:
        """Where the experiment is stored (a path or URL; in a collection, the
        collection's location and ``::experiments/<id>``)."""
        label = self._repo.place.label
        return f"{label}::{self._prefix}" if self._prefix else label

    @property
    def metadata(self) -> dict[str, Any]:
        """What was recorded about the experiment at ingest (subject, session, plane,
        date and any ``metadata={...}``); empty for a standalone experiment without."""
        found = self._meta.get("metadata")
        return dict(found) if isinstance(found, dict) else {}

    @property
    def expID(self) -> str:
        """The experiment's ID."""
        return str(self._meta["expID"])

    @property
    def config(self) -> StorageConfig:
        """How new trials are chunked and compressed (recorded at creation)."""
        return StorageConfig.from_json(self._meta.get("storage", {}), where=self.location)

    @property
    def trialIDs(self) -> list[str]:
        """IDs of the trials in this version, in the order they were added."""
        if self._trial_ids is None:
            # from the trials' documents: a damaged one is listed (last) and fails on load
            listing = list_trials(self._session.store, self._path(TRIALS))
            self._trial_ids = listing.ids
        return list(self._trial_ids)

    def refresh(self) -> Experiment:
        """Move to the newest version of the store (what other processes committed)."""
        if self._pinned:
            raise ReadOnlyError(
                f"experiment {self.expID!r} was opened at version {self.version}; open it "
                f"without version= to follow the newest one"
            )
        self._use(self._repo.session())
        return self

    def history(self) -> list[Commit]:
        """Every version of the experiment, newest first: time, message and changes.

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> [c.message for c in exp.history()][:2]
        ["add trial 't-005'", "create experiment 'RL109'"]
        """
        commits = self._repo.history()
        if not self._prefix:
            return commits
        # in a collection: the commits that changed this experiment (and the creation)
        inside = self._prefix + "/"
        mine = [
            c for c in commits if any(p == self._prefix or p.startswith(inside) for p in c.changes)
        ]
        return mine or commits[-1:]

    def collect_garbage(
        self,
        *,
        keep: datetime.timedelta,
        grace: datetime.timedelta = datetime.timedelta(hours=1),
        dry_run: bool = False,
    ) -> GarbageReport:
        """Expire versions older than ``keep`` and delete the data no kept version uses.

        Reclaims replaced layers and trials, and the leftovers of killed writes. The
        newest version is always kept. A write under way is never touched: every zstore
        writer holds a lease, and everything written since the oldest live one began is
        spared, as is everything younger than ``grace``. Trials loaded from an expired
        version stop reading (with an error that says so). For an experiment of a
        collection, versions are the collection's: this collects for all its experiments.
        """
        self._require_writable("collect garbage")
        duration(keep, name="keep", where="collect_garbage")
        duration(grace, name="grace", where="collect_garbage")
        boolean(dry_run, name="dry_run", where="collect_garbage")
        return self._repo.collect_garbage(keep=keep, grace=grace, dry_run=dry_run)

    def table(self, where: str | None = None) -> pd.DataFrame:
        """One row per trial (the columns of :meth:`zstore.Collection.table`), from
        metadata only; ``where`` is a pandas query on them (e.g. ``"n_frames > 1000"``).

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> exp.table()[["experiment", "trial", "n_rois", "n_frames"]]
          experiment  trial  n_rois  n_frames
        0      RL109  t-005       4        10
        """
        where = optional_text(where, name="where", where="table")
        table = read_table(self._session.store, self.location, {self.expID: self._prefix})
        table = table[table["trial"].notna()].reset_index(drop=True)
        return query_table(table, where, self.location) if where else table

    def __contains__(self, trial_id: object) -> bool:
        return isinstance(trial_id, str) and trial_id in self.trialIDs

    def __len__(self) -> int:
        return len(self.trialIDs)

    def __repr__(self) -> str:
        ids = self.trialIDs
        return (
            f"Experiment {self.expID!r} at {self.location} (mode={self.mode!r}, version "
            f"{self.version}): {len(ids)} trials {ids}"
        )

    def _repr_html_(self) -> str:
        from .display import html_experiment

        return html_experiment(self)

    # -- reading -------------------------------------------------------------------------

    def load_trial(self, trial_id: str) -> Trial:
        """Open one trial lazily: reads its metadata, obs, var and uns, no chunk of X.

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> trial = exp.load_trial("t-005")
        >>> trial.data
        Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 4 × 10
        """
        trial_id = stored_name(trial_id, lambda: self.trialIDs, kind="trial ID")
        where = f"experiment {self.expID!r} at {self.location}"
        path = self._path(f"{TRIALS}/{trial_id}")
        group = open_trial_group(self._session.store, path, trial_id, where)
        if group is None:
            raise TrialNotFoundError(
                f"trial {shown_name(trial_id)} is not in experiment {self.expID!r} at "
                f"{self.location} (version {self.version}); its trials are "
                f"[{', '.join(shown_name(t) for t in self.trialIDs)}]"
                + ("" if self._pinned else "; exp.refresh() sees trials added since opening")
            )
        version = self.version
        data, state = read_trial(
            group,
            trial_id,
            version=version,
            explain=self._repo.explainer(version),
            images=self._images,
        )
        return Trial(self, trial_id, data, state)

    def layer_names(self, trial_id: str) -> list[str]:
        """The layers of a trial in this version (metadata only)."""
        trial_id = stored_name(trial_id, lambda: self.trialIDs, kind="trial ID")
        group = self._root.get(f"{TRIALS}/{trial_id}/layers")
        return sorted(group.array_keys()) if isinstance(group, zarr.Group) else []

    def open_zarr(self, path: str = "") -> zarr.Group:
        """The Zarr group at ``path`` in this version, read-only, for plain anndata/xarray.

        Examples
        --------
        >>> import anndata, icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> anndata.read_zarr(exp.open_zarr("trials/t-005")).shape
        (4, 10)
        """
        if not isinstance(path, str):
            raise ArgumentTypeError(
                f"open_zarr: path must be a group's path in the experiment (a str such as "
                f"'trials/t-005'), got {shown(path)}; pass path='trials/<trial ID>'"
            )
        try:
            return zarr.open_group(
                self._session.store, path=self._path(path), mode="r", zarr_format=3
            )
        except (GroupNotFoundError, ContainsArrayError, ValueError):  # ValueError: '..'
            raise KeyNotFoundError(
                f"open_zarr: there is no group {path!r} in experiment {self.expID!r} at "
                f"{self.location} (version {self.version}); pass path='' (the root), "
                f"'trials/<trial ID>' or a group inside one (its trials are {self.trialIDs})"
            ) from None

    # -- writing ----------------------------------------------------------------------------

    def add_trial(
        self,
        trial_id: str,
        adata: ad.AnnData,
        *,
        overwrite: bool = False,
        provenance: Mapping[str, Any] | None = None,
        progress: ProgressOption = None,
    ) -> Trial:
        """Write ``adata`` as a new trial, streaming X and layers shard by shard.

        X and layers may be numpy or dask arrays; a dask array is never loaded whole.
        One transaction: the trial appears to readers (or replaces the old one, with
        ``overwrite=True``) only when it is completely written; a failed or killed
        write changes nothing. ``progress``: ``True`` shows a bar over the shards,
        ``False`` nothing, ``None`` a bar in interactive sessions only; a callable is
        called with ``(trial_id, shards_done, shards_total)``.

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> trial = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> exp.trialIDs
        ['t-005']
        """
        self._require_writable(f"add trial {trial_id!r}")
        check_name(trial_id, kind="trial ID")
        trial_id = stored_name(trial_id, lambda: self.trialIDs, kind="trial ID")
        boolean(overwrite, name="overwrite", where="add_trial")
        progress_option(progress, where="add_trial")
        if provenance is not None and not isinstance(provenance, Mapping):
            raise ArgumentTypeError(
                f"add_trial({trial_id!r}): provenance must be a mapping of plain values "
                f"(e.g. {{'source': 'suite2p/plane0'}}) or None, got {shown(provenance)}"
            )
        if not isinstance(adata, ad.AnnData):
            raise ArgumentTypeError(
                f"add_trial({trial_id!r}): expected an AnnotatedData (or AnnData), got "
                f"{type(adata).__name__}; wrap arrays with zs.AnnotatedData(X, obs, var)"
            )
        verb = "replace" if overwrite else "add"
        with (
            reporting(progress, desc=f"{verb} trial {trial_id}", label=trial_id) as report,
            self._transaction(f"{verb} trial {trial_id!r}") as txn,
        ):
            _write_trials(
                txn, {trial_id: (adata, provenance)}, self.config, overwrite, self.expID, report
            )
        self._advance(txn)
        return self.load_trial(trial_id)

    def remove_trial(self, trial_id: str) -> None:
        """Remove a trial from the next version (earlier versions keep it until gc).

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> exp.remove_trial("t-005"); exp.trialIDs
        []
        """
        self._require_writable(f"remove trial {trial_id!r}")
        trial_id = stored_name(trial_id, lambda: self.trialIDs, kind="trial ID")
        with self._transaction(f"remove trial {trial_id!r}") as txn:
            if not _compat.has_node(txn.store, txn.path(f"{TRIALS}/{trial_id}")):
                raise TrialNotFoundError(
                    f"trial {trial_id!r} is not in experiment {self.expID!r} at {self.location}"
                )
            txn.delete(f"{TRIALS}/{trial_id}")
            txn.note(f"{TRIALS}/{trial_id}")
            _image_writer(txn, prune=True)  # its images, unless other trials use them
        self._advance(txn)

    @contextlib.contextmanager
    def _transaction(self, message: str) -> Iterator[Transaction]:
        where = f"experiment {self.expID!r}: " if self._prefix else ""
        self._ensure_images_group()
        try:
            with self._repo.transaction(
                where + message, prefix=self._prefix, guard=self._guard
            ) as txn:
                yield txn
        except GroupNotFoundError:
            why = self._guard(self._repo.session())
            if why is None:
                raise
            raise ConflictError(f"{self.location}: {message!r} was not saved: {why}") from None

    def _ensure_images_group(self) -> None:
        """Experiments written before summary images moved out of the trials have no
        ``images`` group: it is made in a commit of its own, so that two writers adding
        the first images at once do not both create it (which Icechunk cannot rebase)."""
        if IMAGES in self._root:
            return
        session = self._repo.session()
        tip = self._repo.root(session)
        node = tip.get(self._prefix) if tip is not None and self._prefix else tip
        if not isinstance(node, zarr.Group) or IMAGES in node or self._guard(session) is not None:
            return  # there already, or the experiment is gone (the write will say so)
        try:
            with self._repo.transaction(
                f"experiment {self.expID!r}: add the images group", prefix=self._prefix
            ) as txn:
                if IMAGES not in txn.root:
                    txn.root.create_group(IMAGES)
                    txn.note(IMAGES)
        except ConflictError:
            pass  # another writer made it first

    def _guard(self, tip: Any) -> str | None:
        """Why a write must not commit onto ``tip`` (None: it may): the experiment this
        object opened was removed or replaced there (its creation time differs)."""
        root = self._repo.root(tip)
        node = root.get(self._prefix) if root is not None and self._prefix else root
        meta = node.attrs.get("zstore") if isinstance(node, zarr.Group) else None
        if not isinstance(meta, dict) or meta.get("expID") != self.expID:
            return f"experiment {self.expID!r} was removed by another writer since it was opened"
        if meta.get("created") != self._meta.get("created"):
            return (
                f"experiment {self.expID!r} was replaced by another writer since it was "
                f"opened; open it again"
            )
        return None

    def _path(self, path: str) -> str:
        """``path`` inside the experiment, from the repository's root."""
        return "/".join(p for p in (self._prefix, path.strip("/")) if p)

    def _advance(self, txn: Transaction) -> None:
        if txn.snapshot is not None:
            self._move_to(txn.snapshot)

    def concat(
        self, layer: str | None = None, *, trials: Sequence[str] | None = None
    ) -> AnnotatedData:
        """All trials' frames side by side, lazily: one AnnotatedData of ROIs x all frames.

        ``X`` is each trial's X (or ``layer``) concatenated along frames in trial order;
        ``var`` is the trials' var tables with a ``trial`` column (index
        ``"<trial>:<frame>"``; ``trial_id`` instead, with a warning, when a trial's var
        has its own ``trial``); ``obs`` and the masks are the ROIs' (every trial must have
        the same ROIs); ``uns["fs"]`` when every trial has the same. Ingested trials'
        ``var["time"]`` is session time, so it increases across the concatenation.
        ``trials``: the IDs to join, in that order (one ID as a str; each once; default
        all). Reads metadata, obs, var and uns only.

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> for tid in ["t-005", "t-006"]:
        ...     _ = exp.add_trial(tid, zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> allf = exp.concat()
        >>> allf, allf.var["trial"].unique().tolist()
        (Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 4 × 20, ['t-005', 't-006'])
        """
        picked = trial_ids(trials, where="concat")
        _check_layer_arg(layer, where="concat")
        ids = picked if picked is not None else self.trialIDs
        if not ids:
            raise InvalidArgumentError(
                f"concat: experiment {self.expID!r} has no trials to concatenate"
                if picked is None
                else "concat: trials=[] names no trial; pass trials=['t-005', ...] or None (all)"
            )
        loaded = [self.load_trial(tid) for tid in ids]
        first = loaded[0].data
        differ = [t.trialID for t in loaded[1:] if not t.data.obs_names.equals(first.obs_names)]
        if differ:
            raise IncompatibleDataError(
                f"trials {differ} have different ROIs from trial {ids[0]!r}; concatenate "
                f"trials of the same ROI set (pass trials=[...])"
            )
        blocks = [_matrix(trial, layer) for trial in loaded]
        column = _trial_column(loaded)
        var = pd.concat(
            [t.data.var.assign(**{column: t.trialID}) for t in loaded], axis=0, join="outer"
        )
        var.index = pd.Index([f"{t.trialID}:{name}" for t in loaded for name in t.data.var_names])
        var[column] = pd.Categorical(var[column], categories=ids)
        uns: dict[str, Any] = {"trials": ids, "layer": layer or "X"}
        if column != "trial":
            uns["trial_column"] = column
        rates = [t.data.uns.get("fs") for t in loaded]
        if all(isinstance(r, int | float) for r in rates) and len(set(rates)) == 1:
            uns["fs"] = rates[0]  # one frame rate for all: the concatenation has it too
        data = AnnotatedData(da.concatenate(blocks, axis=1), obs=first.obs.copy(), var=var, uns=uns)
        for key, value in first.obsm.items():
            _compat.set_aligned(data, "obsm", key, value)  # aligned: the same ROIs
        return data

    def to_xarray(
        self,
        layers: Sequence[str] | None = None,
        *,
        trials: Sequence[str] | None = None,
        where: str | None = None,
        rois: Any = None,
    ) -> Any:
        """The trials (all, those named, or those ``where`` selects on :meth:`table`)
        side by side along ``time`` as one lazy ``xarray.Dataset``, with ``trial`` a
        coordinate on ``time`` (see :meth:`Trial.to_xarray`; ``rois``: stored ROI IDs
        to keep). Reads metadata only.

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> for tid in ["t-005", "t-006"]:
        ...     _ = exp.add_trial(tid, zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> ds = exp.to_xarray()
        >>> dict(ds.sizes), sorted(set(ds.trial.values.tolist()))
        ({'roi': 4, 'time': 20}, ['t-005', 't-006'])
        """
        from .views import trials_dataset

        return trials_dataset(self, self._selected(trials, where), layers, rois=rois)

    def to_pynapple(
        self,
        layer: str | None = "dFF",
        *,
        trials: Sequence[str] | None = None,
        where: str | None = None,
        rois: Any = None,
    ) -> Any:
        """The trials (all, named, or selected with ``where``) as one lazy
        ``pynapple.TsdFrame``: session time in seconds, a column per ROI (its stored ID;
        ``rois``: the stored IDs to keep, default all),
        obs columns as metadata, the trials as its ``time_support`` (an IntervalSet with
        a ``trial`` column). Needs ``pip install 'zstore[pynapple]'``; the trials' times
        must increase from one trial to the next (ingested trials' session time does).

        Examples
        --------
        >>> import icechunk, numpy as np, pandas as pd, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> for k, tid in enumerate(["t-005", "t-006"]):
        ...     var = pd.DataFrame({"time": k + np.arange(10) / 10}, index=list("abcdefghij"))
        ...     _ = exp.add_trial(tid, zs.AnnotatedData(np.ones((4, 10), "float32"), var=var))
        >>> tsd = exp.to_pynapple(layer=None)
        >>> tsd.shape, len(tsd.time_support)
        ((20, 4), 2)
        """
        from .views import trials_tsdframe

        ids = self._selected(trials, where)
        return trials_tsdframe([self.load_trial(tid) for tid in ids], layer, rois=rois)

    def _selected(self, trials: Sequence[str] | None, where: str | None) -> list[str]:
        """The trials named, those ``where`` selects on :meth:`table`, or all."""
        picked = trial_ids(trials)
        where = optional_text(where, name="where")
        if picked is not None and where is not None:
            raise ArgumentTypeError("pass trials= or where=, not both")
        if picked is not None:
            return picked
        return self.table(where)["trial"].tolist() if where is not None else self.trialIDs

    def _require_writable(self, action: str) -> None:
        if self.mode == "r":
            raise ReadOnlyError(
                f"cannot {action}: experiment {self.expID!r} was opened read-only; open it "
                f"with zs.open_experiment(store, mode='r+') to write"
            )


class Trial:
    """One trial of an experiment: ``trial.data`` is a lazy AnnotatedData over the store.

    The trial is pinned to the version it was loaded from (``trial.version``).
    """

    def __init__(
        self, experiment: Experiment, trial_id: str, data: AnnotatedData, state: StoredState
    ):
        self.experiment = experiment
        self.trialID = trial_id
        self.data = data
        self._state = state

    @property
    def version(self) -> str:
        """The version (snapshot ID) this trial was loaded from or last saved as."""
        return str(self._state.version)

    def __repr__(self) -> str:
        layers = list(self.data.layers)
        return (
            f"Trial {self.trialID!r} of experiment {self.experiment.expID!r}: "
            f"{self.data.n_obs} ROIs × {self.data.n_vars} frames, layers {layers}"
        )

    def _repr_html_(self) -> str:
        from .display import html_trial

        return html_trial(self)

    def to_xarray(self, layers: Sequence[str] | None = None, *, rois: Any = None) -> Any:
        """The trial as a lazy ``xarray.Dataset``: X and each layer (or those named) with
        dims ``("roi", "time")``; coordinates ``roi`` (the stored ROI IDs), ``time``
        (session time in seconds, var ``time``), ``frame`` (var's index), every obs
        column on ``roi`` and every var column (paq channels) on ``time`` (a name taken
        already gets an ``obs_``/``var_`` prefix); attrs: experiment, trial, fs and
        uns' processing records (as JSON). Selections read only their chunks.
        ``rois`` keeps only those stored ROI IDs (``[5, 12]`` or ``['5', '12']``; an ID
        that is not stored is a ``RoiNotFoundError`` naming the nearest stored IDs).

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> trial = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> ds = trial.to_xarray()
        >>> ds.X.dims, ds.sizes["time"]
        (('roi', 'time'), 10)
        """
        from .views import trial_dataset

        return trial_dataset(self, layers, rois=rois)

    def to_pynapple(self, layer: str | None = "dFF", *, rois: Any = None) -> Any:
        """The trial as a lazy ``pynapple.TsdFrame`` (see :meth:`Experiment.to_pynapple`):
        time in seconds, a column per ROI named by its stored ID (``rois``: the stored
        IDs to keep, default all), obs columns as metadata, the trial as its
        ``time_support``. Needs ``zstore[pynapple]``.

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> trial = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), "float32")))
        >>> trial.data.uns["fs"] = 10.0  # no var 'time': frame / fs
        >>> trial.to_pynapple(layer=None).columns.tolist()
        ['0', '1', '2', '3']
        """
        from .views import trials_tsdframe

        return trials_tsdframe([self], layer, rois=rois)

    def storage(self, *, stored: bool = True) -> list[dict[str, Any]]:
        """How X and each layer are stored: shape, dtype, shards, chunks, codecs, size.

        Reads the manifests for the stored sizes (``stored=False``: metadata only).
        """
        boolean(stored, name="stored", where="storage")
        exp = self.experiment
        session = exp._repo.session(self.version)
        group = zarr.open_group(session.store, path=exp._path(f"{TRIALS}/{self.trialID}"), mode="r")
        return describe_arrays(group, stored=stored)

    def save(self, *, progress: ProgressOption = None) -> list[str]:
        """Stream what changed since loading into the store; return what was written.

        New layers are computed and written one task per shard; added or removed obs
        and var columns, uns and obsm entries are rewritten. One transaction: readers
        see the previous version until it commits, and a failed or killed save changes
        nothing. Saved layers then read lazily from the store instead of their graph.
        ``progress``: as :meth:`Experiment.add_trial` (a callable gets ``(trial_id,
        shards_done, shards_total)``).

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
        >>> F = np.arange(1, 41, dtype="float32").reshape(4, 10)
        >>> trial = exp.add_trial("t-005", zs.AnnotatedData(F))
        >>> trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
        >>> trial.save()
        ['layers/dFF', 'uns']
        >>> trial.data.uns["processing"]["dFF"]["source"]
        'X'
        """
        exp = self.experiment
        progress_option(progress, where="save")
        if exp.mode == "r":
            raise ReadOnlyError(
                f"trial {self.trialID!r} was opened read-only; open the experiment with "
                f"zs.open_experiment(store, mode='r+') to save it"
            )
        check_processing(self.data.uns, f"trial {self.trialID!r} uns")
        update_processing(self.data, self._state)
        prepare(self.data, f"trial {self.trialID!r}")
        changes = diff(self._state, self.data)
        if not changes:
            return []
        paths = changes.paths()
        message = f"save trial {self.trialID!r}: {_describe(paths, self.data.uns)}"
        with (
            reporting(progress, desc=f"save trial {self.trialID}", label=self.trialID) as report,
            exp._transaction(message) as txn,
        ):
            trials = txn.group(TRIALS)
            if self.trialID not in trials:
                raise TrialChangedError(
                    f"trial {self.trialID!r} was removed by someone else since it was loaded "
                    f"(version {self.version}); nothing was saved"
                )
            apply_changes(
                cast(zarr.Group, trials[self.trialID]),
                self.trialID,
                self.data,
                self._state,
                changes,
                write_arrays=_arrays_writer(txn),
                progress=report,
                images=_image_writer(txn, prune="uns" in changes.written),
            )
            txn.note(*(f"{TRIALS}/{self.trialID}/{p}" for p in paths))
        exp._advance(txn)
        self._repoint()
        return paths

    def _repoint(self) -> None:
        """Read the saved trial back lazily, keeping ``self.data`` the same object.

        X, every layer and every lazily read mask are replaced by arrays over the new
        version (values equal to what was saved), so the next save compares against
        them; obs, var, uns and in-memory entries stay the user's objects.
        """
        with warnings.catch_warnings():  # a damaged image: the user was told at load
            warnings.filterwarnings("ignore", ".*the summary image", ZstoreWarning)
            fresh = self.experiment.load_trial(self.trialID)
        data = self.data
        data.X = fresh.data.X
        for name in list(data.layers):
            data.layers[name] = fresh.data.layers[name]
        for attr in ALIGNED:
            for key, value in getattr(fresh.data, attr).items():
                if getattr(value, "origin", None) is not None:
                    _compat.set_aligned(data, attr, key, value)
        self._state = fresh._state


def _trial_column(loaded: Sequence[Trial]) -> str:
    """The var column in which :meth:`Experiment.concat` labels each frame's trial:
    ``trial``, or, when a trial's var already has a ``trial`` column (a paq channel
    stored by an older zstore), the first free one of ``trial_id``, ``trial_id_2``, ...
    (with a warning naming both), so that column's data is kept."""
    taken = {str(c) for t in loaded for c in t.data.var.columns}
    if "trial" not in taken:
        return "trial"
    column, k = "trial_id", 2
    while column in taken:
        column, k = f"trial_id_{k}", k + 1
    holders = [t.trialID for t in loaded if "trial" in t.data.var.columns]
    emit_user_warning(
        f"concat: trial{'s' if len(holders) > 1 else ''} {holders} already have a var column "
        f"'trial' (kept as it is); each frame's trial is labelled in var[{column!r}] instead "
        f"(uns['trial_column'] names it)"
    )
    return column


def _check_layer_arg(layer: Any, *, where: str) -> None:
    """``layer=``: a layer name, or None for X."""
    if layer is not None and not isinstance(layer, str):
        raise ArgumentTypeError(
            f"{where}: layer must be a layer name (a str) or None for X, got {shown(layer)}; "
            f"pass layer='dFF'"
        )


def _matrix(trial: Trial, layer: str | None) -> Any:
    try:
        return trial.data.matrix(layer)
    except KeyNotFoundError as err:
        raise KeyNotFoundError(f"trial {trial.trialID!r}: {err}") from None


def _describe(paths: list[str], uns: Mapping[str, Any]) -> str:
    records = uns.get("processing", {}) if isinstance(uns, Mapping) else {}
    parts = []
    for path in paths:
        name = path.split("/", 1)[1] if path.startswith("layers/") else None
        info = records.get(name) if name and isinstance(records, Mapping) else None
        if isinstance(info, Mapping) and "function" in info:
            params = " ".join(
                f"{k}={v}"
                for k, v in info.items()
                if k not in ("function", "source", "neuropil", "zstore_version", "roi_names")
            )
            parts.append(f"{path} by {info['function']} {params}".rstrip())
        else:
            parts.append(path)
    return ", ".join(parts)


def _image_writer(txn: Transaction, *, prune: bool = False) -> Callable[[str, Any], str]:
    """Stores summary images once in the experiment (``images/<hash>``) for ``txn``.

    Just before the commit the images are settled against the newest version
    (zstore.images.settle_images): an image another writer committed meanwhile is not
    written twice (no conflict), and with ``prune`` (the transaction removed or replaced
    trials, or rewrote a uns) images no trial refers to any more are deleted.
    """
    hook = next(
        (h for h in txn.before_commit if isinstance(h, _SettleImages) and h.prefix == txn.prefix),
        None,
    )
    if hook is None:
        hook = _SettleImages(txn)
        txn.before_commit.append(hook)
    hook.prune |= prune
    return hook.put


class _SettleImages:
    """The image writes of one transaction, settled against the tip before its commit."""

    def __init__(self, txn: Transaction):
        self.txn = txn
        self.prefix = txn.prefix  # a collection's transaction may write several experiments
        self.writer = ImageWriter(txn.root)
        self.prune = False
        self.deleted: list[str] = []  # image paths from the experiment's root
        txn.after_commit.append(self.repair)

    def put(self, key: str, image: Any) -> str:
        before = len(self.writer.written)
        path = self.writer.put(key, image)
        if len(self.writer.written) > before:
            self.txn.note(path)
        return path

    def __call__(self, tip: Any, base: Any) -> None:
        txn = self.txn
        # the session itself (a distributed write's fork is merged into it by now)
        ours = zarr.open_group(txn.session.store, path=self.prefix, mode="r+", zarr_format=3)
        tip_root = _group_or_none(tip, self.prefix)
        base_root = tip_root if base is tip else _group_or_none(base, self.prefix)
        inside = f"{self.prefix}/{TRIALS}/" if self.prefix else f"{TRIALS}/"
        touched = {
            c.removeprefix(inside).split("/")[0] for c in txn.changes if c.startswith(inside)
        }
        deleted = settle_images(
            ours, tip_root, base_root, writer=self.writer, touched=touched, prune=self.prune
        )
        self.deleted = deleted
        for path in deleted:  # from the repository's root, as note() records them
            full = "/".join(p for p in (self.prefix, path) if p)
            if full not in txn.changes:
                txn.changes.append(full)

    def repair(self, repo: Repo, guard: Guard | None) -> None:
        """Object stores, after the commit: write back the images this write held or
        deleted that a trial at the newest version refers to and that are missing (a
        writer that removed their last trial and this one settled before either
        committed; see zstore.images, "the window"). Retries on conflicts."""
        candidates = set(self.writer.held) | set(self.deleted)
        if not candidates:
            return
        before: zarr.Group | None = None
        for attempt in range(_REPAIR_ATTEMPTS):
            tip = repo.session()
            root = _experiment_root(repo, tip, self.prefix)
            if root is None:
                return  # the experiment was removed meanwhile: no trial refers to anything
            missing = dangling(root, candidates)
            if not missing:
                if attempt:  # the write's caller moves to a version with its images
                    self.txn.snapshot = str(tip.snapshot_id)
                return
            if before is None:  # the version this write began from still has them
                before = _experiment_root(repo, repo.session(self.txn.base), self.prefix)
            source = restore_source(self.writer.held, before)
            lost = []
            try:
                with repo.transaction(
                    f"write back summary images {sorted(missing)} deleted by another writer "
                    f"meanwhile",
                    prefix=self.prefix,
                    guard=guard,
                ) as fix:
                    if IMAGES not in fix.root:
                        fix.root.create_group(IMAGES)
                    group = cast(zarr.Group, fix.root[IMAGES])
                    for path in sorted(missing):
                        found = source(path)
                        name = path.removeprefix(f"{IMAGES}/")
                        if found is None:
                            lost.append(path)
                        elif name not in group:
                            create_image(group, name, *found)
                            fix.note(path)
            except ConflictError:
                continue  # another writer committed meanwhile: look at the tip again
            if lost:
                if fix.snapshot is not None:
                    self.txn.snapshot = fix.snapshot
                emit_user_warning(
                    f"{repo.place.label}: trials refer to the summary images {lost}, which "
                    f"another writer deleted while this write committed, and zstore holds "
                    f"no copy to write back; `zstore verify` lists the trials: add them "
                    f"again from their Suite2p folder"
                )
                return
        raise ConflictError(
            f"{repo.place.label}: the summary images {sorted(candidates)} could not be "
            f"checked after the commit: other writers kept committing; the write itself "
            f"was saved: run `zstore verify` to check the store"
        )


#: How often a write retries writing back images another writer deleted (object stores).
_REPAIR_ATTEMPTS = 8


def _group_or_none(session: Any, prefix: str) -> zarr.Group | None:
    try:
        return zarr.open_group(session.store, path=prefix, mode="r", zarr_format=3)
    except GroupNotFoundError:
        return None


def _experiment_root(repo: Repo, session: Any, prefix: str) -> zarr.Group | None:
    """The experiment's root group in the version of ``session``, or None."""
    root = repo.root(session)
    node = root.get(prefix) if root is not None and prefix else root
    return node if isinstance(node, zarr.Group) else None


def _arrays_writer(txn: Transaction) -> Callable[..., None]:
    def write(sources: Sequence[Any], targets: Sequence[zarr.Array], progress: Any) -> None:
        txn.write_arrays(sources, targets, progress=progress)

    return write


def _write_trials(
    txn: Transaction,
    trials: Mapping[str, tuple[ad.AnnData, Mapping[str, Any] | None]],
    config: StorageConfig,
    overwrite: bool,
    exp_id: str,
    progress: Callable[[str, int, int], None] | Progress | None,
    *,
    per_trial_progress: bool = False,
) -> None:
    """Write whole trials into ``txn`` (replacing existing ones only with ``overwrite``)."""
    group = txn.group(TRIALS)
    images = _image_writer(txn)
    for trial_id, (adata, provenance) in trials.items():
        if _compat.has_node(txn.store, txn.path(f"{TRIALS}/{trial_id}")):
            if not overwrite:
                raise TrialExistsError(
                    f"trial {shown_name(trial_id)} already exists in experiment {exp_id!r}; choose "
                    f"another trial ID, or pass overwrite=True to replace it (the old trial "
                    f"stays readable in earlier versions until `zstore gc`)"
                )
            txn.delete(f"{TRIALS}/{trial_id}")
            _image_writer(txn, prune=True)  # the old trial's images, unless others use them
        report: Any = progress
        if per_trial_progress and progress is not None:
            report = lambda done, total, tid=trial_id: progress(tid, done, total)  # type: ignore[call-arg]  # noqa: E731
        write_trial(
            group.create_group(trial_id),
            trial_id,
            adata,
            config=config,
            provenance=provenance,
            write_arrays=_arrays_writer(txn),
            progress=report,
            images=images,
        )
        txn.note(f"{TRIALS}/{trial_id}")


def _experiment_attrs(root: zarr.Group, where: str) -> dict[str, Any]:
    meta: Any = root.attrs.get("zstore")
    if isinstance(meta, dict) and meta.get("encoding-type") == COLLECTION_ENCODING:
        raise NotAnExperimentError(
            f"{where} is a collection of experiments, not one experiment; open it with "
            f"zs.open_collection({where!r}) and pick one with .open_experiment(ID) (its IDs "
            f"are in .experimentIDs)"
        )
    if not isinstance(meta, dict) or meta.get("encoding-type") != EXPERIMENT_ENCODING:
        raise NotAnExperimentError(
            f"{where} is an Icechunk repository but not a zstore experiment (its root "
            f"attributes have no 'zstore' entry with encoding-type {EXPERIMENT_ENCODING!r}); "
            f"create one at a new path with zs.create_experiment(...)"
        )
    _check_version(meta, where)
    check_experiment_root(root, meta, where)
    return dict(meta)


def _check_version(meta: Mapping[str, Any], where: str) -> None:
    found = meta.get("encoding-version", "0.0.0")
    major_minor = parse_format_version(found, where)
    ours = tuple(int(p) for p in ENCODING_VERSION.split(".")[:2])
    if major_minor > ours:
        raise FormatVersionError(
            f"{where} was written with zstore format {found}, newer than this zstore "
            f"reads ({ENCODING_VERSION}); upgrade zstore (pip install -U zstore)"
        )


def compute_dff(
    exp: Any,
    *,
    layer: str = "dFF",
    trials: Sequence[str] | None = None,
    where: str | None = None,
    source: str | None = None,
    overwrite: bool = False,
    progress: ProgressOption | Callable[[str, int, int], None] = None,
    **dff_params: Any,
) -> list[str]:
    """Compute and save dF/F for every trial (or those named), one trial after another.

    ``exp`` is an :class:`Experiment` or a :class:`~zstore.Collection` (opened with
    ``mode="r+"``). ``where`` selects trials with a pandas query on ``table()`` (e.g.
    ``"subject == 'RL109' and plane == 0"``); ``trials`` names them (an experiment
    only; one ID as a str, or a list of distinct IDs). Every argument, and every
    selected trial (its source layer, its length and frame rate against the dF/F
    parameters), is checked before the first is written. For a collection the result
    names trials as ``"<experiment>/<trial>"``.

    ``dff_params`` are :func:`zstore.normalize_dff`'s (``normalize_pct``, ``baseline``,
    ``fs``, ``sig_baseline``, ``win_baseline``); with ``baseline="maximin"``, ``fs``
    defaults to each trial's ``uns["fs"]``. ``source`` names the layer to start from
    (default X). Streams: each trial's matrix is read, normalised and written one shard
    per task, so memory stays at a few shards whatever the experiment's size. Each trial
    is loaded just before it is computed and saved in its own transaction. Returns the
    trials written.

    ``progress``: ``True`` shows a bar over the shards of every selected trial,
    ``False`` nothing, ``None`` (default) a bar in interactive sessions (Jupyter,
    IPython, the Python prompt) only; a callable is called with ``(trial_id,
    shards_done, shards_total)`` (``"<experiment>/<trial>"`` for a collection).

    Examples
    --------
    >>> import icechunk, numpy as np, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
    >>> F = np.arange(1, 41, dtype="float32").reshape(4, 10)
    >>> _ = exp.add_trial("t-005", zs.AnnotatedData(F))
    >>> zs.compute_dff(exp, layer="dFF", normalize_pct=20)
    ['t-005']
    >>> exp.load_trial("t-005").data.uns["processing"]["dFF"]["normalize_pct"]
    20.0
    """
    from .processing import normalize_dff

    here = "compute_dff"
    picked = trial_ids(trials, where=here)
    where = optional_text(where, name="where", where=here)
    params = _checked_dff_params(layer, source, overwrite, progress, dff_params)
    if hasattr(exp, "experimentIDs"):  # a Collection (it imports this module)
        if picked is not None:
            raise ArgumentTypeError(
                "compute_dff on a collection selects trials with where= (a query on "
                "col.table()), not trials=; pass where=\"experiment == 'X' and trial == 't-1'\""
            )
        return _compute_dff_collection(exp, layer, where, source, overwrite, progress, dff_params)
    if not isinstance(exp, Experiment):
        raise ArgumentTypeError(
            f"compute_dff needs an Experiment or a Collection opened with mode='r+', got "
            f"{shown(exp)}; pass zs.open_experiment(store, mode='r+')"
        )
    if where is not None:
        if picked is not None:
            raise ArgumentTypeError("compute_dff: pass trials= or where=, not both")
        picked = exp.table(where)["trial"].tolist()
        if not picked:
            raise InvalidArgumentError(
                f"no trial of experiment {exp.expID!r} matches where={where!r}; its table "
                f"has columns {list(exp.table().columns)}"
            )
    exp._require_writable(f"save layer {layer!r}")
    ids = picked if picked is not None else exp.trialIDs
    ids = [stored_name(t, exp.trialIDs, kind="trial ID") for t in ids]
    unknown = [t for t in ids if t not in exp.trialIDs]
    if unknown:
        raise TrialNotFoundError(
            f"trials {unknown} are not in experiment {exp.expID!r}; its trials are {exp.trialIDs}"
        )
    have = [tid for tid in exp.trialIDs if equivalent_name(layer, exp.layer_names(tid))]
    existing = [tid for tid in ids if tid in have]
    if existing and not overwrite:
        lacking = [tid for tid in ids if tid not in have]
        if lacking:  # a run that stopped part-way: how to finish it
            raise _unfinished_layer(exp, layer, existing, lacking)
        raise LayerExistsError(
            f"trials {existing} already have a layer {shown_name(layer)}; pass overwrite=True "
            f"(--overwrite) to recompute it, or choose another layer name"
        )
    if have and not overwrite:  # adding to a layer other trials have: the same settings
        _check_same_settings(exp, layer, have, ids, params, source)
    if source is not None:
        lacking = [tid for tid in ids if not equivalent_name(source, exp.layer_names(tid))]
        if lacking:
            raise KeyNotFoundError(
                f"compute_dff: trials {lacking[:10]} of experiment {exp.expID!r} have no "
                f"layer {source!r} to compute dF/F from (nothing was written); pass "
                f"source=None for X, or trials=[...] with trials that have it"
            )
    for tid in ids:  # every trial read (metadata) before the first is written
        exp.load_trial(tid)
    planned = _plan_dff(exp, ids, params)  # every trial checked before the first is written
    with reporting(progress, desc=f"compute_dff {layer}", parts=len(ids)) as bar:
        for tid in ids:
            trial = exp.load_trial(tid)
            dff = normalize_dff(
                _matrix(trial, source), roi_names=trial.data.obs_names, **planned[tid]
            )
            trial.data.add_layer(layer, dff)
            trial.save(progress=bar if bar is not None else False)
    return ids


def _stored_dff_settings(exp: Experiment, layer: str, tids: Sequence[str]) -> dict[str, Any]:
    """Each trial's recorded dF/F settings of ``layer`` (None: no normalize_dff record)."""
    from .processing.dff import recorded_settings

    out: dict[str, Any] = {}
    for tid in tids:
        records = exp.load_trial(tid).data.uns.get("processing")
        records = records if isinstance(records, Mapping) else {}
        key = equivalent_name(layer, [str(k) for k in records])
        out[tid] = recorded_settings(records.get(key)) if key is not None else None
    return out


def _settings_groups(settings: Mapping[str, Any]) -> str:
    """``normalize_pct=50 and baseline='percentile'``, or, when the trials differ, each
    setting with its trials."""
    from .processing.dff import settings_text

    groups: dict[str, list[str]] = {}
    for tid, found in settings.items():
        text = settings_text(found) if found is not None else "settings zstore has no record of"
        groups.setdefault(text or "normalize_dff's defaults", []).append(tid)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{text} (trials {tids})" for text, tids in groups.items())


def _unfinished_layer(
    exp: Experiment, layer: str, have: Sequence[str], lacking: Sequence[str]
) -> LayerExistsError:
    """The error for a layer some chosen trials have and others lack (a run that stopped
    part-way), with the stored settings to finish it with."""
    stored = _stored_dff_settings(exp, layer, have)
    found = [s for s in stored.values() if s is not None]
    made = _settings_groups(stored)
    same = (
        f" and {made}"
        if found and len(found) == len(stored) and all(s == found[0] for s in found)
        else ""
    )
    total = len(have) + len(lacking)
    return LayerExistsError(
        f"compute_dff: layer {shown_name(layer)} exists in {len(have)} of the {total} "
        f"trials, computed with {made} (an earlier run stopped part-way?); it is missing "
        f"from {', '.join(shown_name(t) for t in lacking[:10])}"
        f"{' ...' if len(lacking) > 10 else ''}: to finish "
        f"it, pass trials={list(lacking)}{same} (the stored settings); or overwrite=True "
        f"to recompute every trial"
    )


def _check_same_settings(
    exp: Experiment,
    layer: str,
    have: Sequence[str],
    ids: Sequence[str],
    params: Mapping[str, Any],
    source: str | None,
) -> None:
    """Refuse to add ``layer`` to trials ``ids`` with other dF/F settings than those it
    was computed with in the trials ``have`` (one layer, one setting)."""
    from .processing.dff import differing_settings, settings_text

    requested = {**params, "source": "X" if source is None else f"layers/{source}"}
    stored = _stored_dff_settings(exp, layer, have)
    differ = {
        tid: s for tid, s in stored.items() if s is not None and differing_settings(s, requested)
    }
    if not differ:
        return
    keys = sorted({k for s in differ.values() for k in differing_settings(s, requested)})
    wanted = settings_text(requested) or "normalize_dff's defaults"
    made = _settings_groups(differ)
    raise LayerExistsError(
        f"compute_dff: layer {shown_name(layer)} of trials {list(differ)[:10]} was computed "
        f"with {made}, and this call would add it to trials {list(ids)[:10]} with {wanted} "
        f"({', '.join(keys)} differ{'s' if len(keys) == 1 else ''}): one layer would hold "
        f"dF/F of two settings (nothing was written). To add these trials, pass the "
        f"stored settings: {made}; or overwrite=True without trials= to recompute every "
        f"trial with the new ones; or choose another layer name"
    )


def _checked_dff_params(
    layer: Any, source: Any, overwrite: Any, progress: Any, dff_params: Mapping[str, Any]
) -> dict[str, Any]:
    """compute_dff's arguments checked (before anything is read); its dF/F parameters
    as :func:`zstore.processing.dff.dff_params` gives them (``fs`` None: each trial's)."""
    from .processing.dff import dff_params as check_params

    here = "compute_dff"
    check_name(layer, kind="layer name")
    if source is not None:
        stored_name(source, kind="source layer name")
    boolean(overwrite, name="overwrite", where=here)
    progress_option(progress, where=here)
    unknown = sorted(set(dff_params) - _DFF_PARAMS)
    if unknown:
        raise ArgumentTypeError(
            f"compute_dff got {unknown}, which normalize_dff does not take; its "
            f"parameters are {sorted(_DFF_PARAMS)}"
        )
    return check_params(**dff_params, fs_later=True, where=here)


def _plan_dff(exp: Experiment, ids: Sequence[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """Each trial's normalize_dff parameters, checked against its length and frame rate
    (maximin without fs= takes the trial's ``uns["fs"]``), from metadata only."""
    from .processing.dff import dff_params as check_params

    if not ids:
        return {}
    table = exp.table().set_index("trial")
    planned = {}
    for tid in ids:
        found = table.at[tid, "n_frames"] if tid in table.index else None
        n_frames = None if found is None or pd.isna(found) else int(found)
        kwargs = dict(params)
        if params["baseline"] == "maximin" and params["fs"] is None:
            fs = table.at[tid, "fs"] if tid in table.index else None
            if fs is None or pd.isna(fs):
                fs = exp.load_trial(tid).data.uns.get("fs")
            if fs is None or isinstance(fs, bool) or not isinstance(fs, int | float):
                raise InvalidArgumentError(
                    f"compute_dff: baseline='maximin' needs the frame rate, and trial {tid!r} "
                    f"has uns['fs']={fs!r}; pass fs=<Hz> (or set trial.data.uns['fs'] and "
                    f"save the trial)"
                )
            kwargs["fs"] = fs
        planned[tid] = check_params(
            **kwargs, n_frames=n_frames, where=f"compute_dff: trial {tid!r}"
        )
    return planned


def _compute_dff_collection(
    col: Any,
    layer: str,
    where: str | None,
    source: str | None,
    overwrite: bool,
    progress: ProgressOption | Callable[[str, int, int], None],
    dff_params: Mapping[str, Any],
) -> list[str]:
    col._require_writable(f"save layer {layer!r}")
    check_name(layer, kind="layer name")
    rows = col.table(where)
    if rows.empty:
        raise InvalidArgumentError(
            f"no trial of the collection at {col.location} matches where={where!r}; its "
            f"table has columns {list(col.table().columns)}"
        )
    exps = {e: col.open_experiment(e, mode="r") for e in dict.fromkeys(rows["experiment"])}
    names = [exps[e].layer_names(t) for e, t in zip(rows["experiment"], rows["trial"], strict=True)]
    has = pd.Series([layer in n for n in names], index=rows.index)
    if has.any() and not overwrite:
        existing = [
            f"{e}/{t}" for e, t in zip(rows["experiment"][has], rows["trial"][has], strict=True)
        ]
        raise LayerExistsError(
            f"trials {existing[:10]}{' ...' if len(existing) > 10 else ''} already have a "
            f"layer {shown_name(layer)}; pass overwrite=True (--overwrite) to recompute it, or "
            f"choose another layer name"
        )
    if source is not None:
        lacking = [
            f"{e}/{t}"
            for e, t, n in zip(rows["experiment"], rows["trial"], names, strict=True)
            if source not in n
        ]
        if lacking:
            raise KeyNotFoundError(
                f"trials {lacking[:10]} have no layer {source!r} to compute dF/F from; "
                f"select trials that have it (where=\"layers.str.contains('{source}')\")"
            )
    params = _checked_dff_params(layer, source, overwrite, progress, dff_params)
    for exp_id, picked in rows.groupby("experiment", sort=False):  # before any write
        _plan_dff(exps[exp_id], picked["trial"].tolist(), params)
    done = []
    with reporting(progress, desc=f"compute_dff {layer}", parts=len(rows)) as bar:
        for exp_id, picked in rows.groupby("experiment", sort=False):
            exp = col.open_experiment(exp_id, mode="r+")
            report: Callable[[str, int, int], None] | bool = False
            if bar is not None:
                report = lambda tid, d, n, e=exp_id: bar(f"{e}/{tid}", d, n)  # noqa: E731
            written = compute_dff(
                exp,
                layer=layer,
                trials=picked["trial"].tolist(),
                source=source,
                overwrite=overwrite,
                progress=report,
                **dff_params,
            )
            done += [f"{exp_id}/{tid}" for tid in written]
    col.refresh()
    return done


_DFF_PARAMS = frozenset({"normalize_pct", "baseline", "fs", "sig_baseline", "win_baseline"})
