"""Errors and warnings raised by zstore.

Every error subclasses the builtin that fits, so ``except ValueError`` keeps working, and
its message names the input, what was expected, what was found and the fix.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "CorruptChunkError",
    "ExperimentExistsError",
    "FormatVersionError",
    "InvalidNameError",
    "KeyNotFoundError",
    "NotAnExperimentError",
    "PaqFormatError",
    "ReadOnlyError",
    "Suite2pFormatError",
    "TrialChangedError",
    "TrialLockedError",
    "TrialNotFoundError",
    "UnsafePickleError",
    "ZstoreWarning",
    "emit_user_warning",
]


class ZstoreWarning(UserWarning):
    """Something the user should know about their data (e.g. ROIs whose dF/F is NaN)."""


class InvalidNameError(ValueError):
    """A trial ID, layer or column name that cannot be a key in the store."""


class KeyNotFoundError(KeyError):
    """A name (column, layer, trial) that is not there; the message lists what is."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ""


class TrialNotFoundError(KeyNotFoundError):
    """A trial ID that is not in the experiment."""


class ExperimentExistsError(FileExistsError):
    """Creating an experiment where one (or any Zarr data) already exists."""


class NotAnExperimentError(ValueError):
    """A store or Zarr group that is not a zstore experiment."""


class FormatVersionError(ValueError):
    """A store written by a newer zstore than this one."""


class TrialChangedError(RuntimeError):
    """A trial saved by another writer since it was loaded."""


class TrialLockedError(BlockingIOError):
    """Another process is writing the same trial."""


class ReadOnlyError(PermissionError):
    """A write to an experiment or trial opened read-only."""


class CorruptChunkError(ValueError):
    """A stored chunk whose checksum does not match its bytes."""


class Suite2pFormatError(ValueError):
    """A Suite2p plane folder that is missing files or whose files disagree."""


class UnsafePickleError(Suite2pFormatError):
    """A pickled Suite2p file that refers to something other than plain data."""


class PaqFormatError(ValueError):
    """A file that is not a valid PackIO .paq file."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _internal(filename: str) -> bool:
    """Frames of zstore, or of dask running a zstore computation for the user."""
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE_DIR) or f"{os.sep}dask{os.sep}" in path


def emit_user_warning(message: str, category: type[Warning] = ZstoreWarning) -> None:
    """Warn with a stack level that points at the first frame outside zstore.

    Like xarray's ``emit_user_level_warning``: the user sees their own line, not ours.
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel 1 is this function; 2 its caller
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level)
