"""What a SIP flood costs the Gateway, and whether a live call and a real INVITE get through it.

    python -m benchmarks.flood --kinds bye,bye-spread,cancel,junk,options --rates 1000,2000,5000 \
        --seconds 10 [--calls 4] [--json out.json]

Every step starts afresh four processes on the loopback (Linux routes all of 127.0.0.0/8 to lo):
- the gateway (`benchmarks.load`'s gateway role: default flood settings, logs at WARNING) pinned to core 0;
- a FakeVoiceLive (`benchmarks.load`'s fake role) pinned to core 1;
- the caller, pinned to core 1, from 127.0.0.1: `--calls` live calls with RTP both ways, built from
  `benchmarks.load`'s pieces (2 s of tone then 3 s of silence, the fake answering each talk spurt), and every
  RTP packet it receives stamped by the kernel (SO_TIMESTAMPNS, taken inside the gateway's `sendto` on
  loopback). It records two windows of `--seconds`: a baseline with no flood, then the flood window; in each
  it places `--probes` real INVITEs (spread over the window, each hung up once answered) and times their
  set-up (INVITE sent to 200 OK);
- the flooder, pinned to core 1, started when the baseline window ends: it sends `rate` packets/s for
  `--seconds` (paced every 5 ms) of one kind, and counts every response that comes back:
    bye          BYE to dialogs that do not exist (a fresh Call-ID and tags each), from one source 127.0.0.2
    bye-spread   the same from `--sources` addresses 127.0.1.x (so no one source reaches the per-source ban)
    cancel       CANCEL to INVITE transactions that do not exist, from `--sources` addresses
    junk         malformed datagrams (random bytes; a request line with broken headers), from `--sources`
    options      OPTIONS (new out-of-dialog requests) from `--sources` addresses
    bye-1 ...    a `-1` suffix sends any kind from the one source 127.0.0.2 instead.

Per window: the gateway's CPU (% of one core, /proc/PID/stat utime+stime), RSS (/proc/PID/status VmRSS) at
its start and end and its peak, the live calls' send-time error (|arrival - fitted ideal| as in load.py)
and audible gaps inside replies, the gateway clock's late and skipped 20 ms slots, and the probes. A flood's
cost is (flood CPU - baseline CPU) and the RSS growth over the flood window, both per 1,000 packets/s.
A step is repeated (`--retries`) when other processes used >= 5 % of the gateway's core in either window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import load
from benchmarks.load import (
    CONTENDED_PERCENT,
    CYCLE_SECONDS,
    SILENCE_PCMU,
    TALK_SECONDS,
    Arrivals,
    CallerMedia,
    audible_gaps,
    core_speed,
    core_ticks,
    cpu_ticks,
    machine,
    percentiles,
    pin,
    quiet_logs,
    rss_mib,
    run_loop,
    send_errors,
    wait_for_file,
)

KINDS = ("bye", "bye-spread", "cancel", "junk", "options")
DEFAULT_RATES = "1000,2000,5000"
SINGLE_SOURCE = "127.0.0.2"
SPREAD_PREFIX = "127.0.1."  # sources 127.0.1.1, 127.0.1.2, ...
FLOOD_TICK = 0.005
WARMUP_SECONDS = 3.0
PROBE_TIMEOUT = 20.0
PROBE_MEDIA_PORT = 36000
CALLER_MEDIA_PORT = 34000


# ---------------------------------------------------------------------------------------------------------
# the flooder


def flood_packet(kind: str, n: int, host: str, port: int, target: str) -> bytes:
    """Datagram number `n` of a flood of `kind`, as sent from host:port to the gateway at `target`."""
    branch = f"z9hG4bK-fl{n:x}{random.getrandbits(32):08x}"
    call_id = f"fl{n:x}-{random.getrandbits(48):012x}@{host}"
    via = f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
    tail = f"Call-ID: {call_id}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    if kind == "bye":
        return (
            f"BYE sip:voicelive@{target} SIP/2.0\r\n{via}"
            f"From: <sip:flood@{host}>;tag=f{n:x}\r\nTo: <sip:voicelive@{target}>;tag=t{n:x}\r\n"
            f"CSeq: 2 BYE\r\n{tail}"
        ).encode()
    if kind == "cancel":
        return (
            f"CANCEL sip:voicelive@{target} SIP/2.0\r\n{via}"
            f"From: <sip:flood@{host}>;tag=f{n:x}\r\nTo: <sip:voicelive@{target}>\r\n"
            f"CSeq: 1 CANCEL\r\n{tail}"
        ).encode()
    if kind == "options":
        return (
            f"OPTIONS sip:voicelive@{target} SIP/2.0\r\n{via}"
            f"From: <sip:flood@{host}>;tag=f{n:x}\r\nTo: <sip:voicelive@{target}>\r\n"
            f"CSeq: 1 OPTIONS\r\nAccept: application/sdp\r\n{tail}"
        ).encode()
    if kind == "junk":
        if n % 2:
            return random.randbytes(200)
        # A request line and a Via that parse, then headers that do not (a CSeq without a number, a To that
        # is not an address): the kind that reaches the parser's error path and may earn a 400.
        return (
            f"INVITE sip:voicelive@{target} SIP/2.0\r\n{via}"
            f"From: <sip:flood@{host}>;tag=f{n:x}\r\nTo: <<<\r\nCSeq: x INVITE\r\n{tail}"
        ).encode()
    raise ValueError(kind)


def flooder_process(
    workdir: Path, kind: str, rate: float, seconds: float, sources: int, port: int, core: int
) -> None:
    pin(core)
    base = kind.removesuffix("-1").removesuffix("-spread")
    hosts = (
        [SINGLE_SOURCE]
        if kind == "bye" or kind.endswith("-1")
        else [f"{SPREAD_PREFIX}{i}" for i in range(1, sources + 1)]
    )
    target = f"127.0.0.1:{port}"
    socks = []
    for host in hosts:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, 0))
        sock.setblocking(False)
        socks.append(sock)
    responses: Counter[str] = Counter()
    first_response = [0.0]
    sent = errors = 0

    def drain(sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if not first_response[0]:
                first_response[0] = time.monotonic()
            responses[data[8:11].decode("ascii", "replace") if data.startswith(b"SIP/2.0 ") else "other"] += 1

    async def main() -> None:
        nonlocal sent, errors
        loop = asyncio.get_running_loop()
        for sock in socks:
            loop.add_reader(sock.fileno(), drain, sock)
        packets = [
            (sock, (sock.getsockname()[0], sock.getsockname()[1])) for sock in socks
        ]  # round-robin over the sources
        (workdir / "flood_start").write_text(str(time.time()))
        start = time.monotonic()
        started = loop.time()
        while True:
            now = loop.time()
            elapsed = now - started
            if elapsed >= seconds:
                break
            due = int(rate * elapsed)
            while sent < due:
                sock, (host, sport) = packets[sent % len(packets)]
                try:
                    sock.sendto(flood_packet(base, sent, host, sport, target), ("127.0.0.1", port))
                except OSError:
                    errors += 1
                sent += 1
            await asyncio.sleep(FLOOD_TICK)
        wall = time.monotonic() - start
        (workdir / "flood_sent").write_text(str(time.time()))
        await asyncio.sleep(1.0)  # answers still in flight
        result = {
            "kind": kind,
            "sources": len(hosts),
            "sent": sent,
            "send_errors": errors,
            "seconds": round(wall, 3),
            "rate_sent": round(sent / wall, 1),
            "responses": dict(responses),
            "answered": sum(responses.values()),
        }
        (workdir / "flooder.json").write_text(json.dumps(result))
        for sock in socks:
            loop.remove_reader(sock.fileno())
            sock.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------------------
# the caller: live calls, two measured windows, probe INVITEs


def detrended_errors(ssrc: np.ndarray, timestamp: np.ndarray, arrived_ns: np.ndarray) -> np.ndarray:
    """|arrival - a line fitted to RTP time| (ms), per stream: a steady rate difference between the clock that
    stamps arrivals and the gateway's media clock (the VM's clock being slewed) is left out, jitter is not."""
    errors = []
    for stream in np.unique(ssrc):
        mine = ssrc == stream
        ts, arrived = timestamp[mine], arrived_ns[mine]
        if ts.size < 10 or not arrived.all():
            continue
        media = np.unwrap(ts.astype(np.float64), period=2**32) / 8000.0
        seconds = (arrived - arrived[0]).astype(np.float64) / 1e9
        slope, offset = np.polyfit(media - media[0], seconds, 1)
        residual = seconds - (offset + slope * (media - media[0]))
        errors.append(np.abs(residual - np.median(residual)))
    return np.concatenate(errors) * 1000 if errors else np.zeros(0)


def per_stream(ssrc: np.ndarray, timestamp: np.ndarray, arrived_ns: np.ndarray) -> list[dict[str, Any]]:
    """Each stream's packets, p99 send-time error, and its largest jump of (arrival - RTP time) between two
    consecutive packets (ms): a jump that stays is a shift of the stream's timing, not jitter."""
    out = []
    for stream in np.unique(ssrc):
        mine = ssrc == stream
        ts, arrived = timestamp[mine], arrived_ns[mine]
        order = np.argsort(arrived, kind="stable")
        ts, arrived = ts[order], arrived[order]
        errors = send_errors(np.zeros(ts.size, dtype=np.uint64), ts, arrived)
        residual = (arrived - arrived[0]) / 1e6 - (np.unwrap(ts.astype(np.float64), period=2**32) - ts[0]) / 8
        jumps = np.diff(residual)
        out.append(
            {
                "packets": int(ts.size),
                "p99_ms": percentiles(errors)["p99"],
                "largest_jump_ms": round(float(np.abs(jumps).max()), 1) if jumps.size else None,
            }
        )
    return out


def analyse(arrivals: Arrivals) -> dict[str, Any]:
    ssrc = np.frombuffer(arrivals.ssrc, dtype=np.uint64)
    timestamp = np.frombuffer(arrivals.timestamp, dtype=np.int64)
    kernel_ns = np.frombuffer(arrivals.kernel_ns, dtype=np.int64)
    user_ns = np.frombuffer(arrivals.user_ns, dtype=np.int64)
    heard = audible_gaps(ssrc, timestamp, np.frombuffer(arrivals.audio, dtype=np.int8), user_ns)
    return {
        "packets_received": int(ssrc.size),
        "streams": int(np.unique(ssrc).size),
        "per_stream": per_stream(ssrc, timestamp, kernel_ns),
        "send_error_ms": percentiles(send_errors(ssrc, timestamp, kernel_ns)),
        "send_error_detrended_ms": percentiles(detrended_errors(ssrc, timestamp, kernel_ns)),
        "send_error_userspace_ms": percentiles(send_errors(ssrc, timestamp, user_ns)),
        "audible_gaps": heard,
    }


def caller_process(
    workdir: Path, target: str, calls: int, seconds: float, probes: int, core: int, loop_name: str
) -> None:
    pin(core)
    quiet_logs()
    from voicelive_sip.aio import CallFailed, OutgoingCall, UserAgent
    from voicelive_sip.codecs import g711
    from voicelive_sip.config import MediaSettings, SipSettings

    t = np.arange(int(8000 * TALK_SECONDS)) / 8000
    tone = g711.ulaw_encode(np.round(0.25 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16))
    talk = [tone[at : at + 160] for at in range(0, len(tone), 160)]
    cycle = talk + [SILENCE_PCMU] * (int(CYCLE_SECONDS * 50) - len(talk))

    async def main() -> None:
        sip = SipSettings(local_address="127.0.0.1", port=0, transports=["udp"], max_calls=calls + 50)
        media = MediaSettings(address="127.0.0.1", codecs=["PCMU"])
        idle = Arrivals()
        rtp = CallerMedia(CALLER_MEDIA_PORT, idle, cycle)
        loop = asyncio.get_running_loop()
        up: list[OutgoingCall] = []
        failures: list[str] = []
        probe_port = [PROBE_MEDIA_PORT]
        probe_sockets: list[socket.socket] = []

        def probe_pair() -> int:
            """An RTP/RTCP port pair for a probe call, never read (its audio is not measured)."""
            while True:
                port = probe_port[0]
                probe_port[0] += 2
                pair = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
                try:
                    for offset, sock in enumerate(pair):
                        sock.bind(("127.0.0.1", port + offset))
                except OSError:
                    for sock in pair:
                        sock.close()
                    continue
                probe_sockets.extend(pair)
                return port

        async def probe(ua: UserAgent, delay: float, window_end: float) -> dict[str, Any]:
            await asyncio.sleep(delay)
            sent = loop.time()
            try:
                call = ua.dial(target, rtp_port=probe_pair(), codecs=["PCMU"], timeout=PROBE_TIMEOUT)
                await call.answered()
            except (CallFailed, OSError, TimeoutError) as error:
                return {
                    "answered": False,
                    "error": repr(error)[:200],
                    "after_s": round(loop.time() - sent, 3),
                }
            answered = loop.time()
            with contextlib.suppress(Exception):
                await call.hangup()
            return {
                "answered": True,
                "setup_ms": round((answered - sent) * 1000, 1),
                "inside_window": answered <= window_end,
            }

        async def window(name: str, ua: UserAgent) -> dict[str, Any]:
            arrivals = Arrivals()
            arrivals.active = True
            rtp.arrivals = arrivals
            start = loop.time()
            (workdir / f"{name}_start").write_text(str(time.time()))
            tasks = [
                loop.create_task(probe(ua, seconds * (i + 1) / (probes + 1), start + seconds))
                for i in range(probes)
            ]
            await asyncio.sleep(seconds)
            arrivals.active = False
            rtp.arrivals = idle
            ended = sum(1 for call in up if call.ended)
            (workdir / f"{name}_end").write_text(str(time.time()))
            report = analyse(arrivals) | {"calls_ended": ended, "window_monotonic": [start, loop.time()]}
            report["probes"] = tasks
            return report

        async with UserAgent(sip, media) as ua:
            epoch = loop.time()
            for index in range(calls):
                port, sock = rtp.open()
                try:
                    call = ua.dial(target, rtp_port=port, codecs=["PCMU"], timeout=20)
                    answer = await call.answered()
                except (CallFailed, OSError, TimeoutError) as error:
                    failures.append(repr(error))
                    continue
                if answer is None:
                    failures.append("answered without SDP")
                    continue
                up.append(call)
                rtp.add(sock, answer.remote_rtp, answer.payload_type, index, calls, loop.time() - epoch)
            await asyncio.sleep(WARMUP_SECONDS)
            baseline = await window("baseline", ua)
            wait_for_flood = loop.time() + 60
            while not (workdir / "flood_start").exists() and loop.time() < wait_for_flood:
                await asyncio.sleep(0.01)
            flood = await window("flood", ua)
            for report in (baseline, flood):
                report["probes"] = list(await asyncio.gather(*report["probes"]))
            await asyncio.gather(*(call.hangup() for call in up if not call.ended), return_exceptions=True)
            rtp.close()
            for sock in probe_sockets:
                sock.close()
        result = {
            "calls_set_up": len(up),
            "setup_failures": failures[:10],
            "baseline": baseline,
            "flood": flood,
            "caller_send_errors": rtp.send_errors,
        }
        (workdir / "caller.json").write_text(json.dumps(result))

    run_loop(main, loop_name)


# ---------------------------------------------------------------------------------------------------------
# the orchestrator


class Processes(load.Processes):
    """load.Processes, with the caller and the flooder from this module."""

    def start(self, name: str, *args: str, core: int | None = None) -> subprocess.Popen[bytes]:
        if name in ("gateway", "fake"):
            return super().start(name, *args, core=core)
        log = (self.workdir / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "benchmarks.flood", "--role", name, "--workdir", str(self.workdir)]
        if core is not None:
            command += ["--core", str(core)]
        process = subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.children.append(process)
        return process


class Meter:
    """CPU of the gateway and of its core between two moments, RSS at both and the peak in between."""

    def __init__(self, pid: int, core: int) -> None:
        self.pid, self.core = pid, core
        self.ticks = cpu_ticks(pid)
        self.core_before = core_ticks(core)
        self.wall = time.monotonic()
        self.rss_start = self.peak = rss_mib(pid)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.wall
        hz = os.sysconf("SC_CLK_TCK")
        cpu = 100 * (cpu_ticks(self.pid) - self.ticks) / hz / elapsed
        busy_after, total_after = core_ticks(self.core)
        busy = 100 * (busy_after - self.core_before[0]) / max(1, total_after - self.core_before[1])
        rss = rss_mib(self.pid)
        return {
            "seconds": round(elapsed, 2),
            "gateway_cpu_percent": round(cpu, 1),
            "other_load_on_gateway_core_percent": round(max(0.0, busy - cpu), 1),
            "rss_start_mib": round(self.rss_start, 1),
            "rss_end_mib": round(rss, 1),
            "rss_peak_mib": round(max(self.peak, rss), 1),
        }


def read_clock(workdir: Path, gateway: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The clock statistics the gateway dumps on SIGUSR1 (load.py's gateway role); the file is removed."""
    path = workdir / "clock_start.json"
    for _ in range(100):
        with contextlib.suppress(ValueError):  # caught half-written
            clock: dict[str, Any] = json.loads(wait_for_file(path, gateway, 10, "the gateway"))
            path.unlink()
            return clock
        time.sleep(0.02)
    raise RuntimeError("the gateway's clock statistics did not parse")


def measure_window(
    workdir: Path, name: str, gateway: subprocess.Popen[bytes], caller: subprocess.Popen[bytes], core: int
) -> dict[str, Any]:
    wait_for_file(workdir / f"{name}_start", caller, 90, "the caller")
    meter = Meter(gateway.pid, core)
    gateway.send_signal(signal.SIGUSR1)  # its clock statistics at the window's start
    while not (workdir / f"{name}_end").exists():
        if caller.poll() is not None:
            raise RuntimeError(f"the caller exited during the {name} window")
        meter.sample()
        time.sleep(0.02)
    report = meter.stop()
    clock_start = read_clock(workdir, gateway)
    gateway.send_signal(signal.SIGUSR1)
    clock_end = read_clock(workdir, gateway)
    report["gateway_clock"] = {
        key: clock_end[key] - clock_start[key] for key in ("slots", "late_slots", "skipped_slots")
    }
    return report


def run_step(
    kind: str,
    rate: float,
    args: argparse.Namespace,
    gateway_core: int,
    other_core: int,
) -> dict[str, Any]:
    speed_before = core_speed(gateway_core)
    with tempfile.TemporaryDirectory(prefix="flood") as tmp, Processes(Path(tmp)) as procs:
        workdir = Path(tmp)
        fake = procs.start(
            "fake", "--pace", str(load.DEFAULT_PACE), "--loop", args.generator_loop, core=other_core
        )
        fake_port = wait_for_file(workdir / "fake_port", fake, 30, "the fake")
        gateway = procs.start(
            "gateway",
            "--fake-port",
            fake_port,
            "--calls",
            str(args.calls),
            "--loop",
            args.loop,
            core=gateway_core,
        )
        sip_port = wait_for_file(workdir / "gateway_port", gateway, 30, "the gateway")
        time.sleep(0.3)
        idle_rss = rss_mib(gateway.pid)
        caller = procs.start(
            "caller",
            *("--target", f"sip:flood@127.0.0.1:{sip_port}", "--calls", str(args.calls)),
            *("--seconds", str(args.seconds), "--probes", str(args.probes), "--loop", args.generator_loop),
            core=other_core,
        )
        baseline = measure_window(workdir, "baseline", gateway, caller, gateway_core)
        flooder = procs.start(
            "flooder",
            *("--kind", kind, "--rate", str(rate), "--seconds", str(args.seconds)),
            *("--sources", str(args.sources), "--port", sip_port),
            core=other_core,
        )
        flood = measure_window(workdir, "flood", gateway, caller, gateway_core)
        flooder.wait(30)
        caller.wait(PROBE_TIMEOUT + 30)
        rss_after = rss_mib(gateway.pid)
        procs.stop(gateway)
        procs.stop(fake)
        caller_path, flooder_path = workdir / "caller.json", workdir / "flooder.json"
        if not caller_path.exists():
            raise RuntimeError(f"the caller wrote no result: {(workdir / 'caller.log').read_text()[-3000:]}")
        if not flooder_path.exists():
            raise RuntimeError(
                f"the flooder wrote no result: {(workdir / 'flooder.log').read_text()[-3000:]}"
            )
        result = json.loads(caller_path.read_text())
        flooded = json.loads(flooder_path.read_text())
        gateway_log = (workdir / "gateway.log").read_text(errors="replace")
    for name, window in (("baseline", baseline), ("flood", flood)):
        window.update(result[name])
        window.pop("window_monotonic", None)
    per_k = rate / 1000
    return {
        "kind": kind,
        "rate": rate,
        "calls": args.calls,
        "calls_set_up": result["calls_set_up"],
        "gateway_core_speed_ms": [speed_before, core_speed(gateway_core)],
        "gateway_rss_idle_mib": round(idle_rss, 1),
        "gateway_rss_after_mib": round(rss_after, 1),
        "baseline": baseline,
        "flood": flood,
        "flooder": flooded,
        "cpu_percent_per_1000pps": round(
            (flood["gateway_cpu_percent"] - baseline["gateway_cpu_percent"]) / per_k, 2
        ),
        "rss_growth_mib_per_1000pps": round((flood["rss_end_mib"] - flood["rss_start_mib"]) / per_k, 2),
        "probes_answered": sum(p["answered"] for p in flood["probes"]),
        "gateway_security_banned": gateway_log.count("security.banned"),
        "gateway_flood_events": gateway_log.count("security.flood"),
        "contended": max(
            baseline["other_load_on_gateway_core_percent"], flood["other_load_on_gateway_core_percent"]
        )
        >= CONTENDED_PERCENT,
    }


def summary(step: dict[str, Any]) -> dict[str, Any]:
    base, flood = step["baseline"], step["flood"]
    setup = [p["setup_ms"] for p in flood["probes"] if p["answered"]]
    base_setup = [p["setup_ms"] for p in base["probes"] if p["answered"]]
    return {
        "kind": step["kind"],
        "rate": step["rate"],
        "sent_pps": step["flooder"]["rate_sent"],
        "answered": step["flooder"]["answered"],
        "responses": step["flooder"]["responses"],
        "cpu": [base["gateway_cpu_percent"], flood["gateway_cpu_percent"]],
        "cpu_per_k": step["cpu_percent_per_1000pps"],
        "rss_growth_mib": round(flood["rss_end_mib"] - flood["rss_start_mib"], 1),
        "probes": f"{step['probes_answered']}/{len(flood['probes'])}",
        "setup_ms": [max(base_setup, default=None), max(setup, default=None)],
        "p99_ms": [base["send_error_ms"]["p99"], flood["send_error_ms"]["p99"]],
        "p99_detrended_ms": [base["send_error_detrended_ms"]["p99"], flood["send_error_detrended_ms"]["p99"]],
        "max_ms": [base["send_error_ms"]["max"], flood["send_error_ms"]["max"]],
        "gaps": [base["audible_gaps"]["gaps"], flood["audible_gaps"]["gaps"]],
        "late_slots": [base["gateway_clock"]["late_slots"], flood["gateway_clock"]["late_slots"]],
        "other_load": [
            base["other_load_on_gateway_core_percent"],
            flood["other_load_on_gateway_core_percent"],
        ],
        "attempt": step.get("attempt"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"floods, of {', '.join(KINDS)} (-1: one source)"
    )
    parser.add_argument("--rates", default=DEFAULT_RATES, help="packets per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each window")
    parser.add_argument("--calls", type=int, default=4, help="live calls with RTP both ways")
    parser.add_argument("--probes", type=int, default=3, help="real INVITEs placed in each window")
    parser.add_argument("--sources", type=int, default=250, help="source addresses of a spread flood")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help="gateway loop")
    parser.add_argument("--generator-loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--gateway-core", type=int, default=0)
    parser.add_argument("--other-core", type=int, default=1)
    parser.add_argument("--retries", type=int, default=1, help="repeat a step run beside other load")
    parser.add_argument("--json", type=Path, help="also write the report here")
    # Internal: the child processes.
    parser.add_argument("--role", choices=["caller", "flooder"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "caller":
        caller_process(
            args.workdir, args.target, args.calls, args.seconds, args.probes, args.core, args.generator_loop
        )
        return
    if args.role == "flooder":
        flooder_process(args.workdir, args.kind, args.rate, args.seconds, args.sources, args.port, args.core)
        return

    other_core = args.other_core if (os.cpu_count() or 1) > 1 else args.gateway_core
    steps: list[dict[str, Any]] = []
    for kind in args.kinds.split(","):
        if kind.removesuffix("-1") not in KINDS:
            parser.error(f"unknown flood {kind!r}")
        for rate in (float(r) for r in args.rates.split(",")):
            for attempt in range(1 + args.retries):
                step = run_step(kind, rate, args, args.gateway_core, other_core)
                step["attempt"] = attempt + 1
                if not step["contended"] or attempt == args.retries:
                    break
                print(
                    json.dumps(summary(step) | {"repeating": "other load on the gateway core"}),
                    file=sys.stderr,
                )
            steps.append(step)
            print(json.dumps(summary(step)), file=sys.stderr)
    report = {
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.flood", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "gateway_core": args.gateway_core,
        "other_core": other_core,
        "summary": [summary(step) for step in steps],
        "steps": steps,
    }
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
