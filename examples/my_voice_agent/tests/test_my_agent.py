"""The agent looks up an order during a call: FakeVoiceLive plays the model, SipPhone the caller."""

from typing import Any

import numpy as np
import pytest
from my_agent import tools

from voicelive_sip import Gateway, ToolCalled, TranscriptLine
from voicelive_sip.testing import FakeReply, FakeToolCall, SipPhone


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    # When the caller speaks, the "model" calls the tool, then says what it returned.
    reply = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "1001"}'),
        follow_up=FakeReply(text="Your order 1001 has {output}."),
    )
    return {"replies": [reply], "pace": 1.0}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {"tools": tools}


async def test_the_agent_looks_up_the_order(gateway: Gateway, sip_phone: SipPhone) -> None:
    call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    await call.wait_for(lambda c: c.first_audio_time() is not None)  # the greeting plays
    tone = (9000 * np.sin(2 * np.pi * 500 * np.arange(4800) / 8000)).astype(np.int16)
    await call.play(tone)  # the caller speaks

    called = await session.wait_for(ToolCalled)
    assert called.name == "order_status" and called.arguments == {"order_id": "1001"}
    assert called.result == {"order_id": "1001", "status": "shipped"}
    await session.wait_for(TranscriptLine, lambda line: line.text.startswith("Your order"))

    await call.hangup()
    summary = await session.wait_ended()
    assert [t.name for t in summary.tool_calls] == ["order_status"]
