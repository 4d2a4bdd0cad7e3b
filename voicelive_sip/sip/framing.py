"""Message framing on stream transports (TCP/TLS): Content-Length delimits messages (RFC 3261 §18.3)."""

from __future__ import annotations

import re

from ..errors import SipParseError
from .message import MAX_MESSAGE_SIZE, Request, Response, parse_message

_CONTENT_LENGTH_RE = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE
)


class StreamFramer:
    """Feed arbitrary chunks with `feed()`; it returns every complete message they finish.

    A framing error (missing, negative, conflicting or oversize Content-Length, a message over `max_size`)
    raises `SipParseError`; the stream can no longer be trusted and the connection should be closed.
    A message that frames correctly but does not parse is returned as the `SipParseError` itself, so the
    transport can answer it and carry on with the next one. An oversize message raises a 413 that carries the
    start line and header fields read so far, so a response can still be formed when they include a Via.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._pending_since: float | None = None
        # RFC 5626 keep-alives between messages: every CRLF (a pong is one) and every double CRLF (a ping).
        self.keepalive_line_breaks = 0
        self.pings = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending_since(self) -> float | None:
        """The `now` of the chunk that brought the first byte of the incomplete message; None when none is."""
        return self._pending_since

    def feed(self, data: bytes, now: float = 0.0) -> list[Request | Response | SipParseError]:
        out = self._frame(data)
        if not self._buffer:
            self._pending_since = None
        elif self._pending_since is None or out:
            # Whatever is left began in this chunk; later bytes of it never move this time (slowloris).
            self._pending_since = now
        return out

    def _frame(self, data: bytes) -> list[Request | Response | SipParseError]:
        self._buffer += data
        out: list[Request | Response | SipParseError] = []
        while True:
            # RFC 5626 §3.5.1 keep-alives (CRLF pings) and RFC 3261 §7.5 leading CRLFs are skipped.
            start = 0
            while start < len(self._buffer) and self._buffer[start] in (0x0D, 0x0A):
                start += 1
            if start:
                breaks = self._buffer.count(b"\n", 0, start)
                self.keepalive_line_breaks += breaks
                self.pings += breaks // 2  # a double CRLF; a ping split across two reads goes unanswered
                del self._buffer[:start]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_size:
                    # Only whole lines are worth reading for the 413's Via, From, To, Call-ID and CSeq.
                    cut = self._buffer.rfind(b"\r\n", 0, self.max_size)
                    head = bytes(self._buffer[:cut]) + b"\r\n\r\n" if cut > 0 else b""
                    raise _too_large("header section exceeds the message size limit", head)
                return out
            head = bytes(self._buffer[: end + 2])
            lengths = {m.group(1).strip() for m in _CONTENT_LENGTH_RE.finditer(head)}
            # A folded Content-Length (vanishingly rare) would read as missing and close the connection.
            if not lengths:
                raise SipParseError("missing Content-Length on a stream transport")
            if len(lengths) > 1:
                raise SipParseError("conflicting Content-Length headers on a stream transport")
            text = next(iter(lengths))
            if not text.isdigit():
                raise SipParseError(f"bad Content-Length {text[:20].decode('latin-1')!r}")
            # Eleven digits are over any size limit; converting thousands of them would cost CPU.
            total = end + 4 + (int(text) if len(text) <= 10 else 10**10)
            if total > self.max_size:
                raise _too_large(f"message of {total} bytes exceeds {self.max_size}", head + b"\r\n")
            if len(self._buffer) < total:
                return out
            raw = bytes(self._buffer[:total])
            del self._buffer[:total]
            try:
                out.append(parse_message(raw, stream=True, max_size=self.max_size))
            except SipParseError as error:
                out.append(error)


def _too_large(detail: str, head: bytes) -> SipParseError:
    """A 413 carrying what `head` (a header section) says, so a UA can answer it (RFC 3261 §8.2, §21.4.11)."""
    error = SipParseError(detail, status_code=413, reason="Request Entity Too Large")
    if not head:
        return error
    try:
        message = parse_message(head, max_size=len(head))
    except SipParseError as partial:
        error.is_request, error.fields = partial.is_request, partial.fields
    else:
        error.is_request, error.fields = isinstance(message, Request), message.headers.items()
    return error
