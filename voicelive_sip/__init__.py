"""voicelive-sip: answer phone calls with Azure AI Voice Live, in pure-Python asyncio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voicelive-sip")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# After __version__: submodules (metrics) read it while the package is still importing.
from .bridge import CallSession, CallSummary
from .config import Settings
from .gateway import Gateway
from .sip.ua import UserAgent
from .voicelive.tools import CallInfo, Tool, tool

__all__ = [
    "CallInfo",
    "CallSession",
    "CallSummary",
    "Gateway",
    "Settings",
    "Tool",
    "UserAgent",
    "__version__",
    "tool",
]
