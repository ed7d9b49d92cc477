"""dF/F: the reference definition, laziness, warnings, maximin, neuropil, experiment-wide."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import icechunk
import numpy as np
import pytest
from conftest import ReadCounter, Where, raise_if_dask_computes
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d

import zstore as zs
from zstore.cli import main
from zstore.processing.reference import reference_dff

values = st.one_of(
    st.floats(-1000, 1000, width=32),
    st.sampled_from([0.0, 1.0, 1.0, 2.0, -3.0, 100.0]),  # ties at the percentile
    st.just(np.nan),
    st.sampled_from([np.inf, -np.inf]),
)


@settings(max_examples=300, deadline=None)
@given(
    arr=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)), elements=values),
    pct=st.floats(0, 100, exclude_min=True),  # 0: refused (every ROI all-NaN)
    constant_row=st.booleans(),
)
def test_matches_the_float64_reference(arr: np.ndarray, pct: float, constant_row: bool) -> None:
    if constant_row:
        arr[0] = arr[0, 0]
    with np.errstate(over="ignore"):
        want = reference_dff(arr, pct).astype(np.float32)  # float32 out, by contract
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zs.ZstoreWarning)
        got = zs.normalize_dff(arr, normalize_pct=pct)
        lazy = zs.normalize_dff(da.from_array(arr, chunks=(2, 7)), normalize_pct=pct).compute()
    assert got.dtype == np.float32 and got.shape == arr.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0, equal_nan=True)
    np.testing.assert_array_equal(lazy, got)


def test_integer_input_and_negative_baseline() -> None:
    F = np.array([[1, 2, 3, 4, 10], [-10, -8, -6, -4, -2]], dtype=np.int16)
    got = zs.normalize_dff(F, normalize_pct=50)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference_dff(F, 50), rtol=1e-6)
    assert got[1, 0] < 0 < got[1, -1], "|f0| keeps the sign of the change for negative baselines"


def test_all_nan_rows_are_reported_once_per_compute_naming_rois() -> None:
    X = np.random.default_rng(0).random((30, 50)).astype(np.float32) + 1
    X[[2, 17, 29], 5] = np.nan
    X[11] = 7.0  # constant: nothing strictly below the percentile
    with pytest.warns(
        zs.ZstoreWarning, match=r"4 of 30 ROIs have an all-NaN dF/F .*ROIs \[2, 11, 17, 29\]"
    ):
        out = zs.normalize_dff(X, normalize_pct=20)
    assert (
        np.isnan(out[[2, 11, 17, 29]]).all()
        and not np.isnan(np.delete(out, [2, 11, 17, 29], 0)).any()
    )

    lazy = zs.normalize_dff(
        da.from_array(X, chunks=(4, 50)), normalize_pct=20, roi_names=[f"c{i}" for i in range(30)]
    )
    for _ in range(2):  # once per compute, not once per block (the rows span 4 blocks)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lazy.compute()
        ours = [w for w in caught if issubclass(w.category, zs.ZstoreWarning)]
        assert len(ours) == 1
        assert "ROIs ['c2', 'c11', 'c17', 'c29']" in str(ours[0].message)
        assert ours[0].filename == __file__, "the warning points at the user's line"


def test_building_dff_and_adding_it_computes_nothing(tmp_path: Path, reads: ReadCounter) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    exp.add_trial("t", zs.AnnotatedData(np.random.default_rng(1).random((40, 60)).astype("f4") + 1))
    trial = zs.open_experiment(tmp_path / "e.zarr").load_trial("t")
    reads.reset()
    with raise_if_dask_computes():
        dff = zs.normalize_dff(trial.data.X, normalize_pct=50)
        trial.data.add_layer("dFF", dff)
        zs.normalize_dff(trial.data.X, baseline="maximin", fs=30.0)
        zs.neuropil_correct(trial.data.X, trial.data.X, coeff=0.7)
    assert reads.chunk_reads() == {}


def test_maximin_baseline_matches_suite2p_definition() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(3000) / 30.0
    X = (500 * np.exp(-t / 60)[None] + rng.normal(0, 5, (5, 3000)) + 100).astype(np.float32)
    got = zs.normalize_dff(X, baseline="maximin", fs=30.0, sig_baseline=10, win_baseline=20)
    smooth = gaussian_filter1d(X.astype(np.float64), 10, axis=1, mode="nearest")
    f0 = maximum_filter1d(minimum_filter1d(smooth, 600, axis=1), 600, axis=1)
    np.testing.assert_allclose(got, (X - f0) / np.abs(f0) * 100, rtol=1e-5, atol=1e-4)
    lazy = zs.normalize_dff(
        da.from_array(X, chunks=(2, 500)),
        baseline="maximin",
        fs=30.0,
        sig_baseline=10,
        win_baseline=20,
    )
    np.testing.assert_array_equal(lazy.compute(), got)
    with pytest.raises(ValueError, match="baseline='maximin' needs the frame rate: pass fs="):
        zs.normalize_dff(X, baseline="maximin")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"normalize_pct must be a percentile in \(0, 100\]"):
        zs.normalize_dff(np.ones((2, 3)), normalize_pct=120)
    with pytest.raises(ValueError, match="2-D array of ROIs x frames"):
        zs.normalize_dff(np.ones(3))
    with pytest.raises(ValueError, match="baseline must be one of"):
        zs.normalize_dff(np.ones((2, 3)), baseline="median")
    with pytest.raises(ValueError, match=r"F has shape \(2, 3\) but Fneu has shape \(2, 4\)"):
        zs.neuropil_correct(np.ones((2, 3)), np.ones((2, 4)))


def test_neuropil_correct_lazy_and_eager() -> None:
    F = np.full((2, 3), 10.0)
    Fneu = np.full((2, 3), 4.0)
    np.testing.assert_array_equal(
        zs.neuropil_correct(F, Fneu, coeff=0.5), np.full((2, 3), 8.0, np.float32)
    )
    lazy = zs.neuropil_correct(da.from_array(F), da.from_array(Fneu), coeff=0.5)
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute(), np.full((2, 3), 8.0))


def _experiment(
    where: Where | Path, n_trials: int = 3, n_rois: int = 30, n_frames: int = 200
) -> zs.Experiment:
    where = where if isinstance(where, Where) else Where(str(where))
    exp = where.create(exp_id="RL109")
    rng = np.random.default_rng(4)
    for k in range(n_trials):
        X = (rng.gamma(2, 30, (n_rois, n_frames)) + 200).astype(np.float32)
        exp.add_trial(f"t-{k:03d}", zs.AnnotatedData(X, uns={"fs": 30.0}))
    return exp


def test_concat_is_lazy_and_ordered(tmp_path: Path, reads: ReadCounter) -> None:
    _experiment(tmp_path / "e.zarr")
    exp = zs.open_experiment(tmp_path / "e.zarr")
    reads.reset()
    with raise_if_dask_computes():
        allf = exp.concat()
    assert not [k for k in reads.chunk_reads() if "/X/" in k]
    assert allf.shape == (30, 600)
    assert allf.var["trial"].tolist() == ["t-000"] * 200 + ["t-001"] * 200 + ["t-002"] * 200
    assert allf.var_names[200] == "t-001:0"
    parts = [exp.load_trial(t).data.X.compute() for t in exp.trialIDs]
    np.testing.assert_array_equal(allf.X.compute(), np.concatenate(parts, axis=1))
    with pytest.raises(KeyError, match="trial 't-000': there is no layer 'dFF'"):
        exp.concat(layer="dFF")


def test_concat_refuses_different_roi_sets() -> None:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    exp.add_trial("a", zs.AnnotatedData(np.ones((3, 4), "f4")))
    exp.add_trial("b", zs.AnnotatedData(np.ones((4, 4), "f4")))
    with pytest.raises(ValueError, match=r"trials \['b'\] have different ROIs from trial 'a'"):
        exp.concat()


def test_compute_dff_for_the_experiment(where: Where) -> None:
    exp = _experiment(where)
    assert zs.compute_dff(exp, layer="dFF", normalize_pct=20) == ["t-000", "t-001", "t-002"]
    again = where.open()
    for tid in again.trialIDs:
        data = again.load_trial(tid).data
        np.testing.assert_array_equal(
            data.layers["dFF"].compute(), zs.normalize_dff(data.X.compute(), normalize_pct=20)
        )
        assert data.uns["processing"]["dFF"]["source"] == "X"
    with pytest.raises(FileExistsError, match=r"already have a layer 'dFF'; pass overwrite=True"):
        zs.compute_dff(exp, layer="dFF")
    zs.compute_dff(exp, layer="dFF", normalize_pct=50, trials=["t-001"], overwrite=True)
    processing = where.open().load_trial("t-001").data.uns["processing"]["dFF"]
    assert processing["normalize_pct"] == 50.0
    allf = where.open().concat(layer="dFF")
    assert allf.shape == (30, 600) and allf.uns["layer"] == "dFF"
    with pytest.raises(PermissionError, match="opened read-only"):
        zs.compute_dff(where.open(), layer="dFF2")


def test_cli_dff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _experiment(tmp_path / "e.zarr", n_trials=2)
    assert main(["dff", str(tmp_path / "e.zarr"), "--pct", "50", "--layer", "dFF"]) == 0
    assert "saved layer 'dFF' for 2 trials" in capsys.readouterr().out
    assert (
        main(
            [
                "dff",
                str(tmp_path / "e.zarr"),
                "--baseline",
                "maximin",
                "--layer",
                "dFF_mm",
                "--trial",
                "t-001",
                "--window",
                "2",
            ]
        )
        == 0
    )
    exp = zs.open_experiment(tmp_path / "e.zarr")
    assert "dFF_mm" in exp.load_trial("t-001").data.layers
    assert "dFF_mm" not in exp.load_trial("t-000").data.layers
    assert main(["dff", str(tmp_path / "e.zarr")]) == 1
    assert "already have a layer 'dFF'" in capsys.readouterr().err


def test_provenance_travels_with_the_layer_and_goes_with_it(tmp_path: Path) -> None:
    F = (np.random.default_rng(3).gamma(2, 30, (12, 200)) + 100).astype(np.float32)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    adata = zs.AnnotatedData(F)
    adata.layers["Fneu"] = F * 0.3
    exp.add_trial("t", adata)
    trial = exp.load_trial("t")
    data = trial.data
    many = [zs.normalize_dff(data.X, normalize_pct=p % 100 + 1) for p in range(2000)]
    first = many[0]  # no registry, no limit: the first of 2000 still knows what it is
    assert zs.processing.provenance.provenance_of(first)["normalize_pct"] == 1.0  # type: ignore[index]
    corrected = zs.neuropil_correct(data.X, data.layers["Fneu"], coeff=0.7)
    data.add_layer("dFF", zs.normalize_dff(corrected, normalize_pct=20))
    data.add_layer("scaled", zs.normalize_dff(data.X, normalize_pct=20) * 1)  # another array
    data.add_layer("mine", np.zeros(data.shape, np.float32), provenance={"function": "mine"})
    trial.save()
    records = exp.load_trial("t").data.uns["processing"]
    assert records["dFF"]["function"] == "normalize_dff"
    assert records["dFF"]["source"] == "neuropil_correct(X, layers/Fneu, coeff=0.7)"
    assert "scaled" not in records  # dff * 1 is not normalize_dff's output: no record
    assert records["mine"] == {"function": "mine"}
    trial = exp.load_trial("t")
    trial.data.layers["dFF"] = np.full(trial.data.shape, -1, np.float32)  # replaced by numpy
    trial.save()
    assert "dFF" not in exp.load_trial("t").data.uns["processing"], "no stale record"


def test_all_nan_rows_are_reported_once_per_save_without_a_global_hook(tmp_path: Path) -> None:
    from dask.callbacks import Callback

    F = np.random.default_rng(1).random((30, 50)).astype("float32") + 1
    F[[3, 17]] = np.nan
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    exp.add_trial("t", zs.AnnotatedData(F))
    hooks = set(Callback.active)
    trial = exp.load_trial("t")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, roi_names=trial.data.obs_names))
    assert set(Callback.active) == hooks
    with pytest.warns(zs.ZstoreWarning) as caught:
        trial.save()
    ours = [str(w.message) for w in caught if issubclass(w.category, zs.ZstoreWarning)]
    assert ours == [
        "trial 't' layer 'dFF': normalize_dff: 2 of 30 ROIs have an all-NaN dF/F (a NaN in "
        "the trace, or no frame below the 20th percentile): ROIs ['3', '17']"
    ]
