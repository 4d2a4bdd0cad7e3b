"""G.722 against a real peer: baresip (its g722 module, nothing else) calls the gateway, gets G.722, hears the
greeting, and the gateway's recording of the call is 16 kHz."""

from __future__ import annotations

import contextlib
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartBaresip, free_udp_range, require_binary
from tests.e2e.test_real_peers import GREETING, assert_heard_greeting, greeting_sent, wait_until
from tests.interop.conftest import LOCALHOST
from voicelive_sip.codecs.names import Codec
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing import FakeVoiceLive

pytestmark = pytest.mark.interop


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    return {"pace": 1.0, "voice": "tone"}  # real time, as in test_real_peers


@pytest.fixture
def silence_16k(tmp_path: Path) -> Path:
    """baresip's microphone: digital silence at G.722's 16 kHz (its aufile source does not resample)."""
    sox = require_binary("sox")
    path = tmp_path / "silence_16k.wav"
    subprocess.run(
        [sox, "-D", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "trim", "0", "60"],
        check=True,
        timeout=30,
    )
    return path


@contextlib.asynccontextmanager
async def recording_gateway(fake: FakeVoiceLive, recordings: Path) -> AsyncIterator[Gateway]:
    """The gateway of test_real_peers (default MEDIA_CODECS: G722,PCMU,PCMA), recording every call."""
    settings = Settings(
        sip=SipSettings(port=0, local_address=LOCALHOST),
        media=MediaSettings(address=LOCALHOST, port=free_udp_range(20), port_count=20),
        voicelive=fake.settings(proactive_greeting_enabled=True, proactive_greeting=GREETING),
        gateway=GatewaySettings(recording_dir=str(recordings)),
    )
    async with Gateway(settings) as gateway:
        yield gateway


async def test_baresip_with_only_g722_calls_the_gateway_and_hears_the_greeting(
    baresip: StartBaresip, fake_voicelive: FakeVoiceLive, silence_16k: Path, tmp_path: Path
) -> None:
    phone = baresip("uac_g722", {"SOURCE_WAV_16K": str(silence_16k)})
    await phone.wait_ready()
    async with recording_gateway(fake_voicelive, tmp_path / "recordings") as gateway:
        reply = await phone.command("dial", f"sip:agent@{LOCALHOST}:{gateway.ua.address[1]}")
        assert reply.get("ok"), (reply, phone.output()[-3000:])
        await greeting_sent(fake_voicelive)
        await phone.command("hangup")
        await wait_until(lambda: gateway.summaries, lambda: f"no call summary\n{phone.output()[-3000:]}")
    await phone.quit()

    (summary,) = gateway.summaries
    assert summary.codec is Codec.G722, summary
    assert (summary.direction, summary.end_reason, summary.ended_by) == ("inbound", "bye", "remote"), summary
    assert summary.packets_received > 0, summary
    # Voice Live was asked for PCM16 at 16 kHz both ways: the decoded G.722, not resampled.
    session = fake_voicelive.session_config
    assert session["input_audio_format"] == "pcm16", session
    assert session["input_audio_sampling_rate"] == 16000, session
    assert session["output_audio_format"] == "pcm16_16000hz", session
    # baresip decoded our G.722 into the greeting tone (its recording is at 16 kHz).
    assert_heard_greeting(phone)
    assert summary.recording is not None
    with wave.open(str(summary.recording)) as recording:
        assert recording.getframerate() == 16000
        assert recording.getnframes() > 16000  # more than a second of the call
