"""Benchmarks of zstore: its own cost against the paths users take today, and the ceilings
of the machine it runs on.

What is measured, on a synthetic Suite2p run of a chosen size: zstore's ingest, dF/F,
opening, reads and concatenation; the in-memory numpy + AnnData path and anndata's lazy
(dask) path doing the same work; and ceilings (a memory copy, a zarr write with zstore's
codec, the dF/F kernel alone in memory). Also, on request: zstore against another zstore
checkout on the same data (locally, or on a local S3 server), and codec x chunk-shape
choices.

Run it with ``scripts/bench --size small`` (see ``scripts/bench --help``), which is
``python -m benchmarks`` from the repository root in the project's venv.

Modules: :mod:`benchmarks.steps` (the measurements), :mod:`benchmarks.step` (runs one
step in its own process), :mod:`benchmarks.run` (orchestration), :mod:`benchmarks.report`
(the Markdown tables) and ``__main__`` (the command line).
"""
