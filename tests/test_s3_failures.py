"""S3 failures and read-only opening (issue 17, red-team findings of group S3).

An endpoint that accepts connections and never answers fails within ``connect_timeout``;
a failing S3 (500, 503) is said with its endpoint, its bucket, what to check and whether
anything was saved; read-only commands on a missing path create nothing; ``history``
lists the versions before a newest one whose snapshot was deleted. Real servers: moto
(tests/s3server.py) and a black-hole TCP server started here.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from s3server import S3Server

import zstore as zs
from zstore import store as zstore_store
from zstore.cli import main
from zstore.errors import (
    PathNotFoundError,
    StorageOptionsError,
    StoreError,
    UnsafeOverwriteError,
)
from zstore.store import check_reachable, resolve


def _trial(n_rois: int = 6, n_frames: int = 120) -> zs.AnnotatedData:
    F = (np.random.default_rng(n_rois).gamma(2, 30, (n_rois, n_frames)) + 100).astype("float32")
    return zs.AnnotatedData(F, uns={"fs": 30.0})


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """An endpoint URL whose server accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


def _options(endpoint: str, **more: Any) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing", **more}


def _flags(options: dict[str, Any]) -> list[str]:
    return [arg for k, v in options.items() for arg in ("--storage-option", f"{k}={v}")]


# -- an endpoint that never answers -------------------------------------------------------


def test_black_hole_endpoint_fails_within_connect_timeout() -> None:
    import zstore.opening  # noqa: F401  (imported before the clock starts)

    with black_hole() as endpoint:
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            zs.open_experiment(
                "s3://bkt/e", storage_options=_options(endpoint, connect_timeout=0.5)
            )
        elapsed = time.monotonic() - started
    text = str(err.value)
    assert elapsed < 10, elapsed  # 0.5 s and some, not Icechunk's minutes of retries
    for words in (endpoint, "'bkt'", "did not answer within 0.5 s", "proxy or firewall"):
        assert words in text, text
    assert "storage_options={'connect_timeout': 30}" in text


def test_black_hole_endpoint_in_the_cli_says_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with black_hole() as endpoint:
        rc = main(["info", "s3://bkt/e", *_flags(_options(endpoint, connect_timeout=0.5))])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) <= 2, err
    assert endpoint in err and "did not answer within 0.5 s" in err, err
    assert "--storage-option connect_timeout=30" in err and "Traceback" not in err, err


def test_endpoint_is_probed_with_one_request_once(s3: S3Server) -> None:
    place = resolve(f"s3://{s3.new_bucket()}/e", storage_options=s3.options())
    zstore_store._ANSWERED.discard(s3.endpoint)
    s3.reset()
    started = time.monotonic()
    check_reachable(place)
    check_reachable(place)  # answered once in this process: a TCP connection only
    assert time.monotonic() - started < 1
    assert s3.count() == 1, s3.requests


# -- a failing S3: 500 and 503 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "fault"),
    [("info-500", 500), ("info-503", 503)],
    ids=["info-500", "info-503"],
)
def test_failing_s3_names_endpoint_bucket_and_what_to_check(
    s3: S3Server, capsys: pytest.CaptureFixture[str], case: str, fault: int
) -> None:
    bucket = s3.new_bucket()
    zs.create_experiment(f"s3://{bucket}/e", exp_id="E", storage_options=s3.options())
    s3.faults = [fault] * 20
    try:
        rc = main(["info", f"s3://{bucket}/e", *_flags(_no_retries(s3))])
    finally:
        s3.faults = []
    err = capsys.readouterr().err
    assert rc == 1, err
    for words in (s3.endpoint, repr(bucket), f"HTTP {fault}", "retry later", "status"):
        assert words in err, (case, err)


def _no_retries(s3: S3Server) -> dict[str, Any]:
    """The server's options, with Icechunk trying each request once (a quick test)."""
    return {**s3.options(), "max_tries": 1}


def test_icechunk_failure_on_s3_names_endpoint_and_bucket(s3: S3Server) -> None:
    import icechunk

    from zstore import _compat

    place = resolve(f"s3://{s3.new_bucket()}/nothing", storage_options=s3.options())
    with pytest.raises(StoreError) as err, _compat.icechunk_errors(place.label):
        icechunk.Repository.open(place.storage)
    assert s3.endpoint in str(err.value) and repr(place.s3["bucket"]) in str(err.value)  # type: ignore[index]


# Outages that Icechunk's requests meet (chunks, the commit) take Icechunk's retries and
# backoff (tens of seconds): the writes below fail at a request of zstore's own.
@pytest.mark.parametrize("after", [1], ids=["lease-write"])
def test_outage_during_a_write_says_nothing_was_saved(s3: S3Server, after: int) -> None:
    bucket = s3.new_bucket()
    exp = zs.create_experiment(f"s3://{bucket}/e", exp_id="E", storage_options=_no_retries(s3))
    s3.outage_after = after
    try:
        with pytest.raises(StoreError) as err:
            exp.add_trial("t-1", _trial())
    finally:
        s3.outage_after = None
    text = str(err.value)
    for words in (s3.endpoint, repr(bucket), "retry", "nothing of it was saved"):
        assert words in text, text
    assert zs.open_experiment(f"s3://{bucket}/e", storage_options=s3.options()).trialIDs == []


def test_outage_during_cli_ingest_names_endpoint_and_bucket(
    s3: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zstore.synthetic as syn

    plane = syn.write_suite2p_plane(tmp_path / "plane0", n_rois=6, frames_per_file=(100, 100))
    bucket = s3.new_bucket()
    s3.outage_after = 10
    try:
        rc = main(["ingest", str(plane), f"s3://{bucket}/e", *_flags(_no_retries(s3))])
    finally:
        s3.outage_after = None
    err = capsys.readouterr().err
    assert rc == 1 and s3.endpoint in err and repr(bucket) in err, err
    assert "EBUSY" not in err and "Traceback" not in err, err


def test_verify_during_an_outage_is_a_storage_error(s3: S3Server) -> None:
    from zstore.verify import verify_experiment

    url = f"s3://{s3.new_bucket()}/e"
    exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options())
    exp.add_trial("t-1", _trial())
    opened = zs.open_experiment(url, storage_options=_no_retries(s3))
    s3.outage_after = 0
    try:
        with pytest.raises(StoreError) as err:
            verify_experiment(opened, progress=False)
    finally:
        s3.outage_after = None
    assert s3.endpoint in str(err.value) and url.split("/")[2] in str(err.value)


# -- read-only opening of a missing path creates nothing -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["info"], ["history"], ["verify"], ["gc", "--keep", "1"], ["dff", "--layer", "dFF"]],
    ids=["info", "history", "verify", "gc", "dff"],
)
def test_cli_on_a_missing_path_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    missing = tmp_path / "nowhere" / "deep" / "x.zarr"
    rc = main([argv[0], str(missing), *argv[1:]])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert str(missing) in err and "no such folder" in err and "zstore ingest" in err, err
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("opener", "mode"),
    [("open_experiment", "r"), ("open_experiment", "r+"), ("open_collection", "r")],
    ids=["experiment-r", "experiment-r+", "collection-r"],
)
def test_api_open_of_a_missing_path_creates_nothing(tmp_path: Path, opener: str, mode: str) -> None:
    missing = tmp_path / "nowhere" / "x.zarr"
    with pytest.raises(PathNotFoundError) as err:
        getattr(zs, opener)(missing, mode=mode)
    text = str(err.value)
    what = opener.removeprefix("open_")
    assert str(missing) in text and f"zs.create_{what}(" in text, text
    assert str(tmp_path) in text  # the nearest folder that exists
    assert not (tmp_path / "nowhere").exists()


# -- history past a deleted newest snapshot -------------------------------------------------


@pytest.fixture
def snapshot_deleted(tmp_path: Path) -> tuple[Path, list[str]]:
    exp = zs.create_experiment(tmp_path / "e.zarr", exp_id="E")
    exp.add_trial("a", _trial())
    exp.add_trial("b", _trial())
    versions = [c.version for c in exp.history()]
    (tmp_path / "e.zarr" / "snapshots" / versions[0]).unlink()
    return tmp_path / "e.zarr", versions


def test_history_lists_the_versions_before_a_deleted_newest_snapshot(
    snapshot_deleted: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, versions = snapshot_deleted
    rc = main(["history", str(path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    # the deleted one listed where it stands (marked damaged), then those before it
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed[-len(versions) + 1 :] == versions[1:], out
    assert listed[: -len(versions) + 1] in ([], versions[:1]), out
    assert versions[0] in err and "cannot be read" in err and "zstore verify" in err, err


def test_open_after_a_deleted_newest_snapshot_names_the_newest_readable_version(
    snapshot_deleted: tuple[Path, list[str]],
) -> None:
    path, versions = snapshot_deleted
    with pytest.raises(StoreError) as err:
        zs.open_experiment(path)
    assert versions[0] in str(err.value) and repr(versions[1]) in str(err.value)
    assert zs.open_experiment(path, version=versions[1]).trialIDs == ["a"]


# -- S3 settings: one rule per number, and max_tries reaching Icechunk's S3 client ----------


@pytest.mark.parametrize(
    ("option", "value", "rule", "example"),
    [
        ("max_tries", 0, "a whole number from 1 to 100 (1: no retries)", "3"),
        ("max_tries", "0", "a whole number from 1 to 100 (1: no retries)", "3"),
        ("max_tries", -1, "a whole number from 1 to 100 (1: no retries)", "3"),
        ("max_tries", "abc", "a whole number from 1 to 100 (1: no retries)", "3"),
        ("max_tries", 1.5, "a whole number from 1 to 100 (1: no retries)", "3"),
        ("max_tries", "true", "a whole number from 1 to 100 (1: no retries)", "3"),
        ("max_tries", 1000000, "a whole number from 1 to 100 (1: no retries)", "3"),
        ("connect_timeout", "1e9", "a number of seconds > 0 and <= 600", "30"),
        ("connect_timeout", 0, "a number of seconds > 0 and <= 600", "30"),
        ("connect_timeout", "inf", "a number of seconds > 0 and <= 600", "30"),
        ("network_stream_timeout_seconds", 0, "a whole number of seconds from 1 to 600", "60"),
        (
            "network_stream_timeout_seconds",
            "86400",
            "a whole number of seconds from 1 to 600",
            "60",
        ),
    ],
    ids=[
        "max_tries-0",
        "max_tries-0-text",
        "max_tries-negative",
        "max_tries-abc",
        "max_tries-1.5",
        "max_tries-true",
        "max_tries-a-million",
        "connect_timeout-1e9",
        "connect_timeout-0",
        "connect_timeout-inf",
        "stream-timeout-0-disables",
        "stream-timeout-a-day",
    ],
)
def test_numeric_s3_options_have_one_rule_and_a_bound(
    capsys: pytest.CaptureFixture[str], option: str, value: Any, rule: str, example: str
) -> None:
    with pytest.raises(StorageOptionsError) as err:
        zs.open_experiment("s3://bkt/e", storage_options={option: value})
    text = str(err.value)
    assert f"storage option {option!r} for s3://bkt/e must be {rule}, got {value!r}" in text
    assert f"storage_options={{{option!r}: {example}}}" in text, text
    rc = main(["info", "s3://bkt/e", "--storage-option", f"{option}={value}"])
    cli = capsys.readouterr().err
    assert rc == 2 and f"must be {rule}" in cli and f"--storage-option {option}={example}" in cli


def test_max_tries_reaches_icechunk_s3_client(s3: S3Server) -> None:
    """Icechunk builds its S3 client with the settings of the first request (its own
    defaults when a repository opens): zstore's max_tries=1 must still hold, for the
    repository and for the ones it reopens (a version's snapshot checked)."""
    url = f"s3://{s3.new_bucket()}/e"
    zs.create_experiment(url, exp_id="E", storage_options=s3.options()).add_trial("t", _trial())
    exp = zs.open_experiment(url, storage_options=_no_retries(s3))
    repo = exp._repo  # the reopening inside: not reachable otherwise
    version = exp.version
    for name, call in [
        ("history", exp.history),
        ("check_snapshot", lambda: repo.check_snapshot(version)),
    ]:
        s3.reset()
        s3.outage_after = 0
        started = time.monotonic()
        try:
            with pytest.raises(StoreError):
                call()
        finally:
            s3.outage_after = None
        assert time.monotonic() - started < 3, name  # not Icechunk's 10 tries with backoff
        assert s3.count() <= 3, (name, s3.requests)


# -- a path through a file -------------------------------------------------------------------


def test_a_path_through_a_file_says_it_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile / "x.zarr", afile / "deeper" / "x.zarr"):
        with pytest.raises(PathNotFoundError) as err:
            zs.open_experiment(path)
        assert f"{afile} is a file, not a folder" in str(err.value), err.value
        assert "no such folder" not in str(err.value)
    rc = main(["info", str(afile / "x.zarr")])
    cli = capsys.readouterr().err
    assert rc == 1 and f"{afile} is a file, not a folder" in cli, cli
    with pytest.raises(UnsafeOverwriteError) as created:
        zs.create_experiment(afile / "x.zarr", exp_id="E")
    assert f"{afile} is a file, not a folder; choose a path in a folder" in str(created.value)
    assert afile.read_text() == "x"


# -- export: a source chunk that cannot be read is a read failure ----------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="Linux capabilities")
@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"], ids=["h5ad", "zarr"])
def test_export_of_an_unreadable_source_chunk_says_read(tmp_path: Path, suffix: str) -> None:
    from test_resources import _child, _outcome

    source = tmp_path / "e.zarr"
    zs.create_experiment(source, exp_id="E").add_trial("t", _trial())
    for chunk in (source / "chunks").iterdir():
        chunk.chmod(0)
    target = tmp_path / f"out{suffix}"
    code = """
        import zstore as zs
        from zstore.export import export
        report(lambda: export(zs.open_experiment(sys.argv[1]), sys.argv[2], progress=False))
    """
    outcome = _outcome(_child(code, str(source), str(target), drop_cap=True))
    assert outcome.startswith(f"ERROR StoreError {errno.EACCES} {source}: reading it "), outcome
    assert f"for the export to {target} failed: Permission denied (EACCES: {source}/chunks/" in (
        outcome
    )
    assert "no permission to read it" in outcome and f"{target} was not written" in outcome
    assert "write there" not in outcome, outcome
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["e.zarr"]
