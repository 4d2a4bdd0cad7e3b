"""Micro benchmarks of the RTP hot paths (run: pytest benchmarks/test_rtp_bench.py --benchmark-only)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from voicelive_sip.codecs.plc import Concealer
from voicelive_sip.rtp.jitter import Frame, JitterBuffer
from voicelive_sip.rtp.packet import RtpPacket, build_rtp_header
from voicelive_sip.rtp.session import PortPool, RtpSession

PAYLOAD = b"\x7f" * 160


def _packets(count: int = 65536) -> list[bytes]:
    return [build_rtp_header(0, False, seq, seq * 160, 0x1234) + PAYLOAD for seq in range(count)]


def test_parse_rtp(benchmark) -> None:  # type: ignore[no-untyped-def]
    data = _packets(1)[0]
    packet = benchmark(RtpPacket.parse, data)
    assert packet.payload == PAYLOAD


def test_jitter_push_pop_in_order(benchmark) -> None:  # type: ignore[no-untyped-def]
    jb = JitterBuffer(Concealer("ulaw"))
    counter = itertools.count()

    def step() -> Frame | None:
        seq = next(counter)
        now = seq * 0.02
        jb.push(seq, seq * 160, PAYLOAD, now)
        return jb.pop(now)

    assert benchmark(step) is not None


@pytest.fixture
def session() -> Iterator[RtpSession]:
    loop = asyncio.new_event_loop()
    frames: list[Frame] = []
    opened = loop.run_until_complete(
        RtpSession.open(PortPool("127.0.0.1", 47000, 200), on_frame=frames.append, inactivity_timeout=None)
    )
    opened.set_remote(("127.0.0.1", 9), None, 0, "PCMU", 101)
    opened.on_frame = lambda frame: None
    yield opened
    opened.close()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def test_receive_path_datagram_to_frame(benchmark, session: RtpSession) -> None:  # type: ignore[no-untyped-def]
    """Datagram → parse → statistics → jitter buffer → frame callback: the per-packet receive cost."""
    packets = _packets()
    source = ("127.0.0.1", 5004)
    counter = itertools.count()

    def receive() -> None:
        session.datagram_received(packets[next(counter) & 0xFFFF], source)

    benchmark(receive)
    assert session.stats.frames_received > 0 and session.stats.frames_concealed == 0


def test_send_path_on_tick(benchmark, session: RtpSession) -> None:  # type: ignore[no-untyped-def]
    """One media-clock tick for one session: pull a frame, build the header, sendto."""
    counter = itertools.count()
    session.enqueue(b"\x10" * 8000 * 30)

    def tick() -> None:
        tick_number = next(counter)
        if tick_number % 1000 == 0:
            session.clear()
            session.enqueue(b"\x10" * 8000 * 30)
        session.on_tick(tick_number)

    benchmark(tick)
    assert session.stats.packets_sent > 0
