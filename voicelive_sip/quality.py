"""Call quality as ITU-T G.107 (E-model) R-factor and MOS-CQ, per direction, from RTP/RTCP statistics.

Computed once, at the end of a call (never per packet). The formula, its inputs and the figures it gives are
in docs/observability.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from .rtp.session import RtpSessionStats

__all__ = [
    "BPL_G711_NO_PLC",
    "BPL_G711_PLC",
    "DirectionQuality",
    "burst_ratio",
    "call_quality",
    "delay_impairment",
    "mos_from_r",
    "r_factor",
]

# G.107 (06/2015) default transmission rating with every parameter at its default value (Ro - Is - Id at
# T = Ta = 0, echo well controlled): 93.2.
R_DEFAULT: Final = 93.2
# G.113 Appendix I, Table I.3: G.711 has Ie = 0; its packet-loss robustness Bpl is 25.1 with the
# Appendix I packet loss concealment (frame repetition with fade, as our jitter buffer does) and 4.3 without.
IE_G711: Final = 0.0
BPL_G711_PLC: Final = 25.1
BPL_G711_NO_PLC: Final = 4.3


@dataclass(frozen=True, slots=True)
class DirectionQuality:
    """The E-model's score of one direction of a call, with the inputs it came from."""

    r_factor: float
    mos: float
    loss_percent: float  # Ppl: lost (and, received, late-discarded) packets in percent of those expected
    burst_ratio: float  # BurstR: 1 for random loss, above 1 for bursty loss
    delay_ms: float  # Ta: one-way mouth-to-ear delay estimate (RTT/2 + ptime + 2 x jitter)
    jitter_ms: float
    round_trip_ms: float | None
    source: str = "rtp"  # where the figures come from: our own RTP reception, the peer's "rtcp" or "rtcp-xr"
    peer_mos: float | None = None  # the peer's own MOS-CQ estimate, when its RTCP XR carries one


def delay_impairment(ta_ms: float) -> float:
    """Idd of G.107 §7.3 (mT = 100 ms, sT = 1): the impairment of a one-way delay `ta_ms`."""
    if ta_ms <= 100.0:
        return 0.0
    x = math.log10(ta_ms / 100.0) / math.log10(2.0)
    return 25.0 * (math.pow(1 + x**6, 1 / 6) - 3 * math.pow(1 + (x / 3) ** 6, 1 / 6) + 2)


def r_factor(
    loss_percent: float,
    *,
    burst: float = 1.0,
    delay_ms: float = 0.0,
    ie: float = IE_G711,
    bpl: float = BPL_G711_PLC,
    advantage: float = 0.0,
) -> float:
    """G.107 R = Ro - Is - Id - Ie,eff + A with Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)."""
    ppl = max(0.0, loss_percent)
    ie_eff = ie + (95.0 - ie) * ppl / (ppl / max(burst, 1e-6) + bpl)
    return R_DEFAULT - delay_impairment(delay_ms) - ie_eff + advantage


def mos_from_r(r: float) -> float:
    """G.107 Annex B: MOS-CQ from R (1 below R = 0, 4.5 above R = 100)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def burst_ratio(lost: int, loss_events: int, received: int) -> float:
    """G.107 BurstR = 1 / (p + q) of the two-state Markov model fitted to the counts.

    p (found → lost) is loss runs per received packet, q (lost → found) one over the mean run length.
    """
    if lost <= 0 or loss_events <= 0 or received <= 0:
        return 1.0
    p = loss_events / received
    q = loss_events / lost
    return 1.0 / (p + q)


def _score(
    loss_percent: float,
    burst: float,
    jitter_ms: float,
    rtt_ms: float | None,
    ptime: int,
    bpl: float,
    *,
    buffer_ms: float | None = None,
    source: str = "rtp",
    peer_mos: float | None = None,
) -> DirectionQuality:
    # An adaptive jitter buffer holds about two jitters' worth (unless the peer says what its holds);
    # packetization adds one frame (G.711 has no look-ahead); the network's share is half the RTCP round trip
    # when the reports give one.
    delay = (rtt_ms or 0.0) / 2 + ptime + (2 * jitter_ms if buffer_ms is None else buffer_ms)
    r = r_factor(loss_percent, burst=burst, delay_ms=delay, bpl=bpl)
    return DirectionQuality(
        r_factor=round(r, 1),
        mos=round(mos_from_r(r), 2),
        loss_percent=round(loss_percent, 2),
        burst_ratio=round(burst, 2),
        delay_ms=round(delay, 1),
        jitter_ms=round(jitter_ms, 2),
        round_trip_ms=None if rtt_ms is None else round(rtt_ms, 1),
        source=source,
        peer_mos=peer_mos,
    )


def call_quality(stats: RtpSessionStats) -> tuple[DirectionQuality | None, DirectionQuality | None]:
    """(received, sent): what the agent heard of the caller, and what the caller heard of the agent.

    None for a direction without data: nothing received, or no RTCP receiver report from the peer.
    """
    rtt = stats.round_trip_ms
    received = None
    if stats.packets_expected > 0:
        # A packet that came after its slot was concealed is as lost to the listener as one that never came;
        # runs are counted in playout order (after reordering), so a reordered packet is no loss event.
        heard_lost = min(stats.packets_expected, max(0, stats.cumulative_lost) + stats.late)
        concealed = stats.frames_concealed
        burst = burst_ratio(concealed, stats.concealment_runs, stats.packets_expected - concealed)
        bpl = BPL_G711_NO_PLC if stats.concealment == "silence" else BPL_G711_PLC
        percent = 100.0 * heard_lost / stats.packets_expected
        received = _score(percent, burst, stats.jitter_ms, rtt, stats.ptime, bpl)
    sent = None
    xr = stats.remote_voip_metrics
    if xr is not None:
        # RFC 3611 §4.7: the peer's own loss and jitter-buffer discards, its round trip and buffer depth.
        percent = 100.0 * min(1.0, xr.loss_rate + xr.discard_rate)
        sent = _score(
            percent, 1.0, stats.remote_jitter_ms or 0.0, xr.round_trip_ms or rtt, stats.ptime, BPL_G711_PLC,
            buffer_ms=float(xr.jb_nominal_ms), source="rtcp-xr", peer_mos=xr.mos_cq,
        )  # fmt: skip
    elif stats.remote_cumulative_lost is not None and stats.packets_sent > 0:
        percent = 100.0 * min(1.0, max(0, stats.remote_cumulative_lost) / stats.packets_sent)
        # The peer's reports carry no run lengths (that is RTCP XR's); its concealment is unknown: assume
        # the random loss and Appendix I PLC of a typical G.711 phone.
        sent = _score(
            percent, 1.0, stats.remote_jitter_ms or 0.0, rtt, stats.ptime, BPL_G711_PLC, source="rtcp"
        )
    return received, sent
