"""Summary images (meanImg, meanImgE, max_proj, Vcorr) stored once per experiment: fewer
files, the same images in every trial's uns, references plain anndata can read, safe
overwrite and removal, stores of zstore 0.2.0 (images in each trial) still read."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import icechunk
import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import zstore as zs
import zstore.synthetic as syn
from zstore import _compat
from zstore.cli import main as cli
from zstore.display import format_bytes
from zstore.experiment import _arrays_writer, _image_writer, _write_trials
from zstore.io.safe_pickle import load_pickled_npy
from zstore.trialio import write_trial

FRAMES = [120, 90, 150]
IMAGES = ("meanImg", "meanImgE", "max_proj", "Vcorr")


def ingest_quietly(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*frame clock edges", zs.ZstoreWarning)
        return zs.ingest_suite2p(*args, **kwargs)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, dict[str, Path], dict[str, Any]]:
    plane, paqs = syn.write_suite2p_run(tmp_path / "RL109", n_rois=30, frames_per_file=FRAMES)
    return plane, paqs, load_pickled_npy(plane / "ops.npy")


def files_and_bytes(path: Path) -> tuple[int, int]:
    sizes = [f.stat().st_size for f in path.rglob("*") if f.is_file()]
    return len(sizes), sum(sizes)


def write_trials(exp: zs.Experiment, trials: dict[str, Any], *, as_0_2_0: bool) -> None:
    """Write ``trials`` in one transaction: as zstore 0.2.0 did (every trial's images in
    its own uns: write_trial without an image store), or as zstore does now."""
    with exp._transaction("add trials") as txn:
        if as_0_2_0:
            group = txn.group("trials")
            for tid, data in trials.items():
                write_trial(
                    group.create_group(tid),
                    tid,
                    data,
                    config=exp.config,
                    write_arrays=_arrays_writer(txn),
                )
                txn.note(f"trials/{tid}")
        else:
            spec = {tid: (data, None) for tid, data in trials.items()}
            _write_trials(txn, spec, exp.config, False, exp.expID, None)
    exp._advance(txn)


def plain_trial(location: Path, path: str) -> ad.AnnData:
    """A trial read with plain anndata through Icechunk, as docs/FORMAT.md shows."""
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(location)))
    store = repo.readonly_session("main").store
    return ad.read_zarr(zarr.open_group(store, path=path, mode="r"))


def test_images_are_stored_once_per_experiment(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, ops = run
    source = ingest_quietly(plane, tmp_path / "ingested.zarr", paq=paqs, exp_id="RL109")
    trials = {t: source.load_trial(t).data for t in source.trialIDs}
    counts = {}
    for layout in ("0.2.0", "now"):
        path = tmp_path / f"{layout}.zarr"
        exp = zs.create_experiment(path, exp_id="RL109")
        write_trials(exp, trials, as_0_2_0=layout == "0.2.0")
        counts[layout] = files_and_bytes(path)
    (old_files, old_bytes), (new_files, new_bytes) = counts["0.2.0"], counts["now"]
    # 3 trials x 4 images became 4 images: 8 chunk objects fewer, and their bytes
    image_bytes = sum(np.asarray(ops[k]).nbytes for k in IMAGES)
    assert new_files <= old_files - 8, counts
    assert new_bytes < old_bytes - image_bytes, counts  # >= 2 of 3 copies saved
    assert files_and_bytes(tmp_path / "ingested.zarr")[0] < old_files, counts
    images = zarr.open_group(
        icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "now.zarr")))
        .readonly_session("main")
        .store,
        path="images",
        mode="r",
    )
    assert len(list(images.array_keys())) == 4
    for tid in trials:  # both layouts give the user the same trials
        old = zs.open_experiment(tmp_path / "0.2.0.zarr").load_trial(tid).data
        new = zs.open_experiment(tmp_path / "now.zarr").load_trial(tid).data
        for key in IMAGES:
            np.testing.assert_array_equal(new.uns["suite2p"][key], old.uns["suite2p"][key])


def test_every_trial_gives_the_ops_images(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, ops = run
    exp = ingest_quietly(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL109")
    refs = {}
    for tid in exp.trialIDs:
        uns = exp.load_trial(tid).data.uns
        assert "zstore_images" not in uns
        for key in IMAGES:
            image = uns["suite2p"][key]
            assert isinstance(image, np.ndarray) and image.dtype == np.asarray(ops[key]).dtype
            np.testing.assert_array_equal(image, ops[key])
        uns["suite2p"]["meanImg"][0, 0] = -1  # each trial's copy is its own
        # plain anndata opens the trial and finds the references
        plain = plain_trial(tmp_path / "e.zarr", f"trials/{tid}")
        assert not set(IMAGES) & set(plain.uns["suite2p"])
        refs[tid] = dict(plain.uns["zstore_images"]["suite2p"])
        assert sorted(refs[tid]) == sorted(IMAGES)
        for key, path in refs[tid].items():
            assert path.startswith("images/")
            stored = exp.open_zarr("images")[path.removeprefix("images/")]
            np.testing.assert_array_equal(stored[...], ops[key])  # type: ignore[index]
    assert refs["t-000"] == refs["t-001"] == refs["t-002"]
    assert exp.load_trial("t-001").data.uns["suite2p"]["meanImg"][0, 0] != -1
    assert zs.verify_experiment(exp, progress=False) == []


def test_replacing_an_experiment_with_the_same_run_keeps_its_images(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    # The replacement deletes the old images and writes the same ones (same hashes) again:
    # they must not be taken for another writer's and dropped (scripts/demo run twice).
    plane, paqs, ops = run
    ingest_quietly(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL109")
    for _ in range(2):
        exp = ingest_quietly(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL109", overwrite=True)
        assert zs.verify_experiment(exp, progress=False) == []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            uns = zs.open_experiment(tmp_path / "e.zarr").load_trial("t-001").data.uns
        for key in IMAGES:
            np.testing.assert_array_equal(uns["suite2p"][key], ops[key])
    col = ingest_quietly(plane.parent, tmp_path / "c.zarr", subject="A", session="s")
    col = ingest_quietly(
        plane.parent, tmp_path / "c.zarr", subject="A", session="s", overwrite=True
    )
    assert zs.verify_experiment(col.open_experiment("A_s_plane0"), progress=False) == []


def test_two_runs_in_one_experiment_keep_their_own_images(tmp_path: Path) -> None:
    runs = [
        syn.write_suite2p_run(tmp_path / f"run{k}", n_rois=10, frames_per_file=[30], seed=k)
        for k in (1, 2)
    ]
    first = ingest_quietly(runs[0][0], tmp_path / "a.zarr", paq=runs[0][1], exp_id="A")
    second = ingest_quietly(runs[1][0], tmp_path / "b.zarr", paq=runs[1][1], exp_id="B")
    exp = zs.create_experiment(tmp_path / "both.zarr", exp_id="both")
    exp.add_trial("one", first.load_trial("t-000").data, progress=False)
    exp.add_trial("two", second.load_trial("t-000").data, progress=False)
    assert len(list(exp.open_zarr("images").array_keys())) == 8
    for tid, (plane, _) in zip(["one", "two"], runs, strict=True):
        ops = load_pickled_npy(plane / "ops.npy")
        for key in IMAGES:
            np.testing.assert_array_equal(exp.load_trial(tid).data.uns["suite2p"][key], ops[key])


def test_overwrite_and_remove_keep_the_images_other_trials_use(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, ops = run
    exp = ingest_quietly(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL109")
    memory = exp.load_trial("t-000").data.to_memory()
    exp.remove_trial("t-000")
    exp.add_trial("t-001", memory, overwrite=True, progress=False)
    trial = exp.load_trial("t-002")
    trial.data.uns["note"] = "saved again"
    assert trial.save() == ["uns"]
    for tid in ("t-001", "t-002"):
        for key in IMAGES:
            np.testing.assert_array_equal(exp.load_trial(tid).data.uns["suite2p"][key], ops[key])
    assert len(list(exp.open_zarr("images").array_keys())) == 4
    assert zs.verify_experiment(exp, progress=False) == []
    # the whole experiment replaced: the old images go with the old trials
    other, _ = syn.write_suite2p_run(tmp_path / "other", n_rois=8, frames_per_file=[20], seed=9)
    exp = ingest_quietly(other, tmp_path / "e.zarr", exp_id="RL109", overwrite=True)
    assert len(list(exp.open_zarr("images").array_keys())) == 4
    np.testing.assert_array_equal(
        exp.load_trial("t-000").data.uns["suite2p"]["meanImg"],
        load_pickled_npy(other / "ops.npy")["meanImg"],
    )


def test_stores_of_zstore_0_2_0_still_read(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, ops = run
    source = ingest_quietly(plane, tmp_path / "src.zarr", paq=paqs, exp_id="RL109")
    exp = zs.create_experiment(tmp_path / "old.zarr", exp_id="RL109")
    write_trials(exp, {"t-000": source.load_trial("t-000").data}, as_0_2_0=True)
    plain = plain_trial(tmp_path / "old.zarr", "trials/t-000")
    np.testing.assert_array_equal(plain.uns["suite2p"]["meanImg"], ops["meanImg"])  # inline
    trial = exp.load_trial("t-000")
    for key in IMAGES:
        np.testing.assert_array_equal(trial.data.uns["suite2p"][key], ops[key])
    assert trial.save() == []  # loading changed nothing
    trial.data.uns["note"] = "edited"
    assert trial.save() == ["uns"]  # the next save of uns moves the images out
    plain = plain_trial(tmp_path / "old.zarr", "trials/t-000")
    assert sorted(plain.uns["zstore_images"]["suite2p"]) == sorted(IMAGES)
    for key in IMAGES:
        np.testing.assert_array_equal(exp.load_trial("t-000").data.uns["suite2p"][key], ops[key])
    assert zs.verify_experiment(exp, progress=False) == []


def image_paths(location: Path, trial: str = "t-001") -> dict[str, str]:
    """The references of a trial as plain anndata reads them: ``{"meanImg": "images/..."}``."""
    return dict(plain_trial(location, f"trials/{trial}").uns["zstore_images"]["suite2p"])


def rewrite_stored(location: Path, change: Callable[[zarr.Group], None]) -> None:
    """Change the store behind zstore's back (as a damaged disk or another tool would)."""
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(location)))
    session = repo.writable_session("main")
    change(zarr.open_group(session.store, mode="r+"))
    session.commit("changed behind zstore's back")


def flip_a_byte(location: Path, path: str) -> None:
    """A changed byte in the one chunk of the image ``path`` (its checksum now fails)."""
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(location)))
    session = repo.writable_session("main")
    key = f"{path}/c/0/0"
    data = bytearray(_compat.read_bytes(session.store, key) or b"")
    data[len(data) // 2] ^= 0xFF
    sync(session.store.set(key, default_buffer_prototype().buffer.from_bytes(bytes(data))))
    session.commit("a flipped byte")


def test_a_damaged_image_is_named_and_its_trials_still_load(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, ops = run
    location = tmp_path / "e.zarr"
    ingest_quietly(plane, location, paq=paqs, exp_id="RL109")
    path = image_paths(location)["meanImg"]
    flip_a_byte(location, path)
    exp = zs.open_experiment(location, mode="r+")
    named = (
        rf"experiment 'RL109' at .*: trial 't-00\d' uns\['suite2p'\]\['meanImg'\] \(the "
        rf"summary image {path}\) failed its crc32c checksum"
    )  # t-001, or t-000: the first an export of every trial reads
    with pytest.warns(zs.ZstoreWarning, match=named):
        trial = exp.load_trial("t-001")
    data = trial.data
    assert np.asarray(data.X).shape == data.shape  # X and layers read as usual
    np.testing.assert_array_equal(data.uns["suite2p"]["Vcorr"], ops["Vcorr"])  # the others too
    for use in (
        lambda: np.asarray(data.uns["suite2p"]["meanImg"]),
        data.to_memory,
        lambda: zs.export(exp, tmp_path / "t.h5ad", trial="t-001"),
        lambda: zs.export(exp, tmp_path / "all.zarr"),
    ):
        with (
            warnings.catch_warnings(),  # the exports load the trial again: it warns again
            pytest.raises(zs.errors.CorruptChunkError, match=named) as caught,
        ):
            warnings.simplefilter("ignore", zs.ZstoreWarning)
            use()
        assert not isinstance(caught.value, zs.errors.MissingChunkError)
    assert not (tmp_path / "t.h5ad").exists()
    # saving the trial keeps its reference to the damaged image (nothing is lost)
    data.uns["note"] = "edited"
    assert trial.save() == ["uns"]
    assert image_paths(location)["meanImg"] == path
    damage = [str(d) for d in zs.verify_experiment(exp, progress=False)]
    assert damage == [
        f"image {path} (used by trial 't-000' suite2p/meanImg, trial 't-001' "
        f"suite2p/meanImg, trial 't-002' suite2p/meanImg): unreadable: checksum mismatch "
        f"(the stored bytes changed after writing)"
    ]


def test_a_missing_image_is_named(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, _ = run
    exp = ingest_quietly(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL109")
    path = image_paths(tmp_path / "e.zarr")["Vcorr"]
    with exp._transaction("lose an image") as txn:
        txn.delete(path)
        txn.note(path)
    exp._advance(txn)
    damage = [str(d) for d in zs.verify_experiment(exp, progress=False)]
    users = ", ".join(f"trial {t!r} suite2p/Vcorr" for t in exp.trialIDs)
    assert damage == [f"image {path} (used by {users}): the image is not in the experiment"]
    with pytest.warns(zs.ZstoreWarning, match=f"the summary image {path}"):
        data = exp.load_trial("t-001").data
    with pytest.raises(zs.errors.MissingChunkError, match=rf"trial 't-001' .*{path}\) is not"):
        np.asarray(data.uns["suite2p"]["Vcorr"])


def test_verify_finds_an_image_whose_content_no_longer_has_its_name(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, _ = run
    location = tmp_path / "e.zarr"
    ingest_quietly(plane, location, paq=paqs, exp_id="RL109")
    path = image_paths(location)["max_proj"]
    rewrite_stored(location, lambda root: root[path].__setitem__(..., 0))  # checksums valid
    damage = zs.verify_experiment(zs.open_experiment(location), progress=False)
    assert [(d.array, len(d.used_by)) for d in damage] == [(path, 3)]
    assert "its content no longer matches its name" in str(damage[0])


def test_images_no_trial_uses_are_deleted_with_the_last_trial_using_them(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, ops = run
    location = tmp_path / "e.zarr"
    exp = ingest_quietly(plane, location, paq=paqs, exp_id="RL109")
    shared = set(image_paths(location).values())
    memory = exp.load_trial("t-000").data.to_memory()
    other = memory.copy()
    other.uns["suite2p"] = {k: ops[k] + 1 for k in IMAGES}  # another run's images
    rewrite_stored(location, lambda root: root["images"].create_array("mine", data=np.ones(3)))

    def stored() -> set[str]:
        return {f"images/{n}" for n in exp.open_zarr("images").array_keys()}

    exp.add_trial("x", other, progress=False)
    own = set(image_paths(location, "x").values())
    assert len(own) == 4 and stored() == shared | own | {"images/mine"}
    exp.remove_trial("x")
    assert stored() == shared | {"images/mine"}  # never an image of zstore's still used,
    assert set(exp.history()[0].changes) == {"trials/x"} | own  # nor another's; one commit
    exp.add_trial("x", other, progress=False)
    exp.add_trial("x", memory, overwrite=True, progress=False)  # replaced: the same
    assert stored() == shared | {"images/mine"}
    t = exp.load_trial("t-002")  # a save that changes the images of a trial
    t.data.uns["suite2p"]["meanImg"] = ops["meanImg"] * 2
    t.save()
    assert len(stored()) == 6  # meanImg * 2 added, meanImg still used by t-000, t-001, x
    for tid in ("t-000", "t-001", "x"):
        exp.remove_trial(tid)
    assert len(stored()) == 5 and exp.load_trial("t-002").data.uns["suite2p"]["meanImg"][0, 0] == (
        ops["meanImg"][0, 0] * 2
    )
    assert zs.verify_experiment(exp, progress=False) == []
    report = exp.collect_garbage(keep=datetime.timedelta(0), grace=datetime.timedelta(0))
    assert report.chunks_deleted > 0 and report.versions_expired > 0
    trial = exp.load_trial("t-002").data
    for key in ("meanImgE", "max_proj", "Vcorr"):
        np.testing.assert_array_equal(trial.uns["suite2p"][key], ops[key])


@pytest.mark.parametrize("first", ["remove", "add"])
def test_a_removal_never_deletes_an_image_a_concurrent_write_refers_to(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path, first: str
) -> None:
    plane, paqs, ops = run
    location = tmp_path / "e.zarr"
    exp = ingest_quietly(plane, location, paq=paqs, exp_id="RL109")
    other = exp.load_trial("t-000").data.to_memory()
    other.uns["suite2p"] = {k: ops[k] + 1 for k in IMAGES}
    exp.add_trial("x", other, progress=False)  # the only trial using these images
    adder = zs.open_experiment(location, mode="r+")
    remover = zs.open_experiment(location, mode="r+")
    # one writer begins, the other commits meanwhile, then the first commits
    if first == "add":  # y, with x's images, commits while x's removal is under way
        with remover._transaction("remove trial x") as txn:
            txn.delete("trials/x")
            txn.note("trials/x")
            _image_writer(txn, prune=True)
            adder.add_trial("y", other, progress=False)
        remover._advance(txn)
    else:  # x is removed (and its images) while y, with the same images, is written
        with adder._transaction("add trial y") as txn:
            _write_trials(txn, {"y": (other, None)}, adder.config, False, "RL109", None)
            remover.remove_trial("x")
        adder._advance(txn)
    exp = zs.open_experiment(location)
    assert sorted(exp.trialIDs) == ["t-000", "t-001", "t-002", "y"]
    for key in IMAGES:
        np.testing.assert_array_equal(exp.load_trial("y").data.uns["suite2p"][key], ops[key] + 1)
    assert zs.verify_experiment(exp, progress=False) == []
    assert len(list(exp.open_zarr("images").array_keys())) == 8


CHILD = textwrap.dedent(
    """
    import sys, time, warnings
    from pathlib import Path
    import zstore as zs
    store, source, tid, shift, ready = sys.argv[1:]
    warnings.simplefilter("ignore")
    data = zs.open_experiment(source).load_trial("t-000").data.to_memory()
    if float(shift):
        data.uns["suite2p"]["meanImg"] = data.uns["suite2p"]["meanImg"] + float(shift)
    exp = zs.open_experiment(store, mode="r+")
    Path(ready, tid).touch()
    while len(list(Path(ready).iterdir())) < 2:  # both start writing together
        time.sleep(0.001)
    exp.add_trial(tid, data, progress=False)
    """
)


@pytest.mark.parametrize("case", ["new experiment", "no images group", "different images"])
def test_two_processes_add_trials_with_images_at_once(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path, case: str
) -> None:
    plane, paqs, ops = run
    source = tmp_path / "src.zarr"
    ingest_quietly(plane, source, paq=paqs, exp_id="RL109")
    store = tmp_path / "e.zarr"
    zs.create_experiment(store, exp_id="E")
    if case == "no images group":  # an experiment written before images moved out
        rewrite_stored(store, lambda root: root.__delitem__("images"))
    shifts = {"a": 0.0, "b": 5.0 if case == "different images" else 0.0}
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store), str(source), tid, str(shift), str(ready)]
        )
        for tid, shift in shifts.items()
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    exp = zs.open_experiment(store)
    assert sorted(exp.trialIDs) == ["a", "b"]  # nothing lost
    for tid, shift in shifts.items():
        uns = exp.load_trial(tid).data.uns["suite2p"]
        np.testing.assert_array_equal(uns["meanImg"], ops["meanImg"] + shift)
        np.testing.assert_array_equal(uns["Vcorr"], ops["Vcorr"])
    n_images = 5 if case == "different images" else 4
    assert len(list(exp.open_zarr("images").array_keys())) == n_images
    assert zs.verify_experiment(exp, progress=False) == []


def test_info_shows_the_images(
    run: tuple[Path, dict[str, Path], dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plane, paqs, _ = run
    location = tmp_path / "e.zarr"
    ingest_quietly(plane, location, paq=paqs, exp_id="RL109")
    assert cli(["info", str(location), "--json"]) == 0
    images = json.loads(capsys.readouterr().out)["images"]
    assert images["arrays"] == 4 and images["stored_bytes"] > 0
    assert cli(["info", str(location)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "images:" in line]
    assert lines == [
        f"  images: 4 arrays, {format_bytes(images['stored_bytes'])} (summary images shared "
        f"by the trials)"
    ]


def test_references_from_another_store_are_refused(
    run: tuple[Path, dict[str, Path], dict[str, Any]], tmp_path: Path
) -> None:
    plane, paqs, _ = run
    exp = ingest_quietly(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL109")
    plain = plain_trial(tmp_path / "e.zarr", "trials/t-000")
    with pytest.raises(ValueError, match=r"uns\['zstore_images'\] holds references"):
        exp.add_trial("copy", zs.AnnotatedData(plain), progress=False)
    assert exp.trialIDs == ["t-000", "t-001", "t-002"]
    assert os.path.isdir(tmp_path / "e.zarr")
