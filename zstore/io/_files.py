"""Input files must be regular files: opening a FIFO blocks forever, a device never ends;
and a read that fails for want of a resource is the machine's failure, not the file's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["check_regular", "file_kind", "input_failure"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words ("a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike[str], error: type[Exception], fix: str) -> int:
    """The size of ``path`` if it is a regular file (symbolic links followed), else raise
    ``error`` naming it and what it is. Nothing is opened: a FIFO is never read."""
    info = os.stat(path)  # FileNotFoundError is left to the caller's wording
    if not stat.S_ISREG(info.st_mode):
        why = (
            "" if stat.S_ISDIR(info.st_mode) else " (reading a pipe or device could block forever)"
        )
        raise error(f"{Path(path)} is {file_kind(info.st_mode)}, not a regular file{why}. {fix}")
    return int(info.st_size)


def input_failure(
    err: BaseException, path: str | os.PathLike[str], then: str = ""
) -> Exception | None:
    """The error to stop with when reading the input file ``path`` failed for want of a
    resource (too many open files, memory, permission to read, an I/O error), naming
    the file and the fix but not blaming its content; None when ``err`` is no such
    error (the file's own problem, the caller's to say). ``then``: what the failure
    left ("nothing was stored").

    Examples
    --------
    >>> err = input_failure(OSError(24, "Too many open files"), "plane0/F.npy")
    >>> type(err).__name__, "`ulimit -n" in str(err)
    ('StoreError', True)
    >>> input_failure(ValueError("mmap length is greater than file size"), "F.npy") is None
    True
    """
    from ..store import read_failure  # Icechunk is imported only when a read failed

    return read_failure(err, where="", what=f"reading {Path(path)}", then=then)
