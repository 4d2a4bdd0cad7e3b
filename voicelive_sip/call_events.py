"""What a bridged call reports as it happens: small frozen events, awaited with `CallSession.wait_for`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "AmdDetected",
    "AmdOutcome",
    "BargedIn",
    "SessionEvent",
    "SessionFinished",
    "ToolCalled",
    "TranscriptLine",
    "TransferStep",
    "TurnLatency",
]


class TranscriptLine(NamedTuple):
    """One turn of the transcript: seconds after the answer, who spoke, what was said (or heard).

    `role` is "agent", or the remote party: "caller" on an inbound call, "callee" on an outbound one. An agent
    turn the remote party talked over is kept with the text as far as it was heard, `interrupted=True`.
    """

    at: float
    role: str
    text: str
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """A tool the model called, and what it got back (`CallSummary.tool_calls` keeps them all).

    `arguments`: the model's arguments (parsed JSON; the raw string if they did not parse); `result`: the
    output the model received (parsed JSON); `error`: the failure kind (`unknown_tool`, `invalid_arguments`,
    `timeout`, `tool_error`), None when the tool returned.
    """

    name: str
    arguments: Any
    result: Any
    at: float  # seconds after the answer the call arrived
    duration_ms: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BargedIn:
    """The remote party interrupted the agent: `cause` speech or dtmf, `heard_ms` of that reply played."""

    cause: str
    heard_ms: int
    at: float


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """One caller turn: speech end → first agent audio sent, as service + tools + gateway (milliseconds)."""

    at: float  # seconds after the answer the caller stopped speaking
    total_ms: float
    service_ms: float  # speech end → first audio delta received, less the time tools ran
    gateway_ms: float  # first audio delta received → its first RTP packet sent
    tool_ms: float = 0.0  # the turn's tool calls, run one after another by the gateway
    tools: tuple[str, ...] = ()  # names of the tools the turn called, in order


@dataclass(frozen=True, slots=True)
class SessionFinished:
    """The call is over and its summary complete (`await session.wait_ended()` returns that summary)."""

    end_reason: str
    ended_by: str


@dataclass(frozen=True, slots=True)
class AmdDetected:
    """Answering-machine detection decided: `status` HUMAN, MACHINE or NOTSURE with app_amd's `cause`.

    `at_ms`: audio time after the answer; `action`: what follows (conversation, hangup or voicemail).
    """

    status: str
    cause: str
    at_ms: int
    action: str


@dataclass(slots=True)
class AmdOutcome:
    """AMD on one call, for `CallSummary.amd`: the verdict, then for a machine the beep and the message."""

    status: str
    cause: str
    at_ms: int
    action: str  # conversation, hangup or voicemail
    beep_at_ms: int | None = None  # when the beep ended (audio time after the answer)
    beep_hz: float | None = None
    greeting_ended: str | None = None  # beep, silence or timeout: what started the voicemail message
    message_at_ms: int | None = None  # when the message was requested from the model


@dataclass(frozen=True, slots=True)
class TransferStep:
    """One step of a warm transfer (`CallSummary.transfer_steps` keeps them): seconds after the answer.

    `step`: hold, dialling, ringing, answered, no_answer, briefing, briefed, referred, replaced, bridged,
    resumed or ended; `detail`: a SIP status, a reason or how the parties were connected.
    """

    step: str
    at: float
    target: str
    detail: str | None = None


SessionEvent = (
    TranscriptLine | ToolCalled | BargedIn | AmdDetected | TurnLatency | TransferStep | SessionFinished
)
