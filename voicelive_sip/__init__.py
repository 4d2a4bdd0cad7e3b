"""voicelive-sip: answer phone calls with Azure AI Voice Live, in pure-Python asyncio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voicelive-sip")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
