"""SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), client and server, sans-I/O.

Works on header *values* (`Digest realm="...", ...`) so it does not depend on the message layer.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from voicelive_sip.errors import LocalProtocolError, SipParseError, VoiceLiveSipError

__all__ = [
    "AuthAnswer",
    "DigestAlgorithm",
    "DigestAuthError",
    "DigestAuthFailed",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestServer",
    "PrecomputedHA1",
    "VerifyOutcome",
    "VerifyResult",
    "compute_ha1",
    "parse_challenge",
    "parse_credentials",
    "serialize_challenge",
    "serialize_credentials",
]

# RFC 3261 §25.1: token, quoted-string (qdtext / quoted-pair) and the SWS around "=" and ",".
# Surrogates are excluded because they cannot come from UTF-8 on the wire and cannot be hashed.
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_QUOTED_STRING = re.compile(
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\ud7ff\ue000-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"'
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_WHITESPACE = re.compile(r"[ \t]*")
_LINE_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NEEDS_ESCAPE = re.compile(r'(["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f])')
_UNQUOTABLE = re.compile(r"[\r\n\ud800-\udfff]")
_NONCE_COUNT = re.compile(r"[0-9a-f]{8}")

_CHALLENGE_PARAMS = frozenset(
    {"realm", "domain", "nonce", "opaque", "stale", "algorithm", "qop", "charset", "userhash"}
)
_CREDENTIALS_PARAMS = frozenset(
    {
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "opaque",
        "qop",
        "nc",
        "userhash",
    }
)
_QOP_VALUES = frozenset({"auth", "auth-int"})
# RFC 7616 §3.4: nc is 8 hex digits, so a nonce can authorize at most this many requests.
_MAX_NONCE_COUNT = 0xFFFFFFFF
# A server that answers stale=true forever would otherwise make us retry forever.
_MAX_STALE_RETRIES = 3
# Sliding window of nonce counts remembered per nonce, as in RFC 4303 §3.4.3: requests sent with one
# nonce may arrive out of order over UDP, so "nc must grow" alone would reject honest clients.
_NC_WINDOW = 64
_NC_WINDOW_MASK = (1 << _NC_WINDOW) - 1
_NONCE_ISSUED = struct.Struct(">d")
_NONCE_SALT_BYTES = 8
_NONCE_MAC_BYTES = 16


class DigestAuthError(VoiceLiveSipError):
    """We cannot answer the peer's challenge (no supported scheme, algorithm, qop or realm)."""


class DigestAuthFailed(DigestAuthError):
    """The peer rejected credentials we already sent for `realm`: wrong username or password."""

    def __init__(self, realm: str, detail: str) -> None:
        super().__init__(f"{detail} (realm {realm!r})")
        self.realm = realm


class DigestAlgorithm(enum.Enum):
    """The `algorithm` values implemented here (RFC 7616 §3.3, RFC 8760 §2)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def from_token(cls, token: str) -> DigestAlgorithm | None:
        """The algorithm named by `token` (ABNF literals are case-insensitive), or None if unknown."""
        lowered = token.lower()
        for algorithm in cls:
            if algorithm.value.lower() == lowered:
                return algorithm
        return None

    @property
    def is_session(self) -> bool:
        """True for the `-sess` variants, whose HA1 also covers nonce and cnonce (RFC 7616 §3.4.2)."""
        return self.value.endswith("-sess")

    @property
    def hash_name(self) -> str:
        """The hashlib name of the underlying hash function."""
        base = self.value.removesuffix("-sess")
        if base == "MD5":
            return "md5"
        if base == "SHA-256":
            return "sha256"
        return "sha512_256"

    @property
    def strength(self) -> int:
        """Rank used to pick the strongest of several challenges for one request."""
        return {"md5": 1, "sha256": 2, "sha512_256": 3}[self.hash_name]


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One `Digest` challenge from WWW-Authenticate or Proxy-Authenticate (RFC 3261 §25.1 `digest-cln`)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    charset: str | None = None
    userhash: bool = False
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """`Digest` credentials from Authorization or Proxy-Authorization (RFC 3261 §25.1 `dig-resp`)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None
    userhash: bool = False
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    """A header to add to the next request: `header_name: header_value`."""

    header_name: str
    header_value: str


@dataclass(frozen=True, slots=True)
class PrecomputedHA1:
    """H(username ":" realm ":" password) stored instead of the password (RFC 7616 §3.4.2)."""

    hex_digest: str = field(repr=False)


class VerifyOutcome(enum.Enum):
    """What a server should do with a request after checking its credentials."""

    OK = "ok"
    STALE = "stale"  # the response was right but the nonce is too old: re-challenge with stale=true
    FAILED = "failed"  # re-challenge without stale (or answer 403)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `DigestServer.verify`, the claimed username, and why it was not OK."""

    outcome: VerifyOutcome
    username: str | None = None
    reason: str | None = None
    credentials: DigestCredentials | None = None


# --------------------------------------------------------------------------------------------------
# Parsing and serializing header values


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None  # `[ \t]*` matches everywhere
    return match.end()


def _parse_auth_value(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Split `scheme name=value, ...` into the scheme and (lower-case name, unquoted value) pairs."""
    # RFC 3261 §7.3.1: a line fold is LWS and may be replaced by a single SP.
    text = _LINE_FOLD.sub(" ", value)
    end = len(text)
    pos = _skip_whitespace(text, 0)
    scheme_match = _TOKEN.match(text, pos)
    if scheme_match is None:
        raise SipParseError("authentication header value has no scheme")
    scheme = scheme_match.group()
    pos = scheme_match.end()
    if pos < end and text[pos] not in " \t":
        raise SipParseError(f"unexpected character after scheme at offset {pos}")
    pos = _skip_whitespace(text, pos)
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    while pos < end:
        name_match = _TOKEN.match(text, pos)
        if name_match is None:
            raise SipParseError(f"expected a parameter name at offset {pos}")
        name = name_match.group().lower()
        pos = _skip_whitespace(text, name_match.end())
        if pos >= end or text[pos] != "=":
            raise SipParseError(f"parameter {name!r} has no value")
        pos = _skip_whitespace(text, pos + 1)
        if pos < end and text[pos] == '"':
            quoted_match = _QUOTED_STRING.match(text, pos)
            if quoted_match is None:
                raise SipParseError(f"parameter {name!r} has an invalid or unterminated quoted-string")
            param_value = _QUOTED_PAIR.sub(r"\1", quoted_match.group(1))
            pos = quoted_match.end()
        else:
            token_match = _TOKEN.match(text, pos)
            if token_match is None:
                raise SipParseError(f"parameter {name!r} has an invalid value")
            param_value = token_match.group()
            pos = token_match.end()
        # RFC 7235 §2.1: each parameter name occurs at most once per challenge or credentials.
        if name in seen:
            raise SipParseError(f"parameter {name!r} appears twice")
        seen.add(name)
        params.append((name, param_value))
        pos = _skip_whitespace(text, pos)
        if pos < end:
            if text[pos] != ",":
                raise SipParseError(f"expected ',' at offset {pos}")
            pos = _skip_whitespace(text, pos + 1)
            if pos >= end:
                raise SipParseError("trailing ',' after the last parameter")
    return scheme, params


def _parse_flag(name: str, value: str) -> bool:
    # RFC 3261 §25.1 `stale = "stale" EQUAL ( "true" / "false" )`; RFC 7616 §3.3 userhash likewise.
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise SipParseError(f"parameter {name!r} must be true or false, not {value!r}")


def _parse_token_value(name: str, value: str) -> str:
    if _TOKEN.fullmatch(value) is None:
        raise SipParseError(f"parameter {name!r} must be a token, not {value!r}")
    return value


def _canonical_algorithm(value: str) -> str:
    token = _parse_token_value("algorithm", value)
    algorithm = DigestAlgorithm.from_token(token)
    return token if algorithm is None else algorithm.value


def _challenge_from_params(params: list[tuple[str, str]]) -> DigestChallenge:
    known = {name: value for name, value in params if name in _CHALLENGE_PARAMS}
    extra = tuple((name, value) for name, value in params if name not in _CHALLENGE_PARAMS)
    realm = known.get("realm")
    nonce = known.get("nonce")
    if realm is None:
        raise SipParseError("Digest challenge has no realm")
    if nonce is None:
        raise SipParseError("Digest challenge has no nonce")
    qop: tuple[str, ...] = ()
    if "qop" in known:
        # RFC 3261 §25.1 `qop-options`: a quoted, comma-separated list of tokens.
        qop = tuple(_parse_token_value("qop", part.strip()).lower() for part in known["qop"].split(","))
    charset = known.get("charset")
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=_canonical_algorithm(known.get("algorithm", "MD5")),
        qop=qop,
        opaque=known.get("opaque"),
        stale=_parse_flag("stale", known["stale"]) if "stale" in known else False,
        domain=known.get("domain"),
        charset=None if charset is None else _parse_token_value("charset", charset),
        userhash=_parse_flag("userhash", known["userhash"]) if "userhash" in known else False,
        params=extra,
    )


def _credentials_from_params(params: list[tuple[str, str]]) -> DigestCredentials:
    known = {name: value for name, value in params if name in _CREDENTIALS_PARAMS}
    extra = tuple((name, value) for name, value in params if name not in _CREDENTIALS_PARAMS)
    for required in ("username", "realm", "nonce", "uri", "response"):
        if required not in known:
            raise SipParseError(f"Digest credentials have no {required}")
    qop = known.get("qop")
    nc: int | None = None
    if qop is not None:
        qop = _parse_token_value("qop", qop).lower()
        # RFC 7616 §3.4: cnonce and nc MUST be sent when qop is.
        if "cnonce" not in known or "nc" not in known:
            raise SipParseError("Digest credentials with qop need cnonce and nc")
    if "nc" in known:
        if _NONCE_COUNT.fullmatch(known["nc"]) is None:
            raise SipParseError(f"nc must be 8 lower-case hex digits, not {known['nc']!r}")
        nc = int(known["nc"], 16)
    return DigestCredentials(
        username=known["username"],
        realm=known["realm"],
        nonce=known["nonce"],
        uri=known["uri"],
        response=known["response"],
        algorithm=_canonical_algorithm(known.get("algorithm", "MD5")),
        cnonce=known.get("cnonce"),
        opaque=known.get("opaque"),
        qop=qop,
        nc=nc,
        userhash=_parse_flag("userhash", known["userhash"]) if "userhash" in known else False,
        params=extra,
    )


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value; raise SipParseError unless it is valid Digest."""
    scheme, params = _parse_auth_value(value)
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme {scheme!r}")
    return _challenge_from_params(params)


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization value; raise SipParseError unless it is valid Digest."""
    scheme, params = _parse_auth_value(value)
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme {scheme!r}")
    return _credentials_from_params(params)


def _quote(value: str) -> str:
    # RFC 3261 §25.1: quoted-pair can carry every character except CR and LF.
    if _UNQUOTABLE.search(value) is not None:
        raise LocalProtocolError("a quoted-string cannot carry CR, LF or lone surrogates")
    return '"' + _NEEDS_ESCAPE.sub(r"\\\1", value) + '"'


def _token(name: str, value: str) -> str:
    if _TOKEN.fullmatch(value) is None:
        raise LocalProtocolError(f"{name} must be a token, not {value!r}")
    return value


def _extra_params(params: tuple[tuple[str, str], ...], known: frozenset[str]) -> list[str]:
    parts = []
    for name, value in params:
        if _TOKEN.fullmatch(name) is None or name.lower() in known:
            raise LocalProtocolError(f"cannot serialize extra parameter {name!r}")
        parts.append(f"{name}={value if _TOKEN.fullmatch(value) else _quote(value)}")
    return parts


def serialize_challenge(challenge: DigestChallenge) -> str:
    """The canonical WWW-Authenticate / Proxy-Authenticate value for `challenge`."""
    parts = [f"realm={_quote(challenge.realm)}"]
    if challenge.domain is not None:
        parts.append(f"domain={_quote(challenge.domain)}")
    parts.append(f"nonce={_quote(challenge.nonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if challenge.stale:
        parts.append("stale=true")
    parts.append(f"algorithm={_token('algorithm', challenge.algorithm)}")
    if challenge.qop:
        # RFC 3261 §25.1: qop-options is always a quoted list in a challenge.
        parts.append(f"qop={_quote(','.join(_token('qop', qop) for qop in challenge.qop))}")
    if challenge.charset is not None:
        parts.append(f"charset={_token('charset', challenge.charset)}")
    if challenge.userhash:
        parts.append("userhash=true")
    parts.extend(_extra_params(challenge.params, _CHALLENGE_PARAMS))
    return "Digest " + ", ".join(parts)


def serialize_credentials(credentials: DigestCredentials) -> str:
    """The canonical Authorization / Proxy-Authorization value for `credentials`."""
    parts = [
        f"username={_quote(credentials.username)}",
        f"realm={_quote(credentials.realm)}",
        f"nonce={_quote(credentials.nonce)}",
        f"uri={_quote(credentials.uri)}",
        f"response={_quote(credentials.response)}",
        # RFC 7616 §3.4: algorithm, qop and nc are never quoted in credentials.
        f"algorithm={_token('algorithm', credentials.algorithm)}",
    ]
    if credentials.cnonce is not None:
        parts.append(f"cnonce={_quote(credentials.cnonce)}")
    if credentials.opaque is not None:
        parts.append(f"opaque={_quote(credentials.opaque)}")
    if credentials.qop is not None:
        parts.append(f"qop={_token('qop', credentials.qop)}")
    if credentials.nc is not None:
        if not 0 <= credentials.nc <= _MAX_NONCE_COUNT:
            raise LocalProtocolError(f"nc {credentials.nc} does not fit in 8 hex digits")
        parts.append(f"nc={credentials.nc:08x}")
    if credentials.userhash:
        parts.append("userhash=true")
    parts.extend(_extra_params(credentials.params, _CREDENTIALS_PARAMS))
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# The digest computation (RFC 7616 §3.4.1-§3.4.3)


def _hash_hex(algorithm: DigestAlgorithm, data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.new(algorithm.hash_name, raw).hexdigest()


def compute_ha1(algorithm: DigestAlgorithm, username: str, realm: str, password: str) -> PrecomputedHA1:
    """H(username ":" realm ":" password), what a registrar may store instead of the password."""
    return PrecomputedHA1(_hash_hex(algorithm, f"{username}:{realm}:{password}"))


def _request_digest(
    algorithm: DigestAlgorithm,
    *,
    ha1: str,
    nonce: str,
    cnonce: str | None,
    nc: int | None,
    qop: str | None,
    method: str,
    uri: str,
    body: bytes,
) -> str:
    if algorithm.is_session:
        # RFC 7616 §3.4.2: the -sess variants bind HA1 to this nonce and cnonce.
        ha1 = _hash_hex(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _hash_hex(algorithm, f"{method}:{uri}:{_hash_hex(algorithm, body)}")
    else:
        ha2 = _hash_hex(algorithm, f"{method}:{uri}")
    if qop is None:
        # RFC 3261 §22.4 keeps RFC 2069 compatibility: no qop, no cnonce, no nc.
        return _hash_hex(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hash_hex(algorithm, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


# --------------------------------------------------------------------------------------------------
# Client


def _default_cnonce() -> str:
    return secrets.token_hex(16)


def _choose_qop(offered: tuple[str, ...], algorithm: DigestAlgorithm) -> str | None:
    """The qop we answer with (None: RFC 2069 style); raise DigestAuthError if none is usable."""
    if not offered:
        if algorithm.is_session:
            # RFC 7616 §3.4.2: -sess needs a cnonce, and a cnonce is only sent with qop.
            raise DigestAuthError(f"algorithm {algorithm.value} offered without qop")
        return None
    # auth-int only when it is the sole choice: it breaks as soon as a proxy touches the body.
    if "auth" in offered:
        return "auth"
    if "auth-int" in offered:
        return "auth-int"
    raise DigestAuthError(f"no supported qop in {','.join(offered)!r}")


@dataclass(slots=True)
class _ClientRealm:
    """What the client remembers about one realm's latest challenge (RFC 7616 §3.4: nc counts per nonce)."""

    header_name: str
    challenge: DigestChallenge
    algorithm: DigestAlgorithm
    qop: str | None
    session_cnonce: str | None
    nc: int = 0
    answered_fresh: bool = False
    stale_retries: int = 0


class DigestClient:
    """Answers 401/407 digest challenges for one username and password (RFC 3261 §22.2-§22.3)."""

    __slots__ = ("_cnonce_factory", "_max_realms", "_password", "_realm", "_realms", "_username")

    def __init__(
        self,
        username: str,
        password: str,
        *,
        realm: str | None = None,
        cnonce_factory: Callable[[], str] | None = None,
        max_realms: int = 8,
    ) -> None:
        if max_realms < 1:
            raise ValueError("max_realms must be at least 1")
        self._username = username
        self._password = password
        self._realm = realm
        self._cnonce_factory = cnonce_factory or _default_cnonce
        self._max_realms = max_realms
        self._realms: OrderedDict[tuple[str, str], _ClientRealm] = OrderedDict()

    def __repr__(self) -> str:
        return f"DigestClient(username={self._username!r}, realm={self._realm!r}, password=<hidden>)"

    @property
    def username(self) -> str:
        """The username we authenticate as."""
        return self._username

    def respond(
        self, status_code: int, challenge_values: Sequence[str], *, method: str, uri: str, body: bytes = b""
    ) -> AuthAnswer:
        """Answer the strongest supported challenge of a 401 or 407 for the request `method uri body`."""
        # RFC 3261 §22.2 (401 → Authorization) and §22.3 (407 → Proxy-Authorization).
        if status_code == 401:
            header_name = "Authorization"
        elif status_code == 407:
            header_name = "Proxy-Authorization"
        else:
            raise LocalProtocolError(f"only 401 and 407 carry digest challenges, not {status_code}")
        challenge, algorithm, qop = self._strongest_challenge(challenge_values)
        key = (header_name, challenge.realm)
        previous = self._realms.pop(key, None)
        stale_retries = 0
        if previous is not None and previous.answered_fresh:
            # RFC 7616 §3.3: a new challenge right after our answer means the credentials were wrong,
            # unless stale=true says only the nonce was too old.
            if not challenge.stale:
                raise DigestAuthFailed(challenge.realm, "credentials rejected")
            if previous.stale_retries >= _MAX_STALE_RETRIES:
                raise DigestAuthFailed(challenge.realm, "server keeps answering stale=true")
            stale_retries = previous.stale_retries + 1
        state = _ClientRealm(
            header_name=header_name,
            challenge=challenge,
            algorithm=algorithm,
            qop=qop,
            # RFC 2617 §3.2.2.2: the -sess HA1 is computed once per nonce, so its cnonce stays fixed.
            session_cnonce=self._cnonce_factory() if algorithm.is_session else None,
            stale_retries=stale_retries,
        )
        self._realms[key] = state
        while len(self._realms) > self._max_realms:
            self._realms.popitem(last=False)
        answer = self._answer(state, method, uri, body)
        state.answered_fresh = True
        return answer

    def authorize(self, method: str, uri: str, body: bytes = b"") -> list[AuthAnswer]:
        """Credentials for a new request from the cached challenges, nc+1 each (RFC 3261 §22.3)."""
        answers = []
        for key, state in list(self._realms.items()):
            if state.nc >= _MAX_NONCE_COUNT:
                del self._realms[key]
                continue
            # A challenge to this request is not proof of a wrong password: the nonce may just be old.
            state.answered_fresh = False
            state.stale_retries = 0
            answers.append(self._answer(state, method, uri, body))
        return answers

    def _strongest_challenge(
        self, challenge_values: Sequence[str]
    ) -> tuple[DigestChallenge, DigestAlgorithm, str | None]:
        best: tuple[DigestChallenge, DigestAlgorithm, str | None] | None = None
        reasons: list[str] = []
        parse_error: SipParseError | None = None
        for value in challenge_values:
            try:
                scheme, params = _parse_auth_value(value)
                if scheme.lower() != "digest":
                    reasons.append(f"scheme {scheme!r} is not Digest")
                    continue
                challenge = _challenge_from_params(params)
            except SipParseError as exc:
                parse_error = parse_error or exc
                continue
            if self._realm is not None and challenge.realm != self._realm:
                reasons.append(f"realm {challenge.realm!r} is not {self._realm!r}")
                continue
            algorithm = DigestAlgorithm.from_token(challenge.algorithm)
            if algorithm is None:
                reasons.append(f"algorithm {challenge.algorithm!r} is not supported")
                continue
            try:
                qop = _choose_qop(challenge.qop, algorithm)
            except DigestAuthError as exc:
                reasons.append(str(exc))
                continue
            # RFC 8760 §2.4 says topmost supported "unless a local policy dictates otherwise"; our
            # policy is the strongest hash, and header order only breaks ties.
            if best is None or algorithm.strength > best[1].strength:
                best = (challenge, algorithm, qop)
        if best is not None:
            return best
        if parse_error is not None and not reasons:
            raise parse_error
        if parse_error is not None:
            reasons.append(f"malformed challenge: {parse_error.detail}")
        raise DigestAuthError("no usable Digest challenge: " + ("; ".join(reasons) or "none offered"))

    def _answer(self, state: _ClientRealm, method: str, uri: str, body: bytes) -> AuthAnswer:
        challenge = state.challenge
        algorithm = state.algorithm
        state.nc += 1
        if state.qop is None:
            cnonce = None
        elif state.session_cnonce is not None:
            cnonce = state.session_cnonce
        else:
            cnonce = self._cnonce_factory()
        nc = None if state.qop is None else state.nc
        ha1 = _hash_hex(algorithm, f"{self._username}:{challenge.realm}:{self._password}")
        response = _request_digest(
            algorithm,
            ha1=ha1,
            nonce=challenge.nonce,
            cnonce=cnonce,
            nc=nc,
            qop=state.qop,
            method=method,
            uri=uri,
            body=body,
        )
        username = self._username
        if challenge.userhash:
            # RFC 7616 §3.4.4: hide the username from eavesdroppers.
            username = _hash_hex(algorithm, f"{self._username}:{challenge.realm}")
        credentials = DigestCredentials(
            username=username,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=algorithm.value,
            cnonce=cnonce,
            opaque=challenge.opaque,
            qop=state.qop,
            nc=nc,
            userhash=challenge.userhash,
        )
        return AuthAnswer(state.header_name, serialize_credentials(credentials))


# --------------------------------------------------------------------------------------------------
# Server


@dataclass(slots=True)
class _NonceUse:
    """Nonce counts already accepted for one nonce: the highest, and a bitmap of the ones below it."""

    issued_at: float
    highest_nc: int
    seen: int = 1


class DigestServer:
    """Issues digest challenges with stateless HMAC nonces and verifies credentials (RFC 7616 §3.3-§3.4)."""

    __slots__ = (
        "_algorithm",
        "_forgotten_before",
        "_max_nonces",
        "_nonce_ttl",
        "_nonce_uses",
        "_opaque",
        "_qop",
        "_realm",
        "_secret",
    )

    def __init__(
        self,
        secret: bytes,
        realm: str,
        *,
        algorithm: str = "MD5",
        qop: str | None = "auth",
        nonce_ttl: float = 300.0,
        opaque: str | None = None,
        max_nonces: int = 4096,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        parsed_algorithm = DigestAlgorithm.from_token(algorithm)
        if parsed_algorithm is None:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        qops = () if qop is None else tuple(part.strip().lower() for part in qop.split(","))
        if not set(qops) <= _QOP_VALUES:
            raise ValueError(f"qop must list auth and/or auth-int, not {qop!r}")
        if parsed_algorithm.is_session and not qops:
            raise ValueError(f"{parsed_algorithm.value} needs a qop")
        if nonce_ttl <= 0:
            raise ValueError("nonce_ttl must be positive")
        if max_nonces < 1:
            raise ValueError("max_nonces must be at least 1")
        self._secret = secret
        self._realm = realm
        self._algorithm = parsed_algorithm
        self._qop = qops
        self._nonce_ttl = nonce_ttl
        self._opaque = opaque
        self._max_nonces = max_nonces
        self._nonce_uses: OrderedDict[str, _NonceUse] = OrderedDict()
        # Nonces issued at or before this time may have been evicted from `_nonce_uses`.
        self._forgotten_before = float("-inf")

    def __repr__(self) -> str:
        return (
            f"DigestServer(realm={self._realm!r}, algorithm={self._algorithm.value!r}, "
            f"qop={','.join(self._qop)!r}, nonce_ttl={self._nonce_ttl!r}, secret=<hidden>)"
        )

    @property
    def realm(self) -> str:
        """The protection realm this server challenges for."""
        return self._realm

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A WWW-Authenticate / Proxy-Authenticate value with a fresh nonce issued at `now`."""
        return serialize_challenge(
            DigestChallenge(
                realm=self._realm,
                nonce=self._new_nonce(now),
                algorithm=self._algorithm.value,
                qop=self._qop,
                opaque=self._opaque,
                stale=stale,
            )
        )

    def verify(
        self,
        value: str,
        *,
        method: str,
        password_for: Callable[[str], str | PrecomputedHA1 | None],
        now: float,
        body: bytes = b"",
    ) -> VerifyResult:
        """Check an Authorization / Proxy-Authorization value; SipParseError if it is malformed Digest."""
        scheme, params = _parse_auth_value(value)
        if scheme.lower() != "digest":
            # RFC 4475 torture test regaut01: an unknown scheme earns a challenge, not a 400.
            return VerifyResult(VerifyOutcome.FAILED, None, f"unsupported scheme {scheme!r}")
        credentials = _credentials_from_params(params)

        def failed(reason: str) -> VerifyResult:
            return VerifyResult(VerifyOutcome.FAILED, credentials.username, reason, credentials)

        if credentials.realm != self._realm:
            return failed(f"realm {credentials.realm!r} is not ours")
        if DigestAlgorithm.from_token(credentials.algorithm) is not self._algorithm:
            return failed(f"algorithm {credentials.algorithm!r} was not offered")
        if credentials.userhash:
            return failed("userhash was not offered")
        if self._qop and credentials.qop not in self._qop:
            return failed(f"qop {credentials.qop!r} was not offered")
        if not self._qop and credentials.qop is not None:
            return failed("qop was not offered")
        if self._opaque is not None and credentials.opaque != self._opaque:
            return failed("opaque does not match")
        issued_at = self._nonce_issued_at(credentials.nonce)
        if issued_at is None:
            return failed("nonce was not issued by this server")
        secret = password_for(credentials.username)
        if secret is None:
            return failed("unknown user")
        if isinstance(secret, PrecomputedHA1):
            ha1 = secret.hex_digest.lower()
        else:
            ha1 = _hash_hex(self._algorithm, f"{credentials.username}:{self._realm}:{secret}")
        expected = _request_digest(
            self._algorithm,
            ha1=ha1,
            nonce=credentials.nonce,
            cnonce=credentials.cnonce,
            nc=credentials.nc,
            qop=credentials.qop,
            method=method,
            uri=credentials.uri,
            body=body,
        )
        if not hmac.compare_digest(expected.encode(), credentials.response.lower().encode()):
            return failed("wrong response")
        # RFC 7616 §3.3: stale only when the digest is valid for a nonce that is no longer.
        if now - issued_at > self._nonce_ttl or issued_at > now:
            return VerifyResult(VerifyOutcome.STALE, credentials.username, "nonce expired", credentials)
        if credentials.nc is not None:
            rejection = self._record_nonce_count(credentials.nonce, issued_at, credentials.nc)
            if rejection is not None:
                outcome, reason = rejection
                return VerifyResult(outcome, credentials.username, reason, credentials)
        return VerifyResult(VerifyOutcome.OK, credentials.username, None, credentials)

    def _mac(self, issued: bytes, salt: bytes) -> bytes:
        message = b"\x00".join((issued, salt, self._realm.encode(), self._algorithm.value.encode()))
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_NONCE_MAC_BYTES]

    def _new_nonce(self, now: float) -> str:
        # RFC 7616 §3.3 suggests time-stamp H(time-stamp ":" ETag ":" secret); the random salt keeps two
        # nonces issued at the same instant apart, so their nonce counts are tracked separately.
        issued = _NONCE_ISSUED.pack(now)
        salt = secrets.token_bytes(_NONCE_SALT_BYTES)
        raw = issued + salt + self._mac(issued, salt)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def _nonce_issued_at(self, nonce: str) -> float | None:
        try:
            raw = base64.b64decode(nonce + "=" * (-len(nonce) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_ISSUED.size + _NONCE_SALT_BYTES + _NONCE_MAC_BYTES:
            return None
        # Only the canonical spelling is ours: base64 has several for the same bytes.
        if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != nonce:
            return None
        issued = raw[: _NONCE_ISSUED.size]
        salt = raw[_NONCE_ISSUED.size : _NONCE_ISSUED.size + _NONCE_SALT_BYTES]
        if not hmac.compare_digest(raw[-_NONCE_MAC_BYTES:], self._mac(issued, salt)):
            return None
        issued_at: float = _NONCE_ISSUED.unpack(issued)[0]
        return issued_at

    def _record_nonce_count(self, nonce: str, issued_at: float, nc: int) -> tuple[VerifyOutcome, str] | None:
        """Accept each `nc` once per nonce (RFC 7616 §3.4: replay protection); None when it is new."""
        if nc == 0:
            return VerifyOutcome.FAILED, "nonce count 0 is invalid"
        use = self._nonce_uses.get(nonce)
        if use is None:
            if issued_at <= self._forgotten_before:
                # Its history was evicted, so a replay cannot be ruled out: ask for a new nonce.
                return VerifyOutcome.STALE, "nonce history forgotten"
            self._nonce_uses[nonce] = _NonceUse(issued_at=issued_at, highest_nc=nc)
            while len(self._nonce_uses) > self._max_nonces:
                _, evicted = self._nonce_uses.popitem(last=False)
                self._forgotten_before = max(self._forgotten_before, evicted.issued_at)
            return None
        self._nonce_uses.move_to_end(nonce)
        if nc > use.highest_nc:
            shift = nc - use.highest_nc
            use.seen = ((use.seen << shift) | 1) & _NC_WINDOW_MASK if shift < _NC_WINDOW else 1
            use.highest_nc = nc
            return None
        offset = use.highest_nc - nc
        if offset >= _NC_WINDOW or use.seen & (1 << offset):
            return VerifyOutcome.FAILED, "replayed nonce count"
        use.seen |= 1 << offset
        return None
