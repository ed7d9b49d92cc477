"""Peak memory of streaming writes, measured in a fresh subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Shared by the scripts below: VmHWM is this process's own peak (ru_maxrss after
#: fork+exec starts at the parent's RSS).
PRELUDE = """
import json, sys
import dask.array as da, numpy as np, zstore as zs

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
n_rois, n_frames, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
"""

SCRIPT = (
    PRELUDE
    + """
X = da.random.default_rng(0).standard_normal(
    (n_rois, n_frames), chunks=(256, n_frames), dtype=np.float32
) + 100
exp = zs.create_experiment(path, exp_id="mem")
exp.add_trial("t", zs.AnnotatedData(X))
trial = zs.open_experiment(path).load_trial("t")
first = trial.data.X[:, :1000].compute()
print(json.dumps({"peak_mb": peak_mb(),
                  "shape": list(trial.data.shape), "window": float(first.mean())}))
"""
)


def peak_rss_of_add_trial(tmp_path: Path, n_rois: int, n_frames: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(n_rois), str(n_frames), str(tmp_path / "m.zarr")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_add_trial_from_dask_streams_in_bounded_memory(tmp_path: Path) -> None:
    # 800 MB of X, more than the bound: it holds only if the matrix is streamed.
    result = peak_rss_of_add_trial(tmp_path, 2048, 100_000)
    assert result["shape"] == [2048, 100_000]
    assert abs(result["window"] - 100) < 0.1
    assert result["peak_mb"] < 600, result


@pytest.mark.slow
def test_add_trial_of_1_6_gb_under_600_mb(tmp_path: Path) -> None:
    result = peak_rss_of_add_trial(tmp_path, 4096, 100_000)
    assert result["peak_mb"] < 600, result


DFF_SCRIPT = (
    PRELUDE
    + """
X = da.random.default_rng(1).gamma(2.0, 50.0, (n_rois, n_frames), chunks=(256, n_frames)) + 300
exp = zs.create_experiment(path, exp_id="mem")
exp.add_trial("t", zs.AnnotatedData(X.astype(np.float32)))
writing = peak_mb()  # the source above makes float64 blocks of 200 MB: measure apart
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
zs.compute_dff(zs.open_experiment(path, mode="r+"), layer="dFF", normalize_pct=20)
dff = zs.open_experiment(path).load_trial("t").data.layers["dFF"][:4].compute()
print(json.dumps({"peak_mb": peak_mb(), "add_peak_mb": writing,
                  "finite": bool(np.isfinite(dff).all())}))
"""
)


def test_dff_and_save_stream_in_bounded_memory(tmp_path: Path) -> None:
    # 800 MB of X and 800 MB of dF/F: the bound holds only if both stream.
    out = subprocess.run(
        [sys.executable, "-c", DFF_SCRIPT, "2048", "100000", str(tmp_path / "d.zarr")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["finite"]
    assert result["peak_mb"] < 800, result  # the dF/F and its save, measured alone
