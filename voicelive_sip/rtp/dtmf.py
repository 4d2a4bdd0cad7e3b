"""DTMF as RFC 4733 telephone-events: a receiver that reports one event per key press and a sender."""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DTMF_DIGITS",
    "DtmfEvent",
    "TelephoneEventPacket",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "build_event_payload",
    "parse_event_payload",
]

# RFC 4733 §3.2: events 0-9, 10 = *, 11 = #, 12-15 = A-D.
DTMF_DIGITS: Final = "0123456789*#ABCD"
END_RETRANSMISSIONS: Final = 3  # RFC 4733 §2.5.1.4: the final packet is sent three times
DEFAULT_VOLUME: Final = 10  # -10 dBm0, what common senders use
MAX_QUEUED_DIGITS: Final = 64

_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One key press; `ended` is False when the end packets were all lost and the event timed out."""

    digit: str
    duration_ms: int
    timestamp: int
    volume: int
    ended: bool = True


def parse_event_payload(payload: bytes) -> tuple[int, bool, int, int]:
    """Split an RFC 4733 §2.3 payload into (event, end, volume, duration); raises ValueError if short."""
    if len(payload) < 4:
        raise ValueError("telephone-event payload shorter than 4 octets")
    event, flags, duration = _EVENT.unpack_from(payload)
    return event, bool(flags & 0x80), flags & 0x3F, duration


def build_event_payload(event: int, end: bool, volume: int, duration: int) -> bytes:
    """Build an RFC 4733 §2.3 payload (the R bit is always 0)."""
    return _EVENT.pack(event, (0x80 if end else 0) | (volume & 0x3F), min(duration, 0xFFFF))


class TelephoneEventReceiver:
    """Turns telephone-event packets into `DtmfEvent`s: exactly one per key press (sans-I/O).

    The RTP timestamp identifies an event (RFC 4733 §2.5.1.2), so repeated end packets, retransmissions and a
    missing marker bit change nothing; if every end packet is lost the event is reported after `timeout`.
    """

    def __init__(self, *, clock_rate: int = 8000, timeout: float = 0.3, history: int = 16) -> None:
        self.clock_rate = clock_rate
        self.timeout = timeout
        self.malformed = 0
        self.unsupported = 0
        self._finished: deque[int] = deque(maxlen=history)
        self._events: deque[DtmfEvent] = deque(maxlen=history)
        self._current: tuple[int, int, int, int] | None = None  # timestamp, event, volume, duration
        self._last_seen = 0.0

    def receive(self, timestamp: int, payload: bytes, now: float) -> None:
        """Feed one telephone-event payload and its RTP timestamp; events come out of `next_event`."""
        try:
            event, end, volume, duration = parse_event_payload(payload)
        except ValueError:
            self.malformed += 1
            return
        if event >= len(DTMF_DIGITS):
            self.unsupported += 1  # flash, modem tones: not DTMF
            return
        if timestamp in self._finished:
            return  # the second and third end packet, or a straggler of a reported event
        current = self._current
        if current is not None and current[0] != timestamp:
            self._finish(ended=False)  # a new event began before the old one's end packets arrived
            current = None
        if current is not None:
            duration = max(duration, current[3])
        self._current = (timestamp, event, volume, duration)
        self._last_seen = now
        if end:
            self._finish(ended=True)

    def _finish(self, *, ended: bool) -> None:
        current = self._current
        if current is None:
            return
        timestamp, event, volume, duration = current
        self._current = None
        self._finished.append(timestamp)
        duration_ms = round(1000 * duration / self.clock_rate)
        self._events.append(DtmfEvent(DTMF_DIGITS[event], duration_ms, timestamp, volume, ended))

    def get_timer(self) -> float | None:
        """When an event whose end packets never came will be reported (call `handle_timer`)."""
        return None if self._current is None else self._last_seen + self.timeout

    def handle_timer(self, now: float) -> None:
        """Report the event in progress if it has gone quiet for `timeout`."""
        if self._current is not None and now >= self._last_seen + self.timeout:
            self._finish(ended=False)

    def next_event(self) -> DtmfEvent | None:
        """The next finished key press, or None."""
        return self._events.popleft() if self._events else None


@dataclass(frozen=True, slots=True)
class TelephoneEventPacket:
    """What to send on one media tick instead of audio."""

    payload: bytes
    marker: bool
    timestamp: int


class TelephoneEventSender:
    """Schedules RFC 4733 packets for queued digits, one per media tick (sans-I/O).

    Per RFC 4733 §2.5.1: every packet of an event carries the event's start timestamp, the first one the
    marker bit, durations grow by one frame per packet, and the end packet goes out three times.
    """

    def __init__(
        self, *, clock_rate: int = 8000, frame_samples: int = 160, volume: int = DEFAULT_VOLUME
    ) -> None:
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.volume = volume
        self._queue: deque[tuple[int, int, int]] = deque()
        self._event: int | None = None
        self._pause = 0  # ticks still to pass without events after the last end packet
        self._pause_after = 0
        self._timestamp = 0
        self._total = 0
        self._updates = 0
        self._sent = 0

    def send(self, digit: str, duration_ms: int = 100, *, pause_ms: int = 0) -> None:
        """Queue a digit (0-9 * # A-D) lasting `duration_ms`, then `pause_ms` without events after its end
        packets; raises ValueError or OverflowError."""
        digit = digit.upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        if not 10 <= duration_ms <= 8000:
            raise ValueError("DTMF duration must be 10-8000 ms (one RFC 4733 segment)")
        if not 0 <= pause_ms <= 2000:
            raise ValueError("DTMF pause must be 0-2000 ms")
        if len(self._queue) >= MAX_QUEUED_DIGITS:
            raise OverflowError("too many DTMF digits queued")
        pause_ticks = math.ceil(pause_ms * self.clock_rate / 1000 / self.frame_samples)
        self._queue.append((DTMF_DIGITS.index(digit), duration_ms * self.clock_rate // 1000, pause_ticks))

    @property
    def active(self) -> bool:
        """True while an event is being sent, its pause runs, or digits are queued."""
        return self._event is not None or self._pause > 0 or bool(self._queue)

    def clear(self) -> None:
        """Drop queued digits; an event in progress still completes with its end packets."""
        self._queue.clear()

    def tick(self, timestamp: int) -> TelephoneEventPacket | None:
        """The packet for this tick, if any; `timestamp` is where the audio stream is now."""
        if self._event is None:
            if self._pause > 0:
                self._pause -= 1
                return None
            if not self._queue:
                return None
            self._event, self._total, self._pause_after = self._queue.popleft()
            self._timestamp = timestamp & 0xFFFFFFFF
            self._updates = max(1, math.ceil(self._total / self.frame_samples))
            self._sent = 0
        self._sent += 1
        first = self._sent == 1
        end = self._sent >= self._updates
        duration = self._total if end else self._sent * self.frame_samples
        payload = build_event_payload(self._event, end, self.volume, duration)
        if self._sent >= self._updates + END_RETRANSMISSIONS - 1:
            self._event = None
            self._pause = self._pause_after
        return TelephoneEventPacket(payload, first, self._timestamp)
