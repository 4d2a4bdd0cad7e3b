"""The outbound buffer: exact frames, bounded in seconds, O(1) clear, played-frame accounting."""

from __future__ import annotations

from voicelive_sip.rtp.outbound import OutboundBuffer


def test_reframes_arbitrary_chunks_into_exact_frames() -> None:
    buffer = OutboundBuffer(fill=0xFF)
    data = bytes(range(256)) * 5  # 1280 bytes in odd-sized chunks
    for start in range(0, len(data), 77):
        buffer.enqueue(data[start : start + 77])
    frames = []
    while (frame := buffer.pull()) is not None:
        frames.append(frame)
    assert b"".join(frames) == data
    assert [len(f) for f in frames] == [160] * 8
    assert buffer.played_frames == 8


def test_short_tail_is_padded_with_silence() -> None:
    buffer = OutboundBuffer(fill=0xD5)
    buffer.enqueue(b"\x01" * 200)
    assert buffer.pull() == b"\x01" * 160
    assert buffer.pull() == b"\x01" * 40 + b"\xd5" * 120
    assert buffer.pull() is None
    assert (buffer.played_frames, buffer.played_bytes) == (2, 200)  # the padding is not played audio


def test_bounded_in_seconds() -> None:
    buffer = OutboundBuffer(fill=0xFF, max_seconds=1.0)
    assert buffer.enqueue(b"\x00" * 6000) == 6000
    assert buffer.enqueue(b"\x00" * 6000) == 2000
    assert buffer.enqueue(b"\x00") == 0
    assert len(buffer) == 8000 and buffer.buffered_seconds == 1.0
    assert buffer.dropped_bytes == 4001


def test_clear_drops_everything_at_once() -> None:
    buffer = OutboundBuffer(fill=0xFF)
    for _ in range(1000):
        buffer.enqueue(b"\x00" * 100)
    buffer.pull()
    assert buffer.clear() == 100_000 - 160
    assert buffer.pull() is None and len(buffer) == 0
    buffer.enqueue(b"\x02" * 160)
    assert buffer.pull() == b"\x02" * 160
