"""Ingest: exact alignment of traces, ROIs, masks and paq channels; errors; the CLI."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import Where

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main
from zstore.io.safe_pickle import load_pickled_npy

FRAMES = [120, 90, 150]


def ingest_quietly(*args: Any, **kwargs: Any) -> zs.Experiment:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*frame clock edges", zs.ZstoreWarning)
        return zs.ingest_suite2p(*args, **kwargs)


@pytest.fixture(params=["classic", "v1"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    return syn.write_suite2p_run(
        tmp_path / "RL109", n_rois=45, frames_per_file=FRAMES, generation=request.param, seed=3
    )


def test_three_trials_line_up_exactly(
    run: tuple[Path, dict[str, Path]], tmp_path: Path, where: Where
) -> None:
    plane, paqs = run
    F, Fneu, spks = (np.load(plane / f"{n}.npy") for n in ("F", "Fneu", "spks"))
    iscell = np.load(plane / "iscell.npy")
    stat = load_pickled_npy(plane / "stat.npy")
    keep = np.flatnonzero(iscell[:, 0] == 1)
    assert 0 < len(keep) < 45 and np.any(np.diff(keep) > 1), "non-cells interleave with cells"

    exp = ingest_quietly(plane, where.store, paq=paqs, storage_options=where.options)
    assert exp.expID == "RL109"
    assert exp.trialIDs == ["t-000", "t-001", "t-002"]
    starts = np.cumsum([0, *FRAMES])
    for k, tid in enumerate(exp.trialIDs):
        a, b = starts[k], starts[k + 1]
        data = exp.load_trial(tid).data
        np.testing.assert_array_equal(data.X.compute(), F[keep, a:b])
        np.testing.assert_array_equal(data.layers["Fneu"].compute(), Fneu[keep, a:b])
        np.testing.assert_array_equal(data.layers["spks"].compute(), spks[keep, a:b])
        assert data.obs_names.tolist() == [str(i) for i in keep]
        np.testing.assert_array_equal(data.obs["npix"], [stat[i]["npix"] for i in keep])
        np.testing.assert_allclose(data.obs["radius"], [stat[i]["radius"] for i in keep])
        np.testing.assert_array_equal(data.obs["med_y"], [stat[i]["med"][0] for i in keep])
        assert data.obs["iscell"].all()
        np.testing.assert_allclose(data.obs["iscell_prob"], iscell[keep, 1])
        ypix = data.obsm["ypix"][:5]
        assert len(ypix) == 5 and all(np.issubdtype(y.dtype, np.integer) for y in ypix)
        for j, i in enumerate(keep):
            np.testing.assert_array_equal(data.obsm["ypix"][j], stat[i]["ypix"])
            np.testing.assert_array_equal(data.obsm["xpix"][j], stat[i]["xpix"])
            np.testing.assert_allclose(data.obsm["lam"][j], stat[i]["lam"])
        pq = zs.read_paq(paqs[tid])
        edges = zs.frame_times(pq)[: b - a]
        assert data.var_names.tolist() == [str(e) for e in edges]
        for c, name in enumerate(pq.chan_names):
            np.testing.assert_array_equal(data.var[name], pq.data[c, edges])
        # session time: the trial starts where its frames are in the run, and within
        # it the paq frame clock gives the times
        start = data.uns["trial"]["start_s"]
        assert start == pytest.approx(a / 30.0)
        np.testing.assert_allclose(data.var["time"], start + (edges - edges[0]) / pq.rate)
        assert data.uns["fs"] == 30.0
        assert data.uns["trial"]["frame_start"] == a and data.uns["trial"]["frame_stop"] == b
        assert list(data.uns["trial"]["files"]) == [f"{tid}.tif"]
        assert data.uns["suite2p"]["meanImg"].shape == (256, 256)
        assert data.uns["paq"]["rate"] == 2000.0


def test_extra_edges_warn_with_both_numbers(tmp_path: Path) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path, n_rois=10, frames_per_file=[100])
    with pytest.warns(
        zs.ZstoreWarning, match=r"t-000.paq: 108 frame clock edges for 100 imaging frames"
    ):
        zs.ingest_suite2p(plane, tmp_path / "exp.zarr", paq=paqs)


def test_fewer_edges_than_frames_is_an_error(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=10, frames_per_file=[100, 100])
    syn.write_paq_for_trial(tmp_path / "ok.paq", 100, extra_edges=0)
    syn.write_paq_for_trial(tmp_path / "short.paq", 90, extra_edges=0)
    paq = {"t-000": tmp_path / "ok.paq", "t-001": tmp_path / "short.paq"}
    with pytest.raises(ValueError, match="has 90 frame clock edges but trial 't-001' has 100"):
        zs.ingest_suite2p(plane, tmp_path / "exp.zarr", paq=paq)
    assert not (tmp_path / "exp.zarr").exists(), "a bad last trial leaves no store behind"
    zs.write_paq(tmp_path / "noclock.paq", np.zeros((1, 10)), rate=10, chan_names=["lick"])
    with pytest.raises(ValueError, match="has no frame clock channel 'frame_clock'"):
        zs.ingest_suite2p(
            plane, tmp_path / "e2.zarr", paq={"t-000": tmp_path / "noclock.paq"}, overwrite=True
        )


def test_without_paq_var_counts_frames_and_time_from_fs(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=10, frames_per_file=[40, 60])
    exp = zs.ingest_suite2p(plane, tmp_path / "exp.zarr", trials={"all": (0, 100)})
    var = exp.load_trial("all").data.var
    assert var.index.tolist() == [str(i) for i in range(100)]
    np.testing.assert_allclose(var["time"], np.arange(100) / 30.0)


def test_neuropil_coefficient_and_all_rois(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=10, frames_per_file=[40, 60])
    F, Fneu = np.load(plane / "F.npy"), np.load(plane / "Fneu.npy")
    exp = zs.ingest_suite2p(
        plane, tmp_path / "exp.zarr", trials={"b": ["t-001"]}, neuropil_coeff=0.7, cells_only=False
    )
    data = exp.load_trial("b").data
    assert data.n_obs == 10
    np.testing.assert_allclose(
        data.X.compute(), F[:, 40:] - np.float32(0.7) * Fneu[:, 40:], rtol=1e-6
    )


def test_no_cells_and_malicious_stat(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=5, frames_per_file=[20])
    np.save(plane / "iscell.npy", np.zeros((5, 2)))
    with pytest.raises(
        ValueError, match="marks none of its 5 ROIs as cells; pass cells_only=False"
    ):
        zs.ingest_suite2p(plane, tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists(), "nothing is created for a run that cannot ingest"

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            import os

            return os.system, (f"touch {tmp_path}/PWNED",)

    np.save(plane / "stat.npy", np.array([Evil()] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"refers to posix\.system, which zstore will not load"):
        zs.ingest_suite2p(plane, tmp_path / "b.zarr")
    assert not (tmp_path / "PWNED").exists()


def test_cli_ingest_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plane, paqs = syn.write_suite2p_run(tmp_path / "RL110", n_rois=20, frames_per_file=[60, 50])
    store = tmp_path / "exp.zarr"
    argv = ["ingest", str(plane), str(store), "--exp-id", "RL110"]
    argv += [arg for tid, path in paqs.items() for arg in ("--paq", f"{tid}={path}")]
    argv += ["--trial", "t-000=t-000.tif", "--trial", "t-001=t-001"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "ingested 2 trials" in out.out
    assert "warning: t-000.paq: 68 frame clock edges for 60 imaging frames" in out.err
    assert main(["info", str(store)]) == 0
    info = capsys.readouterr().out
    assert "experiment 'RL110' at" in info and ": 2 trials" in info
    assert "  t-001 " in info and "Fneu  Suite2p Fneu.npy (neuropil)" in info
    assert main(["info", str(store), "--storage"]) == 0
    info = capsys.readouterr().out
    assert "shard " in info and "stored" in info and "uncompressed" in info
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "no zstore experiment at" in capsys.readouterr().err
    assert main(["ingest", str(plane), str(store)]) == 1
    assert "already holds experiment 'RL110' with 2 trials" in capsys.readouterr().err


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and zs.__version__ in capsys.readouterr().out
    for command in ("ingest", "info"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--storage-option" in capsys.readouterr().out


def test_obs_has_the_scalar_stat_fields(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(tmp_path, n_rois=8, frames_per_file=[20], generation="v1")
    obs = zs.ingest_suite2p(plane, tmp_path / "e.zarr").load_trial("t-000").data.obs
    expected = {"npix", "radius", "aspect_ratio", "compact", "footprint", "skew", "std", "mrs",
                "mrs0", "solidity", "npix_norm", "npix_soma", "snr", "med_y", "med_x", "iscell",
                "iscell_prob"}  # fmt: skip
    assert expected <= set(obs.columns)
    assert not {"ypix", "xpix", "lam", "soma_crop", "overlap", "neuropil_mask"} & set(obs.columns)
    assert all(pd.api.types.is_numeric_dtype(obs[c]) for c in expected)


def test_integer_f_and_nan_in_f_are_accepted_and_reported(tmp_path: Path) -> None:
    plane = syn.write_suite2p_plane(
        tmp_path, n_rois=12, frames_per_file=[80], non_cell_fraction=0.0
    )
    F = np.load(plane / "F.npy")
    np.save(plane / "F.npy", np.round(F).astype(np.int16))  # some rigs export integers
    exp = zs.ingest_suite2p(plane, tmp_path / "int.zarr")
    X = exp.load_trial("t-000").data.X
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X.compute(), np.round(F).astype(np.int16).astype(np.float32))

    F[[3, 7], 10] = np.nan
    F[5, 20] = np.inf
    np.save(plane / "F.npy", F)
    exp = zs.ingest_suite2p(plane, tmp_path / "nan.zarr")
    with pytest.warns(
        zs.ZstoreWarning, match=r"2 of 12 ROIs have an all-NaN dF/F .*ROIs \['3', '7'\]"
    ):
        zs.compute_dff(zs.open_experiment(tmp_path / "nan.zarr", mode="r+"), layer="dFF")
    dff = zs.open_experiment(tmp_path / "nan.zarr").load_trial("t-000").data.layers["dFF"].compute()
    assert np.isnan(dff[[3, 7]]).all() and np.isinf(dff[5, 20])
