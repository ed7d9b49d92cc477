"""The one place where zstore leans on other libraries' internals or global switches.

Each use names the versions it was checked against; ``tests/test_compat.py`` fails
loudly when one of them changes.

- Icechunk (checked: 1.1.21) logs a warning from Rust, on stderr, whenever local
  filesystem storage is created ("not safe for concurrent commits"). zstore serialises
  local commits with an OS lock (:mod:`zstore.transaction`), so the warning would only
  mislead users: it is silenced for that one call, then the filter is reset to what
  ``ICECHUNK_LOG`` says (Icechunk's own default). A commit that conflicts is logged by
  Icechunk as a warning too ("Snapshot cannot be rebased"), while zstore raises its own
  error that says what to do: silenced the same way around commits.
- Icechunk's errors carry a multi-line context; zstore re-raises them as its own errors
  that name the experiment.
- Icechunk's ``Storage`` has no accessor for where it points: ``local_path_of`` reads
  the folder of a local storage from its repr (checked: 1.1.21), so that a repository
  opened through a user-built storage still gets zstore's commit lock and leases.
- anndata (checked: 0.12.19) wraps aligned awkward arrays of views in a copy-on-write
  view type that refuses subclasses; its only hook is the private singledispatch
  ``anndata._core.views.as_view``. ``let_anndata_view`` registers zstore's immutable
  RaggedArray there (its view is itself), the first time a RaggedArray is made.
- awkward (checked: 2.14.0) re-picks an ``ak.Array``'s class from behaviours whenever
  its layout changes, through ``Array._update_class``; RaggedArray overrides it to stay
  itself, resetting the caches awkward's own version resets (``reset_awkward_caches``).
- anndata (checked: 0.12.19) warns "Support for Awkward Arrays is currently experimental"
  (``ExperimentalFeatureWarning``) whenever an awkward array enters an aligned mapping,
  which zstore does for every trial's pixel masks, and then silences it with a global
  filter of its own (``anndata.utils.warn_once``). Users of zstore did not choose awkward,
  so ``quiet_awkward_notice`` installs that same filter (this message, this category,
  nothing else) the first time a RaggedArray is made, and again if a
  ``warnings.catch_warnings`` block (the CLI's, pytest's) has dropped it: the one change
  zstore makes to the process's warning filters, and only once masks are in use.
- anndata (checked: 0.12.19) validates values put in an aligned mapping against its
  known array types; a lazy RaggedArray is aligned by construction, so zstore puts it
  in the mapping's private ``_data`` (``set_aligned``).
- zarr-python (checked: 3.1.6) has no public synchronous access to a store's keys:
  ``list_keys`` and ``read_bytes`` drive the async ``Store`` API with zarr's own ``sync``.
- zarr-python (checked: 3.1.6) reads a node's metadata document with no error type of
  its own: a document that is not JSON raises ``JSONDecodeError``, one whose attributes
  are not an object ``TypeError``, and so on, naming neither the key nor the node; and
  listing a group parses every child's document, so one damaged child fails the whole
  listing. ``node_documents`` reads the documents itself and checks each with zarr's
  parsers (``GroupMetadata.from_dict``, ``ArrayV3Metadata.from_dict``, in
  ``zarr.core``), so zstore can name the damaged key and keep listing the others.
- Icechunk (checked: 1.1.21) raises one type, ``IcechunkError``, for every storage
  failure: whether an object is gone (deleted or truncated) or the service did not
  answer can only be told by its text, in ``is_missing_object`` and nowhere else.
  Checksums are not told by text: zstore checks a chunk's crc32c itself
  (:mod:`zstore.shards`) and raises :class:`~zstore.errors.ChecksumMismatchError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import icechunk as ic
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.core.sync import sync

from .errors import StoreError

__all__ = [
    "NodeDocument",
    "child_names",
    "damaged_ref",
    "document_key",
    "has_node",
    "icechunk_errors",
    "is_corrupt_object",
    "is_missing_object",
    "is_storage_error",
    "let_anndata_view",
    "list_children",
    "list_keys",
    "local_path_of",
    "local_storage",
    "node_documents",
    "parse_node_document",
    "quiet_awkward_notice",
    "quiet_icechunk",
    "read_bytes",
    "read_many",
    "reset_awkward_caches",
    "set_aligned",
    "set_dimension_names",
    "short_message",
    "stored_sizes",
]

CHECKED_ICECHUNK = "1.1.21"
CHECKED_ZARR = "3.1.6"


def read_bytes(store: Store, key: str) -> bytes | None:
    """The whole object ``key`` of ``store``, or None when there is none."""

    async def get() -> Any:
        return await store.get(key, default_buffer_prototype())

    value = sync(get())
    return None if value is None else bytes(value.to_bytes())


def read_many(store: Store, keys: list[str]) -> list[bytes | None]:
    """The whole objects ``keys`` of ``store`` (None where there is none), fetched
    concurrently in one call."""

    async def get_all() -> list[Any]:
        proto = default_buffer_prototype()
        return await asyncio.gather(*(store.get(key, proto) for key in keys))

    return [None if v is None else bytes(v.to_bytes()) for v in sync(get_all())]


def list_children(store: Store, prefixes: list[str]) -> list[list[str]]:
    """The names directly under each of ``prefixes`` (Zarr's ``list_dir``), concurrently."""

    async def one(prefix: str) -> list[str]:
        return [name async for name in store.list_dir(prefix)]

    async def every() -> list[list[str]]:
        return list(await asyncio.gather(*(one(p) for p in prefixes)))

    return sync(every())


def set_dimension_names(array: Any, names: Sequence[str]) -> None:
    """Record ``names`` as a Zarr v3 array's ``dimension_names`` (its metadata document
    rewritten in place; zarr-python has no public call for it). xarray needs them to
    read an array; anndata ignores them."""
    meta = array.metadata
    if getattr(meta, "zarr_format", None) != 3 or len(names) != array.ndim:
        return
    new = dataclasses.replace(meta, dimension_names=tuple(names))
    document = new.to_buffer_dict(default_buffer_prototype())["zarr.json"]
    key = f"{array.path}/zarr.json" if array.path else "zarr.json"
    sync(array.store.set(key, document))


def stored_sizes(
    store: Store, prefixes: list[str], *, fails: Callable[[BaseException], bool] | None = None
) -> list[int | None]:
    """Bytes stored under each of ``prefixes``, concurrently (from listings and chunk
    sizes; Icechunk answers from its manifests and reads no chunk). None: unknown (a
    manifest of that prefix cannot be read: the store is damaged there). An error for
    which ``fails`` is True (the storage failed, not the data) is raised."""

    async def every() -> list[Any]:
        sizes = (store.getsize_prefix(p) for p in prefixes)
        return list(await asyncio.gather(*sizes, return_exceptions=True))

    found = sync(every())
    for size in found:
        if isinstance(size, BaseException) and not is_storage_error(size):
            raise size
        if isinstance(size, BaseException) and fails is not None and fails(size):
            raise size
    return [None if isinstance(size, BaseException) else int(size) for size in found]


def list_keys(store: Store, prefix: str) -> list[str]:
    """Every key of ``store`` that starts with ``prefix``."""

    async def collect() -> list[str]:
        return [key async for key in store.list_prefix(prefix)]

    return sync(collect())


@contextlib.contextmanager
def quiet_icechunk(*targets: str) -> Iterator[None]:
    """Silence Icechunk's log messages below ERROR from ``targets`` for one call."""
    directive = os.environ.get("ICECHUNK_LOG") or "warn"
    ic.set_logs_filter(",".join([*(f"{t}=error" for t in targets), directive]))
    try:
        yield
    finally:
        ic.set_logs_filter(None)  # back to ICECHUNK_LOG, as Icechunk set it at import


CHECKED_ANNDATA = "0.12.19"
CHECKED_AWKWARD = "2.14.0"
_VIEWS_REGISTERED: set[type] = set()


AWKWARD_NOTICE = "Support for Awkward Arrays is currently experimental"


def quiet_awkward_notice() -> None:
    """Ignore anndata's notice that awkward arrays are experimental, and only it."""
    from anndata import ExperimentalFeatureWarning

    pattern = re.escape(AWKWARD_NOTICE)
    for action, message, category, _, _ in warnings.filters:
        ours = action == "ignore" and category is ExperimentalFeatureWarning
        if ours and message is not None and message.pattern == pattern:
            return  # adding it again would reset every module's warning registry
    warnings.filterwarnings("ignore", message=pattern, category=ExperimentalFeatureWarning)


def let_anndata_view(cls: type) -> None:
    """Let anndata make views of AnnData objects that hold ``cls`` (an immutable array)."""
    if cls in _VIEWS_REGISTERED:
        return
    from anndata._core.views import as_view

    as_view.register(cls)(lambda array, view_args: array)
    _VIEWS_REGISTERED.add(cls)


def reset_awkward_caches(array: Any) -> None:
    """What ``awkward.Array._update_class`` resets, without changing the class."""
    array._numbaview = None
    array._cpp_type = array._generator = array._lookup = None


def set_aligned(adata: Any, attr: str, key: str, value: Any) -> None:
    """Put ``value`` in ``adata.<attr>[key]`` without anndata's type check."""
    getattr(adata, attr)._data[key] = value


def local_path_of(storage: ic.Storage) -> str | None:
    """The folder of a local-filesystem ``icechunk.Storage`` (None for other storages).

    Icechunk 1.1 exposes no accessor; its repr is
    ``ObjectStorage(backend=LocalFileSystemObjectStoreBackend(path=...))``.
    """
    found = re.fullmatch(
        r"ObjectStorage\(backend=LocalFileSystemObjectStoreBackend\(path=(.*)\)\)",
        repr(storage),
    )
    return found.group(1) if found else None


def local_storage(path: str) -> ic.Storage:
    """``icechunk.local_filesystem_storage(path)`` without its concurrency warning."""
    with quiet_icechunk("icechunk::storage::object_store"):
        return ic.local_filesystem_storage(path)


def short_message(err: BaseException) -> str:
    """The first line of an Icechunk error and its root cause (they carry a long context)."""
    lines = [line.strip().strip("x|").strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return type(err).__name__
    causes = [line.lstrip("`|->").strip() for line in lines if line.startswith(("|->", "`->"))]
    root = causes[-1] if causes else ""
    return f"{lines[0]}: {root}" if root and root not in lines[0] else lines[0]


#: What Icechunk's storage errors say when an object is gone or shorter than its
#: manifest says (local files and S3), as opposed to a service that failed to answer.
_MISSING = (
    "not found",
    "NoSuchKey",
    "InvalidRange",
    "Requested range was invalid",
    "range is not satisfiable",
)


def is_missing_object(err: BaseException) -> bool:
    """A storage error that means data is gone (deleted or truncated), not unreachable.

    Told by text: Icechunk raises ``IcechunkError`` for both
    (``tests/test_damaged_stores.py`` pins the words of a deleted and of a truncated
    chunk)."""
    text = str(err)
    return is_storage_error(err) and any(marker in text for marker in _MISSING)


#: What Icechunk (checked: 1.1.21) says when a manifest or snapshot object no longer
#: decodes: cut short ("incomplete frame", "early eof", zstd's), overwritten ("Data
#: corruption detected", "invalid magic numbers in file"). Icechunk wraps them in an
#: "I/O error" that carries no errno: the bytes are damaged, on a local disk or on S3.
_CORRUPT = (
    "corruption detected",
    "incomplete frame",
    "early eof",
    "invalid magic numbers",
    "unknown frame descriptor",
)


def is_corrupt_object(err: BaseException) -> bool:
    """A storage error that means an object's bytes are damaged (Icechunk: "Data
    corruption detected", a manifest or snapshot that no longer decodes, e.g. one cut
    short: "I/O error: incomplete frame"), not that the storage is unreachable:
    retrying does not help."""
    text = str(err).lower()
    return is_storage_error(err) and any(marker in text for marker in _CORRUPT)


def is_storage_error(err: BaseException) -> bool:
    """An error from Icechunk's storage layer (e.g. a chunk object deleted or truncated)."""
    return isinstance(err, ic.IcechunkError | FileNotFoundError)


_REF_OF = re.compile(r"fetch_(branch|tag)\s+with name=\"([^\"]*)\"")


def damaged_ref(err: BaseException) -> str | None:
    """The key of the branch or tag file (``refs/branch.main/ref.json``) that Icechunk
    (checked: 1.1.21) could not parse ("cannot serialize ref json"), or None."""
    text = str(err)
    if not is_storage_error(err) or "ref json" not in text:
        return None
    found = _REF_OF.search(text)
    kind, name = found.groups() if found else ("branch", "main")
    return f"refs/{kind}.{name}/ref.json"


@contextlib.contextmanager
def icechunk_errors(where: str) -> Iterator[None]:
    """Re-raise Icechunk's storage errors as :class:`~zstore.errors.StoreError` naming
    ``where``; conflicts and zstore's own errors pass through."""
    try:
        yield
    except (ic.ConflictError, ic.RebaseFailedError):
        raise
    except ic.IcechunkError as err:
        if "already exists" in str(err):
            from .errors import ExperimentExistsError

            raise ExperimentExistsError(
                f"{where}: another process created a repository there at the same time "
                f"({short_message(err)}); open it, or choose another path"
            ) from err
        if (ref := damaged_ref(err)) is not None:
            from .errors import NotAnExperimentError

            raise NotAnExperimentError(
                f"{where}: its branch file {ref} is damaged ({short_message(err)}), so no "
                f"version can be found; restore {ref} from a copy of the store"
            ) from None
        from .store import s3_failure  # on S3: say the endpoint, bucket and what to check

        failure = s3_failure(err, where)
        if failure is not None:
            raise failure from err
        from .store import open_files_failure  # too many open files: not the storage's

        if (files := open_files_failure(err, what=f"using {where}")) is not None:
            raise files from None
        raise StoreError(
            f"{where}: the storage failed: {short_message(err)}; check that the location is "
            f"reachable and complete (`zstore verify {where}`)"
        ) from err
    except BaseException as err:
        # Icechunk's Rust side panics (pyo3's PanicException, a BaseException) on some
        # local paths, e.g. a dangling symlink: a storage error, not a reason to crash.
        if type(err).__name__ != "PanicException":
            raise
        from .store import open_files_failure  # no file left for Icechunk's runtime

        if (files := open_files_failure(err, what=f"using {where}")) is not None:
            raise files from None
        raise StoreError(
            f"{where}: the storage refused the location ({short_message(err)}); check that "
            f"it is a folder (or a path where one can be made), not a file or a broken link"
        ) from None


# -- metadata documents ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeDocument:
    """The metadata document of one Zarr v3 node (``<path>/zarr.json``), as found."""

    #: the document's key in the store (``"trials/t-005/zarr.json"``)
    key: str
    #: "group", "array", "absent" (no document: no node) or "damaged"
    kind: str
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: for "damaged": what is wrong, as the end of a sentence ("is not valid JSON (...)")
    problem: str = ""

    @property
    def readable(self) -> bool:
        return self.kind in ("group", "array")


def document_key(path: str) -> str:
    """The key of the metadata document of the node at ``path`` ("" is the root)."""
    return f"{path.strip('/')}/zarr.json" if path.strip("/") else "zarr.json"


def has_node(store: Store, path: str) -> bool:
    """Whether a node (group or array, readable or not) is at ``path``: its metadata
    document is there (``name in group`` reads and parses it, and fails if it is damaged)."""
    return read_bytes(store, document_key(path)) is not None


def child_names(store: Store, path: str) -> list[str]:
    """The names of the nodes directly under the group at ``path``, sorted, without
    parsing their metadata (zarr's ``group_keys`` fails on one damaged child)."""
    (names,) = list_children(store, [path.strip("/")])
    return sorted(n for n in names if n != "zarr.json")


def node_documents(store: Store, paths: Sequence[str]) -> list[NodeDocument]:
    """The metadata documents of the nodes at ``paths``, fetched concurrently, each
    checked as zarr-python would read it (a damaged one does not stop the others)."""
    keys = [document_key(p) for p in paths]
    found = read_many(store, keys)
    return [parse_node_document(k, raw) for k, raw in zip(keys, found, strict=True)]


def parse_node_document(key: str, raw: bytes | None) -> NodeDocument:
    """What the document ``raw`` (stored at ``key``; None: not there) holds, or what is
    wrong with it."""
    if raw is None:
        return NodeDocument(key, "absent")
    try:
        doc = json.loads(raw)
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        return NodeDocument(key, "damaged", problem=f"is not valid JSON ({err})")
    if not isinstance(doc, dict):
        found = _json_type(doc)
        return NodeDocument(key, "damaged", problem=f"holds a JSON {found}, not an object")
    if doc.get("zarr_format") != 3:
        return NodeDocument(
            key, "damaged", problem=f"has zarr_format {doc.get('zarr_format')!r}, expected 3"
        )
    kind = doc.get("node_type")
    if kind not in ("group", "array"):
        return NodeDocument(
            key, "damaged", problem=f"has node_type {kind!r}, expected 'group' or 'array'"
        )
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict):
        found = _json_type(attributes)
        return NodeDocument(
            key, "damaged", problem=f"has 'attributes' that are a JSON {found}, not an object"
        )
    try:  # zarr's own parsers: whatever they refuse, zarr cannot open
        parsed: Any = (GroupMetadata if kind == "group" else ArrayV3Metadata).from_dict(doc)
    except Exception as err:
        return NodeDocument(
            key, "damaged", problem=f"is not valid Zarr metadata ({type(err).__name__}: {err})"
        )
    return NodeDocument(key, kind, dict(parsed.attributes))


def _json_type(value: Any) -> str:
    names = {str: "string", list: "array", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
