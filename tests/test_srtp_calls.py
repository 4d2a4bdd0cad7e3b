"""SRTP in calls: two user agents under MEDIA_SRTP, the 488s it causes, re-keying, the gateway end to end."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pytest
from structlog.testing import capture_logs

from voicelive_sip.aio import CallFailed, IncomingCall, UserAgent
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.rtp.packet import build_rtp_header
from voicelive_sip.rtp.session import RtpSession
from voicelive_sip.sdes import SUITES, SdesKey, SrtpKeys
from voicelive_sip.sip import Response, parse_message
from voicelive_sip.testing import FakeVoiceLive, SipPhone

LOCAL = "127.0.0.1"


@asynccontextmanager
async def agent(srtp: str, *, answers: bool = True) -> AsyncIterator[UserAgent]:
    """A UA on loopback with MEDIA_SRTP=`srtp`; it answers every call unless `answers` is False."""
    ua = UserAgent(SipSettings(port=0, local_address=LOCAL, t1=0.05), MediaSettings(srtp=srtp))
    await ua.start()
    ua.seen = []  # type: ignore[attr-defined]

    async def answer(call: IncomingCall) -> None:
        with suppress(CallFailed):
            await call.answer(rtp_port=41000)

    async def app() -> None:
        async for call in ua.incoming_calls():
            ua.seen.append(call)  # type: ignore[attr-defined]
            if answers:
                asyncio.get_running_loop().create_task(answer(call))

    task = asyncio.get_running_loop().create_task(app())
    try:
        yield ua
    finally:
        task.cancel()
        await ua.close()


async def acked(ua: UserAgent) -> None:
    """Until `ua` has the ACKs of its 2xx to re-INVITEs: before that its dialogs refuse a new INVITE (491)."""
    async with asyncio.timeout(5):
        while ua._table.by_reinvite:
            await asyncio.sleep(0.01)


def uri(ua: UserAgent) -> str:
    return f"sip:bot@{LOCAL}:{ua.address[1]}"


@pytest.mark.parametrize(
    ("caller", "callee", "proto", "keyed"),
    [
        ("optional", "optional", "RTP/AVP", True),  # best effort, taken up
        ("required", "optional", "RTP/SAVP", True),
        ("optional", "required", "RTP/AVP", True),
        ("required", "required", "RTP/SAVP", True),
        ("optional", "off", "RTP/AVP", False),
        ("off", "optional", "RTP/AVP", False),
    ],
)
async def test_two_user_agents_settle_srtp_by_policy(
    caller: str, callee: str, proto: str, keyed: bool
) -> None:
    async with agent(callee) as bob, agent(caller) as alice:
        call = await alice.call(uri(bob), rtp_port=40000)
        (incoming,) = bob.seen  # type: ignore[attr-defined]
        assert call.media is not None and incoming.media is not None
        assert (call.media.proto, incoming.media.proto) == (proto, proto)
        if not keyed:
            assert call.media.srtp is None and incoming.media.srtp is None
            return
        assert call.media.srtp is not None and incoming.media.srtp is not None
        assert call.media.srtp.local == incoming.media.srtp.remote
        assert call.media.srtp.remote == incoming.media.srtp.local
        assert call.media.srtp.suite.name == "AES_CM_128_HMAC_SHA1_80"  # our first choice, offered first

        # Hold and resume (our re-INVITEs) keep the keys: the SRTP contexts and their replay state go on.
        before, answered_before = call.media.srtp, incoming.media.srtp
        held = await call.hold()
        assert held is not None and held.srtp == before and incoming.media.srtp == answered_before
        resumed = await call.unhold()
        assert resumed is not None and resumed.srtp == before
        assert (resumed.proto, incoming.media.proto) == (proto, proto)
        # The answerer's own re-offer stays in the transport in use (RTP/AVP best effort even when required).
        await acked(bob)
        held_by_bob = await incoming.hold()
        assert held_by_bob is not None and held_by_bob.srtp == answered_before
        assert incoming.local_sdp is not None and incoming.local_sdp.media[0].proto == proto
        assert len(incoming.local_sdp.media[0].crypto) == 1  # the key in use, not a new set
        await incoming.unhold()
        await acked(alice)

        # A re-INVITE with a new key (as a peer re-keying would send) gets a new key back.
        assert call.local_media is not None
        call.local_media.srtp_keys = None
        call.local_media.offer_keys = (SdesKey.generate(SUITES["AES_CM_128_HMAC_SHA1_32"]),)
        rekeyed = await call.unhold()
        assert rekeyed is not None and rekeyed.srtp is not None and incoming.media.srtp is not None
        assert rekeyed.srtp.suite.name == "AES_CM_128_HMAC_SHA1_32"
        assert rekeyed.srtp.remote != before.remote and rekeyed.srtp.local == incoming.media.srtp.remote
        await call.hangup()


KEY = base64.b64encode(bytes(range(30))).decode()


def invite(port: int, target: int, proto: str, crypto: str = "") -> bytes:
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 {LOCAL}\r\ns=-\r\nc=IN IP4 {LOCAL}\r\nt=0 0\r\n"
        f"m=audio 4000 {proto} 0\r\n{crypto}"
    ).encode()
    head = (
        f"INVITE sip:bot@{LOCAL}:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOCAL}:{port};branch=z9hG4bKsrtp{proto[-4:].strip('/')}{len(crypto)};rport\r\n"
        f"From: <sip:raw@{LOCAL}>;tag=raw\r\nTo: <sip:bot@{LOCAL}:{target}>\r\n"
        f"Call-ID: srtp-{proto[-4:].strip('/')}-{len(crypto)}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:raw@{LOCAL}:{port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n"
    )
    return head.encode() + sdp


async def final_response(ua: UserAgent, data: bytes, sock: socket.socket) -> Response:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, ua.address)
    async with asyncio.timeout(5):
        while True:
            message = parse_message(await loop.sock_recv(sock, 65536))
            if isinstance(message, Response) and message.status_code >= 200:
                return message


@pytest.mark.parametrize(
    ("policy", "proto", "crypto", "warning"),
    [
        ("off", "RTP/SAVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n", "MEDIA_SRTP=off"),
        ("required", "RTP/AVP", "", "MEDIA_SRTP=required, RTP/AVP: no a=crypto line"),
        (
            "required",
            "RTP/AVP",
            f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY[:-4]}\r\n",
            "key is 27 bytes, needs 30",
        ),
        (
            "optional",
            "RTP/SAVP",
            "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + KEY + "\r\n",
            "unknown crypto suite",
        ),
        ("optional", "RTP/SAVP", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4\r\n", "MKI"),
    ],
)
async def test_an_offer_the_policy_refuses_gets_488_with_a_warning_naming_why(
    policy: str, proto: str, crypto: str, warning: str
) -> None:
    async with agent(policy) as bob:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCAL, 0))
            sock.setblocking(False)
            response = await final_response(
                bob, invite(sock.getsockname()[1], bob.address[1], proto, crypto), sock
            )
        assert response.status_code == 488
        text = response.headers.get("Warning") or ""
        assert text.startswith("304 ") and warning in text and KEY[:20] not in text
        assert bob.seen == []  # type: ignore[attr-defined]  # refused before the application saw a call


async def test_a_required_caller_gets_488_from_a_callee_with_srtp_off() -> None:
    async with agent("off") as bob, agent("required") as alice:
        with pytest.raises(CallFailed) as failed:
            await alice.call(uri(bob), rtp_port=40000)
        assert failed.value.status_code == 488


# -- the gateway end to end ----------------------------------------------------------------------------------


@asynccontextmanager
async def gateway(
    monkeypatch: pytest.MonkeyPatch, gateway_srtp: str, phone_srtp: str, port: int
) -> AsyncIterator[tuple[Gateway, SipPhone]]:
    async with FakeVoiceLive(pace=1.0) as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address=LOCAL, t1=0.1),
            media=MediaSettings(address=LOCAL, port=port, port_count=40, srtp=gateway_srtp),
            voicelive=fake.settings(proactive_greeting_enabled=True),
            gateway=GatewaySettings(),
        )
        monkeypatch.setenv("MEDIA_SRTP", phone_srtp)  # SipPhone's media settings come from the environment
        async with Gateway(settings) as running, SipPhone(media_port=port + 100) as phone:
            yield running, phone


def gateway_rtp(running: Gateway) -> RtpSession:
    (session,) = running.sessions
    assert isinstance(session.media, RtpSession)
    return session.media


async def test_an_srtp_call_to_the_gateway_hears_the_greeting_and_forgeries_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with capture_logs() as logs:
        keys = await _srtp_call_to_the_gateway(monkeypatch)
    shown = repr(logs)
    assert "rtp.srtp_started" in shown and "sip.srtp_negotiated" in shown and "rtp.srtp_dropped" in shown
    for key in (keys.local, keys.remote):  # no key in any log event of either side
        assert (
            key.inline[7:] not in shown
            and key.key_salt.hex() not in shown
            and repr(key.key_salt) not in shown
        )


async def _srtp_call_to_the_gateway(monkeypatch: pytest.MonkeyPatch) -> SrtpKeys:
    async with gateway(monkeypatch, "required", "required", 26400) as (running, phone):
        call = await phone.call(f"sip:agent@{LOCAL}:{running.ua.address[1]}")
        assert call.call.media is not None and call.call.media.proto == "RTP/SAVP"
        keys = call.call.media.srtp
        assert keys is not None
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
        start = call.first_audio_time()
        assert start is not None
        await asyncio.sleep(0.4)
        assert call.energy_dbfs(start, start + 0.4) > -25  # the greeting, decrypted
        rtp = gateway_rtp(running)
        assert rtp.stats.srtp_suite == "AES_CM_128_HMAC_SHA1_80" == call.rtp.stats.srtp_suite

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a stranger with no key
            for sequence in range(20):
                forged = build_rtp_header(0, False, sequence, sequence * 160, 0xBAD) + bytes(170)
                sock.sendto(forged, (LOCAL, rtp.local_port))
            async with asyncio.timeout(5):
                while rtp.stats.srtp_auth_failures < 20:
                    await asyncio.sleep(0.01)
        exported = running.metrics.render()[0].decode()
        assert 'voicelive_sip_srtp_dropped_total{kind="auth"} 20.0' in exported
        heard_before = len(call.received)
        await asyncio.sleep(0.2)
        assert len(call.received) > heard_before  # the call goes on
        assert call.rtp.stats.srtp_dropped == {"auth": 0, "replay": 0}  # and everything it got was ours
        await call.hangup()
        async with asyncio.timeout(5):
            while not running.summaries:
                await asyncio.sleep(0.02)
        (summary,) = running.summaries
        assert summary.srtp_suite == "AES_CM_128_HMAC_SHA1_80" and summary.srtp_dropped["auth"] == 20
        exported = running.metrics.render()[0].decode()
        assert 'voicelive_sip_srtp_dropped_total{kind="auth"} 20.0' in exported  # moved to the ended total
        assert 'voicelive_sip_srtp_calls_total{suite="AES_CM_128_HMAC_SHA1_80"} 1.0' in exported
    return keys


@pytest.mark.parametrize(("gateway_srtp", "phone_srtp"), [("off", "required"), ("required", "off")])
async def test_the_gateway_refuses_what_its_policy_does_not_allow(
    monkeypatch: pytest.MonkeyPatch, gateway_srtp: str, phone_srtp: str
) -> None:
    async with gateway(monkeypatch, gateway_srtp, phone_srtp, 26600) as (running, phone):
        with pytest.raises(CallFailed) as failed:
            await phone.call(f"sip:agent@{LOCAL}:{running.ua.address[1]}")
        assert failed.value.status_code == 488
        assert running.sessions == set()
