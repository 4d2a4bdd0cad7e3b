"""RFC 4733 DTMF: sipp's recorded telephone-events, lost and repeated packets, and our own sender."""

from __future__ import annotations

import pathlib
import random
import struct

import pytest

from voicelive_sip.rtp.dtmf import (
    DtmfEvent,
    TelephoneEventReceiver,
    TelephoneEventSender,
    build_event_payload,
    parse_event_payload,
)
from voicelive_sip.rtp.packet import RtpPacket

SIPP_PCAPS = pathlib.Path("/usr/share/sip-tester")


def _read_pcap_udp_payloads(path: pathlib.Path) -> list[tuple[float, bytes]]:
    """A tiny libpcap reader: (time, UDP payload) of every IPv4/UDP frame on Ethernet."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    assert linktype == 1, "Ethernet captures only"
    out = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        (udp_length,) = struct.unpack_from("!H", ip, header + 4)
        out.append((seconds + fraction / (1e9 if nano else 1e6), ip[header + 8 : header + udp_length]))
    return out


DIGIT_FILES = {str(d): f"dtmf_2833_{d}.pcap" for d in range(10)} | {
    "#": "dtmf_2833_pound.pcap",
    "*": "dtmf_2833_star.pcap",
}


def _feed(receiver: TelephoneEventReceiver, packets: list[tuple[float, RtpPacket]]) -> list[DtmfEvent]:
    events = []
    for now, packet in packets:
        receiver.receive(packet.timestamp, packet.payload, now)
        while (event := receiver.next_event()) is not None:
            events.append(event)
    return events


@pytest.mark.skipif(not SIPP_PCAPS.is_dir(), reason="sipp's pcaps are not installed")
@pytest.mark.parametrize(("digit", "name"), sorted(DIGIT_FILES.items()))
def test_sipp_pcaps_give_one_event_per_digit(digit: str, name: str) -> None:
    captured = [(t, RtpPacket.parse(p)) for t, p in _read_pcap_udp_payloads(SIPP_PCAPS / name)]
    assert len(captured) == 10
    assert sum(1 for _, p in captured if parse_event_payload(p.payload)[1]) == 3  # three end packets
    events = _feed(TelephoneEventReceiver(), captured)
    assert [(e.digit, e.ended) for e in events] == [(digit, True)]
    assert events[0].duration_ms == 280  # 2240 samples at 8 kHz, the end packets' duration
    assert events[0].timestamp == captured[0][1].timestamp


@pytest.mark.skipif(not SIPP_PCAPS.is_dir(), reason="sipp's pcaps are not installed")
def test_sipp_pcap_without_markers_and_with_losses() -> None:
    captured = [(t, RtpPacket.parse(p)) for t, p in _read_pcap_udp_payloads(SIPP_PCAPS / "dtmf_2833_7.pcap")]
    for _, packet in captured:
        packet.marker = False
    rng = random.Random(5)
    for _ in range(20):
        kept = [c for i, c in enumerate(captured) if i == 9 or rng.random() > 0.4]  # one end packet survives
        assert [e.digit for e in _feed(TelephoneEventReceiver(), kept)] == ["7"]


def test_all_end_packets_lost_reports_after_timeout() -> None:
    receiver = TelephoneEventReceiver(timeout=0.3)
    for i in range(4):
        receiver.receive(8000, build_event_payload(11, False, 10, 160 * (i + 1)), i * 0.02)
    assert receiver.next_event() is None
    deadline = receiver.get_timer()
    assert deadline == pytest.approx(0.06 + 0.3)
    receiver.handle_timer(deadline - 0.01)
    assert receiver.next_event() is None
    receiver.handle_timer(deadline)
    event = receiver.next_event()
    assert event is not None and (event.digit, event.ended, event.duration_ms) == ("#", False, 80)
    receiver.receive(8000, build_event_payload(11, True, 10, 960), 0.5)  # a straggling end: already reported
    assert receiver.next_event() is None


def test_new_event_before_old_end_reports_both_once() -> None:
    receiver = TelephoneEventReceiver()
    receiver.receive(1000, build_event_payload(1, False, 10, 160), 0.0)
    receiver.receive(3000, build_event_payload(2, False, 10, 160), 0.1)
    receiver.receive(3000, build_event_payload(2, True, 10, 800), 0.2)
    receiver.receive(3000, build_event_payload(2, True, 10, 800), 0.2)
    events = [receiver.next_event(), receiver.next_event(), receiver.next_event()]
    assert [(e.digit, e.ended) for e in events if e] == [("1", False), ("2", True)]


def test_same_digit_twice_is_two_events() -> None:
    receiver = TelephoneEventReceiver()
    for start in (0, 4000):
        for end in (False, True, True, True):
            receiver.receive(start, build_event_payload(5, end, 10, 800), start / 8000)
    assert [e.digit for e in iter(receiver.next_event, None)] == ["5", "5"]


def test_ignores_non_dtmf_events_and_short_payloads() -> None:
    receiver = TelephoneEventReceiver()
    receiver.receive(0, build_event_payload(16, True, 10, 800), 0.0)  # flash
    receiver.receive(0, b"\x01", 0.0)
    assert receiver.next_event() is None
    assert (receiver.unsupported, receiver.malformed) == (1, 1)


def test_sender_durations_end_packets_and_marker() -> None:
    sender = TelephoneEventSender()
    sender.send("9", 100)  # 800 samples: 5 updates of 160
    packets = []
    tick = 0
    while sender.active:
        packet = sender.tick(123_456 + tick * 160)
        assert packet is not None
        packets.append(packet)
        tick += 1
    fields = [parse_event_payload(p.payload) for p in packets]
    assert [f[0] for f in fields] == [9] * 7
    assert [f[3] for f in fields] == [160, 320, 480, 640, 800, 800, 800]
    assert [f[1] for f in fields] == [False] * 4 + [True] * 3
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {123_456}
    assert sender.tick(999) is None


def test_sender_round_trips_through_receiver() -> None:
    sender = TelephoneEventSender()
    for digit in "0123456789*#ABCD":
        sender.send(digit, 70)  # 560 samples: not a whole number of frames
    receiver = TelephoneEventReceiver()
    tick = 0
    while sender.active:
        packet = sender.tick(tick * 160)
        assert packet is not None
        receiver.receive(packet.timestamp, packet.payload, tick * 0.02)
        tick += 1
    events = list(iter(receiver.next_event, None))
    assert "".join(e.digit for e in events) == "0123456789*#ABCD"
    assert {e.duration_ms for e in events} == {70}


def test_sender_rejects_bad_input() -> None:
    sender = TelephoneEventSender()
    with pytest.raises(ValueError):
        sender.send("x")
    with pytest.raises(ValueError):
        sender.send("1", 0)


def test_sender_pause_keeps_keys_apart_with_audio_ticks_between() -> None:
    sender = TelephoneEventSender()
    sender.send("1", 100, pause_ms=60)
    sender.send("2", 100)
    ticks = [sender.tick(160 * n) for n in range(20)]
    sent = [t for t in ticks if t is not None]
    first = [t for t in sent if t.timestamp == 0]
    # 100 ms = 5 updates, the last an end packet sent three times; the marker only on the first.
    assert len(first) == 7 and [t.marker for t in first] == [True] + [False] * 6
    assert [parse_event_payload(t.payload)[1] for t in first] == [False] * 4 + [True] * 3
    # Then three empty ticks (60 ms: audio goes out), and the next key starts with its own marker.
    assert ticks[7:10] == [None, None, None]
    assert ticks[10] is not None and ticks[10].marker and ticks[10].timestamp == 1600
