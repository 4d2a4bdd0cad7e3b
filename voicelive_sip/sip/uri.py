"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, serialize, and compare by RFC 3261 §19.1.4."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from ..errors import SipParseError

Params: TypeAlias = tuple[tuple[str, str | None], ...]

# RFC 3261 §25.1: the characters a SIP URI may carry unescaped in each component.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_PARAMCHARS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
_HOSTNAME_CHARS_RE = re.compile(r"[A-Za-z0-9\-.]+")
_IPV4_RE = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_PCHARS = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+"
_HCHARS = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})"
# One linear-time pattern for the whole sip/sips URI after the scheme (RFC 3261 §25.1).
_SIP_URI_RE = re.compile(
    rf"(?:((?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+)(?::((?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*))?@)?"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    rf"((?:;{_PCHARS}(?:={_PCHARS})?)*)"
    rf"(?:\?({_HCHARS}+={_HCHARS}*(?:&{_HCHARS}+={_HCHARS}*)*))?"
)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_BAD_URI_CHARS_RE = re.compile(r'[\x00-\x20\x7f<>"]')
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_TEL_GLOBAL_RE = re.compile(r"\+[0-9\-.()]*[0-9][0-9\-.()]*")
_TEL_LOCAL_RE = re.compile(r"[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*")
_TEL_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")

# RFC 3261 §19.1.4: these parameters must match when present in either URI.
_ALWAYS_COMPARED_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.2); bytes that are not UTF-8 stay as surrogates."""
    if "%" not in text:
        return text
    raw = _PERCENT_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")


def _host_kind(host: str) -> str | None:
    if _IPV6_RE.fullmatch(host):
        return "ipv6"
    if _IPV4_RE.fullmatch(host):
        return "ipv4"
    if _HOSTNAME_CHARS_RE.fullmatch(host) and _valid_hostname_or_ipv4(host):
        return "hostname"
    return None


def is_valid_host(host: str) -> bool:
    """True for a hostname, an IPv4 address or an IPv6 reference (`[::1]`)."""
    return _host_kind(host) is not None


def _normalize_host(host: str) -> str:
    host = host.lower()
    if host.startswith("["):
        # IPv6 references compare by value, not spelling (RFC 3261 §19.1.4).
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return host
    return host.rstrip(".")


def same_host(a: str, b: str) -> bool:
    """Whether two URI hosts are the same (RFC 3261 §19.1.4: case-insensitive, IPv6 by value)."""
    return _normalize_host(a) == _normalize_host(b)


def _param_lookup(params: Params, name: str) -> tuple[bool, str | None]:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return True, value
    return False, None


def _serialize_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


@dataclass(frozen=True, slots=True, eq=False)
class SipUri:
    """A `sip:` or `sips:` URI; components are kept in their wire (escaped) form."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "sip"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(_serialize_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    def param(self, name: str) -> str | None:
        """The value of a URI parameter (None when absent or valueless)."""
        return _param_lookup(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _param_lookup(self.params, name)[0]

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        return self.has_param("lr")

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    def with_params(self, **values: str | None) -> SipUri:
        """Return a copy with these parameters set (replacing any of the same name, case-insensitively)."""
        lowered = {k.lower() for k in values}
        kept = tuple((k, v) for k, v in self.params if k.lower() not in lowered)
        return replace(self, params=kept + tuple(values.items()))

    def without_params(self, *names: str) -> SipUri:
        lowered = {n.lower() for n in names}
        return replace(self, params=tuple((k, v) for k, v in self.params if k.lower() not in lowered))

    def with_headers(self, headers: tuple[tuple[str, str], ...]) -> SipUri:
        return replace(self, headers=headers)

    def _key(self) -> tuple[object, ...]:
        # Only the parts that must always match may feed the hash (RFC 3261 §19.1.4).
        always = tuple(
            (name, (self.param(name) or "").lower())
            for name in _ALWAYS_COMPARED_PARAMS
            if self.has_param(name)
        )
        return (
            self.scheme.lower(),
            unescape(self.user) if self.user is not None else None,
            unescape(self.password) if self.password is not None else None,
            _normalize_host(self.host),
            self.port,
            always,
        )

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        if self._key() != other._key():
            return False
        # Other parameters only have to match when both URIs carry them.
        mine = {k.lower(): v for k, v in self.params}
        theirs = {k.lower(): v for k, v in other.params}
        for name in mine.keys() & theirs.keys():
            a, b = mine[name], theirs[name]
            if (a is None) != (b is None) or (
                a is not None and b is not None and unescape(a).lower() != unescape(b).lower()
            ):
                return False

        # Header components must all be present in both and match (case-insensitive names).
        def norm_headers(uri: SipUri) -> set[tuple[str, str]]:
            return {(unescape(k).lower(), unescape(v)) for k, v in uri.headers}

        return norm_headers(self) == norm_headers(other)


@dataclass(frozen=True, slots=True, eq=False)
class TelUri:
    """A `tel:` URI (RFC 3966): a global (`+...`) or local number with parameters."""

    number: str
    params: Params = ()
    scheme: str = field(default="tel", init=False)

    def __str__(self) -> str:
        return "tel:" + self.number + _serialize_params(self.params)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def param(self, name: str) -> str | None:
        return _param_lookup(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _param_lookup(self.params, name)[0]

    def _key(self) -> tuple[object, ...]:
        # RFC 3966 §4: visual separators are ignored; parameters compare case-insensitively in any order.
        number = self.number.translate(_TEL_VISUAL_SEPARATORS).lower()
        params = frozenset((k.lower(), (v or "").lower()) for k, v in self.params)
        return (number, params)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return NotImplemented
        return self._key() == other._key()


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other URI scheme (RFC 3986 absolute URI), kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri: TypeAlias = SipUri | TelUri | AbsoluteUri


def _parse_uri_params(text: str, what: str) -> Params:
    if not text:
        return ()
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not _PARAMCHARS_RE.fullmatch(name):
            raise SipParseError(f"bad {what} parameter {item!r}")
        if eq:
            if not _PARAMCHARS_RE.fullmatch(value):
                raise SipParseError(f"bad {what} parameter value {item!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    m = _SIP_URI_RE.fullmatch(rest)
    if m is None:
        raise SipParseError(f"bad {scheme} URI {rest[:200]!r}")
    user, password, host, port_text, param_text, header_text = m.groups()
    if host[0] != "[" and not _valid_hostname_or_ipv4(host):
        raise SipParseError(f"bad host in URI: {host!r}")
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipParseError(f"bad port in URI: {port_text!r}")
    params: Params = ()
    if param_text:
        params = tuple(
            (name, value if eq else None)
            for name, eq, value in (item.partition("=") for item in param_text[1:].split(";"))
        )
    headers: tuple[tuple[str, str], ...] = ()
    if header_text is not None:
        pairs = [item.partition("=") for item in header_text.split("&")]
        headers = tuple((name, value) for name, _, value in pairs)
    return SipUri(
        host=host, user=user, password=password, port=port, params=params, headers=headers, scheme=scheme
    )


def _valid_hostname_or_ipv4(host: str) -> bool:
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    for label in labels:
        if not label or label[0] == "-" or label[-1] == "-":
            return False
    # RFC 3261 §25.1: the top label of a hostname starts with a letter; otherwise it must be an IPv4 address.
    return labels[-1][0].isalpha() or _IPV4_RE.fullmatch(host) is not None


def _parse_tel_uri(rest: str) -> TelUri:
    number, _, param_text = rest.partition(";")
    if not (_TEL_GLOBAL_RE.fullmatch(number) or _TEL_LOCAL_RE.fullmatch(number)):
        raise SipParseError(f"bad tel URI number {number!r}")
    return TelUri(number=number, params=_parse_uri_params(param_text, "tel URI"))


def parse_uri(text: str) -> Uri:
    """Parse a URI as it appears in a Request-Line or inside `<>`; raise `SipParseError` if invalid."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"bad URI {text!r}")
    if not rest or _BAD_URI_CHARS_RE.search(rest) is not None:
        raise SipParseError(f"bad URI {text[:200]!r}")
    lower = scheme.lower()
    if lower in ("sip", "sips"):
        return _parse_sip_uri(lower, rest)
    if lower == "tel":
        return _parse_tel_uri(rest)
    return AbsoluteUri(scheme=scheme, rest=rest)
