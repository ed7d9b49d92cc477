"""Names and settings that would replace or mix data (issue 17, red team 3): a layer
named X, a paq channel named trial, a dF/F layer finished with other settings, and
Suite2p values out of range. Each is refused naming the fix, or kept apart, never lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata
import icechunk
import numpy as np
import pandas as pd
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main
from zstore.errors import InvalidNameError, LayerExistsError, Suite2pFormatError, ZstoreWarning
from zstore.export import export
from zstore.io.paq import read_paq, write_paq
from zstore.io.safe_pickle import load_pickled_npy
from zstore.io.suite2p import open_suite2p
from zstore.names import RESERVED_LAYER_NAMES
from zstore.summary import info_document


def _exp(n_trials: int = 2, path: Path | None = None) -> Any:
    storage = icechunk.in_memory_storage() if path is None else str(path)
    exp = zs.create_experiment(storage, exp_id="E")
    rng = np.random.default_rng(0)
    for i in range(n_trials):
        exp.add_trial(f"t-00{i}", zs.AnnotatedData(rng.random((4, 30)).astype("float32") + 1))
    return exp


def _plane(tmp_path: Path) -> Path:
    return syn.write_suite2p_plane(
        tmp_path, n_rois=6, frames_per_file=[10, 10], non_cell_fraction=0.0
    )


def _edit_ops(plane: Path, **values: Any) -> None:
    ops = load_pickled_npy(plane / "ops.npy")
    ops.update(values)
    np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)


# -- 1. a layer named X ---------------------------------------------------------------------


def test_layer_named_x_refused_by_add_layer() -> None:
    adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
    with pytest.raises(InvalidNameError, match=r"layer name 'X' cannot be stored: 'X' names"):
        adata.add_layer("X", np.zeros((2, 3), dtype="float32"))
    assert "X" not in adata.layers


def test_layer_named_x_refused_by_compute_dff() -> None:
    exp = _exp()
    with pytest.raises(InvalidNameError, match=r"layer name 'X'.*use another name, e.g. 'X_layer'"):
        zs.compute_dff(exp, layer="X")
    assert exp.layer_names("t-000") == []


def test_layer_named_x_refused_on_save() -> None:
    exp = _exp(1)
    trial = exp.load_trial("t-000")
    trial.data.layers["X"] = np.zeros((4, 30), dtype="float32")
    with pytest.raises(InvalidNameError, match=r"layer 'X' of trial 't-000' cannot be stored"):
        trial.save()


def test_layer_named_x_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _exp(1, tmp_path / "e.zarr")
    assert main(["dff", str(tmp_path / "e.zarr"), "--layer", "X"]) == 2
    assert "'X' names the trial's main matrix" in capsys.readouterr().err


def test_stored_layer_named_x_kept_apart_in_export_and_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written before 'X' was refused as a layer name: X stays X everywhere."""
    exp = _exp(1, tmp_path / "e.zarr")
    monkeypatch.delitem(RESERVED_LAYER_NAMES, "X")  # as an older zstore wrote it
    zs.compute_dff(exp, layer="X")
    monkeypatch.undo()
    raw = exp.load_trial("t-000").data.X.compute()
    out = export(exp, tmp_path / "a.h5ad", trial="t-000")
    back = anndata.read_h5ad(out)
    np.testing.assert_array_equal(back.X, raw)
    assert not np.allclose(back.layers["X"], raw)
    info = info_document(exp)["trials"][0]
    assert "normalize_dff" not in info["X"]["computed"]
    assert "normalize_dff" in info["layers"]["X"]["computed"]


# -- 2. a paq channel named trial -------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*frame clock edges")
def test_paq_channel_named_trial_is_renamed(tmp_path: Path) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path, n_rois=6, frames_per_file=[20])
    ((tid, path),) = paqs.items()
    paq = read_paq(path)
    names = ["frame_clock", "trial", *paq.chan_names[2:]]
    renamed = tmp_path / "renamed.paq"
    write_paq(renamed, np.array(paq.data), rate=paq.rate, chan_names=names)
    with pytest.warns(ZstoreWarning, match=r"channel 1 is named 'trial'.*var column 'paq_trial'"):
        exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr", paq={tid: renamed})
    joined = exp.concat()
    assert "paq_trial" in joined.var.columns
    assert list(joined.var["trial"].unique()) == [tid]


def test_concat_keeps_a_stored_var_trial_column() -> None:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    for i, tid in enumerate(["a", "b"]):
        var = pd.DataFrame({"trial": np.full(5, float(i + 7))}, index=[str(k) for k in range(5)])
        exp.add_trial(tid, zs.AnnotatedData(np.ones((3, 5), dtype="float32"), var=var))
    with pytest.warns(ZstoreWarning, match=r"already have a var column 'trial'.*var\['trial_id'\]"):
        joined = exp.concat()
    assert joined.var["trial"].tolist() == [7.0] * 5 + [8.0] * 5
    assert joined.var["trial_id"].tolist() == ["a"] * 5 + ["b"] * 5
    assert joined.uns["trial_column"] == "trial_id"


# -- 3. finishing a dF/F layer with other settings ------------------------------------------------


def test_finish_with_other_settings_refused() -> None:
    exp = _exp(3)
    zs.compute_dff(exp, trials=["t-000"], normalize_pct=50)
    with pytest.raises(LayerExistsError, match=r"computed with normalize_pct=50") as err:
        zs.compute_dff(exp, trials=["t-001", "t-002"])
    message = str(err.value)
    assert "with normalize_pct=20" in message and "overwrite=True" in message
    assert exp.layer_names("t-001") == []
    assert zs.compute_dff(exp, trials=["t-001", "t-002"], normalize_pct=50) == ["t-001", "t-002"]


def test_unfinished_layer_names_the_stored_settings() -> None:
    exp = _exp(3)
    zs.compute_dff(exp, trials=["t-000"], normalize_pct=50)
    with pytest.raises(LayerExistsError, match=r"exists in 1 of the 3 trials") as err:
        zs.compute_dff(exp)
    assert "pass trials=['t-001', 't-002'] and normalize_pct=50" in str(err.value)


def test_unfinished_layer_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = _exp(2, tmp_path / "e.zarr")
    zs.compute_dff(exp, trials=["t-000"], normalize_pct=50)
    assert main(["dff", str(tmp_path / "e.zarr"), "--trial", "t-001"]) != 0
    err = capsys.readouterr().err
    assert "--pct 50" in err and "--overwrite" in err


def test_finish_with_maximin_and_each_trials_fs() -> None:
    exp = _exp(2)
    for tid in exp.trialIDs:
        trial = exp.load_trial(tid)
        trial.data.uns["fs"] = 10.0
        trial.save()
    zs.compute_dff(exp, trials=["t-000"], baseline="maximin", win_baseline=2, sig_baseline=1)
    with pytest.raises(LayerExistsError, match=r"win_baseline differs"):
        zs.compute_dff(exp, trials=["t-001"], baseline="maximin", sig_baseline=1)
    done = zs.compute_dff(exp, trials=["t-001"], baseline="maximin", win_baseline=2, sig_baseline=1)
    assert done == ["t-001"]


# -- 4. Suite2p values out of range ----------------------------------------------------------------


@pytest.mark.parametrize("fs", [1e-300, 0.001, 1e6], ids=["tiny", "below", "above"])
def test_ops_fs_out_of_range(tmp_path: Path, fs: float) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, fs=fs)
    with pytest.raises(Suite2pFormatError, match=r"ops\.npy: ops\['fs'\] is .*between 0\.01 and"):
        open_suite2p(plane)


@pytest.mark.parametrize(
    "prob", [2.0, -0.5, np.nan, np.inf], ids=["two", "negative", "one_nan", "inf"]
)
def test_iscell_probability_out_of_range(tmp_path: Path, prob: float) -> None:
    plane = _plane(tmp_path)
    iscell = np.load(plane / "iscell.npy")
    iscell[0, 1] = prob
    np.save(plane / "iscell.npy", iscell)
    with pytest.raises(Suite2pFormatError, match=r"iscell\.npy: the classifier probability"):
        open_suite2p(plane)


def test_iscell_probability_all_nan_accepted(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    iscell = np.load(plane / "iscell.npy")
    iscell[:, 1] = np.nan
    np.save(plane / "iscell.npy", iscell)
    assert np.isnan(open_suite2p(plane).iscell[:, 1]).all()


def test_iscell_labels_only_still_warns(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    np.save(plane / "iscell.npy", np.load(plane / "iscell.npy")[:, 0])
    with pytest.warns(ZstoreWarning, match=r"only the is-cell labels"):
        assert np.isnan(open_suite2p(plane).iscell[:, 1]).all()


@pytest.mark.parametrize("value", [-1, 0, 1.5], ids=["negative", "zero", "fraction"])
def test_nplanes_says_at_least_one(tmp_path: Path, value: Any) -> None:
    plane = _plane(tmp_path)
    _edit_ops(plane, nplanes=value)
    with pytest.raises(Suite2pFormatError, match=r"expected one whole number >= 1") as err:
        open_suite2p(plane)
    assert ">= 0" not in str(err.value)
