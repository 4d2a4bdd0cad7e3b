"""Calls on agent profiles and Foundry agent sessions, end to end: SipPhone, Gateway, FakeVoiceLive."""

from __future__ import annotations

import asyncio
import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from voicelive_sip import Gateway, StartupError, tool
from voicelive_sip.bridge import CallSummary
from voicelive_sip.codecs import g711
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings, VoiceLiveSettings
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone
from voicelive_sip.voicelive import VoiceLiveSession

_ports = itertools.count(0)
ran: list[str] = []


def _media_port() -> int:
    return 36000 + (next(_ports) % 40) * 100


@tool
async def order_status(order_id: str) -> dict[str, str]:
    """Look up the status of an order."""
    ran.append("order_status")
    return {"order_id": order_id, "status": "shipped"}


@tool
async def open_ticket(summary: str) -> dict[str, str]:
    """Open a support ticket."""
    ran.append("open_ticket")
    return {"ticket": "T-1"}


PROFILES = """\
[profiles.sales]
model = "gpt-sales"
voice = "alloy"
greeting = "Sales line, hello."
tools = ["order_status"]

[profiles.support]
model = "gpt-support"
voice = "en-US-JennyNeural"
greeting = "Support line, hi."
tools = ["open_ticket"]

[[routes]]
called = "+15550100"
profile = "sales"

[[routes]]
called = "+15550200"
profile = "support"
"""


def _tone(seconds: float, freq: float = 700.0) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return np.asarray(np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)), dtype=np.int16)


def _settings(fake: FakeVoiceLive, **groups: Any) -> Settings:
    values: dict[str, Any] = {
        "sip": SipSettings(port=0, local_address="127.0.0.1", t1=0.1, server=None, register_enabled=False),
        "media": MediaSettings(address="127.0.0.1", port=_media_port(), port_count=100),
        "voicelive": fake.settings(proactive_greeting_enabled=True),
        "gateway": GatewaySettings(),
    }
    return Settings(**{**values, **groups})


def _uri(gateway: Gateway, user: str) -> str:
    return f"sip:{user}@127.0.0.1:{gateway.ua.address[1]}"


async def _summaries(gateway: Gateway, count: int) -> list[CallSummary]:
    for _ in range(500):
        if len(gateway.summaries) >= count:
            return gateway.summaries
        await asyncio.sleep(0.02)
    raise AssertionError("the calls did not finish")


async def test_two_numbers_get_their_own_profile_greeting_voice_and_tools(tmp_path: Path) -> None:
    ran.clear()
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    # Each model calls order_status once the caller has spoken: only the sales profile may run it.
    ask = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "42"}'), follow_up=FakeReply("Result {output}")
    )
    fake = FakeVoiceLive(pace=0.1, replies={"gpt-sales": [ask], "gpt-support": [ask]})
    async with fake:
        settings = _settings(fake, gateway=GatewaySettings(profiles_file=str(path)))
        gateway = Gateway(settings, tools=[order_status, open_ticket])
        async with gateway, SipPhone(media_port=_media_port()) as phone:
            for outputs, number in enumerate(("+15550100", "+15550200"), 1):
                call = await phone.call(_uri(gateway, number))
                session = await gateway.next_call()
                await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
                await call.play(_tone(0.6))
                await call.play(np.zeros(8000 * 1, dtype=np.int16))  # the silence that ends the turn
                await fake.wait_for(lambda f, n=outputs: len(f.function_outputs) >= n)  # type: ignore[misc]
                await call.hangup()
                await session.wait_ended(timeout=10)
        sales, support = await _summaries(gateway, 2)
    by_model = {c.query["model"]: c for c in fake.connections}
    sales_conn, support_conn = by_model["gpt-sales"], by_model["gpt-support"]
    assert (sales.profile, support.profile) == ("sales", "support")
    assert sales_conn.tool_names == ["order_status", "hang_up"]
    assert support_conn.tool_names == ["open_ticket", "hang_up"]
    assert sales_conn.session["voice"] == {"type": "openai", "name": "alloy"}
    assert support_conn.session["voice"] == {"type": "azure-standard", "name": "en-US-JennyNeural"}
    assert _greeting(sales_conn) == "Sales line, hello." and _greeting(support_conn) == "Support line, hi."
    assert sales.transcript[-1].text.startswith("Result") and support.transcript[-1].text.startswith("Result")
    # order_status ran for the sales call only; the support model asking for it got an unknown-tool error.
    assert ran == ["order_status"]
    assert json.loads(sales_conn.function_outputs[0]["output"])["status"] == "shipped"
    assert json.loads(support_conn.function_outputs[0]["output"])["error"]["type"] == "unknown_tool"


def _greeting(conn: Any) -> str:
    """The text the gateway had the agent say first (the pre-generated greeting of the first reply)."""
    first = next(e for e in conn.events if e.get("type") == "response.create")
    (part,) = first["response"]["pre_generated_assistant_message"]["content"]
    return str(part["text"])


async def test_sighup_with_a_bad_file_keeps_the_profiles_and_logs_the_line(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    async with FakeVoiceLive() as fake:
        gateway = Gateway(
            _settings(fake, gateway=GatewaySettings(profiles_file=str(path))),
            tools=[order_status, open_ticket],
        )
        async with gateway:
            before = gateway.resolved_profiles
            path.write_text(PROFILES.replace('tools = ["open_ticket"]', 'tools = ["open_ticket", "nope"]'))
            with capture_logs() as logs:
                assert gateway.reload_profiles() is False
            assert gateway.resolved_profiles is before
            (failed,) = [e for e in logs if e["event"] == "gateway.profiles_reload_failed"]
            assert failed["problems"][0].startswith(f"{path}:11:") and "'nope'" in failed["problems"][0]
            assert failed["kept"] == ["sales", "support"]
            path.write_text(PROFILES.replace("[profiles.support]", "[profiles.help]").replace(
                'profile = "support"', 'profile = "help"'
            ))  # fmt: skip
            assert gateway.reload_profiles() is True
            assert sorted(gateway.resolved_profiles) == ["help", "sales"]


AGENT_GREETING = "This is the support agent speaking, and it keeps talking for a good few seconds now."


async def test_an_agent_call_opens_on_the_agent_sends_no_instructions_and_barge_in_works() -> None:
    fake = FakeVoiceLive(pace=1.0, greeting={"support-agent": AGENT_GREETING})
    summaries: list[CallSummary] = []
    async with fake:
        agent = fake.settings(
            agent_name="support-agent",
            agent_project="contoso",
            agent_version="7",
            proactive_greeting_enabled=True,
        )
        gateway = Gateway(
            _settings(fake, voicelive=agent),
            tools=[order_status],
            credential=fake.token_credential(),
            on_summary=summaries.append,
        )
        async with gateway, SipPhone(media_port=_media_port()) as phone:
            call = await phone.call(_uri(gateway, "agent"))
            session = await gateway.next_call()
            await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
            await asyncio.sleep(1.0)
            spoken = _tone(0.8, 600.0)
            playing = call.play_nowait(spoken)  # the caller talks over the agent
            await fake.wait_for(lambda f: bool(f.truncations), timeout=5)
            await playing
            await call.hangup()
            await session.wait_ended(timeout=10)
    (conn,) = fake.connections
    assert conn.agent == "support-agent"
    assert {k: conn.query.get(k) for k in ("agent-name", "agent-project-name", "agent-version", "model")} == {
        "agent-name": "support-agent",
        "agent-project-name": "contoso",
        "agent-version": "7",
        "model": None,
    }
    assert conn.headers["Authorization"] == "Bearer test-token" and "api-key" not in conn.headers
    (update,) = conn.session_updates
    assert not {"instructions", "tools", "tool_choice", "model", "temperature"} & set(update)
    assert update["input_audio_format"] == "g711_ulaw" and update["turn_detection"]["type"] == "server_vad"
    # The agent greeted in its own words: our generic greeting was not put in its mouth.
    (greet,) = [e for e in conn.events if e.get("type") == "response.create"][:1]
    assert "pre_generated_assistant_message" not in (greet.get("response") or {})
    assert g711.ulaw_encode(spoken) in fake.appended_audio  # caller audio reached the agent
    assert call.first_audio_time() is not None  # and the agent's audio reached the caller
    (summary,) = summaries
    assert summary.barge_ins == 1 and fake.truncations and fake.cancellations
    assert summary.transcript[0].interrupted and AGENT_GREETING.startswith(summary.transcript[0].text)
    assert summary.agent == "support-agent"
    assert summary.conversation_id == conn.conversation_id and summary.conversation_id is not None


async def test_a_dropped_agent_session_resumes_its_conversation_without_replaying_it() -> None:
    async with FakeVoiceLive() as fake:
        settings = fake.settings(agent_name="a", agent_project="p", reconnect_initial_delay=0.01)
        session = VoiceLiveSession(settings, credential=fake.token_credential())
        await session.connect()
        try:
            await session.add_user_text("My order number is 42.", respond=False)
            await fake.wait_for(lambda f: len(f.connections[0].items) == 1)
            for _ in range(100):
                if session.conversation_id is not None:
                    break
                await asyncio.sleep(0.01)
            assert session.conversation_id == fake.connections[0].conversation_id
            await fake.drop()
            await fake.wait_for(lambda f: len(f.connections) == 2 and bool(f.connections[1].session_updates))
        finally:
            await session.close()
    second = fake.connections[1]
    assert second.query["conversation-id"] == fake.connections[0].conversation_id
    assert second.conversation_id == fake.connections[0].conversation_id
    assert not [e for e in second.events if e.get("type") == "conversation.item.create"]  # not said twice


async def test_an_api_key_alone_does_not_start_an_agent_gateway(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
        "AZURE_USERNAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.azure from `az login`
    settings = Settings(
        voicelive=VoiceLiveSettings(
            endpoint="https://r.cognitiveservices.azure.com", api_key="k", agent_name="a", agent_project="p"
        )
    )
    with pytest.raises(StartupError) as info:
        await Gateway(settings).start()
    (problem,) = info.value.problems
    assert problem.startswith("VOICE_LIVE_AGENT_NAME:") and "Entra ID" in problem
    assert "AZURE_VOICELIVE_API_KEY is not accepted" in problem
    # A profile on an agent is checked the same way, naming the profile.
    path = tmp_path / "profiles.toml"
    path.write_text(textwrap.dedent('[profiles.helpdesk]\nagent = "a"\nproject = "p"\n'))
    settings = Settings(
        voicelive=VoiceLiveSettings(endpoint="https://r.cognitiveservices.azure.com", api_key="k"),
        gateway=GatewaySettings(profiles_file=str(path)),
    )
    with pytest.raises(StartupError) as info:
        await Gateway(settings).start()
    (problem,) = info.value.problems
    assert problem.startswith("GATEWAY_PROFILES_FILE: profile 'helpdesk': VOICE_LIVE_AGENT_NAME:")


async def test_the_fake_refuses_an_api_key_for_an_agent_session() -> None:
    from azure.core.credentials import AzureKeyCredential

    from voicelive_sip.errors import VoiceLiveAuthError

    async with FakeVoiceLive() as fake:
        settings = fake.settings(agent_name="a", agent_project="p")
        with pytest.raises(VoiceLiveAuthError):
            async with VoiceLiveSession(settings, credential=AzureKeyCredential("test-key")):
                pass
        assert fake.rejected_handshakes == 1
