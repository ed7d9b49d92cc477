"""What produced a lazy array: a record that travels with the array itself.

zstore's processing functions return a :class:`Derived` dask array: the ordinary lazy
array, plus ``provenance`` (the function, its parameters and its input) and, for dF/F,
``nan_rows``, where its blocks report rows that came out all-NaN. A save records the
provenance of each layer it writes in ``uns["processing"]``; computing the array
(``.compute()``, ``np.asarray``) or saving it gives one warning naming the all-NaN
rows. Any further operation (``dff * 2``, a slice, a rechunk) returns a plain dask
array: another computation, with no record.

No registry and no global hook: dropping the array drops its record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import dask.array as da
import numpy as np

from ..errors import emit_user_warning

__all__ = ["Derived", "NaNRows", "derived", "describe", "provenance_of"]


class NaNRows:
    """Rows found all-NaN by the blocks of one lazy result, until they are reported.

    Picklable (the blocks carry it to dask workers); what workers of a distributed
    cluster find stays with them (they warn there), what threads find is reported once.
    """

    def __init__(self, n_rows: int, describe: Callable[[np.ndarray], str], names: Any = None):
        self.n_rows = n_rows
        self.describe = describe
        self.names = list(names) if names is not None else None
        self._found: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add(self, rows: np.ndarray) -> None:
        with self._lock:
            self._found.append(np.asarray(rows))

    def take(self) -> np.ndarray:
        """The rows found since the last take (sorted, unique), forgetting them."""
        with self._lock:
            found, self._found = self._found, []
        return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)

    def warn(self, where: str = "") -> None:
        """One warning naming the rows found since the last one (none: no warning)."""
        rows = self.take()
        if len(rows):
            labels = [self.names[i] for i in rows] if self.names is not None else rows.tolist()
            emit_user_warning(f"{where}{self.describe(np.asarray(labels, dtype=object))}")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class Derived(da.Array):
    """A lazy result of a zstore processing function that knows how it was made."""

    provenance: dict[str, Any]
    nan_rows: NaNRows | None

    def compute(self, **kwargs: Any) -> Any:
        """Compute, then warn once about rows that came out all-NaN (in the caller's
        thread, so the warning points at the caller's line)."""
        out = super().compute(**kwargs)
        if self.nan_rows is not None:
            self.nan_rows.warn()
        return out


def derived(
    array: da.Array, record: Mapping[str, Any], *, nan_rows: NaNRows | None = None
) -> Derived:
    """``array`` with its provenance ``record`` (and an all-NaN report) attached.

    Inputs named in the record (``input``, ``neuropil``) are given as the dask arrays
    themselves: their names identify stored arrays later, and their own provenance is
    kept to describe a computed input.
    """
    out = Derived(array.dask, array.name, array.chunks, meta=da.utils.meta_from_array(array))
    info: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, da.Array):
            info[key] = {"name": value.name, "provenance": provenance_of(value)}
        else:
            info[key] = value
    out.provenance = info
    out.nan_rows = nan_rows
    return out


def provenance_of(value: Any) -> dict[str, Any] | None:
    """The record of a :class:`Derived` array (None for anything else)."""
    record = getattr(value, "provenance", None)
    return dict(record) if isinstance(value, Derived) and isinstance(record, dict) else None


def describe(record: Mapping[str, Any], stored: Mapping[str, str]) -> dict[str, Any]:
    """A record as stored in ``uns["processing"]``: inputs named by their stored paths.

    ``stored`` maps dask names of stored arrays to their paths ("X", "layers/Fneu"); an
    input that is not stored is described by its own record, or as "a computed array".
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and "name" in value:
            out["source" if key == "input" else key] = _source_text(value, stored)
        else:
            out[key] = value
    return out


def _source_text(value: Mapping[str, Any], stored: Mapping[str, str], depth: int = 0) -> str:
    if value.get("name") in stored:
        return stored[str(value["name"])]
    record = value.get("provenance")
    if not isinstance(record, dict) or depth > 4:
        return "a computed array"
    inputs = [
        _source_text(record[k], stored, depth + 1)
        for k in ("input", "neuropil")
        if isinstance(record.get(k), dict)
    ]
    params = [f"{k}={v!r}" for k, v in record.items() if k not in ("function", "input", "neuropil")]
    return f"{record.get('function', '?')}({', '.join(inputs + params)})"
