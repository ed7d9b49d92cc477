"""NWB export: read back with pynwb and compared element by element with the store."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.errors import AlreadyExistsError
from zstore.nwb import export_nwb

pynwb = pytest.importorskip("pynwb")

START = datetime.datetime(2026, 5, 1, 10, 30, tzinfo=datetime.UTC)
SUBJECT = {"subject_id": "RL109", "species": "Mus musculus", "sex": "M", "age": "P90D"}
LY, LX = 48, 80  # not square: a transposed mask cannot land on the image


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Suite2p run of 3 trials with paq files, ingested, with dF/F saved."""
    root = tmp_path_factory.mktemp("nwb")
    plane, paqs = syn.write_suite2p_run(
        root / "run", n_rois=30, frames_per_file=[200, 240, 180], Ly=LY, Lx=LX, seed=3
    )
    store = root / "exp.zarr"
    with pytest.warns(zs.ZstoreWarning):  # the synthetic paq files' extra frame-clock edges
        exp = zs.ingest_suite2p(plane, store, paq=paqs, exp_id="RL109", progress=False)
    zs.compute_dff(exp, layer="dFF", normalize_pct=20, progress=False)
    return store


def read(path: Path) -> Any:
    io = pynwb.NWBHDF5IO(str(path), "r")
    return io, io.read()


def linked(path: Path, name: str) -> bool:
    """Whether ``name`` in the file is a link to F's timestamps (not a copy)."""
    import h5py

    with h5py.File(path, "r") as h5:
        link = h5.get(name, getlink=True)
        return isinstance(link, h5py.SoftLink) and link.path.endswith("/F/timestamps")


def test_every_element_reads_back_exactly(ingested: Path, tmp_path: Path) -> None:
    exp = zs.open_experiment(ingested)
    out = export_nwb(
        exp, tmp_path / "RL109.nwb", session_start_time=START, subject=SUBJECT, progress=False
    )
    assert out == tmp_path / "RL109.nwb"
    trials = [exp.load_trial(t).data for t in exp.trialIDs]
    first = trials[0]
    time = np.concatenate([d.var["time"].to_numpy() for d in trials])
    io, f = read(out)
    with io:
        assert f.session_start_time == START
        assert f.subject.subject_id == "RL109" and f.subject.species == "Mus musculus"
        ophys = f.processing["ophys"]
        plane = f.imaging_planes["ImagingPlane"]
        assert plane.imaging_rate == first.uns["fs"] == 30.0
        assert plane.indicator == "unknown" and plane.location == "unknown"

        # traces: (time, ROI) = zstore's (ROI, frame) transposed, trials concatenated
        series = {
            "F": (ophys["Fluorescence"]["F"], None),
            "Fneu": (ophys["Fluorescence"]["Fneu"], "Fneu"),
            "spks": (ophys["Fluorescence"]["spks"], "spks"),
            "dFF": (ophys["DfOverF"]["dFF"], "dFF"),
        }
        assert set(ophys["Fluorescence"].roi_response_series) == {"F", "Fneu", "spks"}
        for name, (rrs, layer) in series.items():
            expected = np.concatenate([np.asarray(d.matrix(layer)) for d in trials], axis=1).T
            assert rrs.data.shape == expected.shape, name
            assert rrs.data.dtype == np.float32, name
            np.testing.assert_array_equal(rrs.data[:], expected, err_msg=name)
            # paq frame times jitter by a paq sample: timestamps, not a rate
            assert rrs.rate is None
            np.testing.assert_array_equal(rrs.timestamps[:], time)
            assert list(rrs.rois.data[:]) == list(range(first.n_obs))
        assert ophys["DfOverF"]["dFF"].unit == "%"
        assert '"normalize_pct": 20' in ophys["DfOverF"]["dFF"].description
        assert ophys["Fluorescence"]["F"].unit == "a.u."
        # the others share F's timestamps (one dataset, linked)
        assert linked(out, "processing/ophys/Fluorescence/Fneu/timestamps")
        assert linked(out, "processing/ophys/DfOverF/dFF/timestamps")

        # ROIs: ids are the stored ROI IDs (Suite2p indices; non-cells were dropped)
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        ids = [int(i) for i in first.obs_names]
        assert list(ps.id[:]) == ids
        assert ids != list(range(len(ids)))  # gaps: IDs, not positions
        for column in first.obs.columns:
            np.testing.assert_array_equal(
                np.asarray(ps[column].data[:]), first.obs[column].to_numpy(), err_msg=column
            )
        assert ps["iscell"].data.dtype == bool
        ypix, xpix, lam = (first.obsm[k] for k in ("ypix", "xpix", "lam"))
        for row in range(first.n_obs):
            mask = ps["pixel_mask"][row]
            np.testing.assert_array_equal(mask["x"], ypix[row])
            np.testing.assert_array_equal(mask["y"], xpix[row])
            np.testing.assert_array_equal(mask["weight"], lam[row])

        # summary images as Suite2p has them, (Ly, Lx)
        images = ophys["SummaryImages"]
        for key in ("meanImg", "meanImgE", "max_proj", "Vcorr"):
            np.testing.assert_array_equal(images[key].data[:], first.uns["suite2p"][key])

        # trials table
        table = f.trials.to_dataframe()
        assert table["trial_id"].tolist() == exp.trialIDs
        assert table["n_frames"].tolist() == [d.n_vars for d in trials]
        assert table["first_frame"].tolist() == [0, 200, 440]
        for k, d in enumerate(trials):
            t = d.var["time"].to_numpy()
            assert table["start_time"].iloc[k] == t[0]
            assert table["stop_time"].iloc[k] == pytest.approx(t[-1] + 1 / 30)

        # paq channels at frame times, with the paq's units
        paq = first.uns["paq"]
        units = dict(zip(paq["chan_names"], paq["units"], strict=True))
        assert sorted(f.acquisition) == sorted(units)
        for channel, unit in units.items():
            ts = f.acquisition[channel]
            assert ts.unit == unit
            expected = np.concatenate([d.var[channel].to_numpy() for d in trials])
            np.testing.assert_array_equal(ts.data[:], expected)
            np.testing.assert_array_equal(ts.timestamps[:], time)
            assert linked(out, f"acquisition/{channel}/timestamps")


def test_masks_rebuilt_from_the_file_lie_on_their_cells(ingested: Path, tmp_path: Path) -> None:
    exp = zs.open_experiment(ingested)
    first = exp.load_trial(exp.trialIDs[0]).data
    out = export_nwb(exp, tmp_path / "m.nwb", session_start_time=START, progress=False)
    io, f = read(out)
    with io:
        ophys = f.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        mean = ophys["SummaryImages"]["meanImg"].data[:]
        assert mean.shape == (LY, LX)
        cells = np.zeros((LY, LX))
        for row in range(len(ps)):
            mask = ps["pixel_mask"][row]
            # NWB's x is the images' first axis: image[x, y] = weight
            cells[mask["x"], mask["y"]] += mask["weight"]
    expected = np.zeros((LY, LX))
    for y, x, w in zip(first.obsm["ypix"], first.obsm["xpix"], first.obsm["lam"], strict=True):
        expected[y, x] += w
    np.testing.assert_allclose(cells, expected, rtol=1e-6)
    # and the masks sit on the bright cells of the mean image (the synthetic run draws
    # each ROI as a bright spot there): a transposed mask would not
    inside, outside = mean[cells > 0].mean(), mean[cells == 0].mean()
    assert inside > outside + 50, (inside, outside)


def test_a_regular_trial_is_written_with_a_rate(tmp_path: Path) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    rng = np.random.default_rng(0)
    for k, tid in enumerate(["a", "b", "c"]):
        X = rng.random((5, 40), dtype=np.float32)
        var = pd.DataFrame({"time": k * 2.0 + np.arange(40) / 20.0, "speed": rng.random(40)})
        var.index = var.index.astype(str)
        obs = pd.DataFrame(
            {"label": [f"r{i}" for i in range(5)], "kind": pd.Categorical(list("ababa"))},
            index=[f"roi{i}" for i in range(5)],
        )
        exp.add_trial(tid, zs.AnnotatedData(X, obs=obs, var=var, uns={"fs": 20.0}))
    # a Trial, and a list of trials, as the source; trials= picks from an Experiment
    one = export_nwb(exp.load_trial("b"), tmp_path / "b.nwb", session_start_time=START)
    two = export_nwb(exp, tmp_path / "ac.nwb", trials=["a", "c"], session_start_time=START)
    io, f = read(one)
    with io:
        rrs = f.processing["ophys"]["Fluorescence"]["F"]
        assert rrs.rate == 20.0 and rrs.starting_time == 2.0 and rrs.timestamps is None
        np.testing.assert_array_equal(rrs.data[:], np.asarray(exp.load_trial("b").data.X).T)
        ps = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
        # names that are not Suite2p indices: ids are positions, the names a column
        assert list(ps.id[:]) == list(range(5))
        assert list(ps["roi_name"].data[:]) == [f"roi{i}" for i in range(5)]
        assert list(ps["kind"].data[:]) == list("ababa")
        assert [len(ps["pixel_mask"][i]) for i in range(5)] == [0] * 5  # none stored
        assert f.acquisition["speed"].unit == "n.a."
        np.testing.assert_array_equal(
            f.acquisition["speed"].data[:], exp.load_trial("b").data.var["speed"].to_numpy()
        )
    io, f = read(two)
    with io:
        rrs = f.processing["ophys"]["Fluorescence"]["F"]
        # a gap between a and c: not one grid, so timestamps
        assert rrs.rate is None
        np.testing.assert_array_equal(
            rrs.timestamps[:], np.concatenate([np.arange(40) / 20.0, 4 + np.arange(40) / 20.0])
        )
        assert f.trials.to_dataframe()["trial_id"].tolist() == ["a", "c"]


def test_progress_reports_each_series(ingested: Path, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    export_nwb(
        zs.open_experiment(ingested),
        tmp_path / "p.nwb",
        session_start_time=START,
        progress=lambda label, done, total: calls.append((label, done, total)),
    )
    labels = list(dict.fromkeys(label for label, _, _ in calls))
    exp = zs.open_experiment(ingested)
    # one part per series, in the order the HDF5 writer takes them
    assert sorted(labels) == sorted(["F", *exp.load_trial(exp.trialIDs[0]).data.layers])
    for label in labels:
        mine = [(d, t) for lab, d, t in calls if lab == label]
        assert mine[-1][0] == mine[-1][1] and [d for d, _ in mine] == list(range(1, len(mine) + 1))


def test_never_replaces_and_leaves_no_half_file(ingested: Path, tmp_path: Path) -> None:
    exp = zs.open_experiment(ingested)
    existing = tmp_path / "taken.nwb"
    existing.write_bytes(b"not ours")
    with pytest.raises(AlreadyExistsError, match=r"taken\.nwb: it already exists"):
        export_nwb(exp, existing, session_start_time=START)
    assert existing.read_bytes() == b"not ours"

    def fail(label: str, done: int, total: int) -> None:
        if label == "Fneu":
            raise KeyboardInterrupt  # the user stops it halfway

    with pytest.raises(KeyboardInterrupt):
        export_nwb(exp, tmp_path / "half.nwb", session_start_time=START, progress=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.nwb"]


def test_errors_name_the_problem_and_the_fix(ingested: Path, tmp_path: Path) -> None:
    exp = zs.open_experiment(ingested)
    with pytest.raises(ValueError, match=r"NWB needs the session's start time; pass"):
        export_nwb(exp, tmp_path / "a.nwb")
    with pytest.raises(ValueError, match=r"2026-05-01T10:30:00 has no timezone"):
        export_nwb(
            exp, tmp_path / "a.nwb", session_start_time=datetime.datetime(2026, 5, 1, 10, 30)
        )
    with pytest.raises(ValueError, match=r"'yesterday' is not ISO 8601"):
        export_nwb(exp, tmp_path / "a.nwb", session_start_time="yesterday")
    with pytest.raises(ValueError, match=r"must end in \.nwb"):
        export_nwb(exp, tmp_path / "a.h5", session_start_time=START)
    with pytest.raises(KeyError, match=r"layer\(s\) \['deconv'\] are not in every trial"):
        export_nwb(exp, tmp_path / "a.nwb", session_start_time=START, layers=["deconv"])
    assert not list(tmp_path.iterdir())


def test_without_pynwb_the_error_names_the_extra(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynwb", None)  # what Python does for a missing package
    with pytest.raises(ImportError, match=r"pip install 'zstore\[nwb\]'"):
        export_nwb(zs.open_experiment(ingested), tmp_path / "a.nwb", session_start_time=START)


def test_nwbinspector_finds_nothing_of_ours(ingested: Path, tmp_path: Path) -> None:
    nwbinspector = pytest.importorskip("nwbinspector")
    out = export_nwb(
        zs.open_experiment(ingested),
        tmp_path / "i.nwb",
        session_start_time=START,
        subject=SUBJECT,
        location="VISp",
        indicator="GCaMP6s",
    )
    assert pynwb.validate(path=str(out)) == []  # the NWB schema
    messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(out)))
    serious = [
        m for m in messages if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "ERROR")
    ]
    assert not serious, [(m.check_function_name, m.message) for m in serious]


def test_cli_exports_nwb(ingested: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from zstore.cli import main

    out = tmp_path / "cli.nwb"
    assert main(["export", str(ingested), "--to", str(out)]) != 0  # no start time
    assert "--session-start-time" in capsys.readouterr().err
    assert not out.exists()
    args = ["export", str(ingested), "--to", str(out), "--session-start-time"]
    assert main([*args, "2026-05-01T10:30:00+01:00", "--subject", "RL109"]) == 0
    printed = capsys.readouterr().out
    assert f"to {out}" in printed and "3 trials" in printed
    io, f = read(out)
    with io:
        assert f.subject.subject_id == "RL109"
        assert f.session_start_time.isoformat() == "2026-05-01T10:30:00+01:00"
        shape = zs.open_experiment(ingested).concat().shape
        assert f.processing["ophys"]["Fluorescence"]["F"].data.shape == shape[::-1]


MEMORY_SCRIPT = """
import json, sys
import pynwb  # imported before the measurement: its code is not the export's data
import zstore as zs
from zstore.nwb import export_nwb

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

exp = zs.open_experiment(sys.argv[1])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
before = status("VmRSS:")
export_nwb(exp, sys.argv[2], session_start_time="2026-05-01T10:00:00+00:00",
           compression=None, progress=False)
print(json.dumps({"before_mb": before, "peak_mb": status("VmHWM:")}))
"""


def test_a_large_trial_streams_in_bounded_memory(tmp_path: Path) -> None:
    import dask.array as da

    n_rois, n_frames = 1024, 100_000  # 410 MB of float32
    X = da.random.default_rng(0).standard_normal(
        (n_rois, n_frames), chunks=(256, n_frames), dtype=np.float32
    )
    var = pd.DataFrame({"time": np.arange(n_frames) / 30.0}, index=np.arange(n_frames).astype(str))
    exp = zs.create_experiment(tmp_path / "big.zarr", exp_id="big")
    exp.add_trial("t", zs.AnnotatedData(X + 100, var=var, uns={"fs": 30.0}), progress=False)
    out = tmp_path / "big.nwb"
    run = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "big.zarr"), str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    size_mb = n_rois * n_frames * 4 / 2**20
    # the export alone, above what the process held before it (imports: ~190 MB, which
    # varies from machine to machine, so it is not part of the bound), is a fraction of
    # the trial: holding it, transposed, would take twice its size
    assert result["peak_mb"] - result["before_mb"] < 0.6 * size_mb, result
    io, f = read(out)
    with io:
        rrs = f.processing["ophys"]["Fluorescence"]["F"]
        assert rrs.data.shape == (n_frames, n_rois) and rrs.rate == 30.0
        stored = zs.open_experiment(tmp_path / "big.zarr").load_trial("t").data.X
        for rows in (slice(0, 700), slice(40_000, 40_300), slice(n_frames - 5, n_frames)):
            np.testing.assert_array_equal(rrs.data[rows], np.asarray(stored[:, rows]).T)
    shutil.rmtree(tmp_path)  # 800 MB of store and file


def test_any_trial_exports_with_its_columns(tmp_path: Path) -> None:
    from conftest import make_adata

    adata = make_adata(n_rois=12, n_frames=90)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    trial = exp.add_trial("t", adata)
    out = export_nwb(trial, tmp_path / "t.nwb", session_start_time=START)
    stored = exp.load_trial("t").data
    io, f = read(out)
    with io:
        ophys = f.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        assert list(ps.id[:]) == [int(i) for i in stored.obs_names] == list(range(0, 36, 3))
        for column in ("npix", "radius", "iscell", "label"):
            np.testing.assert_array_equal(
                np.asarray(ps[column].data[:]), stored.obs[column].to_numpy(), err_msg=column
            )
        assert list(ps["kind"].data[:]) == [str(v) for v in stored.obs["kind"]]
        np.testing.assert_array_equal(ps["med"].data[:], np.asarray(stored.obsm["med"]))
        # a ragged obsm (no mask triple here): one array per ROI, indexed
        for row in range(12):
            np.testing.assert_array_equal(ps["ypix"][row], stored.obsm["ypix"][row])
        np.testing.assert_array_equal(
            ophys["Fluorescence"]["Fneu"].data[:], np.asarray(stored.layers["Fneu"]).T
        )
        # a boolean var column: 0/1 per frame
        np.testing.assert_array_equal(
            f.acquisition["stim"].data[:], stored.var["stim"].to_numpy().astype(np.float32)
        )
        np.testing.assert_array_equal(
            ophys["SummaryImages"]["meanImg"].data[:], stored.uns["meanImg"]
        )


KILL_SCRIPT = """
import os, signal, sys
import zstore as zs
from zstore.nwb import export_nwb

def die(label, done, total):
    if label != "F":
        os.kill(os.getpid(), signal.SIGKILL)  # killed halfway through the file

export_nwb(zs.open_experiment(sys.argv[1]), sys.argv[2],
           session_start_time="2026-05-01T10:00:00+00:00", progress=die)
"""


def test_a_killed_export_leaves_nothing_under_the_name(ingested: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed.nwb"
    run = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ingested), str(out)])
    assert run.returncode == -9
    assert not out.exists()
    # what is left is the hidden partial file, never something named like the export
    assert [
        p.name.startswith(".killed.") and p.name.endswith(".partial.nwb")
        for p in tmp_path.iterdir()
    ] == [True]
