"""Which names may become keys in the store: trial IDs, layer and column names."""

from __future__ import annotations

import re

from .errors import InvalidNameError

__all__ = ["check_name"]

# Control characters (C0, DEL, C1): invisible in listings and unsafe in paths and URLs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Zarr's own metadata documents (v3 and v2): a node of that name would be hidden by,
#: or would hide, the metadata of its parent.
_METADATA = frozenset({"zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"})


def check_name(name: object, *, kind: str) -> str:
    """Return ``name`` if it can be one key of the store, else raise InvalidNameError.

    A name becomes one path segment of the store: it may not be empty, contain '/' or
    '\\\\', be '.' or '..', start with '__' (reserved by Zarr) or hold control characters.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} must be a str, got {name!r} ({type(name).__name__})")
    problem = None
    if not name or not name.strip():
        problem = "it is empty"
    elif "/" in name or "\\" in name:
        problem = "it contains a path separator ('/' or '\\')"
    elif name in (".", ".."):
        problem = "it is a relative path component"
    elif name.startswith("__"):
        problem = "names starting with '__' are reserved by Zarr"
    elif name.lower() in _METADATA:
        problem = "it is the name of Zarr's own metadata documents"
    elif _CONTROL.search(name):
        problem = "it contains control characters"
    elif name != name.strip():
        problem = "it starts or ends with white space"
    if problem:
        raise InvalidNameError(
            f"{kind} {name!r} cannot be stored: {problem}; use letters, digits, '-', '_' "
            f"or '.' (for example 't-005')"
        )
    return name
