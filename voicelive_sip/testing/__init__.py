"""Test doubles and fixtures for applications built on voicelive-sip (also used by our own tests)."""

from voicelive_sip.testing.fake_voicelive import (
    FakeConnection,
    FakeFaults,
    FakeReply,
    FakeToolCall,
    FakeVoiceLive,
)
from voicelive_sip.testing.phone import PhoneCall, Sentence, SipPhone
from voicelive_sip.testing.rtp import Arrival, ImpairmentRelay, RtpLoopback, RtpRecorder

__all__: list[str] = [
    "Arrival",
    "FakeConnection",
    "FakeFaults",
    "FakeReply",
    "FakeToolCall",
    "FakeVoiceLive",
    "ImpairmentRelay",
    "PhoneCall",
    "RtpLoopback",
    "RtpRecorder",
    "Sentence",
    "SipPhone",
]
