"""Copies for tools that know nothing of zstore: a plain anndata Zarr store or an .h5ad.

A trial exports as itself; several trials (or a whole experiment) as their frames
concatenated (``exp.concat``), with every trial's own ``uns`` under
``uns["trials_uns"][<id>]``. Matrices stream shard by shard; masks become plain awkward
arrays (anndata's own encoding).

An export appears whole or not at all (:mod:`zstore.publish`): it is written under a
hidden name in the target's folder, ``.<name>.<random>.partial.zarr`` (or ``.h5ad``),
and renamed when complete; it never replaces anything (the target must not exist, and
its folder must). A failed export removes its temporary; a killed one leaves it, and a
``*.partial.*`` name is always an incomplete export, safe to delete.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import dask.array as da
import zarr

from .annotated import AnnotatedData, plain_anndata
from .arrays import store_matrices
from .errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    KeyNotFoundError,
)
from .experiment import Experiment
from .names import equivalent_name, stored_name
from .progress import ProgressOption, reporting
from .publish import check_target, publishing
from .trialio import write_trial
from .validate import name_list, progress_option, shown, trial_ids

__all__ = ["export", "plain_anndata"]

#: The way out of a mixed-ROI export, as the API says it (the CLI words it as flags).
ONE_ROI_SET_HINT = "pass trials=[...] with the trials of one ROI set, or trial=ID"


def export(
    exp: Experiment,
    path: str | os.PathLike[str],
    *,
    trial: str | None = None,
    trials: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    progress: ProgressOption = None,
) -> Path:
    """Write a trial, or trials concatenated along frames, to ``path``: ``.zarr`` or ``.h5ad``.

    ``trial``: one trial, exported as itself. ``trials``: trial IDs (of one ROI set)
    concatenated in that order; default (neither): every trial. ``layers``: which
    layers to include (default: every layer the trials all have); X is always
    included; a layer a trial lacks is an error. ``progress``: ``True`` shows a bar
    over the shards, ``False`` nothing, ``None`` (default) a bar in interactive
    sessions only; a callable is called as ``progress(label, blocks_done,
    blocks_total)`` (label: the trial, or the experiment's ID).

    The file or folder appears under its name only when complete (see
    :mod:`zstore.export`); ``path`` must not exist and its folder must.

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
    if not isinstance(exp, Experiment):
        raise ArgumentTypeError(
            f"export: exp must be an Experiment, got {shown(exp)}; pass zs.open_experiment(store)"
        )
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise ArgumentTypeError(
            f"export: path must be a file name ending in .zarr or .h5ad (a str or Path), got "
            f"{shown(path)}; pass path='trials.h5ad'"
        )
    if trial is not None:
        stored_name(trial, kind="trial ID")
    trials = trial_ids(trials, where="export")
    layers = name_list(layers, name="layers", what="layer name", where="export", example="'dFF'")
    progress_option(progress, where="export")
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".zarr", ".h5ad"):
        raise InvalidArgumentError(
            f"export to {str(target)!r}: the file name must end in .zarr (a plain anndata "
            f"Zarr store) or .h5ad"
        )
    if trial is not None and trials is not None:
        raise ArgumentTypeError(
            "export: pass trial= (one trial) or trials= (concatenated), not both"
        )
    check_target(target, what="export to")  # before reading anything
    if trial is not None:
        trial = stored_name(trial, lambda: exp.trialIDs, kind="trial ID")
    label = trial if trial is not None else exp.expID
    adata = _source(exp, trial, trials, layers)
    with (
        reporting(progress, desc=f"export {label}", label=label) as report,
        publishing(target, what="export to") as temporary,
    ):
        if suffix == ".h5ad":
            _write_h5ad(adata, temporary, report)
        else:
            _write_zarr(exp, trial, adata, temporary, report)
    return target


def _write_zarr(
    exp: Experiment,
    trial: str | None,
    adata: AnnotatedData,
    where: Path,
    report: Callable[[int, int], None] | None,
) -> None:
    group = zarr.open_group(zarr.storage.LocalStore(str(where)), mode="w-", zarr_format=3)
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
        progress=report,
    )


def _write_h5ad(
    adata: AnnotatedData, where: Path, report: Callable[[int, int], None] | None
) -> None:
    plain = plain_anndata(adata)
    if report is None:
        plain.write_h5ad(where)
        return
    # anndata writes a dask matrix block by block: count the blocks as they are read.
    matrices = {"X": plain.X, **{name: plain.layers[name] for name in plain.layers}}
    total = sum(m.npartitions if isinstance(m, da.Array) else 1 for m in matrices.values())
    ticks = _Ticks(report, total)
    for name, m in matrices.items():
        if isinstance(m, da.Array):
            counted = da.map_blocks(
                functools.partial(ticks, name), m, meta=m._meta, name=f"export-{uuid.uuid4().hex}"
            )
            if name == "X":
                plain.X = counted
            else:
                plain.layers[name] = counted
    report(0, total)
    plain.write_h5ad(where)
    report(total, total)


class _Ticks:
    """Passes blocks through, reporting ``(done, total)`` after each block of a matrix
    is read (each counted once, whatever reads it)."""

    def __init__(self, report: Callable[[int, int], None], total: int) -> None:
        self._report, self._total = report, total
        self._seen: set[tuple[str, tuple[int, ...]]] = set()
        self._lock = threading.Lock()

    def __call__(self, matrix: str, block: Any, block_id: tuple[int, ...] | None = None) -> Any:
        if block_id is None:
            return block
        with self._lock:
            self._seen.add((matrix, block_id))
            done = min(len(self._seen), self._total - 1)  # the last one: when written
        self._report(done, self._total)
        return block


def _source(
    exp: Experiment, trial: str | None, trials: list[str] | None, layers: Sequence[str] | None
) -> AnnotatedData:
    wanted = [layers] if isinstance(layers, str) else None if layers is None else list(layers)
    if trial is not None:
        data = exp.load_trial(trial).data
        if wanted is not None:
            wanted = [equivalent_name(w, data.layers) or w for w in wanted]
        _check_layers(exp, {trial: list(data.layers)}, wanted)
        for name in list(data.layers):
            if wanted is not None and name not in wanted:
                del data.layers[name]
        return data
    ids = exp.trialIDs if trials is None else trials
    if not ids:
        raise InvalidArgumentError(
            f"export: experiment {exp.expID!r} has no trials"
            if trials is None
            else "export: trials=[] names no trial to export"
        )
    loaded = {t: exp.load_trial(t).data for t in ids}
    first = loaded[ids[0]]
    sets: dict[tuple[str, ...], list[str]] = {}
    for tid, d in loaded.items():
        sets.setdefault(tuple(d.obs_names), []).append(tid)
    if len(sets) > 1:
        groups = "; ".join(f"{ts} ({len(names)} ROIs)" for names, ts in sets.items())
        raise IncompatibleDataError(
            f"export: the trials have different ROIs and one export holds trials of one "
            f"ROI set (trials by ROI set: {groups}); export them separately: "
            f"{ONE_ROI_SET_HINT}"
        )
    have = {t: list(d.layers) for t, d in loaded.items()}
    _check_layers(exp, have, wanted)
    common = [n for n in first.layers if all(n in d.layers for d in loaded.values())]
    data = exp.concat(trials=ids)
    for name in wanted if wanted is not None else common:
        data.layers[name] = exp.concat(layer=name, trials=ids).X
    data.uns["expID"] = exp.expID
    data.uns["trials_uns"] = {tid: dict(d.uns) for tid, d in loaded.items()}
    return data


def _check_layers(exp: Experiment, have: dict[str, list[str]], wanted: list[str] | None) -> None:
    """Every wanted layer in every trial, or an error naming what is missing and stored."""
    if wanted is None:
        return
    missing = {t: [n for n in wanted if n not in names] for t, names in have.items()}
    missing = {t: names for t, names in missing.items() if names}
    if not missing:
        return
    lacking = sorted({n for names in missing.values() for n in names})
    stored = "; ".join(f"trial {t!r}: {sorted(names)}" for t, names in have.items())
    raise KeyNotFoundError(
        f"export of experiment {exp.expID!r}: no layer {', '.join(map(repr, lacking))} in "
        f"trial{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; the stored "
        f"layers are ({stored}); X is always exported. Layer names are case-sensitive"
    )
