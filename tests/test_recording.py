"""Call recording: stereo WAV on disk, caller left and agent right, aligned, jitter-proof and bounded."""

from __future__ import annotations

import wave
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from voicelive_sip.codecs import Codec, g711
from voicelive_sip.recording import CallRecorder, recording_path

RATE = 8000
FRAME = 160  # 20 ms
T0 = 1000.0  # loop times are arbitrary: the timeline starts at the first one seen


def tone(freq: float, seconds: float, amplitude: int = 8000) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def frames(payload: bytes, size: int = FRAME) -> list[bytes]:
    return [payload[i : i + size] for i in range(0, len(payload), size)]


def read(path: Path) -> npt.NDArray[np.int16]:
    """The WAV's samples as (n, 2): column 0 left (caller), column 1 right (agent)."""
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getcomptype()) == (2, RATE, 2, "NONE")
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


def onset(channel: npt.NDArray[np.int16]) -> int:
    loud = np.flatnonzero(np.abs(channel.astype(np.int32)) > 100)
    assert loud.size, "no audio in this channel"
    return int(loud[0])


def dominant_hz(samples: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def test_a_readable_stereo_8khz_wav(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.wav", law="ulaw")
    for i, frame in enumerate(frames(g711.ulaw_encode(tone(400, 0.2)))):
        rec.caller(frame, T0 + i * 0.02)
    path = rec.close()
    assert path == tmp_path / "call.wav"
    samples = read(path)
    assert samples.shape == (1600, 2)
    assert path.stat().st_size == 44 + 1600 * 4


def test_tones_land_in_their_channels_at_their_offsets(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.wav")
    caller = frames(g711.ulaw_encode(tone(300, 1.0)))
    agent = frames(g711.ulaw_encode(tone(1000, 1.0)))
    # Interleaved in time order, as the event loop sees them: the agent starts 0.5 s after the caller.
    events = [(T0 + i * 0.02, "caller", f) for i, f in enumerate(caller)]
    events += [(T0 + 0.5 + i * 0.02, "agent", f) for i, f in enumerate(agent)]
    for at, side, frame in sorted(events, key=lambda e: e[0]):
        (rec.caller if side == "caller" else rec.agent)(frame, at)
    samples = read(rec.close())
    left, right = samples[:, 0], samples[:, 1]
    assert len(samples) == 12000
    assert onset(left) <= FRAME
    assert abs(onset(right) - 4000) <= FRAME
    assert dominant_hz(left[:8000]) == pytest.approx(300, abs=2)
    assert dominant_hz(right[4000:12000]) == pytest.approx(1000, abs=2)
    # Each side carries only its own audio, and the shorter side is padded with silence.
    assert not right[:4000].any()
    assert not left[8000:].any()


def test_channels_are_bit_exact_decodes_of_what_was_fed(tmp_path: Path) -> None:
    caller = g711.ulaw_encode(tone(300, 0.4))
    agent = g711.ulaw_encode(tone(700, 0.4))
    rec = CallRecorder(tmp_path / "call.wav")
    for i, (c, a) in enumerate(zip(frames(caller), frames(agent), strict=True)):
        rec.caller(c, T0 + i * 0.02)
        rec.agent(a, T0 + i * 0.02)
    samples = read(rec.close())
    assert np.array_equal(samples[:, 0], g711.ulaw_decode(caller))
    assert np.array_equal(samples[:, 1], g711.ulaw_decode(agent))


def test_alaw(tmp_path: Path) -> None:
    caller = g711.alaw_encode(tone(500, 0.1))
    rec = CallRecorder(tmp_path / "call.wav", law="alaw")
    for i, frame in enumerate(frames(caller)):
        rec.caller(frame, T0 + i * 0.02)
    samples = read(rec.close())
    assert np.array_equal(samples[:, 0], g711.alaw_decode(caller))
    assert not samples[:, 1].any()


def test_the_call_codec_picks_the_law(tmp_path: Path) -> None:
    assert CallRecorder(tmp_path / "a.wav", law=Codec.PCMA).law == "alaw"
    assert CallRecorder(tmp_path / "u.wav", law="PCMU").law == "ulaw"


def test_unknown_law_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="law"):
        CallRecorder(tmp_path / "call.wav", law="g729")


def test_gaps_are_silence(tmp_path: Path) -> None:
    first = frames(g711.ulaw_encode(tone(300, 0.5)))
    second = frames(g711.ulaw_encode(tone(300, 0.5)))
    rec = CallRecorder(tmp_path / "call.wav")
    for i, frame in enumerate(first):
        rec.caller(frame, T0 + i * 0.02)
    # 1.5 s of nothing (silence suppression, hold): the next talk spurt starts at 2.0 s.
    for i, frame in enumerate(second):
        rec.caller(frame, T0 + 2.0 + i * 0.02)
    left = read(rec.close())[:, 0]
    assert len(left) == 20000
    assert left[:4000].any()
    assert not left[4000:16000].any()
    assert np.array_equal(left[16000:], g711.ulaw_decode(b"".join(second)))


def test_agent_audio_before_any_caller_audio_starts_the_timeline(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.wav")
    rec.agent(g711.ulaw_encode(tone(1000, 0.02)), T0)
    rec.caller(g711.ulaw_encode(tone(300, 0.02)), T0 + 0.1)
    samples = read(rec.close())
    assert onset(samples[:, 1]) <= 2
    assert abs(onset(samples[:, 0]) - 800) <= 2
    assert len(samples) == 960


def test_jittered_arrival_keeps_the_streams_continuous_and_the_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    seconds = 10
    caller = g711.ulaw_encode(tone(300, seconds))
    agent = g711.ulaw_encode(tone(1000, seconds))
    n = len(frames(caller))
    events: list[tuple[float, str, bytes]] = []
    for side, audio in (("caller", caller), ("agent", agent)):
        # Every frame but each stream's first is up to 60 ms early or late; frames still come in order (the
        # RTP layer hands them over by sequence number), so a late one holds up those behind it.
        nominal = T0 + np.arange(n) * 0.02
        arrival = np.maximum.accumulate(nominal + np.concatenate([[0.0], rng.uniform(-0.06, 0.06, n - 1)]))
        assert np.abs(arrival - nominal).max() > 0.05
        events += [(float(arrival[i]), side, f) for i, f in enumerate(frames(audio))]
    rec = CallRecorder(tmp_path / "call.wav")
    for at, side, frame in sorted(events, key=lambda e: e[0]):
        (rec.caller if side == "caller" else rec.agent)(frame, at)
    samples = read(rec.close())
    assert len(samples) == seconds * RATE
    # No gap, overlap or reordering anywhere: each side is exactly the stream that was sent.
    assert np.array_equal(samples[:, 0], g711.ulaw_decode(caller))
    assert np.array_equal(samples[:, 1], g711.ulaw_decode(agent))


def test_bursts_after_a_delay_stay_continuous(tmp_path: Path) -> None:
    caller = g711.ulaw_encode(tone(300, 2.0))
    rec = CallRecorder(tmp_path / "call.wav")
    for i, frame in enumerate(frames(caller)):
        # Every fifth frame is held up 80 ms and the next ones catch up with it.
        rec.caller(frame, T0 + i * 0.02 + (0.08 - (i % 5) * 0.02 if i % 5 else 0.0))
    left = read(rec.close())[:, 0]
    assert np.array_equal(left, g711.ulaw_decode(caller))


@pytest.mark.parametrize("skew", [0.995, 1.005])
def test_a_skewed_sender_clock_does_not_drift_beyond_the_tolerance(tmp_path: Path, skew: float) -> None:
    # The caller's clock runs 0.5 % slow or fast: over a minute that is 300 ms, more than the tolerance.
    audio = g711.ulaw_encode(tone(300, 60.0))
    rec = CallRecorder(tmp_path / "call.wav")
    for i, frame in enumerate(frames(audio)):
        rec.caller(frame, T0 + i * 0.02 * skew)
    rec.agent(g711.ulaw_encode(tone(1000, 0.02)), T0 + 60.0 * skew)
    samples = read(rec.close())
    # The caller's last frame ends where its time says, within the 120 ms tolerance.
    caller_end = int(np.flatnonzero(samples[:, 0])[-1]) + 1
    assert abs(caller_end - 60.0 * skew * RATE) <= 0.12 * RATE
    assert abs(onset(samples[:, 1]) - 60.0 * skew * RATE) <= 2


def test_memory_stays_bounded_over_ten_minutes(tmp_path: Path) -> None:
    caller = g711.ulaw_encode(tone(300, 1.0))
    agent = g711.ulaw_encode(tone(1000, 1.0))
    rec = CallRecorder(tmp_path / "call.wav")
    peak = 0.0
    for second in range(600):
        for i, (c, a) in enumerate(zip(frames(caller), frames(agent), strict=True)):
            at = T0 + second + i * 0.02
            rec.caller(c, at)
            rec.agent(a, at)
        peak = max(peak, rec.buffered_seconds)
    assert peak <= 3.0
    # Most of the call is already on disk, and the file is readable before close (a crash keeps it).
    with wave.open(str(rec.path), "rb") as w:
        assert w.getnframes() >= 598 * RATE
    assert rec.path.stat().st_size == 44 + w.getnframes() * 4
    samples = read(rec.close())
    assert len(samples) == 600 * RATE
    assert np.array_equal(samples[-RATE:, 0], g711.ulaw_decode(caller))
    assert np.array_equal(samples[-RATE:, 1], g711.ulaw_decode(agent))


def test_a_long_silence_is_written_out_without_buffering_it(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.wav")
    rec.caller(g711.ulaw_encode(tone(300, 0.02)), T0)
    rec.caller(g711.ulaw_encode(tone(300, 0.02)), T0 + 1800.0)  # half an hour on hold
    assert rec.buffered_seconds <= 3.0
    left = read(rec.close())[:, 0]
    assert len(left) == 1800 * RATE + FRAME
    assert not left[FRAME : 1800 * RATE].any()
    assert left[1800 * RATE :].any()


def test_a_frame_longer_than_the_flush_delay_is_kept_whole(tmp_path: Path) -> None:
    long_reply = g711.ulaw_encode(tone(1000, 3.0))
    rec = CallRecorder(tmp_path / "call.wav")
    rec.caller(g711.ulaw_encode(tone(300, 0.02)), T0)
    rec.agent(long_reply, T0 + 0.02)
    right = read(rec.close())[:, 1]
    assert np.array_equal(right[FRAME:], g711.ulaw_decode(long_reply))


def test_close_is_idempotent_and_later_audio_is_ignored(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.wav")
    rec.caller(g711.ulaw_encode(tone(300, 0.1)), T0)
    path = rec.close()
    size = path.stat().st_size
    rec.caller(g711.ulaw_encode(tone(300, 0.1)), T0 + 0.1)
    rec.agent(g711.ulaw_encode(tone(300, 0.1)), T0 + 0.1)
    assert rec.close() == path
    assert path.stat().st_size == size == 44 + 800 * 4


def test_an_empty_recording_is_a_valid_wav(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "sub" / "call.wav")
    assert read(rec.close()).shape == (0, 2)


def test_recording_path_is_safe_and_distinct(tmp_path: Path) -> None:
    started = datetime(2024, 5, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    path = recording_path(tmp_path, "a84b4c76e66710@pc33.atlanta.com", started)
    assert path == tmp_path / f"20240501T123005Z_a84b4c76e66710_pc33.atlanta.com_{path.stem[-8:]}.wav"
    hostile = recording_path(tmp_path, "../../etc/passwd", started)
    assert hostile.parent == tmp_path
    assert not hostile.name.startswith(".")
    assert "/" not in hostile.name
    # Call-IDs that sanitize alike still get their own file.
    assert recording_path(tmp_path, "a/b", started) != recording_path(tmp_path, "a:b", started)
    assert len(recording_path(tmp_path, "x" * 500, started).name) < 100
    naive = recording_path(tmp_path, "c", datetime(2024, 5, 1, 14, 30, 5))
    assert naive.name.startswith("20240501T143005_c_")
    assert recording_path(tmp_path, "c", started.astimezone(UTC)).name.startswith("20240501T123005Z_c_")


def test_a_g722_call_records_16khz_pcm16_as_the_leg_carries_it(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "wide.wav", law=Codec.G722)
    assert (rec.law, rec.sample_rate) == (None, 16000)
    t = np.arange(16000 // 5) / 16000
    wide = (np.sin(2 * np.pi * 6000 * t) * 8000).astype("<i2")  # above what 8 kHz could hold
    for i, frame in enumerate(frames(wide.tobytes(), 640)):
        rec.caller(frame, T0 + i * 0.02)
        rec.agent(frame, T0 + i * 0.02)
    path = rec.close()
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(samples[:, 0], wide) and np.array_equal(samples[:, 1], wide)
    assert rec.duration == pytest.approx(0.2)
