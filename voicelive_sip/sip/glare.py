"""Re-INVITE glare (RFC 3261 §14.1): when both sides offer at once, each waits a random time and tries again.

Sans-I/O: the caller passes `now` and a random source, and gets back when to try again.
"""

from __future__ import annotations

import random


def glare_backoff(rng: random.Random, *, owns_call_id: bool) -> float:
    """Seconds to wait after a 491: 2.1–4 s if we generated the Call-ID, else 0–2 s; in units of 10 ms."""
    if owns_call_id:
        return rng.randint(210, 400) / 100
    return rng.randint(0, 200) / 100


class ReofferAttempts:
    """Attempts of one re-INVITE we send: on 491, `retry_at()` says when to try again, once."""

    def __init__(
        self, *, owns_call_id: bool, rng: random.Random | None = None, max_attempts: int = 2
    ) -> None:
        self.owns_call_id = owns_call_id
        self.rng = rng or random.Random()
        self.max_attempts = max_attempts
        self.attempts = 0

    def begin(self) -> None:
        self.attempts += 1

    def retry_at(self, status_code: int, now: float) -> float | None:
        """After a final response: the time of the next attempt (491 with attempts left), else None."""
        if status_code != 491 or self.attempts >= self.max_attempts:
            return None
        return now + glare_backoff(self.rng, owns_call_id=self.owns_call_id)


__all__ = ["ReofferAttempts", "glare_backoff"]
