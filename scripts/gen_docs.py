"""Write docs/API.md (from the public names' docstrings) and docs/CLI.md (from --help).

Run after changing a docstring or an option: `.venv/bin/python scripts/gen_docs.py`.
tests/test_docs.py fails when the committed pages differ from what this writes.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import sys
from pathlib import Path

import zstore as zs
from zstore.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent


IO_TABLE = """## Which calls read or write the store

Nothing reads chunk data unless asked. Attributes never do I/O; methods that do say so.

| call | reads | writes |
|---|---|---|
| `open_experiment`, `exp.refresh()` | the repository's config, the branch, one snapshot (every node's metadata) | - |
| `exp.expID`, `exp.trialIDs`, `exp.version`, `exp.config`, `len(exp)`, `in` | nothing (the snapshot read at open) | - |
| `exp.load_trial`, `exp.concat` | each trial's obs, var, uns and eager obsm (manifests and their chunks), and the summary images its uns refers to (each once per `Experiment` object) | - |
| `exp.layer_names`, `exp.open_zarr` | nothing (metadata of the snapshot) | - |
| `trial.data` verbs (`add_layer`, `add_obs`, ...), `normalize_dff` on dask | nothing | - |
| `.compute()`, indexing lazy X / layers / masks | the chunks selected | - |
| `trial.to_xarray`, `exp.to_xarray`, `event_windows` | metadata, obs, var, uns (as `load_trial`); values when computed: the chunks selected | - |
| `events_from_channel` | each trial's var (as `load_trial`) | - |
| `trial.storage()` | the manifests (stored sizes); `storage(stored=False)`: nothing | - |
| `open_collection`, `col.refresh()` | the repository's config, the branch, one snapshot | - |
| `col.table()`, `exp.table()`, `col.experimentIDs`, `col.select`, `len(col)`, `in` | nothing beyond the snapshot: experiment and trial attributes, fetched concurrently once per version | - |
| `col.open_experiment` | nothing (the collection's snapshot) | - |
| `exp.history()` | every snapshot of main | - |
| `trial.save()`, `exp.add_trial`, `exp.remove_trial`, `compute_dff`, `create_experiment`, `ingest_suite2p`, `migrate`, `create_collection`, `col.append`, `col.create_experiment`, `col.remove_experiment` | what they compute from | new chunks, then one commit (`compute_dff`: one per trial) |
| `exp.collect_garbage` | every snapshot and manifest kept | deletes expired snapshots and unreferenced objects |
| `verify_experiment`, `export` | every chunk | `export`: the new file |

"""


def api_page() -> str:
    parts = [
        "# zstore API",
        "",
        "Generated from the docstrings by `scripts/gen_docs.py`; every example here runs in the test suite.",
        "",
        IO_TABLE,
    ]
    names = [n for n in zs.__all__ if not n.startswith("_")] + [
        "plot.plot_rois",
        "plot.plot_raster",
        "plot.plot_traces",
        "plot.plot_event_average",
    ]
    for name in names:
        obj = zs
        for part in name.split("."):
            obj = getattr(obj, part)
        kind = "class" if inspect.isclass(obj) else "function"
        try:
            signature = str(inspect.signature(obj))
        except (TypeError, ValueError):
            signature = ""
        parts += [
            f"## `zstore.{name}`",
            "",
            f"```python\n{kind} {name.split('.')[-1]}{signature}\n```",
            "",
        ]
        parts += [inspect.cleandoc(obj.__doc__ or "(no docstring)"), ""]
        if inspect.isclass(obj):
            for attr, member in inspect.getmembers(obj):
                if attr.startswith("_") or not (
                    inspect.isfunction(member) or isinstance(member, property)
                ):
                    continue
                if member.__doc__ is None or (
                    attr in {"copy", "to_memory"} and obj is zs.AnnotatedData
                ):
                    continue
                if getattr(member, "__module__", "zstore").split(".")[
                    0
                ] != "zstore" and not isinstance(member, property):
                    continue
                if (
                    isinstance(member, property)
                    and member.fget
                    and member.fget.__module__.split(".")[0] != "zstore"
                ):
                    continue
                parts += [f"### `{name}.{attr}`", "", inspect.cleandoc(member.__doc__), ""]
    return "\n".join(parts).rstrip() + "\n"


JSON_SECTION = """## `zstore info --json` and `zstore ingest --json`

For scripts. Keys are added, never renamed or given another meaning without raising
`info_format` (now {info_format}). Numbers are JSON numbers; unknown values are `null`.

`zstore info STORE --json` of an experiment:

| key | value |
|---|---|
| `info_format`, `zstore_version` | the document's format (an integer) and the zstore that wrote it |
| `kind` | `"experiment"` |
| `location`, `version` | where the store is, and the version (snapshot ID) described |
| `experiment`, `metadata` | the experiment ID and what was recorded at ingest (subject, session, plane, ...) |
| `totals` | `trials`, `frames`, `duration_s` (null if a trial's is unknown), `stored_bytes` (the whole experiment) |
| `trials` | one object per trial, in the order they were added (below) |
| `damaged` | the trials whose metadata cannot be read (left out of `trials`): `trial`, and `problem` naming the key, e.g. "its metadata document trials/t-005/zarr.json is not valid JSON (...)" |

Each trial:

| key | value |
|---|---|
| `trial`, `n_rois`, `n_frames`, `fs`, `start_s`, `duration_s` | the trial's ID, shape, frame rate (Hz) and session time (s) |
| `rois` | `stored`; `cells` (`iscell == 1`) and `total` ROIs of the Suite2p run; `dropped` (`total - stored`); `text`, e.g. "21 of 23 ROIs kept: 2 non-cells dropped (iscell == 0)" |
| `channels` | the paq channels sampled at each frame (var columns but `time`) |
| `X`, `layers` | `X` and each layer by name: `computed` (one line: how it was made) and `record` (the processing record's scalar fields, or null) |
| `stored_bytes` | bytes stored for the trial (X, layers, obs, var, uns, masks) |
| `source` | the trial's provenance: for Suite2p, `plane_dir`, `plane`, `frames` ([start, stop) of the run), `paq`, `neuropil_coeff`, `cells_only`, `rois` |
| `storage` | with `--storage` only: per array `name`, `shape`, `dtype`, `shards`, `chunks`, `codecs`, `nbytes`, `stored_bytes` |

Of a collection: `info_format`, `zstore_version`, `kind` (`"collection"`), `location`,
`version`, `where` (the `--where` query or null), `totals` (`experiments`, `trials`,
`frames`, `duration_s`, `stored_bytes`), `experiments`: one object per experiment with
`experiment`, `metadata`, `totals`, `trials` and `damaged` as above, and `damaged`: the
experiments whose own metadata cannot be read (`experiment`, `problem`).

`zstore ingest ... --json` prints what was ingested (`zs.IngestSummary.to_dict()`):
`location`, `n_trials` and `experiments`, each with `exp_id`, `plane`, `plane_dir`, `fs`,
`rois_total`, `rois_cells`, `rois_kept`, `rois_dropped`, `cells_only`, `neuropil_coeff`,
`layers`, `n_frames`, `duration_s` and `trials` (`trial_id`, `frames`, `n_frames`,
`start_s`, `duration_s`, `files`, `paq`, `channels`, `clock_edges`: the frame clock
edges found in the paq, of which the first `n_frames` were used).
"""


def cli_page() -> str:
    from zstore.summary import INFO_FORMAT

    parts = ["# The `zstore` command", "", "Generated from `--help` by `scripts/gen_docs.py`.", ""]
    for argv in ([], ["ingest"], ["info"], ["dff"], ["plot"]):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            cli_main([*argv, "--help"])
        title = " ".join(["zstore", *argv])
        parts += [f"## `{title}`", "", "```", buffer.getvalue().rstrip(), "```", ""]
    parts.append(JSON_SECTION.format(info_format=INFO_FORMAT))
    return "\n".join(parts).rstrip() + "\n"


def main() -> None:
    (ROOT / "docs").mkdir(exist_ok=True)
    for name, text in (("API.md", api_page()), ("CLI.md", cli_page())):
        (ROOT / "docs" / name).write_text(text)
        print(f"wrote docs/{name}")


if __name__ == "__main__":
    sys.exit(main())
