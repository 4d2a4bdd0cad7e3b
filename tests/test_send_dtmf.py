"""The agent presses keys: the built-in send_dtmf tool reaches a real peer as RFC 4733 events or SIP INFO."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from voicelive_sip import Gateway, ToolCalled
from voicelive_sip.bridge import SEND_DTMF, BuiltinTools
from voicelive_sip.config import GatewaySettings
from voicelive_sip.rtp.session import RtpSession
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    press = FakeReply(
        tool_call=FakeToolCall(SEND_DTMF, '{"digits": "1 2#"}'), follow_up=FakeReply(text="Ok.")
    )
    return {"replies": [press], "transcripts": ["Press one, two, then hash."], "pace": 1.0}


@pytest.fixture
def gateway_settings(fake_voicelive: FakeVoiceLive) -> dict[str, Any]:
    return {
        "voicelive": fake_voicelive.settings(proactive_greeting_enabled=True),
        "gateway": GatewaySettings(
            send_dtmf_tool=True, send_dtmf_allowed="0123456789#", send_dtmf_max_digits=4
        ),
    }


@pytest.mark.parametrize("method", ["rfc4733", "info"])
async def test_the_peer_receives_the_keys_the_agent_presses(
    gateway: Gateway, sip_phone: SipPhone, method: str
) -> None:
    phone_call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    assert isinstance(session.media, RtpSession) and session.media.dtmf_payload_type is not None
    if method == "info":
        # A peer that negotiated no telephone-event (the SipPhone always offers it): the gateway uses INFO.
        session.media.dtmf_payload_type = None
    sent_before = session.media.stats.dtmf_sent
    await phone_call.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)
    await phone_call.play(_speech(0.6))
    called = await session.wait_for(ToolCalled, lambda t: t.name == SEND_DTMF, timeout=15)
    assert called.result == {"ok": True, "sent": "12#"}
    await phone_call.wait_for(lambda c: len(c.dtmf_received) >= 3, timeout=10)
    assert phone_call.dtmf_received == ["1", "2", "#"]
    packets = session.media.stats.dtmf_sent - sent_before
    assert packets == (21 if method == "rfc4733" else 0)  # 3 keys x (5 updates, 2 more end packets)


async def test_keys_outside_the_allowed_set_or_too_many_are_refused(
    gateway: Gateway, sip_phone: SipPhone
) -> None:
    phone_call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    builtins = session.builtins
    assert isinstance(builtins, BuiltinTools) and SEND_DTMF in [d["name"] for d in builtins.definitions]
    assert (await builtins.send_dtmf("*"))["ok"] is False  # * is not in GATEWAY_SEND_DTMF_ALLOWED
    assert (await builtins.send_dtmf("12345"))["ok"] is False  # more than GATEWAY_SEND_DTMF_MAX_DIGITS
    assert (await builtins.send_dtmf(""))["ok"] is False
    await phone_call.hangup()
    assert phone_call.dtmf_received == []


def test_the_tool_is_off_by_default() -> None:
    assert SEND_DTMF not in [
        d["name"] for d in BuiltinTools(GatewaySettings(send_dtmf_tool=False)).definitions
    ]
    assert GatewaySettings.model_fields["send_dtmf_tool"].default is False
