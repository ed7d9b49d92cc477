"""Pictures, checked by content: stored ROI IDs on axes, experiment and trial in titles,
units on axes, categorical legends outside the data, and missing IDs refused."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zstore as zs
import zstore.synthetic as syn
from zstore.cli import main
from zstore.errors import RoiNotFoundError

pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    # zstore's plots are pyplot figures (so notebooks show them); close each test's, as a
    # user would, or matplotlib warns after 20 open figures.
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same run ingested twice: cells only (the default: IDs with gaps) and all ROIs."""
    root = tmp_path_factory.mktemp("plots")
    plane, paqs = syn.write_suite2p_run(root / "run", n_rois=30, frames_per_file=[900], seed=2)
    out = {}
    for name, cells_only in (("cells", True), ("all", False)):
        path = root / f"{name}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", zs.ZstoreWarning)
            exp = zs.ingest_suite2p(plane, path, paq=paqs, exp_id="RL109", cells_only=cells_only)
        zs.compute_dff(zs.open_experiment(path, mode="r+"), layer="dFF", normalize_pct=20)
        assert exp.trialIDs == ["t-000"]
        out[name] = path
    return out


@pytest.fixture(scope="module")
def trial(stores: dict[str, Path]) -> Any:
    return zs.open_experiment(stores["cells"]).load_trial("t-000")


def _gap(ids: list[str]) -> int:
    """A Suite2p ROI index inside the stored range that is not stored (a dropped non-cell)."""
    numbers = sorted(int(i) for i in ids)
    return next(i for i in range(numbers[0], numbers[-1]) if i not in numbers)


def _drawn(ax: Any) -> None:
    ax.figure.canvas.draw()  # lays out the legends (constrained layout) before bboxes


def _outside(ax: Any, legend: Any) -> bool:
    _drawn(ax)
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    return bool(box.x0 >= axes_box.x1 or box.y0 >= axes_box.y1 or box.x1 <= axes_box.x0)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("rois", ["--color-by", "npix"]),
        ("raster", []),
        ("traces", ["--roi", "0", "--roi", "3", "--channel", "running", "--channel", "stim"]),
    ],
)
def test_cli_plots(
    stores: dict[str, Path],
    tmp_path: Path,
    kind: str,
    extra: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / f"{kind}.png"
    argv = ["plot", str(stores["cells"]), "--trial", "t-000", "--kind", kind, "--out", str(out)]
    assert main([*argv, *extra]) == 0, capsys.readouterr().err
    image = mpimg.imread(out)
    assert image.shape[0] >= 400 and image.shape[1] >= 800
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, "not blank"
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50, "more than a few flat colours"


def test_cli_refuses_a_roi_that_is_not_stored(
    stores: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = list(zs.open_experiment(stores["cells"]).load_trial("t-000").data.obs_names)
    gap = _gap(ids)
    out = tmp_path / "traces.png"
    argv = ["plot", str(stores["cells"]), "--trial", "t-000", "--kind", "traces"]
    assert main([*argv, "--roi", str(gap), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    below = max(i for i in map(int, ids) if i < gap)
    above = min(i for i in map(int, ids) if i > gap)
    assert f"ROI {gap} is not stored in trial 't-000' of 'RL109'" in err
    assert f"nearest stored IDs: {below}, {above}" in err
    assert not out.exists(), "nothing drawn"


def test_titles_name_experiment_trial_and_quantity(trial: Any) -> None:
    n = trial.data.n_obs
    raster = zs.plot.plot_raster(trial)
    assert raster.get_title() == f"RL109 · t-000 · dF/F: {n} ROIs × 900 frames"
    masks = zs.plot.plot_rois(trial)
    assert masks.get_title() == "RL109 · t-000 · ROIs coloured by iscell_prob"
    fig = zs.plot.plot_traces(trial, [0, 3])
    assert fig.axes[0].get_title() == "RL109 · t-000 · dF/F (%) · ROIs 0, 3"
    raw = zs.plot.plot_raster(trial, layer=None)
    assert raw.get_title().startswith("RL109 · t-000 · F: ")


def test_raster_rows_are_labelled_by_stored_id_with_integer_ticks(trial: Any) -> None:
    ids = [str(i) for i in trial.data.obs_names]
    assert ids != [str(i) for i in range(len(ids))], "the fixture's IDs have gaps"
    ax = zs.plot.plot_raster(trial)
    ticks = ax.get_yticks()
    assert np.array_equal(ticks, np.round(ticks)), "no fractional ROI ticks"
    assert [t.get_text() for t in ax.get_yticklabels()] == [ids[int(t)] for t in ticks]
    assert [t.get_text() for t in ax.get_yticklabels()] == ids  # few ROIs: every one
    assert ax.get_ylabel() == "ROI (stored ID)"
    np.testing.assert_allclose(  # row k of the image is ROI ids[k]
        ax.images[0].get_array()[2],
        trial.data.layers["dFF"][2].compute(),
        rtol=1e-5,
    )
    picked = zs.plot.plot_raster(trial, rois=[ids[3], int(ids[1])])
    assert [t.get_text() for t in picked.get_yticklabels()] == [ids[3], ids[1]]


def test_axes_carry_units(trial: Any) -> None:
    raster = zs.plot.plot_raster(trial)
    assert raster.get_xlabel() == "time (s)"
    colorbar = raster.figure.axes[1]
    assert colorbar.get_ylabel() == "dF/F (%)"
    raw = zs.plot.plot_raster(trial, layer=None)
    assert raw.figure.axes[1].get_ylabel() == "F (a.u.)"
    fig = zs.plot.plot_traces(trial, [0], channels=["running", "stim"])
    assert fig.axes[0].get_ylabel() == "ROI (stored ID); dF/F (%)"
    assert [ax.get_ylabel() for ax in fig.axes[1:]] == ["running (cm/s)", "stim (V)"]
    assert fig.axes[-1].get_xlabel() == "time (s)"
    assert any(t.get_text().endswith(" %") for t in fig.axes[0].texts), "a scale bar in %"


def test_an_id_draws_that_rois_stored_trace(trial: Any) -> None:
    ids = [str(i) for i in trial.data.obs_names]
    # an ID whose row position is another stored ID: a position mix-up draws the wrong ROI
    roi = next(i for k, i in enumerate(ids) if int(i) != k and str(k) in ids)
    fig = zs.plot.plot_traces(trial, [int(roi), ids[0]])
    lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("ROI")]
    assert [line.get_label() for line in lines] == [f"ROI {roi}", f"ROI {ids[0]}"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [roi, ids[0]]
    dff = trial.data.layers["dFF"]
    stored = dff[ids.index(roi)].compute().astype(np.float64)
    offset = lines[0].get_ydata() - stored
    np.testing.assert_allclose(offset, offset[0], atol=1e-3)  # the trace, shifted
    wrong = dff[int(roi)].compute().astype(np.float64)  # the row at position `roi`
    assert not np.allclose(lines[0].get_ydata() - wrong, (lines[0].get_ydata() - wrong)[0])
    by_position = zs.plot.plot_traces(trial, iloc=[int(roi)])  # positions only when asked
    assert by_position.axes[0].get_lines()[0].get_label() == f"ROI {ids[int(roi)]}"


def test_a_missing_id_is_an_error_naming_the_nearest(trial: Any) -> None:
    ids = list(trial.data.obs_names)
    gap = _gap(ids)
    below = max(i for i in map(int, ids) if i < gap)
    above = min(i for i in map(int, ids) if i > gap)
    expected = (
        rf"ROI {gap} is not stored in trial 't-000' of 'RL109' \(non-cells are dropped at "
        rf"ingest, so stored IDs have gaps\); nearest stored IDs: {below}, {above}"
    )
    for draw in (
        lambda: zs.plot.plot_traces(trial, [gap]),
        lambda: zs.plot.plot_traces(trial, [str(gap)]),
        lambda: zs.plot.plot_raster(trial, rois=[gap]),
        lambda: zs.plot.plot_rois(trial, rois=gap),
    ):
        with pytest.raises(RoiNotFoundError, match=expected):
            draw()
    windows = zs.event_windows(trial, [5.0, 15.0], before=0.5, after=1.0)
    with pytest.raises(RoiNotFoundError, match=rf"ROI {gap} is not stored in the windows"):
        zs.plot.plot_event_average(windows, [gap])
    with pytest.raises(RoiNotFoundError, match=expected):
        zs.event_windows(trial, [5.0], before=0.5, after=1.0, rois=[gap])


def test_boolean_columns_get_a_category_legend_outside(stores: dict[str, Path]) -> None:
    trial = zs.open_experiment(stores["all"]).load_trial("t-000")
    cells = int(trial.data.obs["iscell"].sum())
    assert 0 < cells < trial.data.n_obs, "the fixture has cells and non-cells"
    ax = zs.plot.plot_rois(trial, color_by="iscell")
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "iscell"
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [f"yes ({cells})", f"no ({trial.data.n_obs - cells})"]
    assert len(ax.figure.axes) == 1, "no continuous colour bar for a yes/no column"
    assert _outside(ax, legend)
    numeric = zs.plot.plot_rois(trial, color_by="iscell_prob")
    assert numeric.get_legend() is None and len(numeric.figure.axes) == 2  # a colour bar
    assert numeric.figure.axes[1].get_ylabel() == "iscell_prob"
    texts = {t.get_text() for t in numeric.texts}
    assert texts == {str(i) for i in trial.data.obs_names}, "every mask labelled by its ID"


def test_event_average_legend_sits_outside_and_names_ids(trial: Any) -> None:
    ids = [str(i) for i in trial.data.obs_names]
    onsets = zs.events_from_channel(trial, "stim", threshold=2.5)
    windows = zs.event_windows(trial, onsets, before=0.5, after=1.0)
    assert windows.attrs["units"] == "%" and windows.attrs["experiment"] == "RL109"
    ax = zs.plot.plot_event_average(windows, [int(ids[4]), ids[1]])
    assert ax.get_title() == f"RL109 · t-000 · dF/F around {len(onsets)} events"
    assert ax.get_ylabel() == "dF/F (%), mean ± SEM"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"ROI {ids[4]}", f"ROI {ids[1]}"]
    assert _outside(ax, legend)
    heat = zs.plot.plot_event_average(windows, kind="heatmap")
    assert [t.get_text() for t in heat.get_yticklabels()] == ids
    assert np.array_equal(heat.get_yticks(), np.arange(len(ids)))


def test_event_windows_take_ids(trial: Any) -> None:
    ids = [str(i) for i in trial.data.obs_names]
    every = zs.event_windows(trial, [5.0, 15.0], before=0.5, after=1.0)
    some = zs.event_windows(trial, [5.0, 15.0], before=0.5, after=1.0, rois=[int(ids[5]), ids[2]])
    assert some["roi"].values.tolist() == [ids[5], ids[2]]
    np.testing.assert_array_equal(some.values, every.sel(roi=[ids[5], ids[2]]).values)
    by_position = zs.event_windows(trial, [5.0], before=0.5, after=1.0, iloc=[5])
    assert by_position["roi"].values.tolist() == [ids[5]]


def test_plot_errors_name_the_fix(trial: Any) -> None:
    data = trial.data
    with pytest.raises(KeyError, match="obs has no column 'nope'"):
        zs.plot.plot_rois(data, color_by="nope")
    with pytest.raises(KeyError, match="no layer 'dFF2'"):
        zs.plot.plot_raster(data, layer="dFF2")
    with pytest.raises(KeyError, match=r"var has no channels \['nope'\]"):
        zs.plot.plot_traces(data, channels=["nope"])
    with pytest.raises(TypeError, match="not both"):
        zs.plot.plot_traces(data, [0], iloc=[0])
    with pytest.raises(IndexError, match="outside the"):
        zs.plot.plot_traces(data, iloc=[data.n_obs])


def test_cli_explains_that_ids_are_whole_numbers(
    stores: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "traces.png"
    argv = ["plot", str(stores["cells"]), "--trial", "t-000", "--kind", "traces", "--out", str(out)]
    assert main([*argv, "--roi", "0.0"]) == 1
    err = capsys.readouterr().err
    assert "ROI '0.0' is not stored in trial 't-000' of 'RL109': ROI IDs are whole numbers" in err
    assert "not 0.0 (pass 0)" in err and "nearest" not in err
    assert main([*argv, "--roi", "-1"]) == 1
    ids = sorted(
        int(i) for i in zs.open_experiment(stores["cells"]).load_trial("t-000").data.obs_names
    )
    assert f"nearest stored IDs: {ids[0]}, {ids[1]}" in capsys.readouterr().err
    assert not out.exists()


# -- plot_rois: missing values, overlapping masks ------------------------------------------


def _masks_data(columns: dict[str, Any], squares: list[tuple[int, int, int, int]]) -> Any:
    """An AnnotatedData whose ROI ``k`` is the rectangle ``squares[k]`` = (y0, y1, x0, x1)."""
    import pandas as pd

    from zstore.ragged import RaggedArray

    n = len(squares)
    obs = pd.DataFrame(columns, index=[str(10 + 3 * k) for k in range(n)])
    image = np.random.default_rng(0).random((40, 40)).astype("float32")
    data = zs.AnnotatedData(
        np.ones((n, 5), dtype="float32"), obs=obs, uns={"suite2p": {"meanImg": image}}
    )
    grids = [np.mgrid[y0:y1, x0:x1].reshape(2, -1) for y0, y1, x0, x1 in squares]
    data.obsm["ypix"] = RaggedArray.from_arrays([g[0] for g in grids], dtype="int16")
    data.obsm["xpix"] = RaggedArray.from_arrays([g[1] for g in grids], dtype="int16")
    return data


SEPARATE = [
    (2 + 6 * (k // 5), 6 + 6 * (k // 5), 2 + 7 * (k % 5), 6 + 7 * (k % 5)) for k in range(15)
]


def _fill_rgb(ax: Any, y: int, x: int) -> tuple[float, ...]:
    overlay = ax.get_images()[1].get_array()  # [0] is the mean image
    return tuple(np.round(np.asarray(overlay[y, x, :3], dtype=float), 3))


def test_a_nullable_boolean_with_na_has_a_missing_category() -> None:
    import pandas as pd

    flags = pd.array([True, False, None] * 5, dtype="boolean")
    data = _masks_data({"responsive": flags}, SEPARATE)
    ax = zs.plot.plot_rois(data, color_by="responsive")
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["yes (5)", "no (5)", "missing (5)"]
    assert len(ax.figure.axes) == 1
    grey = tuple(np.round(zs.plot.MISSING_COLOUR[:3], 3))
    y0, _, x0, _ = SEPARATE[2]  # ROI 2 is NA
    assert _fill_rgb(ax, y0 + 1, x0 + 1) == grey
    y0, _, x0, _ = SEPARATE[1]  # ROI 1 is False: not drawn as missing, nor missing as False
    assert _fill_rgb(ax, y0 + 1, x0 + 1) != grey


def test_nan_in_a_numeric_column_is_grey_and_counted() -> None:
    values = np.arange(15, dtype=float)
    values[[0, 4, 8]] = np.nan
    data = _masks_data({"snr": values, "empty": np.full(15, np.nan)}, SEPARATE)
    ax = zs.plot.plot_rois(data, color_by="snr")
    assert len(ax.figure.axes) == 2 and ax.figure.axes[1].get_ylabel() == "snr"  # colour bar
    legend = ax.figure.axes[1].get_legend()  # under the colour bar
    assert [t.get_text() for t in legend.get_texts()] == ["missing (3)"]
    grey = tuple(np.round(zs.plot.MISSING_COLOUR[:3], 3))
    y0, _, x0, _ = SEPARATE[4]
    assert _fill_rgb(ax, y0 + 1, x0 + 1) == grey, "not black"
    y0, _, x0, _ = SEPARATE[5]
    assert _fill_rgb(ax, y0 + 1, x0 + 1) != grey
    _drawn(ax)
    figure_box = ax.figure.bbox
    box = legend.get_window_extent()
    assert box.x1 <= figure_box.x1 and box.y0 >= figure_box.y0, "inside the picture"
    nothing = zs.plot.plot_rois(data, color_by="empty")  # no scale to draw: a legend says so
    assert len(nothing.figure.axes) == 1
    assert [t.get_text() for t in nothing.get_legend().get_texts()] == ["missing (15)"]


def test_every_legend_and_label_fits_in_the_figure() -> None:
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    flags = pd.array([True, False, None] * 5, dtype="boolean")
    ax = zs.plot.plot_rois(_masks_data({"responsive": flags}, SEPARATE), color_by="responsive")
    FigureCanvasAgg(ax.figure).draw()
    tight = ax.figure.get_tightbbox(ax.figure.canvas.get_renderer())
    width, height = ax.figure.get_size_inches()
    assert tight.x0 >= 0 and tight.y0 >= 0 and tight.x1 <= width and tight.y1 <= height


def test_overlapping_masks_all_stay_visible_and_labels_sit_on_their_own_mask() -> None:
    from matplotlib.collections import LineCollection

    # ROI '10' (row 0) lies inside '13' (row 1), drawn after it; '16' overlaps the right of '13'
    squares = [(10, 14, 10, 14), (6, 18, 6, 18), (8, 16, 15, 24)]
    data = _masks_data({"kind": ["small", "big", "side"]}, squares)
    ax = zs.plot.plot_rois(data, color_by="kind")
    overlay = np.asarray(ax.get_images()[1].get_array(), dtype=float)
    alpha = overlay[..., 3]
    only_big, small_in_big, big_and_side = alpha[7, 7], alpha[12, 12], alpha[12, 16]
    assert only_big == pytest.approx(zs.plot.FILL_ALPHA)
    assert small_in_big > only_big and big_and_side > only_big, "overlaps compose, darker"
    colours = {
        label: _fill_rgb(ax, y, x)
        for label, (y, x) in {
            "small": (12, 12),
            "big": (7, 7),
            "side": (9, 22),
            "big+side": (12, 16),
        }.items()
    }
    assert len(set(colours.values())) == 4, "an overlap shows a mix, not the last mask's colour"
    # every outline is drawn above every fill, the hidden mask's whole outline included
    (outlines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert outlines.get_zorder() > max(image.get_zorder() for image in ax.get_images())
    segments = {tuple(map(tuple, np.round(s, 2))) for s in outlines.get_segments()}
    small_box = {((9.5, 9.5), (13.5, 9.5)), ((9.5, 13.5), (13.5, 13.5)),
                 ((9.5, 9.5), (9.5, 13.5)), ((13.5, 9.5), (13.5, 13.5))}  # fmt: skip
    assert small_box <= segments, "the mask under another is outlined"
    assert len(segments) == 4 + 4 + 4, "each rectangle: four merged edges"
    # each ID on its own mask: where no other mask covers it, else (hidden) inside it
    labels = {t.get_text(): t.get_position() for t in ax.texts}
    assert set(labels) == {"10", "13", "16"}
    cover = np.zeros((40, 40), dtype=int)
    for y0, y1, x0, x1 in squares:
        cover[y0:y1, x0:x1] += 1
    for name, (y0, y1, x0, x1) in zip(["10", "13", "16"], squares, strict=True):
        x, y = labels[name]
        assert y0 <= y < y1 and x0 <= x < x1, f"label {name} on its mask"
        if name != "10":
            assert cover[int(y), int(x)] == 1, f"label {name} where only its mask is"
    assert labels["13"] != labels["10"]
