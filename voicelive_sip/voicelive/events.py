"""What a Voice Live session tells its call: small frozen events, independent of the SDK's models."""

from __future__ import annotations

from dataclasses import dataclass

from voicelive_sip.errors import VoiceLiveError


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking (the barge-in trigger); `audio_start_ms` is on the input timeline."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The caller stopped speaking; the turn is being committed."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputTranscriptDelta:
    """Part of the caller's transcript."""

    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """The caller's final transcript for one turn."""

    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class OutputTranscriptDelta:
    """Part of what the agent is saying."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class OutputTranscript:
    """The agent's full transcript of one reply item."""

    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """Agent audio in the call's codec (G.711 at 8 kHz), ready for the playout buffer."""

    response_id: str
    item_id: str
    audio: bytes
    received_at: float = 0.0  # loop time the WebSocket message was read: where gateway latency starts


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """The model started a reply."""

    response_id: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response."""

    total_tokens: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """A reply ended: completed, cancelled, failed or incomplete."""

    response_id: str
    status: str
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The model wants a tool run; answer with `send_function_output(call_id, ...)`."""

    call_id: str
    name: str
    arguments: str
    item_id: str
    response_id: str


@dataclass(frozen=True, slots=True)
class ServiceError:
    """An `error` event from the service; the session stays open."""

    type: str
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection dropped; caller audio is buffered while the session reconnects."""

    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A new connection carries the session on; replies in flight on the old one are gone."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The session ended: `error` is None after a deliberate close."""

    reason: str
    error: VoiceLiveError | None = None


SessionEvent = (
    SpeechStarted
    | SpeechStopped
    | InputTranscriptDelta
    | InputTranscript
    | OutputTranscriptDelta
    | OutputTranscript
    | AudioDelta
    | ResponseStarted
    | ResponseDone
    | FunctionCall
    | ServiceError
    | Reconnecting
    | Reconnected
    | Closed
)
