"""SDES keys for SRTP (RFC 4568): the suites we support, master keys, strict a=crypto key parameters.

Standard library only, so the SDP layer can judge an offer without loading libsrtp (`rtp.srtp` turns the keys
into SRTP contexts). A key never appears in a repr, a log event or an exception message.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from .errors import RemoteProtocolError

SrtpPolicy = Literal["off", "optional", "required"]
SRTP_POLICIES: Final = ("off", "optional", "required")
_POLICIES: Final[tuple[SrtpPolicy, ...]] = SRTP_POLICIES


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """An SDES crypto suite: its name in a=crypto and the lengths of its master key and salt (bytes)."""

    name: str
    key_length: int
    salt_length: int

    @property
    def key_salt_length(self) -> int:
        """Bytes of the inline key-salt (master key || master salt)."""
        return self.key_length + self.salt_length


# In our order of preference (offers list them in this order). RFC 4568 §6.2: the AES_CM suites have a 128-bit
# key and a 112-bit salt; RFC 7714 §12: AEAD_AES_128_GCM has a 128-bit key and a 96-bit salt.
SUITES: Final = MappingProxyType(
    {
        suite.name: suite
        for suite in (
            SrtpSuite("AES_CM_128_HMAC_SHA1_80", 16, 14),
            SrtpSuite("AES_CM_128_HMAC_SHA1_32", 16, 14),
            SrtpSuite("AEAD_AES_128_GCM", 16, 12),
        )
    }
)
# RFC 3711 §9.2: at most 2^48 SRTP packets under one master key.
MAX_LIFETIME: Final = 1 << 48
# RFC 4568 §6.3.7: a replay window hint below 64 is not allowed.
MIN_WINDOW_HINT: Final = 64

_INLINE_KEY = re.compile(r"(inline:)[^|;\s]*")


def redact(text: str) -> str:
    """`text` (an a=crypto value or a line holding one) with every inline key replaced by `<key>`."""
    return _INLINE_KEY.sub(r"\1<key>", text)


def srtp_policy(value: str) -> SrtpPolicy:
    """`value` checked as one of off, optional, required (MEDIA_SRTP); ValueError otherwise."""
    for policy in _POLICIES:
        if value == policy:
            return policy
    raise ValueError(f"SRTP policy must be one of {SRTP_POLICIES}, got {value!r}")


class CryptoNotUsable(RemoteProtocolError):
    """An a=crypto line we cannot honour; the message names its tag, suite and reason, never its key."""


@dataclass(frozen=True, slots=True)
class SdesKey:
    """A master key and salt for one suite; `key_salt` is left out of the repr."""

    suite: SrtpSuite
    key_salt: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key_salt) != self.suite.key_salt_length:
            raise ValueError(f"{self.suite.name} needs {self.suite.key_salt_length} bytes of key and salt")

    @classmethod
    def generate(cls, suite: SrtpSuite | str) -> SdesKey:
        """A fresh random key for `suite` (RFC 4568 §8.2: from a cryptographically strong source)."""
        chosen = SUITES[suite] if isinstance(suite, str) else suite
        return cls(chosen, secrets.token_bytes(chosen.key_salt_length))

    @property
    def inline(self) -> str:
        """The key-params of an a=crypto line: `inline:<base64 key||salt>` (no lifetime, no MKI)."""
        return "inline:" + base64.b64encode(self.key_salt).decode("ascii")


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """What an offer/answer settled: ours protects what we send, the peer's checks what we receive."""

    local: SdesKey
    remote: SdesKey
    tag: int

    @property
    def suite(self) -> SrtpSuite:
        return self.local.suite


def parse_key(tag: int, suite_name: str, key_params: str, session_params: Sequence[str] = ()) -> SdesKey:
    """The key of an a=crypto line (RFC 4568 §9.1), held to what we can honour; CryptoNotUsable says why not.

    Refused: an unknown suite, session parameters other than the WSH hint (KDR, UNENCRYPTED_*, FEC_*, unknown
    ones), several master keys, MKI, a lifetime that is not 1..2^48, a key that is not base64 or not the
    suite's length.
    """
    where = f"a=crypto:{tag} {suite_name[:40]}"
    suite = SUITES.get(suite_name)
    if suite is None:
        raise CryptoNotUsable(f"{where}: unknown crypto suite")
    for param in session_params:
        name, _, value = param.partition("=")
        if name == "WSH" and value.isascii() and value.isdigit() and len(value) <= 9:
            if int(value) < MIN_WINDOW_HINT:
                raise CryptoNotUsable(f"{where}: WSH below {MIN_WINDOW_HINT}")
            continue  # a hint about the replay window; libsrtp's 128 packets is at least as large
        # FEC_KEY carries a key: only the parameter's name is ever shown.
        raise CryptoNotUsable(f"{where}: session parameter {name[:32]!r} is not supported")
    if ";" in key_params:
        raise CryptoNotUsable(f"{where}: several master keys (they need MKI) are not supported")
    method, colon, info = key_params.partition(":")
    if method != "inline" or not colon:
        raise CryptoNotUsable(f"{where}: key method {method[:16]!r} is not supported (only inline)")
    encoded, *rest = info.split("|")
    if len(rest) > 2:
        raise CryptoNotUsable(f"{where}: malformed key parameters")
    for part in rest:
        if ":" in part:
            # RFC 4568 §6.1: with an MKI every packet carries it; libsrtp through pylibsrtp cannot.
            raise CryptoNotUsable(f"{where}: MKI is not supported")
        _check_lifetime(where, part)
    if len(rest) == 2:
        raise CryptoNotUsable(f"{where}: malformed key parameters")
    key_salt = _decode_key(where, encoded)
    if len(key_salt) != suite.key_salt_length:
        raise CryptoNotUsable(f"{where}: key is {len(key_salt)} bytes, needs {suite.key_salt_length}")
    return SdesKey(suite, key_salt)


def _check_lifetime(where: str, text: str) -> None:
    # RFC 4568 §6.1: lifetime = ["2^"] 1*(DIGIT), a count of packets. It limits how long the offerer may send
    # under its key (re-keying before then is the sender's job); we only refuse values that cannot be right.
    power = text.startswith("2^")
    digits = text[2:] if power else text
    if digits.isascii() and digits.isdigit() and len(digits) <= 15:
        number = int(digits)
        value = (1 << number if number <= 48 else 0) if power else number
        if 1 <= value <= MAX_LIFETIME:
            return
    raise CryptoNotUsable(f"{where}: lifetime {text[:20]!r} is not 1 to 2^48 packets")


def _decode_key(where: str, encoded: str) -> bytes:
    if not encoded or len(encoded) > 128:
        raise CryptoNotUsable(f"{where}: key is missing or too long")
    padded = encoded + "=" * (-len(encoded) % 4)  # some stacks leave out the padding of a 28-byte GCM key
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoNotUsable(f"{where}: key is not base64") from None


__all__ = [
    "MAX_LIFETIME",
    "SRTP_POLICIES",
    "SUITES",
    "CryptoNotUsable",
    "SdesKey",
    "SrtpKeys",
    "SrtpPolicy",
    "SrtpSuite",
    "parse_key",
    "redact",
    "srtp_policy",
]
