"""AnnotatedData: the tutorial's verbs, texts and errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from conftest import raise_if_dask_computes

import zstore as zs


def test_repr_is_the_tutorial_text() -> None:
    adata = zs.AnnotatedData(np.zeros((640, 16368), dtype=np.float32))
    assert repr(adata) == "Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 640 × 16368"
    assert repr(adata[:10]) == "Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 10 × 16368"


def test_str_lists_attributes_in_the_tutorial_shape() -> None:
    adata = zs.AnnotatedData(
        np.zeros((2, 3), dtype=np.float32),
        obs=pd.DataFrame({"npix": [1, 2]}, index=["0", "1"]),
        var=pd.DataFrame({"time": [0.0, 0.1, 0.2]}, index=["0", "1", "2"]),
        uns={"fs": 30.0},
    )
    adata.add_layer("dFF", np.ones((2, 3), dtype=np.float32))
    assert str(adata).splitlines() == [
        "Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 2 × 3",
        "available attributes:",
        "\t.X (primary datamatrix)",
        "\t.obs (obs metadata):",
        "\t\t|- 'npix'",
        "\t.var (vars metadata):",
        "\t\t|- 'time'",
        "\t.uns:",
        "\t\t|- 'fs'",
        "\t.layers:",
        "\t\t|- 'dFF'",
    ]


def test_built_from_dataframes_as_in_the_tutorial() -> None:
    X = pd.DataFrame(np.arange(6, dtype=np.float32).reshape(2, 3), index=["c0", "c1"])
    obs = pd.DataFrame({"group": ["A", "B"]}, index=["c0", "c1"])
    var = pd.DataFrame({"stim": [0, 1, 0]}, index=["0", "1", "2"])
    adata = zs.AnnotatedData(X=X, obs=obs, var=var)
    assert adata.shape == (2, 3)
    assert adata.obs_names.tolist() == ["c0", "c1"]
    np.testing.assert_array_equal(adata.X, X.to_numpy())
    bare = zs.AnnotatedData(X=X)
    assert bare.var_names.tolist() == ["0", "1", "2"]


def test_dask_layer_stays_lazy() -> None:
    X = da.ones((4, 10), chunks=(2, 10), dtype=np.float32)
    adata = zs.AnnotatedData(X)
    with raise_if_dask_computes():
        adata.add_layer(
            layer_name="dFF", data=zs.normalize_dff(X + da.arange(10), normalize_pct=50)
        )
        assert isinstance(adata.layers["dFF"], da.Array)
        view = adata[:2]
        assert isinstance(view, zs.AnnotatedData)
        assert isinstance(view.layers["dFF"], da.Array)


def test_add_layer_shape_mismatch_names_both_shapes() -> None:
    adata = zs.AnnotatedData(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, 5\) but X has shape \(3, 4\)"):
        adata.add_layer("dFF", np.zeros((3, 5)))


def test_obs_and_var_verbs() -> None:
    adata = zs.AnnotatedData(np.zeros((3, 4), dtype=np.float32))
    adata.add_obs(obs_name="depth", values=[1.0, 2.0, 3.0])
    adata.add_var(var_name="stim", values=np.array([0, 1, 1, 0]))
    assert adata.obs["depth"].tolist() == [1.0, 2.0, 3.0]
    assert adata.var["stim"].tolist() == [0, 1, 1, 0]
    adata.del_obs("depth")
    adata.del_var("stim")
    assert list(adata.obs.columns) == [] and list(adata.var.columns) == []


def test_length_mismatch_names_lengths_and_axis() -> None:
    adata = zs.AnnotatedData(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"got 2 values but the obs axis has 3 ROIs"):
        adata.add_obs("depth", [1, 2])
    with pytest.raises(ValueError, match=r"got 5 values but the var axis has 4 frames"):
        adata.add_var("stim", range(5))


def test_deleting_a_missing_name_lists_the_names_there_are() -> None:
    adata = zs.AnnotatedData(np.zeros((3, 4), dtype=np.float32))
    adata.add_obs("depth", [1, 2, 3])
    with pytest.raises(KeyError) as err:
        adata.del_obs("dept")
    assert str(err.value) == (
        "del_obs('dept'): there is no obs column 'dept'; the obs columns are ['depth']"
    )
    with pytest.raises(KeyError, match=r"the var columns are \[\]"):
        adata.del_var("stim")


@pytest.mark.parametrize("name", ["", "a/b", "..", "bad\x00name", "__meta"])
def test_names_that_cannot_be_stored_are_refused(name: str) -> None:
    adata = zs.AnnotatedData(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="cannot be stored"):
        adata.add_layer(name, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="cannot be stored"):
        adata.add_obs(name, [1, 2])


def test_copy_and_to_memory_stay_annotated() -> None:
    adata = zs.AnnotatedData(da.ones((2, 3), chunks=1, dtype=np.float32))
    assert isinstance(adata.copy(), zs.AnnotatedData)
    mem = adata.to_memory()
    assert isinstance(mem, zs.AnnotatedData) and isinstance(mem.X, np.ndarray)
