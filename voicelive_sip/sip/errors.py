"""The SIP core's error types (h11 style: the peer sent junk vs. the API was misused)."""

from __future__ import annotations

from ..errors import LocalProtocolError, RemoteProtocolError


class SipParseError(RemoteProtocolError):
    """The peer sent something that is not valid SIP; `status_code`/`reason` say what a UA should answer."""

    def __init__(self, detail: str, *, status_code: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.reason = reason
        # Filled in by parse_message: whether a request was seen, and the raw header fields read so far,
        # so a UA can still answer (RFC 3261 §8.2) when parsing failed part-way.
        self.is_request: bool | None = None
        self.fields: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"SipParseError({self.detail!r}, status_code={self.status_code}, reason={self.reason!r})"


__all__ = ["LocalProtocolError", "SipParseError"]
