"""Voice Live's event protocol for one call, sans-I/O: server events in; SessionEvents, client events out.

No asyncio, no aiohttp, no SDK: `VoiceLiveSession` owns the connection, the reconnect and the sending, and
asks this object what a received event means and what to send. It keeps what must outlive a connection:
replies in progress, the transcript to restore, how much of each reply the caller heard, the caller audio
not committed yet (replayed after a drop) and the outage backlog (sent after a reconnect).
"""

from __future__ import annotations

import binascii
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from voicelive_sip.codecs.names import Codec
from voicelive_sip.voicelive.audio import AudioConverter, WireFormat
from voicelive_sip.voicelive.events import (
    AudioDelta,
    FunctionCall,
    InputTranscript,
    InputTranscriptDelta,
    OutputTranscript,
    OutputTranscriptDelta,
    ResponseDone,
    ResponseStarted,
    ServiceError,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    Usage,
)

from .._logger import get_logger

__all__ = ["AudioBacklog", "ClientEvent", "VoiceLiveProtocol", "append_event"]

ClientEvent = dict[str, Any]

_APPEND_PREFIX: Final = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX: Final = b'"}'
_MAX_TRACKED_ITEMS: Final = 64
_INPUT_MARKS: Final = 512
_MARK_SLACK_MS: Final = 20  # the oldest kept append covers up to a frame before its end


def append_event(data: bytes) -> bytes:
    """`input_audio_buffer.append` for `data` (wire format) as JSON, without a dict or `json.dumps`."""
    return _APPEND_PREFIX + binascii.b2a_base64(data, newline=False) + _APPEND_SUFFIX


class AudioBacklog:
    """Caller audio in wire format, bounded in bytes; when full, the OLDEST frames are dropped first.

    The freshest speech is what the model must hear after an outage: a caller who kept talking expects an
    answer to what they said last, not to the first seconds of a long outage.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self.size

    def append(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.size += len(frame)
        self._trim()

    def prepend(self, frame: bytes) -> None:
        """Put back audio that could not be sent, ahead of what came after it (still oldest-first to drop)."""
        self.frames.appendleft(frame)
        self.size += len(frame)
        self._trim()

    def _trim(self) -> None:
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


class _InputMarks:
    """(end of the input timeline in bytes, loop time) of the last `size` appends, in two preallocated arrays.

    One mark per caller frame of every call: a deque of tuples allocated 50 objects a second per call, enough
    at a few hundred calls to run the garbage collector's young generation several times a second and its
    full collection (tens of ms, a gap in every call's audio) every few seconds. Here appending allocates
    nothing; only a lookup (once per caller turn) makes tuples.
    """

    __slots__ = ("_ends", "_next", "_times", "count", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ends = array("q", bytes(8 * size))
        self._times = array("d", bytes(8 * size))
        self._next = 0
        self.count = 0

    def append(self, end: int, at: float) -> None:
        i = self._next
        self._ends[i] = end
        self._times[i] = at
        self._next = (i + 1) % self.size
        if self.count < self.size:
            self.count += 1

    def clear(self) -> None:
        self._next = self.count = 0

    def oldest_end(self) -> int:
        return self._ends[(self._next - self.count) % self.size]

    def newest_first(self) -> Iterator[tuple[int, float]]:
        for k in range(1, self.count + 1):
            i = (self._next - k) % self.size
            yield self._ends[i], self._times[i]


class VoiceLiveProtocol:
    """The per-call state of the Voice Live protocol: `receive(server_event)` -> `SessionEvent | None`."""

    def __init__(
        self,
        wire: WireFormat,
        codec: Codec,
        output: AudioConverter,
        *,
        outage_ms: int,
        replay_ms: int,
        history_items: int,
        log: Any = None,
    ) -> None:
        self.wire = wire
        self.codec = codec
        self._down = output
        self._log = log if log is not None else get_logger("voicelive_sip.voicelive")
        self.outage = AudioBacklog(outage_ms * wire.bytes_per_ms)
        self._replay = AudioBacklog(replay_ms * wire.bytes_per_ms)
        self.conn_sent = 0  # bytes appended on the current connection: its input timeline
        # (end of the input timeline in bytes, loop time) of each append, newest last: where the service's
        # audio positions (speech_stopped's audio_end_ms) fall on our clock. About 10 s of 20 ms frames.
        self._input_marks = _InputMarks(_INPUT_MARKS)
        self.audio_bytes_sent = 0
        self._vad_commit_pos: int | None = None
        self._manual_commits: deque[int] = deque(maxlen=_MAX_TRACKED_ITEMS)
        self.history: deque[_HistoryEntry] = deque(maxlen=history_items)
        self._item_audio: OrderedDict[str, int] = OrderedDict()  # item_id -> call-codec bytes received
        self._truncated_ms: OrderedDict[str, int] = OrderedDict()
        self._function_names: OrderedDict[str, str] = OrderedDict()
        self.active_responses: set[str] = set()
        self.conversation_id: str | None = None  # a Foundry agent session's conversation, once announced

    # -- server events ----------------------------------------------------------------------------------

    def receive(self, event: Mapping[str, Any], arrived: float = 0.0) -> SessionEvent | None:
        """What one server event means for the call (None: bookkeeping only); `arrived` is its loop time."""
        kind = event.get("type")
        if kind == "response.audio.delta":  # the hot path: one per audio chunk
            item_id = event.get("item_id") or ""
            audio = self._down.convert(binascii.a2b_base64(event.get("delta") or ""))
            if not audio:
                return None
            self._count_item_audio(item_id, len(audio))
            return AudioDelta(event.get("response_id") or "", item_id, audio, arrived)
        handler = _HANDLERS.get(kind or "")
        return handler(self, event) if handler is not None else None

    def _on_session(self, ev: Mapping[str, Any]) -> None:
        # Where a Foundry agent session names its conversation: session.agent.thread_id (the SDK's
        # AgentConfig), or a conversation_id on the session itself; the first one seen is the call's.
        session = ev.get("session")
        if isinstance(session, Mapping):
            agent = session.get("agent")
            thread = agent.get("thread_id") if isinstance(agent, Mapping) else None
            self._learn_conversation(session.get("conversation_id") or thread)

    def _learn_conversation(self, conversation_id: object) -> None:
        if self.conversation_id is None and isinstance(conversation_id, str) and conversation_id:
            self.conversation_id = conversation_id[:256]

    def _on_speech_started(self, ev: Mapping[str, Any]) -> SessionEvent:
        return SpeechStarted(ev.get("item_id") or "", int(ev.get("audio_start_ms") or 0))

    def _on_speech_stopped(self, ev: Mapping[str, Any]) -> SessionEvent:
        end_ms = int(ev.get("audio_end_ms") or 0)
        self._vad_commit_pos = end_ms * self.wire.bytes_per_ms
        return SpeechStopped(ev.get("item_id") or "", end_ms)

    def _on_committed(self, ev: Mapping[str, Any]) -> None:
        # Committed audio lives on in the conversation; only what follows it needs replaying after a drop.
        if self._vad_commit_pos is not None:
            pos, self._vad_commit_pos = self._vad_commit_pos, None
        elif self._manual_commits:
            pos = self._manual_commits.popleft()
        else:
            pos = self.conn_sent
        self._replay.keep_last(max(0, self.conn_sent - pos))

    def _on_input_delta(self, ev: Mapping[str, Any]) -> SessionEvent:
        return InputTranscriptDelta(ev.get("item_id") or "", ev.get("delta") or "")

    def _on_input_done(self, ev: Mapping[str, Any]) -> SessionEvent:
        text = ev.get("transcript") or ""
        if text:
            self.history.append(_HistoryEntry("user", text, ev.get("item_id")))
        return InputTranscript(ev.get("item_id") or "", text)

    def _on_output_delta(self, ev: Mapping[str, Any]) -> SessionEvent:
        return OutputTranscriptDelta(
            ev.get("response_id") or "", ev.get("item_id") or "", ev.get("delta") or ""
        )

    def _on_output_done(self, ev: Mapping[str, Any]) -> SessionEvent:
        text = ev.get("transcript") or ev.get("text") or ""
        item_id = ev.get("item_id") or ""
        if text:
            self.history.append(_HistoryEntry("assistant", text, item_id))
        return OutputTranscript(ev.get("response_id") or "", item_id, text)

    def _on_audio_done(self, ev: Mapping[str, Any]) -> SessionEvent | None:
        tail = self._down.flush()
        if not tail:
            return None
        item_id = ev.get("item_id") or ""
        self._count_item_audio(item_id, len(tail))
        return AudioDelta(ev.get("response_id") or "", item_id, tail)

    def _on_response_created(self, ev: Mapping[str, Any]) -> SessionEvent:
        response = ev.get("response") or {}
        response_id = response.get("id") or ""
        self.active_responses.add(response_id)
        self._learn_conversation(response.get("conversation_id"))
        return ResponseStarted(response_id)

    def _on_response_done(self, ev: Mapping[str, Any]) -> SessionEvent:
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
        return ResponseDone(response_id, response.get("status") or "completed", usage)

    def _on_output_item_added(self, ev: Mapping[str, Any]) -> None:
        item = ev.get("item") or {}
        if item.get("type") == "function_call" and item.get("call_id"):
            _remember(self._function_names, item["call_id"], item.get("name") or "")

    def _on_arguments_done(self, ev: Mapping[str, Any]) -> SessionEvent:
        call_id = ev.get("call_id") or ""
        name = ev.get("name") or self._function_names.get(call_id, "")
        return FunctionCall(
            call_id,
            name,
            ev.get("arguments") or "{}",
            ev.get("item_id") or "",
            ev.get("response_id") or "",
        )

    def _on_error(self, ev: Mapping[str, Any]) -> SessionEvent:
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
        return error

    def _count_item_audio(self, item_id: str, nbytes: int) -> None:
        if item_id in self._item_audio:
            self._item_audio[item_id] += nbytes
        else:
            _remember(self._item_audio, item_id, nbytes)

    # -- client events ----------------------------------------------------------------------------------

    def create_response(self, instructions: str | None = None) -> ClientEvent:
        """`response.create`, with per-reply instructions if given."""
        event: ClientEvent = {"type": "response.create"}
        if instructions is not None:
            event["response"] = {"instructions": instructions}
        return event

    def cancel_response(self) -> ClientEvent | None:
        """`response.cancel` if a reply is running, else None (a cancel then is a service error)."""
        return {"type": "response.cancel"} if self.active_responses else None

    def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> ClientEvent:
        """`conversation.item.truncate` at what the caller heard; the restored transcript is cut to match."""
        _remember(self._truncated_ms, item_id, audio_end_ms)
        return {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
        }

    def interrupt(self, item_id: str | None, played_ms: int) -> list[ClientEvent]:
        """Barge-in: cancel the running reply (if any), reset the output filter, truncate at `played_ms`."""
        events: list[ClientEvent] = []
        cancel = self.cancel_response()
        if cancel is not None:
            events.append(cancel)
        self._down.reset()
        if item_id is not None:
            events.append(self.truncate(item_id, played_ms))
        return events

    def commit(self) -> ClientEvent:
        """`input_audio_buffer.commit` (turn detection `none`); audio before it is no longer replayed."""
        self._manual_commits.append(self.conn_sent)
        return {"type": "input_audio_buffer.commit"}

    def add_user_text(self, text: str) -> ClientEvent:
        """A user message (e.g. DTMF digits as text), kept in the history to restore."""
        self.history.append(_HistoryEntry("user", text, None))
        return {"type": "conversation.item.create", "item": _message("user", text)}

    def function_output(self, call_id: str, output: str) -> ClientEvent:
        """A tool's result for the model."""
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return {"type": "conversation.item.create", "item": item}

    def reset_output(self) -> None:
        """Forget the output converter's state (agent audio dropped)."""
        self._down.reset()

    # -- caller audio and reconnects --------------------------------------------------------------------

    def audio_sent(self, data: bytes, at: float | None = None) -> None:
        """`data` (wire format) went out on the current connection (at loop time `at`, when known)."""
        self.conn_sent += len(data)
        self.audio_bytes_sent += len(data)
        self._replay.append(data)
        if at is not None:
            self._input_marks.append(self.conn_sent, at)

    def input_time(self, audio_ms: int) -> float | None:
        """When the caller audio at `audio_ms` on this connection's input timeline was sent (None: unknown).

        Within an append the audio is taken as real time, ending when the append went out: a 20 ms frame
        on the live path, or the end of a backlog sent at once (whose start was captured that much earlier).
        """
        target = audio_ms * self.wire.bytes_per_ms
        marks = self._input_marks
        if not marks.count or target < marks.oldest_end() - _MARK_SLACK_MS * self.wire.bytes_per_ms:
            return None  # older than the marks kept (or nothing sent on this connection yet)
        newest = marks.newest_first()
        end, at = next(newest)
        if target >= end:
            return at
        for previous_end, previous_at in newest:
            if previous_end < target:
                break
            end, at = previous_end, previous_at
        return at - (end - target) / self.wire.bytes_per_ms / 1000.0

    def connection_started(self) -> None:
        """A fresh connection: its input timeline starts at zero, replies of the old one are gone."""
        self.conn_sent = 0
        self._input_marks.clear()
        self._vad_commit_pos = None
        self._manual_commits.clear()
        self.active_responses.clear()
        self._down.reset()

    def restore_events(self) -> list[ClientEvent]:
        """The transcript so far as `conversation.item.create` events, replies cut to what was heard."""
        return [
            {"type": "conversation.item.create", "item": _message(entry.role, self._heard(entry))}
            for entry in self.history
        ]

    def use_codec(self, codec: Codec, wire: WireFormat, output: AudioConverter) -> None:
        """The leg's codec (and, before any audio, the wire) changed: see `VoiceLiveSession.use_codec`."""
        if wire != self.wire:
            self.outage = AudioBacklog(self.outage.max_bytes // self.wire.bytes_per_ms * wire.bytes_per_ms)
            self._replay = AudioBacklog(self._replay.max_bytes // self.wire.bytes_per_ms * wire.bytes_per_ms)
            self.wire = wire
        self.codec = codec
        self._down = output

    def take_audio_to_restore(self) -> list[bytes]:
        """Uncommitted audio of the old connection, then the outage backlog, oldest first (emptied)."""
        return self._replay.take() + self.outage.take()

    def _heard(self, entry: _HistoryEntry) -> str:
        # A barged-in reply is restored only as far as it was played, cut proportionally on a word boundary.
        if entry.item_id is None or entry.item_id not in self._truncated_ms:
            return entry.text
        total_ms = self._item_audio.get(entry.item_id, 0) // self.codec.bytes_per_ms
        if total_ms <= 0:
            return entry.text
        cut = int(len(entry.text) * min(1.0, self._truncated_ms[entry.item_id] / total_ms))
        return entry.text[:cut].rsplit(" ", 1)[0] if cut < len(entry.text) else entry.text


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    while len(table) > _MAX_TRACKED_ITEMS:
        table.popitem(last=False)


def _message(role: str, text: str) -> dict[str, Any]:
    part = {"type": "input_text" if role == "user" else "text", "text": text}
    return {"type": "message", "role": role, "content": [part]}


_Handler = Callable[[VoiceLiveProtocol, Mapping[str, Any]], SessionEvent | None]
_HANDLERS: Mapping[str, _Handler] = {
    "session.created": VoiceLiveProtocol._on_session,
    "session.updated": VoiceLiveProtocol._on_session,
    "input_audio_buffer.speech_started": VoiceLiveProtocol._on_speech_started,
    "input_audio_buffer.speech_stopped": VoiceLiveProtocol._on_speech_stopped,
    "input_audio_buffer.committed": VoiceLiveProtocol._on_committed,
    "conversation.item.input_audio_transcription.delta": VoiceLiveProtocol._on_input_delta,
    "conversation.item.input_audio_transcription.completed": VoiceLiveProtocol._on_input_done,
    "response.audio_transcript.delta": VoiceLiveProtocol._on_output_delta,
    "response.text.delta": VoiceLiveProtocol._on_output_delta,
    "response.audio_transcript.done": VoiceLiveProtocol._on_output_done,
    "response.text.done": VoiceLiveProtocol._on_output_done,
    "response.audio.done": VoiceLiveProtocol._on_audio_done,
    "response.created": VoiceLiveProtocol._on_response_created,
    "response.done": VoiceLiveProtocol._on_response_done,
    "response.output_item.added": VoiceLiveProtocol._on_output_item_added,
    "response.function_call_arguments.done": VoiceLiveProtocol._on_arguments_done,
    "error": VoiceLiveProtocol._on_error,
}
