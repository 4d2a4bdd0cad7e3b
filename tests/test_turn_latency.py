"""Per-turn latency: with the fake answering after a known delay, each turn measures that delay (from the
fake's own timestamps) plus the gateway's part; a tool turn shows its tool's time on its own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from voicelive_sip import Gateway, ToolCalled, tool
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone
from voicelive_sip.testing.fake_voicelive import FakeFaults
from voicelive_sip.turns import TurnLatency, TurnTimer, percentile
from voicelive_sip.webhooks import summary_data

REPLY_DELAY_S = 0.3
TOOL_S = 0.25
VAD_LAG_S = 0.2
FRAME_MS = 20.0


@tool
async def slow_lookup(order_id: str) -> dict[str, str]:
    """Look up an order (slowly)."""
    await asyncio.sleep(TOOL_S)
    return {"order_id": order_id, "status": "shipped"}


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    replies = [
        FakeReply(text="Sure, I can help with that."),
        FakeReply(
            tool_call=FakeToolCall("slow_lookup", '{"order_id": "7"}'),
            follow_up=FakeReply(text="Order 7 is {output}."),
        ),
    ]
    return {"replies": replies, "transcripts": ["Hello?", "Where is order 7?"], "pace": 1.0}


@pytest.fixture
def gateway_settings(fake_voicelive: FakeVoiceLive) -> dict[str, Any]:
    return {"voicelive": fake_voicelive.settings(proactive_greeting_enabled=False)}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {"tools": [slow_lookup]}


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)


async def test_each_turn_is_the_fakes_delay_plus_the_gateways_part(
    gateway: Gateway, sip_phone: SipPhone, fake_voicelive: FakeVoiceLive
) -> None:
    # speech_stopped itself comes late: the turn must start at the audio position it names, not on arrival.
    fake_voicelive.faults = FakeFaults(reply_delay_s=REPLY_DELAY_S, speech_stopped_delay_s=VAD_LAG_S)
    call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    await call.play(_speech(0.6))
    await fake_voicelive.wait_for(lambda fake: fake.sent_at("response.done") != [], timeout=15)
    await asyncio.sleep(1.0)  # the reply plays out
    await call.play(_speech(0.6))
    await session.wait_for(ToolCalled, timeout=15)
    await fake_voicelive.wait_for(lambda fake: len(fake.sent_at("response.done")) >= 3, timeout=15)
    await asyncio.sleep(0.5)
    await call.hangup()
    summary = await session.wait_ended(timeout=10)

    conn = fake_voicelive.connections[0]
    deltas = fake_voicelive.sent_at("response.audio.delta")
    assert len(summary.turns) == len(conn.speech_ends) == 2
    for turn, (speech_end, _) in zip(summary.turns, conn.speech_ends, strict=True):
        # The service's part as the fake itself saw it: the speech end's audio arriving → first audio sent.
        fake_ms = (min(t for t in deltas if t > speech_end) - speech_end) * 1000
        assert fake_ms >= (REPLY_DELAY_S + VAD_LAG_S) * 1000  # and the fake's own processing
        assert abs(turn.service_ms + turn.tool_ms - fake_ms) <= FRAME_MS
        assert turn.total_ms == pytest.approx(turn.service_ms + turn.tool_ms + turn.gateway_ms, abs=0.3)
        assert turn.gateway_ms >= 0
    plain, tooled = summary.turns
    assert plain.tools == () and plain.tool_ms == 0.0
    # The tool turn: the fake's delay twice (the call, then the follow-up) and the tool's time apart.
    assert tooled.tools == ("slow_lookup",) and tooled.tool_ms >= TOOL_S * 1000
    assert tooled.tool_ms == pytest.approx(summary.tool_calls[0].duration_ms, abs=0.2)
    assert tooled.service_ms >= 2 * REPLY_DELAY_S * 1000
    assert summary.turn_latency_p50_ms == min(t.total_ms for t in summary.turns)
    assert summary.turn_latency_p95_ms == max(t.total_ms for t in summary.turns)
    # In the webhook's call.ended summary, as plain JSON.
    data = json.loads(json.dumps(summary_data(summary)))
    assert data["turns"][1]["tools"] == ["slow_lookup"] and data["turn_latency_p95_ms"] > 0
    # A clean loopback call scores the G.711 ceiling, in the summary and the metrics.
    assert summary.quality_received is not None and summary.quality_received.mos >= 4.3
    assert summary.mos is not None and summary.mos >= 4.3 and data["quality_received"]["loss_percent"] == 0
    text = gateway.metrics.render()[0].decode()
    assert 'voicelive_sip_turn_latency_seconds_count{part="service"} 2.0' in text
    assert 'voicelive_sip_call_mos_bucket{direction="received",le="4.3"} 0.0' in text
    assert 'voicelive_sip_call_mos_count{direction="received"} 1.0' in text


def test_the_timer_splits_a_turn_and_ignores_audio_from_before_it() -> None:
    timer = TurnTimer()
    assert timer.audio_sent(5.0, 0.0) is None  # the greeting: no caller turn
    timer.speech_stopped(10.0)
    timer.audio_received(9.9)  # audio of an earlier reply still arriving: not this turn's answer
    timer.tool_ran("lookup", 0.2)
    timer.audio_received(10.7)
    assert timer.waiting
    turn = timer.audio_sent(10.75, 1.0)
    assert turn == TurnLatency(9.0, 750.0, 500.0, 50.0, 200.0, ("lookup",))
    assert not timer.waiting and timer.audio_sent(10.8, 1.0) is None
    # The caller went on talking before any answer: the turn counts from the later speech end.
    timer.speech_stopped(20.0)
    timer.speech_stopped(21.0)
    timer.audio_received(21.4)
    last = timer.audio_sent(21.42, 1.0)
    assert last is not None and last.total_ms == 420.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([], 0.95) is None
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
