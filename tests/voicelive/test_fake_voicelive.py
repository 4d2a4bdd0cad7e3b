"""FakeVoiceLive on its own: handshake, typed parsing by the real SDK, audio sources, faults, CLI, plugin."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import sys
import wave
from pathlib import Path
from typing import Any, get_type_hints

import aiohttp
import numpy as np
import pytest
from azure.ai.voicelive import models
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.core.credentials import AzureKeyCredential

from voicelive_sip.codecs import g711
from voicelive_sip.testing import FakeFaults, FakeReply, FakeToolCall, FakeVoiceLive


def _tone(ms: int) -> bytes:
    t = np.arange(8 * ms) / 8000.0
    return g711.ulaw_encode((np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16))


def _required_fields(cls: type) -> list[str]:
    """Attributes the SDK model declares without Optional: the fake must always send them."""
    hints = get_type_hints(cls, vars(models), vars(models))
    return [
        name
        for name, hint in hints.items()
        if not name.startswith("_") and not any(s in str(hint) for s in ("None", "Optional"))
    ]


async def _recv_until(conn: VoiceLiveConnection, kind: str, seen: list[Any]) -> Any:
    async with asyncio.timeout(10):
        while True:
            event = await conn.recv()
            seen.append(event)
            if event.type == kind:
                return event


async def test_the_sdk_parses_every_event_into_its_typed_class() -> None:
    replies = [
        FakeReply(tool_call=FakeToolCall("lookup", '{"q": 1}'), follow_up=FakeReply(text="Found {output}.")),
        FakeReply(text="Anything else?"),
    ]
    faults = FakeFaults(error_on={"conversation.item.delete": "item_not_found"})
    seen: list[Any] = []
    async with (
        FakeVoiceLive(replies=replies, faults=faults) as fake,
        connect(endpoint=fake.endpoint, credential=AzureKeyCredential("test-key"), model="gpt-4o") as conn,
    ):
        await _recv_until(conn, "session.created", seen)
        await conn.session.update(
            session={
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 200},
                "input_audio_transcription": {"model": "whisper-1"},
            }
        )
        await _recv_until(conn, "session.updated", seen)
        await conn.response.create()  # the greeting
        await _recv_until(conn, "response.done", seen)
        for i in range(0, 8 * 600, 160):  # a spoken turn -> VAD, transcription, then the function call
            audio = (_tone(300) + b"\xff" * 8 * 300)[i : i + 160]
            await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        call = await _recv_until(conn, "response.function_call_arguments.done", seen)
        await _recv_until(conn, "response.done", seen)
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "it"}
        await conn.send({"type": "conversation.item.create", "item": output})
        await conn.response.create()
        audio_item = (await _recv_until(conn, "response.audio.delta", seen)).item_id
        await _recv_until(conn, "response.done", seen)
        await conn.conversation.item.truncate(item_id=audio_item, audio_end_ms=100, content_index=0)
        await _recv_until(conn, "conversation.item.truncated", seen)
        await conn.input_audio_buffer.append(audio=base64.b64encode(b"\xff" * 160).decode())
        await conn.input_audio_buffer.clear()
        await _recv_until(conn, "input_audio_buffer.cleared", seen)
        await conn.output_audio_buffer.clear()
        await _recv_until(conn, "output_audio_buffer.cleared", seen)
        await conn.conversation.item.delete(item_id="nope")
        await _recv_until(conn, "error", seen)
        await conn.response.cancel()
        await _recv_until(conn, "error", seen)
    kinds = {e.type for e in seen}
    assert kinds >= {
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "output_audio_buffer.cleared",
        "conversation.item.created",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.truncated",
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.done",
        "error",
    }
    for event in seen:
        assert type(event) is not models.ServerEvent, event.type
        for name in _required_fields(type(event)):
            assert getattr(event, name) is not None, (event.type, name)
    audio = next(e for e in seen if e.type == "response.audio.delta")
    assert isinstance(audio.delta, bytes) and audio.delta
    done = [e for e in seen if e.type == "response.done"]
    assert all(d.response.usage.total_tokens > 0 for d in done)
    assert [d.response.status for d in done] == ["completed", "completed", "completed"]
    assert isinstance(done[1].response.output[0], models.ResponseFunctionCallItem)
    transcripts = [e.transcript for e in seen if e.type == "response.audio_transcript.done"]
    assert transcripts == [fake.greeting, "Found it."]


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("", {"api-key": "test-key"}, 400),  # no api-version
        ("?api-version=2026-07-15", {}, 401),
        ("?api-version=2026-07-15", {"api-key": "wrong"}, 401),
        ("?api-version=2026-07-15", {"Authorization": "Bearer wrong"}, 401),
        ("?api-version=2026-07-15", {"Authorization": "Bearer test-token"}, 101),
        ("?api-version=2026-07-15", {"api-key": "test-key"}, 101),
    ],
)
async def test_handshake_checks_like_the_service(
    fake_voicelive: FakeVoiceLive, query: str, headers: dict[str, str], status: int
) -> None:
    url = f"ws://127.0.0.1:{fake_voicelive.port}/voice-live/realtime{query}"
    async with aiohttp.ClientSession() as http:
        if status == 101:
            async with http.ws_connect(url, headers=headers) as ws:
                first = await ws.receive_json()
                assert first["type"] == "session.created"
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(url, headers=headers)
            assert info.value.status == status


async def test_auth_can_be_switched_off_or_forced_to_fail() -> None:
    async with FakeVoiceLive(api_key=None, bearer_token=None) as fake, aiohttp.ClientSession() as http:
        url = f"ws://127.0.0.1:{fake.port}/voice-live/realtime?api-version=1"
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_json())["type"] == "session.created"
        fake.faults = FakeFaults(reject_auth=True)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(url, headers={"api-key": "anything"})


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_speech_replies_come_from_espeak(fake_voicelive: FakeVoiceLive) -> None:
    speech = await fake_voicelive.render("Hello world, this is a test.", "speech", "pcm16")
    tone = await fake_voicelive.render("Hello world, this is a test.", "tone", "pcm16")
    pcm = np.frombuffer(speech, dtype="<i2")
    assert len(pcm) > 24000 // 2  # more than half a second at 24 kHz
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300  # audible, not silence
    assert speech != tone


async def test_wav_replies_are_resampled_to_the_output_format(
    tmp_path: Path, fake_voicelive: FakeVoiceLive
) -> None:
    rate = 16000
    pcm = (np.sin(2 * np.pi * 1000 * np.arange(rate) / rate) * 10000).astype("<i2")
    path = tmp_path / "reply.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    ulaw = await fake_voicelive.render("ignored", path, "g711_ulaw")
    assert len(ulaw) == 8000  # one second at 8 kHz
    decoded = g711.ulaw_decode(ulaw).astype(np.float64)
    assert abs(np.argmax(np.abs(np.fft.rfft(decoded))) - 1000) <= 1


async def test_pace_one_streams_reply_audio_no_faster_than_real_time() -> None:
    async with (
        FakeVoiceLive(pace=1.0, greeting="Hi there.", chunk_ms=100) as fake,
        connect(endpoint=fake.endpoint, credential=AzureKeyCredential("test-key"), model="m") as conn,
    ):
        await conn.session.update(session={"output_audio_format": "g711_ulaw"})
        await conn.response.create()
        loop = asyncio.get_running_loop()
        stamps: list[tuple[float, int]] = []
        received = 0
        async with asyncio.timeout(10):
            async for event in conn:
                if event.type == "response.audio.delta":
                    stamps.append((loop.time(), received))
                    received += len(event.delta)
                if event.type == "response.done":
                    break
    # Each chunk arrives no earlier than the audio before it lasts (real-time pacing, never ahead).
    start = stamps[0][0]
    assert all(t - start >= (sent / 8000) - 0.005 for t, sent in stamps)
    assert len(stamps) >= 5


async def test_close_after_time_fault_drops_the_first_connection_only() -> None:
    async with FakeVoiceLive(faults=FakeFaults(close_after_s=0.05, close_code=1011)) as fake:
        endpoint = fake.endpoint
        for expect_close in (True, False):
            async with connect(
                endpoint=endpoint, credential=AzureKeyCredential("test-key"), model="m"
            ) as conn:
                await conn.recv()  # session.created
                if expect_close:
                    from azure.ai.voicelive.aio import ConnectionClosed

                    with pytest.raises(ConnectionClosed) as info:
                        await asyncio.wait_for(conn.recv(), 5)
                    assert info.value.code == 1011
                else:
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(conn.recv(), 0.2)
        assert fake.connection_count == 2


async def test_reply_delay_fault_holds_the_reply(fake_voicelive: FakeVoiceLive) -> None:
    fake_voicelive.faults = FakeFaults(reply_delay_s=30)
    async with connect(
        endpoint=fake_voicelive.endpoint, credential=AzureKeyCredential("test-key"), model="m"
    ) as conn:
        await conn.recv()
        await conn.response.create()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.recv(), 0.2)
        await conn.response.cancel()
        event = await asyncio.wait_for(conn.recv(), 5)
        assert event.type == "response.done" and event.response.status == "cancelled"
    assert len(fake_voicelive.cancellations) == 1


async def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicelive_sip.testing.fake_voicelive",
        "--port",
        str(port),
        "--voice",
        "tone",
        "--pace",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while b"AZURE_VOICELIVE_ENDPOINT" not in (line := await proc.stdout.readline()):
                assert line, "the CLI exited before listening"
        endpoint = f"http://127.0.0.1:{port}"
        assert endpoint.encode() in line
        async with connect(endpoint=endpoint, credential=AzureKeyCredential("test-key"), model="m") as conn:
            assert (await asyncio.wait_for(conn.recv(), 5)).type == "session.created"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    return {"greeting": "Configured through the plugin."}


async def test_plugin_fixture_takes_options(fake_voicelive: FakeVoiceLive) -> None:
    assert fake_voicelive.greeting == "Configured through the plugin."
    assert fake_voicelive.port > 0
    async with aiohttp.ClientSession() as http:
        url = f"{fake_voicelive.endpoint}/voice-live/realtime?api-version=1"
        async with http.ws_connect(url, headers={"api-key": "test-key"}) as ws:
            await ws.receive_json()
    await fake_voicelive.wait_for(lambda f: f.connection_count == 1)


def test_wav_reader_handles_stereo() -> None:
    from voicelive_sip.testing.fake_voicelive import _parse_wav

    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(np.array([100, 300] * 10, dtype="<i2").tobytes())
    pcm, rate = _parse_wav(buf.getvalue())
    assert rate == 8000 and pcm.tolist() == [200] * 10
