"""Warm transfer end to end on loopback: a SipPhone caller, the gateway, the fake Voice Live, and a second
SipPhone as the person who is rung, briefed and connected (or does not answer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.e2e.test_gateway import bridge, finished, media_port, target, tone
from voicelive_sip.aio import IncomingCall
from voicelive_sip.bridge import CallSession
from voicelive_sip.call_events import TransferStep
from voicelive_sip.codecs import g711
from voicelive_sip.gateway import Gateway
from voicelive_sip.sip.replaces import ReplacesId, replaces_of
from voicelive_sip.sip.uri import SipUri, parse_uri
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone
from voicelive_sip.testing.phone import PhoneCall

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
SUMMARY = "Dana Smith wants a refund for order 42."
BRIEFING = "Hello, I have a caller for you who needs help with a refund for an order."


def strength(pcm: npt.NDArray[np.int16], freq: float) -> float:
    """The share of the signal's energy within 25 Hz of `freq` (0: none of it, 1: a pure tone)."""
    if len(pcm) < 800:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    total = float(spectrum.sum())
    return float(spectrum[np.abs(freqs - freq) <= 25].sum()) / total if total else 0.0


async def heard(call: PhoneCall, freq: float, since: float, timeout: float = 10.0) -> None:
    """Wait until `call` received at least half a second in which `freq` dominates, after `since`."""

    def has_tone(c: PhoneCall) -> bool:
        return strength(c.received_pcm(since), freq) > 0.5 and c.energy_dbfs(since) > -40

    await call.wait_for(has_tone, timeout=timeout)


def transfer_reply(person: SipPhone) -> FakeReply:
    arguments = json.dumps({"target": person.uri, "summary": SUMMARY})
    return FakeReply(
        text="One moment.",
        tool_call=FakeToolCall("warm_transfer", arguments),
        follow_up=FakeReply(text="I am sorry, nobody could take your call: {output}"),
    )


@asynccontextmanager
async def transfer_setup(
    caller_headers: tuple[tuple[str, str], ...] = (), **gateway_options: Any
) -> AsyncIterator[tuple[FakeVoiceLive, Gateway, PhoneCall, SipPhone, SipPhone]]:
    """A caller connected to the agent; the fake's next reply asks for a warm transfer to `person`.

    Yields the fake, the gateway, the caller's call, the person's phone and the caller's phone."""
    async with SipPhone(media_port=media_port(), user="desk") as person:
        options = {
            "warm_transfer_tool": True,
            "transfer_allowed": [person.uri],
            "warm_transfer_briefing_max_s": 10.0,
            **gateway_options,
        }
        fake_options = {"replies": [transfer_reply(person)], "greeting": BRIEFING}

        def traced(session: CallSession) -> None:
            session.tracer_provider = PROVIDER

        async with bridge(fake_options, options, on_session=traced) as (fake, gateway, phone):
            caller = await phone.call(target(gateway), headers=caller_headers)
            await caller.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
            await asyncio.sleep(0.3)
            yield fake, gateway, caller, person, phone


async def session_of(gateway: Gateway) -> CallSession:
    for _ in range(250):
        if gateway.sessions:
            return next(iter(gateway.sessions))
        await asyncio.sleep(0.02)
    raise AssertionError("no call session")


async def ports_released(gateway: Gateway) -> None:
    """The caller's and the person's RTP ports are back in the gateway's pool."""
    for _ in range(100):
        if not gateway.pool.in_use:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{gateway.pool.in_use} RTP ports still in use")


def steps(gateway: Gateway) -> list[str]:
    return [step.step for step in gateway.summaries[0].transfer_steps]


def transfer_spans() -> list[str]:
    """The spans under the warm_transfer tool's span, in the order they ended."""
    spans = EXPORTER.get_finished_spans()
    (tool_span,) = [span for span in spans if span.name == "execute_tool warm_transfer"]
    return [span.name for span in spans if span.parent and span.parent.span_id == tool_span.context.span_id]


async def test_the_person_is_rung_briefed_and_then_talks_with_the_caller_through_the_bridge() -> None:
    EXPORTER.clear()
    async with transfer_setup() as (fake, gateway, caller, person, _phone):
        session = await session_of(gateway)
        loop = asyncio.get_running_loop()
        await caller.play(tone(0.6))  # a caller turn: the fake's reply asks for the warm transfer
        desk = await person.answer_next(timeout=10)
        # The briefing: a second Voice Live conversation, with the summary, speaks to the person.
        await desk.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)
        briefing_start = desk.first_audio_time()
        assert briefing_start is not None
        await session.wait_for(TransferStep, lambda s: s.step == "bridged", timeout=20)
        assert desk.energy_dbfs(briefing_start, briefing_start + 0.5) > -25  # the briefing tone, not silence
        assert len(fake.connections) == 2
        briefing = fake.connections[1]
        prompts = [e["response"].get("instructions", "") for e in briefing.events
                   if e.get("type") == "response.create"]  # fmt: skip
        assert len(prompts) == 1 and SUMMARY in prompts[0]
        assert briefing.closed
        # Bridged: the caller's Voice Live session is freed; caller and person hear each other.
        await fake.wait_for(lambda f: f.connections[0].closed, timeout=5)
        since = loop.time()
        caller.play_nowait(tone(1.5, 1000.0))
        await heard(desk, 1000.0, since)
        since = loop.time()
        desk.play_nowait(tone(1.5, 600.0))
        await heard(caller, 600.0, since)
        assert not caller.ended and not desk.ended
        await caller.hangup()
        ended = await asyncio.wait_for(desk.wait_ended(), 10)  # either party hanging up ends both
        assert ended.by == "remote"
        await finished(gateway)
        await ports_released(gateway)
    summary = gateway.summaries[0]
    assert steps(gateway) == [
        "hold", "dialling", "ringing", "answered", "briefing", "briefed", "bridged", "ended",
    ]  # fmt: skip
    assert summary.transfer_steps[-2].detail == "PCMU/PCMU"  # same codec: bytes pass through untouched
    (called,) = summary.tool_calls
    assert called.name == "warm_transfer" and called.result == {"ok": True, "connected": "bridged"}
    # One OpenTelemetry span per step, children of the tool's span.
    assert transfer_spans() == [
        "warm_transfer.dial", "warm_transfer.briefing", "warm_transfer.hold", "warm_transfer.connect",
    ]  # fmt: skip


async def test_the_person_hanging_up_ends_the_callers_call_too() -> None:
    async with transfer_setup() as (_fake, gateway, caller, person, _phone):
        session = await session_of(gateway)
        await caller.play(tone(0.6))
        desk = await person.answer_next(timeout=10)
        await session.wait_for(TransferStep, lambda s: s.step == "bridged", timeout=20)
        await desk.hangup()
        ended = await asyncio.wait_for(caller.wait_ended(), 10)
        assert ended.by == "remote"
        await finished(gateway)
    assert gateway.summaries[0].end_reason == "transfer-target-hangup"
    assert steps(gateway)[-1] == "ended"


async def test_a_busy_person_hands_the_caller_back_to_the_agent_who_says_so() -> None:
    EXPORTER.clear()
    async with transfer_setup() as (fake, gateway, caller, person, _phone):
        session = await session_of(gateway)
        calls = person.ua.incoming_calls()
        await caller.play(tone(0.6))
        incoming = await asyncio.wait_for(anext(calls), 10)
        await incoming.reject(486)
        await calls.aclose()
        await session.wait_for(TransferStep, lambda s: s.step == "resumed", timeout=10)
        resumed = asyncio.get_running_loop().time()
        await fake.wait_for(lambda f: len(f.function_outputs) == 1, timeout=10)
        output = json.loads(fake.function_outputs[0]["output"])
        assert output["ok"] is False and output["status"] == 486 and "busy" in output["reason"]
        # The caller hears the agent again: its reply is louder (-15 dBFS) than the hold beep (-23 dBFS).
        await caller.wait_for(lambda c: c.first_audio_time(-18.0, after=resumed) is not None, timeout=10)
        # The agent speaks again (the fake's follow-up to the tool result), and hears the caller again.
        await fake.wait_for(lambda f: f.received_types.count("response.create") >= 2, timeout=10)
        before = len(fake.appended_audio)
        await caller.play(tone(0.4, 800.0))
        await fake.wait_for(lambda f: len(f.appended_audio) > before + 2000, timeout=5)
        await caller.hangup()
        await finished(gateway)
    assert steps(gateway) == ["hold", "dialling", "no_answer", "resumed"]
    assert transfer_spans() == ["warm_transfer.dial", "warm_transfer.hold"]
    (dial,) = [span for span in EXPORTER.get_finished_spans() if span.name == "warm_transfer.dial"]
    assert dial.attributes is not None and dial.attributes["sip.status_code"] == 486
    assert dial.attributes["error.type"] == "no_answer"
    assert gateway.summaries[0].transfer_steps[2].detail == "486"
    assert len(fake.connections) == 1  # no briefing without a person


async def test_nobody_answering_within_the_ring_timeout_returns_the_caller_after_hold_audio() -> None:
    async with transfer_setup(warm_transfer_ring_timeout=4.0) as (fake, gateway, caller, person, _phone):
        session = await session_of(gateway)
        calls = person.ua.incoming_calls()
        loop = asyncio.get_running_loop()
        await caller.play(tone(0.6))
        incoming = await asyncio.wait_for(anext(calls), 10)
        await incoming.ring()  # rings and rings
        held = loop.time()
        await heard(caller, 425.0, held)  # the default hold audio: a 425 Hz beep
        on_hold = tone(0.4, 700.0)
        await caller.play(on_hold)  # while on hold the agent does not hear the caller
        assert session.held
        await session.wait_for(TransferStep, lambda s: s.step == "resumed", timeout=10)
        assert g711.ulaw_encode(on_hold)[800:1600] not in fake.appended_audio
        await calls.aclose()
        await fake.wait_for(lambda f: len(f.function_outputs) == 1, timeout=10)
        output = json.loads(fake.function_outputs[0]["output"])
        assert output["ok"] is False and "did not take the call" in output["reason"]
        await caller.hangup()
        await finished(gateway)
    assert steps(gateway) == ["hold", "dialling", "ringing", "no_answer", "resumed"]
    assert incoming.ended  # the gateway cancelled the ringing call


async def test_a_warm_transfer_outside_the_allow_list_rings_nobody() -> None:
    async with SipPhone(media_port=media_port(), user="desk") as person:
        reply = transfer_reply(person)
        options = {"warm_transfer_tool": True, "transfer_allowed": ["sip:reception@127.0.0.1"]}
        async with bridge({"replies": [reply], "greeting": "Hi."}, options) as (fake, gateway, phone):
            caller = await phone.call(target(gateway))
            await caller.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
            await asyncio.sleep(0.3)
            await caller.play(tone(0.6))
            await fake.wait_for(lambda f: len(f.function_outputs) == 1, timeout=10)
            output = json.loads(fake.function_outputs[0]["output"])
            assert output == {"ok": False, "reason": f"transfer to {person.uri} is not allowed"}
            assert not person.calls
            await caller.hangup()
            await finished(gateway)
    assert gateway.summaries[0].transfer_steps == []


async def test_a_caller_who_hangs_up_while_the_person_rings_releases_the_person_too() -> None:
    async with transfer_setup() as (_fake, gateway, caller, person, _phone):
        session = await session_of(gateway)
        calls = person.ua.incoming_calls()
        await caller.play(tone(0.6))
        incoming = await asyncio.wait_for(anext(calls), 10)
        await incoming.ring()
        await session.wait_for(TransferStep, lambda s: s.step == "ringing", timeout=10)
        await caller.hangup()
        ended = await asyncio.wait_for(incoming.wait_ended(), 10)  # the gateway cancelled the person's call
        assert ended.by == "remote"
        await calls.aclose()
        await finished(gateway)
        await ports_released(gateway)
        assert session.transfer is None
    assert steps(gateway) == ["hold", "dialling", "ringing"]
    assert gateway.summaries[0].end_reason == "bye"


REPLACES = (("Supported", "replaces"),)


async def test_with_replaces_on_both_sides_the_caller_calls_the_person_and_the_gateway_leaves() -> None:
    """RFC 3891 end to end: the test plays each phone's application (the transferee dials with Replaces, the
    target swaps dialogs) on top of the SipPhones' SIP stacks; the gateway refers, then drops out."""
    async with transfer_setup(caller_headers=REPLACES) as (fake, gateway, caller, person, phone):
        session = await session_of(gateway)
        caller.transfer_status = 100  # the REFER is accepted; its outcome is reported below, once known
        loop = asyncio.get_running_loop()
        await caller.play(tone(0.6))
        desk = await person.answer_next(timeout=10, headers=REPLACES)
        await desk.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)  # the briefing
        await caller.wait_for(lambda c: bool(c.transfer_requests), timeout=20)
        # The transferee: INVITE the Refer-To's URI with its Replaces header (RFC 3891 §3, RFC 5589 §7).
        (refer_to,) = caller.transfer_requests
        uri = parse_uri(refer_to)
        assert isinstance(uri, SipUri)
        replaces = replaces_of(uri)
        assert replaces is not None
        calling = asyncio.ensure_future(
            phone.call(str(uri.with_headers(())), headers=[("Replaces", str(replaces))])
        )
        # The target: the INVITE names its dialog with the gateway; it answers and ends that dialog.
        direct = await person.answer_next(timeout=10)
        dialog = desk.call.dialog
        assert dialog is not None
        assert (replaces.call_id, replaces.to_tag, replaces.from_tag) == (
            dialog.call_id, dialog.local_tag, dialog.remote_tag,
        )  # fmt: skip
        header = (
            direct.call.request.headers.get("Replaces") if isinstance(direct.call, IncomingCall) else None
        )
        assert header is not None and ReplacesId.parse(header) == replaces
        await desk.hangup()
        new_call = await asyncio.wait_for(calling, 10)
        await caller.call.notify_transfer(200)  # the transfer worked: the gateway leaves (RFC 5589 §7)
        ended = await asyncio.wait_for(caller.wait_ended(), 10)
        assert ended.by == "remote"
        await finished(gateway)
        await ports_released(gateway)
        # Caller and person talk directly now, without the gateway.
        since = loop.time()
        new_call.play_nowait(tone(1.5, 1000.0))
        await heard(direct, 1000.0, since)
        since = loop.time()
        direct.play_nowait(tone(1.5, 600.0))
        await heard(new_call, 600.0, since)
        await new_call.hangup()
        await asyncio.wait_for(direct.wait_ended(), 10)
    summary = gateway.summaries[0]
    assert steps(gateway) == [
        "hold", "dialling", "ringing", "answered", "briefing", "briefed", "referred", "replaced",
    ]  # fmt: skip
    assert summary.end_reason == "transferred"
    assert summary.tool_calls[0].result == {"ok": True, "connected": "replaces"}
    assert all(connection.closed for connection in fake.connections)
    assert session.transfer is None


async def test_a_model_retrying_in_a_loop_rings_the_person_three_times_at_most() -> None:
    async with SipPhone(media_port=media_port(), user="desk") as person:
        # No follow-up: after each failed transfer the fake's next reply is the same tool call again.
        retrying = FakeReply(
            tool_call=FakeToolCall("warm_transfer", json.dumps({"target": person.uri, "summary": SUMMARY}))
        )
        options = {"warm_transfer_tool": True, "transfer_allowed": [person.uri]}
        async with bridge({"replies": [retrying], "greeting": "Hi."}, options) as (fake, gateway, phone):
            caller = await phone.call(target(gateway))
            await caller.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
            calls = person.ua.incoming_calls()
            await caller.play(tone(0.6))
            rung = 0
            while rung < 3:
                incoming = await asyncio.wait_for(anext(calls), 10)
                await incoming.reject(486)
                rung += 1
            await fake.wait_for(lambda f: len(f.function_outputs) >= 5, timeout=10)
            with contextlib.suppress(TimeoutError):  # nobody else is rung, however often the model asks
                await asyncio.wait_for(anext(calls), 1.0)
                raise AssertionError("the person was rung a fourth time")
            await calls.aclose()
            await caller.hangup()
            await finished(gateway)
    outputs = [json.loads(o["output"]) for o in fake.function_outputs]
    assert [o.get("status") for o in outputs[:3]] == [486, 486, 486]
    assert all(o["ok"] is False and "no more transfer attempts" in o["reason"] for o in outputs[3:])
