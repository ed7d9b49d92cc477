"""Change detection as a pure function: diff(stored, adata) compares by value, no store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import zstore as zs
from zstore.changes import diff, matrix_name, same_value, stored_state


def _trial(n_rois: int, n_frames: int, seed: int) -> tuple[zs.AnnotatedData, Any]:
    """An AnnotatedData as read from a store (lazy X and layer named by version), and
    its stored state."""
    rng = np.random.default_rng(seed)
    X = rng.random((n_rois, n_frames)).astype(np.float32)
    version = f"V{seed}"
    lazy_x = da.from_array(X, name=matrix_name(version, "t", "X"))
    fneu = da.from_array(X * 0.5, name=matrix_name(version, "t", "layers/Fneu"))
    obs = pd.DataFrame(
        {"npix": rng.integers(1, 50, n_rois), "kind": pd.Categorical(["a"] * n_rois)},
        index=[str(i) for i in range(n_rois)],
    )
    var = pd.DataFrame(
        {"time": np.arange(n_frames) / 30.0}, index=[str(i) for i in range(n_frames)]
    )
    adata = zs.AnnotatedData(
        lazy_x,
        obs=obs,
        var=var,
        uns={"fs": 30.0, "img": rng.random((3, 3)), "nested": {"k": [1, 2], "nan": np.nan}},
        layers={"Fneu": fneu},
    )
    adata.obsm["med"] = rng.integers(0, 100, (n_rois, 2))
    adata.obsm["ypix"] = zs.RaggedArray.from_arrays([np.arange(i % 3 + 1) for i in range(n_rois)])
    state = stored_state(
        adata,
        version=version,
        token="tok",
        created=0,
        matrices={"X": lazy_x.name, "layers/Fneu": fneu.name},
        provenance={},
    )
    return adata, state


Edit = tuple[str, Callable[[zs.AnnotatedData], None]]


def _first_new(column: Any) -> Any:
    old = list(column.cat.categories)
    return column.cat.add_categories(["zz"]).cat.reorder_categories(["zz", *old])


def _set(frame: str, column: str, make: Callable[[Any], Any]) -> Callable[[Any], None]:
    def edit(a: Any) -> None:
        table = getattr(a, frame)  # a name held: pandas sees no chained assignment
        if column in table:  # (an earlier edit may have removed it: then nothing changes)
            table[column] = make(table[column])

    return edit


EDITS: list[Edit] = [
    ("obs", lambda a: a.add_obs("depth", np.arange(a.n_obs, dtype=float))),
    ("obs", _set("obs", "npix", lambda c: c + 1)),
    ("obs", _set("obs", "npix", lambda c: c.astype(np.int32))),  # dtype only
    ("obs", _set("obs", "kind", lambda c: c.cat.add_categories(["b"]))),
    ("obs", _set("obs", "kind", lambda c: _first_new(c))),  # the categories' order only
    ("obs", lambda a: setattr(a.obs.index, "name", "roi")),
    ("var", lambda a: a.del_var("time")),
    ("var", _set("var", "time", lambda c: c.to_numpy() + 1.0)),
    ("uns", lambda a: a.uns.__setitem__("note", "x")),
    ("uns", lambda a: a.uns["img"].__setitem__((0, 0), -1.0)),  # in place
    ("uns", lambda a: a.uns["nested"]["k"].append(3)),  # in place, nested
    ("uns", lambda a: a.uns["nested"].__setitem__("nan", 0.0)),
    ("obsm/med", lambda a: a.obsm["med"].__setitem__((0, 0), -7)),  # in place
    ("obsm/extra", lambda a: a.obsm.__setitem__("extra", np.ones((a.n_obs, 3)))),
    (
        "obsm/ypix",
        lambda a: a.obsm.__setitem__(
            "ypix", zs.RaggedArray.from_arrays([np.arange(5) for _ in range(a.n_obs)])
        ),
    ),
    ("layers/dFF", lambda a: a.add_layer("dFF", np.zeros(a.shape, dtype=np.float32))),
    ("layers/Fneu", lambda a: a.layers.__setitem__("Fneu", a.layers["Fneu"] * 2)),
    ("layers/Fneu", lambda a: a.layers.__delitem__("Fneu")),
    ("obsm/med", lambda a: a.obsm.__delitem__("med")),
]

NO_OPS: list[Callable[[zs.AnnotatedData], None]] = [
    lambda a: None,
    _set("obs", "npix", lambda c: c.copy()),  # equal values
    lambda a: a.uns.__setitem__("img", a.uns["img"].copy()),
    lambda a: a.uns["nested"].__setitem__("nan", np.nan),  # NaN equals NaN
    lambda a: a.obsm.__setitem__("med", a.obsm["med"].copy()),
    lambda a: a.obsm.__setitem__(  # an equal in-memory ragged array
        "ypix", zs.RaggedArray.from_arrays([np.arange(i % 3 + 1) for i in range(a.n_obs)])
    ),
]


@settings(max_examples=200, deadline=None)
@given(
    n_rois=st.integers(1, 12),
    n_frames=st.integers(1, 20),
    seed=st.integers(0, 10_000),
    edits=st.lists(st.sampled_from(range(len(EDITS))), max_size=5, unique=True),
    no_ops=st.lists(st.sampled_from(range(len(NO_OPS))), max_size=3),
)
def test_diff_reports_exactly_what_changed(
    n_rois: int, n_frames: int, seed: int, edits: list[int], no_ops: list[int]
) -> None:
    adata, state = _trial(n_rois, n_frames, seed)
    for k in no_ops:
        NO_OPS[k](adata)
    expected: set[str] = set()
    for k in edits:
        path, edit = EDITS[k]
        if path.startswith("layers/Fneu") and "Fneu" not in adata.layers:
            continue
        if path == "obsm/med" and "med" not in adata.obsm:
            continue
        if path == "var" and "time" not in adata.var:
            continue
        edit(adata)
        expected.add(path)
    got = diff(state, adata)
    assert set(got.paths()) == expected, (got, [EDITS[k][0] for k in edits])
    assert not got.x_replaced
    assert bool(got) == bool(expected)


def test_replacing_x_is_seen() -> None:
    adata, state = _trial(4, 5, 0)
    adata.X = adata.X * 2
    assert diff(state, adata).x_replaced


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True)
        | st.text(max_size=5)
        | st.builds(np.array, st.lists(st.floats(allow_nan=True), max_size=4)),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=8,
    )
)
def test_same_value_is_reflexive_on_copies(value: Any) -> None:
    import copy

    assert same_value(value, copy.deepcopy(value))


def test_a_list_equals_the_array_it_is_stored_as() -> None:
    adata, state = _trial(3, 4, 1)
    adata.uns["img"] = adata.uns["img"].tolist()
    adata.uns["nested"]["k"] = np.array([1, 2])
    assert not diff(state, adata)
    adata.uns["img"] = np.asarray(adata.uns["img"], dtype=np.float32)  # a new dtype is stored
    assert diff(state, adata).paths() == ["uns"]


def test_numpy_scalars_and_sparse_matrices_with_nan_compare_as_stored() -> None:
    import scipy.sparse as sp

    adata, state = _trial(3, 4, 2)
    adata.uns["fs"] = np.float64(30.0)  # stored 30.0, a Python float
    assert not diff(state, adata)
    adata.uns["fs"] = np.int64(30)  # an int is a change
    assert diff(state, adata).paths() == ["uns"]
    matrix = sp.csr_matrix(np.array([[np.nan, 0, 1], [0, 2, 0], [0, 0, 0]]))
    adata, _ = _trial(3, 4, 2)
    adata.obsp["graph"] = matrix
    state = stored_state(adata, version="v", token="t", created=0, matrices={}, provenance={})
    adata.obsp["graph"] = matrix.copy()
    assert "obsp/graph" not in diff(state, adata).paths()
