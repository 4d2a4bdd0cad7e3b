"""AMD on real calls: a voicemail callee gets the message after its beep, then BYE; a person, the agent."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest

from voicelive_sip import Gateway
from voicelive_sip.amd import AmdParameters, AmdPolicy
from voicelive_sip.bridge import CallSession
from voicelive_sip.call_api import CallApi
from voicelive_sip.call_events import AmdDetected
from voicelive_sip.config import AmdSettings, GatewaySettings
from voicelive_sip.dialer import Dialer
from voicelive_sip.http import ObservabilityServer
from voicelive_sip.testing import FakeVoiceLive, SipPhone
from voicelive_sip.testing.amd_samples import beep
from voicelive_sip.testing.phone import render_sentence

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TOKEN = "amd-token"
MESSAGE = "Hi Dana, this is the clinic reminding you of your visit tomorrow at ten."


def _said(text: str) -> np.ndarray:
    pcm = render_sentence(text, voice="en-us", speed=170)
    assert pcm is not None
    return pcm


@pytest.fixture
def gateway_settings(fake_voicelive: FakeVoiceLive) -> dict[str, Any]:
    return {
        "voicelive": fake_voicelive.settings(proactive_greeting_enabled=True),
        "gateway": GatewaySettings(outbound_allowed=["sip:*@127.0.0.1"]),
        "amd": AmdSettings(enabled=True, machine_action="voicemail", voicemail_message="Default message."),
    }


async def test_a_voicemail_callee_hears_the_message_only_after_its_beep_then_the_gateway_hangs_up(
    gateway: Gateway, sip_phone: SipPhone, fake_voicelive: FakeVoiceLive
) -> None:
    policy = AmdPolicy(AmdParameters(), machine_action="voicemail", voicemail_message=MESSAGE)
    placing = asyncio.ensure_future(gateway.call(sip_phone.uri, amd=policy))
    phone_call = await sip_phone.answer_next()
    session: CallSession = await placing
    loop = asyncio.get_running_loop()
    greeting = _said(
        "Hi, you've reached Dana. I can't take your call. Please leave a message after the tone."
    )
    await phone_call.play(
        np.concatenate([np.zeros(2400, dtype=np.int16), greeting, np.zeros(3200, np.int16)])
    )
    greeting_sent = loop.time()
    await phone_call.play(beep(500, 1000.0))
    beep_sent = loop.time()  # the last frame of the beep has left the phone
    phone_call.play_nowait(np.zeros(8000 * 20, dtype=np.int16))  # the machine records (silence)

    ended = await phone_call.wait_ended()
    summary = await session.wait_ended(timeout=10)
    assert ended.by == "remote"  # the gateway hung up
    assert summary.end_reason == "voicemail-left"
    # The callee's recording: nothing from the agent while the greeting and the beep played, then the message.
    assert phone_call.energy_dbfs(end=beep_sent) < -50
    first = phone_call.first_audio_time()
    assert first is not None and first > beep_sent > greeting_sent
    amd = summary.amd
    assert amd is not None
    assert (amd.status, amd.action, amd.greeting_ended) == ("MACHINE", "voicemail", "beep")
    assert amd.beep_hz == pytest.approx(1000.0, abs=20)
    # The model was asked for exactly this message, and never heard the machine.
    creates = [e for e in fake_voicelive.received_events if e.get("type") == "response.create"]
    assert len(creates) == 1 and MESSAGE in creates[0]["response"]["instructions"]
    assert fake_voicelive.appended_audio == b""
    detected = await session.wait_for(AmdDetected)
    assert detected.status == "MACHINE"
    metrics = gateway.metrics.render()[0].decode()
    assert 'voicelive_sip_amd_results_total{result="MACHINE"} 1.0' in metrics


async def test_a_machine_is_hung_up_on_when_the_policy_says_so(gateway: Gateway, sip_phone: SipPhone) -> None:
    placing = asyncio.ensure_future(gateway.call(sip_phone.uri, amd=AmdPolicy(machine_action="hangup")))
    phone_call = await sip_phone.answer_next()
    session: CallSession = await placing
    phone_call.play_nowait(_said("You have reached the voicemail of Sarah Miller. Please leave a message."))
    ended = await phone_call.wait_ended()
    summary = await session.wait_ended(timeout=10)
    assert ended.by == "remote" and summary.end_reason == "amd-machine"
    assert summary.amd is not None and summary.amd.action == "hangup"
    assert phone_call.first_audio_time() is None  # not a sound from the agent


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[ObservabilityServer]:
    dialer = Dialer(gateway)
    server = ObservabilityServer(
        gateway.metrics, ready=gateway.readiness, host="127.0.0.1", port=0, calls=CallApi(dialer, token=TOKEN)
    )
    await server.start()
    yield server
    await dialer.close()
    await server.stop()


async def test_a_person_gets_the_normal_conversation_after_saying_hello(
    api: ObservabilityServer, gateway: Gateway, sip_phone: SipPhone, fake_voicelive: FakeVoiceLive
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"to": sip_phone.uri, "amd": {"machine_action": "voicemail", "voicemail_message": MESSAGE}}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        async with client.post(f"{api.url}/calls", json=body, headers=headers) as response:
            assert response.status == 202
            call_id = (await response.json())["id"]
        phone_call = await sip_phone.answer_next()
        loop = asyncio.get_running_loop()
        await phone_call.play(np.concatenate([np.zeros(2400, np.int16), _said("Hello?")]))
        hello_sent = loop.time()
        phone_call.play_nowait(np.zeros(8000 * 10, dtype=np.int16))  # then waits for the caller to speak
        # The agent's greeting reaches the person once AMD has heard the silence after "Hello?".
        await phone_call.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)
        first = phone_call.first_audio_time()
        assert first is not None and first > hello_sent
        async with client.get(f"{api.url}/calls/{call_id}", headers=headers) as response:
            state = await response.json()
        assert state["state"] == "answered"
        assert state["amd"]["status"] == "HUMAN" and state["amd"]["action"] == "conversation"
        assert state["amd"]["cause"].startswith("HUMAN-")
        # The model heard the person's "Hello?" (held during the analysis, then passed on).
        assert len(fake_voicelive.appended_audio) > 0
        assert not phone_call.ended
        await phone_call.hangup()


async def test_amd_off_for_one_call_goes_straight_to_the_agent(gateway: Gateway, sip_phone: SipPhone) -> None:
    placing = asyncio.ensure_future(gateway.call(sip_phone.uri, amd=False))
    phone_call = await sip_phone.answer_next()
    session: CallSession = await placing
    await phone_call.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)  # greeting, no wait
    assert session.summary.amd is None
    await phone_call.hangup()


async def test_the_amd_field_is_validated(api: ObservabilityServer, sip_phone: SipPhone) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        for amd in ({"action": "voicemail"}, {"machine_action": "fax"}, "yes", {"voicemail_message": ""}):
            body = {"to": sip_phone.uri, "amd": amd}
            async with client.post(f"{api.url}/calls", json=body, headers=headers) as response:
                assert response.status == 422, amd
                assert (await response.json())["error"] == "invalid_request"


async def test_without_holding_the_agent_talks_at_once_and_stops_for_a_machine(
    gateway: Gateway, sip_phone: SipPhone, fake_voicelive: FakeVoiceLive
) -> None:
    policy = AmdPolicy(machine_action="hangup", hold_agent_audio=False)
    placing = asyncio.ensure_future(gateway.call(sip_phone.uri, amd=policy))
    phone_call = await sip_phone.answer_next()
    session: CallSession = await placing
    # The greeting starts while AMD listens; the callee's silence makes it a machine after 2.5 s.
    phone_call.play_nowait(np.zeros(8000 * 6, dtype=np.int16))
    await phone_call.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)
    ended = await phone_call.wait_ended()
    summary = await session.wait_ended(timeout=10)
    assert ended.by == "remote" and summary.end_reason == "amd-machine"
    assert summary.amd is not None and summary.amd.cause == "INITIALSILENCE-2500-2500"
