"""The gateway end to end on loopback: SipPhone ⇄ Gateway (UA + CallSession) ⇄ FakeVoiceLive."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicelive_sip.aio import CallFailed
from voicelive_sip.codecs import g711
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings, VoiceLiveSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone
from voicelive_sip.testing.fake_voicelive import FakeFaults

_ports = itertools.count(0)


def media_port() -> int:
    """Distinct even RTP port ranges per gateway and phone, so parallel objects never collide."""
    return 22000 + (next(_ports) % 60) * 200


def tone(seconds: float, freq: float = 1000.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return np.asarray(np.round(level * 32767 * np.sin(2 * np.pi * freq * t)), dtype=np.int16)


@asynccontextmanager
async def bridge(
    fake_options: dict[str, Any] | None = None,
    gateway_options: dict[str, Any] | None = None,
    voicelive_options: dict[str, Any] | None = None,
    sip_options: dict[str, Any] | None = None,
    **gateway_kwargs: Any,
) -> AsyncIterator[tuple[FakeVoiceLive, Gateway, SipPhone]]:
    options = {"pace": 1.0, **(fake_options or {})}
    async with FakeVoiceLive(**options) as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1", t1=0.1, **(sip_options or {})),
            media=MediaSettings(address="127.0.0.1", port=media_port(), port_count=100),
            voicelive=fake.settings(**{"proactive_greeting_enabled": True, **(voicelive_options or {})}),
            gateway=GatewaySettings(**(gateway_options or {})),
        )
        async with Gateway(settings, **gateway_kwargs) as gateway, SipPhone(media_port=media_port()) as phone:
            yield fake, gateway, phone


def target(gateway: Gateway) -> str:
    return f"sip:agent@127.0.0.1:{gateway.ua.address[1]}"


async def finished(gateway: Gateway, count: int = 1) -> None:
    for _ in range(250):
        if len(gateway.summaries) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the call session did not finish")


async def test_greeting_is_heard_and_caller_audio_reaches_voice_live_byte_for_byte() -> None:
    async with bridge() as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        start = call.first_audio_time()
        assert start is not None
        await asyncio.sleep(0.5)
        assert call.energy_dbfs(start, start + 0.5) > -25  # the greeting tone, far above silence
        spoken = tone(1.0, 1000.0)
        await call.play(spoken)
        await asyncio.sleep(0.3)
        await call.hangup()
        await finished(gateway)
    sent = g711.ulaw_encode(spoken)
    assert len(sent) == 8000
    assert sent in fake.appended_audio  # pass-through: not one byte changed on the way
    summary = gateway.summaries[0]
    assert summary.codec == "PCMU" and summary.end_reason == "bye" and summary.ended_by == "remote"
    assert summary.first_agent_audio_ms is not None and summary.packets_received > 0
    assert fake.connections[0].closed  # the caller's BYE closed Voice Live


async def test_barge_in_stops_the_agent_within_a_frame_and_truncates_at_what_was_heard() -> None:
    greeting = "This greeting goes on for about five seconds so that the caller can interrupt it."
    async with bridge({"greeting": greeting}) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        started = call.first_audio_time()
        assert started is not None
        await asyncio.sleep(1.0)
        call.play_nowait(tone(0.8, 600.0))  # the caller talks over the agent
        await fake.wait_for(lambda f: bool(f.truncations), timeout=5)
        await asyncio.sleep(0.5)
        await call.hangup()
        await finished(gateway)
    speech_started = fake.sent_at("input_audio_buffer.speech_started")[0]
    greeting_frames = [f for f in call.received if f.time >= started and _loud(f.payload)]
    last_greeting = max(f.time for f in greeting_frames)
    # The greeting stops reaching the phone within 100 ms of the fake's speech_started.
    assert last_greeting - speech_started <= 0.100
    heard_ms = len(greeting_frames) * 20
    (truncation,) = fake.truncations
    assert abs(truncation["audio_end_ms"] - heard_ms) <= 40
    assert fake.cancellations or fake.received_types.count("response.cancel") >= 1
    assert gateway.summaries[0].barge_ins == 1


def _loud(payload: bytes) -> bool:
    pcm = g711.ulaw_decode(payload).astype(np.float64)
    return bool(np.sqrt(np.mean(pcm**2)) > 300)


async def test_dtmf_reaches_the_application_and_the_model() -> None:
    digits: list[str] = []
    async with bridge(gateway_options={"dtmf_interdigit_ms": 100}, on_dtmf=digits.append) as (
        fake,
        gateway,
        phone,
    ):
        call = await phone.call(target(gateway))
        await call.send_dtmf("5")
        await call.send_dtmf("#", method="info")
        for _ in range(100):
            if len(digits) == 2:
                break
            await asyncio.sleep(0.05)
        await fake.wait_for(lambda f: _user_texts(f) != [], timeout=5)
        await call.hangup()
        await finished(gateway)
    assert digits == ["5", "#"]
    assert any("5" in text and "#" in text for text in _user_texts(fake))


def _user_texts(fake: FakeVoiceLive) -> list[str]:
    texts = []
    for event in fake.received_events:
        item = event.get("item") or {}
        if event.get("type") == "conversation.item.create" and item.get("role") == "user":
            texts += [part.get("text", "") for part in item.get("content", [])]
    return texts


async def test_hold_and_resume_keep_one_voice_live_connection() -> None:
    async with bridge() as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await call.hold()
        await asyncio.sleep(0.3)
        await call.unhold()
        resumed = asyncio.get_running_loop().time()
        call.play_nowait(tone(0.5))
        await asyncio.sleep(0.8)
        assert call.received and max(f.time for f in call.received) > resumed  # media flows again
        await call.hangup()
        await finished(gateway)
    assert fake.connection_count == 1
    assert gateway.summaries[0].voicelive_reconnects == 0


async def test_voice_live_drop_mid_call_is_restored_without_losing_caller_audio() -> None:
    faults = FakeFaults(close_after_s=1.0)
    async with bridge({"faults": faults}) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        spoken = tone(2.0, 700.0)
        await call.play(spoken)  # spans the drop at 1 s
        await fake.wait_for(lambda f: f.connection_count >= 2, timeout=5)
        await asyncio.sleep(0.5)
        assert not call.ended
        await call.hangup()
        await finished(gateway)
    sent = g711.ulaw_encode(spoken)
    received = fake.appended_audio
    missing = [i for i in range(0, len(sent), 160) if sent[i : i + 160] not in received]
    assert missing == []  # every caller frame reached Voice Live, across both connections
    assert gateway.summaries[0].voicelive_reconnects == 1


async def test_hang_up_tool_lets_the_goodbye_play_then_sends_bye() -> None:
    reply = FakeReply(text="Goodbye!", tool_call=FakeToolCall("hang_up", "{}"))
    async with bridge({"replies": [reply], "greeting": "Hi."}) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await asyncio.sleep(0.4)
        await call.play(tone(0.6))  # a caller turn: the fake answers with the hang_up tool call
        ended = await asyncio.wait_for(call.wait_ended(), 10)
        await finished(gateway)
    assert ended.by == "remote" and ended.reason == "bye"
    assert gateway.summaries[0].end_reason == "agent-hangup"
    assert fake.function_outputs and fake.function_outputs[0]["output"] == '{"ok": true}'


async def test_unreachable_voice_live_rejects_the_call_with_503() -> None:
    async with FakeVoiceLive() as fake:
        unreachable = fake.settings(endpoint="http://127.0.0.1:9", connect_timeout=2.0)
    settings = Settings(
        sip=SipSettings(port=0, local_address="127.0.0.1", t1=0.1),
        media=MediaSettings(address="127.0.0.1", port=media_port(), port_count=100),
        voicelive=unreachable,
    )
    async with Gateway(settings) as gateway, SipPhone(media_port=media_port()) as phone:
        with pytest.raises(CallFailed) as failed:
            await phone.call(target(gateway))
        assert failed.value.status_code == 503


async def test_recording_is_a_stereo_wav_with_both_sides(tmp_path: Path) -> None:
    uploaded: list[Path] = []
    options = {"recording_dir": str(tmp_path)}
    async with bridge(gateway_options=options, on_recording=uploaded.append) as (_fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await call.play(tone(1.0, 1000.0))
        await call.hangup()
        await finished(gateway)
    (path,) = uploaded
    assert gateway.summaries[0].recording == path
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    caller, agent = frames[:, 0].astype(np.float64), frames[:, 1].astype(np.float64)
    assert np.sqrt(np.mean(caller**2)) > 100 and np.sqrt(np.mean(agent**2)) > 100


async def test_outbound_call_from_the_agent() -> None:
    async with bridge(gateway_options={"outbound_allowed": ["sip:*@127.0.0.1"]}) as (_fake, gateway, phone):
        answering = asyncio.ensure_future(phone.answer_next(timeout=5))
        session = await gateway.call(phone.uri)
        call = await answering
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        assert session.summary.direction == "outbound"
        await call.hangup()
        await finished(gateway)
    assert gateway.summaries[0].direction == "outbound"


async def test_metrics_and_readiness_follow_the_calls() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with bridge() as (_fake, gateway, phone):
        ready, details = gateway.readiness()
        assert ready and details["draining"] is False
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await call.hangup()
        await finished(gateway)
        payload, _ = gateway.metrics.render()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(payload.decode())
            for s in family.samples
        }
        assert samples[("voicelive_sip_calls_completed_total", (("outcome", "bye"),))] == 1
        assert samples[("voicelive_sip_active_calls", ())] == 0
        gateway.ua.draining = True
        assert gateway.readiness()[0] is False


@pytest.mark.parametrize(("status", "outcome"), [(200, "transferred"), (603, "bye")])
async def test_transfer_call_tool_sends_refer_to_the_caller(status: int, outcome: str) -> None:
    reply = FakeReply(
        text="Let me transfer you.",
        tool_call=FakeToolCall("transfer_call", '{"target": "sip:desk@127.0.0.1"}'),
    )
    options = {"transfer_tool": True, "transfer_allowed": ["sip:desk@127.0.0.1"]}
    async with bridge({"replies": [reply], "greeting": "Hi."}, options) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        call.transfer_status = status
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await asyncio.sleep(0.4)
        await call.play(tone(0.6))  # a caller turn: the fake's reply asks for the transfer
        await call.wait_for(lambda c: bool(c.transfer_requests), timeout=10)
        assert call.transfer_requests == ["sip:desk@127.0.0.1"]
        if status == 200:
            ended = await asyncio.wait_for(call.wait_ended(), 10)  # the transferor leaves (RFC 5589)
            assert ended.by == "remote"
        else:
            await fake.wait_for(lambda f: len(f.function_outputs) == 1, timeout=5)
            assert '"ok": false' in fake.function_outputs[0]["output"]  # the model hears it failed
            await call.hangup()
        await finished(gateway)
    assert gateway.summaries[0].end_reason == outcome


@pytest.mark.parametrize(
    ("allowed", "reason"),
    [
        (["sip:desk@127.0.0.1"], "transfer to sip:desk@127.0.0.1.evil.example is not allowed"),
        ([], "transfers are not configured on this line"),
    ],
)
async def test_transfer_call_tool_refuses_a_target_outside_the_allow_list(
    allowed: list[str], reason: str
) -> None:
    reply = FakeReply(
        text="Let me transfer you.",
        tool_call=FakeToolCall("transfer_call", '{"target": "sip:desk@127.0.0.1.evil.example"}'),
    )
    options = {"transfer_tool": True, "transfer_allowed": allowed}
    async with bridge({"replies": [reply], "greeting": "Hi."}, options) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await asyncio.sleep(0.4)
        await call.play(tone(0.6))  # a caller turn: the fake's reply asks for the transfer
        await fake.wait_for(lambda f: len(f.function_outputs) == 1, timeout=10)
        assert json.loads(fake.function_outputs[0]["output"]) == {"ok": False, "reason": reason}
        assert call.transfer_requests == [] and not call.ended  # no REFER; the call goes on
        await call.hangup()
        await finished(gateway)
    assert gateway.summaries[0].end_reason == "bye"


async def test_pcm16_mode_goes_through_the_resampler() -> None:
    async with bridge(voicelive_options={"audio_format": "pcm16_24000"}) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        start = call.first_audio_time()
        assert start is not None
        await asyncio.sleep(0.5)
        assert call.energy_dbfs(start, start + 0.5) > -25  # the 24 kHz greeting, resampled to 8 kHz G.711
        await call.play(tone(0.5, 1000.0))
        await call.hangup()
        await finished(gateway)
    assert fake.session_config["input_audio_format"] == "pcm16"
    pcm = np.frombuffer(fake.appended_audio, dtype=np.int16)
    assert len(pcm) > 24000 * 0.4 and np.abs(pcm).max() > 3000  # caller audio arrived at 24 kHz


async def test_voice_live_failing_for_good_ends_the_call_with_bye() -> None:
    options = {"reconnect_attempts": 2, "reconnect_initial_delay": 0.05, "connect_timeout": 1.0}
    async with bridge(voicelive_options=options) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await fake.stop()  # the service goes away and stays away: every reconnect fails
        ended = await asyncio.wait_for(call.wait_ended(), 15)
        await finished(gateway)
    assert ended.by == "remote" and ended.reason == "bye"
    assert gateway.summaries[0].end_reason == "voicelive-failed"


async def test_drain_refuses_new_calls_then_ends_the_rest() -> None:
    async with bridge() as (_fake, gateway, phone), SipPhone(media_port=media_port()) as late:
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        draining = asyncio.ensure_future(gateway.drain(timeout=1.0))
        await asyncio.sleep(0.1)
        with pytest.raises(CallFailed) as refused:
            await late.call(target(gateway))
        assert refused.value.status_code == 503  # new INVITEs are turned away while draining
        assert not call.ended  # the call in progress carries on...
        ended = await asyncio.wait_for(call.wait_ended(), 10)  # ...until the drain timeout
        assert ended.by == "remote"
        await asyncio.wait_for(draining, 10)
    assert gateway.summaries[0].end_reason == "bye"


async def test_gateway_added_latency_is_observed_both_ways() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with bridge() as (_fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        await asyncio.sleep(0.3)
        await call.hangup()
        await finished(gateway)
        payload, _ = gateway.metrics.render()
    counts = {
        s.labels["direction"]: s.value
        for family in text_string_to_metric_families(payload.decode())
        for s in family.samples
        if s.name == "voicelive_sip_gateway_latency_seconds_count"
    }
    assert counts["uplink"] > 10 and counts["downlink"] >= 1


async def test_the_gateway_leaves_the_garbage_collector_alone() -> None:
    # gc.freeze is process-wide: only `voicelive-sip serve --gc-freeze` (the application) may ask for it.
    settings = Settings(
        sip=SipSettings(port=0, local_address="127.0.0.1", t1=0.1),
        media=MediaSettings(address="127.0.0.1", port=media_port(), port_count=100),
        voicelive=VoiceLiveSettings(endpoint="http://127.0.0.1:9", api_key="unused"),  # no call is made
    )
    gc.unfreeze()
    async with Gateway(settings):
        assert gc.get_freeze_count() == 0


async def test_a_caller_who_hangs_up_while_voice_live_connects_holds_no_voice_live_session() -> None:
    # Voice Live takes 30 s to accept the WebSocket; the caller gives up after ringing briefly (CANCEL).
    async with bridge(fake_options={"faults": FakeFaults(handshake_delay_s=30.0)}) as (fake, gateway, phone):
        dialling = asyncio.create_task(phone.call(target(gateway)))
        for _ in range(250):
            if gateway.ua.active_calls:
                break
            await asyncio.sleep(0.02)
        dialling.cancel()
        with pytest.raises((asyncio.CancelledError, CallFailed)):
            await dialling
        # The gateway stops connecting at once: its call set-up ends long before the handshake would have.
        async with asyncio.timeout(10):
            while len(gateway._tasks) or gateway.ua.active_calls:
                await asyncio.sleep(0.02)
        assert gateway.sessions == set() and fake.connection_count == 0


async def test_outbound_calls_go_only_where_gateway_outbound_allowed_says() -> None:
    async with bridge(gateway_options={"outbound_allowed": ["sip:desk@127.0.0.1"]}) as (
        _fake,
        gateway,
        phone,
    ):
        for target_ in (phone.uri, "sip:desk@127.0.0.1.evil.example", "sip:10009005551234@127.0.0.1"):
            with pytest.raises(CallFailed) as refused:
                await gateway.call(target_)
            assert refused.value.status_code == 403
    async with bridge() as (_fake, gateway, phone):  # nothing allowed: nothing dialled
        with pytest.raises(CallFailed) as refused:
            await gateway.call(phone.uri)
        assert refused.value.status_code == 403 and gateway.ua.active_calls == 0
