"""Where a request goes: dial strings as URIs, and a URI's next hop (address, port, transport).

No RFC 3263 SRV/NAPTR lookups: A/AAAA records only, cached (bounded). `sips:` and `;transport=tls` go over
TLS, port 5061 unless the URI names one, and the certificate must carry the host name the URI names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence

from ..errors import CallFailed, LocalProtocolError, SipParseError
from ..sip.transaction_events import Address
from ..sip.uri import SipUri, TelUri, Uri, parse_uri

MAX_DNS_CACHE = 1000
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}
WILDCARDS = ("0.0.0.0", "::", "[::]")
MAX_ROUTES = 4096


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


def address_of_record(user: str | None, server: str | None, ours: Callable[[], SipUri]) -> SipUri:
    """Our address-of-record from SIP_USER: a URI as given; a bare user (`alice`, no `@`) at SIP_SERVER's
    host, as the reference gateway's `sip:{SIP_USER}@{SIP_SERVER}` has it; else a user at `ours()`."""
    if user and "@" not in user and ":" not in user:
        if server:
            try:
                return SipUri(host=as_sip_uri(server).host, user=user)
            except ValueError:
                pass  # a SIP_SERVER that does not parse fails where it is used, with its own reason
        return SipUri(host=ours().host, user=user, port=ours().port)
    if user:
        uri = parse_uri(user if ":" in user.split("@")[0] else "sip:" + user)
        if isinstance(uri, SipUri):
            return uri
    here = ours()
    return SipUri(host=here.host, user="voicelive", port=here.port)


MAX_CALLER_LENGTH = 256
MAX_DISPLAY_NAME_LENGTH = 64


def caller_uri(text: str, server: str | None, ours: Callable[[], SipUri]) -> SipUri:
    """A per-call From: `sip:`/`sips:` URI or `user@host` as given, a bare user where SIP_USER's goes
    (`address_of_record`); ValueError says why anything else (another scheme, no user, headers) is refused."""
    if not text or len(text) > MAX_CALLER_LENGTH or not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError(f"at most {MAX_CALLER_LENGTH} printable characters, no spaces or line breaks")
    bare = "@" not in text and ":" not in text
    scheme = text.split("@")[0].partition(":")[0].lower() if ":" in text.split("@")[0] else "sip"
    if scheme not in ("sip", "sips"):
        raise ValueError(f"{scheme}: URIs are not accepted: a sip: or sips: URI, user@host or a user")
    try:
        uri = parse_uri(
            f"sip:{text}@invalid" if bare else text if ":" in text.split("@")[0] else "sip:" + text
        )
    except SipParseError as error:
        raise ValueError(f"not a SIP URI: {error}") from None
    # Headers and maddr would steer requests elsewhere; a password would be sent in the clear.
    if not isinstance(uri, SipUri) or not uri.user or uri.password is not None or uri.headers or uri.params:
        raise ValueError("user@host[:port] only: a user part, no password, parameters or headers")
    return address_of_record(text, server, ours) if bare else uri


def check_display_name(name: str) -> str:
    """`name` if it is a display name we put in From (bounded, printable: no CR/LF); ValueError otherwise."""
    if not name or len(name) > MAX_DISPLAY_NAME_LENGTH or not name.isprintable():
        raise ValueError(f"1 to {MAX_DISPLAY_NAME_LENGTH} printable characters, no line breaks")
    return name


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


class LocalAddresses:
    """Our address on the interface that routes to each peer, as the kernel would choose it (a UDP socket
    connected there: a route lookup, no packet sent); cached per peer, the cache bounded."""

    def __init__(self, max_entries: int = MAX_ROUTES) -> None:
        self.max_entries = max_entries
        self._routes: dict[str, str] = {}

    def towards(self, peer: str, fallback: str) -> str:
        found = self._routes.get(peer)
        if found is None:
            found = _source_address_towards(peer) or fallback
            if len(self._routes) >= self.max_entries:
                self._routes.clear()
            self._routes[peer] = found
        return found


def _source_address_towards(peer: str) -> str | None:
    """The local address the kernel would send from to reach `peer` (None when there is no route)."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


__all__ = [
    "DEFAULT_PORTS",
    "MAX_CALLER_LENGTH",
    "MAX_DISPLAY_NAME_LENGTH",
    "WILDCARDS",
    "LocalAddresses",
    "Resolver",
    "address_of_record",
    "as_sip_uri",
    "caller_uri",
    "check_display_name",
    "target_uri",
]
