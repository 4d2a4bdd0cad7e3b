"""Test doubles and fixtures for applications built on voicelive-sip (also used by our own tests).

Names are imported on first use (PEP 562): `python -m voicelive_sip.testing.fake_voicelive` then runs the
module once, as `__main__`, instead of finding it already imported (runpy's RuntimeWarning).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicelive_sip.testing.fake_voicelive import (
        FakeConnection,
        FakeFaults,
        FakeReply,
        FakeTokenCredential,
        FakeToolCall,
        FakeVoiceLive,
    )
    from voicelive_sip.testing.phone import PhoneCall, Sentence, SipPhone
    from voicelive_sip.testing.rtp import Arrival, ImpairmentRelay, RtpLoopback, RtpRecorder

_EXPORTS = {
    "Arrival": "voicelive_sip.testing.rtp",
    "FakeConnection": "voicelive_sip.testing.fake_voicelive",
    "FakeFaults": "voicelive_sip.testing.fake_voicelive",
    "FakeReply": "voicelive_sip.testing.fake_voicelive",
    "FakeTokenCredential": "voicelive_sip.testing.fake_voicelive",
    "FakeToolCall": "voicelive_sip.testing.fake_voicelive",
    "FakeVoiceLive": "voicelive_sip.testing.fake_voicelive",
    "ImpairmentRelay": "voicelive_sip.testing.rtp",
    "PhoneCall": "voicelive_sip.testing.phone",
    "RtpLoopback": "voicelive_sip.testing.rtp",
    "RtpRecorder": "voicelive_sip.testing.rtp",
    "Sentence": "voicelive_sip.testing.phone",
    "SipPhone": "voicelive_sip.testing.phone",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__: list[str] = [
    "Arrival",
    "FakeConnection",
    "FakeFaults",
    "FakeReply",
    "FakeTokenCredential",
    "FakeToolCall",
    "FakeVoiceLive",
    "ImpairmentRelay",
    "PhoneCall",
    "RtpLoopback",
    "RtpRecorder",
    "Sentence",
    "SipPhone",
]
