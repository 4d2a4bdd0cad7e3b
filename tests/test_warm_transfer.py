"""Warm transfer's pieces alone: the Replaces header (RFC 3891), the tool's switch and allow-list, the hold
audio and the two-leg bridge's conversion."""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import structlog

from voicelive_sip.bridge import BuiltinTools, CallSession, builtin_tools
from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec
from voicelive_sip.config import GatewaySettings, Settings, SipSettings, StartupError, VoiceLiveSettings
from voicelive_sip.errors import SipParseError
from voicelive_sip.gateway import Gateway
from voicelive_sip.leg_bridge import LegBridge
from voicelive_sip.media import MediaLeg
from voicelive_sip.sip.message import parse_message
from voicelive_sip.sip.replaces import ReplacesId, refer_to_with_replaces, replaces_of, supports_replaces
from voicelive_sip.sip.uri import SipUri, parse_uri
from voicelive_sip.warm_transfer import MAX_SUMMARY_CHARS, WarmTransfer, hold_audio, hold_audio_problems


def test_the_refer_to_of_an_attended_transfer_escapes_replaces_as_rfc_3891_shows() -> None:
    target = parse_uri("sip:bob@bob.example")
    assert isinstance(target, SipUri)
    uri = refer_to_with_replaces(target, ReplacesId("12345@192.168.118.3", "12345", "5FFE-3994"))
    # RFC 3891 §6.1's example, character for character.
    assert (
        str(uri)
        == "sip:bob@bob.example?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994"
    )
    parsed = parse_uri(str(uri))
    assert isinstance(parsed, SipUri)
    assert replaces_of(parsed) == ReplacesId("12345@192.168.118.3", "12345", "5FFE-3994")


def test_a_contacts_own_uri_headers_do_not_reach_the_transferee() -> None:
    target = parse_uri("sip:desk@10.0.0.5:5062;transport=tcp?Subject=hi")
    assert isinstance(target, SipUri)
    uri = refer_to_with_replaces(target, ReplacesId("a b@host", "x", "y"))
    assert uri.headers == (("Replaces", "a%20b%40host%3Bto-tag%3Dx%3Bfrom-tag%3Dy"),)
    assert uri.params == target.params  # transport=tcp is kept: it says how to reach the person


@pytest.mark.parametrize(
    "value", ["", "abc", "abc;to-tag=;from-tag=1", "abc;to-tag=a b;from-tag=1", ";to-tag=1;from-tag=2"]
)
def test_a_malformed_replaces_value_is_refused(value: str) -> None:
    with pytest.raises(SipParseError):
        ReplacesId.parse(value)


@pytest.mark.parametrize(
    ("headers", "supported"),
    [
        ("Supported: timer, replaces\r\n", True),
        ("Supported: timer\r\nSupported: REPLACES\r\n", True),
        ("Require: replaces\r\n", True),
        ("Supported: timer\r\n", False),
        ("", False),
    ],
)
def test_support_for_replaces_is_read_from_supported_or_require(headers: str, supported: bool) -> None:
    text = (
        "INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        f"Max-Forwards: 70\r\n{headers}Content-Length: 0\r\n\r\n"
    )
    assert supports_replaces(parse_message(text.encode())) is supported


def test_the_warm_transfer_tool_is_off_by_default_and_offered_when_enabled() -> None:
    assert "warm_transfer" not in {d["name"] for d in builtin_tools(GatewaySettings())}
    gateway = GatewaySettings(warm_transfer_tool=True, transfer_allowed=["sip:desk@example.com"])
    (definition,) = [d for d in builtin_tools(gateway) if d["name"] == "warm_transfer"]
    assert "Allowed targets: sip:desk@example.com." in definition["description"]
    assert set(definition["parameters"]["required"]) == {"target", "summary"}
    # Ringing, briefing and a REFER's outcome may all take their time: longer than an ordinary tool.
    runner = BuiltinTools(gateway).runner
    assert runner._tools["warm_transfer"].timeout == 30.0 + 30.0 + 45.0


def bound(gateway: GatewaySettings) -> tuple[BuiltinTools, Any]:
    tools = BuiltinTools(gateway)
    session = SimpleNamespace(_log=structlog.get_logger(), transfer=None, summary=SimpleNamespace(caller=""))
    tools.bind(cast(CallSession, session))
    tools.transfer_context = cast(Any, object())  # never reached: the allow-list refuses first
    return tools, session


@pytest.mark.parametrize(
    ("allowed", "target", "reason"),
    [
        ([], "sip:desk@example.com", "transfers are not configured on this line"),
        (["sip:desk@example.com"], "sip:desk@example.com.evil.example", None),
        (["sip:desk@example.com"], "sip:+19005550100@example.com", None),  # a premium number there
        (["+4930XXXX"], "+49900123456", None),
    ],
)
async def test_a_warm_transfer_outside_the_allow_list_is_refused_before_anyone_is_dialled(
    allowed: list[str], target: str, reason: str | None
) -> None:
    tools, _ = bound(GatewaySettings(warm_transfer_tool=True, transfer_allowed=allowed))
    tools.server = "pbx.example.com"
    output = json.loads(
        await tools.runner.run("warm_transfer", json.dumps({"target": target, "summary": "x"}))
    )
    assert output == {"ok": False, "reason": reason or f"transfer to {target} is not allowed"}


async def test_the_summary_for_the_person_is_capped_and_stripped_of_control_characters() -> None:
    session = SimpleNamespace(media=SimpleNamespace(on_played=None), call=SimpleNamespace(call_id="c1"))
    target = parse_uri("sip:desk@example.com")
    transfer = WarmTransfer(
        cast(CallSession, session), cast(Any, None), target, "a\x1b[2J\n" * 5000, allows=lambda _: False
    )
    assert len(transfer.summary) == MAX_SUMMARY_CHARS
    assert "\x1b" not in transfer.summary and "\n" not in transfer.summary


def test_the_default_hold_audio_is_a_soft_425_hz_beep_every_two_seconds() -> None:
    pcm = hold_audio(None)
    assert len(pcm) == 16000
    loud = np.flatnonzero(np.abs(pcm) > 100)
    assert 0.25 * 8000 < len(loud) < 0.3 * 8000  # 300 ms of beep (fades) in 2 s
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert abs(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum))] - 425) < 2
    assert 20 * np.log10(np.sqrt(np.mean(pcm[loud].astype(np.float64) ** 2)) / 32768) < -18  # soft


def test_hold_audio_from_a_wav_file_is_resampled_to_8_khz(tmp_path: Path) -> None:
    path = tmp_path / "music.wav"
    t = np.arange(16000) / 16000
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes((8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes())
    pcm = hold_audio(str(path))
    assert abs(len(pcm) - 8000) <= 8
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert abs(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum))] - 300) < 2
    # A file that is not a usable WAV falls back to the beep (logged), never fails the transfer.
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    assert np.array_equal(hold_audio(str(tmp_path / "bad.wav")), hold_audio(None))
    # ... and the gateway refuses to start with it, naming the setting.
    assert hold_audio_problems(str(path)) == [] and hold_audio_problems(None) == []
    (problem,) = hold_audio_problems(str(tmp_path / "bad.wav"))
    assert problem.startswith(f"GATEWAY_HOLD_AUDIO: cannot use {tmp_path / 'bad.wav'} (")
    (missing,) = hold_audio_problems(str(tmp_path / "missing.wav"))
    assert "No such file or directory" in missing


class StubLeg:
    """Just enough of a MediaLeg for the bridge: a codec, a receive handler, a playout queue."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.queue = bytearray()
        self.handler: Callable[[bytes], None] | None = None
        self.cleared = 0

    @property
    def queued_ms(self) -> int:
        return len(self.queue) // 8

    def receive(self, handler: Callable[[bytes], None]) -> None:
        self.handler = handler

    def enqueue(self, payload: bytes) -> int:
        self.queue += payload
        return len(payload)

    def clear(self) -> int:
        dropped, self.queue = len(self.queue), bytearray()
        self.cleared += 1
        return dropped


def test_the_leg_bridge_passes_the_same_codec_through_and_converts_between_laws() -> None:
    caller, person, other = StubLeg(Codec.PCMU), StubLeg(Codec.PCMU), StubLeg(Codec.PCMA)
    LegBridge(cast(MediaLeg, caller), cast(MediaLeg, person))
    frame = bytes(range(160))
    assert caller.handler is not None and person.handler is not None
    caller.handler(frame)
    person.handler(frame[::-1])
    assert bytes(person.queue) == frame and bytes(caller.queue) == frame[::-1]  # byte for byte
    a, b = StubLeg(Codec.PCMU), other
    LegBridge(cast(MediaLeg, a), cast(MediaLeg, b))
    speech = (3000 * np.sin(np.arange(160) / 5)).astype(np.int16)
    assert a.handler is not None
    a.handler(g711.ulaw_encode(speech))
    heard = g711.alaw_decode(bytes(b.queue))
    assert np.max(np.abs(heard.astype(np.int32) - speech)) < 200  # the same sound in the other law


def test_the_leg_bridge_drops_audio_a_leg_cannot_play_in_time_and_stops_on_close() -> None:
    a, b = StubLeg(Codec.PCMU), StubLeg(Codec.PCMU)
    joined = LegBridge(cast(MediaLeg, a), cast(MediaLeg, b), max_queued_ms=200)
    assert a.handler is not None
    for _ in range(20):  # 400 ms arriving at once: the sink never plays more than 200 ms late
        a.handler(b"\x00" * 160)
    assert b.queued_ms <= 220 and b.cleared >= 1 and joined.dropped_ms > 0
    joined.close()
    before = len(b.queue)
    a.handler(b"\x00" * 160)
    assert len(b.queue) == before


async def test_a_gateway_whose_hold_audio_cannot_be_played_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(
        sip=SipSettings(port=0, local_address="127.0.0.1"),
        voicelive=VoiceLiveSettings(endpoint="https://r.cognitiveservices.azure.com", api_key="k"),
        gateway=GatewaySettings(warm_transfer_tool=True, hold_audio=str(tmp_path / "missing.wav")),
    )
    with pytest.raises(StartupError) as info:
        await Gateway(settings).start()
    (problem,) = info.value.problems
    assert problem.startswith("GATEWAY_HOLD_AUDIO: cannot use")
