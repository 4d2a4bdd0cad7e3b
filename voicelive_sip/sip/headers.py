"""Typed SIP header values (RFC 3261 §20, §25): Via, name-addr, CSeq and the small scalar ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import SipParseError
from .uri import Params, Uri, is_valid_host, parse_uri

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN_RE = re.compile(rf"[{TOKEN_CHARS}]+")
_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
_QUOTED_RE = re.compile(_QUOTED)
_QUOTED_PAIR_RE = re.compile(r"\\(.)")
# generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string (RFC 3261 §25.1).
_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*([{TOKEN_CHARS}]+)(?:[ \t]*=[ \t]*({_QUOTED}|[{TOKEN_CHARS}:\[\]]+))?[ \t]*"
)
_VIA_RE = re.compile(
    rf"SIP[ \t]*/[ \t]*([0-9]+\.[0-9]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)
_NAME_ADDR_FAST_RE = re.compile(rf'[ \t]*({_QUOTED})?[ \t]*<([^<>\s"]+)>')
_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+([{TOKEN_CHARS}]+)")
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?")
_DIGITS_RE = re.compile(r"[0-9]+")
_MEDIA_TYPE_RE = re.compile(rf"([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)")
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

MAX_DELTA_SECONDS = 2**32 - 1
MAX_CSEQ = 2**31 - 1


def quote(text: str) -> str:
    """Render `text` as a quoted-string (RFC 3261 §25.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(text: str) -> str:
    """The content of a quoted-string, or `text` itself when it is not quoted."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return _QUOTED_PAIR_RE.sub(r"\1", text[1:-1])
    return text


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and `<...>` (RFC 3261 §7.3.1)."""
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        return [item.strip() for item in value.split(",")]
    items: list[str] = []
    start = 0
    in_quotes = in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            items.append(value[start:i].strip())
            start = i + 1
        i += 1
    items.append(value[start:].strip())
    return items


def parse_params(text: str, pos: int = 0, *, what: str = "header") -> Params:
    """Parse `*( SEMI generic-param )` from `text[pos:]`; the whole rest must be parameters."""
    params: list[tuple[str, str | None]] = []
    n = len(text)
    while pos < n:
        m = _PARAM_RE.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip(" \t") == "":
                break
            raise SipParseError(f"bad {what} parameters: {text[pos:]!r}")
        params.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(params)


def param_value(params: Params, name: str) -> str | None:
    """The value of `name` (case-insensitive) in a parameter list; None when absent or valueless."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return value
    return None


def has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(key.lower() == lname for key, _ in params)


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Return `params` with `name` set to `value`, in place if present, else appended."""
    lname = name.lower()
    out: list[tuple[str, str | None]] = []
    done = False
    for key, old in params:
        if key.lower() == lname:
            if not done:
                out.append((key, value))
                done = True
        else:
            out.append((key, old))
    if not done:
        out.append((name, value))
    return tuple(out)


def serialize_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def parse_delta_seconds(text: str, what: str) -> int:
    """delta-seconds (RFC 3261 §25.1), bounded to 32 bits as RFC 4475 §3.1.2.4 expects."""
    text = text.strip(" \t")
    if not _DIGITS_RE.fullmatch(text) or len(text) > 10 or int(text) > MAX_DELTA_SECONDS:
        raise SipParseError(f"bad {what} value {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry: `SIP/2.0/<transport> <host>[:port];params` (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{serialize_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return param_value(self.params, "branch")

    @property
    def received(self) -> str | None:
        return param_value(self.params, "received")

    @property
    def rport(self) -> int | None:
        value = param_value(self.params, "rport")
        return int(value) if value else None

    @property
    def wants_rport(self) -> bool:
        """True when the sender asked for RFC 3581 symmetric response routing."""
        return has_param(self.params, "rport")

    @property
    def maddr(self) -> str | None:
        return param_value(self.params, "maddr")

    @property
    def ttl(self) -> int | None:
        value = param_value(self.params, "ttl")
        return int(value) if value else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    @property
    def is_rfc3261_branch(self) -> bool:
        """True when the branch carries the RFC 3261 magic cookie (§8.1.1.7)."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    def with_param(self, name: str, value: str | None) -> Via:
        return replace(self, params=set_param(self.params, name, value))

    @classmethod
    def parse(cls, value: str) -> Via:
        m = _VIA_RE.match(value)
        if m is None:
            raise SipParseError(f"bad Via {value!r}")
        version, transport, host, port = m.groups()
        if version != "2.0":
            raise SipParseError(
                f"unsupported SIP version in Via: {version}", status_code=505, reason="Version Not Supported"
            )
        if not is_valid_host(host):
            raise SipParseError(f"bad host in Via: {host!r}")
        params = parse_params(value, m.end(), what="Via")
        for name, pvalue in params:
            lname = name.lower()
            if lname in ("ttl",) and (
                pvalue is None or not _DIGITS_RE.fullmatch(pvalue) or int(pvalue) > 255
            ):
                raise SipParseError(f"bad Via ttl {pvalue!r}")
            if (
                lname == "rport"
                and pvalue is not None
                and (not _DIGITS_RE.fullmatch(pvalue) or int(pvalue) > 65535)
            ):
                raise SipParseError(f"bad Via rport {pvalue!r}")
            if lname in ("received", "maddr") and (pvalue is None or not is_valid_host(pvalue)):
                raise SipParseError(f"bad Via {lname} {pvalue!r}")
            if lname == "branch" and pvalue is None:
                raise SipParseError("Via branch without value")
        port_num = int(port) if port is not None else None
        if port_num is not None and port_num > 65535:
            raise SipParseError(f"bad Via port {port}")
        return cls(transport=transport.upper(), host=host, port=port_num, params=params)


@dataclass(frozen=True, slots=True)
class NameAddress:
    """A name-addr / addr-spec with header parameters: From, To, Contact, Route, Refer-To (RFC 3261 §20)."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        name = quote(self.display_name) + " " if self.display_name is not None else ""
        return f"{name}<{self.uri}>{serialize_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return param_value(self.params, "tag")

    @property
    def expires(self) -> int | None:
        value = param_value(self.params, "expires")
        return int(value) if value is not None else None

    @property
    def q(self) -> float | None:
        value = param_value(self.params, "q")
        return float(value) if value is not None else None

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    def with_param(self, name: str, value: str | None) -> NameAddress:
        return replace(self, params=set_param(self.params, name, value))

    def with_tag(self, tag: str) -> NameAddress:
        return self.with_param("tag", tag)

    @classmethod
    def parse(cls, value: str) -> NameAddress:
        m = _NAME_ADDR_FAST_RE.match(value)
        if m is not None:
            # Fast path for the common `"Name" <uri>;params` / `<uri>;params` shapes.
            quoted, uri_text = m.groups()
            display = None
            if quoted is not None:
                display = quoted[1:-1] if "\\" not in quoted else unquote(quoted)
            pos = m.end()
            params = parse_params(value, pos, what="address") if pos < len(value) else ()
            if params:
                _check_address_params(params)
            return cls(uri=parse_uri(uri_text), display_name=display, params=params)
        return cls._parse_slow(value)

    @classmethod
    def _parse_slow(cls, value: str) -> NameAddress:
        text = value.strip(" \t")
        display: str | None = None
        pos = 0
        if text.startswith('"'):
            m = _QUOTED_RE.match(text)
            if m is None:
                raise SipParseError(f"unterminated quoted display name in {value!r}")
            display = unquote(m.group(0))
            pos = m.end()
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos >= len(text) or text[pos] != "<":
                raise SipParseError(f"display name without <URI> in {value!r}")
        else:
            lt = text.find("<")
            if lt >= 0 and ":" not in text[:lt]:
                tokens = text[:lt].split()
                for token in tokens:
                    if not TOKEN_RE.fullmatch(token):
                        raise SipParseError(f"bad display name in {value!r}")
                display = " ".join(tokens) if tokens else None
                pos = lt
        if pos < len(text) and text[pos] == "<":
            end = text.find(">", pos)
            if end < 0:
                raise SipParseError(f"unterminated <URI> in {value!r}")
            uri = parse_uri(text[pos + 1 : end])
            pos = end + 1
        else:
            # addr-spec without <>: a URI with ';', ',' or '?' would have to be bracketed (RFC 3261 §20.10).
            end = pos
            while end < len(text) and text[end] not in "; \t":
                end += 1
            uri_text = text[pos:end]
            if "?" in uri_text or "," in uri_text:
                raise SipParseError(f"URI with headers or commas must be in <> in {value!r}")
            uri = parse_uri(uri_text)
            pos = end
        params = parse_params(text, pos, what="address")
        _check_address_params(params)
        return cls(uri=uri, display_name=display, params=params)


def _check_address_params(params: Params) -> None:
    for name, pvalue in params:
        lname = name.lower()
        if lname == "expires":
            parse_delta_seconds(pvalue or "", "expires parameter")
        elif lname == "q" and (pvalue is None or not _QVALUE_RE.fullmatch(pvalue)):
            raise SipParseError(f"bad q value {pvalue!r}")
        elif lname == "tag" and (pvalue is None or not TOKEN_RE.fullmatch(pvalue)):
            raise SipParseError(f"bad tag {pvalue!r}")


@dataclass(frozen=True, slots=True)
class CSeq:
    """`CSeq: <number> <method>` (RFC 3261 §20.16)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    @classmethod
    def parse(cls, value: str) -> CSeq:
        m = _CSEQ_RE.fullmatch(value.strip(" \t"))
        if m is None:
            raise SipParseError(f"bad CSeq {value!r}")
        digits = m.group(1)
        # RFC 3261 §8.1.1.5: the sequence number must be below 2**31.
        if len(digits) > 10 or int(digits) > MAX_CSEQ:
            raise SipParseError(f"CSeq number out of range: {digits}")
        return cls(int(digits), m.group(2))


@dataclass(frozen=True, slots=True)
class MediaType:
    """Content-Type / Accept element: `type/subtype;params` (names compare case-insensitively)."""

    type: str
    subtype: str
    params: Params = ()

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{serialize_params(self.params)}"

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}".lower()

    @classmethod
    def parse(cls, value: str) -> MediaType:
        text = value.strip(" \t")
        m = _MEDIA_TYPE_RE.match(text)
        if m is None:
            raise SipParseError(f"bad media type {value!r}")
        return cls(m.group(1), m.group(2), parse_params(text, m.end(), what="media type"))


def parse_call_id(value: str) -> str:
    value = value.strip(" \t")
    if not _CALL_ID_RE.fullmatch(value):
        raise SipParseError(f"bad Call-ID {value!r}")
    return value


def parse_max_forwards(value: str) -> int:
    value = value.strip(" \t")
    # RFC 3261 §20.22: an integer in the range 0-255.
    if not _DIGITS_RE.fullmatch(value) or len(value) > 10 or int(value) > 255:
        raise SipParseError(f"bad Max-Forwards {value!r}")
    return int(value)


def parse_token(value: str, what: str) -> str:
    value = value.strip(" \t")
    if not TOKEN_RE.fullmatch(value):
        raise SipParseError(f"bad {what} {value!r}")
    return value


def parse_date(value: str) -> str:
    """Validate an RFC 1123 date; SIP allows only GMT (RFC 3261 §20.17, RFC 4475 §3.1.2.12)."""
    value = value.strip(" \t")
    if not _DATE_RE.fullmatch(value):
        raise SipParseError(f"bad Date {value!r}")
    return value
