"""What SIP over TLS costs the listener, next to TCP: new connections per second, memory per idle connection.

    python -m benchmarks.tls [--seconds 10] [--concurrency 32] [--idle 1000] [--loop uvloop|asyncio]

Two processes on 127.0.0.1. The listener is a `UserAgent` (flood limits raised out of the way) on core 0,
under the chosen event loop; the client runs on core 1. For TLS and then TCP:
- rate: `--concurrency` workers each open a connection, send one OPTIONS, read its 200 and close, for
  `--seconds`. Reported: connections completed per second, the listener's CPU (% of one core, /proc/PID/stat)
  over that window, and connections per second per core (the rate divided by that CPU share), which is what
  the listener could take if the client were not also limited by its own core.
- memory: `--idle` connections are opened and each sends one OPTIONS (so every TLS handshake is done), then
  held idle; the listener's RSS (/proc/PID/status VmRSS) rise divided by their number is the memory per idle
  connection.
The test PKI (trustme, ECDSA P-256 certificates) is made in a temporary directory. TLS 1.3 is negotiated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OPTIONS = (
    "OPTIONS sip:bench@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK{n}\r\n"
    "From: <sip:c@127.0.0.1>;tag={n}\r\nTo: <sip:bench@127.0.0.1>\r\nCall-ID: {n}@bench\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- the listener (child process) ------------------------------------------------------------------------
async def _serve(pki: Path, ready: Path) -> None:
    import logging

    import structlog

    from voicelive_sip.aio import UserAgent
    from voicelive_sip.aio.options import UserAgentOptions

    options = UserAgentOptions(
        port=0, tls_port=0, tls_cert_file=str(pki / "server.pem"), max_tcp_connections=20000,
        max_tcp_connections_per_source=20000, max_packets_per_source=10**6, max_requests_per_second=10**6,
        max_new_requests_total=10**6, max_options_per_second=10**6, tcp_idle_timeout=3600,
    )  # fmt: skip
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with UserAgent(options) as ua:
        assert ua.tls_address is not None
        ready.write_text(json.dumps({"tcp": ua.address[1], "tls": ua.tls_address[1]}))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


# -- the client ------------------------------------------------------------------------------------------
async def _one(port: int, context: ssl.SSLContext | None, n: int, hold: bool = False) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(OPTIONS.format(transport="TLS" if context else "TCP", n=n).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"SIP/2.0 200"):
        raise RuntimeError(head[:40])
    rest = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    await reader.readexactly(rest)
    if not hold:
        writer.close()
    return writer


async def _rate(
    pid: int, port: int, context: ssl.SSLContext | None, seconds: float, workers: int
) -> dict[str, Any]:
    done = 0
    stop = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await _one(port, context, next(counter))
            done += 1

    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed, cpu = time.monotonic() - t0, _cpu_seconds(pid) - cpu0
    rate = done / elapsed
    share = cpu / elapsed
    return {
        "connections": done,
        "per_second": round(rate, 1),
        "listener_cpu_percent": round(100 * share, 1),
        "per_second_per_core": round(rate / share, 1) if share else None,
    }


async def _idle(pid: int, port: int, context: ssl.SSLContext | None, count: int) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    before = _rss_kib(pid)
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, 100):
        batch = range(start, min(count, start + 100))
        writers += await asyncio.gather(*(_one(port, context, 10**8 + n, hold=True) for n in batch))
    await asyncio.sleep(1.0)
    after = _rss_kib(pid)
    for writer in writers:
        writer.close()
    await asyncio.sleep(1.0)
    return {"connections": count, "rss_kib_before": before, "rss_kib_after": after,
            "kib_per_connection": round((after - before) / count, 2)}  # fmt: skip


async def _client(pid: int, ports: dict[str, int], pki: Path, args: argparse.Namespace) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    results: dict[str, Any] = {}
    for name, ctx in (("TLS", context), ("TCP", None)):
        port = ports[name.lower()]
        await _rate(pid, port, ctx, 1.0, args.concurrency)  # warm-up
        results[name] = {
            "rate": await _rate(pid, port, ctx, args.seconds, args.concurrency),
            "idle": await _idle(pid, port, ctx, args.idle),
        }
    return results


def _make_pki(directory: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(directory / "server.pem")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child: PKI directory
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _pin(0)
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(_serve(args.serve, args.ready))
        else:
            asyncio.run(_serve(args.serve, args.ready))
        return
    _pin(1)
    with tempfile.TemporaryDirectory(prefix="voicelive-sip-tls-bench-") as tmp:
        work = Path(tmp)
        _make_pki(work)
        ready = work / "ready.json"
        command = [sys.executable, "-m", "benchmarks.tls", "--serve", str(work), "--ready", str(ready)]
        child = subprocess.Popen([*command, "--loop", args.loop])
        try:
            deadline = time.monotonic() + 30
            while not ready.exists() or not ready.read_text():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the listener did not start")
                time.sleep(0.05)
            ports = json.loads(ready.read_text())
            results = asyncio.run(_client(child.pid, ports, work, args))
        finally:
            child.terminate()
            child.wait(timeout=10)
    report = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "loop": args.loop,
        "results": results,
    }
    print(f"{'':4} {'conn/s':>8} {'CPU %':>6} {'conn/s/core':>12} {'KiB/idle conn':>14}")
    for name, result in results.items():
        rate, idle = result["rate"], result["idle"]
        print(
            f"{name:4} {rate['per_second']:8.1f} {rate['listener_cpu_percent']:6.1f} "
            f"{rate['per_second_per_core'] or 0:12.1f} {idle['kib_per_connection']:14.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
