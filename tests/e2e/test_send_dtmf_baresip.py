"""The agent's send_dtmf tool heard by a real peer: the gateway calls baresip, the model (the fake) calls the
tool when baresip speaks, and baresip's ctrl_tcp reports each key it received (CALL_DTMF_START), sent as
RFC 4733 telephone-events or, when no telephone-event was negotiated, as SIP INFO."""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import StartBaresip, free_udp_range
from tests.interop.conftest import LOCALHOST
from voicelive_sip import Gateway, ToolCalled
from voicelive_sip.bridge import SEND_DTMF
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.rtp.session import RtpSession
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive

pytestmark = pytest.mark.interop

KEYS = "1 2#"


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    press = FakeReply(tool_call=FakeToolCall(SEND_DTMF, json.dumps({"digits": KEYS})), follow_up=FakeReply())
    return {"replies": [press], "pace": 1.0, "voice": "tone"}


def speaking_wav(path: Path) -> Path:
    """1 s of silence, 0.6 s of a 500 Hz tone (a caller turn in the fake's VAD), then silence for a minute:
    baresip 1.0.0 hangs up when its source file ends."""
    rate = 8000
    t = np.arange(int(rate * 0.6)) / rate
    tone = (9000 * np.sin(2 * np.pi * 500 * t)).astype("<i2")
    samples = np.concatenate([np.zeros(rate, "<i2"), tone, np.zeros(rate * 60, "<i2")])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


class CtrlEvents:
    """baresip's ctrl_tcp events (netstring JSON) on one connection, collected as they come."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
            while True:
                length = int((await self.reader.readuntil(b":"))[:-1])
                payload = await self.reader.readexactly(length + 1)
                message = json.loads(payload[:-1])
                if message.get("event"):
                    self.events.append(message)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("type") == kind]


@contextlib.asynccontextmanager
async def ctrl_events(port: int) -> AsyncIterator[CtrlEvents]:
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    events = CtrlEvents(reader)
    try:
        yield events
    finally:
        events.task.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize("method", ["rfc4733", "info"])
async def test_baresip_receives_the_keys_the_agent_presses(
    baresip: StartBaresip, fake_voicelive: FakeVoiceLive, tmp_path: Path, method: str
) -> None:
    phone = baresip("uas_speaker", {"SPEECH_WAV": str(speaking_wav(tmp_path / "speaking.wav"))})
    await phone.wait_ready()
    settings = Settings(
        sip=SipSettings(port=0, local_address=LOCALHOST),
        media=MediaSettings(address=LOCALHOST, port=free_udp_range(20), port_count=20),
        # No greeting: the first reply is the scripted tool call, after baresip's tone ends its turn.
        voicelive=fake_voicelive.settings(proactive_greeting_enabled=False),
        gateway=GatewaySettings(outbound_allowed=[f"sip:*@{LOCALHOST}"], send_dtmf_tool=True),
    )
    async with ctrl_events(phone.ctrl_port) as events, Gateway(settings) as gateway:
        session = await gateway.call(phone.uri)
        assert isinstance(session.media, RtpSession) and session.media.dtmf_payload_type is not None
        if method == "info":
            # As if baresip had negotiated no telephone-event: the gateway falls back to SIP INFO.
            session.media.dtmf_payload_type = None
        called = await session.wait_for(ToolCalled, lambda t: t.name == SEND_DTMF, timeout=15)
        assert called.result == {"ok": True, "sent": "12#"}
        # An RFC 4733 key is over at its end packet; baresip 1.0.0 reports INFO keys' ends unreliably.
        ended = "CALL_DTMF_END" if method == "rfc4733" else "CALL_DTMF_START"
        deadline = asyncio.get_running_loop().time() + 5
        while len(events.of_type(ended)) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        dtmf_packets = session.media.stats.dtmf_sent
        await session.hangup()
    await phone.quit()

    keys = [str(event.get("param")) for event in events.of_type("CALL_DTMF_START")]
    assert keys == ["1", "2", "#"], f"{events.events}\n{phone.output()[-3000:]}"
    # RFC 4733: 3 keys x (5 updates + 2 more end packets) on the RTP stream; INFO: none on it.
    assert dtmf_packets == (21 if method == "rfc4733" else 0)
    if method == "rfc4733":
        # Each key released once: the three copies of its end packet are one end, not three.
        assert len(events.of_type("CALL_DTMF_END")) == 3, events.events
