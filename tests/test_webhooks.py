"""Lifecycle webhooks: signed, in order, retried while the receiver is down, never holding up a call."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from voicelive_sip import CallSession, Gateway, tool
from voicelive_sip.amd import AmdPolicy
from voicelive_sip.config import GatewaySettings, WebhookSettings
from voicelive_sip.metrics import GatewayMetrics
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone
from voicelive_sip.voicelive.tools import CallInfo
from voicelive_sip.webhooks import SIGNATURE_HEADER, CallContext, WebhookSender, sign, verify

SECRET = "whsec-test"


class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies signatures; `down` answers 503, `hang` never answers."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.requests = 0
        self.down = 0  # answer this many requests with 503 first
        self.hang = False
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.hang:
            await asyncio.Event().wait()
        if self.down > 0:
            self.down -= 1
            return web.Response(status=503)
        if not verify(SECRET.encode(), request.headers.get(SIGNATURE_HEADER, ""), body):
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        assert request.headers["X-VoiceLive-Event"] == event["type"]
        self.events.append(event)
        self.arrived.set()
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def _drained(sender: WebhookSender) -> None:
    async with asyncio.timeout(10):
        while sender.pending:
            await asyncio.sleep(0.01)


def _settings(**overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {"urls": [], "secret": SECRET, "initial_delay": 0.01, "max_delay": 0.05}
    return WebhookSettings(**{**values, **overrides})


def test_a_signature_verifies_only_its_own_body_secret_and_recent_time() -> None:
    header = sign(b"k", 1_700_000_000, b'{"a":1}')
    assert verify(b"k", header, b'{"a":1}', now=1_700_000_010)
    assert not verify(b"k", header, b'{"a":2}', now=1_700_000_010)  # a changed body
    assert not verify(b"other", header, b'{"a":1}', now=1_700_000_010)  # another secret
    assert not verify(b"k", header, b'{"a":1}', now=1_700_000_000 + 3600)  # replayed an hour later
    assert not verify(b"k", "v1=abc", b'{"a":1}')  # no timestamp


async def test_events_arrive_in_order_after_the_receiver_was_down(receiver: Receiver) -> None:
    metrics = GatewayMetrics()
    sender = WebhookSender(_settings(max_attempts=10), metrics=metrics)
    receiver.down = 4  # the first event is refused four times, the others wait behind it
    try:
        for n in range(5):
            sender.emit("call.tool_called", {"id": "call_1"}, {"n": n}, [receiver.url])
        events = await receiver.wait_for(5)
        await _drained(sender)
    finally:
        await sender.close()
    assert [event["data"]["n"] for event in events] == [0, 1, 2, 3, 4]
    assert receiver.bad_signatures == 0 and receiver.requests == 9
    assert metrics.webhook_attempt_failures._value.get() == 4
    assert metrics.webhook_events.labels(outcome="delivered")._value.get() == 5


async def test_an_event_is_given_up_after_max_attempts_and_counted(receiver: Receiver) -> None:
    metrics = GatewayMetrics()
    sender = WebhookSender(_settings(max_attempts=3), metrics=metrics)
    receiver.down = 3  # exactly the attempts the first event gets
    try:
        sender.emit("call.started", {"id": "call_1"}, {"n": 0}, [receiver.url])
        sender.emit("call.ended", {"id": "call_1"}, {"n": 1}, [receiver.url])
        events = await receiver.wait_for(1)
        await _drained(sender)
    finally:
        await sender.close()
    assert [event["data"]["n"] for event in events] == [1]
    assert sender.failed == 1 and receiver.requests == 4
    assert metrics.webhook_events.labels(outcome="failed")._value.get() == 1


async def test_a_full_queue_drops_new_events_without_waiting(receiver: Receiver) -> None:
    receiver.hang = True
    sender = WebhookSender(_settings(queue_size=2, timeout=30))
    try:
        for n in range(5):
            sender.emit("call.tool_called", {"id": "call_1"}, {"n": n}, [receiver.url])  # returns at once
        assert sender.pending == 2 and sender.dropped == 3
    finally:
        await sender.close()


@tool
async def lookup(order_id: str, call: CallInfo) -> dict[str, Any]:
    """Look up an order."""
    return {"order_id": order_id, "customer": call.metadata.get("customer")}


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    call = FakeToolCall("lookup", '{"order_id": "7"}')
    reply = FakeReply(tool_call=call, follow_up=FakeReply(text="Done."))
    return {"replies": [reply], "transcripts": ["Where is order 7?"], "pace": 1.0}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {"tools": [lookup]}


@pytest.fixture
def gateway_settings(fake_voicelive: FakeVoiceLive, receiver: Receiver) -> dict[str, Any]:
    return {
        "voicelive": fake_voicelive.settings(proactive_greeting_enabled=True),
        "gateway": GatewaySettings(outbound_allowed=["sip:*@127.0.0.1"]),
        "webhooks": _settings(urls=[receiver.url]),
    }


async def test_a_placed_call_reports_its_lifecycle_signed_and_in_order(
    gateway: Gateway, sip_phone: SipPhone, receiver: Receiver
) -> None:
    context = CallContext.new({"customer": "dana"})
    placing = asyncio.ensure_future(gateway.call(sip_phone.uri, context=context))
    phone_call = await sip_phone.answer_next()
    session: CallSession = await placing
    await phone_call.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)
    await phone_call.play(_speech(0.6))
    await receiver.wait_for(3)  # started, answered, tool_called
    await phone_call.hangup()
    await session.wait_ended(timeout=10)
    events = await receiver.wait_for(4)

    assert receiver.types == ["call.started", "call.answered", "call.tool_called", "call.ended"]
    assert receiver.bad_signatures == 0
    assert {event["call"]["id"] for event in events} == {context.id}
    assert all(event["call"]["metadata"] == {"customer": "dana"} for event in events)
    tool_called = events[2]["data"]
    assert tool_called["name"] == "lookup" and tool_called["result"] == {"order_id": "7", "customer": "dana"}
    summary = events[3]["data"]["summary"]
    assert summary["direction"] == "outbound" and summary["end_reason"] == "bye"
    assert [line["role"] for line in summary["transcript"]][:1] == ["agent"]
    assert events[1]["call"]["sip_call_id"] == session.call.call_id


async def test_a_receiver_that_never_answers_does_not_hold_up_calls(
    gateway: Gateway, sip_phone: SipPhone, receiver: Receiver
) -> None:
    receiver.hang = True
    sender = gateway.webhooks
    assert sender is not None
    for _ in range(2):  # one call after another, both while the first webhook is still unanswered
        phone_call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
        session = await gateway.next_call()
        await phone_call.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)
        await phone_call.hangup()
        summary = await session.wait_ended(timeout=10)
        assert summary.first_agent_audio_ms is not None
    assert receiver.requests == 1 and sender.delivered == 0
    assert sender.pending == 6  # started, answered, ended of each call: queued behind the hung request
    await sender.close()


def test_the_documented_verification_snippet_accepts_our_signature_only() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "outbound.md").read_text()
    code = re.search(r'```python title="verify_webhook.py"\n(.*?)```', page, re.DOTALL)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    body = b'{"type":"call.ended"}'
    header = sign(SECRET.encode(), int(time.time()), body)
    assert namespace["verify_webhook"](SECRET.encode(), header, body)
    assert not namespace["verify_webhook"](SECRET.encode(), header, body + b" ")
    assert not namespace["verify_webhook"](b"wrong", header, body)


async def test_answering_machine_detection_reports_its_verdict_between_answered_and_ended(
    gateway: Gateway, sip_phone: SipPhone, receiver: Receiver
) -> None:
    placing = asyncio.ensure_future(gateway.call(sip_phone.uri, amd=AmdPolicy(machine_action="hangup")))
    phone_call = await sip_phone.answer_next()
    session: CallSession = await placing
    phone_call.play_nowait(np.zeros(8000 * 4, dtype=np.int16))  # a machine that says nothing at first
    await session.wait_ended(timeout=10)
    events = await receiver.wait_for(4)

    assert receiver.types == ["call.started", "call.answered", "call.amd", "call.ended"]
    verdict = {"status": "MACHINE", "cause": "INITIALSILENCE-2500-2500", "at_ms": 2500, "action": "hangup"}
    assert events[2]["data"] == verdict
    summary = events[3]["data"]["summary"]
    assert summary["end_reason"] == "amd-machine" and summary["amd"]["status"] == "MACHINE"
