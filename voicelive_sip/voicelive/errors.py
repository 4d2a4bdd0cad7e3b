"""Why a Voice Live connection failed, in words an operator can act on."""

from __future__ import annotations

import socket
import ssl

import aiohttp
from azure.core.exceptions import ClientAuthenticationError

from voicelive_sip.errors import VoiceLiveSipError


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


def classify(exc: BaseException, endpoint: str) -> VoiceLiveError:
    """Turn an SDK/aiohttp/credential failure into one of our errors with a readable message."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for err in chain:
        if isinstance(err, VoiceLiveError):
            return err
        if isinstance(err, aiohttp.WSServerHandshakeError):
            if err.status in (401, 403):
                return VoiceLiveAuthError(
                    f"Voice Live rejected the credentials ({err.status}) at {endpoint}: "
                    "check AZURE_VOICELIVE_API_KEY or the Entra ID role assignment"
                )
            return VoiceLiveConnectError(f"Voice Live handshake failed with HTTP {err.status} at {endpoint}")
        if isinstance(err, ClientAuthenticationError):
            return VoiceLiveAuthError(f"no Entra ID token for Voice Live: {err.message}")
        if isinstance(err, aiohttp.ClientConnectorDNSError | socket.gaierror):
            return VoiceLiveDnsError(f"cannot resolve the Voice Live host of {endpoint}")
        if isinstance(err, aiohttp.ClientSSLError | ssl.SSLError):
            return VoiceLiveTlsError(f"TLS handshake with {endpoint} failed: {err}")
        if isinstance(err, TimeoutError):
            return VoiceLiveTimeoutError(f"no WebSocket handshake from {endpoint} within the connect timeout")
        if isinstance(err, aiohttp.ClientConnectorError):
            return VoiceLiveConnectError(f"cannot connect to {endpoint}: {err.os_error}")
    return VoiceLiveConnectError(f"Voice Live connection to {endpoint} failed: {exc}")
