"""Where an experiment begins: creating one (or replacing one), and opening one.

Creating surveys the location first and never deletes or takes over what zstore did
not write (:func:`zstore.store.survey`); replacing a zstore experiment with
``overwrite=True`` is one more version. Opening picks the version to read.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, cast

import anndata as ad
import zarr

from .arrays import StorageConfig
from .errors import (
    ExperimentExistsError,
    LegacyFormatError,
    NotAnExperimentError,
    UnsafeOverwriteError,
)
from .experiment import MODES, Experiment, _write_trials
from .names import check_name
from .store import (
    ENCODING_VERSION,
    EXPERIMENT_ENCODING,
    TRIALS,
    Place,
    StoreLike,
    resolve,
    survey,
)
from .transaction import Repo

__all__ = ["create_experiment", "create_with_trials", "open_experiment"]


def _open_repo(place: Place, *, writable: bool) -> Repo:
    try:
        return Repo.open(place, writable=writable)
    except Exception as err:
        contents = survey(place)
        if contents.kind == "nothing":
            raise FileNotFoundError(
                f"no zstore experiment at {place.label}: nothing is there; check the path, "
                f"or create one with zs.create_experiment(...) or `zstore ingest`"
            ) from None
        if contents.kind == "zstore-0.1":
            raise LegacyFormatError(
                f"{place.label} holds an experiment in zstore 0.1's format (plain Zarr); "
                f"convert it once with `zstore migrate {place.label} NEW` and open NEW"
            ) from None
        if contents.kind == "other":
            raise NotAnExperimentError(
                f"{place.label} is not a zstore experiment: it holds {list(contents.names)}; "
                f"a plain anndata Zarr store opens with anndata.read_zarr"
            ) from None
        raise err


def _prepare(place: Place, *, overwrite: bool, exp_id: str) -> Repo:
    """An Icechunk repository at ``place`` ready for a new experiment; never deletes."""
    contents = survey(place)
    if contents.kind == "nothing":
        return Repo.create(place)
    if contents.kind == "zstore-0.1":
        raise ExperimentExistsError(
            f"{place.label} already holds an experiment in zstore 0.1's format; choose a new "
            f"path (e.g. {_suggest(place.label)}), or convert it with `zstore migrate`; "
            f"zstore does not replace it"
        )
    if contents.kind == "other":
        raise UnsafeOverwriteError(
            f"{place.label} holds data that is not a zstore experiment "
            f"({', '.join(contents.names)}); zstore never deletes or replaces what it did "
            f"not write, with or without overwrite: choose a new path such as "
            f"{_suggest(place.label)}"
        )
    repo = Repo.open(place, writable=True)
    root = repo.root()
    if root is None or not (dict(root.attrs) or list(root.keys())):
        if repo.is_untouched():
            return repo  # created, never committed to: a creation that was interrupted
        raise UnsafeOverwriteError(
            f"{place.label} is an Icechunk repository with a history of its own (its current "
            f"version is empty); zstore does not take it over: choose a new path such as "
            f"{_suggest(place.label)}"
        )
    meta = root.attrs.get("zstore")
    if isinstance(meta, dict) and meta.get("encoding-type") == EXPERIMENT_ENCODING:
        existing = list(cast(zarr.Group, root[TRIALS]).group_keys()) if TRIALS in root else []
        if existing and not overwrite:
            raise ExperimentExistsError(
                f"{place.label} already holds experiment {meta.get('expID')!r} with "
                f"{len(existing)} trials; choose a new path (e.g. {_suggest(place.label)}), "
                f"open it with zs.open_experiment(...), or pass overwrite=True (--overwrite) "
                f"to replace it (its current version stays readable until `zstore gc`)"
            )
        return repo
    raise UnsafeOverwriteError(
        f"{place.label} is an Icechunk repository that holds data other than a zstore "
        f"experiment; zstore does not replace it: choose a new path such as "
        f"{_suggest(place.label)}"
    )


def _suggest(label: str) -> str:
    stem = label.rstrip("/")
    return f"{stem}.zarr" if not stem.endswith(".zarr") else f"{stem[:-5]}-2.zarr"


def create_experiment(
    store: StoreLike,
    *,
    exp_id: str,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    config: StorageConfig | None = None,
) -> Experiment:
    """Create an empty experiment store (an Icechunk repository).

    Parameters
    ----------
    store
        A local path, an ``s3://`` URL or an :class:`icechunk.Storage`.
    exp_id
        The experiment's ID (e.g. the animal and session, ``"RL109"``).
    overwrite
        Replace a zstore experiment that is there (as a new version: the old one stays
        readable until ``zstore gc``). A location holding anything else is never
        replaced.
    storage_options
        For ``s3://`` URLs: ``endpoint_url``, ``key``, ``secret``, ``region``, ``anon``...
    config
        Chunking and compression of X and layers (:class:`zstore.StorageConfig`),
        recorded in the store and used by every later write.

    Examples
    --------
    >>> import icechunk, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
    >>> exp.expID, exp.trialIDs
    ('RL109', [])
    """
    return create_with_trials(store, exp_id, overwrite, storage_options, config, trials={})


def create_with_trials(
    store: StoreLike,
    exp_id: str,
    overwrite: bool,
    storage_options: Mapping[str, Any] | None,
    config: StorageConfig | None,
    *,
    trials: Mapping[str, tuple[ad.AnnData, Mapping[str, Any] | None]],
    progress: Callable[[str, int, int], None] | None = None,
    message: str | None = None,
) -> Experiment:
    """Create (or replace) an experiment with ``trials`` in one transaction."""
    check_name(exp_id, kind="exp_id")
    config = config or StorageConfig()
    place = resolve(store, storage_options=storage_options)
    repo = _prepare(place, overwrite=overwrite, exp_id=exp_id)
    meta: dict[str, Any] = {
        "encoding-type": EXPERIMENT_ENCODING,
        "encoding-version": ENCODING_VERSION,
        "expID": exp_id,
        "storage": config.to_json(),
    }
    with repo.transaction(message or f"create experiment {exp_id!r}") as txn:
        txn.root.attrs["zstore"] = meta
        if TRIALS in txn.root:
            del txn.root[TRIALS]
        txn.root.create_group(TRIALS)
        txn.note("/")
        _write_trials(txn, trials, config, False, exp_id, progress, per_trial_progress=True)
    assert txn.snapshot is not None
    return Experiment(repo, mode="r+", session=repo.session(txn.snapshot))


def open_experiment(
    store: StoreLike,
    *,
    mode: str = "r",
    storage_options: Mapping[str, Any] | None = None,
    version: str | datetime.datetime | None = None,
) -> Experiment:
    """Open an existing experiment, ``mode="r"`` to read or ``"r+"`` to write.

    ``version``: a version ID from :meth:`Experiment.history` (or a datetime: the
    version current then) to read an earlier state, read-only.

    Examples
    --------
    >>> import icechunk, zstore as zs
    >>> storage = icechunk.in_memory_storage()
    >>> _ = zs.create_experiment(storage, exp_id="RL109")
    >>> zs.open_experiment(storage).expID
    'RL109'
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'r' (read) or 'r+' (read and write), got {mode!r}")
    if version is not None and mode != "r":
        raise ValueError(
            f"an earlier version opens read-only: pass mode='r' with version={version!r}"
        )
    place = resolve(store, storage_options=storage_options)
    repo = _open_repo(place, writable=mode == "r+")
    return Experiment(repo, mode=mode, session=repo.session(version), pinned=version is not None)
