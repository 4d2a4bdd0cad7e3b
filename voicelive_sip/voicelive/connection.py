"""One call's Voice Live session: connect, stream audio both ways, reconnect without losing the caller.

The protocol (what events mean, what to send, what to restore) is `VoiceLiveProtocol`, which does no I/O; this
module owns the connection, the reconnect, the send path and the one outage backlog of caller audio.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import aiohttp
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError

from voicelive_sip.codecs.names import Codec
from voicelive_sip.config import VoiceLiveSettings
from voicelive_sip.errors import (
    VoiceLiveAuthError,
    VoiceLiveConnectError,
    VoiceLiveDnsError,
    VoiceLiveError,
    VoiceLiveTimeoutError,
    VoiceLiveTlsError,
)
from voicelive_sip.voicelive._sdk import FrameWriter, close_abandoned_sessions, frame_writer, websocket_of
from voicelive_sip.voicelive.audio import WireFormat, converters, wire_format
from voicelive_sip.voicelive.events import (
    AudioDelta,
    Closed,
    Reconnected,
    Reconnecting,
    SessionEvent,
)
from voicelive_sip.voicelive.protocol import VoiceLiveProtocol, append_event
from voicelive_sip.voicelive.session_config import build_session, greeting_response

from .._logger import get_logger

__all__ = ["Credential", "VoiceLiveSession"]

Credential = AzureKeyCredential | AsyncTokenCredential
State = Literal["idle", "connecting", "connected", "reconnecting", "closed"]

# What a broken socket or the SDK raises on send/receive (the SDK's ConnectionError is an AzureError).
_SEND_ERRORS = (OSError, RuntimeError, aiohttp.ClientError, AzureError, VoiceLiveError)


class VoiceLiveSession:
    """Azure AI Voice Live for one call: caller audio in the call's codec in, `events()` out.

    Caller audio that cannot go out at once (connecting, reconnecting, the socket backed up) waits in ONE
    bounded backlog of `reconnect_buffer_ms`, sent in order as soon as the connection takes it; when the
    backlog is full the OLDEST audio is dropped first (`voicelive.audio_dropped`), because after an outage
    the model must hear what the caller said last.
    """

    def __init__(
        self,
        settings: VoiceLiveSettings,
        *,
        codec: Codec | str = Codec.PCMU,
        tools: Sequence[Mapping[str, Any]] = (),
        credential: Credential | None = None,
        call_id: str | None = None,
        max_queued_events: int = 1024,
    ) -> None:
        self.settings = settings
        self.codec = codec if isinstance(codec, Codec) else Codec.parse(codec)
        self.wire: WireFormat = wire_format(settings.audio_format, self.codec)
        self._up, down = converters(self.wire, self.codec)
        self.session_config: dict[str, Any] = build_session(settings, self.wire, tools)
        self._credential = credential
        self._owned_credential: AsyncTokenCredential | None = None
        self._log = get_logger("voicelive_sip.voicelive").bind(call_id=call_id, endpoint=settings.endpoint)
        self.protocol = VoiceLiveProtocol(
            self.wire,
            self.codec,
            down,
            outage_ms=settings.reconnect_buffer_ms,
            replay_ms=settings.reconnect_replay_ms,
            history_items=settings.restore_max_items,
            log=self._log,
        )
        self._outage = self.protocol.outage  # the one backlog of caller audio not sent yet
        self._outage_since = 0.0  # loop time the oldest audio in the backlog arrived
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue(max_queued_events)
        self.state: State = "idle"
        self._conn: VoiceLiveConnection | None = None
        self._send_text: Callable[[str], Awaitable[None]] | None = None
        self._write_now: FrameWriter | None = None  # synchronous text-frame write, when aiohttp allows it
        self._runner: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None  # sends the backlog while connected
        self._pumping = False  # a backlog send is in flight: later audio queues behind it
        self._closed_event_sent = False
        self.reconnects = 0
        # Called with the seconds caller audio waited in the backlog while connected (uplink latency).
        self.on_delayed_send: Callable[[float], None] | None = None

    async def use_codec(self, codec: Codec) -> None:
        """The call settled on another codec than the session was opened for (an outbound call's answer).

        Before any caller audio went out, the wire follows the codec as the configured format says (one
        `session.update` of the formats, so G.711 stays pass-through); after, the converters adapt instead.
        """
        wire = wire_format(self.settings.audio_format, codec)
        if wire != self.wire and not self.protocol.audio_bytes_sent and not self._outage.size:
            formats: dict[str, Any] = {
                "input_audio_format": wire.input_audio_format,
                "output_audio_format": wire.output_audio_format,
            }
            if not wire.is_g711:
                formats["input_audio_sampling_rate"] = wire.sample_rate
            self.session_config.pop("input_audio_sampling_rate", None)
            self.session_config.update(formats)
            self.wire = wire
            if self.state == "connected":
                await self._send({"type": "session.update", "session": formats})
        self.codec = codec
        self._up, down = converters(self.wire, codec)
        self.protocol.use_codec(codec, self.wire, down)
        self._outage = self.protocol.outage
        self._log.info("voicelive.leg_codec_changed", codec=codec, wire=self.wire.input_audio_format)

    @property
    def active_responses(self) -> set[str]:
        """Ids of the replies the service is producing now."""
        return self.protocol.active_responses

    @property
    def conversation_id(self) -> str | None:
        """The service's id of this call's conversation (Foundry agent sessions), once it has said it."""
        return self.protocol.conversation_id if self.settings.is_agent else None

    @property
    def audio_bytes_sent(self) -> int:
        """Caller audio (wire format) appended on any connection so far."""
        return self.protocol.audio_bytes_sent

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
        self._log.info(
            "voicelive.connected",
            model=None if self.settings.is_agent else self.settings.model,
            agent=self.settings.agent_name,
            format=self.wire.input_audio_format,
        )

    async def close(self) -> None:
        """Deliberate close: never reconnects; ends `events()` with `Closed(error=None)`."""
        if self.state == "closed" and self._runner is None:
            return
        self.state = "closed"
        conn, self._conn, self._send_text, self._write_now = self._conn, None, None, None
        runner, self._runner = self._runner, None
        pump, self._pump = self._pump, None
        for task in (runner, pump):
            if task is not None and task is not asyncio.current_task():
                # Whatever it waits on (a receive, a backoff, a full event queue, a send) is moot now.
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
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
        """Append caller audio (call codec), awaiting the socket; kept in the backlog while it cannot go."""
        data = self._up.convert(frame)
        if not data or self.state == "closed":
            return
        send = self._send_text
        if self.state != "connected" or send is None or self._outage.size or self._pumping:
            self._buffer_outage(data)
            return
        try:
            await send(append_event(data).decode("ascii"))
        except _SEND_ERRORS:
            # The frame never left: keep it for the next connection; the receive loop handles the drop.
            self._buffer_outage(data, pump=False)
            return
        self.protocol.audio_sent(data, asyncio.get_running_loop().time())

    def send_audio_nowait(self, frame: bytes) -> bool:
        """Append caller audio now, without a task switch; False when it must go through `send_audio`.

        The append is written to the socket at once when the session is connected, nothing is waiting in the
        backlog, the WebSocket is aiohttp's without compression and its transport is not backed up; otherwise
        nothing happens. Per 20 ms frame and call this saves a task wake-up and three coroutine frames on
        the gateway's busiest path.
        """
        write = self._write_now
        if (
            write is None
            or self.state != "connected"
            or self._outage.size
            or self._pumping
            or write.backed_up()
        ):
            return False
        data = self._up.convert(frame)
        if not data:
            return True
        try:
            write(append_event(data))
        except _SEND_ERRORS:
            self._buffer_outage(data, pump=False)  # the receive loop notices the drop and reconnects
            return True
        self.protocol.audio_sent(data, asyncio.get_running_loop().time())
        return True

    def queue_audio(self, frame: bytes) -> bool:
        """Append caller audio without waiting: True if it is on the socket now, else it waits in the backlog.

        The backlog is sent, in order, as soon as the connection takes it (see the class docstring).
        """
        if self.send_audio_nowait(frame):
            return True
        if self.state != "closed":
            data = self._up.convert(frame)
            if data:
                self._buffer_outage(data)
        return False

    def _buffer_outage(self, data: bytes, *, pump: bool = True) -> None:
        outage = self._outage
        if not outage.size:
            self._outage_since = asyncio.get_running_loop().time()
        before = outage.dropped
        outage.append(data)
        if outage.dropped and not before:
            self._log.warning(
                "voicelive.audio_dropped", limit_ms=self.settings.reconnect_buffer_ms, rule="oldest_first"
            )
        if pump and self.state == "connected" and self._pump is None:
            # Connected but backed up, or behind earlier audio: send the backlog from a task, in order.
            self._pump = asyncio.get_running_loop().create_task(self._send_backlog(), name="voicelive-uplink")

    async def _send_backlog(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.state == "connected" and self._outage.size:
                send = self._send_text
                if send is None:
                    return
                since = self._outage_since
                data = b"".join(self._outage.take())
                self._pumping = True
                try:
                    await send(append_event(data).decode("ascii"))
                except _SEND_ERRORS:
                    self._outage.prepend(data)  # the receive loop notices the drop; _restore sends it
                    return
                finally:
                    self._pumping = False
                self.protocol.audio_sent(data, loop.time())
                if self.on_delayed_send is not None:
                    self.on_delayed_send(loop.time() - since)
        finally:
            if self._pump is asyncio.current_task():
                self._pump = None

    @property
    def dropped_audio_bytes(self) -> int:
        """Caller audio lost because the backlog outgrew `reconnect_buffer_ms` (oldest dropped first)."""
        return self._outage.dropped

    def input_time(self, audio_ms: int) -> float | None:
        """Loop time the caller audio at `audio_ms` (a position the service reported) was sent to it."""
        return self.protocol.input_time(audio_ms)

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
        await self._send(self.protocol.create_response(instructions))

    async def cancel_response(self) -> bool:
        """Cancel the running reply, if there is one; True if a cancel was sent."""
        event = self.protocol.cancel_response()
        return event is not None and await self._send(event)

    async def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        """Tell the model how much of its reply the caller actually heard."""
        await self._send(self.protocol.truncate(item_id, audio_end_ms, content_index))

    def clear_output(self) -> int:
        """Drop agent audio not yet taken from `events()`, reset the output filter; returns events dropped."""
        self.protocol.reset_output()
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
        events = self.protocol.interrupt(item_id, played_ms)
        self.clear_output()
        for event in events:
            await self._send(event)

    async def commit(self) -> None:
        """End the caller's turn by hand (turn detection `none`)."""
        await self._send(self.protocol.commit())

    async def add_user_text(self, text: str, *, respond: bool = True) -> None:
        """Add a user message (e.g. DTMF digits as text) and, by default, ask for a reply."""
        await self._send(self.protocol.add_user_text(text))
        if respond:
            await self.create_response()

    async def send_function_output(self, call_id: str, output: str, *, respond: bool = True) -> None:
        """Return a tool's result to the model and, by default, let it answer."""
        await self._send(self.protocol.function_output(call_id, output))
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
        # A Foundry agent session takes Microsoft Entra ID only: the key is for model sessions.
        if self.settings.api_key is not None and not self.settings.is_agent:
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
            if s.agent_name:
                # The agent brings its model; a conversation learned on this call resumes after a drop.
                manager = connect(
                    credential=credential,
                    endpoint=s.endpoint,
                    api_version=s.api_version,
                    agent_name=s.agent_name,
                    project_name=s.agent_project or "",
                    agent_version=s.agent_version,
                    conversation_id=self.conversation_id or s.agent_conversation_id,
                    credential_scopes=[s.credential_scope],
                )
            else:
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
            await close_abandoned_sessions(exc)
            raise
        except Exception as exc:  # every failure becomes one of our types, with the cause kept
            if isinstance(exc, TimeoutError):
                await close_abandoned_sessions(exc)
            error = classify(exc, s.endpoint)
            raise error from exc

    async def _start(self, conn: VoiceLiveConnection) -> None:
        """Configure a fresh connection; the session goes live when this returns."""
        self._conn = conn
        self.protocol.connection_started()
        ws = websocket_of(conn)
        # Pre-encoded JSON straight to aiohttp skips the SDK's dict copy and json.dumps (PROTOCOL.md costs).
        self._send_text = ws.send_str if ws is not None else self._send_dict
        self._write_now = frame_writer(ws)
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
        # A resumed agent conversation still holds the transcript: replaying it would say everything twice.
        resumed = self.conversation_id is not None
        for event in () if resumed else self.protocol.restore_events():
            await conn.send(event)
        pending = self.protocol.take_audio_to_restore()
        while pending:
            for data in pending:
                await send(append_event(data).decode("ascii"))
                self.protocol.audio_sent(data, asyncio.get_running_loop().time())
            # Frames that arrived while we were flushing go out before the session goes live.
            pending = self._outage.take()

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
        self.protocol.active_responses.clear()
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
            self._log.info("voicelive.reconnected", attempt=attempt, restored=len(self.protocol.history))
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
                session_event = self.protocol.receive(event, arrived)
                if session_event is not None:
                    await self._emit(session_event)

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


def classify(exc: BaseException, endpoint: str) -> VoiceLiveError:
    """Turn an SDK/aiohttp/credential failure into one of our errors with a readable message."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for err in chain:
        if isinstance(err, VoiceLiveError):
            return err
        if isinstance(err, aiohttp.WSServerHandshakeError):
            if err.status in (401, 403):
                return VoiceLiveAuthError(
                    f"Voice Live rejected the credentials ({err.status}) at {endpoint}: "
                    "check AZURE_VOICELIVE_API_KEY or the Entra ID role assignment"
                )
            return VoiceLiveConnectError(f"Voice Live handshake failed with HTTP {err.status} at {endpoint}")
        if isinstance(err, ClientAuthenticationError):
            return VoiceLiveAuthError(f"no Entra ID token for Voice Live: {err.message}")
        if isinstance(err, aiohttp.ClientConnectorDNSError | socket.gaierror):
            return VoiceLiveDnsError(f"cannot resolve the Voice Live host of {endpoint}")
        if isinstance(err, aiohttp.ClientSSLError | ssl.SSLError):
            return VoiceLiveTlsError(f"TLS handshake with {endpoint} failed: {err}")
        if isinstance(err, TimeoutError):
            return VoiceLiveTimeoutError(f"no WebSocket handshake from {endpoint} within the connect timeout")
        if isinstance(err, aiohttp.ClientConnectorError):
            return VoiceLiveConnectError(f"cannot connect to {endpoint}: {err.os_error}")
    return VoiceLiveConnectError(f"Voice Live connection to {endpoint} failed: {exc}")
