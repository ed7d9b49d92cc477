"""Suite2p plane folders: both generations, consistency checks, safe unpickling, trials."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zstore.synthetic as syn
from zstore.errors import Suite2pFormatError, UnsafePickleError
from zstore.io.safe_pickle import load_pickled_npy
from zstore.io.suite2p import open_suite2p, plan_trials


@pytest.mark.parametrize(
    ("generation", "save_ops"), [("classic", True), ("v1", True), ("v1", False)]
)
def test_both_generations_give_the_same_plane(
    tmp_path: Path, generation: str, save_ops: bool
) -> None:
    plane = open_suite2p(
        syn.write_suite2p_plane(
            tmp_path, n_rois=12, frames_per_file=[30, 20], generation=generation, save_ops=save_ops
        )
    )
    assert plane.generation == generation
    assert (plane.n_rois, plane.n_frames) == (12, 50)
    assert [Path(f).name for f in plane.file_list] == ["t-000.tif", "t-001.tif"]
    assert plane.frames_per_file == [30, 20]
    assert plane.fs == 30.0
    assert plane.ops["neucoeff"] == 0.7 and plane.ops["meanImg"].shape == (256, 256)
    assert isinstance(plane.traces["F"], np.memmap)
    assert set(plane.stat[0]) >= {"ypix", "xpix", "lam", "med", "npix", "radius"}


def _plane(tmp_path: Path, **kwargs: object) -> Path:
    return syn.write_suite2p_plane(tmp_path, n_rois=6, frames_per_file=[10, 10], **kwargs)  # type: ignore[arg-type]


def test_row_and_frame_mismatches_name_files_and_numbers(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    np.save(plane / "Fneu.npy", np.zeros((5, 20), np.float32))
    with pytest.raises(Suite2pFormatError, match=r"Fneu\.npy has 5 ROIs but F\.npy has 6"):
        open_suite2p(plane)
    np.save(plane / "Fneu.npy", np.zeros((6, 19), np.float32))
    with pytest.raises(Suite2pFormatError, match=r"Fneu\.npy has 19 frames but F\.npy has 20"):
        open_suite2p(plane)
    np.save(plane / "Fneu.npy", np.zeros((6, 20), np.float32))
    np.save(plane / "stat.npy", np.array([{"npix": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"stat\.npy has 4 ROIs but F\.npy has 6 rows"):
        open_suite2p(plane)


def test_frames_per_file_must_sum_to_nframes(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    ops = load_pickled_npy(plane / "ops.npy")
    ops["nframes"] = 25
    np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"sums to 20 frames but ops\['nframes'\] is 25"):
        open_suite2p(plane)


def test_missing_and_truncated_files(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    data = (plane / "F.npy").read_bytes()
    (plane / "F.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(Suite2pFormatError, match=r"F\.npy"):
        open_suite2p(plane)
    (plane / "F.npy").unlink()
    with pytest.raises(Suite2pFormatError, match=r"is missing F\.npy"):
        open_suite2p(plane)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_suite2p(tmp_path / "nowhere")
    stat = (plane / "stat.npy").read_bytes()
    (plane / "stat.npy").write_bytes(stat[: len(stat) - 40])
    with pytest.raises(Suite2pFormatError, match="damaged or truncated"):
        load_pickled_npy(plane / "stat.npy")


class _Call:
    """Pickles as a call of ``func(*args)``: what a malicious file does."""

    def __init__(self, func: object, *args: object):
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize(
    "payload",
    [
        _Call(os.system, "touch PWNED"),
        _Call(__import__("subprocess").Popen, ["touch", "PWNED"]),
        _Call(eval, "open('PWNED', 'w')"),
        _Call(getattr, "text", "upper"),
        _Call(np.save, "PWNED.npy", np.zeros(1)),
        _Call(np.load, "anything.npy"),
        _Call(__import__("builtins").__import__, "os"),
    ],
    ids=["os.system", "subprocess.Popen", "eval", "getattr", "np.save", "np.load", "__import__"],
)
def test_the_unpickler_refuses_every_other_global(
    tmp_path: Path, payload: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "stat.npy"
    np.save(path, np.array([{"npix": 3, "evil": payload}], dtype=object), allow_pickle=True)
    with pytest.raises(
        UnsafePickleError, match=r"stat\.npy refers to .*, which zstore will not load"
    ):
        load_pickled_npy(path)
    assert not list(tmp_path.glob("PWNED*"))


def test_numpy_1_pickles_load(tmp_path: Path) -> None:
    # What numpy 1 wrote: the same globals under numpy.core, as text (GLOBAL) opcodes.
    ops = np.array({"meanImg": np.ones((2, 2), np.float32), "fs": np.float64(30)}, dtype=object)
    payload = pickle.dumps(ops, protocol=2)
    assert b"numpy._core" in payload
    path = tmp_path / "ops.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        fh.write(payload.replace(b"numpy._core", b"numpy.core"))
    loaded = load_pickled_npy(path)
    assert loaded["fs"] == 30 and loaded["meanImg"].dtype == np.float32


def test_trials_one_per_file_by_frames_per_file(tmp_path: Path) -> None:
    plane = open_suite2p(syn.write_suite2p_plane(tmp_path, n_rois=4, frames_per_file=[5, 7, 3]))
    assert [(t.trial_id, t.start, t.stop) for t in plan_trials(plane)] == [
        ("t-000", 0, 5), ("t-001", 5, 12), ("t-002", 12, 15),
    ]  # fmt: skip


def test_trials_from_grouped_files_follow_run_order_not_given_order(tmp_path: Path) -> None:
    plane = open_suite2p(syn.write_suite2p_plane(tmp_path, n_rois=4, frames_per_file=[5, 7, 3, 4]))
    got = plan_trials(plane, {"late": ["t-003.tif", "t-002"], "early": ["t-000", "t-001.tif"]})
    assert [(t.trial_id, t.start, t.stop) for t in got] == [("early", 0, 12), ("late", 12, 19)]


def test_bad_trial_specs_name_the_problem(tmp_path: Path) -> None:
    plane = open_suite2p(syn.write_suite2p_plane(tmp_path, n_rois=4, frames_per_file=[5, 7, 3]))
    with pytest.raises(ValueError, match=r"'t-009\.tif' is not in the run's file list"):
        plan_trials(plane, {"a": ["t-009.tif"]})
    with pytest.raises(ValueError, match="are not consecutive in the run"):
        plan_trials(plane, {"a": ["t-000", "t-002"]})
    with pytest.raises(ValueError, match=r"trials 'a' \[0, 6\) and 'b' \[5, 9\) overlap"):
        plan_trials(plane, {"a": (0, 6), "b": (5, 9)})
    with pytest.raises(
        ValueError, match=r"frames \[10, 99\) are not a non-empty range within the run's 15"
    ):
        plan_trials(plane, {"a": (10, 99)})
    with pytest.raises(ValueError, match=r"trial ID '\.\./x' cannot be stored"):
        plan_trials(plane, {"../x": (0, 3)})


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(["F.npy", "Fneu.npy", "spks.npy", "iscell.npy", "stat.npy", "ops.npy"]),
    mode=st.sampled_from(["random", "truncate", "flip"]),
    data=st.data(),
)
def test_fuzzed_plane_files_raise_only_documented_errors(
    fuzz_plane: Path, target: str, mode: str, data: st.DataObject
) -> None:
    path = fuzz_plane / target
    original = path.read_bytes()
    try:
        if mode == "random":
            blob = data.draw(st.binary(max_size=600))
        elif mode == "truncate":
            blob = original[: data.draw(st.integers(0, len(original) - 1))]
        else:
            position = data.draw(st.integers(0, len(original) - 1))
            blob = (
                original[:position] + bytes([original[position] ^ 0xFF]) + original[position + 1 :]
            )
        path.write_bytes(blob)
        try:
            plane = open_suite2p(fuzz_plane)
        except Suite2pFormatError:
            return
        # a flipped byte inside the numbers of a matrix still opens: it is data
        assert plane.n_rois == 6
    finally:
        path.write_bytes(original)


@pytest.fixture(scope="module")
def fuzz_plane(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.write_suite2p_plane(
        tmp_path_factory.mktemp("fuzz"), n_rois=6, frames_per_file=[10, 10]
    )
