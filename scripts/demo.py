"""The zstore demo: store a synthetic imaging trial, reopen it lazily, print it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import zstore as zs


def synthetic_trial(n_rois: int, n_frames: int, fs: float, seed: int = 0) -> zs.AnnotatedData:
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(200, 800, (n_rois, 1))
    spikes = rng.random((n_rois, n_frames)) < 0.01
    kernel = np.exp(-np.arange(int(2 * fs)) / (0.7 * fs))
    transients = np.stack([np.convolve(s, kernel)[:n_frames] for s in spikes]) * baseline * 0.8
    X = (baseline + transients + rng.normal(0, 15, (n_rois, n_frames))).astype(np.float32)
    obs = pd.DataFrame(
        {"npix": rng.integers(40, 200, n_rois), "iscell": np.ones(n_rois, dtype=bool)},
        index=[str(i) for i in range(n_rois)],
    )
    var = pd.DataFrame({"time": np.arange(n_frames) / fs}, index=[str(i) for i in range(n_frames)])
    return zs.AnnotatedData(X, obs=obs, var=var, uns={"fs": fs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="demo-data/exp.zarr", help="where to write")
    parser.add_argument("--rois", type=int, default=640)
    parser.add_argument("--frames", type=int, default=16368)
    args = parser.parse_args()

    store = Path(args.store)
    print(f"zstore {zs.__version__}: demo store at {store}")
    t0 = time.perf_counter()
    adata = synthetic_trial(args.rois, args.frames, fs=30.0)
    exp = zs.create_experiment(store, exp_id="RL109", overwrite=True)
    exp.add_trial("t-005", adata)
    took = time.perf_counter() - t0
    print(f"stored trial 't-005' ({adata.X.nbytes / 1e6:.0f} MB of X) in {took:.1f} s")

    exp = zs.open_experiment(store)
    print(f"\nexp.expID = {exp.expID!r}; exp.trialIDs = {exp.trialIDs}")
    trial = exp.load_trial("t-005")
    print(f"\n>>> trial.data\n{trial.data!r}\n\n>>> print(trial.data)\n{trial.data}")
    print(f"\n>>> trial.data.X  (lazy: nothing read yet)\n{trial.data.X!r}")
    print(f"\n>>> trial.data.X[:3, :5].compute()\n{trial.data.X[:3, :5].compute()}")


if __name__ == "__main__":
    main()
