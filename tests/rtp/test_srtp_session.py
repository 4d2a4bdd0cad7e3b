"""RtpSession over SRTP on 127.0.0.1: audio, DTMF, barge-in and RTCP as before; forgeries counted, dropped."""

from __future__ import annotations

import asyncio
import os

import pylibsrtp
import pytest
from structlog.testing import capture_logs

from tests.rtp.conftest import until as _until
from voicelive_sip.media import DtmfReceived
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.jitter import Frame
from voicelive_sip.rtp.packet import RtpPacket, build_rtp_header, is_rtcp, parse_rtcp
from voicelive_sip.rtp.session import PortPool, RtpSession
from voicelive_sip.sdes import SdesKey, SrtpKeys
from voicelive_sip.testing.rtp import RtpLoopback, RtpRecorder

LOCAL = "127.0.0.1"
SILENCE = b"\xff" * 160


def _pool(count: int = 200) -> PortPool:
    return PortPool(LOCAL, 38000 + (os.getpid() % 300) * 20, count)


def keys(suite: str = "AES_CM_128_HMAC_SHA1_80") -> tuple[SrtpKeys, SrtpKeys]:
    """Matching keys for two ends: what one sends under, the other receives under."""
    a, b = SdesKey.generate(suite), SdesKey.generate(suite)
    return SrtpKeys(a, b, 1), SrtpKeys(b, a, 1)


def libsrtp(key: SdesKey, *, inbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key.key_salt, ssrc_type=kind))


def key_pair(pair: RtpLoopback, suite: str) -> None:
    a_keys, b_keys = keys(suite)
    for session, own, other in ((pair.a, a_keys, pair.b), (pair.b, b_keys, pair.a)):
        assert session.remote is not None
        session.set_remote(session.remote, (LOCAL, other.rtcp_port), 0, "PCMU", 101, srtp=own)
        assert session.stats.srtp_suite == suite


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"])
async def test_audio_dtmf_barge_in_and_rtcp_work_unchanged_over_srtp(clock: MediaClock, suite: str) -> None:
    frames: list[Frame] = []
    async with RtpLoopback(
        port=_pool().acquire(), clock=clock, inactivity_timeout=None, rtcp_interval=0.2
    ) as pair:
        key_pair(pair, suite)
        pair.b.on_frame = frames.append
        speech = bytes(i % 100 for i in range(160 * 10))
        pair.a.enqueue(speech)
        await _until(lambda: sum(f.payload != SILENCE for f in frames) >= 10)
        assert b"".join(f.payload for f in frames if f.payload != SILENCE) == speech
        pair.a.send_dtmf("5", 80)
        async with asyncio.timeout(5):
            async for event in pair.b.events():
                if isinstance(event, DtmfReceived):
                    assert (event.event.digit, event.event.duration_ms) == ("5", 80)
                    break
        pair.a.enqueue(b"\x22" * 1600)
        assert pair.a.clear() > 0  # barge-in: the queued audio goes at once
        await _until(lambda: pair.a.stats.round_trip_ms is not None and pair.b.stats.rtcp_received >= 2)
        for session in (pair.a, pair.b):
            stats = session.stats
            assert (stats.srtp_auth_failures, stats.srtp_replays, stats.malformed) == (0, 0, 0)
            assert stats.cumulative_lost == 0 and stats.frames_concealed == 0


async def test_what_goes_out_is_srtp_and_forged_replayed_or_plain_packets_are_counted_never_played(
    clock: MediaClock,
) -> None:
    ours, theirs = keys()
    heard: list[Frame] = []
    async with (
        RtpRecorder() as peer,
        RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as other,
    ):
        session = await RtpSession.open(_pool(), clock=clock, inactivity_timeout=None, rtcp_interval=0.1)
        try:
            session.on_frame = heard.append
            session.set_remote(peer.address, peer.address, 0, "PCMU", 101, srtp=ours)
            session.enqueue(b"\x11" * 160)
            receiver = libsrtp(theirs.remote, inbound=True)
            await _until(lambda: any(is_rtcp(a.data) for a in peer.arrivals))
            await _until(
                lambda: any(
                    not is_rtcp(a.data) and b"\x11" * 160 in _plain(receiver, a.data) for a in peer.arrivals
                )
            )
            for arrival in list(peer.arrivals):
                assert b"\x11" * 16 not in arrival.data and SILENCE[:16] not in arrival.data  # never in clear
                if is_rtcp(arrival.data):
                    assert parse_rtcp(receiver.unprotect_rtcp(arrival.data))[0].ssrc == session.ssrc  # type: ignore[union-attr]
                    break

            sender = libsrtp(theirs.local, inbound=False)
            target = (LOCAL, session.local_port)

            def rtp(sequence: int) -> bytes:
                return build_rtp_header(0, False, sequence, sequence * 160, 0xCAFE) + b"\x33" * 160

            good = [sender.protect(rtp(n)) for n in range(1, 6)]
            with capture_logs() as logs:
                peer.sendto(good[0], target)
                await _until(lambda: session.stats.packets_received == 1)
                forged = good[1][:-1] + bytes([good[1][-1] ^ 0x01])  # one bit of the tag
                for packet in (forged, rtp(50), good[0], forged):
                    peer.sendto(packet, target)
                await _until(
                    lambda: session.stats.srtp_auth_failures == 3 and session.stats.srtp_replays == 1
                )
                for packet in good[1:]:
                    peer.sendto(packet, target)
                await _until(lambda: sum(f.payload == b"\x33" * 160 for f in heard) == 5)
            stats = session.stats
            assert stats.packets_received == 5 and stats.srtp_dropped == {"auth": 3, "replay": 1}
            assert not any(f.concealed for f in heard) and all(f.payload == b"\x33" * 160 for f in heard)
            dropped = [e for e in logs if e["event"] == "rtp.srtp_dropped"]
            assert len(dropped) == 1 and dropped[0]["kind"] == "auth"  # sampled: one line a second
            # Another call on the same host is undisturbed.
            other_frames: list[Frame] = []
            other.b.on_frame = other_frames.append
            other.a.enqueue(b"\x44" * 320)
            await _until(lambda: sum(f.payload == b"\x44" * 160 for f in other_frames) == 2)
            assert other.b.stats.srtp_dropped == {"auth": 0, "replay": 0}
        finally:
            session.close()


def _plain(receiver: pylibsrtp.Session, data: bytes) -> bytes:
    try:
        return RtpPacket.parse(receiver.unprotect(data)).payload
    except pylibsrtp.Error:
        return b""


async def test_set_remote_with_the_same_keys_keeps_the_context_and_new_keys_rekey(clock: MediaClock) -> None:
    ours, _ = keys()
    session = await RtpSession.open(_pool(), clock=clock, inactivity_timeout=None)
    try:
        with capture_logs() as logs:
            session.set_remote((LOCAL, 9), None, 0, "PCMU", None, srtp=ours)
            context = session.srtp
            session.set_remote((LOCAL, 9), None, 0, "PCMU", None, srtp=ours)  # a hold/resume re-INVITE
            assert session.srtp is context
            session.set_remote(
                (LOCAL, 9), None, 0, "PCMU", None, srtp=SrtpKeys(ours.local, keys()[0].remote, 1)
            )
            session.set_remote((LOCAL, 9), None, 0, "PCMU", None)
            assert session.srtp is None and session.stats.srtp_suite is None
        assert [e["event"] for e in logs if e["event"].startswith("rtp.srtp")] == [
            "rtp.srtp_started",
            "rtp.srtp_rekeyed",
            "rtp.srtp_stopped",
        ]
        rekeyed = next(e for e in logs if e["event"] == "rtp.srtp_rekeyed")
        assert (rekeyed["outbound"], rekeyed["inbound"]) == (False, True)
        assert ours.local.inline[7:] not in repr(logs)
    finally:
        session.close()
