"""Names (issue 17): one portable rule for every key, and the error classes around it.

Each bad name or value a user can hand zstore gives a zstore error that names it, the
trial it belongs to and the fix, before anything is written; names already in a store
(written under the older rule) still read and save.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zstore as zs
from zstore import names
from zstore.errors import (
    AlreadyExistsError,
    ExperimentExistsError,
    InvalidNameError,
    KeyNotFoundError,
    LayerExistsError,
    TrialExistsError,
    UnstorableValueError,
)
from zstore.names import MAX_NAME_BYTES, check_name, stored_name, suggest_name

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


def _adata(n_rois: int = 3, n_frames: int = 4) -> zs.AnnotatedData:
    return zs.AnnotatedData(np.arange(n_rois * n_frames, dtype="float32").reshape(n_rois, -1))


@pytest.fixture
def exp(tmp_path: Path) -> zs.Experiment:
    return zs.create_experiment(tmp_path / "e.zarr", exp_id="E")


# -- the rule itself ---------------------------------------------------------------------

REFUSED = {
    # case: (name, words the message must hold: the rule broken and the fix)
    "zarr.json": ("zarr.json", ["Zarr's own metadata", "'zarr_json'"]),
    ".zattrs": (".zattrs", ["Zarr's own metadata"]),
    "long-210": ("t" * 210, ["210 bytes", "at most 128 bytes", "(210 characters)"]),
    "long-129-bytes": ("é" * 64 + "a", ["129 bytes"]),
    "NFD": (NFD, ["not in Unicode NFC form", "'cafe\\u0301'", f"NFC form {NFC!r}"]),
    "zero-width-space": ("t\u200b1", ["invisible", "U+200B ZERO WIDTH SPACE", "'t1'"]),
    "zero-width-joiner": ("a\u200db", ["U+200D ZERO WIDTH JOINER"]),
    "BOM": ("\ufefft1", ["U+FEFF"]),
    "word-joiner": ("a\u2060b", ["U+2060 WORD JOINER"]),
    "line-separator": ("a\u2028b", ["U+2028"]),
    "CON": ("CON", ["Windows device name", "'CON_'"]),
    "nul.txt": ("nul.txt", ["Windows device name", "'nul_.txt'"]),
    "com1": ("com1", ["Windows device name"]),
    "LPT9.dat": ("LPT9.dat", ["Windows device name"]),
    "a:b": ("a:b", ["contains :", "reserved in Windows", "'a_b'"]),
    "angle": ("<x>", ["contains < >"]),
    "quote-pipe-question-star": ('a"|?*', ['" * ? |']),
    "slash": ("a/b", ["path separator", "'a_b'"]),
    "backslash": ("C:\\data\\a", ["path separator", "'C__data_a'"]),
    "trailing-dot": ("t.", ["ends with a dot", "'t'"]),
    "trailing-space": ("t ", ["white space", "'t'"]),
    "leading-space": (" t", ["white space"]),
    "dot": (".", ["relative path component"]),
    "dotdot": ("..", ["relative path component"]),
    "dunder": ("__meta", ["reserved by Zarr", "'_meta'"]),
    "empty": ("", ["empty"]),
    "blank": ("   ", ["empty"]),
    "nul-char": ("a\x00b", ["control characters", "'ab'"]),
    "newline": ("a\nb", ["control characters"]),
    "lone-surrogate": ("a\udc80", ["lone surrogate U+DC80", "UTF-8", "'a_'"]),
    "hangul-filler": ("\u3164", ["looks blank", "U+3164 HANGUL FILLER"]),
    "braille-blank": ("\u2800\u2800", ["looks blank", "U+2800 BRAILLE PATTERN BLANK"]),
    "only-combining-marks": ("\u0301\u0302", ["looks blank", "U+0301 COMBINING ACUTE ACCENT"]),
    "COM0": ("COM0", ["Windows device name", "COM0-9"]),
    "lpt0.txt": ("lpt0.txt", ["Windows device name"]),
    "COM-superscript-1": ("COM\u00b9", ["Windows device name"]),
    "LPT-superscript-3": ("LPT\u00b3.log", ["Windows device name"]),
    "zwj-emoji": ("\U0001f469\u200d\U0001f52c", ["U+200D ZERO WIDTH JOINER"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_portable_rule_refuses_with_the_rule_and_a_fix(case: str) -> None:
    name, words = REFUSED[case]
    with pytest.raises(InvalidNameError) as err:
        check_name(name, kind="trial ID")
    message = str(err.value)
    assert message.startswith("trial ID ") and "cannot be stored" in message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "name",
    [
        "t-005",
        NFC,
        "RL109_2026-05-01_plane0",
        "a" * MAX_NAME_BYTES,
        "é" * (MAX_NAME_BYTES // 2),
        "Ca²⁺ dF/F".replace("/", "_"),
        "CONSOLE",
        "com10",
        "auxiliary",
        "a.b",
        "_index",  # a fine key; only a data frame's column may not be called so
        "数据",
    ],
)
def test_the_portable_rule_accepts_ordinary_names(name: str) -> None:
    assert check_name(name, kind="trial ID") == name


@pytest.mark.parametrize("name", [1, 1.5, None, b"t", ("t",)], ids=repr)
def test_a_name_that_is_not_a_str_is_refused(name: Any) -> None:
    with pytest.raises(
        InvalidNameError, match=re.escape(f"uns key {name!r} ({type(name).__name__})")
    ):
        check_name(name, kind="uns key")


def test_a_number_as_name_suggests_its_text() -> None:
    with pytest.raises(InvalidNameError, match=r"names must be str; use the str '1'"):
        check_name(1, kind="uns key", of="trial 't-001'")


def test_lookups_follow_the_older_rule_and_find_either_unicode_form() -> None:
    stored = {NFC, "CON", "a:b", "t\u200b1"}
    assert stored_name(NFD, stored, kind="trial ID") == NFC
    assert stored_name(NFD, lambda: {NFD}, kind="trial ID") == NFD  # stored as NFD
    for legacy in ("CON", "a:b", "t\u200b1", "t" * 300):
        assert stored_name(legacy, stored, kind="trial ID") == legacy
    for escape in ("../x", "a/b", "", "zarr.json", "__x", "a\udc80"):
        with pytest.raises(InvalidNameError, match="trial ID"):
            stored_name(escape, stored, kind="trial ID")


# -- every element kind, in a store ---------------------------------------------------------


def _with(element: str, name: Any) -> zs.AnnotatedData:
    adata = _adata()
    if element == "layer":
        adata.layers[name] = np.ones(adata.shape, dtype="float32")
    elif element == "obs":
        adata.obs[name] = [1, 2, 3]
    elif element == "var":
        adata.var[name] = [1, 2, 3, 4]
    elif element == "obsm":
        adata.obsm[name] = np.ones((3, 2))
    elif element == "uns":
        adata.uns[name] = 1
    elif element == "nested uns":
        adata.uns["params"] = {name: 1}
    elif element == "obs index":
        adata.obs.index.name = name
    return adata


ELEMENT_WORDS = {
    "layer": "layer",
    "obs": "obs column",
    "var": "var column",
    "obsm": "obsm key",
    "uns": "uns key",
    "nested uns": "uns['params'] key",
    "obs index": "obs index name",
}


@pytest.mark.parametrize("element", list(ELEMENT_WORDS))
@pytest.mark.parametrize("name", ["zarr.json", "CON", "a:b", "t\u200b1", NFD, "x" * 129])
def test_every_element_kind_follows_the_rule(exp: zs.Experiment, element: str, name: str) -> None:
    with pytest.raises(InvalidNameError) as err:
        exp.add_trial("t-001", _with(element, name))
    message = str(err.value)
    assert f"{ELEMENT_WORDS[element]} " in message and "of trial 't-001'" in message, message
    assert "cannot be stored" in message
    assert exp.trialIDs == []


@pytest.mark.parametrize("name", ["zarr.json", "CON", "a:b", "t\u200b1", NFD, "t" * 210])
def test_trial_ids_follow_the_rule(exp: zs.Experiment, name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"trial ID .* cannot be stored"):
        exp.add_trial(name, _adata())
    assert exp.trialIDs == []


def test_a_long_trial_id_is_refused_before_the_file_system_sees_it(tmp_path: Path) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    with pytest.raises(InvalidNameError, match=r"has 210 bytes in UTF-8, more than the 128"):
        exp.add_trial("t" * 210, _adata())
    exp.add_trial("t" * 128, _adata())
    zs.export(exp, tmp_path / "copy.zarr")  # a plain Zarr copy: trial IDs become folders
    assert exp.trialIDs == ["t" * 128]


@pytest.mark.parametrize("name", ["CON", "a:b", NFD, "x" * 129])
def test_experiment_ids_follow_the_rule(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"exp_id .* cannot be stored"):
        zs.create_experiment(tmp_path / "e.zarr", exp_id=name)


@pytest.mark.parametrize("axis", ["obs", "var"])
def test_a_column_named_index_is_refused(exp: zs.Experiment, axis: str) -> None:
    with pytest.raises(InvalidNameError) as err:
        exp.add_trial("t-001", _with(axis, "_index"))
    message = str(err.value)
    assert f"{axis} column '_index' of trial 't-001'" in message
    assert "anndata reserves '_index'" in message and ".rename(columns=" in message
    adata = _adata()
    verb = adata.add_obs if axis == "obs" else adata.add_var
    with pytest.raises(InvalidNameError, match="anndata reserves '_index'"):
        verb("_index", range(adata.shape[0 if axis == "obs" else 1]))
    assert exp.trialIDs == []


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "uns key '' of trial 't-001'"),
        (1, "uns key 1 (int) of trial 't-001'"),
        ("..", "uns key '..' of trial 't-001'"),
    ],
    ids=["empty", "int", "dotdot"],
)
def test_uns_keys_follow_the_rule(exp: zs.Experiment, key: Any, words: str) -> None:
    with pytest.raises(InvalidNameError, match="cannot be stored") as err:
        exp.add_trial("t-001", _with("uns", key))
    assert words in str(err.value)
    assert exp.trialIDs == []


def test_a_data_frame_with_repeated_or_clashing_names_is_refused(exp: zs.Experiment) -> None:
    adata = _adata()
    adata.obsm["table"] = pd.DataFrame([[1, 2]] * 3, columns=["a", "a"], index=adata.obs_names)
    with pytest.raises(InvalidNameError, match=r"obsm\['table'\] of trial 't-001' has repeated"):
        exp.add_trial("t-001", adata)
    adata = _adata()
    adata.obs["roi"] = [7, 8, 9]
    adata.obs.index.name = "roi"
    with pytest.raises(InvalidNameError, match=r"obs of trial 't-001': its index is named 'roi'"):
        exp.add_trial("t-001", adata)
    assert exp.trialIDs == []


# -- values anndata cannot store --------------------------------------------------------------

UNS_VALUES = {
    "set": ({1, 2}, "is a set", "sorted(value)"),
    "frozenset": (frozenset({1}), "is a set", "sorted(value)"),
    "datetime": (datetime.datetime(2026, 5, 1, 12), "date or time", "value.isoformat()"),
    "date": (datetime.date(2026, 5, 1), "date or time", "value.isoformat()"),
    "numpy-datetime": (np.datetime64("2026-05-01"), "date or time", "value.isoformat()"),
    "timedelta": (datetime.timedelta(seconds=3), "a duration", "value.total_seconds()"),
    "tuple": ((1, 2), "a tuple", "list(value)"),
    "bytes": (b"ab", "bytes", "value.decode()"),
    "complex": (1j, "a complex number", "value.real"),
    "path": (Path("/data/a.tif"), "a path", "str(value)"),
    "series": (pd.Series([1, 2]), "a pandas Series", "value.to_numpy()"),
    "huge-int": (2**70, "too large for 64 bits", "str(value)"),
    "list-of-dates": ([datetime.date(2026, 5, 1)], "sequence holding date", "list of strings"),
}


@pytest.mark.parametrize("case", list(UNS_VALUES))
def test_uns_values_anndata_cannot_store_are_refused(exp: zs.Experiment, case: str) -> None:
    value, what, fix = UNS_VALUES[case]
    adata = _adata()
    adata.uns["params"] = {"when": value}
    with pytest.raises(UnstorableValueError) as err:
        exp.add_trial("t-001", adata)
    message = str(err.value)
    assert "trial 't-001' uns['params']['when']" in message, message
    assert what in message and fix in message, message
    assert exp.trialIDs == []


OBS_COLUMNS = {
    "datetime": (pd.to_datetime(["2026-05-01"] * 3), "datetime64[ns]", ".astype(str)"),
    "datetime-tz": (
        pd.to_datetime(["2026-05-01"] * 3).tz_localize("UTC"),
        "datetime64[ns, UTC]",
        ".astype(str)",
    ),
    "period": (pd.period_range("2026-05", periods=3, freq="M"), "period[M]", ".astype(str)"),
    "timedelta": (pd.to_timedelta([1, 2, 3], unit="s"), "timedelta64", ".dt.total_seconds()"),
    "interval": (pd.interval_range(0, 3), "interval", ".astype(str)"),
    "nullable-float": (pd.array([1.0, None, 2.0], dtype="Float64"), "Float64", "float64"),
    "sparse": (pd.arrays.SparseArray([0, 1, 0]), "Sparse", ".sparse.to_dense()"),
    "bytes": (np.array([b"a", b"b", b"c"]), "|S1", ".str.decode('utf-8')"),
}


@pytest.mark.parametrize("case", list(OBS_COLUMNS))
def test_obs_columns_anndata_cannot_store_are_refused(exp: zs.Experiment, case: str) -> None:
    values, dtype, fix = OBS_COLUMNS[case]
    adata = _adata()
    adata.obs["when"] = values
    with pytest.raises(UnstorableValueError) as err:
        exp.add_trial("t-001", adata)
    message = str(err.value)
    assert "trial 't-001' obs column 'when'" in message and dtype in message, message
    assert "anndata cannot store" in message and fix in message, message
    assert exp.trialIDs == []


def test_a_save_with_an_unstorable_value_saves_nothing(exp: zs.Experiment) -> None:
    exp.add_trial("t-001", _adata())
    trial = zs.open_experiment(exp.location, mode="r+").load_trial("t-001")
    trial.data.uns["when"] = datetime.datetime(2026, 5, 1)
    trial.data.obs["day"] = pd.to_datetime(["2026-05-01"] * 3)
    with pytest.raises(UnstorableValueError, match="trial 't-001'"):
        trial.save()
    data = zs.open_experiment(exp.location).load_trial("t-001").data
    assert "when" not in data.uns and "day" not in data.obs


def test_what_anndata_stores_as_it_is_still_stores(exp: zs.Experiment) -> None:
    adata = _adata()
    adata.obs["kind"] = pd.Categorical(pd.to_datetime(["2026-05-01"] * 3))
    adata.obs["n"] = pd.array([1, None, 3], dtype="Int64")
    adata.uns["params"] = {"fs": 30.0, "n": np.int64(3), "names": ["a", "b"], "none": None}
    adata.uns["stamps"] = np.array(["2026-05-01"], dtype="datetime64[ns]")
    data = exp.add_trial("t-001", adata).data
    assert data.uns["params"]["names"].tolist() == ["a", "b"]
    assert data.obs["n"].isna().tolist() == [False, True, False]


# -- one name, one key: NFC -----------------------------------------------------------------


def test_nfc_and_nfd_forms_are_one_trial(exp: zs.Experiment) -> None:
    exp.add_trial(NFC, _adata())
    with pytest.raises(InvalidNameError, match=f"use its NFC form {NFC!r}"):
        exp.add_trial(NFD, _adata())
    assert exp.trialIDs == [NFC]
    assert exp.load_trial(NFD).trialID == NFC  # a lookup finds it in either form
    assert exp.layer_names(NFD) == []
    exp.remove_trial(NFD)
    assert exp.trialIDs == []


def test_nfc_and_nfd_forms_are_one_experiment_of_a_collection() -> None:
    col = zs.create_collection(icechunk.in_memory_storage())
    col.create_experiment(NFC)
    with pytest.raises(
        InvalidNameError, match=re.escape(f"experiment ID {NFD!a} cannot be stored")
    ):
        col.create_experiment(NFD)
    assert col.experimentIDs == [NFC]
    assert col.open_experiment(NFD).expID == NFC
    col.remove_experiment(NFD)
    assert col.experimentIDs == []


def test_nfc_and_nfd_forms_are_one_layer() -> None:
    adata = _adata()
    with pytest.raises(InvalidNameError, match=f"use its NFC form {NFC!r}"):
        adata.add_layer(NFD, np.zeros(adata.shape, dtype="float32"))
    adata.add_layer(NFC, np.zeros(adata.shape, dtype="float32"))
    assert list(adata.layers) == [NFC]


# -- stores written under the older rule ---------------------------------------------------


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store written before the portable rule: names it now refuses, stored."""
    path = str(tmp_path / "legacy.zarr")
    exp = zs.create_experiment(path, exp_id="E")
    with monkeypatch.context() as m:
        m.setattr(names, "_portable_problem", lambda name: None)  # the older zstore
        adata = _adata()
        adata.layers["a:b"] = np.ones(adata.shape, dtype="float32")
        adata.obs["x\u200by"] = [1, 2, 3]
        adata.uns["nul.txt"] = {"CON": 1}
        exp.add_trial("CON", adata)
        exp.add_trial(NFD, _adata())
    return path


def test_a_store_with_names_the_rule_now_refuses_still_reads(legacy: str) -> None:
    exp = zs.open_experiment(legacy)
    assert sorted(exp.trialIDs) == sorted(["CON", NFD])
    data = exp.load_trial("CON").data
    assert data.layers["a:b"].compute().tolist() == np.ones((3, 4)).tolist()
    assert data.obs["x\u200by"].tolist() == [1, 2, 3] and data.uns["nul.txt"]["CON"] == 1
    assert exp.load_trial(NFD).trialID == NFD  # stored in NFD: found as it is
    assert exp.layer_names("CON") == ["a:b"]


def test_a_store_with_names_the_rule_now_refuses_still_saves(legacy: str) -> None:
    exp = zs.open_experiment(legacy, mode="r+")
    trial = exp.load_trial("CON")
    trial.data.add_layer("dFF", zs.normalize_dff(trial.data.X, normalize_pct=50))
    trial.data.uns["nul.txt"]["CON"] = 2  # an old name, changed value
    assert "layers/dFF" in trial.save()
    trial.data.uns["aux"] = 1  # a new name: the rule applies
    with pytest.raises(InvalidNameError, match="uns key 'aux' of trial 'CON'"):
        trial.save()
    exp.remove_trial("CON")
    assert zs.open_experiment(legacy).trialIDs == [NFD]


# -- error classes -----------------------------------------------------------------------------


def test_exists_errors_name_what_exists(tmp_path: Path) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    exp.add_trial("t-001", _adata())
    with pytest.raises(TrialExistsError, match="trial 't-001' already exists in experiment 'E'"):
        exp.add_trial("t-001", _adata())
    zs.compute_dff(exp, layer="dFF", normalize_pct=50)
    with pytest.raises(LayerExistsError, match=r"trials \['t-001'\] already have a layer 'dFF'"):
        zs.compute_dff(exp, layer="dFF", normalize_pct=50)
    with pytest.raises(ExperimentExistsError, match="already holds experiment 'E'"):
        zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    for error in (TrialExistsError, LayerExistsError, ExperimentExistsError):
        assert issubclass(error, AlreadyExistsError) and issubclass(error, FileExistsError)
    assert not issubclass(TrialExistsError, ExperimentExistsError)
    assert not issubclass(LayerExistsError, ExperimentExistsError)


def test_missing_keys_are_key_not_found_errors(tmp_path: Path) -> None:
    ragged = zs.RaggedArray.from_arrays([np.array([3, 4]), np.array([7])], dtype="int16")
    with pytest.raises(KeyNotFoundError, match="RaggedArray has no field 'ypix'"):
        ragged["ypix"]
    path = tmp_path / "t.paq"
    zs.write_paq(path, np.ones((1, 10)), rate=20000, chan_names=["frame_clock"])
    with pytest.raises(KeyNotFoundError, match=r"t\.paq has no channel 'lick'"):
        zs.read_paq(path).channel("lick")


# -- the property: every str passes and round-trips, or is an InvalidNameError --------------

TRICKY = st.sampled_from(
    [NFD, "CON", "a:b", "t\u200b", "zarr.json", "..", "x" * 129, "\udc80", "a.", "__a"]
)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=140)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), ANY_TEXT, TRICKY))
def test_any_str_is_accepted_or_refused_with_invalid_name_error(name: str) -> None:
    try:
        checked = check_name(name, kind="trial ID")
    except InvalidNameError:
        suggestion = suggest_name(name)
        assert suggestion is None or check_name(suggestion, kind="trial ID") == suggestion
        return
    assert checked == name
    assert unicodedata.is_normalized("NFC", name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES


@pytest.fixture(scope="module")
def memory_exp() -> zs.Experiment:
    return zs.create_experiment(icechunk.in_memory_storage(), exp_id="M")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(st.text(min_size=1, max_size=20), ANY_TEXT, TRICKY))
def test_an_accepted_name_round_trips_as_trial_id_and_layer(
    memory_exp: zs.Experiment, name: str
) -> None:
    adata = _adata(2, 3)
    try:
        check_name(name, kind="trial ID")
    except InvalidNameError:
        with pytest.raises(InvalidNameError):
            memory_exp.add_trial(name, adata)
        with pytest.raises(InvalidNameError):
            adata.add_layer(name, np.zeros((2, 3), dtype="float32"))
        return
    adata.add_layer(name, np.zeros((2, 3), dtype="float32"))
    memory_exp.add_trial(name, adata, overwrite=True)
    assert name in memory_exp.trialIDs
    assert list(memory_exp.load_trial(name).data.layers) == [name]
    memory_exp.remove_trial(name)


# -- look-alike names (Unicode forms) in every lookup; names built by ingest ---------------


@pytest.fixture
def legacy_nfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store of zstore <= 0.2.0, which took NFD names: trial, layer and experiment."""
    path = str(tmp_path / "nfd.zarr")
    exp = zs.create_experiment(path, exp_id="E")
    with monkeypatch.context() as m:
        m.setattr(names, "_portable_problem", lambda name: None)  # the older zstore
        adata = _adata()
        adata.layers[NFD] = np.ones(adata.shape, dtype="float32")
        exp.add_trial(NFD, adata)
    return path


def test_a_legacy_nfd_trial_is_found_by_its_nfc_name(legacy_nfd: str) -> None:
    exp = zs.open_experiment(legacy_nfd, mode="r+")
    assert exp.trialIDs == [NFD]
    assert exp.load_trial(NFC).trialID == NFD
    assert exp.layer_names(NFC) == [NFD]
    assert exp.load_trial(NFC).data.matrix(NFC).shape == (3, 4)


def test_adding_the_nfc_name_of_a_legacy_nfd_trial_is_that_trial(legacy_nfd: str) -> None:
    exp = zs.open_experiment(legacy_nfd, mode="r+")
    with pytest.raises(TrialExistsError, match=re.escape(f"trial {NFD!a} already exists")):
        exp.add_trial(NFC, _adata())
    assert exp.trialIDs == [NFD]
    exp.add_trial(NFC, _adata(3, 6), overwrite=True)  # replaces the NFD trial
    assert exp.trialIDs == [NFD] and exp.load_trial(NFD).data.shape == (3, 6)
    exp.remove_trial(NFC)
    assert exp.trialIDs == []


def test_a_legacy_nfd_layer_is_replaced_by_its_nfc_name(legacy_nfd: str) -> None:
    exp = zs.open_experiment(legacy_nfd, mode="r+")
    trial = exp.load_trial(NFC)
    trial.data.add_layer(NFC, np.full(trial.data.shape, 2, dtype="float32"))
    trial.save()
    assert exp.layer_names(NFD) == [NFD]
    assert float(exp.load_trial(NFD).data.matrix(NFC).compute().sum()) == 24.0
    with pytest.raises(LayerExistsError, match="already have a layer"):
        zs.compute_dff(exp, layer=NFC, progress=False)
    zs.compute_dff(exp, layer=NFC, overwrite=True, normalize_pct=50, progress=False)
    assert exp.layer_names(NFD) == [NFD]  # replaced, not doubled


def test_a_legacy_nfd_experiment_is_found_and_not_doubled_by_its_nfc_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    col = zs.create_collection(icechunk.in_memory_storage())
    with monkeypatch.context() as m:
        m.setattr(names, "_portable_problem", lambda name: None)
        col.create_experiment(NFD)
    assert col.open_experiment(NFC).expID == NFD
    with pytest.raises(ExperimentExistsError, match="already in the collection"):
        col.create_experiment(NFC)
    assert col.experimentIDs == [NFD]


def test_not_found_messages_show_look_alike_names_in_ascii(legacy_nfd: str) -> None:
    exp = zs.open_experiment(legacy_nfd)
    with pytest.raises(KeyNotFoundError) as err:
        exp.load_trial("cafe")
    assert f"its trials are [{NFD!a}]" in str(err.value)


def test_every_lookup_takes_either_unicode_form(tmp_path: Path) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    adata = _adata()
    adata.add_layer(NFC, np.ones(adata.shape, dtype="float32"))
    exp.add_trial(NFC, adata)
    assert exp.load_trial(NFD).data.matrix(NFD).shape == (3, 4)
    assert exp.concat(layer=NFD, trials=[NFD]).shape == (3, 4)
    assert zs.compute_dff(
        exp, trials=[NFD], layer="dFF", source=NFD, normalize_pct=50, progress=False
    ) == [NFC]
    target = zs.export(exp, str(tmp_path / "x.h5ad"), trial=NFD, layers=[NFD], progress=False)
    assert Path(target).exists()
    with pytest.raises(InvalidNameError, match="cannot name anything in a store"):
        zs.export(exp, str(tmp_path / "y.h5ad"), trial="a/b")


def test_an_unprintable_non_str_name_is_still_refused_with_invalid_name_error() -> None:
    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(InvalidNameError, match=r"<Bad object> \(Bad\).*names must be str"):
        check_name(Bad(), kind="trial ID")


@pytest.mark.parametrize(
    ("subject", "session", "words"),
    [
        (
            "RL109",
            "2024-05-01T10:00",
            ["session '2024-05-01T10:00'", "contains :", "'2024-05-01T10_00'"],
        ),
        ("RL109", " s1", ["session ' s1'", "white space"]),
        ("RL:109", None, ["subject 'RL:109'", "contains :"]),
    ],
    ids=["session-with-colon", "session-with-space", "subject-with-colon"],
)
def test_ingest_names_the_subject_or_session_an_experiment_id_is_built_from(
    tmp_path: Path, subject: str, session: str | None, words: list[str]
) -> None:
    from zstore import synthetic as syn

    root = syn.write_suite2p_planes(str(tmp_path / "s2p"), n_planes=1, n_rois=6)
    store = tmp_path / "c.zarr"
    with pytest.raises(InvalidNameError) as err:
        zs.ingest_suite2p(root, store, subject=subject, session=session, progress=False)
    message = str(err.value)
    for word in [*words, "<subject>_<session>_plane<k>", "exp_id="]:
        assert word in message, (word, message)
    assert not store.exists()  # nothing written
