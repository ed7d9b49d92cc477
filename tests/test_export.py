"""Anndata export that round-trips: trials and whole experiments, read back with plain
anndata element by element; ``to_memory()`` results that anndata's writers take."""

from __future__ import annotations

import importlib.util
import math
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import awkward as ak
import numpy as np
import pandas as pd
import pytest
from conftest import chunk_object

import zstore as zs
import zstore.synthetic as syn
from zstore.arrays import StorageConfig
from zstore.cli import main
from zstore.errors import AlreadyExistsError, CorruptChunkError, KeyNotFoundError
from zstore.io.safe_pickle import load_pickled_npy
from zstore.publish import publishing
from zstore.ragged import RaggedArray

FRAMES = [120, 90, 150]
IMAGES = ("meanImg", "meanImgE", "max_proj", "Vcorr")
READERS: dict[str, Callable[[Path], ad.AnnData]] = {".h5ad": ad.read_h5ad, ".zarr": ad.read_zarr}


def ingest_quietly(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*frame clock edges", zs.ZstoreWarning)
        return zs.ingest_suite2p(*args, **kwargs)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[zs.Experiment, dict[str, Any]]:
    """A demo-like experiment: 3 trials with paq channels, masks, dF/F; and its ops."""
    root = tmp_path_factory.mktemp("export")
    plane, paqs = syn.write_suite2p_run(root / "RL109", n_rois=30, frames_per_file=FRAMES, seed=5)
    exp = ingest_quietly(plane, root / "RL109.zarr", paq=paqs, exp_id="RL109")
    zs.compute_dff(exp, layer="dFF", normalize_pct=20, progress=False)
    return exp, load_pickled_npy(plane / "ops.npy")


# -- comparing every element ------------------------------------------------------------------


def same_value(found: Any, expected: Any, where: str) -> None:
    """``found`` (read back by plain anndata) holds exactly ``expected``, recursively."""
    if isinstance(expected, Mapping):
        assert isinstance(found, Mapping), f"{where}: {type(found).__name__}, not a mapping"
        assert sorted(found) == sorted(expected), f"{where}: keys {sorted(found)}"
        for key in expected:
            same_value(found[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(found, expected)
    elif isinstance(expected, np.ndarray | list | tuple):
        a, b = np.asarray(found), np.asarray(expected)
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        if b.dtype.kind in "OUST":
            text = [str(x) for x in a.ravel()], [str(x) for x in b.ravel()]
            assert text[0] == text[1], f"{where}: {text[0]} != {text[1]}"
        else:
            assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(found, float | np.floating) and math.isnan(found), where
    else:
        assert found == expected, f"{where}: {found!r} != {expected!r}"
        assert isinstance(expected, str) == isinstance(found, str), where


def same_anndata(found: ad.AnnData, expected: ad.AnnData) -> None:
    """Every element: X, each layer, obs and var (dtypes too), every aligned entry
    (masks as awkward lists with their dtype), uns recursively."""
    assert type(found) is ad.AnnData
    assert found.shape == expected.shape
    same_value(np.asarray(found.X), np.asarray(expected.X), "X")
    assert sorted(found.layers) == sorted(expected.layers)
    for name in expected.layers:
        same_value(np.asarray(found.layers[name]), np.asarray(expected.layers[name]), name)
    pd.testing.assert_frame_equal(found.obs, expected.obs, check_exact=True)
    pd.testing.assert_frame_equal(found.var, expected.var, check_exact=True)
    for attr in ("obsm", "varm", "obsp", "varp"):
        got, want = getattr(found, attr), getattr(expected, attr)
        assert sorted(got) == sorted(want), f"{attr}: {sorted(got)} != {sorted(want)}"
        for key, value in want.items():
            if isinstance(value, ak.Array):
                assert type(got[key]) is ak.Array, f"{attr}/{key}: {type(got[key])}"
                assert str(got[key].type) == str(value.type), f"{attr}/{key}"
                assert ak.to_list(got[key]) == ak.to_list(value), f"{attr}/{key}"
            else:
                same_value(got[key], value, f"{attr}/{key}")
    same_value(dict(found.uns), dict(expected.uns), "uns")


def check_images(uns: Mapping[str, Any], ops: Mapping[str, Any]) -> None:
    for key in IMAGES:
        same_value(uns["suite2p"][key], np.asarray(ops[key]), f"uns/suite2p/{key}")


def expected_experiment(exp: zs.Experiment) -> ad.AnnData:
    """What an export of the whole experiment holds, built with zstore's API."""
    data = exp.concat().to_memory()
    for name in exp.layer_names(exp.trialIDs[0]):
        data.layers[name] = exp.concat(layer=name).X.compute()
    data.uns["expID"] = exp.expID
    data.uns["trials_uns"] = {t: dict(exp.load_trial(t).data.uns) for t in exp.trialIDs}
    return data


# -- exports through the API and the CLI ------------------------------------------------------


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_trial_export_reads_back_exactly(
    demo: tuple[zs.Experiment, dict[str, Any]],
    tmp_path: Path,
    suffix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exp, ops = demo
    out = tmp_path / f"t-001{suffix}"
    assert main(["export", exp.location, "--trial", "t-001", "--to", str(out)]) == 0
    assert f"exported trial 't-001' of 'RL109' to {out}" in capsys.readouterr().out
    plain = READERS[suffix](out)
    expected = exp.load_trial("t-001").data.to_memory()
    same_anndata(plain, expected)
    assert plain.shape == (expected.n_obs, FRAMES[1])
    assert sorted(plain.layers) == ["Fneu", "dFF", "spks"]
    assert str(plain.obsm["ypix"].type) == f"{expected.n_obs} * var * int16"
    assert str(plain.obsm["lam"].type) == f"{expected.n_obs} * var * float32"
    assert plain.var.columns.tolist() == ["frame_clock", "running", "lick", "stim", "time"]
    check_images(plain.uns, ops)  # self-contained: the images, not references
    assert "zstore_images" not in plain.uns


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_experiment_export_reads_back_exactly(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    exp, ops = demo
    out = tmp_path / f"all{suffix}"
    assert main(["export", exp.location, "--to", str(out)]) == 0
    plain = READERS[suffix](out)
    same_anndata(plain, expected_experiment(exp))
    assert plain.shape[1] == sum(FRAMES)
    assert plain.var["trial"].tolist() == [
        t for t, n in zip(exp.trialIDs, FRAMES, strict=True) for _ in range(n)
    ]
    for tid in exp.trialIDs:
        check_images(plain.uns["trials_uns"][tid], ops)


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_exports_of_an_experiment_in_a_collection(tmp_path: Path, suffix: str) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path / "RL7", n_rois=12, frames_per_file=[40, 50])
    col = ingest_quietly(plane, tmp_path / "lab.zarr", paq=paqs, subject="RL7", session="d1")
    (exp_id,) = col.experimentIDs
    exp = col.open_experiment(exp_id)
    ops = load_pickled_npy(plane / "ops.npy")
    where = f"{tmp_path / 'lab.zarr'}::experiments/{exp_id}"
    one, whole = tmp_path / f"one{suffix}", tmp_path / f"whole{suffix}"
    assert main(["export", where, "--trial", "t-001", "--to", str(one)]) == 0
    assert main(["export", where, "--to", str(whole)]) == 0
    same_anndata(READERS[suffix](one), exp.load_trial("t-001").data.to_memory())
    same_anndata(READERS[suffix](whole), expected_experiment(exp))
    check_images(READERS[suffix](one).uns, ops)


# -- anndata's own writers on zstore's objects ---------------------------------------------------


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_anndata_writers_take_loaded_trials_and_concatenations(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    exp, ops = demo
    trial = exp.load_trial("t-002").data
    memory = trial.to_memory()
    allf = exp.concat(layer="dFF")
    cases = {
        "memory": (memory, memory),
        "lazy": (trial, memory),  # written straight from the store, block by block
        "concat": (allf, allf.to_memory()),
        "concat-memory": (allf.to_memory(), allf.to_memory()),
        "view": (memory[:5, 10:40], memory[:5, 10:40].to_memory()),
    }
    for name, (source, expected) in cases.items():
        out = tmp_path / f"{name}{suffix}"
        if suffix == ".h5ad":
            source.write_h5ad(out)
        else:
            source.write_zarr(out)
        same_anndata(READERS[suffix](out), expected)
    check_images(READERS[suffix](tmp_path / f"lazy{suffix}").uns, ops)
    assert type(trial.obsm["ypix"]) is RaggedArray  # writing read it, kept it lazy
    assert trial.obs["iscell"].dtype == bool  # and changed nothing of the source


def test_to_memory_gives_plain_masks_and_keeps_the_verbs(
    demo: tuple[zs.Experiment, dict[str, Any]],
) -> None:
    exp, _ = demo
    trial = exp.load_trial("t-000").data
    memory = trial.to_memory()
    assert isinstance(memory, zs.AnnotatedData)
    assert isinstance(memory.X, np.ndarray) and memory.X.dtype == np.float32
    assert all(isinstance(v, np.ndarray) for v in memory.layers.values())
    for key, dtype in (("ypix", "int16"), ("xpix", "int16"), ("lam", "float32")):
        mask = memory.obsm[key]
        assert type(mask) is ak.Array and str(mask.type) == f"{memory.n_obs} * var * {dtype}"
        assert ak.to_list(mask) == [a.tolist() for a in trial.obsm[key]]
    assert (
        repr(memory)
        == f"Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = {trial.n_obs} × 120"
    )
    memory.add_layer("double", memory.X * 2)
    memory.add_obs("depth_um", np.arange(memory.n_obs, dtype=float))
    memory.add_var("block", np.arange(memory.n_vars) // 10)
    memory.del_obs("depth_um")
    memory.del_var("block")
    assert sorted(memory.layers) == ["Fneu", "dFF", "double", "spks"]
    view = memory[[0, 3], :]
    assert isinstance(view, zs.AnnotatedData) and view.obs_names.tolist() == list(
        memory.obs_names[[0, 3]]
    )
    assert ak.to_list(view.obsm["ypix"]) == ak.to_list(memory.obsm["ypix"][[0, 3]])
    np.testing.assert_array_equal(
        np.asarray(exp.concat(layer="dFF").to_memory().X[:, :120]), memory.layers["dFF"]
    )


def test_plain_awkward_masks_are_stored_as_zstore_masks(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path
) -> None:
    exp, ops = demo
    source = exp.load_trial("t-000").data
    memory = source.to_memory()
    out = tmp_path / "t.h5ad"
    memory.write_h5ad(out)
    other = zs.create_experiment(tmp_path / "copy.zarr", exp_id="copy")
    other.add_trial("from-memory", memory, progress=False)
    other.add_trial("from-h5ad", zs.AnnotatedData(ad.read_h5ad(out)), progress=False)
    stored = exp.open_zarr("trials/t-000/obsm/ypix")
    for tid in ("from-memory", "from-h5ad"):
        loaded = other.load_trial(tid).data
        for key in ("ypix", "xpix", "lam"):
            mask = loaded.obsm[key]
            assert isinstance(mask, RaggedArray) and mask.is_lazy, (tid, key)
            assert mask.dtype == source.obsm[key].dtype
            assert [a.tolist() for a in mask] == [a.tolist() for a in source.obsm[key]]
        group = other.open_zarr(f"trials/{tid}/obsm/ypix")
        assert dict(group.attrs) == dict(stored.attrs)  # zstore's layout, as ingest wrote
        assert group["node1-data"].chunks == stored["node1-data"].chunks
        check_images(loaded.uns, ops)
        np.testing.assert_array_equal(loaded.X.compute(), memory.X)
    assert zs.verify_experiment(other, progress=False) == []


# -- an export appears whole or not at all --------------------------------------------------------

SMALL = StorageConfig(shard_bytes=16 * 256 * 4, inner_rois=16, inner_frames=128)


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """One trial of 256 ROIs x 20000 frames of noise (20 MB): seconds to export."""
    root = tmp_path_factory.mktemp("big")
    X = np.random.default_rng(1).random((256, 20_000), dtype=np.float32)
    exp = zs.create_experiment(root / "big.zarr", exp_id="BIG")
    exp.add_trial("big", zs.AnnotatedData(X), progress=False)
    return root / "big.zarr", X


@pytest.mark.parametrize("suffix", [".zarr", ".h5ad"])
def test_a_killed_export_leaves_only_a_hidden_partial(
    big: tuple[Path, np.ndarray], tmp_path: Path, suffix: str
) -> None:
    store, X = big
    out = tmp_path / f"big{suffix}"
    script = (
        "import sys, zstore as zs\n"
        "zs.export(zs.open_experiment(sys.argv[1]), sys.argv[2], trial='big', progress=False)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(store), str(out)])
    try:
        deadline = time.monotonic() + 60
        while not partials(tmp_path) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert partials(tmp_path), "the export never wrote its temporary"
        time.sleep(0.05)  # well inside the 20 MB write
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed export must leave nothing under the target's name"
    (left,) = partials(tmp_path)
    assert left.startswith(".big.") and left.endswith(f".partial{suffix}")

    # the next export of that name says what the leftover is, and completes
    with pytest.warns(zs.ZstoreWarning, match=r"left from an interrupted export.*delete them"):
        assert zs.export(zs.open_experiment(store), out, trial="big", progress=False) == out
    np.testing.assert_array_equal(np.asarray(READERS[suffix](out).X), X)
    assert partials(tmp_path) == [left]  # the user's to delete: zstore never deletes others'


@pytest.mark.parametrize("suffix", [".zarr", ".h5ad", ".nwb"])
def test_a_corrupt_chunk_fails_the_export_and_leaves_nothing(tmp_path: Path, suffix: str) -> None:
    if suffix == ".nwb":
        pytest.importorskip("pynwb")
    X = np.random.default_rng(0).random((64, 256), dtype=np.float32)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E", config=SMALL)
    exp.add_trial("t", zs.AnnotatedData(X, uns={"fs": 30.0}), progress=False)
    shard = chunk_object(tmp_path / "e.zarr", exp, "trials/t/X/c/2/0")  # ROIs 32-47
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x40
    shard.write_bytes(bytes(data))
    exp = zs.open_experiment(tmp_path / "e.zarr")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"t{suffix}"
    with pytest.raises(CorruptChunkError, match=r"trial 't' X: .*crc32c"):
        if suffix == ".nwb":
            zs.export_nwb(exp, out, session_start_time="2026-05-01T10:00:00+00:00")
        else:
            zs.export(exp, out, trial="t", progress=False)
    assert list(out_dir.iterdir()) == []  # neither the target nor a temporary


def test_publishing_never_replaces_what_appeared_meanwhile(tmp_path: Path) -> None:
    folder, file = tmp_path / "a.zarr", tmp_path / "a.h5ad"
    with (
        pytest.raises(AlreadyExistsError, match="appeared while exporting"),
        publishing(folder, what="export to") as temporary,
    ):
        (temporary / "X").mkdir(parents=True)
        folder.mkdir()  # an empty folder: rename(2) alone would replace it
    assert folder.is_dir() and list(folder.iterdir()) == []
    with (
        pytest.raises(AlreadyExistsError, match="appeared while exporting"),
        publishing(file, what="export to") as temporary,
    ):
        temporary.write_bytes(b"new")
        file.write_bytes(b"theirs")
    assert file.read_bytes() == b"theirs"
    assert partials(tmp_path) == []  # the temporaries were ours: removed


@pytest.mark.parametrize("suffix", [".zarr", ".h5ad", ".nwb"])
def test_a_missing_folder_is_one_clear_error(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    exp, _ = demo
    out = tmp_path / "not" / "there" / f"x{suffix}"
    message = rf"to {out}: the folder {out.parent} does not exist; create it first"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        if suffix == ".nwb":
            pytest.importorskip("pynwb")
            zs.export_nwb(exp, out, session_start_time="2026-05-01T10:00:00+00:00")
        else:
            zs.export(exp, out, trial="t-000")
    assert not (tmp_path / "not").exists()


# -- layers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", [["--trial", "t-000"], []])
def test_a_misspelled_layer_is_an_error_naming_the_stored_ones(
    demo: tuple[zs.Experiment, dict[str, Any]],
    tmp_path: Path,
    trial: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    exp, _ = demo
    out = tmp_path / "typo.h5ad"
    assert main(["export", exp.location, *trial, "--layer", "dff", "--to", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no layer 'dff' in trial" in err
    assert "'t-000': ['Fneu', 'dFF', 'spks']" in err and "case-sensitive" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyNotFoundError, match=r"no layer 'dff'.*\['Fneu', 'dFF', 'spks'\]"):
        zs.export(exp, out, trial="t-000", layers=["dff"])
    plain = ad.read_h5ad(zs.export(exp, out, trial="t-000", layers=["dFF"], progress=False))
    assert list(plain.layers) == ["dFF"]


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_unsaved_derived_layers_write_with_anndatas_writers(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    exp, _ = demo
    data = exp.load_trial("t-000").data
    dff = zs.normalize_dff(data.X, normalize_pct=30)
    data.add_layer(layer_name="dFF30", data=dff)
    out = tmp_path / f"lazy{suffix}"
    data.write_h5ad(out) if suffix == ".h5ad" else data.write_zarr(out)
    back = READERS[suffix](out)
    expected = zs.normalize_dff(np.asarray(data.X), normalize_pct=30)
    np.testing.assert_array_equal(np.asarray(back.layers["dFF30"]), expected)
    assert type(data.layers["dFF30"]) is type(dff)  # the object itself is unchanged

    # a write that fails removes what it created; anndata's overwrite stays allowed
    def fail(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("a failing block")

    data.add_layer(layer_name="bad", data=data.X.map_blocks(fail, dtype=np.float32))
    broken = tmp_path / f"broken{suffix}"
    with pytest.raises(RuntimeError, match="a failing block"):
        data.write_h5ad(broken) if suffix == ".h5ad" else data.write_zarr(broken)
    assert not broken.exists()
    del data.layers["bad"]
    data.write_h5ad(out) if suffix == ".h5ad" else data.write_zarr(out)  # replaces, as anndata


# -- trials of different ROI sets --------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> zs.Experiment:
    """Trials a0, a1 of one ROI set and b0 of a smaller one."""
    exp, _ = demo
    mixed = zs.create_experiment(tmp_path_factory.mktemp("mixed") / "m.zarr", exp_id="M")
    for tid, source in [("a0", "t-000"), ("a1", "t-001"), ("b0", "t-002")]:
        data = exp.load_trial(source).data.to_memory()
        mixed.add_trial(tid, data[:10].to_memory() if tid == "b0" else data, progress=False)
    return mixed


def test_trials_of_different_roi_sets_export_by_trials(
    mixed: zs.Experiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.h5ad"
    with pytest.raises(ValueError, match=re.escape("pass trials=[...] with the trials of one")):
        zs.export(mixed, out)
    assert main(["export", mixed.location, "--to", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pass --trial ID for each trial of one ROI set" in err and "trials=" not in err
    assert "['a0', 'a1']" in err and "['b0'] (10 ROIs)" in err
    with pytest.raises(TypeError, match="not both"):
        zs.export(mixed, out, trial="a0", trials=["a1"])

    zs.export(mixed, out, trials=["a1", "a0"], progress=False)
    expected = mixed.concat(trials=["a1", "a0"]).to_memory()
    plain = ad.read_h5ad(out)
    same_value(np.asarray(plain.X), np.asarray(expected.X), "X")
    assert plain.var["trial"].unique().tolist() == ["a1", "a0"]
    assert sorted(plain.uns["trials_uns"]) == ["a0", "a1"]

    two, one = tmp_path / "two.zarr", tmp_path / "one.zarr"
    assert main(["export", mixed.location, "--trial", "a0", "--trial", "a1", "--to", str(two)]) == 0
    assert "exported 2 trials (concatenated)" in capsys.readouterr().out
    assert ad.read_zarr(two).var["trial"].unique().tolist() == ["a0", "a1"]
    assert main(["export", mixed.location, "--trial", "b0", "--to", str(one)]) == 0
    same_anndata(ad.read_zarr(one), mixed.load_trial("b0").data.to_memory())


def test_cli_hints_use_flags_and_api_hints_keywords(
    mixed: zs.Experiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(KeyNotFoundError, match=r"or use X \(layer=None\)"):
        mixed.load_trial("a0").data.matrix("dff")
    plot = ["plot", mixed.location, "--trial", "a0", "--kind", "raster", "--layer", "dff"]
    assert main([*plot, "--out", str(tmp_path / "r.png")]) == 1
    err = capsys.readouterr().err
    assert "there is no layer 'dff'" in err and "(--layer X)" in err
    assert "`zstore dff STORE --layer dff`" in err
    assert "layer=None" not in err and "zs.compute_dff" not in err
    assert main(["dff", mixed.location, "--source", "dff", "--layer", "new"]) == 1  # no write
    err = capsys.readouterr().err
    assert "leave out --source for X" in err and "layer=None" not in err
    if importlib.util.find_spec("pynwb") is not None:
        out = tmp_path / "m.nwb"
        nwb = ["export", mixed.location, "--to", str(out), "--session-start-time", "2026-05-01"]
        assert main(nwb) == 1
        err = capsys.readouterr().err
        assert "(--trial ID, repeated for each trial)" in err and "trials=" not in err


# -- progress: (label, done, total) everywhere ---------------------------------------------------


class Calls:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


@pytest.mark.parametrize("suffix", [".zarr", ".h5ad"])
def test_every_progress_callable_gets_label_done_total(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    exp, _ = demo
    for kwargs, label in [({"trial": "t-001"}, "t-001"), ({}, "RL109")]:
        calls = Calls()
        zs.export(exp, tmp_path / f"{label}{suffix}", progress=calls, **kwargs)
        assert {len(c) for c in calls.calls} == {3}
        assert {c[0] for c in calls.calls} == {label}
        done = [c[1] for c in calls.calls]
        assert done == sorted(done) and done[-1] == calls.calls[-1][2] >= 4  # X + 3 layers

    copy = zs.create_experiment(tmp_path / "copy.zarr", exp_id="copy")
    calls = Calls()
    trial = copy.add_trial("c", exp.load_trial("t-000").data.to_memory(), progress=calls)
    assert calls.calls and {c[0] for c in calls.calls} == {"c"} and calls.calls[-1][1] > 0
    calls = Calls()
    trial.data.add_layer("twice", trial.data.X * 2)
    trial.save(progress=calls)
    assert calls.calls and {c[0] for c in calls.calls} == {"c"}
    assert calls.calls[-1][1] == calls.calls[-1][2] > 0


def test_h5ad_export_draws_a_bar(
    demo: tuple[zs.Experiment, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp, _ = demo
    zs.export(exp, tmp_path / "t.h5ad", trial="t-001", progress=True)
    err = capsys.readouterr().err
    assert "export t-001: 100%" in err
