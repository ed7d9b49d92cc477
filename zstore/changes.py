"""What a save must write: a pure comparison of a trial as stored with the object in hand.

``diff(stored, adata)`` compares by value: obs, var, uns and in-memory aligned arrays
(obsm, varm, ...) against copies taken when the trial was loaded, so in-place edits are
seen. Matrices are too large to copy: a lazy array read from the store carries a name
derived from the version and the path it was read from (``matrix_name``), a content
address that no later write can make stale, and a layer is unchanged exactly when it is
still that array. Lazily read ragged masks carry their origin the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd

from .annotated import ALIGNED

__all__ = ["Changes", "StoredState", "diff", "matrix_name", "stored_state"]


def matrix_name(version: str, trial_id: str, path: str) -> str:
    """The dask name of the lazy array at ``path`` of a trial read from ``version``."""
    return f"zstore-{version}-{trial_id}-{path}"


@dataclasses.dataclass
class StoredState:
    """A trial as loaded: the baseline that :func:`diff` compares against."""

    version: str  # the snapshot the trial was read from
    token: str  # the trial's commit token in that snapshot
    created: int
    matrices: dict[str, str]  # "X" / "layers/<name>" -> dask name of the lazy array
    obs: pd.DataFrame
    var: pd.DataFrame
    uns: dict[str, Any]
    aligned: dict[str, Any]  # "obsm/<key>" -> a copy of the value, or the ragged origin
    provenance: dict[str, Any]


def stored_state(
    adata: ad.AnnData,
    *,
    version: str,
    token: str,
    created: int,
    matrices: Mapping[str, str],
    provenance: Mapping[str, Any],
) -> StoredState:
    """The baseline for an AnnData just read (or written): copies of what can change."""
    return StoredState(
        version=version,
        token=token,
        created=created,
        matrices=dict(matrices),
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        aligned={
            f"{attr}/{key}": _snapshot(value)
            for attr in ALIGNED
            for key, value in getattr(adata, attr).items()
        },
        provenance=dict(provenance),
    )


@dataclasses.dataclass(frozen=True)
class Changes:
    """What differs between a stored trial and an AnnData, element by element."""

    layers_written: tuple[str, ...] = ()  # layer names, new or replaced
    layers_removed: tuple[str, ...] = ()
    written: tuple[str, ...] = ()  # "obs", "var", "uns", "obsm/<key>", ...
    removed: tuple[str, ...] = ()  # "obsm/<key>", ...
    x_replaced: bool = False

    def __bool__(self) -> bool:
        return (
            bool(self.layers_written or self.layers_removed or self.written or self.removed)
            or self.x_replaced
        )

    def paths(self) -> list[str]:
        """Every changed element as a path in the trial group (e.g. ``layers/dFF``)."""
        return [
            *(f"layers/{n}" for n in self.layers_written),
            *(f"layers/{n}" for n in self.layers_removed),
            *self.written,
            *self.removed,
        ]


def diff(stored: StoredState, adata: ad.AnnData) -> Changes:
    """Compare ``adata`` with the trial it was loaded as; return what a save must write.

    Examples
    --------
    >>> import numpy as np, zstore as zs
    >>> from zstore.changes import diff, stored_state
    >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
    >>> base = stored_state(adata, version="v1", token="t", created=0, matrices={},
    ...                     provenance={})
    >>> adata.add_obs("depth", [1.0, 2.0])
    >>> diff(base, adata).paths()
    ['obs']
    """
    X = adata.X
    x_replaced = not (isinstance(X, da.Array) and X.name == stored.matrices.get("X"))
    stored_layers = {k.split("/", 1)[1]: v for k, v in stored.matrices.items() if "/" in k}
    written_layers = tuple(
        name
        for name, value in adata.layers.items()
        if not (isinstance(value, da.Array) and value.name == stored_layers.get(name))
    )
    removed_layers = tuple(sorted(set(stored_layers) - set(adata.layers)))
    written: list[str] = []
    if not same_frame(adata.obs, stored.obs):
        written.append("obs")
    if not same_frame(adata.var, stored.var):
        written.append("var")
    if not same_value(dict(adata.uns), stored.uns):
        written.append("uns")
    removed: list[str] = []
    for attr in ALIGNED:
        current = getattr(adata, attr)
        for path in (p for p in stored.aligned if p.startswith(f"{attr}/")):
            if path.split("/", 1)[1] not in current:
                removed.append(path)
        for key, value in current.items():
            path = f"{attr}/{key}"
            if path not in stored.aligned or not _unchanged(value, stored.aligned[path]):
                written.append(path)
    return Changes(
        layers_written=written_layers,
        layers_removed=removed_layers,
        written=tuple(written),
        removed=tuple(removed),
        x_replaced=x_replaced and stored.matrices.get("X") is not None,
    )


@dataclasses.dataclass(frozen=True)
class _Origin:
    """Where a lazily read value lives: it is unchanged while it is still that value."""

    origin: str


def _snapshot(value: Any) -> Any:
    origin = getattr(value, "origin", None)
    if isinstance(origin, str):
        return _Origin(origin)
    if isinstance(value, da.Array):
        return _Origin(f"dask:{value.name}")
    return copy.deepcopy(value)


def _unchanged(value: Any, stored: Any) -> bool:
    if isinstance(stored, _Origin):
        origin = getattr(value, "origin", None)
        if isinstance(value, da.Array):
            origin = f"dask:{value.name}"
        return origin == stored.origin
    return same_value(value, stored)


def same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal DataFrames as stored: columns, index (and its name), dtypes, the order of
    categories, and values (NaN equal to NaN)."""
    if not (
        list(a.columns) == list(b.columns)
        and a.index.equals(b.index)
        and a.index.dtype == b.index.dtype
        and a.index.name == b.index.name
        and a.dtypes.equals(b.dtypes)
        and a.equals(b)
    ):
        return False
    # pandas calls unordered categoricals equal whatever the categories' order; the
    # stored codes depend on it
    return all(
        a[c].cat.categories.equals(b[c].cat.categories)
        for c in a.columns
        if isinstance(a[c].dtype, pd.CategoricalDtype)
    )


_TEXT = "UTSO"


def same_value(a: Any, b: Any) -> bool:
    """Equal nested values, as they would be stored: mappings, arrays, frames, sequences
    and scalars, by value. A list equals the array anndata stores for it (a list reads
    back as an array), and text arrays are equal whatever numpy string type holds them.
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        return isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame) and same_frame(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return _same_array(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if _is_ragged(a) or _is_ragged(b):
        return _is_ragged(a) and _is_ragged(b) and _same_ragged(a, b)
    if _is_sparse(a) or _is_sparse(b):
        return _is_sparse(a) and _is_sparse(b) and _same_sparse(a, b)
    if _is_number(a) and _is_number(b):  # a numpy scalar reads back as a Python number
        kind_a, kind_b = np.asarray(a).dtype.kind, np.asarray(b).dtype.kind
        same_kind = kind_a == kind_b or {kind_a, kind_b} <= {"i", "u"}
        return same_kind and (a == b or (kind_a in "fc" and np.isnan(a) and np.isnan(b)))
    if isinstance(a, str | np.str_) and isinstance(b, str | np.str_):
        return str(a) == str(b)
    try:
        if type(a) is not type(b):
            return False
        if isinstance(a, float) and np.isnan(a) and np.isnan(b):
            return True
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _same_array(a: Any, b: Any) -> bool:
    try:
        x, y = np.asarray(a), np.asarray(b)
    except (TypeError, ValueError):
        return False
    if x.shape != y.shape:
        return False
    if x.dtype.kind in _TEXT and y.dtype.kind in _TEXT:
        return x.ravel().tolist() == y.ravel().tolist()
    lists = not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray))
    if x.dtype != y.dtype and not (lists and x.dtype.kind == y.dtype.kind):
        return False  # a new dtype is a change to store
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


def _is_ragged(value: Any) -> bool:
    return callable(getattr(value, "buffers", None)) and hasattr(value, "origin")


def _same_ragged(a: Any, b: Any) -> bool:
    if a is b:
        return True  # immutable
    (oa, da_), (ob, db) = a.buffers(), b.buffers()
    return same_value(oa, ob) and same_value(da_, db)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number | np.number | np.bool_) and not isinstance(
        value, np.ndarray
    )


def _same_sparse(a: Any, b: Any) -> bool:
    x, y = a.tocsr(copy=True), b.tocsr(copy=True)
    for m in (x, y):
        m.sum_duplicates()
        m.sort_indices()
    return (
        x.shape == y.shape
        and x.dtype == y.dtype
        and np.array_equal(x.indptr, y.indptr)
        and np.array_equal(x.indices, y.indices)
        and np.array_equal(x.data, y.data, equal_nan=x.dtype.kind in "fc")
    )


def _is_sparse(value: Any) -> bool:
    return hasattr(value, "tocsr") and hasattr(value, "nnz")
