"""Which transfer targets the model may choose: explicit patterns matched against the parsed URI.

Never a string prefix: allowing `sip:desk@127.0.0.1` must not allow `sip:desk@127.0.0.1.evil.example`, and
allowing `1000` must not allow `10009005551234` (toll fraud). An empty list allows nothing.

Pattern syntax (`GATEWAY_TRANSFER_ALLOWED`, comma-separated):

- `sip:desk@pbx.example.com`, `sips:…`, `desk@pbx.example.com`: that user at that host (the host
  case-insensitively); a port, when the pattern gives one, must match too.
- `sip:*@pbx.example.com`: any user at that host (`*` only ever stands for the whole user part).
- `1000`, `+4930XXXX`: a bare user or number at `SIP_SERVER`, where a bare target number goes.
- In a number (an optional `+`, digits and `X`), each `X` is exactly one digit: `+4930XXXX` allows
  `+49301234` but not `+4930123` or `+493012345`. Everything else compares as a whole string.
- `tel:+4930XXXX`: a tel URI with that number (visual separators ignored) and the same parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .errors import SipParseError
from .sip.uri import SipUri, TelUri, Uri, parse_uri, same_host, unescape

__all__ = ["TargetPattern", "allowed"]

_NUMBER_RE: Final = re.compile(r"\+?[0-9X]+")
_TEL_SEPARATORS: Final = str.maketrans("", "", "-.()")
_ANY_USER: Final = "*"


@dataclass(frozen=True, slots=True)
class TargetPattern:
    """One allowed target: scheme, user (exact, a number with `X` digits, or any) and host[:port]."""

    text: str
    scheme: str  # sip, sips or tel
    user: re.Pattern[str] | None  # matched against the whole (unescaped) user or tel number; None: no user
    host: str | None = None  # None for a bare pattern: the host of SIP_SERVER
    port: int | None = None
    params: frozenset[tuple[str, str]] = frozenset()  # tel: only

    @classmethod
    def parse(cls, text: str) -> TargetPattern:
        """Parse one pattern; ValueError says what is wrong with it."""
        spec = text.strip()
        lowered = spec.lower()
        if lowered.startswith("tel:"):
            number, _, rest = spec[4:].partition(";")
            number = number.translate(_TEL_SEPARATORS)
            if not _NUMBER_RE.fullmatch(number):
                raise ValueError(f"transfer pattern {text!r}: a tel number is digits, + and X")
            return cls(spec, "tel", _user_pattern(number), params=_tel_params(rest))
        if not lowered.startswith(("sip:", "sips:")):
            if "@" not in spec:
                # A bare user or number, resolved like a bare target: at SIP_SERVER.
                if not spec or not _plain_user(spec):
                    raise ValueError(f"transfer pattern {text!r}: not a number, user or SIP URI")
                return cls(spec, "sip", _user_pattern(spec))
            spec = "sip:" + spec
        try:
            uri = parse_uri(spec)
        except SipParseError as error:
            raise ValueError(f"transfer pattern {text!r}: {error}") from None
        if not isinstance(uri, SipUri) or uri.password is not None or uri.params or uri.headers:
            raise ValueError(f"transfer pattern {text!r}: user@host[:port] only, no parameters or headers")
        user = None if uri.user is None else _user_pattern(unescape(uri.user))
        return cls(text.strip(), uri.scheme, user, uri.host, uri.port)

    def matches(self, target: Uri, server: SipUri | None = None) -> bool:
        """Whether `target` (a parsed URI) is this pattern's; `server` is where bare patterns point."""
        if isinstance(target, TelUri):
            number = target.number.translate(_TEL_SEPARATORS)
            return (
                self.scheme == "tel"
                and self.user is not None
                and self.user.fullmatch(number) is not None
                and _tel_params(target.params) == self.params
            )
        if not isinstance(target, SipUri) or self.scheme != target.scheme.lower():
            return False
        if self.host is not None:
            host, port = self.host, self.port
        elif server is not None:
            host, port = server.host, server.port
        else:
            return False  # a bare pattern without SIP_SERVER points nowhere
        if not same_host(host, target.host) or (port is not None and port != target.port):
            return False
        if target.user is None or self.user is None:
            return target.user is None and self.user is None
        return self.user.fullmatch(unescape(target.user)) is not None


def allowed(target: Uri, patterns: Iterable[TargetPattern], *, server: str | None = None) -> bool:
    """Whether any pattern allows `target`; `server` (SIP_SERVER, host[:port]) is where bare numbers go."""
    if isinstance(target, SipUri) and (
        target.password is not None or target.headers or target.has_param("maddr")
    ):
        # maddr sends the request elsewhere (RFC 3261 §19.1.1) and headers (e.g. Route) steer the INVITE the
        # transferee sends: either would reach a host the pattern never named.
        return False
    at = _server_uri(server)
    return any(pattern.matches(target, at) for pattern in patterns)


def _user_pattern(user: str) -> re.Pattern[str]:
    if user == _ANY_USER:
        return re.compile(r".+", re.DOTALL)
    if _ANY_USER in user:
        raise ValueError(f"transfer pattern user {user!r}: * stands only for the whole user part")
    if _NUMBER_RE.fullmatch(user):
        return re.compile(re.escape(user).replace("X", "[0-9]"))
    return re.compile(re.escape(user), re.DOTALL)


def _plain_user(text: str) -> bool:
    try:
        uri = parse_uri(f"sip:{text}@invalid")
    except SipParseError:
        return False
    return isinstance(uri, SipUri) and uri.user == text and not uri.params and uri.password is None


def _tel_params(text: str | Iterable[tuple[str, str | None]]) -> frozenset[tuple[str, str]]:
    if isinstance(text, str):
        pairs = [part.partition("=") for part in text.split(";") if part]
        return frozenset((k.lower(), v.lower()) for k, _, v in pairs)
    return frozenset((k.lower(), (v or "").lower()) for k, v in text)


def _server_uri(server: str | None) -> SipUri | None:
    if not server:
        return None
    try:
        uri = parse_uri(server if server.lower().startswith(("sip:", "sips:")) else "sip:" + server)
    except SipParseError:
        return None
    return uri if isinstance(uri, SipUri) else None
