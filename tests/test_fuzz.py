"""Fuzz over argument types of the public API: any input works or raises a zstore error.

Each test draws the arguments of one public call from a strategy of many types (None,
bools, ints huge and negative, floats with NaN and infinity, text empty and unicode,
bytes, lists, dicts, sets, numpy arrays of odd dtypes and shapes, plain objects) and
calls it on a small experiment built once for the module. The call must either work or
raise an exception whose class is defined in :mod:`zstore.errors`; any other exception
(a raw TypeError from a comparison, an IndexError from numpy, a KeyError from pandas)
fails the test with the call that raised it.
"""

from __future__ import annotations

import datetime
import itertools
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import pandas as pd
import pytest
from conftest import make_adata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import zstore as zs
import zstore.errors

FUZZ = settings(
    max_examples=int(os.environ.get("ZSTORE_FUZZ_EXAMPLES", 40)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("ZSTORE_FUZZ_EXAMPLES") is None,  # CI: the same examples
)

N_ROIS, N_FRAMES = 4, 30

# -- what arguments are drawn from --------------------------------------------------------


class Opaque:
    """An object of a type no function expects."""

    def __repr__(self) -> str:
        return "Opaque()"


odd_scalars = st.sampled_from(
    [
        None,
        True,
        False,
        np.bool_(True),
        0,
        -1,
        1,
        2**63,
        -(2**70),
        10**30,
        np.int64(-5),
        np.uint8(3),
        0.0,
        -0.0,
        1e-320,
        1e308,
        -1e12,
        float("nan"),
        float("inf"),
        float("-inf"),
        np.float32(2.5),
        np.float64("nan"),
        1 + 2j,
        "",
        " ",
        "0",
        "30",
        "fifty",
        "t-000",
        "t-001",
        "dFF",
        "X",
        "Fneu",
        "time",
        "stim",
        "zarr.json",
        "..",
        "a/b",
        "é",
        "\u200b",
        "\x00",
        "🐭" * 3,
        b"",
        b"t-000",
        bytearray(b"x"),
        Opaque(),
        object,
        len,
        datetime.datetime(2026, 5, 1),
        datetime.timedelta(days=-1),
        slice(None),
        Ellipsis,
        pd.NaT,
        pd.NA,
    ]
)

scalars = st.one_of(
    odd_scalars,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
)

odd_dtypes = st.sampled_from(
    ["float32", "float64", "int8", "uint64", "bool", "complex64", "U3", "datetime64[ns]", "f2"]
)
numpy_arrays = hnp.arrays(
    dtype=odd_dtypes,
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
)
# matrices the size of the module's trials (ROIs x frames), of any dtype
trial_shaped = hnp.arrays(dtype=odd_dtypes, shape=st.just((N_ROIS, N_FRAMES)))

containers = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
        st.sets(st.sampled_from(["t-000", "t-001", "dFF"]), max_size=2),
    ),
    max_leaves=6,
)

anything = st.one_of(scalars, containers, numpy_arrays, trial_shaped)


def often(*values: Any) -> st.SearchStrategy[Any]:
    """``anything``, or one of ``values`` (valid ones, so the call gets past its first
    argument and the next ones are checked too)."""
    return st.one_of(st.sampled_from(values), anything)


ERROR_CLASSES = tuple(
    value
    for name in zstore.errors.__all__
    if isinstance(value := getattr(zstore.errors, name), type) and issubclass(value, Exception)
)


def attempt(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``: its result, or the zstore error it raised; any other
    exception fails the test, naming the call."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call(*args, **kwargs)
    except Exception as err:
        if type(err).__module__ == "zstore.errors" and isinstance(err, ERROR_CLASSES):
            return err
        shown = ", ".join([*map(_short, args), *(f"{k}={_short(v)}" for k, v in kwargs.items())])
        raise AssertionError(
            f"{getattr(call, '__qualname__', call)}({shown}) raised "
            f"{type(err).__module__}.{type(err).__name__}: {err}"
        ) from err


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


# -- the module's experiment ----------------------------------------------------------------


@pytest.fixture(scope="module")
def exp() -> zs.Experiment:
    """An in-memory experiment of two trials (X, a Fneu layer, obs, var with time and a
    stim channel, uns with fs), and a dFF layer in the first."""
    experiment = zs.create_experiment(icechunk.in_memory_storage(), exp_id="FUZZ")
    for k in range(2):
        adata = make_adata(N_ROIS, N_FRAMES, seed=k)
        adata.var["time"] = k * 10 + np.arange(N_FRAMES) / 30.0
        experiment.add_trial(f"t-00{k}", adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zs.compute_dff(experiment, layer="dFF", trials=["t-000"])
    return experiment


@pytest.fixture(scope="module")
def trial(exp: zs.Experiment) -> zs.Trial:
    return exp.load_trial("t-000")


@pytest.fixture(scope="module")
def col() -> zs.Collection:
    collection = zs.create_collection(icechunk.in_memory_storage())
    sub = collection.create_experiment("E1", metadata={"subject": "RL109", "plane": 0})
    sub.add_trial("t-000", make_adata(N_ROIS, N_FRAMES))
    return collection.refresh()


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Numbered fresh paths in a folder of the test session, for create/export calls."""
    folder = tmp_path_factory.mktemp("fuzz_places")
    yield folder


_counter = itertools.count()


def fresh(folder: Path, suffix: str = ".zarr") -> str:
    return str(folder / f"p{next(_counter)}{suffix}")


# -- processing -------------------------------------------------------------------------------

dff_keywords = st.fixed_dictionaries(
    {},
    optional={
        "normalize_pct": often(20, 50.0, 100, np.float32(5)),
        "baseline": often("percentile", "maximin"),
        "fs": often(30.0, 1, None),
        "sig_baseline": often(10.0, 0, 3),
        "win_baseline": often(60.0, 1.0),
    },
)


@FUZZ
@given(
    arr=st.one_of(
        hnp.arrays(np.float32, st.tuples(st.integers(0, 4), st.integers(0, 12))),
        trial_shaped,
        anything,
    ),
    kwargs=dff_keywords,
    roi_names=st.one_of(st.none(), anything),
)
def test_normalize_dff(arr: Any, kwargs: dict[str, Any], roi_names: Any) -> None:
    attempt(zs.normalize_dff, arr, **kwargs, roi_names=roi_names)


@FUZZ
@given(
    F=st.one_of(trial_shaped, anything),
    Fneu=st.one_of(trial_shaped, anything),
    coeff=often(0.7, 0),
)
def test_neuropil_correct(F: Any, Fneu: Any, coeff: Any) -> None:
    attempt(zs.neuropil_correct, F, Fneu, coeff=coeff)


@FUZZ
@given(
    layer=often("dFF2", "dFF"),
    trials=often(None, "t-001", ["t-001"], ("t-000", "t-001")),
    where=often(None, "n_frames > 0", "trial == 't-001'"),
    source=often(None, "Fneu", "dFF"),
    overwrite=often(True, False),
    progress=often(None, False),
    kwargs=dff_keywords,
)
def test_compute_dff(
    exp: zs.Experiment,
    layer: Any,
    trials: Any,
    where: Any,
    source: Any,
    overwrite: Any,
    progress: Any,
    kwargs: dict[str, Any],
) -> None:
    attempt(
        zs.compute_dff,
        exp,
        layer=layer,
        trials=trials,
        where=where,
        source=source,
        overwrite=overwrite,
        progress=progress,
        **kwargs,
    )


@FUZZ
@given(target=anything, layer=often("dFF2"), where=often(None, "plane == 0"))
def test_compute_dff_targets(col: zs.Collection, target: Any, layer: Any, where: Any) -> None:
    attempt(zs.compute_dff, target, layer=layer, where=where)
    attempt(zs.compute_dff, col, layer=layer, where=where)


# -- experiments and trials -------------------------------------------------------------------


@FUZZ
@given(trial_id=often("t-000", "t-001", "t-999"))
def test_load_trial_and_layer_names(exp: zs.Experiment, trial_id: Any) -> None:
    attempt(exp.load_trial, trial_id)
    attempt(exp.layer_names, trial_id)
    attempt(exp.__contains__, trial_id)


@FUZZ
@given(layer=often(None, "dFF", "Fneu", "X"), trials=often(None, "t-000", ["t-001", "t-000"]))
def test_concat(exp: zs.Experiment, layer: Any, trials: Any) -> None:
    attempt(exp.concat, layer, trials=trials)


@FUZZ
@given(
    layers=often(None, ["Fneu"], "Fneu", ["dFF"]),
    trials=often(None, "t-000", ["t-000", "t-001"]),
    where=often(None, "n_rois > 0"),
    rois=often(None, [0, 3], "3", 5, [3.0], ["0", "0"]),
)
def test_to_xarray(exp: zs.Experiment, layers: Any, trials: Any, where: Any, rois: Any) -> None:
    attempt(exp.to_xarray, layers, trials=trials, where=where, rois=rois)
    attempt(exp.load_trial("t-000").to_xarray, layers, rois=rois)


@FUZZ
@given(
    layer=often(None, "Fneu", "X", "dFF"),
    trials=often(None, "t-000", ["t-000", "t-001"]),
    rois=often(None, [0, 3]),
)
def test_to_pynapple(trial: zs.Trial, layer: Any, trials: Any, rois: Any) -> None:
    attempt(trial.experiment.to_pynapple, layer, trials=trials, rois=rois)
    attempt(trial.to_pynapple, layer, rois=rois)


@FUZZ
@given(where=often(None, "n_frames > 0", "plane == 0", "trial.str.len()"))
def test_tables(exp: zs.Experiment, col: zs.Collection, where: Any) -> None:
    attempt(exp.table, where)
    attempt(col.table, where)
    attempt(col.select, where)


@FUZZ
@given(
    exp_id=often("E1", "E9"),
    mode=often(None, "r", "r+"),
    layer=often(None, "Fneu"),
    where=often(None, "plane == 0"),
)
def test_collection_calls(
    col: zs.Collection, exp_id: Any, mode: Any, layer: Any, where: Any
) -> None:
    attempt(col.open_experiment, exp_id, mode=mode)
    attempt(col.concat, layer, where=where)
    attempt(col.to_xarray, layer, where=where)
    attempt(lambda: list(col.experiments(where)))
    attempt(col.__contains__, exp_id)


# -- AnnotatedData's verbs ----------------------------------------------------------------------


@FUZZ
@given(
    name=often("dFF", "new"),
    data=st.one_of(
        trial_shaped,
        st.just(np.ones((N_ROIS, N_FRAMES)).tolist()),
        anything,
    ),
    provenance=often(None, {"function": "mine"}),
)
def test_add_layer(name: Any, data: Any, provenance: Any) -> None:
    adata = zs.AnnotatedData(np.ones((N_ROIS, N_FRAMES), dtype="float32"))
    attempt(adata.add_layer, name, data, provenance=provenance)


@FUZZ
@given(
    name=often("depth", "iscell"),
    values=st.one_of(
        st.lists(scalars, min_size=N_ROIS, max_size=N_ROIS),
        st.lists(scalars, min_size=N_FRAMES, max_size=N_FRAMES),
        hnp.arrays(odd_dtypes, st.sampled_from([(N_ROIS,), (N_FRAMES,), (N_ROIS, 2)])),
        anything,
    ),
)
def test_add_and_del_columns(name: Any, values: Any) -> None:
    adata = zs.AnnotatedData(np.ones((N_ROIS, N_FRAMES), dtype="float32"))
    attempt(adata.add_obs, name, values)
    attempt(adata.add_var, name, values)
    attempt(adata.del_obs, name)
    attempt(adata.del_var, name)
    attempt(adata.matrix, name)


# -- events ----------------------------------------------------------------------------------


@FUZZ
@given(
    source=st.sampled_from(["trial", "exp", "junk"]),
    events=often([0.2, 0.5], np.array([0.1]), pd.Series([0.3]), [10.2]),
    before=often(0.1, 0),
    after=often(0.2, 1),
    layer=often(None, "X", "dFF", "Fneu"),
    baseline=often(None, (-0.1, 0.0), [0, 0]),
    rois=often(None, [0]),
    iloc=often(None, [0, 1], 7),
)
def test_event_windows(
    exp: zs.Experiment,
    trial: zs.Trial,
    source: str,
    events: Any,
    before: Any,
    after: Any,
    layer: Any,
    baseline: Any,
    rois: Any,
    iloc: Any,
) -> None:
    target = {"trial": trial, "exp": exp, "junk": before}[source]
    attempt(
        zs.event_windows,
        target,
        events,
        before=before,
        after=after,
        layer=layer,
        baseline=baseline,
        rois=rois,
        iloc=iloc,
    )


@FUZZ
@given(channel=often("stim", "time"), threshold=often(0.5, 2))
def test_events_from_channel(
    exp: zs.Experiment, trial: zs.Trial, channel: Any, threshold: Any
) -> None:
    attempt(zs.events_from_channel, trial, channel, threshold)
    attempt(zs.events_from_channel, exp, channel, threshold)
    attempt(zs.events_from_channel, channel, "stim", 0.5)


# -- configuration, creating and opening ----------------------------------------------------------


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "shard_bytes": often(1 << 20),
            "inner_rois": often(8),
            "inner_frames": often(64),
            "codec": often("zstd", "none", "blosc-zstd-bit"),
            "clevel": often(0, 9, 22, -5),
        },
    )
)
def test_storage_config(fields: dict[str, Any]) -> None:
    attempt(zs.StorageConfig, **fields)


@FUZZ
@given(
    store=st.one_of(st.sampled_from(["path", "memory"]), anything),
    exp_id=often("E", "RL109"),
    overwrite=often(False, True),
    storage_options=often(None, {}),
    config=often(None, zs.StorageConfig()),
)
def test_create_experiment(
    places: Path, store: Any, exp_id: Any, overwrite: Any, storage_options: Any, config: Any
) -> None:
    if isinstance(store, str) and store == "memory":
        store = icechunk.in_memory_storage()
    elif isinstance(store, str):  # a path in the test's folder, never the working folder
        store = fresh(places) if store == "path" else f"{fresh(places, '')}{store}"
    attempt(
        zs.create_experiment,
        store,
        exp_id=exp_id,
        overwrite=overwrite,
        storage_options=storage_options,
        config=config,
    )


@pytest.fixture(scope="module")
def saved(places: Path) -> str:
    path = fresh(places)
    zs.create_experiment(path, exp_id="SAVED").add_trial("t", make_adata(2, 5))
    return path


@FUZZ
@given(
    store=st.one_of(st.sampled_from(["saved", "missing"]), anything),
    mode=often("r", "r+"),
    storage_options=often(None, {}),
    version=often(None),
)
def test_open_experiment(
    places: Path, saved: str, store: Any, mode: Any, storage_options: Any, version: Any
) -> None:
    if isinstance(store, str):
        store = saved if store == "saved" else fresh(places)
    attempt(zs.open_experiment, store, mode=mode, storage_options=storage_options, version=version)
    attempt(zs.open_collection, store, mode=mode, storage_options=storage_options)


@FUZZ
@given(
    trial_id=often("t-new"),
    adata=st.one_of(st.just("adata"), anything),
    overwrite=often(False, True),
    provenance=often(None, {"source": "mine"}),
    progress=often(None, False),
)
def test_add_and_remove_trial(
    trial_id: Any, adata: Any, overwrite: Any, provenance: Any, progress: Any
) -> None:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="A")
    if isinstance(adata, str) and adata == "adata":
        adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
    attempt(
        exp.add_trial,
        trial_id,
        adata,
        overwrite=overwrite,
        provenance=provenance,
        progress=progress,
    )
    attempt(exp.remove_trial, trial_id)


# -- exports ------------------------------------------------------------------------------------


@FUZZ
@given(
    suffix=often(".zarr", ".h5ad", ".nwb", ""),
    trial=often(None, "t-000"),
    trials=often(None, "t-000", ["t-001"]),
    layers=often(None, "Fneu", ["Fneu"], []),
    progress=often(None, False),
)
def test_export(
    exp: zs.Experiment,
    places: Path,
    suffix: Any,
    trial: Any,
    trials: Any,
    layers: Any,
    progress: Any,
) -> None:
    path = fresh(places, suffix) if isinstance(suffix, str) else suffix
    attempt(zs.export, exp, path, trial=trial, trials=trials, layers=layers, progress=progress)


@settings(FUZZ, max_examples=15)
@given(
    trials=often(None, "t-000"),
    layers=often(None, ["Fneu"]),
    start=often(
        None, "2026-05-01T10:30:00+00:00", datetime.datetime(2026, 5, 1, tzinfo=datetime.UTC)
    ),
    subject=often(None, "RL109", {"subject_id": "RL109"}),
    compression=often("gzip", None),
)
def test_export_nwb(
    exp: zs.Experiment,
    places: Path,
    trials: Any,
    layers: Any,
    start: Any,
    subject: Any,
    compression: Any,
) -> None:
    attempt(
        zs.export_nwb,
        exp,
        fresh(places, ".nwb"),
        session_start_time=start,
        subject=subject,
        trials=trials,
        layers=layers,
        compression=compression,
    )


# -- more of the API: versions, storage, collections, plots -------------------------------------


@FUZZ
@given(
    keep=often(datetime.timedelta(days=1), datetime.timedelta(0)),
    grace=often(datetime.timedelta(hours=1)),
    dry_run=often(True),
)
def test_collect_garbage(keep: Any, grace: Any, dry_run: Any) -> None:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="G")
    attempt(exp.collect_garbage, keep=keep, grace=grace, dry_run=dry_run)


@FUZZ
@given(path=often("", "trials/t-000", "trials/t-000/X", "nowhere"), stored=often(True, False))
def test_open_zarr_and_storage(trial: zs.Trial, path: Any, stored: Any) -> None:
    attempt(trial.experiment.open_zarr, path)
    attempt(trial.storage, stored=stored)
    attempt(trial.save, progress=stored)


@FUZZ
@given(
    store=st.one_of(st.just("path"), anything),
    overwrite=often(False),
    config=often(None),
    exp_id=often("E2"),
    metadata=often(None, {"subject": "RL110", "plane": 1}, {"plane": -1}, {"": 1}),
)
def test_collections(
    places: Path, store: Any, overwrite: Any, config: Any, exp_id: Any, metadata: Any
) -> None:
    if isinstance(store, str):
        store = fresh(places)
    made = attempt(zs.create_collection, store, overwrite=overwrite, config=config)
    if isinstance(made, zs.Collection):
        attempt(made.create_experiment, exp_id, metadata=metadata)
        attempt(made.remove_experiment, exp_id)
        attempt(made.append, metadata)


@pytest.fixture(scope="module")
def windows(trial: zs.Trial) -> Any:
    return zs.event_windows(trial, [0.3, 0.6], before=0.1, after=0.2, layer="Fneu")


@settings(FUZZ, max_examples=15)
@given(
    layer=often(None, "Fneu", "dFF"),
    rois=often(None, [0, 3], 3),
    iloc=often(None, [0, 1]),
    number=often(2000, 10),
    name=often("iscell", "meanImg", "viridis", "mean", "heatmap"),
)
def test_plots(
    trial: zs.Trial, windows: Any, layer: Any, rois: Any, iloc: Any, number: Any, name: Any
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zstore import plot

    attempt(
        plot.plot_raster, trial, layer=layer, rois=rois, iloc=iloc, max_frames=number, vmax=number
    )
    attempt(plot.plot_traces, trial, rois, iloc=iloc, layer=layer, channels=name)
    attempt(plot.plot_rois, trial, color_by=name, rois=rois, iloc=iloc, image=name, cmap=name)
    attempt(plot.plot_event_average, windows, rois, iloc=iloc, kind=name)
    attempt(plot.plot_raster, layer)
    plt.close("all")


# -- issue 17 (red team): paq files, ingest, migrate, verify, versions, saves ---------------

#: A path as a str, or any of the odd values (0, 1, True are file descriptors to open()).
paths = st.one_of(st.sampled_from(["new", "x" * 300, "", "nowhere/x.paq"]), anything)


def _path(places: Path, value: Any, suffix: str = ".paq") -> Any:
    """A drawn path in the test's folder (never the working folder, never a descriptor)."""
    if isinstance(value, str):
        return fresh(places, suffix) if value == "new" else str(places / value)
    return value


@pytest.fixture(scope="module")
def paq_file(places: Path) -> str:
    path = fresh(places, ".paq")
    clock = np.zeros((2, 500))
    clock[0, 10:450:20] = 5.0
    zs.write_paq(path, clock, rate=1000.0, chan_names=["frame_clock", "lick"])
    return path


@FUZZ
@given(
    path=paths,
    data=st.one_of(st.just("ok"), anything),
    rate=often(1000.0, 20000),
    chan_names=often(["frame_clock", "lick"], "frame_clock"),
    hw_chans=often(None, ["ai0", "ai1"]),
    units=often(None, ["V", "V"]),
)
def test_write_paq(
    places: Path, path: Any, data: Any, rate: Any, chan_names: Any, hw_chans: Any, units: Any
) -> None:
    data = np.ones((2, 20)) if isinstance(data, str) and data == "ok" else data
    attempt(
        zs.write_paq,
        _path(places, path),
        data,
        rate=rate,
        chan_names=chan_names,
        hw_chans=hw_chans,
        units=units,
    )
    os.fstat(1)  # stdout is still open: no int was taken as a file descriptor


@FUZZ
@given(path=st.one_of(st.sampled_from(["paq", "dir"]), paths))
def test_read_paq(places: Path, paq_file: str, path: Any) -> None:
    if isinstance(path, str) and path == "paq":
        path = paq_file
    elif isinstance(path, str) and path == "dir":
        path = str(places)
    attempt(zs.read_paq, _path(places, path))


@FUZZ
@given(
    paq=st.one_of(st.just("paq"), anything),
    channel=often("frame_clock", "lick", "nope"),
    threshold=often(1.0, 0),
    min_gap=often(2000, 5),
)
def test_frame_times(paq_file: str, paq: Any, channel: Any, threshold: Any, min_gap: Any) -> None:
    if isinstance(paq, str) and paq == "paq":
        paq = zs.read_paq(paq_file)
    attempt(zs.frame_times, paq, channel=channel, threshold=threshold, min_gap=min_gap)


@pytest.fixture(scope="module")
def suite2p_plane(places: Path) -> Path:
    import zstore.synthetic as syn

    plane, _ = syn.write_suite2p_run(places / "s2p", n_rois=6, frames_per_file=[20])
    return Path(plane)


@settings(FUZZ, max_examples=25)
@given(
    which=st.sampled_from(
        [
            "subject",
            "session",
            "metadata",
            "trials",
            "paq",
            "exp_id",
            "cells_only",
            "neuropil_coeff",
            "paq_channel",
            "layers",
            "overwrite",
            "storage_options",
            "config",
            "progress",
            "path",
            "store",
        ]
    ),
    value=st.one_of(anything, st.sampled_from([np.array([1, 2]), pd.NA, "abc", True, 0])),
)
def test_ingest_suite2p_arguments(
    places: Path, suite2p_plane: Path, which: str, value: Any
) -> None:
    """One argument drawn, the others valid: the call works or raises a zstore error."""
    kwargs: dict[str, Any] = {"exp_id": "E", "progress": False}
    path: Any = suite2p_plane
    store: Any = fresh(places)
    if which == "path":
        path = value
    elif which == "store":
        store = value if not isinstance(value, str) else fresh(places, value[:20])
    else:
        kwargs[which] = value
    attempt(zs.ingest_suite2p, path, store, **kwargs)


@FUZZ
@given(
    old=st.one_of(st.sampled_from(["legacy", "missing"]), paths),
    new=st.one_of(st.just("new"), anything),
    storage_options=often(None, {}),
    new_storage_options=often(None),
    progress=often(False, None),
)
def test_migrate(
    places: Path, old: Any, new: Any, storage_options: Any, new_storage_options: Any, progress: Any
) -> None:
    if isinstance(old, str) and old == "legacy":
        old = str(Path(__file__).parent / "data" / "zstore-0.1.zarr")
    elif isinstance(old, str):
        old = fresh(places)
    if isinstance(new, str):
        new = fresh(places) if new == "new" else fresh(places, new[:20])
    attempt(
        zs.migrate,
        old,
        new,
        storage_options=storage_options,
        new_storage_options=new_storage_options,
        progress=progress,
    )


@FUZZ
@given(target=st.one_of(st.just("exp"), anything), progress=often(False, None))
def test_verify_experiment(exp: zs.Experiment, target: Any, progress: Any) -> None:
    if isinstance(target, str) and target == "exp":
        target = exp
    attempt(zs.verify_experiment, target, progress=progress)


@FUZZ
@given(version=st.one_of(st.sampled_from([0, 1, True, False, 2.5, b"x"]), anything))
def test_open_version(saved: str, version: Any) -> None:
    attempt(zs.open_experiment, saved, mode="r", version=version)
    attempt(zs.open_collection, saved, mode="r", version=version)


@FUZZ
@given(X=st.one_of(trial_shaped, anything), obs=often(None), var=often(None))
def test_annotated_data_constructor(X: Any, obs: Any, var: Any) -> None:
    attempt(zs.AnnotatedData, X, obs=obs, var=var)


def _generator() -> Iterator[int]:
    yield 1


#: In-memory values a user may set that anndata cannot (all) store.
odd_stored = st.one_of(
    anything,
    st.sampled_from(
        [
            object(),
            pd.NA,
            np.ma.masked_all((2, 3)),
            "\udcff",
            ["a", "\udcff"],
            2**70,
            "motion corrected",
            {"nested": object()},
        ]
    ),
)


@pytest.fixture(scope="module")
def to_save() -> zs.Experiment:
    exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="S")
    exp.add_trial("t", make_adata(N_ROIS, N_FRAMES))
    return exp


@settings(FUZZ, max_examples=25)
@given(
    where=st.sampled_from(["uns", "uns processing", "obs", "var"]),
    value=odd_stored,
)
def test_save_of_odd_in_memory_values(to_save: zs.Experiment, where: str, value: Any) -> None:
    """A value set in memory is saved or refused (a zstore error), and a refused save
    writes nothing."""
    exp = to_save.refresh()
    trial = exp.load_trial("t")
    before = len(exp.history())
    try:
        if where == "uns":
            trial.data.uns["v"] = value
        elif where == "uns processing":
            trial.data.uns["processing"] = value
        elif where == "obs":
            trial.data.obs["c"] = pd.Series([value] * N_ROIS, index=trial.data.obs_names)
        else:
            trial.data.var["c"] = pd.Series([value] * N_FRAMES, index=trial.data.var_names)
    except Exception:  # pandas refused the value: nothing to save
        return
    if isinstance(attempt(trial.save), Exception):
        assert len(exp.refresh().history()) == before
