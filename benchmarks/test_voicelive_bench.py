"""Voice Live hot paths: caller-audio appends per second, and the receive cost of one agent audio delta.

Run: `pytest benchmarks/test_voicelive_bench.py --benchmark-only --benchmark-columns=min,median,mean,ops`
(`extra_info` in `--benchmark-json` carries appends/s and µs per event).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import ServerEvent
from azure.core.credentials import AzureKeyCredential

from voicelive_sip.config import VoiceLiveSettings
from voicelive_sip.voicelive import VoiceLiveSession

FRAMES = 1000  # appends per benchmark round
FRAME = b"\xff" * 160  # 20 ms of G.711


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def fake_endpoint() -> Iterator[str]:
    """The fake in its own process, so its receive work is not billed to the client being measured."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "voicelive_sip.testing.fake_voicelive",
        "--port",
        str(port),
        "--voice",
        "tone",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        while "AZURE_VOICELIVE_ENDPOINT" not in (line := proc.stdout.readline()):
            assert line, "the fake exited before listening"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _session(loop: asyncio.AbstractEventLoop, endpoint: str, audio_format: Any = "g711") -> VoiceLiveSession:
    # Turn detection off: the fake's VAD would only add server work.
    settings = VoiceLiveSettings(
        endpoint=endpoint, api_key="test-key", vad_type="none", audio_format=audio_format
    )
    session = VoiceLiveSession(settings)
    loop.run_until_complete(session.connect())
    return session


@pytest.mark.parametrize("audio_format", ["g711", "pcm16_24000"])
def test_session_append(
    benchmark: Any, loop: asyncio.AbstractEventLoop, fake_endpoint: str, audio_format: str
) -> None:
    """`VoiceLiveSession.send_audio`: pre-encoded JSON to the socket (pcm16 adds decode and resample)."""
    session = _session(loop, fake_endpoint, audio_format)

    async def batch() -> None:
        for _ in range(FRAMES):
            await session.send_audio(FRAME)

    benchmark(lambda: loop.run_until_complete(batch()))
    benchmark.extra_info["appends_per_second"] = round(FRAMES / benchmark.stats.stats.mean)
    benchmark.extra_info["us_per_append"] = round(benchmark.stats.stats.mean / FRAMES * 1e6, 2)
    loop.run_until_complete(session.close())


def test_session_append_nowait(benchmark: Any, loop: asyncio.AbstractEventLoop, fake_endpoint: str) -> None:
    """`VoiceLiveSession.send_audio_nowait`: what the gateway does per frame (no await, no task switch)."""
    session = _session(loop, fake_endpoint)
    fallbacks = 0

    async def batch() -> None:
        nonlocal fallbacks
        for index in range(FRAMES):
            if not session.send_audio_nowait(FRAME):
                fallbacks += 1  # backed up: the awaited path drains, as CallSession does
                await session.send_audio(FRAME)
            if index % 50 == 49:
                await asyncio.sleep(0)  # let the loop flush, as between RTP datagrams

    benchmark(lambda: loop.run_until_complete(batch()))
    benchmark.extra_info["us_per_append"] = round(benchmark.stats.stats.mean / FRAMES * 1e6, 2)
    benchmark.extra_info["awaited_fallbacks"] = fallbacks
    loop.run_until_complete(session.close())


@pytest.mark.parametrize("path", ["sdk_typed", "sdk_dict"])
def test_sdk_append_reference(
    benchmark: Any, loop: asyncio.AbstractEventLoop, fake_endpoint: str, path: str
) -> None:
    """The SDK's own append paths, for comparison with `test_session_append`."""
    cm = connect(endpoint=fake_endpoint, credential=AzureKeyCredential("test-key"), model="m")
    conn: VoiceLiveConnection = loop.run_until_complete(cm.__aenter__())
    b64 = base64.b64encode(FRAME).decode()

    async def batch() -> None:
        for _ in range(FRAMES):
            if path == "sdk_typed":
                await conn.input_audio_buffer.append(audio=b64)
            else:
                await conn.send({"type": "input_audio_buffer.append", "audio": b64})

    benchmark(lambda: loop.run_until_complete(batch()))
    benchmark.extra_info["appends_per_second"] = round(FRAMES / benchmark.stats.stats.mean)
    benchmark.extra_info["us_per_append"] = round(benchmark.stats.stats.mean / FRAMES * 1e6, 2)
    loop.run_until_complete(conn.close())


def _delta_message(audio: bytes) -> bytes:
    event = {
        "type": "response.audio.delta",
        "event_id": "event_000123",
        "response_id": "resp_000001",
        "item_id": "item_000002",
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(audio).decode(),
    }
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("audio_format", "chunk"),
    [("g711", b"\xff" * 160), ("pcm16_24000", b"\x00\x01" * 480)],
    ids=["g711", "pcm16_24000"],
)
def test_session_delta_receive(
    benchmark: Any, loop: asyncio.AbstractEventLoop, fake_endpoint: str, audio_format: str, chunk: bytes
) -> None:
    """Raw frame -> `AudioDelta` in the call's codec, as the session's receive loop does it (20 ms chunks)."""
    session = _session(loop, fake_endpoint, audio_format)
    raw = _delta_message(chunk)

    async def batch() -> None:
        for _ in range(FRAMES):
            await session._dispatch(json.loads(raw))
            while not session._events.empty():  # the resampler may hold a chunk back, then emit two
                session._events.get_nowait()

    benchmark(lambda: loop.run_until_complete(batch()))
    benchmark.extra_info["us_per_event"] = round(benchmark.stats.stats.mean / FRAMES * 1e6, 2)
    loop.run_until_complete(session.close())


def test_sdk_typed_delta_parse_reference(benchmark: Any) -> None:
    """What the SDK's `recv()` does per audio delta after the socket read: typed model and base64 decode."""
    raw = _delta_message(b"\xff" * 160)

    def batch() -> None:
        for _ in range(FRAMES):
            event: Any = ServerEvent._deserialize(json.loads(raw.decode()), [])
            assert event.delta

    benchmark(batch)
    benchmark.extra_info["us_per_event"] = round(benchmark.stats.stats.mean / FRAMES * 1e6, 2)
