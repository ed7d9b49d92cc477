"""What an ingest did, and what a store holds: summaries built from metadata only.

:class:`IngestSummary` is what :func:`zstore.ingest_suite2p` did (``result.ingest_summary``):
ROIs kept of the total and why, trials with their frames and duration, the paq channels
matched. :func:`info_document` is what ``zstore info`` shows (and ``--json`` prints): per
trial fs, duration, ROIs, frames, layers and how each was computed, paq channels and the
stored size, read from the attributes each trial group carries (its summary and
provenance, written in the transaction that wrote the trial), the Zarr metadata documents
and the stores' listings. No chunk is read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zarr

from . import _compat
from ._version import __version__
from .documents import damaged_experiments
from .errors import emit_user_warning
from .images import IMAGES
from .store import EXPERIMENTS, TRIAL_ENCODING, TRIALS, read_failure
from .trialio import describe_arrays, trial_summary

__all__ = [
    "INFO_FORMAT",
    "IngestSummary",
    "IngestedExperiment",
    "IngestedTrial",
    "info_document",
    "layer_text",
    "rois_text",
    "text_table",
]

#: Version of the ``zstore info --json`` document; raised when a key changes meaning or goes.
INFO_FORMAT = 1

_SUITE2P_LAYERS = {"Fneu": "neuropil", "spks": "deconvolved"}


def rois_text(stored: int, cells: int | None, total: int | None) -> str:
    """How many ROIs were kept of the run's total, and why the others were dropped.

    >>> rois_text(21, 21, 23)
    '21 of 23 ROIs kept: 2 non-cells dropped (iscell == 0)'
    >>> rois_text(23, 21, 23)
    'all 23 ROIs kept: 21 cells, 2 non-cells (cells_only=False)'
    """
    if total is None or cells is None:
        return f"{stored} ROIs" + (f", {cells} of them cells" if cells is not None else "")
    non_cells = total - cells
    if stored == total:
        if not non_cells:
            return f"all {total} ROIs kept (every ROI is a cell)"
        return (
            f"all {total} ROIs kept: {cells} cells, {_plural(non_cells, 'non-cell')} "
            f"(cells_only=False)"
        )
    dropped = total - stored
    return f"{stored} of {total} ROIs kept: {_plural(dropped, 'non-cell')} dropped (iscell == 0)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# -- what ingest did ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IngestedTrial:
    """One trial written by ingest."""

    trial_id: str
    #: ``(start, stop)``: the trial's frames in the Suite2p run
    frames: tuple[int, int]
    n_frames: int
    #: seconds from the session's start to the first frame (None: no fs and no paq)
    start_s: float | None
    duration_s: float | None
    #: the run's files (TIFFs) the trial's frames come from
    files: tuple[str, ...]
    #: the .paq file (None: none given)
    paq: str | None
    #: paq channels sampled at each frame (var columns)
    channels: tuple[str, ...]
    #: rising edges of the frame clock in the paq (the first ``n_frames`` were used)
    clock_edges: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        out = dataclasses.asdict(self)
        out["frames"], out["files"], out["channels"] = (
            list(self.frames),
            list(self.files),
            list(self.channels),
        )
        return out


@dataclasses.dataclass(frozen=True)
class IngestedExperiment:
    """One plane of the run, written as one experiment."""

    exp_id: str
    plane: int
    plane_dir: str
    fs: float | None
    #: ROIs in the Suite2p run, of them cells (``iscell[:, 0] == 1``), and stored
    rois_total: int
    rois_cells: int
    rois_kept: int
    cells_only: bool
    neuropil_coeff: float
    layers: tuple[str, ...]
    trials: tuple[IngestedTrial, ...]

    @property
    def rois_dropped(self) -> int:
        """ROIs of the run that were not stored (non-cells, with ``cells_only``)."""
        return self.rois_total - self.rois_kept

    @property
    def n_frames(self) -> int:
        return sum(t.n_frames for t in self.trials)

    @property
    def duration_s(self) -> float | None:
        durations = [t.duration_s for t in self.trials]
        return None if any(d is None for d in durations) else sum(d or 0.0 for d in durations)

    def rois_text(self) -> str:
        """``'21 of 23 ROIs kept: 2 non-cells dropped (iscell == 0)'``"""
        return rois_text(self.rois_kept, self.rois_cells, self.rois_total)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields (and the dropped count, frames, duration)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["layers"] = list(self.layers)
        out["rois_dropped"] = self.rois_dropped
        out["n_frames"] = self.n_frames
        out["duration_s"] = self.duration_s
        out["trials"] = [t.to_dict() for t in self.trials]
        return out

    def __str__(self) -> str:
        fs = f"fs {self.fs:g} Hz" if self.fs else "fs unknown"
        x = "F" if not self.neuropil_coeff else f"F - {self.neuropil_coeff:g} * Fneu"
        lines = [
            f"experiment {self.exp_id!r}: plane {self.plane} of {self.plane_dir}, {fs}",
            f"  {self.rois_text()}",
            f"  X = {x}; layers: {', '.join(self.layers) or '-'}",
        ]
        rows = [("trial", "frames", "run frames", "duration", "paq channels")]
        for t in self.trials:
            channels = ", ".join(t.channels) if t.paq else "- (no paq)"
            if t.paq and t.clock_edges is not None:
                extra = (
                    f"; {t.clock_edges} frame clock edges, first {t.n_frames} used"
                    if t.clock_edges > t.n_frames
                    else ""
                )
                channels += f" ({t.paq}{extra})"
            rows.append(
                (
                    t.trial_id,
                    str(t.n_frames),
                    f"{t.frames[0]}:{t.frames[1]}",
                    _seconds(t.duration_s),
                    channels,
                )
            )
        rows.append(("total", str(self.n_frames), "", _seconds(self.duration_s), ""))
        lines += ["  " + line for line in text_table(rows, right=(1, 3))]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class IngestSummary:
    """What :func:`zstore.ingest_suite2p` wrote: one entry per plane (experiment).

    ``str(summary)`` is the report ``zstore ingest`` prints; :meth:`to_dict` the same as
    plain data.

    Examples
    --------
    >>> import icechunk, tempfile, warnings, zstore as zs, zstore.synthetic as syn
    >>> plane, paqs = syn.write_suite2p_run(tempfile.mkdtemp(), n_rois=23, frames_per_file=[90, 60])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # the synthetic paq files have extra clock edges
    ...     exp = zs.ingest_suite2p(plane, icechunk.in_memory_storage(), paq=paqs, exp_id="RL109")
    >>> (only,) = exp.ingest_summary.experiments
    >>> only.rois_text()
    '19 of 23 ROIs kept: 4 non-cells dropped (iscell == 0)'
    >>> [(t.trial_id, t.n_frames, t.duration_s) for t in only.trials]
    [('t-000', 90, 3.0), ('t-001', 60, 2.0)]
    """

    location: str
    experiments: tuple[IngestedExperiment, ...]

    @property
    def n_trials(self) -> int:
        return sum(len(e.trials) for e in self.experiments)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: location, experiments (each with its trials)."""
        return {
            "location": self.location,
            "n_trials": self.n_trials,
            "experiments": [e.to_dict() for e in self.experiments],
        }

    def __str__(self) -> str:
        n = len(self.experiments)
        head = (
            f"ingested {_plural(self.n_trials, 'trial')} of {_plural(n, 'experiment')} "
            f"into {self.location}"
        )
        return "\n".join([head, *(str(e) for e in self.experiments)])


def summarize_ingest(
    location: str, experiments: Mapping[str, Mapping[str, tuple[Any, Mapping[str, Any]]]]
) -> IngestSummary:
    """The summary of ``experiments`` as ingest built them: ``{exp_id: {trial_id:
    (AnnotatedData, provenance)}}`` (the provenance dicts of :mod:`zstore.ingest`)."""
    out = []
    for exp_id, trials in experiments.items():
        first_data, first = next(iter(trials.values()))
        rois = first.get("rois", {})
        reported = []
        for trial_id, (adata, provenance) in trials.items():
            summary = trial_summary(adata)
            paq = provenance.get("paq")
            start, stop = provenance.get("frames", (0, summary["n_frames"]))
            reported.append(
                IngestedTrial(
                    trial_id=trial_id,
                    frames=(int(start), int(stop)),
                    n_frames=summary["n_frames"],
                    start_s=summary["start_s"],
                    duration_s=summary["duration_s"],
                    files=tuple(str(f) for f in adata.uns.get("trial", {}).get("files", [])),
                    paq=Path(paq).name if paq else None,
                    channels=tuple(str(c) for c in adata.var.columns if c != "time") if paq else (),
                    clock_edges=provenance.get("paq_clock_edges"),
                )
            )
        out.append(
            IngestedExperiment(
                exp_id=exp_id,
                plane=int(first.get("plane", 0)),
                plane_dir=str(first.get("plane_dir", "")),
                fs=trial_summary(first_data)["fs"],
                rois_total=int(rois.get("total", first_data.n_obs)),
                rois_cells=int(rois.get("cells", first_data.n_obs)),
                rois_kept=int(first_data.n_obs),
                cells_only=bool(first.get("cells_only", True)),
                neuropil_coeff=float(first.get("neuropil_coeff", 0.0)),
                layers=tuple(str(k) for k in first_data.layers),
                trials=tuple(reported),
            )
        )
    return IngestSummary(location=location, experiments=tuple(out))


# -- what a store holds -------------------------------------------------------------------


def info_document(found: Any, *, where: str | None = None, storage: bool = False) -> dict[str, Any]:
    """What ``zstore info --json`` prints for an Experiment or a Collection, as plain
    JSON data (keys documented in docs/CLI.md; ``info_format`` is :data:`INFO_FORMAT`).

    Reads metadata only: the trial table, each trial group's attributes and its var
    columns, the stores' listings for sizes; ``storage=True`` adds each array's shards,
    chunks and codecs (and opens each trial group for them). ``where``: a pandas query
    selecting trials (collections).

    A trial whose metadata cannot be read is left out of ``trials`` and listed under the
    experiment's ``damaged`` (``{"trial", "problem"}``, the problem naming the key); an
    experiment of a collection whose metadata cannot be read, under the collection's
    ``damaged`` (``{"experiment", "problem"}``). A storage that cannot be read at all
    (an S3 outage, no permission to read, too many open files, no memory) raises
    :class:`~zstore.errors.StoreError` (or :class:`~zstore.errors.OutOfMemoryError`):
    that is not damage.

    Examples
    --------
    >>> import icechunk, numpy as np, zstore as zs
    >>> exp = zs.create_experiment(icechunk.in_memory_storage(), exp_id="RL109")
    >>> _ = exp.add_trial("t-005", zs.AnnotatedData(np.ones((4, 10), dtype="float32")))
    >>> doc = info_document(exp)
    >>> doc["kind"], doc["experiment"], doc["trials"][0]["n_frames"]
    ('experiment', 'RL109', 10)
    """
    try:
        return _info_document(found, where=where, storage=storage)
    except Exception as err:
        failure = read_failure(err, where=found.location, what="reading the store")
        if failure is None:
            raise
        raise failure from None


def _storage_failed(err: BaseException) -> bool:
    """The storage failed (not the data): the size is not unknown, the read failed."""
    return read_failure(err, where="", what="") is not None


def _info_document(found: Any, *, where: str | None, storage: bool) -> dict[str, Any]:
    # The store of this version and each experiment's group in it: reads go through
    # the object's pinned session, concurrently, as the table's do.
    store = found._session.store
    is_collection = hasattr(found, "experimentIDs")
    table = found.table(where) if is_collection else found.table()
    if is_collection:
        # every experiment unless a query selects trials: one whose trials are all
        # damaged has no row, and is shown with them under "damaged"
        ids = dict.fromkeys(table["experiment"]) if where else found.experimentIDs
        prefixes = {e: f"{EXPERIMENTS}/{e}" for e in ids}
    else:
        prefixes = {found.expID: found._prefix}
    pairs = [
        (str(e), t if isinstance(t, str) else None)  # None: an experiment without trials
        for e, t in zip(table["experiment"], table["trial"], strict=True)
    ]
    trial_groups = [_join(prefixes[e], f"{TRIALS}/{t}") for e, t in pairs if t is not None]
    damaged = _damaged_trials(store, prefixes, {(e, t) for e, t in pairs if t is not None})
    keys = [_join(prefixes[e], "zarr.json") for e in prefixes]
    keys += [f"{g}/zarr.json" for g in trial_groups] + [f"{g}/var/zarr.json" for g in trial_groups]
    docs = dict(zip(keys, _compat.read_many(store, keys), strict=True))
    image_groups = [_join(p, IMAGES) for p in prefixes.values()]
    sizes = dict(
        zip(
            [*prefixes.values(), *trial_groups, *image_groups],
            _compat.stored_sizes(
                store, [*prefixes.values(), *trial_groups, *image_groups], fails=_storage_failed
            ),
            strict=True,
        )
    )
    # the summary images each experiment keeps once for its trials (zstore.images)
    image_counts = dict(
        zip(
            image_groups,
            [
                len([n for n in names if n != "zarr.json"])
                for names in _compat.list_children(store, image_groups)
            ],
            strict=True,
        )
    )
    experiments = []
    for exp_id, prefix in prefixes.items():
        meta = _attrs(docs[_join(prefix, "zarr.json")])
        trials = []
        for e, t in pairs:
            if e != exp_id or t is None:
                continue
            group = _join(prefix, f"{TRIALS}/{t}")
            entry = _trial_entry(
                t, _attrs(docs[f"{group}/zarr.json"]), docs[f"{group}/var/zarr.json"]
            )
            entry["stored_bytes"] = sizes[group]
            if sizes[group] is None:
                emit_user_warning(
                    f"{found.location}: the stored size of trial {t!r} of experiment "
                    f"{exp_id!r} is unknown (its manifest cannot be read: the store is "
                    f"damaged there); `zstore verify` lists what is damaged"
                )
            if storage:
                entry["storage"] = _storage(store, group)
            trials.append(entry)
        experiments.append(
            {
                "experiment": exp_id,
                "metadata": dict(meta.get("metadata") or {}),
                "totals": {**_totals(trials), "stored_bytes": sizes[prefix]},
                "images": {
                    "arrays": image_counts[_join(prefix, IMAGES)],
                    "stored_bytes": sizes[_join(prefix, IMAGES)],
                },
                "trials": trials,
                "damaged": damaged.get(exp_id, []),
            }
        )
    head = {
        "info_format": INFO_FORMAT,
        "zstore_version": __version__,
        "kind": "collection" if is_collection else "experiment",
        "location": found.location,
        "version": found.version,
    }
    if not is_collection:
        return {**head, **experiments[0]}
    totals = _totals([t for e in experiments for t in e["trials"]])
    return {
        **head,
        "where": where,
        "totals": {
            "experiments": len(experiments),
            **totals,
            "stored_bytes": _known_sum(e["totals"]["stored_bytes"] for e in experiments),
        },
        "experiments": experiments,
        "damaged": _damaged_experiments(store),
    }


def _damaged_trials(
    store: Any, prefixes: Mapping[str, str], shown: set[tuple[str, str]]
) -> dict[str, list[dict[str, str]]]:
    """The trials of each experiment that the table leaves out, with what is wrong."""
    listed = _compat.list_children(store, [_join(p, TRIALS) for p in prefixes.values()])
    missing = [
        (exp_id, name)
        for exp_id, names in zip(prefixes, listed, strict=True)
        for name in sorted(names)
        if name != "zarr.json" and (exp_id, name) not in shown
    ]
    docs = _compat.node_documents(store, [_join(prefixes[e], f"{TRIALS}/{t}") for e, t in missing])
    out: dict[str, list[dict[str, str]]] = {}
    for (exp_id, trial_id), doc in zip(missing, docs, strict=True):
        problem = _node_problem(doc, TRIAL_ENCODING, "a trial group")
        out.setdefault(exp_id, []).append({"trial": trial_id, "problem": problem})
    return out


def _damaged_experiments(store: Any) -> list[dict[str, str]]:
    """The experiments of a collection whose metadata cannot be read, with what is wrong."""
    found = damaged_experiments(store)
    return [{"experiment": name, "problem": problem} for name, problem in found.items()]


def _node_problem(doc: _compat.NodeDocument, encoding: str, what: str) -> str:
    if doc.kind == "absent":
        return f"its metadata document {doc.key} is missing"
    if doc.kind == "damaged":
        return f"its metadata document {doc.key} {doc.problem}"
    if doc.kind == "array":
        return f"{doc.key.removesuffix('/zarr.json')} is a Zarr array, not {what}"
    if _encoding(doc.attributes) != encoding:
        return f"{doc.key} has no 'zstore' attributes of {what} (encoding-type {encoding!r})"
    return f"{doc.key} is incomplete (its zstore attributes lack fields the table needs)"


def _encoding(attributes: Mapping[str, Any]) -> Any:
    meta = attributes.get("zstore")
    return meta.get("encoding-type") if isinstance(meta, Mapping) else None


def _trial_entry(trial_id: str, meta: Mapping[str, Any], var_doc: bytes | None) -> dict[str, Any]:
    summary = dict(meta.get("summary") or {})
    provenance = dict(meta.get("provenance") or {})
    found = provenance.get("rois")
    rois: dict[str, Any] = found if isinstance(found, dict) else {}
    n_rois = summary.get("n_rois")
    cells = summary.get("n_cells", rois.get("cells"))
    total = rois.get("total", n_rois if cells is not None else None)
    records = summary.get("processing")  # absent: saved by an earlier zstore
    layers = {name: _layer_entry(name, provenance, records) for name in summary.get("layers") or []}
    channels = _attrs_of(var_doc).get("column-order") or []
    return {
        "trial": trial_id,
        "n_rois": n_rois,
        "n_frames": summary.get("n_frames"),
        "fs": summary.get("fs"),
        "start_s": summary.get("start_s"),
        "duration_s": summary.get("duration_s"),
        "rois": {
            "stored": n_rois,
            "cells": cells,
            "total": total,
            "dropped": None if total is None or n_rois is None else total - n_rois,
            "text": rois_text(n_rois, cells, total) if n_rois is not None else None,
        },
        "channels": [str(c) for c in channels if c != "time"],
        # X has no processing record: records["X"] is that of a layer named "X" (which
        # older stores may hold), not of X
        "X": {"computed": _ingested_text("X", provenance, True), "record": None},
        "layers": layers,
        "source": provenance,
    }


def _layer_entry(
    name: str, provenance: Mapping[str, Any], records: Mapping[str, Any] | None
) -> dict[str, Any]:
    record = records.get(name) if isinstance(records, Mapping) else None
    if isinstance(record, Mapping) and record:
        return {"computed": layer_text(record), "record": dict(record)}
    return {"computed": _ingested_text(name, provenance, records is not None), "record": None}


def layer_text(record: Mapping[str, Any]) -> str:
    """A processing record as one line.

    >>> layer_text({"function": "normalize_dff", "source": "X", "normalize_pct": 20.0,
    ...             "baseline": "percentile", "zstore_version": "0.2.0"})
    "normalize_dff(X, normalize_pct=20, baseline='percentile') by zstore 0.2.0"
    """
    params = [
        f"{k}={_value_text(v)}"
        for k, v in record.items()
        if k not in ("function", "source", "zstore_version")
    ]
    source = [str(record["source"])] if "source" in record else []
    text = f"{record.get('function', 'unknown function')}({', '.join(source + params)})"
    return text + (f" by zstore {record['zstore_version']}" if "zstore_version" in record else "")


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _ingested_text(name: str, provenance: Mapping[str, Any], recorded: bool) -> str:
    if provenance.get("source") == "suite2p":  # the trial's frames: source["frames"]
        if name == "X":
            coeff = float(provenance.get("neuropil_coeff") or 0.0)
            if coeff:
                return f"F - {coeff:g} * Fneu, from Suite2p F.npy and Fneu.npy"
            return "Suite2p F.npy (raw fluorescence)"
        if name in _SUITE2P_LAYERS:
            return f"Suite2p {name}.npy ({_SUITE2P_LAYERS[name]})"
    if name == "X":
        return "as added (exp.add_trial)"
    if not recorded:
        return "not in the trial's summary (saved by an earlier zstore): see its uns['processing']"
    return "as given (no processing record: not computed by a zstore function)"


def _known_sum(sizes: Any) -> int | None:
    """The sum of byte counts; None (unknown) when one of them is."""
    listed = list(sizes)
    return None if any(n is None for n in listed) else sum(listed)


def _totals(trials: list[dict[str, Any]]) -> dict[str, Any]:
    durations = [t["duration_s"] for t in trials]
    return {
        "trials": len(trials),
        "frames": sum(int(t["n_frames"] or 0) for t in trials),
        "duration_s": None if any(d is None for d in durations) else float(sum(durations)),
    }


def _storage(store: Any, group: str) -> list[dict[str, Any]]:
    arrays = describe_arrays(zarr.open_group(store, path=group, mode="r", zarr_format=3))
    return [
        {**a, "shape": list(a["shape"]), "chunks": list(a["chunks"]),
         "shards": list(a["shards"]) if a["shards"] else None}
        for a in arrays
    ]  # fmt: skip


def _attrs(doc: bytes | None) -> dict[str, Any]:
    meta = _attrs_of(doc).get("zstore")
    return dict(meta) if isinstance(meta, dict) else {}


def _attrs_of(doc: bytes | None) -> dict[str, Any]:
    try:
        attrs = json.loads(doc).get("attributes", {}) if doc else {}
    except (ValueError, AttributeError):
        return {}
    return dict(attrs) if isinstance(attrs, dict) else {}


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}/{rest}" if prefix else rest


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def text_table(rows: Sequence[Sequence[str]], *, right: tuple[int, ...] = ()) -> list[str]:
    """Rows as aligned text columns (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
