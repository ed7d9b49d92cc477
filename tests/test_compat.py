"""The other libraries' internals zstore leans on (all in zstore/_compat.py), and the
promise that importing zstore changes nothing global.

Each test exercises one hook the way zstore uses it, so an upgrade that changes it
fails here, by name, instead of somewhere downstream.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import icechunk
import numpy as np
import zarr

import zstore as zs
from zstore import _compat


def test_anndata_views_of_ragged_masks() -> None:
    adata = zs.AnnotatedData(np.ones((4, 3), dtype="float32"))
    _compat.set_aligned(adata, "obsm", "ypix", zs.RaggedArray.from_arrays([[1], [2, 3], [], [4]]))
    view = adata[1:3]  # anndata's as_view, which zstore registers RaggedArray with
    assert [list(a) for a in view.obsm["ypix"]] == [[2, 3], []]
    assert isinstance(adata.obsm["ypix"], zs.RaggedArray)


def test_anndatas_awkward_notice_is_silenced_exactly() -> None:
    import warnings

    import anndata
    import awkward as ak

    from zstore.ragged import RaggedArray

    def put_awkward() -> list[warnings.WarningMessage]:
        with warnings.catch_warnings(record=True) as caught:
            adata = anndata.AnnData(np.ones((2, 1), dtype="float32"))
            adata.obsm["ypix"] = ak.Array([[1, 2], [3]])
        return caught

    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always")
        notices = [w for w in put_awkward() if w.category is anndata.ExperimentalFeatureWarning]
        assert notices, "anndata no longer warns: drop quiet_awkward_notice"
        assert str(notices[0].message).startswith(_compat.AWKWARD_NOTICE)
        warnings.resetwarnings()
        warnings.simplefilter("always")
        RaggedArray.from_arrays([[1, 2], [3]], dtype="int16")  # zstore's masks in use
        assert put_awkward() == []
        added = [f for f in warnings.filters if f[0] == "ignore"]
        assert len(added) == 1 and added[0][2] is anndata.ExperimentalFeatureWarning
        assert added[0][1].pattern.startswith("Support")  # that message only
        with warnings.catch_warnings(record=True) as other:
            warnings.warn("another feature", anndata.ExperimentalFeatureWarning, stacklevel=1)
        assert len(other) == 1, "the category's other messages still show"
        RaggedArray.from_arrays([[1]], dtype="int16")
        assert len(warnings.filters) == len(added) + 1, "installed once"


def test_awkward_keeps_the_ragged_class_through_layout_changes() -> None:
    ragged = zs.RaggedArray.from_arrays([[1, 2], [3]], dtype="int16")
    ragged.layout = ragged.layout  # awkward calls _update_class here
    assert type(ragged) is zs.RaggedArray and ragged[1].tolist() == [3]


def test_icechunk_local_storage_names_its_folder(tmp_path: object) -> None:
    folder = str(tmp_path)
    assert _compat.local_path_of(icechunk.local_filesystem_storage(folder)) == folder
    assert _compat.local_path_of(icechunk.in_memory_storage()) is None


def test_zarr_keys_through_the_sync_helpers() -> None:
    store = zarr.storage.MemoryStore()
    zarr.create_array(store, name="a", shape=(4,), chunks=(2,), dtype="i4")[:] = 1
    assert sorted(_compat.list_keys(store, "a/")) == ["a/c/0", "a/c/1", "a/zarr.json"]
    assert json.loads(_compat.read_bytes(store, "a/zarr.json") or b"{}")["node_type"] == "array"
    assert _compat.read_bytes(store, "missing") is None
    many = _compat.read_many(store, ["a/zarr.json", "missing", "a/c/1"])
    assert many[1] is None and many[0] == _compat.read_bytes(store, "a/zarr.json")
    assert len(many[2] or b"") > 0
    zarr.create_group(store, path="g").create_group("h")
    children = _compat.list_children(store, ["", "g", "nothing"])
    assert sorted(children[0]) == ["a", "g", "zarr.json"]
    assert sorted(children[1]) == ["h", "zarr.json"]
    assert children[2] == []
    array = zarr.open_array(store, path="a")
    _compat.set_dimension_names(array, ["roi"])
    assert zarr.open_array(store, path="a").metadata.dimension_names == ("roi",)
    assert zarr.open_array(store, path="a")[:].tolist() == [1, 1, 1, 1]


IMPORT_CHECK = textwrap.dedent(
    """
    import json, sys, warnings
    import dask, dask.callbacks, matplotlib
    # the libraries zstore uses, first: some add filters of their own when imported
    import anndata, awkward, dask.array as da, icechunk, matplotlib.figure, numpy as np
    import pandas, scipy.ndimage, scipy.sparse, zarr, zarr.codecs
    before = (list(warnings.filters), set(dask.callbacks.Callback.active), matplotlib.get_backend())
    import zstore as zs, zstore.plot
    F = np.random.default_rng(0).random((4, 20)) + 1
    zs.normalize_dff(da.from_array(F, chunks=(2, 20)), normalize_pct=20).compute()
    fig = zs.plot.plot_traces(zs.AnnotatedData(F), [0], layer=None)
    fig.savefig(sys.argv[1])
    after = (list(warnings.filters), set(dask.callbacks.Callback.active), matplotlib.get_backend())
    print(json.dumps({"filters": [str(f) for f in after[0] if f not in before[0]],
                      "callbacks": before[1] == after[1], "backend": [before[2], after[2]]}))
    """
)


def test_importing_and_using_zstore_changes_nothing_global(tmp_path: object) -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, str(tmp_path) + "/f.png"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["filters"] == [], "zstore changed the process's warning filters"
    assert result["callbacks"], "zstore installed a dask callback"
    assert result["backend"][0] == result["backend"][1], result


def test_dependencies_are_declared_exactly_as_imported() -> None:
    import ast
    import importlib.metadata
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=\[; ]", d)[0].lower() for d in project["dependencies"]}
    extras = {
        re.split(r"[<>=\[; ]", d)[0].lower()
        for name, deps in project["optional-dependencies"].items()
        if name != "test"
        for d in deps
    }
    imported: set[str] = set()
    for path in (root / "zstore").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    distributions = importlib.metadata.packages_distributions()
    third_party = {distributions[name][0].lower() for name in imported if name in distributions} - {
        "zstore"
    }
    # google-crc32c: imported by zarr's Crc32cCodec, which every zstore chunk uses
    assert third_party | {"google-crc32c"} == core | (third_party & extras), (
        f"imported but not declared: {sorted(third_party - core - extras)}; declared but "
        f"not imported: {sorted(core - third_party - {'google-crc32c'})}"
    )
    assert not (extras - third_party), f"extras never imported: {sorted(extras - third_party)}"
