"""The fuzz targets: each takes one input and raises only when a property is broken.

The property for every target: only the documented exception types escape (SipParseError, SdpError,
RtpParseError, RtcpParseError, DigestAuthError, ValueError where the docstring says so); anything else
(IndexError, KeyError, UnicodeError, RecursionError, LocalProtocolError ...) is a bug. Some targets check a
little more: what parses serializes and parses again, and buffers stay within their limits. One input in
sixteen is also inflated to 64 KiB so that quadratic work or huge allocations show up as timeouts.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from voicelive_sip.rtp.dtmf import DTMF_DIGITS, TelephoneEventReceiver, parse_event_payload
from voicelive_sip.rtp.packet import (
    RtcpParseError,
    RtpPacket,
    RtpParseError,
    is_rtcp,
    parse_rtcp,
    plain_rtp_header,
)
from voicelive_sip.sdp import (
    MAX_SDP_SIZE,
    LocalSdpSession,
    SdpError,
    SessionDescription,
    answer_offer,
    build_offer,
    choose_codec,
    parse_answer,
)
from voicelive_sip.sip.auth import (
    _NONCE_ISSUED,
    DigestAuthError,
    DigestClient,
    DigestServer,
    parse_challenge,
    parse_credentials,
)
from voicelive_sip.sip.framing import StreamFramer
from voicelive_sip.sip.message import (
    MAX_MESSAGE_SIZE,
    Message,
    Request,
    SipParseError,
    error_response,
    parse_message,
    request_problem,
)

ROOT = Path(__file__).resolve().parent.parent
RFC4475 = ROOT / "tests" / "data" / "rfc4475"
SDP_SAMPLES = ROOT / "tests" / "sdp" / "data"
INFLATED_SIZE = 64 * 1024


class PropertyViolation(Exception):
    """A target's property other than "no undocumented exception" does not hold."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise PropertyViolation(what)


def _inflated(data: bytes, limit: int = INFLATED_SIZE) -> bytes | None:
    """For one input in sixteen: the input with one of its lines repeated up to `limit` bytes."""
    crc = zlib.crc32(data)
    if not data or crc % 16:
        return None
    lines = data.splitlines(keepends=True)
    line = lines[(crc >> 4) % len(lines)] or b"x"
    room = max(0, limit - len(data))
    return data.replace(line, line * (1 + room // len(line)), 1)[:limit]


# --------------------------------------------------------------------------------------------------
# SIP messages and stream framing


def _exercise_message(message: Request | Message) -> None:
    # Every typed accessor a transaction user calls: only SipParseError may come out of them.
    for name in (
        "via",
        "from_",
        "to",
        "call_id",
        "cseq",
        "max_forwards",
        "contact",
        "contact_is_star",
        "route",
        "record_route",
        "content_type",
        "content_length",
        "expires",
        "allow",
        "supported",
        "require",
        "proxy_require",
        "www_authenticate",
        "proxy_authenticate",
        "authorization",
        "proxy_authorization",
    ):
        with contextlib.suppress(SipParseError):
            getattr(message, name)
    if isinstance(message, Request):
        request_problem(message)
    # What we parsed we can write out again, and it reads back the same.
    wire = message.serialize()
    try:
        again = parse_message(wire, max_size=len(wire))
    except SipParseError as error:
        raise PropertyViolation(f"re-serialized message does not parse: {error!r}") from error
    _check(again == message, "re-serialized message parses differently")


def _answer_error(error: SipParseError) -> None:
    response = error_response(error)
    if response is not None:
        response.serialize()


def sip_parser(data: bytes) -> None:
    """`parse_message` on a datagram, the accessors, the 400 built from a failure, and a round trip."""
    for blob in (data, _inflated(data, MAX_MESSAGE_SIZE)):
        if blob is None:
            continue
        try:
            message = parse_message(blob)
        except SipParseError as error:
            _answer_error(error)
            continue
        _exercise_message(message)


def stream_framer(data: bytes) -> None:
    """`StreamFramer.feed` with the input cut into chunks at places the input itself chooses."""
    for blob in (data, _inflated(data, 4 * MAX_MESSAGE_SIZE)):
        if blob is None:
            continue
        framer = StreamFramer()
        cuts = sorted({b * len(blob) // 256 for b in blob[:8]} | {len(blob)})
        start = 0
        for now, cut in enumerate(cuts):
            try:
                out = framer.feed(blob[start:cut], float(now))
            except SipParseError as error:
                _answer_error(error)
                break
            start = cut
            for item in out:
                if isinstance(item, SipParseError):
                    _answer_error(item)
            _check(framer.buffered <= framer.max_size, f"framer buffers {framer.buffered} bytes")


# --------------------------------------------------------------------------------------------------
# SDP


_SRTP_KEY = bytes(range(30))
_OUR_OFFER = build_offer(local_address="192.0.2.10", local_port=40000, session=LocalSdpSession(session_id=1))


def _check_port(port: int, what: str) -> None:
    _check(0 < port <= 65535, f"{what} port {port} out of range")


def sdp(data: bytes) -> None:
    """`SessionDescription.parse`, a round trip, `choose_codec` and `answer_offer` (plain and SRTP)."""
    for blob in (data, _inflated(data)):
        if blob is None:
            continue
        try:
            offer = SessionDescription.parse(blob)
        except SdpError:
            continue
        wire = offer.serialize()
        if len(wire) <= MAX_SDP_SIZE:  # CRLF line ends and UTF-8 for Latin-1 text can make it longer
            try:
                again = SessionDescription.parse(wire)
            except SdpError as error:
                raise PropertyViolation(f"re-serialized SDP does not parse: {error!r}") from error
            _check(again == offer, "re-serialized SDP parses differently")
        for srtp in (False, True):
            try:
                chosen = choose_codec(offer, srtp=srtp)
            except SdpError:
                chosen = None
            try:
                answer, negotiated = answer_offer(
                    offer,
                    local_address="192.0.2.10",
                    local_port=40000,
                    session=LocalSdpSession(session_id=1),
                    srtp_key=_SRTP_KEY if srtp else None,
                )
            except SdpError:
                _check(chosen is None, "choose_codec accepted an offer answer_offer refused")
                continue
            _check(chosen == negotiated.codec, "choose_codec and answer_offer disagree")
            _check_port(negotiated.remote_rtp[1], "remote RTP")
            _check_port(negotiated.remote_rtcp[1], "remote RTCP")
            _check(0 < negotiated.ptime <= 10_000, f"ptime {negotiated.ptime}")
            try:
                # RFC 3264 §6 mirrors every offered m= line, so only an answer within the limit must parse.
                wire = answer.serialize()
                if len(wire) <= MAX_SDP_SIZE:
                    SessionDescription.parse(wire)
            except SdpError as error:
                raise PropertyViolation(f"our answer does not parse: {error!r}") from error
        # The same bytes as the answer to our own offer (the UAC side).
        with contextlib.suppress(SdpError):
            parse_answer(_OUR_OFFER, offer)


# --------------------------------------------------------------------------------------------------
# Digest authentication header values


_SECRET = bytes(range(32))
_REALM = "example.com"
_NOW = 1000.0


def _nonce(server: DigestServer, issued_at: float, salt: bytes = bytes(8)) -> str:
    """A nonce as `server` would issue it, with a fixed salt so the seed corpus is reproducible."""
    issued = _NONCE_ISSUED.pack(issued_at)
    raw = issued + salt + server._mac(issued, salt)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _server(algorithm: str = "MD5", qop: str | None = "auth") -> DigestServer:
    return DigestServer(_SECRET, _REALM, algorithm=algorithm, qop=qop, opaque="op")


def digest(data: bytes) -> None:
    """Header values as a peer sends them: parse_challenge/parse_credentials, verify and respond."""
    value = data.decode("utf-8", "surrogateescape")  # how parse_message decodes a header value
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(SipParseError):
            parse(value)
    for algorithm, qop in (("MD5", "auth"), ("SHA-256-sess", "auth,auth-int"), ("MD5", None)):
        with contextlib.suppress(SipParseError):
            _server(algorithm, qop).verify(
                value, method="INVITE", password_for=lambda name: "secret", now=_NOW, body=b"v=0"
            )
    for status_code in (401, 407):
        client = DigestClient("alice", "secret", cnonce_factory=lambda: "0a4f113b")
        try:
            client.respond(status_code, [value], method="INVITE", uri="sip:bob@example.com", body=b"v=0")
            client.authorize("BYE", "sip:bob@example.com")
        except (SipParseError, DigestAuthError):
            pass


# --------------------------------------------------------------------------------------------------
# RTP, RTCP and RFC 4733


def rtp(data: bytes) -> None:
    """`RtpPacket.parse` (and a round trip) and `plain_rtp_header`, which must agree with it."""
    try:
        packet: RtpPacket | None = RtpPacket.parse(data)
    except RtpParseError:
        packet = None
    if packet is not None:
        _check(RtpPacket.parse(packet.serialize()) == packet, "re-serialized RTP parses differently")
    header = plain_rtp_header(data)
    if header is not None:
        _check(packet is not None, "plain_rtp_header read a packet RtpPacket.parse refuses")
        assert packet is not None
        expected = (packet.payload_type, packet.marker, packet.sequence_number, packet.timestamp, packet.ssrc)
        _check(header == expected, "plain_rtp_header and RtpPacket.parse disagree")


def rtcp(data: bytes) -> None:
    """`parse_rtcp` on a compound packet."""
    is_rtcp(data)
    with contextlib.suppress(RtcpParseError):
        parse_rtcp(data)


def dtmf(data: bytes) -> None:
    """`parse_event_payload` and a `TelephoneEventReceiver` fed 9-byte records (timestamp, tick, payload)."""
    try:
        event, _, volume, _ = parse_event_payload(data)
        _check(0 <= event <= 255 and 0 <= volume <= 63, "event or volume out of range")
    except ValueError:
        pass
    receiver = TelephoneEventReceiver()
    now = 0.0
    for offset in range(0, len(data) - 8, 9):
        (timestamp,) = struct.unpack_from("!I", data, offset)
        now += data[offset + 4] / 1000
        receiver.receive(timestamp, data[offset + 5 : offset + 9], now)
        receiver.handle_timer(now)
        while (found := receiver.next_event()) is not None:
            _check(found.digit in DTMF_DIGITS and found.duration_ms >= 0, f"bad event {found}")
    receiver.handle_timer(now + 10)
    _check(receiver.get_timer() is None, "an event is still pending after its timeout")


# --------------------------------------------------------------------------------------------------
# Seed corpora


def _rfc4475() -> list[bytes]:
    return [path.read_bytes() for path in sorted(RFC4475.glob("*.dat"))]


_INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\n"
    b"Supported: timer, 100rel\r\nSession-Expires: 1800;refresher=uac\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b'Authorization: Digest username="alice", realm="example.com", nonce="abc", uri="sip:bob@example.com",'
    b' response="6629fae49393a05397450978507c4ef1", qop=auth, nc=00000001, cnonce="0a4f113b"\r\n'
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 129\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)
_RESPONSE = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=198.51.100.7\r\n"
    b"From: <sip:alice@example.com>;tag=1928301774\r\nTo: <sip:bob@example.com>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710\r\nCSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="example.com", nonce="dcd98b", qop="auth", algorithm=MD5\r\n'
    b"Content-Length: 0\r\n\r\n"
)


def sip_seeds() -> list[bytes]:
    bye = _INVITE.split(b"Content-Type")[0].replace(b"INVITE", b"BYE") + b"Content-Length: 0\r\n\r\n"
    compact = b"OPTIONS sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nf: <sip:c@d>;tag=1\nt: sip:a@b\n"
    compact += b"i: x\nm: <sip:c@h>\nk: timer\nl: 0\n\n"
    return [*_rfc4475(), _INVITE, _RESPONSE, bye, compact]


def stream_seeds() -> list[bytes]:
    seeds = [m for m in sip_seeds() if b"Content-Length" in m or b"\nl:" in m]
    return [*seeds, b"\r\n\r\n" + _INVITE + _RESPONSE, _INVITE[:200]]


def sdp_seeds() -> list[bytes]:
    samples = [path.read_bytes() for path in sorted(SDP_SAMPLES.glob("*.sdp"))]
    bodies = [m.split(b"\r\n\r\n", 1)[1] for m in _rfc4475() if b"\r\n\r\nv=0" in m]
    srtp = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendrecv\r\n"
        b"m=audio 49170 RTP/SAVP 8 0 101\r\na=rtcp:49171 IN IP4 192.0.2.1\r\na=ptime:20\r\na=maxptime:40\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(_SRTP_KEY) + b"\r\n"
    )
    return [*samples, *bodies, _OUR_OFFER.serialize(), srtp]


def digest_seeds() -> list[bytes]:
    seeds = [
        b'Digest realm="example.com", nonce="dcd98b", qop="auth,auth-int", algorithm=SHA-256, opaque="5c"',
        b'Digest realm="example.com", nonce="x", stale=true, algorithm=MD5-sess, qop="auth", userhash=true',
        b'Basic realm="x"',
        b'Digest username="a\\"b", realm="r", nonce="n", uri="sip:b", response="00", charset=UTF-8',
    ]
    for algorithm, qop in (("MD5", "auth"), ("SHA-256-sess", "auth,auth-int"), ("MD5", None)):
        server = _server(algorithm, qop)
        nonce = _nonce(server, _NOW)
        challenge = server.challenge(_NOW).replace(server.challenge(_NOW).split('nonce="')[1][:43], nonce)
        seeds.append(challenge.encode())
        client = DigestClient("alice", "secret", cnonce_factory=lambda: "0a4f113b")
        answer = client.respond(401, [challenge], method="INVITE", uri="sip:bob@example.com", body=b"v=0")
        seeds.append(answer.header_value.encode())
    return seeds


def rtp_seeds() -> list[bytes]:
    plain = RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160).serialize()
    full = RtpPacket(101, 7, 8000, 1, b"\x01\x8a\x03\x20", True, (1, 2), 0xBEDE, b"\x10\xff\x00\x00", 4)
    return [plain, full.serialize(), plain[:12]]


def rtcp_seeds() -> list[bytes]:
    sr = bytes.fromhex("80c8000600001234" + "00" * 20)
    rr = bytes.fromhex("81c90007" + "00001234" + "00005678" + "00" * 20)
    sdes = bytes.fromhex("81ca0003" + "00001234" + "0103616263" + "000000")
    bye = bytes.fromhex("81cb0003" + "00001234" + "03627965" + "0000" + "0000")
    padded = bytes.fromhex("a0cc0002" + "00000000" + "00000004")
    return [sr + sdes, rr + sdes + bye, padded, bye]


def dtmf_seeds() -> list[bytes]:
    records = b""
    for duration, flags in ((160, 0x0A), (320, 0x0A), (480, 0x8A), (480, 0x8A), (480, 0x8A)):
        records += struct.pack("!IB", 8000, 20) + struct.pack("!BBH", 5, flags, duration)
    return [records, records[:9], bytes.fromhex("0b8a0320")]


@dataclass(frozen=True, slots=True)
class Target:
    """One fuzz target: the function, its seed corpus and a libFuzzer dictionary."""

    name: str
    function: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    dictionary: tuple[bytes, ...] = ()


_SIP_WORDS = (
    b"SIP/2.0",
    b"\r\n",
    b"\r\n\r\n",
    b"Via: ",
    b"Content-Length: ",
    b"l: ",
    b"CSeq: ",
    b"Call-ID: ",
    b"From: ",
    b"To: ",
    b";tag=",
    b";branch=z9hG4bK",
    b"sip:",
    b"sips:",
    b"tel:",
    b"<sip:a@[::1]:5060>",
    b"Contact: *",
    b"Max-Forwards: ",
    b"Expires: ",
    b"Content-Type: application/sdp",
    b"Date: Sat, 13 Nov 2010 23:29:00 GMT",
    b"4294967296",
    b"99999999999",
    b"%",
    b'"',
    b"\\",
    b"\xff",
    b"\xc3\xa9",
)
_SDP_WORDS = (
    b"v=0\r\n",
    b"o=- 1 1 IN IP4 192.0.2.1\r\n",
    b"c=IN IP4 ",
    b"c=IN IP6 ::1",
    b"m=audio ",
    b" RTP/AVP ",
    b" RTP/SAVP ",
    b"a=rtpmap:",
    b"a=fmtp:",
    b"a=ptime:",
    b"a=maxptime:",
    b"a=rtcp:",
    b"a=rtcp-mux",
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
    b"telephone-event/8000",
    b"PCMU/8000",
    b"/",
    b"65535",
    b"0.0.0.0",
    b"a=inactive",
    b"a=sendonly",
)
_DIGEST_WORDS = (
    b"Digest ",
    b'realm="',
    b'nonce="',
    b'response="',
    b'uri="',
    b'username="',
    b'cnonce="',
    b"nc=",
    b"qop=",
    b"auth-int",
    b"algorithm=",
    b"SHA-256-sess",
    b"SHA-512-256",
    b"stale=",
    b"userhash=true",
    b"\\",
    b'"',
    b", ",
)

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("sip_parser", sip_parser, sip_seeds, _SIP_WORDS),
        Target("stream_framer", stream_framer, stream_seeds, _SIP_WORDS),
        Target("sdp", sdp, sdp_seeds, _SDP_WORDS),
        Target("digest", digest, digest_seeds, _DIGEST_WORDS),
        Target("rtp", rtp, rtp_seeds),
        Target("rtcp", rtcp, rtcp_seeds),
        Target("dtmf", dtmf, dtmf_seeds),
    )
}


def iter_targets(names: list[str] | None = None) -> Iterator[Target]:
    for name in names or list(TARGETS):
        yield TARGETS[name]
