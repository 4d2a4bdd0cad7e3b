"""Every error this library raises derives from `VoiceLiveSipError` (h11 style: one root, Local vs Remote).

- `ProtocolError`: a protocol rule was broken. `LocalProtocolError`: by us (the API was misused);
  `RemoteProtocolError`: by the peer (it sent junk: `SipParseError`, `SdpError`, `RtpParseError`).
- `CallFailed`: a call could not be set up, or an in-call request failed: the SIP status says why.
- `VoiceLiveError` (and why a connection failed: auth, DNS, TLS, timeout, other), `RegistrationFailed`,
  `ConfigError` and the digest errors complete the tree.

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


class SipParseError(RemoteProtocolError):
    """The peer sent something that is not valid SIP; `status_code`/`reason` say what a UA should answer."""

    def __init__(self, detail: str, *, status_code: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.reason = reason
        # Filled in by parse_message: whether a request was seen, and the raw header fields read so far,
        # so a UA can still answer (RFC 3261 §8.2) when parsing failed part-way.
        self.is_request: bool | None = None
        self.fields: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"SipParseError({self.detail!r}, status_code={self.status_code}, reason={self.reason!r})"


class VoiceLiveError(VoiceLiveSipError):
    """Base of every Voice Live session error."""


class VoiceLiveAuthError(VoiceLiveError):
    """The service refused the credentials (401/403), or no Entra ID token could be obtained."""


class VoiceLiveDnsError(VoiceLiveError):
    """The endpoint's host name does not resolve."""


class VoiceLiveTlsError(VoiceLiveError):
    """The TLS handshake failed (certificate, protocol, or a plain-HTTP server on an https endpoint)."""


class VoiceLiveTimeoutError(VoiceLiveError):
    """The handshake did not finish within the connect timeout."""


class VoiceLiveConnectError(VoiceLiveError):
    """Any other failure to open or keep the WebSocket (refused, wrong path, closed)."""


__all__ = [
    "CallFailed",
    "LocalProtocolError",
    "ProtocolError",
    "RegistrationFailed",
    "RemoteProtocolError",
    "SipParseError",
    "VoiceLiveAuthError",
    "VoiceLiveConnectError",
    "VoiceLiveDnsError",
    "VoiceLiveError",
    "VoiceLiveSipError",
    "VoiceLiveTimeoutError",
    "VoiceLiveTlsError",
]
