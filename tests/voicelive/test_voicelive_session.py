"""VoiceLiveSession against FakeVoiceLive: auth, formats, turns, barge-in, tools, errors, shutdown."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from azure.core.credentials import AccessToken

from voicelive_sip.codecs import g711
from voicelive_sip.config import VoiceLiveSettings
from voicelive_sip.testing import FakeFaults, FakeReply, FakeToolCall, FakeVoiceLive
from voicelive_sip.voicelive import (
    AudioDelta,
    Closed,
    FunctionCall,
    InputTranscript,
    OutputTranscript,
    OutputTranscriptDelta,
    Reconnected,
    Reconnecting,
    ResponseDone,
    ResponseStarted,
    ServiceError,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    VoiceLiveAuthError,
    VoiceLiveConnectError,
    VoiceLiveDnsError,
    VoiceLiveSession,
    VoiceLiveTimeoutError,
    VoiceLiveTlsError,
)


def tone_ulaw(ms: int, freq: float = 300.0, amplitude: int = 8000) -> bytes:
    """A loud tone in μ-law at 8 kHz: the fake's VAD hears it as speech."""
    t = np.arange(8 * ms) / 8000.0
    return g711.ulaw_encode((np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16))


def silence_ulaw(ms: int) -> bytes:
    return b"\xff" * (8 * ms)


def frames(audio: bytes, size: int = 160) -> list[bytes]:
    return [audio[i : i + size] for i in range(0, len(audio), size)]


async def send_paced(session: VoiceLiveSession, audio: bytes) -> None:
    """Send 20 ms frames, yielding to the loop between them as an RTP receive path would."""
    for frame in frames(audio):
        await session.send_audio(frame)
        await asyncio.sleep(0)


async def collect(
    session: VoiceLiveSession, until: type[Any], *, count: int = 1, timeout: float = 10.0
) -> list[SessionEvent]:
    """Events up to and including the `count`-th event of type `until`."""
    seen: list[SessionEvent] = []
    hits = 0
    async with asyncio.timeout(timeout):
        async for event in session.events():
            seen.append(event)
            if isinstance(event, until):
                hits += 1
                if hits >= count:
                    return seen
    raise AssertionError(f"stream ended before {until.__name__}: {seen}")


class StubTokenCredential:
    """An Entra ID credential that hands out a fixed token and records the scopes asked for."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> StubTokenCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@pytest.fixture
def stub_credential() -> StubTokenCredential:
    return StubTokenCredential()


# -- authentication and connect errors -----------------------------------------------------------------


async def test_api_key_reaches_the_service_as_api_key_header(fake_voicelive: FakeVoiceLive) -> None:
    async with VoiceLiveSession(fake_voicelive.settings()) as session:
        await fake_voicelive.wait_for(lambda f: "session.update" in f.received_types)
        assert session.state == "connected"
    conn = fake_voicelive.connections[0]
    assert conn.headers["api-key"] == "test-key"
    assert "Authorization" not in conn.headers
    assert conn.query["api-version"] == "2026-07-15"
    assert conn.query["model"] == "gpt-4o"


async def test_entra_id_token_goes_out_as_bearer(
    fake_voicelive: FakeVoiceLive, stub_credential: StubTokenCredential
) -> None:
    settings = fake_voicelive.settings(
        api_key=None, credential_scope="https://cognitiveservices.azure.com/.default"
    )
    async with VoiceLiveSession(settings, credential=stub_credential):
        await fake_voicelive.wait_for(lambda f: "session.update" in f.received_types)
    assert fake_voicelive.connections[0].headers["Authorization"] == "Bearer test-token"
    assert "api-key" not in fake_voicelive.connections[0].headers
    assert stub_credential.scopes == [("https://cognitiveservices.azure.com/.default",)]
    assert not stub_credential.closed  # not ours to close


async def test_without_key_the_session_uses_and_closes_default_azure_credential(
    fake_voicelive: FakeVoiceLive, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[StubTokenCredential] = []

    def factory() -> StubTokenCredential:
        made.append(StubTokenCredential())
        return made[-1]

    monkeypatch.setattr("azure.identity.aio.DefaultAzureCredential", factory)
    async with VoiceLiveSession(fake_voicelive.settings(api_key=None)):
        await fake_voicelive.wait_for(lambda f: "session.update" in f.received_types)
    assert len(made) == 1 and made[0].closed
    assert fake_voicelive.connections[0].headers["Authorization"] == "Bearer test-token"


@pytest.mark.parametrize("credential", ["wrong-key", "bearer"])
async def test_rejected_credentials_raise_auth_error(fake_voicelive: FakeVoiceLive, credential: str) -> None:
    if credential == "bearer":
        session = VoiceLiveSession(
            fake_voicelive.settings(api_key=None), credential=StubTokenCredential("nope")
        )
    else:
        session = VoiceLiveSession(fake_voicelive.settings(api_key=credential))
    with pytest.raises(VoiceLiveAuthError, match="401"):
        await session.connect()
    assert fake_voicelive.rejected_handshakes == 1
    assert fake_voicelive.connection_count == 0
    assert session.state == "closed"


async def test_dns_failure_is_named() -> None:
    session = VoiceLiveSession(VoiceLiveSettings(endpoint="https://voicelive.invalid", api_key="k"))
    with pytest.raises(VoiceLiveDnsError, match=r"voicelive\.invalid"):
        await session.connect()


async def test_tls_failure_is_named(fake_voicelive: FakeVoiceLive) -> None:
    # https to a plain-HTTP server: the TLS handshake fails.
    settings = fake_voicelive.settings(endpoint=f"https://127.0.0.1:{fake_voicelive.port}")
    with pytest.raises(VoiceLiveTlsError, match="TLS"):
        await VoiceLiveSession(settings).connect()


async def test_refused_connection_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = VoiceLiveSession(VoiceLiveSettings(endpoint=f"http://127.0.0.1:{port}", api_key="k"))
    with pytest.raises(VoiceLiveConnectError, match="cannot connect"):
        await session.connect()


async def test_stalled_handshake_hits_the_connect_timeout() -> None:
    async with FakeVoiceLive(faults=FakeFaults(handshake_delay_s=30)) as fake:
        session = VoiceLiveSession(fake.settings(connect_timeout=0.2))
        with pytest.raises(VoiceLiveTimeoutError, match="connect timeout"):
            await session.connect()


# -- audio formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("codec", "wire"), [("pcmu", "g711_ulaw"), ("pcma", "g711_alaw")])
async def test_g711_passes_through_untouched_both_ways(codec: Any, wire: str) -> None:
    caller = bytes(range(256)) * 5  # 160 ms of every code
    async with (
        FakeVoiceLive(faults=FakeFaults(), voice="tone") as fake,
        VoiceLiveSession(fake.settings(vad_type="none"), codec=codec) as session,
    ):
        for i in range(0, len(caller), 160):
            await session.send_audio(caller[i : i + 160])
        await fake.wait_for(lambda f: len(f.appended_audio) == len(caller))
        assert fake.appended_audio == caller
        assert fake.session_config["input_audio_format"] == wire
        assert fake.session_config["output_audio_format"] == wire
        await session.create_response()
        events = await collect(session, ResponseDone, count=1)
    audio = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
    expected = await fake.render(fake.greeting, None, wire)
    assert audio == expected


async def test_send_audio_nowait_writes_at_once_in_order_with_awaited_sends() -> None:
    caller = bytes(range(256)) * 5
    chunks = frames(caller)
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none")) as session,
    ):
        for index, frame in enumerate(chunks):
            if index % 3 == 0:
                await session.send_audio(frame)
            else:
                assert session.send_audio_nowait(frame)  # no await: on the socket already
        await fake.wait_for(lambda f: len(f.appended_audio) == len(caller))
        assert fake.appended_audio == caller
        assert session.audio_bytes_sent == len(caller)
        assert fake.received_types.count("input_audio_buffer.append") == len(chunks)


async def test_send_audio_nowait_declines_when_not_connected() -> None:
    async with FakeVoiceLive() as fake:
        session = VoiceLiveSession(fake.settings(vad_type="none"))
        assert not session.send_audio_nowait(b"\xff" * 160)  # idle: the awaited path buffers it
        await session.connect()
        fake.faults = FakeFaults(handshake_delay_s=30)  # the reconnect hangs until the fake stops
        await fake.drop()
        await collect(session, Reconnecting)
        assert session.state == "reconnecting"
        assert not session.send_audio_nowait(b"\xff" * 160)
        await session.close()
        assert not session.send_audio_nowait(b"\xff" * 160)
    assert session.audio_bytes_sent == 0


async def test_send_audio_nowait_declines_while_the_socket_is_backed_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicelive_sip.voicelive import connection as session_module

    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none")) as session,
    ):
        monkeypatch.setattr(session_module.FrameWriter, "backed_up", lambda self: True)
        assert not session.send_audio_nowait(b"\x01" * 160)  # left to send_audio, which drains
        await session.send_audio(b"\x01" * 160)
        await fake.wait_for(lambda f: len(f.appended_audio) == 160)
        assert session.audio_bytes_sent == 160


def test_the_synchronous_writer_is_used_only_when_aiohttp_has_the_expected_shape() -> None:
    import aiohttp

    from voicelive_sip.voicelive._sdk import frame_writer as _frame_writer

    class Transport:
        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

    written: list[tuple[bytes, int, int]] = []

    def expected(message: bytes, opcode: int, rsv: int) -> None:
        written.append((message, opcode, rsv))

    def other_shape(message: bytes, opcode: int, rsv: int, extra: int) -> None:
        raise AssertionError("never called")

    def websocket(write: Any, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        ws = aiohttp.ClientWebSocketResponse.__new__(aiohttp.ClientWebSocketResponse)
        ws._writer = SimpleNamespace(_write_websocket_frame=write, compress=compress, transport=Transport())  # type: ignore[assignment]
        return ws

    writer = _frame_writer(websocket(expected))
    assert writer is not None and not writer.backed_up()
    writer(b"{}")
    assert written == [(b"{}", aiohttp.WSMsgType.TEXT, 0)]
    assert _frame_writer(websocket(other_shape)) is None  # a changed aiohttp: every append is awaited
    assert _frame_writer(websocket(expected, compress=15)) is None  # permessage-deflate: aiohttp compresses
    assert _frame_writer(object()) is None  # the SDK on another transport


async def test_forced_wire_law_transcodes_the_call_law() -> None:
    caller = g711.alaw_encode(np.linspace(-20000, 20000, 800).astype(np.int16))
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none", audio_format="g711_ulaw"), codec="pcma") as session,
    ):
        await send_paced(session, caller)
        await fake.wait_for(lambda f: len(f.appended_audio) == len(caller))
        assert fake.appended_audio == g711.ulaw_encode(g711.alaw_decode(caller))


@pytest.mark.parametrize(
    ("audio_format", "rate", "out_format"),
    [("pcm16_16000", 16000, "pcm16_16000hz"), ("pcm16_24000", 24000, "pcm16")],
)
async def test_pcm16_decodes_resamples_and_comes_back_as_g711(
    audio_format: Any, rate: int, out_format: str
) -> None:
    caller = tone_ulaw(1000, freq=400.0)
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none", audio_format=audio_format), codec="pcmu") as session,
    ):
        await send_paced(session, caller)
        expected_bytes = rate * 2  # one second of PCM16 at the wire rate
        await fake.wait_for(lambda f: len(f.appended_audio) >= expected_bytes - rate // 50)
        config = fake.session_config
        assert config["input_audio_format"] == "pcm16"
        assert config["input_audio_sampling_rate"] == rate
        assert config["output_audio_format"] == out_format
        received = np.frombuffer(fake.appended_audio, dtype="<i2")
        # The tone survives: its dominant frequency on the wire is still 400 Hz.
        spectrum = np.abs(np.fft.rfft(received[rate // 10 :]))
        peak_hz = np.argmax(spectrum) * rate / len(received[rate // 10 :])
        assert abs(peak_hz - 400.0) < 5
        await session.create_response()
        events = await collect(session, ResponseDone)
    audio = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
    # The fake's tone reply lasts 60 ms per character; back at 8 kHz G.711 that is 8 bytes per ms.
    assert abs(len(audio) - 8 * 60 * len(fake.greeting)) <= 8 * 10
    pcm = g711.ulaw_decode(audio)
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 8000 / len(pcm) - 440.0) < 5


# -- conversation -------------------------------------------------------------------------------------------


async def test_greeting_speaks_the_configured_sentence_verbatim(fake_voicelive: FakeVoiceLive) -> None:
    settings = fake_voicelive.settings(proactive_greeting="Thank you for calling Contoso.")
    async with VoiceLiveSession(settings) as session:
        assert await session.greet()
        events = await collect(session, ResponseDone)
    transcripts = [e.transcript for e in events if isinstance(e, OutputTranscript)]
    assert transcripts == ["Thank you for calling Contoso."]
    create = next(e for e in fake_voicelive.received_events if e["type"] == "response.create")
    assert create["response"]["pre_generated_assistant_message"]["content"][0]["text"] == (
        "Thank you for calling Contoso."
    )


async def test_greeting_disabled_sends_nothing(fake_voicelive: FakeVoiceLive) -> None:
    async with VoiceLiveSession(fake_voicelive.settings(proactive_greeting_enabled=False)) as session:
        assert not await session.greet()
        await session.add_user_text("hi", respond=False)
        await fake_voicelive.wait_for(lambda f: "conversation.item.create" in f.received_types)
    assert "response.create" not in fake_voicelive.received_types


async def test_a_spoken_turn_yields_speech_transcripts_and_a_reply() -> None:
    replies = [FakeReply(text="Your order ships tomorrow.")]
    async with (
        FakeVoiceLive(replies=replies, transcripts=["Where is my order?"]) as fake,
        VoiceLiveSession(fake.settings(vad_silence_duration_ms=300, vad_prefix_padding_ms=100)) as session,
    ):
        await send_paced(session, silence_ulaw(500) + tone_ulaw(700) + silence_ulaw(600))
        events = await collect(session, ResponseDone)
    started = next(e for e in events if isinstance(e, SpeechStarted))
    stopped = next(e for e in events if isinstance(e, SpeechStopped))
    assert started.audio_start_ms == 400  # speech at 500 ms minus 100 ms of prefix padding
    assert stopped.audio_end_ms == 1500  # speech ended at 1200 ms, plus 300 ms of silence
    assert started.item_id == stopped.item_id
    assert [e.transcript for e in events if isinstance(e, InputTranscript)] == ["Where is my order?"]
    assert [e.transcript for e in events if isinstance(e, OutputTranscript)] == ["Your order ships tomorrow."]
    done = next(e for e in events if isinstance(e, ResponseDone))
    assert done.status == "completed" and done.usage is not None and done.usage.output_tokens == 4
    kinds = [type(e) for e in events]
    assert kinds.index(SpeechStopped) < kinds.index(ResponseStarted) < kinds.index(AudioDelta)


async def test_function_call_and_follow_up_reply() -> None:
    reply = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "42"}'),
        follow_up=FakeReply(text="Order 42 is {output}."),
    )
    async with (
        FakeVoiceLive(replies=[reply]) as fake,
        VoiceLiveSession(fake.settings(vad_type="none")) as session,
    ):
        await session.add_user_text("Where is order 42?")
        events = await collect(session, FunctionCall)
        call = next(e for e in events if isinstance(e, FunctionCall))
        assert (call.name, call.arguments) == ("order_status", '{"order_id": "42"}')
        await collect(session, ResponseDone)
        await session.send_function_output(call.call_id, "shipped")
        events = await collect(session, ResponseDone)
    assert [e.transcript for e in events if isinstance(e, OutputTranscript)] == ["Order 42 is shipped."]
    assert fake.function_outputs[0]["call_id"] == call.call_id
    assert fake.function_outputs[0]["output"] == "shipped"


async def test_barge_in_cancels_and_truncates_at_the_played_position() -> None:
    async with (
        FakeVoiceLive(faults=FakeFaults(stall_after_chunks=3), chunk_ms=100) as fake,
        VoiceLiveSession(fake.settings(vad_type="none")) as session,
    ):
        await session.create_response()
        events = await collect(session, AudioDelta, count=3)
        item_id = next(e for e in events if isinstance(e, AudioDelta)).item_id
        assert session.active_responses
        await session.interrupt(item_id, played_ms=180)
        events = await collect(session, ResponseDone)
        assert next(e for e in events if isinstance(e, ResponseDone)).status == "cancelled"
        await fake.wait_for(lambda f: bool(f.truncations))
        assert not session.active_responses
        assert not await session.cancel_response()  # nothing left to cancel
    assert fake.truncations == [{"item_id": item_id, "content_index": 0, "audio_end_ms": 180}]
    assert len(fake.cancellations) == 1


async def test_caller_speech_interrupts_a_running_reply() -> None:
    async with (
        FakeVoiceLive(faults=FakeFaults(stall_after_chunks=1)) as fake,
        VoiceLiveSession(fake.settings(vad_silence_duration_ms=200)) as session,
    ):
        await session.greet()
        await collect(session, AudioDelta)
        await send_paced(session, tone_ulaw(300))
        events = await collect(session, ResponseDone)
    assert any(isinstance(e, SpeechStarted) for e in events)
    assert next(e for e in events if isinstance(e, ResponseDone)).status == "cancelled"


async def test_clear_output_drops_queued_agent_audio_only(fake_voicelive: FakeVoiceLive) -> None:
    async with VoiceLiveSession(fake_voicelive.settings(vad_type="none")) as session:
        await session.create_response()
        queue = session._events._queue  # type: ignore[attr-defined]  # peek: let the reply land unread
        while not any(isinstance(e, ResponseDone) for e in queue):
            await asyncio.sleep(0.01)
        dropped = session.clear_output()
        events = await collect(session, ResponseDone)
    assert dropped > 0
    assert not any(isinstance(e, AudioDelta) for e in events)
    assert [type(e) for e in events if not isinstance(e, OutputTranscriptDelta)] == [
        ResponseStarted,
        OutputTranscript,
        ResponseDone,
    ]


async def test_service_errors_become_events_and_the_session_stays_up() -> None:
    async with (
        FakeVoiceLive(faults=FakeFaults(error_on={"response.create": "rate_limit_exceeded"})) as fake,
        VoiceLiveSession(fake.settings(vad_type="none")) as session,
    ):
        await session.create_response()
        error = (await collect(session, ServiceError))[-1]
        assert isinstance(error, ServiceError)
        assert error.code == "rate_limit_exceeded"
        await fake.send_error("server_overloaded", "try later")
        error = (await collect(session, ServiceError))[-1]
        assert isinstance(error, ServiceError)
        assert (error.type, error.code, error.message) == ("server_error", "server_overloaded", "try later")
        assert session.state == "connected"
    assert fake.connection_count == 1


async def test_deliberate_close_ends_the_stream_and_never_reconnects(fake_voicelive: FakeVoiceLive) -> None:
    session = VoiceLiveSession(fake_voicelive.settings(reconnect_initial_delay=0))
    await session.connect()
    await fake_voicelive.wait_for(lambda f: "session.update" in f.received_types)
    await session.close()
    events = await collect(session, Closed)
    assert events[-1] == Closed("closed", None)
    await fake_voicelive.wait_for(lambda f: f.connections[0].closed)
    await asyncio.sleep(0.05)
    assert fake_voicelive.connection_count == 1
    await session.send_audio(silence_ulaw(20))  # after close: ignored, not an error
    await session.close()  # idempotent
    assert session.state == "closed"


# -- reconnect -------------------------------------------------------------------------------------------


def _reconnect_settings(fake: FakeVoiceLive, **overrides: Any) -> VoiceLiveSettings:
    values: dict[str, Any] = {"reconnect_initial_delay": 0.0, "vad_type": "none"}
    values.update(overrides)
    return fake.settings(**values)


async def test_drop_mid_stream_loses_no_caller_audio() -> None:
    rng = np.random.default_rng(7)
    sent = rng.integers(0, 256, 8 * 3000, dtype=np.uint8).tobytes()  # 3 s of distinct bytes
    faults = FakeFaults(close_after_audio_ms=1000, close_code=1011)
    async with FakeVoiceLive(faults=faults) as fake, VoiceLiveSession(_reconnect_settings(fake)) as session:
        await send_paced(session, sent)
        await fake.wait_for(
            lambda f: f.connection_count == 2 and f.connections[1].audio.endswith(sent[-160:])
        )
        first, second = bytes(fake.connections[0].audio), bytes(fake.connections[1].audio)
        assert session.reconnects == 1
        assert session.dropped_audio_bytes == 0
    # The first connection got a prefix; the second resumes at or before where the first stopped.
    assert 8 * 1000 <= len(first) < len(sent)
    assert sent.startswith(first)
    assert sent.endswith(second)
    assert len(first) + len(second) >= len(sent)
    assert fake.connections[1].event_types[0] == "session.update"


async def test_reconnect_resends_the_session_and_restores_the_conversation() -> None:
    async with (
        FakeVoiceLive(replies=[FakeReply(text="It is sunny.")]) as fake,
        VoiceLiveSession(_reconnect_settings(fake, instructions="Be brief.")) as session,
    ):
        await session.add_user_text("What is the weather?")
        await collect(session, ResponseDone)
        await fake.drop(1011)
        events = await collect(session, Reconnected)
        assert any(isinstance(e, Reconnecting) for e in events)
        await fake.wait_for(lambda f: f.connection_count == 2 and len(f.connections[1].items) == 2)
        second = fake.connections[1]
    assert second.session["instructions"] == "Be brief."
    assert second.session["voice"] == fake.connections[0].session["voice"]
    assert [(i["role"], i["content"][0]["text"]) for i in second.items] == [
        ("user", "What is the weather?"),
        ("assistant", "It is sunny."),
    ]
    assert [i["content"][0]["type"] for i in second.items] == ["input_text", "text"]


async def test_restored_reply_keeps_only_what_the_caller_heard() -> None:
    text = "one two three four five six seven eight nine ten"
    async with (
        FakeVoiceLive(replies=[FakeReply(text=text)]) as fake,
        VoiceLiveSession(_reconnect_settings(fake)) as session,
    ):
        await session.add_user_text("count")
        events = await collect(session, ResponseDone)
        item_id = next(e for e in events if isinstance(e, AudioDelta)).item_id
        total_ms = sum(len(e.audio) for e in events if isinstance(e, AudioDelta)) // 8
        await session.truncate(item_id, total_ms // 2)
        await fake.wait_for(lambda f: bool(f.truncations))
        await fake.drop()
        await collect(session, Reconnected)
        await fake.wait_for(lambda f: f.connection_count == 2 and len(f.connections[1].items) == 2)
    restored = fake.connections[1].items[1]["content"][0]["text"]
    assert text.startswith(restored) and 0 < len(restored) < len(text)
    assert restored.split()[-1] in ("four", "five")


async def test_uncommitted_speech_is_replayed_committed_speech_is_not() -> None:
    speech = tone_ulaw(400)
    pause = silence_ulaw(400)
    tail = tone_ulaw(200, freq=500.0)
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(
            _reconnect_settings(fake, vad_type="server_vad", vad_create_response=False)
        ) as session,
    ):
        await send_paced(session, speech + pause)
        await collect(session, SpeechStopped)
        await send_paced(session, tail)
        await fake.wait_for(lambda f: len(f.connections[0].audio) == len(speech + pause + tail))
        await fake.drop()
        await collect(session, Reconnected)
        await fake.wait_for(lambda f: f.connection_count == 2 and f.connections[1].audio.endswith(tail))
        second = bytes(fake.connections[1].audio)
    # The turn was committed at 800 ms (400 ms of speech + 400 ms of silence): only the tail is resent.
    assert second == tail


async def test_audio_during_an_outage_is_buffered_and_bounded() -> None:
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(
            _reconnect_settings(fake, reconnect_buffer_ms=200, reconnect_replay_ms=0)
        ) as session,
    ):
        fake.faults = FakeFaults(handshake_delay_s=30)  # the reconnect hangs until the fake stops
        await fake.drop()
        await collect(session, Reconnecting)
        for _ in range(15):  # 300 ms of audio into a 200 ms buffer
            await session.send_audio(b"\x01" * 160)
        assert session.state == "reconnecting"
        assert session.dropped_audio_bytes == 800  # the oldest 100 ms went first
    assert session.state == "closed"


async def test_reconnect_gives_up_when_credentials_are_refused() -> None:
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(_reconnect_settings(fake, reconnect_attempts=3)) as session,
    ):
        fake.faults = FakeFaults(reject_auth=True)
        await fake.drop()
        events = await collect(session, Closed)
    closed = events[-1]
    assert isinstance(closed, Closed) and isinstance(closed.error, VoiceLiveAuthError)
    assert [e.attempt for e in events if isinstance(e, Reconnecting)] == [1]
    assert fake.rejected_handshakes == 1


async def test_reconnect_gives_up_after_the_configured_attempts() -> None:
    fake = FakeVoiceLive()
    await fake.start()
    session = VoiceLiveSession(_reconnect_settings(fake, reconnect_attempts=2))
    await session.connect()
    await fake.stop()  # the service is gone for good
    events = await collect(session, Closed)
    await session.close()
    closed = events[-1]
    assert isinstance(closed, Closed) and isinstance(closed.error, VoiceLiveConnectError)
    assert [e.attempt for e in events if isinstance(e, Reconnecting)] == [1, 2]


async def test_queued_audio_waits_in_the_one_backlog_while_backed_up_and_goes_out_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicelive_sip.voicelive import connection as session_module

    waits: list[float] = []
    async with (
        FakeVoiceLive() as fake,
        VoiceLiveSession(fake.settings(vad_type="none")) as session,
    ):
        session.on_delayed_send = waits.append
        backed_up = True
        monkeypatch.setattr(session_module.FrameWriter, "backed_up", lambda self: backed_up)
        chunks = [bytes([value]) * 160 for value in range(1, 7)]
        for chunk in chunks[:3]:
            assert not session.queue_audio(chunk)  # kept in the backlog, sent by the session's own task
        backed_up = False
        for chunk in chunks[3:]:
            session.queue_audio(chunk)  # behind the backlog, never ahead of it
        await fake.wait_for(lambda f: len(f.appended_audio) == 960)
        assert fake.appended_audio == b"".join(chunks)
        assert session.audio_bytes_sent == 960 and session.dropped_audio_bytes == 0
        assert waits and all(wait >= 0 for wait in waits)
        assert session.queue_audio(b"\x07" * 160)  # the backlog is empty again: straight to the socket
