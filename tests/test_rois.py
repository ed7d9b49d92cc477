"""ROI identity: stored IDs everywhere, positions only through iloc= (zstore.rois)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zstore.errors import KeyNotFoundError, RoiNotFoundError
from zstore.rois import normalize_roi_id, resolve_rois

# Suite2p-like IDs: unique non-negative ints with gaps, in any row order
ids_strategy = st.lists(st.integers(0, 500), min_size=1, max_size=40, unique=True)


@given(ids=ids_strategy, data=st.data())
def test_ids_as_ints_or_strings_resolve_to_their_rows(ids: list[int], data: st.DataObject) -> None:
    names = [str(i) for i in ids]
    picked = data.draw(st.lists(st.sampled_from(ids), max_size=20))
    given_ids = [data.draw(st.sampled_from([i, str(i), np.int64(i), np.int32(i)])) for i in picked]
    rows = resolve_rois(names, given_ids)
    assert rows.dtype == np.intp
    assert [names[r] for r in rows] == [str(i) for i in picked]


@given(ids=ids_strategy, missing=st.integers(0, 600))
def test_a_missing_id_is_an_error_naming_it_and_its_stored_neighbours(
    ids: list[int], missing: int
) -> None:
    if missing in ids:
        return
    names = [str(i) for i in ids]
    with pytest.raises(RoiNotFoundError) as info:
        resolve_rois(names, missing, where="trial 't-000' of 'RL109'")
    text = str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, KeyNotFoundError)
    assert text.startswith(f"ROI {missing} is not stored in trial 't-000' of 'RL109'")
    assert "non-cells are dropped at ingest" in text
    below = [i for i in ids if i < missing]
    above = [i for i in ids if i > missing]
    nearest = text.split("nearest stored IDs: ")[1].split(".")[0].split(", ")
    if below:
        assert str(max(below)) in nearest
    if above:
        assert str(min(above)) in nearest
    assert f"{len(ids)} stored, IDs {min(ids)}..{max(ids)}" in text


@given(ids=ids_strategy, data=st.data())
def test_a_missing_id_is_never_taken_as_a_position(ids: list[int], data: st.DataObject) -> None:
    names = [str(i) for i in ids]
    position = data.draw(st.integers(0, len(ids) - 1))
    if str(position) in names:
        assert names[resolve_rois(names, position)[0]] == str(position)
    else:
        with pytest.raises(RoiNotFoundError):
            resolve_rois(names, position)
    assert resolve_rois(names, iloc=position).tolist() == [position]


@given(n=st.integers(1, 50), data=st.data())
def test_iloc_takes_positions_in_range_only(n: int, data: st.DataObject) -> None:
    names = [str(2 * i) for i in range(n)]
    positions = data.draw(st.lists(st.integers(0, n - 1), max_size=10))
    assert resolve_rois(names, iloc=positions).tolist() == positions
    bad = data.draw(st.one_of(st.integers(n, n + 100), st.integers(-100, -1)))
    with pytest.raises(IndexError, match=rf"outside the {n} ROIs of the data"):
        resolve_rois(names, iloc=[bad])


def test_neither_means_every_row_and_both_is_an_error() -> None:
    assert resolve_rois(["0", "3", "5"]).tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="not both"):
        resolve_rois(["0", "3"], [0], iloc=[0])


def test_the_exact_message() -> None:
    names = ["0", "1", "2", "3", "5", "6"]
    with pytest.raises(RoiNotFoundError) as info:
        resolve_rois(names, 4, where="trial 't-000' of 'RL109'")
    assert str(info.value) == (
        "ROI 4 is not stored in trial 't-000' of 'RL109' (non-cells are dropped at ingest, "
        "so stored IDs have gaps); nearest stored IDs: 3, 5. Pass a stored ROI ID (6 stored, "
        "IDs 0..6: obs_names lists them), or, in Python, iloc= for row positions"
    )
    with pytest.raises(RoiNotFoundError, match=r"ROIs 4 \(nearest 3, 5\); 9 \(nearest 5, 6\)"):
        resolve_rois(names, [4, "1", 9])


def test_string_forms_and_non_numeric_names() -> None:
    assert resolve_rois(["0", "5", "12"], "05").tolist() == [1]  # the same ID
    names = ["cell_a", "cell_b", "cell_c"]
    assert resolve_rois(names, ["cell_c", "cell_a"]).tolist() == [2, 0]
    with pytest.raises(RoiNotFoundError, match="ROI 1 is not stored in the data; nearest") as info:
        resolve_rois(names, 1)  # ints are IDs, not positions, here too
    assert "non-cells" not in str(info.value)
    with pytest.raises(RoiNotFoundError, match="nearest stored IDs: cell_b"):
        resolve_rois(names, "cell_bb")


@pytest.mark.parametrize("bad", [True, 2.0, None, b"3", {"a": 1}])
def test_ids_are_ints_or_strings(bad: object) -> None:
    with pytest.raises(TypeError, match="ROI ID is an int or a string"):
        normalize_roi_id(bad)
    if bad is not None and not isinstance(bad, dict):
        with pytest.raises(TypeError):
            resolve_rois(["0", "1"], [bad])


def test_views_take_ids_and_refuse_missing_ones() -> None:
    import icechunk

    import zstore as zs

    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
    X = np.arange(40, dtype="float32").reshape(4, 10)
    var = pd.DataFrame({"time": np.arange(10) / 10}, index=[str(i) for i in range(10)])
    obs = pd.DataFrame({"npix": [10, 11, 12, 13]}, index=["0", "2", "3", "7"])
    trial = exp.add_trial("t-000", zs.AnnotatedData(X, obs=obs, var=var, uns={"fs": 10.0}))
    ds = trial.to_xarray(rois=[7, "2"])
    assert ds["roi"].values.tolist() == ["7", "2"] and ds["npix"].values.tolist() == [13, 11]
    np.testing.assert_array_equal(ds.X.values, X[[3, 1]])
    assert exp.to_xarray(rois=3)["roi"].values.tolist() == ["3"]
    with pytest.raises(RoiNotFoundError, match=r"ROI 1 is not stored in trial 't-000' of 'RL109'"):
        trial.to_xarray(rois=[1])
    pytest.importorskip("pynapple")
    tsd = trial.to_pynapple(layer=None, rois=["7", 0])
    assert list(tsd.columns) == ["7", "0"]
    np.testing.assert_array_equal(np.asarray(tsd.values), X[[3, 0]].T)
    with pytest.raises(RoiNotFoundError, match="nearest stored IDs: 3, 7"):
        exp.to_pynapple(layer=None, rois=5)


@given(ids=ids_strategy, negative=st.integers(-1000, -1))
def test_a_negative_id_names_the_smallest_stored_ones(ids: list[int], negative: int) -> None:
    names = [str(i) for i in ids]
    with pytest.raises(RoiNotFoundError) as info:
        resolve_rois(names, negative)
    smallest = sorted(ids)[:2]  # nothing below: the two smallest stored IDs
    text = str(info.value)
    assert text.startswith(
        f"ROI {negative} is not stored in the data: Suite2p's ROI IDs start at 0"
    )
    assert text.split("nearest stored IDs: ")[1].split(".")[0] == ", ".join(map(str, smallest))
    assert "gaps" not in text, "a negative ID is no dropped non-cell"


def test_negative_ids_the_exact_message() -> None:
    names = ["0", "1", "2", "21"]
    with pytest.raises(RoiNotFoundError) as info:
        resolve_rois(names, -1, where="trial 't-000' of 'RA'")
    assert str(info.value) == (
        "ROI -1 is not stored in trial 't-000' of 'RA': Suite2p's ROI IDs start at 0; nearest "
        "stored IDs: 0, 1. Pass a stored ROI ID (4 stored, IDs 0..21: obs_names lists them), or, "
        "in Python, iloc= for row positions"
    )


@pytest.mark.parametrize("text", ["5", "05", " 5", "+5", "５", "\uff10\uff15"])
def test_a_string_names_the_whole_number_int_reads_in_it(text: str) -> None:
    # full-width digits are what a CJK input method types: int() reads them, and so do we
    assert resolve_rois(["0", "5", "12"], text).tolist() == [1]
    assert resolve_rois(["0", "5", "12"], [text, 12]).tolist() == [1, 2]


def test_digit_text_is_matched_as_text_when_ids_are_not_numbers() -> None:
    assert resolve_rois(["a", "5"], "5").tolist() == [1]
    with pytest.raises(RoiNotFoundError, match="ROI '５' is not stored"):
        resolve_rois(["a", "5"], "５")  # names are text here: only the exact text


@pytest.mark.parametrize("bad", [5.0, np.float64(5.0), np.float32(5.0), [1, 5.0]])
def test_a_float_is_refused_saying_ids_are_whole_numbers(bad: object) -> None:
    with pytest.raises(TypeError) as info:
        resolve_rois(["0", "1", "5"], bad)
    assert str(info.value) == (
        "a ROI ID is an int or a string (5 or '5'), not a float: got 5.0. ROI IDs are whole "
        "numbers (Suite2p's ROI indices): pass 5"
    )
    assert "must be one ROI or a list" not in str(info.value)
    with pytest.raises(TypeError, match=r"not a float: got 5\.5\. ROI IDs are whole numbers"):
        resolve_rois(["0", "1", "5"], 5.5)


def test_text_that_is_no_whole_number_says_why_and_suggests_nothing_odd() -> None:
    names = ["0", "1", "5", "8"]
    with pytest.raises(RoiNotFoundError) as info:
        resolve_rois(names, "5.0")  # as `zstore plot --roi 5.0` passes it
    assert str(info.value).startswith(
        "ROI '5.0' is not stored in the data: ROI IDs are whole numbers (Suite2p's ROI "
        "indices), given as 5 or '5', not 5.0 (pass 5). Pass a stored ROI ID"
    )
    assert "nearest" not in str(info.value), "no '5, 0' from comparing characters"
    with pytest.raises(RoiNotFoundError, match=r"not 2\.0\. Pass a stored ROI ID"):
        resolve_rois(names, "2.0")  # 2 is not stored: no "(pass 2)"
    with pytest.raises(RoiNotFoundError) as info:
        resolve_rois(names, "cell")
    assert "the stored IDs are whole numbers" in str(info.value)
    assert "nearest" not in str(info.value)
    with pytest.raises(RoiNotFoundError, match=r"ROIs 3 \(nearest 1, 5\); '5\.0' \(ROI IDs are"):
        resolve_rois(names, [3, "5.0"])
