"""Load pickled .npy files (Suite2p's stat.npy, ops.npy, ...) without running code.

``np.load(allow_pickle=True)`` will call any function a file names. Here the pickle
inside an object-dtype .npy is read by an unpickler that resolves only an allow list:
numpy's array and scalar reconstructors and dtypes, plain builtin containers and
numbers, and datetime types. Anything else raises UnsafePickleError naming the file and
the refused global, before it is called.
"""

from __future__ import annotations

import datetime
import io
import os
import pickle
from typing import Any

import numpy as np

from ..errors import Suite2pFormatError, UnsafePickleError
from ._files import check_regular

__all__ = ["ALLOWED_GLOBALS", "load_pickled_npy"]

_NUMPY_ALLOWED = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_SAFE_BUILTINS = {
    "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
    "list", "range", "set", "slice", "str", "tuple",
}  # fmt: skip
_DATETIME = {"date", "datetime", "time", "timedelta", "timezone"}

#: (module, name) pairs the unpickler resolves; everything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {(f"numpy.{core}.{mod}", name) for core in ("core", "_core") for mod, name in _NUMPY_ALLOWED}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("builtins", name) for name in _SAFE_BUILTINS}
    | {("__builtin__", name) for name in _SAFE_BUILTINS}
    | {("datetime", name) for name in _DATETIME}
    | {("_codecs", "encode")}  # bytes in protocol-2 pickles (numpy < 1.10 era files)
)

_RESOLVE = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, *, source: str):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source} refers to {module}.{name}, which zstore will not load: "
                f"Suite2p files hold only numpy arrays, numbers, strings and dates. The "
                f"file may be corrupt or was made to run code; re-create it with suite2p"
            )
        if (module, name) in _RESOLVE:
            return _RESOLVE[(module, name)]
        if module.startswith("numpy.") and module.split(".")[1] in ("core", "_core"):
            # Files from numpy 1 name numpy.core; numpy 2 moved it to numpy._core.
            from numpy import _core as core

            submodule = getattr(core, module.split(".")[2])
            return getattr(submodule, name)
        if module == "datetime":
            return getattr(datetime, name)
        if module in ("builtins", "__builtin__"):
            import builtins

            return getattr(builtins, name)
        import codecs

        return codecs.encode

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source} uses persistent pickle IDs, which zstore refuses")


def load_pickled_npy(path: str | os.PathLike[str]) -> Any:
    """Read an object-dtype .npy written by ``np.save`` without executing code.

    Returns the array's item for 0-d arrays (Suite2p's ops, settings, db dicts) and an
    object array otherwise (stat: one dict per ROI).
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    check_regular(path, Suite2pFormatError, f"Copy the real {name} there")  # a FIFO would hang
    try:
        with open(path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(fh)
            except Exception as err:  # numpy's header parser raises a zoo of types
                raise Suite2pFormatError(
                    f"{path} is not a valid .npy file ({err}); re-export it from suite2p"
                ) from None
            if not dtype.hasobject:
                return np.load(path, mmap_mode="r")
            payload = fh.read()
    except FileNotFoundError:
        raise
    try:
        value = _RestrictedUnpickler(io.BytesIO(payload), source=name).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated or garbled pickle: any of a dozen error types
        raise Suite2pFormatError(
            f"{path} could not be read: its pickled content is damaged or truncated "
            f"({type(err).__name__}: {err}); re-export it from suite2p"
        ) from None
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if array.shape != tuple(shape):
        raise Suite2pFormatError(
            f"{path}: the header says shape {tuple(shape)} but the content has shape "
            f"{array.shape}; the file is damaged"
        )
    if fortran and array.ndim > 1:
        array = np.asfortranarray(array)
    return array.item() if array.ndim == 0 else array
