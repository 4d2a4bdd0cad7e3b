"""The gateway against real SIP peers on 127.0.0.1: sipp streams speech to it, baresip calls it, and it calls
baresip; the caller's audio must reach Voice Live (the fake) and the agent's greeting must reach the phone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Baresip,
    Recording,
    SpeechAudio,
    StartBaresip,
    free_udp_range,
    render_scenario,
)
from tests.interop.conftest import LOCALHOST, Sipp
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing import FakeVoiceLive

pytestmark = pytest.mark.interop

# The fake speaks a 440 Hz tone, 60 ms per character of the text: this greeting lasts 1.5 s.
GREETING = "Hello, this is the agent."
GREETING_MS = 60 * len(GREETING)
TONE_HZ = 440.0
SILENCE_DBFS = -40.0  # digital silence is -inf and line noise far below this; the fake's tone is about -15
# What is still queued after the fake's last greeting chunk: the gateway's outbound buffer and baresip's
# jitter buffer (1-10 frames). Waiting it out lets the whole greeting reach the recording before the hangup.
PLAYOUT_S = 0.6


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    # Real time: a real phone plays what it receives at its own pace.
    return {"pace": 1.0, "voice": "tone"}


@contextlib.asynccontextmanager
async def running_gateway(fake: FakeVoiceLive) -> AsyncIterator[Gateway]:
    """A gateway on 127.0.0.1 (free SIP port, a free RTP range) bridging calls to the fake, greeting first."""
    settings = Settings(
        sip=SipSettings(port=0, local_address=LOCALHOST),
        media=MediaSettings(address=LOCALHOST, port=free_udp_range(20), port_count=20),
        voicelive=fake.settings(proactive_greeting_enabled=True, proactive_greeting=GREETING),
        gateway=GatewaySettings(outbound_allowed=[f"sip:*@{LOCALHOST}"]),
    )
    async with Gateway(settings) as gateway:
        yield gateway


async def wait_until(
    condition: Callable[[], object], describe: Callable[[], str], timeout: float = 10.0
) -> None:
    """Poll `condition()` until it holds; fail with `describe()` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out: {describe()}")
        await asyncio.sleep(0.02)


async def greeting_sent(fake: FakeVoiceLive) -> None:
    """Wait until the fake has sent the whole greeting (its `response.done`), then for it to play out."""
    await fake.wait_for(lambda f: bool(f.sent_at("response.done")), timeout=10)
    await asyncio.sleep(PLAYOUT_S)


def assert_heard_greeting(phone: Baresip) -> None:
    """baresip's one recording of received audio holds the greeting tone: loud, long enough, at 440 Hz."""
    received = phone.received_recordings()
    assert len(received) == 1, (sorted(p.name for p in phone.recordings.iterdir()), phone.output()[-3000:])
    recording = Recording.read(received[0])
    # The greeting window: from the first to the last 20 ms window above silence.
    window = recording.loud_span(SILENCE_DBFS)
    assert len(window), f"nothing above {SILENCE_DBFS} dBFS in {recording.duration_ms(recording.samples)} ms"
    assert recording.rms_dbfs(window) > SILENCE_DBFS, recording.rms_dbfs(window)
    # Nearly all of the greeting arrived (fades and a lost edge frame aside), and nothing else loud.
    window_ms = recording.duration_ms(window)
    assert GREETING_MS * 0.8 <= window_ms <= GREETING_MS * 1.2, (window_ms, GREETING_MS)
    assert abs(recording.dominant_hz(window) - TONE_HZ) < 10, recording.dominant_hz(window)


async def test_sipp_streams_speech_to_the_gateway(
    sipp: Sipp, speech_audio: SpeechAudio, fake_voicelive: FakeVoiceLive, tmp_path: Path
) -> None:
    streamed = speech_audio.ulaw.read_bytes()
    scenario = render_scenario("uac_rtpstream.xml", tmp_path, AUDIO=str(speech_audio.ulaw))
    rtp = free_udp_range(20)
    args = ["-s", "agent", "-d", str(speech_audio.ulaw_ms + 1000)]
    args += ["-mi", LOCALHOST, "-mp", str(rtp)]  # sipp 3.6 takes rtp_stream ports from -mp upwards
    async with running_gateway(fake_voicelive) as gateway:
        result = await sipp.run(scenario, f"{LOCALHOST}:{gateway.ua.address[1]}", args=args, timeout=30)
        assert result.returncode == 0, result.describe()
        assert result.stats["SuccessfulCall"] == 1, result.describe()
        assert result.stats["FailedCall"] == 0, result.describe()
        await wait_until(lambda: gateway.summaries, lambda: "no call summary")

    (summary,) = gateway.summaries
    assert (summary.end_reason, summary.ended_by) == ("bye", "remote"), summary
    # Every packet sipp streamed arrived (loopback loses none), and the gateway spoke back.
    assert summary.packets_received >= len(streamed) // 160, summary
    assert summary.packets_sent > 0, summary
    assert summary.first_agent_audio_ms is not None, summary
    # The caller's μ-law reached Voice Live byte for byte: one second from the middle of the speech.
    speech = streamed[SpeechAudio.LEAD_SILENCE_MS * 8 :]
    middle = speech[len(speech) // 3 : len(speech) // 3 + 8000]
    assert len(middle) == 8000
    assert middle in fake_voicelive.appended_audio


async def test_baresip_calls_the_gateway_and_hears_the_greeting(
    baresip: StartBaresip, fake_voicelive: FakeVoiceLive
) -> None:
    phone = baresip("uac")
    await phone.wait_ready()
    async with running_gateway(fake_voicelive) as gateway:
        reply = await phone.command("dial", f"sip:agent@{LOCALHOST}:{gateway.ua.address[1]}")
        assert reply.get("ok"), (reply, phone.output()[-3000:])
        await greeting_sent(fake_voicelive)
        await phone.command("hangup")
        await wait_until(lambda: gateway.summaries, lambda: f"no call summary\n{phone.output()[-3000:]}")
    await phone.quit()

    (summary,) = gateway.summaries
    assert (summary.direction, summary.end_reason, summary.ended_by) == ("inbound", "bye", "remote"), summary
    assert summary.packets_received > 0, summary
    assert_heard_greeting(phone)


async def test_gateway_calls_baresip_and_it_hears_the_greeting(
    baresip: StartBaresip, fake_voicelive: FakeVoiceLive
) -> None:
    phone = baresip("uas")
    await phone.wait_ready()
    async with running_gateway(fake_voicelive) as gateway:
        session = await gateway.call(phone.uri)
        await greeting_sent(fake_voicelive)
        await session.hangup()
        await wait_until(lambda: gateway.summaries, lambda: f"no call summary\n{phone.output()[-3000:]}")
    await phone.quit()

    (summary,) = gateway.summaries
    assert (summary.direction, summary.end_reason, summary.ended_by) == ("outbound", "bye", "local"), summary
    assert summary.packets_received > 0, summary
    assert_heard_greeting(phone)
