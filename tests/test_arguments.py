"""Issue 17, "API arguments": each bad argument gives a zstore error naming it and the fix.

One test per case of the issue (or a parametrized test whose ids name the cases); each
asserts the error's type and the words that matter: the argument, and the way out in
the ``pass name=...`` form the CLI rewrites to its flags.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from scipy.ndimage import maximum_filter1d, minimum_filter1d

import zstore as zs
from zstore.errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
    PathNotFoundError,
    RowPositionError,
    TrialNotFoundError,
    UnstorableValueError,
)
from zstore.validate import trial_ids

N_ROIS, N_FRAMES = 4, 40
F = (np.random.default_rng(0).gamma(2.0, 30.0, (N_ROIS, N_FRAMES)) + 100).astype(np.float32)


def _experiment(path: Path, *, fs: dict[str, Any] | None = None) -> zs.Experiment:
    """Two trials (t-005, t-006) of the same ROIs, each with uns fs (or ``fs[trial]``)."""
    exp = zs.create_experiment(path / "exp.zarr", exp_id="RL109")
    for k, tid in enumerate(["t-005", "t-006"]):
        rate = (fs or {}).get(tid, 30.0)
        uns = {} if rate is None else {"fs": rate}
        exp.add_trial(tid, zs.AnnotatedData(F + k, uns=uns))
    return exp


def _layers(exp: zs.Experiment) -> dict[str, list[str]]:
    return {tid: exp.layer_names(tid) for tid in exp.trialIDs}


# -- normalize_pct ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        pytest.param("fifty", ArgumentTypeError, "got 'fifty' (str)", id="pct-text-fifty"),
        pytest.param(None, ArgumentTypeError, "got None", id="pct-None"),
        pytest.param(True, ArgumentTypeError, "got True (bool)", id="pct-True-is-not-1"),
        pytest.param(np.bool_(False), ArgumentTypeError, "(bool)", id="pct-numpy-bool"),
        pytest.param(0, InvalidArgumentError, "every ROI would be all-NaN", id="pct-0-all-NaN"),
        pytest.param(-1, InvalidArgumentError, "in (0, 100], got -1", id="pct-negative"),
        pytest.param(100.5, InvalidArgumentError, "in (0, 100], got 100.5", id="pct-above-100"),
        pytest.param(float("nan"), InvalidArgumentError, "finite number", id="pct-nan"),
    ],
)
def test_normalize_pct_is_a_percentile_in_0_to_100(value: Any, error: type, words: str) -> None:
    with pytest.raises(error, match="normalize_pct") as info:
        zs.normalize_dff(F, normalize_pct=value)
    assert words in str(info.value)
    assert "pass normalize_pct=<percent in (0, 100]>" in str(info.value)


def test_normalize_pct_100_and_tiny_work() -> None:
    assert np.isfinite(zs.normalize_dff(F, normalize_pct=100)).all()
    assert zs.normalize_dff(F, normalize_pct=1e-9).shape == F.shape  # > 0: allowed


# -- maximin: fs, win_baseline, sig_baseline --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        pytest.param({"fs": np.inf}, InvalidArgumentError, "fs must be a finite", id="fs-inf"),
        pytest.param({"fs": "30"}, ArgumentTypeError, "fs must be a number", id="fs-text-30"),
        pytest.param({"fs": True}, ArgumentTypeError, "(bool)", id="fs-True"),
        pytest.param({"fs": 0}, InvalidArgumentError, "fs must be a number > 0", id="fs-0"),
        pytest.param({"fs": None}, InvalidArgumentError, "needs the frame rate", id="fs-None"),
        pytest.param(
            {"fs": 30, "win_baseline": np.inf},
            InvalidArgumentError,
            "win_baseline must be a finite",
            id="win-inf",
        ),
        pytest.param(
            {"fs": 30, "win_baseline": -1},
            InvalidArgumentError,
            "win_baseline must be a number > 0",
            id="win-negative",
        ),
        pytest.param(
            {"fs": 30, "sig_baseline": np.inf},
            InvalidArgumentError,
            "sig_baseline must be a finite",
            id="sig-inf",
        ),
        pytest.param(
            {"fs": 30, "sig_baseline": 1e9},
            InvalidArgumentError,
            f"wider than the trace ({N_FRAMES} frames)",
            id="sig-1e9-no-60-GiB",
        ),
        pytest.param(
            {"fs": 30, "sig_baseline": "10"}, ArgumentTypeError, "sig_baseline", id="sig-text"
        ),
    ],
)
def test_maximin_parameters_are_checked_before_any_work(
    kwargs: dict[str, Any], error: type, words: str
) -> None:
    name = next(k for k in ("sig_baseline", "win_baseline", "fs") if k in kwargs)
    with pytest.raises(error) as info:
        zs.normalize_dff(F, baseline="maximin", **kwargs)
    assert words in str(info.value)
    assert f"pass {name}=<" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"fs": 1e12}, id="fs-1e12"),
        pytest.param({"fs": 30, "win_baseline": 1e12}, id="win-1e12"),
        pytest.param({"fs": 1e300, "win_baseline": 1e300}, id="window-beyond-float-range"),
    ],
)
def test_a_window_longer_than_the_trace_is_the_whole_trace(kwargs: dict[str, Any]) -> None:
    """Clipped, not refused: a window of 2n - 1 frames already covers the whole trace at
    every frame, so any longer one gives exactly the same baseline (no MemoryError)."""
    got = zs.normalize_dff(F, baseline="maximin", sig_baseline=0, **kwargs)
    whole = zs.normalize_dff(
        F, baseline="maximin", sig_baseline=0, fs=1.0, win_baseline=2 * N_FRAMES - 1
    )
    np.testing.assert_array_equal(got, whole)
    # and that is what scipy computes with the longer window itself (3n frames)
    x = F.astype(np.float64)
    f0 = maximum_filter1d(minimum_filter1d(x, 3 * N_FRAMES, axis=1), 3 * N_FRAMES, axis=1)
    np.testing.assert_allclose(got, ((x - f0) / np.abs(f0) * 100).astype(np.float32))


def test_baseline_and_arr_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match=r"baseline must be one of .*pass baseline="):
        zs.normalize_dff(F, baseline="median")
    with pytest.raises(ArgumentTypeError, match="baseline must be one of"):
        zs.normalize_dff(F, baseline=None)
    with pytest.raises(InvalidArgumentError, match=r"2-D array of ROIs x frames, got shape \(3,\)"):
        zs.normalize_dff(np.ones(3))
    with pytest.raises(ArgumentTypeError, match=r"\.toarray\(\)"):
        zs.normalize_dff(scipy.sparse.csr_matrix(F))
    with pytest.raises(ArgumentTypeError, match="must hold numbers, got an array of dtype <U"):
        zs.normalize_dff(np.array([["a", "b"]]))
    with pytest.raises(InvalidArgumentError, match="roi_names has 2 names but arr has 4 ROIs"):
        zs.normalize_dff(F, roi_names=["a", "b"])
    assert zs.normalize_dff(F.tolist()).shape == F.shape  # a list of lists is an array


def test_neuropil_coeff_and_shapes() -> None:
    with pytest.raises(ArgumentTypeError, match=r"coeff must be a number.*pass coeff="):
        zs.neuropil_correct(F, F, coeff="0.7")
    with pytest.raises(InvalidArgumentError, match=r"F has shape \(4, 40\) but Fneu"):
        zs.neuropil_correct(F, F[:, :3])


# -- trials= --------------------------------------------------------------------------------


def test_compute_dff_takes_one_str_as_one_trial(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    assert zs.compute_dff(exp, trials="t-005") == ["t-005"]
    assert _layers(exp) == {"t-005": ["dFF"], "t-006": []}


def test_compute_dff_refuses_duplicate_trial_ids(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(InvalidArgumentError, match="names the trial ID 't-006' twice"):
        zs.compute_dff(exp, trials=["t-006", "t-005", "t-006"])
    assert _layers(exp) == {"t-005": [], "t-006": []}  # nothing written


def test_concat_refuses_duplicate_trial_ids(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"'t-005' twice; pass trials=\[...\]"):
        exp.concat(trials=["t-005", "t-005"])


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda exp: exp.concat(trials="t-006").var["trial"].unique(), id="concat"),
        pytest.param(lambda exp: exp.to_xarray(trials="t-006").trial.values, id="to_xarray"),
        pytest.param(
            lambda exp: exp.to_pynapple(None, trials="t-006").time_support["trial"],
            id="to_pynapple",
        ),
        pytest.param(
            lambda exp: [t for t in exp.to_xarray(trials=("t-006",)).trial.values],
            id="to_xarray-tuple",
        ),
    ],
)
def test_every_trials_parameter_takes_a_str_as_one_id(tmp_path: Path, call: Any) -> None:
    exp = _experiment(tmp_path)
    assert set(np.asarray(call(exp)).tolist()) == {"t-006"}


def test_export_takes_a_str_as_one_trial(tmp_path: Path) -> None:
    import anndata

    exp = _experiment(tmp_path)
    out = zs.export(exp, tmp_path / "one.h5ad", trials="t-006")
    assert anndata.read_h5ad(out).shape == (N_ROIS, N_FRAMES)
    with pytest.raises(InvalidArgumentError, match="export: trials names the trial ID 't-005'"):
        zs.export(exp, tmp_path / "two.h5ad", trials=["t-005", "t-005"])
    assert not (tmp_path / "two.h5ad").exists()


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        pytest.param(b"t-005", ArgumentTypeError, "got b't-005' (bytes)", id="bytes"),
        pytest.param({"t-005": 1}, ArgumentTypeError, "(dict)", id="dict"),
        pytest.param({"t-005"}, ArgumentTypeError, "(set)", id="set-has-no-order"),
        pytest.param(5, ArgumentTypeError, "got 5 (int)", id="int"),
        pytest.param(["t-005", 6], ArgumentTypeError, "as str, got 6 (int)", id="int-item"),
    ],
)
def test_trials_of_other_types_are_refused_with_the_form_to_use(
    value: Any, error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        trial_ids(value, where="compute_dff")
    assert words in str(info.value)
    assert "pass trials=['t-005', ...] (or one trial ID as a str: trials='t-005')" in str(
        info.value
    )


def test_unknown_trial_ids_are_named(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(TrialNotFoundError, match=r"trials \['t-999'\] are not in experiment"):
        zs.compute_dff(exp, trials=["t-005", "t-999"])
    assert _layers(exp) == {"t-005": [], "t-006": []}


# -- compute_dff checks every trial before writing the first ---------------------------------------


def test_a_source_layer_missing_in_the_second_trial_writes_nothing(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    trial = exp.load_trial("t-005")
    trial.data.add_layer("Fcorr", F * 0.9)
    trial.save()
    with pytest.raises(KeyNotFoundError) as info:
        zs.compute_dff(exp, source="Fcorr", layer="dFF")
    message = str(info.value)
    assert "trials ['t-006']" in message and "no layer 'Fcorr'" in message
    assert "nothing was written" in message and "pass source=None" in message
    assert _layers(exp) == {"t-005": ["Fcorr"], "t-006": []}  # no half-done run


def test_maximin_without_a_frame_rate_in_the_second_trial_writes_nothing(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, fs={"t-006": None})
    with pytest.raises(InvalidArgumentError) as info:
        zs.compute_dff(exp, baseline="maximin")
    assert "trial 't-006' has uns['fs']=None" in str(info.value)
    assert "pass fs=<Hz>" in str(info.value)
    assert _layers(exp) == {"t-005": [], "t-006": []}
    assert zs.compute_dff(exp, baseline="maximin", fs=30.0) == ["t-005", "t-006"]


def test_sigma_longer_than_a_trial_writes_nothing(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(InvalidArgumentError, match="compute_dff: trial 't-005': sig_baseline"):
        zs.compute_dff(exp, baseline="maximin", sig_baseline=1e9)
    assert _layers(exp) == {"t-005": [], "t-006": []}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        pytest.param(
            {"normalize_pct": "fifty"}, ArgumentTypeError, "compute_dff: normalize_pct", id="pct"
        ),
        pytest.param(
            {"overwrite": "yes"}, ArgumentTypeError, "pass overwrite=True", id="overwrite"
        ),
        pytest.param({"progress": "bar"}, ArgumentTypeError, "pass progress=True", id="progress"),
        pytest.param({"where": 5}, ArgumentTypeError, "where must be text", id="where"),
        pytest.param({"normalise_pct": 20}, ArgumentTypeError, "['normalise_pct']", id="typo"),
        pytest.param({"source": 5}, zs.errors.InvalidNameError, "source layer name", id="source"),
    ],
)
def test_compute_dff_arguments(
    tmp_path: Path, kwargs: dict[str, Any], error: type, words: str
) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(error) as info:
        zs.compute_dff(exp, **kwargs)
    assert words in str(info.value)
    assert _layers(exp) == {"t-005": [], "t-006": []}


def test_compute_dff_needs_an_experiment() -> None:
    with pytest.raises(ArgumentTypeError, match="needs an Experiment or a Collection"):
        zs.compute_dff("exp.zarr")


# -- add_layer ---------------------------------------------------------------------------------


def test_add_layer_refuses_a_sparse_matrix_with_the_fix() -> None:
    adata = zs.AnnotatedData(F)
    with pytest.raises(ArgumentTypeError) as info:
        adata.add_layer("dFF", scipy.sparse.csr_matrix(F))
    assert "add_layer('dFF')" in str(info.value)
    assert "pass data=<matrix>.toarray()" in str(info.value)
    assert "dFF" not in adata.layers


def test_add_layer_takes_a_list_of_lists_of_the_right_shape() -> None:
    adata = zs.AnnotatedData(F)
    adata.add_layer("dFF", F.tolist())
    np.testing.assert_array_equal(adata.layers["dFF"], F)
    with pytest.raises(InvalidArgumentError) as info:
        adata.add_layer("short", F[:2].tolist())
    message = str(info.value)
    assert "add_layer('short')" in message
    assert f"the data has shape (2, {N_FRAMES}) but X has shape ({N_ROIS}, {N_FRAMES})" in message


def test_add_layer_refuses_what_is_not_a_matrix_of_numbers() -> None:
    adata = zs.AnnotatedData(F)
    with pytest.raises(ArgumentTypeError, match=r"add_layer\('x'\): data must be a 2-D array"):
        adata.add_layer("x", None)
    with pytest.raises(ArgumentTypeError, match="must hold numbers, got an array of dtype <U1"):
        adata.add_layer("x", np.full(F.shape, "a"))
    with pytest.raises(ArgumentTypeError, match="cannot be read as a 2-D array"):
        adata.add_layer("x", [[1.0, 2.0], [3.0]])


def test_add_obs_refuses_values_that_are_not_one_per_roi() -> None:
    adata = zs.AnnotatedData(F)
    with pytest.raises(ArgumentTypeError, match=r"values must be a list or 1-D array.*got set"):
        adata.add_obs("depth", {1, 2, 3, 4})
    with pytest.raises(InvalidArgumentError, match=r"must be 1-D .*got shape \(4, 2\)"):
        adata.add_obs("depth", np.ones((N_ROIS, 2)))
    with pytest.raises(ArgumentTypeError, match=r"ragged per-ROI arrays go to obsm"):
        adata.add_obs("pix", [[1, 2], [3], [4, 5, 6], []])
    with pytest.raises(zs.errors.InvalidNameError, match="column names are str"):
        adata.del_obs(["depth"])


# -- StorageConfig ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        pytest.param({"clevel": 100}, InvalidArgumentError, "clevel must be 0..9", id="clevel-100"),
        pytest.param(
            {"clevel": -3}, InvalidArgumentError, "clevel must be an int >= 0", id="clevel-minus-3"
        ),
        pytest.param({"clevel": "5"}, ArgumentTypeError, "got '5' (str)", id="clevel-text-5"),
        pytest.param({"clevel": True}, ArgumentTypeError, "got True (bool)", id="clevel-True"),
        pytest.param({"clevel": 5.0}, ArgumentTypeError, "got 5.0 (float)", id="clevel-float"),
        pytest.param(
            {"codec": "zstd", "clevel": 23}, InvalidArgumentError, "-131072..22", id="zstd-23"
        ),
        pytest.param(
            {"codec": "lz5"}, InvalidArgumentError, "codec must be one of", id="codec-unknown"
        ),
        pytest.param({"codec": None}, ArgumentTypeError, "codec must be one of", id="codec-None"),
        pytest.param(
            {"shard_bytes": 0},
            InvalidArgumentError,
            "shard_bytes must be an int >= 1",
            id="shard-0",
        ),
        pytest.param(
            {"shard_bytes": 2**60}, InvalidArgumentError, "at most 2**53", id="shard-huge"
        ),
        pytest.param(
            {"inner_rois": 1.5},
            ArgumentTypeError,
            "inner_rois must be a whole number",
            id="inner-float",
        ),
        pytest.param({"inner_frames": False}, ArgumentTypeError, "(bool)", id="inner-bool"),
    ],
)
def test_storage_config_checks_every_field_when_made(
    kwargs: dict[str, Any], error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        zs.StorageConfig(**kwargs)
    assert str(info.value).startswith("StorageConfig: ")
    assert words in str(info.value)
    name = next(iter(kwargs)) if "clevel" not in kwargs else "clevel"
    assert f"pass {name}=" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"codec": "zstd", "clevel": 22}, id="zstd-22"),
        pytest.param({"codec": "zstd", "clevel": -5}, id="zstd-fast-level"),
        pytest.param({"codec": "blosc-zstd-bit", "clevel": 9}, id="blosc-9"),
        pytest.param({"clevel": np.int64(3), "inner_rois": np.int32(8)}, id="numpy-ints"),
    ],
)
def test_storage_config_valid_levels_write(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    config = zs.StorageConfig(**kwargs)
    assert type(config.clevel) is int and type(config.inner_rois) is int  # JSON-ready
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E", config=config)
    exp.add_trial("t", zs.AnnotatedData(F))
    np.testing.assert_array_equal(exp.load_trial("t").data.X.compute(), F)


# -- other public functions ----------------------------------------------------------------------


def test_event_windows_longer_than_the_trial_are_refused(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    trial = exp.load_trial("t-005")
    with pytest.raises(InvalidArgumentError) as info:
        zs.event_windows(trial, [0.5], before=1e12, after=1, layer=None)
    assert "before=1e+12 s" in str(info.value) and "longer than trial 't-005'" in str(info.value)
    assert "pass before=<seconds> shorter than the trial" in str(info.value)
    with pytest.raises(InvalidArgumentError, match=r"before must be a finite number.*pass before="):
        zs.event_windows(trial, [0.5], before=np.inf, after=1, layer=None)
    with pytest.raises(ArgumentTypeError, match=r"events must be times in seconds"):
        zs.event_windows(trial, [[0.5], [1, 2]], before=0.1, after=0.1, layer=None)
    with pytest.raises(ArgumentTypeError, match=r"event_windows reads a stored Trial"):
        zs.event_windows(trial.data, [0.5], before=0.1, after=0.1, layer=None)


def test_events_from_channel_threshold_and_channel() -> None:
    with pytest.raises(ArgumentTypeError, match="reads a stored Trial or Experiment"):
        zs.events_from_channel("trial", "stim", 2.5)


def test_iloc_outside_the_rows_is_a_row_position_error(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(RowPositionError, match=r"row positions \[9223372036854775808\]"):
        zs.event_windows(
            exp.load_trial("t-005"), [0.5], before=0.1, after=0.1, iloc=2**63, layer=None
        )
    assert issubclass(RowPositionError, IndexError)


def test_collect_garbage_and_open_zarr_arguments(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(ArgumentTypeError, match=r"keep must be a datetime.timedelta.*pass keep="):
        exp.collect_garbage(keep=7)
    with pytest.raises(KeyNotFoundError, match="there is no group 'trials/t-005/X'"):
        exp.open_zarr("trials/t-005/X")


def test_create_experiment_arguments(tmp_path: Path) -> None:
    with pytest.raises(ArgumentTypeError, match=r"config must be a zs\.StorageConfig"):
        zs.create_experiment(tmp_path / "a.zarr", exp_id="E", config={"clevel": 5})
    with pytest.raises(ArgumentTypeError, match="pass overwrite=True or overwrite=False"):
        zs.create_experiment(tmp_path / "a.zarr", exp_id="E", overwrite="no")
    with pytest.raises(zs.errors.InvalidArgumentError, match="mode must be one of"):
        zs.open_experiment(tmp_path / "a.zarr", mode="w")
    assert not (tmp_path / "a.zarr").exists()


def test_no_warning_leaks() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zs.normalize_dff(F, normalize_pct=20)


def test_trials_that_cannot_go_together_are_a_data_error_not_an_argument_error(
    tmp_path: Path,
) -> None:
    """The CLI exits 2 for argument errors and 1 for these: the call was well formed."""
    exp = _experiment(tmp_path)
    exp.add_trial("t-007", zs.AnnotatedData(F[:2]))
    with pytest.raises(IncompatibleDataError, match=r"trials \['t-007'\] have different ROIs"):
        exp.concat()
    assert not issubclass(IncompatibleDataError, InvalidArgumentError)


# -- issue 17, red team: paq files, ingest, migrate, verify, versions, odd saved values ----


@pytest.mark.parametrize("path", [True, False, 0, 1, 2], ids=["True", "False", "0", "1", "2"])
def test_write_paq_never_takes_an_int_as_a_file_descriptor(path: Any) -> None:
    with pytest.raises(ArgumentTypeError, match=r"write_paq: path must be a path"):
        zs.write_paq(path, np.ones((2, 10)), rate=1000.0, chan_names=["a", "b"])
    import os

    os.fstat(1)  # stdout is still open


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"path": None}, ArgumentTypeError, "path must be a path"),
        ({"path": "x" * 300}, InvalidArgumentError, "path is too long"),
        ({"rate": "abc"}, ArgumentTypeError, "pass rate=<Hz>"),
        ({"rate": -1}, InvalidArgumentError, "rate must be a number > 0"),
        ({"chan_names": None}, ArgumentTypeError, "pass chan_names="),
        ({"chan_names": ["a"]}, InvalidArgumentError, "chan_names has 1 entries for 2"),
        ({"units": [1, 2]}, ArgumentTypeError, "pass units="),
        ({"data": "abc"}, ArgumentTypeError, "data must be a 2-D array"),
        ({"path": "nowhere/x.paq"}, PathNotFoundError, "does not exist"),
    ],
    ids=["path-None", "path-long", "rate-text", "rate-negative", "chan_names-None",
         "chan_names-count", "units-ints", "data-text", "folder-missing"],
)  # fmt: skip
def test_write_paq_arguments(
    tmp_path: Path, kwargs: dict[str, Any], error: type, words: str
) -> None:
    args: dict[str, Any] = {
        "path": tmp_path / "a.paq",
        "data": np.ones((2, 10)),
        "rate": 1000.0,
        "chan_names": ["a", "b"],
    }
    args.update(kwargs)
    if args["path"] == "nowhere/x.paq":
        args["path"] = tmp_path / "nowhere" / "x.paq"
    with pytest.raises(error, match=words):
        zs.write_paq(args.pop("path"), args.pop("data"), **args)
    assert not (tmp_path / "a.paq").exists()


def test_write_paq_takes_repeated_units(tmp_path: Path) -> None:
    zs.write_paq(tmp_path / "a.paq", np.ones((2, 10)), rate=1e3, chan_names=["a", "b"],
                 units=["V", "V"])  # fmt: skip
    assert zs.read_paq(tmp_path / "a.paq").units == ["V", "V"]


@pytest.mark.parametrize(
    ("path", "error", "words"),
    [(None, ArgumentTypeError, "read_paq: path must be a path"),
     (True, ArgumentTypeError, "read_paq: path must be a path"),
     ("x" * 300, InvalidArgumentError, "path is too long"),
     ("missing.paq", PathNotFoundError, "no file at")],
    ids=["None", "True", "long", "missing"],
)  # fmt: skip
def test_read_paq_arguments(tmp_path: Path, path: Any, error: type, words: str) -> None:
    if path == "missing.paq":
        path = tmp_path / path
    with pytest.raises(error, match=words):
        zs.read_paq(path)


@pytest.fixture
def paq(tmp_path: Path) -> Any:
    clock = np.zeros((1, 200))
    clock[0, 10:190:10] = 5.0
    zs.write_paq(tmp_path / "c.paq", clock, rate=1000.0, chan_names=["frame_clock"])
    return zs.read_paq(tmp_path / "c.paq")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [({"paq": None}, ArgumentTypeError, "paq must be a PaqData"),
     ({"threshold": None}, ArgumentTypeError, "pass threshold="),
     ({"threshold": "1"}, ArgumentTypeError, "pass threshold="),
     ({"min_gap": [1, 2]}, ArgumentTypeError, "pass min_gap="),
     ({"min_gap": -1}, InvalidArgumentError, "min_gap must be a number >= 0"),
     ({"channel": np.array([1, 2])}, ArgumentTypeError, "channel must be a channel name"),
     ({"channel": "nope"}, KeyNotFoundError, "frame_clock")],
    ids=["paq-None", "threshold-None", "threshold-text", "min_gap-list", "min_gap-negative",
         "channel-array", "channel-unknown"],
)  # fmt: skip
def test_frame_times_arguments(paq: Any, kwargs: dict[str, Any], error: type, words: str) -> None:
    target = kwargs.pop("paq", paq)
    with pytest.raises(error, match=words):
        zs.frame_times(target, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [({"trials": True}, ArgumentTypeError, "trials must be a dict or None"),
     ({"paq": 0}, ArgumentTypeError, "paq must be a dict or None"),
     ({"config": True}, ArgumentTypeError, "config must be a zs.StorageConfig"),
     ({"layers": None}, ArgumentTypeError, "layers=\\('Fneu', 'spks'\\)"),
     ({"layers": ["dFF"]}, InvalidArgumentError, "layers may name 'Fneu' and 'spks'"),
     ({"metadata": "abc"}, ArgumentTypeError, "metadata must be a dict or None"),
     ({"neuropil_coeff": None}, ArgumentTypeError, "pass neuropil_coeff="),
     ({"session": 5}, ArgumentTypeError, "session must be text"),
     ({"subject": np.array(["a"])}, ArgumentTypeError, "subject must be text"),
     ({"exp_id": pd.NA}, ArgumentTypeError, "exp_id must be text"),
     ({"cells_only": np.array([True])}, ArgumentTypeError, "cells_only must be True or False"),
     ({"progress": pd.NA}, ArgumentTypeError, "progress must be True"),
     ({"paq_channel": 1}, ArgumentTypeError, "paq_channel must be a channel name")],
    ids=["trials-True", "paq-0", "config-True", "layers-None", "layers-unknown",
         "metadata-text", "neuropil_coeff-None", "session-int", "subject-array",
         "exp_id-NA", "cells_only-array", "progress-NA", "paq_channel-int"],
)  # fmt: skip
def test_ingest_suite2p_arguments_checked_first(
    tmp_path: Path, kwargs: dict[str, Any], error: type, words: str
) -> None:
    """Checked before the folder is read: nothing there, nothing written."""
    with pytest.raises(error, match=f"ingest_suite2p: .*{words}"):
        zs.ingest_suite2p(tmp_path / "no_suite2p", tmp_path / "out.zarr", **kwargs)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("old", "kwargs", "error", "words"),
    [(None, {}, ArgumentTypeError, "migrate: old must be a path"),
     (5, {}, ArgumentTypeError, "migrate: old must be a path"),
     ("missing", {}, PathNotFoundError, "no zstore 0.1 experiment"),
     ("legacy", {"storage_options": "x"}, ArgumentTypeError, "storage_options must be a dict"),
     ("legacy", {"storage_options": {"anon": True}}, zs.errors.StorageOptionsError,
      "not to the local path"),
     ("legacy", {"progress": "yes"}, ArgumentTypeError, "progress must be True")],
    ids=["old-None", "old-int", "old-missing", "storage_options-text",
         "storage_options-local", "progress-text"],
)  # fmt: skip
def test_migrate_arguments(
    tmp_path: Path, old: Any, kwargs: dict[str, Any], error: type, words: str
) -> None:
    if old == "legacy":
        old = Path(__file__).parent / "data" / "zstore-0.1.zarr"
    elif old == "missing":
        old = tmp_path / "missing"
    with pytest.raises(error, match=words):
        zs.migrate(old, tmp_path / "new.zarr", **kwargs)
    assert not (tmp_path / "new.zarr").exists()


def test_migrate_refuses_new_inside_old(tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "zstore-0.1.zarr", old)
    with pytest.raises(InvalidArgumentError, match="inside the old store"):
        zs.migrate(old, old / "new.zarr")


def test_verify_experiment_arguments(tmp_path: Path) -> None:
    with pytest.raises(ArgumentTypeError, match=r"exp must be a zs\.Experiment.*open_experiment"):
        zs.verify_experiment(None)
    collection = zs.create_collection(tmp_path / "col.zarr")
    with pytest.raises(ArgumentTypeError, match=r"col.experiments\(\)"):
        zs.verify_experiment(collection)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    with pytest.raises(ArgumentTypeError, match="progress must be True"):
        zs.verify_experiment(exp, progress="yes")


@pytest.mark.parametrize("version", [0, True, 2.5, b"x"], ids=["0", "True", "float", "bytes"])
def test_open_version_is_an_id_or_a_datetime(tmp_path: Path, version: Any) -> None:
    zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    with pytest.raises(ArgumentTypeError, match=r"version must be a version ID.*history\(\)"):
        zs.open_experiment(tmp_path / "e.zarr", version=version)
    with pytest.raises(ArgumentTypeError, match="version must be a version ID"):
        zs.open_collection(tmp_path / "e.zarr", version=version)


def test_a_store_path_too_long_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"store is too long.*pass a shorter store"):
        zs.create_experiment(tmp_path / ("x" * 300), exp_id="E")
    with pytest.raises(InvalidArgumentError, match="store is too long"):
        zs.open_experiment(tmp_path / ("x" * 300))


@pytest.mark.parametrize(
    ("X", "error"), [(0, ArgumentTypeError), ("abc", ArgumentTypeError)], ids=["int", "str"]
)
def test_annotated_data_constructor_refusals(X: Any, error: type) -> None:
    with pytest.raises((ArgumentTypeError, InvalidArgumentError), match="AnnotatedData"):
        zs.AnnotatedData(X)


@pytest.mark.parametrize(
    ("X", "error", "words"),
    [(None, InvalidArgumentError, "has no X to store; pass zs.AnnotatedData"),
     (np.ones((4, 10), complex), UnstorableValueError, "np.real"),
     (np.full((4, 10), "a"), UnstorableValueError, "must hold real numbers")],
    ids=["no-X", "complex", "text"],
)  # fmt: skip
def test_add_trial_x_refusals(tmp_path: Path, X: Any, error: type, words: str) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    with pytest.raises(error, match=words):
        exp.add_trial("t", zs.AnnotatedData(X))
    assert exp.trialIDs == []


def _no_generator() -> Any:
    return (x for x in [1])


@pytest.mark.parametrize(
    ("where", "value", "words"),
    [("uns", object(), "'object'.*anndata cannot store"),
     ("uns", pd.NA, "'NAType'"),
     ("uns", "gen", "'generator'"),
     ("uns", np.ma.masked_all((4, 10)), r"masked array.*filled\(np.nan\)"),
     ("uns", "\udcff", "lone surrogate"),
     ("obs", ["\udcff", "a", "b", "c"], "obs column 'c'.*lone surrogate"),
     ("obs", "big", "obs column 'c' holds the integer .* too large"),
     ("processing", "motion corrected", "zstore's provenance key.*uns\\['notes'\\]")],
    ids=["uns-object", "uns-NA", "uns-generator", "uns-masked", "uns-surrogate",
         "obs-surrogate", "obs-int-2**70", "uns-processing-text"],
)  # fmt: skip
def test_save_refuses_unstorable_in_memory_values(
    tmp_path: Path, where: str, value: Any, words: str
) -> None:
    exp = _experiment(tmp_path)
    before = len(exp.history())
    trial = exp.load_trial("t-005")
    if where == "uns":
        trial.data.uns["v"] = (
            _no_generator() if isinstance(value, str) and value == "gen" else value
        )
    elif where == "processing":
        trial.data.uns["processing"] = value
    elif isinstance(value, str):  # "big"
        trial.data.obs["c"] = pd.Series([2**70] * N_ROIS, dtype=object, index=trial.data.obs_names)
    else:
        trial.data.obs["c"] = value
    with pytest.raises(UnstorableValueError, match=f"trial 't-005' .*{words}"):
        trial.save()
    assert len(exp.refresh().history()) == before


def test_uns_processing_text_refused_at_add_trial_and_add_layer(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    with pytest.raises(UnstorableValueError, match="provenance key"):
        exp.add_trial("t-007", zs.AnnotatedData(F, uns={"processing": "motion corrected"}))
    data = zs.AnnotatedData(F, uns={"processing": "motion corrected"})
    with pytest.raises(InvalidArgumentError, match=r"add_layer\('L'\).*provenance key"):
        data.add_layer("L", F)
    assert "L" not in data.layers
