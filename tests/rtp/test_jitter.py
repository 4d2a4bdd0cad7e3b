"""The jitter buffer with a fake clock: least delay, adaptive wait, concealment and accounting."""

from __future__ import annotations

import random

from voicelive_sip.codecs.plc import Concealer
from voicelive_sip.rtp.jitter import Frame, JitterBuffer

FRAME = 0.020


def _payload(seq: int) -> bytes:
    return bytes([seq % 200 + 1]) * 160


def _buffer(**options: float) -> JitterBuffer:
    return JitterBuffer(Concealer("ulaw", mode="silence"), **options)  # type: ignore[arg-type]


def _drain(jb: JitterBuffer, now: float) -> list[Frame]:
    frames = []
    while (frame := jb.pop(now)) is not None:
        frames.append(frame)
    return frames


def test_clean_network_adds_no_delay() -> None:
    # Each packet comes out in the same slot it went in: zero frames of added delay (at most one is allowed).
    jb = _buffer()
    for seq in range(500):
        now = seq * FRAME
        jb.push(seq, seq * 160, _payload(seq), now)
        frames = _drain(jb, now)
        assert [f.sequence for f in frames] == [seq]
        assert not frames[0].concealed
        assert jb.get_timer() is None
    assert jb.stats.concealed == jb.stats.late == jb.stats.duplicates == 0


def test_in_order_packets_with_jitter_are_never_held() -> None:
    rng = random.Random(3)
    jb = _buffer()
    arrival = 0.0
    for seq in range(300):
        arrival = max(arrival, seq * FRAME + rng.uniform(0, 0.06))  # jittered but in order
        jb.push(seq, seq * 160, _payload(seq), arrival)
        assert [f.sequence for f in _drain(jb, arrival)] == [seq]


def test_reordered_packet_is_waited_for_then_released_in_order() -> None:
    jb = _buffer()
    for seq in range(10):
        jb.push(seq, seq * 160, _payload(seq), seq * FRAME)
        _drain(jb, seq * FRAME)
    jb.push(11, 11 * 160, _payload(11), 11 * FRAME)  # 10 is late
    assert _drain(jb, 11 * FRAME) == []
    deadline = jb.get_timer()
    assert deadline is not None and deadline > 11 * FRAME
    jb.push(10, 10 * 160, _payload(10), 11 * FRAME + 0.005)
    frames = _drain(jb, 11 * FRAME + 0.005)
    assert [(f.sequence, f.concealed) for f in frames] == [(10, False), (11, False)]
    assert jb.stats.concealed == 0


def test_missing_packet_is_concealed_at_the_deadline_and_late_arrival_is_dropped() -> None:
    jb = _buffer(min_wait=0.01, max_wait=0.05)
    for seq in range(5):
        jb.push(seq, seq * 160, _payload(seq), seq * FRAME)
        _drain(jb, seq * FRAME)
    jb.push(6, 6 * 160, _payload(6), 6 * FRAME)
    deadline = jb.get_timer()
    assert deadline is not None
    # Due at 5·20 ms (expected arrival) plus a wait between min_wait and max_wait.
    assert 5 * FRAME + 0.01 - 1e-9 <= deadline <= 5 * FRAME + 0.05 + 1e-9
    assert _drain(jb, deadline - 0.001) == []
    frames = _drain(jb, deadline)
    assert [(f.sequence, f.concealed) for f in frames] == [(5, True), (6, False)]
    assert frames[0].timestamp == 5 * 160
    assert frames[0].payload == b"\xff" * 160
    jb.push(5, 5 * 160, _payload(5), deadline + 0.01)
    assert _drain(jb, deadline + 0.01) == []
    assert (jb.stats.concealed, jb.stats.late, jb.stats.duplicates) == (1, 1, 0)


def test_wait_adapts_to_measured_jitter_within_bounds() -> None:
    calm, rough = _buffer(min_wait=0.005, max_wait=0.2), _buffer(min_wait=0.005, max_wait=0.2)
    rng = random.Random(1)
    for seq in range(200):
        calm.push(seq, seq * 160, _payload(seq), seq * FRAME)
        rough.push(seq, seq * 160, _payload(seq), seq * FRAME + rng.uniform(0, 0.08))
        _drain(calm, seq * FRAME + 1)
        _drain(rough, seq * FRAME + 1)
    assert calm.wait <= 0.006
    assert 0.05 < rough.wait <= 0.2
    capped = _buffer(min_wait=0.005, max_wait=0.03)
    for seq in range(200):
        capped.push(seq, seq * 160, _payload(seq), seq * FRAME + rng.uniform(0, 0.08))
    assert capped.wait == 0.03


def test_duplicates_are_dropped_and_counted() -> None:
    jb = _buffer()
    jb.push(0, 0, _payload(0), 0.0)
    jb.push(2, 320, _payload(2), 0.04)
    jb.push(2, 320, _payload(2), 0.041)  # duplicate while waiting
    assert [f.sequence for f in _drain(jb, 0.041)] == [0]
    jb.push(0, 0, _payload(0), 0.042)  # duplicate after release
    assert jb.stats.duplicates == 2


def test_sequence_wraparound_is_continuous() -> None:
    # Extended sequence numbers come from ReceptionStatistics; the buffer sees them as plain integers.
    jb = _buffer()
    start = 65530
    out = []
    for i in range(12):
        jb.push(start + i, (i * 160) & 0xFFFFFFFF, _payload(i), i * FRAME)
        out += _drain(jb, i * FRAME)
    assert [f.sequence for f in out] == list(range(65530, 65542))


def test_timestamp_wraparound_does_not_confuse_deadlines() -> None:
    jb = _buffer()
    base = 2**32 - 480
    for seq in range(6):
        jb.push(seq, (base + seq * 160) & 0xFFFFFFFF, _payload(seq), seq * FRAME)
        _drain(jb, seq * FRAME)
    jb.push(7, (base + 7 * 160) & 0xFFFFFFFF, _payload(7), 7 * FRAME)
    deadline = jb.get_timer()
    assert deadline is not None and 6 * FRAME < deadline < 6 * FRAME + 0.2
    frames = _drain(jb, deadline)
    assert frames[0].concealed and frames[0].timestamp == (base + 6 * 160) & 0xFFFFFFFF


def test_silence_suppression_is_not_loss() -> None:
    # RFC 3551 §4.1: after a pause the sequence continues and the timestamp jumps; nothing is concealed.
    jb = _buffer()
    for seq in range(5):
        jb.push(seq, seq * 160, _payload(seq), seq * FRAME)
        _drain(jb, seq * FRAME)
    assert jb.get_timer() is None
    resume = 3.0
    jb.push(5, 5 * 160 + 3 * 8000, _payload(5), resume, marker=True)
    frames = _drain(jb, resume)
    assert [(f.sequence, f.concealed, f.marker) for f in frames] == [(5, False, True)]
    jb.push(6, 6 * 160 + 3 * 8000, _payload(6), resume + FRAME)
    assert [f.sequence for f in _drain(jb, resume + FRAME)] == [6]
    assert jb.stats.concealed == 0


def test_timestamp_jump_re_anchors_instead_of_stalling() -> None:
    jb = _buffer(max_wait=0.1)
    for seq in range(5):
        jb.push(seq, seq * 160, _payload(seq), seq * FRAME)
        _drain(jb, seq * FRAME)
    jump = 5_000_000
    jb.push(5, jump, _payload(5), 5 * FRAME)
    assert [f.sequence for f in _drain(jb, 5 * FRAME)] == [5]
    jb.push(7, jump + 320, _payload(7), 7 * FRAME)
    deadline = jb.get_timer()
    assert deadline is not None and deadline <= 6 * FRAME + 0.1 + 1e-9


def test_slot_without_audio_keeps_continuity() -> None:
    jb = _buffer()
    jb.push(0, 0, _payload(0), 0.0)
    jb.push(1, 160, b"", 0.02)  # a DTMF or comfort-noise packet
    jb.push(2, 320, _payload(2), 0.04)
    frames = _drain(jb, 0.04)
    assert [(f.sequence, f.payload == b"") for f in frames] == [(0, False), (1, True), (2, False)]
    assert jb.stats.concealed == 0


def test_huge_sequence_jump_resyncs() -> None:
    jb = _buffer(resync_gap=50)
    for seq in range(3):
        jb.push(seq, seq * 160, _payload(seq), seq * FRAME)
    _drain(jb, 0.04)
    jb.push(5000, 800_000, _payload(5000), 0.06)
    jb.push(5001, 800_160, _payload(5001), 0.08)
    assert [f.sequence for f in _drain(jb, 0.08)] == [5000, 5001]
    assert jb.stats.resyncs == 1 and jb.stats.concealed == 0


def test_burst_beyond_capacity_forces_progress() -> None:
    jb = _buffer(capacity=4, max_wait=10.0)
    jb.push(0, 0, _payload(0), 0.0)
    _drain(jb, 0.0)
    for seq in range(2, 8):
        jb.push(seq, seq * 160, _payload(seq), seq * FRAME)
    frames = _drain(jb, 8 * FRAME)
    assert [f.sequence for f in frames] == list(range(1, 8))
    assert frames[0].concealed and jb.stats.overflows > 0


def test_lossy_jittery_reordered_stream_is_continuous_and_accounted() -> None:
    rng = random.Random(42)
    jb = _buffer()
    total = 2000
    arrivals = []
    lost = set()
    for seq in range(total):
        if rng.random() < 0.05:
            lost.add(seq)
            continue
        arrivals.append((seq * FRAME + rng.uniform(0, 0.03), seq))
    arrivals.sort()
    out: list[Frame] = []
    for now, seq in arrivals:
        # Fire the buffer's timer if it fell due before this arrival, as the session's call_at would.
        while (deadline := jb.get_timer()) is not None and deadline <= now:
            out += _drain(jb, deadline)
        jb.push(seq, seq * 160, _payload(seq), now)
        out += _drain(jb, now)
    while (deadline := jb.get_timer()) is not None:
        out += _drain(jb, deadline)
    last = max(s for _, s in arrivals)
    assert [f.sequence for f in out] == list(range(out[0].sequence, last + 1))
    concealed = {f.sequence for f in out if f.concealed}
    assert lost & set(range(out[0].sequence, last + 1)) <= concealed
    assert len(concealed) == jb.stats.concealed == len(lost & concealed) + jb.stats.late
    for frame in out:
        if not frame.concealed:
            assert frame.payload == _payload(frame.sequence)
