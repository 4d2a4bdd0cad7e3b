"""A call's states and the moves between them (h11 style: a table, not scattered `if`s), and call events.

Sans-I/O data shared by the asyncio `Call` objects and anything that watches them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import LocalProtocolError
from ..sdes import SdesKey, SrtpKeys, SrtpPolicy
from ..sdp import LocalSdpSession, NegotiatedMedia


class CallState(enum.Enum):
    OFFERED = "offered"  # incoming INVITE not answered yet
    CALLING = "calling"  # outgoing INVITE sent
    EARLY = "early"  # outgoing: a provisional with a To tag; incoming: our 2xx sent, its ACK awaited
    ESTABLISHED = "established"
    ENDED = "ended"


# Every move a call may make; anything else is a bug in the layer driving it (LocalProtocolError).
TRANSITIONS = MappingProxyType(
    {
        CallState.OFFERED: frozenset({CallState.EARLY, CallState.ENDED}),
        CallState.CALLING: frozenset({CallState.EARLY, CallState.ESTABLISHED, CallState.ENDED}),
        CallState.EARLY: frozenset({CallState.EARLY, CallState.ESTABLISHED, CallState.ENDED}),
        CallState.ESTABLISHED: frozenset({CallState.ENDED}),
        CallState.ENDED: frozenset[CallState](),
    }
)


def next_state(current: CallState, wanted: CallState) -> CallState:
    """`wanted` if the table allows the move from `current`; LocalProtocolError otherwise."""
    if wanted not in TRANSITIONS[current]:
        raise LocalProtocolError(f"a call cannot go from {current.value} to {wanted.value}")
    return wanted


@dataclass(frozen=True, slots=True)
class Ringing:
    """A provisional response to our INVITE (180, 183 with early media...)."""

    status_code: int
    reason: str
    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True)
class Answered:
    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """A re-INVITE or UPDATE changed the session (hold: `media.on_hold`); the media session is the same."""

    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class InfoDtmf:
    """A digit received as SIP INFO (application/dtmf-relay or application/dtmf)."""

    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ReferProgress:
    """NOTIFY progress of our REFER (RFC 3515): the status line of the `message/sipfrag` body."""

    status_code: int
    reason: str
    final: bool


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The peer sent us a REFER (RFC 3515), already accepted with 202; report with `notify_transfer()`."""

    target: str
    referred_by: str | None


@dataclass(frozen=True, slots=True)
class SessionRefreshed:
    """An RFC 4028 session refresh happened (by either side)."""

    interval: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    """Call over; `reason`: bye, cancelled, rejected, failed, ack-timeout, session-expired, shutdown."""

    reason: str
    by: str  # "local" or "remote"
    status_code: int | None = None


CallEvent = (
    Ringing
    | Answered
    | MediaUpdated
    | InfoDtmf
    | ReferProgress
    | TransferRequested
    | SessionRefreshed
    | CallEnded
)


@dataclass(slots=True)
class LocalMedia:
    """What we put in our SDP: where our RTP is, codecs, SRTP, and the o= session kept for the whole call."""

    address: str
    port: int
    codecs: Sequence[str]
    ptime: int
    session: LocalSdpSession
    direction: str = "sendrecv"
    srtp: SrtpPolicy = "off"  # MEDIA_SRTP
    # Our keys for an offer while no SRTP is in use, one per suite; made once per call.
    offer_keys: tuple[SdesKey, ...] = field(default=(), repr=False)
    srtp_keys: SrtpKeys | None = field(
        default=None, repr=False
    )  # the keys in use, from the last offer/answer
    proto: str = "RTP/AVP"  # the transport in use

    def settle(self, media: NegotiatedMedia) -> None:
        """An offer/answer completed: later offers continue its SRTP session (same key, same transport)."""
        self.srtp_keys = media.srtp
        self.proto = media.proto

    @property
    def offer_policy(self) -> SrtpPolicy:
        """How our next offer is written: while SRTP is in use, in the transport in use (a peer that took
        best-effort RTP/AVP with a=crypto may refuse RTP/SAVP); else as MEDIA_SRTP says."""
        if self.srtp_keys is not None:
            return "required" if "SAVP" in self.proto else "optional"
        return self.srtp

    @property
    def offer_srtp_keys(self) -> tuple[SdesKey, ...]:
        """Our keys for the next offer: the one in use (RFC 4568 §7.1.4: the session continues), else one per
        suite."""
        if self.srtp_keys is not None:
            return (self.srtp_keys.local,)
        return self.offer_keys


__all__ = [
    "TRANSITIONS",
    "Answered",
    "CallEnded",
    "CallEvent",
    "CallState",
    "InfoDtmf",
    "LocalMedia",
    "MediaUpdated",
    "ReferProgress",
    "Ringing",
    "SessionRefreshed",
    "TransferRequested",
    "next_state",
]
