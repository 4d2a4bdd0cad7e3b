"""Whether Voice Live is known to be unreachable, from the outcome of each connection attempt.

A gateway that cannot reach Voice Live should say so before a caller finds out: its OPTIONS answers and
/readyz turn 503, so a dispatcher (Kamailio's probing) sends calls to another gateway. Sans-I/O: the gateway
reports every attempt's outcome, and probes while the service is marked down, so it learns when it is back.
"""

from __future__ import annotations


class ServiceHealth:
    """Down after `threshold` connection attempts in a row failed; up again at the first success."""

    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self.failures_in_a_row = 0
        self.last_error: str | None = None

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
        self.last_error = None

    def failed(self, error: str) -> None:
        self.failures_in_a_row += 1
        self.last_error = error

    @property
    def down(self) -> bool:
        return self.threshold > 0 and self.failures_in_a_row >= self.threshold

    @property
    def problem(self) -> str | None:
        """Why new calls should go elsewhere (for OPTIONS, INVITE and /readyz), or None."""
        if not self.down:
            return None
        return f"Voice Live unreachable ({self.failures_in_a_row} attempts failed: {self.last_error})"


__all__ = ["ServiceHealth"]
