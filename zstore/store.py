"""Store-likes, the experiment layout, and committing a trial group.

Layout (Zarr format 3)::

    <root>/                 attrs["zstore"] = {encoding-type: zstore.experiment, ...}
    <root>/trials/<id>/     a plain anndata group, consolidated on its own

The root is never consolidated and holds no trial registry: trials are found by listing
``trials/``, so writers of different trials never touch shared metadata. A trial is
visible only once its group's ``zarr.json`` carries consolidated metadata, and every
save ends by rewriting that one document in one write (``commit_group``): readers see
the previous state or the new one, never a half-written one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
import warnings
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import ConsolidatedMetadata, GroupMetadata
from zarr.core.sync import sync
from zarr.errors import GroupNotFoundError
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from .errors import (
    ExperimentExistsError,
    FormatVersionError,
    NotAnExperimentError,
    ReadOnlyError,
    TrialLockedError,
    TrialNotFoundError,
)
from .names import check_name

__all__ = [
    "ENCODING_VERSION",
    "TRIALS",
    "StoreLike",
    "commit_group",
    "create_root",
    "describe_store",
    "list_trials",
    "make_store",
    "open_root",
    "open_trial_group",
    "publish",
    "staging_group",
    "trial_path",
    "zstore_attrs",
]

StoreLike = str | os.PathLike[str] | Store
logger = logging.getLogger(__name__)
TRIALS = "trials"
EXPERIMENT_ENCODING = "zstore.experiment"
TRIAL_ENCODING = "zstore.trial"
ENCODING_VERSION = "0.1.0"
MODES = ("r", "r+")
#: s3fs options zstore sets unless the user does. max_concurrency=1: s3fs otherwise
#: sends a HEAD before each whole-object GET to plan a split download (2 requests per
#: chunk; our objects are whole shards or small). use_listings_cache=False: trials are
#: found by listing, and a cached listing hides trials other processes added.
S3_DEFAULTS: dict[str, Any] = {"max_concurrency": 1, "use_listings_cache": False}


def make_store(
    store: StoreLike, *, mode: str = "r", storage_options: Mapping[str, Any] | None = None
) -> Store:
    """Turn what the user passed into a zarr Store, read-only for ``mode="r"``.

    Accepts a local path, a URL such as ``s3://bucket/prefix`` (through fsspec, with
    ``storage_options`` for endpoint and credentials) or a zarr Store object.

    Examples
    --------
    >>> from zstore.store import make_store
    >>> make_store("/tmp/exp.zarr", mode="r+")
    LocalStore('file:///tmp/exp.zarr')
    """
    read_only = mode == "r"
    if isinstance(store, Store):
        if storage_options:
            raise ValueError(
                "storage_options apply to paths and URLs only; configure the zarr Store "
                f"{store!r} itself instead"
            )
        return store.with_read_only(read_only) if store.read_only != read_only else store
    if not isinstance(store, str | os.PathLike):
        raise TypeError(
            "store must be a local path, a URL such as 's3://bucket/exp.zarr' or a zarr "
            f"Store, got {type(store).__name__}"
        )
    location = os.fspath(store)
    if "://" in location and not location.startswith("file://"):
        options = dict(storage_options or {})
        if location.startswith(("s3://", "s3a://")):
            for key, value in S3_DEFAULTS.items():
                options.setdefault(key, value)
        return FsspecStore.from_url(location, storage_options=options, read_only=read_only)
    if storage_options:
        raise ValueError(f"storage_options apply to URLs, not to the local path {location!r}")
    return LocalStore(os.path.abspath(location.removeprefix("file://")), read_only=read_only)


def describe_store(store: Store) -> str:
    """A short human name for a store, for messages."""
    if isinstance(store, LocalStore):
        return str(store.root)
    if isinstance(store, FsspecStore):
        return f"{store.fs.protocol[0] if isinstance(store.fs.protocol, tuple) else store.fs.protocol}://{store.path}"
    return repr(store)


def create_root(store: Store, *, exp_id: str, overwrite: bool) -> zarr.Group:
    """Create the root group of a new, empty experiment."""
    check_name(exp_id, kind="exp_id")
    if store.read_only:
        raise ReadOnlyError(
            f"cannot create an experiment in the read-only store {describe_store(store)}"
        )
    if not overwrite and _holds_zarr_data(store):
        raise ExperimentExistsError(
            f"{describe_store(store)} already holds Zarr data; open it with "
            f"zs.open_experiment(...), or pass overwrite=True to replace it"
        )
    attrs: dict[str, Any] = {
        "zstore": {
            "encoding-type": EXPERIMENT_ENCODING,
            "encoding-version": ENCODING_VERSION,
            "expID": exp_id,
        }
    }
    root = zarr.open_group(store, mode="w", zarr_format=3, attributes=attrs)
    root.create_group(TRIALS)
    return root


def open_root(store: Store, *, mode: str) -> zarr.Group:
    """Open and check the root group of an existing experiment."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'r' (read) or 'r+' (read and write), got {mode!r}")
    where = describe_store(store)
    try:
        root = zarr.open_group(
            store, mode="r" if mode == "r" else "r+", zarr_format=3, use_consolidated=False
        )
    except (FileNotFoundError, GroupNotFoundError):
        raise FileNotFoundError(
            f"no zstore experiment at {where}: there is no Zarr group there; check the path, "
            f"or create one with zs.create_experiment(...) or zs.ingest_suite2p(...)"
        ) from None
    meta = zstore_attrs(root)
    if meta.get("encoding-type") != EXPERIMENT_ENCODING:
        raise NotAnExperimentError(
            f"{where} is a Zarr group but not a zstore experiment (its attributes have no "
            f"'zstore' entry with encoding-type {EXPERIMENT_ENCODING!r}); a single trial "
            f"can be read with anndata.read_zarr, or create an experiment with "
            f"zs.create_experiment(...)"
        )
    _check_version(meta, where)
    return root


def _check_version(meta: Mapping[str, Any], where: str) -> None:
    found = str(meta.get("encoding-version", "0.0.0"))
    try:
        major_minor = tuple(int(p) for p in found.split(".")[:2])
    except ValueError:
        major_minor = (999, 0)
    ours = tuple(int(p) for p in ENCODING_VERSION.split(".")[:2])
    if major_minor > ours:
        raise FormatVersionError(
            f"{where} was written with zstore format {found}, newer than this zstore "
            f"reads ({ENCODING_VERSION}); upgrade zstore (pip install -U zstore)"
        )


def _holds_zarr_data(store: Store) -> bool:
    async def check() -> bool:
        if await store.exists("zarr.json") or await store.exists(".zgroup"):
            return True
        async for _ in store.list_prefix(""):
            return True
        return False

    return sync(check())


def zstore_attrs(node: zarr.Group | zarr.Array) -> dict[str, Any]:
    """The ``zstore`` entry of a node's attributes ({} when there is none)."""
    meta: Any = node.attrs.get("zstore")
    return dict(meta) if isinstance(meta, dict) else {}


def trial_path(trial_id: str) -> str:
    return f"{TRIALS}/{check_name(trial_id, kind='trial ID')}"


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    created: int
    complete: bool


def list_trials(root: zarr.Group) -> list[TrialRecord]:
    """Every trial group under ``trials/``, in the order they were first added."""
    trials = root[TRIALS]
    records = []
    for name, group in trials.groups():  # type: ignore[union-attr]
        meta = zstore_attrs(group)
        complete = group.metadata.consolidated_metadata is not None and bool(meta)
        created = int(meta.get("created", 0))
        records.append(TrialRecord(name, created, complete))
    return sorted(records, key=lambda r: (r.created, r.trial_id))


def open_trial_group(store: Store, trial_id: str, *, mode: str) -> zarr.Group:
    """Open ``trials/<id>``: from its consolidated metadata to read, without it to write.

    A consolidated group refuses some writes and would not see what a save adds, so
    writers bypass it; the save's commit then rewrites it.
    """
    path = trial_path(trial_id)
    try:
        group = zarr.open_group(
            store,
            path=path,
            mode="r" if mode == "r" else "r+",
            zarr_format=3,
            use_consolidated=(mode == "r"),
        )
    except (FileNotFoundError, GroupNotFoundError, ValueError) as err:
        raise TrialNotFoundError(
            f"trial {trial_id!r} is not in the experiment at {describe_store(store)} "
            f"(or an earlier write of it did not finish): {err}"
        ) from None
    return group


def staging_group() -> zarr.Group:
    """An empty in-memory group: elements are written here first, then published.

    anndata's and zarr's writers check for existing nodes at every step; against object
    storage each check is a request. Writing to memory and copying the finished keys
    costs one request per key instead (a trial: ~100 rather than ~900).
    """
    return zarr.open_group(MemoryStore(), mode="w", zarr_format=3)


def publish(staged: zarr.Group, group: zarr.Group, *, concurrency: int = 16) -> None:
    """Copy every key written to ``staged`` (but its own zarr.json) below ``group``."""

    async def copy() -> None:
        source = staged.store_path.store
        prefix = group.store_path.path
        keys = [k async for k in source.list() if k != "zarr.json"]
        renamed = {k: f"{prefix}/{k}" if prefix else k for k in keys}
        await _copy_keys(source, group.store_path.store, renamed, concurrency)

    sync(copy())


async def _copy_keys(
    source: Store, target: Store, renamed: Mapping[str, str], concurrency: int
) -> None:
    """Copy each key of ``source`` to its new name in ``target``, a few at a time."""
    limit = asyncio.Semaphore(concurrency)
    prototype = default_buffer_prototype()

    async def one(key: str) -> None:
        async with limit:
            value = await source.get(key, prototype)
            if value is not None:
                await target.set(renamed[key], value)

    await asyncio.gather(*(one(k) for k in renamed))


def commit_group(
    group: zarr.Group,
    attributes: Mapping[str, Any],
    *,
    members_of: zarr.Group | None = None,
    exclude: Collection[str] = (),
) -> None:
    """Rewrite ``group``'s zarr.json with new attributes and the consolidated metadata of
    everything below it, in a single write: the moment a save becomes visible.

    ``members_of``: a staged copy of the hierarchy to take the metadata from, sparing
    the listing of ``group`` (requests on object storage). ``exclude``: paths (and what
    is below them) left out, e.g. elements to be deleted once the commit is done.
    """
    source = members_of if members_of is not None else group

    def kept(key: str) -> bool:
        return not any(key == path or key.startswith(f"{path}/") for path in exclude)

    async def commit() -> None:
        agroup = group._async_group
        members: dict[str, Any] = {}
        async for key, node in source._async_group.members(
            max_depth=None, use_consolidated_for_children=False
        ):
            if not kept(key):
                continue
            meta = node.metadata
            if isinstance(meta, GroupMetadata) and meta.consolidated_metadata is None:
                meta = dataclasses.replace(
                    meta, consolidated_metadata=ConsolidatedMetadata(metadata={})
                )
            members[key] = meta
        ConsolidatedMetadata._flat_to_nested(members)
        metadata = dataclasses.replace(
            agroup.metadata,
            attributes=dict(attributes),
            consolidated_metadata=ConsolidatedMetadata(metadata=members),
        )
        buffers = metadata.to_buffer_dict(default_buffer_prototype())
        prefix = agroup.store_path.path
        await agroup.store_path.store.set(f"{prefix}/zarr.json", buffers["zarr.json"])

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        sync(commit())


# -- keys, journals and locks -----------------------------------------------------------

JOURNAL = "zstore-journal"
LOCKS = "zstore-locks"


def list_keys(store: Store, prefix: str) -> list[str]:
    """Every key below ``prefix`` (a path without trailing slash)."""

    async def collect() -> list[str]:
        return [k async for k in store.list_prefix(f"{prefix}/")]

    return sync(collect())


def copy_prefix(store: Store, source: str, target: str, *, concurrency: int = 16) -> None:
    """Copy every key below ``source`` to the same relative key below ``target``."""

    async def copy() -> None:
        keys = [k async for k in store.list_prefix(f"{source}/")]
        renamed = {k: f"{target}/{k[len(source) + 1 :]}" for k in keys}
        await _copy_keys(store, store, renamed, concurrency)

    sync(copy())


def sync_delete(store: Store, key: str) -> None:
    """Delete one key (no error when it is absent)."""
    sync(store.delete(key))


def delete_prefix(store: Store, prefix: str) -> None:
    """Delete every key below ``prefix``."""
    sync(store.delete_dir(prefix))


def read_json(store: Store, key: str) -> dict[str, Any] | None:
    """A small JSON document, or None when the key does not exist."""

    async def get() -> Any:
        return await store.get(key, default_buffer_prototype())

    value = sync(get())
    return None if value is None else dict(json.loads(value.to_bytes()))


def write_json(
    store: Store, key: str, document: Mapping[str, Any], *, exclusive: bool = False
) -> None:
    buffer = default_buffer_prototype().buffer.from_bytes(json.dumps(dict(document)).encode())
    if exclusive:
        sync(store.set_if_not_exists(key, buffer))
    else:
        sync(store.set(key, buffer))


def journal_path(trial_id: str) -> str:
    """Where a save backs up the elements it rewrites in place, until it commits."""
    return f"{JOURNAL}/{check_name(trial_id, kind='trial ID')}"


@contextlib.contextmanager
def trial_lock(store: Store, trial_id: str) -> Iterator[None]:
    """Hold the write lock of one trial: a second writer of it gets TrialLockedError.

    The lock is a small object created only if absent (atomically on local disks; by
    check-then-write on object stores, then read back to confirm the owner). A lock
    left by a process that died on this host is taken over.
    """
    key = f"{LOCKS}/{check_name(trial_id, kind='trial ID')}.json"
    me: dict[str, Any] = {
        "owner": uuid.uuid4().hex,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.time(),
    }
    for _ in range(2):
        write_json(store, key, me, exclusive=True)
        holder = read_json(store, key) or {}
        if holder.get("owner") == me["owner"]:
            break
        if _stale(holder):
            sync(store.delete(key))
            continue
        raise TrialLockedError(
            f"trial {trial_id!r} is being written by another process (pid {holder.get('pid')} "
            f"on {holder.get('host')}, since {time.ctime(holder.get('since', 0))}); wait for it "
            f"to finish. If that process is gone, delete the lock {key!r} in "
            f"{describe_store(store)}"
        )
    _HELD.add(me["owner"])
    try:
        yield
    finally:
        _HELD.discard(me["owner"])
        try:
            holder = read_json(store, key) or {}
            if holder.get("owner") == me["owner"]:
                sync(store.delete(key))
        except Exception as err:  # never hide the error that ended the write
            logger.warning("could not release the lock %s: %s", key, err)


_HELD: set[str] = set()  # owners of the locks this process holds now


def _stale(holder: Mapping[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    if holder.get("pid") == os.getpid():
        return holder.get("owner") not in _HELD  # left by an earlier, failed write of ours
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False
