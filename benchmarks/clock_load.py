"""Load test of the media clock: one clock drives N sessions; a separate process timestamps every arrival.

    python -m benchmarks.clock_load --sessions 500 --seconds 10

The receiver fits each stream's arrivals to its RTP timestamps (a = offset + ts/8000) and reports the
send-time error |arrival - fitted ideal| over all packets: the pacing jitter the far end sees. It also
reports where in the 20 ms tick each stream lands (offset from the earliest stream): how long a tick takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import socket
import struct
import subprocess
import sys
import time

import numpy as np

from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.session import PortPool, RtpSession

HEADER = struct.Struct("!BBHII")


def receive(port_file: str, seconds: float) -> None:
    """Receiver process: record (arrival ns, ssrc, rtp timestamp) for every packet, then print statistics."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    with open(port_file, "w") as handle:
        handle.write(str(sock.getsockname()[1]))
    arrivals: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + seconds
    clock_ns = time.monotonic_ns
    while time.monotonic() < deadline:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        arrived = clock_ns()
        if len(data) >= 12:
            _, _, _, timestamp, ssrc = HEADER.unpack_from(data)
            arrivals.append((arrived, ssrc, timestamp))
    sock.close()
    print(json.dumps(analyse(arrivals)))


def analyse(arrivals: list[tuple[int, int, int]]) -> dict[str, float]:
    """Per-stream fitted pacing error and in-tick offsets (milliseconds)."""
    by_ssrc: dict[int, list[tuple[int, int]]] = {}
    for arrived, ssrc, timestamp in arrivals:
        by_ssrc.setdefault(ssrc, []).append((arrived, timestamp))
    errors = []
    offsets = []
    for stream in by_ssrc.values():
        if len(stream) < 10:
            continue
        arrived = np.array([a for a, _ in stream], dtype=np.float64) / 1e9
        ts = np.array([t for _, t in stream], dtype=np.int64)
        media = np.unwrap(ts.astype(np.float64), period=2**32) / 8000.0
        media -= media[0]
        residual = arrived - media
        offset = float(np.median(residual))
        errors.append(np.abs(residual - offset))
        offsets.append(offset)
    if not errors:
        return {"streams": 0}
    error_ms = np.concatenate(errors) * 1000
    spread = (np.array(offsets) - min(offsets)) * 1000
    return {
        "streams": len(errors),
        "packets": int(error_ms.size),
        "error_p50_ms": float(np.percentile(error_ms, 50)),
        "error_p99_ms": float(np.percentile(error_ms, 99)),
        "error_max_ms": float(error_ms.max()),
        "in_tick_offset_max_ms": float(spread.max() % 20),
    }


async def drive(port: int, sessions: int, seconds: float, phases: int) -> dict[str, float]:
    """Sender: one MediaClock, `sessions` RtpSessions sending to the receiver for `seconds`."""
    pool = PortPool("127.0.0.1", 50000, 2 * sessions + 200)
    opened = []
    clock = MediaClock(phases=phases)
    for _ in range(sessions):
        session = await RtpSession.open(pool, clock=clock, inactivity_timeout=None, rtcp_interval=5.0)
        session.set_remote(("127.0.0.1", port), None, 0, "PCMU", None)
        session.enqueue(b"\x10" * int(8000 * min(seconds, 25)))
        opened.append(session)
    cpu = time.process_time()
    wall = time.monotonic()
    async with clock:
        await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    stats = clock.stats
    for session in opened:
        session.close()
    await asyncio.sleep(0.05)
    return {
        "sender_cpu_share": cpu / wall,
        "late_slots": stats.late_slots,
        "skipped_slots": stats.skipped_slots,
        "max_lateness_ms": stats.max_lateness * 1000,
        "packets_sent": sum(s.stats.packets_sent for s in opened),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--phases", type=int, default=4)
    parser.add_argument("--receive", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive(args.receive, args.seconds)
        return
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.clock_load",
                "--receive",
                port_file,
                "--seconds",
                str(args.seconds + 3),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        port_path = pathlib.Path(port_file)
        while not port_path.exists() or not port_path.read_text():
            time.sleep(0.05)
        port = int(port_path.read_text())
        sender = asyncio.run(drive(port, args.sessions, args.seconds, args.phases))
        output, _ = receiver.communicate(timeout=args.seconds + 30)
    result = {"sessions": args.sessions, "seconds": args.seconds, "phases": args.phases, **sender}
    result.update(json.loads(output))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
