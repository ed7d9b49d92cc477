"""The trial table: one row per trial, from metadata documents only.

Each trial group's attributes hold its summary (shape, fs, session time, layers),
written by the transaction that writes the trial; each experiment's attributes hold
what was recorded at ingest. Icechunk serves every group's attributes from the
version's snapshot (one object), so a table of thousands of trials costs a fixed few
requests: the documents are fetched concurrently, in one round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from . import _compat
from .documents import experiment_problem
from .errors import InvalidArgumentError, emit_user_warning
from .store import EXPERIMENT_ENCODING, EXPERIMENTS, TRIALS

__all__ = ["TABLE_COLUMNS", "query_table", "read_table"]

#: The columns every table has, in this order; metadata given at ingest follows them.
TABLE_COLUMNS = (
    "experiment",
    "subject",
    "session",
    "plane",
    "trial",
    "n_rois",
    "n_frames",
    "fs",
    "start_s",
    "duration_s",
    "layers",
)


def read_table(store: Any, where: str, prefixes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every trial's row, from the attributes of the experiment and trial groups.

    ``prefixes`` maps experiment IDs to their groups (default: every experiment under
    ``experiments/``; ``{exp_id: ""}`` for a standalone experiment).
    """
    if prefixes is None:
        (names,) = _compat.list_children(store, [EXPERIMENTS])
        prefixes = {n: f"{EXPERIMENTS}/{n}" for n in names if n != "zarr.json"}
    exp_ids = list(prefixes)
    exp_docs = _compat.read_many(store, [_join(prefixes[e], "zarr.json") for e in exp_ids])
    trial_lists = _compat.list_children(store, [_join(prefixes[e], TRIALS) for e in exp_ids])
    keys = [
        (e, t)
        for e, names in zip(exp_ids, trial_lists, strict=True)
        for t in names
        if t != "zarr.json"
    ]
    trial_docs = _compat.read_many(
        store, [_join(prefixes[e], f"{TRIALS}/{t}/zarr.json") for e, t in keys]
    )
    experiments: list[tuple[int, str, dict[str, Any]]] = []
    for exp_id, doc in zip(exp_ids, exp_docs, strict=True):
        meta = _zstore_attrs(doc)
        if meta.get("encoding-type") != EXPERIMENT_ENCODING:
            key = _join(prefixes[exp_id], "zarr.json")
            emit_user_warning(
                f"{where}: experiment {exp_id!r} is left out of the table: "
                f"{_problem(key, doc, 'zstore experiment')}; `zstore verify` lists what is "
                f"damaged, and the other experiments read as usual"
            )
            continue
        key = _join(prefixes[exp_id], "zarr.json")
        problem = experiment_problem(key, meta, "zarr.json" in trial_lists[exp_ids.index(exp_id)])
        if problem is not None and prefixes[exp_id]:  # a collection's experiment
            emit_user_warning(
                f"{where}: experiment {exp_id!r} is damaged: {problem}; `zstore verify` lists "
                f"what is damaged, and the other experiments read as usual"
            )
        experiments.append((_created(meta), exp_id, meta))
    trials: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for (exp_id, trial_id), doc in zip(keys, trial_docs, strict=True):
        meta = _zstore_attrs(doc)
        if not meta:
            key = _join(prefixes[exp_id], f"{TRIALS}/{trial_id}/zarr.json")
            emit_user_warning(
                f"{where}: trial {trial_id!r} of experiment {exp_id!r} is left out of the "
                f"table: {_problem(key, doc, 'zstore trial')}; `zstore verify` lists what is "
                f"damaged, and the other trials read as usual"
            )
            continue
        trials.setdefault(exp_id, []).append((_created(meta), trial_id, meta))
    missing_summary = [
        (e, t) for e, rows in trials.items() for _, t, m in rows if "summary" not in m
    ]
    found = _summaries_from_arrays(
        store, [_join(prefixes[e], f"{TRIALS}/{t}") for e, t in missing_summary]
    )
    fallback = dict(zip(missing_summary, found, strict=True))
    rows: list[dict[str, Any]] = []
    extra: list[str] = []
    for _, exp_id, meta in sorted(experiments):
        info = meta.get("metadata") if isinstance(meta.get("metadata"), dict) else {}
        assert isinstance(info, dict)
        base = {
            "experiment": exp_id,
            "subject": info.get("subject"),
            "session": info.get("session"),
            "plane": info.get("plane"),
        }
        others = {k: v for k, v in info.items() if k not in base and k not in TABLE_COLUMNS}
        extra.extend(k for k in others if k not in extra)
        listed = sorted(trials.get(exp_id, []))
        if not listed:
            rows.append({**base, "trial": None, **others})
        for _, trial_id, tmeta in listed:
            summary = tmeta.get("summary") or fallback.get((exp_id, trial_id), {})
            summary = _checked_summary(summary, f"{where}: trial {trial_id!r} of {exp_id!r}")
            layers = summary.get("layers") or []
            rows.append(
                {
                    **base,
                    "trial": trial_id,
                    **{k: summary.get(k) for k in TABLE_COLUMNS[5:10]},
                    "layers": ",".join(str(n) for n in layers),
                    **others,
                }
            )
    table = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, *extra])
    for column in ("n_rois", "n_frames", "plane"):
        values = [_whole(v) for v in table[column].tolist()]
        if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            table[column] = pd.array(values, dtype="Int64")  # else kept as written
    for column in ("fs", "start_s", "duration_s"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return table


#: What each field of a trial's ``zstore.summary`` attribute holds (zstore.trialio).
_SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "n_rois": (int,),
    "n_frames": (int,),
    "fs": (int, float),
    "start_s": (int, float),
    "duration_s": (int, float),
    "n_cells": (int,),
    "layers": (list,),
    "processing": (dict,),
}


def _checked_summary(summary: Any, label: str) -> dict[str, Any]:
    """A trial's summary attribute with each field of the wrong type left out (its
    cells are NA), one warning naming the trial and the keys."""
    if not isinstance(summary, Mapping):
        emit_user_warning(
            f"{label}: attribute zstore.summary: expected a mapping, found {summary!r}; its "
            f"fields are NA in the table; `zstore verify` lists what is damaged"
        )
        return {}
    bad = {
        key: summary[key]
        for key, types in _SUMMARY_TYPES.items()
        if summary.get(key) is not None
        and (isinstance(summary[key], bool) or not isinstance(summary[key], types))
    }
    if not bad and all(isinstance(n, str) for n in summary.get("layers") or []):
        return dict(summary)
    if not bad:
        bad = {"layers": summary["layers"]}
    found = ", ".join(f"zstore.summary.{k} = {v!r}" for k, v in bad.items())
    emit_user_warning(
        f"{label}: attribute {found}, of the wrong type (expected "
        f"{', '.join(f'{k}: ' + '/'.join(t.__name__ for t in _SUMMARY_TYPES[k]) for k in bad)}"
        f"); those fields are NA in the table; the store was changed by another program: "
        f"saving the trial again (trial.save()) or `zstore verify` tells more"
    )
    return {k: v for k, v in summary.items() if k not in bad}


def _whole(value: Any) -> Any:
    """A whole number as int, a missing value as None, anything else unchanged."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _problem(key: str, doc: bytes | None, what: str) -> str:
    """Why the metadata document ``doc`` at ``key`` is not a ``what``'s."""
    found = _compat.parse_node_document(key, doc)
    if found.kind == "absent":
        return f"its metadata document {key} is missing"
    if found.kind == "damaged":
        return f"its metadata document {key} {found.problem}"
    return f"{key} has no 'zstore' attributes of a {what}"


def _created(meta: dict[str, Any]) -> int:
    value = meta.get("created", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 2**63


def _zstore_attrs(doc: bytes | None) -> dict[str, Any]:
    try:
        meta = json.loads(doc).get("attributes", {}).get("zstore") if doc else None
    except (ValueError, AttributeError):
        return {}
    return dict(meta) if isinstance(meta, dict) else {}


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}/{rest}" if prefix else rest


def _summaries_from_arrays(store: Any, groups: Sequence[str]) -> list[dict[str, Any]]:
    """Shape and layers of trials written before zstore kept summaries (no chunk read)."""
    if not groups:
        return []
    docs = _compat.read_many(store, [f"{g}/X/zarr.json" for g in groups])
    layer_lists = _compat.list_children(store, [f"{g}/layers" for g in groups])
    out = []
    for doc, layers in zip(docs, layer_lists, strict=True):
        try:
            shape = json.loads(doc)["shape"] if doc else [None, None]
        except (ValueError, KeyError, TypeError):
            shape = [None, None]
        out.append(
            {
                "n_rois": shape[0],
                "n_frames": shape[1],
                "layers": sorted(n for n in layers if n != "zarr.json"),
            }
        )
    return out


def query_table(table: pd.DataFrame, where: str, location: str) -> pd.DataFrame:
    """The rows of ``table`` for which the pandas expression ``where`` is True.

    ``where`` must evaluate to one True/False per row (``"plane == 0"``); anything else
    (a column of numbers, a scalar) is an error, never a selection by value. Variables
    (``@name``) are refused: put the value in the string.
    """
    if not isinstance(where, str) or not where.strip():
        raise InvalidArgumentError(
            f"where must be a pandas query string such as \"subject == 'RL109' and plane "
            f'== 0", got {where!r}'
        )
    if "@" in where:
        raise InvalidArgumentError(
            f"where={where!r}: variables (@name) cannot be used here; put the value in the "
            f'string, e.g. where=f"subject == {{subject!r}}"'
        )
    try:
        try:
            mask = table.eval(where)
        except (TypeError, ValueError, NotImplementedError, AttributeError):
            mask = table.eval(where, engine="python")  # e.g. layers.str.contains('dFF')
    except Exception as err:
        raise InvalidArgumentError(
            f"where={where!r} cannot select trials of {location}: "
            f"{type(err).__name__}: {err}; the table's columns are {list(table.columns)}"
        ) from None
    if not (
        isinstance(mask, pd.Series)
        and len(mask) == len(table)
        and (mask.dtype == bool or str(mask.dtype) == "boolean")
    ):
        shown = type(mask).__name__ if not isinstance(mask, pd.Series) else f"{mask.dtype} values"
        raise InvalidArgumentError(
            f"where={where!r} must be a condition, True or False for each trial (e.g. "
            f'"plane == 0"), but it gives {shown}'
        )
    return table[mask.fillna(False).astype(bool)].reset_index(drop=True)
