"""One call's Voice Live session: connect, stream audio both ways, reconnect without losing the caller."""

from __future__ import annotations

import asyncio
import binascii
import inspect
import json
import random
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, cast

import aiohttp
import structlog
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError

from voicelive_sip.config import VoiceLiveSettings
from voicelive_sip.voicelive.audio import CallCodec, WireFormat, converters, wire_format
from voicelive_sip.voicelive.errors import VoiceLiveAuthError, VoiceLiveError, classify
from voicelive_sip.voicelive.events import (
    AudioDelta,
    Closed,
    FunctionCall,
    InputTranscript,
    InputTranscriptDelta,
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
    Usage,
)
from voicelive_sip.voicelive.session_config import build_session, greeting_response

Credential = AzureKeyCredential | AsyncTokenCredential
State = Literal["idle", "connecting", "connected", "reconnecting", "closed"]

_APPEND_PREFIX = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX = b'"}'
_MAX_TRACKED_ITEMS = 64
_WRITE_NOW_LIMIT = 64 * 1024  # bytes in the transport's buffer above which appends await the drain
# What a broken socket or the SDK raises on send/receive (the SDK's ConnectionError is an AzureError).
_SEND_ERRORS = (OSError, RuntimeError, aiohttp.ClientError, AzureError, VoiceLiveError)


class AudioBacklog:
    """Caller audio in wire format, bounded in bytes; the oldest frames go first when it is full."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0

    def append(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.size += len(frame)
        while self.size > self.max_bytes and self.frames:
            old = self.frames.popleft()
            self.size -= len(old)
            self.dropped += len(old)

    def keep_last(self, nbytes: int) -> None:
        """Forget whole frames from the front while at least `nbytes` would remain."""
        while self.frames and self.size - len(self.frames[0]) >= nbytes:
            self.size -= len(self.frames.popleft())

    def take(self) -> list[bytes]:
        frames = list(self.frames)
        self.frames.clear()
        self.size = 0
        return frames


class _HistoryEntry:
    __slots__ = ("item_id", "role", "text")

    def __init__(self, role: str, text: str, item_id: str | None) -> None:
        self.role, self.text, self.item_id = role, text, item_id


class VoiceLiveSession:
    """Azure AI Voice Live for one call: `send_audio()` in the call's G.711, `events()` out."""

    def __init__(
        self,
        settings: VoiceLiveSettings,
        *,
        call_codec: CallCodec = "pcmu",
        tools: Sequence[Mapping[str, Any]] = (),
        credential: Credential | None = None,
        call_id: str | None = None,
        max_queued_events: int = 1024,
    ) -> None:
        self.settings = settings
        self.wire: WireFormat = wire_format(settings.audio_format, call_codec)
        self._up, self._down = converters(self.wire, call_codec)
        self.session_config: dict[str, Any] = build_session(settings, self.wire, tools)
        self._credential = credential
        self._owned_credential: AsyncTokenCredential | None = None
        self._log = structlog.get_logger().bind(call_id=call_id, endpoint=settings.endpoint)
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue(max_queued_events)
        self.state: State = "idle"
        self._conn: VoiceLiveConnection | None = None
        self._send_text: Callable[[str], Awaitable[None]] | None = None
        self._write_now: _FrameWriter | None = None  # synchronous text-frame write, when aiohttp allows it
        self._runner: asyncio.Task[None] | None = None
        self._closed_event_sent = False
        bpm = self.wire.bytes_per_ms
        self._outage = AudioBacklog(settings.reconnect_buffer_ms * bpm)
        self._replay = AudioBacklog(settings.reconnect_replay_ms * bpm)
        self._conn_sent = 0  # bytes appended on the current connection: its input timeline
        self._vad_commit_pos: int | None = None
        self._manual_commits: deque[int] = deque(maxlen=_MAX_TRACKED_ITEMS)
        self._history: deque[_HistoryEntry] = deque(maxlen=settings.restore_max_items)
        self._item_audio: OrderedDict[str, int] = OrderedDict()  # item_id -> caller-codec bytes received
        self._truncated_ms: OrderedDict[str, int] = OrderedDict()
        self._function_names: OrderedDict[str, str] = OrderedDict()
        self.active_responses: set[str] = set()
        self.reconnects = 0
        self.audio_bytes_sent = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    async def __aenter__(self) -> VoiceLiveSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection and configure the session; raises a `VoiceLiveError` subclass."""
        if self.state != "idle":
            raise RuntimeError(f"connect() in state {self.state}")
        self.state = "connecting"
        try:
            conn = await self._open()
            await self._start(conn)
            await self._restore()  # audio that arrived while connecting
        except BaseException:
            self.state = "closed"
            await self._close_credential()
            raise
        self.state = "connected"
        self._runner = asyncio.create_task(self._run(conn), name="voicelive-session")
        self._log.info("voicelive.connected", model=self.settings.model, format=self.wire.input_audio_format)

    async def close(self) -> None:
        """Deliberate close: never reconnects; ends `events()` with `Closed(error=None)`."""
        if self.state == "closed" and self._runner is None:
            return
        self.state = "closed"
        conn, self._conn, self._send_text, self._write_now = self._conn, None, None, None
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            # Whatever the runner waits on (a receive, a backoff, a full event queue) is moot now.
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if conn is not None:
            await conn.close()
        await self._close_credential()
        self._push_closed(Closed("closed"))
        self._log.info("voicelive.closed", reconnects=self.reconnects, audio_bytes_sent=self.audio_bytes_sent)

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event in order, ending after `Closed`."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Closed):
                return

    async def next_event(self) -> SessionEvent:
        """The next event (for callers that poll)."""
        return await self._events.get()

    # -- caller audio (hot path) ----------------------------------------------------------------------

    async def send_audio(self, frame: bytes) -> None:
        """Append caller audio (call codec); buffered, bounded, while not connected."""
        data = self._up.convert(frame)
        if not data or self.state == "closed":
            return
        send = self._send_text
        if self.state != "connected" or send is None:
            self._buffer_outage(data)
            return
        try:
            await send(_append_event(data).decode("ascii"))
        except _SEND_ERRORS:
            # The frame never left: keep it for the next connection; the receive loop handles the drop.
            self._buffer_outage(data)
            return
        self._sent(data)

    def send_audio_nowait(self, frame: bytes) -> bool:
        """Append caller audio now, without a task switch; False when it must go through `send_audio`.

        The append is written to the socket at once when the session is connected, the WebSocket is
        aiohttp's without compression and its transport is not backed up; otherwise nothing happens and the
        caller awaits `send_audio`, which buffers and applies back-pressure. Per 20 ms frame and call this
        saves a task wake-up and three coroutine frames on the gateway's busiest path.
        """
        write = self._write_now
        if write is None or self.state != "connected" or write.backed_up():
            return False
        data = self._up.convert(frame)
        if not data:
            return True
        try:
            write(_append_event(data))
        except _SEND_ERRORS:
            self._buffer_outage(data)  # the receive loop notices the drop and reconnects
            return True
        self._sent(data)
        return True

    def _sent(self, data: bytes) -> None:
        self._conn_sent += len(data)
        self.audio_bytes_sent += len(data)
        self._replay.append(data)

    def _buffer_outage(self, data: bytes) -> None:
        before = self._outage.dropped
        self._outage.append(data)
        if self._outage.dropped and not before:
            self._log.warning("voicelive.audio_dropped", limit_ms=self.settings.reconnect_buffer_ms)

    @property
    def dropped_audio_bytes(self) -> int:
        """Caller audio lost because the outage outlasted `reconnect_buffer_ms`."""
        return self._outage.dropped

    # -- control --------------------------------------------------------------------------------------

    async def greet(self) -> bool:
        """Start the proactive greeting if configured (call once, when the call is answered); True if sent."""
        params = greeting_response(self.settings)
        if params is None:
            return False
        return await self._send(
            {"type": "response.create", "response": params} if params else {"type": "response.create"}
        )

    async def create_response(self, instructions: str | None = None) -> None:
        """Ask for a reply now (manual turns, after tool output, after DTMF text)."""
        event: dict[str, Any] = {"type": "response.create"}
        if instructions is not None:
            event["response"] = {"instructions": instructions}
        await self._send(event)

    async def cancel_response(self) -> bool:
        """Cancel the running reply, if there is one; True if a cancel was sent."""
        if not self.active_responses:
            return False
        return await self._send({"type": "response.cancel"})

    async def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        """Tell the model how much of its reply the caller actually heard."""
        self._remember(self._truncated_ms, item_id, audio_end_ms)
        await self._send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
            }
        )

    def clear_output(self) -> int:
        """Drop agent audio not yet taken from `events()`, reset the output filter; returns events dropped."""
        self._down.reset()
        kept: list[SessionEvent] = []
        dropped = 0
        while not self._events.empty():
            event = self._events.get_nowait()
            if isinstance(event, AudioDelta):
                dropped += 1
            else:
                kept.append(event)
        for event in kept:
            self._events.put_nowait(event)
        return dropped

    async def interrupt(self, item_id: str | None, played_ms: int) -> None:
        """Barge-in in one call: cancel the reply, drop queued audio, truncate at what was played."""
        await self.cancel_response()
        self.clear_output()
        if item_id is not None:
            await self.truncate(item_id, played_ms)

    async def commit(self) -> None:
        """End the caller's turn by hand (turn detection `none`)."""
        self._manual_commits.append(self._conn_sent)
        await self._send({"type": "input_audio_buffer.commit"})

    async def add_user_text(self, text: str, *, respond: bool = True) -> None:
        """Add a user message (e.g. DTMF digits as text) and, by default, ask for a reply."""
        self._history.append(_HistoryEntry("user", text, None))
        await self._send({"type": "conversation.item.create", "item": _message("user", text)})
        if respond:
            await self.create_response()

    async def send_function_output(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Return a tool's result to the model and, by default, let it answer."""
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        await self._send({"type": "conversation.item.create", "item": item})
        if respond:
            await self.create_response()

    async def _send(self, event: Mapping[str, Any]) -> bool:
        # Control events are moot while reconnecting (the new connection is restored from the history), and a
        # failed send means the socket is gone, which the receive loop handles; neither is the caller's error.
        conn = self._conn
        if conn is None or self.state != "connected":
            self._log.info("voicelive.send_skipped", type=event.get("type"), state=self.state)
            return False
        try:
            await conn.send(event)
        except _SEND_ERRORS as exc:
            self._log.info("voicelive.send_failed", type=event.get("type"), error=str(exc))
            return False
        return True

    # -- connection -----------------------------------------------------------------------------------

    async def _get_credential(self) -> Credential:
        if self._credential is not None:
            return self._credential
        if self.settings.api_key is not None:
            self._credential = AzureKeyCredential(self.settings.api_key.get_secret_value())
            return self._credential
        from azure.identity.aio import DefaultAzureCredential  # only Entra ID sessions pay for importing it

        self._owned_credential = DefaultAzureCredential()
        self._credential = self._owned_credential
        return self._credential

    async def _close_credential(self) -> None:
        owned, self._owned_credential = self._owned_credential, None
        if owned is not None:
            await owned.close()

    async def _open(self) -> VoiceLiveConnection:
        s = self.settings
        try:
            credential = await self._get_credential()
            manager = connect(
                credential=credential,
                endpoint=s.endpoint,
                api_version=s.api_version,
                model=s.model,
                credential_scopes=[s.credential_scope],
            )
            # The SDK ignores handshake_timeout (PROTOCOL.md), so the bound is ours.
            async with asyncio.timeout(s.connect_timeout):
                return await manager.__aenter__()
        except asyncio.CancelledError as exc:  # close() during a reconnect
            await _close_abandoned_sessions(exc)
            raise
        except Exception as exc:  # every failure becomes one of our types, with the cause kept
            if isinstance(exc, TimeoutError):
                await _close_abandoned_sessions(exc)
            error = classify(exc, s.endpoint)
            raise error from exc

    async def _start(self, conn: VoiceLiveConnection) -> None:
        """Configure a fresh connection; the session goes live when this returns."""
        self._conn = conn
        self._conn_sent = 0
        self._vad_commit_pos = None
        self._manual_commits.clear()
        self._down.reset()
        ws = getattr(conn, "_connection", None)
        # Pre-encoded JSON straight to aiohttp skips the SDK's dict copy and json.dumps (PROTOCOL.md costs).
        self._send_text = ws.send_str if isinstance(ws, aiohttp.ClientWebSocketResponse) else self._send_dict
        self._write_now = _frame_writer(ws)
        await conn.send({"type": "session.update", "session": self.session_config})

    async def _send_dict(self, text: str) -> None:
        conn = self._conn
        if conn is None:
            raise VoiceLiveError("not connected")
        await conn.send(json.loads(text))

    async def _restore(self) -> None:
        """After a reconnect: transcript so far, then uncommitted and buffered caller audio, in order."""
        conn = self._conn
        send = self._send_text
        assert conn is not None and send is not None
        for entry in self._history:
            await conn.send(
                {"type": "conversation.item.create", "item": _message(entry.role, self._heard(entry))}
            )
        pending = self._replay.take() + self._outage.take()
        while pending:
            for data in pending:
                await send(_append_event(data).decode("ascii"))
                self._sent(data)
            # Frames that arrived while we were flushing go out before the session goes live.
            pending = self._outage.take()

    def _heard(self, entry: _HistoryEntry) -> str:
        # A barged-in reply is restored only as far as it was played, cut proportionally on a word boundary.
        if entry.item_id is None or entry.item_id not in self._truncated_ms:
            return entry.text
        total = self._item_audio.get(entry.item_id, 0) // 8  # caller codec: 8 bytes per ms
        if total <= 0:
            return entry.text
        cut = int(len(entry.text) * min(1.0, self._truncated_ms[entry.item_id] / total))
        return entry.text[:cut].rsplit(" ", 1)[0] if cut < len(entry.text) else entry.text

    async def _run(self, conn: VoiceLiveConnection) -> None:
        while True:
            reason = await self._receive(conn)
            if self.state == "closed":
                return
            self._log.warning("voicelive.disconnected", reason=reason)
            await conn.close()
            next_conn = await self._reconnect(reason)
            if next_conn is None:
                return
            conn = next_conn

    async def _reconnect(self, reason: str) -> VoiceLiveConnection | None:
        s = self.settings
        self.state = "reconnecting"
        self._conn, self._send_text, self._write_now = None, None, None
        self.active_responses.clear()
        last: VoiceLiveError | None = None
        for attempt in range(1, s.reconnect_attempts + 1):
            await self._emit(Reconnecting(attempt, reason))
            delay = min(s.reconnect_max_delay, s.reconnect_initial_delay * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: calls dropped together must not reconnect together
            self._log.info("voicelive.reconnecting", attempt=attempt, delay=round(delay, 3), reason=reason)
            await asyncio.sleep(delay)
            if self._is_closed():
                return None
            try:
                conn = await self._open()
            except VoiceLiveAuthError as exc:
                last = exc
                break  # retrying a refused key only burns the backoff
            except VoiceLiveError as exc:
                last, reason = exc, str(exc)
                continue
            if self._is_closed():
                await conn.close()
                return None
            try:
                await self._start(conn)
                await self._restore()
            except _SEND_ERRORS as exc:
                last, reason = classify(exc, s.endpoint), f"restore failed: {exc}"
                await conn.close()
                continue
            self.state = "connected"
            self.reconnects += 1
            self._log.info("voicelive.reconnected", attempt=attempt, restored=len(self._history))
            await self._emit(Reconnected(attempt))
            return conn
        self.state = "closed"
        self._log.error("voicelive.reconnect_failed", error=str(last) if last else reason)
        await self._close_credential()
        self._push_closed(Closed("reconnect failed", last or VoiceLiveError(reason)))
        return None

    async def _receive(self, conn: VoiceLiveConnection) -> str:
        """Dispatch events until the connection ends; returns why it ended."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                raw = await conn.recv_bytes()
            except _SEND_ERRORS as exc:
                return str(exc) or type(exc).__name__
            arrived = loop.time()
            if not raw:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                self._log.warning("voicelive.bad_json", size=len(raw))
                continue
            if isinstance(event, dict):
                await self._dispatch(event, arrived)

    # -- server events --------------------------------------------------------------------------------

    async def _dispatch(self, ev: dict[str, Any], arrived: float = 0.0) -> None:
        kind = ev.get("type")
        if kind == "response.audio.delta":  # the hot path: one per audio chunk
            item_id = ev.get("item_id") or ""
            audio = self._down.convert(binascii.a2b_base64(ev.get("delta") or ""))
            if audio:
                self._count_item_audio(item_id, len(audio))
                await self._emit(AudioDelta(ev.get("response_id") or "", item_id, audio, arrived))
            return
        handler = _HANDLERS.get(kind or "")
        if handler is not None:
            await handler(self, ev)

    async def _on_speech_started(self, ev: dict[str, Any]) -> None:
        await self._emit(SpeechStarted(ev.get("item_id") or "", int(ev.get("audio_start_ms") or 0)))

    async def _on_speech_stopped(self, ev: dict[str, Any]) -> None:
        end_ms = int(ev.get("audio_end_ms") or 0)
        self._vad_commit_pos = end_ms * self.wire.bytes_per_ms
        await self._emit(SpeechStopped(ev.get("item_id") or "", end_ms))

    async def _on_committed(self, ev: dict[str, Any]) -> None:
        # Committed audio lives on in the conversation; only what follows it needs replaying after a drop.
        if self._vad_commit_pos is not None:
            pos, self._vad_commit_pos = self._vad_commit_pos, None
        elif self._manual_commits:
            pos = self._manual_commits.popleft()
        else:
            pos = self._conn_sent
        self._replay.keep_last(max(0, self._conn_sent - pos))

    async def _on_input_delta(self, ev: dict[str, Any]) -> None:
        await self._emit(InputTranscriptDelta(ev.get("item_id") or "", ev.get("delta") or ""))

    async def _on_input_done(self, ev: dict[str, Any]) -> None:
        text = ev.get("transcript") or ""
        if text:
            self._history.append(_HistoryEntry("user", text, ev.get("item_id")))
        await self._emit(InputTranscript(ev.get("item_id") or "", text))

    async def _on_output_delta(self, ev: dict[str, Any]) -> None:
        await self._emit(
            OutputTranscriptDelta(ev.get("response_id") or "", ev.get("item_id") or "", ev.get("delta") or "")
        )

    async def _on_output_done(self, ev: dict[str, Any]) -> None:
        text = ev.get("transcript") or ev.get("text") or ""
        item_id = ev.get("item_id") or ""
        if text:
            self._history.append(_HistoryEntry("assistant", text, item_id))
        await self._emit(OutputTranscript(ev.get("response_id") or "", item_id, text))

    async def _on_audio_done(self, ev: dict[str, Any]) -> None:
        tail = self._down.flush()
        if tail:
            await self._emit(AudioDelta(ev.get("response_id") or "", ev.get("item_id") or "", tail))

    async def _on_response_created(self, ev: dict[str, Any]) -> None:
        response_id = (ev.get("response") or {}).get("id") or ""
        self.active_responses.add(response_id)
        await self._emit(ResponseStarted(response_id))

    async def _on_response_done(self, ev: dict[str, Any]) -> None:
        response = ev.get("response") or {}
        response_id = response.get("id") or ""
        self.active_responses.discard(response_id)
        raw = response.get("usage")
        usage = None
        if isinstance(raw, dict):
            usage = Usage(
                int(raw.get("total_tokens") or 0),
                int(raw.get("input_tokens") or 0),
                int(raw.get("output_tokens") or 0),
            )
        await self._emit(ResponseDone(response_id, response.get("status") or "completed", usage))

    async def _on_output_item_added(self, ev: dict[str, Any]) -> None:
        item = ev.get("item") or {}
        if item.get("type") == "function_call" and item.get("call_id"):
            self._remember(self._function_names, item["call_id"], item.get("name") or "")

    async def _on_arguments_done(self, ev: dict[str, Any]) -> None:
        call_id = ev.get("call_id") or ""
        name = ev.get("name") or self._function_names.get(call_id, "")
        await self._emit(
            FunctionCall(
                call_id,
                name,
                ev.get("arguments") or "{}",
                ev.get("item_id") or "",
                ev.get("response_id") or "",
            )
        )

    async def _on_error(self, ev: dict[str, Any]) -> None:
        err = ev.get("error") or {}
        error = ServiceError(
            type=str(err.get("type") or "error"),
            code=err.get("code"),
            message=str(err.get("message") or ""),
            param=err.get("param"),
            event_id=err.get("event_id"),
        )
        # A cancel racing the service's own interrupt_response is expected after a barge-in, not a problem.
        report = self._log.debug if error.code == "response_cancel_not_active" else self._log.warning
        report("voicelive.event_error", type=error.type, code=error.code, message=error.message)
        await self._emit(error)

    # -- plumbing -------------------------------------------------------------------------------------

    async def _emit(self, event: SessionEvent) -> None:
        # A full queue pauses the reader, and TCP pushes back on the service: bounded, nothing dropped.
        await self._events.put(event)

    def _push_closed(self, event: Closed) -> None:
        if self._closed_event_sent:
            return
        self._closed_event_sent = True
        if self._events.full():
            self._events.get_nowait()  # nobody is reading; the end of the stream matters more
        self._events.put_nowait(event)

    def _is_closed(self) -> bool:
        return self.state == "closed"

    def _count_item_audio(self, item_id: str, nbytes: int) -> None:
        if item_id in self._item_audio:
            self._item_audio[item_id] += nbytes
        else:
            self._remember(self._item_audio, item_id, nbytes)

    @staticmethod
    def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        while len(table) > _MAX_TRACKED_ITEMS:
            table.popitem(last=False)


async def _close_abandoned_sessions(exc: BaseException) -> None:
    """Close the aiohttp session the SDK opened for a handshake our timeout cancelled.

    The SDK closes it only on aiohttp errors, so a cancelled handshake would leak it; the traceback of the
    cancellation still holds it as a local of the SDK's `__aenter__`.
    """
    chained: list[BaseException] = [exc]
    if exc.__context__ is not None:
        chained.append(exc.__context__)
    for err in chained:
        tb = err.__traceback__
        while tb is not None:
            candidate = tb.tb_frame.f_locals.get("session")
            if isinstance(candidate, aiohttp.ClientSession) and not candidate.closed:
                await candidate.close()
            tb = tb.tb_next


def _message(role: str, text: str) -> dict[str, Any]:
    part = {"type": "input_text" if role == "user" else "text", "text": text}
    return {"type": "message", "role": role, "content": [part]}


_Handler = Callable[[VoiceLiveSession, dict[str, Any]], Awaitable[None]]
_HANDLERS: Mapping[str, _Handler] = {
    "input_audio_buffer.speech_started": VoiceLiveSession._on_speech_started,
    "input_audio_buffer.speech_stopped": VoiceLiveSession._on_speech_stopped,
    "input_audio_buffer.committed": VoiceLiveSession._on_committed,
    "conversation.item.input_audio_transcription.delta": VoiceLiveSession._on_input_delta,
    "conversation.item.input_audio_transcription.completed": VoiceLiveSession._on_input_done,
    "response.audio_transcript.delta": VoiceLiveSession._on_output_delta,
    "response.text.delta": VoiceLiveSession._on_output_delta,
    "response.audio_transcript.done": VoiceLiveSession._on_output_done,
    "response.text.done": VoiceLiveSession._on_output_done,
    "response.audio.done": VoiceLiveSession._on_audio_done,
    "response.created": VoiceLiveSession._on_response_created,
    "response.done": VoiceLiveSession._on_response_done,
    "response.output_item.added": VoiceLiveSession._on_output_item_added,
    "response.function_call_arguments.done": VoiceLiveSession._on_arguments_done,
    "error": VoiceLiveSession._on_error,
}


def _append_event(data: bytes) -> bytes:
    """`input_audio_buffer.append` for `data` (wire format) as JSON, without a dict or `json.dumps`."""
    return _APPEND_PREFIX + binascii.b2a_base64(data, newline=False) + _APPEND_SUFFIX


class _WriteTransport(Protocol):
    # asyncio's and uvloop's stream transports alike (uvloop's are not asyncio.Transport instances).
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...


class _FrameWriter:
    """Writes one unfragmented, uncompressed text frame on an aiohttp client WebSocket, synchronously.

    aiohttp's own `send_str` is a coroutine only because of compression and flow control; for an
    uncompressed frame it ends in the writer's synchronous frame write, which masks and writes the frame in
    one `transport.write`. Whole frames keep it safe to mix with aiohttp's own sends on the same socket.
    """

    __slots__ = ("_transport", "_write")

    def __init__(self, write: Callable[[bytes, int, int], None], transport: _WriteTransport) -> None:
        self._write, self._transport = write, transport

    def backed_up(self) -> bool:
        # The kernel is not taking our data: leave the frame to the awaiting path, which drains.
        transport = self._transport
        return transport.is_closing() or transport.get_write_buffer_size() > _WRITE_NOW_LIMIT

    def __call__(self, message: bytes) -> None:
        self._write(message, aiohttp.WSMsgType.TEXT, 0)


def _frame_writer(ws: object) -> _FrameWriter | None:
    """The synchronous writer of an aiohttp client WebSocket, or None (then every send is awaited)."""
    if not isinstance(ws, aiohttp.ClientWebSocketResponse):
        return None
    writer = getattr(ws, "_writer", None)  # aiohttp._websocket.writer.WebSocketWriter
    write = getattr(writer, "_write_websocket_frame", None)
    transport = getattr(writer, "transport", None)
    if getattr(writer, "compress", 1) or not callable(write):
        return None
    try:  # the private method this relies on is (message, opcode, rsv) in aiohttp 3.14; else await
        parameters = list(inspect.signature(write).parameters)
    except (TypeError, ValueError):
        return None
    if parameters != ["message", "opcode", "rsv"]:
        return None
    if not all(callable(getattr(transport, name, None)) for name in ("is_closing", "get_write_buffer_size")):
        return None
    return _FrameWriter(write, cast(_WriteTransport, transport))
