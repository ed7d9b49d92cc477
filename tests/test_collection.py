"""Collections: many experiments in one store, the trial table, appends, where-selection,
session time, concurrent appends, bounded requests (local disk, memory and moto S3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import pandas as pd
import pytest
from s3server import S3Server

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main as cli
from zstore.table import TABLE_COLUMNS


class Place:
    """Where a collection goes, and the options to reach it."""

    def __init__(self, store: Any, options: dict[str, Any] | None = None):
        self.store, self.options = store, options

    def create(self, **kwargs: Any) -> zs.Collection:
        return zs.create_collection(self.store, storage_options=self.options, **kwargs)

    def open(self, **kwargs: Any) -> zs.Collection:
        return zs.open_collection(self.store, storage_options=self.options, **kwargs)


@pytest.fixture(params=["local", "memory", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "local":
        return Place(str(tmp_path / "lab.zarr"))
    if request.param == "memory":
        return Place(icechunk.in_memory_storage())
    s3 = request.getfixturevalue("s3")
    return Place(f"s3://{s3.new_bucket()}/lab.zarr", s3.options())


def _trial(n_rois: int, n_frames: int, seed: int, fs: float = 30.0) -> zs.AnnotatedData:
    rng = np.random.default_rng(seed)
    X = (rng.gamma(2.0, 50.0, (n_rois, n_frames)) + 100).astype(np.float32)
    var = pd.DataFrame({"time": np.arange(n_frames) / fs}, index=[str(i) for i in range(n_frames)])
    return zs.AnnotatedData(X, var=var, uns={"fs": fs})


def test_a_collection_holds_experiments_and_a_table_of_their_trials(place: Place) -> None:
    col = place.create()
    assert col.experimentIDs == [] and len(col) == 0 and col.table().empty
    assert list(col.table().columns) == list(TABLE_COLUMNS)
    a = col.create_experiment("A_d1_plane0", metadata={"subject": "A", "session": "d1", "plane": 0})
    a.add_trial("t-0", _trial(5, 40, 0))
    a.add_trial("t-1", _trial(5, 60, 1))
    col.append(
        {
            "B_d1_plane1": (
                {"subject": "B", "session": "d1", "plane": 1, "rig": "2p-2", "age_days": 90},
                {"t-0": (_trial(7, 30, 2, fs=15.0), None)},
            )
        }
    )
    col = place.open()
    assert col.experimentIDs == ["A_d1_plane0", "B_d1_plane1"]
    assert "B_d1_plane1" in col and "C" not in col and len(col) == 2
    table = col.table()
    assert table[["experiment", "trial", "n_rois", "n_frames"]].values.tolist() == [
        ["A_d1_plane0", "t-0", 5, 40],
        ["A_d1_plane0", "t-1", 5, 60],
        ["B_d1_plane1", "t-0", 7, 30],
    ]
    assert table["subject"].tolist() == ["A", "A", "B"]
    assert table["plane"].tolist() == [0, 0, 1]
    assert table["fs"].tolist() == [30.0, 30.0, 15.0]
    np.testing.assert_allclose(table["duration_s"], [40 / 30, 60 / 30, 30 / 15])
    assert table["start_s"].tolist() == [0.0, 0.0, 0.0]
    assert table["rig"].tolist()[2] == "2p-2" and pd.isna(table["rig"][0])
    assert table["age_days"].tolist()[2] == 90
    # where: a pandas query on the table
    assert col.select("subject == 'A' and n_frames > 50") == [("A_d1_plane0", "t-1")]
    assert col.select("plane == 1") == [("B_d1_plane1", "t-0")]
    with pytest.raises(ValueError, match=r"cannot select trials.*columns are"):
        col.table("animal == 'A'")
    # each experiment is an experiment, unchanged inside
    b = col.open_experiment("B_d1_plane1")
    np.testing.assert_array_equal(b.load_trial("t-0").data.X.compute(), _trial(7, 30, 2, fs=15.0).X)
    assert b.metadata["rig"] == "2p-2" and b.expID == "B_d1_plane1"
    with pytest.raises(zs.errors.ExperimentNotFoundError, match="its experiments are"):
        col.open_experiment("C")
    with pytest.raises(zs.errors.ReadOnlyError, match="mode='r\\+'"):
        col.open_experiment("B_d1_plane1", mode="r+")


def test_layers_saved_later_show_in_the_table_and_select_trials(place: Place) -> None:
    col = place.create()
    exp = col.create_experiment("E", metadata={"subject": "S"})
    exp.add_trial("t-0", _trial(4, 50, 0))
    exp.add_trial("t-1", _trial(4, 50, 1))
    col = place.open(mode="r+")
    assert zs.compute_dff(col, where="trial == 't-1'", normalize_pct=20) == ["E/t-1"]
    table = col.refresh().table()
    assert table["layers"].tolist() == ["", "dFF"]
    assert col.select("layers.str.contains('dFF')") == [("E", "t-1")]
    with pytest.raises(zs.errors.LayerExistsError, match="already have a layer 'dFF'"):
        zs.compute_dff(col, normalize_pct=20)
    with pytest.raises(TypeError, match="where="):
        zs.compute_dff(col, trials=["t-0"])
    stored = col.open_experiment("E").load_trial("t-1").data
    expected = zs.normalize_dff(stored.X, normalize_pct=20).compute()
    np.testing.assert_array_equal(stored.layers["dFF"].compute(), expected)
    # an experiment takes where= too
    exp = col.open_experiment("E", mode="r+")
    assert zs.compute_dff(exp, layer="d2", where="layers == ''", normalize_pct=20) == ["t-0"]


def test_removing_an_experiment_is_one_version_and_the_old_one_keeps_it(place: Place) -> None:
    col = place.create()
    col.create_experiment("A").add_trial("t", _trial(3, 20, 0))
    col.create_experiment("B").add_trial("t", _trial(3, 20, 1))
    before = place.open().version
    col = place.open(mode="r+")
    col.remove_experiment("A")
    assert col.experimentIDs == ["B"] and place.open().experimentIDs == ["B"]
    old = place.open(version=before)
    assert old.experimentIDs == ["A", "B"]
    np.testing.assert_array_equal(
        old.open_experiment("A").load_trial("t").data.X.compute(), _trial(3, 20, 0).X
    )
    with pytest.raises(zs.errors.ExperimentNotFoundError):
        col.remove_experiment("A")


def test_collections_and_experiments_are_not_mistaken_for_each_other(tmp_path: Path) -> None:
    zs.create_collection(tmp_path / "col.zarr")
    zs.create_experiment(tmp_path / "exp.zarr", exp_id="E")
    with pytest.raises(zs.errors.NotAnExperimentError, match=r"zs\.open_collection"):
        zs.open_experiment(tmp_path / "col.zarr")
    with pytest.raises(zs.errors.NotAnExperimentError, match=r"zs\.open_experiment"):
        zs.open_collection(tmp_path / "exp.zarr")
    with pytest.raises(zs.errors.ExperimentExistsError, match="holds an experiment"):
        zs.create_collection(tmp_path / "exp.zarr", overwrite=True)
    with pytest.raises(FileNotFoundError, match="no zstore collection"):
        zs.open_collection(tmp_path / "nothing.zarr")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(zs.errors.UnsafeOverwriteError):
        zs.create_collection(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


# -- ingest: planes, sessions, appends ------------------------------------------------------


def _run(
    folder: Path, n_planes: int = 2, frames: tuple[int, ...] = (90, 60), seed: int = 0
) -> Path:
    return syn.write_suite2p_planes(
        folder, n_planes=n_planes, n_rois=12, frames_per_file=list(frames), seed=seed
    )


def _same_trial(a: zs.AnnotatedData, b: zs.AnnotatedData) -> None:
    np.testing.assert_array_equal(a.X.compute(), b.X.compute())
    assert sorted(a.layers) == sorted(b.layers)
    for name in a.layers:
        np.testing.assert_array_equal(a.layers[name].compute(), b.layers[name].compute())
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    np.testing.assert_equal(dict(a.uns), dict(b.uns))
    assert sorted(a.obsm) == sorted(b.obsm)
    for key in a.obsm:
        for x, y in zip(a.obsm[key].buffers(), b.obsm[key].buffers(), strict=True):
            np.testing.assert_array_equal(x, y)


def test_a_suite2p_folder_is_ingested_plane_by_plane_or_whole_with_the_same_data(
    tmp_path: Path,
) -> None:
    for generation in ("classic", "v1"):
        root = syn.write_suite2p_planes(
            tmp_path / generation, n_planes=3, n_rois=10, frames_per_file=[50, 40],
            generation=generation,
        )  # fmt: skip
        whole = zs.ingest_suite2p(
            root, tmp_path / f"{generation}.zarr", subject="RL1", session="d1"
        )
        assert isinstance(whole, zs.Collection)
        assert whole.experimentIDs == ["RL1_d1_plane0", "RL1_d1_plane1", "RL1_d1_plane2"]
        for k in range(3):
            alone = zs.ingest_suite2p(
                root / f"plane{k}", tmp_path / f"{generation}-p{k}.zarr", exp_id="E"
            )
            assert isinstance(alone, zs.Experiment)
            inside = whole.open_experiment(f"RL1_d1_plane{k}")
            assert inside.trialIDs == alone.trialIDs == ["t-000", "t-001"]
            assert inside.metadata == {"subject": "RL1", "session": "d1", "plane": k}
            for tid in alone.trialIDs:
                _same_trial(inside.load_trial(tid).data, alone.load_trial(tid).data)
        # the folder above suite2p/ works too, and is the default subject
        col = zs.ingest_suite2p(tmp_path / generation, tmp_path / f"{generation}-2.zarr")
        assert isinstance(col, zs.Collection)
        assert col.experimentIDs == [f"{generation}_plane{k}" for k in range(3)]


def test_sessions_are_appended_without_touching_the_others(tmp_path: Path) -> None:
    lab = tmp_path / "lab.zarr"
    d1 = _run(tmp_path / "d1", seed=1)
    d2 = _run(tmp_path / "d2", seed=2)
    zs.ingest_suite2p(d1, lab, subject="RL109", session="d1", metadata={"genotype": "GCaMP6s"})
    first = zs.open_collection(lab)
    x_before = first.open_experiment("RL109_d1_plane0").load_trial("t-000").data.X.compute()
    zs.ingest_suite2p(d2, lab, subject="RL109", session="d2")
    col = zs.open_collection(lab)
    assert col.experimentIDs == [
        "RL109_d1_plane0", "RL109_d1_plane1", "RL109_d2_plane0", "RL109_d2_plane1",
    ]  # fmt: skip
    table = col.table()
    assert len(table) == 8 and table["genotype"].tolist()[:4] == ["GCaMP6s"] * 4
    x_after = col.open_experiment("RL109_d1_plane0").load_trial("t-000").data.X.compute()
    np.testing.assert_array_equal(x_before, x_after)
    assert [c.message.split(" as ")[0] for c in col.history()[:2]] == [
        f"ingest {d2}",
        f"ingest {d1}",
    ]
    # the same session again: a clear error, nothing written
    version = col.version
    with pytest.raises(zs.errors.ExperimentExistsError, match="RL109_d2_plane0"):
        zs.ingest_suite2p(d2, lab, subject="RL109", session="d2")
    assert zs.open_collection(lab).version == version
    # overwrite replaces those experiments only
    zs.ingest_suite2p(d1, lab, subject="RL109", session="d2", overwrite=True)
    col = zs.open_collection(lab)
    assert len(col) == 4
    np.testing.assert_array_equal(
        col.open_experiment("RL109_d2_plane0").load_trial("t-000").data.X.compute(), x_before
    )
    # concat over a where-selection: one AnnotatedData per experiment
    joined = col.concat(where="session == 'd1' and plane == 0")
    assert list(joined) == ["RL109_d1_plane0"]
    assert joined["RL109_d1_plane0"].shape == (x_before.shape[0], 150)


def test_session_time_runs_through_trials_and_planes(tmp_path: Path) -> None:
    fs = 30.0
    root = syn.write_suite2p_planes(tmp_path, n_planes=2, n_rois=6, frames_per_file=[90, 60, 30])
    col = zs.ingest_suite2p(root, tmp_path / "lab.zarr", subject="S", session="d")
    assert isinstance(col, zs.Collection)
    table = col.table()
    offsets = {0: 0.0, 1: 1 / (fs * 2)}  # plane 1's frames come half a frame later
    for k in (0, 1):
        rows = table[table["plane"] == k]
        np.testing.assert_allclose(rows["start_s"], np.array([0, 90, 150]) / fs + offsets[k])
        np.testing.assert_allclose(rows["duration_s"], np.array([90, 60, 30]) / fs)
        joined = col.open_experiment(f"S_d_plane{k}").concat()
        time = joined.var["time"].to_numpy()
        assert len(time) == 180 and np.all(np.diff(time) > 0)
        np.testing.assert_allclose(time, np.arange(180) / fs + offsets[k])
        assert joined.uns["fs"] == fs
        trial = col.open_experiment(f"S_d_plane{k}").load_trial("t-001").data
        assert trial.uns["trial"]["start_s"] == pytest.approx(90 / fs + offsets[k])


def test_with_paq_files_times_come_from_the_frame_clock_and_keep_increasing(
    tmp_path: Path,
) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path, n_rois=6, frames_per_file=[90, 60])
    with pytest.warns(zs.ZstoreWarning):
        exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr", paq=paqs)
    assert isinstance(exp, zs.Experiment)
    time = exp.concat().var["time"].to_numpy()
    assert np.all(np.diff(time) > 0)
    second = exp.load_trial("t-001").data
    paq = zs.read_paq(paqs["t-001"])
    edges = zs.frame_times(paq, channel="frame_clock")[:60]
    np.testing.assert_allclose(
        second.var["time"].to_numpy() - second.var["time"].iloc[0],
        (edges - edges[0]) / paq.rate,
    )
    assert second.var["time"].iloc[0] >= 90 / 30.0


def test_ingest_refuses_what_it_cannot_place(tmp_path: Path) -> None:
    with pytest.raises(zs.errors.Suite2pFormatError, match="no Suite2p plane"):
        zs.ingest_suite2p(tmp_path, tmp_path / "x.zarr")
    root = _run(tmp_path / "run")
    zs.create_experiment(tmp_path / "exp.zarr", exp_id="E")
    with pytest.raises(zs.errors.ExperimentExistsError, match="not a collection"):
        zs.ingest_suite2p(root, tmp_path / "exp.zarr")
    with pytest.raises(ValueError, match="metadata 'when' is a list"):
        zs.ingest_suite2p(root, tmp_path / "c.zarr", metadata={"when": [1, 2]})
    assert not (tmp_path / "c.zarr").exists()  # checked before anything was created
    read_only = zs.create_collection(tmp_path / "ro.zarr")
    with pytest.raises(zs.errors.ReadOnlyError):
        zs.ingest_suite2p(root, zs.open_collection(read_only.location))


# -- concurrency and scale ---------------------------------------------------------------------

APPEND = textwrap.dedent(
    """
    import json, sys, numpy as np, zstore as zs
    store, session, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) or None
    col = zs.open_collection(store, mode="r+", storage_options=options)
    for k in range(3):
        exp = {"trials": {f"t-{i}": (zs.AnnotatedData(np.full((4, 20), k, "f4")), None)
                          for i in range(2)}}
        col.append({f"S_{session}_plane{k}": ({"subject": "S", "session": session,
                                               "plane": k}, exp["trials"])})
    """
)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_processes_append_different_sessions_and_both_succeed(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import json

    if kind == "local":
        store, options = str(tmp_path / "lab.zarr"), None
    else:
        s3 = request.getfixturevalue("s3")
        store, options = f"s3://{s3.new_bucket()}/lab.zarr", s3.options()
    zs.create_collection(store, storage_options=options)
    procs = [
        subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-c", APPEND, store, day, json.dumps(options)],
            stderr=subprocess.PIPE,
        )
        for day in ("d1", "d2")
    ]
    errors = [p.communicate(timeout=600)[1].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    col = zs.open_collection(store, storage_options=options)
    assert sorted(col.experimentIDs) == sorted(
        f"S_{d}_plane{k}" for d in ("d1", "d2") for k in range(3)
    )
    assert len(col.table()) == 12
    # an ID that exists is a clear error
    with pytest.raises(zs.errors.ExperimentExistsError, match="S_d1_plane0"):
        zs.open_collection(store, mode="r+", storage_options=options).append(
            {"S_d1_plane0": ({}, {})}
        )


def test_opening_a_collection_and_its_table_costs_the_same_requests_at_any_size(
    s3: S3Server,
) -> None:
    counts = {}
    for n_subjects, n_trials in ((1, 1), (3, 4)):
        url = f"s3://{s3.new_bucket()}/lab.zarr"
        syn.write_collection(
            url, subjects=[f"S{i}" for i in range(n_subjects)], sessions=["d1", "d2"],
            n_planes=2, n_trials=n_trials, storage_options=s3.options(),
        )  # fmt: skip
        s3.reset()
        col = zs.open_collection(url, storage_options=s3.options())
        table = col.table()
        opened = s3.count()
        assert len(table) == n_subjects * 2 * 2 * n_trials
        s3.reset()
        trial = col.open_experiment(col.experimentIDs[-1]).load_trial("t-000")
        loaded = s3.count()
        assert trial.data.shape == (8, 50)
        counts[(n_subjects, n_trials)] = (opened, loaded)
    small, big = counts.values()
    assert small == big, counts  # 4 experiments x 1 trial, or 12 x 4: the same requests
    assert small[0] <= 6, counts  # repository, config, branch, one snapshot


def test_the_cli_appends_lists_and_computes_over_a_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = str(tmp_path / "lab.zarr")
    d1 = _run(tmp_path / "d1", seed=1)
    args = ["ingest", str(d1), lab, "--subject", "RL109", "--session", "2024-05-01"]
    assert cli([*args, "--metadata", "genotype=GCaMP6s", "--metadata", "age_days=90"]) == 0
    out = capsys.readouterr().out
    assert "appended to the collection" in out and "RL109_2024-05-01_plane1" in out
    assert cli(["info", lab]) == 0
    out = capsys.readouterr().out
    assert "2 experiments, 4 trials" in out and "1 subject, 1 session, 2 planes" in out
    assert "GCaMP6s" in out and "age_days" in out
    assert cli(["dff", lab, "--where", "plane == 0"]) == 0
    out = capsys.readouterr().out
    assert "for 2 trials" in out and "RL109_2024-05-01_plane0/t-000" in out
    assert cli(["info", lab, "--where", "layers.str.contains('dFF')"]) == 0
    assert "2 match" in capsys.readouterr().out
    assert cli(["ingest", str(d1), lab, "--subject", "RL109", "--session", "2024-05-01"]) == 1
    assert "already in the collection" in capsys.readouterr().err
    assert cli(["verify", lab]) == 0
    assert "verified 4 trials" in capsys.readouterr().out
    assert cli(["history", lab]) == 0
    assert "ingest" in capsys.readouterr().out


# -- what the red team found -----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:a library's own warning")
def test_a_failing_command_prints_its_error_after_other_warnings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    import zstore.cli

    def failing(args: Any) -> int:
        warnings.warn("a library's own warning", RuntimeWarning, stacklevel=1)
        raise ValueError("the error the user must see")

    monkeypatch.setattr(zstore.cli, "_info", failing)
    assert cli(["info", "anywhere"]) == 1  # once looped forever re-recording the warning
    assert "the error the user must see" in capsys.readouterr().err


def test_metadata_that_would_break_the_table_is_refused(place: Place) -> None:
    col = place.create()
    for bad in ({"plane": "p0"}, {"plane": 2**70}, {"plane": 1.5}, {"plane": True}):
        with pytest.raises(ValueError, match="metadata 'plane' must be"):
            col.create_experiment("E", metadata=bad)
    for key in ("trial", "experiment", "layers", "fs", "n_rois"):
        with pytest.raises(ValueError, match="is a column zstore fills"):
            col.create_experiment("E", metadata={key: 1})
    with pytest.raises(TypeError, match="expected \\(AnnotatedData"):
        col.append({"E": ({}, {"t": ("not data", None)})})
    with pytest.raises(zs.errors.InvalidNameError):
        col.append({"E": ({}, {"../x": (_trial(2, 3, 0), None)})})
    assert place.open().experimentIDs == [] and len(place.open().history()) == 2  # + create


def test_where_must_be_a_condition(place: Place) -> None:
    col = place.create()
    exp = col.create_experiment("A", metadata={"plane": 0})
    for k in range(3):
        exp.add_trial(f"t-{k}", _trial(3, 10 * (k + 1), k))
    col = place.open()
    for bad in ("plane", "n_frames // 10", "1", "n_frames + 1"):
        with pytest.raises(ValueError, match="must be a condition"):
            col.select(bad)
    with pytest.raises(ValueError, match="variables"):
        col.select("plane == @x")
    assert col.select("n_frames >= 20") == [("A", "t-1"), ("A", "t-2")]
    assert col.select("plane == 1") == []


def test_a_write_to_an_experiment_removed_or_replaced_since_it_was_opened_is_refused(
    place: Place,
) -> None:
    col = place.create()
    col.create_experiment("X", metadata={"subject": "old"}).add_trial("t-0", _trial(4, 20, 0))
    stale = place.open(mode="r+").open_experiment("X")
    other = place.open(mode="r+")
    other.append({"X": ({"subject": "old"}, {"n-0": (_trial(7, 20, 1), None)})}, overwrite=True)
    with pytest.raises(zs.errors.ConflictError, match="replaced by another writer"):
        stale.add_trial("t-new", _trial(4, 20, 2))
    assert place.open().open_experiment("X").trialIDs == ["n-0"]  # no trial of the old one
    other.refresh().remove_experiment("X")
    with pytest.raises(zs.errors.ConflictError, match="removed by another writer"):
        stale.add_trial("t-new", _trial(4, 20, 2))
    col = place.open(mode="r+")
    assert col.experimentIDs == []
    fresh = col.create_experiment("X")
    assert fresh.trialIDs == []  # nothing of the old experiment comes back


def test_a_write_that_raced_past_its_guard_on_s3_is_taken_back(s3: S3Server) -> None:
    url, options = f"s3://{s3.new_bucket()}/lab.zarr", s3.options()
    col = zs.create_collection(url, storage_options=options)
    exp = col.create_experiment("X")
    calls = []

    def guard(tip: Any) -> str | None:  # passes before the commit, fails just after
        calls.append(tip)
        return None if len(calls) == 1 else "experiment 'X' was removed meanwhile"

    exp._guard = guard  # type: ignore[method-assign]
    with pytest.raises(zs.errors.ConflictError, match="removed meanwhile"):
        exp.add_trial("t-0", _trial(3, 10, 0))
    col = zs.open_collection(url, storage_options=options)
    assert col.open_experiment("X").trialIDs == [] and len(calls) == 2
    assert col.history()[0].message.startswith("undo ")


def test_overwrite_never_replaces_another_recording_with_the_same_id(tmp_path: Path) -> None:
    lab = tmp_path / "lab.zarr"
    run = _run(tmp_path / "run", n_planes=1)
    zs.ingest_suite2p(run, lab, subject="a_b", session="c")
    with pytest.raises(zs.errors.ExperimentExistsError, match="subject 'a_b'"):
        zs.ingest_suite2p(run, lab, subject="a", session="b_c")
    with pytest.raises(zs.errors.ExperimentExistsError, match="another recording"):
        zs.ingest_suite2p(run, lab, subject="a", session="b_c", overwrite=True)
    assert zs.open_collection(lab).table()["subject"].unique().tolist() == ["a_b"]
    with pytest.raises(ValueError, match="set by ingest_suite2p itself"):
        zs.ingest_suite2p(run, lab, subject="a", session="x", metadata={"plane": 3})


def test_an_experiments_history_is_its_own(place: Place) -> None:
    col = place.create()
    col.create_experiment("A").add_trial("t", _trial(2, 5, 0))
    col.create_experiment("AB").add_trial("t", _trial(2, 5, 1))
    history = place.open().open_experiment("A").history()
    assert all("'AB'" not in c.message for c in history)
    assert any("add trial 't'" in c.message for c in history)


def test_frame_times_stay_increasing_without_a_usable_frame_rate(tmp_path: Path) -> None:
    for fs in (-30.0, float("inf"), 0.0):
        plane = syn.write_suite2p_plane(tmp_path / str(fs), n_rois=4, frames_per_file=[1, 1, 3])
        ops = np.load(plane / "ops.npy", allow_pickle=True).item()
        ops["fs"] = fs
        np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
        with pytest.warns(zs.ZstoreWarning, match="is not a frame rate"):
            exp = zs.ingest_suite2p(plane, tmp_path / f"{fs}.zarr")
        assert isinstance(exp, zs.Experiment)
        data = exp.load_trial("t-000").data
        assert "fs" not in data.uns and np.isnan(data.var["time"]).all()
    plane, paqs = syn.write_suite2p_run(tmp_path / "paq", n_rois=4, frames_per_file=[1, 1, 3])
    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    del ops["fs"]
    np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    with pytest.warns(zs.ZstoreWarning):
        exp = zs.ingest_suite2p(plane, tmp_path / "paq.zarr", paq=paqs)
    assert isinstance(exp, zs.Experiment)
    time = exp.concat().var["time"].to_numpy()
    assert len(time) == 5 and np.all(np.diff(time) > 0)
