"""medprobe's shared layer: data, backbones, metrics, results, references, reports, errors."""

from importlib import metadata

try:
    __version__ = metadata.version("medprobe")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
