"""RTP/RTCP parse and build (RFC 3550 §5, §6): round trips, wire bytes, and junk rejected."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicelive_sip.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpParseError,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_rtp_header,
    is_rtcp,
    parse_rtcp,
    plain_rtp_header,
    serialize_rtcp,
)


def test_parses_a_plain_pcmu_packet_from_the_wire() -> None:
    data = bytes.fromhex("80 80 12 34 00 00 00 a0 de ad be ef") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.marker, packet.sequence_number) == (0, True, 0x1234)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (160, 0xDEADBEEF, b"\xff" * 160)
    assert packet.serialize() == data
    assert build_rtp_header(0, True, 0x1234, 160, 0xDEADBEEF) == data[:12]


def test_csrc_extension_and_padding_round_trip() -> None:
    packet = RtpPacket(
        payload_type=8,
        sequence_number=65535,
        timestamp=2**32 - 1,
        ssrc=1,
        payload=b"abc",
        csrc=(7, 8),
        extension_profile=0xBEDE,
        extension=b"\x10\xaa\x00\x00",
        padding_size=5,
    )
    data = packet.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 2
    assert len(data) == 12 + 8 + 4 + 4 + 3 + 5
    assert data[-1] == 5
    assert RtpPacket.parse(data) == packet


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    ext=st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12))),
    padding=st.integers(0, 255),
)
def test_round_trip_property(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrc: tuple[int, ...],
    ext: tuple[int, bytes] | None,
    padding: int,
) -> None:
    profile, raw = ext if ext is not None else (None, b"")
    raw = raw[: len(raw) - len(raw) % 4]
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, profile, raw, padding)
    assert RtpPacket.parse(packet.serialize()) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        bytes.fromhex("40 00 00 01 00 00 00 00 00 00 00 01"),  # version 1
        bytes.fromhex("83 00 00 01 00 00 00 00 00 00 00 01 00 00 00 01"),  # 3 CSRCs announced, 1 present
        bytes.fromhex("90 00 00 01 00 00 00 00 00 00 00 01 be de 00 02 00 00 00 00"),  # extension too long
        bytes.fromhex("a0 00 00 01 00 00 00 00 00 00 00 01 aa 00"),  # padding count 0
        bytes.fromhex("a0 00 00 01 00 00 00 00 00 00 00 01 aa 09"),  # padding longer than the packet
    ],
)
def test_malformed_rtp_raises_parse_error(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        RtpPacket.parse(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_parse_errors(data: bytes) -> None:
    for parse, error in ((RtpPacket.parse, RtpParseError), (parse_rtcp, RtcpParseError)):
        with contextlib.suppress(error):
            parse(data)


def test_rtcp_compound_round_trip() -> None:
    block = ReportBlock(ssrc=2, fraction_lost=64, packets_lost=-3, highest_sequence=70000, jitter=12, lsr=5)
    packets = [
        SenderReport(1, (3_900_000_000 << 32) | 0x80000000, 160, 10, 1600, (block,)),
        ReceiverReport(1, (block, ReportBlock(3, 0, 0x7FFFFF, 1, 0))),
        SourceDescription((SdesChunk(1, ((1, b"abc@host"), (6, b"voicelive-sip"))), SdesChunk(9, ()))),
        Bye((1, 2), b"call ended"),
        UnknownRtcp(204, 1, b"\x00\x00\x00\x01name"),
    ]
    data = serialize_rtcp(packets)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == packets
    assert is_rtcp(data)
    assert not is_rtcp(build_rtp_header(0, True, 1, 1, 1))
    assert not is_rtcp(build_rtp_header(101, True, 1, 1, 1))


def test_receiver_report_wire_format() -> None:
    # RFC 3550 §6.4.2: V=2 RC=1 PT=201 length=7 words, then SSRC and one 24-byte report block.
    data = serialize_rtcp([ReceiverReport(0x01020304, (ReportBlock(5, 1, 2, 3, 4, 6, 7),))])
    assert data[:4] == bytes.fromhex("81 c9 00 07")
    assert data[4:8] == bytes.fromhex("01020304")
    assert data[12:16] == bytes.fromhex("01 00 00 02")


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("81 c9 00 01 00 00 00 01"),  # RR announces a block it does not carry
        bytes.fromhex("80 c9 00 05 00 00 00 01"),  # length past the datagram
        bytes.fromhex("40 c9 00 01 00 00 00 01"),  # version 1
        bytes.fromhex("81 ca 00 02 00 00 00 01 01 08 61 62"),  # SDES item runs past the packet
        bytes.fromhex("81 cb 00 00"),  # BYE without its SSRC
    ],
)
def test_malformed_rtcp_raises_parse_error(data: bytes) -> None:
    with pytest.raises(RtcpParseError):
        parse_rtcp(data)


def test_plain_header_shortcut_agrees_with_the_parser_and_declines_the_rest() -> None:
    plain = bytes.fromhex("80 80 12 34 00 00 00 a0 de ad be ef") + b"\xff" * 160
    packet = RtpPacket.parse(plain)
    assert plain_rtp_header(plain) == (
        packet.payload_type,
        packet.marker,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
    )
    padded = bytes.fromhex("a0 00 00 01 00 00 00 00 00 00 00 01") + b"\xff" * 4 + b"\x00\x04"
    extended = bytes.fromhex("90 00 00 01 00 00 00 00 00 00 00 01 be de 00 00")
    with_csrc = bytes.fromhex("81 00 00 01 00 00 00 00 00 00 00 01 00 00 00 02")
    version_1 = bytes.fromhex("40 00 00 01 00 00 00 00 00 00 00 01")
    for other in (padded, extended, with_csrc, version_1, plain[:11]):
        assert plain_rtp_header(other) is None
