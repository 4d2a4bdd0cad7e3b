"""What a UAS decides from a request alone (RFC 3261 §8.2): prechecks, merged requests, INFO/NOTIFY bodies.

Sans-I/O: requests in, a status to answer (or a parsed value) out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..errors import SipParseError
from .dialog import new_tag
from .message import Message, Request, Response

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, REFER"
SUPPORTED = "timer"
ACCEPT = "application/sdp"
DTMF_DIGITS = "0123456789*#ABCD"
# Methods we recognise but do not serve as a UAS (RFC 3261 §8.2.1: 405 with Allow); anything else is 501.
KNOWN_UNSUPPORTED = frozenset({"REGISTER", "MESSAGE", "SUBSCRIBE", "PUBLISH", "PRACK"})
SERVED = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "INFO", "NOTIFY", "REFER"})
BODY_TYPES = {
    "INVITE": {"application/sdp"},
    "UPDATE": {"application/sdp"},
    "ACK": {"application/sdp"},
    "INFO": {"application/dtmf-relay", "application/dtmf"},
    "NOTIFY": {"message/sipfrag"},
}
MergedKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The answer a precheck settled on: status, reason phrase (None for the standard one), extra headers."""

    status_code: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class MergedRequests:
    """Requests without a To tag we are serving, by (Call-ID, From tag, CSeq) (RFC 3261 §8.2.2.2).

    The same request arriving a second time over another path (a fork looping back) gets 482.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._by_key: OrderedDict[MergedKey, str] = OrderedDict()
        self._by_transaction: dict[str, MergedKey] = {}

    @staticmethod
    def key(request: Request) -> MergedKey:
        return request.call_id, request.from_.tag or "", request.cseq.seq

    def __contains__(self, request: Request) -> bool:
        return self.key(request) in self._by_key

    def add(self, request: Request, transaction: str) -> None:
        key = self.key(request)
        self._by_key[key] = transaction
        self._by_transaction[transaction] = key
        if len(self._by_key) > self.max_entries:
            _, oldest = self._by_key.popitem(last=False)
            self._by_transaction.pop(oldest, None)

    def discard_transaction(self, transaction: str) -> None:
        key = self._by_transaction.pop(transaction, None)
        if key is not None:
            self._by_key.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_key)


def precheck(request: Request, merged: MergedRequests | None = None) -> Refusal | None:
    """RFC 3261 §8.2 checks in order: method, URI scheme, merged request, Require, hops, body, Accept."""
    method = request.method
    if method not in SERVED:
        return Refusal(405 if method in KNOWN_UNSUPPORTED else 501, None, (("Allow", ALLOW),))
    if request.uri.scheme.lower() not in ("sip", "sips", "tel"):
        return Refusal(416)
    if (
        merged is not None
        and request.to.tag is None
        and method not in ("CANCEL", "ACK")
        and request in merged
    ):
        return Refusal(482, "Loop Detected")  # §8.2.2.2: the same request reached us twice (forked)
    if method != "CANCEL":
        unknown = [tag for tag in request.require if tag.lower() not in ("timer",)]
        if unknown:
            return Refusal(420, None, (("Unsupported", ", ".join(unknown)),))
    if request.max_forwards == 0 and method != "OPTIONS":
        # A UA is the last hop; 0 means the request was meant to stop before us. OPTIONS with 0 probes the
        # element reached and is answered (RFC 4475 §3.3.11).
        return Refusal(483)
    if request.body:
        content = request.content_type
        allowed = BODY_TYPES.get(method, set())
        encoding = request.headers.get("Content-Encoding")
        if content is None or (content.mime not in allowed and content.mime != "multipart/mixed") or encoding:
            accept = ", ".join(sorted(allowed)) or ACCEPT
            return Refusal(415, None, (("Accept", accept), ("Accept-Encoding", "identity")))
    if method == "INVITE":
        accept_values = [
            a.strip().lower() for v in request.headers.get_all("Accept") for a in v.split(",") if a.strip()
        ]
        types = [a.split(";")[0].strip() for a in accept_values]
        if accept_values and not any(t in ("application/sdp", "application/*", "*/*") for t in types):
            return Refusal(406, None, (("Accept", ACCEPT),))
    return None


def stateless_refusal(request: Request, error: SipParseError) -> Response | None:
    """The answer to a request refused before any transaction (RFC 3261 §8.2, §17.2): None for an ACK or
    without a Via, else the error's status with the request's Via, From, To (tagged), Call-ID and CSeq."""
    if request.method == "ACK" or "Via" not in request.headers:
        return None
    response = Response(error.status_code, error.reason)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            if name == "To":
                try:
                    to = request.to
                    value = str(to) if to.tag is not None else str(to.with_tag(new_tag()))
                except SipParseError:
                    pass  # an unreadable To is echoed as it came
            response.headers.add(name, value)
    response.headers.add("Warning", f'399 - "{warning_text(error.detail)}"')
    return response


def to_tag(request: Request) -> str | None:
    """The To tag, or None when absent or the To header does not parse."""
    try:
        return request.to.tag
    except SipParseError:
        return None


def allow_of(message: Message) -> list[str]:
    """The methods an Allow header lists, upper-cased; empty when absent or malformed."""
    try:
        return [m.upper() for m in message.allow]
    except SipParseError:
        return []


def info_dtmf(request: Request) -> tuple[str | None, int]:
    """A digit and duration (ms) from an INFO body (application/dtmf-relay or application/dtmf)."""
    content = request.content_type
    if content is None or not request.body:
        return None, 0
    text = request.body.decode("utf-8", "replace")
    if content.mime == "application/dtmf-relay":
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip()
        signal = fields.get("signal", "")
        duration = fields.get("duration", "")
        digit = signal.upper() if len(signal) == 1 and signal.upper() in DTMF_DIGITS else None
        if signal in ("10", "11"):
            digit = "*" if signal == "10" else "#"
        return digit, int(duration) if _ascii_digits(duration) and len(duration) <= 6 else 160
    if content.mime == "application/dtmf":
        signal = text.strip().upper()
        return (signal if len(signal) == 1 and signal in DTMF_DIGITS else None), 160
    return None, 0


def dtmf_relay_body(digit: str, duration_ms: int) -> bytes:
    """The application/dtmf-relay body for one digit; ValueError if it is not a DTMF digit."""
    if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()


@dataclass(frozen=True, slots=True)
class ReferStatus:
    """The progress a NOTIFY for our REFER reports (RFC 3515 §2.4.5)."""

    status_code: int
    reason: str
    final: bool


def refer_status(request: Request) -> ReferStatus | None:
    """The sipfrag status line of a NOTIFY (Event: refer); None for other events or an unreadable body."""
    event_name = (request.headers.get("Event") or "").split(";")[0].strip().lower()
    if event_name != "refer" or not request.body:
        return None
    status_line = request.body.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("utf-8", "replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not _ascii_digits(parts[1]) or len(parts[1]) != 3:
        return None
    status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
    state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
    return ReferStatus(status, reason, status >= 200 or state == "terminated")


def _ascii_digits(text: str) -> bool:
    # str.isdigit() is also true for "²" and other Unicode digits that int() refuses.
    return text.isascii() and text.isdigit()


def warning_text(text: str) -> str:
    """Text safe inside a Warning header's quoted string."""
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)[:120]


__all__ = [
    "ACCEPT",
    "ALLOW",
    "BODY_TYPES",
    "DTMF_DIGITS",
    "SUPPORTED",
    "MergedRequests",
    "ReferStatus",
    "Refusal",
    "allow_of",
    "dtmf_relay_body",
    "info_dtmf",
    "precheck",
    "refer_status",
    "stateless_refusal",
    "to_tag",
    "warning_text",
]
