"""Writers' leases: every write announces itself, so gc never takes what it needs.

A write stores its chunks as new objects long before its commit refers to them, and
its commit rebases over the versions committed since its base version; gc deletes
unreferenced objects and expires old versions. So each transaction holds a lease beside
the repository (``zstore-locks/writers/<id>.json``: its base version, when it began,
who it is) for as long as it runs, and gc spares every object written since the oldest
live lease began and every version from the oldest live writer's base on.

- Local disk: the writer holds an OS lock (``flock``) on its lease file; a lease whose
  lock can be taken belongs to a process that died, and is removed. Exact, even for a
  writer that is paused (its process still holds the lock).
- S3: the writer rewrites its lease every minute; a lease not rewritten for
  ``STALE_AFTER`` (a day) belongs to a writer that died, and is removed. A writer that
  could not rewrite its lease for half that time (a laptop asleep, a paused VM) gives up
  before its commit instead of committing chunks gc may have taken: the margin between
  the two covers clock differences and the moments between a check and a commit.
- Other storages (an ``icechunk.Storage`` zstore cannot list: GCS, Azure, a user-built
  S3 storage, memory): no leases; gc then spares objects younger than its grace period
  only.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from .errors import ConflictError
from .store import LOCKS, Place, s3_filesystem

__all__ = ["HEARTBEAT", "STALE_AFTER", "Lease", "Leases", "Live"]

WRITERS = f"{LOCKS}/writers"
HEARTBEAT = 60.0  # seconds between two rewrites of an S3 lease
STALE_AFTER = datetime.timedelta(days=1)  # an S3 lease not rewritten for this long is dead
#: Clocks of the writer, of gc and of the object store may disagree this much.
SKEW = datetime.timedelta(minutes=5)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Live:
    """What gc must spare: how many writers run, when the oldest began, their bases."""

    writers: int
    oldest: datetime.datetime | None
    bases: tuple[str, ...]


class Lease:
    """A writer's lease, as held: ``check()`` before committing."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.last_beat = _now()
        self.lost = False

    def check(self) -> None:
        """Raise if gc may have reclaimed what this writer wrote (S3 leases only)."""
        quiet = _now() - self.last_beat
        if self.lost or quiet > STALE_AFTER / 2:
            raise ConflictError(
                f"{self.where}: this write could not renew its lease for {quiet} (the "
                f"process was paused or lost the storage); zstore gc may have reclaimed what "
                f"it wrote, so nothing was saved: run it again"
            )


class Leases:
    """The leases of the writers of one repository."""

    def __init__(self, place: Place):
        self.place = place
        self.supported = place.local is not None or place.s3 is not None

    @contextlib.contextmanager
    def held(self, base: str) -> Iterator[Lease]:
        """Hold a lease, naming the version ``base`` the write started from."""
        if self.place.local is not None:
            with self._held_locally(base) as lease:
                yield lease
        elif self.place.s3 is not None:
            with self._held_on_s3(base) as lease:
                yield lease
        else:
            yield Lease(self.place.label)

    def live(self) -> Live:
        """The live writers; removes the leases of dead ones."""
        if self.place.local is not None:
            leases = self._live_locally()
        elif self.place.s3 is not None:
            leases = self._live_on_s3()
        else:
            return Live(0, None, ())
        since = [_time(lease.get("since")) for lease in leases]
        known = [t for t in since if t is not None]
        oldest = min(known) if known else (_now() if leases else None)
        bases = tuple(str(lease["base"]) for lease in leases if lease.get("base"))
        return Live(len(leases), oldest, bases)

    # -- local disk ------------------------------------------------------------------------

    def _folder(self) -> Any:
        assert self.place.local is not None
        return self.place.local / WRITERS

    @contextlib.contextmanager
    def _held_locally(self, base: str) -> Iterator[Lease]:
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        temporary, final = folder / f".{name}.tmp", folder / f"{name}.json"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # locked before anyone can see it
            os.write(fd, json.dumps(_content(base)).encode())
            os.rename(temporary, final)
            try:
                yield Lease(self.place.label)  # the lock is the lease: nothing to renew
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(final)
        finally:
            os.close(fd)  # releases the lock
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def _live_locally(self) -> list[dict[str, Any]]:
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
                    live.append(_parse(os.read(fd, 65536)))
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # its writer died: no process holds its lock
            finally:
                os.close(fd)
        return live

    # -- S3 ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _held_on_s3(self, base: str) -> Iterator[Lease]:
        fs, root = s3_filesystem(self.place)
        key = f"{root}/{WRITERS}/{uuid.uuid4().hex}.json"
        content = _content(base)
        fs.pipe_file(key, json.dumps(content).encode())
        lease = Lease(self.place.label)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT):
                try:
                    if _now() - lease.last_beat > STALE_AFTER / 2 or not fs.exists(key):
                        # paused for so long that gc may have judged the lease dead (it
                        # may be reading it right now), or it did: never renew it again
                        lease.lost = True
                        return
                    now = _now()
                    fs.pipe_file(key, json.dumps({**content, "seen": now.isoformat()}).encode())
                    lease.last_beat = now
                except Exception:  # a missed beat is retried next minute
                    continue

        thread = threading.Thread(target=beat, name="zstore-lease", daemon=True)
        thread.start()
        try:
            yield lease
        finally:
            stop.set()
            thread.join(timeout=5)
            with contextlib.suppress(Exception):
                fs.rm_file(key)

    def _live_on_s3(self) -> list[dict[str, Any]]:
        fs, root = s3_filesystem(self.place)
        try:
            keys = fs.ls(f"{root}/{WRITERS}", detail=False)
        except FileNotFoundError:
            return []
        live = []
        for key in keys:
            try:
                lease = _parse(fs.cat_file(key))
            except FileNotFoundError:
                continue
            seen = _time(lease.get("seen")) or _time(lease.get("since"))
            if seen is not None and _now() - seen > STALE_AFTER:
                with contextlib.suppress(Exception):
                    fs.rm_file(key)
                continue
            live.append(lease)
        return live


def _content(base: str) -> dict[str, Any]:
    now = _now().isoformat()
    return {
        "base": base,
        "since": now,
        "seen": now,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}  # a lease being written: live, but says nothing yet
    return value if isinstance(value, dict) else {}


def _time(text: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return None
