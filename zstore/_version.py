"""The installed zstore version (recorded in stores and processing records)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zstore")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
