"""Rich (HTML) display of AnnotatedData, Trial and Experiment in notebooks.

Built from metadata only: shapes, dtypes, chunking, whether data is lazy, and (for a
trial) stored and uncompressed sizes. Rendering never reads chunk data.
"""

from __future__ import annotations

from html import escape
from typing import Any

import dask.array as da

from .annotated import ALIGNED

__all__ = ["format_bytes", "html_annotated", "html_experiment", "html_trial"]

_STYLE = (
    "<style>.zs-t{border-collapse:collapse;font-size:12px}"
    ".zs-t td,.zs-t th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}"
    ".zs-h{font-weight:bold;margin:4px 0}.zs-k{color:#555}</style>"
)


def _array_text(value: Any) -> str:
    shape = "×".join(str(s) for s in getattr(value, "shape", ()))
    dtype = getattr(value, "dtype", "")
    if isinstance(value, da.Array):
        chunks = "×".join(str(c[0]) if c else "0" for c in value.chunks)
        where = f"lazy (dask), blocks of {chunks}"
    else:
        where = f"in memory ({type(value).__name__})"
    return f"{shape} {dtype}, {where}"


def format_bytes(n: float | None) -> str:
    """A byte count for people: 1.2 GB, 345.0 kB ("unknown" for None)."""
    if n is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _rows(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><td class='zs-k'>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table class='zs-t'>{body}</table>"


def html_annotated(adata: Any) -> str:
    """HTML summary of an AnnotatedData."""
    rows = [("X", _array_text(adata.X))]
    rows += [(f"layers['{k}']", _array_text(v)) for k, v in adata.layers.items()]
    rows.append(
        ("obs", f"{adata.n_obs} ROIs; columns: {', '.join(map(str, adata.obs.columns)) or '-'}")
    )
    rows.append(
        ("var", f"{adata.n_vars} frames; columns: {', '.join(map(str, adata.var.columns)) or '-'}")
    )
    for attr in ALIGNED:
        for key, value in getattr(adata, attr).items():
            rows.append(
                (
                    f"{attr}['{key}']",
                    repr(value) if hasattr(value, "is_lazy") else _array_text(value),
                )
            )
    if len(adata.uns):
        rows.append(("uns", ", ".join(map(str, adata.uns.keys()))))
    return f"{_STYLE}<div class='zs-h'>{escape(repr(adata))}</div>{_rows(rows)}"


def html_trial(trial: Any) -> str:
    """HTML summary of a Trial, with how its matrices are stored."""
    title = f"Trial {trial.trialID!r} of experiment {trial.experiment.expID!r}"
    head = f"<div class='zs-h'>{escape(title)}</div>"
    storage = trial.storage(stored=False)  # metadata only: a repr reads no manifest
    columns = ("array", "shape", "shard", "chunk", "codecs", "uncompressed")
    header = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v))}</td>"
            for v in (
                a["name"],
                "×".join(map(str, a["shape"])),
                "×".join(map(str, a["shards"])) if a["shards"] else "-",
                "×".join(map(str, a["chunks"])),
                ", ".join(a["codecs"]),
                format_bytes(a["nbytes"]),
            )
        )
        + "</tr>"
        for a in storage
    )
    return f"{head}{html_annotated(trial.data)}<table class='zs-t'>{header}{body}</table>"


def html_experiment(exp: Any) -> str:
    """HTML summary of an Experiment: its trials (listing only, nothing loaded)."""
    ids = exp.trialIDs
    rows = [
        ("store", exp.location),
        ("version", exp.version),
        ("mode", exp.mode),
        ("trials", f"{len(ids)}: {', '.join(ids)}"),
    ]
    return f"{_STYLE}<div class='zs-h'>Experiment {escape(repr(exp.expID))}</div>{_rows(rows)}"
