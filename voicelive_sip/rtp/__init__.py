"""The RTP media engine: packets, jitter buffer, RFC 4733 DTMF, the 20 ms media clock, SRTP, call sessions."""

from voicelive_sip.media import ByeReceived, DtmfReceived, MediaEvent, MediaTimeout, SsrcChanged
from voicelive_sip.rtp.clock import ClockStatistics, MediaClock, TickSchedule
from voicelive_sip.rtp.dtmf import DtmfEvent, TelephoneEventReceiver, TelephoneEventSender
from voicelive_sip.rtp.jitter import Frame, JitterBuffer, JitterStatistics
from voicelive_sip.rtp.outbound import OutboundBuffer
from voicelive_sip.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    is_rtcp,
    parse_rtcp,
    serialize_rtcp,
)
from voicelive_sip.rtp.session import (
    Direction,
    PortPool,
    PortPoolExhausted,
    RtpOptions,
    RtpSession,
    RtpSessionStats,
)
from voicelive_sip.rtp.srtp import SrtpContext, SrtpDropped, SrtpSendError
from voicelive_sip.rtp.stats import ReceptionSnapshot, ReceptionStatistics

__all__ = [
    "Bye",
    "ByeReceived",
    "ClockStatistics",
    "Direction",
    "DtmfEvent",
    "DtmfReceived",
    "Frame",
    "JitterBuffer",
    "JitterStatistics",
    "MediaClock",
    "MediaEvent",
    "MediaTimeout",
    "OutboundBuffer",
    "PortPool",
    "PortPoolExhausted",
    "ReceiverReport",
    "ReceptionSnapshot",
    "ReceptionStatistics",
    "ReportBlock",
    "RtcpPacket",
    "RtcpParseError",
    "RtpOptions",
    "RtpPacket",
    "RtpParseError",
    "RtpSession",
    "RtpSessionStats",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "SrtpContext",
    "SrtpDropped",
    "SrtpSendError",
    "SsrcChanged",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "TickSchedule",
    "UnknownRtcp",
    "is_rtcp",
    "parse_rtcp",
    "serialize_rtcp",
]
