"""How tests/data/zstore-0.1.zarr was made: with zstore 0.1 (commit 13c9572), not this one.

    git worktree add /tmp/zstore01 13c9572
    PYTHONPATH=/tmp/zstore01 python tests/data/make_zstore01.py tests/data/zstore-0.1.zarr

Three trials: 't-a' (X, a dFF layer, obs, var, uns, ragged ypix), 't-b' whose first
shard of X was deleted afterwards (0.1 reads it as zeros), and 't-a's obs and uns being
rewritten by a save that was killed after journalling them (0.1 reads them from the
journal). Plus 't-c', a trial whose write died before its commit (0.1 hides it).
"""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd

import zstore as zs
from zstore.arrays import StorageConfig

CONFIG = StorageConfig(shard_bytes=16 * 64 * 4, inner_rois=16, inner_frames=32)


def trial(seed: int) -> zs.AnnotatedData:
    rng = np.random.default_rng(seed)
    X = (rng.gamma(2, 30, (40, 64)) + 100).astype(np.float32)
    obs = pd.DataFrame(
        {"npix": np.arange(40), "iscell": rng.random(40) > 0.3},
        index=[str(3 * i) for i in range(40)],
    )
    var = pd.DataFrame({"time": np.arange(64) / 30.0}, index=[str(i) for i in range(64)])
    adata = zs.AnnotatedData(X, obs=obs, var=var, uns={"fs": 30.0, "note": "original"})
    adata.obsm["ypix"] = zs.RaggedArray.from_arrays(
        [np.arange(i % 4 + 1) + i for i in range(40)], dtype="int16"
    )
    return adata


KILLED_SAVE = """
import os, signal, sys
from zarr.storage import LocalStore, WrapperStore
import numpy as np
import zstore as zs
class Killing(WrapperStore):
    def __init__(self, store, state):
        super().__init__(store); self.state = state
    def _with_store(self, store): return type(self)(store, self.state)
    def with_read_only(self, read_only=False):
        return type(self)(self._store.with_read_only(read_only), self.state)
    async def set(self, key, value):
        if key.endswith("zarr.json") and "/trials/t-a/" in "/" + key and self.state["journal"]:
            os.kill(os.getpid(), signal.SIGKILL)
        if key.endswith("manifest.json"):
            self.state["journal"] = True
        return await self._store.set(key, value)
store = Killing(LocalStore(sys.argv[1]), {"journal": False})
exp = zs.open_experiment(store, mode="r+")
t = exp.load_trial("t-a")
t.data.add_obs("depth", np.arange(40, dtype=float))
t.data.uns["note"] = "rewritten by a killed save"
t.save()
"""


def main(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    exp = zs.create_experiment(path, exp_id="RL101", config=CONFIG)
    a = trial(1)
    a.layers["dFF"] = zs.normalize_dff(a.X, normalize_pct=20)
    exp.add_trial("t-a", a)
    exp.add_trial("t-b", trial(2))
    os.remove(os.path.join(path, "trials/t-b/X/c/0/0"))
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, path])
    assert done.returncode == -signal.SIGKILL, done
    os.makedirs(os.path.join(path, "trials/t-c"))
    with open(os.path.join(path, "trials/t-c/zarr.json"), "w") as f:
        f.write('{"zarr_format": 3, "node_type": "group", "attributes": {}}')


if __name__ == "__main__":
    main(sys.argv[1])
