"""zstore: a Zarr-backed, out-of-core store for two-photon calcium-imaging experiments.

>>> import zstore as zs
>>> exp = zs.open_experiment("exp.zarr")          # doctest: +SKIP
>>> trial = exp.load_trial(exp.trialIDs[0])       # doctest: +SKIP
>>> col = zs.open_collection("lab.zarr")          # doctest: +SKIP
>>> col.table("subject == 'RL109' and plane == 0")  # doctest: +SKIP
"""

from ._version import __version__
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
from .opening import create_experiment, open_experiment
from .processing import neuropil_correct, normalize_dff
from .ragged import RaggedArray
from .verify import verify_experiment

__all__ = [
    "AnnotatedData",
    "Collection",
    "Experiment",
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


def __getattr__(name: str) -> object:
    # zstore.plot needs matplotlib (an optional extra): import it on first use only.
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module 'zstore' has no attribute {name!r}")
