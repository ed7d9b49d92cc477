"""Whole shards encoded and decoded on every core, byte-identical to zarr-python's.

zarr-python runs each chunk's codecs one after another on its event loop, which bounds
zstore's saves and bulk reads to about one core. The arrays zstore writes have one fixed
layout (Zarr v3 ``sharding_indexed``: inner chunks ``bytes(little) -> blosc | zstd | none
-> crc32c``, then an index of ``(offset, nbytes)`` uint64 pairs with its own crc32c, at
the end of the shard), so this module reads and writes exactly those bytes itself:

- a write encodes a whole shard in the task that computed it and hands it to the store
  in one call (local disk, S3 and Icechunk sessions alike: any zarr ``Store``);
- a read fetches whole shards (or, for a small region, the shard's index then only the
  inner chunks it needs, in one round of concurrent range requests) and decodes the
  inner chunks on a pool of threads as wide as the machine (blosc, zstd and the copy
  out release the GIL);
- every inner chunk's crc32c and every index's crc32c is checked; a chunk that is not
  there is an error, never the fill value.

Arrays in any other layout (other codecs, big-endian, other index options) are left to
zarr-python: :func:`ShardFormat.of` returns None for them, and for every array when the
environment sets ``ZSTORE_CODEC_PIPELINE=zarr`` (how the benchmarks measure the two).
zarr-python's codecs fail with plain ``ValueError``/``RuntimeError`` (no type of their
own, no array or chunk named), so :func:`read_checked` reads through zarr-python and,
when that fails, checks the stored chunks' bytes itself (:func:`chunk_damage`): the
error is then :class:`~zstore.errors.ChecksumMismatchError` or
:class:`~zstore.errors.CorruptChunkError` by what the bytes are, never by the words of
zarr's message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.abc.store import RangeByteRequest, Store, SuffixByteRequest
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    ShardingCodec,
    ShardingCodecIndexLocation,
    ZstdCodec,
)
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ._compat import is_storage_error, read_many
from .errors import ChecksumMismatchError, CorruptChunkError, MissingChunkError

__all__ = [
    "CheckedArray",
    "ShardFormat",
    "ShardReader",
    "ShardWriter",
    "chunk_damage",
    "codec_threads",
    "read_checked",
    "set_codec_threads",
]

_EMPTY = np.uint64(2**64 - 1)
_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_BUFFER = default_buffer_prototype().buffer


@dataclasses.dataclass(frozen=True)
class ShardFormat:
    """The byte layout of one sharded array's shards (see the module docstring)."""

    shape: tuple[int, ...]
    shard: tuple[int, ...]
    inner: tuple[int, ...]
    dtype: np.dtype
    compressor: Any  # a numcodecs codec, or None for "no compression"
    path: str

    @classmethod
    def of(cls, array: zarr.Array) -> ShardFormat | None:
        """The format of ``array``'s shards, or None when zarr-python must handle them."""
        if os.environ.get("ZSTORE_CODEC_PIPELINE") == "zarr":  # to measure against zarr's
            return None
        meta: Any = array.metadata
        if getattr(meta, "zarr_format", None) != 3 or len(meta.codecs) != 1 or not array.shards:
            return None
        sharding = meta.codecs[0]
        if not isinstance(sharding, ShardingCodec):
            return None
        if sharding.index_location != ShardingCodecIndexLocation.end:
            return None
        index_codecs = sharding.index_codecs
        if (
            len(index_codecs) != 2
            or not _little_bytes(index_codecs[0])
            or not isinstance(index_codecs[1], Crc32cCodec)
        ):
            return None
        codecs = sharding.codecs
        if len(codecs) not in (2, 3) or not isinstance(codecs[-1], Crc32cCodec):
            return None
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "fiub" or not (_little_bytes(codecs[0]) or dtype.itemsize == 1):
            return None
        compressor = _numcodecs_of(codecs[1]) if len(codecs) == 3 else None
        if len(codecs) == 3 and compressor is None:
            return None
        if meta.chunk_key_encoding.to_dict() != {
            "name": "default",
            "configuration": {"separator": "/"},
        }:
            return None
        if np.any(np.asarray(meta.fill_value) != 0):
            return None
        shard = tuple(int(n) for n in array.shards or ())
        inner = tuple(int(n) for n in sharding.chunk_shape)
        return cls(
            shape=tuple(int(n) for n in array.shape),
            shard=shard,
            inner=inner,
            dtype=dtype.newbyteorder("<"),
            compressor=compressor,
            path=array.path,
        )

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(s // i for s, i in zip(self.shard, self.inner, strict=True))

    @property
    def n_inner(self) -> int:
        return int(np.prod(self.per_shard))

    @property
    def max_chunk_nbytes(self) -> int:
        """More than any encoded inner chunk can take (codecs add at most a few percent
        to incompressible data), so that a damaged index cannot ask for gigabytes."""
        raw = int(np.prod(self.inner)) * self.dtype.itemsize
        return raw + raw // 8 + 65536

    @property
    def index_nbytes(self) -> int:
        return 16 * self.n_inner + 4

    def key(self, coords: Sequence[int]) -> str:
        tail = "/".join(["c", *map(str, coords)])
        return f"{self.path}/{tail}" if self.path else tail

    def shards_of(self, region: Sequence[slice]) -> list[tuple[int, ...]]:
        """The coordinates of every shard that ``region`` touches, in C order."""
        ranges = [
            range(r.start // s, -(-r.stop // s)) if r.stop > r.start else range(0)
            for r, s in zip(region, self.shard, strict=True)
        ]
        return [
            tuple(r[i] for r, i in zip(ranges, idx, strict=True))
            for idx in np.ndindex(*(len(r) for r in ranges))
        ]

    def chunks_of(
        self, coords: Sequence[int], region: Sequence[slice] | None = None
    ) -> list[tuple[int, tuple[int, ...]]]:
        """``(index position, array origin)`` of each inner chunk of shard ``coords``
        that lies in the array (and overlaps ``region``, if given), in C order."""
        region = region or tuple(slice(0, n) for n in self.shape)
        ranges = []
        for c, s, i, n, r in zip(coords, self.shard, self.inner, self.shape, region, strict=True):
            start, stop = max(r.start, c * s), min(r.stop, n, (c + 1) * s)
            first = (start - c * s) // i
            ranges.append(range(first, -(-(stop - c * s) // i)) if stop > start else range(0))
        origin = [c * s for c, s in zip(coords, self.shard, strict=True)]
        return [
            (
                int(np.ravel_multi_index(inner, self.per_shard)),
                tuple(o + k * i for o, k, i in zip(origin, inner, self.inner, strict=True)),
            )
            for inner in itertools.product(*ranges)
        ]

    # -- one inner chunk ------------------------------------------------------------

    def encode_chunk(self, chunk: np.ndarray) -> list[Any]:
        """The pieces of one encoded inner chunk: its bytes, then their crc32c."""
        raw = np.ascontiguousarray(chunk, dtype=self.dtype).reshape(-1).view(np.uint8)
        data = self.compressor.encode(raw) if self.compressor is not None else raw
        return [data, _crc(np.frombuffer(data, dtype=np.uint8))]

    def decode_chunk(self, data: np.ndarray, where: str, scratch: np.ndarray) -> np.ndarray:
        """The inner chunk in ``data`` (checksum checked), decoded into ``scratch``."""
        if len(data) < 4 or _crc(data[:-4]) != bytes(data[-4:]):
            raise ChecksumMismatchError(
                f"{where} failed its crc32c checksum, so its bytes were changed after "
                f"writing; run `zstore verify` to list damaged chunks and restore them "
                f"from a copy"
            )
        flat = scratch.reshape(-1).view(np.uint8)
        try:
            if self.compressor is None:
                if len(data) - 4 != flat.nbytes:
                    raise ValueError(f"{len(data) - 4} bytes, expected {flat.nbytes}")
                flat[:] = data[:-4]
            else:
                _decode_exactly(self.compressor, data[:-4], flat)
        except (ValueError, RuntimeError, TypeError) as err:
            raise CorruptChunkError(
                f"{where} cannot be decoded ({err}), although its checksum is right; "
                f"it was written by another program or zstore version: run `zstore verify`"
            ) from err
        return scratch

    # -- one shard ------------------------------------------------------------------

    def encode_shard(self, block: np.ndarray, coords: Sequence[int]) -> bytes:
        """The bytes of shard ``coords``, whose values within the array are ``block``.

        Inner chunks reaching past the array are padded with the fill value (0), and
        those wholly past it are left out, as zarr-python does; every other inner chunk
        is written, zeros too.
        """
        pieces: list[bytes] = []
        index = np.empty((self.n_inner, 2), dtype="<u8")
        offset = 0
        origin = [c * s for c, s in zip(coords, self.shard, strict=True)]
        index[:] = _EMPTY
        for inner in _morton_order(self.per_shard):  # zarr-python's order, for equal bytes
            sel = tuple(slice(i * n, (i + 1) * n) for i, n in zip(inner, self.inner, strict=True))
            if any(o + s.start >= n for o, s, n in zip(origin, sel, self.shape, strict=True)):
                continue  # wholly outside the array: never read, not written (as zarr-python)
            chunk = block[sel]
            if chunk.shape != self.inner:
                padded = np.zeros(self.inner, dtype=self.dtype)
                padded[tuple(slice(0, n) for n in chunk.shape)] = chunk
                chunk = padded
            data, crc = self.encode_chunk(chunk)
            pieces += (data, crc)
            nbytes = len(memoryview(data).cast("B")) + 4
            index[np.ravel_multi_index(inner, self.per_shard)] = (offset, nbytes)
            offset += nbytes
        table = index.view(np.uint8).reshape(-1)
        pieces.append(table.tobytes() + _crc(table))
        return b"".join(pieces)

    def read_index(self, tail: np.ndarray, where: str) -> np.ndarray:
        if len(tail) != self.index_nbytes or _crc(tail[:-4]) != bytes(tail[-4:]):
            raise ChecksumMismatchError(
                f"{where}: the shard's index failed its crc32c checksum (or the shard is "
                f"truncated), so its bytes were changed after writing; run `zstore verify` "
                f"to list damaged chunks and restore them from a copy"
            )
        # a copy: a view would keep the whole shard it was cut from alive in the cache
        return np.frombuffer(tail[:-4], dtype="<u8").reshape(self.n_inner, 2).copy()


def _decode_exactly(codec: Any, data: np.ndarray, out: np.ndarray) -> None:
    """Decode ``data`` into all of ``out``, or raise: codecs happily decode fewer bytes
    into a larger buffer, which would leave the rest of a reused buffer stale."""
    if isinstance(codec, numcodecs.Blosc):
        # blosc's 16-byte header (its documented format): sizes at bytes 4-8 and 12-16
        if len(data) < 16:
            raise ValueError(f"{len(data)} bytes, less than blosc's header")
        nbytes, cbytes = (int.from_bytes(bytes(data[a : a + 4]), "little") for a in (4, 12))
        if nbytes != out.nbytes or cbytes != len(data):
            raise ValueError(
                f"blosc holds {nbytes} bytes in {cbytes}, expected {out.nbytes} in {len(data)}"
            )
        codec.decode(data, out=out)
        return
    decoded = np.frombuffer(codec.decode(data), dtype=np.uint8)
    if decoded.nbytes != out.nbytes:
        raise ValueError(f"decoded {decoded.nbytes} bytes, expected {out.nbytes}")
    out[:] = decoded


def _little_bytes(codec: Any) -> bool:
    return (
        isinstance(codec, BytesCodec)
        and codec.endian is not None
        and (codec.endian.value == "little")
    )


def _numcodecs_of(codec: Any) -> Any:
    """The numcodecs codec zarr-python itself uses for ``codec`` (same bytes out)."""
    if isinstance(codec, BloscCodec):
        return numcodecs.Blosc(
            cname=codec.cname.value,
            clevel=codec.clevel,
            shuffle=_BLOSC_SHUFFLE[codec.shuffle.value],
            blocksize=codec.blocksize,
            typesize=codec.typesize,
        )
    if isinstance(codec, ZstdCodec):
        return numcodecs.Zstd(level=codec.level, checksum=codec.checksum)
    return None


@functools.lru_cache(maxsize=16)
def _morton_order(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Every coordinate of ``shape`` in Morton (Z) order: bits interleaved dimension by
    dimension, dimensions that need fewer bits dropping out (as zarr-python orders the
    inner chunks of a shard)."""
    coords = list(np.ndindex(*shape))
    bits = [(n - 1).bit_length() for n in shape]

    def code(c: tuple[int, ...]) -> int:
        z, out = 0, 0
        for bit in range(max(bits, default=0)):
            for dim, b in enumerate(bits):
                if bit < b:
                    z |= ((c[dim] >> bit) & 1) << out
                    out += 1
        return z

    return tuple(sorted(coords, key=code))


def _crc(data: Any) -> bytes:
    return int(google_crc32c.value(data)).to_bytes(4, "little")


# -- the codec threads -----------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _threads_from_environment() -> int:
    value = os.environ.get("ZSTORE_CODEC_THREADS", "")
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"ZSTORE_CODEC_THREADS must be a positive whole number of threads, got "
            f"{value!r}; set it to e.g. 2, or unset it to use every core"
        )
    return int(value)


_THREADS = _threads_from_environment()
_LOCAL = threading.local()


def codec_threads() -> int:
    """How many threads decode inner chunks (default: the machine's cores, or
    ``ZSTORE_CODEC_THREADS``).

    Examples
    --------
    >>> from zstore import shards
    >>> shards.codec_threads() >= 1
    True
    """
    return _THREADS


def set_codec_threads(n: int) -> None:
    """Use ``n`` threads to decode inner chunks (for measuring scaling; rarely needed).

    Examples
    --------
    >>> from zstore import shards
    >>> before = shards.codec_threads()
    >>> shards.set_codec_threads(1); shards.codec_threads()
    1
    >>> shards.set_codec_threads(before)
    """
    global _POOL, _THREADS
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of codec threads must be a positive int, got {n!r}")
    with _POOL_LOCK:
        old, _POOL, _THREADS = _POOL, None, n
    if old is not None:
        old.shutdown(wait=True)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_THREADS, thread_name_prefix="zstore-codec")
        return _POOL


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object but not its threads: work submitted to it
    # would wait forever. The child makes its own on first use.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _scratch(fmt: ShardFormat) -> np.ndarray:
    """A per-thread buffer for one inner chunk: reused, so it costs no page faults."""
    key = (fmt.inner, fmt.dtype.str)
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    if key not in buffers:
        buffers.clear()
        buffers[key] = np.empty(fmt.inner, dtype=fmt.dtype)
    return buffers[key]


# -- writing ---------------------------------------------------------------------------


class ShardWriter:
    """A ``dask.array.store`` target that writes whole shards of ``array`` itself.

    ``target[region] = block`` encodes each shard in the region (which must be whole
    shards: the caller checks) in the calling thread and stores it with one ``set``.
    It pickles with its array, so the workers of a dask cluster can write through an
    Icechunk fork session.
    """

    def __init__(self, array: zarr.Array, fmt: ShardFormat):
        self.array = array
        self.fmt = fmt
        self.shape = fmt.shape
        self.dtype = fmt.dtype
        self.ndim = len(fmt.shape)
        self.path = array.path

    @property
    def store(self) -> Store:
        """The store written to (Icechunk's dask helpers take the session from it)."""
        return self.array.store

    def __setitem__(self, region: Any, value: Any) -> None:
        fmt = self.fmt
        region = _as_region(region, fmt.shape)
        block = np.asarray(value)
        writes = []
        for coords in fmt.shards_of(region):
            lo = [c * s for c, s in zip(coords, fmt.shard, strict=True)]
            hi = [min(a + s, n) for a, s, n in zip(lo, fmt.shard, fmt.shape, strict=True)]
            if any(a < r.start or b > r.stop for a, b, r in zip(lo, hi, region, strict=True)):
                raise RuntimeError(
                    f"internal error: region {region} of {fmt.path} does not hold whole "
                    f"shards; nothing was written"
                )
            sel = tuple(
                slice(a - r.start, b - r.start) for a, b, r in zip(lo, hi, region, strict=True)
            )
            writes.append((fmt.key(coords), fmt.encode_shard(block[sel], coords)))
        store = self.array.store

        async def put() -> None:
            await asyncio.gather(*(store.set(k, _BUFFER.from_bytes(v)) for k, v in writes))

        sync(put())


def _as_region(region: Any, shape: Sequence[int]) -> tuple[slice, ...]:
    region = region if isinstance(region, tuple) else (region,)
    region = region + (slice(None),) * (len(shape) - len(region))
    out = []
    for r, n in zip(region, shape, strict=True):
        if not isinstance(r, slice) or r.step not in (None, 1):
            raise TypeError(f"internal error: not a region of whole slices: {region}")
        out.append(slice(*r.indices(n)[:2]))
    return tuple(out)


# -- reading ---------------------------------------------------------------------------


class ShardReader:
    """Reads regions of one stored array version through its shards.

    Shard indexes are cached: a reader is bound to one immutable version of an array
    (an Icechunk snapshot), so they cannot change under it.
    """

    def __init__(self, array: zarr.Array, fmt: ShardFormat, label: str):
        self.store = array.store
        self.fmt = fmt
        self.label = label
        self._indexes: dict[tuple[int, ...], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_indexes": {}}

    def read(self, region: Sequence[slice]) -> np.ndarray:
        """The values in ``region`` (slices with step 1), as a new array."""
        fmt = self.fmt
        region = _as_region(tuple(region), fmt.shape)
        out = np.empty(tuple(r.stop - r.start for r in region), dtype=fmt.dtype)
        if out.size == 0:
            return out
        plan = [(coords, fmt.chunks_of(coords, region)) for coords in fmt.shards_of(region)]
        chunks = self._fetch(plan)
        jobs = [
            (data, lo)
            for (_, wanted), datas in zip(plan, chunks, strict=True)
            for (_, lo), data in zip(wanted, datas, strict=True)
        ]
        if len(jobs) == 1:
            self._decode_into(out, region, *jobs[0])
        else:
            list(_pool().map(lambda job: self._decode_into(out, region, *job), jobs))
        return out

    def _decode_into(
        self, out: np.ndarray, region: Sequence[slice], data: np.ndarray, lo: Sequence[int]
    ) -> None:
        fmt = self.fmt
        where = f"{self.label}: the stored chunk at {_span(lo, fmt.inner, fmt.shape)}"
        chunk = fmt.decode_chunk(data, where, _scratch(fmt))
        src, dst = [], []
        for a, n, r in zip(lo, fmt.inner, region, strict=True):
            start, stop = max(a, r.start), min(a + n, r.stop)
            src.append(slice(start - a, stop - a))
            dst.append(slice(start - r.start, stop - r.start))
        out[tuple(dst)] = chunk[tuple(src)]

    def _fetch(self, plan: list[tuple[tuple[int, ...], list[Any]]]) -> list[list[np.ndarray]]:
        """The bytes of every wanted inner chunk, shard by shard, in few round trips."""
        fmt = self.fmt
        store = self.store
        proto = default_buffer_prototype()

        async def get(key: str, byte_range: Any = None) -> np.ndarray:
            value = await store.get(key, proto, byte_range=byte_range)
            if value is None:
                raise MissingChunkError(
                    f"{self.label}: the stored shard {key!r} is not there (deleted, or "
                    f"never written); run `zstore verify` to list what is missing"
                )
            return value.as_numpy_array().view(np.uint8).reshape(-1)

        # a shard whose every stored chunk is wanted is fetched whole, in one request
        whole = [len(wanted) == len(fmt.chunks_of(coords)) for coords, wanted in plan]

        async def first() -> list[np.ndarray]:
            return await asyncio.gather(
                *(
                    get(fmt.key(coords))
                    if full
                    else get(fmt.key(coords), SuffixByteRequest(fmt.index_nbytes))
                    for (coords, _), full in zip(plan, whole, strict=True)
                    if full or coords not in self._indexes
                )
            )

        fetched = iter(sync(first()))
        blobs: dict[tuple[int, ...], np.ndarray] = {}
        for (coords, _), full in zip(plan, whole, strict=True):
            if full:
                blob = next(fetched)
                blobs[coords] = blob
                self._indexes[coords] = fmt.read_index(
                    blob[len(blob) - fmt.index_nbytes :] if len(blob) >= fmt.index_nbytes else blob,
                    f"{self.label}: shard {fmt.key(coords)!r}",
                )
            elif coords not in self._indexes:
                self._indexes[coords] = fmt.read_index(
                    next(fetched), f"{self.label}: shard {fmt.key(coords)!r}"
                )
        ranges = []
        for coords, wanted in plan:
            index = self._indexes[coords]
            for k, lo in wanted:
                offset, nbytes = index[k]
                if offset == _EMPTY and nbytes == _EMPTY:
                    raise MissingChunkError(
                        f"{self.label}: the stored chunk at {_span(lo, fmt.inner, fmt.shape)} "
                        f"is not in its shard {fmt.key(coords)!r} (it was never written); "
                        f"run `zstore verify`"
                    )
                if not 4 <= nbytes <= fmt.max_chunk_nbytes or offset >= 2**62:
                    raise CorruptChunkError(
                        f"{self.label}: the index of shard {fmt.key(coords)!r} gives the chunk "
                        f"at {_span(lo, fmt.inner, fmt.shape)} {int(nbytes)} bytes at offset "
                        f"{int(offset)}, which no encoded chunk takes; the shard was changed "
                        f"after writing: run `zstore verify`"
                    )
                ranges.append((coords, int(offset), int(nbytes)))

        async def rest() -> list[np.ndarray]:
            return await asyncio.gather(
                *(
                    get(fmt.key(c), RangeByteRequest(o, o + n))
                    for c, o, n in ranges
                    if c not in blobs
                )
            )

        partial = iter(sync(rest()) if any(c not in blobs for c, _, _ in ranges) else [])
        out: list[list[np.ndarray]] = []
        pos = iter(ranges)
        for _coords, wanted in plan:
            datas = []
            for _ in wanted:
                c, o, n = next(pos)
                if c in blobs:
                    blob = blobs[c]
                    if o + n > len(blob) - fmt.index_nbytes:
                        raise CorruptChunkError(
                            f"{self.label}: shard {fmt.key(c)!r} is truncated or its index "
                            f"points outside it; run `zstore verify`"
                        )
                    datas.append(blob[o : o + n])
                else:
                    datas.append(next(partial))
            out.append(datas)
        return out


def _span(lo: Sequence[int], size: Sequence[int], shape: Sequence[int]) -> str:
    parts = [f"{a}:{min(a + n, m)}" for a, n, m in zip(lo, size, shape, strict=True)]
    return f"[{', '.join(parts)}]"


def shard_writers(targets: Iterable[zarr.Array]) -> list[Any]:
    """Each target as a :class:`ShardWriter` when zstore handles its layout, else itself."""
    out: list[Any] = []
    for target in targets:
        fmt = ShardFormat.of(target) if isinstance(target, zarr.Array) else None
        out.append(ShardWriter(target, fmt) if fmt is not None else target)
    return out


# -- checking stored chunks by their bytes (any layout zarr-python reads) ---------------


def read_checked(array: zarr.Array, key: Any, label: str) -> np.ndarray:
    """``array[key]`` read by zarr-python; a chunk whose bytes fail raises zstore's error.

    When zarr-python's read fails, the stored chunks of the region are checked here
    (:func:`chunk_damage`): a crc32c that does not match raises ChecksumMismatchError, a
    chunk that does not decode CorruptChunkError, each naming ``label`` (e.g. "trial
    't-005' obs") and the chunk's key. When every chunk is sound, zarr's error is
    raised as it was (the failure was not the data's).
    """
    parts = key if isinstance(key, tuple) else (key,)
    basic = all(isinstance(k, slice | int | np.integer) for k in parts)
    try:
        return np.asarray(array[key] if basic else array.oindex[key])
    except Exception as err:
        if is_storage_error(err):
            raise  # the storage's own failure (a chunk object gone): the caller's to name
        damage = chunk_damage(array, label)
        if damage is None:
            raise
        raise damage from err


class CheckedArray:
    """A zarr array whose reads go through :func:`read_checked` (a damaged chunk is
    zstore's error naming ``label``), for code that indexes arrays directly."""

    def __init__(self, array: zarr.Array, label: str):
        self.array = array
        self.label = label
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_checked(self.array, key, self.label)


def chunk_damage(array: zarr.Array, label: str) -> CorruptChunkError | None:
    """The error of the first stored chunk of ``array`` whose bytes are damaged (its
    crc32c does not match, or it does not decode), or None when every stored chunk
    checks out or the layout is one zstore cannot check (no crc32c codec).

    Chunks that are not stored are not looked at: zarr-python reads them as the fill
    value (zstore's dense matrices are checked for them by ``zstore verify``).
    """
    meta: Any = array.metadata
    if getattr(meta, "zarr_format", None) != 3 or 0 in array.shape:
        return None
    codecs = list(meta.codecs)
    grid = array.shards or array.chunks
    counts = [-(-n // c) for n, c in zip(array.shape, grid, strict=True)]
    prefix = f"{array.path}/" if array.path else ""
    keys = [
        prefix + meta.encode_chunk_key(coords)
        for coords in itertools.product(*(range(n) for n in counts))
    ]
    for start in range(0, len(keys), 64):  # a few concurrent requests at a time
        batch = keys[start : start + 64]
        for key, raw in zip(batch, read_many(array.store, batch), strict=True):
            if raw is None:
                continue
            problem = _chunk_problem(raw, codecs, tuple(array.chunks), np.dtype(array.dtype))
            if problem is not None:
                return _damage_error(label, key, *problem)
    return None


def _damage_error(label: str, key: str, kind: str, detail: str) -> CorruptChunkError:
    if kind == "checksum":
        return ChecksumMismatchError(
            f"{label}: stored data failed its crc32c checksum ({detail}{key!r}), so its "
            f"bytes were changed after writing; run `zstore verify` to list damaged chunks "
            f"and restore them from a copy"
        )
    return CorruptChunkError(
        f"{label}: the stored chunk {key!r} cannot be decoded ({detail}), although its "
        f"checksum is right; it was written by another program or zstore version: run "
        f"`zstore verify`"
    )


def _chunk_problem(
    data: bytes, codecs: Sequence[Any], shape: tuple[int, ...], dtype: np.dtype
) -> tuple[str, str] | None:
    """``("checksum", where)`` or ``("decode", why)`` for the encoded chunk ``data``,
    or None when it checks out (or cannot be checked past a codec zstore does not know).
    ``codecs`` are the array's (array -> bytes, then bytes -> bytes); ``shape`` is the
    chunk's (the inner chunk's, for a shard's chunks)."""
    if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec):
        return _shard_problem(data, codecs[0], shape, dtype)
    if not codecs or not isinstance(codecs[-1], Crc32cCodec):
        return None  # no checksum: zstore cannot tell damage from data
    if len(data) < 4 or _crc(data[:-4]) != bytes(data[-4:]):
        return ("checksum", "chunk ")
    payload: Any = data[:-4]
    for codec in reversed(codecs[1:-1]):
        decoder = _numcodecs_of(codec)
        if decoder is None:
            return None
        try:
            payload = decoder.decode(payload)
        except Exception as err:  # the codec's own failure, whatever its type or text
            return ("decode", f"{type(err).__name__}: {err}")
    expected = int(np.prod(shape)) * dtype.itemsize
    size = len(memoryview(payload).cast("B"))
    plain = _little_bytes(codecs[0]) or (isinstance(codecs[0], BytesCodec) and dtype.itemsize == 1)
    if plain and dtype.kind in "fiub" and size != expected:
        return ("decode", f"it decodes to {size} bytes, expected {expected}")
    return None


def _shard_problem(
    data: bytes, sharding: Any, shape: tuple[int, ...], dtype: np.dtype
) -> tuple[str, str] | None:
    """The first problem of one shard: its index's crc32c, then each inner chunk's."""
    index_codecs = list(sharding.index_codecs)
    if len(index_codecs) != 2 or not isinstance(index_codecs[1], Crc32cCodec):
        return None
    inner = tuple(int(n) for n in sharding.chunk_shape)
    n_inner = int(np.prod([-(-s // i) for s, i in zip(shape, inner, strict=True)]))
    size = 16 * n_inner + 4
    at_end = sharding.index_location == ShardingCodecIndexLocation.end
    raw = np.frombuffer(data, dtype=np.uint8)
    table = raw[len(raw) - size :] if at_end else raw[:size]
    if len(raw) < size or _crc(table[:-4]) != bytes(table[-4:]):
        return ("checksum", "the index of shard ")
    for offset, nbytes in np.frombuffer(table[:-4].tobytes(), dtype="<u8").reshape(-1, 2):
        if offset == _EMPTY and nbytes == _EMPTY:
            continue
        if offset + nbytes > len(raw):
            return ("decode", f"the shard's index points past its end ({len(raw)} bytes)")
        chunk = raw[int(offset) : int(offset + nbytes)]
        problem = _chunk_problem(chunk.tobytes(), sharding.codecs, inner, dtype)
        if problem is not None:
            return ("checksum", "an inner chunk of shard ") if problem[0] == "checksum" else problem
    return None
