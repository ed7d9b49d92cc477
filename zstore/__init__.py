"""zstore: a Zarr-backed, out-of-core store for two-photon calcium-imaging experiments.

>>> import zstore as zs
>>> exp = zs.open_experiment("exp.zarr")          # doctest: +SKIP
>>> trial = exp.load_trial(exp.trialIDs[0])       # doctest: +SKIP
>>> col = zs.open_collection("lab.zarr")          # doctest: +SKIP
>>> col.table("subject == 'RL109' and plane == 0")  # doctest: +SKIP

The public names are imported on first use (PEP 562), so ``import zstore`` and the
``zstore --version`` / ``--help`` commands do not import anndata, zarr or dask.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import plot as plot  # a module, imported on first use (needs matplotlib)
    from .annotated import AnnotatedData
    from .arrays import StorageConfig
    from .collection import Collection, create_collection, open_collection
    from .errors import ZstoreWarning
    from .events import event_windows, events_from_channel
    from .experiment import Experiment, Trial, compute_dff
    from .export import export
    from .ingest import ingest_suite2p
    from .io.paq import PaqData, frame_times, read_paq, write_paq
    from .migrate import migrate
    from .nwb import export_nwb
    from .opening import create_experiment, open_experiment
    from .processing import neuropil_correct, normalize_dff
    from .ragged import RaggedArray
    from .summary import IngestSummary
    from .verify import verify_experiment

# public name -> the module (relative to zstore) that defines it
_SOURCES = {
    "AnnotatedData": ".annotated",
    "Collection": ".collection",
    "Experiment": ".experiment",
    "IngestSummary": ".summary",
    "PaqData": ".io.paq",
    "RaggedArray": ".ragged",
    "StorageConfig": ".arrays",
    "Trial": ".experiment",
    "ZstoreWarning": ".errors",
    "compute_dff": ".experiment",
    "create_collection": ".collection",
    "create_experiment": ".opening",
    "event_windows": ".events",
    "events_from_channel": ".events",
    "export": ".export",
    "export_nwb": ".nwb",
    "frame_times": ".io.paq",
    "ingest_suite2p": ".ingest",
    "migrate": ".migrate",
    "neuropil_correct": ".processing",
    "normalize_dff": ".processing",
    "open_collection": ".collection",
    "open_experiment": ".opening",
    "read_paq": ".io.paq",
    "verify_experiment": ".verify",
    "write_paq": ".io.paq",
}

__all__ = [
    "AnnotatedData",
    "Collection",
    "Experiment",
    "IngestSummary",
    "PaqData",
    "RaggedArray",
    "StorageConfig",
    "Trial",
    "ZstoreWarning",
    "__version__",
    "compute_dff",
    "create_collection",
    "create_experiment",
    "event_windows",
    "events_from_channel",
    "export",
    "export_nwb",
    "frame_times",
    "ingest_suite2p",
    "migrate",
    "neuropil_correct",
    "normalize_dff",
    "open_collection",
    "open_experiment",
    "read_paq",
    "verify_experiment",
    "write_paq",
]


def __getattr__(name: str) -> Any:
    if name == "plot":  # a module; needs matplotlib (an optional extra)
        return importlib.import_module(".plot", __name__)
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'zstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"plot"})


class _Package(types.ModuleType):
    # ``zstore.export`` and ``zstore.migrate`` are both submodules and functions. Importing
    # the submodule binds the package attribute to the module (the import system does that
    # after loading it); the public name is the function, as an eager
    # ``from .export import export`` made it.
    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _SOURCES.get(name) == f".{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
