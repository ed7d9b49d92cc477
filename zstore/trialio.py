"""One trial group <-> one AnnotatedData, in anndata's own Zarr layout.

X and layers are sharded ROIs x frames arrays written by zstore (anndata's writer would
drop dimension names, sharding and checksums); obs, var, uns and the other aligned
elements are written by ``anndata.io.write_elem``; ragged pixel masks in obsm use
anndata's awkward encoding, read lazily by :mod:`zstore.ragged`.

This module reads and writes groups; it does not commit. The caller hands it a group
of a transaction (:mod:`zstore.transaction`) or of a plain Zarr store (an export), and a
``write_arrays`` function that streams the matrices into it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import zarr
from anndata.io import read_elem, write_elem
from zarr.codecs import Crc32cCodec, ZstdCodec

from . import _compat
from ._version import __version__
from .annotated import ALIGNED, AnnotatedData
from .arrays import (
    Progress,
    StorageConfig,
    create_matrix,
    create_matrix_like,
    lazy_matrix,
    read_errors,
)
from .changes import Changes, StoredState, matrix_name, stored_state
from .documents import damaged_documents, damaged_text, trial_fix
from .errors import (
    InvalidArgumentError,
    MissingChunkError,
    NotAnExperimentError,
    TrialChangedError,
    UnstorableValueError,
)
from .images import check_readable, join_images, split_images
from .processing.provenance import describe, provenance_of
from .ragged import RaggedArray, as_ragged, is_ragged_group, read_ragged, write_ragged
from .shards import chunk_damage
from .storable import check_names, prepare
from .store import ENCODING_VERSION, TRIAL_ENCODING

__all__ = [
    "WriteArrays",
    "apply_changes",
    "describe_arrays",
    "name_dimensions",
    "read_trial",
    "structure_error",
    "trial_attributes",
    "trial_problems",
    "trial_summary",
    "trial_token",
    "update_processing",
    "write_trial",
]

ANNDATA_ENCODING = {"encoding-type": "anndata", "encoding-version": "0.1.0"}
DICT_ENCODING = {"encoding-type": "dict", "encoding-version": "0.1.0"}

WriteArrays = Callable[[Sequence[Any], Sequence[zarr.Array], "Progress | None"], None]
"""Streams ``sources[i]`` into ``targets[i]`` whole shards at a time."""
PutImage = Callable[[str, np.ndarray], str]
"""Stores one summary image in the experiment and returns its path (zstore.images)."""
GetImage = Callable[[str, str], np.ndarray]
"""Reads the summary image at a path of the experiment (zstore.images)."""


@contextmanager
def _anndata_writes() -> Iterator[None]:
    # Explicit settings: format 3, no auto-sharding (it warns on every write_elem), and
    # nullable strings (text columns with missing values stay missing: zstore.storable).
    with ad.settings.override(
        zarr_write_format=3, auto_shard_zarr_v3=False, allow_write_nullable_strings=True
    ):
        yield


#: Every array zstore or anndata writes for a trial carries a crc32c checksum, so a
#: changed byte in obs, var, uns or obsm is an error too, not a different value.
CHECKSUMMED = {"compressors": [ZstdCodec(level=3), Crc32cCodec()]}


def _write(group: zarr.Group, key: str, value: Any) -> None:
    write_elem(group, key, value, dataset_kwargs=CHECKSUMMED)


def trial_attributes(
    trial_id: str, *, token: str, created: int, provenance: Mapping[str, Any]
) -> dict[str, Any]:
    """The attributes of a trial group: anndata's encoding and zstore's own entry."""
    return {
        **ANNDATA_ENCODING,
        "zstore": {
            "encoding-type": TRIAL_ENCODING,
            "encoding-version": ENCODING_VERSION,
            "trialID": trial_id,
            "created": int(created),
            "commit": token,
            "provenance": dict(provenance),
        },
    }


def trial_summary(adata: ad.AnnData) -> dict[str, Any]:
    """What a collection's table shows of a trial, kept in the trial group's attributes
    (so a table of thousands of trials reads no chunk): shape, fs, session time, layers,
    the number of cells (obs ``iscell``) and the scalar fields of ``uns["processing"]``."""
    n_rois, n_frames = (int(n) for n in adata.shape)
    fs = _finite(adata.uns.get("fs"))
    start = duration = None
    if "time" in adata.var.columns and n_frames:
        time = pd.to_numeric(adata.var["time"], errors="coerce").to_numpy(dtype=float)
        start = _finite(time[0])
        if fs:
            duration = n_frames / fs
        elif n_frames > 1 and start is not None and _finite(time[-1]) is not None:
            duration = (float(time[-1]) - start) * n_frames / (n_frames - 1)
    elif fs:
        duration = n_frames / fs
    summary: dict[str, Any] = {
        "n_rois": n_rois,
        "n_frames": n_frames,
        "fs": fs,
        "start_s": start,
        "duration_s": duration,
        "layers": sorted(str(k) for k in adata.layers),
    }
    # `zstore info` shows these without reading uns or obs chunks
    if "iscell" in adata.obs.columns:
        iscell = pd.to_numeric(adata.obs["iscell"], errors="coerce").to_numpy(dtype=float)
        summary["n_cells"] = int(np.sum(iscell == 1))
    records = adata.uns.get("processing")
    summary["processing"] = {
        str(name): _scalar_fields(record)
        for name, record in (records.items() if isinstance(records, Mapping) else ())
        if isinstance(record, Mapping)
    }
    return summary


def _scalar_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON scalars of a processing record (arrays such as ROI names left out)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            continue
        if value is None or isinstance(value, str | bool | int | float):
            out[str(key)] = value
    return out


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def trial_token(group: zarr.Group) -> str:
    """The commit token of a trial group ('' when it has none)."""
    meta = group.attrs.get("zstore")
    return str(meta.get("commit", "")) if isinstance(meta, dict) else ""


# -- writing a whole trial ---------------------------------------------------------------


def write_trial(
    group: zarr.Group,
    trial_id: str,
    adata: ad.AnnData,
    *,
    config: StorageConfig,
    write_arrays: WriteArrays,
    provenance: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    images: PutImage | None = None,
) -> None:
    """Write every element of ``adata`` into the empty trial ``group``.

    Small elements first, so that one that cannot be stored (an uns value anndata
    cannot write, a bad name) fails before gigabytes of matrices are streamed.
    ``images``: where the summary images of uns go (once per experiment; the trial's
    uns then refers to them); None keeps them in uns (a self-contained export).
    """
    check_names(adata, f"trial {trial_id!r}")
    X = adata.X
    if X is None:
        raise InvalidArgumentError(
            f"trial {trial_id!r}: the AnnotatedData has no X to store; pass "
            f"zs.AnnotatedData(X=<ROIs x frames array>)"
        )
    _check_matrix(f"trial {trial_id!r} X", X)
    for name, data in adata.layers.items():
        _check_matrix(f"trial {trial_id!r} layer {name!r}", data)
    group.attrs.update(
        trial_attributes(
            trial_id, token=uuid.uuid4().hex, created=time.time_ns(), provenance=provenance or {}
        )
    )
    prepare(adata, f"trial {trial_id!r}")
    with _anndata_writes():
        _write(group, "obs", adata.obs)
        _write(group, "var", adata.var)
        _write(group, "uns", _stored_uns(adata, images))
        for attr in ALIGNED:
            node = _dict_group(group, attr)
            for key, value in getattr(adata, attr).items():
                _write_aligned(node, key, value)
    layers = _dict_group(group, "layers")
    targets = [_new_matrix(group, "X", X, config)]
    targets += [_new_matrix(layers, name, data, config) for name, data in adata.layers.items()]
    write_arrays([X, *adata.layers.values()], targets, progress)
    _report_nan_rows(f"trial {trial_id!r}", {"X": X, **adata.layers})
    meta = dict(group.attrs["zstore"])  # type: ignore[arg-type]
    meta["summary"] = trial_summary(adata)
    group.attrs["zstore"] = meta
    name_dimensions(group)


def _stored_uns(adata: ad.AnnData, images: PutImage | None) -> dict[str, Any]:
    uns = dict(adata.uns)
    if images is None:  # the images themselves (an export): a damaged one is an error
        check_readable(uns)
        return uns
    return split_images(uns, images)


def _report_nan_rows(label: str, arrays: Mapping[str, Any]) -> None:
    # What the blocks of a lazy dF/F found while they were written: one warning each.
    for name, data in arrays.items():
        nan_rows = getattr(data, "nan_rows", None)
        if nan_rows is not None:
            nan_rows.warn(f"{label} layer {name!r}: ")


def _new_matrix(group: zarr.Group, name: str, source: Any, config: StorageConfig) -> zarr.Array:
    shape = tuple(source.shape)
    return create_matrix(
        group, name, shape=(shape[0], shape[1]), dtype=_dtype(source), config=config
    )


def _check_matrix(label: str, source: Any) -> None:
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 2:
        raise InvalidArgumentError(f"{label} must be 2-D (ROIs x frames), got shape {shape}")
    dtype = _dtype(source)
    if dtype.kind not in "fiub":
        raise UnstorableValueError(
            f"{label} must hold real numbers, got dtype {dtype}; store the real part "
            f"(np.real(data)) or the magnitude (np.abs(data)) instead"
        )


def _dtype(source: Any) -> np.dtype:
    return np.dtype(getattr(source, "dtype", np.float32))


def _dict_group(group: zarr.Group, name: str) -> zarr.Group:
    if name in group:
        return group[name]  # type: ignore[return-value]
    return group.create_group(name, attributes=DICT_ENCODING)


def _write_aligned(node: zarr.Group, key: str, value: Any) -> None:
    # a plain awkward list of numbers (a to_memory() result's masks) is stored as
    # zstore's own: chunked so that a few ROIs read lazily
    ragged = as_ragged(value)
    if ragged is not None:
        write_ragged(node, key, ragged, compressors=CHECKSUMMED["compressors"])
    elif isinstance(value, da.Array):
        _write(node, key, value.compute())
    else:
        _write(node, key, value)


# -- saving what changed -----------------------------------------------------------------


def update_processing(adata: ad.AnnData, state: StoredState) -> None:
    """Make zstore's records in ``uns["processing"]`` describe the layers in hand.

    A layer computed by a zstore function gets its record (function, parameters, and
    its inputs named as stored). A record zstore made for a layer that is then removed
    or replaced by other data goes with it. Records the user wrote are kept as written.
    """
    if "processing" not in adata.uns:
        records: dict[str, Any] = {}
    else:
        records = dict(adata.uns["processing"])
    stored_layers = {k.split("/", 1)[1]: v for k, v in state.matrices.items() if "/" in k}
    for name in list(records):
        if name not in adata.layers and _made_by_zstore(records[name]):
            del records[name]  # the record of a layer that is gone
    for name, data in adata.layers.items():
        if isinstance(data, da.Array) and data.name == stored_layers.get(name):
            continue  # unchanged: keeps its record
        if name in records and not _made_by_zstore(records[name]):
            continue  # the user's own record of this data (add_layer(provenance=...))
        info = processing_record(data, state)
        if info is not None:
            records[name] = info
        else:
            records.pop(name, None)  # zstore's record of the data this layer replaced
    if records:
        adata.uns["processing"] = records
    elif "processing" in adata.uns:
        del adata.uns["processing"]


def _made_by_zstore(record: Any) -> bool:
    return isinstance(record, Mapping) and "zstore_version" in record


def apply_changes(
    group: zarr.Group,
    trial_id: str,
    adata: ad.AnnData,
    state: StoredState,
    changes: Changes,
    *,
    write_arrays: WriteArrays,
    progress: Progress | None = None,
    images: PutImage | None = None,
) -> None:
    """Write ``changes`` (from :func:`zstore.changes.diff`) into the trial ``group``.

    ``group`` is the trial as it is now in the transaction; it must still be the
    version ``state`` was loaded from, else :class:`TrialChangedError`.
    """
    label = f"trial {trial_id!r}"
    if changes.x_replaced:
        raise ValueError(
            f"{label}: X is the raw fluorescence and is written once; store derived data "
            f"as a layer instead (trial.data.add_layer('name', data))"
        )
    found = trial_token(group)
    if found != state.token:
        raise TrialChangedError(
            f"{label} was saved by someone else since it was loaded (version "
            f"{state.version}); nothing was saved: load it again and redo the change"
        )
    check_names(adata, label, stored=state)
    for name in changes.layers_written:
        _check_matrix(f"{label} layer {name!r}", adata.layers[name])
    with _anndata_writes():
        for key in ("obs", "var"):
            if key in changes.written:
                _write(group, key, getattr(adata, key))
        if "uns" in changes.written:
            _write(group, "uns", _stored_uns(adata, images))
        for path in changes.removed:
            attr, _, key = path.partition("/")
            del group[attr][key]  # type: ignore[union-attr]
        for path in changes.written:
            attr, _, key = path.partition("/")
            if attr in ALIGNED:
                _write_aligned(_dict_group(group, attr), key, getattr(adata, attr)[key])
    layers = _dict_group(group, "layers")
    for name in changes.layers_removed:
        del layers[name]
    template = cast(zarr.Array, group["X"])
    targets = [
        create_matrix_like(layers, name, template, dtype=_dtype(adata.layers[name]))
        for name in changes.layers_written
    ]
    write_arrays([adata.layers[n] for n in changes.layers_written], targets, progress)
    _report_nan_rows(label, {n: adata.layers[n] for n in changes.layers_written})
    meta = dict(group.attrs["zstore"])  # type: ignore[arg-type]
    meta["commit"] = uuid.uuid4().hex
    meta["summary"] = trial_summary(adata)
    group.attrs["zstore"] = meta
    name_dimensions(group)


def processing_record(data: Any, state: StoredState) -> dict[str, Any] | None:
    """How ``data`` was computed, with its inputs named as stored (None: unknown)."""
    record = provenance_of(data)
    if record is None:
        return None
    stored = {dask_name: path for path, dask_name in state.matrices.items()}
    return {**describe(record, stored), "zstore_version": __version__}


# -- reading -------------------------------------------------------------------------------


def read_trial(
    group: zarr.Group,
    trial_id: str,
    *,
    version: str,
    explain: Callable[[], str] | None = None,
    elsewhere: Mapping[str, Any] | None = None,
    missing_reads_as_zeros: bool = False,
    images: GetImage | None = None,
) -> tuple[AnnotatedData, StoredState]:
    """A lazy AnnotatedData over a trial group: reads obs, var and uns only.

    ``version`` names the snapshot ``group`` belongs to; the lazy arrays are named from
    it, so a save can tell which of them are still what was stored. ``elsewhere`` maps
    element paths ("obs", "obsm/ypix") to nodes to read them from instead.
    ``missing_reads_as_zeros``: what zstore 0.1 showed for a shard it did not store
    (for migrating those stores; zstore's own reads make it an error). ``images``
    reads the summary images uns refers to (they are put back in uns); None leaves
    the references.

    A metadata document inside the trial that zarr cannot read (``obs/zarr.json`` not
    JSON, ...) raises NotAnExperimentError naming it; a chunk whose bytes changed,
    CorruptChunkError naming the element and the chunk.
    """
    try:
        return _read_trial(
            group,
            trial_id,
            version=version,
            explain=explain,
            elsewhere=elsewhere,
            missing_reads_as_zeros=missing_reads_as_zeros,
            images=images,
        )
    except Exception as err:
        if type(err).__module__ == NotAnExperimentError.__module__ or _compat.is_storage_error(err):
            raise  # zstore's own error already names what failed
        damaged = damaged_documents(group.store, group.path)
        if not damaged:  # anything else that keeps the trial from being built
            raise NotAnExperimentError(
                f"trial {trial_id!r} cannot be read: building it failed with "
                f"{type(err).__name__}: {err}; the store was changed by another program, or "
                f"damaged; {trial_fix(trial_id)}"
            ) from err
        raise NotAnExperimentError(
            damaged_text(f"trial {trial_id!r}", damaged, fix=trial_fix(trial_id))
        ) from err


def _read_trial(
    group: zarr.Group,
    trial_id: str,
    *,
    version: str,
    explain: Callable[[], str] | None,
    elsewhere: Mapping[str, Any] | None,
    missing_reads_as_zeros: bool,
    images: GetImage | None,
) -> tuple[AnnotatedData, StoredState]:
    moved = dict(elsewhere or {})

    def node(path: str) -> Any:
        return moved[path] if path in moved else group[path]

    label = f"trial {trial_id!r}"
    meta = group.attrs.get("zstore")
    if not isinstance(meta, dict) or meta.get("encoding-type") != TRIAL_ENCODING:
        raise NotAnExperimentError(
            f"{label}: its group has no zstore trial attributes (it was not written by "
            f"zstore, or its metadata is damaged); {trial_fix(trial_id)}"
        )
    if "X" not in group:
        raise MissingChunkError(f"{label}: the trial has no X array (its metadata is damaged)")
    problems = trial_problems(group, skip=[p for p in moved if "/" not in p])
    if problems:
        raise structure_error(trial_id, problems)

    def lazy(path: str, what: str) -> da.Array:
        return lazy_matrix(
            cast(zarr.Array, group[path]),
            name=matrix_name(version, trial_id, path),
            label=f"{label} {what}",
            explain=explain,
            missing_reads_as_zeros=missing_reads_as_zeros,
        )

    X = lazy("X", "X")
    matrices = {"X": X.name}
    layers = {}
    if "layers" in group:
        for name in sorted(cast(zarr.Group, group["layers"]).array_keys()):
            layers[name] = lazy(f"layers/{name}", f"layer {name!r}")
            matrices[f"layers/{name}"] = layers[name].name
    obs = _read_element(node("obs"), label, "obs", explain)
    var = _read_element(node("var"), label, "var", explain)
    has_uns = "uns" in group or "uns" in moved
    uns = _read_element(node("uns"), label, "uns", explain) if has_uns else {}
    if images is not None:
        uns = join_images(uns, images, label=label)
    eager: dict[str, dict[str, Any]] = {}
    lazy_ragged: dict[str, dict[str, RaggedArray]] = {}
    for attr in ALIGNED:
        eager[attr], lazy_ragged[attr] = {}, {}
        if attr not in group:
            continue
        for key, member in cast(zarr.Group, group[attr]).members():
            member = moved.get(f"{attr}/{key}", member)
            if is_ragged_group(member):
                origin = f"{version}:{trial_id}/{attr}/{key}"
                lazy_ragged[attr][key] = read_ragged(
                    member, origin=origin, label=f"{label} {attr}/{key}"
                )
            else:
                eager[attr][key] = _read_element(member, label, f"{attr}/{key}", explain)
    adata = AnnotatedData(X, obs=obs, var=var, uns=uns, layers=layers, **eager)
    for attr, entries in lazy_ragged.items():
        for key, ragged in entries.items():
            # anndata validates aligned values against its known array types; a lazy
            # ragged array is aligned by construction (one entry per ROI), so attach it.
            _compat.set_aligned(adata, attr, key, ragged)
    state = stored_state(
        adata,
        version=version,
        token=str(meta.get("commit", "")),
        created=int(meta.get("created", 0)),
        matrices=matrices,
        provenance=dict(meta.get("provenance", {})),
    )
    return adata, state


def read_errors_of(
    label: str, element: str, explain: Callable[[], str] | None
) -> contextlib.AbstractContextManager[None]:
    return read_errors(f"{label} {element}: stored data", explain)


def _read_element(node: Any, label: str, element: str, explain: Callable[[], str] | None) -> Any:
    """``read_elem(node)``; a chunk of it whose bytes are damaged raises CorruptChunkError
    naming ``element`` and the chunk (checked by its bytes once anndata's read failed)."""
    with read_errors_of(label, element, explain):
        try:
            return read_elem(node)
        except Exception as err:
            if _compat.is_storage_error(err):
                raise
            damage = _element_damage(node, f"{label} {element}")
            if damage is None:
                raise
            raise damage from err


def _element_damage(node: Any, label: str) -> Exception | None:
    if isinstance(node, zarr.Array):
        return chunk_damage(node, label)
    try:
        arrays = [a for _, a in node.members(max_depth=None) if isinstance(a, zarr.Array)]
    except Exception:  # its metadata is damaged too: read_trial names the document
        return None
    for array in arrays:
        damage = chunk_damage(array, label)
        if damage is not None:
            return damage
    return None


#: The dimension every row of an element's arrays runs along (xarray's name for it).
_AXES = {"obs": "roi", "var": "frame", "obsm": "roi", "varm": "frame"}


def name_dimensions(group: zarr.Group) -> None:
    """Give every array of the trial ``group`` that has none its ``dimension_names``, so
    that xarray reads obs, var, obsm, uns... directly (anndata writes none): a
    dataframe's columns (and categorical codes, nullable values and masks) run along
    ``roi`` (obs) or ``frame`` (var), an obsm/varm array's first axis too; every other
    axis gets a name of its own, from the array's path."""
    for path, array in _arrays(group, ""):
        if getattr(array.metadata, "dimension_names", None) is not None:
            continue
        parts = path.split("/")
        axis = _AXES.get(parts[0])
        rows = axis is not None and (
            len(parts) == 2  # a column of obs/var, or an obsm/varm array
            or (
                len(parts) == 3
                and parts[0] in ("obs", "var")
                and parts[2] in ("codes", "values", "mask")
            )
        )
        own = path.replace("/", "_")
        names = [axis if i == 0 and rows and axis else f"{own}_dim{i}" for i in range(array.ndim)]
        _compat.set_dimension_names(array, names)


def _arrays(group: zarr.Group, path: str) -> Iterator[tuple[str, zarr.Array]]:
    for name, node in group.members():
        inner = f"{path}/{name}" if path else name
        if isinstance(node, zarr.Array):
            yield inner, node
        elif inner not in ("layers",):
            yield from _arrays(node, inner)


def describe_arrays(group: zarr.Group, *, stored: bool = True) -> list[dict[str, Any]]:
    """Shape, chunking, codecs and sizes of X and each layer.

    Metadata only, unless ``stored``: then also the stored size of each (read from
    the manifests).
    """
    entries = [("X", group["X"])]
    if "layers" in group:
        entries += [(f"layers/{k}", v) for k, v in group["layers"].arrays()]  # type: ignore[union-attr]
    out = []
    for name, arr in entries:
        arr = cast(zarr.Array, arr)
        out.append(
            {
                "name": name,
                "shape": tuple(arr.shape),
                "dtype": str(arr.dtype),
                "shards": tuple(arr.shards) if arr.shards else None,
                "chunks": tuple(arr.chunks),
                "codecs": [type(c).__name__ for c in arr.compressors],
                "nbytes": int(arr.nbytes),
                **({"stored_bytes": int(arr.nbytes_stored())} if stored else {}),
            }
        )
    return out


# -- the structure of a trial, from its metadata ---------------------------------------


def trial_problems(group: zarr.Group, skip: Sequence[str] = ()) -> list[str]:
    """What is wrong with the structure of the trial ``group`` ([]: nothing), read from
    its metadata only: zstore's attributes, X (2-D), obs and var (dataframe groups whose
    index and columns exist and whose lengths match X's rows and columns), each layer
    (X's shape) and uns and the aligned elements (groups). ``skip``: elements read from
    elsewhere (a migration). Each problem names the key, what was expected and found."""
    problems = _attribute_problems(group.attrs.get("zstore"))
    x = group.get("X")
    shape: tuple[int, ...] | None = None
    if not isinstance(x, zarr.Array):
        problems.append(f"X: expected a 2-D array (ROIs x frames), found {_kind(x)}")
    elif x.ndim != 2:
        problems.append(f"X: expected a 2-D array (ROIs x frames), found shape {x.shape}")
    elif np.dtype(x.dtype).kind not in "fiub":
        problems.append(f"X: expected an array of real numbers, found dtype {x.dtype}")
    else:
        shape = tuple(int(n) for n in x.shape)
    for axis, key in enumerate(("obs", "var")):
        if key not in skip:
            rows = shape[axis] if shape is not None else None
            problems += _frame_problems(
                group.get(key), key, rows, "rows" if axis == 0 else "columns"
            )
    layers = group.get("layers")
    if layers is not None and not isinstance(layers, zarr.Group):
        problems.append(f"layers: expected a group of arrays, found {_kind(layers)}")
    elif layers is not None:
        for name, arr in layers.arrays():
            if shape is not None and tuple(arr.shape) != shape:
                problems.append(
                    f"layers/{name}: expected X's shape {shape}, found shape {tuple(arr.shape)}"
                )
    for key in ("uns", *ALIGNED):
        node = group.get(key)
        if node is not None and key not in skip and not isinstance(node, zarr.Group):
            problems.append(f"{key}: expected a group, found {_kind(node)}")
    return problems


def _attribute_problems(meta: Any) -> list[str]:
    if not isinstance(meta, dict) or meta.get("encoding-type") != TRIAL_ENCODING:
        return ["the trial group has no zstore trial attributes"]
    problems = []
    created = meta.get("created", 0)
    if isinstance(created, bool) or not isinstance(created, int):
        problems.append(
            f"zarr.json: attribute zstore.created: expected an integer (ns since 1970), "
            f"found {created!r}"
        )
    if not isinstance(meta.get("commit", ""), str):
        problems.append(
            f"zarr.json: attribute zstore.commit: expected text, found {meta['commit']!r}"
        )
    if not isinstance(meta.get("provenance", {}), dict):
        problems.append(
            f"zarr.json: attribute zstore.provenance: expected a mapping, found "
            f"{meta['provenance']!r}"
        )
    return problems


def _frame_problems(node: Any, key: str, rows: int | None, of_x: str) -> list[str]:
    """obs or var: a dataframe group whose index and columns are there, with as many
    rows as X has ``of_x`` (``rows``; None: X itself is damaged)."""
    if not isinstance(node, zarr.Group):
        return [f"{key}: expected a dataframe group, found {_kind(node)}"]
    index = node.attrs.get("_index")
    if not isinstance(index, str):
        return [f"{key}: attribute _index: expected the name of its index array, found {index!r}"]
    if not isinstance(node.get(index), zarr.Array | zarr.Group):
        return [
            f"{key}: its attribute _index names the index array {index!r}; expected it in "
            f"{key}, found no such array"
        ]
    order = node.attrs.get("column-order", [])
    if not isinstance(order, list) or not all(isinstance(c, str) for c in order):
        return [f"{key}: attribute column-order: expected a list of names, found {order!r}"]
    problems = []
    for column in [index, *order]:
        member = node.get(column)
        if member is None:
            problems.append(
                f"{key}: attribute column-order names column {column!r}; expected it in "
                f"{key}, found no such array"
            )
            continue
        length = _length(member)
        if rows is not None and length is not None and length != rows:
            what = "index" if column == index else f"column {column!r}"
            problems.append(
                f"{key}/{column}: expected {rows} entries ({key} {what}, one per X "
                f"{'row' if of_x == 'rows' else 'column'}), found {length}"
            )
    return problems


def _length(member: Any) -> int | None:
    if isinstance(member, zarr.Array):
        return int(member.shape[0]) if member.ndim else None
    for part in ("codes", "values"):  # a categorical or nullable column
        inner = member.get(part)
        if isinstance(inner, zarr.Array) and inner.ndim:
            return int(inner.shape[0])
    return None


def _kind(node: Any) -> str:
    if node is None:
        return "nothing (it was deleted)"
    if isinstance(node, zarr.Array):
        return f"an array of shape {tuple(node.shape)}"
    return "a group"


def structure_error(trial_id: str, problems: Sequence[str]) -> NotAnExperimentError:
    """The error for a trial whose structure :func:`trial_problems` found damaged."""
    more = f" (and {len(problems) - 1} more: `zstore verify`)" if len(problems) > 1 else ""
    return NotAnExperimentError(
        f"trial {trial_id!r} cannot be read: {problems[0]}{more}; the store was changed by "
        f"another program, or damaged; {trial_fix(trial_id)}"
    )
