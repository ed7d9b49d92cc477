"""zstore's own shard pipeline (zstore/shards.py): the same bytes as zarr-python, read
back by either, every checksum checked, nothing missing read as zeros."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import zstore as zs
from zstore._compat import read_bytes
from zstore.arrays import create_matrix
from zstore.errors import CorruptChunkError, MissingChunkError
from zstore.shards import ShardFormat, ShardReader, ShardWriter

CODECS = ["blosc-lz4", "blosc-zstd-bit", "zstd", "none"]


def _traces(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.poisson(50, shape) + rng.normal(0, 1, shape)).astype("float32")


def _matrix(store: Any, name: str, shape: tuple[int, int], codec: str) -> zarr.Array:
    config = zs.StorageConfig(
        shard_bytes=64 * 1000 * 4, inner_rois=8, inner_frames=300, codec=codec
    )
    group = zarr.open_group(store, mode="a")
    return create_matrix(group, name, shape=shape, dtype="float32", config=config)


def _write_with_zstore(array: zarr.Array, values: np.ndarray) -> None:
    fmt = ShardFormat.of(array)
    assert fmt is not None
    writer = ShardWriter(array, fmt)
    rows = fmt.shard[0]
    for start in range(0, values.shape[0], rows):
        writer[start : start + rows, :] = values[start : start + rows]


def _chunk_keys(store: Any, name: str) -> list[str]:
    async def keys() -> list[str]:
        return [k async for k in store.list_prefix(f"{name}/c/")]

    return sorted(sync(keys()))


def _inner_chunks(blob: bytes, fmt: ShardFormat) -> list[bytes]:
    index = np.frombuffer(blob[-fmt.index_nbytes : -4], dtype="<u8").reshape(-1, 2)
    return [blob[o : o + n] for o, n in index.tolist()]


shapes = st.tuples(st.integers(1, 70), st.integers(1, 1000))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, codec=st.sampled_from(CODECS), seed=st.integers(0, 3))
def test_same_bytes_as_zarr_python_and_each_reads_the_other(
    shape: tuple[int, int], codec: str, seed: int
) -> None:
    store = zarr.storage.MemoryStore()
    values = _traces(shape, seed)
    by_zarr = _matrix(store, "A", shape, codec)
    by_zarr[:] = values
    by_zstore = _matrix(store, "B", shape, codec)
    _write_with_zstore(by_zstore, values)
    keys_a, keys_b = _chunk_keys(store, "A"), _chunk_keys(store, "B")
    assert [k[1:] for k in keys_a] == [k[1:] for k in keys_b]
    fmt = ShardFormat.of(by_zarr)
    assert fmt is not None
    for a, b in zip(keys_a, keys_b, strict=True):
        blob_a, blob_b = read_bytes(store, a), read_bytes(store, b)
        assert blob_a is not None and blob_b is not None
        # every inner chunk encodes to the same bytes; zarr-python lays out a shard it
        # writes in part (the last, at the array's edge) in another order
        assert _inner_chunks(blob_a, fmt) == _inner_chunks(blob_b, fmt), f"{a} differs"
        if (int(a.split("/")[2]) + 1) * fmt.shard[0] <= shape[0]:
            assert blob_a == blob_b, f"{a} differs"
    # zarr-python reads zstore's shards; zstore reads zarr-python's, whole and in part
    np.testing.assert_array_equal(zarr.open_array(store, path="B")[:], values)
    reader = ShardReader(by_zarr, fmt, "A")
    np.testing.assert_array_equal(reader.read((slice(0, shape[0]), slice(0, shape[1]))), values)
    rows, cols = slice(shape[0] // 3, shape[0]), slice(shape[1] // 2, shape[1] - shape[1] // 4)
    np.testing.assert_array_equal(reader.read((rows, cols)), values[rows, cols])
    # the index cache holds indexes only, never the shard bytes they were cut from
    assert all(i.base is None and i.nbytes == 16 * fmt.n_inner for i in reader._indexes.values())


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_any_region_reads_what_zarr_python_reads(data: Any) -> None:
    shape = data.draw(shapes)
    store = zarr.storage.MemoryStore()
    array = _matrix(store, "X", shape, "blosc-lz4")
    array[:] = values = _traces(shape)
    fmt = ShardFormat.of(array)
    assert fmt is not None
    reader = ShardReader(array, fmt, "X")
    for _ in range(5):
        r0 = data.draw(st.integers(0, shape[0]))
        r1 = data.draw(st.integers(r0, shape[0]))
        c0 = data.draw(st.integers(0, shape[1]))
        c1 = data.draw(st.integers(c0, shape[1]))
        got = reader.read((slice(r0, r1), slice(c0, c1)))
        np.testing.assert_array_equal(got, values[r0:r1, c0:c1])


def _set(store: Any, key: str, blob: bytes) -> None:
    async def put() -> None:
        await store.set(key, default_buffer_prototype().buffer.from_bytes(blob))

    sync(put())


def _one_shard(codec: str = "blosc-lz4") -> tuple[Any, zarr.Array, np.ndarray, ShardFormat]:
    store = zarr.storage.MemoryStore()
    array = _matrix(store, "X", (16, 600), codec)  # one shard of 2 x 2 inner chunks
    values = _traces((16, 600))
    _write_with_zstore(array, values)
    fmt = ShardFormat.of(array)
    assert fmt is not None and fmt.per_shard == (2, 2) and fmt.shard[0] == 16
    return store, array, values, fmt


def _positions(blob: bytes, fmt: ShardFormat) -> dict[str, list[int]]:
    """Byte positions of each class in a shard: chunk data, chunk checksums, index, its
    checksum."""
    index = np.frombuffer(blob[-fmt.index_nbytes : -4], dtype="<u8").reshape(-1, 2)
    data, crcs = [], []
    for offset, nbytes in index.tolist():
        data += [offset, offset + nbytes // 2, offset + nbytes - 5]
        crcs += [offset + nbytes - 4, offset + nbytes - 1]
    start = len(blob) - fmt.index_nbytes
    return {
        "chunk data": data,
        "chunk checksum": crcs,
        "index": [start, start + 7, start + 8, len(blob) - 5],
        "index checksum": list(range(len(blob) - 4, len(blob))),
    }


@pytest.mark.parametrize("codec", ["blosc-lz4", "none"])
def test_every_changed_byte_is_a_corrupt_chunk_error_naming_array_and_region(codec: str) -> None:
    store, array, _, fmt = _one_shard(codec)
    key = fmt.key((0, 0))
    good = read_bytes(store, key)
    assert good is not None
    flipped = 0
    for positions in _positions(good, fmt).values():
        for pos in positions:
            bad = bytearray(good)
            bad[pos] ^= 0x5A
            _set(store, key, bytes(bad))
            reader = ShardReader(array, fmt, "trial 't' X")  # fresh: no cached index
            with pytest.raises(
                CorruptChunkError, match=r"trial 't' X.*(\[\d+:\d+, \d+:\d+\]|shard)"
            ):
                reader.read((slice(0, 16), slice(0, 600)))
            flipped += 1
    _set(store, key, good)
    assert flipped >= 20
    np.testing.assert_array_equal(
        ShardReader(array, fmt, "X").read((slice(0, 16), slice(0, 600))), array[:]
    )


def test_a_truncated_or_missing_shard_is_an_error_never_zeros() -> None:
    store, array, _, fmt = _one_shard()
    key = fmt.key((0, 0))
    good = read_bytes(store, key)
    assert good is not None
    for cut in (0, 10, len(good) // 2, len(good) - 1):
        _set(store, key, good[:cut])
        with pytest.raises(CorruptChunkError, match=r"truncated|checksum"):
            ShardReader(array, fmt, "X").read((slice(0, 16), slice(0, 600)))
    sync(store.delete(key))
    with pytest.raises(MissingChunkError, match="not there"):
        ShardReader(array, fmt, "X").read((slice(0, 4), slice(0, 10)))


def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return int(google_crc32c.value(data)).to_bytes(4, "little")


def _with_index(blob: bytes, fmt: ShardFormat, change: Any, body: bytes | None = None) -> bytes:
    """``blob`` (with ``body`` in place of its chunks, if given) whose index entries
    ``change(index)`` edited in place, with the index's crc32c made right again."""
    index = np.frombuffer(blob[-fmt.index_nbytes : -4], dtype="<u8").reshape(-1, 2).copy()
    change(index)
    table = index.tobytes()
    return (blob[: -fmt.index_nbytes] if body is None else body) + table + _crc32c(table)


def test_an_inner_chunk_left_out_of_its_shard_is_missing_not_zeros() -> None:
    store, array, _, fmt = _one_shard()
    key = fmt.key((0, 0))
    good = read_bytes(store, key)
    assert good is not None

    def skip(index: np.ndarray) -> None:
        index[3] = 2**64 - 1  # what zarr-python writes for an inner chunk it skipped

    _set(store, key, _with_index(good, fmt, skip))
    reader = ShardReader(array, fmt, "trial 't' X")
    np.testing.assert_array_equal(reader.read((slice(0, 8), slice(0, 300))), array[0:8, 0:300])
    with pytest.raises(MissingChunkError, match=r"trial 't' X.*\[8:16, 300:600\].*never written"):
        reader.read((slice(0, 16), slice(0, 600)))


class _Counting(zarr.storage.WrapperStore):  # type: ignore[misc,type-arg]
    """A store that records every get: (key, byte range)."""

    def __init__(self, store: Any, seen: list[Any]) -> None:
        super().__init__(store)
        self.seen = seen

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self.seen.append((key, byte_range))
        return await self._store.get(key, prototype, byte_range)


def test_small_regions_read_only_the_index_and_the_chunks_they_need() -> None:
    store, _, values, fmt = _one_shard()
    seen: list[Any] = []
    reader = ShardReader(zarr.open_array(_Counting(store, seen), path="X"), fmt, "X")
    seen.clear()  # opening read the metadata
    np.testing.assert_array_equal(reader.read((slice(2, 3), slice(0, 600))), values[2:3])
    assert len(seen) == 3, seen  # the index, then the two chunks of that ROI's band
    assert all(r is not None for _, r in seen)
    seen.clear()
    np.testing.assert_array_equal(
        reader.read((slice(9, 10), slice(310, 320))), values[9:10, 310:320]
    )
    assert len(seen) == 1, "the index is cached: one range request for one chunk"
    seen.clear()
    reader.read((slice(0, 16), slice(0, 600)))
    assert seen == [(fmt.key((0, 0)), None)], "a whole shard is one request"


def test_the_arrays_last_shard_is_one_request_when_read_whole() -> None:
    store = zarr.storage.MemoryStore()
    array = _matrix(store, "X", (70, 700), "blosc-lz4")  # shards of 64 rows: 64 + 6
    array[:] = values = _traces((70, 700))
    fmt = ShardFormat.of(array)
    assert fmt is not None and fmt.shard[0] == 64
    seen: list[Any] = []
    reader = ShardReader(zarr.open_array(_Counting(store, seen), path="X"), fmt, "X")
    seen.clear()
    np.testing.assert_array_equal(reader.read((slice(64, 70), slice(0, 700))), values[64:])
    assert seen == [(fmt.key((1, 0)), None)]


def test_zarr_python_handles_layouts_zstore_does_not_write() -> None:
    store = zarr.storage.MemoryStore()
    plain = zarr.create_array(store, name="p", shape=(4, 4), chunks=(2, 2), dtype="f4")
    big_endian = zarr.create_array(
        store, name="b", shape=(4, 4), chunks=(2, 2), shards=(4, 4), dtype=">f4"
    )
    gzip = zarr.create_array(
        store,
        name="g",
        shape=(4, 4),
        chunks=(2, 2),
        shards=(4, 4),
        dtype="f4",
        compressors=[zarr.codecs.GzipCodec()],
    )
    assert ShardFormat.of(plain) is None and ShardFormat.of(big_endian) is None
    assert ShardFormat.of(gzip) is None


def test_a_trial_round_trips_through_the_engine_with_both_pipelines(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X = _traces((70, 5000))
    exp = zs.create_experiment(
        tmp_path / "e.zarr", exp_id="E", config=zs.StorageConfig(shard_bytes=32 * 5000 * 4)
    )
    exp.add_trial("ours", zs.AnnotatedData(X))
    monkeypatch.setenv("ZSTORE_CODEC_PIPELINE", "zarr")
    exp.add_trial("zarrs", zs.AnnotatedData(X))
    read_by_zarr = zs.open_experiment(tmp_path / "e.zarr")
    for trial in ("ours", "zarrs"):
        np.testing.assert_array_equal(read_by_zarr.load_trial(trial).data.X.compute(), X)
    monkeypatch.delenv("ZSTORE_CODEC_PIPELINE")
    read_by_zstore = zs.open_experiment(tmp_path / "e.zarr")
    for trial in ("ours", "zarrs"):
        data = read_by_zstore.load_trial(trial).data
        np.testing.assert_array_equal(data.X.compute(), X)
        np.testing.assert_array_equal(data.X[:, 1000:1100].compute(), X[:, 1000:1100])
        np.testing.assert_array_equal(data.X[13].compute(), X[13])
    assert zs.verify_experiment(read_by_zstore) == []


def test_reads_scale_over_codec_threads_with_equal_results() -> None:
    from zstore import shards

    store = zarr.storage.MemoryStore()
    array = _matrix(store, "X", (64, 3000), "blosc-lz4")
    array[:] = values = _traces((64, 3000))
    fmt = ShardFormat.of(array)
    assert fmt is not None
    before = shards.codec_threads()
    try:
        for n in (1, 2, 3):
            shards.set_codec_threads(n)
            got = ShardReader(array, fmt, "X").read((slice(0, 64), slice(0, 3000)))
            np.testing.assert_array_equal(got, values)
        with pytest.raises(ValueError, match="positive int"):
            shards.set_codec_threads(0)
    finally:
        shards.set_codec_threads(before)


def test_writer_refuses_a_region_that_is_not_whole_shards() -> None:
    store = zarr.storage.MemoryStore()
    array = _matrix(store, "X", (40, 600), "blosc-lz4")
    fmt = ShardFormat.of(array)
    assert fmt is not None
    with pytest.raises(RuntimeError, match="whole shards; nothing was written"):
        ShardWriter(array, fmt)[1:9, :] = np.zeros((8, 600), "float32")
    assert _chunk_keys(store, "X") == []


def test_concurrent_reads_share_the_pool_safely() -> None:
    _, array, values, fmt = _one_shard()

    async def many() -> list[np.ndarray]:
        reader = ShardReader(array, fmt, "X")
        return await asyncio.gather(
            *(asyncio.to_thread(reader.read, (slice(i, 16), slice(0, 600))) for i in range(8))
        )

    for i, got in enumerate(asyncio.run(many())):
        np.testing.assert_array_equal(got, values[i:])


def _with_chunk(blob: bytes, fmt: ShardFormat, k: int, data: bytes) -> bytes:
    """``blob`` with inner chunk ``k`` replaced by ``data`` (+ its right crc32c), appended
    before the index, and the index (with its right crc32c) pointing at it."""
    body = blob[: -fmt.index_nbytes]
    chunk = data + _crc32c(data)

    def point(index: np.ndarray) -> None:
        index[k] = (len(body), len(chunk))

    return _with_index(blob, fmt, point, body=body + chunk)


def test_a_chunk_that_decodes_short_is_corrupt_not_the_last_chunk_read() -> None:
    import numcodecs

    store, array, values, fmt = _one_shard()
    key = fmt.key((0, 0))
    good = read_bytes(store, key)
    assert good is not None
    half = np.ascontiguousarray(values[0:4, 300:600]).view(np.uint8).reshape(-1)
    short = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1, typesize=4).encode(half)
    _set(store, key, _with_chunk(good, fmt, 1, bytes(short)))  # checksums all right
    reader = ShardReader(array, fmt, "trial 't' X")
    np.testing.assert_array_equal(reader.read((slice(0, 8), slice(0, 300))), values[:8, :300])
    with pytest.raises(CorruptChunkError, match=r"\[0:8, 300:600\] cannot be decoded"):
        reader.read((slice(0, 8), slice(0, 600)))


@pytest.mark.parametrize("nbytes", [0, 3, 2**40])
def test_an_index_asking_for_impossible_sizes_is_corrupt(nbytes: int) -> None:
    store, array, _, fmt = _one_shard()
    key = fmt.key((0, 0))
    good = read_bytes(store, key)
    assert good is not None

    def resize(index: np.ndarray) -> None:
        index[2, 1] = nbytes

    _set(store, key, _with_index(good, fmt, resize))
    for region in ((slice(8, 16), slice(0, 300)), (slice(0, 16), slice(0, 600))):
        with pytest.raises(CorruptChunkError, match=r"which no encoded chunk takes"):
            ShardReader(array, fmt, "X").read(region)


def test_a_forked_child_reads_with_its_own_threads(tmp_path: Any) -> None:
    import multiprocessing

    _, array, values, fmt = _one_shard()
    ShardReader(array, fmt, "X").read((slice(0, 16), slice(0, 600)))  # the pool exists
    local = zarr.storage.LocalStore(tmp_path)
    copy = _matrix(local, "X", (16, 600), "blosc-lz4")
    _write_with_zstore(copy, values)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_read_in_child, (str(tmp_path),)).get(timeout=60)
    np.testing.assert_array_equal(got, values)


def _read_in_child(path: str) -> np.ndarray:
    array = zarr.open_array(zarr.storage.LocalStore(path), path="X")
    fmt = ShardFormat.of(array)
    assert fmt is not None
    return ShardReader(array, fmt, "X").read((slice(0, 16), slice(0, 600)))
