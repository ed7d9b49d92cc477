"""Errors and warnings raised by zstore.

Every error subclasses the builtin that fits, so ``except ValueError`` keeps working, and
its message names the input, what was expected, what was found and the fix.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "AlreadyExistsError",
    "ArgumentTypeError",
    "ChecksumMismatchError",
    "ConflictError",
    "CorruptChunkError",
    "ExperimentExistsError",
    "ExperimentNotFoundError",
    "FormatVersionError",
    "IncompatibleDataError",
    "InvalidArgumentError",
    "InvalidNameError",
    "KeyNotFoundError",
    "LayerExistsError",
    "LegacyFormatError",
    "MissingChunkError",
    "NotAnExperimentError",
    "OutOfMemoryError",
    "PaqFormatError",
    "PathNotFoundError",
    "ReadOnlyError",
    "RoiNotFoundError",
    "RowPositionError",
    "StorageOptionsError",
    "StoreError",
    "Suite2pFormatError",
    "TrialChangedError",
    "TrialExistsError",
    "TrialNotFoundError",
    "UnsafeOverwriteError",
    "UnsafePickleError",
    "UnstorableValueError",
    "VersionNotFoundError",
    "ZstoreWarning",
    "emit_user_warning",
]


class ZstoreWarning(UserWarning):
    """Something the user should know about their data (e.g. ROIs whose dF/F is NaN)."""


class InvalidArgumentError(ValueError):
    """An argument of the right type whose value cannot be used (out of range, not
    finite, a duplicate, too large for the data); the message names the argument, what
    it takes and the fix (``pass name=...``)."""


class ArgumentTypeError(TypeError):
    """An argument of the wrong type (text or a bool where a number is expected, a
    sparse matrix where a dense one is); the message names the argument, what it takes
    and the fix (``pass name=...``)."""


class RowPositionError(InvalidArgumentError, IndexError):
    """A row position (``iloc=``) outside the rows of the data."""


class IncompatibleDataError(ValueError):
    """Stored data that cannot serve the call whatever its arguments' types: trials of
    different ROIs or frame rates put together, a trial without frames or whose frame
    times do not increase; the message names the trials and what to select instead."""


class InvalidNameError(ValueError):
    """A trial ID, layer or column name that cannot be a key in the store."""


class UnstorableValueError(ValueError):
    """A value (an obs/var column, an uns entry) that anndata cannot store, or would not
    read back as it was; the message names it and how to convert it."""


class KeyNotFoundError(KeyError):
    """A name (column, layer, trial) that is not there; the message lists what is."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ""


class TrialNotFoundError(KeyNotFoundError):
    """A trial ID that is not in the experiment."""


class RoiNotFoundError(KeyNotFoundError):
    """A ROI ID that is not stored (non-cells are dropped at ingest); names the nearest IDs."""


class ExperimentNotFoundError(KeyNotFoundError):
    """An experiment ID that is not in the collection."""


class VersionNotFoundError(KeyNotFoundError):
    """A version (snapshot) that the experiment does not have, or no longer has."""


class AlreadyExistsError(FileExistsError):
    """Creating something (an experiment, trial, layer or file) where one already exists."""


class ExperimentExistsError(AlreadyExistsError):
    """Creating an experiment (or a collection) where one already exists."""


class TrialExistsError(AlreadyExistsError):
    """Adding a trial under an ID the experiment already has, without overwrite=True."""


class LayerExistsError(AlreadyExistsError):
    """Writing a layer that a trial already has, without overwrite=True."""


class PathNotFoundError(FileNotFoundError):
    """A path where nothing is: no experiment or collection at a store's path, or no
    folder to write an export into; the message names the path and what to check."""


class UnsafeOverwriteError(FileExistsError):
    """A location that holds data zstore did not write: zstore never replaces it."""


class NotAnExperimentError(ValueError):
    """A store or Zarr group that is not a zstore experiment."""


class FormatVersionError(ValueError):
    """A store written by a newer zstore than this one."""


class LegacyFormatError(FormatVersionError):
    """A store in zstore 0.1's format (plain Zarr): convert it with ``zstore migrate``."""


class ConflictError(RuntimeError):
    """A write that conflicts with one another writer committed first; nothing was saved."""


class TrialChangedError(ConflictError):
    """A trial saved by another writer since it was loaded; nothing was saved."""


class ReadOnlyError(PermissionError):
    """A write to an experiment or trial opened read-only."""


class CorruptChunkError(ValueError):
    """A stored chunk whose bytes are damaged: its checksum does not match them
    (:class:`ChecksumMismatchError`), they do not decode, or the chunk is missing
    (:class:`MissingChunkError`)."""


class ChecksumMismatchError(CorruptChunkError):
    """A stored chunk whose crc32c checksum does not match its bytes (they changed
    after writing)."""


class MissingChunkError(CorruptChunkError):
    """A stored chunk that should exist and cannot be read (deleted or truncated)."""


class StoreError(OSError):
    """The storage failed (unreachable, refused, or its own files damaged)."""


class OutOfMemoryError(MemoryError):
    """A write (an ingest, a save, dF/F) that ran out of memory, or of room to start a
    thread; the message names the operation and how to use less. Nothing was saved."""


class StorageOptionsError(ValueError):
    """storage_options that zstore cannot pass to the storage."""


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
