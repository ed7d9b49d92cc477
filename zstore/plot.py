"""Pictures of a trial: ROI masks over the mean image, a dF/F raster, aligned traces,
and the event-aligned average of :func:`zstore.event_windows`.

Needs matplotlib (``pip install "zstore[plot]"``). Each function takes an
AnnotatedData (``trial.data``) and draws on ``ax`` (a new figure when omitted); the
raster is downsampled lazily, so a 100k-frame trial draws from the store in seconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from .errors import emit_user_warning

__all__ = ["plot_event_average", "plot_raster", "plot_rois", "plot_traces"]


def _matplotlib() -> Any:
    try:
        import matplotlib
        import matplotlib.colors
        import matplotlib.figure
    except ImportError:
        raise ImportError(
            "zstore.plot needs matplotlib: pip install 'zstore[plot]' (or matplotlib)"
        ) from None
    return matplotlib


def _figure(figsize: tuple[float, float]) -> Any:
    """A new figure: through pyplot in an interactive session (so it shows), else a
    plain ``Figure`` (no backend is chosen or changed: ``figure.savefig`` works)."""
    mpl = _matplotlib()
    if _interactive():
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    return mpl.figure.Figure(figsize=figsize, layout="constrained")


def _interactive() -> bool:
    import sys

    return "IPython" in sys.modules or bool(getattr(sys, "ps1", None))


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    return _figure(figsize).add_subplot()


def plot_rois(
    data: Any,
    *,
    color_by: str = "iscell_prob",
    image: str = "meanImg",
    cmap: str = "viridis",
    ax: Any = None,
) -> Any:
    """ROI masks over the mean image, coloured by an obs column.

    Examples
    --------
    >>> import icechunk, tempfile, zstore as zs, zstore.synthetic as syn
    >>> plane = syn.write_suite2p_plane(tempfile.mkdtemp(), n_rois=12, frames_per_file=[50])
    >>> trial = zs.ingest_suite2p(plane, icechunk.in_memory_storage()).load_trial("t-000")
    >>> ax = zs.plot.plot_rois(trial.data, color_by="npix")
    >>> ax.get_title()
    'ROIs coloured by npix'
    """
    mpl = _matplotlib()
    if color_by not in data.obs:
        raise KeyError(f"obs has no column {color_by!r}; its columns are {list(data.obs.columns)}")
    suite2p = data.uns.get("suite2p", {})
    if image not in suite2p:
        raise KeyError(f"uns['suite2p'] has no {image!r} image; it has {sorted(suite2p)}")
    background = np.asarray(suite2p[image], dtype=np.float32)
    for key in ("ypix", "xpix"):
        if key not in data.obsm:
            raise KeyError(f"obsm has no {key!r}: the trial holds no pixel masks")
    ax = _axes(ax, (6, 6))
    lo, hi = np.percentile(background, [1, 99.5])
    ax.imshow(background, cmap="gray", vmin=lo, vmax=hi)
    values = np.asarray(data.obs[color_by], dtype=np.float64)
    finite = values[np.isfinite(values)]
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    colours = mpl.colormaps[cmap](norm(values))
    overlay = np.zeros((*background.shape, 4), dtype=np.float32)
    for ypix, xpix, colour in zip(data.obsm["ypix"], data.obsm["xpix"], colours, strict=True):
        inside = (
            (ypix >= 0) & (ypix < background.shape[0]) & (xpix >= 0) & (xpix < background.shape[1])
        )
        overlay[ypix[inside], xpix[inside]] = (*colour[:3], 0.6)
    ax.imshow(overlay)
    ax.figure.colorbar(
        mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=color_by, shrink=0.8
    )
    ax.set_title(f"ROIs coloured by {color_by}")
    ax.set_axis_off()
    return ax


def plot_raster(
    data: Any,
    *,
    layer: str | None = "dFF",
    max_frames: int = 2000,
    vmax: float | None = None,
    ax: Any = None,
) -> Any:
    """All ROIs x frames as an image, frames averaged in bins to at most ``max_frames``.

    The binning runs on the dask array, so only the binned image is held in memory.

    Examples
    --------
    >>> import icechunk, numpy as np, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> F = np.random.default_rng(0).gamma(2, 50, (8, 5000)).astype("float32") + 100
    >>> _ = exp.add_trial("t", zs.AnnotatedData(F))
    >>> ax = zs.plot.plot_raster(exp.load_trial("t").data, layer=None, max_frames=500)
    >>> ax.get_title()
    'X: 8 ROIs x 5000 frames (bins of 10)'
    """
    values = _matrix(data, layer)
    n_rois, n_frames = values.shape
    factor = max(1, int(np.ceil(n_frames / max_frames)))
    if isinstance(values, da.Array):
        usable = (n_frames // factor) * factor
        binned = da.coarsen(np.nanmean, values[:, :usable], {1: factor}, trim_excess=True).compute()
    else:
        usable = (n_frames // factor) * factor
        binned = np.nanmean(np.asarray(values)[:, :usable].reshape(n_rois, -1, factor), axis=2)
    ax = _axes(ax, (9, 5))
    finite = binned[np.isfinite(binned)]
    top = vmax if vmax is not None else (float(np.percentile(finite, 99)) if len(finite) else 1.0)
    times = data.var["time"].to_numpy() if "time" in data.var else np.arange(n_frames)
    extent = (float(times[0]), float(times[max(usable - 1, 0)]), n_rois - 0.5, -0.5)
    image = ax.imshow(
        binned,
        aspect="auto",
        cmap="magma",
        vmin=0,
        vmax=top,
        interpolation="nearest",
        extent=extent,
    )
    ax.figure.colorbar(image, ax=ax, label=layer or "X")
    ax.set_xlabel("time (s)" if "time" in data.var else "frame")
    ax.set_ylabel("ROI")
    ax.set_title(
        f"{layer or 'X'}: {n_rois} ROIs x {n_frames} frames"
        + (f" (bins of {factor})" if factor > 1 else "")
    )
    return ax


def plot_traces(
    data: Any,
    rois: Sequence[Any] | None = None,
    *,
    layer: str | None = "dFF",
    channels: Sequence[str] = (),
    fig: Any = None,
) -> Any:
    """Traces of chosen ROIs, with paq channels below on the same time axis.

    ``rois`` are obs names (Suite2p ROI indices as strings) or row positions; default:
    the first five. Returns the figure.

    Examples
    --------
    >>> import numpy as np, pandas as pd, zstore as zs
    >>> F = np.random.default_rng(0).gamma(2, 50, (4, 300)).astype("float32")
    >>> var = pd.DataFrame({"time": np.arange(300) / 30, "running": np.linspace(0, 1, 300)})
    >>> adata = zs.AnnotatedData(F, var=var.set_index(var.index.astype(str)))
    >>> fig = zs.plot.plot_traces(adata, [0, 2], layer=None, channels=["running"])
    >>> len(fig.axes)
    2
    """
    values = _matrix(data, layer)
    names = list(data.obs_names)
    chosen = list(rois) if rois is not None else names[:5]
    rows = [names.index(str(r)) if str(r) in names else _position(r, len(names)) for r in chosen]
    missing = [c for c in channels if c not in data.var]
    if missing:
        raise KeyError(f"var has no channels {missing}; its columns are {list(data.var.columns)}")
    traces = values[rows].compute() if isinstance(values, da.Array) else np.asarray(values)[rows]
    times = data.var["time"].to_numpy() if "time" in data.var else np.arange(values.shape[1])
    n_panels = 1 + len(channels)
    if fig is None:
        fig = _figure((10, 3 + 1.2 * len(channels)))
    axes = fig.subplots(
        n_panels, 1, sharex=True, height_ratios=[3] + [1] * len(channels), squeeze=False
    )[:, 0]
    spacing = float(np.nanpercentile(np.abs(traces), 99)) if np.isfinite(traces).any() else 1.0
    for k, (row, trace) in enumerate(zip(rows, traces, strict=True)):
        axes[0].plot(times, trace + k * spacing, lw=0.6, label=f"ROI {names[row]}")
    axes[0].set_ylabel(f"{layer or 'X'} (offset per ROI)")
    axes[0].legend(loc="upper right", fontsize="small", ncols=min(len(rows), 5))
    for ax, channel in zip(axes[1:], channels, strict=True):
        ax.plot(times, data.var[channel].to_numpy(), lw=0.6, color="0.3")
        ax.set_ylabel(channel)
    axes[-1].set_xlabel("time (s)" if "time" in data.var else "frame")
    return fig


def plot_event_average(
    windows: Any,
    rois: Sequence[Any] | None = None,
    *,
    kind: str = "mean",
    ax: Any = None,
) -> Any:
    """The event-aligned average of ``windows`` (from :func:`zstore.event_windows`).

    ``kind="mean"``: mean +- SEM over events against lag, one line per ROI (``rois``: ROI
    IDs, default the first five). ``kind="heatmap"``: the mean over events of every ROI
    (rows, labelled by ROI ID) against lag. Computes the windows (streaming). Returns the
    Axes.

    Examples
    --------
    >>> import icechunk, numpy as np, pandas as pd, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> X = np.random.default_rng(0).gamma(2, 50, (6, 300)).astype("float32")
    >>> var = pd.DataFrame({"time": np.arange(300) / 30}, index=[str(i) for i in range(300)])
    >>> trial = exp.add_trial("t", zs.AnnotatedData(X, var=var, uns={"fs": 30.0}))
    >>> w = zs.event_windows(trial, [2.0, 5.0, 8.0], before=0.5, after=1.0, layer=None)
    >>> zs.plot.plot_event_average(w, ["0", "3"]).get_xlabel()
    'time from event (s)'
    """
    if kind not in ("mean", "heatmap"):
        raise ValueError(f"kind must be 'mean' or 'heatmap', got {kind!r}")
    names = [str(r) for r in windows["roi"].values]
    lag = np.asarray(windows["lag"].values, dtype=np.float64)
    what = str(windows.attrs.get("layer", windows.name or "value"))
    unit = " (%)" if what.lower().startswith("dff") else ""
    n_events = int(windows.sizes["event"])
    ax = _axes(ax, (7, 4) if kind == "mean" else (7, max(3.0, min(12.0, 0.12 * len(names)))))
    if kind == "heatmap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lags stay NaN
            mean = np.asarray(windows.mean("event", skipna=True).values, dtype=np.float64)
        step = (lag[1] - lag[0]) if len(lag) > 1 else 1.0
        finite = np.abs(mean[np.isfinite(mean)])
        top = float(np.percentile(finite, 99)) if finite.size else 1.0
        image = ax.imshow(  # signed values: a diverging map centred on 0
            mean, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-top, vmax=top,
            extent=(lag[0] - step / 2, lag[-1] + step / 2, len(names) - 0.5, -0.5),
        )  # fmt: skip
        ticks = np.unique(np.linspace(0, len(names) - 1, min(len(names), 12)).astype(int))
        ax.set_yticks(ticks, [names[i] for i in ticks])
        ax.set_ylabel("ROI (stored ID)")
        ax.figure.colorbar(image, ax=ax, label=f"mean {what}{unit}")
    else:
        if isinstance(rois, str | int | np.integer):
            rois = [rois]
        chosen = [str(r) for r in rois] if rois is not None else names[:5]
        missing = [r for r in chosen if r not in names]
        if missing:
            raise KeyError(
                f"ROIs {missing} are not in the windows; their ROI IDs are {names[:10]}..."
            )
        picked = windows.sel(roi=chosen)
        values = np.asarray(picked.values, dtype=np.float64)  # event, roi, lag
        count = np.sum(np.isfinite(values), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lags: NaN, said below
            mean = np.nanmean(values, axis=0)
            sem = np.nanstd(values, axis=0, ddof=1) / np.sqrt(count)
        sem[count < 2] = np.nan  # no spread from a single event
        if not np.isfinite(mean).any():
            emit_user_warning(
                f"plot_event_average: every window of ROIs {chosen} is NaN (events at the "
                f"trials' edges, or NaN traces); the plot is empty"
            )
        for k, roi in enumerate(chosen):
            line = ax.plot(lag, mean[k], lw=1.2, label=f"ROI {roi}")[0]
            ax.fill_between(
                lag, mean[k] - sem[k], mean[k] + sem[k], color=line.get_color(), alpha=0.25, lw=0
            )
        ax.set_ylabel(f"{what}{unit}, mean ± SEM")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("time from event (s)")
    trials = sorted({str(t) for t in windows["trial"].values}) if "trial" in windows.coords else []
    where = f" in trial {trials[0]}" if len(trials) == 1 else f" in {len(trials)} trials"
    noun = "event" if n_events == 1 else "events"
    ax.set_title(f"{what} around {n_events} {noun}{where if trials else ''}")
    return ax


def _position(roi: Any, n: int) -> int:
    try:
        row = int(roi)
    except (TypeError, ValueError):
        raise KeyError(f"ROI {roi!r} is neither an obs name nor a row position") from None
    if not 0 <= row < n:
        raise KeyError(f"ROI {roi!r} is not an obs name and is out of range for {n} ROIs")
    return row


def _matrix(data: Any, layer: str | None) -> Any:
    if hasattr(data, "matrix"):
        return data.matrix(layer)
    return data.X if layer is None else data.layers[layer]
