"""How the ``zstore`` command says a failure: one line on stderr, and its exit status.

zstore's own errors are said as written (their messages name the input and the fix), in
the command line's terms; storage, memory and thread failures get a line of what to
check; anything else is a bug, said as one. A closed stdout or stderr ends the command
quietly.
"""

from __future__ import annotations

import contextlib
import errno
import linecache
import os
import select
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import errors
from ._version import __version__
from .cli_wording import cli_wording
from .errors import ArgumentTypeError, InvalidArgumentError, StorageOptionsError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "OUT_OF_MEMORY_LINE",
    "prepare",
    "reader_left",
    "report",
    "stdout_failed",
    "streams_closed",
]

EXIT_ERROR = 1
#: A usage error: a flag missing or of a wrong value, or flags that do not go together.
EXIT_USAGE = 2
#: Interrupted (Ctrl-C): 128 + SIGINT, as a shell reports it.
EXIT_INTERRUPTED = 130
#: stdout (or stderr) closed before the output ended (``zstore info STORE | head -1``):
#: 128 + SIGPIPE, the status a shell reports for a Unix tool whose reader left; nothing
#: is printed.
EXIT_BROKEN_PIPE = 141

#: zstore's own errors: said as they are (their messages name the input and the fix).
_ZSTORE_ERRORS: tuple[type[BaseException], ...] = tuple(
    c
    for c in vars(errors).values()
    if isinstance(c, type)
    and issubclass(c, Exception)
    and not issubclass(c, Warning)
    and c.__module__ == errors.__name__
)
#: Errors that are usage errors on the command line: a flag's value the API refused.
_USAGE_ERRORS = (StorageOptionsError, InvalidArgumentError, ArgumentTypeError)
#: Errors that are bugs wherever they come from (zstore raises its own subclasses when a
#: user's value is wrong: those are zstore errors, above).
_BUG_ERRORS = (TypeError, AttributeError, NameError, AssertionError, IndexError, ZeroDivisionError)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: What each command was doing, for messages about memory.
_DOING = {
    "ingest": "ingesting",
    "dff": "computing dF/F",
    "export": "exporting",
    "verify": "verifying",
    "migrate": "migrating",
    "plot": "plotting",
    "gc": "collecting garbage",
}


#: What the failure path needs from zstore.store (which imports Icechunk: seconds, and
#: memory), bound by prepare() before a command runs, so that reporting a failure needs
#: no import: under `ulimit -v` an import there fails, or crashes the interpreter.
_STORE: dict[str, Any] = {}
#: Said when reporting a failure itself runs out of memory.
OUT_OF_MEMORY_LINE = "out of memory; use fewer threads (DASK_NUM_WORKERS=2), or raise the limit"


def prepare() -> None:
    """Import what reporting a failure needs, before the command runs (not while it
    fails, when memory may be gone)."""
    from . import store

    _STORE.update(
        out_of_memory=store.out_of_memory,
        open_files_failure=store.open_files_failure,
        WRITE_FIXES=store.WRITE_FIXES,
        READ_FIXES=store.READ_FIXES,
    )


def report(
    err: BaseException,
    command: str,
    *,
    debug: bool = False,
    flags: frozenset[str] | set[str] = frozenset(),
) -> int:
    """Print ``err`` for the user of ``zstore command`` (whose flags are ``flags``) on
    stderr; return the exit status. A traceback only with ``debug``. When saying it runs
    out of memory itself, a fixed short line (``OUT_OF_MEMORY_LINE``)."""
    try:
        return _report(err, command, debug=debug, flags=flags)
    except MemoryError:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"zstore {command}: error: {OUT_OF_MEMORY_LINE}\n")
        return EXIT_ERROR


def _report(
    err: BaseException,
    command: str,
    *,
    debug: bool,
    flags: frozenset[str] | set[str],
) -> int:
    if debug:
        traceback.print_exception(err)
    verdict = _verdict(err, command)
    if verdict is None:  # a bug: visible as one, with where it happened
        site = _site(err)
        traceback_at = "is above" if debug else f"`zstore --debug {command} ...` prints"
        print(
            f"zstore {command}: internal error: {type(err).__name__}: {_first_line(err)}"
            f"{f' ({site})' if site else ''}\nthis is a bug in zstore {__version__}: please "
            f"report it, with the traceback that {traceback_at}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    code, message = verdict
    text = cli_wording(message, command, flags)
    print(f"zstore {command}: error: {text}", file=sys.stderr)
    return code


#: What each writing command had saved when it began printing its summary.
_SAVED = {
    "ingest": "the ingested trials were saved (committed to {})",
    "dff": "the layer was saved (committed to {})",
    "migrate": "the new experiment was saved (committed to {})",
    "gc": "the garbage collection of {} is done",
    "export": "the export was written to {}",
    "plot": "the image was written to {}",
}


def stdout_failed(err: OSError, command: str, written: str | None) -> int:
    """Say that printing to stdout failed (not the store), and what had been saved by
    then (``written``: the store or file the command wrote; None when it only read).
    What stdout still holds is dropped, so that the exit says nothing more."""
    what = f"{err.strerror or _first_line(err)}" + (
        f" ({errno.errorcode.get(err.errno, err.errno)})" if err.errno else ""
    )
    where = "check the disk or pipe that stdout goes to"
    if written is None:
        text = f"printing to stdout failed: {what}; {where} (the store was only read)"
    else:
        done = _SAVED.get(command, "its work was saved ({})").format(written)
        text = (
            f"{done}; printing its summary to stdout failed: {what} (stdout, not the store: "
            f"{where}); nothing needs to be run again"
        )
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(devnull, sys.stdout.fileno())  # the exit's flush: to devnull
    finally:
        os.close(devnull)
    print(f"zstore {command}: error: {text}", file=sys.stderr)
    return EXIT_ERROR


def _verdict(err: BaseException, command: str) -> tuple[int, str] | None:
    """The exit status and message for an error the user can act on; None for a bug."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, (
            "interrupted; a write under way was not saved (each write is saved whole or "
            "not at all): run the command again"
        )
    files = _open_files(err, command)
    if files is not None:  # whoever said it (Icechunk's text, an OSError, a wrapper)
        return EXIT_ERROR, files
    if isinstance(err, _ZSTORE_ERRORS):
        return (EXIT_USAGE if isinstance(err, _USAGE_ERRORS) else EXIT_ERROR), _message(err)
    doing = _DOING.get(command, f"running zstore {command}")
    if _out_of_memory(err):
        if "thread" in str(err) and not isinstance(err, MemoryError):
            return EXIT_ERROR, (
                f"could not start a thread while {doing}: a resource limit was reached "
                f"(memory, `ulimit -v`, or processes, `ulimit -u`); {_memory_advice(command)}"
            )
        detail = _first_line(err) if str(err) else ""
        return EXIT_ERROR, (
            f"out of memory while {doing}{f' ({detail})' if detail else ''}; "
            f"{_memory_advice(command)}"
        )
    if isinstance(err, OSError):
        return EXIT_ERROR, _os_error_text(err)
    if isinstance(err, ImportError):
        missing = f" (pip install {err.name})" if err.name and err.name not in str(err) else ""
        return EXIT_ERROR, f"{_message(err)}{missing}"
    if _raised_by_zstore(err) and not isinstance(err, _BUG_ERRORS):
        return EXIT_ERROR, _message(err)
    return None


def _out_of_memory(err: BaseException) -> bool:
    """Memory, or room for a thread, ran out (a MemoryError, ENOMEM, Icechunk's words)."""
    if isinstance(err, MemoryError) or _allocation_failed(err):
        return True
    out_of_memory: Callable[[BaseException], bool] | None = _STORE.get("out_of_memory")
    if out_of_memory is None:  # prepare() did not run (it failed): no import now
        return isinstance(err, OSError) and err.errno == errno.ENOMEM
    return out_of_memory(err)


def _allocation_failed(err: BaseException) -> bool:
    """A SystemError of CPython's C code that failed without saying why: what an
    allocation that failed under a memory limit (`ulimit -v`) leaves, e.g. in an import."""
    return isinstance(err, SystemError) and any(
        words in str(err) for words in ("without setting an exception", "without exception set")
    )


def _open_files(err: BaseException, command: str) -> str | None:
    """Too many open files behind ``err``, said with the limit and how to raise it."""
    open_files_failure = _STORE.get("open_files_failure")
    if open_files_failure is None:  # prepare() did not run (it failed): no import now
        return None
    failure = open_files_failure(err, what=_DOING.get(command, f"running zstore {command}"))
    return None if failure is None else str(failure)


def _message(err: BaseException) -> str:
    """An error's text as written (a KeyError's without the quotes it adds)."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])
    return str(err)


def _first_line(err: BaseException) -> str:
    lines = _message(err).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _memory_advice(command: str) -> str:
    fewer = " or fewer trials at once (--trial ID)" if command in ("dff", "export") else ""
    return (
        f"use fewer threads (DASK_NUM_WORKERS=2 in the environment){fewer}, or raise the "
        "memory limit"
    )


def _os_error_text(err: OSError) -> str:
    """An OSError as one line: what failed, on which file (whole path), what to check."""
    if err.errno is None or not err.strerror:
        return _message(err)  # a message written for the user (FileNotFoundError("no ..."))
    files = [
        os.path.abspath(f) if isinstance(f, str) else str(f)
        for f in (err.filename, err.filename2)
        if f is not None
    ]
    name = errno.errorcode.get(err.errno, str(err.errno))
    text = f"{err.strerror} ({name})" + (f": {' -> '.join(files)}" if files else "")
    fix = _OS_FIXES.get(err.errno) or _write_fixes().get(err.errno)
    if err.errno in (errno.EACCES, errno.EPERM) and files and not _may_read(files[0]):
        fix = _read_fixes().get(err.errno, fix)  # a read refused, not a write
    if fix is None and isinstance(err, ConnectionError | TimeoutError):
        fix = "the connection failed: check the network (and the storage's address), then retry"
    return f"{text}; {fix}" if fix else text


#: What to check for an OSError, by errno, beyond a failed write's (zstore.store's
#: WRITE_FIXES: a full disk, a quota, a file-size limit, permissions, read-only).
_OS_FIXES = {
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "the path is a folder where a file is needed: check the path",
    errno.EMFILE: "too many open files: raise the limit (`ulimit -n`)",
    errno.EPIPE: "a connection broke: check the network, then retry",
}


def _write_fixes() -> dict[int, str]:
    fixes: dict[int, str] = _STORE.get("WRITE_FIXES", {})
    return fixes


def _read_fixes() -> dict[int, str]:
    fixes: dict[int, str] = _STORE.get("READ_FIXES", {})
    return fixes


def _may_read(path: str) -> bool:
    """This process may read ``path`` (a folder: list it), by its permissions."""
    return os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))


def _raised_by_zstore(err: BaseException) -> bool:
    """An error a ``raise`` statement of zstore's own code raised: a message written for
    the user, not a library's or Python's error that reached the command unexplained."""
    frame = _innermost(err)
    if frame is None or not frame[0].startswith(_PACKAGE_DIR):
        return False
    return linecache.getline(*frame).lstrip().startswith("raise ")


def _innermost(err: BaseException) -> tuple[str, int] | None:
    """The file and line where ``err`` was raised."""
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def _site(err: BaseException) -> str:
    """Where a bug shows: the innermost line of zstore's code in the traceback (else the
    innermost line), as ``zstore/io/suite2p.py:269``."""
    ours, last = "", ""
    for frame, line in traceback.walk_tb(err.__traceback__):
        path = frame.f_code.co_filename
        if path.startswith(_PACKAGE_DIR):
            ours = f"zstore/{path[len(_PACKAGE_DIR) :]}:{line}"
        last = f"{os.path.basename(path)}:{line}"
    return ours or last


def reader_left() -> bool:
    """True when the reader of stdout or stderr has gone (a pipe closed early), as
    opposed to a broken network connection (also a BrokenPipeError)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            continue  # no file (captured in a test)
        if _pipe_closed(fd):
            return True
    return False


def _pipe_closed(fd: int) -> bool:
    if not hasattr(select, "poll"):  # no poll (Windows): take it as the pipe
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def streams_closed() -> int:
    """Quiet exit once stdout's (or stderr's) reader has gone: what is still buffered
    goes to devnull (else Python's flush at exit reports the broken pipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            # no file (captured in a test): nothing will flush to a pipe
            with contextlib.suppress(AttributeError, OSError, ValueError):
                os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE
