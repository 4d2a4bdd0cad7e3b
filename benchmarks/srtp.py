"""SRTP cost per 20 ms G.711 packet (172 bytes of RTP), next to the plain path, for every suite we negotiate.

    python -m benchmarks.srtp --iterations 200000 [--json srtp.json]

Per packet and suite: `protect` (what every sent packet now costs on top of building it) and `unprotect`
(every received packet, before parsing), through `SrtpContext` as `RtpSession` calls it, with fresh sequence
numbers (libsrtp refuses to protect an index twice and drops a replay). The plain rows are what the path
costs without SRTP: building the header and joining the payload (send), reading the header (receive).
Each figure is the best of `--repeat` runs, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time
from collections.abc import Callable, Sequence

import pylibsrtp

from voicelive_sip.rtp.packet import RTP_HEADER_SIZE, build_rtp_header, plain_rtp_header
from voicelive_sip.rtp.srtp import SrtpContext
from voicelive_sip.sdes import SUITES, SdesKey, SrtpKeys

PAYLOAD = bytes(range(160))  # 20 ms of G.711 at 8 kHz
SSRC = 0x5EED5EED


def _best(run: Callable[[], None], count: int, repeat: int) -> float:
    """The fastest of `repeat` runs, in microseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def _headers(count: int) -> list[bytes]:
    return [build_rtp_header(0, False, n & 0xFFFF, n * 160 & 0xFFFFFFFF, SSRC) for n in range(count)]


def measure_plain(count: int, repeat: int) -> dict[str, float]:
    packets = [header + PAYLOAD for header in _headers(count)]

    def send() -> None:
        for n in range(count):
            build_rtp_header(0, False, n & 0xFFFF, n * 160 & 0xFFFFFFFF, SSRC) + PAYLOAD

    def receive() -> None:
        for packet in packets:
            plain_rtp_header(packet)
            packet[RTP_HEADER_SIZE:]

    return {"send_us": _best(send, count, repeat), "receive_us": _best(receive, count, repeat)}


def measure_suite(name: str, count: int, repeat: int) -> dict[str, float]:
    suite = SUITES[name]
    packets = [header + PAYLOAD for header in _headers(count)]
    protect_us = unprotect_us = float("inf")
    overhead = 0
    for _ in range(repeat):
        # Fresh contexts each round: an index may be protected (and accepted) only once per key.
        local, remote = SdesKey.generate(suite), SdesKey.generate(suite)
        sender = SrtpContext(SrtpKeys(local, remote, 1))
        receiver = SrtpContext(SrtpKeys(remote, local, 1))
        protect = sender.protect
        start = time.perf_counter()
        protected = [protect(packet) for packet in packets]
        protect_us = min(protect_us, (time.perf_counter() - start) / count * 1e6)
        unprotect = receiver.unprotect
        start = time.perf_counter()
        for packet in protected:
            unprotect(packet, 0.0)
        unprotect_us = min(unprotect_us, (time.perf_counter() - start) / count * 1e6)
        overhead = len(protected[0]) - len(packets[0])
    return {"protect_us": protect_us, "unprotect_us": unprotect_us, "overhead_bytes": overhead}


def run(iterations: int, repeat: int, suites: Sequence[str]) -> dict[str, object]:
    plain = measure_plain(iterations, repeat)
    results = {name: measure_suite(name, iterations, repeat) for name in suites}
    return {
        "packet_bytes": RTP_HEADER_SIZE + len(PAYLOAD),
        "iterations": iterations,
        "repeat": repeat,
        "python": platform.python_version(),
        "pylibsrtp": pylibsrtp.__version__,
        "machine": platform.machine(),
        "plain": plain,
        "suites": results,
    }


def table(report: dict[str, object]) -> str:
    plain = report["plain"]
    suites = report["suites"]
    assert isinstance(plain, dict) and isinstance(suites, dict)
    lines = [
        f"per {report['packet_bytes']}-byte RTP packet, best of {report['repeat']} x {report['iterations']}",
        f"{'path':<26} {'send µs':>9} {'receive µs':>11} {'+bytes':>7}",
        f"{'plain RTP':<26} {plain['send_us']:>9.2f} {plain['receive_us']:>11.2f} {0:>7}",
    ]
    for name, row in suites.items():
        lines.append(
            f"{name:<26} {plain['send_us'] + row['protect_us']:>9.2f} "
            f"{plain['receive_us'] + row['unprotect_us']:>11.2f} {row['overhead_bytes']:>7}"
        )
    lines.append("")
    lines.append(f"{'SRTP alone':<26} {'protect µs':>11} {'unprotect µs':>13}")
    for name, row in suites.items():
        lines.append(f"{name:<26} {row['protect_us']:>11.2f} {row['unprotect_us']:>13.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=200_000, help="packets per run (default 200000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best counts (default 5)")
    parser.add_argument("--suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args(argv)
    report = run(args.iterations, args.repeat, args.suites)
    print(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
