"""cryofield: neural-field reconstruction of flexible and mixed macromolecules from cryo-EM images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryofield")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
