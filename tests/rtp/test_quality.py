"""G.107 E-model scores: the formula's known points, and the scores of real RTP, clean or impaired."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from voicelive_sip.quality import (
    BPL_G711_NO_PLC,
    burst_ratio,
    call_quality,
    delay_impairment,
    mos_from_r,
    r_factor,
)
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.session import RtpSessionStats
from voicelive_sip.rtp.xr import parse_voip_metrics
from voicelive_sip.testing.rtp import RtpLoopback

PACKETS = 500  # 10 s of audio
SEED = 10  # this seeded relay drops 25 of the 500 packets: 5.0 %


def test_formula_reference_points() -> None:
    # G.107: all defaults give R = 93.2, MOS 4.41 (the G.711 ceiling); Idd is zero up to 100 ms.
    assert r_factor(0.0) == pytest.approx(93.2)
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)
    assert delay_impairment(100.0) == 0.0
    # Idd at 200 ms (X = 1): 25 * (2^(1/6) - 3 * (1 + 1/729)^(1/6) + 2).
    assert delay_impairment(200.0) == pytest.approx(25 * (2 ** (1 / 6) - 3 * (1 + 3**-6) ** (1 / 6) + 2))
    # Ie,eff for 5 % random loss, G.711 with PLC: 95 * 5 / (5 + 25.1) = 15.78.
    assert r_factor(5.0) == pytest.approx(93.2 - 95 * 5 / 30.1)
    # Without concealment the same loss costs far more; burstier loss costs more than random loss.
    assert r_factor(5.0, bpl=BPL_G711_NO_PLC) < r_factor(5.0) - 30
    assert r_factor(5.0, burst=2.0) < r_factor(5.0)
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5


def test_burst_ratio_of_random_and_bursty_loss() -> None:
    # Random loss of 5 %: runs average 1 / 0.95 packets; 1000 received, 50 lost in 47.5 runs → about 1.
    assert burst_ratio(50, 48, 950) == pytest.approx(1.0, abs=0.05)
    # The same 50 packets lost in 5 runs of 10: bursty.
    assert burst_ratio(50, 5, 950) > 5
    assert burst_ratio(0, 0, 1000) == 1.0


def _stats(**changes: object) -> RtpSessionStats:
    base: dict[str, object] = dict.fromkeys(RtpSessionStats.__dataclass_fields__, 0)
    base.update(
        fraction_lost=0.0, jitter_ms=0.0, remote_fraction_lost=None, remote_cumulative_lost=None,
        remote_jitter_ms=None, round_trip_ms=None, srtp_suite=None, ptime=20, concealment="fade",
        remote_voip_metrics=None,
    )  # fmt: skip
    base.update(changes)
    return RtpSessionStats(**base)  # type: ignore[arg-type]


def test_directions_need_data() -> None:
    assert call_quality(_stats()) == (None, None)
    stats = _stats(
        packets_expected=1000, packets_received=950, cumulative_lost=50, frames_concealed=50,
        concealment_runs=48, packets_sent=1000, remote_cumulative_lost=100, remote_jitter_ms=5.0,
        round_trip_ms=400.0,
    )  # fmt: skip
    received, sent = call_quality(stats)
    assert received is not None and sent is not None
    assert received.loss_percent == 5.0 and sent.loss_percent == 10.0
    assert received.delay_ms == 220.0 and received.r_factor < 93.2 - 95 * 5 / 30.1  # the delay costs too
    assert sent.mos < received.mos


async def _run(relay: dict[str, object] | None, port_offset: int) -> tuple[RtpSessionStats, int]:
    async with (
        MediaClock() as clock,
        RtpLoopback(
            port=24000 + (os.getpid() % 300) * 40 + port_offset,
            clock=clock,
            relay_options=relay,
            inactivity_timeout=None,
        ) as pair,
    ):
        pair.a.enqueue(bytes(range(1, 161)) * PACKETS)
        async with asyncio.timeout(30):
            while pair.a.outbound.buffered_seconds > 0 or pair.a.stats.packets_sent < PACKETS:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the relay's delayed packets land
        dropped = len(pair.relay.dropped) if pair.relay is not None else 0
        return pair.b.stats, dropped


async def test_clean_loopback_scores_the_g711_ceiling() -> None:
    stats, _ = await _run(None, 0)
    received, _sent = call_quality(stats)
    assert received is not None
    assert received.loss_percent == 0.0
    assert received.mos >= 4.3


async def test_five_percent_loss_and_30ms_jitter_land_in_the_g107_band() -> None:
    stats, dropped = await _run({"loss": 0.05, "jitter": 0.03, "seed": SEED}, 20)
    received, _sent = call_quality(stats)
    assert received is not None and dropped > 0
    # The band G.107 predicts for the impairment actually applied: the loss is at least what the relay
    # dropped (plus packets too late to play); one-way delay at most RTT/2 + ptime + 2 x 30 ms, under 100 ms
    # on loopback (so Idd = 0); the relay drops at random, so BurstR about 1.
    expected = dropped / stats.packets_expected * 100
    assert (
        round(expected, 2)
        <= received.loss_percent
        <= round(expected + 100 * stats.late / stats.packets_expected, 2)
    )
    assert 0.7 <= received.burst_ratio <= 1.4
    assert received.delay_ms <= 20 + 2 * 30 + 5
    best = mos_from_r(r_factor(expected, burst=0.7))
    worst = mos_from_r(r_factor(received.loss_percent, burst=1.4, delay_ms=20 + 2 * 30 + 5))
    assert worst - 0.01 <= received.mos <= best + 0.01
    # And near G.107's point for exactly 5 % random loss (MOS 3.92): a clearly impaired, still fair call.
    assert 3.6 <= received.mos <= 4.1


def _xr(reporter: int, about: int, *, loss: int, discard: int, rtt: int, jb: int, mos_cq: int) -> bytes:
    block = struct.pack(
        "!BBHIBBBBHHHHBBBBBBBBBBHHH",
        7, 0, 8, about, loss, discard, 0, 0, 0, 0, rtt, 0, 0, 0, 0, 0, 93, 127, 41, mos_cq, 0, 0, jb, 0, 0,
    )  # fmt: skip
    other = struct.pack("!BBHI", 4, 0, 2, 0) + b"\0" * 4  # a Receiver Reference Time block: skipped
    body = struct.pack("!I", reporter) + other + block
    return struct.pack("!BBH", 0x80, 207, len(body) // 4) + body


def test_rtcp_xr_voip_metrics_parse() -> None:
    packet = _xr(1, 2, loss=13, discard=26, rtt=150, jb=60, mos_cq=127)
    (metrics,) = parse_voip_metrics(packet[4:])
    assert metrics.ssrc == 2 and metrics.loss_rate == 13 / 256 and metrics.discard_rate == 26 / 256
    assert (metrics.round_trip_ms, metrics.jb_nominal_ms, metrics.r_factor) == (150, 60, 93)
    assert metrics.mos_lq == 4.1 and metrics.mos_cq is None  # 127: unavailable
    assert parse_voip_metrics(packet[4:-8]) == []  # a block cut short is not read


async def test_the_peers_rtcp_xr_scores_what_it_heard_of_us() -> None:
    async with (
        MediaClock() as clock,
        RtpLoopback(port=24000 + (os.getpid() % 300) * 40 + 30, clock=clock, inactivity_timeout=None) as pair,
    ):
        xr = _xr(pair.b.ssrc, pair.a.ssrc, loss=13, discard=13, rtt=200, jb=80, mos_cq=38)
        pair.a.rtcp_received(xr, ("127.0.0.1", pair.b.rtcp_port))
        pair.a.rtcp_received(
            _xr(pair.b.ssrc, 12345, loss=0, discard=0, rtt=0, jb=0, mos_cq=44), ("127.0.0.1", 9)
        )
        stats = pair.a.stats
    _received, sent = call_quality(stats)
    assert sent is not None and sent.source == "rtcp-xr" and sent.peer_mos == 3.8
    # Loss and discards together (26/256 = 10.2 %); Ta = 200 / 2 + 20 + 80 = 200 ms.
    assert sent.loss_percent == round(100 * 26 / 256, 2) and sent.delay_ms == 200.0
    assert sent.r_factor == round(r_factor(100 * 26 / 256, delay_ms=200.0), 1)
