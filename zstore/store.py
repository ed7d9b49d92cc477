"""Where an experiment lives: store-likes -> Icechunk storage, and what a location holds.

An experiment is an `Icechunk <https://icechunk.io>`_ repository: a local folder, an
``s3://bucket/prefix`` or an :class:`icechunk.Storage` the caller built (in memory, GCS,
Azure, ...). This module turns what the user passed into storage, and surveys a location
before anything is created there, so that zstore never writes over, or deletes, data it
did not write.

Layout inside the repository (Zarr format 3, in every snapshot)::

    /                       attrs["zstore"] = {encoding-type: zstore.experiment, ...}
    /trials/<id>/           a plain anndata group

or, for a collection of experiments (many sessions and planes in one repository)::

    /                                   attrs["zstore"] = {encoding-type: zstore.collection, ...}
    /experiments/<exp>/                 an experiment's root, as above (with its metadata)
    /experiments/<exp>/trials/<id>/     a plain anndata group
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import icechunk as ic
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from . import _compat
from .errors import StorageOptionsError

__all__ = [
    "COLLECTION_ENCODING",
    "ENCODING_VERSION",
    "EXPERIMENTS",
    "EXPERIMENT_ENCODING",
    "TRIALS",
    "TRIAL_ENCODING",
    "Place",
    "StoreLike",
    "resolve",
    "s3_filesystem",
    "survey",
]

StoreLike = str | os.PathLike[str] | ic.Storage | Store
TRIALS = "trials"
EXPERIMENTS = "experiments"
EXPERIMENT_ENCODING = "zstore.experiment"
COLLECTION_ENCODING = "zstore.collection"
TRIAL_ENCODING = "zstore.trial"
#: 0.2: experiments are Icechunk repositories (0.1 wrote plain Zarr with a journal).
ENCODING_VERSION = "0.2.0"
#: Files and folders an Icechunk repository (1.x) holds at its root, and zstore's locks.
ICECHUNK_ENTRIES = frozenset(
    {"refs", "snapshots", "manifests", "chunks", "transactions", "config.yaml", "repo"}
)
LOCKS = "zstore-locks"

#: storage_options zstore understands for s3:// URLs, and the Icechunk argument each
#: becomes. The names are s3fs's (what pandas, xarray and anndata users already pass),
#: with Icechunk's own names accepted too.
_S3_OPTIONS = {
    "endpoint_url": "endpoint_url",
    "key": "access_key_id",
    "access_key_id": "access_key_id",
    "secret": "secret_access_key",
    "secret_access_key": "secret_access_key",
    "token": "session_token",
    "session_token": "session_token",
    "anon": "anonymous",
    "anonymous": "anonymous",
    "region": "region",
    "region_name": "region",
    "allow_http": "allow_http",
    "force_path_style": "force_path_style",
}


@dataclasses.dataclass(frozen=True)
class Place:
    """A resolved location: the storage to give Icechunk and what is needed to survey it."""

    storage: ic.Storage
    label: str  # for messages: a path, an s3:// URL or a description
    local: Path | None = None  # the folder, for local repositories
    s3: Mapping[str, Any] | None = None  # bucket, prefix and s3fs options, for surveys

    @property
    def is_local(self) -> bool:
        return self.local is not None


def resolve(location: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> Place:
    """Turn a path, an ``s3://`` URL, an :class:`icechunk.Storage` or a zarr Store into a
    :class:`Place`.

    Examples
    --------
    >>> import zarr
    >>> from zstore.store import resolve
    >>> resolve("/tmp/exp.zarr").label
    '/tmp/exp.zarr'
    >>> resolve(zarr.storage.LocalStore("/tmp/exp.zarr")).label
    '/tmp/exp.zarr'
    """
    if isinstance(location, ic.Storage | Store) and storage_options:
        raise StorageOptionsError(
            "storage_options apply to paths and URLs only; configure the store "
            f"{location!r} itself instead"
        )
    if isinstance(location, ic.Storage):
        # A local repository needs zstore's commit lock and writers' leases whoever
        # built its storage.
        local = _compat.local_path_of(location)
        if local is not None:
            return resolve(local)
        label = "in-memory storage" if "InMemory" in repr(location) else repr(location)
        return Place(location, label=label)
    if isinstance(location, Store):
        return _from_zarr_store(location)
    if not isinstance(location, str | os.PathLike):
        raise TypeError(
            "store must be a local path, an s3:// URL, an icechunk.Storage or a zarr "
            f"LocalStore, MemoryStore or FsspecStore, got {type(location).__name__}"
        )
    text = os.fspath(location)
    if text.startswith(("s3://", "s3a://")):
        return _s3_place(text, dict(storage_options or {}))
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"{text!r}: zstore opens local paths and s3:// URLs; for {scheme}:// build an "
            f"icechunk.Storage (e.g. icechunk.gcs_storage(...)) and pass it as the store"
        )
    if storage_options:
        raise StorageOptionsError(
            f"storage_options apply to s3:// URLs, not to the local path {text!r}"
        )
    path = Path(os.path.abspath(text.removeprefix("file://")))
    return Place(_compat.local_storage(str(path)), label=str(path), local=path)


def _from_zarr_store(store: Store) -> Place:
    """The zarr stores users already hold, as the places of Icechunk repositories.

    A LocalStore is its folder; an FsspecStore on S3 is its bucket and prefix with the
    filesystem's endpoint and credentials; a MemoryStore keeps an in-memory repository
    for as long as the MemoryStore object lives (so create and open see the same one).
    """
    if isinstance(store, LocalStore):
        return resolve(str(store.root))
    if isinstance(store, MemoryStore):
        storage = store.__dict__.setdefault("_zstore_icechunk_storage", ic.in_memory_storage())
        return Place(storage, label="in-memory storage")
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        protocols = protocol if isinstance(protocol, tuple | list) else (protocol,)
        if "s3" in protocols or "s3a" in protocols:
            fs_options = dict(getattr(store.fs, "storage_options", {}))
            options = {k: v for k, v in fs_options.items() if k in _S3_OPTIONS}
            client = fs_options.get("client_kwargs") or {}
            for key in ("endpoint_url", "region_name"):
                if key in client:
                    options.setdefault(key, client[key])
            return _s3_place(f"s3://{store.path}", options)
    raise TypeError(
        f"zstore cannot keep an experiment in a {type(store).__name__}: experiments are "
        f"Icechunk repositories; pass a path, an s3:// URL, or an icechunk.Storage "
        f"(e.g. icechunk.gcs_storage(...)) instead"
    )


def _s3_place(url: str, options: dict[str, Any]) -> Place:
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket; use s3://BUCKET/PREFIX")
    unknown = sorted(set(options) - set(_S3_OPTIONS))
    if unknown:
        raise StorageOptionsError(
            f"storage option(s) {unknown} are not understood for {url}; zstore passes "
            f"these to S3: {sorted(_S3_OPTIONS)}"
        )
    kwargs: dict[str, Any] = {_S3_OPTIONS[k]: v for k, v in options.items()}
    for flag in ("anonymous", "allow_http", "force_path_style"):
        if flag in kwargs:
            kwargs[flag] = _flag(kwargs[flag], flag)
    endpoint = kwargs.get("endpoint_url")
    if endpoint:
        # Custom endpoints (MinIO, Ceph, moto, ...) are path-style, often over http.
        kwargs.setdefault("allow_http", str(endpoint).startswith("http://"))
        kwargs.setdefault("force_path_style", True)
        kwargs.setdefault("region", "us-east-1")
    if not kwargs.get("anonymous"):
        kwargs.pop("anonymous", None)
        if "access_key_id" not in kwargs:
            kwargs["from_env"] = True  # the usual AWS variables and files
    storage = ic.s3_storage(bucket=bucket, prefix=prefix or None, **kwargs)
    survey = {"bucket": bucket, "prefix": prefix, "options": options}
    return Place(storage, label=f"s3://{bucket}/{prefix}", s3=survey)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise StorageOptionsError(f"storage option {name!r} must be true or false, got {value!r}")


# -- surveying a location before creating anything there --------------------------------


@dataclasses.dataclass(frozen=True)
class Contents:
    """What a location holds: ``kind`` is one of "nothing", "icechunk", "zstore-0.1",
    "other"; ``names`` lists a few of the entries found there (for messages)."""

    kind: str
    names: tuple[str, ...] = ()


def survey(place: Place) -> Contents:
    """What is at ``place`` now, without writing anything."""
    if place.local is not None:
        return _survey_local(place.local)
    if place.s3 is not None:
        return _survey_s3(place)
    return Contents("icechunk" if ic.Repository.exists(place.storage) else "nothing")


def _survey_local(path: Path) -> Contents:
    if path.is_symlink() and not path.exists():
        return Contents("other", (f"{path.name} (a symbolic link to nothing)",))
    if not path.exists():
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return Contents("other", (f"{parent} (a file, where a folder is needed)",))
        return Contents("nothing")
    if not path.is_dir():
        return Contents("other", (path.name,))
    names = sorted(os.listdir(path))
    return _classify(names, lambda: _read_local_json(path / "zarr.json"))


def _read_local_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _survey_s3(place: Place) -> Contents:
    fs, root = s3_filesystem(place)
    try:
        names = sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)})
    except FileNotFoundError:
        return Contents("nothing")

    def root_json() -> Any:
        try:
            return json.loads(fs.cat_file(f"{root}/zarr.json"))
        except (OSError, ValueError):
            return None

    return _classify(names, root_json)


def _classify(names: list[str], root_json: Any) -> Contents:
    entries = [n for n in names if n != LOCKS]
    if not entries:
        return Contents("nothing")
    if set(entries) <= ICECHUNK_ENTRIES and "refs" in entries:
        return Contents("icechunk", tuple(entries))
    if "zarr.json" in entries and TRIALS in entries:
        document = root_json()
        attrs = (document or {}).get("attributes", {}) if isinstance(document, dict) else {}
        meta = attrs.get("zstore") if isinstance(attrs, dict) else None
        if isinstance(meta, dict) and meta.get("encoding-type") == EXPERIMENT_ENCODING:
            return Contents("zstore-0.1", tuple(entries))
    return Contents("other", tuple(entries[:8]) + (("...",) if len(entries) > 8 else ()))


def s3_filesystem(place: Place) -> tuple[Any, str]:
    """An s3fs filesystem and the repository's root key, for what Icechunk's Python API
    does not do: listing a location before creating there, and writers' leases."""
    try:
        import s3fs
    except ImportError:  # pragma: no cover - the s3 extra installs it
        raise ImportError(
            "checking an s3:// location needs s3fs: pip install 'zstore[s3]'"
        ) from None
    assert place.s3 is not None
    options = dict(place.s3["options"])
    options.setdefault("use_listings_cache", False)
    for ours, theirs in (("access_key_id", "key"), ("secret_access_key", "secret")):
        if ours in options:
            options[theirs] = options.pop(ours)
    for ours, theirs in (("session_token", "token"), ("anonymous", "anon")):
        if ours in options:
            options[theirs] = options.pop(ours)
    region = options.pop("region", None) or options.pop("region_name", None)
    if region:
        options.setdefault("client_kwargs", {})["region_name"] = region
    options.pop("allow_http", None)
    options.pop("force_path_style", None)
    fs = s3fs.S3FileSystem(**options)
    root = "/".join(p for p in (place.s3["bucket"], place.s3["prefix"]) if p)
    return fs, root
