"""CPU per call: G.722 (decoded and encoded with PyAV, PCM16 16 kHz to Voice Live) next to G.711 pass-through.

    python -m benchmarks.g722 --calls 50 --seconds 10 [--rounds 3] [--json g722.json]

One process, one core. For each codec, `--calls` gateway legs (`RtpSession`, real UDP sockets on 127.0.0.1)
carry `--seconds` of full-duplex audio, driven tick by tick as fast as they go: every 20 ms tick each leg
receives one RTP packet (SRTP off) through `datagram_received` (latching, statistics, jitter buffer, G.722
decode for G.722), hands the frame to the uplink as the bridge does (`append_event`: base64 into the JSON of
`input_audio_buffer.append`), takes one 20 ms `response.audio.delta` from the downlink as the protocol does
(`json.loads`, base64 decode, `enqueue`), and sends one packet from its clock tick (`on_tick`: G.722 encode
for G.722, `sendto`). The two codecs run in alternating rounds (G.711, G.722, G.711, ...), so they share the
host's minute; each figure is the best round. CPU is `time.process_time()` over the round, per call-second of
audio; "% core" is what one call costs of one core, "calls/core" its inverse (media path only: SIP, the
WebSocket's own framing and the Voice Live SDK are the same for both codecs and not included).
The codec alone (one 20 ms encode plus one decode through `G722Encoder`/`G722Decoder`) is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import json
import pathlib
import platform
import socket
import time
from collections.abc import Sequence

import av
import numpy as np

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.g722 import G722Decoder, G722Encoder
from voicelive_sip.codecs.names import Codec
from voicelive_sip.rtp.packet import RtpPacket
from voicelive_sip.rtp.session import PortPool, RtpSession
from voicelive_sip.voicelive.protocol import append_event

LOCAL = "127.0.0.1"
TICKS_PER_SECOND = 50
SSRC = 0x5EED5EED


def _speechlike(rate: int, seconds: float) -> np.ndarray:
    """A buzz with harmonics and a slow envelope: ADPCM does real work on it (not a constant)."""
    t = np.arange(int(rate * seconds)) / rate
    wave = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return np.asarray(wave / np.max(np.abs(wave)) * envelope * 12000, dtype=np.int16)


def _media(codec: Codec, ticks: int) -> tuple[list[bytes], list[bytes]]:
    """(RTP payloads the caller sends, JSON audio deltas Voice Live sends), one per tick."""
    pcm = _speechlike(codec.sample_rate, ticks / TICKS_PER_SECOND)
    frame = codec.sample_rate // TICKS_PER_SECOND
    frames = [pcm[i * frame : (i + 1) * frame] for i in range(ticks)]
    law = codec.law
    if law is not None:
        payloads = [g711.encode(law, f) for f in frames]
        leg = payloads
    else:
        encoder = G722Encoder()
        payloads = [encoder.encode(f.astype("<i2").tobytes()) for f in frames]
        leg = [f.astype("<i2").tobytes() for f in frames]
    deltas = [
        json.dumps(
            {
                "type": "response.audio.delta",
                "response_id": "resp_1",
                "item_id": "item_1",
                "output_index": 0,
                "content_index": 0,
                "delta": binascii.b2a_base64(data, newline=False).decode("ascii"),
            }
        ).encode()
        for data in leg
    ]
    return payloads, deltas


async def _round(codec: Codec, calls: int, seconds: float, base_port: int) -> float:
    """CPU seconds of one round: `calls` legs, `seconds` of audio each."""
    ticks = int(seconds * TICKS_PER_SECOND)
    payloads, deltas = _media(codec, ticks)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: what we send is dropped there
    sink.bind((LOCAL, 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer = sink.getsockname()
    pool = PortPool(LOCAL, base_port, 8 * calls + 16)  # room to skip ports other processes hold
    legs: list[RtpSession] = []
    uplink: list[int] = [0]
    try:
        for _ in range(calls):
            leg = await RtpSession.open(pool, inactivity_timeout=None, rtcp_interval=3600.0)
            leg.set_remote(peer, None, codec.payload_type, codec, None)
            leg.receive(lambda frame: uplink.__setitem__(0, uplink[0] + len(append_event(frame))))
            legs.append(leg)
        packets = [
            RtpPacket(codec.payload_type, n & 0xFFFF, n * 160 & 0xFFFFFFFF, SSRC, payloads[n]).serialize()
            for n in range(ticks)
        ]
        loads, a2b = json.loads, binascii.a2b_base64
        start = time.process_time()
        for tick in range(ticks):
            packet, delta = packets[tick], deltas[tick]
            for leg in legs:
                leg.datagram_received(packet, peer)
                leg.enqueue(a2b(loads(delta)["delta"]))
                leg.on_tick(tick)
        used = time.process_time() - start
        sent = sum(leg.stats.packets_sent for leg in legs)
        received = sum(leg.stats.frames_received for leg in legs)
        assert sent == received == calls * ticks, (sent, received, calls * ticks)
        return used
    finally:
        for leg in legs:
            leg.close()
        sink.close()
        await asyncio.sleep(0)  # transports close on the next loop pass: then the next round may bind


def _codec_alone(frames: int, repeat: int = 5) -> dict[str, float]:
    """µs for one 20 ms G.722 encode and one decode (what a G.722 call adds per packet), best of `repeat`."""
    pcm = [f.astype("<i2").tobytes() for f in np.split(_speechlike(16000, frames / 50), frames)]
    encode_us = decode_us = float("inf")
    for _ in range(repeat):
        encoder, decoder = G722Encoder(), G722Decoder()
        start = time.perf_counter()
        payloads = [encoder.encode(data) for data in pcm]
        middle = time.perf_counter()
        for payload in payloads:
            decoder.decode(payload)
        end = time.perf_counter()
        encode_us = min(encode_us, (middle - start) / frames * 1e6)
        decode_us = min(decode_us, (end - middle) / frames * 1e6)
    return {"encode_us": encode_us, "decode_us": decode_us}


async def run(calls: int, seconds: float, rounds: int, base_port: int) -> dict[str, object]:
    best = {Codec.PCMU: float("inf"), Codec.G722: float("inf")}
    for _ in range(rounds):
        for codec in best:
            best[codec] = min(best[codec], await _round(codec, calls, seconds, base_port))
    call_seconds = calls * seconds
    per_call = {codec.value: best[codec] / call_seconds * 1e6 for codec in best}  # µs CPU per call-second
    return {
        "calls": calls,
        "seconds": seconds,
        "rounds": rounds,
        "python": platform.python_version(),
        "av": av.__version__,
        "machine": platform.machine(),
        "cpu_us_per_call_second": per_call,
        "percent_core_per_call": {name: us / 1e4 for name, us in per_call.items()},
        "calls_per_core": {name: 1e6 / us for name, us in per_call.items()},
        "g722_ratio": per_call["G722"] / per_call["PCMU"],
        "codec_alone_per_20ms": _codec_alone(2000),
    }


def table(report: dict[str, object]) -> str:
    per_call = report["cpu_us_per_call_second"]
    share = report["percent_core_per_call"]
    capacity = report["calls_per_core"]
    assert isinstance(per_call, dict) and isinstance(share, dict) and isinstance(capacity, dict)
    lines = [
        f"{report['calls']} calls x {report['seconds']} s, best of {report['rounds']} alternating rounds",
        f"{'codec':<28} {'CPU µs/call-s':>14} {'% core/call':>12} {'calls/core':>11}",
    ]
    names = {"PCMU": "G.711 (PCMU) pass-through", "G722": "G.722 (PyAV, pcm16 16 kHz)"}
    for key, name in names.items():
        lines.append(f"{name:<28} {per_call[key]:>14.0f} {share[key]:>12.3f} {capacity[key]:>11.0f}")
    lines.append(f"G.722 / G.711: {report['g722_ratio']:.2f}x")
    alone = report["codec_alone_per_20ms"]
    assert isinstance(alone, dict)
    lines.append(
        f"G.722 alone, one 20 ms frame: encode {alone['encode_us']:.1f} µs, "
        f"decode {alone['decode_us']:.1f} µs"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50, help="legs per round (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per leg and round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per codec; the best counts (default 3)")
    parser.add_argument("--port", type=int, default=52000, help="first RTP port of the legs")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.calls, args.seconds, args.rounds, args.port))
    print(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
