"""What produced a lazy array: the function, its parameters and its input.

Processing functions record their dask outputs here by name; saving a layer looks the
name up and writes the record to ``uns["processing"][layer]``. Bounded: only recent
records are kept (a graph saved long after it was built simply records nothing).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["lookup", "record"]

_KEEP = 1024
_lock = threading.Lock()
_records: OrderedDict[str, dict[str, Any]] = OrderedDict()


def record(output_name: str, info: dict[str, Any]) -> None:
    """Remember how the dask array called ``output_name`` was computed."""
    with _lock:
        _records[output_name] = dict(info)
        _records.move_to_end(output_name)
        while len(_records) > _KEEP:
            _records.popitem(last=False)


def lookup(output_name: str) -> dict[str, Any] | None:
    """The record of ``output_name``, or None."""
    with _lock:
        found = _records.get(output_name)
    return dict(found) if found is not None else None
