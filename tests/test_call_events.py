"""What a test (or an application) awaits on a call: the next call, tool calls, transcript lines, the end."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from voicelive_sip import BargedIn, Gateway, ToolCalled, TranscriptLine, tool
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone

GREETING = (
    "Hello and welcome to the order desk, I can look up any order for you, just tell me its number please."
)


@tool
async def order_status(order_id: str) -> dict[str, str]:
    """Look up the status of an order."""
    return {"order_id": order_id, "status": "shipped"}


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    reply = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "1001"}'),
        follow_up=FakeReply(text="Your order 1001 is {output}."),
    )
    return {"replies": [reply], "transcripts": ["Where is order 1001?"], "pace": 1.0}


@pytest.fixture
def gateway_settings(fake_voicelive: FakeVoiceLive) -> dict[str, Any]:
    return {"voicelive": fake_voicelive.settings(proactive_greeting=GREETING)}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {"tools": [order_status]}


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)


async def test_a_barged_in_greeting_and_a_tool_call_are_awaited_and_summarised(
    gateway: Gateway, sip_phone: SipPhone
) -> None:
    call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    # Half a second of the greeting plays, then the caller talks over it.
    await call.wait_for(lambda c: len(c.received) >= 25 and c.first_audio_time() is not None)
    await call.play(_speech(0.6))
    barged = await session.wait_for(BargedIn, timeout=10)
    called = await session.wait_for(ToolCalled, lambda t: t.name == "order_status", timeout=10)
    assert called.arguments == {"order_id": "1001"} and called.error is None
    assert called.result == {"order_id": "1001", "status": "shipped"} and called.duration_ms >= 0
    await session.wait_for(TranscriptLine, lambda line: line.text.startswith("Your order"), timeout=10)
    await call.hangup()
    summary = await session.wait_ended(timeout=10)

    assert summary.tool_calls == [called]
    greeting = next(line for line in summary.transcript if line.interrupted)
    # The greeting is kept as far as it was heard: a start of it, not all of it, and not nothing.
    assert greeting.role == "agent" and greeting.text and GREETING.startswith(greeting.text)
    assert len(greeting.text) < len(GREETING) and barged.heard_ms > 0
    roles = [(line.role, line.interrupted) for line in summary.transcript]
    assert roles == [("agent", True), ("caller", False), ("agent", False)]
    assert [line.at for line in summary.transcript] == sorted(line.at for line in summary.transcript)


async def test_wait_for_fails_at_once_when_the_call_ends_without_the_event(
    gateway: Gateway, sip_phone: SipPhone
) -> None:
    call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    await call.hangup()
    with pytest.raises(LookupError, match="ToolCalled"):
        await session.wait_for(ToolCalled, timeout=30)


async def test_next_call_times_out_without_a_call(gateway: Gateway) -> None:
    with pytest.raises(TimeoutError):
        await gateway.next_call(timeout=0.05)


async def test_calls_are_handed_out_in_order_once_each(gateway: Gateway, sip_phone: SipPhone) -> None:
    target = f"sip:agent@127.0.0.1:{gateway.ua.address[1]}"
    first = await sip_phone.call(target)
    second = await sip_phone.call(target)
    one, two = await gateway.next_call(), await gateway.next_call()
    assert (one.call.call_id, two.call.call_id) == (first.call.call_id, second.call.call_id)
    with pytest.raises(TimeoutError):
        await gateway.next_call(timeout=0.05)
    events = []
    await first.hangup()
    async for event in one.events():
        events.append(type(event).__name__)
    assert events[-1] == "SessionFinished"
    await second.hangup()


async def test_on_an_outbound_call_the_remote_party_is_the_callee() -> None:
    from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings

    async with (
        FakeVoiceLive(pace=1.0, transcripts=["Hello, who is this?"]) as fake,
        SipPhone(media_port=42300) as phone,
    ):
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1", server=None, register_enabled=False),
            media=MediaSettings(address="127.0.0.1", public_address=None, port=42400, port_count=20),
            voicelive=fake.settings(proactive_greeting_enabled=False),
            gateway=GatewaySettings(outbound_allowed=[phone.uri]),
        )
        async with Gateway(settings) as gateway:
            answering = asyncio.ensure_future(phone.answer_next(timeout=10))
            session = await gateway.call(phone.uri)
            assert await gateway.next_call() is session
            call = await answering
            await call.play(_speech(0.6))
            line = await session.wait_for(TranscriptLine, lambda line: line.role != "agent", timeout=10)
            await call.hangup()
            await session.wait_ended(timeout=10)
    assert line == TranscriptLine(line.at, "callee", "Hello, who is this?")
