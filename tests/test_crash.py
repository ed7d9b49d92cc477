"""Crash safety and concurrent writers, with real processes and SIGKILL.

A child process saves through a store wrapper that kills the process (SIGKILL) just
before its N-th write or delete. Every N from the first write to the last is tried, so
every boundary of a save is a kill point. After each kill the store must open with the
previous state intact (or, past the commit, the new state complete), and running the
same save again must complete it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import zstore as zs
from zstore.arrays import StorageConfig

CONFIG = StorageConfig(shard_bytes=16 * 512 * 4, inner_rois=16, inner_frames=256)
HERE = Path(__file__).parent

CHILD = textwrap.dedent(
    """
    import os, signal, sys, json
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import zarr
    from zarr.storage import LocalStore, WrapperStore
    import zstore as zs

    class KillingStore(WrapperStore):
        def __init__(self, store, state):
            super().__init__(store)
            self.state = state
        def _with_store(self, store):
            return type(self)(store, self.state)
        def with_read_only(self, read_only=False):
            return type(self)(self._store.with_read_only(read_only), self.state)
        def _tick(self):
            self.state["n"] += 1
            if self.state["n"] == self.state["kill_at"]:
                os.kill(os.getpid(), signal.SIGKILL)
        async def set(self, key, value):
            self._tick()
            return await self._store.set(key, value)
        async def set_if_not_exists(self, key, value):
            self._tick()
            return await self._store.set_if_not_exists(key, value)
        async def delete(self, key):
            self._tick()
            return await self._store.delete(key)
        async def delete_dir(self, prefix):
            self._tick()
            return await self._store.delete_dir(prefix)

    state = {"n": 0, "kill_at": int(sys.argv[3])}
    store = KillingStore(LocalStore(sys.argv[2]), state)
    action = sys.argv[4]
    exp = zs.open_experiment(store, mode="r+")
    if action == "save":
        trial = exp.load_trial("t")
        data = trial.data
        data.add_layer("dFF", zs.normalize_dff(data.X, normalize_pct=30))
        data.add_obs("depth", np.arange(data.n_obs, dtype=float))
        data.uns["note"] = "saved"
        data.layers.pop("spare", None)  # idempotent: a rerun after the commit has none
        trial.save()
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
        [sys.executable, "-c", CHILD, str(HERE), str(store), str(kill_at), action],
        capture_output=True,
        text=True,
    )


def _state(path: Path, X: np.ndarray) -> str:
    """'old' or 'new' when the trial is entirely in one of them; fails otherwise."""
    data = zs.open_experiment(path).load_trial("t").data
    np.testing.assert_array_equal(data.X.compute(), X)
    np.testing.assert_array_equal(data.layers["Fneu"].compute(), X * 0.5)
    assert [list(a) for a in data.obsm["ypix"]] == [list(range(i % 5 + 1)) for i in range(48)]
    new = (
        "dFF" in data.layers,
        "depth" in data.obs,
        data.uns.get("note") == "saved",
        "spare" not in data.layers,
    )
    if not any(new):
        np.testing.assert_array_equal(data.layers["spare"].compute(), X * 2)
        assert list(data.obs.columns) == ["npix"] and "processing" not in data.uns
        return "old"
    assert all(new), f"a mixed state: {new}"
    np.testing.assert_array_equal(
        data.layers["dFF"].compute(), zs.normalize_dff(X, normalize_pct=30)
    )
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


WRITER = textwrap.dedent(
    """
    import sys, time, json, os
    import numpy as np
    import zstore as zs
    path, trial, layer, barrier = sys.argv[1:5]
    exp = zs.open_experiment(path, mode="r+")
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


def _writers(path: Path, jobs: list[tuple[str, str]], tmp_path: Path) -> list[dict[str, object]]:
    barrier = str(tmp_path / "go")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), trial, layer, barrier],
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


def test_writers_of_different_trials_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    X = _make(path)
    zs.open_experiment(path, mode="r+").add_trial("u", zs.AnnotatedData(X))
    results = _writers(path, [("t", "dFF_a"), ("u", "dFF_bb")], tmp_path)
    assert results == [{"ok": True}, {"ok": True}]
    exp = zs.open_experiment(path)
    assert "dFF_a" in exp.load_trial("t").data.layers and "by_dFF_a" in exp.load_trial("t").data.obs
    assert (
        "dFF_bb" in exp.load_trial("u").data.layers and "by_dFF_bb" in exp.load_trial("u").data.obs
    )
    assert exp.trialIDs == ["t", "u"]


def test_writers_of_one_trial_never_mix(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    X = _make(path)
    results = _writers(path, [("t", "dFF_a"), ("t", "dFF_bb")], tmp_path)
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    assert len(ok) == 1 and len(failed) == 1, results
    assert failed[0]["error"] in ("TrialLockedError", "TrialChangedError")
    data = zs.open_experiment(path).load_trial("t").data
    winner = "dFF_a" if "dFF_a" in data.layers else "dFF_bb"
    loser = "dFF_bb" if winner == "dFF_a" else "dFF_a"
    assert loser not in data.layers and f"by_{loser}" not in data.obs
    assert f"by_{winner}" in data.obs
    expected = zs.normalize_dff(X, normalize_pct=20) + float(len(winner))
    np.testing.assert_array_equal(data.layers[winner].compute(), expected)
    assert os.path.isdir(path)
