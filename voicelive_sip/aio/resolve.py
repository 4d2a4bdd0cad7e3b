"""Where a request goes: dial strings as URIs, and a URI's next hop (address, port, transport).

No RFC 3263 SRV/NAPTR lookups: A/AAAA records only, cached (bounded). `sips:` and `;transport=tls` go over
TLS, port 5061 unless the URI names one, and the certificate must carry the host name the URI names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from ..errors import CallFailed, LocalProtocolError
from ..sip.transaction_events import Address
from ..sip.uri import SipUri, TelUri, Uri, parse_uri

MAX_DNS_CACHE = 1000
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


def target_uri(target: str, server: str | None) -> Uri:
    """A dial string as a URI: a full URI as is, `user@host` as sip:, a bare number at `server`."""
    if ":" not in target.split("@")[0] and not target.startswith(("sip:", "sips:", "tel:")):
        if "@" not in target:
            if not server:
                raise LocalProtocolError(f"{target!r} has no host and SIP_SERVER is not set")
            target = f"{target}@{server}"
        target = "sip:" + target
    return parse_uri(target)


def as_sip_uri(text: str) -> SipUri:
    """A host[:port] or SIP URI string as a SipUri; ValueError when it is another scheme."""
    uri = parse_uri(text if text.startswith(("sip:", "sips:")) else "sip:" + text)
    if not isinstance(uri, SipUri):
        raise ValueError(f"not a SIP URI: {text!r}")
    return uri


class Resolver:
    """A URI's next hop; `server` (SIP_SERVER) takes tel: URIs."""

    def __init__(self, server: str | None) -> None:
        self.server = server
        self._dns: dict[str, str] = {}

    async def resolve(self, uri: Uri, listening: Sequence[str]) -> tuple[Address, str, str | None]:
        """(address, port), transport, and for TLS to a host name the name its certificate must carry.

        TCP falls back to UDP when we do not listen on TCP; TLS needs no listener of ours to connect out.
        """
        if isinstance(uri, TelUri):
            if not self.server:
                raise CallFailed(416, "tel: URI without SIP_SERVER to send it to")
            uri = as_sip_uri(self.server)
        if not isinstance(uri, SipUri):
            raise CallFailed(416, f"unsupported URI scheme {uri.scheme}")
        host = (uri.maddr or uri.host).strip("[]")
        transport = "TLS" if uri.secure else (uri.transport or "udp").upper()
        if transport not in DEFAULT_PORTS:
            raise CallFailed(502, f"unsupported transport {transport}")
        if transport == "TCP" and "TCP" not in listening:
            transport = "UDP"
        address = await self._lookup(host)
        server_name = host if transport == "TLS" and address != host else None
        return (address, uri.port or DEFAULT_PORTS[transport]), transport, server_name

    async def _lookup(self, host: str) -> str:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        cached = self._dns.get(host)
        if cached is not None:
            return cached
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as error:
            raise CallFailed(502, f"cannot resolve {host}: {error}") from error
        address = str(infos[0][4][0])
        if len(self._dns) >= MAX_DNS_CACHE:
            self._dns.clear()
        self._dns[host] = address
        return address


__all__ = ["DEFAULT_PORTS", "Resolver", "as_sip_uri", "target_uri"]
