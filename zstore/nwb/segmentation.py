"""The ROIs of an NWB export: the PlaneSegmentation (pixel masks, obs and obsm columns)
and the field of view's summary images; see :mod:`zstore.nwb` for the orientation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np
import pandas as pd

from ..errors import IncompatibleDataError, emit_user_warning
from ..ragged import RaggedArray
from .plan import Plan

__all__ = ["plane_segmentation", "summary_images"]

_MASK_KEYS = ("ypix", "xpix", "lam")
_IMAGES = {
    "meanImg": "Suite2p mean image of the registered movie",
    "meanImgE": "Suite2p enhanced (high-pass filtered) mean image",
    "max_proj": "Suite2p maximum projection of the registered, binned movie",
    "Vcorr": "Suite2p correlation map (of the binned movie; may be cropped to the "
    "registered region, ops yrange/xrange)",
}
_STAT_DESCRIPTIONS = {
    "iscell": "Suite2p classifier label: True if the ROI is a cell (iscell.npy column 0)",
    "iscell_prob": "Suite2p classifier probability that the ROI is a cell (iscell.npy column 1)",
    "med_y": "Suite2p stat med[0]: the ROI's median pixel, row (y) in the field of view",
    "med_x": "Suite2p stat med[1]: the ROI's median pixel, column (x) in the field of view",
    "npix": "Suite2p stat npix: number of pixels in the ROI",
    "npix_soma": "Suite2p stat npix_soma: number of pixels in the soma crop",
    "radius": "Suite2p stat radius: radius of a fitted ellipse (pixels)",
    "aspect_ratio": "Suite2p stat aspect_ratio: ratio of the fitted ellipse's axes",
    "compact": "Suite2p stat compact: compactness (mean distance to the median pixel, "
    "relative to a disk's)",
    "solidity": "Suite2p stat solidity: pixels over convex hull area",
    "footprint": "Suite2p stat footprint: spatial extent of the ROI's correlations",
    "mrs": "Suite2p stat mrs: mean distance of pixels from the median pixel",
    "mrs0": "Suite2p stat mrs0: mrs of a disk of the same number of pixels",
    "skew": "Suite2p stat skew: skewness of the neuropil-corrected trace",
    "std": "Suite2p stat std: standard deviation of the neuropil-corrected trace",
    "npix_norm": "Suite2p stat npix_norm: npix_soma over the mean of cells' npix_soma",
    "npix_norm_no_crop": "Suite2p stat npix_norm_no_crop: npix over the mean of cells' npix",
    "snr": "Suite2p stat snr: signal-to-noise ratio of the trace",
}
# names a PlaneSegmentation (a DynamicTable) already uses
_TAKEN_COLUMNS = {
    "id",
    "name",
    "description",
    "colnames",
    "columns",
    "imaging_plane",
    "reference_images",
    "image_mask",
    "pixel_mask",
    "voxel_mask",
}


def plane_segmentation(pynwb: Any, plane: Any, plan: Plan) -> Any:
    from hdmf.common import ElementIdentifiers, VectorData, VectorIndex

    data = plan.first
    n = data.n_obs
    names = [str(name) for name in data.obs_names]
    ids = _integer_ids(names)
    columns: list[Any] = []
    masks = all(k in data.obsm for k in _MASK_KEYS)
    if masks:
        offsets, parts = _mask_buffers(data, plan.trial_ids[0])
        what = "Suite2p pixel masks"
    else:  # no masks stored (a trial not from Suite2p): NWB needs the column, empty
        offsets = np.zeros(n + 1, dtype=np.int64)
        parts = {k: np.empty(0) for k in _MASK_KEYS}
        what = f"no pixel masks were stored (obsm has {sorted(data.obsm)}): every ROI's is empty"
    mask = np.empty(len(parts["ypix"]), dtype=[("x", "<u4"), ("y", "<u4"), ("weight", "<f4")])
    mask["x"] = parts["ypix"]  # NWB x: the first axis of the images, Suite2p's row (ypix)
    mask["y"] = parts["xpix"]
    mask["weight"] = parts["lam"]
    pixel_mask = VectorData(
        name="pixel_mask",
        description=f"{what}; x = Suite2p ypix (row of the field of view, the first axis "
        f"of the summary images), y = xpix (column), weight = lam",
        data=mask,
    )
    columns += [
        pixel_mask,
        VectorIndex(name="pixel_mask_index", target=pixel_mask, data=offsets[1:]),
    ]
    taken = set(_TAKEN_COLUMNS)
    if ids is None:
        columns.append(
            VectorData(
                name=_free("roi_name", taken),
                description="the ROI's name in zstore (obs_names); ids are positions",
                data=names,
            )
        )
    else:
        taken.add("roi_name")
    for column in data.obs.columns:
        values = _obs_values(data.obs[column])
        if values is None:
            emit_user_warning(
                f"export_nwb: obs column {column!r} ({data.obs[column].dtype}) was left out "
                f"of the NWB file: its values are neither numbers, booleans nor text"
            )
            continue
        columns.append(
            VectorData(
                name=_free(str(column), taken),
                description=_STAT_DESCRIPTIONS.get(str(column), f"obs column {column!r}"),
                data=values,
            )
        )
    for key, value in data.obsm.items():
        if masks and key in _MASK_KEYS:
            continue
        columns += _obsm_columns(str(key), value, taken, n)
    return pynwb.ophys.PlaneSegmentation(
        name="PlaneSegmentation",
        description=f"Suite2p ROIs of experiment {plan.exp.expID}; ids are Suite2p's ROI "
        f"indices (zstore's stored ROI IDs)",
        imaging_plane=plane,
        id=ElementIdentifiers(
            name="id", data=np.asarray(ids if ids is not None else np.arange(n), dtype=np.int64)
        ),
        columns=columns,
        colnames=[c.name for c in columns if not isinstance(c, VectorIndex)],
    )


def _integer_ids(names: list[str]) -> list[int] | None:
    """The ROI names as ints (Suite2p indices), or None if any is not one."""
    out = []
    for name in names:
        if not re.fullmatch(r"-?\d+", name):
            return None
        out.append(int(name))
    return out if len(set(out)) == len(out) else None


def _mask_buffers(data: Any, trial_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The masks' shared offsets and each of ypix, xpix, lam flat, read now (small)."""
    found = {key: _ragged_buffers(data.obsm[key]) for key in _MASK_KEYS}
    offsets = found["ypix"][0]
    for key, (other, _) in found.items():
        if not np.array_equal(other, offsets):
            raise IncompatibleDataError(
                f"export_nwb: trial {trial_id!r}: obsm {key!r} has other lengths per ROI than "
                f"obsm 'ypix'; ypix, xpix and lam must hold one value per pixel of each ROI"
            )
    parts = {key: flat for key, (_, flat) in found.items()}
    for key in ("ypix", "xpix"):
        if len(parts[key]) and parts[key].min() < 0:
            raise IncompatibleDataError(
                f"export_nwb: trial {trial_id!r}: obsm {key!r} has negative pixel "
                f"coordinates ({int(parts[key].min())}); NWB pixel masks are unsigned"
            )
    return offsets.astype(np.int64), parts


def _ragged_buffers(value: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, RaggedArray):
        return value.buffers()
    arrays = [np.asarray(a).ravel() for a in value]  # in-memory awkward or object array
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    return offsets, (np.concatenate(arrays) if arrays else np.empty(0))


def _obs_values(series: pd.Series) -> Any:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) and not pd.api.types.is_extension_array_dtype(dtype):
        return series.to_numpy(dtype=bool)
    if (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    ):
        values = ["" if _missing(v) else v for v in series]
        if all(isinstance(v, str) for v in values):
            return values
        if all(isinstance(v, bool | np.bool_) for v in values) and not series.isna().any():
            return np.asarray(values, dtype=bool)
        return None
    if pd.api.types.is_extension_array_dtype(dtype):  # nullable ints and booleans
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(dtype):
        return series.to_numpy()
    return None


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _obsm_columns(key: str, value: Any, taken: set[str], n: int) -> list[Any]:
    from hdmf.common import VectorData, VectorIndex

    name = _free(key, taken)
    description = f"obsm {key!r}"
    if isinstance(value, ak.Array) and value.ndim == 2:  # ragged: one array per ROI
        offsets, flat = _ragged_buffers(value)
        column = VectorData(name=name, description=description + " (one array per ROI)", data=flat)
        return [column, VectorIndex(name=f"{name}_index", target=column, data=offsets[1:])]
    array = np.asarray(value) if not isinstance(value, pd.DataFrame) else value.to_numpy()
    if array.dtype.kind in "biuf" and array.ndim >= 1 and array.shape[0] == n:
        return [VectorData(name=name, description=description, data=array)]
    emit_user_warning(
        f"export_nwb: obsm {key!r} ({type(value).__name__}) was left out of the NWB file: "
        f"only numeric arrays and ragged arrays become PlaneSegmentation columns"
    )
    taken.discard(name)
    return []


def _free(name: str, taken: set[str]) -> str:
    """``name``, or ``obs_<name>`` when the table already has it (a clash with the
    table's own fields)."""
    out = name
    while out in taken:
        out = f"obs_{out}"
    taken.add(out)
    return out


def summary_images(pynwb: Any, plan: Plan) -> Any:
    uns = plan.first.uns
    places = [uns.get("suite2p"), uns]
    found = {}
    for key, description in _IMAGES.items():
        for place in places:
            value = place.get(key) if isinstance(place, Mapping) else None
            if value is not None and np.ndim(value) == 2:
                found[key] = pynwb.image.GrayscaleImage(
                    name=key,
                    data=np.asarray(value),
                    description=description + "; axes (x, y) = (row, column) as pixel_mask's",
                )
                break
    if not found:
        return None
    return pynwb.base.Images(
        name="SummaryImages",
        images=list(found.values()),
        description="Suite2p summary images of the field of view",
    )
