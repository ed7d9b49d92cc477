"""The zstore demo: the imaging tutorial's flow on a synthetic experiment of 3 trials,
then a collection of 2 sessions x 2 planes.

Writes a synthetic Suite2p run (with one .paq per trial), ingests it into a local
store, then does what the tutorial does: load a trial, print it, add and save dF/F
lazily, look at obs, the pixel masks and var, concatenate the trials, and export
plain anndata and NWB copies. Then ingests two sessions of a two-plane run into one
collection and prints its trial table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import shutil
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

import zstore as zs
import zstore.synthetic as syn


def step(title: str) -> None:
    print(f"\n=== {title}")


# The warning zstore gives when a paq has more frame-clock edges than the trial has frames.
EXTRA_EDGES = r"(\S+\.paq): (\d+) frame clock edges for (\d+) imaging frames"


@contextlib.contextmanager
def extra_edges_expected(found: list[re.Match[str]]) -> Iterator[None]:
    """Collect zstore's warning about extra frame-clock edges into ``found``.

    The synthetic paq files carry a few trailing frame-clock pulses on purpose (as real
    rigs do): that warning is expected here, and the demo explains it instead of
    showing it. Every other warning is shown as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=EXTRA_EDGES, category=zs.ZstoreWarning)
        yield
    for w in caught:
        match = re.match(EXTRA_EDGES, str(w.message))
        if match and issubclass(w.category, zs.ZstoreWarning):
            found.append(match)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir", default="demo-data", help="folder for the run and the store (default demo-data)"
    )
    parser.add_argument(
        "--rois", type=int, default=800, help="ROIs in the run; ~80%% are cells (default 800)"
    )
    parser.add_argument(
        "--frames", type=int, default=16368, help="frames per trial (default 16368)"
    )
    parser.add_argument("--trials", type=int, default=3, help="trials, one file each (default 3)")
    args = parser.parse_args()
    pd.set_option("display.width", 120)
    pd.set_option("display.max_columns", 8)
    np.set_printoptions(threshold=12, edgeitems=4)

    root = Path(args.dir)
    shutil.rmtree(root / "RL109", ignore_errors=True)
    store = root / "RL109.zarr"
    t_start = time.perf_counter()
    step(f"a synthetic Suite2p run: {args.rois} ROIs, {args.trials} trials of {args.frames} frames")
    plane, paqs = syn.write_suite2p_run(
        root / "RL109", n_rois=args.rois, frames_per_file=[args.frames] * args.trials, seed=7
    )
    print(f"plane folder {plane}; paq files {[p.name for p in paqs.values()]}")

    step("ingest: zs.ingest_suite2p(plane, store, paq=paqs)")
    t0 = time.perf_counter()
    extra: list[re.Match[str]] = []
    with extra_edges_expected(extra):
        exp = zs.ingest_suite2p(plane, store, paq=paqs, overwrite=True)
    print(f"{store} written in {time.perf_counter() - t0:.1f} s")
    if extra:
        counts = ", ".join(f"{m[1]} has {m[2]} edges for {m[3]} frames" for m in extra)
        note = (
            f"note: the synthetic paq files carry extra frame-clock edges on purpose, as "
            f"real rigs give a few trailing pulses ({counts}). zstore kept the first edges "
            f"of each paq, one per imaging frame, as the trial's frame times (var index and "
            f"'time') and dropped the extra ones, with a warning per trial that the demo "
            f"expects and leaves out."
        )
        print(textwrap.fill(note, width=100, subsequent_indent="      "))
    print(f">>> print(exp.ingest_summary)\n{exp.ingest_summary}")

    step("open the experiment and load a trial (lazy: metadata, obs and var only)")
    exp = zs.open_experiment(store, mode="r+")
    print(f"exp.expID = {exp.expID!r}\nexp.trialIDs = {exp.trialIDs}")
    trial = exp.load_trial(exp.trialIDs[-1])
    print(f">>> trial.data\n{trial.data!r}\n>>> print(trial.data)\n{trial.data}")
    print(f">>> trial.data.X.shape\n{trial.data.X.shape}\n>>> trial.data.X\n{trial.data.X!r}")

    step("dF/F, lazily, then saved: add_layer computes nothing, save() streams it")
    dff = zs.normalize_dff(trial.data.X, normalize_pct=50)
    trial.data.add_layer(layer_name="dFF", data=dff)
    t0 = time.perf_counter()
    print(f"trial.save() -> {trial.save()} in {time.perf_counter() - t0:.1f} s")
    print(f">>> trial.data.layers\n{list(trial.data.layers)}")
    print(f">>> trial.data.uns['processing']['dFF']\n{trial.data.uns['processing']['dFF']}")

    step("ROIs, masks and frames")
    print(f">>> trial.data.obs\n{trial.data.obs}")
    print(f">>> trial.data.obsm['ypix'][:5]\n{trial.data.obsm['ypix'][:5]}")
    print(f">>> trial.data.var\n{trial.data.var}")

    step("every trial at once")
    t0 = time.perf_counter()
    done = zs.compute_dff(exp, layer="dFF", normalize_pct=50, overwrite=True)
    print(
        f"zs.compute_dff(exp, layer='dFF', normalize_pct=50) -> {done} in {time.perf_counter() - t0:.1f} s"
    )
    allf = exp.concat(layer="dFF")
    print(f">>> exp.concat(layer='dFF')\n{allf!r}")
    mean = allf.X.mean(axis=1).compute()
    print(f"mean dF/F per ROI over all {allf.n_vars} frames: first five {mean[:5].round(2)}")

    step("every write is a version: exp.history(), and earlier versions stay readable")
    for commit in exp.history()[:5]:
        print(commit)
    first = exp.trialIDs[0]
    before = exp.history()[len(done)].version  # the version before compute_dff's commits
    old = zs.open_experiment(store, version=before)
    print(f">>> list(exp.load_trial({first!r}).data.layers)")
    print(list(exp.load_trial(first).data.layers))
    print(
        f">>> list(zs.open_experiment(store, version={before!r}).load_trial({first!r}).data.layers)"
    )
    print(list(old.load_trial(first).data.layers))

    step("sharing: plain anndata and NWB copies, read back without zstore")
    h5ad = root / f"{first}.h5ad"
    h5ad.unlink(missing_ok=True)
    zs.export(exp, h5ad, trial=first)
    back = anndata.read_h5ad(h5ad)
    print(f"zs.export(exp, {str(h5ad)!r}, trial={first!r}); anndata.read_h5ad -> {back.shape}, "
          f"layers {list(back.layers)}, masks {type(back.obsm['ypix']).__name__}")  # fmt: skip
    if importlib.util.find_spec("pynwb") is None:
        print("NWB: pip install 'zstore[nwb]', then zs.export_nwb(exp, 'RL109.nwb', ...)")
    else:
        import pynwb

        nwb = root / "RL109.nwb"
        nwb.unlink(missing_ok=True)
        t0 = time.perf_counter()
        zs.export_nwb(exp, nwb, session_start_time="2024-05-01T10:00:00+00:00", subject="RL109")
        with pynwb.NWBHDF5IO(str(nwb), "r") as io:
            f = io.read()
            rois = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
            series = list(f.processing["ophys"]["Fluorescence"].roi_response_series)
            print(f"zs.export_nwb(exp, {str(nwb)!r}, ...) in {time.perf_counter() - t0:.1f} s; "
                  f"pynwb reads {len(rois)} ROIs, Fluorescence {series}, {len(f.trials)} trials")  # fmt: skip

    step("many sessions and planes: a collection (2 sessions x 2 planes), one table")
    lab = root / "lab.zarr"
    shutil.rmtree(lab, ignore_errors=True)
    for day, session in enumerate(["2024-05-01", "2024-05-02"]):
        run = syn.write_suite2p_planes(
            root / "RL109" / session, n_planes=2, n_rois=args.rois // 4,
            frames_per_file=[args.frames // 4] * 2, seed=20 + day,
        )  # fmt: skip
        col = zs.ingest_suite2p(run, lab, subject="RL109", session=session)
        print(f"zs.ingest_suite2p({run}, {lab}, subject='RL109', session={session!r})")
    assert isinstance(col, zs.Collection)
    print(f">>> col.experimentIDs\n{col.experimentIDs}")
    columns = ["experiment", "plane", "trial", "n_rois", "n_frames", "start_s", "duration_s"]
    print(f">>> col.table()\n{col.table()[columns]}")
    done = zs.compute_dff(col, where="plane == 0", normalize_pct=20)
    print(f">>> zs.compute_dff(col, where='plane == 0', normalize_pct=20)\n{done}")
    print(
        f"\ndemo finished in {time.perf_counter() - t_start:.1f} s; inspect it with: "
        f"zstore info {store}, zstore info {lab}"
    )


if __name__ == "__main__":
    main()
