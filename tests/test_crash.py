"""Crash safety, concurrent writers and isolated readers, with real processes and SIGKILL.

A child process saves while a hook kills it (SIGKILL) just before its N-th write
through Icechunk's store, or just before or after the commit. Kill points are spread
over the whole save; another test kills at random moments (the Rust side of Icechunk
writes chunks between our hooks). After each kill the experiment must hold exactly the
previous state or exactly the new one, for zstore and for plain anndata, and running
the same save again must complete it.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anndata as ad
import icechunk
import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import Where, make_adata
from s3server import S3Server

import zstore as zs
from zstore.arrays import StorageConfig

CONFIG = StorageConfig(shard_bytes=16 * 512 * 4, inner_rois=16, inner_frames=256)
HERE = Path(__file__).parent

HOOKS = textwrap.dedent(
    """
    import os, signal, sys, json
    import icechunk.session, icechunk.store
    state = {"n": 0, "kill_at": int(sys.argv[2])}

    def tick():
        state["n"] += 1
        if state["n"] == state["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    for _name in ("set", "set_if_not_exists", "delete", "delete_dir"):
        def _hook(orig):
            async def hooked(self, *args, **kwargs):
                tick()
                return await orig(self, *args, **kwargs)
            return hooked
        setattr(icechunk.store.IcechunkStore, _name,
                _hook(getattr(icechunk.store.IcechunkStore, _name)))
    _commit = icechunk.session.Session.commit

    def commit(self, *args, **kwargs):
        tick()
        snapshot = _commit(self, *args, **kwargs)
        tick()
        return snapshot

    icechunk.session.Session.commit = commit
    """
)

CHILD = HOOKS + textwrap.dedent(
    """
    import numpy as np
    import zstore as zs
    path, action = sys.argv[1], sys.argv[3]
    exp = zs.open_experiment(path, mode="r+")
    if action == "save":
        trial = exp.load_trial("t")
        data = trial.data
        data.add_layer("dFF", zs.normalize_dff(data.X, normalize_pct=30))
        data.layers["Fneu"] = data.X * 3  # replaces a stored layer
        data.add_obs("depth", np.arange(data.n_obs, dtype=float))
        data.uns["note"] = "saved"
        data.layers.pop("spare", None)
        trial.save()
    elif action == "replace":
        rng = np.random.default_rng(7)
        new = zs.AnnotatedData(rng.random((32, 600)).astype("float32") + 5)
        exp.add_trial("t", new, overwrite=True)
    else:
        rng = np.random.default_rng(5)
        exp.add_trial("t2", zs.AnnotatedData(rng.random((48, 600)).astype("float32") + 1))
    print(json.dumps({"writes": state["n"]}))
    """
)


def _make(path: Path) -> np.ndarray:
    rng = np.random.default_rng(1)
    X = (rng.gamma(2, 30, (48, 600)) + 100).astype(np.float32)
    obs = pd.DataFrame({"npix": np.arange(48)}, index=[str(i) for i in range(48)])
    adata = zs.AnnotatedData(X, obs=obs, uns={"fs": 30.0})
    adata.layers["Fneu"] = X * 0.5
    adata.layers["spare"] = X * 2
    adata.obsm["ypix"] = zs.RaggedArray.from_arrays(
        [np.arange(i % 5 + 1) for i in range(48)], dtype="int16"
    )
    exp = zs.create_experiment(path, exp_id="E", config=CONFIG)
    exp.add_trial("t", adata)
    return X


def _run(store: Path, kill_at: int, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(store), str(kill_at), action],
        capture_output=True,
        text=True,
        cwd=HERE,
    )


def _plain(path: Path, trial: str = "t") -> ad.AnnData:
    """The trial as plain anndata reads it (the documented recipe, no zstore)."""
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(path)))
    store = repo.readonly_session("main").store
    return ad.read_zarr(zarr.open_group(store, path=f"trials/{trial}", mode="r"))


def _state(path: Path, X: np.ndarray) -> str:
    """'old' or 'new' when the trial is entirely in one of them; fails otherwise."""
    data = zs.open_experiment(path).load_trial("t").data
    plain = _plain(path)
    np.testing.assert_array_equal(data.X.compute(), X)
    np.testing.assert_array_equal(plain.X, X)
    assert [list(a) for a in data.obsm["ypix"]] == [list(range(i % 5 + 1)) for i in range(48)]
    new = (
        "dFF" in data.layers,
        "depth" in data.obs,
        data.uns.get("note") == "saved",
        "spare" not in data.layers,
    )
    plain_new = ("dFF" in plain.layers, "depth" in plain.obs, plain.uns.get("note") == "saved")
    if not any(new):
        assert not any(plain_new), f"plain anndata sees a different state: {plain_new}"
        np.testing.assert_array_equal(data.layers["spare"].compute(), X * 2)
        np.testing.assert_array_equal(data.layers["Fneu"].compute(), X * 0.5)
        assert list(data.obs.columns) == ["npix"] and "processing" not in data.uns
        return "old"
    assert all(new), f"a mixed state: {new}"
    assert all(plain_new), f"plain anndata sees a mixed state: {plain_new}"
    np.testing.assert_array_equal(
        data.layers["dFF"].compute(), zs.normalize_dff(X, normalize_pct=30)
    )
    np.testing.assert_array_equal(data.layers["Fneu"].compute(), X * 3)
    np.testing.assert_array_equal(plain.layers["Fneu"], X * 3)
    np.testing.assert_array_equal(data.obs["depth"], np.arange(48, dtype=float))
    return "new"


def _kill_points(writes: int, every: bool) -> list[int]:
    if every:
        return list(range(1, writes + 1))
    spread = set(range(1, writes + 1, max(1, writes // 9)))
    return sorted(spread | {writes - 2, writes - 1, writes})  # around the commit and after


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_save_killed_at_any_write_leaves_old_or_new_never_mixed(
    tmp_path: Path, every: bool
) -> None:
    probe = tmp_path / "probe.zarr"
    X = _make(probe)
    done = _run(probe, 0, "save")
    assert done.returncode == 0, done.stderr
    writes = json.loads(done.stdout.strip().splitlines()[-1])["writes"]
    assert _state(probe, X) == "new"
    assert writes >= 20
    outcomes = {"old": 0, "new": 0}
    for kill_at in _kill_points(writes, every):
        store = tmp_path / f"k{kill_at}.zarr"
        _make(store)
        killed = _run(store, kill_at, "save")
        assert killed.returncode == -9, (kill_at, killed.stderr[-400:])
        outcomes[_state(store, X)] += 1
        again = _run(store, 0, "save")  # running the same save again completes it
        assert again.returncode == 0, (kill_at, again.stderr[-600:])
        assert _state(store, X) == "new"
    print(f"{writes} kill points: {outcomes}")
    assert outcomes["old"] > 0 and outcomes["new"] > 0


def test_a_save_killed_at_random_moments_leaves_old_or_new(tmp_path: Path) -> None:
    """SIGKILL from outside at moments spread over a save of 64 shards (the Rust side)."""
    big = StorageConfig(shard_bytes=16 * 20000 * 4, inner_rois=16, inner_frames=4096)
    script = tmp_path / "save.py"
    script.write_text(
        "import sys, zstore as zs\n"
        "exp = zs.open_experiment(sys.argv[1], mode='r+')\n"
        "t = exp.load_trial('t')\n"
        "t.data.add_layer('dFF', zs.normalize_dff(t.data.X, normalize_pct=30))\n"
        "t.data.add_obs('depth', range(t.data.n_obs))\n"
        "t.save()\n"
    )
    X = (np.random.default_rng(2).gamma(2, 30, (1024, 20000)) + 100).astype(np.float32)

    def fresh(path: Path) -> None:
        zs.create_experiment(path, exp_id="E", config=big).add_trial("t", zs.AnnotatedData(X))

    fresh(tmp_path / "probe.zarr")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(tmp_path / "probe.zarr")], check=True)
    duration = time.perf_counter() - t0
    rng = random.Random(0)
    seen = set()
    for k in range(8):
        path = tmp_path / f"r{k}.zarr"
        fresh(path)
        proc = subprocess.Popen([sys.executable, str(script), str(path)])
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = zs.open_experiment(path).load_trial("t").data
        has = ("dFF" in data.layers, "depth" in data.obs)
        assert has in ((False, False), (True, True)), has
        if has[0]:
            np.testing.assert_array_equal(
                data.layers["dFF"][::97].compute(), zs.normalize_dff(X[::97], normalize_pct=30)
            )
        seen.add(has[0] if proc.returncode == -9 else "finished")
    print(f"save of {duration:.1f} s killed at random moments: {seen}")
    assert False in seen


S3_SAVE = textwrap.dedent(
    """
    import json, sys, zstore as zs
    exp = zs.open_experiment(sys.argv[1], mode="r+", storage_options=json.loads(sys.argv[2]))
    t = exp.load_trial("t")
    t.data.add_layer("dFF", zs.normalize_dff(t.data.X, normalize_pct=30))
    t.data.add_obs("depth", range(t.data.n_obs))
    t.save()
    """
)


def test_a_save_to_s3_killed_at_random_moments_leaves_old_or_new(s3: S3Server) -> None:
    X = (np.random.default_rng(4).gamma(2, 30, (256, 8000)) + 100).astype(np.float32)
    options = s3.options()
    small = StorageConfig(shard_bytes=16 * 8192 * 4, inner_rois=16, inner_frames=2048)

    def fresh() -> str:
        url = f"s3://{s3.new_bucket()}/e.zarr"
        zs.create_experiment(url, exp_id="E", config=small, storage_options=options).add_trial(
            "t", zs.AnnotatedData(X)
        )
        return url

    url = fresh()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", S3_SAVE, url, json.dumps(options)], check=True)
    duration = time.perf_counter() - t0
    rng = random.Random(1)
    outcomes = []
    for _ in range(4):
        url = fresh()
        proc = subprocess.Popen([sys.executable, "-c", S3_SAVE, url, json.dumps(options)])
        time.sleep(rng.uniform(0.4, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = zs.open_experiment(url, storage_options=options).load_trial("t").data
        has = ("dFF" in data.layers, "depth" in data.obs)
        assert has in ((False, False), (True, True)), has
        np.testing.assert_array_equal(data.X[::31].compute(), X[::31])
        if has[0]:
            np.testing.assert_array_equal(
                data.layers["dFF"][::31].compute(), zs.normalize_dff(X[::31], normalize_pct=30)
            )
        outcomes.append(has[0])
    print(f"S3 save of {duration:.1f} s killed at random moments: {outcomes}")


def test_a_new_trial_killed_at_every_write_is_invisible_or_complete(tmp_path: Path) -> None:
    probe = tmp_path / "probe.zarr"
    _make(probe)
    done = _run(probe, 0, "add")
    assert done.returncode == 0, done.stderr
    writes = json.loads(done.stdout.strip().splitlines()[-1])["writes"]
    for kill_at in _kill_points(writes, False)[::2]:
        store = tmp_path / f"a{kill_at}.zarr"
        _make(store)
        assert _run(store, kill_at, "add").returncode == -9
        ids = zs.open_experiment(store).trialIDs
        assert ids in (["t"], ["t", "t2"])
        if ids == ["t"]:  # not committed: invisible, and adding it again completes it
            assert _run(store, 0, "add").returncode == 0
        assert zs.open_experiment(store).trialIDs == ["t", "t2"]
        assert zs.open_experiment(store).load_trial("t2").data.X.compute().min() >= 1


def test_a_replacement_killed_at_any_write_keeps_the_old_trial(tmp_path: Path) -> None:
    probe = tmp_path / "probe.zarr"
    X = _make(probe)
    done = _run(probe, 0, "replace")
    assert done.returncode == 0, done.stderr
    writes = json.loads(done.stdout.strip().splitlines()[-1])["writes"]
    for kill_at in _kill_points(writes, False):
        store = tmp_path / f"r{kill_at}.zarr"
        _make(store)
        assert _run(store, kill_at, "replace").returncode == -9
        data = zs.open_experiment(store).load_trial("t").data
        if data.n_obs == 48:  # killed before the commit: the old trial, whole
            np.testing.assert_array_equal(data.X.compute(), X)
            np.testing.assert_array_equal(data.layers["spare"].compute(), X * 2)
        else:
            assert data.shape == (32, 600) and not data.layers


WRITER = textwrap.dedent(
    """
    import sys, time, json, os
    import numpy as np
    import zstore as zs
    path, trial, layer, barrier, options = sys.argv[1:6]
    options = json.loads(options) or None
    exp = zs.open_experiment(path, mode="r+", storage_options=options)
    t = exp.load_trial(trial)
    t.data.add_layer(layer, zs.normalize_dff(t.data.X, normalize_pct=20) + float(len(layer)))
    t.data.add_obs("by_" + layer, np.ones(t.data.n_obs))
    open(barrier + "." + layer, "w").close()
    folder, stem = os.path.split(barrier)
    while len([p for p in os.listdir(folder) if p.startswith(stem + ".")]) < 2:
        time.sleep(0.01)
    try:
        t.save()
        print(json.dumps({"ok": True}))
    except Exception as err:
        print(json.dumps({"ok": False, "error": type(err).__name__, "message": str(err)}))
    """
)


def _writers(
    path: str, jobs: list[tuple[str, str]], tmp_path: Path, options: dict[str, Any] | None = None
) -> list[dict[str, object]]:
    barrier = str(tmp_path / "go")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, trial, layer, barrier, json.dumps(options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for trial, layer in jobs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.fixture(params=["local", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any] | None]:
    if request.param == "local":
        return str(tmp_path / "e.zarr"), None
    s3: S3Server = request.getfixturevalue("s3")
    return f"s3://{s3.new_bucket()}/e.zarr", s3.options()


def test_writers_of_different_trials_both_succeed(
    shared: tuple[str, dict[str, Any] | None], tmp_path: Path
) -> None:
    path, options = shared
    exp = zs.create_experiment(path, exp_id="E", config=CONFIG, storage_options=options)
    for tid in ("t", "u"):
        exp.add_trial(tid, make_adata(48, 600, seed=len(tid)))
    results = _writers(path, [("t", "dFF_a"), ("u", "dFF_bb")], tmp_path, options)
    assert results == [{"ok": True}, {"ok": True}]
    exp = zs.open_experiment(path, storage_options=options)
    t, u = exp.load_trial("t").data, exp.load_trial("u").data
    assert "dFF_a" in t.layers and "by_dFF_a" in t.obs
    assert "dFF_bb" in u.layers and "by_dFF_bb" in u.obs
    np.testing.assert_array_equal(
        u.layers["dFF_bb"].compute(), zs.normalize_dff(u.X.compute(), normalize_pct=20) + 6.0
    )
    assert exp.trialIDs == ["t", "u"]


def test_writers_of_one_trial_never_mix(
    shared: tuple[str, dict[str, Any] | None], tmp_path: Path
) -> None:
    path, options = shared
    exp = zs.create_experiment(path, exp_id="E", config=CONFIG, storage_options=options)
    X = make_adata(48, 600).X
    exp.add_trial("t", zs.AnnotatedData(X))
    results = _writers(path, [("t", "dFF_a"), ("t", "dFF_bb")], tmp_path, options)
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    assert len(ok) == 1 and len(failed) == 1, results
    assert failed[0]["error"] == "TrialChangedError"
    assert "nothing was saved" in str(failed[0]["message"])
    data = zs.open_experiment(path, storage_options=options).load_trial("t").data
    winner = "dFF_a" if "dFF_a" in data.layers else "dFF_bb"
    loser = "dFF_bb" if winner == "dFF_a" else "dFF_a"
    assert loser not in data.layers and f"by_{loser}" not in data.obs
    assert f"by_{winner}" in data.obs
    expected = zs.normalize_dff(X, normalize_pct=20) + float(len(winner))
    np.testing.assert_array_equal(data.layers[winner].compute(), expected)


READER_RACE_WRITER = textwrap.dedent(
    """
    import sys, zstore as zs
    path, rounds = sys.argv[1], int(sys.argv[2])
    exp = zs.open_experiment(path, mode="r+")
    for k in range(rounds):
        zs.compute_dff(exp, layer="dFF", normalize_pct=(20, 30)[k % 2], overwrite=True)
        if k % 3 == 2:
            t = exp.load_trial("t")
            del t.data.layers["dFF"]
            t.save()
    """
)


def test_readers_racing_a_writer_see_old_or_new_never_zeros_or_a_mix(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    X = (np.random.default_rng(9).gamma(2, 30, (96, 3000)) + 100).astype(np.float32)
    exp = zs.create_experiment(path, exp_id="E", config=CONFIG)
    exp.add_trial("t", zs.AnnotatedData(X))
    zs.compute_dff(exp, layer="dFF", normalize_pct=20)
    expected = {pct: zs.normalize_dff(X, normalize_pct=pct) for pct in (20, 30)}
    writer = subprocess.Popen([sys.executable, "-c", READER_RACE_WRITER, str(path), "24"])
    seen: dict[Any, int] = {20: 0, 30: 0, None: 0}
    held = zs.open_experiment(path).load_trial("t")  # loaded once, read while others commit
    held_pct = held.data.uns["processing"]["dFF"]["normalize_pct"]
    try:
        while writer.poll() is None:
            trial = zs.open_experiment(path).load_trial("t")
            if "dFF" not in trial.data.layers:
                assert "processing" not in trial.data.uns
                seen[None] += 1
                continue
            pct = trial.data.uns["processing"]["dFF"]["normalize_pct"]
            np.testing.assert_array_equal(trial.data.layers["dFF"].compute(), expected[pct])
            seen[pct] += 1
            np.testing.assert_array_equal(held.data.layers["dFF"].compute(), expected[held_pct])
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0
    print(f"reads while a writer committed: {seen}")
    assert seen[20] + seen[30] >= 5 and seen[20] and seen[30], seen


def test_a_loaded_trial_keeps_computing_its_version(where: Where) -> None:
    adata = make_adata(40, 300)
    where.create(exp_id="E").add_trial("t", adata)
    reader = where.open().load_trial("t")
    layer = reader.data.layers["Fneu"]
    writer = where.open(mode="r+")
    w = writer.load_trial("t")
    w.data.layers["Fneu"] = w.data.X * 7
    w.save()
    w = writer.load_trial("t")
    del w.data.layers["Fneu"]
    w.save()
    replacement = make_adata(40, 300, seed=5)
    replacement.obs["npix"] = -1
    writer.add_trial("t", replacement, overwrite=True)
    np.testing.assert_array_equal(layer.compute(), adata.layers["Fneu"])
    np.testing.assert_array_equal(reader.data.X.compute(), adata.X)
    pd.testing.assert_frame_equal(reader.data.obs, adata.obs)
    assert [list(a) for a in reader.data.obsm["ypix"]] == [list(a) for a in adata.obsm["ypix"]]
    fresh = where.open().load_trial("t").data
    np.testing.assert_array_equal(fresh.X.compute(), replacement.X)
    assert (fresh.obs["npix"] == -1).all()
    # and plain anndata, reading the version the reader holds, sees the same
    import icechunk as ic

    storage = zs.store.resolve(where.store, storage_options=where.options).storage
    old = ic.Repository.open(storage).readonly_session(snapshot_id=reader.version)
    plain = ad.read_zarr(zarr.open_group(old.store, path="trials/t", mode="r"))
    np.testing.assert_array_equal(plain.layers["Fneu"], adata.layers["Fneu"])
