"""The user agent's configuration as plain data: no environment, no pydantic (`Settings` builds it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class UserAgentOptions:
    """Everything `UserAgent` needs; defaults suit a UA on loopback. `SipSettings` documents each."""

    local_address: str = "127.0.0.1"
    port: int = 5060
    via_address: str | None = None
    transports: Sequence[str] = ("udp", "tcp")
    server: str | None = None
    user: str | None = None
    auth_user: str | None = None
    auth_realm: str | None = None
    auth_password: str | None = field(default=None, repr=False)
    register_enabled: bool = False
    register_expires: int = 3600
    display_name: str | None = None
    user_agent: str = "voicelive-sip"
    max_calls: int = 100
    busy_status: int = 486
    allow_from: Sequence[str] = ()
    inbound_auth_user: str | None = None
    inbound_auth_password: str | None = field(default=None, repr=False)
    auth_max_failures: int = 5
    auth_user_max_failures: int = 20
    auth_failure_window: float = 60.0
    auth_ban_seconds: float = 60.0
    auth_max_ban_seconds: float = 3600.0
    session_expires: int = 1800
    min_se: int = 90
    invite_timeout: float = 60.0
    t1: float = 0.5
    tcp_idle_timeout: float = 300.0
    max_tcp_connections: int = 1024
    max_tcp_connections_per_source: int = 32
    tcp_message_timeout: float = 10.0
    max_transactions: int = 50_000
    max_requests_per_second: int = 500
    max_packets_per_source: int = 2000
    flood_ban_seconds: float = 10.0
    flood_max_ban_seconds: float = 600.0
    max_new_requests_total: int = 2000
    max_options_per_second: int = 200
    max_unknown_dialog_answers: int = 100
    max_pending_invites_per_source: int = 20
    # TLS: the listener starts on tls_port when tls_cert_file is set; outgoing TLS works without one.
    tls_port: int = 5061
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    tls_verify_peer: bool = True
    tls_require_client_cert: bool = False
    tls_handshake_timeout: float = 10.0
    keepalive_interval: float = 90.0
    # Media: what goes into our SDP.
    media_address: str = "127.0.0.1"
    media_public_address: str | None = None
    codecs: Sequence[str] = ("PCMU", "PCMA")
    ptime: int = 20
    srtp: str = "optional"  # "off" | "optional" | "required" (MEDIA_SRTP)

    @property
    def sdp_address(self) -> str:
        """The address our SDP advertises for RTP."""
        return self.media_public_address or self.media_address


def advertised_address_problems(options: UserAgentOptions) -> list[str]:
    """What to check about wildcard binds without an address to advertise (logged at start).

    They work: each peer is told our address on the interface that routes to it. Behind NAT that is a
    private address, which only SIP_VIA_ADDR / MEDIA_PUBLIC_ADDRESS can correct.
    """
    problems = []
    if options.local_address in ("0.0.0.0", "::") and not options.via_address:
        problems.append(
            "SIP_LOCAL_ADDRESS is a wildcard and SIP_VIA_ADDR is not set: Via/Contact name our address on "
            "the interface towards each peer; behind NAT set SIP_VIA_ADDR to the public address"
        )
    if options.media_address in ("0.0.0.0", "::") and not options.media_public_address:
        problems.append(
            "MEDIA_ADDRESS is a wildcard and MEDIA_PUBLIC_ADDRESS is not set: SDP names our address on the "
            "interface towards each caller; behind NAT set MEDIA_PUBLIC_ADDRESS to the public address"
        )
    return problems


__all__ = ["UserAgentOptions", "advertised_address_problems"]
