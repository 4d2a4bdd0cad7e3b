"""SipPhone: two loopback softphones call each other and check what the other one heard."""

from __future__ import annotations

import asyncio
import math
import shutil
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from voicelive_sip.codecs import g711
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.testing import PhoneCall, Sentence, SipPhone
from voicelive_sip.testing.phone import (
    QUESTION_WAV,
    SpeechUnavailable,
    load_audio,
    render_sentence,
)

RATE = 8000
FAST = 0.25  # four times real time, where an assertion does not depend on pacing
LOUD = -40.0  # dBFS: a frame above this is audio, below it silence


def tone(frequency: float, seconds: float, amplitude: float = 0.5) -> npt.NDArray[np.int16]:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.asarray(np.round(amplitude * 32767 * np.sin(2 * np.pi * frequency * t)), dtype=np.int16)


def chirp(seconds: float, low: float = 300.0, high: float = 3000.0) -> npt.NDArray[np.int16]:
    # A sweep is not periodic: frames delivered out of order would not line up with it again.
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * (low * t + (high - low) * t**2 / (2 * seconds))
    return np.asarray(np.round(0.5 * 32767 * np.sin(phase)), dtype=np.int16)


def is_loud(payload: bytes) -> bool:
    pcm = g711.ulaw_decode(payload).astype(np.float64)  # the tests negotiate PCMU
    return 10 * math.log10(max(float(np.mean(pcm**2)), 1e-9) / 32768**2) > LOUD


def loud_runs(call: PhoneCall) -> list[int]:
    """Lengths (in frames) of the finished runs of consecutive loud frames the phone heard."""
    runs = [0]
    for frame in call.received:
        if is_loud(frame.payload):
            runs[-1] += 1
        elif runs[-1]:
            runs.append(0)
    return runs[:-1]  # the last run is still going on (or empty)


def dominant_hz(pcm: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE / len(pcm))


@asynccontextmanager
async def connected(**options: object) -> AsyncIterator[tuple[SipPhone, SipPhone, PhoneCall, PhoneCall]]:
    """Alice dials Bob; yields both phones and both ends of the call, answered."""
    async with (
        SipPhone(media_port=31000, user="alice", **options) as alice,  # type: ignore[arg-type]
        SipPhone(media_port=31200, user="bob", **options) as bob,  # type: ignore[arg-type]
    ):
        answering = asyncio.create_task(bob.answer_next(timeout=5))
        outgoing = await alice.call(bob.uri)
        incoming = await answering
        yield alice, bob, outgoing, incoming


async def test_audio_arrives_in_order_and_a_one_second_tone_lasts_one_second() -> None:
    async with connected() as (_, _, alice, bob):
        assert alice.call.media is not None and bob.call.media is not None
        assert alice.call.media.codec == bob.call.media.codec == "PCMU"
        silence = np.zeros(RATE // 5, dtype=np.int16)
        sweep = chirp(1.0)
        await alice.play(np.concatenate([tone(1000, 1.0), silence, sweep]), pace=FAST)
        await bob.wait_for(lambda c: len(loud_runs(c)) == 2, timeout=5)

        # 1 s of tone is 50 frames of 20 ms, then 200 ms of silence, then the sweep: in that order.
        runs = loud_runs(bob)
        assert abs(runs[0] - 50) <= 1 and abs(runs[1] - 50) <= 1
        heard = bob.received_pcm()
        start = next(i for i in range(0, len(heard), 160) if np.abs(heard[i : i + 160]).max() > 1000)
        assert dominant_hz(heard[start : start + RATE]) == pytest.approx(1000, abs=5)
        # The sweep comes back whole and in order: its normalised correlation with what was sent is ~1.
        received = heard[start + RATE : start + 3 * RATE].astype(np.float64)
        sent = sweep.astype(np.float64)
        correlation = np.correlate(received, sent, mode="valid")
        offset = int(np.argmax(correlation))
        window = received[offset : offset + len(sent)]
        score = correlation[offset] / (np.linalg.norm(window) * np.linalg.norm(sent))
        assert score > 0.95
        # Before the tone: the silence the RTP session sends while there is nothing to play.
        first = bob.first_audio_time(LOUD)
        assert first is not None
        assert bob.energy_dbfs(end=first) == -math.inf
        assert bob.energy_dbfs(first) > -15


async def test_audio_flows_both_ways_and_a_wav_at_any_rate_is_resampled(tmp_path: Path) -> None:
    stereo_16k = tmp_path / "tone.wav"
    samples = tone(500, 0.5).repeat(2)  # 16 kHz: 500 Hz needs every sample twice
    with wave.open(str(stereo_16k), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.stack([samples, samples], axis=1).astype("<i2").tobytes())
    assert len(load_audio(stereo_16k)) == pytest.approx(RATE // 2, abs=8)

    async with connected() as (_, _, alice, bob):
        await asyncio.gather(
            bob.play(stereo_16k, pace=FAST), alice.play(tone(1000, 0.4).tobytes(), pace=FAST)
        )
        await alice.wait_for(lambda c: len(loud_runs(c)) == 1 and c.energy_dbfs(end=c.received[-1].time) < 0)
        await bob.wait_for(lambda c: len(loud_runs(c)) == 1)
        a_start = alice.first_audio_time(LOUD)
        b_start = bob.first_audio_time(LOUD)
        assert a_start is not None and b_start is not None
        assert dominant_hz(alice.received_pcm(a_start)[: RATE // 4]) == pytest.approx(500, abs=8)
        assert dominant_hz(bob.received_pcm(b_start)[: RATE // 4]) == pytest.approx(1000, abs=8)
        assert abs(loud_runs(alice)[0] - 25) <= 1 and abs(loud_runs(bob)[0] - 20) <= 1


async def test_dtmf_rfc4733_and_info_reach_the_other_phone() -> None:
    async with connected() as (_, _, alice, bob):
        assert alice.call.media is not None and alice.call.media.dtmf_payload_type is not None
        await alice.send_dtmf("5", method="rfc4733")
        await alice.send_dtmf("#", method="info")
        await alice.send_dtmf("12", method="rfc4733", duration_ms=60)
        await bob.wait_for(lambda c: len(c.dtmf_received) == 4)
        # INFO may overtake the RTP events still in flight; each method keeps its own order.
        assert sorted(bob.dtmf_received) == sorted("5#12")
        assert [d for d in bob.dtmf_received if d != "#"] == ["5", "1", "2"]
        await bob.send_dtmf("*", method="info")
        await alice.wait_for(lambda c: c.dtmf_received == ["*"])
        assert alice.rtp.stats.dtmf_sent > 0 and bob.rtp.stats.dtmf_sent == 0
        with pytest.raises(ValueError):
            await alice.send_dtmf("5x")


async def test_hold_stops_the_held_side_sending_until_unhold() -> None:
    async with connected() as (_, _, alice, bob):
        await alice.hold()
        await bob.wait_for(lambda c: c.rtp.direction == "recvonly")
        assert alice.rtp.direction == "sendonly"

        # Bob, on hold, queues a tone: it cannot go out while he is held.
        bobs_tone = bob.play_nowait(tone(1000, 0.4), pace=FAST)
        # Alice keeps talking on hold (music on hold) and Bob hears it: time passes, media flows one way.
        await alice.play(tone(700, 0.4), pace=FAST)
        await bob.wait_for(lambda c: len(loud_runs(c)) == 1)
        held_from = bob.first_audio_time(LOUD)
        assert held_from is not None
        held_until = asyncio.get_running_loop().time()
        assert not bobs_tone.done()
        assert [f for f in alice.received if held_from <= f.time < held_until] == []

        await alice.unhold()
        await bob.wait_for(lambda c: c.rtp.direction == "sendrecv")
        await asyncio.wait_for(bobs_tone, 5)
        await alice.wait_for(lambda c: len(loud_runs(c)) == 1)
        resumed = alice.first_audio_time(LOUD)
        assert resumed is not None and resumed > held_until
        assert dominant_hz(alice.received_pcm(resumed)[: RATE // 4]) == pytest.approx(1000, abs=8)


async def test_hangup_ends_both_sides_and_returns_the_ports() -> None:
    async with connected() as (alice_phone, bob_phone, alice, bob):
        assert alice_phone.pool.in_use == 1 and bob_phone.pool.in_use == 1
        pending = bob.play_nowait(tone(440, 5.0))
        await alice.hangup()
        ended = await bob.wait_ended()
        assert ended.by == "remote" and ended.reason == "bye"
        assert (await alice.wait_ended()).by == "local"
        assert alice.ended and bob.ended and alice.rtp.closed and bob.rtp.closed
        assert alice_phone.pool.in_use == 0 and bob_phone.pool.in_use == 0
        assert alice_phone.calls == [] and bob_phone.calls == []
        with pytest.raises(RuntimeError, match="ended before the audio was sent"):
            await pending
        with pytest.raises(RuntimeError):
            bob.play_nowait(tone(440, 0.1))


async def test_closing_a_phone_hangs_up_its_calls() -> None:
    async with SipPhone(media_port=31400) as bob:
        answering = asyncio.create_task(bob.answer_next(timeout=5))
        async with SipPhone(media_port=31600) as alice:
            outgoing = await alice.call(bob.uri)
            incoming = await answering
        assert outgoing.ended and alice.pool.in_use == 0
        ended = await incoming.wait_ended()
        assert ended.by == "remote"
        assert bob.pool.in_use == 0


async def test_recording_is_bounded_and_pace_is_counted_in_clock_ticks() -> None:
    async with MediaClock() as clock, connected(clock=clock, record_seconds=0.2) as (_, _, alice, bob):
        before = clock.tick
        await alice.play(tone(1000, 1.0), pace=FAST)
        # 50 frames at four per tick: a shade over 12 ticks of the shared clock, far from 50.
        assert 12 <= clock.tick - before < 40
        before = clock.tick
        await alice.play(tone(1000, 0.2))
        assert clock.tick - before >= 10
        heard = bob.rtp.stats.frames_received
        await bob.wait_for(lambda c: c.rtp.stats.frames_received >= heard + 15)
        # Only the newest 200 ms are kept: the silence after the tones, none of the tones.
        assert len(bob.received) == 10
        assert bob.first_audio_time(LOUD) is None and bob.energy_dbfs() == -math.inf
    assert len(clock) == 0  # both calls left the shared clock, which is still the caller's to stop


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_a_sentence_is_spoken_with_espeak_ng() -> None:
    rendered = render_sentence("Hello, this is a test.")
    assert rendered is not None and len(rendered) > RATE // 2
    async with connected() as (_, _, alice, bob):
        await alice.play(Sentence("Hello, this is a test."), pace=FAST)
        frames = math.ceil(len(rendered) / 160)
        await bob.wait_for(lambda c: c.rtp.stats.frames_received >= frames + 10)
        start = bob.first_audio_time(LOUD)
        assert start is not None
        assert -35 < bob.energy_dbfs(start) < -10  # speech level, sox measures about -20 dBFS for espeak-ng
        await alice.say("Goodbye", pace=FAST)
        assert alice.rtp.stats.packets_sent > frames


async def test_without_espeak_ng_a_sentence_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert render_sentence("Hello") is None
    async with connected() as (_, _, alice, _):
        with pytest.raises(SpeechUnavailable, match="espeak-ng is not installed"):
            await alice.say("Hello")
        with pytest.raises(SpeechUnavailable):
            alice.play_nowait(Sentence("Hello"))


async def test_bundled_question_and_bad_sources() -> None:
    question = load_audio(QUESTION_WAV)
    assert 2 * RATE < len(question) < 5 * RATE and np.abs(question).max() > 3000
    with pytest.raises(TypeError):
        load_audio(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        load_audio(b"\x00")
    async with connected() as (_, _, alice, _):
        with pytest.raises(ValueError, match="pace"):
            await alice.play(question, pace=0.0)


async def test_sip_phone_fixture(sip_phone: SipPhone) -> None:
    async with SipPhone(media_port=31800) as caller:
        answering = asyncio.create_task(sip_phone.answer_next(timeout=5))
        call = await caller.call(sip_phone.uri)
        answered = await answering
        await call.send_dtmf("9", method="info")
        await answered.wait_for(lambda c: c.dtmf_received == ["9"])


async def test_dial_is_the_deprecated_name_of_call() -> None:
    async with (
        SipPhone(media_port=31400, user="alice") as alice,
        SipPhone(media_port=31600, user="bob") as bob,
    ):
        answering = asyncio.create_task(bob.answer_next(timeout=5))
        with pytest.warns(DeprecationWarning, match="SipPhone.call"):
            outgoing = await alice.dial(bob.uri)
        incoming = await answering
        assert outgoing.call.call_id == incoming.call.call_id
        await outgoing.hangup()
