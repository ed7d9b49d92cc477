"""A collection: many experiments in one store, and a table of every trial.

An experiment is one plane of one session of one subject (its trials share ROIs); a lab
holds hundreds of them. A collection keeps them in one Icechunk repository, each under
``experiments/<id>`` exactly as a standalone experiment is laid out, with what was
recorded at ingest (subject, session, plane, date, any metadata) in the experiment's
attributes. Every trial's summary (shape, fs, session time, layers) is written into its
group's attributes by the same transaction that writes the trial, so :meth:`table`
reads metadata documents only: Icechunk keeps every group's attributes in the version's
snapshot, one object, so opening a collection and building its table costs the same few
requests for 2 experiments or 2000.

Appends are transactions like every write: an experiment appears whole or not at all,
and two processes appending different experiments both succeed (their commits touch
different nodes, so the second rebases over the first).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import pandas as pd

from .annotated import AnnotatedData
from .arrays import StorageConfig
from .documents import check_child_group, check_experiment_node
from .errors import (
    ArgumentTypeError,
    ConflictError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    InvalidArgumentError,
    NotAnExperimentError,
    ReadOnlyError,
    TrialChangedError,
)
from .experiment import MODES, Experiment, _check_version, _write_trials
from .images import IMAGES
from .names import check_name, equivalent_name, shown_name, stored_name
from .opening import (
    check_open_mode,
    experiment_attributes,
    open_repo,
    plain_metadata,
    prepare,
)
from .progress import ProgressOption, reporting
from .store import (
    COLLECTION_ENCODING,
    ENCODING_VERSION,
    EXPERIMENT_ENCODING,
    EXPERIMENTS,
    TRIALS,
    StoreLike,
    resolve,
    survey,
)
from .table import query_table, read_table
from .transaction import Commit, GarbageReport, Repo, Transaction
from .validate import boolean, choice, duration, optional_text

if TYPE_CHECKING:
    from .summary import IngestSummary

__all__ = [
    "Collection",
    "create_collection",
    "open_collection",
    "stored_kind",
]

#: Planned experiments for :meth:`Collection.append`: ID -> (metadata, {trial: (data, provenance)}).
Planned = Mapping[
    str, tuple[Mapping[str, Any], Mapping[str, tuple[ad.AnnData, Mapping[str, Any] | None]]]
]


class Collection:
    """Many experiments (sessions x planes x subjects) in one store, with a trial table.

    Create one with :func:`create_collection`, open one with :func:`open_collection`;
    :func:`zstore.ingest_suite2p` appends to it. Like an experiment, a collection object
    is pinned to one version of its store until :meth:`refresh`.
    """

    #: What :func:`zstore.ingest_suite2p` wrote, on the object it returns (else None).
    ingest_summary: IngestSummary | None = None

    def __init__(self, repo: Repo, *, mode: str, session: Any, pinned: bool = False):
        self._repo = repo
        self.mode = mode
        self._pinned = pinned
        self._use(session)

    def _use(self, session: Any) -> None:
        root = self._repo.root(session)
        where = self.location
        if root is None:
            self._repo.check_snapshot(str(session.snapshot_id))
        meta: Any = root.attrs.get("zstore") if root is not None else None
        if root is None or not isinstance(meta, dict):
            raise NotAnExperimentError(
                f"{where} is not a zstore collection (no 'zstore' entry in its root "
                f"attributes); create one with zs.create_collection(...)"
            )
        if meta.get("encoding-type") == EXPERIMENT_ENCODING:
            raise NotAnExperimentError(
                f"{where} is one experiment, not a collection; open it with "
                f"zs.open_experiment({where!r})"
            )
        if meta.get("encoding-type") != COLLECTION_ENCODING:
            raise NotAnExperimentError(
                f"{where} is not a zstore collection (encoding-type "
                f"{meta.get('encoding-type')!r}, expected {COLLECTION_ENCODING!r})"
            )
        _check_version(meta, where)
        check_child_group(root, EXPERIMENTS, where, "one group per experiment")
        self._session = session
        self._root = root
        self._meta = dict(meta)
        self._ids: list[str] | None = None
        self._table: pd.DataFrame | None = None

    # -- what it holds -------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The version (snapshot ID) this object reads."""
        return str(self._session.snapshot_id)

    @property
    def location(self) -> str:
        """Where the collection is stored (a path or URL)."""
        return self._repo.place.label

    @property
    def config(self) -> StorageConfig:
        """How new experiments' matrices are chunked and compressed."""
        return StorageConfig.from_json(self._meta.get("storage", {}), where=self.location)

    @property
    def experimentIDs(self) -> list[str]:
        """IDs of the experiments in this version, in the order they were added."""
        if self._ids is None:
            self._ids = list(dict.fromkeys(self.table(_all_experiments=True)["experiment"]))
        return list(self._ids)

    def __contains__(self, exp_id: object) -> bool:
        return isinstance(exp_id, str) and exp_id in self.experimentIDs

    def __len__(self) -> int:
        return len(self.experimentIDs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.experimentIDs)

    def __repr__(self) -> str:
        ids = self.experimentIDs
        shown = ids if len(ids) <= 6 else [*ids[:3], "...", *ids[-2:]]
        return (
            f"Collection at {self.location} (mode={self.mode!r}, version {self.version}): "
            f"{len(ids)} experiments {shown}"
        )

    def refresh(self) -> Collection:
        """Move to the newest version of the store (what other processes committed)."""
        if self._pinned:
            raise ReadOnlyError(
                f"the collection at {self.location} was opened at version {self.version}; "
                f"open it without version= to follow the newest one"
            )
        self._use(self._repo.session())
        return self

    def history(self) -> list[Commit]:
        """Every version of the collection, newest first: time, message and changes."""
        return self._repo.history()

    def collect_garbage(
        self,
        *,
        keep: datetime.timedelta,
        grace: datetime.timedelta = datetime.timedelta(hours=1),
        dry_run: bool = False,
    ) -> GarbageReport:
        """Expire versions older than ``keep`` and delete the data no kept version uses
        (every experiment of the collection; see :meth:`Experiment.collect_garbage`)."""
        self._require_writable("collect garbage")
        duration(keep, name="keep", where="collect_garbage")
        duration(grace, name="grace", where="collect_garbage")
        boolean(dry_run, name="dry_run", where="collect_garbage")
        return self._repo.collect_garbage(keep=keep, grace=grace, dry_run=dry_run)

    # -- the table -------------------------------------------------------------------------

    def table(self, where: str | None = None, *, _all_experiments: bool = False) -> pd.DataFrame:
        """One row per trial: experiment, subject, session, plane, trial, n_rois,
        n_frames, fs, start_s, duration_s, layers, then the metadata given at ingest.

        ``where`` is a pandas query on those columns (e.g. ``"subject == 'RL109' and
        plane == 0"``). Reads metadata only (no chunk), in one round of concurrent
        requests: the cost does not grow with the number of trials beyond reading one
        snapshot. An experiment without trials has no rows (it is in ``experimentIDs``).

        Examples
        --------
        >>> import icechunk, numpy as np, zstore as zs
        >>> col = zs.create_collection(icechunk.in_memory_storage())
        >>> exp = col.create_experiment("RL109_s1_plane0", metadata={"subject": "RL109"})
        >>> _ = exp.add_trial("t-000", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
        >>> col.refresh().table()[["experiment", "subject", "trial", "n_rois", "n_frames"]]
                experiment subject  trial  n_rois  n_frames
        0  RL109_s1_plane0   RL109  t-000       4        10
        """
        where = optional_text(where, name="where", where="table")
        if self._table is None:
            self._table = read_table(self._session.store, self.location)
        table = self._table
        if not _all_experiments:
            table = table[table["trial"].notna()].reset_index(drop=True)
        return query_table(table, where, self.location) if where else table.copy()

    def select(self, where: str | None = None) -> list[tuple[str, str]]:
        """``(experiment, trial)`` of every trial ``where`` selects (all: None)."""
        rows = self.table(where)
        return list(zip(rows["experiment"], rows["trial"], strict=True))

    # -- experiments -----------------------------------------------------------------------

    def open_experiment(self, exp_id: str, *, mode: str | None = None) -> Experiment:
        """One experiment of the collection, at this object's version; ``mode`` defaults
        to the collection's (``"r+"`` needs the collection opened with ``mode="r+"``)."""
        mode = self.mode if mode is None else choice(mode, MODES, name="mode")
        if mode == "r+" and self.mode == "r":
            raise ReadOnlyError(
                f"the collection at {self.location} was opened read-only; open it with "
                f"zs.open_collection(..., mode='r+') to write to its experiments"
            )
        exp_id = stored_name(exp_id, lambda: self.experimentIDs, kind="experiment ID")
        self._require(exp_id)
        return Experiment(
            self._repo,
            mode=mode,
            session=self._session,
            pinned=self._pinned,
            prefix=f"{EXPERIMENTS}/{exp_id}",
        )

    def experiments(self, where: str | None = None) -> Iterator[Experiment]:
        """Each experiment with a trial that ``where`` selects (all: None), opened."""
        ids = (
            self.experimentIDs if where is None else dict.fromkeys(self.table(where)["experiment"])
        )
        for exp_id in ids:
            yield self.open_experiment(exp_id)

    def create_experiment(
        self, exp_id: str, *, metadata: Mapping[str, Any] | None = None
    ) -> Experiment:
        """Add an empty experiment (trials are added with ``exp.add_trial``)."""
        check_name(exp_id, kind="experiment ID")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ArgumentTypeError(
                f"create_experiment({exp_id!r}): metadata must be a dict such as "
                f"{{'subject': 'RL109', 'plane': 0}} or None, got {type(metadata).__name__}"
            )
        self.append({exp_id: (metadata or {}, {})})
        return self.open_experiment(exp_id)

    def append(
        self,
        planned: Planned,
        *,
        overwrite: bool = False,
        progress: ProgressOption | Callable[[str, int, int], None] = None,
        message: str | None = None,
    ) -> list[str]:
        """Add experiments with their trials in one transaction: all or none.

        ``planned`` maps each new experiment ID to ``(metadata, {trial_id: (AnnData,
        provenance)})``. An ID already in the collection is an error unless
        ``overwrite`` (that experiment is replaced; the others are never touched).
        ``progress``: ``True`` shows a bar over the shards of every trial, ``False``
        nothing, ``None`` (default) a bar in interactive sessions only; a callable is
        called with ``("<experiment>/<trial>", done, total)``.
        """
        self._require_writable("add experiments")
        _check_planned(planned)
        self.refresh()
        stored = self.experimentIDs  # an ID equal up to Unicode form is that experiment
        planned = {equivalent_name(e, stored) or e: entry for e, entry in planned.items()}
        ids = list(planned)
        existing = [e for e in ids if e in self.experimentIDs]
        held = self.table(_all_experiments=True).drop_duplicates("experiment")
        held = held.set_index("experiment")
        if existing and not overwrite:
            raise ExperimentExistsError(
                f"experiment(s) {_described(existing, held)} are already in the collection at "
                f"{self.location}; choose other IDs (subject=/session=, or exp_id=), remove "
                f"them first with col.remove_experiment(ID), or pass overwrite=True to replace "
                f"them (the old data stays readable in earlier versions until `zstore gc`)"
            )
        for exp_id in existing:  # overwrite replaces the same experiment, never another
            new_meta = planned[exp_id][0]
            clash = [
                key
                for key in ("subject", "session", "plane")
                if new_meta.get(key) is not None
                and not pd.isna(held.at[exp_id, key])
                and str(held.at[exp_id, key]) != str(new_meta.get(key))
            ]
            if clash:
                raise ExperimentExistsError(
                    f"experiment {_described([exp_id], held)} is another recording than the "
                    f"one given ({', '.join(f'{k} {new_meta.get(k)!r}' for k in clash)}): "
                    f"overwrite=True replaces an experiment with a new version of itself "
                    f"only; give this one its own ID (exp_id=), or remove the other first"
                )
        config = self.config
        text = message or f"add experiments {ids}"
        n_trials = sum(len(trials) for _, trials in planned.values())
        try:
            with (
                reporting(progress, desc=f"append {len(ids)} experiments", parts=n_trials) as bar,
                self._repo.transaction(text) as txn,
            ):
                self._write_planned(txn, planned, overwrite, config, bar)
        except ConflictError as err:
            if isinstance(err, TrialChangedError) or "experiment(s)" not in str(err):
                raise ConflictError(
                    f"{self.location}: adding experiments {ids} was not saved: another "
                    f"writer added, replaced or removed experiment(s) with these IDs "
                    f"meanwhile; nothing was saved: col.refresh() and look at "
                    f"col.experimentIDs before retrying"
                ) from None
            raise
        self._advance(txn)
        return ids

    def _write_planned(
        self,
        txn: Transaction,
        planned: Planned,
        overwrite: bool,
        config: StorageConfig,
        progress: Callable[[str, int, int], None] | None,
    ) -> None:
        parent = txn.group(EXPERIMENTS)
        for exp_id, (metadata, trials) in planned.items():
            if exp_id in parent:
                if not overwrite:  # added by another writer since the check above
                    raise ExperimentExistsError(
                        f"experiment {exp_id!r} was added to {self.location} by another "
                        f"writer meanwhile; nothing was saved"
                    )
                txn.delete(f"{EXPERIMENTS}/{exp_id}")
            _add_experiment(txn, exp_id, dict(metadata), config, trials, progress)

    def remove_experiment(self, exp_id: str) -> None:
        """Remove an experiment and its trials from the next version (one transaction;
        earlier versions keep it until ``zstore gc``)."""
        self._require_writable(f"remove experiment {exp_id!r}")
        self.refresh()
        exp_id = stored_name(exp_id, lambda: self.experimentIDs, kind="experiment ID")
        self._require(exp_id)
        with self._repo.transaction(f"remove experiment {exp_id!r}") as txn:
            if exp_id not in txn.group(EXPERIMENTS):
                raise ExperimentNotFoundError(
                    f"experiment {exp_id!r} was removed by another writer meanwhile"
                )
            txn.delete(f"{EXPERIMENTS}/{exp_id}")
            txn.note(f"{EXPERIMENTS}/{exp_id}")
        self._advance(txn)

    def concat(
        self, layer: str | None = None, *, where: str | None = None
    ) -> dict[str, AnnotatedData]:
        """Each selected experiment's selected trials side by side, lazily:
        ``{experiment ID: AnnotatedData of its ROIs x the trials' frames}`` (see
        :meth:`Experiment.concat`; experiments have different ROIs, so they are not
        joined). Reads metadata only."""
        return {
            exp_id: self.open_experiment(exp_id, mode="r").concat(layer, trials=trial_ids)
            for exp_id, trial_ids in self._by_experiment(where).items()
        }

    def to_xarray(
        self, layers: Sequence[str] | None = None, *, where: str | None = None
    ) -> dict[str, Any]:
        """Each selected experiment's selected trials as one lazy ``xarray.Dataset``
        (see :meth:`Experiment.to_xarray`): ``{experiment ID: Dataset}``, since
        experiments have different ROIs. Reads metadata only.

        Examples
        --------
        >>> import icechunk, zstore as zs, zstore.synthetic as syn
        >>> col = syn.write_collection(icechunk.in_memory_storage(), n_trials=2)
        >>> views = col.to_xarray(where="subject == 'RL109' and plane == 0")
        >>> list(views), dict(views["RL109_2024-05-01_plane0"].sizes)
        (['RL109_2024-05-01_plane0', 'RL109_2024-05-02_plane0'], {'roi': 8, 'time': 100})
        """
        return {
            exp_id: self.open_experiment(exp_id, mode="r").to_xarray(layers, trials=trial_ids)
            for exp_id, trial_ids in self._by_experiment(where).items()
        }

    # -- helpers ---------------------------------------------------------------------------

    def _by_experiment(self, where: str | None) -> dict[str, list[str]]:
        """The trials ``where`` selects, grouped by experiment; none is an error."""
        chosen = self.select(where)
        if not chosen:
            raise InvalidArgumentError(
                f"no trial of the collection at {self.location} matches where={where!r}"
            )
        by_exp: dict[str, list[str]] = {}
        for exp_id, trial_id in chosen:
            by_exp.setdefault(exp_id, []).append(trial_id)
        return by_exp

    def _require(self, exp_id: str) -> None:
        if exp_id not in self.experimentIDs:
            # there, but its metadata cannot be read (the table leaves it out): say so
            where = self.location
            check_experiment_node(self._session.store, f"{EXPERIMENTS}/{exp_id}", exp_id, where)
            ids = self.experimentIDs
            listed = [shown_name(i) for i in ids[:10]]
            more = [f"... ({len(ids)} in all)"] if len(ids) > 10 else []
            shown = "[" + ", ".join(listed + more) + "]"
            raise ExperimentNotFoundError(
                f"experiment {shown_name(exp_id)} is not in the collection at "
                f"{self.location} (version {self.version}); its experiments are {shown}"
                + ("" if self._pinned else "; col.refresh() sees experiments added since")
            )

    def _require_writable(self, action: str) -> None:
        if self.mode == "r":
            raise ReadOnlyError(
                f"cannot {action}: the collection at {self.location} was opened read-only; "
                f"open it with zs.open_collection(path, mode='r+')"
            )

    def _advance(self, txn: Transaction) -> None:
        if txn.snapshot is not None:
            self._use(self._repo.session(txn.snapshot))


def _described(ids: list[str], held: pd.DataFrame) -> str:
    parts = []
    for exp_id in ids:
        info = ", ".join(
            f"{k} {held.at[exp_id, k]!r}"
            for k in ("subject", "session", "plane")
            if exp_id in held.index and not pd.isna(held.at[exp_id, k])
        )
        parts.append(f"{exp_id!r} ({info})" if info else repr(exp_id))
    return "[" + ", ".join(parts) + "]"


def _check_planned(planned: Planned) -> None:
    """Every ID, trial ID and trial checked before a transaction begins."""
    if not isinstance(planned, Mapping):
        raise ArgumentTypeError(
            f"append takes {{experiment ID: (metadata, trials)}}, got {planned!r}"
        )
    for exp_id, entry in planned.items():
        check_name(exp_id, kind="experiment ID")
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ArgumentTypeError(
                f"experiment {exp_id!r}: expected (metadata, {{trial ID: (AnnData, "
                f"provenance)}}), got {type(entry).__name__}"
            )
        metadata, trials = entry
        plain_metadata(metadata or {}, where=f"experiment {exp_id!r}")
        for trial_id, value in trials.items():
            check_name(trial_id, kind="trial ID")
            adata = value[0] if isinstance(value, tuple) and len(value) == 2 else value
            if not isinstance(value, tuple) or not isinstance(adata, ad.AnnData):
                raise ArgumentTypeError(
                    f"experiment {exp_id!r} trial {trial_id!r}: expected (AnnotatedData, "
                    f"provenance or None), got {type(value).__name__}; wrap arrays with "
                    f"zs.AnnotatedData(X, obs, var)"
                )


def _add_experiment(
    txn: Transaction,
    exp_id: str,
    metadata: dict[str, Any],
    config: StorageConfig,
    trials: Mapping[str, tuple[ad.AnnData, Mapping[str, Any] | None]],
    progress: Callable[[str, int, int], None] | None,
) -> None:
    prefix = f"{EXPERIMENTS}/{exp_id}"
    group = txn.group(EXPERIMENTS).create_group(exp_id)
    group.attrs["zstore"] = experiment_attributes(exp_id, config, metadata)
    group.create_group(TRIALS)
    group.create_group(IMAGES)  # before any trial: concurrent writers never both create it
    txn.note(prefix)
    report = None
    if progress is not None:
        report = lambda tid, done, total: progress(f"{exp_id}/{tid}", done, total)  # noqa: E731
    with txn.within(prefix):
        _write_trials(txn, trials, config, False, exp_id, report, per_trial_progress=True)


# -- creating and opening ----------------------------------------------------------------------


def create_collection(
    store: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    config: StorageConfig | None = None,
) -> Collection:
    """Create an empty collection (an Icechunk repository) for many experiments.

    ``overwrite`` replaces a zstore collection that is there (a new version; the old
    stays readable until ``zstore gc``); anything else there is never replaced.
    ``config``: how the experiments' matrices are chunked and compressed.

    Examples
    --------
    >>> import icechunk, zstore as zs
    >>> col = zs.create_collection(icechunk.in_memory_storage())
    >>> col.experimentIDs, len(col.table())
    ([], 0)
    """
    boolean(overwrite, name="overwrite", where="create_collection")
    if config is not None and not isinstance(config, StorageConfig):
        raise ArgumentTypeError(
            f"create_collection: config must be a zs.StorageConfig or None, got "
            f"{type(config).__name__}; pass config=zs.StorageConfig(codec='zstd', clevel=5)"
        )
    config = config or StorageConfig()
    place = resolve(store, storage_options=storage_options)
    repo = prepare(place, overwrite=overwrite, kind=COLLECTION_ENCODING)
    meta: dict[str, Any] = {
        "encoding-type": COLLECTION_ENCODING,
        "encoding-version": ENCODING_VERSION,
        "storage": config.to_json(),
    }
    with repo.transaction("create collection") as txn:
        txn.root.attrs["zstore"] = meta
        if EXPERIMENTS in txn.root:
            del txn.root[EXPERIMENTS]
        txn.root.create_group(EXPERIMENTS)
        txn.note("/")
    assert txn.snapshot is not None
    return Collection(repo, mode="r+", session=repo.session(txn.snapshot))


def open_collection(
    store: StoreLike,
    *,
    mode: str = "r",
    storage_options: Mapping[str, Any] | None = None,
    version: str | datetime.datetime | None = None,
) -> Collection:
    """Open a collection, ``mode="r"`` to read or ``"r+"`` to add and write.

    Examples
    --------
    >>> import icechunk, zstore as zs
    >>> storage = icechunk.in_memory_storage()
    >>> _ = zs.create_collection(storage)
    >>> zs.open_collection(storage).experimentIDs
    []
    """
    check_open_mode(mode, version)
    place = resolve(store, storage_options=storage_options)
    repo = open_repo(place, writable=mode == "r+", what="collection")
    return Collection(repo, mode=mode, session=repo.session(version), pinned=version is not None)


def stored_kind(store: StoreLike, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """What zstore holds at ``store``: its encoding type (an experiment or a collection),
    ``"other"`` for anything else, None for nothing (never writes)."""
    place = resolve(store, storage_options=storage_options)
    contents = survey(place)
    if contents.kind == "nothing":
        return None
    if contents.kind != "icechunk":
        return "other"
    try:
        root = Repo.open(place, writable=False).root()
    except Exception:
        return "other"
    if root is None:
        return None  # created and never committed to: an interrupted creation
    meta = root.attrs.get("zstore")
    kind = meta.get("encoding-type") if isinstance(meta, dict) else None
    return str(kind) if kind in (EXPERIMENT_ENCODING, COLLECTION_ENCODING) else "other"
