"""Pictures of a trial: ROI masks over the mean image, a dF/F raster, aligned traces,
and the event-aligned average of :func:`zstore.event_windows`.

Needs matplotlib (``pip install "zstore[plot]"``). Each function takes a Trial (its
experiment and trial IDs go into the title) or an AnnotatedData (``trial.data``) and
draws on ``ax`` (a new figure when omitted); the raster is downsampled lazily, so a
100k-frame trial draws from the store in seconds.

ROIs are named by their stored IDs everywhere (Suite2p's ROI indices; non-cells are
dropped at ingest, so the IDs have gaps): ``rois=`` takes IDs (``5`` or ``'5'``), an ID
that is not stored is a :class:`zstore.errors.RoiNotFoundError`, and row positions are
used only when passed as ``iloc=`` (see :mod:`zstore.rois`). Axes carry units: time in
s, dF/F in %, F in a.u.; legends sit outside the data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from .errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
    emit_user_warning,
)
from .rois import resolve_rois
from .validate import choice, finite_number, name_list, positive_int, shown
from .views import layer_quantity

__all__ = ["plot_event_average", "plot_raster", "plot_rois", "plot_traces"]

#: At most this many ROI IDs are written on an axis or over the masks.
MAX_ROI_LABELS = 40
_SEP = " · "


def _matplotlib() -> Any:
    try:
        import matplotlib
        import matplotlib.axes
        import matplotlib.collections
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.patches
        import matplotlib.patheffects
        import matplotlib.transforms
    except ImportError:
        raise ImportError(
            "zstore.plot needs matplotlib: pip install 'zstore[plot]' (or matplotlib)"
        ) from None
    return matplotlib


def check_image_path(path: str, *, what: str = "path") -> None:
    """Refuse, before any work, an image file name whose extension matplotlib cannot
    write (no extension: matplotlib's default format, PNG)."""
    from pathlib import PurePath

    suffix = PurePath(path).suffix.lower().lstrip(".")
    if not suffix:
        return
    _matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if suffix not in formats:
        raise InvalidArgumentError(
            f"{what} {path!r}: matplotlib cannot write .{suffix} images; give a file name "
            f"ending in one of {', '.join('.' + f for f in formats)} (e.g. .png, .pdf, .svg)"
        )


def image_file(path: str) -> str:
    """The file ``figure.savefig(path)`` writes: ``path``, or ``path.png`` when it has no
    extension (matplotlib then writes its default format, PNG, and adds the extension)."""
    from pathlib import PurePath

    return path if PurePath(path).suffix else f"{path}.png"


def _figure(figsize: tuple[float, float], layout: str = "constrained") -> Any:
    """A new figure: through pyplot in an interactive session (so it shows), else a
    plain ``Figure`` (no backend is chosen or changed: ``figure.savefig`` works).
    ``layout="compressed"`` for an image drawn at its aspect ratio."""
    mpl = _matplotlib()
    if _interactive():
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout=layout)
    return mpl.figure.Figure(figsize=figsize, layout=layout)


def _interactive() -> bool:
    import sys

    return "IPython" in sys.modules or bool(getattr(sys, "ps1", None))


def _axes(ax: Any, figsize: tuple[float, float], layout: str = "constrained") -> Any:
    if ax is not None:
        if not isinstance(ax, _matplotlib().axes.Axes):
            raise ArgumentTypeError(
                f"ax must be a matplotlib Axes (or None for a new figure), got {shown(ax)}; "
                f"pass ax=fig.add_subplot()"
            )
        return ax
    return _figure(figsize, layout).add_subplot()


def _text(value: Any, name: str, example: str) -> str:
    """A str argument (a column, image or colormap name)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{name} must be a name (a str), got {shown(value)}; pass {example}"
        )
    return value


def _chosen_rows(chosen: np.ndarray, where: str) -> np.ndarray:
    if not len(chosen):
        raise InvalidArgumentError(
            f"no ROI of {where} is chosen; pass rois=[...] with stored ROI IDs (or iloc=)"
        )
    return chosen


def _source(source: Any) -> tuple[Any, list[str], str]:
    """(data, title parts naming experiment and trial, where-text for errors)."""
    from anndata import AnnData

    from .experiment import Trial

    if not isinstance(source, Trial | AnnData):
        raise ArgumentTypeError(
            f"zstore.plot draws a Trial (exp.load_trial(ID)) or an AnnotatedData "
            f"(trial.data), got {shown(source)}"
        )
    if isinstance(source, Trial):
        exp = getattr(getattr(source, "experiment", None), "expID", None)
        parts = [str(p) for p in (exp, source.trialID) if p is not None]
        where = f"trial {source.trialID!r}" + (f" of {exp!r}" if exp is not None else "")
        return source.data, parts, where
    return source, [], "the data"


def _title(parts: Sequence[str], *rest: str) -> str:
    return _SEP.join([*parts, *rest])


def _with_unit(name: str, unit: str | None) -> str:
    return f"{name} ({unit})" if unit else name


def _time_axis(data: Any) -> tuple[np.ndarray, str]:
    if "time" in data.var:
        return data.var["time"].to_numpy(dtype=np.float64), "time (s)"
    fs = data.uns.get("fs")
    if isinstance(fs, int | float) and not isinstance(fs, bool) and fs > 0:
        return np.arange(data.n_vars) / float(fs), "time (s)"
    return np.arange(data.n_vars, dtype=np.float64), "frame"


def _id_ticks(n: int) -> np.ndarray:
    """Integer row positions to label (all when few): never a fractional tick."""
    if n <= MAX_ROI_LABELS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_ROI_LABELS // 2).round().astype(int))


def _channel_unit(data: Any, channel: str) -> str | None:
    paq = data.uns.get("paq")
    if not isinstance(paq, dict) or "chan_names" not in paq or "units" not in paq:
        return None
    names = [str(n) for n in np.asarray(paq["chan_names"]).tolist()]
    units = [str(u) for u in np.asarray(paq["units"]).tolist()]
    return units[names.index(channel)] if channel in names and len(units) == len(names) else None


def plot_rois(
    source: Any,
    *,
    color_by: str = "iscell_prob",
    rois: Any = None,
    iloc: Any = None,
    image: str = "meanImg",
    cmap: str = "viridis",
    ax: Any = None,
) -> Any:
    """ROI masks over the mean image, coloured by an obs column, each labelled with its
    stored ID (up to ``MAX_ROI_LABELS`` ROIs).

    Numeric columns get a colour bar; boolean, categorical and text columns (``iscell``)
    one colour per category with a legend beside the image. Missing values (NaN, NA,
    None) are grey and counted ("missing (n)": a category of their own, or an entry under
    the colour bar). Each mask is a translucent fill, so overlapping masks show both
    colours, with its outline drawn above every fill, so a mask under another stays
    visible; its ID sits on the part of it no other mask covers. ``rois`` (stored IDs)
    or ``iloc`` (row positions) draw only those ROIs. Returns the Axes.

    Examples
    --------
    >>> import icechunk, tempfile, zstore as zs, zstore.synthetic as syn
    >>> plane = syn.write_suite2p_plane(tempfile.mkdtemp(), n_rois=12, frames_per_file=[50])
    >>> exp = zs.ingest_suite2p(plane, icechunk.in_memory_storage(), exp_id="RL109")
    >>> ax = zs.plot.plot_rois(exp.load_trial("t-000"), color_by="npix")
    >>> ax.get_title()
    'RL109 · t-000 · ROIs coloured by npix'
    """
    mpl = _matplotlib()
    data, parts, where = _source(source)
    _text(color_by, "color_by", "color_by='iscell_prob'")
    _text(image, "image", "image='meanImg'")
    if _text(cmap, "cmap", "cmap='viridis'") not in mpl.colormaps:
        raise InvalidArgumentError(
            f"cmap={cmap!r} is not a matplotlib colormap; pass cmap='viridis' (or another "
            f"name in matplotlib.colormaps)"
        )
    if color_by not in data.obs:
        raise KeyNotFoundError(
            f"obs has no column {color_by!r}; its columns are {list(data.obs.columns)}"
        )
    suite2p = data.uns.get("suite2p", {})
    if image not in suite2p:
        raise KeyNotFoundError(f"uns['suite2p'] has no {image!r} image; it has {sorted(suite2p)}")
    background = np.asarray(suite2p[image], dtype=np.float32)
    for key in ("ypix", "xpix"):
        if key not in data.obsm:
            raise KeyNotFoundError(f"obsm has no {key!r}: the trial holds no pixel masks")
    chosen = resolve_rois(data.obs_names, rois, iloc=iloc, where=where)
    wanted = set(chosen.tolist())
    names = [str(n) for n in data.obs_names]
    ax = _axes(ax, (7, 6), "compressed")
    lo, hi = np.percentile(background, [1, 99.5])
    ax.imshow(background, cmap="gray", vmin=lo, vmax=hi)
    colours = _colours(mpl, data.obs[color_by], cmap)
    masks = [
        (row, *_pixels(ypix, xpix, background.shape))
        for row, (ypix, xpix) in enumerate(zip(data.obsm["ypix"], data.obsm["xpix"], strict=True))
        if row in wanted
    ]
    overlay, cover = _fills([(colours[row], y, x) for row, y, x in masks], background.shape)
    ax.imshow(overlay, interpolation="nearest")
    # Every outline above every fill: a mask under another stays visible by its edge.
    segments, edge_colours = [], []
    for row, ypix, xpix in masks:
        edges = _edge_segments(ypix, xpix)
        segments.append(edges)
        edge_colours.extend([colours[row]] * len(edges))
    if segments:
        outlines = mpl.collections.LineCollection(
            np.concatenate(segments), colors=edge_colours, linewidths=1.0, gid="roi-outlines"
        )
        ax.add_collection(outlines, autolim=False)
    if len(masks) <= MAX_ROI_LABELS:
        outline = [mpl.patheffects.withStroke(linewidth=2, foreground="black")]
        for row, ypix, xpix in masks:
            if not len(ypix):
                continue
            x, y = _label_point(ypix, xpix, cover)
            ax.text(
                x, y, names[row], color="white", fontsize=7, ha="center", va="center",
                path_effects=outline, gid=f"roi-label-{names[row]}",
            )  # fmt: skip
    handles = [
        mpl.patches.Patch(facecolor=c, edgecolor="none", alpha=0.8, label=label)
        for label, c in colours.legend
    ]
    if colours.norm is not None:
        bar = ax.figure.colorbar(
            mpl.cm.ScalarMappable(norm=colours.norm, cmap=cmap), ax=ax, label=color_by, shrink=0.8
        )
        if handles:  # NaN values: grey, counted under the colour bar
            bar.ax.legend(
                handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.03),
                borderaxespad=0.0, frameon=False, fontsize="small", handlelength=1.0,
            )  # fmt: skip
    else:
        ax.legend(
            handles=handles, title=color_by, loc="upper left", bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0, frameon=False,
        )  # fmt: skip
    ax.set_xlim(-0.5, background.shape[1] - 0.5)
    ax.set_ylim(background.shape[0] - 0.5, -0.5)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    shown = "" if len(chosen) == data.n_obs else f" ({len(chosen)} of {data.n_obs} ROIs)"
    ax.set_title(_title(parts, f"ROIs coloured by {color_by}{shown}"))
    return ax


#: Opacity of one mask's fill; where masks overlap, their fills compose ("over").
FILL_ALPHA = 0.4
#: The colour of a ROI whose value is missing (NaN, NA, None).
MISSING_COLOUR = (0.6, 0.6, 0.6, 1.0)


def _pixels(ypix: Any, xpix: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A mask's pixels inside the image, each once."""
    ypix, xpix = np.asarray(ypix, dtype=np.int64), np.asarray(xpix, dtype=np.int64)
    inside = (ypix >= 0) & (ypix < shape[0]) & (xpix >= 0) & (xpix < shape[1])
    flat = np.unique(ypix[inside] * shape[1] + xpix[inside])
    return flat // shape[1], flat % shape[1]


def _fills(
    masks: Sequence[tuple[Any, np.ndarray, np.ndarray]], shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """An RGBA image of every mask's translucent fill composed in turn (so an overlap
    shows both colours, darker), and the number of masks covering each pixel."""
    rgb = np.zeros((*shape[:2], 3), dtype=np.float64)
    alpha = np.zeros(shape[:2], dtype=np.float64)
    cover = np.zeros(shape[:2], dtype=np.int32)
    for colour, ypix, xpix in masks:
        under = alpha[ypix, xpix]
        out = FILL_ALPHA + under * (1 - FILL_ALPHA)
        rgb[ypix, xpix] = (
            np.asarray(colour[:3]) * FILL_ALPHA
            + rgb[ypix, xpix] * (under * (1 - FILL_ALPHA))[:, None]
        ) / out[:, None]
        alpha[ypix, xpix] = out
        cover[ypix, xpix] += 1
    return np.dstack([rgb, alpha]).astype(np.float32), cover


def _edge_segments(ypix: np.ndarray, xpix: np.ndarray) -> np.ndarray:
    """The mask's outline as line segments ``(k, 2, 2)`` of ``(x, y)`` points along the
    pixel borders between the mask and the rest, collinear runs merged."""
    if len(ypix) == 0:
        return np.zeros((0, 2, 2))
    y0, x0 = int(ypix.min()) - 1, int(xpix.min()) - 1
    box = np.zeros((int(ypix.max()) - y0 + 2, int(xpix.max()) - x0 + 2), dtype=bool)
    box[ypix - y0, xpix - x0] = True
    # between box rows r and r + 1 (image y = y0 + r + 0.5), runs along x
    r, start, stop = _runs(box[:-1, :] != box[1:, :])
    y = y0 + r + 0.5
    horizontal = np.stack(
        [np.stack([x0 + start - 0.5, y], axis=1), np.stack([x0 + stop - 0.5, y], axis=1)], axis=1
    )
    # between box columns c and c + 1 (image x = x0 + c + 0.5), runs along y
    c, start, stop = _runs((box[:, :-1] != box[:, 1:]).T)
    x = x0 + c + 0.5
    vertical = np.stack(
        [np.stack([x, y0 + start - 0.5], axis=1), np.stack([x, y0 + stop - 0.5], axis=1)], axis=1
    )
    return np.concatenate([horizontal, vertical]).astype(np.float64)


def _runs(edge: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(line, start, stop) of each run of True along the rows of a 2-D bool array."""
    padded = np.zeros((edge.shape[0], edge.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = edge
    step = np.diff(padded, axis=1)
    line, start = np.nonzero(step == 1)
    _, stop = np.nonzero(step == -1)  # row-major: each run's stop pairs with its start
    return line, start, stop


def _label_point(ypix: np.ndarray, xpix: np.ndarray, cover: np.ndarray) -> tuple[float, float]:
    """Where a mask's ID goes: the pixel deepest inside the part of the mask no other
    mask covers (the whole mask when another covers all of it), so the label sits on
    the mask it names."""
    from scipy import ndimage

    own = cover[ypix, xpix] == 1
    if own.any():
        ypix, xpix = ypix[own], xpix[own]
    y0, x0 = int(ypix.min()) - 1, int(xpix.min()) - 1
    box = np.zeros((int(ypix.max()) - y0 + 2, int(xpix.max()) - x0 + 2), dtype=bool)
    box[ypix - y0, xpix - x0] = True
    depth = ndimage.distance_transform_edt(box)[ypix - y0, xpix - x0]
    deepest = np.flatnonzero(depth == depth.max())
    # among the deepest, the one nearest the centre of the visible part
    centre_y, centre_x = ypix.mean(), xpix.mean()
    best = deepest[np.argmin((ypix[deepest] - centre_y) ** 2 + (xpix[deepest] - centre_x) ** 2)]
    return float(xpix[best]), float(ypix[best])


class _Colours(list[Any]):
    """RGBA per ROI; ``norm``: the Normalize of a continuous colouring (None for
    categories); ``legend``: ``[(label, colour)]`` of the categories, or of the missing
    values of a continuous colouring."""

    norm: Any = None
    legend: list[tuple[str, Any]]


def _colours(mpl: Any, column: pd.Series, cmap: str) -> _Colours:
    """A colour per ROI: one per category (booleans yes/no), else along ``cmap``;
    missing values (NaN, NA, None) grey, counted as their own "missing (n)" entry."""
    dtype = column.dtype
    categorical = (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )
    out = _Colours()
    missing = column.isna().to_numpy()
    if categorical:
        if pd.api.types.is_bool_dtype(dtype):  # a nullable boolean holds NA too
            labels = [
                "missing" if gone else ("yes" if v else "no")
                for v, gone in zip(column, missing, strict=True)
            ]
            order = ["yes", "no"]
        else:
            labels = [
                "missing" if gone else str(v) for v, gone in zip(column, missing, strict=True)
            ]
            order = (
                [str(c) for c in dtype.categories]
                if isinstance(dtype, pd.CategoricalDtype)
                else sorted({v for v in labels if v != "missing"})
            )
        palette = mpl.colormaps["tab10"] if len(order) <= 10 else mpl.colormaps["tab20"]
        colour_of = {label: palette(k % palette.N) for k, label in enumerate(order)}
        if order == ["yes", "no"]:  # booleans: yes green, no orange
            colour_of = {
                "yes": mpl.colors.to_rgba("tab:green"),
                "no": mpl.colors.to_rgba("tab:orange"),
            }
        colour_of["missing"] = MISSING_COLOUR
        out.extend(colour_of[label] for label in labels)
        counts = pd.Series(labels).value_counts()
        out.legend = [
            (f"{label} ({counts[label]})", colour_of[label])
            for label in [*order, "missing"]
            if label in counts
        ]
        return out
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    n_missing = int(missing.sum())
    out.legend = [(f"missing ({n_missing})", MISSING_COLOUR)] if n_missing else []
    if n_missing == len(values):  # nothing to scale: the legend says all are missing
        out.extend([MISSING_COLOUR] * len(values))
        return out
    finite = values[np.isfinite(values)]
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    out.norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    rgba = mpl.colormaps[cmap](out.norm(values))
    rgba[missing] = MISSING_COLOUR
    out.extend(rgba)
    return out


def plot_raster(
    source: Any,
    *,
    layer: str | None = "dFF",
    rois: Any = None,
    iloc: Any = None,
    max_frames: int = 2000,
    vmax: float | None = None,
    ax: Any = None,
) -> Any:
    """ROIs x frames as an image, frames averaged in bins to at most ``max_frames``; rows
    labelled by stored ROI ID.

    ``rois`` (stored IDs) or ``iloc`` (row positions) pick rows; default all. The
    binning runs on the dask array, so only the binned image is held in memory. Returns
    the Axes.

    Examples
    --------
    >>> import icechunk, numpy as np, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> F = np.random.default_rng(0).gamma(2, 50, (8, 5000)).astype("float32") + 100
    >>> _ = exp.add_trial("t", zs.AnnotatedData(F))
    >>> ax = zs.plot.plot_raster(exp.load_trial("t"), layer=None, max_frames=500)
    >>> ax.get_title()
    'E · t · F: 8 ROIs × 5000 frames (bins of 10)'
    """
    data, parts, where = _source(source)
    max_frames = positive_int(max_frames, name="max_frames", where="plot_raster")
    if vmax is not None:
        vmax = finite_number(vmax, name="vmax", where="plot_raster", fix="pass vmax=None (auto)")
    values = _matrix(data, layer)
    chosen = _chosen_rows(resolve_rois(data.obs_names, rois, iloc=iloc, where=where), where)
    names = [str(data.obs_names[i]) for i in chosen]
    if not values.shape[1]:
        raise IncompatibleDataError(f"{where} has no frames to draw")
    if len(chosen) != values.shape[0] or np.any(chosen != np.arange(values.shape[0])):
        values = values[chosen]
    n_rois, n_frames = values.shape
    factor = max(1, int(np.ceil(n_frames / max_frames)))
    usable = (n_frames // factor) * factor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
        if isinstance(values, da.Array):
            binned = da.coarsen(
                np.nanmean, values[:, :usable], {1: factor}, trim_excess=True
            ).compute()
        else:
            binned = np.nanmean(np.asarray(values)[:, :usable].reshape(n_rois, -1, factor), axis=2)
    quantity, unit = layer_quantity(data, layer)
    ax = _axes(ax, (9, max(3.5, min(9.0, 1.5 + 0.18 * n_rois))))
    finite = binned[np.isfinite(binned)]
    top = vmax if vmax is not None else (float(np.percentile(finite, 99)) if len(finite) else 1.0)
    bottom = 0.0 if unit == "%" or not len(finite) else float(np.percentile(finite, 1))
    times, time_label = _time_axis(data)
    step = float(times[1] - times[0]) if len(times) > 1 else 1.0
    extent = (
        float(times[0]) - step / 2,
        float(times[max(usable - 1, 0)]) + step / 2,
        n_rois - 0.5,
        -0.5,
    )
    image = ax.imshow(
        binned, aspect="auto", cmap="magma", vmin=bottom, vmax=max(top, bottom + 1e-6),
        interpolation="nearest", extent=extent,
    )  # fmt: skip
    ax.figure.colorbar(image, ax=ax, label=_with_unit(quantity, unit))
    ticks = _id_ticks(n_rois)
    ax.set_yticks(ticks, [names[i] for i in ticks])
    ax.set_ylabel("ROI (stored ID)")
    ax.set_xlabel(time_label)
    bins = f" (bins of {factor})" if factor > 1 else ""
    ax.set_title(_title(parts, f"{quantity}: {n_rois} ROIs × {n_frames} frames{bins}"))
    return ax


def plot_traces(
    source: Any,
    rois: Any = None,
    *,
    iloc: Any = None,
    layer: str | None = "dFF",
    channels: Sequence[str] = (),
    fig: Any = None,
) -> Any:
    """Traces of chosen ROIs stacked top to bottom, with paq channels below on the same
    time axis.

    ``rois`` are stored ROI IDs (``[5, 12]`` or ``['5', '12']``), ``iloc`` row
    positions; default: the first five ROIs. Each trace is drawn at its own offset; the
    y ticks name the ROIs (coloured like their traces) and a scale bar at the right
    gives the amplitude in the layer's unit. Returns the figure.

    Examples
    --------
    >>> import numpy as np, pandas as pd, zstore as zs
    >>> F = np.random.default_rng(0).gamma(2, 50, (4, 300)).astype("float32")
    >>> var = pd.DataFrame({"time": np.arange(300) / 30, "running": np.linspace(0, 1, 300)})
    >>> obs = pd.DataFrame(index=["0", "3", "7", "9"])
    >>> adata = zs.AnnotatedData(F, obs=obs, var=var.set_index(var.index.astype(str)))
    >>> fig = zs.plot.plot_traces(adata, [3, "9"], layer=None, channels=["running"])
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['3', '9']
    """
    mpl = _matplotlib()
    data, parts, where = _source(source)
    values = _matrix(data, layer)
    if rois is None and iloc is None:
        iloc = list(range(min(5, data.n_obs)))
    chosen = _chosen_rows(resolve_rois(data.obs_names, rois, iloc=iloc, where=where), where)
    names = [str(data.obs_names[i]) for i in chosen]
    channels = name_list(channels, name="channels", what="var column", example="'stim'") or []
    missing = [c for c in channels if c not in data.var]
    if missing:
        raise KeyNotFoundError(
            f"var has no channels {missing}; its columns are {list(data.var.columns)}"
        )
    if isinstance(values, da.Array):
        traces = np.asarray(values[chosen].compute(), dtype=np.float64)
    else:
        traces = np.asarray(values, dtype=np.float64)[chosen]
    times, time_label = _time_axis(data)
    quantity, unit = layer_quantity(data, layer)
    n_panels = 1 + len(channels)
    if fig is not None and not isinstance(fig, mpl.figure.Figure):
        raise ArgumentTypeError(
            f"fig must be a matplotlib Figure (or None for a new one), got {shown(fig)}; "
            f"pass fig=matplotlib.pyplot.figure()"
        )
    if fig is None:
        fig = _figure((10, 2.5 + 0.45 * len(chosen) + 1.2 * len(channels)))
    axes = fig.subplots(
        n_panels, 1, sharex=True, height_ratios=[max(3, len(chosen))] + [1] * len(channels),
        squeeze=False,
    )[:, 0]  # fmt: skip
    top = axes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN traces: no spread
        spreads = np.nanpercentile(traces, 99.9, axis=1) - np.nanpercentile(traces, 0.1, axis=1)
    spread = float(np.nanmax(spreads)) if np.isfinite(spreads).any() else 0.0
    spacing = 1.05 * spread if spread > 0 else 1.0  # the widest trace fits its band
    offsets = spacing * np.arange(len(chosen))[::-1]  # the first ROI on top
    colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, trace) in enumerate(zip(names, traces, strict=True)):
        top.plot(
            times, trace + offsets[k], lw=0.6, color=colours[k % len(colours)],
            label=f"ROI {name}",
        )  # fmt: skip
    baselines = [
        float(np.nanmedian(t)) + o if np.isfinite(t).any() else o
        for t, o in zip(traces, offsets, strict=True)
    ]
    top.set_yticks(baselines, names)
    for k, label in enumerate(top.get_yticklabels()):
        label.set_color(colours[k % len(colours)])
    top.set_ylabel(f"ROI (stored ID); {_with_unit(quantity, unit)}")
    _scale_bar(mpl, top, spacing / 2, unit or quantity)
    for ax, channel in zip(axes[1:], channels, strict=True):
        ax.plot(times, data.var[channel].to_numpy(), lw=0.6, color="0.3")
        ax.set_ylabel(_with_unit(channel, _channel_unit(data, channel)))
    axes[-1].set_xlabel(time_label)
    top.set_title(_title(parts, _with_unit(quantity, unit), f"ROIs {', '.join(names)}"))
    return fig


def _scale_bar(mpl: Any, ax: Any, size: float, unit: str) -> None:
    """A vertical bar of a round length just right of the axes, labelled with it."""
    length = _round_length(size)
    if not length > 0:
        return
    transform = mpl.transforms.blended_transform_factory(ax.transAxes, ax.transData)
    lo = ax.get_ylim()[0] + 0.02 * (ax.get_ylim()[1] - ax.get_ylim()[0])
    ax.plot(
        [1.015, 1.015], [lo, lo + length], transform=transform, color="black", lw=2,
        clip_on=False, gid="scale-bar",
    )  # fmt: skip
    text = f"{length:g} {unit}" if unit != "%" else f"{length:g} %"
    ax.text(
        1.03, lo + length / 2, text, transform=transform, rotation=90, va="center",
        ha="left", fontsize="small", clip_on=False,
    )  # fmt: skip


def _round_length(size: float) -> float:
    """1, 2 or 5 times a power of ten, at most ``size``."""
    if not np.isfinite(size) or size <= 0:
        return 0.0
    power = 10 ** math.floor(math.log10(size))
    return max(m * power for m in (1, 2, 5) if m * power <= size)


def plot_event_average(
    windows: Any,
    rois: Any = None,
    *,
    iloc: Any = None,
    kind: str = "mean",
    ax: Any = None,
) -> Any:
    """The event-aligned average of ``windows`` (from :func:`zstore.event_windows`).

    ``kind="mean"``: mean +- SEM over events against lag, one line per ROI (``rois``:
    stored ROI IDs, ``iloc``: positions; default the first five), the legend beside the
    axes. ``kind="heatmap"``: the mean over events of every ROI (or those chosen; rows
    labelled by stored ROI ID) against lag. Computes the windows (streaming). Returns
    the Axes.

    Examples
    --------
    >>> import icechunk, numpy as np, pandas as pd, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> X = np.random.default_rng(0).gamma(2, 50, (6, 300)).astype("float32")
    >>> var = pd.DataFrame({"time": np.arange(300) / 30}, index=[str(i) for i in range(300)])
    >>> trial = exp.add_trial("t", zs.AnnotatedData(X, var=var, uns={"fs": 30.0}))
    >>> w = zs.event_windows(trial, [2.0, 5.0, 8.0], before=0.5, after=1.0, layer=None)
    >>> ax = zs.plot.plot_event_average(w, [0, "3"])
    >>> ax.get_xlabel(), ax.get_title()
    ('time from event (s)', 'E · t · F around 3 events')
    """
    kind = choice(kind, ("mean", "heatmap"), name="kind", where="plot_event_average")
    _check_windows(windows)
    all_names = [str(r) for r in windows["roi"].values]
    trials = sorted({str(t) for t in windows["trial"].values}) if "trial" in windows.coords else []
    exp = windows.attrs.get("experiment")
    parts = [str(exp)] if exp else []
    parts += trials if len(trials) == 1 else ([f"{len(trials)} trials"] if trials else [])
    where = "the windows" + (f" ({_SEP.join(parts)})" if parts else "")
    if kind == "mean" and rois is None and iloc is None:
        iloc = list(range(min(5, len(all_names))))
    chosen = resolve_rois(all_names, rois, iloc=iloc, where=where)
    names = [all_names[i] for i in chosen]
    picked = windows.isel(roi=chosen) if len(chosen) != len(all_names) else windows
    lag = np.asarray(windows["lag"].values, dtype=np.float64)
    what = str(windows.attrs.get("quantity", windows.attrs.get("layer", windows.name or "value")))
    unit = windows.attrs.get("units")  # event_windows knows it from the processing record
    n_events = int(windows.sizes["event"])
    ax = _axes(ax, (8, 4) if kind == "mean" else (7, max(3.0, min(12.0, 1.5 + 0.18 * len(names)))))
    if kind == "heatmap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lags stay NaN
            mean = np.asarray(picked.mean("event", skipna=True).values, dtype=np.float64)
        step = (lag[1] - lag[0]) if len(lag) > 1 else 1.0
        finite = mean[np.isfinite(mean)]
        top = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        low = float(np.percentile(finite, 1)) if finite.size else 0.0
        if "baseline" in windows.attrs or low < -0.05 * top:  # signed: diverging, 0 centred
            cmap, vmin = "RdBu_r", -top
        else:
            cmap, vmin = "magma", min(0.0, low)
        image = ax.imshow(
            mean, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin,
            vmax=max(top, vmin + 1e-6),
            extent=(lag[0] - step / 2, lag[-1] + step / 2, len(names) - 0.5, -0.5),
        )  # fmt: skip
        ticks = _id_ticks(len(names))
        ax.set_yticks(ticks, [names[i] for i in ticks])
        ax.set_ylabel("ROI (stored ID)")
        ax.figure.colorbar(image, ax=ax, label=f"mean {_with_unit(what, unit)}")
    else:
        values = np.asarray(picked.values, dtype=np.float64)  # event, roi, lag
        count = np.sum(np.isfinite(values), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lags: NaN, said below
            mean = np.nanmean(values, axis=0)
            sem = np.nanstd(values, axis=0, ddof=1) / np.sqrt(count)
        sem[count < 2] = np.nan  # no spread from a single event
        if not np.isfinite(mean).any():
            emit_user_warning(
                f"plot_event_average: every window of ROIs {names} is NaN (events at the "
                f"trials' edges, or NaN traces); the plot is empty"
            )
        for k, roi in enumerate(names):
            line = ax.plot(lag, mean[k], lw=1.2, label=f"ROI {roi}")[0]
            ax.fill_between(
                lag, mean[k] - sem[k], mean[k] + sem[k], color=line.get_color(), alpha=0.25, lw=0
            )
        ax.set_ylabel(f"{_with_unit(what, unit)}, mean ± SEM")
        ax.legend(
            title="ROI (stored ID)", loc="upper left", bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0, fontsize="small", frameon=False,
        )  # fmt: skip
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("time from event (s)")
    noun = "event" if n_events == 1 else "events"
    ax.set_title(_title(parts, f"{what} around {n_events} {noun}"))
    return ax


def _check_windows(windows: Any) -> None:
    import xarray as xr

    if not isinstance(windows, xr.DataArray) or windows.dims != ("event", "roi", "lag"):
        raise ArgumentTypeError(
            f"plot_event_average draws windows from zs.event_windows (a DataArray with "
            f"dims ('event', 'roi', 'lag')), got {shown(windows)}; pass "
            f"windows=zs.event_windows(trial, events, before=..., after=...)"
        )


def _matrix(data: Any, layer: str | None) -> Any:
    if layer is not None and not isinstance(layer, str):
        raise ArgumentTypeError(
            f"layer must be a layer name (a str) or None for X, got {shown(layer)}; pass "
            f"layer='dFF'"
        )
    if hasattr(data, "matrix"):
        return data.matrix(layer)
    if layer is None or layer == "X":
        return data.X
    if layer not in data.layers:
        raise KeyNotFoundError(f"no layer {layer!r}; the layers are {list(data.layers)}")
    return data.layers[layer]
