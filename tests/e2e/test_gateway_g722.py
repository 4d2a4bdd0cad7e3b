"""G.722 end to end on loopback: a SipPhone offering G.722 and PCMU ⇄ Gateway ⇄ FakeVoiceLive at 16 kHz.

The call gets G.722, the caller hears the greeting, its speech reaches the model as PCM16 16 kHz, barge-in
truncates at what was heard, DTMF arrives, the recording is 16 kHz; an outbound call follows the codec the
callee answered with."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.e2e.test_gateway import finished, media_port, target, tone
from voicelive_sip.codecs.names import Codec
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing import FakeVoiceLive, PhoneCall, SipPhone


@asynccontextmanager
async def g722_bridge(
    fake_options: dict[str, Any] | None = None,
    gateway_options: dict[str, Any] | None = None,
    phone_codecs: Sequence[str] = ("G722", "PCMU"),
    **gateway_kwargs: Any,
) -> AsyncIterator[tuple[FakeVoiceLive, Gateway, SipPhone]]:
    """The gateway with its default MEDIA_CODECS (G722,PCMU,PCMA) and a phone offering `phone_codecs`."""
    async with FakeVoiceLive(**{"pace": 1.0, **(fake_options or {})}) as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1", t1=0.1),
            media=MediaSettings(address="127.0.0.1", port=media_port(), port_count=100),
            voicelive=fake.settings(proactive_greeting_enabled=True),
            gateway=GatewaySettings(**(gateway_options or {})),
        )
        assert settings.media.codecs[0] is Codec.G722
        async with (
            Gateway(settings, **gateway_kwargs) as gateway,
            SipPhone(media_port=media_port(), codecs=phone_codecs) as phone,
        ):
            yield fake, gateway, phone


def loud(payload: bytes) -> bool:
    """A G.722 call's frame at the phone is PCM16 16 kHz."""
    pcm = np.frombuffer(payload, dtype="<i2").astype(np.float64)
    return bool(np.sqrt(np.mean(pcm**2)) > 300)


def peak_hz(pcm: np.ndarray[Any, Any], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


async def greeted(call: PhoneCall) -> float:
    await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
    start = call.first_audio_time()
    assert start is not None
    return start


async def test_a_call_offering_g722_and_pcmu_gets_g722_end_to_end_and_records_16k(tmp_path: Path) -> None:
    uploaded: list[Path] = []
    options = {"recording_dir": str(tmp_path)}
    async with g722_bridge(gateway_options=options, on_recording=uploaded.append) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        assert call.rtp.codec is Codec.G722
        start = await greeted(call)
        await asyncio.sleep(0.5)
        assert call.energy_dbfs(start, start + 0.5) > -25  # the greeting tone
        heard = [f for f in call.received if f.time >= start and loud(f.payload)]
        assert {len(f.payload) for f in heard} == {640}  # 20 ms of 16 kHz PCM16 per frame
        sent_at = len(fake.appended_audio)
        await call.play(tone(1.0, 1000.0))
        await asyncio.sleep(0.3)
        await call.hangup()
        await finished(gateway)
    summary = gateway.summaries[0]
    assert summary.codec is Codec.G722 and summary.end_reason == "bye"
    config = fake.session_config
    assert (config["input_audio_format"], config["input_audio_sampling_rate"]) == ("pcm16", 16000)
    assert config["output_audio_format"] == "pcm16_16000hz"
    # The caller's tone reached the model at 16 kHz: a second of it is 32000 bytes, its peak still 1 kHz.
    caller = np.frombuffer(fake.appended_audio[sent_at:], dtype="<i2")
    assert len(caller) >= 16000
    loud_part = caller[np.abs(caller) > 3000]
    assert len(loud_part) > 8000
    first = int(np.flatnonzero(np.abs(caller) > 3000)[0])
    assert abs(peak_hz(caller[first + 1600 : first + 14400], 16000) - 1000.0) < 5
    (path,) = uploaded
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 16000, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    left, right = frames[:, 0].astype(np.float64), frames[:, 1].astype(np.float64)
    assert np.sqrt(np.mean(left**2)) > 100 and np.sqrt(np.mean(right**2)) > 100


async def test_barge_in_on_a_g722_call_stops_the_agent_and_truncates_at_what_was_heard() -> None:
    greeting = "This greeting goes on for about five seconds so that the caller can interrupt it."
    async with g722_bridge({"greeting": greeting}) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        started = await greeted(call)
        await asyncio.sleep(1.0)
        call.play_nowait(tone(0.8, 600.0))  # the caller talks over the agent
        await fake.wait_for(lambda f: bool(f.truncations), timeout=5)
        await asyncio.sleep(0.5)
        await call.hangup()
        await finished(gateway)
    assert gateway.summaries[0].codec is Codec.G722
    speech_started = fake.sent_at("input_audio_buffer.speech_started")[0]
    greeting_frames = [f for f in call.received if f.time >= started and loud(f.payload)]
    assert max(f.time for f in greeting_frames) - speech_started <= 0.100
    (truncation,) = fake.truncations
    # played_ms counts 32 bytes per ms on a G.722 leg: the truncation matches what the phone heard.
    assert abs(truncation["audio_end_ms"] - len(greeting_frames) * 20) <= 40
    assert gateway.summaries[0].barge_ins == 1


async def test_rfc_4733_dtmf_on_a_g722_call_reaches_the_application() -> None:
    digits: list[str] = []
    options = {"dtmf_interdigit_ms": 100}
    async with g722_bridge(gateway_options=options, on_dtmf=digits.append) as (_fake, gateway, phone):
        call = await phone.call(target(gateway))
        assert call.rtp.codec is Codec.G722 and call.rtp.dtmf_payload_type is not None
        await call.send_dtmf("47")
        for _ in range(100):
            if len(digits) == 2:
                break
            await asyncio.sleep(0.05)
        await call.hangup()
        await finished(gateway)
    assert digits == ["4", "7"]


async def test_an_outbound_call_answered_with_pcmu_keeps_g711_pass_through() -> None:
    options = {"outbound_allowed": ["sip:*@127.0.0.1"]}
    async with g722_bridge(gateway_options=options, phone_codecs=("PCMU",)) as (fake, gateway, phone):
        answering = asyncio.ensure_future(phone.answer_next(timeout=5))
        await gateway.call(phone.uri)  # offers G722, PCMU, PCMA; Voice Live opened for G.722
        call = await answering
        assert call.rtp.codec is Codec.PCMU
        await greeted(call)
        await call.hangup()
        await finished(gateway)
    assert gateway.summaries[0].codec is Codec.PCMU
    config = fake.session_config
    assert (config["input_audio_format"], config["output_audio_format"]) == ("g711_ulaw", "g711_ulaw")


async def test_an_outbound_call_to_a_g722_phone_is_g722() -> None:
    options = {"outbound_allowed": ["sip:*@127.0.0.1"]}
    async with g722_bridge(gateway_options=options) as (fake, gateway, phone):
        answering = asyncio.ensure_future(phone.answer_next(timeout=5))
        await gateway.call(phone.uri)
        call = await answering
        assert call.rtp.codec is Codec.G722
        await greeted(call)
        await call.hangup()
        await finished(gateway)
    assert gateway.summaries[0].codec is Codec.G722
    assert fake.session_config["output_audio_format"] == "pcm16_16000hz"


async def test_an_invite_without_sdp_gets_our_codecs_and_a_g711_answer_passes_through() -> None:
    from tests.sip.test_ua import is_status, raw_peer, raw_request
    from voicelive_sip.sdp import LocalSdpSession, SessionDescription, answer_offer
    from voicelive_sip.sip import Response
    from voicelive_sip.testing.rtp import RtpRecorder

    async with g722_bridge() as (fake, gateway, _phone), raw_peer() as peer, RtpRecorder() as rtp:
        peer.send(raw_request("INVITE", peer, gateway.ua), gateway.ua)
        ok = await asyncio.wait_for(peer.next(is_status(200)), 5)
        assert isinstance(ok, Response)
        offer = SessionDescription.parse(ok.body)
        assert offer.media[0].formats[:3] == ("9", "0", "8")  # MEDIA_CODECS in order
        answer, _ = answer_offer(  # a G.711-only PBX answers in the ACK
            offer, local_address="127.0.0.1", local_port=rtp.address[1], session=LocalSdpSession()
        )
        ack = raw_request(
            "ACK", peer, gateway.ua, branch="z9hG4bKack1", to_tag=ok.to.tag,
            headers="Content-Type: application/sdp\r\n", body=answer.serialize(),
        )  # fmt: skip
        peer.send(ack, gateway.ua)
        await rtp.wait_for(25)  # half a second of the agent's RTP
        peer.send(
            raw_request("BYE", peer, gateway.ua, branch="z9hG4bKbye1", to_tag=ok.to.tag, cseq=2), gateway.ua
        )
        await finished(gateway)
    assert gateway.summaries[0].codec is Codec.PCMU
    config = fake.session_config
    assert (config["input_audio_format"], config["output_audio_format"]) == ("g711_ulaw", "g711_ulaw")
    packets = rtp.packets()
    assert {p.payload_type for p in packets} == {0} and {len(p.payload) for p in packets} == {160}
