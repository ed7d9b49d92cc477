"""Failures of the machine, not of the data (issue 17, group Resources).

Too many open files, too little memory, no permission to read, a read-only file system,
an S3 service that stops answering: ``verify`` and ``info`` stop with one zstore error
saying what ran out or refused and what to do, and never report intact data as damaged;
``ingest`` blames no input file; ``gc`` says that nothing was removed. The limits are
real: set with ``setrlimit`` in a child process (after its imports, at what it holds
already plus a margin: deterministic), root made to obey file permissions by dropping
a capability, a read-only bind mount in a mount namespace of its own.
"""

from __future__ import annotations

import errno
import os
import shutil
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
from zstore.errors import ChecksumMismatchError, MissingChunkError, OutOfMemoryError, StoreError
from zstore.io._files import input_failure
from zstore.store import check_open_files, read_failure
from zstore.verify import verify_experiment

#: Child-process helpers: the open files and the address space this process holds.
_HELPERS = """
    import os, resource, sys
    def open_files():
        return len(os.listdir("/proc/self/fd"))
    def limit_files(margin):
        n = open_files() + margin
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    def limit_memory(margin):
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + margin, vm + margin))
    def report(call):
        try:
            print("RESULT", repr(call()))
        except BaseException as err:
            print("ERROR", type(err).__name__, getattr(err, "errno", None), err)
"""

#: Stay root but obey file permissions: clear CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.
_DROP_CAP_DAC = """
    import ctypes, os
    def drop_dac_override():
        libc = ctypes.CDLL(None, use_errno=True)
        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
        class Data(ctypes.Structure):
            _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]
        header, data = Header(0x20080522, 0), (Data * 2)()
        assert libc.capget(ctypes.byref(header), data) == 0
        data[0].effective &= ~0b110
        data[0].permitted &= ~0b110
        assert libc.capset(ctypes.byref(header), data) == 0
    if os.geteuid() == 0:
        drop_dac_override()
"""

_CLI = "from zstore.cli import main\n"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux limits and /proc")


def _child(code: str, *args: str, drop_cap: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (with the helpers) in a new Python process with ``args``."""
    source = textwrap.dedent(_HELPERS) + (textwrap.dedent(_DROP_CAP_DAC) if drop_cap else "")
    return subprocess.run(
        [sys.executable, "-c", source + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )


def _outcome(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stdout.splitlines() if line.startswith(("RESULT", "ERROR"))]
    assert len(lines) == 1, (done.stdout, done.stderr)
    return lines[0]


def _trial(n_rois: int, n_frames: int, seed: int = 0) -> zs.AnnotatedData:
    rng = np.random.default_rng(seed)
    X = (rng.gamma(2, 30, (n_rois, n_frames)) + 100).astype("float32")
    adata = zs.AnnotatedData(X, uns={"fs": 30.0, "meanImg": rng.random((16, 16))})
    adata.layers["Fneu"] = X * 0.5
    return adata


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An intact experiment of three trials, each of many shards (many files to open)."""
    path = tmp_path_factory.mktemp("resources") / "e.zarr"
    config = zs.StorageConfig(shard_bytes=8 * 4096 * 4, inner_rois=8, inner_frames=1024)
    exp = zs.create_experiment(path, exp_id="E", config=config)
    for k in range(3):
        exp.add_trial(f"t-{k}", _trial(64, 4096, seed=k))
    assert verify_experiment(zs.open_experiment(path)) == []
    return path


def _copy(stored: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "e.zarr"
    shutil.copytree(stored, copy)
    return copy


# -- verify: too few open files, too little memory ----------------------------------------


@pytest.mark.parametrize("margin", [0, 2], ids=["no-file-left", "2-files-left"])
def test_verify_with_too_few_open_files_stops_and_reports_no_damage(
    stored: Path, margin: int
) -> None:
    code = """
        import zstore as zs
        from zstore.verify import verify_experiment
        exp = zs.open_experiment(sys.argv[1])
        limit_files(int(sys.argv[2]))
        report(lambda: verify_experiment(exp, progress=False))
    """
    done = _child(code, str(stored), str(margin))
    outcome = _outcome(done)
    assert outcome.startswith(f"ERROR StoreError {errno.EMFILE} {stored}: verify failed: "), outcome
    assert "Too many open files (EMFILE" in outcome and "`ulimit -n" in outcome, outcome
    assert "this is not damage" in outcome and "damaged" not in outcome, outcome
    # without the limit, every chunk reads back
    assert verify_experiment(zs.open_experiment(stored)) == []


def test_verify_out_of_memory_stops_and_reports_no_damage(stored: Path) -> None:
    # what the process holds plus 4 MiB: reading a shard (64 x 256 floats, decoded on
    # every core) needs more. A small verify in memory first starts zstore's codec
    # threads (one that glibc starts under the limit can abort the process); it frees
    # too little to serve the reads of the stored experiment
    code = """
        import icechunk, numpy as np, zstore as zs
        from zstore.verify import verify_experiment
        warm = zs.create_experiment(icechunk.in_memory_storage(), exp_id="W")
        warm.add_trial("w", zs.AnnotatedData(np.ones((8, 64), dtype="float32")))
        verify_experiment(warm, progress=False)
        exp = zs.open_experiment(sys.argv[1])
        limit_memory(4 * 2**20)
        report(lambda: verify_experiment(exp, progress=False))
    """
    outcome = _outcome(_child(code, str(stored)))
    assert outcome.startswith(f"ERROR OutOfMemoryError None {stored}: verify ran out of memory")
    assert "`ulimit -v`" in outcome and "DASK_NUM_WORKERS=2" in outcome, outcome
    assert "this is not damage" in outcome and "damaged" not in outcome, outcome


def test_cli_with_a_tiny_open_files_limit_says_it_before_starting(stored: Path) -> None:
    # below zstore's minimum, and the hard limit too: asyncio and Icechunk would fail
    # deep inside ("Exception ignored", a self-pipe that cannot be made); one line instead
    code = f"""
        {_CLI}
        resource.setrlimit(resource.RLIMIT_NOFILE, (20, 20))
        sys.exit(main(["verify", sys.argv[1]]))
    """
    done = _child(code, str(stored))
    assert done.returncode == 1 and done.stdout == "", done
    assert done.stderr == (
        "zstore verify: error: the limit of open files is 20 (`ulimit -n`); zstore needs "
        "at least 32: raise it (e.g. `ulimit -n 4096` in the shell that runs zstore)\n"
    )


def test_cli_raises_a_low_soft_open_files_limit_to_what_it_needs(stored: Path) -> None:
    code = f"""
        {_CLI}
        resource.setrlimit(resource.RLIMIT_NOFILE, (20, 4096))
        sys.exit(main(["verify", sys.argv[1]]))
    """
    done = _child(code, str(stored))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verified 3 trials"), done.stdout


def test_check_open_files_passes_at_the_usual_limit() -> None:
    check_open_files()  # pytest's own limit (1024 or more) is enough


# -- permissions: a read refused is said as a read -----------------------------------------


def _unreadable(path: Path, *names: str) -> None:
    for name in names:
        for file in (path / name).iterdir():
            file.chmod(0)


def test_verify_of_an_unreadable_chunk_file_names_it(stored: Path, tmp_path: Path) -> None:
    copy = _copy(stored, tmp_path)
    _unreadable(copy, "chunks")
    code = """
        import zstore as zs
        from zstore.verify import verify_experiment
        exp = zs.open_experiment(sys.argv[1])
        report(lambda: verify_experiment(exp, progress=False))
    """
    outcome = _outcome(_child(code, str(copy), drop_cap=True))
    assert outcome.startswith(f"ERROR StoreError {errno.EACCES} {copy}: verify failed: "), outcome
    assert f"Permission denied (EACCES: {copy}/chunks/" in outcome, outcome
    assert "no permission to read it" in outcome and "write" not in outcome, outcome
    assert "damaged" not in outcome, outcome


def test_cli_verify_and_info_of_unreadable_files_say_read(stored: Path, tmp_path: Path) -> None:
    copy = _copy(stored, tmp_path)
    _unreadable(copy, "chunks", "manifests")
    code = f"""
        {_CLI}
        for argv in (["verify", sys.argv[1]], ["info", sys.argv[1]]):
            print("exit", main(argv), file=sys.stderr)
    """
    done = _child(code, str(copy), drop_cap=True)
    assert "Traceback" not in done.stderr and "warning" not in done.stderr, done.stderr
    verify, info = (line for line in done.stderr.splitlines() if line.startswith("zstore"))
    assert done.stderr.count("exit 1") == 2, done.stderr
    for line in (verify, info):
        assert f"Permission denied (EACCES: {copy}/" in line, line
        assert "no permission to read it" in line and "write" not in line, line
        assert "damaged" not in line and "internal error" not in line, line


def test_an_unreadable_store_folder_says_read_not_write(stored: Path, tmp_path: Path) -> None:
    copy = _copy(stored, tmp_path)
    copy.chmod(0)
    try:
        code = f"""
            {_CLI}
            sys.exit(main(["info", sys.argv[1]]))
        """
        done = _child(code, str(copy), drop_cap=True)
    finally:
        copy.chmod(0o755)
    assert done.returncode == 1, done
    assert "Permission denied (EACCES" in done.stderr and str(copy) in done.stderr, done.stderr
    assert "no permission to read it" in done.stderr, done.stderr
    assert "write" not in done.stderr, done.stderr


# -- ingest: too many open files is not a changed input ------------------------------------


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plane") / "plane0"
    return syn.write_suite2p_plane(folder, n_rois=32, frames_per_file=[2000, 2000])


@pytest.mark.parametrize("margin", [0, 4, 8, 12, 16], ids=lambda m: f"{m}-files-left")
def test_ingest_with_too_few_open_files_blames_no_input(
    plane: Path, tmp_path: Path, margin: int
) -> None:
    # zarr's event loop and Icechunk's runtime started first (as by any earlier store
    # access): started under the limit, asyncio fails in its own code (a raw EMFILE)
    code = """
        import icechunk, zstore as zs
        zs.create_experiment(icechunk.in_memory_storage(), exp_id="warm")
        limit_files(int(sys.argv[3]))
        report(lambda: zs.ingest_suite2p(sys.argv[1], sys.argv[2]).trialIDs)
    """
    outcome = _outcome(_child(code, str(plane), str(tmp_path / "e.zarr"), str(margin)))
    if outcome.startswith("RESULT"):  # enough files after all: a whole ingest
        return
    assert outcome.startswith(f"ERROR StoreError {errno.EMFILE} "), outcome
    assert "Too many open files" in outcome and "`ulimit -n" in outcome, outcome
    assert "changed while" not in outcome and "truncated" not in outcome, outcome


def test_input_failure_tells_resources_from_bad_files(tmp_path: Path) -> None:
    emfile = input_failure(OSError(errno.EMFILE, "Too many open files"), tmp_path / "F.npy")
    assert isinstance(emfile, StoreError) and emfile.errno == errno.EMFILE
    assert str(emfile).startswith(f"reading {tmp_path / 'F.npy'} failed: Too many open files")
    memory = input_failure(MemoryError(), "F.npy", then="nothing was stored")
    assert isinstance(memory, OutOfMemoryError) and str(memory).endswith("nothing was stored")
    assert input_failure(ValueError("mmap length is greater than file size"), "F.npy") is None


def test_read_failure_leaves_damage_to_the_caller() -> None:
    for damage in (ChecksumMismatchError("crc32c"), MissingChunkError("gone")):
        assert read_failure(damage, where="e.zarr", what="verify") is None
    icechunk_text = RuntimeError(
        "Unable to open file /d/e.zarr/chunks/AB: Too many open files (os error 24)"
    )
    found = read_failure(icechunk_text, where="/d/e.zarr", what="verify")
    assert isinstance(found, StoreError) and found.errno == errno.EMFILE
    assert "(EMFILE: /d/e.zarr/chunks/AB)" in str(found)


# -- gc on a read-only file system ---------------------------------------------------------


def test_gc_on_a_read_only_file_system_removes_nothing_and_says_so(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only bind mount needs root and unshare")
    path = tmp_path / "e.zarr"
    exp = zs.create_experiment(path, exp_id="E")
    exp.add_trial("t", _trial(4, 10))
    exp.add_trial("t", _trial(4, 10, seed=1), overwrite=True)  # garbage to collect
    mount = tmp_path / "ro"
    mount.mkdir()
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    script = (
        f"mount --bind {path} {mount} && mount -o remount,bind,ro {mount} && "
        f"exec {sys.executable} -c 'from zstore.cli import main; import sys; "
        f'sys.exit(main(["gc", "{mount}", "--keep", "0", "--grace", "0"]))\''
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120
    )
    if "mount" in done.stderr and "zstore" not in done.stderr:
        pytest.skip(f"no mount namespace here: {done.stderr}")
    assert done.returncode == 1, done
    assert done.stderr.startswith(
        f"zstore gc: error: {mount}: gc cannot remove anything: the file system is "
        f"read-only (EROFS: {mount}/"
    ), done.stderr
    assert "nothing was removed" in done.stderr and len(done.stderr.splitlines()) == 1
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before


# -- S3: a service that stops answering is not damage --------------------------------------


def _s3_experiment(s3: S3Server) -> tuple[str, dict[str, Any]]:
    url = f"s3://{s3.new_bucket()}/e.zarr"
    exp = zs.create_experiment(url, exp_id="E", storage_options=s3.options())
    for k in range(2):
        exp.add_trial(f"t-{k}", _trial(8, 300, seed=k))
    # one try per request: a 503 fails at once, not after Icechunk's minute of retries
    return url, {**s3.options(), "max_tries": 1, "connect_timeout": 2}


def _requests(s3: S3Server, call: Any) -> int:
    s3.reset()
    call()
    return s3.count()


@pytest.mark.parametrize("part", [3, 2], ids=["outage-after-a-third", "outage-halfway"])
def test_verify_during_an_s3_outage_stops_and_reports_no_damage(s3: S3Server, part: int) -> None:
    url, options = _s3_experiment(s3)
    exp = zs.open_experiment(url, storage_options=options)
    total = _requests(s3, lambda: verify_experiment(exp, progress=False))
    exp = zs.open_experiment(url, storage_options=options)
    s3.outage_after = total // part
    try:
        with pytest.raises(StoreError) as raised:
            verify_experiment(exp, progress=False)
    finally:
        s3.outage_after = None
    assert f"bucket '{url[5:].split('/')[0]}'" in str(raised.value), raised.value
    assert "this is not damage" in str(raised.value) and "damaged" not in str(raised.value)
    assert verify_experiment(zs.open_experiment(url, storage_options=options)) == []


def test_info_during_an_s3_outage_says_the_storage_failed(s3: S3Server) -> None:
    from zstore.summary import info_document

    url, options = _s3_experiment(s3)
    total = _requests(s3, lambda: info_document(zs.open_experiment(url, storage_options=options)))
    exp = zs.open_experiment(url, storage_options=options)
    s3.outage_after = max(1, total // 2 - 2)
    try:
        with pytest.raises(StoreError) as raised:
            info_document(exp)  # zstore's warnings are errors here: "damaged" would fail
    finally:
        s3.outage_after = None
    assert "service" in str(raised.value) and "damaged" not in str(raised.value)
