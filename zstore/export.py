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

import contextlib
import dataclasses
import errno
import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
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
from .store import source_errors
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
        source_errors(  # a chunk of exp that cannot be read: not the target's failure
            exp.location,
            what=f"reading it for the export to {target}",
            then=f"nothing was exported ({target} was not written)",
        ),
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
    # keyed by the matrix's path in the file: a layer named "X" (which older stores may
    # hold) is "layers/X", never X itself
    matrices = {"X": plain.X, **{f"layers/{name}": plain.layers[name] for name in plain.layers}}
    _check_room(where, sum(int(getattr(m, "nbytes", 0)) for m in matrices.values()))
    with _GuardedFile(where) as file:
        # anndata writes a dask matrix block by block: count the blocks as they are read,
        # and stop at the first block after a write failed.
        total = sum(m.npartitions if isinstance(m, da.Array) else 1 for m in matrices.values())
        ticks = _Ticks(report, total, file)
        for path, m in matrices.items():
            if isinstance(m, da.Array):
                counted = da.map_blocks(
                    functools.partial(ticks, path),
                    m,
                    meta=m._meta,
                    name=f"export-{uuid.uuid4().hex}",
                )
                if path == "X":
                    plain.X = counted
                else:
                    plain.layers[path.removeprefix("layers/")] = counted
        if report is not None:
            report(0, total)
        with _hdf5(file) as f:
            _write_anndata_h5(plain, f)
    if report is not None:
        report(total, total)


@contextlib.contextmanager
def hdf5_file(path: Path) -> Iterator[Any]:
    """A new HDF5 file at ``path`` (an ``h5py.File``) whose failed writes (a full disk,
    a file-size limit) are raised as one ``OSError`` naming ``path``, once HDF5 has
    closed the file cleanly (h5py alone prints hundreds of lines and may crash)."""
    with _GuardedFile(path) as file, _hdf5(file) as h5:
        yield h5


@contextlib.contextmanager
def _hdf5(file: _GuardedFile) -> Iterator[Any]:
    import h5py

    try:
        with h5py.File(file, "w") as h5:
            yield h5
    except Exception:
        if file.failure is None:
            raise
    file.raise_failure()


def _write_anndata_h5(plain: Any, f: Any) -> None:
    """``plain.write_h5ad`` into the h5py File ``f`` (anndata's takes only a path)."""
    from anndata.io import write_elem

    plain.strings_to_categoricals()  # as write_h5ad does
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
    write_elem(f, "X", plain.X)
    for key in ("obs", "var"):
        write_elem(f, key, getattr(plain, key))
    for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
        write_elem(f, key, dict(getattr(plain, key)))


def _check_room(where: Path, nbytes: int) -> None:
    """Refuse, before writing, an .h5ad of about ``nbytes`` (uncompressed matrices) that
    cannot fit: more than the disk's free space or the file-size limit (``ulimit -f``)."""
    import shutil

    from .display import format_bytes

    needed = f"the export needs about {format_bytes(nbytes)}"
    free = shutil.disk_usage(where.parent).free
    if nbytes > free:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {needed}, {format_bytes(free)} free",
            str(where),
        )
    try:
        import resource
    except ImportError:  # Windows: no file-size limit
        return
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and nbytes > limit:
        raise OSError(
            errno.EFBIG,
            f"File too large: {needed}, the file-size limit is {format_bytes(limit)}",
            str(where),
        )


class _WriteFailed(Exception):
    """Raised into anndata's write once a write to the .h5ad failed, to stop it early."""


class _GuardedFile:
    """The .h5ad file as HDF5 writes it (h5py's file-object driver), keeping the first
    failed write (a full disk, a file-size limit) instead of passing it to HDF5.

    A failed write inside HDF5 leaves its objects unable to close: h5py then prints
    hundreds of lines while they are freed and can crash the interpreter. Here HDF5
    sees every write succeed (those after the first failure are dropped), closes the
    file cleanly, and the export raises the failure (the file is then removed).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failure: OSError | None = None
        self._file = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed by __exit__

    def __enter__(self) -> _GuardedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._file.close()
        except OSError as err:
            self._fail(err)

    def _fail(self, err: OSError) -> None:
        if self.failure is None:
            self.failure = err

    def raise_failure(self) -> None:
        """Raise the first failed write, naming the file."""
        if self.failure is not None:
            err = self.failure
            raise OSError(err.errno, err.strerror, str(self.path)) from None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while self.failure is None and done < len(view):
            try:
                done += self._file.write(view[done:]) or 0
            except OSError as err:
                self._fail(err)
        return len(view)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size) or b""

    def readinto(self, buffer: Any) -> int:
        return self._file.readinto(buffer) or 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.failure is None:
            try:
                return self._file.truncate(size)
            except OSError as err:
                self._fail(err)
        return self.tell() if size is None else size

    def flush(self) -> None:
        return None  # unbuffered: every write went to the system already


class _Ticks:
    """Passes blocks through, reporting ``(done, total)`` after each block of a matrix
    is read (each counted once, whatever reads it)."""

    def __init__(
        self,
        report: Callable[[int, int], None] | None,
        total: int,
        file: _GuardedFile | None = None,
    ) -> None:
        self._report, self._total, self._file = report, total, file
        self._seen: set[tuple[str, tuple[int, ...]]] = set()
        self._lock = threading.Lock()

    def __call__(self, matrix: str, block: Any, block_id: tuple[int, ...] | None = None) -> Any:
        if self._file is not None and self._file.failure is not None:
            raise _WriteFailed(str(self._file.failure))  # stop reading: the file failed
        if block_id is None or self._report is None:
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
    if wanted is not None:  # a name in another Unicode form than the stored one (NFD)
        stored = [n for names in have.values() for n in names]
        wanted = [equivalent_name(w, stored) or w for w in wanted]
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
    missing = {
        t: [n for n in wanted if n not in names and equivalent_name(n, names) is None]
        for t, names in have.items()
    }
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
