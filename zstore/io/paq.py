"""PackIO ``.paq`` files: read (memory-mapped), write, and find imaging frame times.

The whole file is big-endian float32: the sampling rate; the number of channels n;
then, three times (channel names, hardware channel names, units), for each of n
strings a count c followed by c floats that are character codes; then the samples,
interleaved sample-major (reshape to (n_samples, n), then transpose).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import validate
from ..errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    KeyNotFoundError,
    PaqFormatError,
    PathNotFoundError,
    StoreError,
    emit_user_warning,
)
from ._files import check_regular

__all__ = ["PaqData", "frame_times", "read_paq", "write_paq"]

_MAX_CHANNELS = 4096
_MAX_NAME = 4096
_EDGE_BLOCK = 1 << 22  # samples per pass when scanning a channel for edges


@dataclasses.dataclass(frozen=True)
class PaqData:
    """A .paq file: header fields and the samples (channels x samples, memory-mapped)."""

    path: Path
    rate: float
    chan_names: list[str]
    hw_chans: list[str]
    units: list[str]
    data: np.ndarray  # read-only memmap view, (n_channels, n_samples), big-endian float32

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    def channel(self, name: str) -> np.ndarray:
        """One channel's samples (a memory-mapped view)."""
        if name not in self.chan_names:
            raise KeyNotFoundError(
                f"{self.path.name} has no channel {name!r}; its channels are {self.chan_names}"
            )
        return self.data[self.chan_names.index(name)]

    def __repr__(self) -> str:
        return (
            f"PaqData({self.path.name!r}, rate={self.rate:g} Hz, {self.n_samples} samples, "
            f"channels={self.chan_names})"
        )


def read_paq(path: str | os.PathLike[str]) -> PaqData:
    """Open a PackIO .paq file; the samples stay on disk (memory-mapped).

    Examples
    --------
    >>> import numpy as np, tempfile, os, zstore as zs
    >>> path = os.path.join(tempfile.mkdtemp(), "t.paq")
    >>> zs.write_paq(path, np.zeros((2, 100)), rate=1000, chan_names=["frame_clock", "lick"])
    >>> pq = zs.read_paq(path)
    >>> pq.rate, pq.chan_names, pq.n_samples
    (1000.0, ['frame_clock', 'lick'], 100)
    """
    path = Path(validate.path_argument(path, name="path", where="read_paq"))
    try:
        size = check_regular(path, PaqFormatError, "Pass the path of the recorded .paq file")
    except FileNotFoundError:
        raise PathNotFoundError(
            f"read_paq: no file at {path}; pass the path of the recorded .paq file"
        ) from None
    except OSError as err:
        raise StoreError(f"read_paq: cannot read {path}: {err.strerror or err}") from None
    with open(path, "rb") as fh:
        reader = _HeaderReader(fh, size, path)
        rate = reader.value("the sampling rate")
        n_chan = reader.count("the number of channels", _MAX_CHANNELS, minimum=1)
        names = [reader.string("channel names", "the name", i) for i in range(n_chan)]
        hw = [
            reader.string("hardware channel names", "the hardware name", i) for i in range(n_chan)
        ]
        units = [reader.string("units", "the unit", i) for i in range(n_chan)]
        offset = reader.offset
    if not np.isfinite(rate) or rate <= 0:
        raise PaqFormatError(f"{path} has sampling rate {rate!r}; this is not a PackIO .paq file")
    body = size - offset
    if body % (4 * n_chan):
        raise PaqFormatError(
            f"{path} ends with a partial sample: {body} data bytes is not a whole number of "
            f"samples of {n_chan} channels x 4 bytes; the file was truncated while recording "
            f"or copying"
        )
    n_samples = body // (4 * n_chan)
    data: np.ndarray
    if n_samples:
        data = np.memmap(path, dtype=">f4", mode="r", offset=offset, shape=(n_samples, n_chan)).T
    else:
        data = np.empty((n_chan, 0), dtype=">f4")
    return PaqData(path, float(rate), names, hw, units, data)


class _HeaderReader:
    def __init__(self, fh: Any, size: int, path: Path):
        self.fh, self.size, self.path, self.offset = fh, size, path, 0

    def _floats(self, n: int, what: str) -> np.ndarray:
        need = 4 * n
        if self.offset + need > self.size:
            raise PaqFormatError(
                f"{self.path} ends inside its header (while reading {what}); the file is "
                f"truncated or not a PackIO .paq file"
            )
        raw = self.fh.read(need)
        self.offset += need
        return np.frombuffer(raw, dtype=">f4")

    def value(self, what: str) -> float:
        return float(self._floats(1, what)[0])

    def count(self, what: str, limit: int, minimum: int = 0) -> int:
        value = self.value(what)
        if not np.isfinite(value) or value != int(value) or not minimum <= value <= limit:
            raise PaqFormatError(
                f"{self.path}: {what} is {value!r}, not a whole number in [{minimum}, {limit}]; "
                f"this is not a PackIO .paq file"
            )
        return int(value)

    def string(self, what: str, one: str, index: int) -> str:
        """The ``index``-th of ``what`` (channel names, ...); ``one`` says what one is."""
        n = self.count(f"the length of one of the {what}", _MAX_NAME)
        codes = self._floats(n, what)
        if not np.all(np.isfinite(codes)) or np.any(codes != np.round(codes)):
            raise PaqFormatError(f"{self.path}: {what} hold non-character values; not a .paq file")
        if np.any((codes < 0) | (codes > 0x10FFFF)):
            raise PaqFormatError(
                f"{self.path}: {what} hold invalid character codes; not a .paq file"
            )
        return _decode(codes, f"{self.path}: {one} of channel {index}")


def _decode(codes: np.ndarray, where: str) -> str:
    """Character codes as text. Codes may be UTF-16 units (MATLAB's chars): a surrogate
    pair is one character; an unpaired surrogate cannot be text and becomes U+FFFD, with
    a warning naming it."""
    text = "".join(chr(int(c)) for c in codes)
    if not any(0xD800 <= int(c) <= 0xDFFF for c in codes):
        return text
    decoded = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "\ufffd" in decoded and "\ufffd" not in text:
        lone = [hex(int(c)) for c in codes if 0xD800 <= int(c) <= 0xDFFF]
        emit_user_warning(
            f"{where} holds unpaired UTF-16 surrogate codes {lone[:4]}, which are not "
            f"text; it is read as {decoded!r} (U+FFFD for each)"
        )
    return decoded


def _names(value: Any, name: str, n_chan: int, default: list[str] | None = None) -> list[str]:
    """``chan_names``/``hw_chans``/``units`` of write_paq: one str per channel."""
    if value is None and default is not None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ArgumentTypeError(
            f"write_paq: {name} must be a list of {n_chan} str (one per channel), got "
            f"{validate.shown(value)}; pass {name}=[...]"
        )
    items = list(value)
    if len(items) != n_chan:
        raise InvalidArgumentError(
            f"write_paq: {name} has {len(items)} entries for {n_chan} channels; pass "
            f"{name}=[...] with one str per row of data"
        )
    return items


def _open_for_writing(path: str | os.PathLike[str]) -> Any:
    """``open(path, "wb")``, its failures as zstore errors naming the path."""
    try:
        return open(path, "wb")
    except FileNotFoundError:
        raise PathNotFoundError(
            f"write_paq: the folder of {os.fspath(path)!r} does not exist; create it first "
            f"or pass another path"
        ) from None
    except OSError as err:
        raise StoreError(
            f"write_paq: cannot write {os.fspath(path)!r}: {err.strerror or err}; pass the "
            f"path of a new file in a writable folder"
        ) from None


def write_paq(
    path: str | os.PathLike[str],
    data: Any,
    *,
    rate: float,
    chan_names: Sequence[str],
    hw_chans: Sequence[str] | None = None,
    units: Sequence[str] | None = None,
) -> None:
    """Write channels x samples ``data`` as a PackIO .paq file.

    Examples
    --------
    >>> import numpy as np, tempfile, os, zstore as zs
    >>> path = os.path.join(tempfile.mkdtemp(), "t.paq")
    >>> zs.write_paq(path, np.ones((1, 10)), rate=20000, chan_names=["frame_clock"])
    >>> zs.read_paq(path).channel("frame_clock")[:3].tolist()
    [1.0, 1.0, 1.0]
    """
    where = "write_paq"
    path = validate.path_argument(path, name="path", where=where)
    rate = validate.positive_number(rate, name="rate", where=where, fix="pass rate=<Hz>")
    samples = validate.dense_matrix(data, name="data", where=where)
    samples = np.asarray(samples)
    if samples.ndim != 2:
        raise InvalidArgumentError(
            f"write_paq: data must be channels x samples (2-D), got shape {samples.shape}; "
            f"pass data=<array of shape (n_channels, n_samples)>"
        )
    n_chan = samples.shape[0]
    chan_names = _names(chan_names, "chan_names", n_chan)
    hw_chans = _names(hw_chans, "hw_chans", n_chan, [f"ai{i}" for i in range(n_chan)])
    units = _names(units, "units", n_chan, ["V"] * n_chan)
    header: list[float] = [rate, float(n_chan)]
    for values in (chan_names, hw_chans, units):
        for text in values:
            header += [float(len(text)), *(float(ord(ch)) for ch in text)]
    with _open_for_writing(path) as fh:
        fh.write(np.asarray(header, dtype=">f4").tobytes())
        step = max(1, (1 << 24) // max(n_chan, 1))
        for start in range(0, samples.shape[1], step):
            fh.write(
                np.ascontiguousarray(samples[:, start : start + step].T, dtype=">f4").tobytes()
            )


def frame_times(
    paq: PaqData, *, channel: str = "frame_clock", threshold: float = 1.0, min_gap: int = 2000
) -> np.ndarray:
    """Sample indices of the imaging frames: the frame clock's rising edges.

    A rising edge is a sample above ``threshold`` whose previous sample is not. Edges
    are grouped into bouts split by gaps longer than ``min_gap`` samples, and the
    longest bout is the imaging run (stray pulses before or after are dropped).

    Examples
    --------
    >>> import numpy as np, tempfile, os, zstore as zs
    >>> clock = np.zeros(10000); clock[100:9000:300] = 5.0
    >>> path = os.path.join(tempfile.mkdtemp(), "t.paq")
    >>> zs.write_paq(path, clock[None], rate=20000, chan_names=["frame_clock"])
    >>> zs.frame_times(zs.read_paq(path))[:3].tolist()
    [100, 400, 700]
    """
    if not isinstance(paq, PaqData):
        raise ArgumentTypeError(
            f"frame_times: paq must be a PaqData, got {validate.shown(paq)}; pass "
            f"paq=zs.read_paq(<path>)"
        )
    if not isinstance(channel, str):
        raise ArgumentTypeError(
            f"frame_times: channel must be a channel name (str), got {validate.shown(channel)};"
            f" pass one of channel={paq.chan_names}"
        )
    threshold = validate.finite_number(
        threshold, name="threshold", where="frame_times", fix="pass threshold=<volts>"
    )
    gap = validate.positive_number(
        min_gap, name="min_gap", where="frame_times", fix="pass min_gap=<samples>", allow_zero=True
    )
    signal = paq.channel(channel)
    edges = []
    previous_high = False
    for start in range(0, signal.shape[0], _EDGE_BLOCK):
        high = np.asarray(signal[start : start + _EDGE_BLOCK], dtype=np.float32) > threshold
        if not len(high):
            break
        rising = high & ~np.concatenate(([previous_high], high[:-1]))
        if start == 0:
            rising[0] = False  # the first sample has no previous sample to rise from
        edges.append(np.flatnonzero(rising) + start)
        previous_high = bool(high[-1])
    all_edges = np.concatenate(edges) if edges else np.empty(0, dtype=np.int64)
    if len(all_edges) == 0:
        return all_edges.astype(np.int64)
    splits = np.flatnonzero(np.diff(all_edges) > gap) + 1
    bouts = np.split(all_edges, splits)
    return np.asarray(max(bouts, key=len), dtype=np.int64)
