"""The reference tool's dF/F, row by row, in float64: the definition, for checking.

Slow on purpose (a Python loop over ROIs, two passes of ``np.percentile`` per row): it
is what the tests compare :func:`zstore.normalize_dff` against, and what the benchmark
runs as "the path users take today".
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["reference_dff"]


def reference_dff(arr: Any, pct: float = 20) -> np.ndarray:
    """``t = percentile(row, pct); f0 = mean(row[row < t]); (row - f0) / |f0| * 100``.

    A row with a NaN, or with nothing strictly below ``t``, is all-NaN. float64 out.

    Examples
    --------
    >>> import numpy as np
    >>> from zstore.processing.reference import reference_dff
    >>> reference_dff(np.array([[1.0, 2.0, 3.0, 4.0, 10.0]]), 50)
    array([[-33.33333333,  33.33333333, 100.        , 166.66666667,
            566.66666667]])
    """
    out = np.empty(np.shape(arr), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i, row in enumerate(np.asarray(arr, dtype=np.float64)):
            if np.isnan(row).any():
                out[i] = np.nan
                continue
            t = np.percentile(row, pct)
            below = row[row < t]
            if below.size == 0:
                out[i] = np.nan
                continue
            f0 = below.mean()
            out[i] = (row - f0) / abs(f0) * 100
    return out
