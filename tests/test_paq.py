"""PackIO .paq files: round trips, frame times, and clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zstore as zs
from zstore.errors import PaqFormatError
from zstore.synthetic import write_paq_for_trial

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=40, deadline=None)
@given(
    n_chan=st.integers(1, 5),
    n_samples=st.integers(0, 300),
    rate=st.floats(1, 1e6, allow_nan=False),
    data=st.data(),
)
def test_write_read_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    n_chan: int,
    n_samples: int,
    rate: float,
    data: st.DataObject,
) -> None:
    chans = data.draw(st.lists(names, min_size=n_chan, max_size=n_chan))
    hw = data.draw(st.lists(names, min_size=n_chan, max_size=n_chan))
    units = data.draw(st.lists(names, min_size=n_chan, max_size=n_chan))
    samples = np.random.default_rng(n_samples).normal(0, 3, (n_chan, n_samples)).astype(np.float32)
    path = tmp_path_factory.mktemp("paq") / "x.paq"
    zs.write_paq(path, samples, rate=rate, chan_names=chans, hw_chans=hw, units=units)
    pq = zs.read_paq(path)
    assert pq.rate == np.float32(rate)
    assert (pq.chan_names, pq.hw_chans, pq.units) == (chans, hw, units)
    assert pq.n_samples == n_samples
    np.testing.assert_array_equal(pq.data, samples)
    assert isinstance(pq.data.base, np.memmap) or n_samples == 0


def test_frame_times_keep_the_longest_bout(tmp_path: Path) -> None:
    edges = write_paq_for_trial(
        tmp_path / "t.paq", 500, fs=30, rate=2000, extra_edges=8, lead_in=4.0
    )
    pq = zs.read_paq(tmp_path / "t.paq")
    clock = np.asarray(pq.channel("frame_clock"))
    assert clock[10] > 1, "the synthetic file has a stray pulse before imaging"
    found = zs.frame_times(pq)
    np.testing.assert_array_equal(found, edges)
    assert len(found) == 508


def test_frame_times_edge_rules(tmp_path: Path) -> None:
    signal = np.zeros(20000, np.float32)
    signal[0:3] = 5  # high from the first sample: no previous sample, not an edge
    signal[100] = 1.0  # at the threshold: not above it
    signal[5000:15000:500] = 5  # the imaging bout: 20 edges
    signal[19990] = 5  # 4990 samples after the bout: another bout of 1
    zs.write_paq(tmp_path / "s.paq", signal[None], rate=1000, chan_names=["frame_clock"])
    found = zs.frame_times(zs.read_paq(tmp_path / "s.paq"))
    np.testing.assert_array_equal(found, np.arange(5000, 15000, 500))


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    zs.write_paq(tmp_path / "ok.paq", np.ones((2, 50)), rate=1000, chan_names=["frame_clock", "x"])
    raw = (tmp_path / "ok.paq").read_bytes()
    (tmp_path / "partial.paq").write_bytes(raw[:-4])
    with pytest.raises(PaqFormatError, match="ends with a partial sample"):
        zs.read_paq(tmp_path / "partial.paq")
    (tmp_path / "header.paq").write_bytes(raw[:30])
    with pytest.raises(PaqFormatError, match="ends inside its header"):
        zs.read_paq(tmp_path / "header.paq")
    (tmp_path / "text.paq").write_text("this is a csv file,\n1,2,3\n" * 5)
    with pytest.raises(PaqFormatError, match=r"not a PackIO \.paq file"):
        zs.read_paq(tmp_path / "text.paq")
    with pytest.raises(KeyError, match="has no channel 'frame_clok'; its channels are"):
        zs.frame_times(zs.read_paq(tmp_path / "ok.paq"), channel="frame_clok")


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=400))
def test_fuzzed_bytes_raise_only_documented_errors(
    tmp_path_factory: pytest.TempPathFactory, blob: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.paq"
    path.write_bytes(blob)
    try:
        pq = zs.read_paq(path)
    except PaqFormatError:
        return
    assert pq.n_samples >= 0 and len(pq.chan_names) >= 1
