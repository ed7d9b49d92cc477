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

import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import icechunk as ic
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from . import _compat
from .errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    StorageOptionsError,
    StoreError,
)
from .validate import path_argument

__all__ = [
    "COLLECTION_ENCODING",
    "ENCODING_VERSION",
    "EXPERIMENTS",
    "EXPERIMENT_ENCODING",
    "S3_CONNECT_TIMEOUT",
    "S3_OPTIONS",
    "TRIALS",
    "TRIAL_ENCODING",
    "WRITE_FIXES",
    "Place",
    "StoreLike",
    "check_reachable",
    "endpoint_of",
    "out_of_memory",
    "parse_storage_options",
    "resolve",
    "s3_errors",
    "s3_filesystem",
    "survey",
    "write_failure",
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

#: storage_options zstore understands for s3:// URLs: the name a user passes -> (the
#: Icechunk argument it becomes, its type). The names are s3fs's (what pandas, xarray and
#: anndata users already pass), with Icechunk's own names accepted too. Values are text
#: unless the type says otherwise: text from the command line becomes the type here, so
#: an all-digit secret stays the text it is. ``connect_timeout`` (seconds) is zstore's
#: own: how long to wait for the endpoint to accept a connection before saying it is
#: unreachable (the requests themselves keep Icechunk's timeouts and retries).
S3_OPTIONS: dict[str, tuple[str, type]] = {
    "endpoint_url": ("endpoint_url", str),
    "key": ("access_key_id", str),
    "access_key_id": ("access_key_id", str),
    "secret": ("secret_access_key", str),
    "secret_access_key": ("secret_access_key", str),
    "token": ("session_token", str),
    "session_token": ("session_token", str),
    "anon": ("anonymous", bool),
    "anonymous": ("anonymous", bool),
    "region": ("region", str),
    "region_name": ("region", str),
    "allow_http": ("allow_http", bool),
    "force_path_style": ("force_path_style", bool),
    "requester_pays": ("requester_pays", bool),
    "network_stream_timeout_seconds": ("network_stream_timeout_seconds", int),
    "connect_timeout": ("connect_timeout", float),
}
#: Seconds to wait for an S3 endpoint to accept a TCP connection (``connect_timeout``):
#: generous for a slow network, short next to Icechunk's retries (about 40 s before an
#: unreachable endpoint is reported).
S3_CONNECT_TIMEOUT = 10.0
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


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
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ArgumentTypeError(
            f"storage_options must be a dict of options for s3:// URLs (endpoint_url, key, "
            f"secret, region, anon...) or None, got {type(storage_options).__name__}; pass "
            f"storage_options={{'endpoint_url': ...}}"
        )
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
        raise ArgumentTypeError(
            "store must be a local path, an s3:// URL, an icechunk.Storage or a zarr "
            f"LocalStore, MemoryStore or FsspecStore, got {type(location).__name__}"
        )
    text = os.fspath(location)
    if text.startswith(("s3://", "s3a://")):
        return _s3_place(text, dict(storage_options or {}))
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise InvalidArgumentError(
            f"{text!r}: zstore opens local paths and s3:// URLs; for {scheme}:// build an "
            f"icechunk.Storage (e.g. icechunk.gcs_storage(...)) and pass it as the store"
        )
    if storage_options:
        raise StorageOptionsError(
            f"storage_options apply to s3:// URLs, not to the local path {text!r}"
        )
    path = Path(os.path.abspath(text.removeprefix("file://")))
    path_argument(str(path), name="store", fix="pass a shorter path for the store")
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
            options = {k: v for k, v in fs_options.items() if k in S3_OPTIONS}
            client = fs_options.get("client_kwargs") or {}
            for key in ("endpoint_url", "region_name"):
                if key in client:
                    options.setdefault(key, client[key])
            return _s3_place(f"s3://{store.path}", options)
    raise ArgumentTypeError(
        f"zstore cannot keep an experiment in a {type(store).__name__}: experiments are "
        f"Icechunk repositories; pass a path, an s3:// URL, or an icechunk.Storage "
        f"(e.g. icechunk.gcs_storage(...)) instead"
    )


def _s3_place(url: str, options: dict[str, Any]) -> Place:
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise InvalidArgumentError(f"{url!r} names no bucket; use s3://BUCKET/PREFIX")
    kwargs = parse_storage_options(options, url)
    _check_credentials(kwargs, url)
    settings = {k: kwargs.pop(k) for k in ("connect_timeout",) if k in kwargs}
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
    survey_options = {k: v for k, v in kwargs.items() if k != "from_env"} | settings
    try:
        storage = ic.s3_storage(bucket=bucket, prefix=prefix or None, **kwargs)
    except (TypeError, ValueError) as err:  # what Icechunk refuses beyond the checks above
        raise StorageOptionsError(
            f"storage options {sorted(options)} for {url} were refused: {err}"
        ) from None
    survey = {"bucket": bucket, "prefix": prefix, "options": survey_options}
    return Place(storage, label=f"s3://{bucket}/{prefix}", s3=survey)


def parse_storage_options(options: Mapping[str, Any], url: str) -> dict[str, Any]:
    """``storage_options`` for ``url`` as Icechunk's arguments, each of its type.

    Text is turned into the option's type (``"true"`` into True for a switch, ``"30"``
    into 30 for a number: the command line gives text); anything else must already be
    of that type. Raises :class:`~zstore.errors.StorageOptionsError` naming the option,
    the type it takes and what was given.

    Examples
    --------
    >>> parse_storage_options({"key": "12345", "anon": "false"}, "s3://b/p")
    {'access_key_id': '12345', 'anonymous': False}
    >>> parse_storage_options({"connect_timeout": "abc"}, "s3://b/p")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zstore.errors.StorageOptionsError: storage option 'connect_timeout' for s3://b/p must be ...
    """
    unknown = sorted(set(options) - set(S3_OPTIONS))
    if unknown:
        raise StorageOptionsError(
            f"storage option(s) {unknown} are not understood for {url}; zstore passes "
            f"these to S3: {sorted(S3_OPTIONS)}"
        )
    out: dict[str, Any] = {}
    for name, value in options.items():
        target, kind = S3_OPTIONS[name]
        if target in out:
            given = [k for k in options if S3_OPTIONS[k][0] == target]
            raise StorageOptionsError(
                f"storage options {given} for {url} are two names of one option "
                f"({target}); pass one of them"
            )
        out[target] = _typed_option(name, value, kind, url)
    return out


def _check_credentials(kwargs: Mapping[str, Any], url: str) -> None:
    """Credentials come as key and secret together (and a token only with them), or not
    at all (from the environment), or anon=True (none)."""
    keys = {"access_key_id": "key", "secret_access_key": "secret", "session_token": "token"}
    given = [name for target, name in keys.items() if target in kwargs]
    pair = "storage_options={'key': ..., 'secret': ...}"
    if kwargs.get("anonymous") and given:
        raise StorageOptionsError(
            f"storage options for {url}: anon=True sends no credentials, but {given} were "
            f"given too; pass either storage_options={{'anon': True}} or {pair}"
        )
    if given and not {"key", "secret"} <= set(given):
        raise StorageOptionsError(
            f"storage options for {url}: {given} without "
            f"{sorted({'key', 'secret'} - set(given))}: the key and the secret go together; "
            f"pass {pair}, or neither (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the "
            f"environment are used then)"
        )


def _typed_option(name: str, value: Any, kind: type, url: str) -> Any:
    """One storage option's value as ``kind`` (text from a command line converted)."""
    text = value.strip() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        expected, example = "true or false", "True"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if text is not None and text.isascii() and text.isdigit():
            return int(text)
        expected, example = "a whole number >= 0", "60"
    elif kind is float:
        number: Any = value
        if text is not None:
            try:
                number = float(text)
            except ValueError:
                number = None
        number_ok = isinstance(number, int | float) and not isinstance(number, bool)
        if number_ok and math.isfinite(number) and number > 0:
            return float(number)
        expected, example = "a number of seconds > 0", "30"
    else:
        if isinstance(value, str) and value:
            return value
        expected, example = "text (a non-empty str)", repr("...")
    raise StorageOptionsError(
        f"storage option {name!r} for {url} must be {expected}, got {value!r} "
        f"({type(value).__name__}); pass e.g. storage_options={{{name!r}: {example}}}"
    )


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
    check_reachable(place)
    fs, root = s3_filesystem(place)
    with s3_errors(place):
        try:
            names = sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)})
        except FileNotFoundError as err:
            if _s3_code(err) == "NoSuchBucket":
                raise
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
    given = place.s3["options"]
    names = {"access_key_id": "key", "secret_access_key": "secret", "session_token": "token"}
    options: dict[str, Any] = {names[k]: v for k, v in given.items() if k in names}
    options["use_listings_cache"] = False
    if given.get("anonymous"):
        options["anon"] = True
    if "endpoint_url" in given:
        options["endpoint_url"] = given["endpoint_url"]
    if given.get("requester_pays"):
        options["requester_pays"] = True
    if given.get("region"):
        options["client_kwargs"] = {"region_name": given["region"]}
    # An endpoint that refuses connections is reported after two tries, not botocore's
    # five (check_reachable has usually said so before any request).
    timeout = given.get("connect_timeout", S3_CONNECT_TIMEOUT)
    options["config_kwargs"] = {
        "connect_timeout": timeout,
        "retries": {"total_max_attempts": 2, "mode": "standard"},
    }
    fs = s3fs.S3FileSystem(**options)
    root = "/".join(p for p in (place.s3["bucket"], place.s3["prefix"]) if p)
    return fs, root


# -- S3 failures, said in the user's terms ---------------------------------------------------

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


def endpoint_of(place: Place) -> str:
    """The S3 endpoint of ``place`` as messages name it (AWS's when none was given)."""
    assert place.s3 is not None
    given = place.s3["options"]
    endpoint = given.get("endpoint_url") or _env_endpoint()
    if endpoint:
        return str(endpoint)
    region = (
        given.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    return f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"


def _env_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def check_reachable(place: Place) -> None:
    """Raise :class:`~zstore.errors.StoreError` when the S3 endpoint of ``place`` does not
    accept a connection (refused, unknown host, no route, or no answer within
    ``connect_timeout`` seconds); a local or in-memory place passes.

    One TCP connection and no request: Icechunk would retry an unreachable endpoint for
    about 40 s before failing. Skipped behind an HTTP proxy, where only the proxy is
    reached directly.
    """
    if place.s3 is None or any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return
    endpoint = endpoint_of(place)
    parts = urllib.parse.urlsplit(endpoint)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: the URL itself is wrong
        port = None
    if not parts.hostname or port is None or parts.scheme not in ("http", "https"):
        raise StorageOptionsError(
            f"the S3 endpoint {endpoint!r} of {place.label} is not an http(s) URL with a "
            f"host; pass e.g. storage_options={{'endpoint_url': 'http://127.0.0.1:9000'}}"
        )
    timeout = float(place.s3["options"].get("connect_timeout", S3_CONNECT_TIMEOUT))
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        raise _unreachable(place, endpoint, _why_unreachable(err, timeout)) from None


def _why_unreachable(err: OSError, timeout: float) -> str:
    if isinstance(err, socket.gaierror):
        return f"its host name is not known ({err.strerror})"
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    if err.errno == errno.ECONNREFUSED:
        return "the connection was refused (nothing listens at that address and port)"
    return err.strerror or str(err)


def _unreachable(place: Place, endpoint: str, why: str) -> StoreError:
    assert place.s3 is not None
    return StoreError(
        f"cannot reach the S3 endpoint {endpoint} for bucket {place.s3['bucket']!r} "
        f"({place.label}): {why}; check the endpoint URL "
        f"(storage_options={{'endpoint_url': ...}}), that this machine's network reaches "
        f"it, and the region (storage_options={{'region': ...}}); on a slow network wait "
        f"longer with storage_options={{'connect_timeout': 30}}"
    )


@contextlib.contextmanager
def s3_errors(place: Place) -> Iterator[None]:
    """Re-raise s3fs's and botocore's failures (no credentials, access denied, no such
    bucket, unreachable) as :class:`~zstore.errors.StoreError` naming the endpoint, the
    bucket and what to check; other places' errors pass unchanged."""
    try:
        yield
    except StoreError:
        raise
    except Exception as err:
        if place.s3 is None:  # not S3: nothing to say here
            raise
        failure = _s3_failure(err, place)
        if failure is None:
            raise
        raise failure from None


def _s3_failure(err: BaseException, place: Place) -> StoreError | None:
    assert place.s3 is not None
    bucket, endpoint = place.s3["bucket"], endpoint_of(place)
    names = {type(e).__name__ for e in _chain(err)}
    code = _s3_code(err)
    why = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return StoreError(
            f"no S3 credentials for bucket {bucket!r} at {endpoint} ({place.label}): set "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the "
            f"environment, pass storage_options={{'key': ..., 'secret': ...}}, or, for a "
            f"public bucket, storage_options={{'anon': True}}"
        )
    if code == "NoSuchBucket":
        return StoreError(
            f"there is no bucket {bucket!r} at {endpoint} ({place.label}); check the "
            f"bucket's name in the URL, the endpoint and the region, or create the bucket"
        )
    if isinstance(err, PermissionError) or code in _ACCESS_CODES:
        return StoreError(
            f"S3 at {endpoint} refused access to bucket {bucket!r} ({place.label}): {why}; "
            f"check the credentials (storage_options={{'key': ..., 'secret': ...}}, or "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and that they may use this "
            f"bucket, and the region (storage_options={{'region': ...}})"
        )
    if names & _UNREACHABLE:
        return _unreachable(place, endpoint, why)
    return None


_ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ClientConnectorError",
        "ServerTimeoutError",
    }
)


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the errors it came from (causes and contexts), each once."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _s3_code(err: BaseException) -> str | None:
    """The S3 error code (``NoSuchBucket``, ``AccessDenied``) behind an s3fs error."""
    for e in _chain(err):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
    return None


# -- local writes that fail, said in the user's terms --------------------------------------------

#: What to check when a write fails with this errno (local disks; also exports).
WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free space on it, or write to another disk",
    errno.EDQUOT: "the disk quota is used up: free space, or ask for a larger quota",
    errno.EFBIG: (
        "a file grew past the size limit: the process's file-size limit (`ulimit -f`) or "
        "the filesystem's largest file (4 GiB on FAT32); raise the limit, or write to "
        "another filesystem"
    ),
    errno.EACCES: (
        "no permission to write there: check the owner and permissions of the folder "
        "(and its files), or write elsewhere"
    ),
    errno.EPERM: (
        "the operation is not permitted there: check the owner and permissions of the "
        "folder (and its files), or write elsewhere"
    ),
    errno.EROFS: "the filesystem is mounted read-only: write to another one",
    errno.EIO: "the disk reported an input/output error: check the disk (and its cable)",
    errno.ENOMEM: "the process ran out of memory: see the memory advice of zstore's README",
    errno.ENAMETOOLONG: "a file name is too long for this filesystem: use shorter names",
}
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
_KEY_IN_TEXT = re.compile(r'key="([^"]+)"')


def write_failure(
    err: BaseException, *, where: str, what: str, committed: str | None = None
) -> StoreError | None:
    """A :class:`~zstore.errors.StoreError` for a write to ``where`` (a store or file)
    that failed with a disk error (full, quota, file too large, permission, read-only,
    I/O), naming ``what`` was being written and what to check, with the errno kept in
    ``.errno``; None when ``err`` is no such error. ``committed``: the version the write
    had already committed when it failed (in what follows a commit), said instead of
    "nothing of it was saved".

    Disk errors come as an :class:`OSError` (zstore's and Python's writes) or as the
    text ``(os error N)`` inside Icechunk's storage errors (its writes, in Rust).

    Examples
    --------
    >>> err = write_failure(OSError(28, "No space left on device"), where="/d/e.zarr",
    ...                     what="add trial 't-1'")
    >>> err.errno
    28
    >>> print(str(err).replace("; ", ";\\n"))
    /d/e.zarr: add trial 't-1' failed: No space left on device (ENOSPC);
    the disk is full: free space on it, or write to another disk;
    nothing of it was saved
    """
    code, text, key = None, "", None
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in WRITE_FIXES and not _zstore_error(e):
            code, text = e.errno, e.strerror or str(e)
            key = e.filename
            break
        found = _OS_ERROR_IN_TEXT.search(str(e))
        if found and int(found[1]) in WRITE_FIXES:
            code, text = int(found[1]), os.strerror(int(found[1]))
            keys = [k for c in _chain(err) for k in _KEY_IN_TEXT.findall(str(c))]
            key = keys[0] if keys else None
            break
    if code is None:
        return None
    on = f": {key}" if key else ""
    failure = StoreError(
        f"{where}: {what} failed: {text} ({errno.errorcode.get(code, code)}{on}); "
        f"{WRITE_FIXES[code]}; {saved_or_not(committed)}"
    )
    failure.errno = code  # only errno: with strerror set, str() would be "[Errno N] ..."
    return failure


def saved_or_not(committed: str | None) -> str:
    """What a failed write left: nothing, or (failing after its commit) its version."""
    if committed is None:
        return "nothing of it was saved"
    return (
        f"it had been committed (version {committed}) when this failed, after the commit: "
        f"check the store with `zstore verify`"
    )


#: How Python, the OS and Icechunk (Rust) say that memory or threads ran out.
_OUT_OF_MEMORY_TEXT = (
    "(os error 12)",
    "not enough memory",
    "Cannot allocate memory",
    "memory allocation",
    "can't start new thread",
    "can't spawn worker thread",
)


def out_of_memory(err: BaseException) -> bool:
    """True when ``err`` (or an error it came from) says that memory, or room for a
    thread, ran out: a MemoryError, ENOMEM, or Icechunk's words for it.

    Examples
    --------
    >>> out_of_memory(RuntimeError("can't start new thread")), out_of_memory(ValueError())
    (True, False)
    """
    for e in _chain(err):
        if isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == errno.ENOMEM):
            return True
        if any(text in str(e) for text in _OUT_OF_MEMORY_TEXT):
            return True
    return False


def _zstore_error(err: BaseException) -> bool:
    """An error zstore raised on purpose (its message is already the user's)."""
    return type(err).__module__ == "zstore.errors"
