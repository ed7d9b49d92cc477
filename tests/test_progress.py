"""progress=: True draws a tqdm bar, False and the non-interactive default draw nothing,
a callable keeps its protocol; the default is on only in interactive sessions."""

from __future__ import annotations

import collections
import fcntl
import importlib.util
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.arrays import StorageConfig
from zstore.export import export
from zstore.progress import is_interactive, reporting
from zstore.verify import verify_experiment

# 8 ROIs per shard: 2 shards per matrix for the ~16 cells of a 20-ROI run.
SMALL_SHARDS = StorageConfig(shard_bytes=8 * 128 * 4, inner_rois=8, inner_frames=64)
FINAL = re.compile(r"(\d+)/(\d+) \[")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    plane, _ = syn.write_suite2p_run(tmp_path / "RL109", n_rois=20, frames_per_file=[100] * 3)
    return plane


def _ingest(run: Path, where: Path, progress: Any) -> zs.Experiment:
    exp = zs.ingest_suite2p(
        run, where / "exp.zarr", exp_id="RL109", config=SMALL_SHARDS, progress=progress
    )
    assert isinstance(exp, zs.Experiment)
    return exp


class Calls:
    """A progress callable that records what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)

    def by_label(self) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        for *label, done, total in self.calls:
            out[label[0] if label else ""].append((done, total))
        return dict(out)


def _check_increasing(calls: Calls) -> dict[str, int]:
    """Each label's (done, total): one total, done never decreasing, ending at total."""
    assert calls.calls, "the callable was never called"
    totals = {}
    for label, seen in calls.by_label().items():
        done = [d for d, _ in seen]
        assert len({t for _, t in seen}) == 1, (label, seen)
        assert done == sorted(done), (label, seen)
        assert done[-1] == seen[-1][1] > 0, (label, seen)
        totals[label] = seen[-1][1]
    return totals


def _final(err: str) -> tuple[int, int]:
    """The last ``done/total`` a text bar drew."""
    found = FINAL.findall(err.split("\r")[-1])
    assert found, err
    done, total = found[-1]
    return int(done), int(total)


# -- True, False, default, callable ----------------------------------------------------------------


def test_true_draws_one_bar_over_every_trial(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = Calls()
    _ingest(run, tmp_path / "a", calls)
    per_trial = _check_increasing(calls)
    assert sorted(per_trial) == ["t-000", "t-001", "t-002"]
    capsys.readouterr()

    _ingest(run, tmp_path / "b", True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "ingest RL109" in err and "100%" in err and "shard" in err
    # one bar for the whole call, counted in shards of all trials (not reset per trial)
    assert _final(err) == (sum(per_trial.values()),) * 2
    assert err.count("\n") == 1


@pytest.mark.parametrize("progress", [False, None])
def test_false_and_the_non_interactive_default_draw_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], progress: Any
) -> None:
    assert not is_interactive()  # pytest: no prompt, no IPython shell
    exp = _ingest(run, tmp_path, progress)
    zs.compute_dff(exp, layer="dFF", progress=progress)
    verify_experiment(exp, progress=progress)
    export(exp, tmp_path / "t.zarr", trial="t-000", progress=progress)
    assert capsys.readouterr() == ("", "")


def test_callables_get_label_done_total(run: Path, tmp_path: Path) -> None:
    exp = _ingest(run, tmp_path, False)

    calls = Calls()
    assert zs.compute_dff(exp, layer="dFF", progress=calls) == exp.trialIDs
    assert sorted(_check_increasing(calls)) == exp.trialIDs

    calls = Calls()
    assert verify_experiment(exp, progress=calls) == []
    assert sorted(_check_increasing(calls)) == exp.trialIDs  # arrays per trial

    calls = Calls()
    export(exp, tmp_path / "t.zarr", trial="t-000", progress=calls)
    assert {len(c) for c in calls.calls} == {3}  # (label, done, total)
    assert _check_increasing(calls)["t-000"] == 8  # X, Fneu, spks and dFF: 2 shards each

    calls = Calls()
    data = zs.AnnotatedData(np.ones((20, 100), dtype="float32"))
    exp.add_trial("t-new", data, progress=calls)
    assert {len(c) for c in calls.calls} == {3}
    assert list(_check_increasing(calls)) == ["t-new"]


def test_zstore_02_two_argument_callables_keep_working(tmp_path: Path) -> None:
    # zstore 0.2 called add_trial's and export's callbacks as (done, total).
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    seen: list[tuple[int, int]] = []
    exp.add_trial(
        "t",
        zs.AnnotatedData(np.ones((8, 50), dtype="float32")),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen and seen[-1][0] == seen[-1][1] > 0
    seen.clear()
    export(exp, tmp_path / "t.zarr", trial="t", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] > 0


def test_a_callable_of_another_shape_is_refused_before_any_work(tmp_path: Path) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    with pytest.raises(TypeError, match=r"progress\(label, done, total\).*1 required"):
        exp.add_trial(
            "t", zs.AnnotatedData(np.ones((8, 50), dtype="float32")), progress=lambda x: None
        )
    assert exp.trialIDs == []


def test_true_draws_a_bar_for_each_long_call(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = _ingest(run, tmp_path, False)
    capsys.readouterr()
    verify_experiment(exp, progress=True)
    _, err = capsys.readouterr()
    assert "verify RL109: 100%" in err and "array" in err
    export(exp, tmp_path / "t.zarr", trial="t-000", progress=True)
    _, err = capsys.readouterr()
    assert "export t-000: 100%" in err and _final(err) == (6, 6)  # X, Fneu, spks: 2 shards
    exp.add_trial("t-new", zs.AnnotatedData(np.ones((20, 100), dtype="float32")), progress=True)
    _, err = capsys.readouterr()
    assert "add trial t-new: 100%" in err and _final(err) == (3, 3)  # 20 ROIs, 8 a shard


def test_collection_append_and_ingest_label_experiment_and_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planes = syn.write_suite2p_planes(
        tmp_path / "run", n_planes=2, n_rois=20, frames_per_file=[100, 100]
    )
    calls = Calls()
    col = zs.ingest_suite2p(
        planes, tmp_path / "lab.zarr", subject="RL109", session="d1", config=SMALL_SHARDS,
        progress=calls,
    )  # fmt: skip
    assert isinstance(col, zs.Collection)
    totals = _check_increasing(calls)
    assert sorted(totals) == [f"RL109_d1_plane{k}/{t}" for k in (0, 1) for t in ("t-000", "t-001")]
    capsys.readouterr()

    calls = Calls()
    zs.compute_dff(col, layer="dFF", progress=calls)
    per_trial = _check_increasing(calls)
    assert sorted(per_trial) == sorted(totals)
    capsys.readouterr()
    zs.compute_dff(col, layer="dFF", overwrite=True, progress=True)
    _, err = capsys.readouterr()
    assert "compute_dff dFF" in err
    assert _final(err) == (sum(per_trial.values()),) * 2  # one bar over the 4 trials

    calls = Calls()
    exp = col.open_experiment("RL109_d1_plane0")
    data = exp.load_trial("t-000").data.to_memory()
    col.append({"copy": ({}, {"t": (data, None)})}, progress=calls)
    assert list(_check_increasing(calls)) == ["copy/t"]


def test_migrate_reports_each_trial(tmp_path: Path) -> None:
    calls = Calls()
    with pytest.warns(zs.ZstoreWarning):  # the 0.1 store's own damage, as in its doctest
        exp = zs.migrate(
            Path(__file__).parent / "data" / "zstore-0.1.zarr",
            icechunk.in_memory_storage(),
            progress=calls,
        )
    assert sorted(_check_increasing(calls)) == exp.trialIDs


def test_bar_estimates_parts_not_started_and_ends_at_what_was_counted() -> None:
    out = io.StringIO()
    with reporting(True, desc="write", parts=3, file=out) as report:
        assert report is not None
        report("a", 0, 4)
        assert "0/12" in out.getvalue()  # 3 parts of 4, until the others report
        report("a", 4, 4)
        report("b", 0, 6)
        report("b", 6, 6)
    # the third part never reported: the bar ends at what was counted, 10 of 10
    assert _final(out.getvalue()) == (10, 10)


def test_bar_is_closed_when_the_call_fails() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), reporting(True, desc="write", file=out) as report:
        assert report is not None
        report("a", 1, 4)
        raise RuntimeError("disk full")
    assert out.getvalue().endswith("\n")
    assert _final(out.getvalue()) == (1, 4)


# -- the interactive default, in real interpreters -------------------------------------------------

INGEST = """
import zstore as zs, zstore.progress, zstore.synthetic as syn
plane, _ = syn.write_suite2p_run({dir!r}, n_rois=12, frames_per_file=[60, 60])
zs.ingest_suite2p(plane, {dir!r} + "/exp.zarr", exp_id="RL109")
print("interactive:", zstore.progress.is_interactive())
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    env["PYTHONWARNINGS"] = "ignore"  # icechunk/zarr deprecations are not the subject here
    return env


def _python(code: str, *, tty: bool, args: tuple[str, ...] = ()) -> tuple[str, str]:
    """Run ``code`` in a new interpreter; with ``tty`` its stdin and stderr are a terminal.

    Returns (stdout, stderr); with a terminal, stderr is what the terminal showed.
    """
    argv = [sys.executable, *args, "-c", code]
    if not tty:
        done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=240)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    leader, follower = pty.openpty()
    # 24 x 120: a new pty has 0 columns, and tqdm fits its bar into 0 characters
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=_env(), text=True
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.wait(timeout=240) == 0, shown
    os.close(leader)
    return out, shown.decode(errors="replace")


def test_default_is_off_in_a_script_with_pipes(tmp_path: Path) -> None:
    code = INGEST.format(dir=str(tmp_path))
    out, err = _python(code, tty=False)
    assert "interactive: False" in out
    assert "ingest RL109" not in err and "%|" not in err


def test_default_is_on_in_an_ipython_shell(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance()\n" + INGEST.format(dir=str(tmp_path))
    )
    out, err = _python(code, tty=False)  # a kernel's stderr is no terminal either
    assert "interactive: True" in out
    assert "ingest RL109" in err and "100%" in err


def test_default_is_on_at_the_python_prompt_on_a_terminal(tmp_path: Path) -> None:
    # python -i: the prompt follows the command; os._exit leaves before it reads stdin
    code = (
        INGEST.format(dir=str(tmp_path)) + "\n"
        "import os, sys; sys.stdout.flush(); sys.stderr.flush(); os._exit(0)\n"
    )
    out, shown = _python(code, tty=True, args=("-i",))
    assert "interactive: True" in out
    assert "ingest RL109" in shown and "100%" in shown


def test_default_is_off_on_a_terminal_without_a_prompt(tmp_path: Path) -> None:
    code = INGEST.format(dir=str(tmp_path))
    out, shown = _python(code, tty=True)
    assert "interactive: False" in out
    assert "ingest RL109" not in shown


def test_prompt_detection_follows_sys_ps1_and_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not is_interactive()
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert not is_interactive()  # a prompt whose output goes to a pipe or a file
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert is_interactive()
    monkeypatch.delattr(sys, "ps1")
    assert not is_interactive()


# -- the CLI: a bar on a terminal's stderr, nothing in pipes ---------------------------------------


def _cli(tmp_path: Path, tty: bool, name: str) -> tuple[str, str]:
    plane, _ = syn.write_suite2p_run(tmp_path / name, n_rois=12, frames_per_file=[60, 60])
    code = (
        "import sys; from zstore.cli import main; "
        f"sys.exit(main(['ingest', {str(plane)!r}, {str(tmp_path / name / 'e.zarr')!r}]))"
    )
    return _python(code, tty=tty)


def test_cli_bar_on_a_terminal_only(tmp_path: Path) -> None:
    out, shown = _cli(tmp_path, True, "tty")
    assert "ingested 2 trials" in out
    assert "ingest " in shown and "100%|" in shown and "shard" in shown
    out, err = _cli(tmp_path, False, "pipe")
    assert "ingested 2 trials" in out
    assert "%|" not in err and "shard" not in err


# -- a notebook: a text bar without widgets, and no warning about them -----------------------------


def test_a_notebook_kernel_shows_a_bar_and_no_widget_warning(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(textwrap.dedent(INGEST.format(dir=str(tmp_path))).strip())
    ]
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3")
    client.execute(env={k: v for k, v in os.environ.items() if not k.startswith("TQDM_")})
    outputs = notebook.cells[0].outputs
    text = "".join(str(o.get("text", "")) for o in outputs)
    assert "interactive: True" in text
    if importlib.util.find_spec("ipywidgets") is None:  # a text bar, in the cell's stderr
        assert "ingest RL109" in text and "100%" in text
    assert "IProgress not found" not in text
    assert not [o for o in outputs if o.output_type == "error"]
