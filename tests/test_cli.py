"""The command line: fast --version/--help, the ingest summary, `zstore info` and its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ReadCounter

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main
from zstore.summary import INFO_FORMAT

HEAVY = ("anndata", "zarr", "dask", "icechunk", "pandas", "xarray", "numpy")

# -- fast commands: nothing heavy is imported for --version and --help ----------------------


def test_version_and_help_import_nothing_heavy() -> None:
    code = f"""
import contextlib, io, sys
import zstore.cli
for argv in (["--version"], ["--help"], ["ingest", "--help"], ["info", "--help"], []):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        zstore.cli.main(argv)
import zstore
zstore.__version__, dir(zstore)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_public_names_resolve_on_first_use() -> None:
    code = """
import sys
import zstore as zs
assert "anndata" not in sys.modules
import zstore.export, zstore.migrate  # the submodules share names with the functions
assert zs.export is sys.modules["zstore.export"].export and callable(zs.migrate)
assert zs.AnnotatedData.__name__ == "AnnotatedData" and "anndata" in sys.modules
assert zs.plot.__name__ == "zstore.plot"
from zstore import *  # every name in __all__ resolves
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
    assert set(zs.__all__) <= set(dir(zs)) and "plot" in dir(zs)
    with pytest.raises(AttributeError, match="module 'zstore' has no attribute 'nope'"):
        _ = zs.nope  # type: ignore[attr-defined]


# -- ingest: what was kept, dropped and matched -------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    return syn.write_suite2p_run(tmp_path / "RL110", n_rois=23, frames_per_file=[60, 45])


def _ingest(*args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*frame clock edges", zs.ZstoreWarning)
        return zs.ingest_suite2p(*args, **kwargs)


def _cells(plane: Path) -> int:
    return int(np.sum(np.load(plane / "iscell.npy")[:, 0] == 1))


def test_ingest_returns_a_summary_of_what_it_kept(
    run: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    plane, paqs = run
    cells = _cells(plane)
    assert 0 < cells < 23, "the synthetic run has non-cells"
    exp = _ingest(plane, tmp_path / "e.zarr", paq=paqs, exp_id="RL110")
    summary = exp.ingest_summary
    assert isinstance(summary, zs.IngestSummary) and summary.n_trials == 2
    (one,) = summary.experiments
    assert (one.exp_id, one.plane, one.fs) == ("RL110", 0, 30.0)
    assert (one.rois_total, one.rois_cells, one.rois_kept, one.rois_dropped) == (
        23,
        cells,
        cells,
        23 - cells,
    )
    assert one.layers == ("Fneu", "spks")
    kept = f"{cells} of 23 ROIs kept: {23 - cells} non-cells dropped (iscell == 0)"
    assert one.rois_text() == kept
    paq_channels = zs.read_paq(paqs["t-000"]).chan_names
    for trial, n, first, start in zip(one.trials, [60, 45], [0, 60], [0.0, 2.0], strict=True):
        assert trial.n_frames == n and trial.frames == (first, first + n)
        assert trial.duration_s == pytest.approx(n / 30.0)
        assert trial.start_s == pytest.approx(start)
        assert trial.channels == tuple(paq_channels) and trial.paq == f"{trial.trial_id}.paq"
        assert trial.clock_edges == len(zs.frame_times(zs.read_paq(paqs[trial.trial_id])))
        assert trial.clock_edges > n  # the synthetic paq runs on a little: first n used
        assert trial.files == (f"{trial.trial_id}.tif",)
    assert one.n_frames == 105 and one.duration_s == pytest.approx(3.5)
    text = str(summary)
    assert f"into {tmp_path / 'e.zarr'}" in text and kept in text
    assert "plane 0 of" in text and "fs 30 Hz" in text
    assert "t-001      45  60:105" in text and "1.50 s" in text
    assert f"{', '.join(paq_channels)} (t-001.paq; " in text and "first 45 used" in text
    assert "total     105" in text and "3.50 s" in text
    as_json = json.loads(json.dumps(summary.to_dict()))
    assert as_json["experiments"][0]["rois_dropped"] == 23 - cells
    assert as_json["experiments"][0]["trials"][1]["channels"] == paq_channels
    # persisted for `zstore info`: the run's ROI counts in each trial's attributes
    source = exp.open_zarr("trials/t-000").attrs["zstore"]["provenance"]
    assert source["rois"] == {"total": 23, "cells": cells}
    assert exp.load_trial("t-000").data.uns["paq"]["clock_edges"] == one.trials[0].clock_edges


def test_all_rois_and_no_paq_are_said_as_such(
    run: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    plane, _ = run
    cells = _cells(plane)
    exp = zs.ingest_suite2p(plane, tmp_path / "e.zarr", cells_only=False, neuropil_coeff=0.7)
    (one,) = exp.ingest_summary.experiments
    assert (one.rois_kept, one.rois_dropped) == (23, 0)
    assert one.rois_text() == (
        f"all 23 ROIs kept: {cells} cells, {23 - cells} non-cells (cells_only=False)"
    )
    assert all(t.paq is None and t.channels == () and t.clock_edges is None for t in one.trials)
    text = str(exp.ingest_summary)
    assert "- (no paq)" in text and "X = F - 0.7 * Fneu" in text


def test_a_collection_ingest_summarises_each_plane(tmp_path: Path) -> None:
    root = syn.write_suite2p_planes(tmp_path / "RL109", n_planes=2, n_rois=12, frames_per_file=[40])
    col = zs.ingest_suite2p(root, tmp_path / "lab.zarr", subject="RL109", session="d1")
    summary = col.ingest_summary
    assert [e.exp_id for e in summary.experiments] == ["RL109_d1_plane0", "RL109_d1_plane1"]
    for k, one in enumerate(summary.experiments):
        cells = _cells(root / f"plane{k}")
        assert (one.plane, one.rois_total, one.rois_kept) == (k, 12, cells)
        assert f"{cells} of 12 ROIs kept" in str(summary)
    assert "ingested 2 trials of 2 experiments" in str(summary)


def test_cli_ingest_prints_the_summary_and_json(
    run: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plane, paqs = run
    cells = _cells(plane)
    paq_args = [a for tid, p in paqs.items() for a in ("--paq", f"{tid}={p}")]
    assert main(["ingest", str(plane), str(tmp_path / "e.zarr"), *paq_args]) == 0
    out = capsys.readouterr()
    assert "ingested 2 trials of 1 experiment into" in out.out
    assert f"{cells} of 23 ROIs kept: {23 - cells} non-cells dropped (iscell == 0)" in out.out
    assert "frame_clock, running, lick, stim (t-000.paq; 68 frame clock edges" in out.out
    assert "68 frame clock edges for 60 imaging frames" in out.err  # the warning, on stderr
    argv = ["ingest", str(plane), str(tmp_path / "f.zarr"), "--json", "--all-rois"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    (one,) = doc["experiments"]
    assert (one["rois_total"], one["rois_cells"], one["rois_kept"]) == (23, cells, 23)
    assert [t["n_frames"] for t in one["trials"]] == [60, 45]


# -- info: per trial fs, duration, ROIs, channels, layers and how they were made ---------------


@pytest.fixture
def store(run: tuple[Path, dict[str, Path]], tmp_path: Path) -> Path:
    plane, paqs = run
    path = tmp_path / "info.zarr"
    _ingest(plane, path, paq=paqs, exp_id="RL110")
    zs.compute_dff(zs.open_experiment(path, mode="r+"), layer="dFF", normalize_pct=30)
    return path


def test_info_shows_what_each_trial_holds_and_reads_no_chunk(
    store: Path,
    run: tuple[Path, dict[str, Path]],
    capsys: pytest.CaptureFixture[str],
    reads: ReadCounter,
) -> None:
    cells = _cells(run[0])
    reads.reset()
    assert main(["info", str(store)]) == 0
    assert reads.chunk_reads() == {}, "info reads metadata only"
    out = capsys.readouterr().out
    assert "experiment 'RL110' at" in out and "2 trials, 105 frames, 3.50 s of imaging" in out
    assert f"{cells} of 23 ROIs kept: {23 - cells} non-cells dropped (iscell == 0)" in out
    assert "fs (Hz)  frames  duration (s)  ROIs (cells/total)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  t-")}
    assert lines["t-000"].split()[1:6] == ["30", "60", "2.00", str(cells), f"({cells}/23)"]
    assert lines["t-001"].split()[1:7] == [
        "30",
        "45",
        "1.50",
        str(cells),
        f"({cells}/23)",
        "60:105",
    ]
    assert lines["t-001"].endswith("frame_clock, running, lick, stim")
    assert "X and layers (every trial), how each was computed:" in out
    assert "X     Suite2p F.npy (raw fluorescence)" in out
    assert "Fneu  Suite2p Fneu.npy (neuropil)" in out
    assert "spks  Suite2p spks.npy (deconvolved)" in out
    assert "dFF   normalize_dff(X, baseline='percentile', normalize_pct=30) by zstore" in out
    assert "shard" not in out
    assert main(["info", str(store), "--storage"]) == 0
    out = capsys.readouterr().out
    assert "storage of trial 't-001':" in out and "layers/dFF" in out and "Crc32cCodec" in out


def test_info_json_is_a_stable_document(
    store: Path,
    run: tuple[Path, dict[str, Path]],
    capsys: pytest.CaptureFixture[str],
    reads: ReadCounter,
) -> None:
    cells = _cells(run[0])
    reads.reset()
    assert main(["info", str(store), "--json"]) == 0
    assert reads.chunk_reads() == {}
    doc = json.loads(capsys.readouterr().out)
    assert {k: doc[k] for k in ("info_format", "kind", "experiment", "zstore_version")} == {
        "info_format": INFO_FORMAT,
        "kind": "experiment",
        "experiment": "RL110",
        "zstore_version": zs.__version__,
    }
    assert doc["location"] == str(store) and isinstance(doc["version"], str)
    assert doc["totals"]["trials"] == 2 and doc["totals"]["frames"] == 105
    assert doc["totals"]["duration_s"] == pytest.approx(3.5)
    assert doc["totals"]["stored_bytes"] > sum(t["stored_bytes"] for t in doc["trials"]) > 0
    first, second = doc["trials"]
    assert set(first) == {
        "trial", "n_rois", "n_frames", "fs", "start_s", "duration_s", "rois", "channels",
        "X", "layers", "stored_bytes", "source",
    }  # fmt: skip
    assert (second["trial"], second["n_frames"], second["fs"]) == ("t-001", 45, 30.0)
    assert second["duration_s"] == pytest.approx(1.5) and second["start_s"] == pytest.approx(2.0)
    assert second["rois"] == {
        "stored": cells,
        "cells": cells,
        "total": 23,
        "dropped": 23 - cells,
        "text": f"{cells} of 23 ROIs kept: {23 - cells} non-cells dropped (iscell == 0)",
    }
    assert second["channels"] == ["frame_clock", "running", "lick", "stim"]
    assert sorted(second["layers"]) == ["Fneu", "dFF", "spks"]
    assert second["X"] == {"computed": "Suite2p F.npy (raw fluorescence)", "record": None}
    dff = second["layers"]["dFF"]
    assert dff["record"] == {
        "function": "normalize_dff",
        "source": "X",
        "normalize_pct": 30.0,
        "baseline": "percentile",
        "zstore_version": zs.__version__,
    }
    assert dff["computed"].startswith("normalize_dff(X, ")
    assert second["source"]["frames"] == [60, 105] and second["source"]["paq"].endswith("t-001.paq")
    assert main(["info", str(store), "--json", "--storage"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [a["name"] for a in doc["trials"][0]["storage"]]
    assert names[0] == "X" and "layers/dFF" in names
    assert doc["trials"][0]["storage"][0]["shape"] == [cells, 60]


def test_info_of_a_trial_added_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    data = zs.AnnotatedData(np.ones((4, 10), dtype="float32"))
    data.add_layer("smooth", np.zeros((4, 10), dtype="float32"))
    exp.add_trial("t", data)
    assert main(["info", str(tmp_path / "e.zarr"), "--json"]) == 0
    (trial,) = json.loads(capsys.readouterr().out)["trials"]
    assert trial["fs"] is None and trial["duration_s"] is None and trial["channels"] == []
    assert trial["rois"] == {
        "stored": 4,
        "cells": None,
        "total": None,
        "dropped": None,
        "text": "4 ROIs",
    }
    assert trial["X"]["computed"] == "as added (exp.add_trial)"
    assert trial["layers"]["smooth"]["computed"].startswith("as given (no processing record")
    assert main(["info", str(tmp_path / "e.zarr")]) == 0
    out = capsys.readouterr().out
    assert "1 trial, 10 frames," in out
    (row,) = [line.split() for line in out.splitlines() if line.startswith("  t ")]
    assert row[:6] == ["t", "-", "10", "-", "4", "-"] and row[-1] == "-"


def test_info_json_of_a_collection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = syn.write_suite2p_planes(
        tmp_path / "RL109", n_planes=2, n_rois=12, frames_per_file=[40, 30]
    )
    lab = str(tmp_path / "lab.zarr")
    zs.ingest_suite2p(root, lab, subject="RL109", session="d1")
    assert main(["info", lab, "--json", "--where", "plane == 1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "collection" and doc["where"] == "plane == 1"
    assert doc["totals"]["experiments"] == 1 and doc["totals"]["trials"] == 2
    (one,) = doc["experiments"]
    assert one["experiment"] == "RL109_d1_plane1"
    assert one["metadata"] == {"subject": "RL109", "session": "d1", "plane": 1}
    cells = _cells(root / "plane1")
    assert [t["rois"]["text"] for t in one["trials"]] == [
        f"{cells} of 12 ROIs kept: {12 - cells} non-cells dropped (iscell == 0)"
    ] * 2
    assert [t["n_frames"] for t in one["trials"]] == [40, 30]
    assert main(["info", lab]) == 0  # the table view stays
    assert "2 experiments, 4 trials" in capsys.readouterr().out


# -- the process: pipes closed early, and no notices from libraries -------------------------

_CLI = "import sys; from zstore.cli import main; sys.exit(main())"


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_closed_stdout_ends_the_command_quietly(store: Path, extra: list[str]) -> None:
    # as `zstore info STORE | head -0`: the reader is gone before anything is written
    command = subprocess.Popen(
        [sys.executable, "-c", _CLI, "info", str(store), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert command.stdout is not None and command.stderr is not None
    command.stdout.close()
    err = command.stderr.read().decode()
    assert command.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as docs/CLI.md says
    assert err == "", "no 'Broken pipe' error, no traceback"


def test_commands_print_no_notice_of_anndatas_awkward_support(
    run: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    plane, _ = run
    store, png = tmp_path / "quiet.zarr", tmp_path / "rois.png"
    steps = [
        ["ingest", str(plane), str(store)],
        ["export", str(store), "--to", str(tmp_path / "out.h5ad")],
        ["plot", str(store), "--trial", "t-000", "--kind", "rois", "--out", str(png)],
    ]
    for argv in steps:
        done = subprocess.run(
            [sys.executable, "-c", _CLI, *argv], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "experimental" not in done.stderr and "site-packages" not in done.stderr, (
            argv[0],
            done.stderr,
        )
