"""Attended transfer by REFER with Replaces (RFC 3891, RFC 5589 §7): the Refer-To URI and who supports it.

The transferor (us) holds dialog A with the transferee (the caller) and dialog B with the target (the person).
The REFER on A names the target with a `Replaces` header for B: the caller's INVITE then replaces our dialog B
at the target, and both of our legs can go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SipParseError
from .message import Message
from .uri import SipUri, unescape

__all__ = ["ReplacesId", "refer_to_with_replaces", "supports_replaces"]

# RFC 3261 §25.1: hvalue = *( hnv-unreserved / unreserved / escaped ); everything else is %HH in a URI header.
_HVALUE_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/?:+$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")  # RFC 3261 token: what a tag is


def _escape(text: str) -> str:
    return "".join(ch if ch in _HVALUE_SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text)


@dataclass(frozen=True, slots=True)
class ReplacesId:
    """The dialog a Replaces header names, from the point of view of the UA that receives it (RFC 3891 §3)."""

    call_id: str
    to_tag: str  # the recipient's own (local) tag
    from_tag: str  # the recipient's peer's tag

    def __str__(self) -> str:
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"

    @classmethod
    def parse(cls, text: str) -> ReplacesId:
        """A Replaces header value (RFC 3891 §6.1); raises `SipParseError` if it is not one."""
        call_id, *params = (part.strip() for part in text.split(";"))
        tags: dict[str, str] = {}
        for param in params:
            name, _, value = param.partition("=")
            tags[name.strip().lower()] = value.strip()
        to_tag, from_tag = tags.get("to-tag", ""), tags.get("from-tag", "")
        if not call_id or not _TOKEN.match(to_tag) or not _TOKEN.match(from_tag):
            raise SipParseError(f"not a Replaces value: {text[:200]!r}")
        return cls(call_id, to_tag, from_tag)


def refer_to_with_replaces(target: SipUri, replaces: ReplacesId) -> SipUri:
    """The Refer-To URI of an attended transfer: `target?Replaces=<escaped dialog id>` (RFC 3891 §6.1).

    `target` is the target's Contact (its remote target on dialog B); any headers it carried are dropped, as
    only Replaces may go to the target in the transferee's INVITE.
    """
    return target.with_headers((("Replaces", _escape(str(replaces))),))


def replaces_of(uri: SipUri) -> ReplacesId | None:
    """The dialog a Refer-To URI's Replaces header names, unescaped; None without one."""
    for name, value in uri.headers:
        if unescape(name).lower() == "replaces":
            return ReplacesId.parse(unescape(value))
    return None


def supports_replaces(message: Message) -> bool:
    """Whether a peer's INVITE or 2xx said it understands Replaces (Supported or Require, RFC 3891 §7.1)."""
    try:
        tokens = message.supported + message.require
    except SipParseError:
        return False
    return any(token.lower() == "replaces" for token in tokens)
