"""Checks of the arguments of public functions, at their boundary, before any work.

Small pure checkers in the manner of zarr's ``parse_*`` helpers: each returns the value
in the form the caller uses (a float, a list of IDs) or raises
:class:`~zstore.errors.ArgumentTypeError` (a TypeError: a value of the wrong type) or
:class:`~zstore.errors.InvalidArgumentError` (a ValueError: a value of the right type
that cannot be used). Messages name the argument (and ``where``: the function or the
trial), what it takes, what was given, and the fix in one form, ``pass name=<what>``,
which the CLI rewrites to its flags (``pass fs=<Hz>`` -> ``--fs HZ``).

A bool is never a number here: ``True`` is an int to Python, but ``fs=True`` is a
mistake, not 1 Hz.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "boolean",
    "choice",
    "dense_matrix",
    "duration",
    "finite_number",
    "name_list",
    "number",
    "optional_text",
    "path_argument",
    "positive_int",
    "positive_number",
    "progress_option",
    "shown",
    "trial_ids",
]

#: How many characters of a wrong value a message shows.
_SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """A wrong value as a message shows it: its repr, cut short, and its type."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails is no reason to hide the real error
        text = f"<{type(value).__name__} object>"
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _fix(fix: str | None) -> str:
    return f"; {fix}" if fix else ""


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def number(value: Any, *, name: str, where: str = "", fix: str | None = None) -> float:
    """``value`` as a float: an int or float (Python or numpy), never a bool or text.

    Examples
    --------
    >>> number(np.float32(2.5), name="fs")
    2.5
    >>> number("30", name="fs", fix="pass fs=<Hz>")
    Traceback (most recent call last):
    ...
    zstore.errors.ArgumentTypeError: fs must be a number, got '30' (str); pass fs=<Hz>
    """
    if _is_bool(value) or not isinstance(value, int | float | np.integer | np.floating):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a number, got {shown(value)}{_fix(fix)}"
        )
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        return math.inf if value > 0 else -math.inf


def finite_number(value: Any, *, name: str, where: str = "", fix: str | None = None) -> float:
    """``value`` as a finite float (no NaN or infinity)."""
    out = number(value, name=name, where=where, fix=fix)
    if not math.isfinite(out):
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} must be a finite number, got {value!r}{_fix(fix)}"
        )
    return out


def positive_number(
    value: Any,
    *,
    name: str,
    where: str = "",
    fix: str | None = None,
    allow_zero: bool = False,
) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``).

    Examples
    --------
    >>> positive_number(0, name="sig_baseline", allow_zero=True)
    0.0
    >>> positive_number(float("inf"), name="fs", fix="pass fs=<Hz>")
    Traceback (most recent call last):
    ...
    zstore.errors.InvalidArgumentError: fs must be a finite number, got inf; pass fs=<Hz>
    """
    out = finite_number(value, name=name, where=where, fix=fix)
    if out < 0 or (out == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} must be a number {bound}, got {value!r}{_fix(fix)}"
        )
    return out


def positive_int(
    value: Any, *, name: str, where: str = "", fix: str | None = None, minimum: int = 1
) -> int:
    """``value`` as an int >= ``minimum`` (Python or numpy int; not a bool or a float)."""
    if _is_bool(value) or not isinstance(value, int | np.integer):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a whole number (an int), got {shown(value)}{_fix(fix)}"
        )
    if value < minimum:
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} must be an int >= {minimum}, got {value!r}{_fix(fix)}"
        )
    return int(value)


def boolean(value: Any, *, name: str, where: str = "") -> bool:
    """``value`` when it is True or False (numpy's bools too); nothing else."""
    if not _is_bool(value):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be True or False, got {shown(value)}; "
            f"pass {name}=True or {name}=False"
        )
    return bool(value)


def duration(value: Any, *, name: str, where: str = "") -> datetime.timedelta:
    """``value`` when it is a ``datetime.timedelta`` >= 0."""
    fix = f"pass {name}=datetime.timedelta(days=7)"
    if not isinstance(value, datetime.timedelta):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a datetime.timedelta, got {shown(value)}; {fix}"
        )
    if value < datetime.timedelta(0):
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} must not be negative, got {value!r}; {fix}"
        )
    return value


def choice(value: Any, choices: Iterable[str], *, name: str, where: str = "") -> str:
    """``value`` when it is one of the strings ``choices``."""
    options = tuple(choices)
    fix = " or ".join(f"{name}={option!r}" for option in options[:3])
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be one of {options}, got {shown(value)}; pass {fix}"
        )
    if value not in options:
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} must be one of {options}, got {value!r}; pass {fix}"
        )
    return value


def optional_text(value: Any, *, name: str, where: str = "", fix: str | None = None) -> str | None:
    """``value`` when it is None or a non-empty str."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be text (a str) or None, got {shown(value)}{_fix(fix)}"
        )
    if not value.strip():
        raise InvalidArgumentError(f"{_prefix(where)}{name} must not be empty{_fix(fix)}")
    return value


#: The longest file name (one path component) and path most file systems take, in bytes.
_MAX_NAME_BYTES = 255
_MAX_PATH_BYTES = 4096


def path_argument(
    value: Any, *, name: str, where: str = "", fix: str | None = None
) -> os.PathLike[str] | str:
    """``value`` when it is a path: a str or an ``os.PathLike`` (``pathlib.Path``), not
    empty, with no NUL byte and no component longer than 255 bytes. Never an int: to
    ``open()`` an int is a file descriptor (``0`` is stdin, ``True`` is stdout).

    Examples
    --------
    >>> path_argument(True, name="path")
    Traceback (most recent call last):
    ...
    zstore.errors.ArgumentTypeError: path must be a path (a str or pathlib.Path), got True (bool)
    """
    hint = _fix(fix)
    if not isinstance(value, str | os.PathLike):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a path (a str or pathlib.Path), got "
            f"{shown(value)}{hint}"
        )
    text = os.fspath(value)
    if not isinstance(text, str):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a path as text, got {shown(text)}{hint}"
        )
    if not text or "\x00" in text:
        what = "empty" if not text else "a path with a NUL character"
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} is {what}: {shown(text)}{hint or '; pass a file path'}"
        )
    encoded = [part.encode("utf-8", "surrogateescape") for part in text.split(os.sep)]
    longest = max(encoded, key=len)
    if len(longest) > _MAX_NAME_BYTES or sum(len(p) + 1 for p in encoded) > _MAX_PATH_BYTES:
        raise InvalidArgumentError(
            f"{_prefix(where)}{name} is too long: {shown(text)} has a name of "
            f"{len(longest)} bytes (file systems take {_MAX_NAME_BYTES} bytes per name and "
            f"{_MAX_PATH_BYTES} per path); pass a shorter {name}"
        )
    return value


def name_list(
    value: Any, *, name: str, what: str, where: str = "", example: str = "'t-005'"
) -> list[str] | None:
    """None, or ``value`` as a list of distinct names: one str is one name (never its
    characters); any other iterable of str (list, tuple, pandas Index, numpy array) is
    its items. A mapping, a set (no order) or bytes are refused, as are duplicates.

    Examples
    --------
    >>> name_list("t-005", name="trials", what="trial ID")
    ['t-005']
    >>> name_list(["a", "b", "a"], name="trials", what="trial ID")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zstore.errors.InvalidArgumentError: trials names the trial ID 'a' twice; pass trials=[...] ...
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    hint = f"pass {name}=[{example}, ...] (or one {what} as a str: {name}={example})"
    if isinstance(value, bytes | bytearray | Mapping | set | frozenset) or not isinstance(
        value, Iterable
    ):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a list of {what}s (str), got {shown(value)}; {hint}"
        )
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must be a list of {what}s, got an array of shape "
            f"{value.shape}; {hint}"
        )
    items = [v.item() if isinstance(v, np.str_) else v for v in value]
    wrong = [v for v in items if not isinstance(v, str)]
    if wrong:
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must hold {what}s as str, got {shown(wrong[0])}; {hint}"
        )
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise InvalidArgumentError(
                f"{_prefix(where)}{name} names the {what} {item!r} twice; pass "
                f"{name}=[...] with each {what} once"
            )
        seen.add(item)
    return items


def trial_ids(value: Any, *, name: str = "trials", where: str = "") -> list[str] | None:
    """``trials=`` of any function: None (all), one trial ID (a str) or a list of
    distinct IDs (see :func:`name_list`)."""
    return name_list(value, name=name, what="trial ID", where=where)


def progress_option(value: Any, *, name: str = "progress", where: str = "") -> Any:
    """``progress=``: None, True, False or a callable."""
    if value is None or _is_bool(value) or callable(value):
        return value
    raise ArgumentTypeError(
        f"{_prefix(where)}{name} must be True (a bar), False (nothing), None (a bar in "
        f"interactive sessions) or a callable progress(label, done, total), got "
        f"{shown(value)}; pass {name}=True"
    )


def dense_matrix(value: Any, *, name: str, where: str = "") -> Any:
    """A ROIs x frames matrix as an array: arrays (numpy, dask, anything with a shape
    and a dtype) as they are, so lazy ones stay lazy; other array-likes (a list of
    lists) through ``np.asarray``. Sparse matrices are refused (traces are dense:
    ``.toarray()``), as are non-numeric values.

    Examples
    --------
    >>> dense_matrix([[1, 2], [3, 4]], name="data").shape
    (2, 2)
    """
    if _is_sparse(value):
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} is a sparse matrix ({type(value).__name__}); calcium "
            f"traces are dense: pass {name}=<matrix>.toarray()"
        )
    if isinstance(value, np.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "ndim")
    ):
        out = value
    else:
        if value is None or isinstance(value, str | bytes | Mapping | set | frozenset):
            raise ArgumentTypeError(
                f"{_prefix(where)}{name} must be a 2-D array of numbers (ROIs x frames), "
                f"got {shown(value)}"
            )
        try:
            out = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged lists, unconvertible objects
            raise ArgumentTypeError(
                f"{_prefix(where)}{name} cannot be read as a 2-D array of numbers (ROIs x "
                f"frames): {err}; pass a numpy or dask array"
            ) from None
    try:
        dtype = np.dtype(getattr(out, "dtype", object))
    except TypeError:  # a dtype numpy does not know (pandas' extension dtypes)
        dtype = np.dtype(object)
    if dtype.kind not in "biuf":
        raise ArgumentTypeError(
            f"{_prefix(where)}{name} must hold numbers, got an array of dtype {dtype} "
            f"({type(value).__name__}); pass an array of floats or ints"
        )
    return out


def _is_sparse(value: Any) -> bool:
    """A scipy sparse matrix or array, or a pydata sparse array (without importing
    either)."""
    module = type(value).__module__ or ""
    return (module.startswith("scipy.sparse") or module.startswith("sparse")) and hasattr(
        value, "shape"
    )
