"""Pure computations on numpy or dask arrays of ROIs x frames."""

from .dff import neuropil_correct, normalize_dff

__all__ = ["neuropil_correct", "normalize_dff"]
