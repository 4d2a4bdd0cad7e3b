"""RFC 4028 session timers for one dialog: who refreshes, when, and when an unrefreshed session ends.

Sans-I/O: every method takes `now`; `get_timer()` says when `handle_timer()` wants to be called, and
`handle_timer()` says what to do (send a refresh, or end the session with BYE).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from ..errors import SipParseError
from .headers import param_value, parse_delta_seconds, parse_params
from .message import Message, Request, Response

Role = Literal["uac", "uas"]


class TimerAction(enum.Enum):
    REFRESH = "refresh"  # we are the refresher and half the interval has passed (§7.2/§9)
    EXPIRE = "expire"  # the other side was to refresh and did not (§10): send BYE


def parse_session_expires(message: Message) -> tuple[int, Role | None] | None:
    """Session-Expires: (interval, refresher or None); None when absent or malformed."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    head, _, rest = value.partition(";")
    try:
        interval = parse_delta_seconds(head, "Session-Expires")
        params = parse_params(";" + rest) if rest else ()
    except SipParseError:
        return None
    refresher = (param_value(params, "refresher") or "").lower()
    return interval, refresher if refresher in ("uac", "uas") else None  # type: ignore[return-value]


def expiry_margin(interval: float) -> float:
    """RFC 4028 §10: without a refresh, BYE this long before the interval ends (32 s or a third, if less)."""
    return min(32.0, interval / 3)


@dataclass(slots=True)
class SessionTimer:
    """The session interval agreed for a dialog; `role` is our side of the INVITE that created it."""

    interval: int
    role: Role
    we_refresh: bool
    last_refresh: float
    _next_refresh: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._next_refresh = self.last_refresh + self.interval / 2

    @classmethod
    def for_uas(
        cls, request: Request, *, default_interval: int, now: float
    ) -> tuple[SessionTimer | None, list[tuple[str, str]]]:
        """RFC 4028 §9: the timer and the 2xx headers for an INVITE we answer; the UAC refreshes if it can."""
        requested = parse_session_expires(request)
        uac_supports = "timer" in [t.lower() for t in request.supported]
        if requested is None and not uac_supports:
            return None, []
        interval = requested[0] if requested is not None else default_interval
        refresher: Role = (requested[1] if requested is not None else None) or (
            "uac" if uac_supports else "uas"
        )
        timer = cls(interval, "uas", refresher == "uas", now)
        headers = [("Session-Expires", f"{interval};refresher={refresher}")]
        if uac_supports:
            headers.append(("Require", "timer"))
        return timer, headers

    @classmethod
    def for_uac(cls, response: Response, *, now: float) -> SessionTimer | None:
        """RFC 4028 §7.2: the timer a 2xx to our INVITE agreed to; without a refresher we refresh."""
        negotiated = parse_session_expires(response)
        if negotiated is None:
            return None
        return cls(negotiated[0], "uac", negotiated[1] in (None, "uac"), now)

    @property
    def refresher(self) -> Role:
        if self.we_refresh:
            return self.role
        return "uas" if self.role == "uac" else "uac"

    def headers(self) -> list[tuple[str, str]]:
        """Session-Expires for a refresh request or its 2xx."""
        return [("Session-Expires", f"{self.interval};refresher={self.refresher}")]

    def refreshed(self, now: float) -> None:
        """A refresh succeeded (ours) or arrived (theirs)."""
        self.last_refresh = now
        self._next_refresh = now + self.interval / 2

    def receive_refresh(self, request: Request, now: float) -> bool:
        """A re-INVITE/UPDATE refreshed the session (§10); True when it changed interval or refresher."""
        self.refreshed(now)
        requested = parse_session_expires(request)
        if requested is None:
            return False
        self.interval = requested[0]
        self._next_refresh = now + self.interval / 2
        if requested[1] is not None:
            self.we_refresh = requested[1] == self.role
        return True

    def refresh_failed(self, now: float) -> None:
        """Our refresh got an error other than 408/481: try again halfway to the expiry (at least 1 s on)."""
        remaining = self.last_refresh + self.interval - now
        self._next_refresh = now + max(1.0, remaining / 2)

    def get_timer(self) -> float:
        if self.we_refresh:
            return self._next_refresh
        return self.last_refresh + self.interval - expiry_margin(self.interval)

    def handle_timer(self, now: float) -> TimerAction | None:
        """What is due at `now`, if anything (a timer that fires early or after a refresh does nothing)."""
        if now < self.get_timer():
            return None
        return TimerAction.REFRESH if self.we_refresh else TimerAction.EXPIRE


__all__ = ["Role", "SessionTimer", "TimerAction", "expiry_margin", "parse_session_expires"]
