"""A wideband leg (G.722: PCM16 at 16 kHz) and Voice Live: pcm16 16 kHz passed through by default, converted
when a format is forced, and an outbound call's session that follows the codec the callee answered with."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tests.voicelive.test_voicelive_session import collect
from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec
from voicelive_sip.testing import FakeFaults, FakeVoiceLive
from voicelive_sip.voicelive import AudioDelta, ResponseDone, SpeechStarted, VoiceLiveSession
from voicelive_sip.voicelive.audio import Passthrough, Transcoder, converters, wire_format

WIDE_FRAME = 640  # 20 ms of PCM16 at 16 kHz


def tone_pcm16(ms: int, freq: float = 400.0, rate: int = 16000, amplitude: int = 8000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype("<i2").tobytes()


async def send_paced(session: VoiceLiveSession, audio: bytes, size: int = WIDE_FRAME) -> None:
    for i in range(0, len(audio), size):
        await session.send_audio(audio[i : i + size])
        await asyncio.sleep(0)


def peak_hz(pcm: np.ndarray[Any, Any], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize(
    ("audio_format", "codec", "expected"),
    [
        ("g711", Codec.G722, ("pcm16", "pcm16_16000hz", 16000, 32)),
        ("g711", Codec.OPUS, ("pcm16", "pcm16", 24000, 48)),
        ("g711", Codec.PCMU, ("g711_ulaw", "g711_ulaw", 8000, 8)),
        ("g711_alaw", Codec.G722, ("g711_alaw", "g711_alaw", 8000, 8)),
        ("pcm16_24000", Codec.G722, ("pcm16", "pcm16", 24000, 48)),
        ("pcm16_16000", Codec.G722, ("pcm16", "pcm16_16000hz", 16000, 32)),
    ],
)
def test_wire_format_of_a_wideband_leg(audio_format: Any, codec: Codec, expected: tuple[Any, ...]) -> None:
    wire = wire_format(audio_format, codec)
    formats = (wire.input_audio_format, wire.output_audio_format)
    assert (*formats, wire.sample_rate, wire.bytes_per_ms) == expected
    up, down = converters(wire, codec)
    passthrough = wire.sample_rate == codec.sample_rate and wire.law == codec.law
    assert isinstance(up, Passthrough) == passthrough and isinstance(down, Passthrough) == passthrough
    if not passthrough:
        assert isinstance(up, Transcoder) and isinstance(down, Transcoder)


async def test_g722_reaches_voice_live_as_pcm16_16k_untouched_both_ways() -> None:
    caller = tone_pcm16(400)
    async with (
        FakeVoiceLive(faults=FakeFaults(), voice="tone") as fake,
        VoiceLiveSession(fake.settings(vad_type="none"), codec=Codec.G722) as session,
    ):
        await send_paced(session, caller)
        await fake.wait_for(lambda f: len(f.appended_audio) == len(caller))
        assert fake.appended_audio == caller  # no resampling: byte for byte
        config = fake.session_config
        assert (config["input_audio_format"], config["input_audio_sampling_rate"]) == ("pcm16", 16000)
        assert config["output_audio_format"] == "pcm16_16000hz"
        await session.create_response()
        events = await collect(session, ResponseDone)
    audio = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
    assert audio == await fake.render(fake.greeting, None, "pcm16_16000hz")
    assert abs(len(audio) - 32 * 60 * len(fake.greeting)) <= 32 * 10  # 32 bytes per ms: 16 kHz PCM16


async def test_a_forced_g711_wire_converts_the_g722_leg_both_ways() -> None:
    caller = tone_pcm16(1000)
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none", audio_format="g711_ulaw"), codec="G722") as session,
    ):
        await send_paced(session, caller)
        await fake.wait_for(lambda f: len(f.appended_audio) >= 8000 - 160)
        assert fake.session_config["input_audio_format"] == "g711_ulaw"
        received = g711.ulaw_decode(fake.appended_audio)
        assert abs(peak_hz(received[800:], 8000) - 400.0) < 5
        await session.create_response()
        events = await collect(session, ResponseDone)
    audio = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
    # Back on the leg as PCM16 at 16 kHz: 32 bytes per ms, the fake's 440 Hz tone.
    assert abs(len(audio) - 32 * 60 * len(fake.greeting)) <= 32 * 10
    assert abs(peak_hz(np.frombuffer(audio, dtype="<i2"), 16000) - 440.0) < 5


async def test_caller_speech_on_a_g722_leg_barges_into_the_reply() -> None:
    async with (
        FakeVoiceLive(faults=FakeFaults(stall_after_chunks=1)) as fake,
        VoiceLiveSession(fake.settings(vad_silence_duration_ms=200), codec=Codec.G722) as session,
    ):
        await session.greet()
        await collect(session, AudioDelta)
        await send_paced(session, tone_pcm16(300))
        events = await collect(session, ResponseDone)
    assert any(isinstance(e, SpeechStarted) for e in events)
    assert next(e for e in events if isinstance(e, ResponseDone)).status == "cancelled"


async def test_the_session_follows_the_codec_an_outbound_call_was_answered_with() -> None:
    # Opened for G.722 (our first choice), answered with PCMU: before any audio the wire becomes g711_ulaw
    # (one session.update), so G.711 still passes through untouched.
    caller = bytes(range(256)) * 5
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none"), codec=Codec.G722) as session,
    ):
        await session.use_codec(Codec.PCMU)
        assert (session.codec, session.wire.input_audio_format) == (Codec.PCMU, "g711_ulaw")
        await send_paced(session, caller, size=160)
        await fake.wait_for(lambda f: len(f.appended_audio) == len(caller))
        assert fake.appended_audio == caller
        config = fake.session_config
        assert (config["input_audio_format"], config["output_audio_format"]) == ("g711_ulaw", "g711_ulaw")
        # Once audio has flowed the wire stays: another change converts instead.
        await session.use_codec(Codec.G722)
        assert session.wire.input_audio_format == "g711_ulaw"
        await send_paced(session, tone_pcm16(200))
        await fake.wait_for(lambda f: len(f.appended_audio) >= len(caller) + 1600 - 160)
        assert len(fake.connections[-1].session_updates) == 2
