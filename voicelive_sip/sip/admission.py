"""Who may start something new: the source allow-list and a token bucket per source address.

Sans-I/O: `now` is passed in. The bucket table is an LRU of bounded size, so a spray of forged source
addresses costs a fixed amount of memory.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SOURCES = 10_000


class Verdict(enum.Enum):
    ADMIT = "admit"
    REFUSED = "refused"  # not in the allow-list: ignore silently
    THROTTLED = "throttled"  # over the per-source rate: drop
    THROTTLED_FIRST = "throttled-first"  # the first drop for this source in the last second: worth a log line


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    warned: float = float("-inf")


class Admission:
    """`admit(source_host, now)` for each request; only requests that start something new spend a token."""

    def __init__(
        self, *, rate: float, allow_from: Sequence[str] = (), max_sources: int = MAX_SOURCES
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1.0, self.rate)  # a bucket must hold one whole token, whatever the rate
        self.max_sources = max_sources
        self._allow = [ipaddress.ip_network(net, strict=False) for net in allow_from]
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allowed(self, host: str) -> bool:
        """True when `host` is in the allow-list (or there is none)."""
        if not self._allow:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._allow)

    def admit(self, host: str, now: float, *, new_request: bool = True) -> Verdict:
        """The allow-list for everything; the token bucket only when `new_request`."""
        if not self.allowed(host):
            return Verdict.REFUSED
        if not new_request:
            return Verdict.ADMIT  # ACK, CANCEL and in-dialog requests finish what was admitted
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self._buckets[host] = bucket
            if len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(host)
            bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens < 1.0:
            if now - bucket.warned >= 1.0:  # one log line per source per second, not one per datagram
                bucket.warned = now
                return Verdict.THROTTLED_FIRST
            return Verdict.THROTTLED
        bucket.tokens -= 1.0
        return Verdict.ADMIT

    def __len__(self) -> int:
        return len(self._buckets)


__all__ = ["MAX_SOURCES", "Admission", "Verdict"]
