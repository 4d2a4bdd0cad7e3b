"""RTP and RTCP packets (RFC 3550 §5, §6): parse and build, including CSRCs, header extensions and padding."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from voicelive_sip.errors import RemoteProtocolError

__all__ = [
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpParseError",
    "RtpPacket",
    "RtpParseError",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcp",
    "build_rtp_header",
    "is_rtcp",
    "parse_rtcp",
    "plain_rtp_header",
    "serialize_rtcp",
]

RTP_VERSION: Final = 2
RTP_HEADER_SIZE: Final = 12
RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
SDES_CNAME: Final = 1

_RTP_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SR_INFO = struct.Struct("!IIIIII")  # SSRC, NTP msw, NTP lsw, RTP timestamp, packet count, octet count


class RtpParseError(RemoteProtocolError):
    """The datagram is not a valid RTP packet (RFC 3550 §5.1); the session counts and drops it."""


class RtcpParseError(RemoteProtocolError):
    """The datagram is not a valid RTCP compound packet (RFC 3550 §6.1); the session counts and drops it."""


def is_rtcp(data: bytes) -> bool:
    """RTP/RTCP demultiplexing on one port (RFC 5761 §4): RTCP packet types 192-223 collide with no RTP PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1); `padding_size` counts the padding octets including the count octet."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse a datagram; raises `RtpParseError` for anything RFC 3550 §5.1 does not allow."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpParseError("RTP packet shorter than the fixed header")
        first, second, sequence_number, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError("RTP version is not 2")
        offset = RTP_HEADER_SIZE
        csrc: tuple[int, ...] = ()
        csrc_count = first & 0x0F
        if csrc_count:
            end = offset + 4 * csrc_count
            if end > size:
                raise RtpParseError("CSRC list runs past the end of the packet")
            csrc = struct.unpack_from(f"!{csrc_count}I", data, offset)
            offset = end
        extension_profile: int | None = None
        extension = b""
        if first & 0x10:
            # RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words, then the words.
            if offset + 4 > size:
                raise RtpParseError("header extension runs past the end of the packet")
            extension_profile, words = struct.unpack_from("!HH", data, offset)
            end = offset + 4 + 4 * words
            if end > size:
                raise RtpParseError("header extension runs past the end of the packet")
            extension = bytes(data[offset + 4 : end])
            offset = end
        padding_size = 0
        end = size
        if first & 0x20:
            # RFC 3550 §5.1: the last octet of the padding counts the padding octets, itself included.
            padding_size = data[-1]
            if padding_size == 0 or offset + padding_size > size:
                raise RtpParseError("invalid padding length")
            end = size - padding_size
        return cls(
            second & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            bytes(data[offset:end]),
            bool(second & 0x80),
            csrc,
            extension_profile,
            extension,
            padding_size,
        )

    def serialize(self) -> bytes:
        """Build the datagram."""
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs fit in an RTP header")
        if len(self.extension) % 4:
            raise ValueError("a header extension is a whole number of 32-bit words")
        has_extension = self.extension_profile is not None
        first = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding_size else 0)
            | (0x10 if has_extension else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _RTP_HEADER.pack(
                first, second, self.sequence_number & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(struct.pack("!HH", self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding_size:
            if not 0 < self.padding_size < 256:
                raise ValueError("padding is 1-255 octets")
            parts.append(bytes(self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)


def build_rtp_header(
    payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int
) -> bytes:
    """The 12-byte fixed header with no CSRCs or extension (the media clock's hot path)."""
    return _RTP_HEADER.pack(
        0x80, (0x80 if marker else 0) | payload_type, sequence_number & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )


def plain_rtp_header(data: bytes) -> tuple[int, bool, int, int, int] | None:
    """(payload type, marker, sequence, timestamp, SSRC) of a plain packet, read in place, else None.

    Plain: version 2 without padding, extension or CSRCs, what every G.711 peer sends; its payload is
    `data[RTP_HEADER_SIZE:]`. For anything else use `RtpPacket.parse`, which checks the rest. The receive path
    of every call takes this shortcut, so it builds no `RtpPacket`.
    """
    if len(data) < RTP_HEADER_SIZE or data[0] != 0x80:
        return None
    _, second, sequence_number, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    return second & 0x7F, second > 0x7F, sequence_number, timestamp, ssrc


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1); `packets_lost` is the signed 24-bit cumulative count."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def _parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def _serialize(self) -> bytes:
        # Clamp to the 24-bit signed field (RFC 3550 §6.4.1 "cumulative number of packets lost").
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            ((self.fraction_lost & 0xFF) << 24) | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (RFC 3550 §6.4.1); `ntp_timestamp` is the 64-bit NTP time as one integer."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its (item type, value) pairs, e.g. `(SDES_CNAME, b"user@host")`."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """RTCP SDES (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (RFC 3550 §6.6)."""

    sources: tuple[int, ...] = ()
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet type we do not interpret (APP, feedback, XR): kept so the compound still parses."""

    packet_type: int
    count: int
    body: bytes = field(default=b"", repr=False)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet (RFC 3550 §6.1); raises `RtcpParseError` on any malformed part."""
    packets: list[RtcpPacket] = []
    offset = 0
    size = len(data)
    if size < 4:
        raise RtcpParseError("RTCP packet shorter than its header")
    while offset < size:
        if offset + 4 > size:
            raise RtcpParseError("truncated RTCP header")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtcpParseError("RTCP version is not 2")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtcpParseError("RTCP length runs past the end of the datagram")
        if first & 0x20:
            # Only the last packet of a compound may be padded (RFC 3550 §6.4.1 P bit).
            if end != size or data[end - 1] == 0 or data[end - 1] > end - offset - 4:
                raise RtcpParseError("invalid RTCP padding")
            body_end = end - data[end - 1]
        else:
            body_end = end
        packets.append(_parse_one(first & 0x1F, packet_type, data[offset + 4 : body_end]))
        offset = end
    return packets


def _parse_one(count: int, packet_type: int, body: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if len(body) < 24 + 24 * count:
            raise RtcpParseError("SR too short for its report count")
        ssrc, ntp_msw, ntp_lsw, rtp_ts, packet_count, octet_count = _SR_INFO.unpack_from(body)
        reports = tuple(ReportBlock._parse(body, 24 + 24 * i) for i in range(count))
        return SenderReport(ssrc, (ntp_msw << 32) | ntp_lsw, rtp_ts, packet_count, octet_count, reports)
    if packet_type == RTCP_RR:
        if len(body) < 4 + 24 * count:
            raise RtcpParseError("RR too short for its report count")
        (ssrc,) = struct.unpack_from("!I", body)
        return ReceiverReport(ssrc, tuple(ReportBlock._parse(body, 4 + 24 * i) for i in range(count)))
    if packet_type == RTCP_SDES:
        return SourceDescription(_parse_sdes(count, body))
    if packet_type == RTCP_BYE:
        if len(body) < 4 * count:
            raise RtcpParseError("BYE too short for its source count")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = b""
        if len(body) > 4 * count:
            length = body[4 * count]
            reason = bytes(body[4 * count + 1 : 4 * count + 1 + length])
            if len(reason) != length:
                raise RtcpParseError("BYE reason runs past the packet")
        return Bye(sources, reason)
    return UnknownRtcp(packet_type, count, bytes(body))


def _parse_sdes(count: int, body: bytes) -> tuple[SdesChunk, ...]:
    chunks: list[SdesChunk] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise RtcpParseError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if offset >= len(body):
                raise RtcpParseError("SDES item list not terminated")
            item_type = body[offset]
            if item_type == 0:
                # RFC 3550 §6.5: the list ends with a null octet, then pads to the next 32-bit boundary.
                offset = (offset + 4) & ~3
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RtcpParseError("SDES item truncated")
            length = body[offset + 1]
            items.append((item_type, bytes(body[offset + 2 : offset + 2 + length])))
            offset += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


def serialize_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Build a compound RTCP packet (RFC 3550 §6.1: an SR or RR first, then SDES; the caller orders them)."""
    return b"".join(_serialize_one(packet) for packet in packets)


def _with_header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP bodies are a whole number of 32-bit words")
    if count > 31:
        raise ValueError("at most 31 items fit in one RTCP packet")
    return _RTCP_HEADER.pack((RTP_VERSION << 6) | count, packet_type, len(body) // 4) + body


def _serialize_one(packet: RtcpPacket) -> bytes:
    if isinstance(packet, SenderReport):
        body = _SR_INFO.pack(
            packet.ssrc,
            (packet.ntp_timestamp >> 32) & 0xFFFFFFFF,
            packet.ntp_timestamp & 0xFFFFFFFF,
            packet.rtp_timestamp & 0xFFFFFFFF,
            packet.packet_count & 0xFFFFFFFF,
            packet.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(block._serialize() for block in packet.reports)
        return _with_header(len(packet.reports), RTCP_SR, body)
    if isinstance(packet, ReceiverReport):
        body = struct.pack("!I", packet.ssrc) + b"".join(block._serialize() for block in packet.reports)
        return _with_header(len(packet.reports), RTCP_RR, body)
    if isinstance(packet, SourceDescription):
        parts: list[bytes] = []
        for chunk in packet.chunks:
            raw = struct.pack("!I", chunk.ssrc)
            for item_type, value in chunk.items:
                if len(value) > 255:
                    raise ValueError("SDES items are at most 255 octets")
                raw += bytes([item_type, len(value)]) + value
            raw += b"\x00" * (4 - len(raw) % 4)  # null terminator plus padding to a word boundary
            parts.append(raw)
        return _with_header(len(packet.chunks), RTCP_SDES, b"".join(parts))
    if isinstance(packet, Bye):
        body = b"".join(struct.pack("!I", ssrc) for ssrc in packet.sources)
        if packet.reason:
            reason = packet.reason[:255]
            raw = bytes([len(reason)]) + reason
            body += raw + b"\x00" * (-len(raw) % 4)
        return _with_header(len(packet.sources), RTCP_BYE, body)
    return _with_header(packet.count, packet.packet_type, packet.body)
