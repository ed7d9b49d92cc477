"""Check every trial of an experiment: metadata, the presence of every shard, every chunk.

X and layers are dense: every shard of them is written (zeros too), so a shard that is
not listed is missing data, and is reported. Every chunk of every element (X, layers,
obs, var, obsm, uns) is read back: a chunk object that was deleted or truncated, or
whose crc32c checksum no longer matches its bytes, is reported with the trial, array and
chunk. A shard that fails is re-read one inner chunk at a time to name exactly which
chunks are damaged. A trial whose metadata documents cannot be read is reported with
the document's key, and the other trials are checked as usual.

What failed is told by the error's type (zstore's readers check every crc32c
themselves: :mod:`zstore.shards`), never by the words of a message.

Only the data's damage is reported: a read that fails because the machine or the
storage did (memory ran out, too many open files, no permission to read a file, an I/O
error, an S3 service that does not answer) stops the check with that error
(:class:`~zstore.errors.OutOfMemoryError`, :class:`~zstore.errors.StoreError`), as
nothing can be said of the chunks not read.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any, cast

import zarr
from anndata.io import read_elem

from ._compat import is_corrupt_object, is_storage_error, list_keys, short_message
from .documents import damaged_documents, damaged_experiments, list_trials
from .errors import (
    ArgumentTypeError,
    ChecksumMismatchError,
    CorruptChunkError,
    MissingChunkError,
)
from .experiment import Experiment
from .images import IMAGES, REFS, image_name, image_refs, is_image_array, read_image
from .progress import ProgressOption, reporting
from .shards import ShardFormat, ShardReader, chunk_damage, read_checked
from .store import TRIALS, read_failure
from .trialio import trial_problems
from .validate import progress_option, shown

__all__ = ["Damage", "unreadable_experiments", "verify_experiment"]


@dataclasses.dataclass(frozen=True)
class Damage:
    """One problem found: where it is and what reading it said."""

    trial: str
    array: str
    chunk: tuple[int, ...]
    error: str
    #: A summary image (``array`` is ``images/<hash>``, ``trial`` empty): the trials
    #: that use it, each with the uns key it fills (``"t-005 suite2p/meanImg"``).
    used_by: tuple[str, ...] = ()
    #: An experiment of a collection whose own metadata cannot be read (``trial`` empty)
    experiment: str = ""

    def __str__(self) -> str:
        if self.experiment and not self.trial:
            return f"experiment {self.experiment!r}: {self.error}"
        if self.used_by:
            return f"image {self.array} (used by {', '.join(self.used_by)}): {self.error}"
        where = f"trial {self.trial!r}"
        if self.array:
            where += f" {self.array}"
        if self.chunk:
            where += f" chunk {'.'.join(map(str, self.chunk))}"
        return f"{where}: {self.error}"


def verify_experiment(
    exp: Experiment, *, progress: ProgressOption | Callable[[str, int, int], None] = None
) -> list[Damage]:
    """Check every trial of ``exp`` (at its version); return what is damaged ([]: none).

    ``progress``: ``True`` shows a bar over the arrays of every trial, ``False``
    nothing, ``None`` (default) a bar in interactive sessions only; a callable is
    called with ``(trial_id, arrays_done, arrays_total)``.

    Raises :class:`~zstore.errors.OutOfMemoryError` or
    :class:`~zstore.errors.StoreError` when the check cannot go on for want of memory,
    open files, permission to read, or a storage that answers: that is not damage, and
    nothing is reported as damaged for it.

    Examples
    --------
    >>> import icechunk, numpy as np, zstore as zs
    >>> from zstore.verify import verify_experiment
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> _ = exp.add_trial("t", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
    >>> verify_experiment(exp)
    []
    """
    if not isinstance(exp, Experiment):
        hint = (
            "verify each experiment: [verify_experiment(e) for e in col.experiments()]"
            if type(exp).__name__ == "Collection"
            else "pass exp=zs.open_experiment(<path>)"
        )
        raise ArgumentTypeError(
            f"verify_experiment: exp must be a zs.Experiment, got {shown(exp)}; {hint}"
        )
    progress_option(progress, where="verify_experiment")
    try:
        return _verify(exp, progress)
    except Exception as err:
        failure = read_failure(err, where=exp.location, what="verify", then=_STOPPED)
        if failure is None:
            raise
        raise failure from None
    except BaseException as err:  # Icechunk's Rust panics, e.g. a thread it cannot start
        failure = read_failure(err, where=exp.location, what="verify", then=_STOPPED)
        if type(err).__name__ != "PanicException" or failure is None:
            raise
        raise failure from None


#: What a failure of the machine or the storage (not the data) leaves of the check.
_STOPPED = "verify stopped there (this is not damage): run it again once this is fixed"


def _not_damage(err: BaseException) -> bool:
    """``err`` is the machine's or the storage's failure (memory, open files, no
    permission to read, an I/O error, an S3 outage), not damaged data: it stops the
    check instead of being reported."""
    return read_failure(err, where="", what="") is not None


def _verify(exp: Experiment, progress: Any) -> list[Damage]:
    damage: list[Damage] = []
    uses: dict[str, list[str]] = {}  # summary image -> the trials using it (checked once)
    store = exp.open_zarr().store
    listing = list_trials(store, exp._path(TRIALS))
    ids = [t for t in listing.ids if t not in listing.damaged]
    # a trial whose own document cannot be read (or an array among the trials): reported
    damage += [Damage(t, "", (), f"metadata: {why}") for t, why in listing.damaged.items()]
    with reporting(progress, desc=f"verify {exp.expID}", parts=len(ids), unit="array") as report:
        for trial_id in ids:
            try:
                group = exp.open_zarr(f"{TRIALS}/{trial_id}")
                arrays = [
                    (path, cast(zarr.Array, node))
                    for path, node in group.members(max_depth=None)
                    if isinstance(node, zarr.Array)
                ]
            except Exception as err:  # a document inside the trial that zarr cannot read
                if _not_damage(err):
                    raise
                damage += _unreadable_trial(trial_id, store, exp._path(f"{TRIALS}/{trial_id}"), err)
                continue
            damage += _check_metadata(trial_id, group)
            damage += _image_uses(trial_id, group, uses)
            if report is not None:
                report(trial_id, 0, len(arrays))
            for k, (path, array) in enumerate(arrays):
                try:
                    damage += _verify_array(trial_id, path, array)
                except Exception as err:  # the array's manifest itself cannot be read
                    if _not_damage(err):
                        raise
                    damage.append(Damage(trial_id, path, (), f"unreadable: {_reason(err)}"))
                if report is not None:
                    report(trial_id, k + 1, len(arrays))
    return damage + _check_images(exp.open_zarr(""), uses) + _check_history(exp)


def _check_history(exp: Experiment) -> list[Damage]:
    """The experiment's history reads back (every snapshot of its repository):
    `zstore history` and opening an earlier version need it. A version whose snapshot
    is missing or damaged is reported, by its ID."""
    try:
        commits = exp._repo.history(warn=False)
    except Exception as err:  # a snapshot or the repository's refs are damaged
        if _not_damage(err):
            raise
        return [
            Damage(
                "",
                "",
                (),
                f"its history cannot be read past a damaged snapshot ({_reason(err)}); the "
                f"earlier versions cannot be opened: restore the store from a copy",
                experiment=exp.expID,
            )
        ]
    return [
        Damage(
            "",
            f"snapshots/{c.version}",
            (),
            f"version {c.version} of its history cannot be read ({c.damaged}), nor be "
            f"opened: restore snapshots/{c.version} from a copy of the store",
            experiment=exp.expID,
        )
        for c in commits
        if c.damaged
    ]


def unreadable_experiments(col: Any) -> list[Damage]:
    """The experiments of the collection ``col`` whose own metadata cannot be read
    (its table and ``experimentIDs`` leave them out), each naming the key.

    Examples
    --------
    >>> import icechunk, zstore as zs
    >>> col = zs.create_collection(icechunk.in_memory_storage())
    >>> unreadable_experiments(col)
    []
    """
    found = damaged_experiments(col._session.store)
    return [Damage("", "", (), f"metadata: {why}", experiment=e) for e, why in found.items()]


def _unreadable_trial(trial_id: str, store: Any, path: str, err: Exception) -> list[Damage]:
    """The damaged documents of a trial that zarr could not list (or why it could not)."""
    if is_storage_error(err):
        return [Damage(trial_id, "", (), f"metadata {_reason(err)}")]
    found = damaged_documents(store, path)
    if not found:
        return [Damage(trial_id, "", (), f"metadata unreadable: {type(err).__name__}: {err}")]
    return [Damage(trial_id, "", (), f"metadata: {d.key} {d.problem}") for d in found]


def _check_metadata(trial_id: str, group: zarr.Group) -> list[Damage]:
    """The trial's structure (attributes, shapes, index and columns), as load_trial
    checks it before building the trial."""
    problems = [
        f"{p.split(':', 1)[0]} is missing" if p.endswith("(it was deleted)") else p
        for p in trial_problems(group)
    ]
    return [Damage(trial_id, "", (), f"metadata: {p}") for p in problems]


def _image_uses(trial_id: str, group: zarr.Group, uses: dict[str, list[str]]) -> list[Damage]:
    """Adds the summary images the trial's uns refers to to ``uses``."""
    node = group.get(f"uns/{REFS}")
    if not isinstance(node, zarr.Group):
        return []
    try:
        refs = image_refs({REFS: read_elem(node)})
    except Exception as err:  # the references themselves cannot be read
        if _not_damage(err):
            raise
        return [Damage(trial_id, f"uns/{REFS}", (), f"unreadable: {_reason(err)}")]
    for key, path in refs.items():
        uses.setdefault(path, []).append(f"trial {trial_id!r} {key}")
    return []


def _check_images(root: zarr.Group, uses: dict[str, list[str]]) -> list[Damage]:
    """Each summary image once: it exists, reads back whole (checksums) and its content
    still has the hash it is named by; the trials using it are named with it."""
    found = []
    images = root.get(IMAGES)
    names = sorted(images.array_keys()) if isinstance(images, zarr.Group) else []
    paths = sorted(set(uses) | {f"{IMAGES}/{n}" for n in names})
    for path in paths:
        users = tuple(uses.get(path, ())) or ("no trial",)
        node = root.get(path) if path.startswith(f"{IMAGES}/") else None
        if not isinstance(node, zarr.Array):
            found.append(Damage("", path, (), "the image is not in the experiment", users))
            continue
        try:
            image = read_image(node)
        except Exception as err:  # what its bytes are, told by zstore's own check
            if _not_damage(err):
                raise
            why = _image_damage(node, path, err)
            found.append(Damage("", path, (), f"unreadable: {_reason(why)}", users))
            continue
        if is_image_array(node) and image_name(image) != path.removeprefix(f"{IMAGES}/"):
            found.append(
                Damage(
                    "",
                    path,
                    (),
                    "its content no longer matches its name (the hash of what was written): "
                    "it was changed after writing",
                    users,
                )
            )
    return found


def _image_damage(node: zarr.Array, path: str, err: Exception) -> Exception:
    """What is damaged in the image ``node`` (its chunk, by zstore's checksums), or
    ``err`` when its chunk cannot even be fetched (its manifest is damaged)."""
    try:
        return chunk_damage(node, f"image {path}") or err
    except Exception as again:
        if _not_damage(again):
            raise
        return err


def _verify_array(trial_id: str, path: str, array: zarr.Array) -> list[Damage]:
    found = []
    read = _reader(trial_id, path, array)
    if _is_dense(array):
        found += _missing_shards(trial_id, path, array)
    outer = array.shards or array.chunks
    for block in _blocks(array.shape, outer):
        try:
            read(block)
        except Exception as err:  # a read failure of the data's (not memory, files, ...)
            if _not_damage(err):
                raise
            found += _locate(trial_id, path, read, array, block, err)
    return found


def _reader(trial_id: str, path: str, array: zarr.Array) -> Callable[[tuple[slice, ...]], Any]:
    """Reads a region checking every checksum: zstore's shard pipeline (whole shards
    decoded on every core; an inner chunk left out of its shard is damage, not zeros),
    or zarr-python for other layouts."""
    label = f"trial {trial_id!r} {path}"
    fmt = ShardFormat.of(array)
    if fmt is None:
        return lambda region: read_checked(array, region, label)
    return ShardReader(array, fmt, label).read


def _is_dense(array: zarr.Array) -> bool:
    # zstore's matrices (X, layers) are written with every shard present.
    return tuple(getattr(array.metadata, "dimension_names", None) or ()) == ("roi", "frame")


def _missing_shards(trial_id: str, path: str, array: zarr.Array) -> list[Damage]:
    outer = array.shards or array.chunks
    grid = [math.ceil(n / s) for n, s in zip(array.shape, outer, strict=True)]
    stored = set(list_keys(array.store, f"{array.path}/"))
    found = []
    for coords in itertools.product(*(range(g) for g in grid)):
        key = f"{array.path}/{array.metadata.encode_chunk_key(coords)}"
        if key not in stored:
            found.append(
                Damage(trial_id, path, coords, "shard missing: the store does not list it")
            )
    return found


def _locate(
    trial_id: str,
    path: str,
    read: Callable[[tuple[slice, ...]], Any],
    array: zarr.Array,
    block: tuple[slice, ...],
    err: Exception,
) -> list[Damage]:
    inner = array.chunks
    found = []
    for chunk in _blocks(array.shape, inner, within=block):
        try:
            read(chunk)
        except Exception as inner_err:
            if _not_damage(inner_err):
                raise
            coords = tuple(s.start // c for s, c in zip(chunk, inner, strict=True))
            found.append(Damage(trial_id, path, coords, _reason(inner_err)))
    if not found or len(found) == math.prod(
        math.ceil((b.stop - b.start) / c) for b, c in zip(block, inner, strict=True)
    ):
        # the whole shard is unreadable (its object, or its index, is damaged)
        coords = tuple(s.start // c for s, c in zip(block, inner, strict=True))
        if not array.shape:  # a scalar: one value, no shard
            return [Damage(trial_id, path, coords, _reason(err))]
        return [Damage(trial_id, path, coords, f"shard unreadable: {_reason(err)}")]
    return found


def _reason(err: Exception) -> str:
    """What a failed read means, told by the error's type."""
    if is_corrupt_object(err):  # e.g. its manifest cut short: "incomplete frame"
        return f"its stored data is damaged ({short_message(err)})"[:300]
    if is_storage_error(err):
        return f"cannot be read: {short_message(err)}"[:300]
    text = str(err)
    if isinstance(err, MissingChunkError):
        return "chunk missing: " + text.split(": ", 1)[-1][:300]
    if isinstance(err, ChecksumMismatchError):
        return "checksum mismatch (the stored bytes changed after writing)"
    if isinstance(err, CorruptChunkError):  # decodes wrong although its checksum is right
        return "cannot be decoded: " + text.split(": ", 1)[-1][:300]
    return f"{type(err).__name__}: {text}"[:300]


def _blocks(
    shape: tuple[int, ...], step: tuple[int, ...], within: tuple[slice, ...] | None = None
) -> Any:
    if 0 in shape:
        return  # (a scalar, shape (), is one block: the empty region)
    bounds = within or tuple(slice(0, n) for n in shape)
    ranges = [
        range(b.start, min(b.stop, n), s) for b, n, s in zip(bounds, shape, step, strict=True)
    ]
    for starts in itertools.product(*ranges):
        yield tuple(
            slice(int(a), int(min(a + s, b.stop, n)))
            for a, s, b, n in zip(starts, step, bounds, shape, strict=True)
        )
