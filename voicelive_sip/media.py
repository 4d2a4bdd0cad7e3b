"""MediaLeg: the one interface between a bridge and whatever carries the call's audio (RTP now, WebRTC next).

Audio crosses it in the leg format of the call's `codec`: G.711 bytes (8 kHz, 8 bytes a millisecond), or for a
wideband codec little-endian PCM16 mono at `codec.sample_rate` (G.722: 16 kHz, 32 bytes a millisecond; Opus
on WebRTC: 24 kHz, 48), decoded and encoded by the leg itself; `codec.bytes_per_ms` says which. So the leg
alone knows packets, clocks, codecs and sockets, and it alone counts what was played: `played_ms` is the
playout position barge-in truncates at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from voicelive_sip.codecs.names import Codec

if TYPE_CHECKING:  # only an annotation: importing rtp here would import rtp/__init__, which imports this
    from voicelive_sip.rtp.dtmf import DtmfEvent

__all__ = [
    "ByeReceived",
    "DtmfReceived",
    "LegStats",
    "MediaEvent",
    "MediaLeg",
    "MediaTimeout",
    "SsrcChanged",
]


# -- what a leg reports besides audio (small frozen dataclasses, h11 style) ---------------------------
@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The caller pressed a key (RFC 4733)."""

    event: DtmfEvent


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """No RTP or RTCP for `idle` seconds while media was expected (the call is probably dead), or, with
    `on_hold`, the call has been on hold for `idle` seconds, past the hold limit."""

    idle: float
    on_hold: bool = False


@dataclass(frozen=True, slots=True)
class SsrcChanged:
    """The peer's stream restarted with a new SSRC (RFC 3550 §8.2); `old` is None for the first source."""

    old: int | None
    new: int


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The peer sent RTCP BYE for its source (RFC 3550 §6.6)."""

    ssrc: int
    reason: str


MediaEvent = DtmfReceived | MediaTimeout | SsrcChanged | ByeReceived


class LegStats(Protocol):
    """The counters a call summary reports for its media."""

    @property
    def packets_sent(self) -> int: ...
    @property
    def packets_received(self) -> int: ...
    @property
    def cumulative_lost(self) -> int: ...
    @property
    def jitter_ms(self) -> float: ...


@runtime_checkable
class MediaLeg(Protocol):
    """Caller audio in (`receive`), agent audio out (`enqueue`, `clear`), playout position, DTMF events."""

    # Called with each frame of queued (agent) audio as it goes out: recording, first audio, latency metrics.
    on_played: Callable[[bytes], None] | None

    @property
    def codec(self) -> Codec:
        """The call's codec: its `law`/`sample_rate`/`bytes_per_ms` say what format crosses this interface."""
        ...

    @property
    def played_ms(self) -> int:
        """Milliseconds of queued agent audio played out so far (a running position; silence not counted)."""
        ...

    @property
    def queued_ms(self) -> int:
        """Agent audio queued and not yet played, in milliseconds (rounded up)."""
        ...

    @property
    def silence_frames_sent(self) -> int:
        """Frames that found nothing queued and went out as silence (a running count: underruns)."""
        ...

    @property
    def frame_deadline(self) -> float:
        """Loop time the frame being played now was due (for latency metrics), 0.0 if unpaced."""
        ...

    @property
    def stats(self) -> LegStats:
        """Counters for the call summary."""
        ...

    def receive(self, handler: Callable[[bytes], None]) -> None:
        """Hand each caller frame to `handler` from now on, starting with those already received."""
        ...

    def enqueue(self, payload: bytes) -> int:
        """Queue agent audio (any length) for playout; returns the bytes accepted (the queue is bounded)."""
        ...

    def clear(self) -> int:
        """Drop all queued agent audio at once (barge-in); returns the bytes dropped."""
        ...

    def events(self) -> AsyncIterator[MediaEvent]:
        """DTMF and media-timeout events (and transport-specific ones), until the leg closes."""
        ...

    def close(self) -> None:
        """Stop sending and receiving and release the leg's resources (idempotent)."""
        ...
