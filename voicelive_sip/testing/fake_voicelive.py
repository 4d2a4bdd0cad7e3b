"""FakeVoiceLive: a local Azure AI Voice Live server for tests and demos, faithful enough for the real SDK.

It checks the handshake like the service, runs an energy VAD on the caller's audio, answers with scripted
replies (tone, WAV or espeak-ng speech) in the session's output format, and records everything it receives.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import itertools
import json
import shutil
import signal
import wave
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr
from aiohttp import WSMsgType, web
from azure.core.credentials import AccessToken

from voicelive_sip._logger import get_logger
from voicelive_sip.codecs import g711
from voicelive_sip.config import VoiceLiveSettings

__all__ = [
    "FakeConnection",
    "FakeFaults",
    "FakeReply",
    "FakeTokenCredential",
    "FakeToolCall",
    "FakeVoiceLive",
    "main",
]

Pcm = npt.NDArray[np.int16]

# Output bytes per millisecond and sample rate of each output_audio_format (PROTOCOL.md, session options).
_OUTPUT_RATE = {
    "pcm16": 24000,
    "pcm16_16000hz": 16000,
    "pcm16_8000hz": 8000,
    "g711_ulaw": 8000,
    "g711_alaw": 8000,
}
_DEFAULT_SESSION: Mapping[str, Any] = {
    "object": "realtime.session",
    "modalities": ["text", "audio"],
    "instructions": "",
    "voice": {"type": "openai", "name": "alloy"},
    "input_audio_format": "pcm16",
    "output_audio_format": "pcm16",
    "turn_detection": {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
    },
    "tools": [],
    "tool_choice": "auto",
    "temperature": 0.8,
    "max_response_output_tokens": "inf",
}
_GREETING = "Hello, this is a test agent. How can I help?"
_VAD_WINDOW_MS = 10
_Energy = npt.NDArray[np.float64]
# Squared sample value of every G.711 code: the VAD's energy straight from the bytes, without decoding.
_G711_ENERGY: Mapping[str, _Energy] = {
    "g711_ulaw": g711.ulaw_decode(np.arange(256, dtype=np.uint8)).astype(np.float64) ** 2,
    "g711_alaw": g711.alaw_decode(np.arange(256, dtype=np.uint8)).astype(np.float64) ** 2,
}
_RENDER_CACHE_SIZE = 32


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A function call the fake model makes instead of speaking."""

    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class FakeReply:
    """One scripted reply; `audio` is "tone", "speech" (espeak-ng), "silence", a WAV path, or None (default).

    With `tool_call` set, the reply is that function call, and `follow_up` is spoken once the client returns
    the call's output (`{output}` in its text is replaced by that output).
    """

    text: str = "Sure, I can help with that."
    audio: str | Path | None = None
    tool_call: FakeToolCall | None = None
    follow_up: FakeReply | None = None


@dataclass(frozen=True, slots=True)
class FakeFaults:
    """Misbehaviour on demand; the `close_*` faults hit only the first `close_connections` connections."""

    reject_auth: bool = False
    handshake_delay_s: float = 0.0
    close_after_s: float | None = None
    close_after_audio_ms: int | None = None
    close_connections: int = 1
    close_code: int = 1011
    abort: bool = False  # drop TCP without a close frame instead of closing cleanly
    reply_delay_s: float = 0.0
    speech_stopped_delay_s: float = 0.0  # speech_stopped goes out this late (its audio_end_ms stays true)
    stall_after_chunks: int | None = None  # a reply stalls after N audio chunks until cancelled
    error_on: Mapping[str, str] = field(default_factory=dict)  # client event type -> error code answered


@dataclass(slots=True)
class FakeConnection:
    """What one client connection did, for assertions."""

    index: int
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    session: dict[str, Any] = field(default_factory=dict)
    truncations: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[str] = field(default_factory=list)
    function_outputs: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    sent: list[tuple[float, str]] = field(default_factory=list)  # (loop time, type) of every event we sent
    conversation_id: str | None = None  # a Foundry agent session's conversation (new, or the one resumed)
    # (loop time, audio_end_ms) of each speech_stopped: when the input audio at its audio_end_ms arrived here
    speech_ends: list[tuple[float, int]] = field(default_factory=list)

    @property
    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    @property
    def agent(self) -> str | None:
        """The Foundry agent the session was opened on (the SDK's `agent-name` query parameter), or None."""
        return self.query.get("agent-name")

    @property
    def session_updates(self) -> list[dict[str, Any]]:
        """The `session` object of every `session.update` the client sent, as sent."""
        return [dict(e["session"]) for e in self.events if e.get("type") == "session.update" and
                isinstance(e.get("session"), dict)]  # fmt: skip

    @property
    def tool_names(self) -> list[str]:
        """Names of the function tools the client offered the model (all session updates together)."""
        return [str(t.get("name")) for u in self.session_updates for t in u.get("tools") or []]


class FakeTokenCredential:
    """An Entra ID token credential for the fake: `get_token` returns the fake's bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, 2**31 - 1)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeTokenCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class FakeVoiceLive:
    """Local Voice Live server on 127.0.0.1: `async with FakeVoiceLive() as fake:`, then connect to it."""

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        bearer_token: str | None = "test-token",
        greeting: str | Mapping[str, str] = "Hello, this is a test agent. How can I help?",
        replies: Sequence[FakeReply] | Mapping[str, Sequence[FakeReply]] = (FakeReply(),),
        transcripts: Sequence[str] = ("Hello there.",),
        voice: str = "tone",
        pace: float = 0.0,
        chunk_ms: int = 100,
        vad_threshold_dbfs: float = -45.0,
        faults: FakeFaults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_recorded_events: int = 200_000,
        max_recorded_audio_bytes: int = 64 * 2**20,
    ) -> None:
        self.api_key = api_key
        self.bearer_token = bearer_token
        # Scripts by agent name (or model, for a model session); "" is everyone else's.
        self.greetings: dict[str, str] = (
            {"": greeting} if isinstance(greeting, str) else {"": _GREETING, **dict(greeting)}
        )
        self.scripts: dict[str, list[FakeReply]] = (
            {key: list(value) or [FakeReply()] for key, value in replies.items()}
            if isinstance(replies, Mapping)
            else {"": list(replies) or [FakeReply()]}
        )
        self.scripts.setdefault("", [FakeReply()])
        self.transcripts = list(transcripts) or ["Hello there."]
        self.voice = voice
        self.pace = pace
        self.chunk_ms = chunk_ms
        self.vad_threshold_dbfs = vad_threshold_dbfs
        self.faults = faults or FakeFaults()
        self.host, self.port = host, port
        self.max_recorded_events = max_recorded_events
        self.max_recorded_audio_bytes = max_recorded_audio_bytes
        self.connections: list[FakeConnection] = []
        self.rejected_handshakes = 0
        self._ids = itertools.count(1)
        self._reply_index: dict[str, int] = {}
        self._transcript_index = 0
        self._live: set[_ServerConnection] = set()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self._waiting = 0
        self._stopping = asyncio.Event()
        self._render_cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._log = get_logger("voicelive_sip.testing.fake_voicelive").bind(component="fake_voicelive")

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> FakeVoiceLive:
        """Listen (port 0 picks a free port; see `.port`)."""
        app = web.Application()
        app.router.add_get("/voice-live/realtime", self._handle)
        app.router.add_get("/{prefix:.*}/voice-live/realtime", self._handle)
        self._stopping.clear()
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound (host, port) of the only site
        self._log.info("fake_voicelive.listening", endpoint=self.endpoint)
        return self

    async def stop(self) -> None:
        """Close every connection and the listener."""
        self._stopping.set()
        for conn in list(self._live):
            await conn.shutdown(1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeVoiceLive:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def endpoint(self) -> str:
        """What to put in AZURE_VOICELIVE_ENDPOINT."""
        return f"http://{self.host}:{self.port}"

    def settings(self, **overrides: Any) -> VoiceLiveSettings:
        """VoiceLiveSettings pointing at this server with its API key (overrides by field name)."""
        values: dict[str, Any] = {"endpoint": self.endpoint, "api_key": self.api_key}
        values.update(overrides)
        return VoiceLiveSettings(**values)

    # -- recorded state --------------------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def received_events(self) -> list[dict[str, Any]]:
        """Client events of every connection, in order (appends carry `audio_bytes` instead of audio)."""
        return [e for c in self.connections for e in c.events]

    @property
    def received_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.received_events]

    @property
    def appended_audio(self) -> bytes:
        """Audio appended on every connection, concatenated."""
        return b"".join(bytes(c.audio) for c in self.connections)

    @property
    def session_config(self) -> dict[str, Any]:
        """The session as configured on the latest connection."""
        return dict(self.connections[-1].session) if self.connections else {}

    def sent_at(self, event_type: str) -> list[float]:
        """Loop times at which events of this type were sent, over all connections."""
        return [t for c in self.connections for t, kind in c.sent if kind == event_type]

    @property
    def truncations(self) -> list[dict[str, Any]]:
        return [t for c in self.connections for t in c.truncations]

    @property
    def cancellations(self) -> list[str]:
        return [r for c in self.connections for r in c.cancellations]

    @property
    def function_outputs(self) -> list[dict[str, Any]]:
        return [f for c in self.connections for f in c.function_outputs]

    async def wait_for(self, predicate: Callable[[FakeVoiceLive], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(fake)` holds; re-checked on every received event and connection change."""
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: predicate(self))
        finally:
            self._waiting -= 1

    async def _notify(self) -> None:
        if not self._waiting:  # the common case under load: nobody to wake, so no lock round trip
            return
        async with self._changed:
            self._changed.notify_all()

    # -- fault injection on demand ---------------------------------------------------------------------

    async def send_error(self, code: str, message: str, error_type: str = "server_error") -> None:
        """Send an `error` event on every open connection."""
        for conn in list(self._live):
            await conn.send({"type": "error", "error": _error_body(error_type, code, message, None)})

    async def drop(self, code: int = 1011, *, abort: bool = False) -> None:
        """Close every open connection now, as a service failure would."""
        for conn in list(self._live):
            await conn.shutdown(code, abort=abort)

    # -- script ----------------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    @property
    def greeting(self) -> str:
        """What every session without a script of its own says first."""
        return self.greetings[""]

    @property
    def replies(self) -> list[FakeReply]:
        """The replies of every session without a script of its own."""
        return self.scripts[""]

    def script_key(self, record: FakeConnection) -> str:
        """Whose script a connection follows: its agent's, its model's, or the default ("")."""
        for key in (record.agent, record.query.get("model")):
            if key is not None and (key in self.scripts or key in self.greetings):
                return key
        return ""

    def greeting_for(self, key: str = "") -> str:
        return self.greetings.get(key, self.greetings[""])

    def next_reply(self, key: str = "") -> FakeReply:
        """The next scripted reply of script `key` (each script keeps its own place)."""
        replies = self.scripts.get(key, self.scripts[""])
        key = key if key in self.scripts else ""
        index = self._reply_index.get(key, 0)
        self._reply_index[key] = index + 1
        return replies[min(index, len(replies) - 1)]

    def token_credential(self) -> FakeTokenCredential:
        """An Entra ID credential this server accepts (Foundry agent sessions refuse API keys)."""
        return FakeTokenCredential(self.bearer_token or "test-token")

    def next_transcript(self) -> str:
        text = self.transcripts[min(self._transcript_index, len(self.transcripts) - 1)]
        self._transcript_index += 1
        return text

    async def render(self, text: str, audio: str | Path | None, output_format: str) -> bytes:
        """Reply audio in `output_format`: tone, silence, espeak-ng speech or a WAV file."""
        kind = str(audio or self.voice)
        key = (kind, text, output_format)
        cached = self._render_cache.get(key)
        if cached is not None:
            return cached
        rate = _OUTPUT_RATE.get(output_format, 24000)
        if kind == "speech" and shutil.which("espeak-ng"):
            pcm, source_rate = await _espeak(text)
        elif kind in ("tone", "silence", "speech"):
            pcm, source_rate = _tone(text, silent=kind == "silence"), 24000
        else:
            pcm, source_rate = _read_wav(Path(kind))
        if source_rate != rate:
            pcm = np.asarray(soxr.resample(pcm, source_rate, rate, quality="HQ"), dtype=np.int16)
        encoded = _encode(pcm, output_format)
        self._render_cache[key] = encoded
        while len(self._render_cache) > _RENDER_CACHE_SIZE:
            self._render_cache.popitem(last=False)
        return encoded

    # -- connections -----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.faults.handshake_delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.faults.handshake_delay_s)
            if self._stopping.is_set():
                return web.Response(status=503)
        if "api-version" not in request.query:
            return web.json_response(
                {"error": {"code": "MissingApiVersionParameter", "message": "api-version is required"}},
                status=400,
            )
        if not self._authorized(request):
            self.rejected_handshakes += 1
            await self._notify()
            return web.json_response({"error": {"code": "401", "message": "Access denied"}}, status=401)
        agent = request.query.get("agent-name")
        if agent is not None and "agent-project-name" not in request.query:
            return web.json_response(
                {"error": {"code": "BadRequest", "message": "agent-project-name is required"}}, status=400
            )
        if agent is not None and "api-key" in request.headers:
            # Agent sessions take Microsoft Entra ID tokens only, as the service requires.
            self.rejected_handshakes += 1
            await self._notify()
            message = "Foundry agent sessions require Microsoft Entra ID authentication"
            return web.json_response({"error": {"code": "401", "message": message}}, status=401)
        ws = web.WebSocketResponse(max_msg_size=16 * 2**20, autoping=True)
        await ws.prepare(request)
        record = FakeConnection(
            index=len(self.connections),
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
        )
        record.session = dict(_DEFAULT_SESSION, id=self.new_id("sess"), model=request.query.get("model"))
        if agent is not None:
            # The agent brings its own instructions and tools; the conversation is new, or the one resumed.
            record.conversation_id = request.query.get("conversation-id") or self.new_id("conv")
            record.session.update(
                model=None,
                instructions=f"(the instructions of Foundry agent {agent})",
                agent={
                    "type": "agent",
                    "name": agent,
                    "agent_id": f"asst_{agent}",
                    "thread_id": record.conversation_id,
                },
            )
        self.connections.append(record)
        conn = _ServerConnection(self, ws, record, request)
        self._live.add(conn)
        await self._notify()
        try:
            await conn.run()
        finally:
            self._live.discard(conn)
            record.closed = True
            await self._notify()
        return ws

    def _authorized(self, request: web.Request) -> bool:
        if self.faults.reject_auth:
            return False
        if self.api_key is None and self.bearer_token is None:
            return True
        key = request.headers.get("api-key")
        if key is not None and self.api_key is not None:
            return key == self.api_key
        auth = request.headers.get("Authorization", "")
        return self.bearer_token is not None and auth == f"Bearer {self.bearer_token}"


@dataclass(slots=True)
class _Response:
    id: str
    item_id: str | None
    task: asyncio.Task[None] | None = None
    audio_ms: float = 0.0


class _ServerConnection:
    """The server side of one WebSocket: session state, VAD, replies."""

    def __init__(
        self, fake: FakeVoiceLive, ws: web.WebSocketResponse, record: FakeConnection, request: web.Request
    ):
        self.fake, self.ws, self.record, self.request = fake, ws, record, request
        self.session = record.session
        self.script = fake.script_key(record)
        self.timeline_samples = 0  # input timeline, in samples at the input rate
        self.received_samples = 0  # input received, VAD windows complete or not
        self.arrivals: deque[tuple[float, float]] = deque(maxlen=1000)  # (input ms at its end, loop time)
        self.vad_pending: _Energy = np.zeros(0)  # squared samples not yet in a full VAD window
        self.speech_item: str | None = None
        self.speech_start_ms = 0.0
        self.last_voice_ms = 0.0
        self.uncommitted_bytes = 0
        self.last_item_id: str | None = None
        self.response: _Response | None = None
        self.item_audio_ms: OrderedDict[str, float] = OrderedDict()
        self.follow_ups: dict[str, FakeReply] = {}
        self.answered_calls: list[tuple[str, str]] = []
        self.responses_started = 0
        self.closing = False
        self.timers: list[asyncio.Task[None]] = []

    async def send(self, event: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        if len(self.record.sent) < self.fake.max_recorded_events:
            self.record.sent.append((asyncio.get_running_loop().time(), str(event.get("type"))))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps({"event_id": self.fake.new_id("event"), **event}))

    async def shutdown(self, code: int, *, abort: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        await self._cancel_response(None, notify=False)
        transport = self.request.transport
        if abort and transport is not None:
            transport.abort()
        else:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.close(code=code)

    async def run(self) -> None:
        faults = self.fake.faults
        if faults.close_after_s is not None and self.record.index < faults.close_connections:
            self.timers.append(asyncio.create_task(self._close_later(faults.close_after_s)))
        await self.send({"type": "session.created", "session": self.session})
        try:
            async for msg in self.ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    event = json.loads(msg.data)
                except ValueError:
                    await self.send(
                        {"type": "error", "error": _error_body("invalid_request_error", "bad_json", "")}
                    )
                    continue
                if isinstance(event, dict):
                    await self.handle(event)
                if self.closing:
                    break
        finally:
            for timer in self.timers:
                timer.cancel()
            await self._cancel_response(None, notify=False)

    async def _close_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.shutdown(self.fake.faults.close_code, abort=self.fake.faults.abort)

    def _record(self, event: dict[str, Any]) -> None:
        if len(self.record.events) < self.fake.max_recorded_events:
            self.record.events.append(event)

    async def handle(self, ev: dict[str, Any]) -> None:
        kind = str(ev.get("type"))
        if kind == "input_audio_buffer.append":
            audio = binascii.a2b_base64(ev.get("audio") or "")
            self._record({"type": kind, "audio_bytes": len(audio)})
            await self.fake._notify()
            await self._on_audio(audio)
            return
        self._record(ev)
        await self.fake._notify()
        error_code = self.fake.faults.error_on.get(kind)
        if error_code is not None:
            await self._error(error_code, f"injected error for {kind}", ev)
            return
        handler = _CLIENT_HANDLERS.get(kind)
        if handler is None:
            await self._error("unknown_event", f"Unknown event type {kind!r}", ev)
            return
        await handler(self, ev)

    async def _error(self, code: str, message: str, ev: Mapping[str, Any]) -> None:
        body = _error_body("invalid_request_error", code, message, ev.get("event_id"))
        await self.send({"type": "error", "error": body})

    # -- session and input ---------------------------------------------------------------------------

    async def on_session_update(self, ev: dict[str, Any]) -> None:
        update = ev.get("session")
        if isinstance(update, dict):
            self.session.update(update)
        await self.send({"type": "session.updated", "session": self.session})

    @property
    def input_rate(self) -> int:
        if self.session.get("input_audio_format") in ("g711_ulaw", "g711_alaw"):
            return 8000
        return int(self.session.get("input_audio_sampling_rate") or 24000)

    def _ms(self, samples: int) -> float:
        return samples * 1000.0 / self.input_rate

    async def _on_audio(self, audio: bytes) -> None:
        if len(self.record.audio) + len(audio) <= self.fake.max_recorded_audio_bytes:
            self.record.audio += audio
        self.uncommitted_bytes += len(audio)
        fmt = self.session.get("input_audio_format")
        energy_table = _G711_ENERGY.get(fmt) if isinstance(fmt, str) else None
        if energy_table is not None:
            energy = energy_table[np.frombuffer(audio, dtype=np.uint8)]
        else:
            pcm = np.frombuffer(audio, dtype="<i2", count=len(audio) // 2).astype(np.float64)
            energy = pcm * pcm
        self.received_samples += len(energy)
        self.arrivals.append((self._ms(self.received_samples), asyncio.get_running_loop().time()))
        turn = self.session.get("turn_detection")
        if isinstance(turn, dict):
            await self._vad(energy, turn)
        else:
            self.timeline_samples += len(energy)
        faults = self.fake.faults
        if (
            faults.close_after_audio_ms is not None
            and self.record.index < faults.close_connections
            and self._ms(self.timeline_samples) >= faults.close_after_audio_ms
        ):
            await self.shutdown(faults.close_code, abort=faults.abort)

    async def _vad(self, energy: _Energy, turn: Mapping[str, Any]) -> None:
        """Energy VAD in 10 ms windows on the input timeline (what server_vad reports, give or take).

        `energy` holds the squared samples. A window is voiced when its RMS level is above
        `vad_threshold_dbfs`; the windows are judged together and walked one by one only where the state
        can change (speech starting, or silence inside speech), so a steady stream costs a few numpy calls.
        """
        window = self.input_rate * _VAD_WINDOW_MS // 1000
        if len(self.vad_pending):
            energy = np.concatenate((self.vad_pending, energy))
        usable = len(energy) - len(energy) % window
        self.vad_pending = energy[usable:]
        if not usable:
            return
        # RMS/32768 > 10^(dBFS/20)  <=>  sum of squares > window * 32768^2 * 10^(dBFS/10)
        threshold = window * 32768.0**2 * 10.0 ** (self.fake.vad_threshold_dbfs / 10.0)
        voiced: list[bool] = (energy[:usable].reshape(-1, window).sum(axis=1) > threshold).tolist()
        if self.speech_item is None and not any(voiced):
            self.timeline_samples += usable
            return
        if self.speech_item is not None and all(voiced):
            self.timeline_samples += usable
            self.last_voice_ms = self._ms(self.timeline_samples)
            return
        silence_ms = float(turn.get("silence_duration_ms") or 500)
        prefix_ms = float(turn.get("prefix_padding_ms") or 0)
        for is_voiced in voiced:
            start_ms = self._ms(self.timeline_samples)
            self.timeline_samples += window
            end_ms = self._ms(self.timeline_samples)
            if is_voiced:
                self.last_voice_ms = end_ms
                if self.speech_item is None:
                    await self._speech_started(max(0.0, start_ms - prefix_ms), turn)
            elif self.speech_item is not None and end_ms - self.last_voice_ms >= silence_ms:
                await self._speech_stopped(end_ms, turn)

    async def _speech_started(self, start_ms: float, turn: Mapping[str, Any]) -> None:
        self.speech_item = self.fake.new_id("item")
        self.speech_start_ms = start_ms
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": int(start_ms),
                "item_id": self.speech_item,
            }
        )
        if turn.get("interrupt_response", True) and self.response is not None:
            await self._cancel_response("turn_detected")

    async def _speech_stopped(self, end_ms: float, turn: Mapping[str, Any]) -> None:
        item_id, self.speech_item = self.speech_item, None
        assert item_id is not None
        self.record.speech_ends.append((self._arrival(end_ms), int(end_ms)))
        if self.fake.faults.speech_stopped_delay_s:
            await asyncio.sleep(self.fake.faults.speech_stopped_delay_s)
        await self.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": int(end_ms), "item_id": item_id}
        )
        await self._commit(item_id)
        if turn.get("create_response", True):
            await self._start_response(self.fake.next_reply(self.script), {})

    def _arrival(self, position_ms: float) -> float:
        """When the input audio at `position_ms` arrived (an append taken as real time up to its arrival)."""
        end_ms, at = self.arrivals[-1]
        for later_ms, later_at in reversed(self.arrivals):
            if later_ms < position_ms:
                break
            end_ms, at = later_ms, later_at
        return at - (end_ms - position_ms) / 1000

    async def _commit(self, item_id: str) -> None:
        previous, self.last_item_id = self.last_item_id, item_id
        self.uncommitted_bytes = 0
        await self.send(
            {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id}
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.record.items.append(item)
        await self.send({"type": "conversation.item.created", "previous_item_id": previous, "item": item})
        if self.session.get("input_audio_transcription"):
            text = self.fake.next_transcript()
            for word in _words(text):
                await self.send(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id,
                        "content_index": 0,
                        "delta": word,
                    }
                )
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": text,
                }
            )

    async def on_commit(self, ev: dict[str, Any]) -> None:
        if self.uncommitted_bytes == 0:
            await self._error("input_audio_buffer_commit_empty", "Input audio buffer is empty", ev)
            return
        await self._commit(self.fake.new_id("item"))

    async def on_clear(self, ev: dict[str, Any]) -> None:
        self.uncommitted_bytes = 0
        self.speech_item = None
        await self.send({"type": "input_audio_buffer.cleared"})

    async def on_output_clear(self, ev: dict[str, Any]) -> None:
        await self.send({"type": "output_audio_buffer.cleared"})

    # -- conversation items ----------------------------------------------------------------------------

    async def on_item_create(self, ev: dict[str, Any]) -> None:
        item = dict(ev.get("item") or {})
        item.setdefault("id", self.fake.new_id("item"))
        item.setdefault("object", "realtime.item")
        item.setdefault("status", "completed")
        self.record.items.append(item)
        if item.get("type") == "function_call_output":
            self.record.function_outputs.append(item)
            self.answered_calls.append((str(item.get("call_id")), str(item.get("output"))))
        previous, self.last_item_id = self.last_item_id, item["id"]
        await self.send({"type": "conversation.item.created", "previous_item_id": previous, "item": item})

    async def on_item_delete(self, ev: dict[str, Any]) -> None:
        await self.send({"type": "conversation.item.deleted", "item_id": ev.get("item_id")})

    async def on_truncate(self, ev: dict[str, Any]) -> None:
        item_id = str(ev.get("item_id"))
        end_ms = int(ev.get("audio_end_ms") or 0)
        if item_id not in self.item_audio_ms:
            await self._error("item_not_found", f"Item {item_id} not found", ev)
            return
        if end_ms > self.item_audio_ms[item_id] + 1:
            await self._error("invalid_value", f"audio_end_ms {end_ms} is beyond the item's audio", ev)
            return
        self.record.truncations.append(
            {"item_id": item_id, "content_index": int(ev.get("content_index") or 0), "audio_end_ms": end_ms}
        )
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": int(ev.get("content_index") or 0),
                "audio_end_ms": end_ms,
            }
        )

    # -- responses -------------------------------------------------------------------------------------

    async def on_response_create(self, ev: dict[str, Any]) -> None:
        if self.response is not None:
            await self._error("conversation_already_has_active_response", "A response is in progress", ev)
            return
        params = ev.get("response") if isinstance(ev.get("response"), dict) else {}
        assert isinstance(params, dict)
        pre = params.get("pre_generated_assistant_message")
        if isinstance(pre, dict):
            text = " ".join(str(p.get("text") or "") for p in pre.get("content") or [] if isinstance(p, dict))
            reply = FakeReply(text=text)
        elif self.answered_calls and self.answered_calls[-1][0] in self.follow_ups:
            call_id, output = self.answered_calls.pop()
            follow = self.follow_ups.pop(call_id)
            reply = FakeReply(text=follow.text.replace("{output}", output), audio=follow.audio)
        elif self.responses_started == 0 and not self.record.items:
            reply = FakeReply(text=self.fake.greeting_for(self.script))
        else:
            reply = self.fake.next_reply(self.script)
        await self._start_response(reply, params)

    async def _start_response(self, reply: FakeReply, params: Mapping[str, Any]) -> None:
        if self.response is not None:  # a VAD turn while a reply runs without interrupt_response
            return
        self.responses_started += 1
        response = _Response(id=self.fake.new_id("resp"), item_id=None)
        self.response = response
        response.task = asyncio.create_task(self._respond(response, reply))

    async def _respond(self, response: _Response, reply: FakeReply) -> None:
        faults = self.fake.faults
        fmt = str(self.session.get("output_audio_format") or "pcm16")
        base = {
            "object": "realtime.response",
            "id": response.id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "usage": None,
            "modalities": self.session.get("modalities") or ["text", "audio"],
            "output_audio_format": fmt,
        }
        if self.record.conversation_id is not None:
            base["conversation_id"] = self.record.conversation_id
        if faults.reply_delay_s:
            await asyncio.sleep(faults.reply_delay_s)
        await self.send({"type": "response.created", "response": base})
        if reply.tool_call is not None:
            item = await self._function_call(response, reply)
        else:
            item = await self._speak(response, reply, fmt)
        self.response = None
        usage = _usage(reply.text)
        await self.send(
            {"type": "response.done", "response": dict(base, status="completed", output=[item], usage=usage)}
        )

    async def _function_call(self, response: _Response, reply: FakeReply) -> dict[str, Any]:
        call = reply.tool_call
        assert call is not None
        call_id = self.fake.new_id("call")
        item_id = self.fake.new_id("item")
        response.item_id = item_id
        if reply.follow_up is not None:
            self.follow_ups[call_id] = reply.follow_up
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
            "status": "in_progress",
        }
        ids = {"response_id": response.id, "item_id": item_id, "output_index": 0, "call_id": call_id}
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": response.id,
                "output_index": 0,
                "item": item,
            }
        )
        await self.send({"type": "response.function_call_arguments.delta", **ids, "delta": call.arguments})
        await self.send(
            {
                "type": "response.function_call_arguments.done",
                **ids,
                "arguments": call.arguments,
                "name": call.name,
            }
        )
        done = dict(item, arguments=call.arguments, status="completed")
        self.record.items.append(done)
        await self.send(
            {"type": "response.output_item.done", "response_id": response.id, "output_index": 0, "item": done}
        )
        return done

    async def _speak(self, response: _Response, reply: FakeReply, fmt: str) -> dict[str, Any]:
        item_id = self.fake.new_id("item")
        response.item_id = item_id
        self.item_audio_ms[item_id] = 0.0
        while len(self.item_audio_ms) > 64:
            self.item_audio_ms.popitem(last=False)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        at = {"response_id": response.id, "item_id": item_id, "output_index": 0, "content_index": 0}
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": response.id,
                "output_index": 0,
                "item": item,
            }
        )
        previous, self.last_item_id = self.last_item_id, item_id
        await self.send({"type": "conversation.item.created", "previous_item_id": previous, "item": item})
        await self.send(
            {"type": "response.content_part.added", **at, "part": {"type": "audio", "transcript": ""}}
        )
        audio = await self.fake.render(reply.text, reply.audio, fmt)
        bytes_per_ms = _OUTPUT_RATE.get(fmt, 24000) // 1000 * (1 if fmt.startswith("g711") else 2)
        chunk = max(1, self.fake.chunk_ms) * bytes_per_ms
        chunks = [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
        words = _words(reply.text)
        # Words spread evenly over the audio, as a voice speaks them: N% of the audio carries N% of the words.
        bounds = [len(words) * n // max(1, len(chunks)) for n in range(len(chunks) + 1)]
        loop = asyncio.get_running_loop()
        start = loop.time()
        stall = self.fake.faults.stall_after_chunks
        for n, data in enumerate(chunks):
            if self.fake.pace > 0:
                # Absolute deadlines: pace 1.0 is real time, 0.1 ten times faster, and no drift either way.
                await asyncio.sleep(max(0.0, start + response.audio_ms / 1000 * self.fake.pace - loop.time()))
            await self.send(
                {"type": "response.audio.delta", **at, "delta": base64.b64encode(data).decode("ascii")}
            )
            response.audio_ms += len(data) / bytes_per_ms
            self.item_audio_ms[item_id] = response.audio_ms
            text = "".join(words[bounds[n] : bounds[n + 1]])
            if text:
                await self.send({"type": "response.audio_transcript.delta", **at, "delta": text})
            if stall is not None and n + 1 >= stall:
                await asyncio.Event().wait()  # stalled until response.cancel, barge-in or close
        await self.send({"type": "response.audio.done", **at})
        await self.send({"type": "response.audio_transcript.done", **at, "transcript": reply.text})
        part = {"type": "audio", "transcript": reply.text}
        await self.send({"type": "response.content_part.done", **at, "part": part})
        done = dict(item, status="completed", content=[part])
        self.record.items.append(done)
        await self.send(
            {"type": "response.output_item.done", "response_id": response.id, "output_index": 0, "item": done}
        )
        return done

    async def on_response_cancel(self, ev: dict[str, Any]) -> None:
        if self.response is None:
            await self._error("response_cancel_not_active", "No active response", ev)
            return
        await self._cancel_response("client_cancelled")

    async def _cancel_response(self, reason: str | None, *, notify: bool = True) -> None:
        response, self.response = self.response, None
        if response is None or response.task is None:
            return
        response.task.cancel()
        await asyncio.gather(response.task, return_exceptions=True)
        if not notify or reason is None:
            return
        self.record.cancellations.append(response.id)
        await self.fake._notify()
        status = {"type": "cancelled", "reason": reason}
        body = {
            "object": "realtime.response",
            "id": response.id,
            "status": "cancelled",
            "status_details": status,
            "output": [],
            "usage": _usage(""),
        }
        await self.send({"type": "response.done", "response": body})


_ClientHandler = Callable[[_ServerConnection, dict[str, Any]], Any]
_CLIENT_HANDLERS: Mapping[str, _ClientHandler] = {
    "session.update": _ServerConnection.on_session_update,
    "input_audio_buffer.commit": _ServerConnection.on_commit,
    "input_audio_buffer.clear": _ServerConnection.on_clear,
    "output_audio_buffer.clear": _ServerConnection.on_output_clear,
    "conversation.item.create": _ServerConnection.on_item_create,
    "conversation.item.delete": _ServerConnection.on_item_delete,
    "conversation.item.truncate": _ServerConnection.on_truncate,
    "response.create": _ServerConnection.on_response_create,
    "response.cancel": _ServerConnection.on_response_cancel,
}


def _error_body(error_type: str, code: str, message: str, event_id: Any = None) -> dict[str, Any]:
    return {"type": error_type, "code": code, "message": message, "param": None, "event_id": event_id}


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + parts[-1:] if text else []


def _usage(text: str) -> dict[str, Any]:
    out = max(1, len(text.split()))
    return {
        "total_tokens": out + 10,
        "input_tokens": 10,
        "output_tokens": out,
        "input_token_details": {
            "cached_tokens": 0,
            "text_tokens": 5,
            "audio_tokens": 5,
            "image_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": out, "audio_tokens": out},
    }


def _tone(text: str, *, silent: bool) -> Pcm:
    # 60 ms per character, like unhurried speech, so a reply's length follows its text.
    rate = 24000
    n = rate * max(200, min(20_000, 60 * len(text))) // 1000
    t = np.arange(n) / rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks at the edges
    wave_ = 0.0 if silent else 0.25 * np.sin(2 * np.pi * 440.0 * t) * fade
    return np.asarray(np.round(wave_ * 32767), dtype=np.int16)


async def _espeak(text: str) -> tuple[Pcm, int]:
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng",
        "--stdout",
        text or " ",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(20):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return _parse_wav(out)


def _read_wav(path: Path) -> tuple[Pcm, int]:
    return _parse_wav(path.read_bytes())


def _parse_wav(data: bytes) -> tuple[Pcm, int]:
    with wave.open(io.BytesIO(data)) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("only 16-bit PCM WAV files are supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        # espeak-ng writes to a pipe, so its header says 0x7fffffff frames: read what is there.
        frames = wav.readframes(2**31 - 1)
    pcm = np.frombuffer(frames, dtype="<i2", count=len(frames) // 2)
    if channels > 1:
        pcm = pcm[: len(pcm) - len(pcm) % channels].reshape(-1, channels).mean(axis=1).astype(np.int16)
    return np.asarray(pcm, dtype=np.int16), rate


def _encode(pcm: Pcm, output_format: str) -> bytes:
    if output_format == "g711_ulaw":
        return g711.ulaw_encode(pcm)
    if output_format == "g711_alaw":
        return g711.alaw_encode(pcm)
    return pcm.astype("<i2", copy=False).tobytes()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m voicelive_sip.testing.fake_voicelive --port 8765`: run until interrupted."""
    parser = argparse.ArgumentParser(description="Local fake Azure AI Voice Live server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="test-key", help="accepted api-key header")
    parser.add_argument("--bearer-token", default="test-token", help="accepted Bearer token")
    parser.add_argument("--no-auth", action="store_true", help="accept any client")
    parser.add_argument("--voice", default="speech", help="tone, speech (espeak-ng), silence or a WAV path")
    parser.add_argument("--pace", type=float, default=1.0, help="1.0 = real time, 0 = as fast as possible")
    parser.add_argument("--greeting", default="Hello, this is a test agent. How can I help?")
    parser.add_argument("--reply", action="append", default=[], help="a scripted reply (repeatable)")
    args = parser.parse_args(argv)
    fake = FakeVoiceLive(
        api_key=None if args.no_auth else args.api_key,
        bearer_token=None if args.no_auth else args.bearer_token,
        greeting=args.greeting,
        replies=[FakeReply(text=text) for text in args.reply] or (FakeReply(),),
        voice=args.voice,
        pace=args.pace,
        host=args.host,
        port=args.port,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with fake:
            print(f"FakeVoiceLive listening: AZURE_VOICELIVE_ENDPOINT={fake.endpoint}", flush=True)
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
