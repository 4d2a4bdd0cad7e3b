"""Reception statistics of one RTP source: extended sequence numbers, loss, jitter (RFC 3550 appendix A)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from voicelive_sip.rtp.packet import ReportBlock

__all__ = ["ReceptionSnapshot", "ReceptionStatistics"]

# RFC 3550 A.1: a jump of more than MAX_DROPOUT ahead or MAX_MISORDER behind is a restart, confirmed by the
# next packet continuing from the new number.
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
SEQ_MOD: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class ReceptionSnapshot:
    """Receive-side numbers of one source at one moment (for logs, metrics and tests)."""

    ssrc: int | None
    packets_received: int
    packets_expected: int
    cumulative_lost: int
    fraction_lost: float
    jitter_ms: float
    extended_highest_sequence: int


class ReceptionStatistics:
    """RFC 3550 A.1 (sequence validity), A.3 (loss) and A.8 (jitter) for the current source; sans-I/O."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self._clear()

    def _clear(self) -> None:
        self.received = 0
        self._base_ext = 0
        self._max_ext = -1
        self._bad_seq: int | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self._last_fraction = 0
        self._transit: float | None = None
        self._jitter = 0.0  # in timestamp units, as RFC 3550 A.8 keeps it

    def reset(self, ssrc: int) -> None:
        """Start over for a new source (SSRC change): RFC 3550 §8.2 treats it as a different participant."""
        self._clear()
        self.ssrc = ssrc

    def update(self, sequence_number: int, timestamp: int, arrival: float) -> int | None:
        """Account for one packet; returns its extended sequence number, or None if it looks bogus (A.1)."""
        if self._max_ext < 0:
            self._restart(sequence_number)
        else:
            max_seq = self._max_ext & 0xFFFF
            delta = (sequence_number - max_seq) & 0xFFFF
            if delta < MAX_DROPOUT:
                extended = self._max_ext + delta
                self._bad_seq = None
                self._max_ext = extended
            elif delta <= SEQ_MOD - MAX_MISORDER:
                # A very large jump: restart only if the next packet confirms the new numbering (A.1).
                if self._bad_seq == sequence_number:
                    self._restart(sequence_number)
                else:
                    self._bad_seq = (sequence_number + 1) & 0xFFFF
                    return None
            else:
                extended = self._max_ext - (SEQ_MOD - delta)  # duplicate or reordered, behind the maximum
                self.received += 1
                self._update_jitter(timestamp, arrival)
                return extended
        self.received += 1
        self._update_jitter(timestamp, arrival)
        return self._max_ext

    def _restart(self, sequence_number: int) -> None:
        # Keep extended numbers monotonic across a restart: continue from above the old maximum.
        if self._max_ext >= 0:
            self._max_ext += SEQ_MOD - (self._max_ext & 0xFFFF) + sequence_number
        else:
            self._max_ext = sequence_number
        self._base_ext = self._max_ext
        self._bad_seq = None
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = None

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        # RFC 3550 A.8 with the arrival time in timestamp units; 32-bit wrap handled by the signed difference.
        transit = arrival * self.clock_rate - timestamp
        previous = self._transit
        self._transit = transit
        if previous is None:
            return
        d = transit - previous
        # A timestamp jump (sender restart, clock step) is not jitter: skip samples a second or more apart.
        d = (d + 2**31) % 2**32 - 2**31
        if abs(d) >= self.clock_rate:
            return
        self._jitter += (abs(d) - self._jitter) / 16.0

    @property
    def expected(self) -> int:
        """Packets expected since the start of the source (A.3)."""
        return self._max_ext - self._base_ext + 1 if self._max_ext >= 0 else 0

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received (A.3); duplicates can make it negative, as the RFC allows."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units (A.8)."""
        return self._jitter

    @property
    def extended_highest_sequence(self) -> int:
        """Highest extended sequence number received (0 before any packet)."""
        return max(self._max_ext, 0)

    def report_block(self, lsr: int = 0, dlsr: int = 0) -> ReportBlock | None:
        """A reception report for this interval; starts the next interval (RFC 3550 A.3 fraction lost)."""
        if self.ssrc is None or self._max_ext < 0:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = (
            0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        )
        self._last_fraction = min(fraction, 255)
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=self._last_fraction,
            packets_lost=self.cumulative_lost,
            highest_sequence=self._max_ext & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=lsr,
            dlsr=dlsr,
        )

    def snapshot(self) -> ReceptionSnapshot:
        """The current numbers; `fraction_lost` is the last reported interval's (0..1)."""
        return ReceptionSnapshot(
            ssrc=self.ssrc,
            packets_received=self.received,
            packets_expected=self.expected,
            cumulative_lost=self.cumulative_lost,
            fraction_lost=self._last_fraction / 256.0,
            jitter_ms=1000.0 * self._jitter / self.clock_rate,
            extended_highest_sequence=self.extended_highest_sequence,
        )
