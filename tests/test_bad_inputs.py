"""Bad Suite2p and paq inputs (issue 17): each gives a zstore error naming the file, the
entry or key, what was expected and the fix, or works; nothing is stored on failure."""

from __future__ import annotations

import datetime
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.errors import NotAnExperimentError, PaqFormatError, Suite2pFormatError
from zstore.io.safe_pickle import load_pickled_npy

N_ROIS = 6
SMALL = {"Ly": 48, "Lx": 48}  # small images: quick to write and store


def _plane(tmp_path: Path, **kwargs: Any) -> Path:
    return syn.write_suite2p_plane(
        tmp_path, n_rois=N_ROIS, frames_per_file=[10, 10], non_cell_fraction=0.0, **SMALL, **kwargs
    )


def _edit_stat(plane: Path, edit: Callable[[np.ndarray], None]) -> None:
    stat = load_pickled_npy(plane / "stat.npy")
    edit(stat)
    np.save(plane / "stat.npy", stat, allow_pickle=True)


def _edit_ops(plane: Path, file: str = "ops.npy", **values: Any) -> None:
    ops = load_pickled_npy(plane / file)
    ops.update(values)
    np.save(plane / file, np.array(ops, dtype=object), allow_pickle=True)


def _ingest_quietly(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*frame clock edges", zs.ZstoreWarning)
        return zs.ingest_suite2p(*args, **kwargs)


def _refused(
    plane: Path,
    store: Path,
    error: type[Exception],
    *words: str,
    while_writing: bool = False,
    **kw: Any,
) -> str:
    """Ingest fails with ``error`` whose message holds each of ``words``; nothing stored.

    A failure found before writing leaves no store at all; one found while writing (a
    file changed under the ingest) leaves the new store's empty repository, which the
    next ingest there fills."""
    with pytest.raises(error) as caught:
        _ingest_quietly(plane, store, **kw)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    if while_writing:
        with pytest.raises(NotAnExperimentError, match="empty Icechunk repository"):
            zs.open_experiment(store)
    else:
        assert not store.exists(), "a failed ingest leaves nothing behind"
    return message


def _set(i: int, key: Any, value: Any) -> Callable[[np.ndarray], None]:
    def edit(stat: np.ndarray) -> None:
        stat[i][key] = value

    return edit


def _entry(i: int, value: Any) -> Callable[[np.ndarray], None]:
    def edit(stat: np.ndarray) -> None:
        stat[i] = value

    return edit


# -- stat.npy ---------------------------------------------------------------------------

STAT_CASES = {
    "entry_is_a_list": (_entry(2, [1, 2]), ["entry 2 is a list", "expected a dict"]),
    "entry_is_none": (_entry(2, None), ["entry 2 is None", "expected a dict"]),
    "med_of_three_numbers": (
        _set(2, "med", [1, 2, 3]),
        ["entry 2, key 'med'", "expected [y, x]", "[1, 2, 3]"],
    ),
    "med_is_text": (_set(2, "med", "ab"), ["entry 2, key 'med'", "expected [y, x]", "'ab'"]),
    "ypix_is_text": (
        _set(2, "ypix", "abc"),
        ["entry 2, key 'ypix'", "pixel coordinates (numbers)", "a str ('abc')"],
    ),
    "int_key": (_set(2, 5, 1.0), ["entry 2 has the key 5 (int)", "expected text keys"]),
    "datetime_value": (
        _set(2, "when", datetime.datetime(2026, 1, 1)),
        ["entry 2, key 'when'", "found a datetime", "roi.pop('when', None)"],
    ),
    "bytes_value": (
        _set(3, "npix", b"xx"),
        ["entry 3, key 'npix'", "expected a number, text or an array of numbers", "bytes"],
    ),
    "mask_lengths_differ": (
        _set(1, "lam", np.ones(3, np.float32)),
        ["entry 1", "pixel mask fields have different lengths", "lam: 3"],
    ),
}


@pytest.mark.parametrize("case", list(STAT_CASES))
def test_bad_stat_entries_name_file_entry_and_key(tmp_path: Path, case: str) -> None:
    edit, words = STAT_CASES[case]
    plane = _plane(tmp_path)
    _edit_stat(plane, edit)
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(plane / "stat.npy"), *words,
        "re-export the plane folder from suite2p",
    )  # fmt: skip


def test_stat_2d_names_its_shape(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    stat = load_pickled_npy(plane / "stat.npy")
    np.save(plane / "stat.npy", stat.reshape(3, 2), allow_pickle=True)
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(plane / "stat.npy"),
        "holds shape (3, 2)", "expected a 1-D array of one dict per ROI",
    )  # fmt: skip


def test_stat_field_of_numbers_and_text_names_both_entries(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_stat(plane, _set(4, "skew", "high"))
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(plane / "stat.npy"),
        "key 'skew' holds numbers in entry 0 and text in entry 4",
    )  # fmt: skip


def test_stat_text_field_with_gaps_is_stored_as_text(tmp_path: Path) -> None:
    plane = _plane(tmp_path)

    def edit(stat: np.ndarray) -> None:
        for i, roi in enumerate(stat):
            roi["label"] = None if i == 1 else f"cell{i}"

    _edit_stat(plane, edit)
    obs = zs.ingest_suite2p(plane, tmp_path / "exp.zarr").load_trial("t-000").data.obs
    assert obs["label"].isna().tolist() == [i == 1 for i in range(N_ROIS)]
    assert obs["label"].iloc[0] == "cell0"


# -- ops --------------------------------------------------------------------------------

OPS_CASES = {
    "frames_per_file_text": ("frames_per_file", "abc", "a str ('abc')"),
    "frames_per_file_dict": ("frames_per_file", {"a": 1}, "a dict"),
    "frames_per_file_nan": ("frames_per_file", np.array([np.nan, 10.0]), "[nan, 10.0]"),
    "frames_per_file_2d": ("frames_per_file", np.array([[10, 10]]), "array([[10, 10]])"),
    "nframes_text": ("nframes", "abc", "a str ('abc')"),
    "fs_text": ("fs", "abc", "a str ('abc')"),
    "fs_list": ("fs", [30.0, 30.0], "a list ([30.0, 30.0])"),
}


@pytest.mark.parametrize("case", list(OPS_CASES))
def test_bad_ops_values_name_file_and_key(tmp_path: Path, case: str) -> None:
    key, value, found = OPS_CASES[case]
    plane = _plane(tmp_path)
    _edit_ops(plane, **{key: value})
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, f"{plane / 'ops.npy'}: ops[{key!r}]",
        found, "expected", "Correct it in that file",
    )  # fmt: skip


def test_bad_ops_value_of_suite2p_1_names_the_file_it_came_from(tmp_path: Path) -> None:
    plane = _plane(tmp_path, generation="v1", save_ops=False)
    _edit_ops(plane, "reg_outputs.npy", frames_per_file="abc")
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError,
        f"{plane / 'reg_outputs.npy'}: ops['frames_per_file']",
    )  # fmt: skip


def test_fs_of_one_element_works(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, fs=np.array([30.0]))
    exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr")
    assert exp.load_trial("t-001").data.uns["fs"] == 30.0


def test_an_ops_date_in_a_kept_key_is_left_out_with_a_warning(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, tau=datetime.datetime(2026, 1, 1))
    with pytest.warns(zs.ZstoreWarning, match=r"ops\.npy: ops\['tau'\] is datetime"):
        exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr")
    assert "tau" not in exp.load_trial("t-000").data.uns["suite2p"]


# -- iscell.npy -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(N_ROIS, 1), (N_ROIS,)], ids=["one_column", "1d"])
def test_iscell_of_labels_only_works_without_probabilities(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    plane = _plane(tmp_path)
    labels = np.array([1, 0, 1, 1, 0, 1], dtype=np.float64)
    np.save(plane / "iscell.npy", labels.reshape(shape))
    with pytest.warns(zs.ZstoreWarning, match=r"iscell\.npy holds only the is-cell labels"):
        exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr")
    obs = exp.load_trial("t-000").data.obs
    assert obs.index.tolist() == ["0", "2", "3", "5"]
    assert obs["iscell"].all() and obs["iscell_prob"].isna().all()


def test_iscell_of_one_column_of_probabilities_is_ambiguous(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    np.save(plane / "iscell.npy", np.linspace(0.1, 0.9, N_ROIS)[:, None])
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(plane / "iscell.npy"),
        "not all 0 or 1", f"expected ({N_ROIS}, 2)",
    )  # fmt: skip


# -- files that change or are not files -------------------------------------------------


def test_F_truncated_while_ingesting_stores_nothing(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=N_ROIS, frames_per_file=[10, 10, 10], **SMALL)
    F = plane / "F.npy"
    full = F.read_bytes()

    def truncate(trial: str, done: int, total: int) -> None:
        if F.stat().st_size == len(full):  # once; a new file: maps of the old one stay valid
            (plane / "F.tmp").write_bytes(full[: len(full) // 2])
            os.replace(plane / "F.tmp", F)

    message = _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(F),
        "changed while it was being ingested", "nothing was stored", "Ingest again",
        progress=truncate, while_writing=True,
    )  # fmt: skip
    assert "it is truncated or damaged (mmap length is greater than file size)" in message
    F.write_bytes(full)  # complete again: the same ingest now succeeds
    assert _ingest_quietly(plane, tmp_path / "exp.zarr").trialIDs == ["t-000", "t-001", "t-002"]


def test_F_rewritten_with_another_shape_while_ingesting(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=N_ROIS, frames_per_file=[10, 10, 10], **SMALL)
    F = plane / "F.npy"
    replaced = []

    def rewrite(trial: str, done: int, total: int) -> None:
        if not replaced:
            np.save(plane / "F.tmp.npy", np.zeros((N_ROIS + 1, 30), np.float32))
            os.replace(plane / "F.tmp.npy", F)
            replaced.append(True)

    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(F),
        "changed while it was being ingested",
        f"now holds a float32 array of shape ({N_ROIS + 1}, 30)",
        progress=rewrite, while_writing=True,
    )  # fmt: skip


@pytest.fixture
def _no_hang() -> Iterator[None]:
    """Fail (rather than hang the suite) if the test blocks on a FIFO."""
    timer = threading.Timer(60, lambda: os._exit(3))
    timer.start()
    yield
    timer.cancel()


@pytest.mark.usefixtures("_no_hang")
@pytest.mark.parametrize("name", ["F.npy", "stat.npy", "ops.npy", "iscell.npy"])
def test_a_fifo_in_place_of_a_suite2p_file_is_refused(tmp_path: Path, name: str) -> None:
    plane = _plane(tmp_path)
    (plane / name).unlink()
    os.mkfifo(plane / name)
    _refused(
        plane, tmp_path / "exp.zarr", Suite2pFormatError, str(plane / name),
        "is a FIFO (named pipe), not a regular file", f"Copy the real {name} there",
    )  # fmt: skip


def test_a_socket_or_directory_in_place_of_a_suite2p_file_is_refused(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    (plane / "stat.npy").unlink()
    (plane / "stat.npy").mkdir()
    _refused(plane, tmp_path / "a.zarr", Suite2pFormatError, "stat.npy is a directory")
    (plane / "stat.npy").rmdir()
    np.save(plane / "stat.npy", np.array([{"npix": 1}] * N_ROIS, dtype=object))
    (plane / "Fneu.npy").unlink()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(os.fspath(plane / "Fneu.npy"))
    except OSError:  # a path too long for a socket on this system
        pytest.skip("cannot bind a unix socket here")
    with server:
        _refused(plane, tmp_path / "b.zarr", Suite2pFormatError, "Fneu.npy is a socket")


@pytest.mark.usefixtures("_no_hang")
def test_a_fifo_in_place_of_a_paq_file_is_refused(tmp_path: Path) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path, n_rois=N_ROIS, frames_per_file=[30, 20])
    paqs["t-001"].unlink()
    os.mkfifo(paqs["t-001"])
    _refused(
        plane, tmp_path / "exp.zarr", PaqFormatError, str(paqs["t-001"]), "is a FIFO",
        "Pass the path of the recorded .paq file", paq=paqs,
    )  # fmt: skip
    with pytest.raises(PaqFormatError, match="is a FIFO"):
        zs.read_paq(paqs["t-001"])


# -- Windows file lists -----------------------------------------------------------------


def test_a_windows_file_list_names_trials_by_file_stem(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, filelist=[r"C:\data\a.tif", r"C:\data\b.tif"])
    exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr")
    assert exp.trialIDs == ["a", "b"]
    assert list(exp.load_trial("b").data.uns["trial"]["files"]) == ["b.tif"]
    exp = zs.ingest_suite2p(plane, tmp_path / "e2.zarr", trials={"x": ["a.tif"], "y": ["b"]})
    assert exp.trialIDs == ["x", "y"]
    assert exp.load_trial("y").data.uns["trial"]["frame_start"] == 10


# -- paq channel names ------------------------------------------------------------------


def _paq_run(tmp_path: Path, name: str) -> tuple[Path, dict[str, Path]]:
    """A run whose first paq's channel 2 (normally 'lick') is called ``name``."""
    plane, paqs = syn.write_suite2p_run(tmp_path, n_rois=N_ROIS, frames_per_file=[30, 20], **SMALL)
    del paqs["t-001"]  # one paq is enough
    pq = zs.read_paq(paqs["t-000"])
    names, data = list(pq.chan_names), np.array(pq.data)  # a copy: the file is rewritten
    names[2] = name
    zs.write_paq(paqs["t-000"], data, rate=pq.rate, chan_names=names, hw_chans=pq.hw_chans)
    return plane, paqs


PAQ_NAMES = {
    "empty": ("", "channel_2", "it is empty"),
    "slash": ("a/b", "a_b", "path separator"),
    "backslash": ("a\\b", "a_b", "path separator"),
    "dot_dot": ("..", "channel_2", "relative path component"),
    "zarr_json": ("zarr.json", "zarr_json", "Zarr's own metadata"),
    "not_nfc": ("cafe\u0301", "caf\u00e9", "NFC"),
    "zero_width": ("li\u200bck", "lick", "invisible characters"),
    "control": ("li\x01ck", "lick", "control characters"),
    "windows_device": ("CON", "CON_", "Windows device name"),
    "too_long": ("x" * 300, "x" * 128, "bytes in UTF-8"),
}


@pytest.mark.parametrize("case", list(PAQ_NAMES))
def test_paq_channel_names_that_cannot_be_columns_are_renamed(tmp_path: Path, case: str) -> None:
    name, column, why = PAQ_NAMES[case]
    plane, paqs = _paq_run(tmp_path, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr", paq=paqs)
    texts = [str(w.message) for w in caught]
    renamed = [t for t in texts if f"channel 2 is named {name!r}" in t]
    assert renamed, texts
    assert str(paqs["t-000"]) in renamed[0] and why in renamed[0]
    assert f"stored as var column {column!r}" in renamed[0]
    var = exp.load_trial("t-000").data.var
    assert var.columns.tolist()[:3] == ["frame_clock", "running", column]


def test_a_renamed_channel_and_an_existing_one_keep_both(tmp_path: Path) -> None:
    plane, paqs = _paq_run(tmp_path, "lick")
    pq = zs.read_paq(paqs["t-000"])
    names, data = list(pq.chan_names), np.array(pq.data)
    names[1] = "lick\u200b"  # 'running' renamed: becomes 'lick', so channel 2 is 'lick_2'
    zs.write_paq(paqs["t-000"], data, rate=pq.rate, chan_names=names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr", paq=paqs)
    texts = " ".join(str(w.message) for w in caught)
    assert (
        "channel 2 is named 'lick' (a repeated name); it is stored as var column 'lick_2'" in texts
    )
    assert exp.load_trial("t-000").data.var.columns.tolist()[1:3] == ["lick", "lick_2"]


def test_paq_names_with_lone_surrogates_read_as_replacement_characters(tmp_path: Path) -> None:
    path = tmp_path / "t.paq"
    # what MATLAB writes: UTF-16 code units, here a pair (one emoji) and a lone surrogate
    zs.write_paq(path, np.zeros((2, 5)), rate=10, chan_names=["a\ud83d\ude00", "a\udc80b"])
    with pytest.warns(zs.ZstoreWarning, match=r"the name of channel 1 holds unpaired UTF-16"):
        pq = zs.read_paq(path)
    assert pq.chan_names == ["a\U0001f600", "a\ufffdb"]


def test_paq_channel_with_a_lone_surrogate_is_ingested(tmp_path: Path) -> None:
    plane, paqs = _paq_run(tmp_path, "li\udc80ck")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr", paq=paqs)
    assert any("unpaired UTF-16 surrogate" in str(w.message) for w in caught)
    data = exp.load_trial("t-000").data
    assert "li\ufffdck" in data.var.columns
    assert list(data.uns["paq"]["chan_names"])[2] == "li\ufffdck"
