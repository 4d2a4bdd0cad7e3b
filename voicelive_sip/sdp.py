"""SDP parse/serialize (RFC 8866) and the RFC 3264 offer/answer model for one G.711 audio stream.

Sans-I/O: pure functions and frozen dataclasses, except `LocalSdpSession`, which a call keeps across
re-INVITEs so that our o= line stays the same session and only its version moves (RFC 3264 §8).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final, Literal, TypeGuard

from .codecs.names import Codec
from .errors import RemoteProtocolError
from .sdes import SUITES, CryptoNotUsable, SdesKey, SrtpKeys, SrtpPolicy, parse_key, redact, srtp_policy

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]

# A bigger body is not an SDP a phone would send; refuse it before splitting it into lines.
MAX_SDP_SIZE: Final = 65_536
# An answer mirrors every m= line of the offer (RFC 3264 §6); a phone offers a handful, so this bounds the
# work (and the answer's size) an offer can cause.
MAX_MEDIA_SECTIONS: Final = 32

# RFC 3551 §6: static payload types, usable without a=rtpmap (RFC 8866 §6.6).
STATIC_PAYLOAD_TYPES: Final = MappingProxyType(
    {
        0: ("PCMU", 8000, 1),
        3: ("GSM", 8000, 1),
        4: ("G723", 8000, 1),
        5: ("DVI4", 8000, 1),
        6: ("DVI4", 16000, 1),
        7: ("LPC", 8000, 1),
        8: ("PCMA", 8000, 1),
        9: ("G722", 8000, 1),
        10: ("L16", 44100, 2),
        11: ("L16", 44100, 1),
        12: ("QCELP", 8000, 1),
        13: ("CN", 8000, 1),
        14: ("MPA", 90000, None),
        15: ("G728", 8000, 1),
        16: ("DVI4", 11025, 1),
        17: ("DVI4", 22050, 1),
        18: ("G729", 8000, 1),
        25: ("CelB", 90000, None),
        26: ("JPEG", 90000, None),
        28: ("nv", 90000, None),
        31: ("H261", 90000, None),
        32: ("MPV", 90000, None),
        33: ("MP2T", 90000, None),
        34: ("H263", 90000, None),
    }
)

# The codecs SIP negotiates (G.711 passed through to Voice Live, G.722 as PCM16 16 kHz), with their static
# types; all three say 8000 in rtpmap (G.722's RTP clock is 8000 though it samples at 16 kHz, RFC 3551).
SIP_PAYLOAD_TYPES: Final = MappingProxyType({codec.value: codec.payload_type for codec in Codec.sip()})
G711_PAYLOAD_TYPES: Final = SIP_PAYLOAD_TYPES  # the old name
DEFAULT_DTMF_EVENTS: Final = "0-16"
# The SDES suites we offer and accept, in our order of preference (voicelive_sip.sdes).
SRTP_SUITES: Final = tuple(SUITES)
# A fixed `srtp_key` for answer_offer (reproducible answers): enough key and salt for any suite we support.
SRTP_KEY_SALT_LENGTH: Final = max(suite.key_salt_length for suite in SUITES.values())

_DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
_PLAIN_RTP_PROTOS: Final = ("RTP/AVP", "RTP/AVPF")
_SRTP_PROTOS: Final = ("RTP/SAVP", "RTP/SAVPF")
# RFC 3264 §8.4: an offer with c=0.0.0.0 is the RFC 2543 way of saying "do not send me media".
_HOLD_ADDRESSES: Final = ("0.0.0.0", "::")


class SdpError(RemoteProtocolError):
    """The SDP is malformed or cannot be used; a UA answers 400 for a body it cannot parse, else 488."""


class MediaNotAcceptable(SdpError):
    """The description is valid but names media we will not use: a UA answers 488 Not Acceptable Here."""


class NoCommonCodec(MediaNotAcceptable):
    """The offer (or answer) has no usable audio stream with a codec we support: 488 Not Acceptable Here."""


class SrtpNotAcceptable(MediaNotAcceptable):
    """Every audio stream was refused for SRTP (MEDIA_SRTP off or required, no usable a=crypto): 488."""


def media_address_problem(host: str) -> str | None:
    """Why RTP must not be sent to the `c=` address `host`, or None.

    A host name would make us resolve what a stranger chose; multicast and broadcast would spray a network
    (media reflection and amplification). 0.0.0.0 and :: are the RFC 2543 way of saying "hold" (RFC 3264
    §8.4): allowed, nothing is sent there.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"c= names {host!r}, not an IP address"
    if address.is_multicast:
        return f"c= names the multicast address {host}"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address("255.255.255.255"):
        return f"c= names the broadcast address {host}"
    return None


def _check_media_address(host: str) -> None:
    problem = media_address_problem(host)
    if problem is not None:
        raise MediaNotAcceptable(problem)


def is_direction(value: str | None) -> TypeGuard[Direction]:
    """True if `value` is one of the four RFC 8866 §6.7 direction attributes."""
    return value in _DIRECTIONS


# --------------------------------------------------------------------------------------------------
# Typed pieces


@dataclass(frozen=True, slots=True)
class Line:
    """A line kept verbatim: `type` is its letter (i, u, e, p, b, t, r, z, k or unknown), `value` the rest."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line: `value` is None for a property attribute (a=sendrecv), else the text after the colon."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    def __repr__(self) -> str:
        value = self.value if self.value is None or self.name != "crypto" else redact(self.value)
        return f"Attribute(name={self.name!r}, value={value!r})"


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line (RFC 8866 §5.2); (username, session_id, nettype, address) identifies the session."""

    username: str
    session_id: str
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"o= needs 6 fields, got {len(parts)}: {value!r}")
        username, session_id, version, nettype, addrtype, address = parts
        if not version.isdigit() or not version.isascii():
            raise SdpError(f"o= session version is not a number: {version!r}")
        return cls(username, session_id, int(version), nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """The c= line (RFC 8866 §5.7); `address` is verbatim (a multicast /ttl suffix stays on it)."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"c= needs 3 fields (IN IP4 address), got {len(parts)}: {value!r}")
        return cls(parts[0], parts[1], parts[2])

    @property
    def host(self) -> str:
        """The address without a multicast /ttl/count suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """True for the legacy hold address c=0.0.0.0 (RFC 3264 §8.4)."""
        return self.host in _HOLD_ADDRESSES

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>] (RFC 8866 §6.6)."""

    payload_type: int
    encoding_name: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        pt_text, _, encoding = value.partition(" ")
        pieces = encoding.strip().split("/")
        try:
            channels = int(pieces[2]) if len(pieces) == 3 else None
            if len(pieces) not in (2, 3) or not pieces[0]:
                raise ValueError(value)
            return cls(_payload_type(pt_text), pieces[0], int(pieces[1]), channels)
        except ValueError:
            raise SdpError(f"malformed a=rtpmap: {value!r}") from None

    def __str__(self) -> str:
        suffix = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding_name}/{self.clock_rate}{suffix}"


@dataclass(frozen=True, slots=True)
class Rtcp:
    """a=rtcp:<port> [IN IP4 <address>] (RFC 3605)."""

    port: int
    nettype: str | None = None
    addrtype: str | None = None
    address: str | None = None

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        parts = value.split()
        if len(parts) not in (1, 4):
            raise SdpError(f"malformed a=rtcp: {value!r}")
        port = _port(parts[0], "a=rtcp")
        if len(parts) == 1:
            return cls(port)
        return cls(port, parts[1], parts[2], parts[3])

    def __str__(self) -> str:
        if self.address is None:
            return str(self.port)
        return f"{self.port} {self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Crypto:
    """a=crypto:<tag> <suite> <key-params> [<session-params>] (RFC 4568 §9.1, SDES-SRTP)."""

    tag: int
    suite: str
    key_params: str = field(repr=False)  # holds the key
    session_params: tuple[str, ...] = field(default=(), repr=False)  # FEC_KEY may hold one

    @classmethod
    def parse(cls, value: str) -> Crypto:
        parts = value.split()
        # RFC 4568 §9.1: tag = 1*9DIGIT. The message leaves the value out: it may hold a key.
        if len(parts) < 3 or not parts[0].isdigit() or not parts[0].isascii() or len(parts[0]) > 9:
            raise SdpError("malformed a=crypto: expected <tag> <suite> <key-params>")
        return cls(int(parts[0]), parts[1], parts[2], tuple(parts[3:]))

    def key(self) -> SdesKey:
        """The line's master key, held to what we can honour (`sdes.parse_key`); CryptoNotUsable says why."""
        return parse_key(self.tag, self.suite, self.key_params, self.session_params)

    @property
    def key_salt(self) -> bytes | None:
        """The first inline master key||salt, base64-decoded; None if absent or not base64."""
        for key_param in self.key_params.split(";"):
            method, _, info = key_param.partition(":")
            if method == "inline":
                try:
                    return base64.b64decode(info.split("|", 1)[0], validate=True)
                except (binascii.Error, ValueError):
                    return None
        return None

    def __str__(self) -> str:
        return " ".join((str(self.tag), self.suite, self.key_params, *self.session_params))


def _static_rtpmap(payload_type: int) -> RtpMap | None:
    static = STATIC_PAYLOAD_TYPES.get(payload_type)
    return None if static is None else RtpMap(payload_type, static[0], static[1], None)


def _attribute_values(attributes: Sequence[Attribute], name: str) -> Iterator[str]:
    for attribute in attributes:
        if attribute.name == name and attribute.value is not None:
            yield attribute.value


def _direction_of(attributes: Sequence[Attribute]) -> Direction | None:
    # RFC 8866 §6.7: at most one direction attribute; if a peer sends several, the last one wins.
    found: Direction | None = None
    for attribute in attributes:
        if attribute.value is None and is_direction(attribute.name):
            found = attribute.name
    return found


def _milliseconds(attributes: Sequence[Attribute], name: str) -> int | None:
    # RFC 8866 §6.4 defines ptime in ms; some stacks write "20.0". A value we cannot read is ignored
    # (RFC 8866 §5.13: attributes that are not understood are ignored).
    for value in _attribute_values(attributes, name):
        try:
            number = float(value.strip())
        except ValueError:
            continue
        if 0 < number < 10_000:
            return round(number)
    return None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m= section: the m= fields, its c= line, attributes in order and other lines kept verbatim."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    extra: tuple[Line, ...] = ()

    @property
    def is_rtp(self) -> bool:
        """True when formats are RTP payload types (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, ...)."""
        return "RTP/" in self.proto

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as RTP payload types, in the offerer's order of preference (RFC 3264 §5.1)."""
        return tuple(int(fmt) for fmt in self.formats) if self.is_rtp else ()

    @property
    def rtpmaps(self) -> tuple[RtpMap, ...]:
        """The explicit a=rtpmap lines that parse; malformed ones are ignored (RFC 8866 §5.13)."""
        found: list[RtpMap] = []
        for value in _attribute_values(self.attributes, "rtpmap"):
            try:
                found.append(RtpMap.parse(value))
            except SdpError:
                continue
        return tuple(found)

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The mapping for `payload_type`: its a=rtpmap, else the RFC 3551 static assignment."""
        for rtpmap in self.rtpmaps:
            if rtpmap.payload_type == payload_type:
                return rtpmap
        return _static_rtpmap(payload_type)

    def codecs(self) -> dict[int, RtpMap]:
        """Each listed payload type that has a mapping (a=rtpmap or static), in the m= line's order."""
        explicit = {rtpmap.payload_type: rtpmap for rtpmap in reversed(self.rtpmaps)}
        table: dict[int, RtpMap] = {}
        for payload_type in self.payload_types:
            rtpmap = explicit.get(payload_type) or _static_rtpmap(payload_type)
            if rtpmap is not None:
                table[payload_type] = rtpmap
        return table

    def fmtp(self, payload_type: int) -> str | None:
        """The a=fmtp parameters for `payload_type`, or None."""
        for value in _attribute_values(self.attributes, "fmtp"):
            pt_text, _, parameters = value.partition(" ")
            if pt_text == str(payload_type):
                return parameters.strip()
        return None

    def attribute(self, name: str) -> str | None:
        """The value of the first a=`name` line that has one."""
        return next(_attribute_values(self.attributes, name), None)

    def has_attribute(self, name: str) -> bool:
        """True if an a=`name` line is present, with or without a value."""
        return any(attribute.name == name for attribute in self.attributes)

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any (see `SessionDescription.media_direction`)."""
        return _direction_of(self.attributes)

    @property
    def ptime(self) -> int | None:
        """a=ptime in milliseconds."""
        return _milliseconds(self.attributes, "ptime")

    @property
    def maxptime(self) -> int | None:
        """a=maxptime in milliseconds."""
        return _milliseconds(self.attributes, "maxptime")

    @property
    def rtcp(self) -> Rtcp | None:
        """a=rtcp (RFC 3605), or None when absent or malformed."""
        for value in _attribute_values(self.attributes, "rtcp"):
            try:
                return Rtcp.parse(value)
            except SdpError:
                return None
        return None

    @property
    def rtcp_mux(self) -> bool:
        """True if a=rtcp-mux is present (RFC 5761 §5.1.1)."""
        return self.has_attribute("rtcp-mux")

    @property
    def crypto(self) -> tuple[Crypto, ...]:
        """The a=crypto lines that parse, in order of preference (RFC 4568 §5.1.1)."""
        found: list[Crypto] = []
        for value in _attribute_values(self.attributes, "crypto"):
            try:
                found.append(Crypto.parse(value))
            except SdpError:
                continue
        return tuple(found)

    def lines(self) -> Iterator[str]:
        """The section's lines in RFC 8866 §5 order: m, i, c, b, k, a (unknown letters after c)."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        yield " ".join(("m=" + self.media, port, self.proto, *self.formats))
        for line in self.extra:
            if line.type == "i":
                yield f"i={line.value}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for line in self.extra:
            if line.type != "i":
                yield f"{line.type}={line.value}"
        for attribute in self.attributes:
            yield f"a={attribute}"


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body; `extra` keeps the session-level lines without a typed field (t=, b=, ...)."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    media: tuple[MediaDescription, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    extra: tuple[Line, ...] = (Line("t", "0 0"),)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; CRLF or bare LF line ends. Raises SdpError on anything that is not SDP."""
        return _parse(data)

    def serialize(self) -> bytes:
        """The body as UTF-8 with CRLF line ends (RFC 8866 §5)."""
        return ("\r\n".join(self.lines()) + "\r\n").encode("utf-8")

    def __bytes__(self) -> bytes:
        return self.serialize()

    def lines(self) -> Iterator[str]:
        """The lines in RFC 8866 §5 order: v o s i u e p c b t r z k a, then each m= section."""
        yield "v=0"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        for line in self.extra:
            if line.type in "iuep":
                yield f"{line.type}={line.value}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for line in self.extra:
            if line.type not in "iuep":
                yield f"{line.type}={line.value}"
        for attribute in self.attributes:
            yield f"a={attribute}"
        for media in self.media:
            yield from media.lines()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _direction_of(self.attributes)

    def media_connection(self, media: MediaDescription) -> Connection | None:
        """The c= that applies to `media`: its own, else the session's (RFC 8866 §5.7)."""
        return media.connection if media.connection is not None else self.connection

    def media_direction(self, media: MediaDescription) -> Direction:
        """The direction for `media`: media level, else session level, else sendrecv (RFC 8866 §6.7)."""
        return media.direction or self.direction or "sendrecv"


# --------------------------------------------------------------------------------------------------
# Parsing


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5 or int(text) > 65535:
        raise SdpError(f"{where} port is not a number from 0 to 65535: {text!r}")
    return int(text)


def _payload_type(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 3 or int(text) > 127:
        raise SdpError(f"RTP payload type is not a number from 0 to 127: {text!r}")
    return int(text)


def _parse_media_line(value: str, number: int) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"line {number}: m= needs <media> <port> <proto> <fmt>...: {value!r}")
    media, port_text, proto = parts[0], parts[1], parts[2]
    port_part, slash, count_text = port_text.partition("/")
    port = _port(port_part, f"line {number}: m=")
    port_count: int | None = None
    if slash:
        if not count_text.isdigit() or not count_text.isascii() or len(count_text) > 5 or not int(count_text):
            raise SdpError(f"line {number}: m= port count is not a positive number: {port_text!r}")
        port_count = int(count_text)
    formats = tuple(parts[3:])
    if "RTP/" in proto:
        for fmt in formats:
            _payload_type(fmt)
    return media, port, port_count, proto, formats


def _parse_attribute(value: str, number: int) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name or any(character.isspace() for character in name):
        raise SdpError(f"line {number}: a= has no attribute name: {value!r}")
    return Attribute(name, rest if colon else None)


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        text = data
    else:
        if len(data) > MAX_SDP_SIZE:
            raise SdpError(f"SDP body of {len(data)} bytes is larger than {MAX_SDP_SIZE}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # RFC 8866 §5.3 says UTF-8, but some PBXes put Latin-1 in s=/i=; every byte decodes as Latin-1.
            text = data.decode("latin-1")
    if len(text) > MAX_SDP_SIZE:
        raise SdpError(f"SDP body of {len(text)} characters is larger than {MAX_SDP_SIZE}")
    return text


@dataclass(slots=True)
class _MediaDraft:
    head: tuple[str, int, int | None, str, tuple[str, ...]]
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[Line] = field(default_factory=list)


def _in_rfc_order(lines: list[Line], before_connection: str) -> tuple[Line, ...]:
    # Serializing puts these letters before c= (RFC 8866 §5); sorting the same way here makes
    # parse(serialize(sd)) == sd hold even for a peer that wrote them out of order.
    return tuple(line for line in lines if line.type in before_connection) + tuple(
        line for line in lines if line.type not in before_connection
    )


def _parse(data: bytes | str) -> SessionDescription:
    text = _decode(data)
    seen_version = False
    origin: Origin | None = None
    session_name: str | None = None
    connection: Connection | None = None
    attributes: list[Attribute] = []
    extra: list[Line] = []
    drafts: list[_MediaDraft] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line or line.isspace():
            continue
        kind = line[0]
        if len(line) < 2 or line[1] != "=" or not ("a" <= kind <= "z"):
            raise SdpError(f"line {number}: expected <type>=<value>, got {line[:40]!r}")
        # RFC 8866 §5.3 recommends "s= " for an empty name, so s= keeps its spaces; elsewhere trailing
        # blanks are sloppiness we tolerate.
        value = line[2:] if kind == "s" else line[2:].rstrip()
        if not seen_version:
            if kind != "v":
                raise SdpError(f"line {number}: SDP must start with v=0 (RFC 8866 §5.1), got {line[:40]!r}")
            if value.strip() != "0":
                raise SdpError(f"line {number}: unsupported SDP version v={value!r}")
            seen_version = True
            continue
        if kind == "v":
            raise SdpError(f"line {number}: second v= line")
        if kind == "m":
            if len(drafts) >= MAX_MEDIA_SECTIONS:
                raise SdpError(f"line {number}: more than {MAX_MEDIA_SECTIONS} m= sections")
            drafts.append(_MediaDraft(_parse_media_line(value, number)))
            continue
        if drafts:
            draft = drafts[-1]
            if kind in "os":
                raise SdpError(f"line {number}: {kind}= is not allowed inside an m= section")
            if kind == "a":
                draft.attributes.append(_parse_attribute(value, number))
            elif kind == "c" and draft.connection is None:
                draft.connection = Connection.parse(value)
            else:
                draft.extra.append(Line(kind, value))
            continue
        if kind == "o":
            if origin is not None:
                raise SdpError(f"line {number}: second o= line")
            origin = Origin.parse(value)
        elif kind == "s":
            if session_name is not None:
                raise SdpError(f"line {number}: second s= line")
            session_name = value
        elif kind == "c":
            if connection is not None:
                raise SdpError(f"line {number}: second session-level c= line")
            connection = Connection.parse(value)
        elif kind == "a":
            attributes.append(_parse_attribute(value, number))
        else:
            extra.append(Line(kind, value))
    if not seen_version:
        raise SdpError("empty SDP: no v= line")
    if origin is None:
        raise SdpError("SDP has no o= line (RFC 8866 §5.2)")
    media: list[MediaDescription] = []
    for draft in drafts:
        kind_, port, port_count, proto, formats = draft.head
        # RFC 8866 §5.7: every active stream needs a c= at media or session level.
        if port != 0 and draft.connection is None and connection is None:
            raise SdpError(f"m={kind_} {port} has no c= line at media or session level")
        media.append(
            MediaDescription(
                kind_,
                port,
                proto,
                formats,
                port_count,
                draft.connection,
                tuple(draft.attributes),
                _in_rfc_order(draft.extra, "i"),
            )
        )
    return SessionDescription(
        origin,
        "-" if session_name is None else session_name,
        connection,
        tuple(media),
        tuple(attributes),
        _in_rfc_order(extra, "iuep"),
    )


# --------------------------------------------------------------------------------------------------
# Offer/answer (RFC 3264)


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What an offer/answer exchange settled for our audio stream: enough to start RTP."""

    codec: Codec
    payload_type: int
    clock_rate: int
    dtmf_payload_type: int | None
    ptime: int
    remote_rtp: tuple[str, int]
    remote_rtcp: tuple[str, int]
    rtcp_mux: bool
    local_direction: Direction
    remote_direction: Direction
    # True when the peer does not want our media (RFC 3264 §8.4: it offered sendonly, inactive or c=0.0.0.0).
    on_hold: bool
    remote_crypto: Crypto | None = None
    local_crypto: Crypto | None = None
    media_index: int = 0
    proto: str = "RTP/AVP"
    # The SRTP keys (ours to send, the peer's to receive), or None for plain RTP.
    srtp: SrtpKeys | None = None

    @property
    def sends(self) -> bool:
        """True if we may send RTP media."""
        return self.local_direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        """True if we expect to receive RTP media."""
        return self.local_direction in ("sendrecv", "recvonly")


@dataclass(slots=True)
class LocalSdpSession:
    """Our o= identity for one call; `stamp` bumps the version only when the description changed."""

    session_id: int = field(default_factory=lambda: secrets.randbits(62))
    version: int = 1
    username: str = "-"
    _last: SessionDescription | None = field(default=None, init=False, repr=False, compare=False)

    def stamp(self, description: SessionDescription) -> SessionDescription:
        """`description` with our o= line; RFC 3264 §8: same content keeps the version, a change adds one."""
        origin = replace(
            description.origin,
            username=self.username,
            session_id=str(self.session_id),
            session_version=self.version,
        )
        stamped = replace(description, origin=origin)
        if self._last is not None and stamped != self._last:
            self.version += 1
            stamped = replace(stamped, origin=replace(origin, session_version=self.version))
        self._last = stamped
        return stamped


_FLOWS: Final = MappingProxyType(
    {
        "sendrecv": (True, True),
        "sendonly": (True, False),
        "recvonly": (False, True),
        "inactive": (False, False),
    }
)


def _direction(sends: bool, receives: bool) -> Direction:
    if sends:
        return "sendrecv" if receives else "sendonly"
    return "recvonly" if receives else "inactive"


def _answer_direction(local: Direction, offered: Direction) -> Direction:
    # RFC 3264 §6.1: we may send only what the offerer will receive, and receive only what it sends.
    local_sends, local_receives = _FLOWS[local]
    offer_sends, offer_receives = _FLOWS[offered]
    return _direction(local_sends and offer_receives, local_receives and offer_sends)


def _effective_remote_direction(direction: Direction, connection: Connection) -> Direction:
    # RFC 3264 §8.4: c=0.0.0.0 means the peer receives nothing, whatever attribute it also wrote.
    if connection.is_hold:
        return _direction(_FLOWS[direction][0], False)
    return direction


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _check_codecs(codecs: Sequence[str]) -> tuple[str, ...]:
    if isinstance(codecs, str):
        codecs = (codecs,)
    names = tuple(name.upper() for name in codecs)
    unknown = [name for name in names if name not in SIP_PAYLOAD_TYPES]
    if unknown or not names:
        raise ValueError(f"codecs must be a non-empty choice of {tuple(SIP_PAYLOAD_TYPES)}, got {codecs!r}")
    return names


def _check_local(local_port: int, direction: str, ptime: int, srtp_key: bytes | None) -> None:
    if not 0 < local_port <= 65535:
        raise ValueError(f"local_port must be 1..65535, got {local_port}")
    if not is_direction(direction):
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    if not 0 < ptime <= 200:
        raise ValueError(f"ptime must be 1..200 ms, got {ptime}")
    if srtp_key is not None and len(srtp_key) != SRTP_KEY_SALT_LENGTH:
        raise ValueError(f"srtp_key must be {SRTP_KEY_SALT_LENGTH} bytes of master key and salt")


def _g711_name(rtpmap: RtpMap | None) -> str | None:
    # A SIP codec we carry: G.711, or G.722 whose rtpmap says 8000 too (RFC 3551 §4.5.2).
    if rtpmap is None or rtpmap.clock_rate != 8000 or rtpmap.channels not in (None, 1):
        return None
    name = rtpmap.encoding_name.upper()
    return name if name in SIP_PAYLOAD_TYPES else None


def _telephone_event(codecs: dict[int, RtpMap], clock_rate: int) -> int | None:
    # RFC 4733 §7.1.1: the event clock must match the audio codec's RTP clock: telephone-event/8000 for G.711
    # and for G.722 (8000 in SDP, RFC 3551 §4.5.2).
    for payload_type, rtpmap in codecs.items():
        if rtpmap.encoding_name.lower() == "telephone-event" and rtpmap.clock_rate == clock_rate:
            return payload_type
    return None


def _remote_rtcp(media: MediaDescription, host: str, rtcp_mux: bool) -> tuple[str, int]:
    if rtcp_mux:
        return host, media.port
    rtcp = media.rtcp
    if rtcp is not None and rtcp.port:  # a=rtcp:0 names no port we could send to
        if rtcp.address is not None:
            _check_media_address(rtcp.address)  # RTCP must not be a way around the c= checks
        return (rtcp.address or host), rtcp.port
    # RFC 3550 §11: without a=rtcp, RTCP goes to the next higher port; above 65535 there is none.
    return host, media.port + 1 if media.port < 65535 else media.port


def _usable_crypto(media: MediaDescription) -> tuple[tuple[Crypto, SdesKey] | None, list[str]]:
    """The first a=crypto line we can honour and its key, and why the lines before it could not be used."""
    # RFC 4568 §7.1.2: the answerer takes the first offered line it supports (the offer lists them in the
    # offerer's order of preference) and echoes its tag and suite with a key of its own.
    problems: list[str] = []
    for value in _attribute_values(media.attributes, "crypto"):
        try:
            crypto = Crypto.parse(value)
            return (crypto, crypto.key()), problems
        except (SdpError, CryptoNotUsable) as error:
            problems.append(str(error))
    return None, problems


def _stream_srtp(
    media: MediaDescription, policy: SrtpPolicy
) -> tuple[tuple[Crypto, SdesKey] | None, str | None]:
    """The a=crypto line (and key) to answer `media` with, None for plain RTP; or why `policy` refuses it."""
    savp = media.proto in _SRTP_PROTOS
    if policy == "off":
        return None, f"{media.proto} needs SRTP and MEDIA_SRTP=off" if savp else None
    chosen, problems = _usable_crypto(media)
    if chosen is not None:
        return chosen, None
    # Short: a Warning header shows the first 120 characters (warning_text), the log shows all of it.
    why = "; ".join(problems) or "no a=crypto line"
    if savp:
        return None, f"{media.proto}: {why}"
    if policy == "required":
        return None, f"MEDIA_SRTP=required, {media.proto}: {why}"
    # Best-effort SRTP (RTP/AVP with a=crypto, as Asterisk and FreeSWITCH offer it): no usable key, plain RTP.
    return None, None


def _answer_key(remote: SdesKey, current: SrtpKeys | None, fixed: bytes | None) -> SdesKey:
    # RFC 4568 §7.1.4: an offer in the dialog that repeats the peer's key continues the SRTP session, so ours
    # stays too (both contexts keep their rollover counters and replay windows); a new key from the peer is a
    # re-key, answered with a new key of ours.
    if current is not None and current.remote == remote:
        return current.local
    if fixed is not None:
        return SdesKey(remote.suite, fixed[: remote.suite.key_salt_length])
    return SdesKey.generate(remote.suite)


def _policy(srtp: SrtpPolicy | bool) -> SrtpPolicy:
    # The earlier boolean spelling: True meant "an SRTP offer may be answered" (optional), False plain only.
    if isinstance(srtp, bool):
        return "optional" if srtp else "off"
    return srtp_policy(srtp)


def _no_stream(priority: Sequence[str], reasons: Sequence[str], srtp_refusals: int) -> MediaNotAcceptable:
    detail = "; ".join(reasons) if reasons else "the offer has no active audio stream"
    if reasons and srtp_refusals == len(reasons):
        return SrtpNotAcceptable(detail)
    return NoCommonCodec(f"no common audio codec with {'/'.join(priority)}: {detail}")


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its m= line with port 0 and at least one format.
    return MediaDescription(media.media, 0, media.proto, media.formats or ("0",))


def _audio_section(
    *,
    port: int,
    proto: str,
    codecs: Sequence[tuple[str, int]],
    dtmf: tuple[int, str] | None,
    ptime: int,
    direction: Direction,
    rtcp_mux: bool,
    crypto: Sequence[Crypto],
) -> MediaDescription:
    formats = [str(payload_type) for _, payload_type in codecs]
    attributes = [Attribute("rtpmap", f"{payload_type} {name}/8000") for name, payload_type in codecs]
    if dtmf is not None:
        formats.append(str(dtmf[0]))
        attributes.append(Attribute("rtpmap", f"{dtmf[0]} telephone-event/8000"))
        attributes.append(Attribute("fmtp", f"{dtmf[0]} {dtmf[1]}"))
    attributes.append(Attribute("ptime", str(ptime)))
    if rtcp_mux:
        attributes.append(Attribute("rtcp-mux"))
    attributes.extend(Attribute("crypto", str(line)) for line in crypto)
    attributes.append(Attribute(direction))
    return MediaDescription("audio", port, proto, tuple(formats), attributes=tuple(attributes))


def _local_description(local_address: str, media: Sequence[MediaDescription]) -> SessionDescription:
    addrtype = _addrtype(local_address)
    return SessionDescription(
        origin=Origin("-", "0", 0, "IN", addrtype, local_address),
        session_name="-",
        connection=Connection("IN", addrtype, local_address),
        media=tuple(media),
    )


def _offered_codecs(media: MediaDescription, codecs: dict[int, RtpMap]) -> str:
    names = []
    for payload_type in media.payload_types:
        rtpmap = codecs.get(payload_type)
        names.append(f"{rtpmap.encoding_name}/{rtpmap.clock_rate}" if rtpmap else str(payload_type))
    return ", ".join(names) or "none"


def choose_codec(
    offer: SessionDescription,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    *,
    srtp: SrtpPolicy | bool = "off",
    initial: bool = False,
) -> Codec:
    """The codec `answer_offer` will settle on for `offer`: our priority among its first usable audio stream.

    Called once per call as the INVITE arrives; the choice is stored and the answer carries only that codec.
    `srtp` is the policy (MEDIA_SRTP) the stream must meet. Raises NoCommonCodec or SrtpNotAcceptable (answer
    488), or SdpError when the usable stream has no address.
    """
    priority = _check_codecs(codecs)
    policy = _policy(srtp)
    reasons: list[str] = []
    srtp_refusals = 0
    for media in offer.media:
        if media.media != "audio" or media.port == 0:
            continue
        if media.proto not in _SRTP_PROTOS and media.proto not in _PLAIN_RTP_PROTOS:
            reasons.append(f"m=audio with unsupported transport {media.proto}")
            continue
        refused = _stream_srtp(media, policy)[1]
        if refused is not None:
            reasons.append(refused)
            srtp_refusals += 1
            continue
        codecs_offered = media.codecs()
        offered = {_g711_name(rtpmap) for rtpmap in codecs_offered.values()}
        chosen = next((name for name in priority if name in offered), None)
        if chosen is None:
            reasons.append(f"offered codecs: {_offered_codecs(media, codecs_offered)}")
            continue
        connection = offer.media_connection(media)
        if connection is None:
            raise SdpError(f"m=audio {media.port} has no c= line at media or session level")
        _check_media_address(connection.host)
        if initial and connection.is_hold:
            # A new call whose offer says "send me nothing" (c=0.0.0.0) has no use for an agent; and Linux
            # delivers datagrams sent to 0.0.0.0 to the local host, so it is no address to be given.
            raise MediaNotAcceptable(f"c= names the unspecified address {connection.host} in a new call")
        return Codec(chosen)
    raise _no_stream(priority, reasons, srtp_refusals)


def answer_offer(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    session: LocalSdpSession,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    ptime: int = 20,
    local_direction: Direction = "sendrecv",
    rtcp_mux: bool = True,
    srtp: SrtpPolicy | None = None,
    srtp_keys: SrtpKeys | None = None,
    srtp_key: bytes | None = None,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer `offer` as a UAS (RFC 3264 §6): accept its first usable audio stream, reject the rest.

    `srtp` is the policy (MEDIA_SRTP; by default off, or optional when `srtp_key` is given); `srtp_keys` the
    keys of the dialog so far (an offer repeating the peer's key keeps ours); `srtp_key` a fixed key||salt to
    answer with instead of a fresh one (reproducible tests). Raises NoCommonCodec or SrtpNotAcceptable (488).
    """
    priority = _check_codecs(codecs)
    _check_local(local_port, local_direction, ptime, srtp_key)
    policy = srtp_policy(srtp) if srtp is not None else ("optional" if srtp_key is not None else "off")
    answer_media: list[MediaDescription] = []
    negotiated: NegotiatedMedia | None = None
    reasons: list[str] = []
    srtp_refusals = 0
    for index, media in enumerate(offer.media):
        if negotiated is not None or media.media != "audio" or media.port == 0:
            answer_media.append(_rejected(media))
            continue
        if media.proto not in _SRTP_PROTOS and media.proto not in _PLAIN_RTP_PROTOS:
            reasons.append(f"m=audio with unsupported transport {media.proto}")
            answer_media.append(_rejected(media))
            continue
        chosen_crypto, refused = _stream_srtp(media, policy)
        if refused is not None:
            reasons.append(refused)
            srtp_refusals += 1
            answer_media.append(_rejected(media))
            continue
        codecs_offered = media.codecs()
        g711_offered: dict[str, int] = {}
        for payload_type, rtpmap in codecs_offered.items():
            name = _g711_name(rtpmap)
            if name is not None:
                g711_offered.setdefault(name, payload_type)
        # RFC 3264 §6.1: the answerer may pick any offered codec; ours go by our configured priority.
        chosen = next(((name, g711_offered[name]) for name in priority if name in g711_offered), None)
        if chosen is None:
            reasons.append(f"offered codecs: {_offered_codecs(media, codecs_offered)}")
            answer_media.append(_rejected(media))
            continue
        connection = offer.media_connection(media)
        if connection is None:
            raise SdpError(f"m=audio {media.port} has no c= line at media or session level")
        _check_media_address(connection.host)
        dtmf_type = _telephone_event(codecs_offered, 8000) if dtmf else None
        # RFC 4733 §7.1.1: keep the offerer's payload type and its event list; 0-16 when it gave none.
        dtmf_line = None if dtmf_type is None else (dtmf_type, media.fmtp(dtmf_type) or DEFAULT_DTMF_EVENTS)
        offered_direction = _effective_remote_direction(offer.media_direction(media), connection)
        direction = _answer_direction(local_direction, offered_direction)
        negotiated_ptime = _negotiate_ptime(media, offer, ptime)
        mux = rtcp_mux and media.rtcp_mux
        crypto = local_crypto = keys = None
        if chosen_crypto is not None:
            crypto, remote_key = chosen_crypto
            keys = SrtpKeys(_answer_key(remote_key, srtp_keys, srtp_key), remote_key, crypto.tag)
            local_crypto = Crypto(crypto.tag, crypto.suite, keys.local.inline)
        answer_media.append(
            _audio_section(
                port=local_port,
                proto=media.proto,
                codecs=(chosen,),
                dtmf=dtmf_line,
                ptime=negotiated_ptime,
                direction=direction,
                rtcp_mux=mux,
                crypto=() if local_crypto is None else (local_crypto,),
            )
        )
        negotiated = NegotiatedMedia(
            codec=Codec(chosen[0]),
            payload_type=chosen[1],
            clock_rate=8000,
            dtmf_payload_type=dtmf_type,
            ptime=negotiated_ptime,
            remote_rtp=(connection.host, media.port),
            remote_rtcp=_remote_rtcp(media, connection.host, mux),
            rtcp_mux=mux,
            local_direction=direction,
            remote_direction=offered_direction,
            on_hold=not _FLOWS[offered_direction][1],
            remote_crypto=crypto,
            local_crypto=local_crypto,
            media_index=index,
            proto=media.proto,
            srtp=keys,
        )
    if negotiated is None:
        raise _no_stream(priority, reasons, srtp_refusals)
    answer = session.stamp(_local_description(local_address, answer_media))
    return answer, negotiated


def _negotiate_ptime(media: MediaDescription, offer: SessionDescription, ptime: int) -> int:
    # RFC 8866 §6.4: ptime is media level, but some stacks write it at session level, so fall back to that.
    offered = media.ptime or _milliseconds(offer.attributes, "ptime")
    if offered is not None:
        return offered
    maxptime = media.maxptime or _milliseconds(offer.attributes, "maxptime")
    return min(ptime, maxptime) if maxptime is not None else ptime


def build_offer(
    *,
    local_address: str,
    local_port: int,
    session: LocalSdpSession,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    dtmf_payload_type: int = 101,
    ptime: int = 20,
    direction: Direction = "sendrecv",
    rtcp_mux: bool = False,
    srtp: SrtpPolicy = "off",
    srtp_keys: Sequence[SdesKey] = (),
) -> SessionDescription:
    """Our offer as a UAC (RFC 3264 §5): one audio stream, `codecs` in their order, telephone-event.

    `srtp`: off offers RTP/AVP; optional RTP/AVP with a=crypto (best effort: SRTP only if the answer takes one
    of our keys); required RTP/SAVP. `srtp_keys` are our keys, one a=crypto line each (tags 1, 2, ...).
    """
    priority = _check_codecs(codecs)
    _check_local(local_port, direction, ptime, None)
    policy = srtp_policy(srtp)
    if dtmf and not 96 <= dtmf_payload_type <= 127:
        raise ValueError(f"dtmf_payload_type must be dynamic (96..127), got {dtmf_payload_type}")
    if policy != "off" and not srtp_keys:
        raise ValueError(f"an offer with MEDIA_SRTP={policy} needs srtp_keys")
    crypto = (
        []
        if policy == "off"
        else [Crypto(tag, key.suite.name, key.inline) for tag, key in enumerate(srtp_keys, 1)]
    )
    media = _audio_section(
        port=local_port,
        proto="RTP/SAVP" if policy == "required" else "RTP/AVP",
        codecs=[(name, SIP_PAYLOAD_TYPES[name]) for name in dict.fromkeys(priority)],
        dtmf=(dtmf_payload_type, DEFAULT_DTMF_EVENTS) if dtmf else None,
        ptime=ptime,
        direction=direction,
        rtcp_mux=rtcp_mux,
        crypto=crypto,
    )
    return session.stamp(_local_description(local_address, [media]))


def parse_answer(
    offer: SessionDescription, answer: SessionDescription, *, srtp: SrtpPolicy | None = None
) -> NegotiatedMedia:
    """Check `answer` against our `offer` (RFC 3264 §6) and return what it settled for our audio stream.

    With `srtp="required"` an answer that leaves a best-effort offer (RTP/AVP with a=crypto) plain is
    SrtpNotAcceptable; an RTP/SAVP offer needs a keyed answer whatever the policy.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines for an offer of {len(offer.media)} (RFC 3264 §6)"
        )
    for position, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != theirs.media:
            raise SdpError(f"answer m= line {position} is {theirs.media}, the offer's is {ours.media}")
    index = next(
        (i for i, media in enumerate(offer.media) if media.media == "audio" and media.port != 0),
        None,
    )
    if index is None:
        raise NoCommonCodec("our offer has no active audio stream")
    ours, theirs = offer.media[index], answer.media[index]
    if theirs.port == 0:
        raise NoCommonCodec("the answer rejected our audio stream (port 0)")
    if theirs.proto != ours.proto:
        raise SdpError(f"answer changed the transport from {ours.proto} to {theirs.proto}")
    our_codecs, their_codecs = ours.codecs(), theirs.codecs()
    offered = {_g711_name(rtpmap) for rtpmap in our_codecs.values()} - {None}
    chosen: tuple[str, int] | None = None
    # RFC 3264 §6.1: the answer lists codecs in the answerer's preference; we send the first we offered.
    for payload_type, rtpmap in their_codecs.items():
        name = _g711_name(rtpmap)
        if name is not None and name in offered:
            chosen = (name, payload_type)
            break
    if chosen is None:
        raise NoCommonCodec(f"the answer has no codec we offered: {_offered_codecs(theirs, their_codecs)}")
    connection = answer.media_connection(theirs)
    if connection is None:
        raise SdpError("the answer's audio stream has no c= line")
    _check_media_address(connection.host)
    offered_dtmf = _telephone_event(our_codecs, 8000) is not None
    dtmf_type = _telephone_event(their_codecs, 8000) if offered_dtmf else None
    remote_direction = _effective_remote_direction(answer.media_direction(theirs), connection)
    local_direction = _answer_direction(offer.media_direction(ours), remote_direction)
    remote_crypto, local_crypto, keys = _answered_crypto(ours, theirs)
    if keys is None and srtp is not None and srtp_policy(srtp) == "required":
        raise SrtpNotAcceptable("MEDIA_SRTP=required and the answer chose plain RTP")
    mux = ours.rtcp_mux and theirs.rtcp_mux
    return NegotiatedMedia(
        codec=Codec(chosen[0]),
        payload_type=chosen[1],
        clock_rate=8000,
        dtmf_payload_type=dtmf_type,
        ptime=theirs.ptime or ours.ptime or 20,
        remote_rtp=(connection.host, theirs.port),
        remote_rtcp=_remote_rtcp(theirs, connection.host, mux),
        rtcp_mux=mux,
        local_direction=local_direction,
        remote_direction=remote_direction,
        on_hold=not _FLOWS[remote_direction][1],
        remote_crypto=remote_crypto,
        local_crypto=local_crypto,
        media_index=index,
        proto=theirs.proto,
        srtp=keys,
    )


def _answered_crypto(
    ours: MediaDescription, theirs: MediaDescription
) -> tuple[Crypto | None, Crypto | None, SrtpKeys | None]:
    """(their line, our line it answers, the keys) for an answer to our `ours`; all None for plain RTP."""
    offered = ours.crypto
    if not offered:
        return None, None, None  # we offered plain RTP: an a=crypto in the answer means nothing
    if not theirs.has_attribute("crypto"):
        if ours.proto in _SRTP_PROTOS:
            raise SdpError("the SRTP answer has no a=crypto line")
        return None, None, None  # best effort: the answerer chose plain RTP
    # RFC 4568 §7.1.3: the answer's crypto line must echo the tag and suite of one we offered.
    for crypto in theirs.crypto:
        mine = next((line for line in offered if line.tag == crypto.tag and line.suite == crypto.suite), None)
        if mine is not None:
            try:
                return crypto, mine, SrtpKeys(mine.key(), crypto.key(), crypto.tag)
            except CryptoNotUsable as error:
                raise MediaNotAcceptable(str(error)) from None
    raise SdpError("the answer has no a=crypto line matching one we offered (RFC 4568 §7.1.3)")


__all__ = [
    "DEFAULT_DTMF_EVENTS",
    "MAX_MEDIA_SECTIONS",
    "MAX_SDP_SIZE",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "Crypto",
    "Direction",
    "Line",
    "LocalSdpSession",
    "MediaDescription",
    "MediaNotAcceptable",
    "NegotiatedMedia",
    "NoCommonCodec",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "SrtpNotAcceptable",
    "answer_offer",
    "build_offer",
    "choose_codec",
    "is_direction",
    "media_address_problem",
    "parse_answer",
]
