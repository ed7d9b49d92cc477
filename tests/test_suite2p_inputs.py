"""Bad Suite2p and paq inputs (issue 17): each gives a zstore error naming the file and key,
or is kept under a clear name with a warning; nothing is lost silently."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main
from zstore.errors import (
    InvalidArgumentError,
    PathNotFoundError,
    Suite2pFormatError,
    ZstoreWarning,
)
from zstore.io.paq import read_paq, write_paq
from zstore.io.safe_pickle import load_pickled_npy
from zstore.io.suite2p import open_suite2p


def _plane(tmp_path: Path) -> Path:
    return syn.write_suite2p_plane(
        tmp_path, n_rois=6, frames_per_file=[10, 10], non_cell_fraction=0.0
    )


def _edit_stat(plane: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    stat = load_pickled_npy(plane / "stat.npy")
    for roi in stat:
        edit(roi)
    np.save(plane / "stat.npy", stat, allow_pickle=True)


def _edit_ops(plane: Path, **values: Any) -> None:
    ops = load_pickled_npy(plane / "ops.npy")
    ops.update(values)
    np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)


# -- 1. stat keys named like the obs columns zstore makes ----------------------------------


@pytest.mark.parametrize("key", ["med_y", "med_x", "iscell", "iscell_prob"])
def test_stat_key_named_like_a_derived_column_is_kept_renamed(tmp_path: Path, key: str) -> None:
    plane = _plane(tmp_path)
    _edit_stat(plane, lambda roi: roi.__setitem__(key, 7))
    with pytest.warns(ZstoreWarning) as record:
        exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr")
    text = " ".join(str(w.message) for w in record)
    assert "stat.npy" in text and repr(key) in text and repr(f"stat_{key}") in text
    obs = exp.load_trial("t-000").data.obs
    assert obs[f"stat_{key}"].tolist() == [7] * 6  # the stat value, not lost
    assert obs[key].tolist() != [7] * 6  # zstore's own column, not overwritten


def test_stat_med_y_without_med_keeps_its_name(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_stat(plane, lambda roi: (roi.pop("med"), roi.__setitem__("med_y", 3)))
    exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr")
    assert exp.load_trial("t-000").data.obs["med_y"].tolist() == [3] * 6


# -- 2. iscell.npy labels and shape ------------------------------------------------------


@pytest.mark.parametrize("label", [np.nan, 2.0, -1.0, 0.5], ids=["nan", "two", "minus1", "half"])
def test_iscell_label_not_0_or_1_is_refused(tmp_path: Path, label: float) -> None:
    plane = _plane(tmp_path)
    iscell = np.load(plane / "iscell.npy")
    iscell[3, 0] = label
    np.save(plane / "iscell.npy", iscell)
    with pytest.raises(Suite2pFormatError, match=r"iscell\.npy: the is-cell label") as err:
        open_suite2p(plane)
    assert "ROI row(s) [3]" in str(err.value) and "expected 0 (not a cell) or 1" in str(err.value)


def test_iscell_with_three_columns_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = _plane(tmp_path)
    iscell = np.load(plane / "iscell.npy")
    np.save(plane / "iscell.npy", np.column_stack([iscell, iscell[:, :1]]))
    words = r"iscell\.npy has shape \(6, 3\): 3 columns, not the expected \(6, 2\)"
    with pytest.raises(Suite2pFormatError, match=words):
        open_suite2p(plane)
    assert main(["ingest", str(plane), str(tmp_path / "e.zarr")]) == 1
    assert "(6, 3): 3 columns, not the expected (6, 2)" in capsys.readouterr().err


# -- 3. a file given as the Suite2p folder -----------------------------------------------


def test_file_as_suite2p_folder_api(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    for call in (open_suite2p, lambda p: zs.ingest_suite2p(p, tmp_path / "e.zarr")):
        with pytest.raises(PathNotFoundError, match="is a file, but a folder was expected") as err:
            call(plane / "F.npy")
        assert f"instead: {plane} (it holds F.npy)" in str(err.value)
    assert not (tmp_path / "e.zarr").exists()


def test_file_as_suite2p_folder_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plane = _plane(tmp_path)
    assert main(["ingest", str(plane / "F.npy"), str(tmp_path / "e.zarr")]) != 0
    err = capsys.readouterr().err
    assert "a folder was expected" in err and str(plane) in err and "Traceback" not in err


def test_missing_suite2p_folder(tmp_path: Path) -> None:
    with pytest.raises(PathNotFoundError, match="does not exist"):
        zs.ingest_suite2p(tmp_path / "nothing", tmp_path / "e.zarr")


# -- 4. broken symbolic links -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_stat_symlink_that_cannot_be_followed(tmp_path: Path, kind: str) -> None:
    plane = _plane(tmp_path)
    (plane / "stat.npy").unlink()
    if kind == "dangling":
        os.symlink("nowhere.npy", plane / "stat.npy")
        words = "symbolic link to nowhere.npy, which does not exist (a dangling symlink)"
    else:
        os.symlink("stat2.npy", plane / "stat.npy")
        os.symlink("stat.npy", plane / "stat2.npy")
        words = "symbolic link to stat2.npy that loops back to itself (a symlink loop)"
    with pytest.raises(Suite2pFormatError, match=r"stat\.npy is a ") as err:
        open_suite2p(plane)
    assert words in str(err.value) and "is missing" not in str(err.value)


# -- 5. paq channel '_index' --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*frame clock edges")
def test_paq_channel_named_index_is_renamed(tmp_path: Path) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path, n_rois=6, frames_per_file=[20])
    ((tid, path),) = paqs.items()
    paq = read_paq(path)
    names = ["frame_clock", "_index", *paq.chan_names[2:]]
    renamed = tmp_path / "renamed.paq"
    write_paq(renamed, np.array(paq.data), rate=paq.rate, chan_names=names)
    with pytest.warns(
        ZstoreWarning, match=r"renamed\.paq: channel 1 is named '_index'.*'channel_1'"
    ):
        exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr", paq={tid: renamed})
    assert "channel_1" in exp.load_trial(tid).data.var.columns


# -- 6. stat key '_index' -----------------------------------------------------------------


def test_stat_key_index_names_stat_npy(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_stat(plane, lambda roi: roi.__setitem__("_index", 1))
    with pytest.raises(Suite2pFormatError, match=r"stat\.npy entry 0: its key '_index'") as err:
        zs.ingest_suite2p(plane, tmp_path / "e.zarr")
    assert "e.g. to 'index_'" in str(err.value)
    assert not (tmp_path / "e.zarr").exists()


# -- 7. absurd ops nframes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (10**30, "is 1000000000000000000000000000000"),
        (-1, "is -1; expected a whole number >= 0"),
        (1e300, "is 1e+300"),
        (True, "is a bool (True); expected one number"),
        (21, "is 21; expected a whole number >= 0 matching F.npy's frame count (20)"),
    ],
    ids=["huge-int", "negative", "huge-float", "bool", "not-F-frames"],
)
def test_absurd_nframes(tmp_path: Path, value: Any, words: str) -> None:
    plane = _plane(tmp_path)
    ops = load_pickled_npy(plane / "ops.npy")
    ops.pop("frames_per_file")
    ops["nframes"] = value
    np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"ops\.npy: ops\['nframes'\]") as err:
        open_suite2p(plane)
    assert words in str(err.value)


# -- 8. trial frame ranges ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "words"),
    [
        ((-1, 5), "frames count from 0, found start -1"),
        ((5, 5), "stop (5) must be greater than start (5)"),
        ((0, 99), "stop (99) is past the last frame (F.npy has 20 frames, 0 to 19)"),
    ],
    ids=["negative-start", "empty", "past-end"],
)
def test_trial_frame_range(tmp_path: Path, frames: tuple[int, int], words: str) -> None:
    plane = _plane(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"trial 'a': frames \[") as err:
        zs.ingest_suite2p(plane, tmp_path / "e.zarr", trials={"a": frames})
    assert words in str(err.value) and "pass trials={'a': (start, stop)}" in str(err.value)


def test_trial_range_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plane = _plane(tmp_path)
    assert main(["ingest", str(plane), str(tmp_path / "e.zarr"), "--trial", "a=-1:5"]) != 0
    err = capsys.readouterr().err  # the CLI checks --trial itself
    assert "--trial 'a=-1:5'" in err and "0 <= START < STOP" in err


# -- others from the red team -------------------------------------------------------------


def test_paq_map_errors(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"paq names trials \['t-009'\]"):
        zs.ingest_suite2p(plane, tmp_path / "e.zarr", paq={"t-009": tmp_path / "x.paq"})
    with pytest.raises(PathNotFoundError, match=r"paq files not found.*nope\.paq"):
        zs.ingest_suite2p(plane, tmp_path / "e.zarr", paq={"t-000": tmp_path / "nope.paq"})


def test_duplicate_file_stems_name_the_file_list(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, filelist=["a/x.tif", "b/x.tif"])
    with pytest.raises(Suite2pFormatError, match=r"share the stems \['x'\]") as err:
        zs.ingest_suite2p(plane, tmp_path / "e.zarr")
    assert "ops.npy: ops['filelist']" in str(err.value)


def test_unknown_trial_file(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"'t-009\.tif' is not in the run's file list"):
        zs.ingest_suite2p(plane, tmp_path / "e.zarr", trials={"a": ["t-009.tif"]})


@pytest.mark.parametrize(
    ("value", "words"),
    [("abc", "is a str ('abc')"), (0, "is an int (0)"), ([2], "is a list ([2])")],
    ids=["text", "zero", "list"],
)
def test_nplanes_not_a_whole_number_of_planes(tmp_path: Path, value: Any, words: str) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, nplanes=value)
    with pytest.raises(Suite2pFormatError, match=r"ops\.npy: ops\['nplanes'\]") as err:
        open_suite2p(plane)
    assert words in str(err.value) and "expected one" in str(err.value)
