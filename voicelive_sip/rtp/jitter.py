"""A sans-I/O adaptive jitter buffer for a gateway: restore order and continuity with the least delay.

A frame is released the moment it is next in sequence. Only a gap (a later packet is here, the next one is
not) makes the buffer wait, and only until the missing packet's expected arrival plus the measured delay
spread, bounded by `min_wait`/`max_wait`; then the slot is concealed and the buffer moves on. With nothing
queued the buffer waits for the sender: silence suppression keeps sequence numbers consecutive (RFC 3551
§4.1), so a pause is never mistaken for loss. Packets and `now` go in; frames and the next deadline come out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from voicelive_sip.codecs.plc import Concealer

__all__ = ["Frame", "JitterBuffer", "JitterStatistics"]

# Slots remembered after release, to tell a duplicate (released for real) from a late packet (concealed).
HISTORY_SLOTS: Final = 128


@dataclass(slots=True)
class Frame:
    """One output slot: `sequence` is the extended sequence number; `concealed` marks a made-up frame."""

    sequence: int
    timestamp: int
    payload: bytes
    concealed: bool = False
    marker: bool = False


@dataclass(slots=True)
class JitterStatistics:
    """Everything the buffer did, counted since creation."""

    pushed: int = 0
    released: int = 0
    concealed: int = 0
    concealment_runs: int = 0  # runs of consecutive concealed frames: the loss bursts the listener heard
    duplicates: int = 0
    late: int = 0
    overflows: int = 0
    resyncs: int = 0


class JitterBuffer:
    """Reorders one source's packets into continuous frames; conceals a missing one after an adaptive wait."""

    def __init__(
        self,
        concealer: Concealer,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_wait: float = 0.030,
        max_wait: float = 0.120,
        capacity: int = 32,
        resync_gap: int = 100,
        spread_decay: float = 0.995,
    ) -> None:
        self.concealer = concealer
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.frame_duration = frame_samples / clock_rate
        self.min_wait = min_wait
        self.max_wait = max_wait
        self.capacity = capacity
        self.resync_gap = resync_gap
        self.spread_decay = spread_decay
        self.stats = JitterStatistics()
        self._pending: dict[int, tuple[int, bytes, bool, float]] = {}
        self._ready: deque[Frame] = deque()
        self._next: int | None = None
        self._concealed_history = 0  # bit i set: slot next-1-i was concealed
        self._frame_bytes = frame_samples
        self._base_transit: float | None = None
        self._spread = 0.0
        self._last_timestamp = 0
        self._timestamp_ext = 0

    def reset(self) -> None:
        """Forget the stream (new SSRC, re-INVITE): frames still queued are dropped."""
        self._pending.clear()
        self._ready.clear()
        self._next = None
        self._concealed_history = 0
        self._base_transit = None
        self._spread = 0.0

    @property
    def depth(self) -> int:
        """Packets held back waiting for a missing one."""
        return len(self._pending) + len(self._ready)

    @property
    def wait(self) -> float:
        """How long past its expected arrival a missing packet is awaited (from the measured delay spread)."""
        return min(self.max_wait, max(self.min_wait, self._spread + self.frame_duration / 4))

    def push(self, sequence: int, timestamp: int, payload: bytes, now: float, marker: bool = False) -> None:
        """Add a packet by extended sequence number (`ReceptionStatistics.update`); `now` in seconds.

        An empty `payload` holds the slot without producing audio (DTMF, comfort noise): the frame comes out
        with an empty payload, so the sequence stays continuous and nothing is concealed for it.
        """
        self.stats.pushed += 1
        expected = self._next
        if expected is None:
            expected = self._next = sequence
            self._last_timestamp = timestamp
            self._timestamp_ext = timestamp
        elif sequence < expected:
            behind = expected - 1 - sequence
            if behind >= self.resync_gap:
                self._resync(sequence)
            else:
                if behind < HISTORY_SLOTS and (self._concealed_history >> behind) & 1:
                    self.stats.late += 1
                    if payload:
                        self._observe(timestamp, now)  # how late it was widens the next wait
                else:
                    self.stats.duplicates += 1
                return
        elif sequence - expected >= self.resync_gap:
            self._resync(sequence)
        elif sequence in self._pending:
            self.stats.duplicates += 1
            return
        # A slot without audio (DTMF, comfort noise) does not follow the audio timeline: do not learn from it.
        arrival_due = self._observe(timestamp, now) if payload else now
        self._pending[sequence] = (timestamp, payload, marker, arrival_due)
        if len(self._pending) > self.capacity:
            self.stats.overflows += 1

    def _observe(self, timestamp: int, now: float) -> float:
        # Unwrap the 32-bit timestamp against the last one seen; returns this packet's nominal arrival time.
        delta = ((timestamp - self._last_timestamp + 2**31) & 0xFFFFFFFF) - 2**31
        self._last_timestamp = timestamp
        self._timestamp_ext += delta
        media_time = self._timestamp_ext / self.clock_rate
        transit = now - media_time
        base = self._base_transit
        if base is None or abs(transit - base) > 1.0:
            # First packet, or a timestamp jump of a second or more: re-anchor rather than learn garbage.
            base = transit
            self._spread = 0.0
        elif transit < base:
            base = transit
        else:
            # Drift up slowly so clock skew or a longer route does not leave the anchor stale forever.
            base += (transit - base) / 512.0
            self._spread = max(transit - base, self._spread * self.spread_decay)
        self._base_transit = base
        return base + media_time

    def _resync(self, sequence: int) -> None:
        # A jump far beyond any reordering: hand over what is queued, in order, and restart at the new number.
        self.stats.resyncs += 1
        for key in sorted(self._pending):
            timestamp, payload, marker, _ = self._pending[key]
            self._ready.append(Frame(key, timestamp, payload, False, marker))
            if payload:
                self.concealer.good(payload)
        self.stats.released += len(self._pending)
        self._pending.clear()
        self._next = sequence
        self._concealed_history = 0

    def get_timer(self) -> float | None:
        """When `pop` must be called again to conceal a missing frame, or None if nothing is waited for."""
        if self._ready or self._next is None or not self._pending or self._next in self._pending:
            return None
        return self._gap_deadline(self._next)

    def _gap_deadline(self, missing: int) -> float:
        first = min(self._pending)
        _, _, _, arrival_due = self._pending[first]
        return arrival_due - (first - missing) * self.frame_duration + self.wait

    def pop(self, now: float) -> Frame | None:
        """The next frame in order if due at `now`: a received one, or a concealed one past its deadline."""
        if self._ready:
            return self._ready.popleft()
        slot = self._next
        if slot is None or not self._pending:
            return None
        entry = self._pending.pop(slot, None)
        if entry is not None:
            timestamp, payload, marker, _ = entry
            self._advance(False)
            self.stats.released += 1
            if payload:
                self._frame_bytes = len(payload)
                self.concealer.good(payload)
            return Frame(slot, timestamp, payload, False, marker)
        if now < self._gap_deadline(slot) and len(self._pending) <= self.capacity:
            return None
        first = min(self._pending)
        timestamp = (self._pending[first][0] - (first - slot) * self.frame_samples) & 0xFFFFFFFF
        if not self._concealed_history & 1:
            self.stats.concealment_runs += 1
        self._advance(True)
        self.stats.concealed += 1
        return Frame(slot, timestamp, self.concealer.conceal(self._frame_bytes), True, False)

    def _advance(self, concealed: bool) -> None:
        self._next = (self._next or 0) + 1
        history = (self._concealed_history << 1) | concealed
        self._concealed_history = history & ((1 << HISTORY_SLOTS) - 1)
