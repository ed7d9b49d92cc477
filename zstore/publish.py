"""Exports appear whole or not at all: write under a hidden name, then publish.

Every export (``.zarr``, ``.h5ad``, ``.nwb``) is written under a temporary name in the
target's folder, ``.<stem>.<random>.partial<suffix>`` (``.RL109.1f3a9c2e.partial.h5ad``),
flushed to disk (files and folders fsynced), and only then given its own name, in a way
that never replaces something that appeared under that name meanwhile: a file gets a
hard link (``link(2)`` fails if the name exists), a ``.zarr`` folder is renamed with
Linux's ``renameat2(RENAME_NOREPLACE)``. A failed export removes its temporary (it is
ours); a killed one (power cut, ``kill -9``) leaves it: a hidden ``*.partial.*`` name
is always an incomplete export, safe to delete, and never read as data.

Where ``renameat2`` is missing (not Linux, old glibc, or a filesystem that does not
support the flag), a folder is renamed after checking that the name is free. Between
the check and the rename, an *empty* folder created under the name would be replaced
(``rename(2)`` replaces an empty directory); a file or a non-empty folder makes the
rename fail, so nothing with content is ever lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import AlreadyExistsError, PathNotFoundError, emit_user_warning
from .store import write_failure

__all__ = ["check_target", "partial_name", "publishing"]

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def check_target(target: Path, *, what: str) -> None:
    """Refuse a target that exists or whose folder does not (``what``: "export to")."""
    if os.path.lexists(target):
        raise AlreadyExistsError(
            f"{what} {target}: it already exists; zstore never replaces files: choose a new "
            f"name or remove it yourself"
        )
    if not target.parent.is_dir():
        raise PathNotFoundError(
            f"{what} {target}: the folder {target.parent} does not exist; create it first"
        )


def partial_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` for writing it: ``.<stem>.<hex>.partial<suffix>``."""
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.partial{target.suffix}")


@contextlib.contextmanager
def publishing(target: str | os.PathLike[str], *, what: str) -> Iterator[Path]:
    """Yield a temporary path to write ``target`` to; publish it when the block ends.

    Checks first that ``target`` does not exist and its folder does. When the block
    ends without an error, the temporary (a file or a folder) is fsynced and renamed to
    ``target`` without replacing anything; on any error it is removed. Leftover
    temporaries of earlier, killed exports of the same target are reported with a
    warning (they are incomplete).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "a.h5ad"
    >>> with publishing(target, what="export to") as temporary:
    ...     _ = temporary.write_bytes(b"done")
    >>> target.read_bytes(), [p.name for p in target.parent.iterdir()]
    (b'done', ['a.h5ad'])
    """
    target = Path(target)
    check_target(target, what=what)
    pattern = f".{glob.escape(target.stem)}.*.partial{glob.escape(target.suffix)}"
    leftovers = sorted(target.parent.glob(pattern))
    if leftovers:
        emit_user_warning(
            f"{what} {target}: {', '.join(p.name for p in leftovers)} in {target.parent} "
            f"{'is' if len(leftovers) == 1 else 'are'} left from an interrupted export of "
            f"the same name (incomplete, never published): delete them"
        )
    temporary = partial_name(target)
    try:
        yield temporary
        _sync_tree(temporary)
        _publish(temporary, target, what=what)
        _sync_dir(target.parent)
    except OSError as err:  # a full disk, a file-size limit, no permission: say so
        failure = write_failure(err, where=f"{what} {target}", what="writing it")
        if failure is None:
            raise
        raise failure from None
    finally:
        _remove(temporary)


def _publish(temporary: Path, target: Path, *, what: str) -> None:
    try:
        if temporary.is_dir():
            _rename_noreplace(temporary, target)
            return
        try:
            os.link(temporary, target)  # fails if target exists: no window for a replace
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links
            _rename_noreplace(temporary, target)
    except FileExistsError:
        raise AlreadyExistsError(
            f"{what} {target}: something of that name appeared while exporting; zstore "
            f"never replaces files: the export was discarded"
        ) from None


def _rename_noreplace(source: Path, target: Path) -> None:
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), 1) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(target))
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(source), None, str(target))
    # No atomic no-replace rename here: see the module's docstring for the window.
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def _renameat2() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _sync_tree(path: Path) -> None:
    """fsync a file, or every file and folder of a folder (deepest first)."""
    if not path.is_dir():
        _sync_file(path)
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            _sync_file(Path(folder) / name)
        _sync_dir(Path(folder))


def _sync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
