"""Analysis-ready views: trial/experiment -> xarray, event-aligned windows, onsets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import icechunk.store
import numpy as np
import pandas as pd
import pytest
from conftest import Where, make_adata, raise_if_dask_computes

import zstore as zs
from zstore.errors import RoiNotFoundError

SMALL = zs.StorageConfig(shard_bytes=64 * 1024, inner_rois=8, inner_frames=64)


class ByteCounter:
    """Bytes fetched per key through Icechunk (each read's byte range, or the object)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fetched: dict[str, int] = {}
        get = icechunk.store.IcechunkStore.get

        async def counted(self_: Any, key: str, prototype: Any, byte_range: Any = None) -> Any:
            value = await get(self_, key, prototype, byte_range)
            if value is not None:
                self.fetched[key] = self.fetched.get(key, 0) + len(value)
            return value

        monkeypatch.setattr(icechunk.store.IcechunkStore, "get", counted)

    def matrix_bytes(self, name: str = "/X/c/") -> int:
        return sum(n for k, n in self.fetched.items() if name in k)


def _session_trials(exp: zs.Experiment, n: int = 3, frames: int = 300, rois: int = 40) -> None:
    for k in range(n):
        adata = make_adata(rois, frames, seed=k)
        adata.var["time"] = k * frames / 30.0 + np.arange(frames) / 30.0
        adata.var["stim"] = np.where(np.arange(frames) % 100 >= 90, 5.0, 0.0)
        adata.layers["dFF"] = (adata.X / 100).astype(np.float32)
        exp.add_trial(f"t-{k}", adata)


def test_a_trial_is_a_lazy_dataset_with_coordinates(where: Where) -> None:
    exp = where.create(exp_id="E", config=SMALL)
    _session_trials(exp)
    trial = exp.load_trial("t-1")
    with raise_if_dask_computes():
        ds = trial.to_xarray()
    data = trial.data
    assert set(ds.data_vars) == {"X", "Fneu", "dFF"} and ds.X.dims == ("roi", "time")
    assert ds.roi.values.tolist() == data.obs_names.tolist()
    np.testing.assert_array_equal(ds.time.values, data.var["time"].to_numpy())
    np.testing.assert_array_equal(ds.X.values, data.X.compute())
    np.testing.assert_array_equal(ds.dFF.values, data.layers["dFF"].compute())
    for column in ("npix", "radius", "iscell", "label"):
        np.testing.assert_array_equal(ds[column].values, data.obs[column].to_numpy())
    assert ds["kind"].values.tolist() == data.obs["kind"].astype(str).tolist()
    np.testing.assert_array_equal(ds["stim"].values, data.var["stim"].to_numpy())
    assert ds.attrs["fs"] == 30.0 and ds.attrs["trial"] == "t-1"
    window = ds.dFF.sel(time=slice(12.0, 13.0))
    np.testing.assert_allclose(window.time.values, data.var["time"].to_numpy()[60:91])
    np.testing.assert_array_equal(window.values, data.layers["dFF"].compute()[:, 60:91])
    assert trial.to_xarray(layers=["dFF"]).data_vars.keys() == {"X", "dFF"}
    with pytest.raises(KeyError, match="no layer"):
        trial.to_xarray(layers=["nope"])


def test_selections_read_only_their_chunks(where: Where, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = where.create(exp_id="E", config=SMALL)
    _session_trials(exp, n=1, frames=2048, rois=64)
    ds = where.open().load_trial("t-0").to_xarray()
    whole = ByteCounter(monkeypatch)
    ds.dFF.values  # noqa: B018 - reads everything, for scale
    everything = whole.matrix_bytes("/layers/dFF/c/")
    counter = ByteCounter(monkeypatch)
    ds.dFF.sel(time=slice(10.0, 11.0)).values  # noqa: B018 - 31 of 2048 frames
    assert 0 < counter.matrix_bytes("/layers/dFF/c/") < everything / 10
    counter = ByteCounter(monkeypatch)
    ds.dFF.isel(roi=[0, 1]).values  # noqa: B018 - 2 of 64 ROIs
    assert 0 < counter.matrix_bytes("/layers/dFF/c/") < everything / 4
    assert counter.matrix_bytes("/X/c/") == 0
    # event windows read only the spans around their events
    counter = ByteCounter(monkeypatch)
    trial = where.open().load_trial("t-0")
    zs.event_windows(trial, [20.0, 21.0], before=0.5, after=0.5).values  # noqa: B018
    assert 0 < counter.matrix_bytes("/layers/dFF/c/") < everything / 10


def test_an_experiment_is_its_trials_along_session_time(where: Where) -> None:
    exp = where.create(exp_id="E", config=SMALL)
    _session_trials(exp)
    ds = exp.to_xarray(layers=["dFF"])
    assert ds.sizes == {"roi": 40, "time": 900}
    assert np.all(np.diff(ds.time.values) > 0)
    assert ds.trial.values.tolist() == ["t-0"] * 300 + ["t-1"] * 300 + ["t-2"] * 300
    np.testing.assert_array_equal(
        ds.dFF.sel(time=slice(10.0, 10.5)).values,
        exp.load_trial("t-1").data.layers["dFF"].compute()[:, 0:16],
    )
    assert exp.to_xarray(where="trial != 't-0'").sizes["time"] == 600


def _reference(
    matrices: dict[str, np.ndarray],
    times: dict[str, np.ndarray],
    events: list[tuple[str, float]],
    n_before: int,
    n_after: int,
) -> np.ndarray:
    """Windows from the definition: the nearest frame, then frames -n_before..n_after,
    NaN outside the trial."""
    out = []
    for tid, t in events:
        m, tt = matrices[tid], times[tid]
        centre = int(np.argmin(np.abs(tt - t)))
        cols = []
        for k in range(-n_before, n_after + 1):
            j = centre + k
            cols.append(m[:, j] if 0 <= j < m.shape[1] else np.full(m.shape[0], np.nan))
        out.append(np.stack(cols, axis=1))
    return np.stack(out)


def test_event_windows_are_exact_lazy_and_padded_at_edges(where: Where) -> None:
    exp = where.create(exp_id="E", config=SMALL)
    _session_trials(exp)
    trials = {t: exp.load_trial(t).data for t in exp.trialIDs}
    mats = {t: d.layers["dFF"].compute() for t, d in trials.items()}
    times = {t: d.var["time"].to_numpy() for t, d in trials.items()}
    onsets = zs.events_from_channel(exp, "stim", threshold=2.5)
    assert onsets["trial"].tolist() == ["t-0"] * 3 + ["t-1"] * 3 + ["t-2"] * 3
    np.testing.assert_allclose(onsets["time"][:3], np.array([90, 190, 290]) / 30.0)
    # onsets, plus events at both edges of a trial (padded with NaN)
    events = pd.concat(
        [onsets, pd.DataFrame({"trial": ["t-1", "t-2"], "time": [10.0, 29.98]})],
        ignore_index=True,
    )
    with raise_if_dask_computes():
        w = zs.event_windows(exp, events, before=0.5, after=1.0, layer="dFF")
    assert w.dims == ("event", "roi", "lag") and w.sizes["lag"] == 15 + 30 + 1
    np.testing.assert_allclose(w.lag.values, np.arange(-15, 31) / 30.0)
    expected = _reference(
        mats, times, list(zip(events["trial"], events["time"], strict=True)), 15, 30
    )
    np.testing.assert_array_equal(w.values, expected)
    assert np.isnan(w.values[-2, :, :15]).all() and not np.isnan(w.values[-2, :, 15:]).any()
    assert np.isnan(w.values[-1, :, 16:]).all() and not np.isnan(w.values[-1, :, :16]).any()
    assert w.trial.values.tolist() == events["trial"].tolist()
    # plain session times are placed in their trial; a trial takes its own times
    w2 = zs.event_windows(exp, [3.0, 15.0], before=0.1, after=0.1, layer="dFF")
    assert w2.trial.values.tolist() == ["t-0", "t-1"]
    one = zs.event_windows(exp.load_trial("t-1"), [15.0], before=0.1, after=0.1, layer="dFF")
    np.testing.assert_array_equal(one.values[0], w2.values[1])
    # baseline: each window minus its mean over the lags given
    b = zs.event_windows(exp, onsets, before=0.5, after=1.0, layer="dFF", baseline=(-0.5, 0))
    raw = _reference(mats, times, list(zip(onsets["trial"], onsets["time"], strict=True)), 15, 30)
    np.testing.assert_allclose(
        b.values, raw - raw[:, :, :16].mean(axis=2, keepdims=True), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="falls in no trial"):
        zs.event_windows(exp, [500.0], before=0.1, after=0.1)
    with pytest.raises(KeyError, match="no var column"):
        zs.events_from_channel(exp.load_trial("t-0"), "lick", 1.0)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_windows_of_many_events_stream_in_bounded_memory(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # local: 4096 ROIs x 60000 frames (983 MB as float32); S3 (moto): 2048 x 60000
    # (491 MB). 1000 events of 3 s at 30 Hz, averaged per ROI and lag: never the whole
    # trial in memory.
    import json

    if kind == "local":
        path, options, n_rois = str(tmp_path / "big.zarr"), None, 4096
    else:
        s3 = request.getfixturevalue("s3")
        path, options, n_rois = f"s3://{s3.new_bucket()}/big.zarr", s3.options(), 2048
    child = textwrap.dedent(
        """
        import sys, json, numpy as np, dask.array as da, pandas as pd, zstore as zs
        from pathlib import Path
        path, options, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
        exp = zs.create_experiment(path, exp_id="E", storage_options=options)
        f = 60000
        X = da.random.default_rng(0).random((n, f), chunks=(128, f)).astype("float32")
        var = pd.DataFrame({"time": np.arange(f) / 30.0}, index=[str(i) for i in range(f)])
        exp.add_trial("t", zs.AnnotatedData(X, var=var, uns={"fs": 30.0}))
        def rss(field):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1]) // 1024
        Path("/proc/self/clear_refs").write_text("5")
        before = rss("VmRSS")
        trial = zs.open_experiment(path, storage_options=options).load_trial("t")
        events = np.random.default_rng(1).uniform(1, f / 30.0 - 2, 1000)
        w = zs.event_windows(trial, events, before=1.0, after=2.0, layer=None)
        mean = w.mean("event").values
        assert mean.shape == (n, 91) and np.isfinite(mean).all()
        print(before, rss("VmHWM"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child, path, json.dumps(options), str(n_rois)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, peak = (int(v) for v in done.stdout.split())
    trial_mb = n_rois * 60000 * 4 / 2**20
    assert peak - before < 0.6 * trial_mb, (before, peak, trial_mb)


def test_the_event_average_is_drawn_from_the_windows() -> None:
    pytest.importorskip("matplotlib")
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    _session_trials(exp, n=2)
    onsets = zs.events_from_channel(exp, "stim", threshold=2.5)
    w = zs.event_windows(exp, onsets, before=0.5, after=1.0, layer="dFF")
    ax = zs.plot.plot_event_average(w, ["0", "3"])
    lines = [line for line in ax.get_lines() if line.get_label().startswith("ROI")]
    assert [line.get_label() for line in lines] == ["ROI 0", "ROI 3"]
    np.testing.assert_allclose(lines[1].get_ydata(), w.sel(roi="3").mean("event").values)
    assert ax.get_xlabel() == "time from event (s)"
    # a layer named dFF without a processing record: its unit is not known, none is claimed
    assert ax.get_ylabel() == "dFF, mean ± SEM"
    assert ax.get_title() == "E · 2 trials · dFF around 6 events"
    heat = zs.plot.plot_event_average(w, kind="heatmap")
    np.testing.assert_allclose(heat.images[0].get_array(), w.mean("event").values)
    assert heat.get_yticklabels()[0].get_text() == "0"  # stored ROI IDs, not positions
    with pytest.raises(RoiNotFoundError, match=r"ROI 999 is not stored in the windows \(E · 2"):
        zs.plot.plot_event_average(w, ["999"])


def test_a_collection_selection_is_one_dataset_per_experiment(tmp_path: Path) -> None:
    import zstore.synthetic as syn

    col = syn.write_collection(tmp_path / "lab.zarr", n_trials=3, n_frames=40)
    views = col.to_xarray(where="plane == 1 and trial != 't-000'")
    assert list(views) == [e for e in col.experimentIDs if e.endswith("plane1")]
    ds = views["RL110_2024-05-02_plane1"]
    assert ds.trial.values.tolist() == ["t-001"] * 40 + ["t-002"] * 40
    exp = col.open_experiment("RL110_2024-05-02_plane1")
    np.testing.assert_array_equal(ds.X.values[:, 40:], exp.load_trial("t-002").data.X.compute())
    assert np.all(np.diff(ds.time.values) > 0)


def test_xarray_reads_a_trial_directly_and_anndata_still_does(where: Where) -> None:
    import anndata
    import xarray as xr

    exp = where.create(exp_id="E", config=SMALL)
    exp.add_trial("t", make_adata(12, 50))
    trial = exp.load_trial("t")
    trial.data.add_obs("depth_um", np.arange(12.0))  # a save names the new array too
    trial.save()
    group = exp.refresh().open_zarr("trials/t")
    tree = xr.open_datatree(group.store, group=group.path, engine="zarr", consolidated=False)
    assert tree["obs"].sizes["roi"] == 12 and tree["var"].sizes["frame"] == 50
    np.testing.assert_array_equal(tree["obs"]["depth_um"].values, np.arange(12.0))
    np.testing.assert_array_equal(tree["obs/kind"]["codes"].dims, ["roi"])
    assert tree["X"].dims == ("roi", "frame") and tree["obsm"]["med"].dims[0] == "roi"
    var = xr.open_zarr(group.store, group=f"{group.path}/var", consolidated=False)
    np.testing.assert_array_equal(var["time"].values, np.arange(50) / 30.0)
    plain = anndata.read_zarr(group)  # anndata ignores the dimension names
    expected = exp.load_trial("t").data
    pd.testing.assert_frame_equal(plain.obs, expected.obs, check_dtype=False)
    pd.testing.assert_frame_equal(plain.var, expected.var)


@pytest.mark.filterwarnings("ignore:Converting 'd' to numpy.array")  # on restrict: pynapple loads
def test_trials_as_a_lazy_pynapple_frame(where: Where) -> None:
    nap = pytest.importorskip("pynapple")
    exp = where.create(exp_id="E", config=SMALL)
    _session_trials(exp)
    trial = exp.load_trial("t-1")
    with raise_if_dask_computes():
        tsd = trial.to_pynapple("dFF")
    assert isinstance(tsd, nap.TsdFrame)
    assert list(tsd.columns) == trial.data.obs_names.tolist()
    np.testing.assert_array_equal(tsd.t, trial.data.var["time"].to_numpy())
    np.testing.assert_array_equal(np.asarray(tsd.values), trial.data.layers["dFF"].compute().T)
    assert tsd.metadata["npix"].tolist() == trial.data.obs["npix"].tolist()
    whole = exp.to_pynapple("dFF")
    assert len(whole.time_support) == 3
    assert whole.time_support.metadata["trial"].tolist() == ["t-0", "t-1", "t-2"]
    np.testing.assert_allclose(whole.time_support.start, [0.0, 10.0, 20.0])
    part = whole.restrict(nap.IntervalSet(start=12.0, end=13.0))  # both ends included
    np.testing.assert_array_equal(
        np.asarray(part.values), trial.data.layers["dFF"].compute()[:, 60:91].T
    )


def test_event_windows_refuse_what_would_give_wrong_windows() -> None:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    _session_trials(exp, n=2)
    trial = exp.load_trial("t-1")
    with pytest.raises(ValueError, match="lie outside trial 't-1'"):
        zs.event_windows(trial, [1e6], before=0.1, after=0.1)
    with pytest.raises(ValueError, match="lie outside trial 't-0'"):
        zs.event_windows(exp, pd.DataFrame({"trial": ["t-0"], "time": [15.0]}), before=0, after=0)
    with pytest.raises(ValueError, match="holds no lag"):
        zs.event_windows(trial, [15.0], before=0.1, after=0.1, baseline=(-1.0, -0.5))
    for bad in ("pre", (None, 0), 0.5):
        with pytest.raises(ValueError, match="baseline must be"):
            zs.event_windows(trial, [15.0], before=0.1, after=0.1, baseline=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="number of seconds"):
        zs.event_windows(trial, [15.0], before="1", after=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="events must be times"):
        zs.event_windows(trial, {"a": 1}, before=0.1, after=0.1)
    with pytest.raises(TypeError, match="stored Trial or Experiment"):
        zs.event_windows(trial.data, [15.0], before=0.1, after=0.1)
    # missing trials in a DataFrame are placed by session time
    w = zs.event_windows(
        exp, pd.DataFrame({"trial": ["t-0", None], "time": [2.0, 12.0]}), before=0, after=0
    )
    assert w.trial.values.tolist() == ["t-0", "t-1"]
    # times that run backwards, or no times at all, are refused
    X = np.arange(20, dtype="float32").reshape(2, 10)
    back = pd.DataFrame(
        {"time": np.r_[np.arange(5), np.arange(5)] / 10.0}, index=list("abcdefghij")
    )
    bad = exp.add_trial("back", zs.AnnotatedData(X, var=back, uns={"fs": 10.0}))
    with pytest.raises(ValueError, match="does not increase"):
        zs.event_windows(bad, [0.2], before=0.1, after=0.1, layer=None)
    bare = exp.add_trial("bare", zs.AnnotatedData(X))
    with pytest.raises(ValueError, match="neither frame times"):
        zs.event_windows(bare, [2.0], before=1, after=1, layer=None)
    assert bare.to_xarray().attrs["time_units"] == "frames"


def test_layers_named_like_x_or_a_coordinate_keep_their_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zstore.names import RESERVED_LAYER_NAMES

    monkeypatch.delitem(RESERVED_LAYER_NAMES, "X")  # a layer 'X' an older zstore stored
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    X = np.zeros((2, 5), dtype="float32")
    adata = zs.AnnotatedData(X)
    adata.layers["X"] = np.full((2, 5), -1, dtype="float32")
    adata.layers["time"] = np.full((2, 5), 7, dtype="float32")
    ds = exp.add_trial("t", adata).to_xarray()
    assert ds["X"].values.max() == 0 and ds["layer_X"].values.min() == -1
    assert ds["layer_time"].values.min() == 7 and ds["time"].dims == ("time",)


def test_placement_text_columns_and_one_event_plots() -> None:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    X = np.arange(200, dtype="float32").reshape(2, 100)
    var = pd.DataFrame({"time": np.arange(100) / 15.0}, index=[str(i) for i in range(100)])
    obs = pd.DataFrame({"label": pd.array(["a", None], dtype="string")}, index=["0", "1"])
    trial = exp.add_trial("t", zs.AnnotatedData(X, obs=obs, var=var, uns={"fs": 30.0}))
    # frames run to 6.6 s at 15 Hz although uns says 30 Hz: placed by its frame times
    w = zs.event_windows(exp, [5.0], before=0.0, after=0.0, layer=None)
    assert w.trial.values.tolist() == ["t"] and w.values[0, :, 0].tolist() == [75.0, 175.0]
    assert trial.to_xarray()["label"].values.tolist() == ["a", None]  # missing stays missing
    pytest.importorskip("matplotlib")
    ax = zs.plot.plot_event_average(w, "1")
    assert ax.get_title() == "E · t · F around 1 event"
    edge = zs.event_windows(trial, [0.0], before=1.0, after=0.0, layer=None)
    edge = edge.isel(lag=slice(0, 5))  # only frames before the trial: all NaN
    with pytest.warns(zs.ZstoreWarning, match="every window"):
        zs.plot.plot_event_average(edge, ["0"])
