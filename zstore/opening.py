"""Where an experiment begins: creating one (or replacing one), and opening one.

Creating surveys the location first and never deletes or takes over what zstore did
not write (:func:`zstore.store.survey`); replacing a zstore experiment with
``overwrite=True`` is one more version. Opening picks the version to read.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import anndata as ad
import numpy as np
import zarr

from . import _compat
from .arrays import StorageConfig
from .errors import (
    ArgumentTypeError,
    ExperimentExistsError,
    InvalidArgumentError,
    LegacyFormatError,
    NotAnExperimentError,
    PathNotFoundError,
    UnsafeOverwriteError,
)
from .experiment import MODES, Experiment, _write_trials
from .images import IMAGES
from .names import check_name
from .store import (
    COLLECTION_ENCODING,
    ENCODING_VERSION,
    EXPERIMENT_ENCODING,
    EXPERIMENTS,
    TRIALS,
    Place,
    StoreLike,
    check_reachable,
    resolve,
    survey,
)
from .transaction import Repo
from .validate import boolean, choice, shown

__all__ = [
    "check_open_mode",
    "create_experiment",
    "create_with_trials",
    "experiment_attributes",
    "open_experiment",
    "open_repo",
    "plain_metadata",
    "prepare",
]


def open_repo(place: Place, *, writable: bool, what: str = "experiment") -> Repo:
    """The repository at ``place``; a clear error when there is none (``what`` names
    what the caller expected there): what is there instead, and how to bring it in."""
    if place.local is not None and place.local.exists() and not place.local.is_dir():
        if place.local.suffix.lower() == ".h5ad":
            raise NotAnExperimentError(
                f"{place.label} is an AnnData .h5ad file, not a zstore {what} (a folder); "
                f"{_bring_in(f'anndata.read_h5ad({place.label!r})')}"
            )
        raise NotAnExperimentError(
            f"{place.label} is a file, not a zstore {what} (a folder); check the path"
        )
    if place.local is not None and not place.local.exists():
        # Checked before Icechunk opens it: opening a missing folder creates it.
        raise PathNotFoundError(_missing_text(place, what))
    check_reachable(place)  # before the try: an unreachable endpoint is said once
    try:
        return Repo.open(place, writable=writable)
    except Exception as err:
        contents = survey(place)
        if contents.kind == "nothing":
            raise PathNotFoundError(
                f"no zstore {what} at {place.label}: nothing is there; check the path, "
                f"or create one with zs.create_{what}(...) or `zstore ingest`"
            ) from None
        if contents.kind == "zstore-0.1":
            raise LegacyFormatError(
                f"{place.label} holds an experiment in zstore 0.1's format (plain Zarr); "
                f"convert it once with `zstore migrate {place.label} NEW` and open NEW"
            ) from None
        if contents.kind == "other":
            raise NotAnExperimentError(foreign_text(place, list(contents.names), what)) from None
        raise err


def _missing_text(place: Place, what: str) -> str:
    """The message for a local path where no folder is: the path, the nearest folder
    that exists above it, and how to make one."""
    assert place.local is not None
    parent = place.local.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():  # a path through a file: ".../afile/x.zarr"
        return (
            f"no zstore {what} at {place.label}: {parent} is a file, not a folder; check the path"
        )
    dangling = " (a symbolic link to nothing)" if place.local.is_symlink() else ""
    return (
        f"no zstore {what} at {place.label}: there is no such folder{dangling} (the "
        f"nearest existing folder above it is {parent}); check the path, or create one "
        f"with zs.create_{what}(...) or `zstore ingest`"
    )


def _file_above(place: Place) -> Path | None:
    """The file a local path goes through (``.../afile/x.zarr``: ``afile``), if any."""
    if place.local is None or place.local.exists() or place.local.is_symlink():
        return None
    parent = place.local.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return None if parent.is_dir() else parent


def foreign_text(place: Place, names: list[str], what: str) -> str:
    """What a location that is not an Icechunk repository holds (an AnnData saved as
    Zarr, a plain Zarr group or array, a damaged zstore 0.1 store, other files), and
    how to bring it into zstore."""
    label = place.label
    root = _root_document(place)
    found = f"it holds {names}"
    fix = "check the path; zstore experiments are made by zs.create_experiment or `zstore ingest`"
    if root is not None:
        fmt, attrs, problem = root
        if problem and fmt == 3 and place.local is not None and (place.local / "trials").is_dir():
            return (
                f"{label} looks like an experiment in zstore 0.1's format (plain Zarr with "
                f"trials/), but its root metadata document zarr.json {problem}; restore "
                f"{label}/zarr.json from a copy, then convert the store once with "
                f"`zstore migrate {label} NEW`"
            )
        key = "zarr.json" if fmt == 3 else ".zattrs"
        if problem:
            found = f"its metadata document {key} {problem}"
        elif attrs.get("encoding-type") == "anndata":
            found = f"it holds an AnnData saved as Zarr (format {fmt}, e.g. by AnnData.write_zarr)"
            fix = _bring_in(f"anndata.read_zarr({label!r})")
        elif attrs.get("node_type") == "array":
            found = f"it holds a Zarr array (format {fmt}), not a group"
            fix = f"read it with zarr.open_array({label!r}); {fix}"
        else:
            found = f"it holds a plain Zarr group (format {fmt}: {names})"
            fix = f"read it with zarr.open_group({label!r}); {fix}"
    return f"{label} is not a zstore {what}: {found}; {fix}"


def _bring_in(reader: str) -> str:
    return (
        f"read it with {reader}, or bring it into zstore as a trial: exp = "
        f"zs.create_experiment('NEW.zarr', exp_id='...'); exp.add_trial('t-001', {reader})"
    )


def _root_document(place: Place) -> tuple[int, dict[str, Any], str] | None:
    """(Zarr format, attributes, problem) of the root of a local plain Zarr store
    (attributes hold ``node_type`` too), or None when it has no Zarr metadata."""
    if place.local is None:
        return None
    names = {p.name for p in place.local.iterdir()}
    if "zarr.json" in names:
        raw = _read_file(place.local / "zarr.json")
        doc = _compat.parse_node_document("zarr.json", raw)
        attrs = {**doc.attributes, "node_type": doc.kind}
        return 3, attrs, doc.problem
    if ".zgroup" in names or ".zarray" in names:
        raw = _read_file(place.local / ".zattrs") or b"{}"
        try:
            attrs = json.loads(raw)
        except ValueError as err:
            return 2, {}, f"is not valid JSON ({err})"
        if not isinstance(attrs, dict):
            return 2, {}, "holds no JSON object"
        node_type = "array" if ".zarray" in names else "group"
        return 2, {**attrs, "node_type": node_type}, ""
    return None


def _read_file(path: Any) -> bytes | None:
    try:
        return bytes(path.read_bytes())
    except OSError:
        return None


def prepare(place: Place, *, overwrite: bool, kind: str = EXPERIMENT_ENCODING) -> Repo:
    """An Icechunk repository at ``place`` ready for a new experiment (or, with
    ``kind=COLLECTION_ENCODING``, a new collection); never deletes."""
    what = "experiment" if kind == EXPERIMENT_ENCODING else "collection"
    contents = survey(place)
    if contents.kind == "nothing":
        return Repo.create(place)
    if contents.kind == "zstore-0.1":
        raise ExperimentExistsError(
            f"{place.label} already holds an experiment in zstore 0.1's format; choose a new "
            f"path (e.g. {_suggest(place.label)}), or convert it with `zstore migrate`; "
            f"zstore does not replace it"
        )
    through = _file_above(place)
    if through is not None:  # ".../afile/x.zarr": no folder can be made there
        raise UnsafeOverwriteError(
            f"cannot create a zstore {what} at {place.label}: {through} is a file, not a "
            f"folder; choose a path in a folder"
        )
    if contents.kind == "other":
        raise UnsafeOverwriteError(
            f"{place.label} holds data that is not a zstore {what} "
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
    found = meta.get("encoding-type") if isinstance(meta, dict) else None
    if found == kind == EXPERIMENT_ENCODING:
        assert isinstance(meta, dict)
        existing = list(cast(zarr.Group, root[TRIALS]).group_keys()) if TRIALS in root else []
        if existing and not overwrite:
            raise ExperimentExistsError(
                f"{place.label} already holds experiment {meta.get('expID')!r} with "
                f"{len(existing)} trials; choose a new path (e.g. {_suggest(place.label)}), "
                f"open it with zs.open_experiment(...), or pass overwrite=True (--overwrite) "
                f"to replace it (its current version stays readable until `zstore gc`)"
            )
        return repo
    if found == kind == COLLECTION_ENCODING:
        node = root.get(EXPERIMENTS)
        existing = list(cast(zarr.Group, node).group_keys()) if isinstance(node, zarr.Group) else []
        if existing and not overwrite:
            raise ExperimentExistsError(
                f"{place.label} already holds a collection of {len(existing)} experiments; "
                f"add to it with zs.ingest_suite2p(..., zs.open_collection(path, mode='r+')) "
                f"or `zstore ingest`, choose a new path (e.g. {_suggest(place.label)}), or "
                f"pass overwrite=True to replace it (its current version stays readable "
                f"until `zstore gc`)"
            )
        return repo
    if found in (EXPERIMENT_ENCODING, COLLECTION_ENCODING):
        other = "an experiment" if found == EXPERIMENT_ENCODING else "a collection"
        opener = "zs.open_experiment" if found == EXPERIMENT_ENCODING else "zs.open_collection"
        raise ExperimentExistsError(
            f"{place.label} holds {other}, not a {what}; zstore does not replace one with "
            f"the other: open it with {opener}(...), or choose a new path such as "
            f"{_suggest(place.label)}"
        )
    raise UnsafeOverwriteError(
        f"{place.label} is an Icechunk repository that holds data other than a zstore "
        f"{what}; zstore does not replace it: choose a new path such as "
        f"{_suggest(place.label)}"
    )


def _suggest(label: str) -> str:
    stem = label.rstrip("/")
    return f"{stem}.zarr" if not stem.endswith(".zarr") else f"{stem[:-5]}-2.zarr"


def experiment_attributes(
    exp_id: str, config: StorageConfig, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """zstore's entry in an experiment's root attributes (standalone or in a collection).

    ``metadata`` (subject, session, plane, date, anything the user gave) must be plain
    JSON: it is what a collection's table shows.
    """
    meta: dict[str, Any] = {
        "encoding-type": EXPERIMENT_ENCODING,
        "encoding-version": ENCODING_VERSION,
        "expID": exp_id,
        "storage": config.to_json(),
        "created": time.time_ns(),
    }
    if metadata:
        meta["metadata"] = plain_metadata(metadata, where=f"experiment {exp_id!r}")
    return meta


def plain_metadata(metadata: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``metadata`` as JSON values (str, int, float, bool, None; dates as ISO text), or
    a ValueError naming the key that cannot be stored."""
    if not isinstance(metadata, Mapping):
        raise ArgumentTypeError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or key.startswith("_"):
            raise InvalidArgumentError(
                f"{where}: metadata key {key!r} cannot be stored: keys are non-empty text "
                f"not starting with '_'"
            )
        if isinstance(value, datetime.datetime | datetime.date):
            value = value.isoformat()
        elif isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidArgumentError(
                f"{where}: metadata {key!r} is a {type(value).__name__} ({value!r}); "
                f"metadata values are text, numbers, booleans or dates"
            )
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        if (
            key == "plane"
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31)
        ):
            raise InvalidArgumentError(
                f"{where}: metadata 'plane' must be the plane's index, a whole number >= 0 "
                f"(suite2p's plane<k>), got {value!r}; record other labels under another key"
            )
        if key in RESERVED_METADATA:
            raise InvalidArgumentError(
                f"{where}: metadata key {key!r} is a column zstore fills in the table "
                f"({', '.join(RESERVED_METADATA)}); use another key, e.g. '{key}_label'"
            )
        out[key] = value
    return out


#: Table columns that metadata may not set (zstore fills them from the trials).
RESERVED_METADATA = (
    "experiment", "trial", "n_rois", "n_frames", "fs", "start_s", "duration_s", "layers",
)  # fmt: skip


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
    metadata: Mapping[str, Any] | None = None,
) -> Experiment:
    """Create (or replace) an experiment with ``trials`` in one transaction."""
    check_name(exp_id, kind="exp_id")
    boolean(overwrite, name="overwrite", where="create_experiment")
    if config is not None and not isinstance(config, StorageConfig):
        raise ArgumentTypeError(
            f"create_experiment: config must be a zs.StorageConfig or None, got "
            f"{type(config).__name__}; pass config=zs.StorageConfig(codec='zstd', clevel=5)"
        )
    config = config or StorageConfig()
    place = resolve(store, storage_options=storage_options)
    repo = prepare(place, overwrite=overwrite)
    meta = experiment_attributes(exp_id, config, metadata)
    with repo.transaction(message or f"create experiment {exp_id!r}") as txn:
        txn.root.attrs["zstore"] = meta
        for old in (TRIALS, IMAGES):  # the replaced experiment's trials and images
            if old in txn.root:
                del txn.root[old]
        txn.root.create_group(TRIALS)
        # made now, so that concurrent writers of the first images do not both create it
        txn.root.create_group(IMAGES)
        txn.note("/")
        _write_trials(txn, trials, config, False, exp_id, progress, per_trial_progress=True)
    assert txn.snapshot is not None
    return Experiment(repo, mode="r+", session=repo.session(txn.snapshot))


def check_open_mode(mode: str, version: object) -> None:
    """``mode`` is "r" or "r+", and an earlier ``version`` opens read-only."""
    choice(mode, MODES, name="mode")
    if version is not None and not isinstance(version, str | datetime.datetime):
        raise ArgumentTypeError(
            f"version must be a version ID (str, from .history()) or a datetime.datetime, "
            f"got {shown(version)}; pass version=exp.history()[1].version or version=None"
        )
    if version is not None and mode != "r":
        raise InvalidArgumentError(
            f"an earlier version opens read-only: pass mode='r' with version={version!r}"
        )


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
    check_open_mode(mode, version)
    place = resolve(store, storage_options=storage_options)
    repo = open_repo(place, writable=mode == "r+")
    return Experiment(repo, mode=mode, session=repo.session(version), pinned=version is not None)
