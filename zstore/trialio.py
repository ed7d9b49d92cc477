"""One trial group <-> one AnnotatedData, in anndata's own Zarr layout.

X and layers are sharded ROIs x frames arrays written by zstore (anndata's writer would
drop dimension names, sharding and checksums); obs, var, uns and the other aligned
elements are written by ``anndata.io.write_elem``; ragged pixel masks in obsm use
anndata's awkward encoding, read lazily by :mod:`zstore.ragged`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import zarr
from anndata.io import read_elem, write_elem

from ._version import __version__
from .annotated import AnnotatedData
from .arrays import Progress, StorageConfig, create_matrix, lazy_matrix, store_matrices
from .errors import TrialChangedError
from .names import check_name
from .processing.provenance import lookup
from .ragged import RaggedArray, is_ragged_group, read_ragged, write_ragged
from .store import (
    ENCODING_VERSION,
    TRIAL_ENCODING,
    commit_group,
    copy_prefix,
    delete_prefix,
    journal_path,
    list_keys,
    publish,
    read_json,
    staging_group,
    sync_delete,
    write_json,
    zstore_attrs,
)

__all__ = ["StoredState", "read_trial", "save_trial", "write_trial"]

ANNDATA_ENCODING = {"encoding-type": "anndata", "encoding-version": "0.1.0"}
DICT_ENCODING = {"encoding-type": "dict", "encoding-version": "0.1.0"}
ALIGNED = ("obsm", "varm", "obsp", "varp")


@contextmanager
def _anndata_writes() -> Iterator[None]:
    # Explicit settings: format 3, and no auto-sharding (it warns on every write_elem).
    with ad.settings.override(zarr_write_format=3, auto_shard_zarr_v3=False):
        yield


@dataclasses.dataclass
class StoredState:
    """What a trial group holds, as last read or written: the baseline of ``save()``."""

    token: str
    created: int
    matrices: dict[str, str]  # "X" / "layers/<name>" -> dask name of the lazy array
    obs: pd.DataFrame
    var: pd.DataFrame
    uns: dict[str, Any]
    aligned: dict[str, int]  # "obsm/<key>" -> id() of the object handed to the user
    provenance: dict[str, Any]


def trial_attributes(trial_id: str, state: StoredState) -> dict[str, Any]:
    return {
        **ANNDATA_ENCODING,
        "zstore": {
            "encoding-type": TRIAL_ENCODING,
            "encoding-version": ENCODING_VERSION,
            "trialID": trial_id,
            "created": state.created,
            "commit": state.token,
            "provenance": state.provenance,
        },
    }


# -- writing a whole trial ---------------------------------------------------------------


def write_trial(
    group: zarr.Group,
    trial_id: str,
    adata: ad.AnnData,
    *,
    config: StorageConfig,
    provenance: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> StoredState:
    """Write every element of ``adata`` into the empty trial ``group``, then commit it."""
    check_names(adata)
    X = adata.X
    if X is None:
        raise ValueError(f"trial {trial_id!r}: the AnnotatedData has no X to store")
    # Everything but the matrices' chunks is written to memory, then published at once.
    stage = staging_group()
    stage.attrs.update(ANNDATA_ENCODING)
    with _anndata_writes():
        _write_frames(stage, adata)
        write_elem(stage, "uns", dict(adata.uns))
        for attr in ALIGNED:
            node = _dict_group(stage, attr)
            for key, value in getattr(adata, attr).items():
                _write_aligned(node, key, value)
    staged_layers = _dict_group(stage, "layers")
    _create_like(stage, "X", X, config)
    for name, data in adata.layers.items():
        _create_like(staged_layers, name, data, config)
    publish(stage, group)
    names = ["X", *(f"layers/{name}" for name in adata.layers)]
    targets = [_open_published(group, name) for name in names]
    store_matrices([X, *adata.layers.values()], targets, progress=progress)
    state = StoredState(
        token=uuid.uuid4().hex,
        created=time.time_ns(),
        matrices={},
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        aligned={},
        provenance=dict(provenance or {}),
    )
    commit_group(group, trial_attributes(trial_id, state), members_of=stage)
    return state


def _open_published(group: zarr.Group, name: str) -> zarr.Array:
    path = f"{group.store_path.path}/{name}"
    return zarr.open_array(group.store_path.store, path=path, mode="r+", zarr_format=3)


def _dict_group(group: zarr.Group, name: str) -> zarr.Group:
    if name in group:
        return group[name]  # type: ignore[return-value]
    return group.create_group(name, attributes=DICT_ENCODING)


def _create_like(group: zarr.Group, name: str, source: Any, config: StorageConfig) -> zarr.Array:
    shape = tuple(source.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (ROIs x frames), got shape {shape}")
    dtype = np.dtype(getattr(source, "dtype", np.float32))
    if dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {dtype}")
    return create_matrix(group, name, shape=(shape[0], shape[1]), dtype=dtype, config=config)


def _write_frames(group: zarr.Group, adata: ad.AnnData) -> None:
    write_elem(group, "obs", adata.obs)
    write_elem(group, "var", adata.var)


def _write_aligned(node: zarr.Group, key: str, value: Any) -> None:
    if isinstance(value, RaggedArray):
        write_ragged(node, key, value)
    elif isinstance(value, da.Array):
        write_elem(node, key, value.compute())
    else:
        write_elem(node, key, value)


def check_names(adata: ad.AnnData) -> None:
    for name in adata.layers:
        check_name(name, kind="layer name")
    for attr in ALIGNED:
        for key in getattr(adata, attr):
            check_name(key, kind=f"{attr} key")
    for frame, axis in ((adata.obs, "obs"), (adata.var, "var")):
        for column in frame.columns:
            check_name(str(column), kind=f"{axis} column name")


# -- reading -------------------------------------------------------------------------------


def read_trial(group: zarr.Group, trial_id: str) -> tuple[AnnotatedData, StoredState]:
    """A lazy AnnotatedData over a committed trial group: reads obs, var and uns only."""
    meta = zstore_attrs(group)
    token = str(meta.get("commit", "0"))
    label = f"trial {trial_id!r}"
    X = lazy_matrix(group["X"], name=f"zstore-{trial_id}-X-{token}", label=f"{label} X")  # type: ignore[arg-type]
    matrices = {"X": X.name}
    layers = {}
    if "layers" in group:
        for name, arr in group["layers"].arrays():  # type: ignore[union-attr]
            layers[name] = lazy_matrix(
                arr, name=f"zstore-{trial_id}-{name}-{token}", label=f"{label} layer {name!r}"
            )
            matrices[f"layers/{name}"] = layers[name].name
    # A save that is under way (or died) before committing journalled the elements it
    # rewrites in place: while its manifest names this commit, they are read from there.
    journal = journal_path(trial_id)
    manifest = read_json(group.store_path.store, f"{journal}/manifest.json")
    journalled = (
        set(manifest.get("elements", [])) if manifest and manifest.get("base") == token else set()
    )

    def element(path: str) -> Any:
        if path in journalled:
            store = group.store_path.store
            return zarr.open_group(
                store, path=f"{journal}/{path}", mode="r", zarr_format=3, use_consolidated=False
            )
        return group[path]

    obs = read_elem(element("obs"))
    var = read_elem(element("var"))
    uns = read_elem(element("uns")) if "uns" in group else {}
    eager: dict[str, dict[str, Any]] = {}
    lazy: dict[str, dict[str, RaggedArray]] = {}
    for attr in ALIGNED:
        eager[attr], lazy[attr] = {}, {}
        if attr not in group:
            continue
        for key, node in group[attr].members():  # type: ignore[union-attr]
            if f"{attr}/{key}" in journalled:
                node = element(f"{attr}/{key}")
            if is_ragged_group(node):
                lazy[attr][key] = read_ragged(node)  # type: ignore[arg-type]
            else:
                eager[attr][key] = read_elem(node)
    adata = AnnotatedData(X, obs=obs, var=var, uns=uns, layers=layers, **eager)
    for attr, entries in lazy.items():
        for key, ragged in entries.items():
            # anndata validates aligned values against its known array types; a lazy
            # ragged array is aligned by construction (one entry per ROI), so attach it.
            getattr(adata, attr)._data[key] = ragged
    state = StoredState(
        token=token,
        created=int(meta.get("created", 0)),
        matrices=matrices,
        obs=obs.copy(),
        var=var.copy(),
        uns=copy.deepcopy(dict(uns)),
        aligned={f"{attr}/{k}": id(v) for attr in ALIGNED for k, v in getattr(adata, attr).items()},
        provenance=dict(meta.get("provenance", {})),
    )
    return adata, state


def describe_arrays(group: zarr.Group) -> list[dict[str, Any]]:
    """Shape, chunking, codecs and sizes of X and each layer of a trial group."""
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
                "stored_bytes": int(arr.nbytes_stored()),
            }
        )
    return out


# -- saving what changed -----------------------------------------------------------------


def save_trial(
    group: zarr.Group,
    trial_id: str,
    adata: ad.AnnData,
    state: StoredState,
    *,
    config: StorageConfig,
    progress: Progress | None = None,
) -> list[str]:
    """Write what changed in ``adata`` since ``state`` into ``group`` and commit.

    A transaction: readers see the previous state until the commit, and a save killed
    at any point leaves the previous state for readers and for the next save.

    1. Leftovers of an earlier save that died are rolled back (see ``recover``).
    2. New layers are written under names the committed metadata does not list yet.
    3. Elements rewritten in place (obs, var, uns, obsm entries) are first copied to
       the trial's journal, whose manifest (written last) names the commit they belong
       to; readers that find it read those elements from the journal instead.
    4. The commit lists exactly what should be visible; removed layers and entries are
       deleted after it, and the journal with them.

    Returns the elements written or removed (e.g. ``["layers/dFF", "obs"]``).
    """
    check_names(adata)
    label = f"trial {trial_id!r}"
    if not isinstance(adata.X, da.Array) or adata.X.name != state.matrices.get("X"):
        raise ValueError(
            f"{label}: X is the raw fluorescence and is written once; store derived data "
            f"as a layer instead (trial.data.add_layer('name', data))"
        )
    store, base = group.store_path.store, group.store_path.path
    recover(group, trial_id)
    committed = committed_token(group)
    if committed != state.token:
        raise TrialChangedError(
            f"{label} was saved by someone else since it was loaded (commit {committed} "
            f"is not {state.token}); load it again and redo the change"
        )

    stored_layers = {k.split("/", 1)[1] for k in state.matrices if k.startswith("layers/")}
    removed = [f"layers/{name}" for name in sorted(stored_layers - set(adata.layers))]
    if any(name.split("/", 1)[1] in adata.uns.get("processing", {}) for name in removed):
        adata.uns["processing"] = {
            k: v for k, v in adata.uns["processing"].items() if f"layers/{k}" not in removed
        }

    # New and changed layers: metadata staged and published, shards streamed.
    stage = staging_group()
    layer_names, sources, records = [], [], {}
    for name, data in adata.layers.items():
        old = state.matrices.get(f"layers/{name}")
        if isinstance(data, da.Array) and data.name == old:
            continue
        if old is not None and isinstance(data, da.Array) and _depends_on(data, old):
            raise ValueError(
                f"{label}: the new layer {name!r} is computed from the stored layer "
                f"{name!r}, which saving would overwrite while it is read; add it under a "
                f"new name (e.g. {name + '_2'!r})"
            )
        _create_like(_dict_group(stage, "layers"), name, data, config)
        layer_names.append(name)
        sources.append(data)
        if isinstance(data, da.Array) and (info := processing_record(data.name, state)):
            records[name] = info
    if records:
        adata.uns["processing"] = {**dict(adata.uns.get("processing", {})), **records}
    replaced = [f"layers/{n}" for n in layer_names if f"layers/{n}" in state.matrices]
    if replaced:
        # Journalling a layer would copy gigabytes: a replaced layer is first removed
        # (committed, so readers see it go away whole), then written as a new one.
        state.token = uuid.uuid4().hex
        commit_group(group, trial_attributes(trial_id, state), exclude=replaced)
        for path in replaced:
            delete_prefix(store, f"{base}/{path}")

    # Small elements: staged in memory; those that exist now are journalled first.
    rewritten: list[str] = []
    with _anndata_writes():
        for key, frame, before in (("obs", adata.obs, state.obs), ("var", adata.var, state.var)):
            if not _same_frame(frame, before):
                write_elem(stage, key, frame)
                rewritten.append(key)
        if not _same(dict(adata.uns), state.uns):
            write_elem(stage, "uns", dict(adata.uns))
            rewritten.append("uns")
        for attr in ALIGNED:
            current = getattr(adata, attr)
            for key in [k for k in state.aligned if k.startswith(f"{attr}/")]:
                if key.split("/", 1)[1] not in current:
                    removed.append(key)
            for key, value in current.items():
                if state.aligned.get(f"{attr}/{key}") != id(value):
                    _write_aligned(_dict_group(stage, attr), key, value)
                    rewritten.append(f"{attr}/{key}")
    existing = [p for p in rewritten if _exists(p, state)]
    journal = journal_path(trial_id)
    if existing:
        for path in existing:
            copy_prefix(store, f"{base}/{path}", f"{journal}/{path}")
        manifest = {"base": state.token, "elements": existing}
        write_json(store, f"{journal}/manifest.json", manifest)
        for path in existing:
            delete_prefix(store, f"{base}/{path}")
    publish(stage, group)
    targets = [_open_published(group, f"layers/{name}") for name in layer_names]
    store_matrices(sources, targets, progress=progress)

    changed = list(dict.fromkeys([*(f"layers/{n}" for n in layer_names), *removed, *rewritten]))
    if changed:
        state.token = uuid.uuid4().hex
        commit_group(group, trial_attributes(trial_id, state), exclude=removed)
    for path in removed:
        delete_prefix(store, f"{base}/{path}")
    if existing:
        sync_delete(store, f"{journal}/manifest.json")
        delete_prefix(store, journal)
    return changed


def _exists(path: str, state: StoredState) -> bool:
    return path in ("obs", "var", "uns") or path in state.aligned


def committed_token(group: zarr.Group) -> str:
    """The commit token in the trial's zarr.json as stored now."""
    document = read_json(group.store_path.store, f"{group.store_path.path}/zarr.json") or {}
    return str(document.get("attributes", {}).get("zstore", {}).get("commit", ""))


def recover(group: zarr.Group, trial_id: str) -> list[str]:
    """Undo what a save that died left behind; return what was undone.

    A journal whose manifest names the committed state belongs to a save that did not
    commit: its elements are restored. Nodes the committed metadata does not list are
    leftovers of unfinished writes and are deleted.
    """
    store, base = group.store_path.store, group.store_path.path
    journal = journal_path(trial_id)
    manifest = read_json(store, f"{journal}/manifest.json")
    undone: list[str] = []
    token = committed_token(group)
    if manifest is not None and manifest.get("base") == token:
        for path in manifest.get("elements", []):
            delete_prefix(store, f"{base}/{path}")
            copy_prefix(store, f"{journal}/{path}", f"{base}/{path}")
            undone.append(path)
    if manifest is not None or list_keys(store, journal):
        sync_delete(store, f"{journal}/manifest.json")
        delete_prefix(store, journal)
    listed = committed_members(group)
    if listed is not None:
        for path, _ in list(group.members(max_depth=None)):
            parent_listed = "/".join(path.split("/")[:-1])
            if path not in listed and (parent_listed in listed or "/" not in path):
                delete_prefix(store, f"{base}/{path}")
                undone.append(path)
    return undone


def committed_members(group: zarr.Group) -> set[str] | None:
    """Paths listed by the trial's committed consolidated metadata."""
    store, path = group.store_path.store, group.store_path.path
    reader = zarr.open_group(store, path=path, mode="r", zarr_format=3, use_consolidated=True)
    consolidated = reader.metadata.consolidated_metadata
    return None if consolidated is None else set(consolidated.flattened_metadata)


def processing_record(name: str, state: StoredState) -> dict[str, Any] | None:
    """How the lazy array ``name`` was computed, with its inputs named as stored."""
    info = lookup(name)
    if info is None:
        return None
    stored = {dask_name: path for path, dask_name in state.matrices.items()}
    for key in ("input", "neuropil"):
        if key in info:
            info["source" if key == "input" else key] = _source_text(info.pop(key), stored)
    info["zstore_version"] = __version__
    return info


def _source_text(name: str, stored: dict[str, str], depth: int = 0) -> str:
    if name in stored:
        return stored[name]
    info = lookup(name)
    if info is None or depth > 4:
        return "a computed array"
    inputs = [
        _source_text(info.pop(k), stored, depth + 1) for k in ("input", "neuropil") if k in info
    ]
    params = [f"{k}={v!r}" for k, v in info.items() if k != "function"]
    return f"{info['function']}({', '.join(inputs + params)})"


def _depends_on(array: da.Array, name: str) -> bool:
    graph: Any = array.__dask_graph__()
    return any(str(layer).startswith(name) for layer in graph.layers)


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (
        list(a.columns) == list(b.columns)
        and a.index.equals(b.index)
        and a.dtypes.equals(b.dtypes)
        and a.equals(b)
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        return isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame) and _same_frame(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(type(a) is type(b) and a == b)
    except (TypeError, ValueError):
        return False
