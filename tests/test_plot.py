"""Pictures: the three plots from the CLI, written at the expected size and not blank."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plots")
    plane, paqs = syn.write_suite2p_run(root / "run", n_rois=60, frames_per_file=[3000], seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zs.ZstoreWarning)
        exp = zs.ingest_suite2p(plane, root / "e.zarr", paq=paqs)
    zs.compute_dff(zs.open_experiment(root / "e.zarr", mode="r+"), layer="dFF", normalize_pct=20)
    assert exp.trialIDs == ["t-000"]
    return root / "e.zarr"


@pytest.mark.parametrize(
    ("kind", "extra", "size"),
    [
        ("rois", ["--color-by", "npix"], (720, 720)),
        ("raster", [], (1080, 600)),
        (
            "traces",
            ["--roi", "0", "--roi", "3", "--channel", "running", "--channel", "stim"],
            (1200, 648),
        ),
    ],
)
def test_cli_plots(
    store: Path,
    tmp_path: Path,
    kind: str,
    extra: list[str],
    size: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / f"{kind}.png"
    argv = ["plot", str(store), "--trial", "t-000", "--kind", kind, "--out", str(out), *extra]
    assert main(argv) == 0, capsys.readouterr().err
    image = mpimg.imread(out)
    assert (image.shape[1], image.shape[0]) == size
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, "not blank"
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50, "more than a few flat colours"


def test_plot_errors_name_the_fix(store: Path) -> None:
    data = zs.open_experiment(store).load_trial("t-000").data
    with pytest.raises(KeyError, match="obs has no column 'nope'"):
        zs.plot.plot_rois(data, color_by="nope")
    with pytest.raises(KeyError, match="no layer 'dFF2'"):
        zs.plot.plot_raster(data, layer="dFF2")
    with pytest.raises(KeyError, match=r"var has no channels \['nope'\]"):
        zs.plot.plot_traces(data, channels=["nope"])
