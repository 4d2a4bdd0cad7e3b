"""Through a lossy, jittery, reordering relay on 127.0.0.1 the received audio stays continuous, in order."""

from __future__ import annotations

import asyncio
import os

from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.jitter import Frame
from voicelive_sip.rtp.packet import RtpPacket
from voicelive_sip.testing.rtp import RtpLoopback

PACKETS = 200  # 4 s of audio


def _numbered(i: int) -> bytes:
    return bytes([i % 251 + 1, i // 251 + 1]) * 80


async def test_loss_jitter_reordering_concealed_and_counted() -> None:
    frames: list[Frame] = []
    relay = {"loss": 0.05, "jitter": 0.03, "reorder": 0.02, "duplicate": 0.01, "seed": 1234}
    async with (
        MediaClock() as clock,
        RtpLoopback(
            port=20000 + (os.getpid() % 500) * 40, clock=clock, relay_options=relay, inactivity_timeout=None
        ) as pair,
    ):
        pair.b.on_frame = frames.append
        pair.a.enqueue(b"".join(_numbered(i) for i in range(PACKETS)))
        async with asyncio.timeout(20):
            while pair.a.outbound.buffered_seconds > 0 or pair.a.stats.packets_sent < PACKETS + 20:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # let the relay's delayed packets land
        assert pair.relay is not None
        dropped = {RtpPacket.parse(d).sequence_number for d in pair.relay.dropped}
        stats = pair.b.stats
    assert len(dropped) >= 5  # the seeded relay really did drop packets
    sequences = [f.sequence for f in frames]
    assert sequences == list(range(sequences[0], sequences[-1] + 1)), "output must be continuous, in order"
    concealed = {f.sequence & 0xFFFF for f in frames if f.concealed}
    in_range = {s for s in dropped if any((f.sequence & 0xFFFF) == s for f in frames)}
    assert in_range <= concealed, "every dropped packet inside the stream is concealed"
    assert stats.frames_concealed == len(concealed) == len(in_range) + stats.late
    assert stats.duplicates >= 1
    # The audio that did arrive is the audio that was sent, in order.
    audio = [f.payload for f in frames if not f.concealed and f.payload[:2] != b"\xff\xff"]
    indices = [(p[0] - 1) + 251 * (p[1] - 1) for p in audio]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert len(indices) >= PACKETS - len(dropped) - stats.late - 1
