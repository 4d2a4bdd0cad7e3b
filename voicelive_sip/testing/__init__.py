"""Test doubles and fixtures for applications built on voicelive-sip (also used by our own tests)."""

from voicelive_sip.testing.fake_voicelive import (
    FakeConnection,
    FakeFaults,
    FakeReply,
    FakeToolCall,
    FakeVoiceLive,
)

__all__: list[str] = ["FakeConnection", "FakeFaults", "FakeReply", "FakeToolCall", "FakeVoiceLive"]
