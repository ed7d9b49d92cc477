"""Copies for tools that know nothing of zstore: a plain anndata Zarr store or an .h5ad.

A trial exports as itself; a whole experiment as its trials concatenated along frames
(``exp.concat``), with every trial's own ``uns`` under ``uns["trials_uns"][<id>]``.
Matrices stream shard by shard; masks become plain awkward arrays (anndata's own
encoding). The export never replaces anything: the target must not exist.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anndata as ad
import awkward as ak
import zarr

from .annotated import ALIGNED, AnnotatedData
from .arrays import store_matrices
from .errors import ExperimentExistsError
from .experiment import Experiment
from .ragged import RaggedArray
from .trialio import write_trial

__all__ = ["export", "plain_anndata"]


def export(
    exp: Experiment,
    path: str | os.PathLike[str],
    *,
    trial: str | None = None,
    layers: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a trial (or every trial, concatenated) to ``path``: ``.zarr`` or ``.h5ad``.

    ``layers``: which layers to include (default: every layer; for an experiment,
    those every trial has).

    Examples
    --------
    >>> import anndata, icechunk, numpy as np, tempfile, zstore as zs
    >>> from zstore.export import export
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="E")
    >>> _ = exp.add_trial("t", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
    >>> out = export(exp, tempfile.mkdtemp() + "/t.h5ad", trial="t")
    >>> anndata.read_h5ad(out).shape
    (4, 10)
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".zarr", ".h5ad"):
        raise ValueError(
            f"export to {str(target)!r}: the file name must end in .zarr (a plain anndata "
            f"Zarr store) or .h5ad"
        )
    if target.exists():
        raise ExperimentExistsError(
            f"export to {target}: it already exists; zstore never replaces files: choose "
            f"a new name or remove it yourself"
        )
    adata = _source(exp, trial, layers)
    if suffix == ".h5ad":
        plain_anndata(adata).write_h5ad(target)
        return target
    group = zarr.open_group(zarr.storage.LocalStore(str(target)), mode="w-", zarr_format=3)
    config = exp.config
    if trial is not None:  # keep the trial's own chunking
        X = cast(zarr.Array, exp.open_zarr(f"trials/{trial}")["X"])
        shard = X.shards or X.chunks
        config = dataclasses.replace(
            config,
            shard_bytes=int(shard[0] * shard[1] * X.dtype.itemsize),
            inner_rois=int(X.chunks[0]),
            inner_frames=int(X.chunks[1]),
        )
    write_trial(
        group,
        trial or exp.expID,
        adata,
        config=config,
        write_arrays=lambda sources, targets, report: store_matrices(
            sources, targets, progress=report
        ),
        progress=progress,
    )
    return target


def _source(exp: Experiment, trial: str | None, layers: list[str] | None) -> AnnotatedData:
    if trial is not None:
        data = exp.load_trial(trial).data
        keep = list(data.layers) if layers is None else layers
        for name in list(data.layers):
            if name not in keep:
                del data.layers[name]
        return data
    ids = exp.trialIDs
    loaded = [exp.load_trial(t).data for t in ids]
    common = [n for n in loaded[0].layers if all(n in d.layers for d in loaded)] if loaded else []
    data = exp.concat()
    for name in layers if layers is not None else common:
        data.layers[name] = exp.concat(layer=name).X
    data.uns["expID"] = exp.expID
    data.uns["trials_uns"] = {tid: dict(d.uns) for tid, d in zip(ids, loaded, strict=True)}
    return data


def plain_anndata(adata: ad.AnnData) -> ad.AnnData:
    """An :class:`anndata.AnnData` (not a subclass) that anndata's writers accept.

    Lazy ragged masks become plain awkward arrays (read now: masks are small).
    """
    aligned: dict[str, dict[str, Any]] = {}
    for attr in ALIGNED:
        aligned[attr] = {}
        for key, value in getattr(adata, attr).items():
            if isinstance(value, RaggedArray):
                offsets, data = value.buffers()
                value = ak.Array(
                    ak.contents.ListOffsetArray(
                        ak.index.Index64(offsets), ak.contents.NumpyArray(data)
                    )
                )
            aligned[attr][key] = value
    return ad.AnnData(
        X=adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=dict(adata.uns),
        layers=dict(adata.layers),
        **aligned,
    )
