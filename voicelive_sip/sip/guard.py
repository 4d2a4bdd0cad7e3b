"""Digest guessing: failed inbound authentications counted per source and per user, bans with back-off.

Sans-I/O: `now` is passed in. Both tables are LRUs of bounded size, so a spray of source addresses or
usernames costs a fixed amount of memory (and at worst evicts the oldest records).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field

MAX_ENTRIES = 10_000


class BanSubject(enum.Enum):
    SOURCE = "source"  # one address guessed too often
    USER = "user"  # one username was guessed too often, from anywhere


@dataclass(frozen=True, slots=True)
class Ban:
    """A ban in force: who, until when, for how long in all, and the failures counted against them."""

    subject: BanSubject
    key: str
    until: float
    seconds: float
    failures: int

    def remaining(self, now: float) -> float:
        """Seconds left at `now` (never negative)."""
        return max(0.0, self.until - now)


@dataclass(slots=True)
class _Record:
    recent: deque[float]  # failure times inside the window, at most `threshold` of them
    failures: int = 0  # every failure counted against this key since it was first seen
    bans: int = 0  # bans so far: the next one lasts ban × 2**bans
    ban: Ban | None = None
    trusted: set[str] = field(default_factory=set)  # users: sources that authenticated as this user


class AuthGuard:
    """`check` before verifying credentials, then `failed` or `succeeded` with the outcome."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        user_max_failures: int = 20,
        window: float = 60.0,
        ban: float = 60.0,
        max_ban: float = 3600.0,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        if min(max_failures, user_max_failures, max_entries) < 1 or min(window, ban, max_ban) <= 0:
            raise ValueError("failure thresholds, table sizes and durations must be positive")
        self.max_failures = max_failures
        self.user_max_failures = user_max_failures
        self.window = float(window)
        self.ban = float(ban)
        self.max_ban = max(float(max_ban), self.ban)
        self.max_entries = max_entries
        self._sources: OrderedDict[str, _Record] = OrderedDict()
        self._users: OrderedDict[str, _Record] = OrderedDict()

    def check(self, source_host: str, user: str | None, now: float) -> Ban | None:
        """The ban that refuses this attempt, if any: the source's, then the user's."""
        record = self._sources.get(source_host)
        if record is not None and record.ban is not None and now < record.ban.until:
            return record.ban
        if user is None:
            return None
        record = self._users.get(user)
        if record is None or record.ban is None or now >= record.ban.until:
            return None
        # A user ban stops distributed guessing; a source that proved it knows the password keeps working,
        # so strangers cannot lock the real PBX out by guessing wrong on purpose.
        return None if source_host in record.trusted else record.ban

    def failed(self, source_host: str, user: str | None, now: float) -> tuple[Ban, ...]:
        """Count a failed attempt; the bans it started (none, the source's, the user's or both)."""
        bans = [self._fail(self._sources, BanSubject.SOURCE, source_host, self.max_failures, now)]
        if user is not None:
            bans.append(self._fail(self._users, BanSubject.USER, user, self.user_max_failures, now))
        return tuple(ban for ban in bans if ban is not None)

    def succeeded(self, source_host: str, user: str | None) -> None:
        """A correct password: forget the source's failures and back-off; trust it for this user."""
        self._sources.pop(source_host, None)
        if user is None:
            return
        record = self._record(self._users, user, self.user_max_failures)
        record.trusted.add(source_host)
        if len(record.trusted) > self.max_entries:
            record.trusted.pop()

    def __len__(self) -> int:
        return len(self._sources) + len(self._users)

    def _record(self, table: OrderedDict[str, _Record], key: str, threshold: int) -> _Record:
        record = table.get(key)
        if record is None:
            record = table[key] = _Record(deque(maxlen=threshold))
            if len(table) > self.max_entries:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return record

    def _fail(
        self, table: OrderedDict[str, _Record], subject: BanSubject, key: str, threshold: int, now: float
    ) -> Ban | None:
        record = self._record(table, key, threshold)
        record.failures += 1
        recent = record.recent
        while recent and now - recent[0] >= self.window:
            recent.popleft()
        recent.append(now)
        if len(recent) < threshold:
            return None
        recent.clear()
        if record.ban is not None and now - record.ban.until >= self.max_ban:
            record.bans = 0  # quiet for as long as the longest ban: start the back-off again
        seconds = min(self.ban * 2.0 ** min(record.bans, 64), self.max_ban)
        record.bans += 1
        record.ban = Ban(subject, key, now + seconds, seconds, record.failures)
        return record.ban


__all__ = ["MAX_ENTRIES", "AuthGuard", "Ban", "BanSubject"]
