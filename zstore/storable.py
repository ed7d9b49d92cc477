"""What anndata stores exactly, and what it would silently change: coerce or refuse.

anndata writes an object column or list it cannot type as text: ``[1.5, nan]`` comes
back as ``['1.5', 'nan']``, ``['a', None]`` as ``['a', 'None']``, a list of dicts as their
``repr``. zstore does not let a value change on its way to the store:

- an object column whose present values are all text, all booleans or all numbers, with
  missing values among them, becomes pandas' nullable ``string``, ``boolean``, ``Int64``
  or ``float64`` column (in the caller's object too, so that what it holds is what is
  stored; a warning says so);
- any other object column (mixed types, bytes, containers), and any uns list or object
  array that is not all text, is refused, naming it, before anything is written.

Pure functions on pandas and numpy values; they know nothing of stores.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from .annotated import ALIGNED
from .errors import emit_user_warning

__all__ = ["prepare"]


def prepare(adata: Any, label: str) -> None:
    """Make every element of ``adata`` storable exactly, or raise ValueError naming it."""
    for axis in ("obs", "var"):
        _frame(getattr(adata, axis), f"{label} {axis}")
    for attr in ALIGNED:
        mapping = getattr(adata, attr)
        for key in list(mapping.keys()):
            value = mapping[key]
            if isinstance(value, pd.DataFrame):
                _frame(value, f"{label} {attr}[{key!r}]")
    _mapping(adata.uns, f"{label} uns")


def _frame(frame: pd.DataFrame, where: str) -> None:
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        converted = _coerced(values, f"{where} column {column!r}")
        if converted is not None:
            frame[column] = converted


def _coerced(values: pd.Series, where: str) -> pd.Series | None:
    missing = values.isna()
    present = values[~missing]
    if all(isinstance(v, str) for v in present):
        if not missing.any():
            return None  # text only: anndata stores it as it is
        return _announce(values.astype("string"), where, "text", "pandas' nullable 'string'")
    if all(isinstance(v, bool | np.bool_) for v in present):
        return _announce(values.astype("boolean"), where, "booleans", "pandas' 'boolean'")
    if all(_is_real(v) for v in present):
        if all(isinstance(v, numbers.Integral) for v in present):
            return _announce(values.astype("Int64"), where, "integers", "pandas' 'Int64'")
        return _announce(values.astype(np.float64), where, "numbers", "float64 (NaN)")
    kinds = sorted({type(v).__name__ for v in present})
    raise ValueError(
        f"{where} is an object column holding {', '.join(kinds)}: anndata would store every "
        f"value as text, so they would not read back as they are. Convert it first, e.g. "
        f".astype(str) for text, pd.to_numeric(...) for numbers, or .astype('category')"
    )


def _announce(values: pd.Series, where: str, what: str, dtype: str) -> pd.Series:
    emit_user_warning(
        f"{where} holds {what} in an object column, with missing values; it is stored (and "
        f"now held) as {dtype}, so that the values and the missing ones read back as they "
        f"are (anndata would store the object column as text)"
    )
    return values


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _mapping(mapping: MutableMapping[str, Any], where: str) -> None:
    for key in list(mapping.keys()):
        value = mapping[key]
        here = f"{where}[{key!r}]"
        if isinstance(value, Mapping):
            if isinstance(value, MutableMapping):
                _mapping(value, here)
        elif isinstance(value, pd.DataFrame):
            _frame(value, here)
        elif isinstance(value, list | tuple) or (
            isinstance(value, np.ndarray) and value.dtype == object
        ):
            _sequence(value, here)


def _sequence(value: Any, where: str) -> None:
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = np.asarray(value, dtype=object)
    if array.dtype != object:
        return  # numbers, booleans or text of one kind: stored as an array of them
    if all(isinstance(v, str) for v in array.ravel().tolist()):
        return
    kinds = sorted({type(v).__name__ for v in array.ravel().tolist()})
    raise ValueError(
        f"{where} is a sequence holding {', '.join(kinds)}: anndata would store each item as "
        f"text. Store a dict (for named values), an array of numbers, or a list of strings"
    )
