"""SIP messages (RFC 3261 §7): parse bytes into `Request`/`Response`, serialize them back."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..errors import LocalProtocolError, SipParseError
from .auth import DigestChallenge, DigestCredentials, parse_challenge, parse_credentials
from .headers import (
    TOKEN_RE,
    CSeq,
    MediaType,
    NameAddress,
    Via,
    parse_call_id,
    parse_date,
    parse_delta_seconds,
    parse_max_forwards,
    parse_token,
    split_list,
)
from .uri import SipUri, Uri, parse_uri

MAX_MESSAGE_SIZE = 65536

# RFC 3261 §7.3.3 compact forms, plus RFC 3265 (o, u), RFC 3515 (r), RFC 3892 (b), RFC 4028 (x), RFC 4474 (y).
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "y": "Identity",
}
_KNOWN_NAMES = (
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}
_CANONICAL.update(COMPACT_FORMS)
# lower-cased name as received -> (canonical name, its key), for the parser's hot loop.
_CANONICAL_KEYED: dict[str, tuple[str, str]] = {k: (v, v.lower()) for k, v in _CANONICAL.items()}

# Comma-separated headers (RFC 3261 §7.3.1) stored one field per element, so a Via or Route can be inserted
# or removed on its own. Other list headers (Allow, Supported, ...) are split on access.
_LIST_HEADERS = frozenset({"Via", "Contact", "Route", "Record-Route"})
# RFC 3261 §7.3.1: these may appear at most once (RFC 4475 §3.3.8 expects a 400 otherwise).
SINGLE_HEADERS = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Type", "Expires")
_SINGLE_SET = frozenset(SINGLE_HEADERS)


def _parse_contact(value: str) -> NameAddress | None:
    return None if value.strip() == "*" else NameAddress.parse(value)


def _parse_token_list(value: str, what: str) -> tuple[str, ...]:
    """A comma-separated list of tokens (Allow, Supported, Require ...); empty elements are skipped."""
    return tuple(parse_token(item, what) for item in split_list(value) if item)


def _parse_tokens(what: str) -> Callable[[str], tuple[str, ...]]:
    return lambda value: _parse_token_list(value, what)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "Via": Via.parse,
    "From": NameAddress.parse,
    "To": NameAddress.parse,
    "Contact": _parse_contact,
    "Route": NameAddress.parse,
    "Record-Route": NameAddress.parse,
    "CSeq": CSeq.parse,
    "Call-ID": parse_call_id,
    "Max-Forwards": parse_max_forwards,
    "Expires": lambda v: parse_delta_seconds(v, "Expires"),
    "Min-Expires": lambda v: parse_delta_seconds(v, "Min-Expires"),
    "Content-Type": MediaType.parse,
    "Date": parse_date,
    "Require": _parse_tokens("option tag"),
    "Proxy-Require": _parse_tokens("option tag"),
}

_T = TypeVar("_T")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SIP_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE)
_REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status_code: int) -> str:
    """The standard reason phrase for a status code (RFC 3261 §21), or a generic one for its class."""
    phrase = _REASON_PHRASES.get(status_code)
    if phrase is not None:
        return phrase
    return _REASON_PHRASES.get(status_code // 100 * 100, "Unknown")


def canonical_name(name: str) -> str:
    """The long, canonically cased form of a header name; unknown names are returned unchanged."""
    return _CANONICAL.get(name.lower(), name)


class _Field:
    __slots__ = ("key", "name", "parsed", "value")

    def __init__(self, name: str, value: str, parsed: object = None, key: str | None = None) -> None:
        self.name = name
        self.key = name.lower() if key is None else key
        self.value = value
        self.parsed = parsed


class Headers:
    """An ordered multimap of header fields with case-insensitive names and compact forms expanded."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, object]] = ()) -> None:
        self._fields: list[_Field] = []
        for name, value in fields:
            self.add(name, value)

    @staticmethod
    def _make(name: str, value: object) -> _Field:
        name = canonical_name(name)
        if not TOKEN_RE.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}")
        text = str(value)
        if "\r" in text or "\n" in text:
            raise LocalProtocolError(f"header {name} value contains a line break")
        if name == "Content-Length":
            raise LocalProtocolError("Content-Length is derived from the body; do not set it")
        return _Field(name, text, value if not isinstance(value, str) else None)

    def add(self, name: str, value: object) -> None:
        """Append a field; `value` may be a string or a typed value (Via, NameAddress, CSeq, ...)."""
        self._fields.append(self._make(name, value))

    def prepend(self, name: str, value: object) -> None:
        """Insert a field before the first field of the same name (or at the top), as a new Via is."""
        new = self._make(name, value)
        for i, existing in enumerate(self._fields):
            if existing.key == new.key:
                self._fields.insert(i, new)
                return
        self._fields.insert(0, new)

    def set(self, name: str, value: object) -> None:
        """Replace every field of this name with one, at the position of the first."""
        new = self._make(name, value)
        for i, existing in enumerate(self._fields):
            if existing.key == new.key:
                self._fields[i] = new
                self._fields = [f for j, f in enumerate(self._fields) if j <= i or f.key != new.key]
                return
        self._fields.append(new)

    def replace_first(self, name: str, value: object) -> None:
        """Replace the first field of this name (e.g. the top Via gaining `received`)."""
        new = self._make(name, value)
        for i, existing in enumerate(self._fields):
            if existing.key == new.key:
                self._fields[i] = new
                return
        raise KeyError(name)

    def remove(self, name: str) -> int:
        """Remove every field of this name; return how many there were."""
        key = canonical_name(name).lower()
        before = len(self._fields)
        self._fields = [f for f in self._fields if f.key != key]
        return before - len(self._fields)

    def remove_first(self, name: str) -> None:
        key = canonical_name(name).lower()
        for i, existing in enumerate(self._fields):
            if existing.key == key:
                del self._fields[i]
                return
        raise KeyError(name)

    def get(self, name: str) -> str | None:
        key = canonical_name(name).lower()
        for f in self._fields:
            if f.key == key:
                return f.value
        return None

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name).lower()
        return [f.value for f in self._fields if f.key == key]

    def count(self, name: str) -> int:
        key = canonical_name(name).lower()
        return sum(1 for f in self._fields if f.key == key)

    def typed(self, name: str, parser: Callable[[str], _T]) -> list[_T]:
        """Every value of `name` parsed by `parser`; results are cached on the fields."""
        key = canonical_name(name).lower()
        out: list[_T] = []
        for f in self._fields:
            if f.key == key:
                if f.parsed is None:
                    f.parsed = parser(f.value)
                out.append(f.parsed)  # type: ignore[arg-type]
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name).lower()
        return any(f.key == key for f in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((f.name, f.value) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def items(self) -> list[tuple[str, str]]:
        return [(f.name, f.value) for f in self._fields]

    def copy(self) -> Headers:
        clone = Headers()
        clone._fields = [_Field(f.name, f.value, f.parsed) for f in self._fields]
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(f.key, f.value) for f in self._fields] == [(f.key, f.value) for f in other._fields]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


class Message:
    """What requests and responses share: headers, body and typed access to the common fields."""

    __slots__ = ("body", "defects", "headers")

    def __init__(
        self, headers: Headers | Iterable[tuple[str, object]] | None = None, body: bytes = b""
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        # Problems that do not stop parsing but that a UA must answer with 400 (RFC 4475 §3.3.9).
        self.defects: list[str] = []

    def _first(self, name: str, parser: Callable[[str], _T]) -> _T | None:
        values = self.headers.typed(name, parser)
        return values[0] if values else None

    def _required(self, name: str, parser: Callable[[str], _T]) -> _T:
        value = self._first(name, parser)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def via(self) -> list[Via]:
        return self.headers.typed("Via", Via.parse)

    @property
    def top_via(self) -> Via:
        return self._required("Via", Via.parse)

    @property
    def from_(self) -> NameAddress:
        return self._required("From", NameAddress.parse)

    @property
    def to(self) -> NameAddress:
        return self._required("To", NameAddress.parse)

    @property
    def call_id(self) -> str:
        return self._required("Call-ID", parse_call_id)

    @property
    def cseq(self) -> CSeq:
        return self._required("CSeq", CSeq.parse)

    @property
    def max_forwards(self) -> int | None:
        return self._first("Max-Forwards", parse_max_forwards)

    @property
    def contact(self) -> list[NameAddress]:
        """Contact addresses; empty for none and for `Contact: *`."""
        return [c for c in self.headers.typed("Contact", _parse_contact) if c is not None]

    @property
    def contact_is_star(self) -> bool:
        return any(v.strip() == "*" for v in self.headers.get_all("Contact"))

    @property
    def route(self) -> list[NameAddress]:
        return self.headers.typed("Route", NameAddress.parse)

    @property
    def record_route(self) -> list[NameAddress]:
        return self.headers.typed("Record-Route", NameAddress.parse)

    @property
    def content_type(self) -> MediaType | None:
        return self._first("Content-Type", MediaType.parse)

    @property
    def content_length(self) -> int:
        return len(self.body)

    @property
    def expires(self) -> int | None:
        return self._first("Expires", lambda v: parse_delta_seconds(v, "Expires"))

    def _tokens(self, name: str) -> list[str]:
        return [
            token
            for tokens in self.headers.typed(name, lambda v: _parse_token_list(v, name))
            for token in tokens
        ]

    @property
    def allow(self) -> list[str]:
        return self._tokens("Allow")

    @property
    def supported(self) -> list[str]:
        return self._tokens("Supported")

    @property
    def require(self) -> list[str]:
        return self._tokens("Require")

    @property
    def proxy_require(self) -> list[str]:
        return self._tokens("Proxy-Require")

    def _digest(self, name: str, parser: Callable[[str], _T]) -> list[_T]:
        def parse(value: str) -> _T | None:
            # Other schemes (Basic, unknown ones as in RFC 4475 §3.3.7) are skipped, not errors.
            return parser(value) if value.lstrip()[:6].lower() == "digest" else None

        return [v for v in self.headers.typed(name, parse) if v is not None]

    @property
    def www_authenticate(self) -> list[DigestChallenge]:
        """The Digest challenges of a 401 (raw values: `headers.get_all("WWW-Authenticate")`)."""
        return self._digest("WWW-Authenticate", parse_challenge)

    @property
    def proxy_authenticate(self) -> list[DigestChallenge]:
        return self._digest("Proxy-Authenticate", parse_challenge)

    @property
    def authorization(self) -> list[DigestCredentials]:
        return self._digest("Authorization", parse_credentials)

    @property
    def proxy_authorization(self) -> list[DigestCredentials]:
        return self._digest("Proxy-Authorization", parse_credentials)

    def _start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire form: start line, headers in order, a Content-Length derived from the body, the body."""
        lines = [self._start_line()]
        lines.extend(f"{f.name}: {f.value}" for f in self.headers._fields)
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    """A SIP request: method, Request-URI, headers, body."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Headers | Iterable[tuple[str, object]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        if not TOKEN_RE.fullmatch(method):
            raise LocalProtocolError(f"invalid method {method!r}")
        self.method = method
        self.uri: Uri = parse_uri(uri) if isinstance(uri, str) else uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and str(self.uri) == str(other.uri)
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response: status code, reason phrase, headers, body."""

    __slots__ = ("reason", "status_code")

    def __init__(
        self,
        status_code: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, object]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        if not 100 <= status_code <= 699:
            raise LocalProtocolError(f"invalid status code {status_code}")
        self.status_code = status_code
        self.reason = reason_phrase(status_code) if reason is None else reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status_code} {self.reason}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status_code == other.status_code
            and self.reason == other.reason
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"


def _split_head(data: bytes) -> tuple[list[str], int]:
    """Split the header section into unfolded lines; return them and the offset of the body."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body_start = data[:end], end + 4
    else:
        end = data.find(b"\n\n")
        if end >= 0:
            head, body_start = data[:end], end + 2
        else:
            # A datagram whose header section is not closed by an empty line: take it all as headers.
            head, body_start = data.rstrip(b"\r\n"), len(data)
    text = head.decode("utf-8", "surrogateescape")
    if text.count("\n") == text.count("\r\n"):
        raw_lines = text.split("\r\n")
    else:  # bare LF line ends, which many stacks accept (RFC 3261 §7 asks for CRLF)
        raw_lines = text.replace("\r\n", "\n").split("\n")
    lines: list[str] = []
    for line in raw_lines:
        if line[:1] in (" ", "\t") and lines:
            # RFC 3261 §7.3.1: a line starting with whitespace continues the previous header (folding).
            lines[-1] = lines[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            lines.append(line)
    return lines, body_start


def _parse_start_line(line: str) -> Request | Response:
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        if not _SIP_VERSION_RE.fullmatch(version):
            raise SipParseError(f"bad status line {line!r}")
        code_text, _, reason = rest.partition(" ")
        if len(code_text) != 3 or not code_text.isdigit() or not 100 <= int(code_text) <= 699:
            raise SipParseError(f"bad status code in {line!r}")
        if version.upper() != "SIP/2.0":
            raise SipParseError(
                f"unsupported version {version}", status_code=505, reason="Version Not Supported"
            )
        if _CONTROL_RE.search(reason) is not None:
            # Reason-Phrase: any UTF-8 text with spaces and tabs, no control characters (RFC 3261 §25.1).
            raise SipParseError("control characters in reason phrase")
        return Response(int(code_text), reason)
    parts = line.split(" ")
    # RFC 3261 §7.1: exactly one SP between the three elements; RFC 4475 §3.1.2.9 and §3.1.2.10.
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"bad request line {line!r}")
    method, uri_text, version = parts
    if not TOKEN_RE.fullmatch(method):
        raise SipParseError(f"bad method {method!r}")
    if not _SIP_VERSION_RE.fullmatch(version):
        raise SipParseError(f"bad SIP version {version!r}")
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported version {version}", status_code=505, reason="Version Not Supported")
    uri = parse_uri(uri_text)
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        raise SipParseError("header component in Request-URI")
    return Request(method, uri)


def parse_message(
    data: bytes, *, stream: bool = False, max_size: int = MAX_MESSAGE_SIZE
) -> Request | Response:
    """Parse one SIP message from a datagram (or a framed stream message); raise `SipParseError` if invalid.

    On a datagram, bytes beyond Content-Length are discarded (RFC 3261 §18.3); without Content-Length the
    body runs to the end. `stream=True` requires Content-Length.
    """
    fields: list[tuple[str, str]] = []
    is_request: bool | None = None
    try:
        if len(data) > max_size:
            raise SipParseError(
                f"message of {len(data)} bytes exceeds {max_size}",
                status_code=413,
                reason="Request Entity Too Large",
            )
        # RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives).
        data = data.lstrip(b"\r\n")
        if not data:
            raise SipParseError("empty message")
        lines, body_start = _split_head(data)
        is_request = lines[0][:4].upper() != "SIP/"
        keys: list[str] = []
        for line in lines[1:]:
            raw_name, colon, value = line.partition(":")
            raw_name = raw_name.rstrip(" \t")
            lowered = raw_name.lower()
            known = _CANONICAL_KEYED.get(lowered)
            # A known name is a token by construction; only other names need the grammar check.
            if not colon or (known is None and TOKEN_RE.fullmatch(raw_name) is None):
                raise SipParseError(f"bad header line {line[:80]!r}")
            value = value.strip(" \t")
            if known is None:
                fields.append((raw_name, value))
                keys.append(lowered)
            else:
                fields.append((known[0], value))
                keys.append(known[1])
        message = _parse_start_line(lines[0])
        message.headers = _build_headers(fields, keys, message)
        message.body = _take_body(data, body_start, fields, message, stream)
        if isinstance(message, Request):
            cseq = message._first("CSeq", CSeq.parse)
            # RFC 4475 §3.1.2.17/18: a CSeq method that differs from the request method is a 400.
            if cseq is not None and cseq.method != message.method:
                raise SipParseError(f"CSeq method {cseq.method} does not match {message.method}")
        return message
    except SipParseError as error:
        error.is_request = is_request
        error.fields = fields
        raise
    except (UnicodeError, ValueError, IndexError) as error:  # defensive: never leak other exceptions
        wrapped = SipParseError(f"unparseable message: {error}")
        wrapped.is_request = is_request
        wrapped.fields = fields
        raise wrapped from error


def _build_headers(fields: list[tuple[str, str]], keys: list[str], message: Message) -> Headers:
    headers = Headers()
    out = headers._fields
    seen_single: set[str] = set()
    for (name, value), key in zip(fields, keys, strict=True):
        if key == "content-length":
            continue
        if "\r" in value:
            raise SipParseError(f"bare CR in {name}")
        if name in _SINGLE_SET:
            if name in seen_single:
                message.defects.append(f"more than one {name} header")
            seen_single.add(name)
        parser = _PARSERS.get(name)
        if "," in value and name in _LIST_HEADERS:
            for item in split_list(value):
                if not item:
                    raise SipParseError(f"empty element in {name}")
                out.append(_Field(name, item, parser(item) if parser is not None else None, key))
        else:
            out.append(_Field(name, value, parser(value) if parser is not None else None, key))
    return headers


def _take_body(
    data: bytes, start: int, fields: list[tuple[str, str]], message: Message, stream: bool
) -> bytes:
    lengths = {v.strip(" \t") for n, v in fields if n == "Content-Length"}
    if not lengths:
        if stream:
            raise SipParseError("missing Content-Length on a stream transport")
        return data[start:]
    for text in lengths:
        if not text.isdigit() or not text.isascii() or len(text) > 10:
            raise SipParseError(f"bad Content-Length {text!r}")
    if len(lengths) > 1:
        if stream:
            raise SipParseError("conflicting Content-Length headers on a stream transport")
        message.defects.append("conflicting Content-Length headers")
        return data[start:]
    length = int(next(iter(lengths)))
    if len(data) - start < length:
        # RFC 3261 §18.3: on a datagram, a body shorter than Content-Length makes the message invalid.
        raise SipParseError(f"Content-Length {length} exceeds the {len(data) - start} body bytes received")
    return data[start : start + length]


def request_problem(request: Request) -> SipParseError | None:
    """What a UA must reject in a request that parsed (missing or repeated mandatory headers): 400 or None."""
    for name in ("To", "From", "Call-ID", "CSeq", "Via"):
        if name not in request.headers:
            return SipParseError(f"missing {name} header", reason=f"Missing {name}")
    if request.defects:
        return SipParseError(request.defects[0])
    return None


def error_response(error: SipParseError) -> Response | None:
    """The response to a request that failed to parse, or None when none can be formed (RFC 3261 §8.2)."""
    fields = error.fields
    if not error.is_request:
        return None
    needed = ("Via", "From", "To", "Call-ID", "CSeq")
    # Without a Via there is nowhere to send a response (RFC 3261 §18.2.2); the rest is copied when present.
    if not any(name == "Via" for name, _ in fields):
        return None
    response = Response(error.status_code, error.reason)
    for name, value in fields:
        if name in needed:
            response.headers._fields.append(_Field(name, value))
    response.headers.add("Warning", f'399 - "{_sanitize_warning(error.detail)}"')
    return response


def _sanitize_warning(text: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)[:120]


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, object]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `request`, copying Via, From, To (+ tag), Call-ID and CSeq (RFC 3261 §8.2.6.2)."""
    response = Response(status_code, reason)
    out = response.headers._fields
    for f in request.headers._fields:
        if f.key in ("via", "from", "call-id", "cseq"):
            out.append(_Field(f.name, f.value, f.parsed))
        elif f.key == "to":
            to = request.to
            if to_tag is not None and to.tag is None and status_code != 100:
                to = to.with_tag(to_tag)
                out.append(_Field("To", str(to), to))
            else:
                out.append(_Field(f.name, f.value, f.parsed))
        elif f.key == "record-route" and 100 < status_code < 300:
            # RFC 3261 §12.1.1: a UAS copies Record-Route into dialog-creating responses.
            out.append(_Field(f.name, f.value, f.parsed))
    for name, value in headers:
        response.headers.add(name, value)
    response.body = body
    return response
