"""The SIP core's error types (h11 style: the peer sent junk vs. the API was misused)."""

from __future__ import annotations


class SipParseError(ValueError):
    """The peer sent something that is not valid SIP; `status_code`/`reason` say what a UA should answer."""

    def __init__(self, detail: str, *, status_code: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.reason = reason

    def __repr__(self) -> str:
        return f"SipParseError({self.detail!r}, status_code={self.status_code}, reason={self.reason!r})"


class LocalProtocolError(RuntimeError):
    """The application asked the SIP core for something the protocol does not allow."""
