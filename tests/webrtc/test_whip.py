"""Browser calls end to end with an aiortc client: WhipClient ⇄ /whip (BrowserCalls) ⇄ CallSession ⇄ fake.

Every ICE candidate is 127.0.0.1 (WEBRTC_ICE_ADDRESSES), so no packet leaves loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicelive_sip.config import (
    GatewaySettings,
    MediaSettings,
    Settings,
    SipSettings,
    WebRtcSettings,
)
from voicelive_sip.gateway import Gateway
from voicelive_sip.http import ObservabilityServer
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive
from voicelive_sip.testing.whip import WhipClient, WhipError
from voicelive_sip.voicelive.tools import Tool, tool
from voicelive_sip.webrtc.server import BrowserCalls

_ports = itertools.count(0)
LONG_GREETING = "This greeting goes on for about five seconds so that the caller can interrupt it."


def tone48k(seconds: float, freq: float = 700.0, level: float = 0.3) -> bytes:
    t = np.arange(int(48000 * seconds)) / 48000
    return np.asarray(np.round(level * 32767 * np.sin(2 * np.pi * freq * t)), dtype="<i2").tobytes()


@asynccontextmanager
async def browser_gateway(
    tmp_path: Path | None = None,
    *,
    fake_options: dict[str, Any] | None = None,
    webrtc: dict[str, Any] | None = None,
    token: str | None = None,
    max_calls: int = 100,
    tools: Sequence[Tool[Any, Any]] = (),
    gateway_settings: GatewaySettings | None = None,
) -> AsyncIterator[tuple[FakeVoiceLive, Gateway, ObservabilityServer]]:
    async with FakeVoiceLive(**{"pace": 1.0, **(fake_options or {})}) as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1", max_calls=max_calls),
            media=MediaSettings(address="127.0.0.1", port=26000 + (next(_ports) % 20) * 100, port_count=100),
            voicelive=fake.settings(proactive_greeting_enabled=True),
            gateway=gateway_settings
            or GatewaySettings(recording_dir=str(tmp_path) if tmp_path is not None else None),
            webrtc=WebRtcSettings(enabled=True, ice_addresses=["127.0.0.1"], **(webrtc or {})),
        )
        async with Gateway(settings, tools=tools) as gateway:
            browser = BrowserCalls(gateway, settings.webrtc, token=token)
            server = ObservabilityServer(
                gateway.metrics, ready=gateway.readiness, host="127.0.0.1", port=0, browser=browser
            )
            async with server:
                yield fake, gateway, server


async def finished(gateway: Gateway, count: int = 1) -> None:
    for _ in range(500):
        if len(gateway.summaries) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the browser call did not finish")


async def test_a_browser_call_hears_the_greeting_barges_in_and_ends_with_delete(tmp_path: Path) -> None:
    options = {"greeting": LONG_GREETING}
    async with browser_gateway(tmp_path, fake_options=options) as (fake, gateway, server):  # noqa: SIM117
        async with WhipClient(f"{server.url}/whip") as client:
            assert client.location is not None and client.location.startswith("/whip/")
            assert client.answer is not None and "127.0.0.1" in client.answer
            await client.wait_for(lambda c: c.loud_frames >= 25, timeout=15)  # half a second of greeting
            session = await gateway.next_call()
            assert session.summary.codec == "opus"
            client.play(tone48k(0.8))  # the caller talks over the agent
            await fake.wait_for(lambda f: bool(f.truncations), timeout=10)
            await client.wait_for(lambda c: any(m["type"] == "barge_in" for m in c.messages), timeout=5)
            assert await client.hangup() == 200
            await finished(gateway)
    summary = gateway.summaries[0]
    assert summary.end_reason == "delete" and summary.ended_by == "remote"
    assert summary.barge_ins == 1
    assert fake.cancellations or fake.received_types.count("response.cancel") >= 1
    (truncation,) = fake.truncations
    assert truncation["audio_end_ms"] > 0
    # The Voice Live session was opened wideband: pcm16 at 24 kHz both ways, no G.711 on the way.
    update = next(e for e in fake.received_events if e.get("type") == "session.update")
    assert update["session"]["input_audio_format"] == "pcm16"
    assert update["session"].get("input_audio_sampling_rate", 24000) == 24000
    # The caller's tone reached the service: energy in the audio appended.
    assert fake.connections[0].closed
    assert summary.packets_received > 0 and summary.packets_sent > 0
    # The recording holds both sides at 24 kHz.
    assert summary.recording is not None
    with wave.open(str(summary.recording)) as wav:
        assert wav.getframerate() == 24000
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, wav.getnchannels())
    assert all(np.abs(frames[:, ch]).max() > 1000 for ch in range(frames.shape[1]))
    assert not gateway.sessions and not server.browser.calls  # type: ignore[union-attr]


async def test_transcript_and_turn_timings_reach_the_page_over_the_data_channel() -> None:
    fake_options = {
        "transcripts": ("What are your opening hours?",),
        "replies": (FakeReply(text="Nine to five."),),
    }
    async with browser_gateway(fake_options=fake_options) as (_fake, gateway, server):
        async with WhipClient(f"{server.url}/whip") as client:
            await client.wait_for(lambda c: any(m["type"] == "answered" for m in c.messages), timeout=15)
            await client.wait_for(lambda c: c.loud_frames >= 10, timeout=10)
            await asyncio.sleep(3.5)  # the greeting ends
            client.play(tone48k(0.6) + bytes(48000 * 2))
            await client.wait_for(
                lambda c: any(m["type"] == "transcript" and m["role"] != "agent" for m in c.messages),
                timeout=10,
            )
            await client.wait_for(lambda c: any(m["type"] == "turn" for m in c.messages), timeout=10)
            client.send({"type": "hangup"})
            await client.wait_for(lambda c: any(m["type"] == "ended" for m in c.messages), timeout=10)
        await finished(gateway)
    lines = [m for m in client.messages if m["type"] == "transcript"]
    assert any(m["text"] == "What are your opening hours?" for m in lines)
    turn = next(m for m in client.messages if m["type"] == "turn")
    assert turn["total_ms"] >= turn["gateway_ms"] >= 0
    assert gateway.summaries[0].end_reason == "bye" and gateway.summaries[0].ended_by == "remote"


async def test_keys_pressed_on_the_page_reach_the_application() -> None:
    digits: list[str] = []
    async with browser_gateway() as (_fake, gateway, server):
        gateway.on_dtmf = digits.append
        async with WhipClient(f"{server.url}/whip") as client:
            await client.wait_for(lambda c: any(m["type"] == "answered" for m in c.messages), timeout=15)
            for key in ("5", "#", "x", "55"):  # the last two are not one key: ignored
                client.send({"type": "dtmf", "digit": key})
            for _ in range(250):
                if len(digits) >= 2:
                    break
                await asyncio.sleep(0.02)
            await client.hangup()
        await finished(gateway)
    assert digits == ["5", "#"]


async def test_a_browser_that_vanishes_without_delete_is_ended_and_freed() -> None:
    async with browser_gateway(webrtc={"media_timeout": 1.0}) as (fake, gateway, server):
        client = WhipClient(f"{server.url}/whip")
        await client.connect()
        await client.wait_for(lambda c: c.loud_frames >= 5, timeout=15)
        await client.close()  # gone: no DELETE, no more audio
        await finished(gateway)
        summary = gateway.summaries[0]
        assert summary.end_reason in ("media-timeout", "closed", "ice-failed")
        assert not gateway.sessions and not server.browser.calls  # type: ignore[union-attr]
        assert fake.connections[0].closed


async def test_ice_that_never_completes_frees_the_call() -> None:
    async with browser_gateway(webrtc={"ice_timeout": 1.0}) as (fake, gateway, server):
        client = WhipClient(f"{server.url}/whip")
        # Answered, but the answer is never applied: our side never does ICE.
        status, _, location = await client.post(await _offer_only())
        assert status == 201 and location is not None
        browser = server.browser
        assert browser is not None and len(browser.calls) == 1
        for _ in range(250):
            if not browser.calls:
                break
            await asyncio.sleep(0.02)
        assert not browser.calls and not gateway.sessions
        assert not gateway.summaries  # never answered: no session, no summary
        for _ in range(100):
            if fake.connections and fake.connections[0].closed:
                break
            await asyncio.sleep(0.02)
        assert fake.connections[0].closed  # the Voice Live session it had opened is closed


async def _offer_only() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        ("v=0\r\nthis is not sdp\r\n", "application/sdp", 400, "not valid SDP"),
        ("{}", "application/json", 415, "application/sdp"),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
            "c=IN IP4 127.0.0.1\r\na=rtpmap:96 VP8/90000\r\n",
            "application/sdp",
            415,
            "no audio",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
            "c=IN IP4 127.0.0.1\r\n",
            "application/sdp",
            415,
            "Opus",
        ),
        ("v=0\r\n" + "a=x\r\n" * 5000, "application/sdp", 413, "at most"),
    ],
)
async def test_bad_offers_get_a_status_and_a_reason(
    body: str, content_type: str, status: int, reason: str
) -> None:
    async with browser_gateway() as (fake, _gateway, server):
        client = WhipClient(f"{server.url}/whip")
        got, text, location = await client.post(body, content_type)
        assert (got, location) == (status, None)
        assert reason in text
        assert not server.browser.calls  # type: ignore[union-attr]
        assert not fake.connections


async def test_without_the_token_the_offer_gets_401_and_with_it_201() -> None:
    async with browser_gateway(token="s3cret") as (_fake, gateway, server):
        with pytest.raises(WhipError) as refused:
            await WhipClient(f"{server.url}/whip").connect()
        assert refused.value.status == 401
        with pytest.raises(WhipError) as wrong:
            await WhipClient(f"{server.url}/whip", token="guess").connect()
        assert wrong.value.status == 401
        async with WhipClient(f"{server.url}/whip", token="s3cret") as client:
            await client.wait_for(lambda c: any(m["type"] == "answered" for m in c.messages), timeout=15)
            assert await client.hangup() == 200
        await finished(gateway)


async def test_browser_calls_share_sip_max_calls_with_sip_calls() -> None:
    async with browser_gateway(max_calls=1) as (_fake, gateway, server):
        async with WhipClient(f"{server.url}/whip") as first:
            await first.wait_for(lambda c: any(m["type"] == "answered" for m in c.messages), timeout=15)
            with pytest.raises(WhipError) as full:
                await WhipClient(f"{server.url}/whip").connect()
            assert full.value.status == 503 and "full" in full.value.text
            assert gateway.ua.unavailable() == ("full", 5)  # a SIP INVITE or OPTIONS now gets 503/486 too
            await first.hangup()
        await finished(gateway)
        for _ in range(100):
            if gateway.ua.unavailable() is None:
                break
            await asyncio.sleep(0.02)
        assert gateway.ua.unavailable() is None


async def test_voice_live_down_gets_503_and_holds_nothing() -> None:
    async with browser_gateway() as (fake, _gateway, server):
        await fake.stop()
        with pytest.raises(WhipError) as refused:
            await WhipClient(f"{server.url}/whip").connect()
        assert refused.value.status == 503 and "Voice Live" in refused.value.text
        assert not server.browser.calls  # type: ignore[union-attr]


async def test_pending_offers_are_bounded() -> None:
    async with browser_gateway(webrtc={"max_pending": 1, "ice_timeout": 5.0}) as (_fake, _gateway, server):
        client = WhipClient(f"{server.url}/whip")
        status, _, _ = await client.post(await _offer_only())
        assert status == 201  # connecting (its ICE never completes)
        status, text, _ = await client.post(await _offer_only())
        assert status == 503 and "connecting" in text


async def test_the_phone_page_is_served() -> None:
    import aiohttp

    async with (
        browser_gateway() as (_fake, _gateway, server),
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/phone") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Referrer-Policy"] == "no-referrer"  # a ?token= never leaks in a Referer
        page = await response.text()
    assert "/whip" in page
    # Nothing is fetched from anywhere else: no external script, style, image or font.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", page)


async def test_a_browser_call_ends_at_its_duration_limit() -> None:
    async with browser_gateway(webrtc={"max_call_duration": 1.0}) as (_fake, gateway, server):
        async with WhipClient(f"{server.url}/whip") as client:
            await client.wait_for(lambda c: any(m["type"] == "answered" for m in c.messages), timeout=15)
            await client.wait_for(lambda c: any(m["type"] == "ended" for m in c.messages), timeout=15)
        await finished(gateway)
    assert gateway.summaries[0].end_reason == "max-duration"
    assert gateway.summaries[0].ended_by == "local"
    ended = next(m for m in client.messages if m["type"] == "ended")
    assert ended["reason"] == "max-duration"


async def test_ice_candidates_are_announced_under_the_public_address_and_servers_are_passed() -> None:
    webrtc = {
        "ice_public_address": "203.0.113.7",
        "ice_servers": ["stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp"],
        "ice_username": "user",
        "ice_credential": "pass",
    }
    async with browser_gateway(webrtc=webrtc) as (_fake, _gateway, server):
        browser = server.browser
        assert browser is not None
        servers = browser._ice_servers()
        assert [s.urls for s in servers] == webrtc["ice_servers"]
        assert all(s.username == "user" and s.credential == "pass" for s in servers)
        # The answer names the public address, never the local one, in c= and in every host candidate.
        answer = browser._announce(
            "v=0\r\nc=IN IP4 127.0.0.1\r\n"
            "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
            "a=candidate:2 1 udp 1694498815 198.51.100.1 40000 typ srflx raddr 127.0.0.1 rport 40000\r\n"
        )
    assert "c=IN IP4 203.0.113.7" in answer
    assert "203.0.113.7 40000 typ host" in answer
    assert "127.0.0.1 40000 typ host" not in answer
    assert "198.51.100.1 40000 typ srflx" in answer  # other candidates are left as they are


def test_without_ice_servers_aiortc_gets_none_and_no_default_stun() -> None:
    from aiortc import RTCConfiguration

    from voicelive_sip.webrtc.server import _host_addresses, _ice_addresses

    # An empty list, not None: aiortc puts its default Google STUN server in place of None.
    assert RTCConfiguration(iceServers=[]).iceServers == []
    saved = list(_ice_addresses)
    try:
        _ice_addresses[:] = ["127.0.0.1", "::1"]
        assert _host_addresses(True, False) == ["127.0.0.1"]
        assert _host_addresses(True, True) == ["127.0.0.1", "::1"]
    finally:
        _ice_addresses[:] = saved


async def test_options_names_the_ice_servers_behind_the_token() -> None:
    import aiohttp

    webrtc = {"ice_servers": ["stun:127.0.0.1:3478"]}
    async with (
        browser_gateway(webrtc=webrtc, token="s3cret") as (_fake, _gateway, server),
        aiohttp.ClientSession() as http,
    ):
        async with http.options(f"{server.url}/whip") as refused:
            assert refused.status == 401
        headers = {"Authorization": "Bearer s3cret"}
        async with http.options(f"{server.url}/whip", headers=headers) as response:
            assert response.status == 204
            assert response.headers.getall("Link") == ['<stun:127.0.0.1:3478>; rel="ice-server"']


async def test_with_aiortcs_own_decoder_thread_a_call_works_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # The inline decoder leans on aiortc's receiver internals; where they differ, aiortc decodes (48 kHz
    # stereo on its thread) and the leg folds and resamples with soxr: the call must not notice.
    from voicelive_sip.webrtc.leg import BrowserLeg

    monkeypatch.setattr(BrowserLeg, "decode_inline", lambda self, receiver: False)
    options = {"greeting": LONG_GREETING}
    async with browser_gateway(fake_options=options) as (fake, gateway, server):
        async with WhipClient(f"{server.url}/whip") as client:
            await client.wait_for(lambda c: c.loud_frames >= 10, timeout=15)
            session = await gateway.next_call()
            assert isinstance(session.media, BrowserLeg) and not session.media.inline
            client.play(tone48k(0.8))
            await fake.wait_for(lambda f: bool(f.truncations), timeout=10)
            await client.hangup()
        await finished(gateway)
    assert gateway.summaries[0].barge_ins == 1


async def test_the_inline_decoder_counts_junk_and_carries_on() -> None:
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from voicelive_sip.webrtc.leg import BrowserLeg, InlineDecoder

    leg = BrowserLeg()
    got: list[bytes] = []
    leg.receive(got.append)
    decoder = InlineDecoder(leg)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    encoder = leg.track._encoder
    import av

    frame = av.AudioFrame(format="s16", layout="mono", samples=480)
    frame.planes[0].update(bytes(960))
    frame.sample_rate, frame.pts = 24000, 0
    (packet,) = encoder.encode(frame)
    decoder.put((opus, JitterFrame(bytes(packet), 0)))
    for junk in (b"", b"\xff" * 3, bytes(range(256)) * 8):  # empty, truncated, garbage
        decoder.put((opus, JitterFrame(junk, 0)))
    decoder.put((opus, JitterFrame(bytes(packet), 960)))
    # Both good frames came through (mono PCM16 at 24 kHz: up to 960 bytes each, the resampler's delay aside).
    assert len(got) == 2 and all(0 < len(pcm) <= 960 and len(pcm) % 2 == 0 for pcm in got)
    assert leg.decode_errors >= 1
    decoder.put(None)
    assert decoder.get() is None  # the receiver's thread ends once stopped
    leg.close()


async def test_tools_and_the_hang_up_tool_work_on_a_browser_call() -> None:
    looked_up: list[str] = []

    @tool
    async def order_status(order_id: str) -> dict[str, str]:
        """Look up an order."""
        looked_up.append(order_id)
        return {"status": "shipped"}

    replies = [
        FakeReply(
            tool_call=FakeToolCall("order_status", '{"order_id": "42"}'), follow_up=FakeReply("Shipped.")
        ),
        FakeReply(text="Goodbye!", tool_call=FakeToolCall("hang_up", "{}")),
    ]
    async with browser_gateway(
        fake_options={"replies": replies, "greeting": "Hi."}, tools=[order_status]
    ) as (
        _fake,
        gateway,
        server,
    ):
        async with WhipClient(f"{server.url}/whip") as client:
            await client.wait_for(lambda c: c.loud_frames >= 5, timeout=15)
            await asyncio.sleep(1.0)
            client.play(tone48k(0.6) + bytes(48000 * 2))  # a turn: the fake calls order_status
            await client.wait_for(lambda c: any(m["type"] == "tool" for m in c.messages), timeout=10)
            await asyncio.sleep(2.0)
            client.play(tone48k(0.6) + bytes(48000 * 2))  # another: the fake says goodbye and hangs up
            await client.wait_for(lambda c: any(m["type"] == "ended" for m in c.messages), timeout=15)
        await finished(gateway)
    assert looked_up == ["42"]
    summary = gateway.summaries[0]
    assert [t.name for t in summary.tool_calls] == ["order_status", "hang_up"]
    assert summary.end_reason == "agent-hangup" and summary.ended_by == "local"


async def test_a_draining_gateway_refuses_new_browser_calls_and_keeps_the_one_it_has() -> None:
    async with browser_gateway() as (_fake, gateway, server):
        async with WhipClient(f"{server.url}/whip") as first:
            await first.wait_for(lambda c: any(m["type"] == "answered" for m in c.messages), timeout=15)
            draining = asyncio.ensure_future(gateway.drain(timeout=30))
            await asyncio.sleep(0.2)
            with pytest.raises(WhipError) as refused:
                await WhipClient(f"{server.url}/whip").connect()
            assert refused.value.status == 503 and "draining" in refused.value.text
            assert first.connection_state == "connected" and gateway.sessions  # still up
            await first.hangup()
            await asyncio.wait_for(draining, 15)
        assert gateway.summaries[0].end_reason == "delete"
