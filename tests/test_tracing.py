"""OpenTelemetry: the span tree of one call (setup, turns, tool calls), and nothing at all without the API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from voicelive_sip import CallInfo, Gateway, ToolCalled, tool
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone

ROOT = Path(__file__).resolve().parents[1]
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
seen: list[tuple[dict[str, str], Any]] = []


@tool
async def lookup(order_id: str, call: CallInfo) -> dict[str, str]:
    """Look up an order."""
    # The tool's own span: a child of the gateway's tool span, through the context the tool runs in.
    with PROVIDER.get_tracer("shop").start_as_current_span("shop.lookup") as span:
        seen.append((dict(call.trace_context), span.get_span_context()))
        return {"order_id": order_id, "status": "shipped"}


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    replies = [
        FakeReply(
            tool_call=FakeToolCall("lookup", '{"order_id": "5"}'), follow_up=FakeReply(text="It {output}.")
        )
    ]
    return {"replies": replies, "transcripts": ["Where is order 5?"], "pace": 1.0}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    def traced(session: Any) -> None:
        session.tracer_provider = PROVIDER  # the application's provider; None would use the global one

    return {"tools": [lookup], "on_session": traced}


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)


def _tree(spans: list[ReadableSpan]) -> list[tuple[str, str]]:
    names = {span.context.span_id: span.name for span in spans}
    return sorted((names.get(s.parent.span_id, "-") if s.parent else "-", s.name) for s in spans)


async def test_one_call_is_a_span_tree_of_setup_turn_and_tool(
    gateway: Gateway, sip_phone: SipPhone, fake_voicelive: FakeVoiceLive
) -> None:
    EXPORTER.clear()
    call = await sip_phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
    session = await gateway.next_call()
    await call.play(_speech(0.6))
    await session.wait_for(ToolCalled, timeout=15)
    await fake_voicelive.wait_for(lambda fake: len(fake.sent_at("response.done")) >= 3, timeout=15)
    await asyncio.sleep(0.3)
    await call.hangup()
    summary = await session.wait_ended(timeout=10)

    spans = list(EXPORTER.get_finished_spans())
    assert _tree(spans) == [
        ("-", "sip.call"),
        ("execute_tool lookup", "shop.lookup"),
        ("sip.call", "sip.call.setup"),
        ("sip.call", "voicelive.turn"),
        ("voicelive.turn", "execute_tool lookup"),
    ]
    by_name = {span.name: span for span in spans}
    root, turn, tool_span = by_name["sip.call"], by_name["voicelive.turn"], by_name["execute_tool lookup"]
    assert {span.context.trace_id for span in spans} == {root.context.trace_id}
    assert root.kind is trace.SpanKind.SERVER
    assert root.attributes is not None and root.attributes["sip.call_id"] == summary.call_id
    assert root.attributes["gen_ai.usage.output_tokens"] == summary.output_tokens
    assert tool_span.attributes is not None and tool_span.attributes["gen_ai.tool.name"] == "lookup"
    assert tool_span.attributes["gen_ai.operation.name"] == "execute_tool"
    assert turn.attributes is not None and turn.attributes["voicelive_sip.turn.answered"] is True
    assert turn.attributes["voicelive_sip.turn.total_ms"] == summary.turns[0].total_ms
    # The span's times are the summary's: the turn lasts its measured latency.
    assert turn.end_time is not None and turn.start_time is not None
    assert (turn.end_time - turn.start_time) / 1e6 == pytest.approx(summary.turns[0].total_ms, abs=0.2)
    # The tool got the trace context of its span (W3C traceparent) for calls it makes onwards.
    headers, context = seen[-1]
    assert headers["traceparent"].split("-")[1] == f"{context.trace_id:032x}"
    assert headers["traceparent"].split("-")[2] == f"{tool_span.context.span_id:016x}"


def test_without_the_api_tracing_is_a_no_op() -> None:
    # opentelemetry made unimportable (None in sys.modules): the import guard turns every span off.
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from voicelive_sip.tracing import CallTrace, tracing_available\n"
        "assert not tracing_available()\n"
        "t = CallTrace(0.0)\n"
        "t.call_started(0.0, 1.0, outbound=False, attributes={})\n"
        "with t.tool('x', 'c1', 1.0) as span: assert span is None\n"
        "assert t.context_headers() == {}\n"
        "t.call_ended(2.0, {})\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
