"""Flood control in the style of Kamailio's pike: every packet of a source counts; over the limit, a ban.

Sans-I/O (`now` passed in). `FloodGuard` keeps a token bucket per source host for every datagram or stream
message (malformed and in-dialog ones included) and bans a source that empties it, for `ban` seconds, doubled
for each new ban that follows within `max_ban` (up to `max_ban`). `RateLimit` is one shared bucket (a global
cap), and `LogSampler` lets a few log lines a second through and counts the rest. All tables are bounded.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

MAX_SOURCES = 10_000


class Flood(enum.Enum):
    PASS = "pass"
    BANNED = "banned"  # dropped: the source is banned
    NEW_BAN = "new-ban"  # dropped: this packet started a ban (worth one security event)


@dataclass(slots=True)
class _Source:
    tokens: float
    updated: float
    banned_until: float = float("-inf")
    ban: float = 0.0  # the length of the last ban, for the back-off


class FloodGuard:
    """Per-source packet budget with bans and exponential back-off."""

    def __init__(
        self,
        *,
        packets_per_second: float,
        ban: float = 10.0,
        max_ban: float = 600.0,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        if packets_per_second <= 0 or ban <= 0 or max_ban < ban:
            raise ValueError("packets_per_second and ban must be positive, max_ban at least ban")
        self.rate = float(packets_per_second)
        self.burst = max(1.0, self.rate)  # one second's worth
        self.ban = ban
        self.max_ban = max_ban
        self.max_sources = max_sources
        self.dropped = 0
        self.bans = 0
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def packet(self, host: str, now: float) -> Flood:
        source = self._sources.get(host)
        if source is None:
            source = _Source(self.burst, now)
            self._sources[host] = source
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(host)
        if now < source.banned_until:
            self.dropped += 1
            return Flood.BANNED
        source.tokens = min(self.burst, source.tokens + max(0.0, now - source.updated) * self.rate)
        source.updated = now
        if source.tokens >= 1.0:
            source.tokens -= 1.0
            return Flood.PASS
        # Over the budget: ban, longer each time the source comes back for more soon after its last ban.
        recent = now - source.banned_until < self.max_ban
        source.ban = min(self.max_ban, source.ban * 2) if recent and source.ban else self.ban
        source.banned_until = now + source.ban
        source.tokens = self.burst  # a clean budget once the ban is over
        self.dropped += 1
        self.bans += 1
        return Flood.NEW_BAN

    def banned_for(self, host: str, now: float) -> float:
        """Seconds of ban left for `host` (0.0 when it is not banned)."""
        source = self._sources.get(host)
        return max(0.0, source.banned_until - now) if source is not None else 0.0

    def __len__(self) -> int:
        return len(self._sources)


class RateLimit:
    """One token bucket shared by everyone: a global cap on something per second."""

    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.rate = float(per_second)
        self.burst = max(1.0, self.rate)
        self._tokens = self.burst
        self._updated: float | None = None
        self.refused = 0

    def take(self, now: float) -> bool:
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False


class LogSampler:
    """At most `per_second` log lines a second for one kind of event; the rest are only counted."""

    def __init__(self, per_second: int = 5) -> None:
        self.per_second = per_second
        self.total = 0
        self.suppressed = 0  # since the last line let through
        self._second = float("-inf")
        self._in_second = 0

    def allow(self, now: float) -> bool:
        self.total += 1
        if now - self._second >= 1.0:
            self._second, self._in_second = now, 0
        if self._in_second < self.per_second:
            self._in_second += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """How many were suppressed since the last line that went out (and reset)."""
        count, self.suppressed = self.suppressed, 0
        return count


__all__ = ["Flood", "FloodGuard", "LogSampler", "RateLimit"]
