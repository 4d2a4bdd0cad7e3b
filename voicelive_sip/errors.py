"""Every error this library raises derives from `VoiceLiveSipError` (h11 style: one root, Local vs Remote).

- `ProtocolError`: a protocol rule was broken. `LocalProtocolError`: by us (the API was misused);
  `RemoteProtocolError`: by the peer (it sent junk: `SipParseError`, `SdpError`, `RtpParseError`).
- `CallFailed`: a call could not be set up, or an in-call request failed: the SIP status says why.
- `RegistrationFailed`, `ConfigError`, `VoiceLiveError` and the digest errors complete the tree.

This module imports nothing beyond the standard library, so every layer may use it.
"""

from __future__ import annotations


class VoiceLiveSipError(Exception):
    """The root of every error voicelive-sip raises."""


class ProtocolError(VoiceLiveSipError):
    """A protocol rule was broken; see `LocalProtocolError` and `RemoteProtocolError`."""


class LocalProtocolError(ProtocolError, RuntimeError):
    """The application asked for something the protocol does not allow (a bug or misuse on our side)."""


class RemoteProtocolError(ProtocolError, ValueError):
    """The peer sent something that breaks the protocol."""


class CallFailed(VoiceLiveSipError):
    """A call could not be set up (or an in-call request failed): the SIP status and reason say why."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code} {reason}")
        self.status_code = status_code
        self.reason = reason


class RegistrationFailed(VoiceLiveSipError):
    """Registration did not succeed: the status (0 for no response) and a reason a person can act on."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code} {reason}" if status_code else reason)
        self.status_code = status_code
        self.reason = reason


__all__ = [
    "CallFailed",
    "LocalProtocolError",
    "ProtocolError",
    "RegistrationFailed",
    "RemoteProtocolError",
    "VoiceLiveSipError",
]
