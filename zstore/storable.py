"""What anndata stores exactly, and what it would silently change: coerce or refuse.

anndata writes an object column or list it cannot type as text: ``[1.5, nan]`` comes
back as ``['1.5', 'nan']``, ``['a', None]`` as ``['a', 'None']``, a list of dicts as their
``repr``. zstore does not let a value change on its way to the store:

- an object column whose present values are all text, all booleans or all numbers, with
  missing values among them, becomes pandas' nullable ``string``, ``boolean``, ``Int64``
  or ``float64`` column (in the caller's object too, so that what it holds is what is
  stored; a warning says so);
- any other object column (mixed types, bytes, containers), and any uns list or object
  array that is not all text, is refused, naming it, before anything is written;
- so are the columns and uns values anndata has no writer for (dates and times, periods,
  intervals, sets, tuples, bytes, ...), with the conversion to make;
- and every name that becomes a key (layers, columns, obsm/uns keys) is checked by the
  portable rule of :mod:`zstore.names` (:func:`check_names`).

Pure functions on pandas and numpy values; they know nothing of stores.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import numbers
import pathlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from .annotated import ALIGNED
from .errors import InvalidNameError, UnstorableValueError, emit_user_warning
from .names import check_column, check_name

__all__ = ["check_names", "check_processing", "prepare"]


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
    check_processing(adata.uns, f"{label} uns")
    _mapping(adata.uns, f"{label} uns")


def check_processing(uns: Mapping[str, Any], where: str) -> None:
    """``uns['processing']`` is zstore's provenance record: a dict of one dict per layer."""
    records = uns.get("processing")
    if "processing" in uns and not isinstance(records, Mapping):
        raise UnstorableValueError(
            f"{where}['processing'] is {_short(records)} ({type(records).__name__}), but "
            f"uns['processing'] is zstore's provenance key: a dict of {{layer name: dict of "
            f"how it was computed}} that add_layer and compute_dff fill in. Keep your note "
            f"under another key, e.g. uns['notes'] = ..., and del uns['processing']"
        )


def _frame(frame: pd.DataFrame, where: str) -> None:
    _check_repeated(frame, where)
    for column in frame.columns:
        values = frame[column]
        _check_dtype(values.dtype, f"{where} column {column!r}")
        if values.dtype != object:
            continue
        converted = _coerced(values, f"{where} column {column!r}")
        if converted is not None:
            frame[column] = converted


def _coerced(values: pd.Series, where: str) -> pd.Series | None:
    missing = values.isna()
    present = values[~missing]
    for v in present:
        if isinstance(v, str):
            _check_text(v, where)
        elif isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
            raise UnstorableValueError(
                f"{where} holds the integer {v}, too large for 64 bits; convert the column "
                f"first: .astype(str) (text) or .astype(float)"
            )
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
    raise UnstorableValueError(
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
        elif isinstance(value, list) or (isinstance(value, np.ndarray) and value.dtype == object):
            _sequence(value, here)
        else:
            _check_value(value, here)


def _sequence(value: Any, where: str) -> None:
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = np.asarray(value, dtype=object)
    if array.dtype != object:
        return  # numbers, booleans or text of one kind: stored as an array of them
    if all(isinstance(v, str) for v in array.ravel().tolist()):
        for item in array.ravel().tolist():
            _check_text(item, where)
        return
    kinds = sorted({type(v).__name__ for v in array.ravel().tolist()})
    raise UnstorableValueError(
        f"{where} is a sequence holding {', '.join(kinds)}: anndata would store each item as "
        f"text. Store a dict (for named values), an array of numbers, or a list of strings"
    )


# -- what anndata has no writer for -------------------------------------------------------

_DATES = "dates and times"
#: uns values anndata cannot write: what they are, and what to store instead.
_VALUE_FIXES: tuple[tuple[tuple[type, ...], str, str], ...] = (
    ((set, frozenset), "a set", "store sorted(value) (a list) instead"),
    ((tuple,), "a tuple", "store list(value) instead"),
    (
        (datetime.datetime, datetime.date, datetime.time, np.datetime64),
        "a date or time",
        "store value.isoformat() (text), or a number such as value.timestamp() (seconds)",
    ),
    (
        (datetime.timedelta, np.timedelta64),
        "a duration",
        "store value.total_seconds() (a number of seconds) instead",
    ),
    ((bytes, bytearray), "bytes", "store value.decode() (text) or np.frombuffer(value, 'uint8')"),
    ((complex, np.complexfloating), "a complex number", "store [value.real, value.imag]"),
    ((pathlib.PurePath,), "a path", "store str(value) instead"),
    ((decimal.Decimal, fractions.Fraction), "an exact number", "store float(value) instead"),
    ((pd.Series, pd.Index), "a pandas Series", "store value.to_numpy() or a DataFrame"),
)


def _check_value(value: Any, where: str) -> None:
    """Refuse an uns value anndata cannot write, with what to store instead."""
    for types, what, fix in _VALUE_FIXES:
        if isinstance(value, types):
            raise UnstorableValueError(
                f"{where} is {what} ({type(value).__name__}), which anndata cannot store; {fix}"
            )
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise UnstorableValueError(
            f"{where} is the integer {value}, too large for 64 bits; store str(value) (text) "
            f"or float(value) instead"
        )
    if isinstance(value, str | np.str_):
        _check_text(str(value), where)
    elif isinstance(value, np.ma.MaskedArray):
        raise UnstorableValueError(
            f"{where} is a masked array, which anndata cannot store; store "
            f"value.filled(np.nan) (masked values as NaN) and, if needed, np.ma.getmaskarray"
            f"(value) as another entry"
        )
    elif isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            for item in value.ravel().tolist():
                _check_text(item, where)
    elif not _known_storable(value):
        raise UnstorableValueError(
            f"{where} is {type(value).__name__!r} ({_short(value)}), which anndata cannot "
            f"store; store text, a number, a bool, None, a dict, a list or a numpy array "
            f"instead (e.g. str(value))"
        )


#: Modules of the other uns values anndata writes (sparse matrices, AnnData, arrays), and
#: zstore's own lazy values (summary images, masks), which zstore's writers store, or
#: refuse with their own error (a damaged image: CorruptChunkError naming it).
_STORABLE_MODULES = (
    "scipy.sparse",
    "anndata",
    "awkward",
    "dask",
    "zarr",
    "h5py",
    "cupy",
    "zstore",
)


def _known_storable(value: Any) -> bool:
    """A value of a type anndata has a writer for (checked by type, not by trying)."""
    if value is None or isinstance(value, bool | numbers.Real | np.generic):
        return not isinstance(value, np.void | np.object_) and value is not pd.NA
    module = type(value).__module__ or ""
    return module.startswith(_STORABLE_MODULES)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(text: str, where: str) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate, from a mis-decoded file
    name): it cannot be written as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise UnstorableValueError(
            f"{where} holds text with a character that cannot be written as UTF-8 "
            f"({text[err.start : err.end]!r} at position {err.start}, a lone surrogate); "
            f"store text.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace') or "
            f"the correctly decoded text"
        ) from None


def _check_dtype(dtype: Any, where: str) -> None:
    """Refuse a column of a dtype anndata has no writer for, with the conversion to make."""
    fix = _dtype_fix(dtype)
    if fix is not None:
        raise UnstorableValueError(
            f"{where} has dtype {dtype}, which anndata cannot store; convert it first: {fix}"
        )


def _dtype_fix(dtype: Any) -> str | None:
    if isinstance(dtype, pd.DatetimeTZDtype) or getattr(dtype, "kind", "") == "M":
        return (
            "column.astype(str) for ISO text, or seconds as numbers, e.g. "
            "(column - column.iloc[0]).dt.total_seconds()"
        )
    if getattr(dtype, "kind", "") == "m":
        return "column.dt.total_seconds() (a number of seconds)"
    if isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype):
        return "column.astype(str) (text)"
    if isinstance(dtype, pd.SparseDtype):
        return "column.sparse.to_dense()"
    if isinstance(dtype, pd.Float32Dtype | pd.Float64Dtype):
        return "column.astype('float64') (missing values become NaN)"
    if isinstance(dtype, np.dtype) and dtype.kind in "SV":
        return "column.str.decode('utf-8') for text (bytes would not read back as bytes)"
    if isinstance(dtype, np.dtype | pd.CategoricalDtype | pd.StringDtype | pd.BooleanDtype):
        return None
    if pd.api.types.is_integer_dtype(dtype):
        return None  # pandas' nullable Int64 and friends
    return "column.astype(str) (text) or .to_numpy() of numbers"


# -- names -----------------------------------------------------------------------------


def check_names(adata: Any, label: str, stored: Any = None) -> None:
    """Check every name of ``adata`` that becomes a key (:func:`zstore.names.check_name`).

    ``label`` names the trial ("trial 't-005'"). Names that ``stored`` (the
    :class:`~zstore.changes.StoredState` of the trial as loaded) already has are not
    checked again: a trial written under an older rule can still be saved.
    """
    old = {path for path, _, _ in _names(_StoredView(stored))} if stored is not None else set()
    for path, kind, role in _names(adata):
        if path in old or (path[:2] == ("uns", "processing") and ("layers", *path[2:]) in old):
            continue  # an old name, or the record of an old layer (named like it)
        check = check_column if role == "column" else check_name
        check(path[-1], kind=kind, of=label)
    for where, frame in _frames(adata):
        _check_frame_shape(frame, f"{where} of {label}")


def _names(data: Any) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """Every name that becomes a key: (its path, what it is, "key" | "column" | "index")."""
    for name in data.layers:
        yield ("layers", name), "layer", "key"
    for attr in ALIGNED:
        for key, value in getattr(data, attr).items():
            yield (attr, key), f"{attr} key", "key"
            if isinstance(value, pd.DataFrame):
                yield from _frame_names(value, (attr, key), f"{attr}[{key!r}]")
    for axis in ("obs", "var"):
        yield from _frame_names(getattr(data, axis), (axis,), axis)
    yield from _key_names(data.uns, ("uns",), "uns")


def _frame_names(
    frame: pd.DataFrame, path: tuple[Any, ...], where: str
) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    for column in frame.columns:
        yield (*path, column), f"{where} column", "column"
    if frame.index.name is not None:
        yield (*path, "<index>", frame.index.name), f"{where} index name", "index"


def _key_names(
    mapping: Mapping[Any, Any], path: tuple[Any, ...], where: str
) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    for key, value in mapping.items():
        yield (*path, key), f"{where} key", "key"
        here = f"{where}[{key!r}]"
        if isinstance(value, Mapping):
            yield from _key_names(value, (*path, key), here)
        elif isinstance(value, pd.DataFrame):
            yield from _frame_names(value, (*path, key), here)


def _frames(data: Any) -> Iterator[tuple[str, pd.DataFrame]]:
    yield "obs", data.obs
    yield "var", data.var
    for attr in ALIGNED:
        for key, value in getattr(data, attr).items():
            if isinstance(value, pd.DataFrame):
                yield f"{attr}[{key!r}]", value


def _check_repeated(frame: pd.DataFrame, where: str) -> None:
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise InvalidNameError(
            f"{where} has repeated column names {repeated}; give each column its own name"
        )


def _check_frame_shape(frame: pd.DataFrame, where: str) -> None:
    """What anndata refuses in a data frame's columns, said before anything is written."""
    _check_repeated(frame, where)
    name = frame.index.name
    if name is not None and name in frame.columns:
        same = np.array_equal(frame[name].astype(str).to_numpy(), frame.index.astype(str))
        if not same:
            raise InvalidNameError(
                f"{where}: its index is named {name!r}, like one of its columns with other "
                f"values; rename one, e.g. frame.index.name = None"
            )


class _StoredView:
    """A :class:`~zstore.changes.StoredState` seen as an AnnData's names."""

    def __init__(self, stored: Any) -> None:
        self.layers = [k.partition("/")[2] for k in stored.matrices if k.startswith("layers/")]
        self.obs, self.var, self.uns = stored.obs, stored.var, stored.uns
        for attr in ALIGNED:
            entries = {
                key.partition("/")[2]: value
                for key, value in stored.aligned.items()
                if key.partition("/")[0] == attr
            }
            setattr(self, attr, entries)
