"""Writers' leases: every write announces itself, so gc never deletes what it writes.

A write stores its chunks as new objects long before its commit refers to them; gc
deletes unreferenced objects. So each transaction holds a lease beside the repository
(``zstore-locks/writers/<id>.json``: when it began, who it is) for as long as it runs,
and gc spares every object written since the oldest live lease began.

- Local disk: the writer holds an OS lock (``flock``) on its lease file; a lease whose
  lock can be taken belongs to a process that died, and is removed. Exact.
- S3: the writer rewrites its lease every minute; a lease not rewritten for ten minutes
  belongs to a writer that died, and is removed.
- Other storages (an ``icechunk.Storage`` zstore cannot list): no leases; gc then spares
  objects younger than its grace period only.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from .store import LOCKS, Place, s3_filesystem

__all__ = ["HEARTBEAT", "STALE_AFTER", "Leases"]

WRITERS = f"{LOCKS}/writers"
HEARTBEAT = 60.0  # seconds between two rewrites of an S3 lease
STALE_AFTER = datetime.timedelta(minutes=10)  # an S3 lease older than this is dead
#: Clocks of the writer, of gc and of the object store may disagree this much.
SKEW = datetime.timedelta(minutes=5)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Leases:
    """The leases of the writers of one repository."""

    def __init__(self, place: Place):
        self.place = place
        self.supported = place.local is not None or place.s3 is not None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a lease for the duration of a write."""
        if self.place.local is not None:
            with self._held_locally():
                yield
        elif self.place.s3 is not None:
            with self._held_on_s3():
                yield
        else:
            yield

    def oldest(self) -> tuple[int, datetime.datetime | None]:
        """(live writers, when the oldest began); removes the leases of dead writers."""
        if self.place.local is not None:
            since = self._live_locally()
        elif self.place.s3 is not None:
            since = self._live_on_s3()
        else:
            return 0, None
        return len(since), min(since) if since else None

    # -- local disk ------------------------------------------------------------------------

    def _folder(self) -> Any:
        assert self.place.local is not None
        return self.place.local / WRITERS

    @contextlib.contextmanager
    def _held_locally(self) -> Iterator[None]:
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        temporary, final = folder / f".{name}.tmp", folder / f"{name}.json"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # locked before anyone can see it
            os.write(fd, json.dumps(_lease()).encode())
            os.rename(temporary, final)
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(final)
        finally:
            os.close(fd)  # releases the lock
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def _live_locally(self) -> list[datetime.datetime]:
        folder = self._folder()
        if not folder.is_dir():
            return []
        live = []
        for path in folder.glob("*.json"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # finished meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError as err:
                    if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    live.append(_since(os.read(fd, 4096), path.stat().st_mtime))
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # its writer died: its process no longer holds the lock
            finally:
                os.close(fd)
        return live

    # -- S3 ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _held_on_s3(self) -> Iterator[None]:
        fs, root = s3_filesystem(self.place)
        key = f"{root}/{WRITERS}/{uuid.uuid4().hex}.json"
        lease = _lease()
        fs.pipe_file(key, json.dumps(lease).encode())
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT):
                with contextlib.suppress(Exception):  # a missed beat is retried next minute
                    fs.pipe_file(key, json.dumps({**lease, "seen": _now().isoformat()}).encode())

        thread = threading.Thread(target=beat, name="zstore-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            with contextlib.suppress(Exception):
                fs.rm_file(key)

    def _live_on_s3(self) -> list[datetime.datetime]:
        fs, root = s3_filesystem(self.place)
        try:
            keys = fs.ls(f"{root}/{WRITERS}", detail=False)
        except FileNotFoundError:
            return []
        live = []
        for key in keys:
            try:
                lease = json.loads(fs.cat_file(key))
            except (FileNotFoundError, ValueError):
                continue
            seen = datetime.datetime.fromisoformat(lease.get("seen") or lease["since"])
            if _now() - seen > STALE_AFTER:
                with contextlib.suppress(Exception):
                    fs.rm_file(key)
                continue
            live.append(datetime.datetime.fromisoformat(lease["since"]))
        return live


def _lease() -> dict[str, Any]:
    now = _now().isoformat()
    return {"since": now, "seen": now, "host": socket.gethostname(), "pid": os.getpid()}


def _since(raw: bytes, mtime: float) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(json.loads(raw)["since"])
    except (ValueError, KeyError):
        return datetime.datetime.fromtimestamp(mtime, datetime.UTC)
