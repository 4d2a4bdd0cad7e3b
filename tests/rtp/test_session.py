"""RtpSession on 127.0.0.1: port pool, audio both ways, latching, SSRC changes, hold, timeout, RTCP, DTMF."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket

import pytest

from tests.rtp.conftest import until as _until
from voicelive_sip.codecs import Codec
from voicelive_sip.media import ByeReceived, DtmfReceived, MediaEvent, MediaTimeout, SsrcChanged
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.jitter import Frame
from voicelive_sip.rtp.packet import RtpPacket, is_rtcp, parse_rtcp
from voicelive_sip.rtp.session import PortPool, PortPoolExhausted, RtpSession
from voicelive_sip.testing.rtp import RtpLoopback, RtpRecorder

LOCAL = "127.0.0.1"


def _pool(count: int = 400) -> PortPool:
    # A range per test process keeps parallel runs by other engineers out of each other's way.
    return PortPool(LOCAL, 30000 + (os.getpid() % 500) * 40, count)


def test_pool_hands_out_even_ports_and_exhausts_clearly() -> None:
    pool = PortPool("0.0.0.0", 10001, 8)  # 10001-10008: pairs 10002/3, 10004/5, 10006/7; 10009 is outside
    ports = [pool.acquire() for _ in range(pool.capacity)]
    assert ports == [10002, 10004, 10006]
    with pytest.raises(PortPoolExhausted):
        pool.acquire()
    pool.release(10004)
    assert pool.acquire() == 10004
    with pytest.raises(ValueError):
        pool.release(12345)


def test_pool_10000_cycles_leak_nothing() -> None:
    pool = PortPool()
    assert pool.capacity == 500
    held: list[int] = []
    for i in range(10_000):
        held.append(pool.acquire())
        if i % 3 == 0 or len(held) > 100:
            for port in held:
                pool.release(port)
            held.clear()
    for port in held:
        pool.release(port)
    assert (pool.available, pool.in_use) == (500, 0)
    assert sorted(pool.acquire() for _ in range(500)) == list(range(10000, 11000, 2))


async def test_real_socket_cycles_return_ports_and_file_descriptors() -> None:
    pool = _pool(8)  # four pairs: every port is reused many times
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        session = await RtpSession.open(pool)
        session.close()
        session.close()  # idempotent
    await asyncio.sleep(0.01)  # asyncio closes the sockets on its next iteration
    assert (pool.in_use, pool.available) == (0, 4)
    assert len(os.listdir("/proc/self/fd")) == fds_before
    sessions = [await RtpSession.open(pool) for _ in range(4)]
    with pytest.raises(PortPoolExhausted):
        await RtpSession.open(pool)
    for session in sessions:
        session.close()


async def test_busy_port_is_skipped() -> None:
    pool = _pool(8)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first = pool.acquire()
    pool.release(first)  # so the first port the pool hands out is `first`... held by someone else
    pool = PortPool(LOCAL, first, 8)
    blocker.bind((LOCAL, first))
    try:
        session = await RtpSession.open(pool)
        assert session.local_port != first and session.local_port % 2 == 0
        session.close()
        assert pool.in_use == 0
    finally:
        blocker.close()


async def test_audio_flows_both_ways_in_order(clock: MediaClock) -> None:
    received: dict[str, list[Frame]] = {"a": [], "b": []}
    async with RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as pair:
        pair.a.on_frame = received["b"].append  # what a receives came from b
        pair.b.on_frame = received["a"].append
        speech = bytes(i % 100 for i in range(160 * 10))
        pair.a.enqueue(speech)
        pair.b.enqueue(speech[::-1])
        await _until(lambda: sum(f.payload != b"\xff" * 160 for f in received["a"]) >= 10)
        await _until(lambda: sum(f.payload != b"\xff" * 160 for f in received["b"]) >= 10)
        for origin, data in (("a", speech), ("b", speech[::-1])):
            frames = received[origin]
            assert [f.sequence for f in frames] == list(range(frames[0].sequence, frames[-1].sequence + 1))
            audio = b"".join(f.payload for f in frames if f.payload != b"\xff" * 160)
            assert audio == data
            assert not any(f.concealed for f in frames)


async def test_wire_format_timestamps_marker_and_silence(clock: MediaClock) -> None:
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), clock=clock, inactivity_timeout=None)
        try:
            session.set_remote(peer.address, None, 8, "PCMA", None)
            await peer.wait_for(3)
            session.enqueue(b"\x11" * 480)
            await _until(lambda: any(p.payload == b"\x11" * 160 for p in peer.packets()))
            await peer.wait_for(len(peer.arrivals) + 5)
        finally:
            session.close()
    packets = [p for p in peer.packets() if p.payload_type == 8]
    assert all(p.ssrc == session.ssrc for p in packets)
    assert [(b.sequence_number - a.sequence_number) & 0xFFFF for a, b in itertools.pairwise(packets)] == [
        1
    ] * (len(packets) - 1)
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)}
    assert steps == {160}  # samples, not bytes or milliseconds
    first_audio = next(i for i, p in enumerate(packets) if p.payload == b"\x11" * 160)
    assert packets[first_audio].marker
    assert not any(p.marker for i, p in enumerate(packets) if i != first_audio)
    assert packets[0].payload == b"\xd5" * 160  # A-law silence while the buffer is empty
    assert [p.payload for p in packets[first_audio : first_audio + 3]] == [b"\x11" * 160] * 3
    assert not any(is_rtcp(a.data) for a in peer.arrivals)  # without rtcp-mux, RTCP goes to port + 1


def _rtp(seq: int, ssrc: int = 0x1234, pt: int = 0, payload: bytes = b"\x55" * 160) -> bytes:
    return RtpPacket(pt, seq, seq * 160, ssrc, payload).serialize()


async def test_symmetric_rtp_latches_after_probation_and_strangers_cannot_hijack(clock: MediaClock) -> None:
    frames: list[Frame] = []
    async with RtpRecorder() as signalled, RtpRecorder() as real, RtpRecorder() as stranger:
        session = await RtpSession.open(_pool(), clock=clock, on_frame=frames.append, inactivity_timeout=None)
        try:
            session.set_remote(signalled.address, None, 0, "PCMU", 101)
            await signalled.wait_for(1)
            target = (LOCAL, session.local_port)
            stranger.sendto(_rtp(0, pt=96), target)  # wrong payload type: not a candidate
            # The caller behind NAT: its media comes from another port of the SDP host. It is believed after
            # four in-sequence packets of one SSRC (strict RTP probation), not at the first.
            for seq in range(1, 4):
                real.sendto(_rtp(seq), target)
            await asyncio.sleep(0.05)
            assert session.send_address == signalled.address
            real.sendto(_rtp(4), target)
            await real.wait_for(2)  # now our media goes where the caller's comes from (NAT)
            assert session.send_address == real.address
            stranger.sendto(_rtp(5, ssrc=0x9999), target)
            stranger.sendto(_rtp(6, ssrc=0x1234), target)
            real.sendto(_rtp(5), target)
            await _until(lambda: len(frames) >= 2)
            await asyncio.sleep(0.05)
            assert session.send_address == real.address
            assert [f.payload for f in frames] == [b"\x55" * 160] * 2
            assert session.stats.foreign == 6  # the wrong type, three on probation, two strangers
            assert session.stats.ssrc_changes == 0
        finally:
            session.close()


def _socket_on(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


async def test_an_rtp_sprayer_on_another_host_captures_nothing_before_or_after_the_caller(
    clock: MediaClock,
) -> None:
    frames: list[Frame] = []
    sprayer = _socket_on("127.0.0.2")  # all of 127.0.0.0/8 is loopback on Linux: another "host"
    async with RtpRecorder() as caller:
        session = await RtpSession.open(_pool(), clock=clock, on_frame=frames.append, inactivity_timeout=None)
        try:
            session.set_remote(caller.address, None, 0, "PCMU", None, peer_host="127.0.0.1")
            target = (LOCAL, session.local_port)
            for seq in range(
                20
            ):  # in sequence, one SSRC, right payload type, before the caller's first packet
                sprayer.sendto(_rtp(seq, ssrc=0xBAD), target)
            await asyncio.sleep(0.05)
            assert session.send_address == caller.address and frames == []
            for seq in range(100, 103):
                caller.sendto(_rtp(seq, ssrc=0x600D), target)
            for seq in range(20, 40):  # and after it
                sprayer.sendto(_rtp(seq, ssrc=0x600D), target)
            await _until(lambda: len(frames) == 3)
            await asyncio.sleep(0.05)
            assert session.send_address == caller.address and len(frames) == 3
            assert session.stats.foreign == 40
        finally:
            session.close()
            sprayer.close()


async def test_a_quiet_source_is_kept_from_strangers_but_follows_its_own_stream_to_a_new_port(
    clock: MediaClock,
) -> None:
    async with RtpRecorder() as signalled, RtpRecorder() as rebound, RtpRecorder() as stranger:
        session = await RtpSession.open(_pool(), clock=clock, inactivity_timeout=None, relatch_after=0.1)
        try:
            session.set_remote(signalled.address, None, 0, "PCMU", None)
            target = (LOCAL, session.local_port)
            signalled.sendto(_rtp(1, ssrc=7), target)
            await asyncio.sleep(0.2)  # the caller pauses: quiet longer than relatch_after
            for seq in range(50, 60):  # another stream from the same host: not the caller's SSRC
                stranger.sendto(_rtp(seq, ssrc=8), target)
            await asyncio.sleep(0.05)
            assert session.send_address == signalled.address
            for seq in range(2, 6):  # the caller's own stream, next numbers, from a new port (NAT rebinding)
                rebound.sendto(_rtp(seq, ssrc=7), target)
            await _until(lambda: session.send_address == rebound.address)
        finally:
            session.close()


async def test_media_from_outside_sip_allow_from_is_dropped(clock: MediaClock) -> None:
    outsider = _socket_on("127.0.0.3")
    async with RtpRecorder() as caller:
        session = await RtpSession.open(
            _pool(), clock=clock, inactivity_timeout=None, allow_from=("127.0.0.1/32",)
        )
        try:
            session.set_remote(("127.0.0.3", outsider.getsockname()[1]), None, 0, "PCMU", None)
            target = (LOCAL, session.local_port)
            outsider.sendto(_rtp(1), target)  # even from the SDP address itself
            caller.sendto(_rtp(1), target)
            await asyncio.sleep(0.05)
            assert session.stats.foreign == 2 and session.stats.packets_received == 0
        finally:
            session.close()
            outsider.close()


async def test_with_confirm_first_nothing_is_sent_until_rtp_came_from_the_peer(clock: MediaClock) -> None:
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), clock=clock, inactivity_timeout=None)
        try:
            session.set_remote(peer.address, None, 0, "PCMU", None, confirm_first=True)
            await asyncio.sleep(0.1)  # five ticks of the media clock
            assert len(peer.arrivals) == 0 and session.send_address is None
            peer.sendto(_rtp(1), (LOCAL, session.local_port))
            await peer.wait_for(2)
            assert session.send_address == peer.address
        finally:
            session.close()


def test_ports_are_handed_out_at_random_from_the_older_half() -> None:
    pool = PortPool(LOCAL, 20000, 200)  # 100 pairs
    first = [pool.acquire() for _ in range(10)]
    assert first != list(range(20000, 20020, 2))  # not simply in order
    for port in first:
        pool.release(port)
    # The ports just released are at the back: the next 45 come from the 90 that were free longer.
    following = {pool.acquire() for _ in range(45)}
    assert following.isdisjoint(first)


async def test_without_symmetric_rtp_media_goes_to_the_signalled_address(clock: MediaClock) -> None:
    async with RtpRecorder() as signalled, RtpRecorder() as real:
        session = await RtpSession.open(_pool(), clock=clock, symmetric=False, inactivity_timeout=None)
        try:
            session.set_remote(signalled.address, None, 0, "PCMU", None)
            real.sendto(_rtp(1), (LOCAL, session.local_port))
            await signalled.wait_for(5)
            assert len(real.arrivals) == 0
        finally:
            session.close()


async def test_ssrc_change_malformed_and_foreign_packets() -> None:
    events: list[MediaEvent] = []
    frames: list[Frame] = []
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), on_frame=frames.append, on_event=events.append)
        try:
            session.set_remote(peer.address, None, 0, "PCMU", None)
            target = (LOCAL, session.local_port)
            for seq in range(3):
                peer.sendto(_rtp(seq, ssrc=1), target)
            for junk in (b"\x80", b"\x00" * 5, b"\x40" + b"\x00" * 20, b"\xa0" + b"\x00" * 11 + b"\x09"):
                peer.sendto(junk, target)
            for seq in range(40000, 40003):  # a restarted stream: new SSRC, new numbering
                peer.sendto(_rtp(seq, ssrc=2), target)
            await _until(lambda: len(frames) == 6)
            assert [e for e in events if isinstance(e, SsrcChanged)] == [
                SsrcChanged(None, 1),
                SsrcChanged(1, 2),
            ]
            stats = session.stats
            assert (stats.malformed, stats.ssrc_changes, stats.frames_concealed) == (4, 1, 0)
            assert stats.cumulative_lost == 0
        finally:
            session.close()


async def test_inactivity_raises_an_event_and_silence_with_rtcp_does_not() -> None:
    pool = _pool()
    quiet = await RtpSession.open(pool, inactivity_timeout=0.15)
    try:
        quiet.set_remote((LOCAL, 9), None, 0, "PCMU", None)
        async with asyncio.timeout(5):
            async for event in quiet.events():
                assert isinstance(event, MediaTimeout) and event.idle >= 0.15
                break
        quiet.set_direction("sendonly")  # on hold from our side: we expect nothing, so no timeout
        await asyncio.sleep(0.3)
        assert quiet._events.empty()
    finally:
        quiet.close()


async def test_hold_directions(clock: MediaClock) -> None:
    frames: list[Frame] = []
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), clock=clock, on_frame=frames.append, inactivity_timeout=None)
        try:
            session.set_remote(peer.address, None, 0, "PCMU", None)
            await peer.wait_for(2)
            session.set_direction("recvonly")
            await asyncio.sleep(0.05)
            count = len(peer.arrivals)
            await asyncio.sleep(0.1)
            assert len(peer.arrivals) == count  # recvonly: nothing sent
            peer.sendto(_rtp(1), (LOCAL, session.local_port))
            await _until(lambda: len(frames) == 1)
            session.set_direction("inactive")
            peer.sendto(_rtp(2), (LOCAL, session.local_port))
            await asyncio.sleep(0.1)
            assert len(frames) == 1 and len(peer.arrivals) == count and session.stats.ignored == 1
            session.set_direction("sendrecv")
            session.enqueue(b"\x01" * 160)
            await _until(lambda: any(p.payload == b"\x01" * 160 for p in peer.packets()))
            resumed = next(p for p in peer.packets() if p.payload == b"\x01" * 160)
            assert resumed.marker
        finally:
            session.close()


async def test_rtcp_reports_loss_jitter_and_round_trip(clock: MediaClock) -> None:
    events: list[MediaEvent] = []
    async with RtpLoopback(
        port=_pool().acquire(), clock=clock, rtcp_interval=0.2, inactivity_timeout=None
    ) as pair:
        pair.b.on_event = events.append
        await _until(lambda: pair.a.stats.round_trip_ms is not None and pair.b.stats.rtcp_received >= 2)
        a_stats = pair.a.stats
        assert a_stats.remote_cumulative_lost == 0 and a_stats.remote_jitter_ms is not None
        assert a_stats.round_trip_ms is not None and 0 <= a_stats.round_trip_ms < 1000
        assert pair.b.stats.packets_received > 0
        pair.a.close()
        await _until(lambda: any(isinstance(e, ByeReceived) for e in events))


async def test_rtcp_mux_demultiplexes_on_the_rtp_port(clock: MediaClock) -> None:
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), clock=clock, rtcp_interval=0.1, inactivity_timeout=None)
        try:
            session.set_remote(peer.address, None, 0, "PCMU", None, rtcp_mux=True)
            assert session.rtcp_port == session.local_port
            await _until(lambda: any(is_rtcp(a.data) for a in peer.arrivals))
            report = next(parse_rtcp(a.data) for a in peer.arrivals if is_rtcp(a.data))
            assert report[0].ssrc == session.ssrc  # type: ignore[union-attr]
            peer.sendto(_rtp(1, ssrc=7), (LOCAL, session.local_port))
            await _until(lambda: session.stats.packets_received == 1)
            rr = bytes.fromhex("80 c9 00 01 00 00 00 07")
            peer.sendto(rr, (LOCAL, session.local_port))
            await _until(lambda: session.stats.rtcp_received == 1)
            assert session.stats.malformed == 0
        finally:
            session.close()


async def test_dtmf_end_to_end_and_audio_resumes(clock: MediaClock) -> None:
    frames: list[Frame] = []
    async with RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as pair:
        pair.b.on_frame = frames.append
        pair.a.send_dtmf("#", 120)
        pair.a.send_dtmf("7", 60)
        pair.a.enqueue(b"\x22" * 320)
        digits = []
        async with asyncio.timeout(5):
            async for event in pair.b.events():
                if isinstance(event, DtmfReceived):
                    digits.append((event.event.digit, event.event.duration_ms))
                    if len(digits) == 2:
                        break
        assert digits == [("#", 120), ("7", 60)]
        await _until(lambda: sum(f.payload == b"\x22" * 160 for f in frames) == 2)
        assert pair.b.stats.frames_concealed == 0 and pair.b.stats.cumulative_lost == 0
        with pytest.raises(ValueError):
            pair.a.send_dtmf("Z")


async def test_barge_in_clear_and_played_ms(clock: MediaClock) -> None:
    async with RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as pair:
        mark = pair.a.played_ms
        pair.a.enqueue(b"\x10" * 8000)  # one second of agent audio
        assert pair.a.queued_ms == 1000
        await _until(lambda: pair.a.played_ms - mark >= 100)
        dropped = pair.a.clear()
        played = pair.a.played_ms - mark
        assert played % 20 == 0 and dropped == 8000 - played * 8
        assert pair.a.queued_ms == 0
        await asyncio.sleep(0.1)
        assert pair.a.played_ms - mark == played  # nothing more of the reply goes out


async def test_the_playout_position_counts_audio_not_padding_and_survives_a_codec_change(
    clock: MediaClock,
) -> None:
    async with RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as pair:
        pair.a.enqueue(b"\x10" * 200)  # 25 ms: one frame and a tail the clock pads with silence
        assert pair.a.queued_ms == 25
        await _until(lambda: pair.a.queued_ms == 0 and pair.a.outbound.played_frames == 2)
        assert pair.a.played_ms == 25  # the 15 ms of padding were not the agent's audio
        remote = pair.a.remote
        assert remote is not None
        pair.a.set_remote(remote, payload_type=8, codec="alaw")  # re-INVITE to PCMA: a new outbound buffer
        assert pair.a.codec is Codec.PCMA
        assert pair.a.played_ms == 25
        pair.a.enqueue(b"\x10" * 160)
        await _until(lambda: pair.a.played_ms == 45)


async def test_set_remote_refuses_a_codec_the_engine_lacks(clock: MediaClock) -> None:
    async with RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as pair:
        with pytest.raises(ValueError, match="unsupported codec 'opus'"):
            pair.a.set_remote(("127.0.0.1", 9), codec="opus")
        with pytest.raises(ValueError, match="unsupported codec 'G729'"):
            pair.a.set_remote(("127.0.0.1", 9), codec="G729")


async def test_frames_async_iterator_and_close_ends_it(clock: MediaClock) -> None:
    async with RtpLoopback(port=_pool().acquire(), clock=clock, inactivity_timeout=None) as pair:
        got = []
        async with asyncio.timeout(5):
            async for frame in pair.b.frames():
                got.append(frame)
                if len(got) == 3:
                    pair.b.close()
        assert len(got) >= 3


async def test_outbound_buffer_is_bounded() -> None:
    session = await RtpSession.open(_pool(), outbound_seconds=0.5)
    try:
        assert session.enqueue(b"\x00" * 8000) == 4000
        assert session.stats.outbound_dropped_bytes == 4000
    finally:
        session.close()


async def test_a_session_takes_its_configuration_as_plain_options_or_single_fields() -> None:
    from voicelive_sip.config import MediaSettings
    from voicelive_sip.rtp import RtpOptions

    pool = _pool(8)
    options = RtpOptions(symmetric=False, outbound_seconds=0.5, cname="a@b")
    plain = await RtpSession.open(pool, options=options)
    one_field = await RtpSession.open(pool, options=RtpOptions(symmetric=False), inactivity_timeout=None)
    settings = MediaSettings(symmetric_rtp=False, inactivity_timeout=7.0, outbound_buffer_seconds=2.0)
    product = await RtpSession.open(pool, options=settings.rtp_options())
    try:
        assert (plain.symmetric, plain.cname, plain.options.outbound_seconds) == (False, "a@b", 0.5)
        assert plain.enqueue(b"\xff" * 8000) < 8000  # half a second of G.711 fits, not one second
        assert (one_field.symmetric, one_field.inactivity_timeout) == (False, None)
        assert product.options == RtpOptions(symmetric=False, inactivity_timeout=7.0, outbound_seconds=2.0)
    finally:
        for session in (plain, one_field, product):
            session.close()


async def test_a_hold_that_lasts_past_the_hold_limit_ends_the_media_and_a_resume_before_it_does_not() -> None:
    pool = _pool()
    held = await RtpSession.open(pool, inactivity_timeout=None, hold_timeout=0.2)
    resumed = await RtpSession.open(pool, inactivity_timeout=None, hold_timeout=0.2)
    try:
        for session in (held, resumed):
            session.set_remote((LOCAL, 9), None, 0, "PCMU", None)
            session.set_direction("inactive")  # a=inactive: nobody sends media, RTCP may still flow
        resumed.set_direction("sendrecv")
        async with asyncio.timeout(5):
            async for event in held.events():
                assert isinstance(event, MediaTimeout) and event.on_hold and event.idle >= 0.2
                break
        assert resumed._events.empty()  # off hold: the hold limit no longer applies (inactivity is off)
    finally:
        held.close()
        resumed.close()
