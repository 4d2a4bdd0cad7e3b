"""Events an `RtpSession` reports to the call layer (small frozen dataclasses, h11 style)."""

from __future__ import annotations

from dataclasses import dataclass

from voicelive_sip.rtp.dtmf import DtmfEvent

__all__ = ["ByeReceived", "DtmfReceived", "MediaEvent", "MediaTimeout", "SsrcChanged"]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The caller pressed a key (RFC 4733)."""

    event: DtmfEvent


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """No RTP or RTCP from the peer for `idle` seconds while we expected media: the call is probably dead."""

    idle: float


@dataclass(frozen=True, slots=True)
class SsrcChanged:
    """The peer's stream restarted with a new SSRC (RFC 3550 §8.2); `old` is None for the first source."""

    old: int | None
    new: int


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The peer sent RTCP BYE for its source (RFC 3550 §6.6)."""

    ssrc: int
    reason: str


MediaEvent = DtmfReceived | MediaTimeout | SsrcChanged | ByeReceived
