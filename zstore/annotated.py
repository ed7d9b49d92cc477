"""AnnotatedData: an AnnData of one imaging trial, with the tutorial's verbs and texts.

Rows (obs) are ROIs, columns (var) are imaging frames. This module knows nothing about
storage: a trial loaded from a store is an AnnotatedData whose X and layers happen to
be dask arrays over Zarr.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import awkward as ak
import dask.array as da
import numpy as np
import pandas as pd

from .errors import ArgumentTypeError, InvalidArgumentError, InvalidNameError, KeyNotFoundError
from .names import check_column, check_name, equivalent_name, stored_name
from .validate import dense_matrix

__all__ = ["ALIGNED", "AnnotatedData", "plain_anndata"]

#: anndata's aligned mappings besides layers: entries stored one by one.
ALIGNED = ("obsm", "varm", "obsp", "varp")


class AnnotatedData(ad.AnnData):
    """The annotated data of one imaging trial: ROIs x frames.

    A subclass of :class:`anndata.AnnData` that keeps the imaging tutorial's verbs
    (``add_layer``, ``add_obs``, ``del_obs``, ``add_var``, ``del_var``) and texts.
    ``X`` may be a numpy array, a dask array (kept lazy) or a DataFrame, whose index and
    columns become the ROI and frame names.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import zstore as zs
    >>> adata = zs.AnnotatedData(np.zeros((3, 5), dtype="float32"))
    >>> adata
    Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = 3 × 5
    >>> adata.add_obs(obs_name="iscell", values=[True, False, True])
    >>> adata.obs.columns.tolist()
    ['iscell']
    """

    def __init__(self, X: Any = None, obs: Any = None, var: Any = None, **kwargs: Any):
        if isinstance(X, pd.DataFrame) and not kwargs.get("asview", False):
            obs = _frame_or_default(obs, X.index)
            var = _frame_or_default(var, X.columns)
            X = X.to_numpy()
        try:
            super().__init__(X, obs, var, **kwargs)
        except (ArgumentTypeError, InvalidArgumentError, InvalidNameError, KeyNotFoundError):
            raise
        except (TypeError, ValueError) as err:  # anndata's refusals, as zstore errors
            kind = ArgumentTypeError if isinstance(err, TypeError) else InvalidArgumentError
            raise kind(
                f"AnnotatedData(X, obs, var): {str(err)[:300]}; pass X as a 2-D numpy or dask "
                f"array (ROIs x frames) or a DataFrame, obs/var as DataFrames with one row per "
                f"ROI/frame (or None)"
            ) from err

    # -- texts -----------------------------------------------------------------------

    def _gen_repr(self, n_obs: int, n_vars: int) -> str:
        return f"Annotated Data of n_obs (# ROIs) × n_vars (# Frames) = {n_obs} × {n_vars}"

    def __repr__(self) -> str:
        # The tutorial's text has no "View of" prefix: a view prints as what it shows.
        return self._gen_repr(self.n_obs, self.n_vars)

    def __str__(self) -> str:
        lines = [repr(self), "available attributes:", "\t.X (primary datamatrix)"]
        lines += ["\t.obs (obs metadata):", f"\t\t|- {_keys_text(self.obs.keys())}"]
        lines += ["\t.var (vars metadata):", f"\t\t|- {_keys_text(self.var.keys())}"]
        for attr in ("uns", *ALIGNED[:2], "layers", *ALIGNED[2:]):
            keys = list(getattr(self, attr).keys())
            if keys:
                lines += [f"\t.{attr}:", f"\t\t|- {_keys_text(keys)}"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from .display import html_annotated

        return html_annotated(self)

    # -- staying an AnnotatedData through anndata's operations -----------------------

    def __getitem__(self, index: Any) -> AnnotatedData:
        oidx, vidx = self._normalize_indices(index)
        return AnnotatedData(self, oidx=oidx, vidx=vidx, asview=True)

    def copy(self, filename: Any = None) -> AnnotatedData:
        return _as_annotated(super().copy(filename))

    def to_memory(self, copy: bool = False) -> AnnotatedData:
        """Everything read into memory: X and layers as numpy arrays, pixel masks as
        plain ``awkward`` arrays (anndata's own type), so that ``write_h5ad`` and
        ``write_zarr`` (and any tool that knows anndata) take the result.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> from zstore.ragged import RaggedArray
        >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
        >>> adata.obsm["ypix"] = RaggedArray.from_arrays([[1, 2], [3]], dtype="int16")
        >>> type(adata.to_memory().obsm["ypix"]).__name__
        'Array'
        """
        from .images import check_readable

        check_readable(self.uns)  # a damaged summary image: its error, naming it
        out = _as_annotated(super().to_memory(copy=copy))
        for attr in ALIGNED:
            mapping = getattr(out, attr)
            for key, value in list(mapping.items()):
                plain = _plain_aligned(value)
                if plain is not value:
                    mapping[key] = plain
        return out

    def write_h5ad(self, filename: Any = None, **kwargs: Any) -> None:
        """Write an ``.h5ad`` that plain anndata reads (see :func:`plain_anndata`).

        Takes :meth:`anndata.AnnData.write_h5ad`'s arguments. Lazy X and layers are
        written block by block (unsaved ones, such as ``zs.normalize_dff``'s, computed as
        they are written); the masks are read (they are small). As anndata's, it
        replaces an existing file; a write that fails removes the file it created. Unlike
        anndata's, this does not turn this object's text columns into categoricals: the
        file's are.

        Examples
        --------
        >>> import anndata, numpy as np, tempfile, zstore as zs
        >>> path = tempfile.mkdtemp() + "/a.h5ad"
        >>> zs.AnnotatedData(np.ones((2, 3), dtype="float32")).write_h5ad(path)
        >>> anndata.read_h5ad(path).shape
        (2, 3)
        """
        if filename is None:
            filename = self.filename
        with _cleaning_up(filename):
            plain_anndata(self).write_h5ad(filename, **kwargs)
        _report_nan_rows(self)

    write = write_h5ad

    def write_zarr(self, store: Any, **kwargs: Any) -> None:
        """Write a plain anndata Zarr store (see :func:`plain_anndata`); takes
        :meth:`anndata.AnnData.write_zarr`'s arguments. Lazy layers are computed block
        by block as they are written; a write that fails removes the store it created.

        Examples
        --------
        >>> import anndata, numpy as np, tempfile, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
        >>> adata.write_zarr(tempfile.mkdtemp() + "/a.zarr")
        """
        with _cleaning_up(store):
            plain_anndata(self).write_zarr(store, **kwargs)
        _report_nan_rows(self)

    def matrix(self, layer: str | None = None) -> Any:
        """X (``layer=None``) or the layer ``layer``: the ROIs x frames matrix to use.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
        >>> adata.matrix() is adata.X
        True
        >>> adata.matrix("dFF")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        zstore.errors.KeyNotFoundError: there is no layer 'dFF' (the layers are []); ...
        """
        if layer is None:
            return self.X
        if not isinstance(layer, str):
            raise ArgumentTypeError(
                f"layer must be a layer name (a str) or None for X, got {layer!r} "
                f"({type(layer).__name__}); pass layer='dFF'"
            )
        layer = stored_name(layer, list(self.layers), kind="layer name")
        if layer not in self.layers:
            raise KeyNotFoundError(
                f"there is no layer {layer!r} (the layers are {list(self.layers)}); compute "
                f"it first (zs.compute_dff(exp, layer={layer!r}) or `zstore dff STORE --layer "
                f"{layer}`), or use X (layer=None)"
            )
        return self.layers[layer]

    # -- the tutorial's verbs ------------------------------------------------------------

    def add_layer(
        self, layer_name: str, data: Any, *, provenance: Mapping[str, Any] | None = None
    ) -> None:
        """Add ``data`` (same shape as X) as the layer ``layer_name``.

        A dask array stays lazy: nothing is computed until it is saved or computed. A
        layer made by a zstore function (``zs.normalize_dff``, ...) carries how it was
        made, recorded in ``uns["processing"]`` when it is saved; ``provenance`` records
        how other data was made instead (a mapping of plain values), and replaces any
        record the layer had.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 4), dtype="float32"))
        >>> adata.add_layer(layer_name="dFF", data=np.zeros((2, 4), dtype="float32"))
        >>> list(adata.layers)
        ['dFF']
        """
        given = check_name(layer_name, kind="layer name")
        layer_name = stored_name(layer_name, list(self.layers), kind="layer name")
        if isinstance(data, pd.DataFrame):
            data = data.to_numpy()
        data = dense_matrix(data, name="data", where=f"add_layer({layer_name!r})")
        shape = tuple(data.shape)
        if shape != self.shape:
            raise InvalidArgumentError(
                f"add_layer({layer_name!r}): the data has shape {shape} but X has shape "
                f"{self.shape} (ROIs x frames); pass an array of shape {self.shape}"
            )
        records = self.uns.get("processing", {})
        if not isinstance(records, Mapping):
            raise InvalidArgumentError(
                f"add_layer({layer_name!r}): uns['processing'] is {type(records).__name__}, "
                f"but it is zstore's provenance key (a dict of {{layer: how it was made}}); "
                f"keep your note under another key (uns['notes']) and del uns['processing']"
            )
        records = dict(records)
        self.layers[layer_name] = data
        if provenance is not None:
            if not isinstance(provenance, Mapping):
                raise ArgumentTypeError(
                    f"add_layer({layer_name!r}): provenance must be a mapping such as "
                    f"{{'function': 'my_filter', 'sigma': 2}}, got {type(provenance).__name__}"
                )
            records[equivalent_name(layer_name, records) or given] = dict(provenance)
        else:  # a record of the data this layer replaces
            records.pop(equivalent_name(layer_name, records) or layer_name, None)
        if records:
            self.uns["processing"] = records
        elif "processing" in self.uns:
            del self.uns["processing"]

    def add_obs(self, obs_name: str, values: Iterable[Any]) -> None:
        """Add a column of per-ROI values to ``obs``.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 4), dtype="float32"))
        >>> adata.add_obs(obs_name="depth_um", values=[120.0, 140.0])
        >>> adata.obs["depth_um"].tolist()
        [120.0, 140.0]
        """
        self.obs[obs_name] = _column(self.obs, obs_name, values, axis="obs", unit="ROIs")

    def del_obs(self, obs_name: str) -> None:
        """Remove the column ``obs_name`` from ``obs``.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 4), dtype="float32"))
        >>> adata.add_obs(obs_name="depth_um", values=[120.0, 140.0])
        >>> adata.del_obs("depth_um")
        >>> adata.obs.columns.tolist()
        []
        """
        _drop(self.obs, obs_name, verb="del_obs", axis="obs")

    def add_var(self, var_name: str, values: Iterable[Any]) -> None:
        """Add a column of per-frame values to ``var``.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
        >>> adata.add_var(var_name="stim", values=[0, 1, 0])
        >>> adata.var["stim"].tolist()
        [0, 1, 0]
        """
        self.var[var_name] = _column(self.var, var_name, values, axis="var", unit="frames")

    def del_var(self, var_name: str) -> None:
        """Remove the column ``var_name`` from ``var``.

        Examples
        --------
        >>> import numpy as np, zstore as zs
        >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
        >>> adata.add_var(var_name="stim", values=[0, 1, 0])
        >>> adata.del_var("stim")
        >>> "stim" in adata.var
        False
        """
        _drop(self.var, var_name, verb="del_var", axis="var")


def plain_anndata(adata: ad.AnnData) -> ad.AnnData:
    """An :class:`anndata.AnnData` (exactly that class) holding ``adata``'s elements, for
    anndata's writers, which dispatch on exact types.

    X and layers are the same arrays (a lazy matrix stays lazy, nothing is copied; a
    zstore processing result, a dask subclass anndata does not know, becomes the plain
    dask array it is);
    obs and var are copies (anndata's writers turn their text columns into categoricals
    in place); lazy or subclassed awkward arrays (pixel masks) become plain awkward
    arrays, read now. ``uns`` is a shallow copy.

    Examples
    --------
    >>> import numpy as np, zstore as zs
    >>> adata = zs.AnnotatedData(np.ones((2, 3), dtype="float32"))
    >>> plain = plain_anndata(adata)
    >>> type(plain).__name__, plain.X is adata.X
    ('AnnData', True)
    """
    from .images import check_readable

    check_readable(adata.uns)  # a damaged summary image: its error, naming it
    aligned = {
        attr: {key: _plain_aligned(value) for key, value in getattr(adata, attr).items()}
        for attr in ALIGNED
    }
    return ad.AnnData(
        X=_plain_matrix(adata.X),
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=dict(adata.uns),
        layers={name: _plain_matrix(value) for name, value in adata.layers.items()},
        **aligned,
    )


def _plain_matrix(value: Any) -> Any:
    """A dask array of a subclass (zstore's Derived) as a plain ``dask.array.Array``:
    anndata's writers dispatch on exact types."""
    if isinstance(value, da.Array) and type(value) is not da.Array:
        return da.Array(value.dask, value.name, value.chunks, meta=value._meta)
    return value


def _report_nan_rows(adata: ad.AnnData) -> None:
    """The all-NaN rows that writing unsaved dF/F layers found: one warning each."""
    for name, value in adata.layers.items():
        nan_rows = getattr(value, "nan_rows", None)
        if nan_rows is not None and isinstance(value, da.Array):
            nan_rows.warn(f"layer {name!r}: ")


@contextlib.contextmanager
def _cleaning_up(where: Any) -> Iterator[None]:
    """Remove a file or folder that a failed write created (not one that was there)."""
    path = Path(where) if isinstance(where, str | os.PathLike) else None
    existed = path is None or os.path.lexists(path)
    try:
        yield
    except BaseException:
        if not existed and path is not None:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


#: The parameters anndata (checked: 0.12.19) gives the awkward arrays of a view, so that
#: they copy on write; a copy is a plain array without them.
_VIEW_PARAMETERS = ("_view_args", "__list__")


def _plain_aligned(value: Any) -> Any:
    """A subclass of ``awkward.Array`` (zstore's lazy RaggedArray) or an anndata view of
    one as a plain ``awkward.Array``; anything else as it is."""
    if not isinstance(value, ak.Array):
        return value
    to_awkward = getattr(value, "to_awkward", None)
    if callable(to_awkward):
        return to_awkward()
    viewed = [p for p in _VIEW_PARAMETERS if ak.parameters(value).get(p) is not None]
    if type(value) is ak.Array and not viewed:
        return value
    plain = ak.Array(ak.to_packed(value).layout)
    for name in viewed:
        plain = ak.with_parameter(plain, name, None)
    return ak.Array(plain.layout)


def _as_annotated(adata: ad.AnnData) -> AnnotatedData:
    return adata if isinstance(adata, AnnotatedData) else AnnotatedData(adata)


def _frame_or_default(frame: Any, index: pd.Index) -> Any:
    if frame is None:
        return pd.DataFrame(index=index.astype(str))
    return frame


def _keys_text(keys: Iterable[Any]) -> str:
    return str(list(keys))[1:-1]


def _column(frame: pd.DataFrame, name: str, values: Iterable[Any], *, axis: str, unit: str) -> Any:
    verb = f"add_{axis}"
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{verb}: column names must be str, got {name!r} ({type(name).__name__})"
        )
    check_column(name, kind=f"{axis} column name")
    if isinstance(values, pd.Series):
        if values.index.equals(frame.index):
            return values
        values = values.to_numpy()
    elif isinstance(values, str | bytes | Mapping | set | frozenset) or not isinstance(
        values, Iterable
    ):
        raise ArgumentTypeError(
            f"{verb}({name!r}): values must be a list or 1-D array of one value per "
            f"{unit[:-1]}, got {type(values).__name__}; pass values=[...] ({len(frame)} values)"
        )
    elif not hasattr(values, "__len__"):
        values = list(values)
    if getattr(values, "ndim", 1) != 1:
        raise InvalidArgumentError(
            f"{verb}({name!r}): values must be 1-D (one value per {unit[:-1]}), got shape "
            f"{getattr(values, 'shape', None)}; pass values=[...] ({len(frame)} values)"
        )
    n = len(values)  # type: ignore[arg-type]
    if n != len(frame):
        raise InvalidArgumentError(
            f"{verb}({name!r}): got {n} values but the {axis} axis has {len(frame)} "
            f"{unit}; pass one value per {unit[:-1]}"
        )
    if isinstance(values, pd.Categorical):
        return values
    try:
        return np.asarray(values)
    except (TypeError, ValueError):  # values of different lengths: not one value per row
        raise ArgumentTypeError(
            f"{verb}({name!r}): a column holds one plain value per {unit[:-1]}, but the "
            f"values are sequences of different lengths; ragged per-ROI arrays go to obsm: "
            f"adata.obsm[{name!r}] = zs.RaggedArray.from_arrays(values)"
        ) from None


def _drop(frame: pd.DataFrame, name: str, *, verb: str, axis: str) -> None:
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{verb}: column names are str, got {name!r} ({type(name).__name__}); the "
            f"{axis} columns are {list(frame.columns)}"
        )
    if name not in frame.columns:
        raise KeyNotFoundError(
            f"{verb}({name!r}): there is no {axis} column {name!r}; "
            f"the {axis} columns are {list(frame.columns)}"
        )
    del frame[name]
