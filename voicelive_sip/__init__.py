"""voicelive-sip: answer phone calls with Azure AI Voice Live, in pure-Python asyncio.

Names are imported on first use (PEP 562), so `import voicelive_sip.sip` loads the sans-I/O SIP core alone,
without the Voice Live SDK, aiohttp, numpy or pydantic.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("voicelive-sip")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from .aio import (
        Call,
        CallEnded,
        IncomingCall,
        OutgoingCall,
        Registration,
        RegistrationState,
        UserAgent,
        UserAgentOptions,
    )
    from .amd import AmdParameters, AmdPolicy
    from .bridge import CallSession, CallSummary, DtmfHandler, RecordingHook
    from .call_events import (
        AmdDetected,
        AmdOutcome,
        BargedIn,
        SessionFinished,
        ToolCalled,
        TranscriptLine,
        TransferStep,
        TurnLatency,
    )
    from .codecs.names import Codec
    from .config import ConfigError, Settings, StartupError
    from .errors import (
        CallFailed,
        LocalProtocolError,
        ProtocolError,
        RegistrationFailed,
        RemoteProtocolError,
        SipParseError,
        VoiceLiveError,
        VoiceLiveSipError,
    )
    from .gateway import Configure, Gateway, SessionHook, SummaryHook
    from .voicelive.tools import CallInfo, Tool, tool

# name -> module that defines it
_EXPORTS = {
    "AmdDetected": ".call_events",
    "AmdOutcome": ".call_events",
    "AmdParameters": ".amd",
    "AmdPolicy": ".amd",
    "BargedIn": ".call_events",
    "SessionFinished": ".call_events",
    "StartupError": ".config",
    "ToolCalled": ".call_events",
    "TurnLatency": ".call_events",
    "TransferStep": ".call_events",
    "TranscriptLine": ".call_events",
    "Call": ".aio",
    "CallEnded": ".aio",
    "CallFailed": ".errors",
    "CallInfo": ".voicelive.tools",
    "CallSession": ".bridge",
    "CallSummary": ".bridge",
    "Codec": ".codecs.names",
    "ConfigError": ".config",
    "Configure": ".gateway",
    "DtmfHandler": ".bridge",
    "Gateway": ".gateway",
    "IncomingCall": ".aio",
    "LocalProtocolError": ".errors",
    "OutgoingCall": ".aio",
    "ProtocolError": ".errors",
    "RecordingHook": ".bridge",
    "Registration": ".aio",
    "RegistrationFailed": ".errors",
    "RegistrationState": ".aio",
    "RemoteProtocolError": ".errors",
    "SessionHook": ".gateway",
    "Settings": ".config",
    "SipParseError": ".errors",
    "SummaryHook": ".gateway",
    "Tool": ".voicelive.tools",
    "UserAgent": ".aio",
    "UserAgentOptions": ".aio",
    "VoiceLiveError": ".errors",
    "VoiceLiveSipError": ".errors",
    "tool": ".voicelive.tools",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "AmdDetected",
    "AmdOutcome",
    "AmdParameters",
    "AmdPolicy",
    "BargedIn",
    "Call",
    "CallEnded",
    "CallFailed",
    "CallInfo",
    "CallSession",
    "CallSummary",
    "Codec",
    "ConfigError",
    "Configure",
    "DtmfHandler",
    "Gateway",
    "IncomingCall",
    "LocalProtocolError",
    "OutgoingCall",
    "ProtocolError",
    "RecordingHook",
    "Registration",
    "RegistrationFailed",
    "RegistrationState",
    "RemoteProtocolError",
    "SessionFinished",
    "SessionHook",
    "Settings",
    "SipParseError",
    "StartupError",
    "SummaryHook",
    "Tool",
    "ToolCalled",
    "TranscriptLine",
    "TransferStep",
    "TurnLatency",
    "UserAgent",
    "UserAgentOptions",
    "VoiceLiveError",
    "VoiceLiveSipError",
    "__version__",
    "tool",
]
