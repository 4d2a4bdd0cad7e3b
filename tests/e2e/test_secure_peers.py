"""The gateway against baresip over SIP over TLS with mandatory SRTP (issue 14, Proof): baresip calls the
gateway and the gateway calls baresip, each hears the agent's greeting, and a capture of loopback shows that
the media were SRTP both ways and the signalling TLS (no SIP, no SDP and so no SDES key in clear).

The certificates come from the session's test CA (tests/certs.py). baresip 1.0.0 with libre 1.1.0 (Debian
bookworm) loads its sip_cafile but does not check a server's certificate with it (it sends its INVITE to a
server with an untrusted certificate), so the test checks the certificate the gateway presents itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.certs import TestPki
from tests.e2e.conftest import Baresip, StartBaresip, free_udp_range
from tests.e2e.rtp_capture import (
    CIPHERTEXT_CHI_SQUARE_BOUND,
    G711_PAYLOAD,
    Datagram,
    MediaVerdict,
    PacketCapture,
    media_verdict,
)
from tests.e2e.test_real_peers import GREETING, assert_heard_greeting, greeting_sent, wait_until
from tests.interop.conftest import LOCALHOST, SEARCH_PATH, Processes
from voicelive_sip.codecs.g711 import ulaw_encode
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing import FakeVoiceLive

MEDIA_PORTS = 20


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    # Real time: a real phone plays what it receives at its own pace.
    return {"pace": 1.0, "voice": "tone"}


def require_tcpdump() -> str:
    path = shutil.which("tcpdump", path=SEARCH_PATH)
    if path is None:
        pytest.skip("tcpdump is not installed (Debian package tcpdump)")
    if os.geteuid() != 0:
        pytest.skip("capturing on lo needs root (CI runs as root)")
    return path


@contextlib.asynccontextmanager
async def secure_gateway(fake: FakeVoiceLive, pki: TestPki, media_first: int) -> AsyncIterator[Gateway]:
    """A gateway with a TLS listener (the test server certificate, the test CA for peers) and
    MEDIA_SRTP=required, greeting first; RTP on [media_first, media_first + MEDIA_PORTS)."""
    settings = Settings(
        sip=SipSettings(
            port=0,
            local_address=LOCALHOST,
            tls_port=0,
            tls_cert_file=str(pki.server.cert),
            tls_key_file=str(pki.server.key),
            tls_ca_file=str(pki.ca),
        ),
        media=MediaSettings(address=LOCALHOST, port=media_first, port_count=MEDIA_PORTS, srtp="required"),
        voicelive=fake.settings(proactive_greeting_enabled=True, proactive_greeting=GREETING),
        gateway=GatewaySettings(outbound_allowed=[f"sip:*@{LOCALHOST}"]),
    )
    async with Gateway(settings) as gateway:
        yield gateway


def capture_filter(media_first: int, tls_port: int) -> str:
    """tcpdump's filter for the gateway's RTP/RTCP ports and the TCP of a TLS port."""
    return f"(udp portrange {media_first}-{media_first + MEDIA_PORTS - 1}) or tcp port {tls_port}"


def tls_address(gateway: Gateway) -> tuple[str, int]:
    address = gateway.ua.tls_address
    assert address is not None, "the gateway has a certificate but no TLS listener"
    return str(address[0]), int(address[1])


async def assert_presents_the_test_certificate(address: tuple[str, int], pki: TestPki) -> None:
    """A TLS 1.2+ handshake with the gateway's listener succeeds against the test CA, host name 127.0.0.1."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    async with asyncio.timeout(10):
        _, writer = await asyncio.open_connection(*address, ssl=context, server_hostname=address[0])
    ssl_object = writer.get_extra_info("ssl_object")
    assert ssl_object.version() in ("TLSv1.2", "TLSv1.3"), ssl_object.version()
    # No graceful close: tests/interop/test_tls_bad_input.py tests how the gateway answers one.
    writer.transport.abort()


def media_between(
    captured: list[Datagram], sender: range, receiver: range
) -> tuple[MediaVerdict, list[Datagram]]:
    """The verdict on the UDP from ports `sender` to ports `receiver`, and those datagrams."""
    flow = [
        d for d in captured if d.protocol == "udp" and d.source[1] in sender and d.destination[1] in receiver
    ]
    return media_verdict(d.payload for d in flow), flow


def assert_media_encrypted(
    captured: list[Datagram], gateway_ports: range, phone: Baresip, rtcp_expected: bool = False
) -> None:
    """Every RTP packet between the gateway and the phone, both ways, was SRTP; the gateway's RTCP SRTCP."""
    phone_ports = range(phone.rtp_first, phone.rtp_first + 20)
    for name, (verdict, _) in {
        "gateway -> phone": media_between(captured, gateway_ports, phone_ports),
        "phone -> gateway": media_between(captured, phone_ports, gateway_ports),
    }.items():
        # A second of 20 ms packets at least: the greeting alone is 1.5 s and the call lasts longer.
        assert verdict.rtp_packets >= 50, (name, verdict)
        assert verdict.plain_length_packets == 0, (name, verdict)
        assert verdict.all_srtp, (name, verdict, f"χ² bound {CIPHERTEXT_CHI_SQUARE_BOUND}")
    # baresip itself sends an RTCP APP "PING/PONG" in clear when media start (libre's NAT pinhole), so
    # only the gateway's RTCP is held to SRTCP.
    gateway_rtcp, _ = media_between(captured, gateway_ports, phone_ports)
    assert gateway_rtcp.plain_rtcp_packets == 0, gateway_rtcp
    if rtcp_expected:
        assert gateway_rtcp.rtcp_packets > 0, gateway_rtcp


def assert_signalling_encrypted(captured: list[Datagram], tls_port: int) -> None:
    """The TCP to and from the gateway's TLS port carried TLS records only: no SIP start line and no SDP."""
    segments = [
        d.payload
        for d in captured
        if d.protocol == "tcp" and tls_port in (d.source[1], d.destination[1]) and d.payload
    ]
    assert segments, "nothing captured on the TLS port"
    stream = b"".join(segments)
    for clear in (b"SIP/2.0", b"INVITE ", b"a=crypto", b"inline:", b"m=audio"):
        assert clear not in stream, clear
    # Every segment here starts a TLS record on loopback (small messages, one write each): handshake (22),
    # change cipher spec (20), alert (21) or application data (23), version 3.x.
    assert segments[0][:2] == b"\x16\x03", segments[0][:16]


# ---------------------------------------------------------------------------------------------------------
# The criterion itself, on packets made here: it must tell plain G.711 from SRTP or the interop tests prove
# nothing.


def _rtp(sequence: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, 0x1234ABCD) + payload


def _tone_ulaw(seconds: float) -> bytes:
    import numpy as np

    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (0.18 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    return ulaw_encode(pcm)


@pytest.mark.parametrize("profile", ["AES128_CM_SHA1_80", "AES128_CM_SHA1_32", "AEAD_AES_128_GCM"])
def test_the_capture_criterion_tells_srtp_from_plain_g711(profile: str) -> None:
    pylibsrtp = pytest.importorskip("pylibsrtp")
    srtp_profile = getattr(pylibsrtp.Policy, f"SRTP_PROFILE_{profile}", None)
    if srtp_profile is None:
        pytest.skip(f"this libsrtp has no {profile}")
    key = os.urandom(28 if "GCM" in profile else 30)
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=srtp_profile
    )
    session = pylibsrtp.Session(policy=policy)
    audio = b"\xff" * (G711_PAYLOAD * 25) + _tone_ulaw(2.0)  # μ-law silence, then the tone
    plain = [_rtp(n, audio[i : i + G711_PAYLOAD]) for n, i in enumerate(range(0, len(audio), G711_PAYLOAD))]

    clear = media_verdict(plain)
    assert clear.rtp_packets == len(plain)
    assert clear.plain_length_packets == len(plain)
    assert clear.chi_square > 10 * CIPHERTEXT_CHI_SQUARE_BOUND, clear
    assert not clear.all_srtp

    protected = media_verdict(session.protect(packet) for packet in plain)
    assert protected.srtp_length_packets == len(plain), protected
    assert protected.all_srtp, protected


# ---------------------------------------------------------------------------------------------------------
# baresip


@pytest.mark.interop
async def test_baresip_calls_the_gateway_over_tls_with_srtp_and_hears_the_greeting(
    baresip: StartBaresip, fake_voicelive: FakeVoiceLive, pki: TestPki, processes: Processes
) -> None:
    tcpdump = require_tcpdump()
    phone = baresip("uac_tls", {"CA_FILE": str(pki.ca)})
    await phone.wait_ready()
    media_first = free_udp_range(MEDIA_PORTS)
    gateway_ports = range(media_first, media_first + MEDIA_PORTS)
    phone_ports = range(phone.rtp_first, phone.rtp_first + 20)
    async with secure_gateway(fake_voicelive, pki, media_first) as gateway:
        host, port = tls_address(gateway)
        await assert_presents_the_test_certificate((host, port), pki)
        capture = await PacketCapture.start(tcpdump, processes, capture_filter(media_first, port))
        reply = await phone.command("dial", f"sip:agent@{LOCALHOST}:{port};transport=tls")
        assert reply.get("ok"), (reply, phone.output()[-3000:])
        await greeting_sent(fake_voicelive)
        # Stay on the line until the gateway's first RTCP report (every 5 s) has gone out, to see it too.
        await wait_until(
            lambda: media_between(capture.so_far(), gateway_ports, phone_ports)[0].rtcp_packets,
            lambda: "no RTCP from the gateway",
            timeout=15,
        )
        await phone.command("hangup")
        await wait_until(lambda: gateway.summaries, lambda: f"no call summary\n{phone.output()[-3000:]}")
        captured = await capture.stop()
    await phone.quit()

    (summary,) = gateway.summaries
    assert (summary.direction, summary.end_reason, summary.ended_by) == ("inbound", "bye", "remote"), summary
    assert summary.packets_received > 0, summary
    assert "srtp: audio: SRTP is Enabled" in phone.output(), phone.output()[-3000:]
    assert_heard_greeting(phone)
    assert_media_encrypted(captured, gateway_ports, phone, rtcp_expected=True)
    assert_signalling_encrypted(captured, port)


@pytest.mark.interop
async def test_gateway_calls_baresip_over_tls_with_srtp_and_it_hears_the_greeting(
    baresip: StartBaresip, fake_voicelive: FakeVoiceLive, pki: TestPki, processes: Processes
) -> None:
    tcpdump = require_tcpdump()
    phone = baresip("uas_tls", {"CA_FILE": str(pki.ca), "CERT_FILE": str(pki.server.combined)})
    await phone.wait_ready()
    media_first = free_udp_range(MEDIA_PORTS)
    gateway_ports = range(media_first, media_first + MEDIA_PORTS)
    async with secure_gateway(fake_voicelive, pki, media_first) as gateway:
        capture = await PacketCapture.start(tcpdump, processes, capture_filter(media_first, phone.tls_port))
        session = await gateway.call(phone.tls_uri)
        await greeting_sent(fake_voicelive)
        await session.hangup()
        await wait_until(lambda: gateway.summaries, lambda: f"no call summary\n{phone.output()[-3000:]}")
        captured = await capture.stop()
    await phone.quit()

    (summary,) = gateway.summaries
    assert (summary.direction, summary.end_reason, summary.ended_by) == ("outbound", "bye", "local"), summary
    assert summary.packets_received > 0, summary
    assert "srtp: audio: SRTP is Enabled" in phone.output(), phone.output()[-3000:]
    assert_heard_greeting(phone)
    assert_media_encrypted(captured, gateway_ports, phone)
    assert_signalling_encrypted(captured, phone.tls_port)
