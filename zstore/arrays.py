"""ROIs x frames matrices in Zarr: chunk planning, sharded streaming writes, lazy reads.

A storage block ("shard") holds every frame of a block of ROIs, so a per-ROI computation
over the whole trace is one task per shard. Inside a shard, inner chunks are small along
both axes so that one ROI's trace or one time window does not read whole shards. Every
write is done by tasks that each write whole shards: no locks, and safe under
dask.distributed (two tasks writing parts of one shard corrupt it in zarr-python).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask
import dask.array as da
import dask.threaded
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec, ZstdCodec

from ._compat import is_corrupt_object, is_missing_object, is_storage_error, short_message
from .errors import (
    ArgumentTypeError,
    CorruptChunkError,
    FormatVersionError,
    InvalidArgumentError,
    MissingChunkError,
    NotAnExperimentError,
    StoreError,
)
from .shards import ShardFormat, ShardReader, read_checked, shard_writers
from .validate import choice, positive_int

__all__ = [
    "DIMENSION_NAMES",
    "Progress",
    "StorageConfig",
    "as_shard_blocks",
    "create_matrix",
    "create_matrix_like",
    "lazy_matrix",
    "plan_chunks",
    "read_errors",
    "store_matrices",
]

DIMENSION_NAMES = ("roi", "frame")
ARRAY_ENCODING = {"encoding-type": "array", "encoding-version": "0.2.0"}
MIB = 1 << 20
_TRIM_AFTER_BYTES = 8 * MIB


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """How ROIs x frames matrices are chunked and compressed.

    Parameters
    ----------
    shard_bytes
        Target uncompressed size of one shard (a block of ROIs x all frames): one dask
        task reads or writes one shard, so it sets both task size and memory per task.
    inner_rois, inner_frames
        Inner chunk shape: the unit of compression and of partial reads.
    codec
        ``"blosc-lz4"`` (default: fast to encode and decode), ``"blosc-zstd"``, their
        bit-shuffling variants ``"blosc-lz4-bit"`` and ``"blosc-zstd-bit"``, ``"zstd"``
        or ``"none"``. A crc32c checksum is always appended.
    clevel
        Compression level for the codec: 0..9 for the blosc codecs, -131072..22 for
        ``"zstd"``. Every field is checked here (an ``ArgumentTypeError`` or
        ``InvalidArgumentError`` naming it), not at the first write.

    Examples
    --------
    >>> from zstore.arrays import StorageConfig
    >>> StorageConfig(shard_bytes=32 * 2**20).codec
    'blosc-lz4'
    """

    shard_bytes: int = 32 * MIB
    # Chosen by `scripts/bench --compare` (BENCHMARKS.md): against 16x8192, 32x16384
    # reads shards ~1.8x faster and time windows faster, one trace about as fast.
    inner_rois: int = 32
    inner_frames: int = 16384
    codec: str = "blosc-lz4"
    clevel: int = 5

    def __post_init__(self) -> None:
        where = "StorageConfig"
        for field in ("shard_bytes", "inner_rois", "inner_frames"):
            value = positive_int(
                getattr(self, field), name=field, where=where, fix=f"pass {field}=<int >= 1>"
            )
            if value > _MAX_SIZE:
                raise InvalidArgumentError(
                    f"{where}: {field}={value} is beyond what a store records (at most "
                    f"2**53); pass {field}=<int >= 1>, e.g. {field}="
                    f"{getattr(StorageConfig, field)}"
                )
            object.__setattr__(self, field, value)  # a plain int (numpy's do not go to JSON)
        codec = choice(self.codec, sorted(_CODECS), name="codec", where=where)
        low, high = CLEVELS.get(codec, (0, 9))
        fix = f"pass clevel=<{low}..{high}> (codec {codec!r})"
        level = positive_int(self.clevel, name="clevel", where=where, fix=fix, minimum=low)
        if level > high:
            raise InvalidArgumentError(
                f"{where}: clevel must be {low}..{high} for codec {codec!r}, got {level}; "
                f"pass clevel=<{low}..{high}>, e.g. clevel=5"
            )
        object.__setattr__(self, "clevel", level)

    def compressors(self) -> list[Any]:
        return [*_CODECS[self.codec](self.clevel), Crc32cCodec()]

    def to_json(self) -> dict[str, Any]:
        """The configuration as stored in the experiment's attributes."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, document: Any, *, where: str = "the experiment") -> StorageConfig:
        """The configuration recorded in an experiment (defaults for keys it lacks)."""
        if not isinstance(document, dict):
            raise NotAnExperimentError(
                f"{where}: the recorded storage configuration is not a mapping: "
                f"{document!r}; an earlier version may be intact: `zstore history`"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise FormatVersionError(
                f"{where}: the recorded storage configuration has keys {unknown} this "
                f"zstore does not know; upgrade zstore (pip install -U zstore)"
            )
        try:
            return cls(**document)
        except (ArgumentTypeError, InvalidArgumentError) as err:
            raise NotAnExperimentError(
                f"{where}: the recorded storage configuration is damaged ({err}); an "
                f"earlier version may be intact: `zstore history`"
            ) from None


#: The compression levels each codec takes (blosc: 0..9; zstd: its negative "fast"
#: levels down to ZSTD_minCLevel, -131072, up to 22). ``none`` takes 0..9 and ignores it.
CLEVELS = {"zstd": (-(1 << 17), 22)}
#: The largest size a store records exactly (JSON numbers: 2**53).
_MAX_SIZE = 1 << 53

_CODECS: dict[str, Callable[[int], list[Any]]] = {
    "blosc-lz4": lambda level: [
        BloscCodec(cname="lz4", clevel=level, shuffle=BloscShuffle.shuffle)
    ],
    "blosc-lz4-bit": lambda level: [
        BloscCodec(cname="lz4", clevel=level, shuffle=BloscShuffle.bitshuffle)
    ],
    "blosc-zstd": lambda level: [
        BloscCodec(cname="zstd", clevel=level, shuffle=BloscShuffle.shuffle)
    ],
    "blosc-zstd-bit": lambda level: [
        BloscCodec(cname="zstd", clevel=level, shuffle=BloscShuffle.bitshuffle)
    ],
    "zstd": lambda level: [ZstdCodec(level=level)],
    "none": lambda level: [],
}


def plan_chunks(
    shape: tuple[int, int], itemsize: int, config: StorageConfig
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return ``(shard, inner)`` chunk shapes for a ROIs x frames matrix.

    The shard spans every frame (its frame extent is rounded up to a whole number of
    inner chunks, so it may exceed the array) and as many ROIs as fit ``shard_bytes``,
    in whole inner chunks.

    Examples
    --------
    >>> from zstore.arrays import StorageConfig, plan_chunks
    >>> plan_chunks((4096, 100000), 4, StorageConfig())
    ((64, 114688), (32, 16384))
    """
    n_rois, n_frames = shape
    inner_f = max(1, min(config.inner_frames, n_frames))
    shard_f = math.ceil(max(n_frames, 1) / inner_f) * inner_f
    row_bytes = max(1, shard_f * itemsize)
    rows = max(1, config.shard_bytes // row_bytes)
    # Long trials: a band of inner_rois ROIs x all frames could outgrow the shard budget
    # (and memory per task grow with trial length); thin the band instead.
    inner_r = max(1, min(config.inner_rois, n_rois, rows))
    blocks = max(1, rows // inner_r)
    blocks = min(blocks, math.ceil(max(n_rois, 1) / inner_r))
    return (blocks * inner_r, shard_f), (inner_r, inner_f)


def create_matrix(
    group: zarr.Group,
    name: str,
    *,
    shape: tuple[int, int],
    dtype: Any,
    config: StorageConfig,
    attributes: dict[str, Any] | None = None,
) -> zarr.Array:
    """Create (replacing any existing) a sharded ROIs x frames array in ``group``."""
    dtype = np.dtype(dtype)
    shard, inner = plan_chunks(shape, dtype.itemsize, config)
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=inner,
        shards=shard,
        compressors=config.compressors(),
        fill_value=0,
        dimension_names=DIMENSION_NAMES,
        attributes={**ARRAY_ENCODING, **(attributes or {})},
        overwrite=True,
        # Every shard is written, zeros too: a shard that is not there is then damage
        # (reported by `zstore verify`), never data that happens to equal the fill value.
        config={"write_empty_chunks": True},
    )


def create_matrix_like(
    group: zarr.Group, name: str, template: zarr.Array, *, dtype: Any
) -> zarr.Array:
    """Create (replacing any existing) a matrix chunked and compressed like ``template``.

    Layers of a trial are stored like its X: same shards, inner chunks and codecs,
    whatever configuration the experiment is opened with today.
    """
    return group.create_array(
        name,
        shape=template.shape,
        dtype=np.dtype(dtype),
        chunks=template.chunks,
        shards=template.shards,
        compressors=template.compressors,
        fill_value=0,
        dimension_names=DIMENSION_NAMES,
        attributes=dict(ARRAY_ENCODING),
        overwrite=True,
        config={"write_empty_chunks": True},
    )


def as_shard_blocks(data: Any, target: zarr.Array) -> da.Array:
    """``data`` as a dask array whose blocks are exactly ``target``'s shards."""
    rows = target.shards[0] if target.shards else target.chunks[0]
    chunks = (rows, max(target.shape[1], 1))
    if isinstance(data, da.Array):
        arr = data.astype(target.dtype) if data.dtype != target.dtype else data
        if arr.chunks[0][:-1] and set(arr.chunks[0][:-1]) == {rows} and arr.numblocks[1] == 1:
            return arr
        return arr.rechunk(chunks)
    # A unique name instead of dask's default token, which hashes every byte of ``data``
    # (0.3 s per 400 MB, a quarter of a whole write).
    name = f"zstore-source-{uuid.uuid4().hex}"
    return da.from_array(np.asarray(data), chunks=chunks, name=name).astype(target.dtype)


Progress = Callable[[int, int], None]
"""Called as ``progress(shards_done, shards_total)`` while matrices are written."""

StoreWave = Callable[[list[da.Array], list[Any], list[Any]], None]
"""Writes ``sources[i]`` into ``targets[i][regions[i]]``; every region is whole shards.
A target is a :class:`zstore.shards.ShardWriter` (or a zarr array in another layout)."""


def _store_wave(sources: list[da.Array], targets: list[Any], regions: list[Any]) -> None:
    da.store(sources, targets, regions=regions, lock=False, compute=True)


def store_matrices(
    sources: Sequence[Any],
    targets: Sequence[zarr.Array],
    *,
    progress: Progress | None = None,
    parallel: int | None = None,
    store_wave: StoreWave = _store_wave,
) -> None:
    """Stream each source into its target, one task per shard.

    Sources may be numpy arrays or dask arrays of any chunking; they are rechunked to
    whole shards first, since tasks writing parts of one shard would corrupt it. Shards
    are written in waves as wide as the workers available, which bounds memory to a
    few shards per worker however the scheduler would order the whole graph.
    ``store_wave`` writes one wave (the storage engine passes its own).
    """
    for src, dst in zip(sources, targets, strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"cannot write an array of shape {src.shape} into {dst.path}")
    blocks = [as_shard_blocks(src, dst) for src, dst in zip(sources, targets, strict=True)]
    # zstore encodes whole shards itself, in the tasks (shards.py); other layouts: zarr.
    writers = shard_writers(targets)
    jobs = [
        (i, start, start + rows)
        for i, block in enumerate(blocks)
        for start, rows in zip(np.cumsum((0, *block.chunks[0][:-1])), block.chunks[0], strict=True)
        if rows
    ]
    width = parallel or _worker_count()
    if progress:
        progress(0, len(jobs))
    with (
        _waiting_pool(width) as pool,
        dask.config.set({"array.slicing.split_large_chunks": False, **pool}),
    ):
        for done in range(0, len(jobs), width):
            wave = jobs[done : done + width]
            _check_whole_shards(wave, targets)
            store_wave(
                [blocks[i][int(a) : int(b)] for i, a, b in wave],
                [writers[i] for i, _, _ in wave],
                [(slice(int(a), int(b)), slice(None)) for _, a, b in wave],
            )
            release_freed_memory()
            if progress:
                progress(done + len(wave), len(jobs))


@contextlib.contextmanager
def _waiting_pool(threads: int) -> Iterator[dict[str, Any]]:
    """Dask's local thread pool for one write, as a config entry, shut down only once
    every task under way has finished: when one task fails, dask raises at once while the
    others still run, and those would go on writing into what the failure removes (an
    export's temporary folder). Its threads keep their codec buffers across the write's
    waves. A pool the caller configured (``dask.config.set(pool=...)``) is used as is."""
    if dask.config.get("pool", None) is not None:
        yield {}
        return
    # dask's own kind of pool (it passes contextvars to its threads) where it has one
    kind = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
    pool = kind(max(1, threads), thread_name_prefix="zstore-write")
    try:
        yield {"pool": pool}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_whole_shards(wave: list[tuple[int, Any, Any]], targets: Sequence[zarr.Array]) -> None:
    # Two tasks writing parts of one shard lose one task's rows silently (zarr-python
    # and Icechunk alike): refuse any region that does not start on a shard boundary.
    for i, start, stop in wave:
        rows = (targets[i].shards or targets[i].chunks)[0]
        if int(start) % rows or (int(stop) % rows and int(stop) != targets[i].shape[0]):
            raise RuntimeError(
                f"internal error: rows {start}:{stop} of {targets[i].path} are not whole "
                f"shards of {rows} rows; nothing was written"
            )


def release_freed_memory() -> None:
    """Hand memory freed by the last shards back to the OS (glibc only; else a no-op).

    Encoding shards allocates and frees many buffers of a few hundred kB; glibc keeps
    them in per-thread arenas, where fragmentation grows RSS by hundreds of MB over a
    long write although nothing is held. ``malloc_trim(0)`` returns those pages.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only: musl has no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def _worker_count() -> int:
    """Threads that will run the tasks: a distributed client's, or the local pool's."""
    try:
        from distributed import get_client

        return max(1, sum(get_client().nthreads().values()))
    except (ImportError, ValueError):
        pass
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def lazy_matrix(
    array: zarr.Array,
    *,
    name: str,
    label: str,
    explain: Callable[[], str] | None = None,
    missing_reads_as_zeros: bool = False,
) -> da.Array:
    """A dask array over a stored matrix, one block per shard; reads nothing now.

    ``label`` names the array in errors (e.g. "trial 't-005' X"); ``name`` is the dask
    name, unique to this version of the array. ``explain``, called only when a chunk
    cannot be read, says why (e.g. that the version was garbage-collected). A chunk
    that is not stored is an error, unless ``missing_reads_as_zeros`` (zarr-python's
    reading, for zstore 0.1 stores, which relied on it).
    """
    rows = array.shards[0] if array.shards else array.chunks[0]
    cols = array.shards[1] if array.shards else array.chunks[1]
    return da.from_array(
        _ChecksummedReader(array, label, explain, missing_reads_as_zeros),
        chunks=(rows, min(cols, max(array.shape[1], 1))),
        name=name,
        lock=False,
        # dask fuses a later slice into the read only with its default getter (asarray
        # and fancy on): X[:, a:b] then reads that window's inner chunks, not whole shards.
        asarray=True,
        fancy=True,
        meta=np.empty((0, 0), dtype=array.dtype),
        inline_array=True,
    )


def _as_tuple(key: Any) -> tuple[Any, ...]:
    return key if isinstance(key, tuple) else (key,)


class _ChecksummedReader:
    """Reads regions of a Zarr array; a bad checksum or a missing chunk raises an error
    naming the trial, array and region."""

    def __init__(
        self,
        array: zarr.Array,
        label: str,
        explain: Callable[[], str] | None = None,
        missing_reads_as_zeros: bool = False,
    ):
        self.array = array
        fmt = None if missing_reads_as_zeros else ShardFormat.of(array)
        self.shards = ShardReader(array, fmt, label) if fmt is not None else None
        self.label = label
        self.explain = explain
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        with read_errors(f"{self.label}: a stored chunk in region {_region(key)}", self.explain):
            region = _basic_region(key, self.shape)
            if region is not None and self.shards is not None:
                out = self.shards.read(region[0])[region[1]]
            else:  # zarr-python reads; a damaged chunk raises CorruptChunkError
                out = read_checked(self.array, key, self.label)
        if out.nbytes >= _TRIM_AFTER_BYTES:  # a trim costs ~10 ms: only after big reads
            release_freed_memory()
        return out


@contextlib.contextmanager
def read_errors(what: str, explain: Callable[[], str] | None = None) -> Iterator[None]:
    """Re-raise what reading stored data can fail with as zstore's errors about ``what``
    (e.g. "trial 't' X: a stored chunk in region [0:32, :]"): a deleted or truncated
    object MissingChunkError (``explain``, called then, may say why: a version gc
    removed), an unreachable storage StoreError. A changed byte is CorruptChunkError
    already, from the reader that checked it (:mod:`zstore.shards`): it passes through.
    """
    try:
        yield
    except Exception as err:
        if not is_storage_error(err):
            raise
        if is_corrupt_object(err):
            raise CorruptChunkError(
                f"{what} cannot be read: its stored data is damaged ({short_message(err)}); "
                f"run `zstore verify` to list what is damaged and restore it from a copy"
            ) from err
        if not is_missing_object(err):
            raise StoreError(
                f"{what} could not be read: {short_message(err)}; check that the storage is "
                f"reachable, then retry"
            ) from err
        why = (explain() if explain is not None else "") or (
            "the store was damaged (an object deleted or truncated); run `zstore verify` "
            "to list what is missing"
        )
        raise MissingChunkError(f"{what} cannot be read ({short_message(err)}); {why}") from err


def _basic_region(key: Any, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], Any] | None:
    """``key`` as (step-1 slices to read, what to take from them), or None if it has
    steps, lists or arrays (zarr-python reads those)."""
    parts = _as_tuple(key)
    if len(parts) > len(shape) or any(p is Ellipsis or p is None for p in parts):
        return None
    region: list[slice] = []
    take: list[Any] = []
    for k, n in zip(parts + (slice(None),) * (len(shape) - len(parts)), shape, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                return None
            region.append(slice(start, max(start, stop)))
            take.append(slice(None))
        elif isinstance(k, int | np.integer) and not isinstance(k, bool) and -n <= k < n:
            i = int(k) % n
            region.append(slice(i, i + 1))
            take.append(0)
        else:
            return None
    return tuple(region), tuple(take)


def _region(key: Any) -> str:
    parts = []
    for k in _as_tuple(key):
        if isinstance(k, slice):
            parts.append(f"{'' if k.start is None else k.start}:{'' if k.stop is None else k.stop}")
        else:
            parts.append(str(k) if np.ndim(k) == 0 else f"[{len(k)} indices]")
    return f"[{', '.join(parts)}]"
