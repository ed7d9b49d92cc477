"""The storage engine: versions, transactions and garbage collection, on Icechunk.

Every write to an experiment (a trial added, a save, dF/F, an ingest) is one
:class:`Transaction`: new chunks and metadata are written into an Icechunk session,
beside the data already committed, and become visible together in a single commit of
the branch ``main``. Nothing is deleted by a write: the previous version stays readable
(``open_experiment(..., version=...)``, and every trial loaded from it) until
``zstore gc`` expires it. A killed write leaves ``main`` as it was, plus unreferenced
chunk objects that gc reclaims.

The interface::

    repo = Repo.open(place, writable=True)        # or Repo.create(place)
    repo.tip()                                    # the snapshot ID of main now
    repo.session(version)                         # a read-only session pinned to it
    with repo.transaction("save trial t-005") as txn:
        group = txn.root                          # a writable zarr group
        txn.write_arrays(sources, targets)        # streams whole shards (threads or a cluster)
        txn.note("trials/t-005/layers/dFF")       # what changed, for history()
    txn.snapshot                                  # the new version
    repo.history(); repo.collect_garbage(keep=..., grace=...)

Concurrency: commits rebase over commits made meanwhile when they touch different nodes
and fail with :class:`~zstore.errors.TrialChangedError` when they touch the same ones
(every write of a trial rewrites its group's attributes, so two writers of one trial
always conflict; writers of different trials never do). On object stores the branch is
moved with a conditional PUT; on a local disk Icechunk cannot do that atomically, so
commits there take an OS file lock (``zstore-locks/commit``). Writers hold a lease
(:mod:`zstore.leases`) for their whole write, and ``collect_garbage`` spares every
object written since the oldest live lease began.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import icechunk as ic
import zarr
from zarr.errors import GroupNotFoundError

from . import _compat
from ._version import __version__
from .arrays import Progress, store_matrices
from .documents import root_problem
from .errors import (
    ConflictError,
    OutOfMemoryError,
    ReadOnlyError,
    StoreError,
    TrialChangedError,
    VersionNotFoundError,
    emit_user_warning,
)
from .leases import SKEW, Leases
from .store import (
    EXPERIMENTS,
    LOCKS,
    TRIALS,
    Place,
    check_reachable,
    gc_errors,
    out_of_memory,
    read_failure,
    s3_errors,
    s3_filesystem,
    saved_or_not,
    storage_settings,
    with_settings,
    write_failure,
)

__all__ = ["Commit", "GarbageReport", "Guard", "Repo", "Transaction", "VersionProbe"]

logger = logging.getLogger(__name__)
BRANCH = "main"
#: How long a writer waits for another process's commit on a local disk (commits take
#: milliseconds; a holder this slow is stuck).
COMMIT_LOCK_TIMEOUT = 600.0
Guard = Callable[[ic.Session], "str | None"]
"""Says why a write must not commit onto a version (None: it may); see Repo.transaction."""


@dataclasses.dataclass(frozen=True)
class Commit:
    """One version of an experiment: when, what changed, and its ID (``version``).

    A version whose snapshot cannot be read (deleted or damaged) is listed by
    :meth:`Repo.history` where it stands, with ``time`` None and ``damaged`` saying why.
    """

    version: str
    time: datetime.datetime | None
    message: str
    changes: tuple[str, ...]
    #: why this version cannot be read ("" for a readable one)
    damaged: str = ""

    def __str__(self) -> str:
        if self.time is None:
            return f"{self.version}  {'?' * 19}  {self.message}"
        when = self.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        return f"{self.version}  {when}  {self.message}"


def _gap(version: str, why: str) -> Commit:
    """The line of :meth:`Repo.history` for a version whose snapshot cannot be read."""
    return Commit(
        version=version,
        time=None,
        message=f"DAMAGED: cannot be read ({why}); restore snapshots/{version} from a copy",
        changes=(),
        damaged=why,
    )


def _commit(info: Any) -> Commit:
    """A version as zstore shows it, from Icechunk's SnapshotInfo."""
    meta = dict(info.metadata or {}).get("zstore", {})
    return Commit(
        version=str(info.id),
        time=info.written_at,
        message=str(info.message),
        changes=tuple(meta.get("changes", ())) if isinstance(meta, dict) else (),
    )


@dataclasses.dataclass(frozen=True)
class GarbageReport:
    """What :meth:`Repo.collect_garbage` removed."""

    versions_expired: int
    chunks_deleted: int
    manifests_deleted: int
    snapshots_deleted: int
    bytes_deleted: int
    objects_cutoff: datetime.datetime  # objects written after this were spared
    writers_running: int | None  # writes under way (None: this storage cannot tell)


class Repo:
    """An Icechunk repository holding one experiment."""

    def __init__(self, repository: ic.Repository, place: Place, *, writable: bool):
        self.repository = with_settings(repository, place)  # max_tries on S3 too
        self.place = place
        self.writable = writable

    @classmethod
    def open(cls, place: Place, *, writable: bool) -> Repo:
        """Open an existing repository (raises what Icechunk raises when there is none)."""
        check_reachable(place)  # at once, not after Icechunk's retries
        with _compat.icechunk_errors(place.label):
            repository = ic.Repository.open(place.storage, config=_runtime_config(place))
        return cls(repository, place, writable=writable)

    @classmethod
    def create(cls, place: Place) -> Repo:
        """Create an empty repository at a location the caller checked is free."""
        check_reachable(place)
        what = "creating the repository"
        try:
            if place.local is not None:
                _make_writable_folder(place.local)
            with _compat.icechunk_errors(place.label):
                repository = ic.Repository.create(place.storage, config=_runtime_config(place))
        except OSError as err:
            failure = write_failure(err, where=place.label, what=what)
            if failure is None:
                raise
            raise failure from None
        return cls(repository, place, writable=True)

    # -- versions -------------------------------------------------------------------------

    def tip(self) -> str:
        """The snapshot ID of ``main`` now (one small read)."""
        with _compat.icechunk_errors(self.place.label):
            return str(self.repository.lookup_branch(BRANCH))

    def session(self, version: str | datetime.datetime | None = None) -> ic.Session:
        """A read-only session pinned to ``version`` (a snapshot ID or a time; None: now)."""
        try:
            if isinstance(version, datetime.datetime):
                when = version if version.tzinfo else version.astimezone()
                session = self.repository.readonly_session(branch=BRANCH, as_of=when)
                history = self.history()
                if len(history) > 1 and str(session.snapshot_id) == history[-1].version:
                    older = history[-2].time
                    oldest = older.astimezone().strftime("%Y-%m-%d %H:%M:%S") if older else "?"
                    raise VersionNotFoundError(
                        f"{self.place.label} keeps no version from {when:%Y-%m-%d %H:%M:%S}: "
                        f"the oldest it keeps is from {oldest} (older ones were expired by "
                        f"`zstore gc`, or the experiment did not exist yet); list them with "
                        f"`zstore history {self.place.label}`"
                    )
                return session
            if version is None:
                return self.repository.readonly_session(branch=BRANCH)
            return self.repository.readonly_session(snapshot_id=version)
        except (ic.IcechunkError, ValueError) as err:
            if version is None:
                raise
            why = _compat.short_message(err)
            raise VersionNotFoundError(
                f"{self.place.label} has no version {version!s}: {why}; list the versions "
                f"with `zstore history {self.place.label}` or exp.history()"
            ) from None

    def root(self, session: ic.Session | None = None) -> zarr.Group | None:
        """The root group of ``session`` (default: main now), or None when there is none."""
        session = session or self.session()
        try:
            return zarr.open_group(session.store, mode="r", zarr_format=3)
        except GroupNotFoundError:
            return None
        except Exception as err:  # a root document zarr cannot read: name it
            raise root_problem(session.store, "", self.place.label, err) from None

    def is_untouched(self) -> bool:
        """True for a repository Icechunk created and nobody committed to since."""
        with _compat.icechunk_errors(self.place.label):
            history = list(self.repository.ancestry(branch=BRANCH))
            branches = self.repository.list_branches()
            tags = self.repository.list_tags()
        return len(history) == 1 and set(branches) == {BRANCH} and not tags

    def check_snapshot(self, version: str) -> None:
        """Raise StoreError when ``version``'s snapshot cannot be read."""
        try:
            ic.Repository.open(
                self.repository.storage, config=self.repository.config
            ).lookup_snapshot(version)
        except Exception as err:
            what = f"reading the snapshot snapshots/{version}"
            if (failure := read_failure(err, where=self.place.label, what=what)) is not None:
                raise failure from None  # no permission, no memory: not damage
            earlier = self._before_damage([]) if version == self._tip_or_none() else []
            newest = f" (the newest readable one is {earlier[0].version!r})" if earlier else ""
            raise StoreError(
                f"{self.place.label}: the metadata of version {version} (the snapshot "
                f"snapshots/{version}) cannot be read ({_compat.short_message(err)}); the "
                f"store is damaged: restore that file from a copy, or open an earlier "
                f"version with zs.open_experiment(..., version=ID){newest}"
            ) from None

    def _tip_or_none(self) -> str | None:
        try:
            return self.tip()
        except Exception:
            return None

    def history(self, *, warn: bool = True) -> list[Commit]:
        """Every commit of ``main``, newest first. A version whose snapshot cannot be
        read (deleted, damaged) is listed where it stands (a :class:`Commit` with
        ``damaged`` set), then the readable versions before it, with a warning naming
        it (``warn``; Icechunk finds a version's parent in its snapshot). A snapshot
        that cannot be read for want of permission (or memory, or a disk's I/O error)
        raises :class:`~zstore.errors.StoreError` saying so: that is not damage."""
        commits: list[Commit] = []
        parent: str | None = None
        try:
            with _compat.icechunk_errors(self.place.label):
                for info in self.repository.ancestry(branch=BRANCH):
                    commits.append(_commit(info))
                    parent = None if info.parent_id is None else str(info.parent_id)
        except StoreError as err:
            cause = err.__cause__ or err
            failure = read_failure(cause, where=self.place.label, what="reading the history")
            if failure is not None:
                raise failure from None
            earlier = self._before_damage(commits)
            if not earlier and not commits:
                raise
            damaged = parent if commits and parent else self.tip()
            why = (
                "its file is missing or cut short"
                if _compat.is_missing_object(cause)
                else _compat.short_message(cause)
            )
            if warn:
                emit_user_warning(
                    f"{self.place.label}: version {damaged} cannot be read ({why}): the "
                    f"store is damaged there (restore snapshots/{damaged} from a copy); "
                    f"listed after it are the {len(earlier)} readable versions before it, "
                    f"as far as their snapshots tell; `zstore verify` checks what they hold"
                )
            commits += [_gap(damaged, why), *earlier]
        return commits

    def _before_damage(self, newer: list[Commit]) -> list[Commit]:
        """The readable versions before a damaged one (after ``newer``): the ancestry of
        the newest readable snapshot that no other readable snapshot descends from."""
        infos = {}
        for sid in self._snapshot_ids():
            with contextlib.suppress(Exception):
                infos[sid] = self.repository.lookup_snapshot(sid)
        seen = {c.version for c in newer}
        parents = {str(i.parent_id) for i in infos.values() if i.parent_id is not None}
        leaves = [i for sid, i in infos.items() if sid not in parents and sid not in seen]
        if not leaves:
            return []
        start = max(leaves, key=lambda i: i.written_at)
        commits: list[Commit] = []
        with contextlib.suppress(Exception):  # damaged further back: what could be read
            for info in self.repository.ancestry(snapshot_id=start.id):
                commits.append(_commit(info))
        return commits

    def _snapshot_ids(self) -> list[str]:
        """The IDs of the snapshot objects stored (local folders and S3; [] elsewhere)."""
        try:
            if self.place.local is not None:
                return [p.name for p in (self.place.local / "snapshots").iterdir()]
            if self.place.s3 is not None:
                fs, root = s3_filesystem(self.place)
                return [k.rsplit("/", 1)[-1] for k in fs.ls(f"{root}/snapshots", detail=False)]
        except Exception:  # nothing to list: the error that led here is said
            return []
        return []

    def explainer(self, version: str) -> VersionProbe:
        """Says, when a chunk of ``version`` cannot be read, whether gc removed it."""
        return VersionProbe(self.repository, version, self.place.label)

    # -- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(
        self,
        message: str,
        *,
        prefix: str = "",
        guard: Callable[[ic.Session], str | None] | None = None,
    ) -> Iterator[Transaction]:
        """Write through ``txn.root``; commit on a normal exit, discard on an exception.

        ``prefix``: the group the transaction's paths are relative to (an experiment of
        a collection, ``experiments/<id>``; "" is the repository's root).

        ``guard(tip)`` says (a message) when the newest version no longer holds what this
        write belongs to (its experiment removed or replaced meanwhile: Icechunk would
        rebase new trials into the new state without a conflict). It runs under the
        commit lock just before the commit; on object stores, where there is no lock,
        also just after, and a write that raced past it is undone by a second commit.

        ``txn.before_commit`` hooks run just before the commit (under the lock) and, on
        object stores, ``txn.after_commit`` hooks just after it (follow-up commits that
        repair what raced past the checks: zstore.images).

        Raises :class:`~zstore.errors.TrialChangedError` (nothing committed) when another
        writer committed a change to the same nodes since the transaction began.
        """
        if not self.writable:
            raise ReadOnlyError(
                f"{self.place.label} was opened read-only; open it with mode='r+' to write"
            )
        with (
            _resource_errors(self.place.label, message) as outcome,
            s3_errors(self.place, committed=lambda: outcome.committed),
            contextlib.ExitStack() as stack,
        ):
            stack.enter_context(_compat.icechunk_errors(self.place.label))
            session = self.repository.writable_session(BRANCH)
            # The lease names the base version, so gc keeps it (and what is written
            # from now on) until this write ends.
            lease = stack.enter_context(Leases(self.place).held(str(session.snapshot_id)))
            txn = Transaction(session, prefix=prefix)
            yield txn
            if not txn.changes:
                return
            txn.finish()
            self._flush()  # the new chunks reach the disk before a version refers to them
            lease.check()
            with self._commit_lock(), _compat.quiet_icechunk("icechunk::session"):
                self._check_guard(guard, message)
                if txn.before_commit:  # under the lock: the tip cannot move meanwhile
                    tip = self.session()
                    # the version the write began from: what others committed since is
                    # what is in the tip and not in it
                    base = tip if str(tip.snapshot_id) == txn.base else self.session(txn.base)
                    for hook in txn.before_commit:
                        hook(tip, base)
                changes = list(txn.changes)  # with what the hooks changed
                metadata = {"zstore": {"changes": changes, "zstore_version": __version__}}
                try:
                    txn.snapshot = session.commit(
                        message, metadata=metadata, rebase_with=ic.ConflictDetector()
                    )
                except ic.RebaseFailedError as err:
                    raise _conflict(err, message, self.place.label) from None
                except ic.ConflictError as err:
                    raise ConflictError(
                        f"{self.place.label}: {message!r} was not saved: other writers kept "
                        f"committing while it retried ({err}); nothing was saved: try again"
                    ) from None
                except ic.IcechunkError as err:
                    if "transactions/" not in str(err):
                        raise
                    raise ConflictError(
                        f"{self.place.label}: {message!r} was not saved: the versions it "
                        f"started from were expired by `zstore gc` while it ran, so it cannot "
                        f"be rebased; nothing was saved: run it again"
                    ) from None
                outcome.committed = str(txn.snapshot)  # what fails from here was saved
                self._flush()  # a commit that returned is on disk
            if self.place.local is None:  # no commit lock: check what raced past the checks
                if guard is not None:
                    self._undo_if_raced(guard, message, txn)
                for after in txn.after_commit:
                    after(self, guard)

    def _check_guard(self, guard: Callable[[ic.Session], str | None] | None, message: str) -> None:
        if guard is None:
            return
        why = guard(self.session())
        if why:
            raise ConflictError(
                f"{self.place.label}: {message!r} was not saved: {why}; nothing was saved"
            )

    def _undo_if_raced(
        self, guard: Callable[[ic.Session], str | None], message: str, txn: Transaction
    ) -> None:
        """Object stores: a write that committed past its guard (another writer removed
        or replaced its experiment between the check and the commit) is taken back."""
        assert txn.snapshot is not None
        why = guard(self.session(txn.snapshot))
        if not why:
            return
        session = self.repository.writable_session(BRANCH)
        store = session.store
        for path in txn.changes:
            parent, _, name = path.rpartition("/")
            try:
                node = zarr.open_group(store, path=parent, mode="r+", zarr_format=3)
            except (GroupNotFoundError, FileNotFoundError, KeyError):
                continue
            if name in node:
                del node[name]
        session.commit(f"undo {message!r}: {why}", rebase_with=ic.ConflictDetector())
        raise ConflictError(
            f"{self.place.label}: {message!r} was not saved: {why}; nothing was saved"
        )

    def _flush(self) -> None:
        # Icechunk writes local files with write + rename and never fsync: flush the
        # file system that holds the repository (syncfs; sync where there is none).
        if self.place.local is None:
            return
        fd = os.open(self.place.local, os.O_RDONLY)
        try:
            _syncfs(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        if self.place.local is None:
            yield  # object stores: Icechunk's conditional PUT makes the commit atomic
            return
        with _flock(self.place.local / LOCKS / "commit", fcntl.LOCK_EX, COMMIT_LOCK_TIMEOUT):
            yield

    # -- garbage collection ---------------------------------------------------------------

    def collect_garbage(
        self, *, keep: datetime.timedelta, grace: datetime.timedelta, dry_run: bool = False
    ) -> GarbageReport:
        """Expire versions older than ``keep`` and delete what no kept version uses.

        Writes under way are never touched: every object written since the oldest live
        writer began is spared (see :mod:`zstore.leases`), and so is every object younger
        than ``grace`` (for writers zstore cannot see: another tool, or a storage where
        leases cannot be kept). The leftovers of killed writes older than both are
        deleted.
        """
        now = datetime.datetime.now(datetime.UTC)
        leases = Leases(self.place)
        with s3_errors(self.place):
            live = leases.live()
        cutoff = now - grace
        if live.oldest is not None:
            cutoff = min(cutoff, live.oldest - SKEW)
        expire_before = now - keep
        for base in live.bases:  # a writer rebases over the versions after its base
            written = self._written_at(base)
            if written is not None:
                expire_before = min(expire_before, written)
        with gc_errors(self.place.label), _compat.icechunk_errors(self.place.label):
            if dry_run:  # Icechunk cannot rehearse an expiry: count what it would expire
                history = self.history()
                expired = {
                    c.version for c in history[1:] if c.time is not None and c.time < expire_before
                }
            else:
                expired = self.repository.expire_snapshots(older_than=expire_before)
            summary = self.repository.garbage_collect(cutoff, dry_run=dry_run)
        return GarbageReport(
            versions_expired=len(expired),
            chunks_deleted=int(summary.chunks_deleted),
            manifests_deleted=int(summary.manifests_deleted),
            snapshots_deleted=int(summary.snapshots_deleted),
            bytes_deleted=int(summary.bytes_deleted),
            objects_cutoff=cutoff,
            writers_running=live.writers if leases.supported else None,
        )

    def _written_at(self, version: str) -> datetime.datetime | None:
        try:
            info = ic.Repository.open(
                self.repository.storage, config=self.repository.config
            ).lookup_snapshot(version)
        except Exception:
            return None  # gone already: nothing left to keep
        return info.written_at


class VersionProbe:
    """Picklable (it travels with lazy arrays to dask workers); called only on errors."""

    def __init__(self, repository: ic.Repository, version: str, label: str):
        self.repository = repository
        self.version = version
        self.label = label

    def __call__(self) -> str:
        try:
            # a fresh Repository: this one's cache may still hold a snapshot gc deleted
            ic.Repository.open(
                self.repository.storage, config=self.repository.config
            ).lookup_snapshot(self.version)
        except Exception as err:
            if not _compat.is_missing_object(err):
                return ""  # cannot tell: the storage did not answer
            return (
                f"version {self.version} of {self.label} no longer exists: `zstore gc` "
                f"removed it after this was loaded; load the trial again"
            )
        return ""


class Transaction:
    """The writes of one commit; see :meth:`Repo.transaction`."""

    def __init__(self, session: ic.Session, *, prefix: str = ""):
        self.base = str(session.snapshot_id)
        self.prefix = prefix.strip("/")
        self.session = session
        # On a dask.distributed cluster all writes go through a fork of the session: it
        # pickles to the workers (the coordinator's own metadata writes land in it too),
        # and the workers' changes are merged back before the commit. With threads the
        # session is written directly.
        self.client = _distributed_client()
        self.fork: Any = session.fork() if self.client is not None else None
        self.store = (self.fork or session).store
        self.root = zarr.open_group(self.store, path=self.prefix, mode="a", zarr_format=3)
        self.merged: list[Any] = []
        self.changes: list[str] = []
        #: Called with read-only sessions of the newest version and of the version this
        #: write began from, just before the commit (under the commit lock on local
        #: disks): to fit this write to commits made since it began (zstore.images:
        #: shared images written by two writers).
        self.before_commit: list[Callable[[ic.Session, ic.Session], None]] = []
        #: Called with the Repo and the write's guard after the commit, on object stores
        #: only (no commit lock, so a before_commit check can race another writer's
        #: commit): to repair what the race broke in a follow-up commit (zstore.images),
        #: which then becomes ``snapshot``, the version the write's caller moves to.
        self.after_commit: list[Callable[[Repo, Guard | None], None]] = []
        self.snapshot: str | None = None

    @contextlib.contextmanager
    def within(self, prefix: str) -> Iterator[Transaction]:
        """Make paths relative to the group ``prefix`` (from the repository's root) for
        the ``with`` block: one transaction that writes several experiments."""
        saved = self.prefix, self.root
        self.prefix = prefix.strip("/")
        self.root = zarr.open_group(self.store, path=self.prefix, mode="a", zarr_format=3)
        try:
            yield self
        finally:
            self.prefix, self.root = saved

    def path(self, path: str) -> str:
        """``path`` (relative to the transaction's prefix) from the repository's root."""
        return "/".join(p for p in (self.prefix, path.strip("/")) if p)

    def note(self, *changes: str) -> None:
        """Record what this transaction changes (shown by ``history()``)."""
        full = [self.path(c) or "/" for c in changes]
        self.changes.extend(c for c in full if c not in self.changes)

    def group(self, path: str) -> zarr.Group:
        """The writable group at ``path``."""
        return zarr.open_group(self.store, path=self.path(path), mode="r+", zarr_format=3)

    def delete(self, path: str) -> None:
        """Remove a node and everything below it from the next version."""
        parent, _, name = self.path(path).rpartition("/")
        node = zarr.open_group(self.store, path=parent, mode="r+", zarr_format=3)
        # not `name in node`: that parses the node's metadata, which may be damaged
        if _compat.has_node(self.store, self.path(path)):
            del node[name]

    def write_arrays(
        self,
        sources: Sequence[Any],
        targets: Sequence[zarr.Array],
        *,
        progress: Progress | None = None,
    ) -> None:
        """Stream each source into its target (created in this transaction), shard by shard.

        On a dask.distributed cluster the fork travels to the workers, each task writes
        whole shards, and the workers' changes come back to be merged; with threads the
        tasks write into the session directly.
        """
        store_matrices(sources, targets, progress=progress, store_wave=self._store_wave)

    def _store_wave(self, sources: list[da.Array], targets: list[Any], regions: list[Any]) -> None:
        if self.fork is None:
            with dask.config.set(scheduler="threads"):
                da.store(sources, targets, regions=regions, lock=False, compute=True)
            return
        from icechunk.dask import store_dask

        self.merged.append(store_dask(sources=sources, targets=targets, regions=regions))

    def finish(self) -> None:
        """Bring the workers' writes into the session (before the commit)."""
        if self.fork is not None:
            self.session.merge(*self.merged, self.fork)


@dataclasses.dataclass
class _Outcome:
    """How far a write got: the version it committed, once it has."""

    committed: str | None = None


@contextlib.contextmanager
def _resource_errors(where: str, message: str) -> Iterator[_Outcome]:
    """A write that fails for want of disk (full, quota, file size limit), permission or
    memory (or room for a thread), as an error naming the store, the write (``message``:
    "add trial 't-1'") and what to check; a disk error's errno is kept (``err.errno``).
    The write sets ``committed`` on what this yields once it has committed, so that a
    failure after it (a flush, a hook, the lease's release) does not say nothing was
    saved."""
    outcome = _Outcome()
    try:
        yield outcome
    except OutOfMemoryError:
        raise
    except Exception as err:
        if out_of_memory(err):
            raise OutOfMemoryError(_memory_advice(where, message, err, outcome)) from None
        failure = write_failure(err, where=where, what=message, committed=outcome.committed)
        if failure is None:
            raise
        raise failure from None
    except BaseException as err:  # Icechunk's Rust panics, e.g. a thread it cannot start
        if type(err).__name__ != "PanicException" or not out_of_memory(err):
            raise
        raise OutOfMemoryError(_memory_advice(where, message, err, outcome)) from None


def _memory_advice(where: str, message: str, err: BaseException, outcome: _Outcome) -> str:
    threads = "thread" in str(err) and not isinstance(err, MemoryError)
    what = (
        "could not start a thread (memory, or a limit on processes: `ulimit -v`, `ulimit -u`)"
        if threads
        else "ran out of memory"
    )
    return (
        f"{where}: {message} {what}; {saved_or_not(outcome.committed)}. Each thread holds a few "
        f"shards: use fewer threads (dask.config.set(num_workers=2)), smaller shards for "
        f"new data (StorageConfig(shard_bytes=...)), or fewer trials at once"
    )


def _make_writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check that files can be made in it, before
    Icechunk does (where it cannot, Icechunk panics with a Rust backtrace on stderr)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))


def _runtime_config(place: Place) -> ic.RepositoryConfig:
    # Icechunk preloads the manifests of arrays named like coordinates ("time", ...) when
    # a session opens: var/time of every trial, requests nobody asked for. zstore reads
    # manifests when their chunks are read, never before.
    preload = ic.ManifestPreloadConfig(max_total_refs=0)
    return ic.RepositoryConfig(
        manifest=ic.ManifestConfig(preload=preload), storage=storage_settings(place)
    )


def _distributed_client() -> Any:
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


def _conflict(err: Any, message: str, where: str) -> Exception:
    paths = sorted({str(c.path) for c in getattr(err, "conflicts", [])})
    trials = sorted({t for p in paths if (t := _trial_of(p))})
    what = ", ".join(f"{c.path}: {c.conflict_type}" for c in err.conflicts[:5])
    experiments = sorted(
        {p.strip("/").split("/")[1] for p in paths if re.fullmatch(rf"/?{EXPERIMENTS}/[^/]+", p)}
    )
    if experiments:  # the experiment node itself: added, replaced or removed meanwhile
        return ConflictError(
            f"{where}: {message!r} was not saved: experiment(s) {experiments} were added, "
            f"replaced or removed by another writer meanwhile ({what}); nothing was saved: "
            f"open the collection again (col.refresh()) and retry"
        )
    if trials:
        return TrialChangedError(
            f"{where}: {message!r} was not saved: trial(s) {trials} were changed by another "
            f"writer since this one began ({what}); nothing was saved: load the trial "
            f"again and redo the change"
        )
    return ConflictError(
        f"{where}: {message!r} was not saved: another writer changed the same data "
        f"meanwhile ({what}); nothing was saved: open the experiment again and retry"
    )


def _trial_of(path: str) -> str:
    """The trial ID in a node path (``trials/<id>/...``, also inside a collection's
    ``experiments/<exp>/trials/<id>/...``), or ''."""
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part == TRIALS and (i == 0 or parts[i - 2 : i - 1] == [EXPERIMENTS]):
            return parts[i + 1]
    return ""


def _syncfs(fd: int) -> None:
    libc = _LIBC
    if libc is not None and libc.syncfs(fd) == 0:
        return
    os.sync()


def _load_libc() -> Any:
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.syncfs  # noqa: B018 (glibc and musl have it; probe before relying on it)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


@contextlib.contextmanager
def _flock(path: Path, kind: int, timeout: float) -> Iterator[None]:
    """Hold an OS lock on ``path`` (created if needed); waits up to ``timeout`` seconds.

    ``timeout=0`` tries once and raises BlockingIOError when the lock is held.
    """
    try:
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise type(err)(
            err.errno,
            f"cannot create the lock file {path} ({err.strerror}); zstore needs "
            f"write access to the experiment folder to write to it",
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, kind | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise BlockingIOError(
                        errno.EWOULDBLOCK,
                        f"the lock {path} is held by another process"
                        + (f" for more than {timeout:.0f} s" if timeout else ""),
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
