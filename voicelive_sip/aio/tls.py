"""TLS for SIP (RFC 3261 §26, RFC 5630): the server and client SSL contexts built from the options.

TLS 1.2 is the floor. The server context carries our certificate and, for mutual TLS, demands a client
certificate signed by SIP_TLS_CA_FILE. The client context checks the server's certificate and name against
SIP_TLS_CA_FILE (or the system's CAs) unless SIP_TLS_VERIFY_PEER is off, and presents our certificate when we
have one (Teams Direct Routing and many SBCs ask for it).
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from .._logger import get_logger
from ..errors import LocalProtocolError
from .options import UserAgentOptions

log = get_logger("voicelive_sip.sip.tls")


class TlsSetupError(LocalProtocolError, ValueError):
    """A TLS setting cannot be used: the message names the setting and why (missing file, bad PEM...)."""


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """The listener's context (None without a certificate) and the one for connections we open."""

    server: ssl.SSLContext | None
    client: ssl.SSLContext
    handshake_timeout: float


def _readable(setting: str, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise TlsSetupError(f"{setting}: {path} is not a readable file")


def _load_chain(context: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    _readable("SIP_TLS_CERT_FILE", cert_file)
    if key_file:
        _readable("SIP_TLS_KEY_FILE", key_file)
    try:
        context.load_cert_chain(cert_file, key_file or None)
    except ssl.SSLError as error:
        setting = "SIP_TLS_KEY_FILE" if key_file else "SIP_TLS_CERT_FILE"
        raise TlsSetupError(
            f"{setting}: cannot use the certificate and key ({error.reason or error}); "
            "both must be PEM and the key must match the certificate"
        ) from None


def _load_cas(context: ssl.SSLContext, ca_file: str) -> None:
    _readable("SIP_TLS_CA_FILE", ca_file)
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as error:
        raise TlsSetupError(f"SIP_TLS_CA_FILE: not a PEM CA bundle ({error.reason or error})") from None


def tls_contexts(options: UserAgentOptions) -> TlsContexts:
    """Both contexts, or `TlsSetupError` naming the setting that cannot be used."""
    if options.tls_key_file and not options.tls_cert_file:
        raise TlsSetupError("SIP_TLS_KEY_FILE: set, but SIP_TLS_CERT_FILE is not")
    if options.tls_require_client_cert and not options.tls_ca_file:
        raise TlsSetupError("SIP_TLS_REQUIRE_CLIENT_CERT: needs SIP_TLS_CA_FILE (CAs of client certificates)")
    server: ssl.SSLContext | None = None
    if options.tls_cert_file:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_chain(server, options.tls_cert_file, options.tls_key_file)
        if options.tls_require_client_cert:
            assert options.tls_ca_file is not None
            _load_cas(server, options.tls_ca_file)
            server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.tls_ca_file:
        _load_cas(client, options.tls_ca_file)
    else:
        client.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if not options.tls_verify_peer:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        log.warning("security.tls_verify_disabled", setting="SIP_TLS_VERIFY_PEER")
    if options.tls_cert_file:
        _load_chain(client, options.tls_cert_file, options.tls_key_file)
    return TlsContexts(server, client, options.tls_handshake_timeout)


def describe_tls_error(error: BaseException) -> str:
    """A short reason for a failed handshake: the verification message when there is one."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error).lower().replace("_", " ")
    if isinstance(error, TimeoutError):
        return "handshake timed out"
    return str(error) or type(error).__name__


class TlsSession:
    """One connection's TLS, over memory buffers: ciphertext in, plain text out, and what to send back.

    The same code on every event loop (asyncio's and uvloop's TLS differ in how they start and report a
    failed handshake), and the stream connection sees each handshake failure itself, with its reason.
    """

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_name: str | None = None) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_name
        )
        self.established = False
        self.closed_by_peer = False

    def start(self) -> bytes:
        """The client's first flight (its ClientHello); nothing for a server."""
        self._handshake()
        return self._out.read()

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return
        self.established = True

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed received bytes: (plain text for SIP, bytes to send). Raises `ssl.SSLError` on a bad peer."""
        self._in.write(data)
        if not self.established:
            self._handshake()
        plain = bytearray()
        while self.established:
            try:
                chunk = self._tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer's close_notify
                self.closed_by_peer = True
                break
            if not chunk:  # so is an empty read: no data left raises SSLWantReadError instead
                self.closed_by_peer = True
                break
            plain += chunk
        return bytes(plain), self._out.read()

    def send(self, data: bytes) -> bytes:
        """Encrypt SIP bytes (after the handshake) into the records to put on the wire."""
        self._tls.write(data)
        return self._out.read()

    def close(self) -> bytes:
        """Our close_notify, best effort."""
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        return self._out.read()

    @property
    def version(self) -> str | None:
        return self._tls.version()

    def peer_subject(self) -> str | None:
        """The peer certificate's subject (mutual TLS), for the logs."""
        certificate = self._tls.getpeercert()
        if not certificate:
            return None
        subject: tuple[tuple[tuple[str, str], ...], ...] = certificate.get("subject", ())  # type: ignore[assignment]
        return ",".join(f"{key}={value}" for rdn in subject for key, value in rdn)


__all__ = ["TlsContexts", "TlsSession", "TlsSetupError", "describe_tls_error", "tls_contexts"]
