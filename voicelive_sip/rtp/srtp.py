"""SRTP and SRTCP for one call (RFC 3711, RFC 7714) with keys from SDES (`voicelive_sip.sdes`), on libsrtp.

`SrtpContext` holds an outbound libsrtp session under our key and an inbound one under the peer's, each for
RTP and RTCP. It reads no clock and no socket: packets and `now` in, packets (or `SrtpDropped`) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

import pylibsrtp

from voicelive_sip.errors import LocalProtocolError, RemoteProtocolError
from voicelive_sip.sdes import SUITES, SdesKey, SrtpKeys

DropKind = Literal["auth", "replay", "malformed"]

# The libsrtp profile of each SDES suite we offer and accept.
PROFILES: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    }
)
# After a re-key, packets the peer sent under its old key may still be on the way (the answer and the peer's
# switch cross them): for this long they are still accepted under the old inbound context, which keeps its
# replay window. The old key was the peer's own, so accepting it a little longer gives nobody anything.
REKEY_GRACE: Final = 2.0

# libsrtp's error strings (pylibsrtp.Error carries only the text) and what they mean for a received packet.
_DROP_KINDS: Final[Mapping[str, DropKind]] = MappingProxyType(
    {
        "authentication failure": "auth",
        "replay check failed (bad index)": "replay",
        "replay check failed (index too old)": "replay",
        "packet index is too old to consider": "replay",
    }
)

assert set(PROFILES) == set(SUITES), "every SDES suite needs a libsrtp profile"


class SrtpDropped(RemoteProtocolError):
    """A received packet failed SRTP: `kind` is auth (bad tag, wrong key, plain RTP), replay or malformed."""

    def __init__(self, kind: DropKind) -> None:
        super().__init__(f"SRTP packet dropped: {kind}")
        self.kind: DropKind = kind


class SrtpSendError(LocalProtocolError):
    """libsrtp refused to protect a packet we send (too long, or the key is used up)."""


def _session(key: SdesKey, inbound: bool) -> pylibsrtp.Session:
    ssrc_type = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    policy = pylibsrtp.Policy(key=key.key_salt, ssrc_type=ssrc_type, srtp_profile=PROFILES[key.suite.name])
    return pylibsrtp.Session(policy)


def _dropped(error: Exception) -> SrtpDropped:
    return SrtpDropped(_DROP_KINDS.get(str(error), "malformed"))


class SrtpContext:
    """The SRTP state of one call: protect what we send under our key, unprotect what arrives under theirs."""

    __slots__ = ("_inbound", "_outbound", "_previous", "_previous_until", "keys")

    def __init__(self, keys: SrtpKeys) -> None:
        self.keys = keys
        self._outbound = _session(keys.local, inbound=False)
        self._inbound = _session(keys.remote, inbound=True)
        self._previous: pylibsrtp.Session | None = None
        self._previous_until = 0.0

    def __repr__(self) -> str:
        return f"<SrtpContext {self.keys.suite.name}>"

    @property
    def suite(self) -> str:
        return self.keys.suite.name

    def rekey(self, keys: SrtpKeys, now: float) -> tuple[bool, bool]:
        """Install `keys`; a direction whose key did not change keeps its context (replay window, rollover
        counter). Returns (outbound changed, inbound changed)."""
        outbound = keys.local != self.keys.local
        inbound = keys.remote != self.keys.remote
        if outbound:
            self._outbound = _session(keys.local, inbound=False)
        if inbound:
            # The old context stays for packets sent before the peer switched (see REKEY_GRACE); it keeps its
            # replay window, so nothing it accepted before can be accepted again.
            self._previous, self._previous_until = self._inbound, now + REKEY_GRACE
            self._inbound = _session(keys.remote, inbound=True)
        self.keys = keys
        return outbound, inbound

    def protect(self, packet: bytes) -> bytes:
        """The SRTP packet for RTP `packet`; SrtpSendError if libsrtp refuses it."""
        try:
            return self._outbound.protect(packet)
        except (pylibsrtp.Error, ValueError) as error:
            raise SrtpSendError(f"SRTP protect failed: {error}") from None

    def protect_rtcp(self, packet: bytes) -> bytes:
        """The SRTCP packet for RTCP `packet`; SrtpSendError if libsrtp refuses it."""
        try:
            return self._outbound.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError) as error:
            raise SrtpSendError(f"SRTCP protect failed: {error}") from None

    def unprotect(self, packet: bytes, now: float) -> bytes:
        """The RTP packet inside SRTP `packet`, authenticated and not a replay; SrtpDropped otherwise."""
        return self._unprotect(packet, now, rtcp=False)

    def unprotect_rtcp(self, packet: bytes, now: float) -> bytes:
        """The RTCP packet inside SRTCP `packet`, authenticated and not a replay; SrtpDropped otherwise."""
        return self._unprotect(packet, now, rtcp=True)

    def _unprotect(self, packet: bytes, now: float, *, rtcp: bool) -> bytes:
        try:
            return self._inbound.unprotect_rtcp(packet) if rtcp else self._inbound.unprotect(packet)
        except (pylibsrtp.Error, ValueError) as error:
            dropped = _dropped(error)
        previous = self._fallback(dropped, now)
        if previous is None:
            raise dropped
        try:
            return previous.unprotect_rtcp(packet) if rtcp else previous.unprotect(packet)
        except (pylibsrtp.Error, ValueError) as error:
            raise _dropped(error) from None  # the old context's verdict: it knows the packet's key

    def _fallback(self, dropped: SrtpDropped, now: float) -> pylibsrtp.Session | None:
        """The pre-re-key inbound context, for a packet the new one did not authenticate."""
        if self._previous is None:
            return None
        if now >= self._previous_until:
            self._previous = None
            return None
        return self._previous if dropped.kind == "auth" else None


__all__ = ["PROFILES", "REKEY_GRACE", "DropKind", "SrtpContext", "SrtpDropped", "SrtpSendError"]
