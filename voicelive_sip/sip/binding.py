"""REGISTER bindings (RFC 3261 §10), sans-I/O: responses and `now` in; requests, state and deadlines out.

`build()` makes the next REGISTER; `receive_response()` takes the final answer (after any digest round trip)
and sets `state` and `get_timer()`, the time the next REGISTER is due: a refresh at 90 % of the granted
lifetime, a retry with exponential back-off after a failure, or a long pause when the credentials are wrong.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from .dialog import new_tag
from .headers import CSeq, NameAddress
from .message import Request, Response
from .uri import SipUri, same_host

REFRESH_FRACTION = 0.9  # refresh at about 90 % of the granted lifetime
MIN_REFRESH = 1.0
MIN_RETRY = 5.0
MAX_RETRY = 1800.0
AUTH_RETRY = 300.0  # wrong credentials: wait long, do not hammer the registrar
MAX_BRIEF_RETRIES = 3  # 423 Interval Too Brief answered this many times in a row at most
MAX_CHANGES = 64


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    state: RegistrationState
    status_code: int | None
    reason: str
    expires: int | None


class RegistrationBinding:
    """One binding of a Contact to an address-of-record at a registrar, with its refresh schedule."""

    def __init__(
        self,
        registrar: SipUri,
        aor: SipUri,
        *,
        call_id: str,
        expires: int,
        now: float,
        display_name: str | None = None,
    ) -> None:
        self.registrar = registrar
        self.aor = aor
        self.call_id = call_id
        self.display_name = display_name
        self.requested_expires = expires
        self.state = RegistrationState.UNREGISTERED
        self.expires: int | None = None  # what the registrar granted
        self.last_status: int | None = None
        self.reason = ""
        self._asking = expires  # raised by 423 Interval Too Brief
        self._from_tag = new_tag()
        self._seq = 0
        self._retry = MIN_RETRY
        self._brief = 0
        self._due: float | None = now
        self._bound = False  # the registrar holds our binding (a refresh in flight does not change that)
        self._changes: deque[RegistrationChanged] = deque(maxlen=MAX_CHANGES)

    # -- requests ------------------------------------------------------------------------------------------
    def build(self, contact: NameAddress, *, expires: int | None = None) -> Request:
        """The next REGISTER (a new CSeq each time, same Call-ID and From tag: RFC 3261 §10.2.4)."""
        self._seq += 1
        asked = self._asking if expires is None else expires
        request = Request("REGISTER", self.registrar.without_params("transport").with_headers(()))
        h = request.headers
        h.add("Max-Forwards", 70)
        h.add("From", NameAddress(self.aor, self.display_name, (("tag", self._from_tag),)))
        h.add("To", NameAddress(self.aor, self.display_name))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", CSeq(self._seq, "REGISTER"))
        h.add("Contact", contact)
        h.add("Expires", asked)
        return request

    def sending(self) -> None:
        """A REGISTER is on its way: nothing is due until its answer."""
        self._due = None
        self._set(RegistrationState.REGISTERING, None, "registering", None)

    # -- answers -------------------------------------------------------------------------------------------
    def receive_response(self, response: Response, contact: NameAddress, now: float) -> None:
        """The final response to our REGISTER (408 for a timeout); sets the state and the next deadline."""
        code = response.status_code
        if 200 <= code < 300:
            granted = self._granted(response, contact)
            self._retry, self._brief = MIN_RETRY, 0
            self._bound = True
            self._set(RegistrationState.REGISTERED, code, "registered", granted)
            self._due = now + max(MIN_REFRESH, granted * REFRESH_FRACTION)
            return
        if code == 423 and self._brief < MAX_BRIEF_RETRIES:
            # RFC 3261 §10.2.8: ask again at once with at least Min-Expires.
            min_expires = (response.headers.get("Min-Expires") or "").strip()
            if min_expires.isdigit() and len(min_expires) <= 10:
                self._asking, self._brief = max(self._asking, int(min_expires)), self._brief + 1
                self._due = now
                return
        if code in (401, 407):
            self._fail(code, "challenged, and no usable credentials are configured (AUTH_PASSWORD)")
            self._due = now + AUTH_RETRY
            return
        self._fail(code, "no response (timeout)" if code == 408 else response.reason)
        self._due = now + self._retry
        self._retry = min(MAX_RETRY, self._retry * 2)

    def auth_rejected(self, realm: str, now: float) -> None:
        """The registrar challenged our answer again: the username or password is wrong."""
        self._fail(401, f"authentication rejected by {realm}: wrong username or password?")
        self._due = now + AUTH_RETRY

    def flow_failed(self, now: float) -> None:
        """The connection the binding was made over is gone (RFC 5626 §4.4.1): refresh over a new one now."""
        if self.bound and self._due is not None:
            self._due = min(self._due, now)

    def stopped(self, status_code: int | None) -> None:
        """Unregistered (Expires: 0 answered, or given up): nothing is due any more."""
        self._due = None
        if self._bound:
            self._bound = False
            self._set(RegistrationState.UNREGISTERED, status_code or None, "unregistered", 0)
        else:
            self._set(RegistrationState.UNREGISTERED, None, "stopped", None)

    @property
    def bound(self) -> bool:
        """True while the registrar holds our binding: removing it takes a REGISTER with Expires: 0."""
        return self._bound

    # -- timing and reporting ------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When the next REGISTER is due (None while one is in flight or after `stopped`)."""
        return self._due

    def next_change(self) -> RegistrationChanged | None:
        return self._changes.popleft() if self._changes else None

    def _granted(self, response: Response, contact: NameAddress) -> int:
        """The lifetime granted to our Contact: its expires param, else Expires, else what we asked."""
        ours = contact.uri
        for bound in response.contact:
            uri = bound.uri
            # RFC 3261 §19.1.4: hosts compare case-insensitively (IPv6 by value); a registrar may re-spell.
            if not (isinstance(uri, SipUri) and isinstance(ours, SipUri)) or uri.port != ours.port:
                continue
            if same_host(uri.host, ours.host) and bound.expires is not None:
                return bound.expires
        return response.expires if response.expires is not None else self._asking

    def _fail(self, status: int, reason: str) -> None:
        self._bound = False
        self._set(RegistrationState.FAILED, status, reason, None)

    def _set(self, state: RegistrationState, status: int | None, reason: str, expires: int | None) -> None:
        self.state, self.last_status, self.reason = state, status, reason
        if expires is not None:
            self.expires = expires
        self._changes.append(RegistrationChanged(state, status, reason, expires))


__all__ = [
    "AUTH_RETRY",
    "MAX_RETRY",
    "MIN_RETRY",
    "REFRESH_FRACTION",
    "RegistrationBinding",
    "RegistrationChanged",
    "RegistrationState",
]
