"""Ragged per-ROI arrays (Suite2p pixel masks: ypix, xpix, lam), read lazily.

Stored in anndata's own awkward-array encoding (a ``var * T`` list array: an int64
``node0-offsets`` array and a ``node1-data`` array), so plain ``anndata.read_zarr``
reads them. zstore reads them itself, lazily: indexing reads the offsets it needs and
the data of the selected ROIs only (two requests for ``masks[:5]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import awkward as ak
import numpy as np
import zarr

from . import _compat
from .errors import KeyNotFoundError
from .shards import CheckedArray

__all__ = ["RaggedArray", "as_ragged", "is_ragged_group", "read_ragged", "write_ragged"]

AWKWARD_ENCODING = {"encoding-type": "awkward-array", "encoding-version": "0.1.0"}
_OFFSETS_KEY = "node0-offsets"
_DATA_KEY = "node1-data"
_DATA_CHUNK = 1 << 18  # elements per data chunk: [:5] reads one chunk, not all masks
_OFFSETS_CHUNK = 1 << 20


class RaggedArray(ak.Array):
    """One variable-length array per ROI; lazy when read from a store.

    An ``awkward.Array`` of type ``n * var * dtype`` (so anndata stores, slices and
    writes it as its own), whose indexing reads only what it selects: ``ragged[i]`` is
    ROI i's array; ``ragged[:5]`` (or an int or bool index array) reads just those ROIs
    and returns a numpy object array of arrays, as the tutorial's pickles had. Iterating
    yields numpy arrays in order. Awkward functions see the whole array (and read it).

    Examples
    --------
    >>> import numpy as np
    >>> from zstore.ragged import RaggedArray
    >>> ypix = RaggedArray.from_arrays([np.array([3, 4]), np.array([7])], dtype="int16")
    >>> ypix
    RaggedArray(n=2, dtype=int16, in memory)
    >>> ypix[1]
    array([7], dtype=int16)
    >>> [a.tolist() for a in ypix[:2]]
    [[3, 4], [7]]
    """

    def __init__(
        self,
        offsets: np.ndarray | zarr.Array,
        data: np.ndarray | zarr.Array,
        rows: np.ndarray | None = None,
        *,
        origin: str | None = None,
    ):
        _compat.let_anndata_view(type(self))
        _compat.quiet_awkward_notice()  # zstore chose awkward for the masks, not the user
        self._origin = origin if rows is None else None
        self._offsets_source = offsets
        self._offsets: np.ndarray | None = offsets if isinstance(offsets, np.ndarray) else None
        self._data = data
        self._rows = rows
        self._dtype = np.dtype(data.dtype)
        n = len(rows) if rows is not None else int(offsets.shape[0]) - 1
        form = ak.forms.ListOffsetForm(
            "i64",
            ak.forms.NumpyForm(
                ak.types.numpytype.dtype_to_primitive(self._dtype), form_key="node1"
            ),
            form_key="node0",
        )
        # Lazy buffers: awkward (and anndata through it) reads them only when it must.
        super().__init__(
            ak.from_buffers(
                form,
                n,
                {
                    "node0-offsets": lambda: self.buffers()[0],
                    "node1-data": lambda: self.buffers()[1],
                },
                highlevel=False,
            )
        )

    def _update_class(self, restore: Any = None) -> None:
        # awkward re-picks the class from behaviors on every layout change; stay ours
        # (awkward's hook, named in zstore/_compat.py with the version it was checked on)
        _compat.reset_awkward_caches(self)

    @classmethod
    def from_arrays(cls, arrays: Sequence[Any], *, dtype: Any = None) -> RaggedArray:
        """Build an in-memory RaggedArray from a sequence of 1-D arrays."""
        parts = [np.asarray(a).ravel() for a in arrays]
        if dtype is None:
            dtype = np.result_type(*parts) if parts else np.float64
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype=dtype)
        return cls(offsets, data)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the per-ROI arrays."""
        return self._dtype

    @property
    def origin(self) -> str | None:
        """Where this array was read from (version and path), or None in memory."""
        return self._origin

    @property
    def is_lazy(self) -> bool:
        return not isinstance(self._data, np.ndarray)

    def __len__(self) -> int:
        if self._rows is not None:
            return len(self._rows)
        return int(self._offsets_source.shape[0]) - 1

    def __repr__(self) -> str:
        where = "lazy" if self.is_lazy else "in memory"
        return f"RaggedArray(n={len(self)}, dtype={self._dtype}, {where})"

    __str__ = __repr__

    def __copy__(self) -> RaggedArray:
        return self  # immutable: nothing to copy

    def __deepcopy__(self, memo: Any) -> RaggedArray:
        return self

    def copy(self) -> RaggedArray:
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            # anndata's views subset aligned arrays with a 1-tuple: stay lazy.
            if len(key) != 1:
                raise IndexError(f"RaggedArray is 1-D; got an index of {len(key)} axes")
            return self.subset(key[0])
        if isinstance(key, int | np.integer):
            n = len(self)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"ROI index {int(key)} is out of range for {n} ROIs")
            return self._read(np.array([self._base_row(i)]))[0]
        if isinstance(key, str):
            raise KeyNotFoundError(
                f"RaggedArray has no field {key!r}: it holds one array per ROI; index it by "
                f"ROI position instead (ragged[3], ragged[:10])"
            )
        return self.subset(key).to_numpy()

    def __iter__(self) -> Iterator[np.ndarray]:
        step = 4096
        for start in range(0, len(self), step):
            yield from self[start : start + step]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.to_numpy()

    # -- reading -------------------------------------------------------------------------

    def subset(self, index: Any) -> RaggedArray:
        """A lazy RaggedArray of the selected ROIs (slice, int array or bool mask)."""
        rows = np.arange(len(self))[_normalize(index, len(self))]
        if self._rows is not None:
            rows = self._rows[rows]
        return RaggedArray(self._offsets_source, self._data, rows)

    def to_numpy(self, allow_missing: bool = True) -> np.ndarray:
        """Read the selected ROIs: an object array holding one array per ROI."""
        parts = self._read(self._selected())
        out = np.empty(len(parts), dtype=object)
        out[:] = parts
        return out

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, data)`` of the selected ROIs, read into memory, offsets from 0."""
        if self._rows is None and self._offsets is not None and isinstance(self._data, np.ndarray):
            return self._offsets - self._offsets[0], self._data[
                self._offsets[0] : self._offsets[-1]
            ]
        parts = self._read(self._selected())
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.concatenate(parts) if parts else np.empty(0, dtype=self._dtype)
        return offsets, data.astype(self._dtype, copy=False)

    def to_awkward(self) -> ak.Array:
        """A plain ``awkward.Array`` (``n * var * dtype``) of the selected ROIs, read now.

        What anndata's own writers and readers know: ``write_h5ad``, ``write_zarr`` and
        ``anndata.io.write_elem`` store it in anndata's awkward encoding.

        Examples
        --------
        >>> import numpy as np
        >>> from zstore.ragged import RaggedArray
        >>> ypix = RaggedArray.from_arrays([np.array([3, 4]), np.array([7])], dtype="int16")
        >>> plain = ypix.to_awkward()
        >>> type(plain).__name__, str(plain.type), plain.tolist()
        ('Array', '2 * var * int16', [[3, 4], [7]])
        """
        offsets, data = self.buffers()
        return ak.Array(
            ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(data))
        )

    def _selected(self) -> np.ndarray:
        return self._rows if self._rows is not None else np.arange(len(self))

    def _base_row(self, i: int) -> int:
        return int(self._rows[i]) if self._rows is not None else i

    def _all_offsets(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = np.asarray(self._offsets_source[:], dtype=np.int64)
        return self._offsets

    def _read(self, rows: np.ndarray) -> list[np.ndarray]:
        if len(rows) == 0:
            return []
        offsets = self._all_offsets()
        starts, stops = offsets[rows], offsets[rows + 1]
        lo, hi = int(starts.min()), int(stops.max())
        needed = int((stops - starts).sum())
        if hi - lo <= 4 * needed + (1 << 20):
            block = np.asarray(self._data[lo:hi])
            return [block[a - lo : b - lo].copy() for a, b in zip(starts, stops, strict=True)]
        return [np.asarray(self._data[int(a) : int(b)]) for a, b in zip(starts, stops, strict=True)]


def _normalize(index: Any, n: int) -> Any:
    if isinstance(index, slice):
        return index
    arr = np.asarray(index)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean index of shape {arr.shape} for {n} ROIs")
        return np.flatnonzero(arr)
    if arr.dtype.kind not in "iu":
        raise IndexError(f"ROIs are selected by int, slice or bool mask, not {arr.dtype}")
    return arr


def write_ragged(
    group: zarr.Group,
    name: str,
    ragged: RaggedArray | Sequence[Any],
    *,
    compressors: Any = "auto",
) -> None:
    """Write a RaggedArray (or a list of 1-D arrays) in anndata's awkward encoding."""
    if not isinstance(ragged, RaggedArray):
        ragged = RaggedArray.from_arrays(ragged)
    offsets, data = ragged.buffers()
    form = {
        "class": "ListOffsetArray",
        "offsets": "i64",
        "content": {
            "class": "NumpyArray",
            "primitive": str(data.dtype),
            "inner_shape": [],
            "parameters": {},
            "form_key": "node1",
        },
        "parameters": {},
        "form_key": "node0",
    }
    node = group.create_group(
        name,
        attributes={**AWKWARD_ENCODING, "length": len(ragged), "form": json.dumps(form)},
        overwrite=True,
    )
    array_attrs: dict[str, Any] = {"encoding-type": "array", "encoding-version": "0.2.0"}
    for key, values, chunk in (
        (_OFFSETS_KEY, offsets, _OFFSETS_CHUNK),
        (_DATA_KEY, data, _DATA_CHUNK),
    ):
        arr = node.create_array(
            key,
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(1, min(chunk, len(values))),),
            attributes=array_attrs,
            compressors=compressors,
        )
        if len(values):
            arr[:] = values


def as_ragged(value: Any) -> RaggedArray | None:
    """``value`` as a RaggedArray when it is one per-ROI list of numbers: a RaggedArray,
    or a plain awkward array of type ``n * var * number`` (what ``to_memory()``, anndata's
    readers and ``RaggedArray.to_awkward`` give); None for anything else.

    Examples
    --------
    >>> import awkward as ak, numpy as np
    >>> from zstore.ragged import as_ragged
    >>> as_ragged(ak.Array([[1, 2], [3]]))
    RaggedArray(n=2, dtype=int64, in memory)
    >>> as_ragged(ak.Array([{"x": 1}])) is None, as_ragged(np.zeros(3)) is None
    (True, True)
    """
    if isinstance(value, RaggedArray):
        return value
    if not isinstance(value, ak.Array) or value.ndim != 2:
        return None
    layout = value.layout
    if isinstance(layout, ak.contents.ListArray):
        layout = layout.to_ListOffsetArray64(True)
    if not isinstance(layout, ak.contents.ListOffsetArray) or layout.parameters:
        return None
    content = layout.content
    if not isinstance(content, ak.contents.NumpyArray) or content.parameters:
        return None
    data = np.asarray(content.data)
    if data.ndim != 1 or data.dtype.kind not in "iufb":
        return None
    offsets = np.asarray(layout.offsets, dtype=np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    return RaggedArray(offsets - start, np.ascontiguousarray(data[start:stop]))


def is_ragged_group(node: Any) -> bool:
    """True for a group zstore can read lazily: a plain ``var * T`` awkward array."""
    if not isinstance(node, zarr.Group):
        return False
    if node.attrs.get("encoding-type") != "awkward-array":
        return False
    try:
        form = json.loads(str(node.attrs["form"]))
    except (KeyError, TypeError, ValueError):
        return False
    return (
        form.get("class") == "ListOffsetArray"
        and form.get("content", {}).get("class") == "NumpyArray"
        and not form["content"].get("inner_shape")
        and form.get("form_key") == "node0"
        and form["content"].get("form_key") == "node1"
    )


def read_ragged(
    node: zarr.Group, *, origin: str | None = None, label: str | None = None
) -> RaggedArray:
    """A lazy RaggedArray over a stored awkward list array; reads nothing now.

    ``origin`` names the stored version and path, so a save can tell it is unchanged.
    ``label`` (e.g. "trial 't' obsm/ypix"): a damaged chunk read later raises
    CorruptChunkError naming it (:func:`zstore.shards.read_checked`).
    """
    offsets: Any = node[_OFFSETS_KEY]
    data: Any = node[_DATA_KEY]
    if label is not None:
        offsets, data = CheckedArray(offsets, label), CheckedArray(data, label)
    return RaggedArray(offsets, data, origin=origin)
