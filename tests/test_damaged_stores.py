"""Damaged and foreign stores: each is a zstore error naming the store, the key and the
way out, and one damaged trial (or experiment) never hides the others.

The damage is made the way another program would make it: through Icechunk (which
refuses a metadata document that is not JSON, but stores ones zarr cannot read), on the
files of a plain Zarr store (zstore 0.1's, ``zstore migrate``'s input), or by writing
anndata's and zarr's own formats where zstore expects an experiment. Checksum failures
are told by the error's type (:class:`zstore.errors.ChecksumMismatchError`).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import icechunk
import numpy as np
import pytest
import zarr
from conftest import chunk_object
from zarr.core.buffer import cpu
from zarr.core.sync import sync

import zstore as zs
from zstore import _compat
from zstore.cli import main
from zstore.errors import (
    ChecksumMismatchError,
    CorruptChunkError,
    FormatVersionError,
    NotAnExperimentError,
    TrialNotFoundError,
    ZstoreWarning,
)
from zstore.shards import chunk_damage, read_checked
from zstore.summary import info_document
from zstore.verify import unreadable_experiments, verify_experiment

LEGACY = Path(__file__).parent / "data" / "zstore-0.1.zarr"


def _matrix(seed: int = 0) -> zs.AnnotatedData:
    return zs.AnnotatedData(np.random.default_rng(seed).random((4, 10)).astype("float32"))


def _experiment(path: Path, trials: tuple[str, ...] = ("a", "b", "c")) -> Path:
    exp = zs.create_experiment(path, exp_id="E")
    for k, trial_id in enumerate(trials):
        exp.add_trial(trial_id, _matrix(k))
    return path


def _session(path: Path) -> Any:
    storage = _compat.local_storage(str(path))
    return icechunk.Repository.open(storage).writable_session("main")


def _set_document(path: Path, key: str, document: Any) -> None:
    """Replace the metadata document ``key`` in the newest version (as another program
    writing through Icechunk would)."""
    session = _session(path)
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    sync(session.store.set(key, cpu.Buffer.from_bytes(raw)))
    session.commit(f"damage {key}")


def _edit(path: Path, change: Callable[[zarr.Group], object]) -> None:
    session = _session(path)
    change(zarr.open_group(session.store, mode="r+", zarr_format=3))
    session.commit("edited by another program")


def _edit_root_attrs(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    def edit(root: zarr.Group) -> None:
        meta = dict(root.attrs["zstore"])  # type: ignore[arg-type]
        change(meta)
        root.attrs["zstore"] = meta

    _edit(path, edit)


ATTRIBUTES_TEXT = {"zarr_format": 3, "node_type": "group", "attributes": "abc"}


# -- one damaged trial ------------------------------------------------------------------------

TRIAL_DAMAGE: dict[str, tuple[Any, str]] = {
    # Icechunk stores these; zarr cannot read them
    "attributes-not-an-object": (ATTRIBUTES_TEXT, "'attributes' that are a JSON string"),
    "zarr-format-2": ({"zarr_format": 2, "node_type": "group"}, "zarr_format 2, expected 3"),
    "consolidated-metadata-broken": (
        {"zarr_format": 3, "node_type": "group", "consolidated_metadata": {"kind": "x"}},
        "is not valid Zarr metadata",
    ),
}


@pytest.mark.parametrize("case", sorted(TRIAL_DAMAGE))
def test_a_damaged_trial_is_named_and_the_others_stay_usable(tmp_path: Path, case: str) -> None:
    document, problem = TRIAL_DAMAGE[case]
    path = _experiment(tmp_path / "e.zarr")
    _set_document(path, "trials/b/zarr.json", document)
    exp = zs.open_experiment(path, mode="r+")
    assert exp.trialIDs == ["a", "c", "b"]  # listed (last); it fails when loaded
    assert exp.load_trial("a").data.shape == (4, 10)
    np.testing.assert_array_equal(exp.load_trial("c").data.X.compute(), _matrix(2).X)
    with pytest.raises(NotAnExperimentError) as err:
        exp.load_trial("b")
    for words in ("trial 'b'", "trials/b/zarr.json", problem, "exp.remove_trial('b')"):
        assert words in str(err.value)
    # verify reports it (naming the key) and checks the others
    damage = verify_experiment(exp)
    assert [(d.trial, d.array) for d in damage] == [("b", "")]
    assert "trials/b/zarr.json" in damage[0].error and problem in damage[0].error
    # info shows the others and marks it; the table warns, naming the key
    with pytest.warns(ZstoreWarning, match=r"trial 'b' .*trials/b/zarr\.json"):
        doc = info_document(exp)
    assert [t["trial"] for t in doc["trials"]] == ["a", "c"]
    assert [d["trial"] for d in doc["damaged"]] == ["b"]
    assert "trials/b/zarr.json" in doc["damaged"][0]["problem"]
    # the way out the message gives works
    exp.remove_trial("b")
    assert exp.trialIDs == ["a", "c"] and verify_experiment(exp) == []


def test_a_damaged_trial_can_be_replaced(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "e.zarr")
    _set_document(path, "trials/b/zarr.json", ATTRIBUTES_TEXT)
    exp = zs.open_experiment(path, mode="r+")
    exp.add_trial("d", _matrix(3))  # other writes go on
    with pytest.raises(FileExistsError, match="trial 'b' already exists"):
        exp.add_trial("b", _matrix(4))
    exp.add_trial("b", _matrix(4), overwrite=True)
    assert exp.trialIDs == ["a", "c", "d", "b"] and verify_experiment(exp) == []


def test_an_array_among_the_trials_is_reported_not_listed(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "e.zarr", ("a",))
    _edit(
        path,
        lambda root: zarr.open_group(root.store, path="trials").create_array(
            "x", shape=(2,), dtype="f4"
        ),
    )
    exp = zs.open_experiment(path)
    assert exp.trialIDs == ["a"]
    with pytest.raises(NotAnExperimentError, match=r"trials/x is a Zarr array, not a trial group"):
        exp.load_trial("x")
    assert [(d.trial, d.error) for d in verify_experiment(exp)] == [
        ("x", "metadata: trials/x is a Zarr array, not a trial group")
    ]


def test_a_missing_trial_is_still_not_found(tmp_path: Path) -> None:
    exp = zs.open_experiment(_experiment(tmp_path / "e.zarr", ("a",)))
    with pytest.raises(TrialNotFoundError, match=r"trial 'zz' is not in experiment 'E'"):
        exp.load_trial("zz")


def test_cli_verify_and_info_report_the_damaged_trial_and_check_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _experiment(tmp_path / "e.zarr")
    _set_document(path, "trials/b/zarr.json", ATTRIBUTES_TEXT)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED trial 'b': metadata: its metadata document trials/b/zarr.json" in out
    assert out.count("DAMAGED") == 1
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert "2 trials" in captured.out and "\n  a " in captured.out and "\n  c " in captured.out
    assert "trial 'b' of experiment 'E' is left out of the table" in captured.err
    assert "trials/b/zarr.json" in captured.err


# -- an experiment's root ------------------------------------------------------------------

ROOT_ATTRS: dict[str, tuple[Callable[[dict[str, Any]], None], type[Exception], str]] = {
    "no-expID": (lambda m: m.pop("expID"), NotAnExperimentError, r"zstore\['expID'\].*missing"),
    "expID-a-number": (
        lambda m: m.__setitem__("expID", 3),
        NotAnExperimentError,
        r"zstore\['expID'\] is 3, expected the experiment's ID as text",
    ),
    "encoding-version-abc": (
        lambda m: m.__setitem__("encoding-version", "abc"),
        NotAnExperimentError,
        r"zstore\['encoding-version'\] is 'abc', which is not a format version",
    ),
    "encoding-version-a-number": (
        lambda m: m.__setitem__("encoding-version", 3),
        NotAnExperimentError,
        r"zstore\['encoding-version'\] is 3, which is not a format version",
    ),
    "encoding-version-newer": (
        lambda m: m.__setitem__("encoding-version", "9.0.0"),
        FormatVersionError,
        r"format 9\.0\.0, newer than this zstore reads.*pip install -U zstore",
    ),
}


@pytest.mark.parametrize("case", sorted(ROOT_ATTRS))
def test_damaged_root_attributes_are_named(tmp_path: Path, case: str) -> None:
    change, error, words = ROOT_ATTRS[case]
    path = _experiment(tmp_path / "e.zarr", ("a",))
    _edit_root_attrs(path, change)
    with pytest.raises(error, match=words) as err:
        zs.open_experiment(path)
    assert str(path) in str(err.value)
    if error is NotAnExperimentError:  # damaged, not newer: the way back is a version
        assert f"zstore history {path}" in str(err.value)
        assert "newer" not in str(err.value)


def _trials_as_array(root: zarr.Group) -> None:
    del root["trials"]
    root.create_array("trials", shape=(2,), dtype="f4")


STRUCTURE: dict[str, tuple[Callable[[Path], None], str]] = {
    "root-document-unreadable": (
        lambda p: _set_document(p, "zarr.json", ATTRIBUTES_TEXT),
        r"metadata document zarr\.json has 'attributes' that are a JSON string",
    ),
    "no-trials-group": (
        lambda p: _edit(p, lambda root: root.__delitem__("trials")),
        r"it has no 'trials' group \(expected one group per trial in it\)",
    ),
    "trials-an-array": (
        lambda p: _edit(p, _trials_as_array),
        r"'trials' is a Zarr array, expected a group \(holding one group per trial\)",
    ),
    "trials-document-unreadable": (
        lambda p: _set_document(p, "trials/zarr.json", ATTRIBUTES_TEXT),
        r"metadata document trials/zarr\.json has 'attributes' that are a JSON string",
    ),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_a_damaged_experiment_structure_is_named(tmp_path: Path, case: str) -> None:
    damage, words = STRUCTURE[case]
    path = _experiment(tmp_path / "e.zarr", ("a",))
    damage(path)
    with pytest.raises(NotAnExperimentError, match=words) as err:
        zs.open_experiment(path)
    assert str(path) in str(err.value) and "zstore history" in str(err.value)


def test_a_root_that_is_an_array_is_named(tmp_path: Path) -> None:
    path = tmp_path / "array.zarr"
    repo = icechunk.Repository.create(_compat.local_storage(str(path)))
    session = repo.writable_session("main")
    zarr.create_array(session.store, shape=(3,), dtype="f4")
    session.commit("an array at the root")
    with pytest.raises(NotAnExperimentError, match=r"its root is a Zarr array \(zarr\.json\)"):
        zs.open_experiment(path)
    with pytest.raises(NotAnExperimentError, match="root is a Zarr array"):
        zs.open_collection(path)


def test_history_lists_the_versions_of_a_damaged_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _experiment(tmp_path / "e.zarr", ("a",))
    _set_document(path, "zarr.json", ATTRIBUTES_TEXT)
    assert main(["history", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "damage zarr.json" in lines[0] and "add trial 'a'" in lines[1]
    earlier = zs.open_experiment(path, version=lines[1].split()[0])
    assert earlier.trialIDs == ["a"]


# -- foreign stores handed to zstore ---------------------------------------------------------


def _anndata_v2(path: Path) -> None:
    with warnings.catch_warnings():  # anndata's notice that v3 becomes its default
        warnings.simplefilter("ignore", UserWarning)
        ad.AnnData(np.ones((3, 4), dtype="float32")).write_zarr(path)  # anndata's default


def _anndata_v3(path: Path) -> None:
    with warnings.catch_warnings(), ad.settings.override(zarr_write_format=3):
        warnings.simplefilter("ignore", UserWarning)  # auto-sharding, consolidation notices
        ad.AnnData(np.ones((3, 4), dtype="float32")).write_zarr(path)


FOREIGN: dict[str, tuple[Callable[[Path], Any], str]] = {
    "anndata-zarr-v2": (
        _anndata_v2,
        r"an AnnData saved as Zarr \(format 2.*exp\.add_trial\('t-001', anndata\.read_zarr\(",
    ),
    "anndata-zarr-v3": (_anndata_v3, r"an AnnData saved as Zarr \(format 3"),
    "plain-zarr-v2-group": (
        lambda p: zarr.open_group(p, mode="w", zarr_format=2),
        r"a plain Zarr group \(format 2.*zarr\.open_group",
    ),
    "plain-zarr-v3-group": (
        lambda p: zarr.open_group(p, mode="w", zarr_format=3),
        r"a plain Zarr group \(format 3",
    ),
    "plain-zarr-array": (
        lambda p: zarr.create_array(p, shape=(2,), dtype="f4"),
        r"a Zarr array \(format 3\), not a group.*zarr\.open_array",
    ),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
@pytest.mark.parametrize("opener", ["open_experiment", "open_collection"])
def test_a_foreign_store_says_what_it_is_and_how_to_bring_it_in(
    tmp_path: Path, case: str, opener: str
) -> None:
    make, words = FOREIGN[case]
    path = tmp_path / "data.zarr"
    make(path)
    what = "experiment" if opener == "open_experiment" else "collection"
    with pytest.raises(NotAnExperimentError, match=words) as err:
        getattr(zs, opener)(path)
    assert f"{path} is not a zstore {what}" in str(err.value)


def test_an_h5ad_file_says_how_to_bring_it_in(tmp_path: Path) -> None:
    path = tmp_path / "trial.h5ad"
    ad.AnnData(np.ones((3, 4), dtype="float32")).write_h5ad(path)
    with pytest.raises(NotAnExperimentError, match=r"an AnnData \.h5ad file.*anndata\.read_h5ad"):
        zs.open_experiment(path)


# -- zstore 0.1 stores (plain Zarr files) ------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])


def _legacy(tmp_path: Path) -> Path:
    old = tmp_path / "old.zarr"
    shutil.copytree(LEGACY, old)
    return old


@pytest.mark.parametrize(
    ("file", "words"),
    [
        pytest.param(
            "trials/t-b/zarr.json",
            r"trial 't-b' cannot be migrated: .*trials/t-b/zarr\.json is not valid JSON",
            id="trial-zarr-json-truncated",
        ),
        pytest.param(
            "trials/zarr.json",
            r"trials/zarr\.json is not valid JSON",
            id="trials-zarr-json-truncated",
        ),
        pytest.param(
            "zarr.json",
            r"root metadata document zarr\.json is not valid JSON",
            id="root-zarr-json-truncated",
        ),
        pytest.param(
            "zstore-journal/t-a/manifest.json",
            r"zstore-journal/t-a/manifest\.json, cannot be read",
            id="journal-manifest-truncated",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:.*was never committed:zstore.errors.ZstoreWarning")
def test_migrate_names_a_damaged_file_and_writes_nothing(
    tmp_path: Path, file: str, words: str
) -> None:
    old = _legacy(tmp_path)
    _truncate(old / file)
    new = tmp_path / "new.zarr"
    with pytest.raises(NotAnExperimentError, match=words) as err:
        zs.migrate(old, new, progress=False)
    assert "from a copy" in str(err.value)
    assert not new.exists()


def test_a_legacy_store_with_a_damaged_root_says_so_on_open(tmp_path: Path) -> None:
    old = _legacy(tmp_path)
    _truncate(old / "zarr.json")
    with pytest.raises(NotAnExperimentError) as err:
        zs.open_experiment(old)
    for words in ("zstore 0.1's format", "zarr.json is not valid JSON", "zstore migrate"):
        assert words in str(err.value)


# -- collections -------------------------------------------------------------------------------


def _collection(path: Path) -> Path:
    col = zs.create_collection(path)
    for k, exp_id in enumerate(("E1", "E2", "E3")):
        col.create_experiment(exp_id).add_trial("t", _matrix(k))
        col.refresh()
    return path


def test_a_damaged_experiment_does_not_hide_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _collection(tmp_path / "lab.zarr")
    _set_document(path, "experiments/E2/zarr.json", ATTRIBUTES_TEXT)
    with pytest.warns(ZstoreWarning, match=r"experiment 'E2' is left out.*experiments/E2/zarr"):
        col = zs.open_collection(path)
        assert col.experimentIDs == ["E1", "E3"]
    assert col.open_experiment("E3").load_trial("t").data.shape == (4, 10)
    with pytest.raises(NotAnExperimentError) as err:
        col.open_experiment("E2")
    assert "experiment 'E2'" in str(err.value) and "experiments/E2/zarr.json" in str(err.value)
    doc = info_document(col)
    assert [e["experiment"] for e in doc["experiments"]] == ["E1", "E3"]
    assert [d["experiment"] for d in doc["damaged"]] == ["E2"]
    assert [str(d) for d in unreadable_experiments(col)] == [
        "experiment 'E2': metadata: its metadata document experiments/E2/zarr.json has "
        "'attributes' that are a JSON string, not an object"
    ]
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED experiment 'E2': metadata: its metadata document experiments/E2" in out
    assert "in 2 trials" in out  # E1's and E3's, checked


def test_a_damaged_trial_in_a_collection_is_named(tmp_path: Path) -> None:
    path = _collection(tmp_path / "lab.zarr")
    _set_document(path, "experiments/E2/trials/t/zarr.json", ATTRIBUTES_TEXT)
    with pytest.warns(ZstoreWarning, match="experiments/E2/trials/t/zarr.json"):
        col = zs.open_collection(path)
        assert col.experimentIDs == ["E1", "E2", "E3"]
    exp = col.open_experiment("E2")
    assert exp.trialIDs == ["t"]
    with pytest.raises(NotAnExperimentError, match=r"trial 't' of experiment 'E2'.*trials/t/zarr"):
        exp.load_trial("t")
    assert col.open_experiment("E1").load_trial("t").data.shape == (4, 10)
    doc = info_document(col)
    e2 = next(e for e in doc["experiments"] if e["experiment"] == "E2")
    assert e2["trials"] == [] and [d["trial"] for d in e2["damaged"]] == ["t"]


@pytest.mark.parametrize(
    ("key", "words"),
    [
        pytest.param("zarr.json", r"metadata document zarr\.json", id="collection-root"),
        pytest.param("experiments/zarr.json", r"experiments/zarr\.json", id="experiments-group"),
    ],
)
def test_a_damaged_collection_index_is_named(tmp_path: Path, key: str, words: str) -> None:
    path = _collection(tmp_path / "lab.zarr")
    _set_document(path, key, ATTRIBUTES_TEXT)
    with pytest.raises(NotAnExperimentError, match=words) as err:
        zs.open_collection(path)
    assert str(path) in str(err.value) and "zstore history" in str(err.value)


def test_a_collection_with_an_invalid_version_says_invalid(tmp_path: Path) -> None:
    path = _collection(tmp_path / "lab.zarr")
    _edit_root_attrs(path, lambda m: m.__setitem__("encoding-version", "abc"))
    with pytest.raises(NotAnExperimentError, match="'abc', which is not a format version"):
        zs.open_collection(path)


# -- checksum failures, told by type ---------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _checksummed_array(path: Path) -> zarr.Array:
    values = np.random.default_rng(0).random(4096)  # incompressible: one 32 kB chunk
    array = zarr.create_array(
        path,
        shape=values.shape,
        dtype="f8",
        chunks=(4096,),
        compressors=[zarr.codecs.ZstdCodec(level=3), zarr.codecs.Crc32cCodec()],
    )
    array[:] = values
    return array


def test_zarr_raises_a_plain_error_on_a_bad_checksum_and_zstore_a_typed_one(
    tmp_path: Path,
) -> None:
    # Pins zarr-python (3.1.6): a flipped byte raises a ValueError of no type of its own,
    # naming no array or chunk; zstore's reader checks the bytes and says which.
    array = _checksummed_array(tmp_path / "a.zarr")
    _flip(tmp_path / "a.zarr" / "c" / "0", 100)
    reopened = zarr.open_array(tmp_path / "a.zarr", mode="r")
    with pytest.raises(ValueError) as raw:
        reopened[:]
    assert not isinstance(raw.value, CorruptChunkError)
    with pytest.raises(ChecksumMismatchError, match=r"element x: .*crc32c.*'c/0'"):
        read_checked(reopened, slice(None), "element x")
    assert isinstance(chunk_damage(reopened, "x"), ChecksumMismatchError)
    assert array.shape == (4096,)


def test_a_chunk_that_does_not_decode_with_a_right_checksum_is_corrupt_not_mismatched(
    tmp_path: Path,
) -> None:
    import google_crc32c

    _checksummed_array(tmp_path / "a.zarr")
    garbage = b"not zstd at all" * 10
    crc = int(google_crc32c.value(garbage)).to_bytes(4, "little")
    (tmp_path / "a.zarr" / "c" / "0").write_bytes(garbage + crc)
    reopened = zarr.open_array(tmp_path / "a.zarr", mode="r")
    with pytest.raises(CorruptChunkError, match="cannot be decoded") as err:
        read_checked(reopened, slice(None), "element x")
    assert not isinstance(err.value, ChecksumMismatchError)


def test_a_flipped_byte_in_x_is_a_checksum_mismatch_by_type(tmp_path: Path) -> None:
    config = zs.StorageConfig(shard_bytes=16 * 256 * 4, inner_rois=16, inner_frames=128)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E", config=config)
    X = np.random.default_rng(1).random((32, 256)).astype("float32")
    exp.add_trial("t", zs.AnnotatedData(X))
    _flip(chunk_object(tmp_path / "e.zarr", exp, "trials/t/X/c/1/0"), 100)
    data = zs.open_experiment(tmp_path / "e.zarr").load_trial("t").data
    with pytest.raises(ChecksumMismatchError, match="trial 't' X"):
        data.X.compute()


def test_no_zstore_module_tells_an_error_by_the_word_checksum() -> None:
    import zstore

    source = Path(zstore.__file__).parent
    offenders = [
        f"{p.name}:{n}"
        for p in source.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "checksum" in line and ("in str(" in line or "in text" in line)
    ]
    assert offenders == []


def test_a_flipped_byte_in_pixel_masks_is_a_checksum_mismatch_naming_them(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    adata = zs.AnnotatedData(rng.random((300, 10)).astype("float32"))
    adata.obsm["ypix"] = zs.RaggedArray.from_arrays(
        [rng.integers(0, 512, 30) for _ in range(300)], dtype="int16"
    )
    exp.add_trial("t", adata)
    _flip(chunk_object(tmp_path / "e.zarr", exp, "trials/t/obsm/ypix/node1-data/c/0"), 60)
    masks = zs.open_experiment(tmp_path / "e.zarr").load_trial("t").data.obsm["ypix"]
    with pytest.raises(ChecksumMismatchError, match=r"trial 't' obsm/ypix: .*crc32c"):
        masks.to_numpy()


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_icechunk_says_a_lost_chunk_is_gone_in_words_zstore_knows(tmp_path: Path, how: str) -> None:
    # Pins Icechunk (1.1.21): one error type, IcechunkError, for every storage failure;
    # only its text tells a chunk that is gone from a service that did not answer
    # (zstore._compat.is_missing_object, the one place that reads it).
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    exp.add_trial("t", zs.AnnotatedData(np.random.default_rng(0).random((64, 64)).astype("f4")))
    obj = chunk_object(tmp_path / "e.zarr", exp, "trials/t/X/c/0/0")
    if how == "deleted":
        obj.unlink()
    else:
        obj.write_bytes(obj.read_bytes()[:10])
    store = zs.open_experiment(tmp_path / "e.zarr").open_zarr().store
    with pytest.raises(icechunk.IcechunkError) as err:
        _compat.read_bytes(store, "trials/t/X/c/0/0")
    assert _compat.is_storage_error(err.value) and _compat.is_missing_object(err.value)


# -- a trial whose structure another program changed (issue 17, F2) ---------------------


def _set_trial_meta(key: str, value: Any) -> Callable[[zarr.Group], None]:
    def change(root: zarr.Group) -> None:
        attrs = dict(root["trials/b"].attrs)
        attrs["zstore"] = {**attrs["zstore"], key: value}  # type: ignore[dict-item]
        root["trials/b"].attrs.put(attrs)

    return change


def _set_attr(path: str, key: str, value: Any) -> Callable[[zarr.Group], None]:
    def change(root: zarr.Group) -> None:
        root[path].attrs.put({**dict(root[path].attrs), key: value})

    return change


def _replace_array(path: str, data: np.ndarray) -> Callable[[zarr.Group], None]:
    def change(root: zarr.Group) -> None:
        attrs = dict(root[path].attrs)
        del root[path]
        array = root.create_array(path, shape=data.shape, dtype=data.dtype)
        array[...] = data
        array.attrs.put(attrs)

    return change


def _group_to_array(path: str) -> Callable[[zarr.Group], None]:
    def change(root: zarr.Group) -> None:
        del root[path]
        root.create_array(path, shape=(2,), dtype="i4")

    return change


TRIAL_STRUCTURE: dict[str, tuple[Callable[[zarr.Group], object], list[str]]] = {
    "created-is-text": (_set_trial_meta("created", "yesterday"), ["zstore.created", "'yesterday'"]),
    "obs-index-deleted": (lambda g: g.__delitem__("trials/b/obs/_index"), ["obs", "'_index'"]),
    "obs-index-attr-points-nowhere": (_set_attr("trials/b/obs", "_index", "nope"), ["'nope'"]),
    "column-order-names-a-missing-column": (
        _set_attr("trials/b/obs", "column-order", ["ghost"]),
        ["column-order", "'ghost'"],
    ),
    "var-wrong-length": (
        _replace_array("trials/b/var/_index", np.array([str(i) for i in range(7)])),
        ["var/_index", "expected 10 entries", "found 7"],
    ),
    "obs-wrong-length": (
        _replace_array("trials/b/obs/_index", np.array(["0", "1"])),
        ["obs/_index", "expected 4 entries", "found 2"],
    ),
    "layer-wrong-shape": (
        _replace_array("trials/b/layers/dFF", np.ones((4, 7), "float32")),
        ["layers/dFF", "(4, 10)", "(4, 7)"],
    ),
    "X-wrong-shape": (
        _replace_array("trials/b/X", np.ones((3, 10), "float32")),
        ["expected 3 entries", "found 4"],
    ),
    "X-1-D": (_replace_array("trials/b/X", np.ones(40, "float32")), ["X", "2-D", "(40,)"]),
    "obs-group-deleted": (lambda g: g.__delitem__("trials/b/obs"), ["obs", "dataframe group"]),
    "uns-is-an-array": (_group_to_array("trials/b/uns"), ["uns", "expected a group"]),
    "layers-is-an-array": (_group_to_array("trials/b/layers"), ["layers", "expected a group"]),
}


def _experiment_with_dff(path: Path) -> Path:
    _experiment(path)
    exp = zs.open_experiment(path, mode="r+")
    for trial_id in ("a", "b", "c"):
        trial = exp.load_trial(trial_id)
        trial.data.add_layer(layer_name="dFF", data=trial.data.X * 2)
        trial.save()
    return path


@pytest.mark.parametrize("case", sorted(TRIAL_STRUCTURE))
def test_a_trial_with_damaged_structure_is_named_verified_and_stops_compute_dff(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    change, words = TRIAL_STRUCTURE[case]
    path = _experiment_with_dff(tmp_path / "e.zarr")
    _edit(path, change)
    exp = zs.open_experiment(path, mode="r+")
    with pytest.raises(NotAnExperimentError) as info:
        exp.load_trial("b")
    message = str(info.value)
    for word in ["trial 'b'", *words, "exp.remove_trial('b')", "overwrite=True"]:
        assert word in message, (word, message)
    assert exp.load_trial("a").data.shape == (4, 10), "the other trials stay usable"
    damage = verify_experiment(exp, progress=False)
    assert [d.trial for d in damage if not d.array] and all(d.trial == "b" for d in damage)
    assert main(["verify", str(path)]) == 1
    assert "DAMAGED trial 'b'" in capsys.readouterr().out
    # compute_dff checks every trial before writing the first: nothing half done
    with pytest.raises(NotAnExperimentError, match="trial 'b'"):
        zs.compute_dff(exp, layer="dFF2", baseline="percentile", progress=False)
    assert all("dFF2" not in exp.refresh().layer_names(t) for t in ("a", "c"))


def _collection_with_trial_a(path: Path) -> Path:
    col = zs.create_collection(path)
    for exp_id in ("E1", "E2", "E3"):
        col.create_experiment(exp_id, metadata={"subject": "S"})
        col.open_experiment(exp_id, mode="r+").add_trial("a", _matrix())
    return path


def _set_experiment_meta(key: str, value: Any) -> Callable[[zarr.Group], None]:
    def change(root: zarr.Group) -> None:
        group = root["experiments/E2"]
        attrs = dict(group.attrs)
        attrs["zstore"] = {**attrs["zstore"], key: value}  # type: ignore[dict-item]
        group.attrs.put(attrs)

    return change


COLLECTION_DAMAGE: dict[str, tuple[Callable[[zarr.Group], object], str]] = {
    "trials-group-deleted": (
        lambda g: g.__delitem__("experiments/E2/trials"),
        "experiments/E2/trials",
    ),
    "expID-an-int": (_set_experiment_meta("expID", 7), "zstore.expID"),
    "encoding-version-garbage": (
        _set_experiment_meta("encoding-version", "abc"),
        "zstore.encoding-version",
    ),
}


@pytest.mark.parametrize("case", sorted(COLLECTION_DAMAGE))
def test_a_damaged_experiment_of_a_collection_is_verified_damaged_and_info_warns(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    change, word = COLLECTION_DAMAGE[case]
    path = _collection_with_trial_a(tmp_path / "c.zarr")
    _edit(path, change)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED experiment 'E2'" in out and word in out, out
    assert main(["info", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "experiment 'E2'" in err and word in err, err
    assert "zstore verify" in err


def _three_trials_one_manifest_each(path: Path) -> Path:
    exp = zs.create_experiment(path, exp_id="E")
    for k, trial_id in enumerate("abc"):
        data = np.random.default_rng(k).random((8, 500)).astype("float32")
        exp.add_trial(trial_id, zs.AnnotatedData(data))
    return path


def _newest(path: Path) -> Path:
    return max(path.iterdir(), key=lambda f: f.stat().st_mtime)


def test_info_with_a_deleted_manifest_shows_sizes_unknown_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _three_trials_one_manifest_each(tmp_path / "e.zarr")
    _newest(path / "manifests").unlink()
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert "unknown" in captured.out, captured.out
    assert "trial 'c'" in captured.err and "zstore verify" in captured.err, captured.err
    assert "internal error" not in captured.err


def test_a_garbled_manifest_is_damage_not_advice_to_retry(tmp_path: Path) -> None:
    path = _three_trials_one_manifest_each(tmp_path / "e.zarr")
    manifest = _newest(path / "manifests")
    raw = bytearray(manifest.read_bytes())
    for i in range(len(raw) // 2, min(len(raw), len(raw) // 2 + 16)):
        raw[i] ^= 0xFF
    manifest.write_bytes(bytes(raw))
    with pytest.raises(CorruptChunkError) as info:
        zs.open_experiment(path).load_trial("c").data.X.compute()
    assert "trial 'c'" in str(info.value) and "retry" not in str(info.value)


@pytest.mark.parametrize("field,value", [("layers", 5), ("n_rois", "many"), ("fs", {})])
def test_a_summary_field_of_the_wrong_type_is_na_with_a_warning(
    tmp_path: Path, field: str, value: Any
) -> None:
    path = _experiment(tmp_path / "e.zarr")

    def change(root: zarr.Group) -> None:
        attrs = dict(root["trials/b"].attrs)
        meta = dict(attrs["zstore"])  # type: ignore[arg-type]
        meta["summary"] = {**meta["summary"], field: value}
        attrs["zstore"] = meta
        root["trials/b"].attrs.put(attrs)

    _edit(path, change)
    with pytest.warns(ZstoreWarning, match=f"trial 'b'.*zstore.summary.{field}"):
        table = zs.open_experiment(path).table()
    assert list(table["trial"]) == ["a", "b", "c"]
    assert table.loc[table["trial"] == "a", "n_rois"].item() == 4


def test_verify_reports_a_history_that_cannot_be_read(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "e.zarr")
    min((path / "snapshots").iterdir(), key=lambda f: f.stat().st_mtime).unlink()
    damage = verify_experiment(zs.open_experiment(path), progress=False)
    assert [d.experiment for d in damage] == ["E"], damage
    assert "history cannot be read" in str(damage[0]) and "copy" in str(damage[0])


# -- damaged manifests, snapshots and refs (issue 17, red team 3) ----------------------------


def _with_scalar_in_its_own_manifest(path: Path) -> Path:
    """An experiment of one trial 'a' whose uns scalar ``Ly`` is in a manifest of its own
    (written in a commit of its own): the returned manifest file."""
    _experiment(path, ("a",))
    before = set((path / "manifests").iterdir())

    def add(root: zarr.Group) -> None:
        root["trials/a/uns"].create_array("Ly", shape=(), dtype="int64")[...] = 64  # type: ignore[union-attr]

    _edit(path, add)
    (manifest,) = set((path / "manifests").iterdir()) - before
    return manifest


def test_verify_reads_uns_scalars_and_a_cut_manifest_is_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _with_scalar_in_its_own_manifest(tmp_path / "e.zarr")
    path = tmp_path / "e.zarr"
    assert verify_experiment(zs.open_experiment(path), progress=False) == []
    with open(manifest, "r+b") as f:
        f.truncate(50)
    damage = verify_experiment(zs.open_experiment(path), progress=False)
    assert [(d.trial, d.array) for d in damage] == [("a", "uns/Ly")], damage
    assert "damaged" in str(damage[0]) and "incomplete frame" in str(damage[0])
    assert main(["verify", str(path)]) == 1
    assert "DAMAGED trial 'a' uns/Ly" in capsys.readouterr().out
    with pytest.raises(CorruptChunkError) as info:  # damage, not a storage to retry
        zs.open_experiment(path).load_trial("a")
    said = str(info.value)
    assert "trial 'a' uns" in said and "restore it from a copy" in said, said
    assert "reachable" not in said and "retry" not in said, said


def test_verify_with_every_manifest_cut_reports_damage_not_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "e.zarr"
    data = np.ones((4, 10), dtype="float32")
    uns = {"suite2p": {"meanImg": np.arange(16.0).reshape(4, 4)}}
    zs.create_experiment(path, exp_id="E").add_trial("a", zs.AnnotatedData(data, uns=uns))
    for manifest in (path / "manifests").iterdir():
        with open(manifest, "r+b") as f:
            f.truncate(50)
    assert main(["verify", str(path)]) == 1
    captured = capsys.readouterr()
    assert "internal error" not in captured.err, captured.err
    assert "DAMAGED trial 'a' X" in captured.out and "DAMAGED image images/" in captured.out
    assert "reachable" not in captured.out, captured.out


def test_a_damaged_branch_file_is_named_with_its_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _experiment(tmp_path / "e.zarr", ("a",))
    (path / "refs" / "branch.main" / "ref.json").write_text('{"snapshot":"ZZZZ')
    with pytest.raises(NotAnExperimentError) as info:
        zs.open_experiment(path)
    said = str(info.value)
    assert "refs/branch.main/ref.json is damaged" in said and "from a copy" in said, said
    for command in ("history", "info", "verify"):
        assert main([command, str(path)]) != 0
        err = capsys.readouterr().err
        assert "refs/branch.main/ref.json" in err and "reachable" not in err, err


def _middle_snapshot(path: Path) -> Path:
    """The snapshot of the version before the newest (of three or more)."""
    return sorted((path / "snapshots").iterdir(), key=lambda f: f.stat().st_mtime_ns)[-2]


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_damaged_middle_snapshot_is_a_gap_in_history_and_damage_to_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    path = _experiment(tmp_path / "e.zarr", ("a", "b"))
    middle = _middle_snapshot(path)
    if how == "deleted":
        middle.unlink()
    else:
        with open(middle, "r+b") as f:
            f.truncate(50)
    with pytest.warns(ZstoreWarning, match=f"version {middle.name} cannot be read"):
        commits = zs.open_experiment(path).history()
    gap = [c for c in commits if c.damaged]
    assert [c.version for c in gap] == [middle.name] and gap[0].time is None
    assert commits[0].message == "add trial 'b'" and commits[-1].message.startswith("Repo")
    assert main(["history", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{middle.name}  " in out and f"restore snapshots/{middle.name}" in out, out
    damage = verify_experiment(zs.open_experiment(path), progress=False)
    assert [d.array for d in damage] == [f"snapshots/{middle.name}"], damage
    assert main(["verify", str(path)]) == 1
    assert f"restore snapshots/{middle.name} from a copy" in capsys.readouterr().out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux: a child drops root")
def test_a_snapshot_without_read_permission_is_not_called_damage(tmp_path: Path) -> None:
    from test_resources import _child, _outcome  # a child process that obeys permissions

    path = _experiment(tmp_path / "e.zarr", ("a", "b"))
    middle = _middle_snapshot(path)
    middle.chmod(0)
    code = """
        import warnings, zstore as zs
        warnings.simplefilter("error")
        report(lambda: zs.open_experiment(sys.argv[1]).history())
    """
    outcome = _outcome(_child(code, str(path), drop_cap=True))
    assert outcome.startswith("ERROR StoreError 13 "), outcome
    assert f"snapshots/{middle.name}" in outcome and "no permission to read" in outcome
    assert "damaged" not in outcome and "restore" not in outcome, outcome
