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
import pickle
import re
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import icechunk as ic
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from . import _compat
from .errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    OutOfMemoryError,
    StorageOptionsError,
    StoreError,
)
from .validate import path_argument

__all__ = [
    "COLLECTION_ENCODING",
    "ENCODING_VERSION",
    "EXPERIMENTS",
    "EXPERIMENT_ENCODING",
    "MIN_OPEN_FILES",
    "READ_FIXES",
    "S3_CONNECT_TIMEOUT",
    "S3_OPTIONS",
    "TRIALS",
    "TRIAL_ENCODING",
    "WRITE_FIXES",
    "Place",
    "StoreLike",
    "check_open_files",
    "check_reachable",
    "endpoint_of",
    "gc_errors",
    "open_files_failure",
    "out_of_memory",
    "parse_storage_options",
    "read_failure",
    "resolve",
    "s3_errors",
    "s3_failure",
    "s3_filesystem",
    "source_errors",
    "storage_settings",
    "survey",
    "with_settings",
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
#: own: how long to wait for the endpoint to accept a connection, and to answer a first
#: request, before saying it is unreachable (the requests themselves keep Icechunk's
#: timeouts). ``max_tries`` (zstore's own too): how many times Icechunk tries a request
#: that fails (a 500, a 503, a timeout) before the failure is reported (1: no retries);
#: Icechunk's default (10) when not given. Numbers are bounded (:data:`_BOUNDS`): a
#: timeout of days, or a million tries, would leave a command waiting on a dead endpoint.
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
    "max_tries": ("max_tries", int),
}
#: zstore's own S3 options (not Icechunk's ``s3_storage`` arguments).
_SETTINGS = ("connect_timeout", "max_tries")
#: Seconds to wait for an S3 endpoint to accept a TCP connection (``connect_timeout``):
#: generous for a slow network, short next to Icechunk's retries (about 40 s before an
#: unreachable endpoint is reported).
S3_CONNECT_TIMEOUT = 10.0
#: The numeric S3 options' ranges (inclusive; connect_timeout's lower bound excluded) and
#: what an example value is: timeouts up to 10 minutes, up to 100 tries.
_BOUNDS: dict[str, tuple[float, float, str, str]] = {
    "connect_timeout": (0, 600, "a number of seconds > 0 and <= 600", "30"),
    "network_stream_timeout_seconds": (1, 600, "a whole number of seconds from 1 to 600", "60"),
    "max_tries": (1, 100, "a whole number from 1 to 100 (1: no retries)", "3"),
}
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
    return Place(_local_storage(path), label=str(path), local=path)


def _local_storage(path: Path) -> ic.Storage:
    """Icechunk's storage of a local folder; when Icechunk cannot start its runtime for
    want of open files (it panics), the limit said as such."""
    try:
        return _compat.local_storage(str(path))
    except BaseException as err:  # pyo3's PanicException, raised from Rust
        failure = open_files_failure(err, what=f"opening {path}")
        if failure is None:
            raise
        raise failure from None


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
    settings = {k: kwargs.pop(k) for k in _SETTINGS if k in kwargs}
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
    place = Place(storage, label=f"s3://{bucket}/{prefix}", s3=survey)
    _S3_PLACES[place.label] = place
    return place


def with_settings(repository: ic.Repository, place: Place) -> ic.Repository:
    """``repository`` with its S3 client built with its own storage settings
    (``max_tries``), when ``place`` is on S3 and has some; else ``repository`` itself.

    Icechunk (1.1) builds a storage's S3 client once, with the settings of its first
    request, and :meth:`icechunk.Repository.open` makes that request with the defaults
    (10 tries, with backoff: a minute per failing request), whatever its config says. A
    copy (pickled and loaded: the same repository, a storage without a client yet) builds
    its client on its first request, made with the repository's settings.
    """
    if place.s3 is None or storage_settings(place) is None:
        return repository
    try:
        copy = pickle.loads(pickle.dumps(repository))
    except Exception:  # a storage that cannot be copied keeps Icechunk's retries
        return repository
    return copy if isinstance(copy, ic.Repository) else repository


def storage_settings(place: Place) -> ic.StorageSettings | None:
    """Icechunk's storage settings for ``place``: its retries, when the S3 option
    ``max_tries`` was given (None: Icechunk's defaults)."""
    tries = place.s3["options"].get("max_tries") if place.s3 is not None else None
    if tries is None:
        return None
    return ic.StorageSettings(retries=ic.StorageRetriesSettings(max_tries=int(tries)))


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
    elif kind is int or kind is float:
        number = _number(value, text, whole=kind is int)
        low, high, expected, example = _BOUNDS[name]
        if number is not None and low <= number <= high and (kind is int or number > low):
            return kind(number)
    else:
        if isinstance(value, str) and value:
            return value
        expected, example = "text (a non-empty str)", repr("...")
    raise StorageOptionsError(
        f"storage option {name!r} for {url} must be {expected}, got {value!r} "
        f"({type(value).__name__}); pass e.g. storage_options={{{name!r}: {example}}}"
    )


def _number(value: Any, text: str | None, *, whole: bool) -> float | int | None:
    """``value`` as a finite number (a whole one if ``whole``), text read as one; None
    for anything else (a bool, 1.5 where a whole number is needed, "abc", inf)."""
    number: Any = value
    if text is not None:
        try:
            number = int(text) if whole else float(text)
        except ValueError:
            return None
        if not text.isascii():  # int() reads other scripts' digits too
            return None
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    if whole and not isinstance(number, int):
        return None
    return number if math.isfinite(number) else None


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
    ``connect_timeout`` seconds), or accepts one but does not answer a first request
    within ``connect_timeout`` seconds (a black hole: a firewall or proxy that swallows
    the traffic, or a server that hangs); a local or in-memory place passes.

    One TCP connection; the first time an endpoint is seen in this process, also one
    unsigned ``HEAD /bucket`` request whose answer (any HTTP status) is all it waits
    for. Icechunk would retry such endpoints for 40 s to minutes before failing.
    Skipped behind an HTTP proxy, where only the proxy is reached directly.
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
        connection = socket.create_connection((parts.hostname, port), timeout=timeout)
    except OSError as err:
        raise _unreachable(place, endpoint, _why_unreachable(err, timeout)) from None
    with connection:
        if endpoint in _ANSWERED:
            return
        answered = _answers(connection, parts, place.s3["bucket"], timeout)
    if not answered:
        raise _silent(place, endpoint, timeout)
    _ANSWERED.add(endpoint)


#: Endpoints that answered a request in this process (probed once each).
_ANSWERED: set[str] = set()


def _answers(
    connection: socket.socket, parts: urllib.parse.SplitResult, bucket: str, timeout: float
) -> bool:
    """False when the endpoint behind ``connection`` does not start to answer an
    unsigned ``HEAD /bucket`` (or, over https, the TLS handshake) within ``timeout``
    seconds; any answer, even an error status or a closed connection, is True (what it
    means is for the request that follows to say)."""
    host = parts.hostname or ""
    try:
        stream: socket.socket = connection
        if parts.scheme == "https":
            stream = ssl.create_default_context().wrap_socket(connection, server_hostname=host)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        path = f"{parts.path.rstrip('/')}/{urllib.parse.quote(bucket)}"
        stream.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: {netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        stream.recv(1)
    except TimeoutError:
        return False
    except (OSError, ValueError):  # refused TLS, a reset: not silence
        return True
    return True


def _silent(place: Place, endpoint: str, timeout: float) -> StoreError:
    assert place.s3 is not None
    return StoreError(
        f"the S3 endpoint {endpoint} for bucket {place.s3['bucket']!r} ({place.label}) "
        f"accepted a connection but did not answer within {timeout:g} s; check the "
        f"endpoint URL (storage_options={{'endpoint_url': ...}}: is an S3 service "
        f"listening there?), a proxy or firewall between this machine and it, and the "
        f"service's status; on a slow network wait longer with "
        f"storage_options={{'connect_timeout': 30}}"
    )


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
def s3_errors(place: Place, *, committed: Callable[[], str | None] | None = None) -> Iterator[None]:
    """Re-raise the failures of S3 (no credentials, access denied, no such bucket,
    unreachable, failing or overloaded: 500s and 503s, answers that are not S3's) from
    s3fs, botocore and Icechunk as :class:`~zstore.errors.StoreError` naming the
    endpoint, the bucket and what to check; other errors, and other places' errors,
    pass unchanged.

    ``committed``: for a write, what it had committed when it failed (None: nothing),
    said at the end of the message (:func:`saved_or_not`).
    """
    try:
        yield
    except Exception as err:
        if place.s3 is None:  # not S3: nothing to say here
            raise
        failure = _s3_failure(err, place)
        if failure is None:
            raise
        if committed is not None and not _says_saved(str(failure)):
            failure = StoreError(f"{failure}; {saved_or_not(committed())}")
        raise failure from None


def s3_failure(err: BaseException, where: str) -> StoreError | None:
    """``err`` from Icechunk or s3fs, for the S3 location labelled ``where`` (a place
    :func:`resolve` made in this process), as a :class:`~zstore.errors.StoreError`
    naming the endpoint, the bucket and what to check; None for other locations and
    errors."""
    place = _S3_PLACES.get(where)
    return None if place is None else _s3_failure(err, place)


#: The S3 places :func:`resolve` made, by label (for :func:`s3_failure`).
_S3_PLACES: dict[str, Place] = {}


def _says_saved(text: str) -> bool:
    return saved_or_not(None) in text or "had been committed" in text


def _s3_failure(err: BaseException, place: Place) -> StoreError | None:
    assert place.s3 is not None
    bucket, endpoint = place.s3["bucket"], endpoint_of(place)
    if out_of_memory(err) or not _from_storage(err):
        return None  # zstore's own errors, the caller's, memory: said elsewhere
    if _zstore_error(err):
        if not isinstance(err, StoreError):
            return None
        if endpoint in str(err):
            return err  # said already (Icechunk's error, by icechunk_errors)
        # zstore's words for what failed (a trial's chunk): add where, and what to check
        located = StoreError(
            f"{err} (S3 at {endpoint}, bucket {bucket!r}: retry later, and check the "
            f"service's status)"
        )
        located.errno = err.errno
        return located
    names = {type(e).__name__ for e in _chain(err)}
    code = _s3_code(err)
    why = _first_words(err)
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
    status = _s3_status(err)
    if (status is not None and status >= 500) or code in _BUSY_CODES or _busy(err):
        said = f"HTTP {status}: {why}" if status is not None and str(status) not in why else why
        return StoreError(
            f"S3 at {endpoint} failed for bucket {bucket!r} ({place.label}): {said}; the "
            f"service is failing or overloaded: retry later, and check the service's "
            f"status (its status page or administrator)"
        )
    return StoreError(
        f"S3 at {endpoint} failed for bucket {bucket!r} ({place.label}): {why}; check "
        f"the endpoint URL (storage_options={{'endpoint_url': ...}}: an S3 service?) and "
        f"the service's status, then retry"
    )


#: Where the errors of S3 requests come from (and Icechunk's storage errors).
_STORAGE_MODULES = frozenset({"botocore", "aiobotocore", "s3fs", "aiohttp", "icechunk"})
#: S3 error codes of a service failing or overloaded (retry later).
_BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "502", "503"}
)


def _from_storage(err: BaseException) -> bool:
    """``err`` came from an S3 request or from Icechunk's storage (not a conflict)."""
    for e in _chain(err):
        if type(e).__name__ in ("ConflictError", "RebaseFailedError"):
            return False
        if type(e).__module__.split(".")[0] in _STORAGE_MODULES:
            return True
    return False


def _busy(err: BaseException) -> bool:
    """s3fs's words for a 503 (EBUSY), or S3's in an Icechunk error's text."""
    return any(
        (isinstance(e, OSError) and e.errno in (errno.EBUSY, errno.EAGAIN))
        or any(word in str(e) for word in _BUSY_WORDS)
        for e in _chain(err)
    )


_BUSY_WORDS = ("SlowDown", "Service Unavailable", "ServiceUnavailable", "InternalError")


def _first_words(err: BaseException) -> str:
    """What ``err`` says, in one line (Icechunk's errors: their first line and cause)."""
    for e in _chain(err):
        if type(e).__module__.split(".")[0] == "icechunk":
            return _compat.short_message(e)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _s3_status(err: BaseException) -> int | None:
    """The HTTP status of the S3 answer behind an s3fs or botocore error."""
    for e in _chain(err):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
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
    if _zstore_error(err) and getattr(err, "errno", None) is not None:
        return None  # said already (a read of the source that failed, by source_errors)
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


@contextlib.contextmanager
def gc_errors(where: str) -> Iterator[None]:
    """Re-raise a garbage collection of ``where`` that failed with a disk error (a
    read-only file system, no permission to delete, a full disk: Icechunk writes a new
    snapshot to expire versions) as a :class:`~zstore.errors.StoreError` saying so and
    what was removed: nothing on a read-only file system (nor when expiring failed)."""
    try:
        yield
    except Exception as err:
        failure = write_failure(err, where=where, what="gc")
        if failure is None:
            raise
        if failure.errno == errno.EROFS:
            files = [n for e in _chain(err) for n in _FILE_IN_TEXT.findall(str(e))]
            failure = StoreError(
                f"{where}: gc cannot remove anything: the file system is read-only "
                f"(EROFS{f': {files[0]}' if files else ''}); nothing was removed. Run gc "
                f"where the store is mounted read-write"
            )
            failure.errno = errno.EROFS
        else:
            head = str(failure).rsplit("; ", 1)[0]  # without "nothing of it was saved"
            failure = StoreError(
                f"{head}; gc stopped: what it removed (if anything) no kept version used, "
                f"so every kept version is intact; run it again once this is fixed"
            )
        raise failure from None


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


# -- reads that fail for want of a resource: the machine's failure, not the data's -------------

#: What ran out or refused when a read fails with this errno, and what to do.
READ_FIXES = {
    errno.EMFILE: (
        "the process reached its limit of open files{limit}: raise it (e.g. `ulimit -n "
        "4096` in the shell that runs zstore) and run again"
    ),
    errno.ENFILE: (
        "too many open files on this machine (its table of open files is full): close "
        "other programs, or raise the system's limit (sysctl fs.file-max), and run again"
    ),
    errno.ENOMEM: "the process ran out of memory: see the memory advice of zstore's README",
    errno.EIO: "the disk reported an input/output error: check the disk (and its cable)",
    errno.EACCES: (
        "no permission to read it: check the owner and permissions of the file and of "
        "its folders (`ls -l`), or run as a user who may read them"
    ),
    errno.EPERM: (
        "the operation is not permitted there: check the owner and permissions of the "
        "file and of its folders (`ls -l`), or run as a user who may read them"
    ),
}
_FILE_IN_TEXT = re.compile(r"(?:open|read) file (\S+?):")
#: How Rust's panics (Icechunk's runtime) give an errno: ``Os { code: 24, ... }``.
_RUST_OS_ERROR = re.compile(r"Os \{ code: (\d+)")


def read_failure(
    err: BaseException, *, where: str, what: str, then: str = ""
) -> StoreError | OutOfMemoryError | None:
    """The error to stop a read with when ``err`` says the machine or the storage
    failed, not the data: memory ran out (:class:`~zstore.errors.OutOfMemoryError`),
    too many open files, no permission to read, an I/O error, or an S3 service that did
    not answer (:class:`~zstore.errors.StoreError`, the errno kept in ``.errno``),
    naming ``where`` (a store or file), ``what`` was being read and the fix, then
    ``then`` (e.g. "nothing was found damaged"). None for other errors (a damaged or
    missing object is the caller's to report).

    Examples
    --------
    >>> err = read_failure(OSError(24, "Too many open files"), where="/d/e.zarr",
    ...                    what="verify")
    >>> err.errno, "`ulimit -n" in str(err)
    (24, True)
    >>> read_failure(ValueError("bad chunk"), where="/d/e.zarr", what="verify") is None
    True
    """
    end = f"; {then}" if then else ""
    if out_of_memory(err):
        detail = _compat.short_message(err) if str(err) else ""
        return OutOfMemoryError(
            f"{where}: {what} ran out of memory{f' ({detail})' if detail else ''}; close "
            f"other programs, use fewer threads (DASK_NUM_WORKERS=2 in the environment), "
            f"or raise the memory limit (`ulimit -v`){end}"
        )
    found = _read_errno(err)
    if found is None:
        if not _service_failure(err):
            return None
        said = s3_failure(err, where.partition("::")[0]) or StoreError(
            f"{where}: {what} failed: the storage did not answer ({_first_words(err)}); "
            f"check that it is reachable and working, then retry"
        )
        return StoreError(f"{said}{end}")
    code, text, name = found
    on = f": {name}" if name else ""
    fix = READ_FIXES[code].format(limit=_open_files_limit())
    failure = StoreError(
        f"{f'{where}: ' if where else ''}{what} failed: {text} "
        f"({errno.errorcode.get(code, code)}{on}); {fix}{end}"
    )
    failure.errno = code
    return failure


@contextlib.contextmanager
def source_errors(source: str, *, what: str, then: str = "") -> Iterator[None]:
    """Re-raise a failure to read the store ``source`` (an experiment's
    :attr:`~zstore.Experiment.location`) while writing elsewhere (an export) as
    :func:`read_failure` says it, naming ``source`` and ``what`` was being done, then
    ``then``: a disk error on a file inside ``source`` (no permission to read a chunk, an
    I/O error), or its S3 service failing. Other errors (the target's disk, full or
    not writable) pass unchanged, for the writer to say."""
    try:
        yield
    except Exception as err:
        if not _from_source(err, source):
            raise
        failure = read_failure(err, where=source, what=what, then=then)
        if failure is None:
            raise
        raise failure from None


def _from_source(err: BaseException, source: str) -> bool:
    """``err`` is a failure to read ``source``: its errno names a file inside it (a
    local store), or the store is on S3 and its service failed."""
    base = source.partition("::")[0]
    if base in _S3_PLACES:
        return _service_failure(err)
    found = _read_errno(err)
    name = found[2] if found is not None else None
    if not name or not os.path.isabs(name):
        return False
    return os.path.normpath(name).startswith(os.path.join(os.path.normpath(base), ""))


def open_files_failure(err: BaseException, *, what: str) -> StoreError | None:
    """``err`` said as the limit of open files (:data:`READ_FIXES`) when it, or an error
    it came from, is EMFILE or ENFILE (whatever was being read or written); else None."""
    found = _read_errno(err)
    if found is None or found[0] not in (errno.EMFILE, errno.ENFILE):
        return None
    failure = read_failure(err, where="", what=what)
    return failure if isinstance(failure, StoreError) else None


#: Fewer open files than this and zstore fails on its first reads (Icechunk, zarr's
#: event loop and numpy each hold a few); the CLI checks it before it starts.
MIN_OPEN_FILES = 32


def check_open_files() -> None:
    """Raise :class:`~zstore.errors.StoreError` when the process's limit of open files
    (``ulimit -n``) is below :data:`MIN_OPEN_FILES` and cannot be raised to it (its hard
    limit is lower): zstore would fail midway, with errors from deep inside its
    libraries (asyncio's and Icechunk's)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= MIN_OPEN_FILES:
        return
    if hard == resource.RLIM_INFINITY or hard >= MIN_OPEN_FILES:
        resource.setrlimit(resource.RLIMIT_NOFILE, (MIN_OPEN_FILES, hard))
        return
    failure = StoreError(
        f"the limit of open files is {soft} (`ulimit -n`); zstore needs at least "
        f"{MIN_OPEN_FILES}: raise it (e.g. `ulimit -n 4096` in the shell that runs zstore)"
    )
    failure.errno = errno.EMFILE
    raise failure


def _read_errno(err: BaseException) -> tuple[int, str, str | None] | None:
    """The errno of :data:`READ_FIXES` behind ``err``, its text and the file named."""
    for e in _chain(err):
        if _zstore_error(e) and not isinstance(e, StoreError):
            return None  # zstore's verdict on the data (a checksum, a missing chunk)
        if isinstance(e, OSError) and e.errno in READ_FIXES and not _zstore_error(e):
            return e.errno, e.strerror or str(e), e.filename and str(e.filename)
        found = _OS_ERROR_IN_TEXT.search(str(e)) or _RUST_OS_ERROR.search(str(e))
        if found and int(found[1]) in READ_FIXES:
            names = _FILE_IN_TEXT.findall(str(e))
            code = int(found[1])
            return code, os.strerror(code), names[0] if names else None
    return None


def _service_failure(err: BaseException) -> bool:
    """A storage service (S3) that failed to answer, refused or timed out: not a
    missing or damaged object."""
    if not _from_storage(err) or any(
        _compat.is_missing_object(e) or _compat.is_corrupt_object(e) for e in _chain(err)
    ):
        return False
    status, text = _s3_status(err), " ".join(str(e) for e in _chain(err))
    return (
        (status is not None and status >= 500)
        or _s3_code(err) in _BUSY_CODES | _ACCESS_CODES
        or _busy(err)
        or bool({type(e).__name__ for e in _chain(err)} & _UNREACHABLE)
        or any(word in text for word in _SERVICE_WORDS)
    )


#: Icechunk's words (from the AWS SDK) for a request that got no usable answer.
_SERVICE_WORDS = ("service error", "dispatch failure", "timed out", "timeout", "io error")


def _open_files_limit() -> str:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return ""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return "" if soft == resource.RLIM_INFINITY else f" (`ulimit -n` is {soft})"


def _zstore_error(err: BaseException) -> bool:
    """An error zstore raised on purpose (its message is already the user's)."""
    return type(err).__module__ == "zstore.errors"
