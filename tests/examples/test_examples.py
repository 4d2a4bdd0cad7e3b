"""Smoke tests: every example runs against 127.0.0.1 and does what its docstring says."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from voicelive_sip.config import MediaSettings, Settings, SipSettings
from voicelive_sip.sip import Response, parse_message
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def test_sans_io_responder_answers_options_and_rejects_garbage() -> None:
    example = load("sans_io_responder")
    server, responder = await example.serve("127.0.0.1", 0)
    port = server.get_extra_info("sockname")[1]
    loop = asyncio.get_running_loop()
    client, protocol = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    here = client.get_extra_info("sockname")[1]
    try:
        options = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{here};branch=z9hG4bKex1;rport\r\n"
            f"From: <sip:t@127.0.0.1>;tag=x\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ex1\r\nCSeq: 1 OPTIONS\r\n"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        client.sendto(options, ("127.0.0.1", port))
        reply = parse_message(await asyncio.wait_for(protocol.received.get(), 5))
        assert isinstance(reply, Response) and reply.status_code == 200 and "OPTIONS" in reply.allow
        client.sendto(options.replace(b"OPTIONS sip", b"OPTIONS <sip"), ("127.0.0.1", port))
        bad = parse_message(await asyncio.wait_for(protocol.received.get(), 5))
        assert isinstance(bad, Response) and bad.status_code == 400
        assert responder.answered == 1
    finally:
        client.close()
        server.close()
        if responder.timer is not None:
            responder.timer.cancel()


async def _speak(call: Any) -> None:
    t = np.arange(int(8000 * 0.6)) / 8000
    await call.play((9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16))


def _settings(fake: FakeVoiceLive) -> Settings:
    return Settings(
        sip=SipSettings(port=0, local_address="127.0.0.1"),
        media=MediaSettings(address="127.0.0.1", port=41000, port_count=200),
        voicelive=fake.settings(proactive_greeting_enabled=True),
    )


async def test_order_status_gateway_answers_with_the_tool() -> None:
    example = load("order_status_gateway")
    script = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "1003"}'), follow_up=FakeReply(text="{output}")
    )
    async with (
        FakeVoiceLive(replies=[script], pace=1.0) as fake,
        SipPhone(media_port=42000) as phone,
        example.gateway(_settings(fake)) as gateway,
    ):
        call = await phone.call(f"sip:agent@127.0.0.1:{gateway.ua.address[1]}")
        await call.wait_for(lambda c: c.first_audio_time() is not None)
        await _speak(call)
        await fake.wait_for(lambda f: bool(f.function_outputs))
        await call.hangup()
    assert json.loads(fake.function_outputs[0]["output"]) == {"order_id": "1003", "status": "delivered"}
    assert fake.session_config["instructions"] == example.INSTRUCTIONS
    assert {t["name"] for t in fake.session_config["tools"]} >= {"order_status", "opening_hours", "hang_up"}


async def test_outbound_call_example_returns_the_summary() -> None:
    example = load("outbound_call")
    async with FakeVoiceLive(pace=1.0) as fake, SipPhone(media_port=42200) as phone:

        async def answer_then_hang_up() -> None:
            call = await phone.answer_next(timeout=10)
            await call.wait_for(lambda c: c.first_audio_time() is not None)
            await call.hangup()

        answering = asyncio.ensure_future(answer_then_hang_up())
        settings = _settings(fake)
        settings.gateway.outbound_allowed = [phone.uri]
        summary = await example.call(settings, phone.uri)
        await answering
    assert summary.direction == "outbound" and summary.end_reason == "bye"
    assert fake.session_config["instructions"] == example.INSTRUCTIONS


async def test_per_number_instructions_pick_the_line() -> None:
    example = load("per_number_instructions")
    async with (
        FakeVoiceLive(pace=1.0) as fake,
        SipPhone(media_port=42400) as phone,
        example.gateway(_settings(fake)) as gateway,
    ):
        call = await phone.call(f"sip:+49301234@127.0.0.1:{gateway.ua.address[1]}")
        await call.wait_for(lambda c: c.first_audio_time() is not None)
        await call.hangup()
    assert fake.session_config["instructions"].startswith("Du bist der Support-Assistent")
    assert fake.session_config["voice"]["name"] == "de-DE-KatjaNeural"


def test_the_example_pytest_test_passes() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES / "test_my_voice_agent.py"),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_the_external_example_project_passes_on_its_own() -> None:
    """examples/my_voice_agent: its own pyproject (asyncio_mode, ports), its own @tool, its own test."""
    project = EXAMPLES / "my_voice_agent"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
