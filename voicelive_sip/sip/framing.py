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
    transport can answer it and carry on with the next one.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Request | Response | SipParseError]:
        self._buffer += data
        out: list[Request | Response | SipParseError] = []
        while True:
            # RFC 5626 §3.5.1 keep-alives (CRLF pings) and RFC 3261 §7.5 leading CRLFs are skipped.
            start = 0
            while start < len(self._buffer) and self._buffer[start] in (0x0D, 0x0A):
                start += 1
            if start:
                del self._buffer[:start]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_size:
                    raise SipParseError(
                        "header section exceeds the message size limit",
                        status_code=413,
                        reason="Request Entity Too Large",
                    )
                return out
            head = bytes(self._buffer[: end + 2])
            lengths = {m.group(1).strip() for m in _CONTENT_LENGTH_RE.finditer(head)}
            # A folded Content-Length (vanishingly rare) would read as missing and close the connection.
            if not lengths:
                raise SipParseError("missing Content-Length on a stream transport")
            if len(lengths) > 1:
                raise SipParseError("conflicting Content-Length headers on a stream transport")
            text = next(iter(lengths))
            if not text.isdigit() or len(text) > 10:
                raise SipParseError(f"bad Content-Length {text.decode('latin-1')!r}")
            total = end + 4 + int(text)
            if total > self.max_size:
                raise SipParseError(
                    f"message of {total} bytes exceeds {self.max_size}",
                    status_code=413,
                    reason="Request Entity Too Large",
                )
            if len(self._buffer) < total:
                return out
            raw = bytes(self._buffer[:total])
            del self._buffer[:total]
            try:
                out.append(parse_message(raw, stream=True, max_size=self.max_size))
            except SipParseError as error:
                out.append(error)
