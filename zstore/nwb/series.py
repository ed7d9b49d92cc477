"""The traces of an NWB export: X and every layer as RoiResponseSeries (dF/F under
DfOverF), their timing (rate or timestamps), streamed by an hdmf chunk iterator whose
buffers follow the store's chunks, so memory does not grow with the trial."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .plan import Plan

__all__ = ["add_series"]

_BUFFER_BYTES = 16 << 20  # one read-transpose-write step of a series
_CHUNK_FRAMES = 4096  # HDF5 chunks of 4096 frames x 64 ROIs (1 MiB of float32)
_CHUNK_ROIS = 64
_REGULAR_TOLERANCE_S = 1e-6


def _dff_layer(name: str, processing: Mapping[str, Any]) -> bool:
    if processing.get("function") == "normalize_dff":
        return True
    return re.sub(r"[^a-z]", "", name.lower()) in {"dff", "dfoverf", "dff0"}


def add_series(
    pynwb: Any,
    ophys: Any,
    segmentation: Any,
    plan: Plan,
    compression: str | None,
    report: Callable[[str, int, int], None] | None,
) -> Any:
    """Every matrix as a RoiResponseSeries; returns the first (F), whose timestamps the
    others link to."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    region = segmentation.create_roi_table_region(
        region=list(range(plan.first.n_obs)), description="every ROI of the PlaneSegmentation"
    )
    timing = _timing(plan.time, plan.fs)
    wanted: list[tuple[str | None, str, str, str, str]] = [
        (None, "F", "Fluorescence", "a.u.", "raw fluorescence of each ROI (Suite2p F; zstore X)")
    ]
    for layer in plan.layers:
        record = plan.processing(layer)
        dff = _dff_layer(layer, record)
        unit = "%" if record.get("function") == "normalize_dff" else ("n.a." if dff else "a.u.")
        what = {"Fneu": "neuropil fluorescence (Suite2p Fneu)", "spks": "deconvolved "
                "activity (Suite2p spks)"}.get(layer, f"layer {layer!r}")  # fmt: skip
        if record:
            what += "; computed as " + json.dumps(record, sort_keys=True, default=str)
        wanted.append((layer, layer, "DfOverF" if dff else "Fluorescence", unit, what))
    containers: dict[str, Any] = {}
    n_rois = plan.first.n_obs
    n_frames = len(plan.time)
    shapes = []
    for layer, *_ in wanted:
        itemsize = max(np.dtype(m.dtype).itemsize for m in plan.matrices(layer))
        shapes.append(_shapes(itemsize, plan.inner_frames(layer), n_frames, n_rois))
    first = None
    for (layer, name, kind, unit, what), (buffer, chunk) in zip(wanted, shapes, strict=True):
        iterator = _iterator_class()(
            plan.matrices(layer), name, report, buffer_shape=buffer, chunk_shape=chunk
        )
        data = H5DataIO(data=iterator, compression=compression, shuffle=compression is not None)
        when = dict(timing) if first is None or "rate" in timing else {"timestamps": first}
        series = pynwb.ophys.RoiResponseSeries(
            name=name, data=data, unit=unit, rois=region, description=what, **when
        )
        if kind not in containers:
            cls = pynwb.ophys.DfOverF if kind == "DfOverF" else pynwb.ophys.Fluorescence
            containers[kind] = cls(name=kind)
            ophys.add(containers[kind])
        containers[kind].add_roi_response_series(series)
        if first is None:
            first = series
    return first


def _timing(time: np.ndarray, fs: float | None) -> dict[str, Any]:
    """``rate`` + ``starting_time`` if the times are a regular grid, else ``timestamps``."""
    t0 = float(time[0])
    if len(time) == 1:
        return {"starting_time": t0, "rate": float(fs) if fs else 1.0}
    candidates = [fs] if fs else []
    candidates.append((len(time) - 1) / (float(time[-1]) - t0))
    grid = np.arange(len(time), dtype=np.float64)
    for rate in candidates:
        if rate and np.max(np.abs(time - (t0 + grid / rate))) <= _REGULAR_TOLERANCE_S:
            return {"starting_time": t0, "rate": float(rate)}
    return {"timestamps": np.asarray(time, dtype=np.float64)}


def _shapes(
    itemsize: int, inner_f: int, n_frames: int, n_rois: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(buffer, chunk) shapes of a (time, ROI) series: buffers span whole inner chunks of
    the store along frames (where the trials' chunking allows) and at most
    ~_BUFFER_BYTES; HDF5 chunks divide them."""
    chunk_f = max(1, min(n_frames, _CHUNK_FRAMES))
    chunk_r = max(1, min(n_rois, _CHUNK_ROIS))
    buffer_f = min(n_frames, math.ceil(inner_f / chunk_f) * chunk_f)
    rows = _BUFFER_BYTES // max(1, buffer_f * itemsize)
    if rows >= n_rois:
        buffer_r = n_rois
        # room for more frames: fewer, larger steps
        more = _BUFFER_BYTES // max(1, n_rois * itemsize * buffer_f)
        buffer_f = min(n_frames, buffer_f * max(1, more))
    else:
        buffer_r = max(chunk_r, rows // chunk_r * chunk_r)
    return (buffer_f, buffer_r), (chunk_f, chunk_r)


@functools.cache
def _iterator_class() -> type:
    from hdmf.data_utils import GenericDataChunkIterator

    class TracesIterator(GenericDataChunkIterator):
        """(time, ROI) blocks of trials' (ROI, frame) matrices, concatenated along time:
        each buffer reads one block of the store and is transposed."""

        def __init__(
            self,
            matrices: list[Any],
            label: str,
            report: Callable[[str, int, int], None] | None,
            **kwargs: Any,
        ) -> None:
            self._matrices = matrices
            self._label = label
            self._report = report
            self._done = 0
            self._starts = np.concatenate([[0], np.cumsum([m.shape[1] for m in matrices])])
            self._dtype_ = np.result_type(*[m.dtype for m in matrices])
            super().__init__(**kwargs)

        def _get_data(self, selection: tuple[slice, ...]) -> np.ndarray:
            frames, rois = selection
            f0, f1 = int(frames.start or 0), int(frames.stop)
            r0, r1 = int(rois.start or 0), int(rois.stop)
            out = np.empty((f1 - f0, r1 - r0), dtype=self._dtype_)
            for k, matrix in enumerate(self._matrices):
                lo, hi = max(f0, int(self._starts[k])), min(f1, int(self._starts[k + 1]))
                if lo >= hi:
                    continue
                start = int(self._starts[k])
                block = matrix[r0:r1, lo - start : hi - start]
                block = np.asarray(block.compute() if hasattr(block, "compute") else block)
                out[lo - f0 : hi - f0] = block.T
                del block
            self._done += 1
            if self._report is not None:
                self._report(self._label, self._done, self.num_buffers)
            return out

        def _get_maxshape(self) -> tuple[int, int]:
            return (int(self._starts[-1]), int(self._matrices[0].shape[0]))

        def _get_dtype(self) -> np.dtype:
            return np.dtype(self._dtype_)

    return TracesIterator
