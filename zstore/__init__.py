"""zstore: a Zarr-backed, out-of-core store for two-photon calcium-imaging experiments.

>>> import zstore as zs
>>> exp = zs.open_experiment("exp.zarr")          # doctest: +SKIP
>>> trial = exp.load_trial(exp.trialIDs[0])       # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .annotated import AnnotatedData
from .arrays import StorageConfig
from .errors import ZstoreWarning
from .experiment import Experiment, Trial, create_experiment, open_experiment
from .processing import neuropil_correct, normalize_dff
from .ragged import RaggedArray

try:
    __version__ = version("zstore")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AnnotatedData",
    "Experiment",
    "RaggedArray",
    "StorageConfig",
    "Trial",
    "ZstoreWarning",
    "__version__",
    "create_experiment",
    "neuropil_correct",
    "normalize_dff",
    "open_experiment",
]
