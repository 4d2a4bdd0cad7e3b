"""RTCP XR (RFC 3611) VoIP Metrics report blocks (§4.7): what a peer that sends them says of our stream."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["RTCP_XR", "VoipMetrics", "parse_voip_metrics"]

RTCP_XR: Final = 207
BT_VOIP_METRICS: Final = 7
_VOIP_METRICS = struct.Struct("!IBBBBHHHHBBBBBBBBBBHHH")  # the block after its 4-byte header: 32 octets
_UNAVAILABLE: Final = 127  # R factor and MOS fields: "unavailable"


@dataclass(frozen=True, slots=True)
class VoipMetrics:
    """One VoIP Metrics block: the reporter's view of the stream of `ssrc` (rates as fractions 0..1)."""

    ssrc: int
    loss_rate: float
    discard_rate: float
    burst_density: float
    gap_density: float
    burst_duration_ms: int
    gap_duration_ms: int
    round_trip_ms: int
    end_system_delay_ms: int
    jb_nominal_ms: int
    r_factor: int | None
    mos_lq: float | None
    mos_cq: float | None


def parse_voip_metrics(body: bytes) -> list[VoipMetrics]:
    """The VoIP Metrics blocks of an XR packet's body (after the RTCP header); other blocks are skipped.

    A block that runs past the packet ends the walk: what came before it is kept.
    """
    blocks: list[VoipMetrics] = []
    offset = 4  # the reporter's SSRC
    while offset + 4 <= len(body):
        block_type, _, words = struct.unpack_from("!BBH", body, offset)
        end = offset + 4 * (words + 1)
        if end > len(body):
            break
        if block_type == BT_VOIP_METRICS and words == 8:
            f = _VOIP_METRICS.unpack_from(body, offset + 4)
            blocks.append(
                VoipMetrics(
                    ssrc=f[0],
                    loss_rate=f[1] / 256,
                    discard_rate=f[2] / 256,
                    burst_density=f[3] / 256,
                    gap_density=f[4] / 256,
                    burst_duration_ms=f[5],
                    gap_duration_ms=f[6],
                    round_trip_ms=f[7],
                    end_system_delay_ms=f[8],
                    r_factor=None if f[13] == _UNAVAILABLE else f[13],
                    mos_lq=None if f[15] == _UNAVAILABLE else f[15] / 10,
                    mos_cq=None if f[16] == _UNAVAILABLE else f[16] / 10,
                    jb_nominal_ms=f[19],
                )
            )
        offset = end
    return blocks
