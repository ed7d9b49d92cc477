"""The command line when things go wrong (issue 17, groups CLI and Resources).

One line (plus a hint) in the command line's own terms, exit 2 for usage errors, 1 for
failures, 141 when a reader left; S3 failures name endpoint, bucket and what to check; a
full disk, a file-size limit, no permission or no memory name the store, the write and
the fix. Resource limits are real: set in a subprocess (``RLIMIT_FSIZE``, ``RLIMIT_AS``,
a capability dropped so that root obeys file permissions).
"""

from __future__ import annotations

import argparse
import ast
import errno
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from s3server import S3Server

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main
from zstore.cli_failures import OUT_OF_MEMORY_LINE, report
from zstore.cli_wording import API_FLAGS, API_ONLY_KEYWORDS, PYTHON_ADVICE, cli_wording
from zstore.errors import LayerExistsError, OutOfMemoryError, StorageOptionsError, StoreError
from zstore.store import parse_storage_options, resolve, write_failure

_CLI = "import sys; from zstore.cli import main; sys.exit(main())"
ROOT = Path(__file__).resolve().parents[1]


def _trial(n_rois: int = 6, n_frames: int = 240, *, fs: float | None = 30.0) -> zs.AnnotatedData:
    F = (np.random.default_rng(n_rois).gamma(2, 30, (n_rois, n_frames)) + 100).astype("float32")
    return zs.AnnotatedData(F, uns={"fs": fs} if fs is not None else {})


@pytest.fixture
def store(tmp_path: Path) -> str:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    exp.add_trial("t-1", _trial())
    return exp.location


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def _run(argv: list[str], *, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return subprocess.run(
        [sys.executable, "-c", _CLI, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def _python(code: str, *args: str, prelude: str = "") -> Any:
    """Run Python ``code`` (after ``prelude``) in a new process with ``args``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(prelude) + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error_line(stderr: str, command: str) -> str:
    """The error line of a command's stderr, checking it holds no traceback and speaks
    the command line's terms (no Python advice)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(f"zstore {command}: ")]
    assert len(lines) == 1, stderr
    _assert_cli_terms(lines[0])
    return lines[0]


def _assert_cli_terms(line: str) -> None:
    """No Python advice (``zs.``, ``exp.f(``, ``(...)``, ``x=True``) and no API function
    heading the message, in a line the command line printed."""
    assert PYTHON_ADVICE.search(line) is None, line
    assert re.search(r"error: (compute_dff|export_nwb|ingest_suite2p|export): ", line) is None


# -- S3: unreachable, no credentials, no bucket ---------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_s3_unreachable_endpoint_is_one_line_in_seconds(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    options = [f"endpoint_url={endpoint}", "key=k", "secret=s"]
    options = [a for o in options for a in ("--storage-option", o)]
    for command in (["info", url], ["export", url, "--to", "x.h5ad"], ["dff", url]):
        assert main([*command, *options]) == 1
        err = _one_error_line(capsys.readouterr().err, command[0])
        assert f"cannot reach the S3 endpoint {endpoint} for bucket" in err
        assert "connection was refused" in err
        assert "--storage-option endpoint_url=" in err and "region" in err
        assert "storage_options" not in err
    # the API: the same at once (Icechunk alone would retry for about 40 s)
    with pytest.raises(StoreError, match="cannot reach the S3 endpoint"):
        zs.open_experiment(url, storage_options={"endpoint_url": endpoint})
    with pytest.raises(StoreError, match="its host name is not known"):
        zs.create_experiment(
            url, exp_id="E", storage_options={"endpoint_url": "http://nohost.invalid:9"}
        )


def test_s3_missing_credentials_name_the_bucket_and_the_ways_to_pass_them(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    no_credentials = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_PROFILE": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({k: v for k, v in no_credentials.items() if v})
    endpoint = ["--storage-option", f"endpoint_url={s3.endpoint}"]
    done = subprocess.run(
        [sys.executable, "-c", _CLI, "info", f"s3://{bucket}/exp.zarr", *endpoint],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 1
    err = _one_error_line(done.stderr, "info")
    assert f"no S3 credentials for bucket {bucket!r} at {s3.endpoint}" in err
    assert (
        "AWS_ACCESS_KEY_ID" in err and "--storage-option key=... --storage-option secret=..." in err
    )
    assert "--storage-option anon=true" in err


def test_s3_wrong_bucket_names_it(s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    options = [a for k, v in s3.options().items() for a in ("--storage-option", f"{k}={v}")]
    assert main(["info", "s3://no-such-bucket/exp.zarr", *options]) == 1
    err = _one_error_line(capsys.readouterr().err, "info")
    assert f"there is no bucket 'no-such-bucket' at {s3.endpoint}" in err
    with pytest.raises(StoreError, match="there is no bucket 'no-such-bucket'"):
        zs.create_experiment("s3://no-such-bucket/e.zarr", exp_id="E", storage_options=s3.options())


# -- storage options: text stays text, typed options are checked ----------------------------


def test_storage_option_all_digit_secret_stays_text(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{s3.new_bucket()}/exp.zarr"
    zs.create_experiment(url, exp_id="E", storage_options=s3.options()).add_trial("t", _trial())
    digits = ["key=12345", "secret=0012345", f"endpoint_url={s3.endpoint}"]
    assert main(["info", url, *[a for d in digits for a in ("--storage-option", d)]]) == 0
    assert "experiment 'E'" in capsys.readouterr().out
    place = resolve(url, storage_options={"key": "12345", "secret": "0012345", "anon": "false"})
    assert place.s3 is not None
    assert place.s3["options"]["access_key_id"] == "12345"
    assert place.s3["options"]["secret_access_key"] == "0012345"


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("connect_timeout=abc", ["'connect_timeout'", "a number of seconds > 0", "'abc'"]),
        ("connect_timeout=-1", ["'connect_timeout'", "> 0", "'-1'"]),
        ("network_stream_timeout_seconds=1.5", ["a whole number of seconds from 1", "'1.5'"]),
        ("anon=maybe", ["'anon'", "true or false", "'maybe'", "--storage-option anon=true"]),
        ("max_concurrency=abc", ["['max_concurrency'] are not understood", "connect_timeout"]),
        ("key=12345", ["['key'] without ['secret']", "--storage-option secret=..."]),
        ("token=t", ["['token'] without ['key', 'secret']", "go together"]),
    ],
    ids=[
        "float-text",
        "float-negative",
        "int-fraction",
        "bool-text",
        "unknown",
        "key-alone",
        "token-alone",
    ],
)
def test_storage_option_of_a_wrong_type_is_a_usage_error(
    option: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "s3://bucket/exp.zarr", "--storage-option", option]) == 2
    err = _one_error_line(capsys.readouterr().err, "info")
    for word in words:
        assert word in err, err


def test_storage_options_of_the_api_are_typed() -> None:
    with pytest.raises(StorageOptionsError, match=r"'key' .* text .* got 12345 \(int\)"):
        parse_storage_options({"key": 12345}, "s3://b/p")
    with pytest.raises(StorageOptionsError, match=r"\['key', 'access_key_id'\] .* one option"):
        parse_storage_options({"key": "a", "access_key_id": "b"}, "s3://b/p")
    assert parse_storage_options(
        {"anon": "TRUE", "connect_timeout": "2.5", "network_stream_timeout_seconds": "30"}, "u"
    ) == {"anonymous": True, "connect_timeout": 2.5, "network_stream_timeout_seconds": 30}


# -- flag values: argparse refuses them (exit 2), the API the rest ---------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["dff", "{s}", "--baseline", "maximin", "--window", "inf"], ["--window", "finite"]),
        (["dff", "{s}", "--window", "0"], ["--window", "> 0"]),
        (["dff", "{s}", "--sigma", "-1"], ["--sigma", ">= 0"]),
        (["dff", "{s}", "--sigma", "nan"], ["--sigma", "finite"]),
        (["dff", "{s}", "--pct", "0"], ["--pct", "(0, 100]"]),
        (["dff", "{s}", "--fs", "abc"], ["--fs", "a number"]),
        (["gc", "{s}", "--keep", "-1"], ["--keep", ">= 0"]),
        (["info", "{s}", "--rows", "-2"], ["--rows", "whole number"]),
        (["history", "{s}", "-n", "0"], ["-n", ">= 1"]),
        (["ingest", "p", "{s}", "--neuropil-coeff", "inf"], ["--neuropil-coeff", "finite"]),
    ],
    ids=[
        "window-inf",
        "window-zero",
        "sigma-negative",
        "sigma-nan",
        "pct-zero",
        "fs-text",
        "keep-negative",
        "rows-negative",
        "history-n-zero",
        "coeff-inf",
    ],
)
def test_a_wrong_flag_value_is_a_usage_error(
    argv: list[str], words: list[str], store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error([a.replace("{s}", store) for a in argv], capsys)
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_sigma_wider_than_the_trace_is_a_usage_error_in_flags(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dff", store, "--baseline", "maximin", "--sigma", "1e9"]) == 2
    err = _one_error_line(capsys.readouterr().err, "dff")
    assert "wider than the trace (240 frames)" in err
    assert "pass --sigma FRAMES, e.g. --sigma 10" in err and "sig_baseline" not in err
    assert "dFF" not in zs.open_experiment(store).load_trial("t-1").data.layers  # no write


def test_usage_errors_found_by_the_command_exit_2(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", store, "--where", "plane == 0"]) == 2
    assert "leave out --where" in _one_error_line(capsys.readouterr().err, "info")
    assert main(["info", store, "--storage-option", "novalue"]) == 2
    assert "--storage-option expects KEY=VALUE" in capsys.readouterr().err
    assert main(["export", f"{store}::trials/x", "--to", "x.h5ad"]) == 2
    assert "COLLECTION::experiments/ID" in capsys.readouterr().err


def test_dff_fs_flag_for_a_trial_without_fs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = zs.create_experiment(tmp_path / "nofs.zarr", exp_id="E")
    exp.add_trial("t-1", _trial(fs=None))
    argv = ["dff", exp.location, "--baseline", "maximin", "--window", "2"]
    assert main(argv) == 2
    err = _one_error_line(capsys.readouterr().err, "dff")
    assert "trial 't-1'" in err and "pass --fs HZ" in err and "fs=<Hz>" not in err
    assert main([*argv, "--fs", "30"]) == 0
    dff = zs.open_experiment(exp.location).load_trial("t-1").data.uns["processing"]["dFF"]
    assert dff["fs"] == 30 and dff["baseline"] == "maximin"


# -- the API's hints in flags ------------------------------------------------------------------


def _flags(command: str) -> frozenset[str]:
    from zstore.cli import _parser

    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return frozenset(action.choices[command].flags)  # type: ignore[attr-defined]
    raise AssertionError("no subcommands")


WORDING = [
    (
        "dff",
        "compute_dff: trial 't-1' has uns['fs']=None; pass fs=<Hz> (or set trial.data.uns['fs'])",
        "trial 't-1' has uns['fs']=None; pass --fs HZ",
    ),
    (
        "dff",
        "normalize_pct must be in (0, 100], got 150; pass normalize_pct=<percent in (0, 100]>, "
        "e.g. normalize_pct=20",
        "--pct must be in (0, 100], got 150; pass --pct <percent in (0, 100]>, e.g. --pct 20",
    ),
    (
        "dff",
        "win_baseline must be a finite number, got inf; pass win_baseline=<seconds>, e.g. "
        "win_baseline=60",
        "--window must be a finite number, got inf; pass --window SECONDS, e.g. --window 60",
    ),
    (
        "dff",
        "trials ['t-1'] already have a layer 'dFF'; pass overwrite=True (--overwrite) to "
        "recompute it",
        "trials ['t-1'] already have a layer 'dFF'; pass --overwrite to recompute it",
    ),
    (
        "dff",
        "have no layer 'X2' (nothing was written); pass source=None for X, or trials=[...] "
        "with trials that have it",
        "have no layer 'X2' (nothing was written); leave out --source for X, or pass --trial "
        "ID (repeat for each) with trials that have it",
    ),
    (
        "dff",
        "compute_dff: pass trials= or where=, not both",
        "pass --trial or --where, not both",
    ),
    (
        "dff",
        "where='nope == 1' cannot select trials",
        "--where 'nope == 1' cannot select trials",
    ),
    (
        "dff",
        "no layer 'dff'; compute it (zs.compute_dff(exp, layer='dff') or `zstore dff S --layer "
        "dff`), or use X (layer=None)",
        "no layer 'dff'; compute it (`zstore dff S --layer dff`), or use X (leave out --source)",
    ),
    (
        "plot",
        "no layer 'dff'; compute it (zs.compute_dff(exp, layer='dff') or `zstore dff S --layer "
        "dff`), or use X (layer=None)",
        "no layer 'dff'; compute it (`zstore dff S --layer dff`), or use X (--layer X)",
    ),
    (
        "plot",
        "ROI '0.5' is not stored; pass rois= (stored ROI IDs) or iloc= (row positions)",
        "ROI '0.5' is not stored; pass --roi (stored ROI IDs) or iloc= (row positions)",
    ),
    (
        "ingest",
        "metadata ['plane'] are set by ingest_suite2p itself: pass subject= and session=",
        "metadata ['plane'] are set by zstore ingest itself: pass --subject and --session",
    ),
    (
        "ingest",
        "no cells; pass cells_only=False to ingest every ROI",
        "no cells; pass --all-rois to ingest every ROI",
    ),
    (
        "ingest",
        "no channel 'fc'; pass paq_channel= (or --paq-channel) with the right name",
        "no channel 'fc'; pass --paq-channel with the right name",
    ),
    (
        "ingest",
        "files cannot name trials; pass trials={trial_id: [file names]}",
        "files cannot name trials; pass --trial TRIAL=FILE,FILE (or TRIAL=START:STOP) for each "
        "trial",
    ),
    (
        "ingest",
        "x holds experiment 'E': choose a new path, open it with zs.open_experiment(...), or "
        "pass overwrite=True (--overwrite) to replace it",
        "x holds experiment 'E': choose a new path, or pass --overwrite to replace it",
    ),
    (
        "info",
        "no zstore experiment at x: check the path, or create one with "
        "zs.create_experiment(...) or `zstore ingest`",
        "no zstore experiment at x: check the path, or create one with `zstore ingest`",
    ),
    (
        "history",
        "list them with `zstore history x` or exp.history()",
        "list them with `zstore history x`",
    ),
    (
        "info",
        "no S3 credentials: pass storage_options={'key': ..., 'secret': ...}, or "
        "storage_options={'anon': True}",
        "no S3 credentials: pass --storage-option key=... --storage-option secret=..., or "
        "--storage-option anon=true",
    ),
    (
        "export",
        "trials of two ROI sets; pass trials=[...] with the trials of one ROI set, or trial=ID",
        "trials of two ROI sets; pass --trial ID for each trial of one ROI set (one --trial: "
        "that trial alone)",
    ),
    (
        "export",
        "path must end in .h5ad; pass path='trials.h5ad'",
        "path must end in .h5ad; pass --to trials.h5ad",
    ),
    (
        "export",
        "the store is damaged: open an earlier version with zs.open_experiment(..., version=ID)",
        "the store is damaged: export an earlier version with `zstore export STORE --version ID "
        "--to FILE` (`zstore history STORE` lists them)",
    ),
    (
        "dff",
        "x: 'dff' ran out of memory. use fewer threads (dask.config.set(num_workers=2)), "
        "smaller shards for new data (StorageConfig(shard_bytes=...)), or fewer trials at once",
        "x: 'dff' ran out of memory. use fewer threads (DASK_NUM_WORKERS=2 in the environment), "
        "or fewer trials at once",
    ),
    (
        "info",
        "pass fs=<Hz>",  # info has no --fs: the API's words stay
        "pass fs=<Hz>",
    ),
]


@pytest.mark.parametrize(
    ("command", "api", "cli"),
    WORDING,
    ids=[
        f"{i:02d}-{c}-{re.sub(r'[^a-z]+', '-', a[:30].lower())}"
        for i, (c, a, _) in enumerate(WORDING)
    ],
)
def test_api_hints_are_said_with_flags(command: str, api: str, cli: str) -> None:
    assert cli_wording(api, command, _flags(command)) == cli


def test_every_hint_keyword_has_a_flag_or_is_api_only() -> None:
    # every `pass name=...` hint that zstore's messages give, now and when one is added
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "zstore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in re.findall(r"\bpass (\w+)=", node.value):
                    found.setdefault(name, set()).add(path.name)
    unmapped = {n: sorted(f) for n, f in found.items() if n not in API_FLAGS}
    assert set(unmapped) <= API_ONLY_KEYWORDS, unmapped
    assert {"fs", "overwrite", "trials", "layer", "normalize_pct"} <= set(found)


def test_cli_messages_give_flags_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plane, _ = syn.write_suite2p_run(tmp_path / "run", n_rois=8, frames_per_file=[40])
    target = str(tmp_path / "e.zarr")
    assert main(["ingest", str(plane), target]) == 0
    capsys.readouterr()
    assert main(["ingest", str(plane), target]) == 1
    err = _one_error_line(capsys.readouterr().err, "ingest")
    assert "--overwrite" in err and "overwrite=True" not in err and "zs." not in err
    assert main(["dff", target]) == 0
    assert main(["dff", target]) == 1
    err = _one_error_line(capsys.readouterr().err, "dff")
    assert "pass --overwrite to recompute it" in err


# -- what is caught: zstore's errors, the system's, and bugs as bugs -----------------------------


def _report(err: BaseException, args: argparse.Namespace) -> int:
    return report(err, args.command, debug=args.debug, flags=args.flags)


def _args(command: str, *, debug: bool = False) -> argparse.Namespace:
    return argparse.Namespace(command=command, debug=debug, flags=_flags(command))


def _raised(call: Any) -> BaseException:
    try:
        call()
    except BaseException as err:  # the error is what the test looks at
        return err
    raise AssertionError("no error")


def test_a_bug_is_an_internal_error_not_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    from zstore.store import _classify

    bug = _raised(lambda: _classify(None, None))  # type: ignore[arg-type]
    assert isinstance(bug, TypeError)
    assert _report(bug, _args("info")) == 1
    err = capsys.readouterr().err
    assert err.startswith("zstore info: internal error: TypeError: ")
    assert "(zstore/store.py:" in err and "this is a bug in zstore" in err
    assert "`zstore --debug info ...`" in err and "Traceback" not in err
    library = _raised(lambda: json.loads("{"))  # a library's error zstore did not explain
    assert _report(library, _args("info")) == 1
    assert "internal error: JSONDecodeError" in capsys.readouterr().err


def test_errors_zstore_raises_on_purpose_are_user_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a plain ValueError raised by a `raise` of zstore's (not yet one of zstore.errors)
    on_purpose = _raised(lambda: syn.write_suite2p_plane(tmp_path, generation="v9"))
    assert type(on_purpose) is ValueError
    assert _report(on_purpose, _args("ingest")) == 1
    err = capsys.readouterr().err
    assert err == "zstore ingest: error: generation must be 'classic' or 'v1', got 'v9'\n"
    key = _raised(lambda: zs.open_experiment(icechunk_memory()).load_trial("nope"))
    assert _report(key, _args("plot")) == 1
    assert "error: trial 'nope' is not in experiment" in capsys.readouterr().err


def icechunk_memory() -> Any:
    import icechunk

    storage = icechunk.in_memory_storage()
    zs.create_experiment(storage, exp_id="M")
    return storage


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.zarr")
    assert main(["info", missing]) == 1
    assert "Traceback" not in capsys.readouterr().err
    for argv in (["--debug", "info", missing], ["info", missing, "--debug"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err
        assert err.rstrip().splitlines()[-1].startswith("zstore info: error: no zstore experiment")
    from zstore.store import _classify

    assert _report(_raised(lambda: _classify(None, None)), _args("info", debug=True)) == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "Traceback" in err and "with the traceback that is above" in err


def test_os_errors_name_the_whole_path_and_what_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    err = _raised(lambda: open("zarr.json"))  # noqa: SIM115 - the error is the point
    assert _report(err, _args("export")) == 1
    text = capsys.readouterr().err
    assert f"No such file or directory (ENOENT): {tmp_path / 'zarr.json'}; check the path" in text


# -- pipes closed early: quiet, 141 ------------------------------------------------------------


@pytest.fixture
def paq_run(tmp_path: Path) -> tuple[Path, list[str]]:
    plane, paqs = syn.write_suite2p_run(tmp_path / "run", n_rois=8, frames_per_file=[40, 30])
    return plane, [a for t, p in paqs.items() for a in ("--paq", f"{t}={p}")]


def _closed_pipe(argv: list[str], which: str, cwd: Path) -> tuple[int, str]:
    """Run with stdout or stderr (``which``) a pipe whose reader has left; return the
    exit status and what the other stream received."""
    read, write = os.pipe()
    os.close(read)
    other = cwd / "other.txt"
    with open(other, "w") as kept:
        streams = (
            {"stdout": write, "stderr": kept}
            if which == "stdout"
            else {"stdout": kept, "stderr": write}
        )
        done = subprocess.run(
            [sys.executable, "-c", _CLI, *argv],
            timeout=300,
            cwd=cwd,
            **streams,  # type: ignore[arg-type]
        )
    os.close(write)
    return done.returncode, other.read_text()


@pytest.mark.parametrize("which", ["stdout", "stderr"])
def test_ingest_into_a_closed_pipe_exits_quietly(
    paq_run: tuple[Path, list[str]], tmp_path: Path, which: str
) -> None:
    # `zstore ingest ... | head`, and `2>&1 | head` while its warnings are printed
    plane, paqs = paq_run
    code, other = _closed_pipe(
        ["ingest", str(plane), str(tmp_path / "e.zarr"), *paqs], which, tmp_path
    )
    assert code == 141
    assert "Broken pipe" not in other and "Traceback" not in other
    if which == "stdout":
        assert "frame clock edges" in other  # the warnings still reach stderr
    else:
        assert "ingested 2 trials" in other
    assert zs.open_experiment(tmp_path / "e.zarr").trialIDs == ["t-000", "t-001"]


def test_every_command_into_a_closed_stdout_exits_quietly(store: str, tmp_path: Path) -> None:
    # each command in turn with stdout a pipe whose reader has left (one process: fast)
    commands = [
        ["history", store],
        ["verify", store],
        ["gc", store, "--keep", "0", "--dry-run"],
        ["dff", store, "--layer", "d2"],
        ["export", store, "--to", str(tmp_path / "out.h5ad")],
        ["info", store, "--json"],
        ["--help"],
        ["info", "--help"],
    ]
    code = """
        import json, os, sys
        from zstore.cli import main
        codes = []
        for argv in json.loads(sys.argv[1]):
            read, write = os.pipe()
            os.close(read)
            os.dup2(write, 1)
            os.close(write)
            try:
                codes.append(main(argv))
            except SystemExit as exit:  # --help: argparse's exit, its output lost quietly
                codes.append(exit.code)
        with open(sys.argv[2], "w") as out:
            json.dump(codes, out)
    """
    done = _python(code, json.dumps(commands), str(tmp_path / "codes.json"))
    assert done.stderr == ""
    codes = json.loads((tmp_path / "codes.json").read_text())
    # every command 141; --help leaves by argparse's exit (0), its output lost quietly
    assert codes == [141] * 6 + [0, 0]


# -- resources: a full disk, a file-size limit, no permission, no memory -------------------------

_IMPORTS = "import zstore.cli, zstore.ingest, zstore.opening, zstore.collection, zstore.export"


def test_file_size_limit_names_store_write_and_fix(
    paq_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    plane, _ = paq_run
    code = f"""
        import errno, resource, signal, sys
        import numpy as np, zstore as zs
        {_IMPORTS}
        from zstore.cli import main
        exp = zs.create_experiment(sys.argv[3], exp_id="E")
        X = np.random.default_rng(0).random((200, 500), "float32")  # incompressible
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
        print("exit", main(["ingest", sys.argv[1], sys.argv[2]]), file=sys.stderr)
        try:  # the library: a StoreError (an OSError) keeping the errno
            exp.add_trial("t-9", zs.AnnotatedData(X))
        except zs.errors.StoreError as err:
            print(err.errno == errno.EFBIG, err)
    """
    done = _python(code, str(plane), str(tmp_path / "e.zarr"), str(tmp_path / "lib.zarr"))
    assert "exit 1" in done.stderr, done.stderr
    err = _one_error_line(done.stderr, "ingest")
    assert f"{tmp_path / 'e.zarr'}: ingest " in err and "trials ['t-000', 't-001']" in err
    assert "File too large (EFBIG" in err and "`ulimit -f`" in err
    assert "nothing of it was saved" in err
    assert done.stdout.startswith(f"True {tmp_path / 'lib.zarr'}: add trial 't-9' failed"), done
    assert "File too large (EFBIG: trials/t-9/" in done.stdout
    assert zs.open_experiment(tmp_path / "lib.zarr").trialIDs == []


def test_write_failure_keeps_the_errno_and_names_the_fix() -> None:
    for code, words in (
        (errno.ENOSPC, "the disk is full"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permissions"),
    ):
        err = write_failure(
            OSError(code, os.strerror(code), "x/zarr.json"), where="/d/e.zarr", what="save"
        )
        assert err is not None and err.errno == code and isinstance(err, OSError)
        assert str(err).startswith(f"/d/e.zarr: save failed: {os.strerror(code)}")
        assert words in str(err) and "x/zarr.json" in str(err)
    assert write_failure(ValueError("no"), where="w", what="x") is None
    icechunk_text = StoreError('set with key="trials/t/X/c/0/0" `-> No space left (os error 28)')
    found = write_failure(icechunk_text, where="w", what="x")
    assert found is not None and found.errno == errno.ENOSPC and "trials/t/X/c/0/0" in str(found)


@pytest.fixture
def read_only(tmp_path: Path) -> Any:
    """A folder, and a store in it, that this process's children cannot write."""
    if sys.platform != "linux":
        pytest.skip("drops a Linux capability to make root obey permissions")
    exp = zs.create_experiment(tmp_path / "ro" / "e.zarr", exp_id="E")
    exp.add_trial("t-1", _trial())
    for folder, _, files in os.walk(tmp_path / "ro"):
        for name in files:
            os.chmod(Path(folder) / name, 0o444)
        os.chmod(folder, 0o555)
    yield tmp_path / "ro"
    for folder, _, _ in os.walk(tmp_path / "ro"):
        os.chmod(folder, 0o755)


def test_permission_denied_names_store_path_and_fix(read_only: Path) -> None:
    code = f"""
        import os, sys
        {_IMPORTS}
        from zstore.cli import main
        for argv in (["dff", sys.argv[1]], ["ingest", sys.argv[3], sys.argv[2]],
                     ["export", sys.argv[1], "--to", sys.argv[2] + ".h5ad"]):
            print("exit", main(argv), file=sys.stderr)
    """
    plane = syn.write_suite2p_plane(read_only.parent / "plane", n_rois=6, frames_per_file=[30])
    store, new = read_only / "e.zarr", read_only / "new"
    from test_resources import _DROP_CAP_DAC  # root that obeys file permissions

    done = _python(code, str(store), str(new), str(plane), prelude=_DROP_CAP_DAC)
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("zstore")]
    assert done.stderr.count("exit 1") == 3 and len(lines) == 3, done.stderr
    dff, ingest, export = lines
    assert dff.startswith(f"zstore dff: error: {store}: save trial 't-1'")
    assert "Permission denied (EACCES: " in dff and "check the owner and permissions" in dff
    assert ingest.startswith(f"zstore ingest: error: {new}: creating the repository failed")
    assert f"Permission denied (EACCES: {read_only}" in ingest
    assert export.startswith(f"zstore export: error: export to {new}.h5ad: writing it failed")
    assert "Permission denied" in export and "EACCES" in export  # h5py's words, and ours
    assert not new.exists()


def test_out_of_memory_in_a_write_names_it_and_the_fix(tmp_path: Path) -> None:
    code = f"""
        import resource, sys
        import dask.array as da, numpy as np, zstore as zs
        {_IMPORTS}
        exp = zs.create_experiment(sys.argv[1], exp_id="E")
        def vm():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
        def hungry(block):  # a lazy array whose computation asks for 8 GiB
            return block + np.empty(2**33, np.uint8)[:1]
        X = da.ones((40, 100), chunks=(40, 100), dtype="float32")
        X = X.map_blocks(hungry, meta=np.empty((0, 0), "float32"))
        limit = vm() + 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            exp.add_trial("t-big", zs.AnnotatedData(X))
        except zs.errors.OutOfMemoryError as err:
            print(isinstance(err, MemoryError), err)
    """
    done = _python(code, str(tmp_path / "e.zarr"))
    assert done.stdout.startswith(f"True {tmp_path / 'e.zarr'}: add trial 't-big' ran out "), done
    assert "nothing of it was saved" in done.stdout and "num_workers" in done.stdout
    assert zs.open_experiment(tmp_path / "e.zarr").trialIDs == []
    assert issubclass(OutOfMemoryError, MemoryError)


def test_exit_codes_are_documented() -> None:
    text = (ROOT / "docs" / "CLI.md").read_text()
    for words in ("1 a failure", "2 a usage", "141", "--debug"):
        assert words in text, words


def test_a_disk_failure_after_the_commit_says_the_write_was_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zstore.transaction import Repo

    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    flushed = Repo._flush
    calls = []

    def flush_fails_after_the_commit(self: Repo) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first flush is before the commit, the second after it
            raise OSError(errno.ENOSPC, "No space left on device")
        flushed(self)

    monkeypatch.setattr(Repo, "_flush", flush_fails_after_the_commit)
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(StoreError, match=r"had been committed \(version \w+\)") as err:
        exp.add_trial("t-1", zs.AnnotatedData(X), progress=False)
    assert "nothing of it was saved" not in str(err.value)
    monkeypatch.setattr(Repo, "_flush", flushed)
    stored = zs.open_experiment(tmp_path / "e.zarr").load_trial("t-1").data.X
    np.testing.assert_array_equal(np.asarray(stored), X)  # the message told the truth


# -- issue 17, command line: repeated flags, flag values, output encodings, .h5ad limits ---------


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit status and stderr of ``zstore argv`` (argparse's own errors included)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


REPEATED = {
    "trial-twice": (["--trial", "a=0:10", "--trial", "a=10:20"], "--trial gives trial 'a' twice"),
    "paq-twice": (["--paq", "a=x.paq", "--paq", "a=y.paq"], "--paq gives trial 'a' twice"),
    "metadata-twice": (["--metadata", "k=1", "--metadata", "k=2"], "--metadata gives key 'k'"),
    "storage-option-twice": (
        ["--storage-option", "k=1", "--storage-option", "k=2"],
        "--storage-option gives option 'k' twice",
    ),
    "trial-nfc-and-nfd": (
        ["--trial", "caf\u00e9=0:10", "--trial", "cafe\u0301=10:20"],
        "--trial gives trial 'cafe\u0301' twice",
    ),
    "subject-in-metadata-twice": (
        ["--metadata", "subject=a", "--metadata", "subject=b"],
        "(--metadata 'subject=a' and --metadata 'subject=b')",
    ),
}


@pytest.mark.parametrize("case", list(REPEATED))
def test_a_key_given_twice_is_a_usage_error(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, words = REPEATED[case]
    target = tmp_path / "e.zarr"
    code, err = _exit(["ingest", str(tmp_path / "plane0"), str(target), *flags], capsys)
    assert code == 2
    line = _one_error_line(err, "ingest")
    assert words in line and "one --" in line, line
    assert not target.exists()


def test_storage_option_value_may_start_with_equals(capsys: pytest.CaptureFixture[str]) -> None:
    from zstore.cli import _storage_options

    # the first '=' splits: a secret that begins with '=' stays whole
    assert _storage_options(["secret==abc", "key=a=b"]) == {"secret": "=abc", "key": "a=b"}
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    assert "the first '=' splits" in " ".join(capsys.readouterr().out.split())


BAD_VALUES = {
    "dff-layer-empty": (["dff", "{s}", "--layer", ""], ["--layer ''", "it is empty"]),
    "dff-layer-slash": (["dff", "{s}", "--layer", "a/b"], ["--layer 'a/b'", "path separator"]),
    "exp-id-slash": (["ingest", "p", "{t}", "--exp-id", "a/b"], ["--exp-id 'a/b'", "'a_b'"]),
    "exp-id-empty": (["ingest", "p", "{t}", "--exp-id", ""], ["--exp-id ''", "leave out"]),
    "trial-id-zarr-json": (["ingest", "p", "{t}", "--trial", "zarr.json=0:5"], ["--trial"]),
    "metadata-plane": (
        ["ingest", "p", "{t}", "--metadata", "plane=3"],
        ["--metadata 'plane=3'", "set by zstore ingest itself", "plane<k>"],
    ),
    "metadata-subject": (
        ["ingest", "p", "{t}", "--metadata", "subject=RL1"],
        ["--metadata 'subject=RL1'", "pass --subject RL1"],
    ),
    "metadata-inf": (
        ["ingest", "p", "{t}", "--metadata", "x=1e999"],
        ["--metadata 'x=1e999'", "not a finite number"],
    ),
    "metadata-nan": (["ingest", "p", "{t}", "--metadata", "x=NaN"], ["not a finite number"]),
    "trial-negative-start": (
        ["ingest", "p", "{t}", "--trial", "a=-1:5"],
        ["--trial 'a=-1:5'", "0 <= START < STOP"],
    ),
    "trial-empty-range": (["ingest", "p", "{t}", "--trial", "a=5:3"], ["0 <= START < STOP"]),
    "trial-range-not-numbers": (
        ["ingest", "p", "{t}", "--trial", "a=1:x5"],
        ["a frame range is START:STOP"],
    ),
    "plot-dpi-huge": (
        ["plot", "{s}", "--trial", "t-1", "--kind", "raster", "--out", "x.png", "--dpi", "100000"],
        ["--dpi", "10 to 2400"],
    ),
    "plot-out-unknown-extension": (
        ["plot", "{s}", "--trial", "t-1", "--kind", "raster", "--out", "x.unknownext"],
        ["--out 'x.unknownext'", ".unknownext", ".png", ".pdf", ".svg"],
    ),
    # red team 3: every flag naming a trial, layer, source, session is checked alike
    "session-slash": (
        ["ingest", "p", "{t}", "--session", "a/b"],
        ["--session 'a/b'", "path separator", "--exp-id"],
    ),
    "dff-source-empty": (["dff", "{s}", "--source", ""], ["--source ''", "it is empty"]),
    "dff-trial-empty": (["dff", "{s}", "--trial", ""], ["--trial ''", "it is empty"]),
    "plot-trial-empty": (
        ["plot", "{s}", "--trial", "", "--kind", "raster", "--out", "x.png"],
        ["--trial ''", "`zstore info STORE` lists it"],
    ),
    "plot-out-empty": (
        ["plot", "{s}", "--trial", "t-1", "--kind", "raster", "--out", ""],
        ["--out '' names no file"],
    ),
    "export-trial-empty": (
        ["export", "{s}", "--to", "x.h5ad", "--trial", ""],
        ["--trial ''", "it is empty"],
    ),
    "export-to-empty": (["export", "{s}", "--to", ""], ["--to '' names no file", ".nwb"]),
    "export-to-csv": (["export", "{s}", "--to", "x.csv"], ["--to 'x.csv'", ".h5ad", ".nwb"]),
    "trial-typed-as-printed-escape": (
        ["export", "{s}", "--to", "x.h5ad", "--trial", "caf\\xe9"],
        ["type the character itself", "PYTHONIOENCODING=utf-8"],
    ),
    "metadata-expid": (
        ["ingest", "p", "{t}", "--metadata", "expID=zz"],
        ["--metadata 'expID=zz'", "set by zstore ingest itself", "--exp-id zz"],
    ),
    "metadata-table-column": (
        ["ingest", "p", "{t}", "--metadata", "fs=10"],
        ["--metadata 'fs=10'", "column zstore fills", "fs_label"],
    ),
    "metadata-key-space": (
        ["ingest", "p", "{t}", "--metadata", "a =2"],
        ["--metadata 'a '", "white space"],
    ),
    "metadata-nan-lowercase": (
        ["ingest", "p", "{t}", "--metadata", "x=nan"],
        ["--metadata 'x=nan'", "not a finite number"],
    ),
    "metadata-inf-word": (["ingest", "p", "{t}", "--metadata", "x=-Infinity"], ["not a finite"]),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_flag_value_that_cannot_be_used_exits_2(
    case: str, store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, words = BAD_VALUES[case]
    target = tmp_path / "new.zarr"
    argv = [a.replace("{s}", store).replace("{t}", str(target)) for a in argv]
    code, err = _exit(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    for word in words:
        assert word in err, err
    _assert_cli_terms(err)
    assert not target.exists()
    assert zs.open_experiment(store).load_trial("t-1").data.layers.keys() == set()


def test_non_ascii_names_print_to_an_ascii_stdout(tmp_path: Path) -> None:
    plane, _ = syn.write_suite2p_run(tmp_path / "run", n_rois=6, frames_per_file=[20])
    target = str(tmp_path / "e.zarr")
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    done = _run(["ingest", str(plane), target, "--trial", "caf\u00e9=0:20"], env=ascii_out)
    assert done.returncode == 0, done.stderr
    assert "caf\\xe9" in done.stdout and done.stderr == ""
    info = _run(["info", target], env=ascii_out)
    assert info.returncode == 0 and "caf\\xe9" in info.stdout, info.stderr
    assert zs.open_experiment(target).trialIDs == ["caf\u00e9"]


def test_a_closed_stdout_exits_quietly(store: str) -> None:
    # `zstore info STORE >&-`: the output goes nowhere, as into a pipe whose reader left
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -c "$1" info "$2" >&-', sys.executable, _CLI, store],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    assert done.returncode == 141
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("name", "limit"),
    [("x.h5ad", 1000), ("x.h5ad", 20000), ("x.nwb", 20000)],
    ids=["h5ad-checked-before-writing", "h5ad-mid-write", "nwb-mid-write"],
)
def test_hdf5_export_past_the_file_size_limit_is_one_line(
    store: str, tmp_path: Path, name: str, limit: int
) -> None:
    # h5py alone printed ~760 lines ("Exception ignored", HDF5's errors) and crashed
    out = tmp_path / "out"
    out.mkdir()
    code = """
        import resource, sys
        from zstore.cli import main
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
        sys.exit(main(["export", sys.argv[1], "--to", sys.argv[2], *sys.argv[4:]]))
    """
    # no SIGXFSZ handling here: the command line ignores the signal itself
    nwb = ["--session-start-time", "2026-05-01T10:30:00+01:00"] if name.endswith(".nwb") else []
    done = _python(code, store, str(out / name), str(limit), *nwb)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1, done.stderr[-2000:]
    line = _one_error_line(done.stderr, "export")
    assert f"export to {out / name}: writing it failed: File too large" in line
    assert "(EFBIG: " in line and "`ulimit -f`" in line and "nothing of it was saved" in line
    assert list(out.iterdir()) == []  # no partial file left behind
    if limit == 1000:
        assert "the export needs about" in line


def test_h5ad_export_reads_back(store: str, tmp_path: Path) -> None:
    import anndata as ad

    assert main(["export", store, "--to", str(tmp_path / "x.h5ad")]) == 0
    plain = ad.read_h5ad(tmp_path / "x.h5ad")
    assert plain.shape == (6, 240) and plain.uns["expID"] == "E"


def test_dff_after_a_partial_run_says_how_to_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    for tid in ("t-1", "t-2", "t-3"):
        exp.add_trial(tid, _trial())
    assert main(["dff", exp.location, "--trial", "t-1"]) == 0  # as if killed after t-1
    capsys.readouterr()
    assert main(["dff", exp.location]) == 1
    line = _one_error_line(capsys.readouterr().err, "dff")
    assert "layer 'dFF' exists in 1 of the 3 trials" in line
    assert "missing from 't-2', 't-3'" in line and "--trial t-2 --trial t-3" in line
    assert "--overwrite to recompute every trial" in line
    assert main(["dff", exp.location, "--trial", "t-2", "--trial", "t-3"]) == 0
    with pytest.raises(LayerExistsError):
        zs.compute_dff(zs.open_experiment(exp.location, mode="r+"), progress=False)


def test_export_finds_a_layer_given_in_another_unicode_form(tmp_path: Path) -> None:
    import anndata as ad

    nfc, nfd = "caf\u00e9", "cafe\u0301"
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    for tid in ("a", "b"):
        exp.add_trial(tid, _trial())
        trial = exp.load_trial(tid)
        trial.data.add_layer(nfc, trial.data.X)
        trial.save()
    out = zs.export(exp, tmp_path / "x.h5ad", trials=["a", "b"], layers=[nfd], progress=False)
    assert list(ad.read_h5ad(out).layers) == [nfc]


PYTHON_IN_MESSAGES = [
    (
        "info",
        "/x is not a zstore experiment: it holds ['RL1']; check the path; zstore experiments "
        "are made by zs.create_experiment or `zstore ingest`",
        "zstore experiments are made by `zstore ingest`",
    ),
    (
        "info",
        "storage_options apply to s3:// URLs, not to the local path '/x/e.zarr'",
        "--storage-option applies to s3:// URLs, not to the local path '/x/e.zarr': leave out",
    ),
    (
        "export",
        "/x/e.zarr is one experiment, not a collection; open it with "
        "zs.open_experiment('/x/e.zarr')",
        "name it as STORE alone (/x/e.zarr, without ::experiments/ID)",
    ),
    (
        "ingest",
        "paq files not found: {'t': 'x.paq'}; paq= maps trial IDs to existing .paq files",
        "each --paq TRIAL=FILE must name an existing .paq file",
    ),
    (
        "info",
        "trial 'x' is not in experiment 'E'; its trials are ['t-1']; exp.refresh() sees "
        "trials added since opening",
        "its trials are ['t-1']",
    ),
    (
        "export",
        "export_nwb: experiment 'RL1': NWB needs the session's start time; pass "
        "session_start_time=datetime(..., tzinfo=...) or ISO text such as "
        "'2026-05-01T10:30:00+01:00' (`--session-start-time` in the CLI)",
        "pass --session-start-time 2026-05-01T10:30:00+01:00 (ISO 8601",
    ),
    (
        "export",
        "export_nwb: session_start_time 2026-05-01T10:30:00 has no timezone; NWB needs one: "
        "datetime(..., tzinfo=zoneinfo.ZoneInfo('Europe/London')) or '2026-05-01T10:30:00+00:00'",
        "--session-start-time 2026-05-01T10:30:00 has no timezone; NWB needs one: pass "
        "--session-start-time 2026-05-01T10:30:00+00:00",
    ),
    (
        "dff",
        "compute_dff: trial 't-1' has uns['fs']=None; pass fs=<Hz> (or set "
        "trial.data.uns['fs'] and save it)",
        "trial 't-1' has uns['fs']=None; pass --fs HZ",
    ),
    (
        "ingest",
        "obs column '_index' cannot be stored: anndata reserves '_index' for the index of its "
        "data frames; rename it, e.g. .rename(columns={'_index': 'index_'})",
        "data frames; rename it",
    ),
    (
        "info",
        "'gs://b/e.zarr': zstore opens local paths and s3:// URLs; for gs:// build an "
        "icechunk.Storage (e.g. icechunk.gcs_storage(...)) and pass it as the store",
        "the command line cannot open gs://",
    ),
    (
        "ingest",
        "/p/F.npy is not a numeric .npy array (This file contains pickled (object) data. If you "
        "trust the file you can load it unsafely using the `allow_pickle=` keyword argument or "
        "`pickle.load()`.); it may be truncated",
        "(it holds pickled Python objects, not numbers)",
    ),
    (
        "info",
        "trial 't' cannot be read; the other trials are unaffected: remove this one with "
        "exp.remove_trial('t'), replace it with exp.add_trial('t', ..., overwrite=True), or "
        "read an earlier version (`zstore history`, then zs.open_experiment(..., version=ID))",
        "`zstore export STORE --version ID --to FILE` exports one",
    ),
    (
        "info",
        "/e.zarr: an earlier version may be intact: `zstore history /e.zarr` lists them; open "
        "one with zs.open_experiment('/e.zarr', version=ID) (zs.open_collection for a "
        "collection)",
        "export one with `zstore export /e.zarr --version ID --to FILE`",
    ),
    (
        "ingest",
        "/lab.zarr already holds a collection of 3 experiments; add to it with "
        "zs.ingest_suite2p(..., zs.open_collection(path, mode='r+')) or `zstore ingest`, choose "
        "a new path, or pass overwrite=True to replace it",
        "add to it with `zstore ingest` (without --overwrite)",
    ),
    (
        "ingest",
        "/e.zarr holds an experiment, not a collection; zstore does not replace one with the "
        "other: open it with zs.open_experiment(...), or choose a new path such as /e-2.zarr",
        "the other: choose a new path such as /e-2.zarr",
    ),
    (
        "ingest",
        "/lab.zarr: not saved; nothing was saved: col.refresh() and look at col.experimentIDs "
        "before retrying",
        "nothing was saved: run the command again",
    ),
    (
        "info",
        "/e.zarr is an Icechunk repository but not a zstore experiment; create one at a new "
        "path with zs.create_experiment(...)",
        "create one at a new path with `zstore ingest`",
    ),
    (
        "migrate",
        "/old is in zstore format '0.2.0', not 0.1; open it with zs.open_experiment",
        "not 0.1: it needs no migration",
    ),
    (
        "plot",
        "ROI 999 is not stored in trial 't' of 'E'; nearest stored IDs: 4, 5. Pass a stored "
        "ROI ID (6 stored, IDs 0..5: obs_names lists them), or, in Python, iloc= for row "
        "positions",
        "Pass a stored ROI ID (6 stored, IDs 0..5)",
    ),
    (
        "plot",
        "no ROI of trial 't' is chosen; pass rois=[...] with stored ROI IDs (or iloc=)",
        "pass --roi ID (repeat for each) with stored ROI IDs",
    ),
    (
        "migrate",
        "no zstore 0.1 experiment at /x: no such folder; check the path (old=)",
        "no such folder; check the path",
    ),
    (
        "export",
        "export: path must be a file name ending in .zarr or .h5ad (a str or Path), got '' "
        "(str); pass path='trials.h5ad'",
        "--to must be a file name ending in .zarr or .h5ad, got ''",
    ),
    (
        "ingest",
        "/p/iscell.npy: the is-cell label (column 0) of ROI row(s) [2] is [2.0]; expected 0 "
        "or 1. Label those ROIs in suite2p's GUI and save again, or set column 0 to 0 or 1 "
        "and np.save the file",
        "set column 0 to 0 or 1 and save the file again",
    ),
    (
        "ingest",
        "/p/stat.npy entry 0, key 'med': expected a pair, found text. Re-export it, or "
        "remove the key from every entry (for roi in stat: roi.pop('med', None); then np.save)",
        "remove the key from every entry",
    ),
    (
        "ingest",
        "/dev/null holds data that is not a zstore experiment (null); zstore never deletes or "
        "replaces what it did not write, with or without overwrite: choose a new path",
        "with or without --overwrite: choose",
    ),
    (
        "info",
        "x cannot be read; pass zs.something_new(...) to fix it; or that",  # a rule for none
        "x cannot be read; or that",
    ),
]


@pytest.mark.parametrize(
    ("command", "api", "words"),
    PYTHON_IN_MESSAGES,
    ids=[
        f"{i:02d}-{c}-{re.sub(r'[^a-z]+', '-', a[:30].lower())}"
        for i, (c, a, _) in enumerate(PYTHON_IN_MESSAGES)
    ],
)
def test_python_advice_is_said_in_cli_terms(command: str, api: str, words: str) -> None:
    said = cli_wording(api, command, _flags(command))
    assert words in said, said
    _assert_cli_terms(f"zstore {command}: error: {said}")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_hdf5_write_on_a_full_disk_is_one_error(capfd: pytest.CaptureFixture[str]) -> None:
    from zstore.export import hdf5_file

    # /dev/full: every write fails with ENOSPC, as on a full disk
    with (
        pytest.raises(OSError, match="No space left on device") as err,
        hdf5_file(Path("/dev/full")) as h5,
    ):
        h5["x"] = np.ones(100_000)
    assert err.value.errno == errno.ENOSPC and err.value.filename == "/dev/full"
    out, printed = capfd.readouterr()
    assert printed == "" and out == ""  # no "Exception ignored", no HDF5 error stack


# -- red team 3: stdout failing after the work, plot's file, migrate, --to, memory ---------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_stdout_after_the_commit_says_the_data_was_saved(tmp_path: Path) -> None:
    plane, _ = syn.write_suite2p_run(tmp_path / "run", n_rois=6, frames_per_file=[20, 20])
    target = str(tmp_path / "e.zarr")
    cli = [sys.executable, "-c", _CLI]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*cli, "ingest", str(plane), target], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr, "ingest")
    assert f"the ingested trials were saved (committed to {target})" in line, line
    assert "printing its summary to stdout failed: No space left on device" in line, line
    assert "not the store" in line and "Exception ignored" not in done.stderr
    assert len(zs.open_experiment(target).trialIDs) == 2  # the message told the truth
    with open("/dev/full", "w") as full:
        read = subprocess.run(
            [*cli, "info", target], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert read.returncode == 1
    assert "printing to stdout failed" in read.stderr and "only read" in read.stderr


def test_plot_names_the_file_it_wrote(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "y"
    argv = ["plot", store, "--trial", "t-1", "--kind", "raster", "--layer", "X"]
    assert main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}.png"
    assert (tmp_path / "y.png").is_file() and not out.exists()


def test_migrate_of_a_current_store_says_it_needs_none(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", store, str(tmp_path / "new.zarr")]) == 1
    line = _one_error_line(capsys.readouterr().err, "migrate")
    assert "already in the current zstore format" in line and "needs no migration" in line
    assert not (tmp_path / "new.zarr").exists()


def test_export_refuses_a_dangling_symlink(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "x.h5ad"
    link.symlink_to(tmp_path / "gone" / "x.h5ad")
    code, err = _exit(["export", store, "--to", str(link)], capsys)
    assert code == 2
    line = _one_error_line(err, "export")
    assert "dangling symbolic link" in line and "gone" in line
    assert "does not write through" in line and not (tmp_path / "gone").exists()


def test_a_failed_allocation_is_said_as_out_of_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # what CPython leaves when an allocation fails under `ulimit -v` (e.g. in an import)
    assert report(SystemError("error return without exception set"), "verify") == 1
    line = _one_error_line(capsys.readouterr().err, "verify")
    assert "out of memory while verifying" in line and "internal error" not in line


class _NoMemoryToSay(Exception):
    def __str__(self) -> str:
        raise MemoryError


def test_reporting_out_of_memory_itself_prints_a_fixed_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail() -> None:
        raise _NoMemoryToSay

    assert report(_raised(fail), "verify") == 1
    assert capsys.readouterr().err == f"zstore verify: error: {OUT_OF_MEMORY_LINE}\n"


def test_reporting_needs_no_import() -> None:
    # under `ulimit -v` the failure path imported zstore.store and crashed: prepare() binds
    # what it needs before the command runs
    code = """
        import sys
        from zstore import cli_failures
        cli_failures.prepare()
        class Refuse:
            def find_spec(self, name, *args):
                raise ImportError(f"no import while reporting: {name}")
        sys.meta_path.insert(0, Refuse())
        err = OSError(24, "Too many open files")
        sys.exit(cli_failures.report(err, "verify"))
    """
    done = _python(code)
    assert done.returncode == 1, done.stderr
    assert "no import" not in done.stderr and "Too many open files" in done.stderr
