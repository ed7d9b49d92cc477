"""Convert an experiment written by zstore 0.1 (plain Zarr) into the current format.

zstore 0.1 stored an experiment as a plain Zarr hierarchy whose trials became visible
through their consolidated metadata, with a journal of elements being rewritten in
place. This module reads such a store exactly as 0.1 did (committed trials only, the
journal's copies where a save had not finished) and writes every trial into a new
experiment in one transaction. The old store is only read, never changed.

Every chunk is decoded on the way, so its crc32c checksum is verified: a damaged 0.1
store fails the migration, naming the chunk (or the metadata document that cannot be
read: a trial's ``zarr.json`` truncated, say), instead of carrying the damage over. A
shard of X or a layer that 0.1 did not store reads as zeros in 0.1 (zarr's fill value);
such shards are written as zeros and listed in a warning, since 0.1 cannot tell an
all-zero block from a lost one.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import zarr
from zarr.storage import FsspecStore, LocalStore

from . import validate
from ._compat import child_names, list_keys, node_documents, read_bytes
from .arrays import StorageConfig
from .errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    LegacyFormatError,
    NotAnExperimentError,
    PathNotFoundError,
    StorageOptionsError,
    emit_user_warning,
)
from .experiment import Experiment
from .opening import create_with_trials
from .progress import ProgressOption, reporting
from .store import EXPERIMENT_ENCODING, TRIALS, StoreLike
from .trialio import read_trial

__all__ = ["migrate"]

JOURNAL = "zstore-journal"


def migrate(
    old: str | os.PathLike[str],
    new: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    new_storage_options: Mapping[str, Any] | None = None,
    progress: ProgressOption | Callable[[str, int, int], None] = None,
) -> Experiment:
    """Copy the zstore 0.1 experiment at ``old`` into a new experiment at ``new``.

    ``old`` is a local path or an ``s3://`` URL (``storage_options`` for it); ``new``
    anything :func:`zstore.create_experiment` takes. ``old`` is only read. Every chunk
    is decoded (so checksummed) on the way. Returns the new experiment.

    ``progress``: ``True`` shows a bar over the shards of every trial, ``False``
    nothing, ``None`` (default) a bar in interactive sessions only; a callable is
    called with ``(trial_id, shards_done, shards_total)``.

    Examples
    --------
    >>> import icechunk, warnings, zstore as zs
    >>> with warnings.catch_warnings(record=True) as caught:  # what 0.1 did not show
    ...     warnings.simplefilter("always")
    ...     exp = zs.migrate("tests/data/zstore-0.1.zarr", icechunk.in_memory_storage())
    >>> exp.trialIDs
    ['t-a', 't-b']
    >>> [str(w.message)[28:66] for w in caught if w.category is zs.ZstoreWarning]
    ["trial 't-c' was never committed by zst", "trial 't-b' X: shard(s) ['0.0'] are no"]
    """
    validate.path_argument(old, name="old", where="migrate", fix="pass the 0.1 store's path")
    if isinstance(new, str | os.PathLike):
        validate.path_argument(new, name="new", where="migrate")
    for name, options in (
        ("storage_options", storage_options),
        ("new_storage_options", new_storage_options),
    ):
        if options is not None and not isinstance(options, Mapping):
            raise ArgumentTypeError(
                f"migrate: {name} must be a dict of s3 options or None, got "
                f"{validate.shown(options)}; pass {name}={{'endpoint_url': ...}}"
            )
    validate.progress_option(progress, where="migrate")
    store = _legacy_store(old, storage_options)
    where = str(old)
    if isinstance(new, str | os.PathLike) and isinstance(store, LocalStore):
        inside = os.path.realpath(os.fspath(new))
        source = os.path.realpath(str(store.root))
        if os.path.commonpath([inside, source]) == source:
            raise InvalidArgumentError(
                f"migrate {where} -> {new}: the new experiment would be written inside the "
                f"old store, which zstore only reads; choose a path outside it"
            )
    (doc,) = node_documents(store, [""])
    if doc.kind == "absent" and isinstance(store, LocalStore) and _is_repository(store.root):
        raise LegacyFormatError(
            f"{where} is already in the current zstore format (an Icechunk repository), not "
            f"0.1: it needs no migration, every command reads it as it is"
        )
    if doc.kind != "group":
        found = {
            "absent": "it has no zarr.json (not a Zarr v3 store)",
            "array": "its root is a Zarr array",
        }.get(doc.kind, f"its root metadata document zarr.json {doc.problem}")
        fix = (
            "restore zarr.json from a copy of the store, then migrate again"
            if doc.kind == "damaged"
            else "check the path (a zstore 0.1 experiment is a folder with zarr.json and trials/)"
        )
        raise NotAnExperimentError(f"{where}: no zstore 0.1 experiment there: {found}; {fix}")
    root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
    meta: Any = root.attrs.get("zstore")
    if not isinstance(meta, dict) or meta.get("encoding-type") != EXPERIMENT_ENCODING:
        raise NotAnExperimentError(f"{where} is not a zstore experiment (no 'zstore' attributes)")
    if not str(meta.get("encoding-version", "")).startswith("0.1."):
        raise LegacyFormatError(
            f"{where} is in zstore format {meta.get('encoding-version')!r}, not 0.1; "
            f"open it with zs.open_experiment"
        )
    trials: dict[str, tuple[Any, dict[str, Any]]] = {}
    config: StorageConfig | None = None
    for trial_id in _committed_trials(root, where):
        group = zarr.open_group(
            store, path=f"{TRIALS}/{trial_id}", mode="r", zarr_format=3, use_consolidated=True
        )
        adata, state = read_trial(
            group,
            trial_id,
            version=f"v01-{uuid.uuid4().hex}",
            elsewhere=_journalled(store, group, trial_id),
            missing_reads_as_zeros=True,  # as 0.1 showed them (and warned below)
        )
        _warn_absent_shards(store, group, trial_id, where)
        trials[trial_id] = (adata, state.provenance)
        config = config or _config_of(cast(zarr.Array, group["X"]))
    exp_id = str(meta["expID"])
    with reporting(progress, desc=f"migrate {exp_id}", parts=len(trials)) as report:
        return create_with_trials(
            new,
            exp_id,
            False,
            new_storage_options,
            config,
            trials=trials,
            progress=report,
            message=f"migrate {where} (zstore 0.1): trials {list(trials)}",
        )


def _is_repository(root: Any) -> bool:
    """A local folder that is an Icechunk repository (the current format): its
    ``config.yaml``, ``refs/`` and ``snapshots/``, and no ``zarr.json``."""
    path = os.fspath(root)
    return os.path.isdir(os.path.join(path, "refs")) and os.path.isdir(
        os.path.join(path, "snapshots")
    )


def _legacy_store(old: str | os.PathLike[str], options: Mapping[str, Any] | None) -> Any:
    text = os.fspath(old)
    if "://" in text and not text.startswith("file://"):
        opts = dict(options or {})
        opts.setdefault("use_listings_cache", False)
        return FsspecStore.from_url(text, storage_options=opts, read_only=True)
    if options:
        raise StorageOptionsError(
            f"storage_options apply to URLs, not to the local path {text!r}; pass "
            f"storage_options=None"
        )
    path = os.path.abspath(text.removeprefix("file://"))
    if not os.path.isdir(path):
        raise PathNotFoundError(
            f"no zstore 0.1 experiment at {path}: no such folder; check the path"
        )
    return LocalStore(path, read_only=True)


def _committed_trials(root: zarr.Group, where: str) -> list[str]:
    """Trials 0.1 showed: groups with consolidated metadata, in the order they were added.

    Each trial's metadata document is read here first: one that cannot be read fails
    the migration, naming the trial and the file (0.1 could not read it either)."""
    store = root.store
    (trials,) = node_documents(store, [TRIALS])
    if trials.kind != "group":
        what = "no trials group" if trials.kind != "damaged" else f"{trials.key} {trials.problem}"
        raise NotAnExperimentError(
            f"{where}: the 0.1 experiment's metadata is damaged: {what}; restore it from a "
            f"copy of the store, then migrate again"
        )
    names = child_names(store, TRIALS)
    documents = node_documents(store, [f"{TRIALS}/{n}" for n in names])
    found = []
    for name, doc in zip(names, documents, strict=True):
        if doc.kind == "damaged":
            raise NotAnExperimentError(
                f"{where}: trial {name!r} cannot be migrated: its metadata document "
                f"{where}/{doc.key} {doc.problem}; restore that file from a copy of the store, "
                f"or migrate a copy of the store without trials/{name} (zstore only reads "
                f"{where}); nothing was written"
            )
        if doc.kind != "group":
            continue  # not a node (a stray file or folder): 0.1 did not show it
        group = zarr.open_group(store, path=f"{TRIALS}/{name}", mode="r", zarr_format=3)
        meta: Any = group.attrs.get("zstore")
        if group.metadata.consolidated_metadata is None or not isinstance(meta, dict):
            emit_user_warning(
                f"{where}: trial {name!r} was never committed by zstore 0.1 (an unfinished "
                f"write): 0.1 did not show it, and it is not migrated"
            )
            continue
        found.append((int(meta.get("created", 0)), name))
    return [name for _, name in sorted(found)]


def _journalled(store: Any, group: zarr.Group, trial_id: str) -> dict[str, Any]:
    """Elements an unfinished 0.1 save had journalled: 0.1 read them from the journal."""
    raw = read_bytes(store, f"{JOURNAL}/{trial_id}/manifest.json")
    if raw is None:
        return {}
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise ValueError("it holds no JSON object")
    except ValueError as err:
        raise NotAnExperimentError(
            f"trial {trial_id!r}: the journal of an unfinished 0.1 save, "
            f"{JOURNAL}/{trial_id}/manifest.json, cannot be read ({err}); restore it from a "
            f"copy of the store, then migrate again; nothing was written"
        ) from None
    token = str(cast(dict, group.attrs.get("zstore", {})).get("commit", ""))
    if manifest.get("base") != token:
        return {}  # the journal of a save that did commit: 0.1 ignored it
    return {
        path: zarr.open(store, path=f"{JOURNAL}/{trial_id}/{path}", mode="r", zarr_format=3)
        for path in manifest.get("elements", [])
    }


def _warn_absent_shards(store: Any, group: zarr.Group, trial_id: str, where: str) -> None:
    arrays = [("X", group["X"])]
    if "layers" in group:
        arrays += [(f"layers/{k}", v) for k, v in cast(zarr.Group, group["layers"]).arrays()]
    for name, arr in arrays:
        arr = cast(zarr.Array, arr)
        outer = arr.shards or arr.chunks
        grid = [range(math.ceil(n / s)) for n, s in zip(arr.shape, outer, strict=True)]
        stored = set(list_keys(store, f"{arr.path}/"))
        absent = [
            ".".join(map(str, c))
            for c in itertools.product(*grid)
            if f"{arr.path}/{arr.metadata.encode_chunk_key(c)}" not in stored
        ]
        if absent:
            emit_user_warning(
                f"{where}: trial {trial_id!r} {name}: shard(s) {absent[:10]} are not stored "
                f"in the 0.1 store, which reads them as zeros (an all-zero block, or lost "
                f"data); they are written as zeros. Check them against your source data"
            )


def _config_of(X: zarr.Array) -> StorageConfig:
    """The 0.1 experiment's chunking and codec, so the new store keeps them."""
    from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

    codec, clevel = "none", 5
    for c in X.compressors:
        if isinstance(c, BloscCodec):
            name = getattr(c.cname, "value", c.cname)
            bit = "-bit" if c.shuffle == BloscShuffle.bitshuffle else ""
            codec, clevel = f"blosc-{name}{bit}", int(c.clevel)
        elif isinstance(c, ZstdCodec):
            codec, clevel = "zstd", int(c.level)
    shard = X.shards or X.chunks
    try:
        return StorageConfig(
            shard_bytes=int(shard[0] * shard[1] * X.dtype.itemsize),
            inner_rois=int(X.chunks[0]),
            inner_frames=int(X.chunks[1]),
            codec=codec,
            clevel=clevel,
        )
    except ValueError:  # a codec this zstore does not offer: the default one
        return StorageConfig(inner_rois=int(X.chunks[0]), inner_frames=int(X.chunks[1]))
