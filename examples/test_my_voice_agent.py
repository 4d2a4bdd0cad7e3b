"""How to test your own voice agent with the pytest plugin: no Azure, no PBX, everything on 127.0.0.1.

    pytest examples/test_my_voice_agent.py

The fixtures come from voicelive-sip's pytest plugin: `fake_voicelive` (scripted like the real service),
`gateway` (your tools and settings, bridged to the fake) and `sip_phone` (a softphone that dials in).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from voicelive_sip import tool
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone

looked_up: list[str] = []


@tool
async def order_status(order_id: str) -> dict[str, str]:
    """Look up the status of an order."""
    looked_up.append(order_id)
    return {"order_id": order_id, "status": "shipped"}


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    # When the caller speaks, the "model" calls our tool and then speaks its result.
    reply = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "1001"}'),
        follow_up=FakeReply(text="Your order 1001 is {output}."),
    )
    return {"replies": [reply], "greeting": "Hi, how can I help?", "pace": 1.0}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {"tools": [order_status]}


async def test_the_agent_looks_up_the_order(
    fake_voicelive: FakeVoiceLive, gateway: Any, sip_phone: SipPhone
) -> None:
    call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    await call.wait_for(lambda c: c.first_audio_time() is not None)  # the greeting plays
    t = np.arange(8000 * 0.6) / 8000
    await call.play((9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16))  # the caller speaks
    await fake_voicelive.wait_for(lambda f: bool(f.function_outputs))
    assert looked_up == ["1001"]
    output = json.loads(fake_voicelive.function_outputs[0]["output"])
    assert output == {"order_id": "1001", "status": "shipped"}
    await call.hangup()
