"""ROI identity: one rule for every function that takes ROIs.

ROIs are named by their stored IDs, the obs names (Suite2p's ROI indices as strings:
``'0', '1', '5', ...``; non-cells are dropped at ingest, so the IDs have gaps). An ID
is an int or a string: ``5``, ``np.int64(5)`` and ``'5'`` name one ROI. When the stored
IDs are whole numbers (Suite2p's), a string names the number ``int()`` reads in it, so
``'05'``, ``' 5'``, ``'+5'`` and the full-width ``'５'`` (what a CJK input method types)
name ROI 5 too; ``'5.0'``, like the float ``5.0``, is refused: IDs are whole numbers. An
ID that is not stored is an error naming it and the nearest stored IDs; it is never taken
as a row position. Row positions are used only where the caller asks for them by name
(``iloc=``).
"""

from __future__ import annotations

import bisect
import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .errors import ArgumentTypeError, InvalidArgumentError, RoiNotFoundError, RowPositionError

__all__ = ["normalize_roi_id", "resolve_rois"]

_WHOLE = "ROI IDs are whole numbers (Suite2p's ROI indices), given as 5 or '5'"


def normalize_roi_id(roi: Any) -> str:
    """The stored form of one ROI ID: ``5``, ``np.int64(5)`` and ``'5'`` give ``'5'``.

    Raises ``ArgumentTypeError`` (a TypeError) for anything but an int or a string: a
    float (``5.0``) is refused rather than rounded, and a bool is not an ID.

    Examples
    --------
    >>> normalize_roi_id(5), normalize_roi_id("12"), normalize_roi_id("cell_3")
    ('5', '12', 'cell_3')
    >>> normalize_roi_id(5.0)
    Traceback (most recent call last):
    ...
    zstore.errors.ArgumentTypeError: a ROI ID is an int or a string (5 or '5'), not a float: ...
    """
    if isinstance(roi, bool | np.bool_):
        raise ArgumentTypeError(
            f"a ROI ID is an int or a string (5 or '5'), not a bool: got {roi!r}"
        )
    if isinstance(roi, int | np.integer):
        return str(int(roi))
    if isinstance(roi, str):
        return roi
    if isinstance(roi, float | np.floating):
        value = float(roi)
        fix = f": pass {int(value)}" if value.is_integer() else ""
        raise ArgumentTypeError(
            f"a ROI ID is an int or a string (5 or '5'), not a float: got {value!r}. "
            f"ROI IDs are whole numbers (Suite2p's ROI indices){fix}"
        )
    raise ArgumentTypeError(
        f"a ROI ID is an int or a string (a stored obs name such as 5 or '5'), got "
        f"{type(roi).__name__} {roi!r}"
    )


def resolve_rois(
    obs_names: Iterable[Any],
    rois: Any = None,
    *,
    iloc: Any = None,
    where: str = "the data",
) -> np.ndarray:
    """Row positions of ``rois`` (stored IDs) or of ``iloc`` (row positions), in the
    order given; neither: every row.

    Parameters
    ----------
    obs_names
        The stored ROI IDs, in row order (``data.obs_names``).
    rois
        One ID or a sequence of IDs (ints or strings meaning the same ID).
    iloc
        One row position or a sequence of them (0 <= position < number of ROIs): for
        callers that ask for positions explicitly. Not together with ``rois``.
    where
        What holds the ROIs, for error messages (``"trial 't-000' of 'RL109'"``).

    Raises
    ------
    RoiNotFoundError
        (a KeyError) an ID that is not stored; the message names the nearest stored IDs.
    ArgumentTypeError
        An ID that is neither an int nor a string (a float such as ``5.0``, a bool).
    RowPositionError
        (an IndexError) a position outside the rows.

    Examples
    --------
    >>> resolve_rois(["0", "1", "3", "5"], [5, "1"]).tolist()
    [3, 1]
    >>> resolve_rois(["0", "1", "3", "5"], iloc=[0, 3]).tolist()
    [0, 3]
    >>> resolve_rois(["0", "1", "3", "5"], 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zstore.errors.RoiNotFoundError: ROI 4 is not stored in the data...nearest stored IDs: 3, 5...
    """
    names = [str(n) for n in obs_names]
    if rois is not None and iloc is not None:
        raise ArgumentTypeError("pass rois= (stored ROI IDs) or iloc= (row positions), not both")
    if iloc is not None:
        return _positions(iloc, len(names), where)
    if rois is None:
        return np.arange(len(names), dtype=np.intp)
    wanted = [normalize_roi_id(r) for r in _as_list(rois, "rois")]
    row_of: dict[Any, int] = {name: row for row, name in enumerate(names)}
    if len(row_of) != len(names):
        raise InvalidArgumentError(
            f"{where}: the stored ROI IDs are not unique, so an ID names no one ROI"
        )
    numeric = _numeric(names)
    if numeric is not None:  # '05', '５' and 5 name the stored '5'
        row_of = {value: row for row, value in enumerate(numeric)}
        keys: list[Any] = [_int_of(r) for r in wanted]
    else:
        keys = list(wanted)
    missing = [r for r, key in zip(wanted, keys, strict=True) if key is None or key not in row_of]
    if missing:
        raise RoiNotFoundError(_missing_message(missing, names, where))
    return np.array([row_of[key] for key in keys], dtype=np.intp)


def nearest_ids(roi: str, names: Sequence[str], n: int = 2) -> list[str]:
    """Stored IDs closest to ``roi``: for numeric IDs the nearest below and above (the
    two smallest or largest beyond the ends); otherwise the most similar names; none
    for text that is no whole number among numeric IDs."""
    numeric = _numeric(names)
    if numeric is not None:
        value = _int_of(roi)
        if value is None:
            return []
        order = sorted(range(len(names)), key=numeric.__getitem__)
        sorted_ids = [numeric[i] for i in order]
        cut = bisect.bisect_left(sorted_ids, value)
        below = [names[i] for i in order[max(0, cut - n) : cut]][::-1]
        above = [names[i] for i in order[cut : cut + n]]
        picked = [below[0], above[0]] if below and above else (below or above)[:n]
        return sorted(picked, key=int)
    close = difflib.get_close_matches(roi, list(names), n=n, cutoff=0.0)
    return close or list(names[:n])


def _shown(roi: str, numeric: bool) -> str:
    """How the message names a wanted ID: its number, else the text quoted."""
    value = _int_of(roi) if numeric else (int(roi) if _is_int(roi) else None)
    return str(value) if value is not None else repr(roi)


def _why(roi: str, numeric: Sequence[int]) -> str:
    """Why ``roi`` names no ROI among whole-number IDs ('' for a number not stored)."""
    value = _int_of(roi)
    if value is not None:
        return "Suite2p's ROI IDs start at 0" if value < 0 else ""
    try:
        number = float(roi)
    except ValueError:
        return "the stored IDs are whole numbers (Suite2p's ROI indices)"
    stored = math.isfinite(number) and number.is_integer() and int(number) in numeric
    return f"{_WHOLE}, not {roi.strip()}" + (f" (pass {int(number)})" if stored else "")


def _missing_message(missing: list[str], names: list[str], where: str) -> str:
    numeric = _numeric(names)
    is_numeric = numeric is not None
    ids = "stored ROI IDs" if len(missing) > 1 else "a stored ROI ID"
    if len(missing) == 1:
        roi = missing[0]
        near = nearest_ids(roi, names)
        what = f"ROI {_shown(roi, is_numeric)} is"
        why = _why(roi, numeric) if numeric is not None else ""
        nearest = f"; nearest stored IDs: {', '.join(near) if near else 'none'}" if near else ""
        if why:
            nearest = f": {why}{nearest}"
    else:
        shown = []
        for roi in missing[:5]:
            near = nearest_ids(roi, names)
            why = _why(roi, numeric) if numeric is not None and _int_of(roi) is None else ""
            detail = why or f"nearest {', '.join(near) if near else 'none'}"
            shown.append(f"{_shown(roi, is_numeric)} ({detail})")
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        what = f"ROIs {'; '.join(shown)}{more} are"
        nearest = ""
    gaps = is_numeric and all((v := _int_of(r)) is not None and v >= 0 for r in missing)
    hint = " (non-cells are dropped at ingest, so stored IDs have gaps)" if gaps else ""
    span = f", IDs {min(numeric)}..{max(numeric)}" if numeric is not None and numeric else ""
    return (
        f"{what} not stored in {where}{hint}{nearest}. Pass {ids} ({len(names)} "
        f"stored{span}: obs_names lists them), or, in Python, iloc= for row positions"
    )


def _positions(iloc: Any, n: int, where: str) -> np.ndarray:
    items = _as_list(iloc, "iloc")
    bad = [
        p for p in items if isinstance(p, bool | np.bool_) or not isinstance(p, int | np.integer)
    ]
    if bad:
        raise ArgumentTypeError(f"iloc= takes row positions (ints), got {bad[:5]}")
    positions = [int(p) for p in items]
    outside = [p for p in positions if not 0 <= p < n]
    if outside:
        raise RowPositionError(
            f"row positions {outside[:5]} are outside the {n} ROIs of {where} "
            f"(positions run 0..{n - 1}); pass rois= to pick ROIs by their stored IDs"
        )
    return np.array(positions, dtype=np.intp)


def _as_list(value: Any, name: str) -> list[Any]:
    """One item, or the items of a sequence; a scalar of any kind (a float too) is one
    item, so that its own type error names what a ROI ID is."""
    if isinstance(value, str | bytes | int | float | complex | np.generic) or value is None:
        return [_plain(value)]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return [value.item()]
    try:
        items = list(value)
    except TypeError:
        return [value]
    return [_plain(v) for v in items]


def _plain(value: Any) -> Any:
    """numpy ints and bools as Python's (numpy floats stay: their error names them)."""
    return value.item() if isinstance(value, np.integer | np.bool_) else value


def _is_int(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _int_of(text: str) -> int | None:
    """The whole number ``int()`` reads in ``text`` ('5', '05', ' 5', '+5', '５', '-1'),
    or None (no digit separators: '1_0' is not 10)."""
    if "_" in text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _numeric(names: Sequence[str]) -> list[int] | None:
    """The IDs as integers when every one is a plain decimal number (Suite2p's) and no
    two are the same number ('5' and '05' are matched as text)."""
    if not names or not all(_is_int(n) for n in names):
        return None
    values = [int(n) for n in names]
    return values if len(set(values)) == len(values) else None
