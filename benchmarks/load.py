"""Concurrent full-duplex calls per core: the Gateway under N calls bridged to a FakeVoiceLive.

    python -m benchmarks.load --calls 100 --seconds 20 [--loop asyncio|uvloop] [--json out.json]
    python -m benchmarks.load --find-max --seconds 20 --loop uvloop     # 50, 100, 150 ... until one fails
    python -m benchmarks.load --find-max --media both --loop uvloop     # plain RTP and SRTP, step by step

Three processes on 127.0.0.1, started afresh for every step:
- the gateway (`voicelive_sip.gateway.Gateway`, settings in code, logs at WARNING) pinned to core 0 under
  the chosen event loop; SIGUSR1 and SIGTERM make it dump `gateway.metrics.render()` and its clock statistics,
  so the latency histograms and underrun counter are read for the steady window only;
- a FakeVoiceLive (tone voice, replies paced at 2x real time, nothing recorded) pinned to core 1; it reports
  its own loop stalls and garbage-collector pauses;
- the caller, pinned to core 1: one UserAgent placing N calls and a port pair per call, sending 2 s of
  440 Hz tone then 3 s of silence (the talk spurts spread evenly over the calls), so the fake's server VAD
  ends a turn and answers with a paced reply while the caller keeps sending silence.
The fake and the caller run on uvloop when it is installed (`--generator-loop`), to leave core 1 room.

Every RTP packet the caller receives is timestamped twice: the kernel's receive timestamp of that datagram
(SO_TIMESTAMPNS, read with `recvmsg`; on loopback it is taken inside the gateway's `sendto`, so the caller's
own load cannot blur it) and `time.monotonic_ns()` in user space. Each stream's arrivals are fitted to its
RTP timestamps (arrival = offset + ts/8000, offset the median) and the send-time error is
|arrival - fitted ideal| over all packets, as in `benchmarks/clock_load.py`.

CPU (% of one core) comes from /proc/PID/stat over the steady window, RSS from /proc/PID/status (per call:
beyond the idle gateway measured before the first call). A step holds when every call was set up and stayed
up, the p99 send-time error is at most 5 ms, and the caller heard no gap inside a reply that the gateway
caused: gaps while core 1 was saturated, or within 0.3 s after the fake's loop stalled, are the fake's.
(`voicelive_sip_media_underruns_total` is reported too.)

`--media` chooses what the calls carry: `plain` RTP (MEDIA_SRTP=off on both sides, the default), `srtp` (the
gateway runs with MEDIA_SRTP=required; the caller offers RTP/SAVP with one a=crypto line of `--srtp-suite`,
protects every RTP packet it sends and unprotects every one it receives with libsrtp, counting packets that
fail authentication or replay checks), or `both`: every step is run with plain RTP and then with SRTP, back to
back, so the two are measured on the same host minute; `--find-max` goes on with each until it fails. The
caller's SRTP work lands on core 1, next to the fake, not on the gateway's core.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import gc
import importlib.util
import json
import logging
import os
import platform
import random
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

if TYPE_CHECKING:
    import pylibsrtp

TARGET_P99_MS = 5.0
CONTENDED_PERCENT = 5.0
DEFAULT_STEPS = "50,100,150,200,250,300,350,400,500,600"
TALK_SECONDS = 2.0
# Each reply streams at twice real time (100 ms chunks 50 ms apart), as the service sends speech faster than
# it plays. Close to 1.0 the playout buffer has almost no lead, and any hiccup of the fake's own loop (it
# shares core 1 with the caller) becomes a gap the gateway could not have prevented.
DEFAULT_PACE = 0.5
GAP_MAX_FRAMES = 25  # silence up to 500 ms between agent frames is a gap in a reply, not between replies
CYCLE_SECONDS = 5.0
WARMUP_SECONDS = 3.0
SETUP_RATE = 100.0  # calls per second the caller places (the UA admits 500 new requests/s per source)
SETUP_CONCURRENCY = 50
GATEWAY_MEDIA_PORT = 20000
CALLER_MEDIA_PORT = 34000
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # asm-generic/socket.h; also the cmsg type
CMSG_SPACE = socket.CMSG_SPACE(16)  # one struct timespec
SEND_PHASES = 4
RECEIVE_BATCH = 64
HEARTBEAT_S = 0.005  # the fake's loop-lag probe
STALL_MS = 20.0  # a fake loop stall this long can starve a reply in flight
FAKE_STALL_REACH_S = 0.3  # a gap up to this long after a fake stall began is the fake's doing
SILENCE_PCMU = bytes([0xFF]) * 160  # what the gateway sends (PCMU) when a call's outbound buffer is empty
RTP_HEADER = struct.Struct("!BBHII")
TIMESPEC = struct.Struct("@qq")
MediaMode = Literal["plain", "srtp"]
MEDIA_MODES: Final[tuple[MediaMode, ...]] = ("plain", "srtp")
# MEDIA_SRTP of both sides per mode: plain RTP must not be left to the default (optional), under which the
# gateway answers the caller's best-effort a=crypto with SRTP.
SRTP_POLICY: Final[dict[MediaMode, Literal["off", "required"]]] = {"plain": "off", "srtp": "required"}
DEFAULT_SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"
SRTP_TARGET_RATIO = 0.8  # issue 14: calls per core with SRTP at least 80 % of plain RTP on the same loop


# ---------------------------------------------------------------------------------------------------------
# helpers shared by the processes


def quiet_logs() -> None:
    """WARNING and above only: per-call info events would measure the terminal, not the gateway."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core % (os.cpu_count() or 1)})


def run_loop(main: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before writing {path.name}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not write {path.name} within {timeout:.0f} s")
        time.sleep(0.05)
    return path.read_text().strip()


def cpu_ticks(pid: int, *, kernel_only: bool = False) -> int:
    """utime + stime of a process (or stime alone), in clock ticks (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])


def core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one CPU from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            return sum(values[:8]) - idle, sum(values[:8])
    return 0, 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        uvloop_version: str | None = metadata.version("uvloop")
    except metadata.PackageNotFoundError:
        uvloop_version = None

    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
        return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        # Others edit the same checkout: which library files differed from that commit during the run.
        "uncommitted": git("status", "--porcelain", "--", "voicelive_sip").splitlines(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "uvloop": uvloop_version,
    }


def core_speed(core: int) -> float:
    """Milliseconds a fixed pure-Python loop takes on `core` (in a child process, best of 3).

    The machine is a shared VM whose per-core speed drifts by ±15 % from minute to minute; taken before and
    after each step, this tells a step that ran on a slow host from one that the gateway could not carry.
    """
    code = (
        "import os,time\n"
        f"os.sched_setaffinity(0,{{{core}}})\n"
        "best=1e9\n"
        "for _ in range(3):\n"
        " t=time.perf_counter();s=0\n"
        " for i in range(1_000_000): s+=i*i\n"
        " best=min(best,time.perf_counter()-t)\n"
        "print(best*1000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return round(float(done.stdout), 1)


# ---------------------------------------------------------------------------------------------------------
# process 1: the gateway


class GcPauses:
    """Stop-the-world pauses of the cyclic garbage collector, per generation (a `gc.callbacks` entry)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.reset()

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        generation = info["generation"]
        pause = time.perf_counter() - self.started
        self.count[generation] += 1
        self.total[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)

    def report(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{g}": {
                "collections": self.count[g],
                "total_ms": round(self.total[g] * 1000, 2),
                "max_ms": round(self.longest[g] * 1000, 2),
            }
            for g in range(3)
        }


def gateway_process(
    workdir: Path, fake_port: int, calls: int, loop: str, core: int, media: MediaMode = "plain"
) -> None:
    pin(core)
    quiet_logs()
    from pydantic import SecretStr

    from voicelive_sip.config import (
        GatewaySettings,
        MediaSettings,
        MetricsSettings,
        Settings,
        SipSettings,
        VoiceLiveSettings,
    )
    from voicelive_sip.gateway import Gateway

    settings = Settings(
        sip=SipSettings(
            local_address="127.0.0.1",
            port=0,
            transports=["udp"],
            max_calls=calls + 50,
            max_transactions=50000,
            # Every call comes from the caller's one address, as from an SBC; it never has more than
            # SETUP_CONCURRENCY INVITEs unanswered (the default, 20, made a slow step fail calls with 486).
            max_pending_invites_per_source=SETUP_CONCURRENCY,
        ),
        media=MediaSettings(
            address="127.0.0.1",
            port=GATEWAY_MEDIA_PORT,
            port_count=2 * calls + 128,
            srtp=SRTP_POLICY[media],
        ),
        voicelive=VoiceLiveSettings(
            endpoint=f"http://127.0.0.1:{fake_port}",
            api_key=SecretStr("load-test"),
            proactive_greeting_enabled=False,
        ),
        gateway=GatewaySettings(),
        metrics=MetricsSettings(enabled=False),
    )

    pauses = GcPauses()
    gc.callbacks.append(pauses)

    async def main() -> None:
        gateway = Gateway(settings)
        await gateway.start()
        gc.freeze()  # what `voicelive-sip serve --gc-freeze` does: the library itself leaves gc alone
        running = asyncio.get_running_loop()
        stop = asyncio.Event()

        def dump(name: str) -> None:
            body, _ = gateway.metrics.render()
            (workdir / f"metrics_{name}.txt").write_bytes(body)
            stats = gateway.clock.stats
            clock = {
                "slots": stats.slots,
                "late_slots": stats.late_slots,
                "skipped_slots": stats.skipped_slots,
                "max_lateness_ms": stats.max_lateness * 1000,
                "source_errors": stats.source_errors,
                "sessions": len(gateway.sessions),
                "gc": pauses.report(),
            }
            pauses.reset()
            (workdir / f"clock_{name}.json").write_text(json.dumps(clock))

        def count_objects() -> None:
            # Right after the window, calls still up (it takes tens of ms): what a full collection walks
            # besides the frozen start-up objects, and the most common kinds.
            objects = gc.get_objects()
            kinds = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
            tracked = {
                "tracked": len(objects),
                "frozen": gc.get_freeze_count(),
                "sessions": len(gateway.sessions),
                "kinds": kinds.most_common(12),
            }
            del objects
            (workdir / "gc_objects.json").write_text(json.dumps(tracked))

        def terminate() -> None:
            dump("end")
            stop.set()

        running.add_signal_handler(signal.SIGUSR1, dump, "start")
        running.add_signal_handler(signal.SIGUSR2, count_objects)
        running.add_signal_handler(signal.SIGTERM, terminate)
        (workdir / "gateway_port").write_text(str(gateway.ua.address[1]))
        await stop.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(gateway.stop(), 10)

    run_loop(main, loop)


# ---------------------------------------------------------------------------------------------------------
# process 2: the fake Voice Live


def fake_process(workdir: Path, pace: float, core: int, loop: str) -> None:
    pin(core)
    quiet_logs()
    from voicelive_sip.testing.fake_voicelive import FakeVoiceLive

    async def main() -> None:
        fake = FakeVoiceLive(
            api_key=None,
            bearer_token=None,
            voice="tone",
            pace=pace,
            max_recorded_events=0,
            max_recorded_audio_bytes=0,
        )
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        running.add_signal_handler(signal.SIGTERM, stop.set)
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        stalls = array.array("d")  # (monotonic end, milliseconds) of every loop stall over STALL_MS

        async def watch() -> None:
            frozen = time.monotonic()
            while True:
                before = time.monotonic()
                await asyncio.sleep(HEARTBEAT_S)
                now = time.monotonic()
                late = (now - before - HEARTBEAT_S) * 1000
                if late > STALL_MS:
                    stalls.extend((now, late))
                if now - frozen >= 1.0:
                    # A load generator, not a product: what survived a second is left out of the collector's
                    # full passes, which walked every connection's state and stalled replies for 50 ms.
                    gc.freeze()
                    frozen = now

        async with fake:
            watcher = running.create_task(watch())
            (workdir / "fake_port").write_text(str(fake.port))
            await stop.wait()
            watcher.cancel()
        report = {"gc": pauses.report(), "stalls": stalls.tolist()}
        (workdir / "fake.json").write_text(json.dumps(report))

    run_loop(main, loop)


# ---------------------------------------------------------------------------------------------------------
# process 3: the caller


class Arrivals:
    """Every RTP packet received during the window: SSRC, RTP timestamp, kernel and user ns, audio or fill."""

    def __init__(self) -> None:
        self.active = False
        self.ssrc = array.array("Q")
        self.timestamp = array.array("q")
        self.kernel_ns = array.array("q")
        self.user_ns = array.array("q")
        self.audio = array.array("b")  # 1: agent audio, 0: the gateway's silence fill
        self.no_kernel_stamp = 0


class CallerSrtp:
    """The caller's SRTP (`--media srtp`): libsrtp sessions per call, and what protecting and checking did.

    Each call gets an outbound session under the caller's key and an inbound one under the gateway's, as a
    phone would; every failure to unprotect is counted by libsrtp's reason (auth, replay, other).
    """

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.answers_savp = 0  # answers with RTP/SAVP and a=crypto: the call's media is SRTP
        self.answers_other: list[str] = []  # anything else (the first few), which must not happen
        self.protected = 0
        self.protect_failures = 0
        self.unprotected = 0
        self.auth_failures = 0
        self.replay_failures = 0
        self.other_failures = 0
        self.before_keys = 0  # received before the call's answer was processed: nothing to check them with

    @staticmethod
    def session(key_salt: bytes, suite: str, *, inbound: bool) -> pylibsrtp.Session:
        import pylibsrtp

        from voicelive_sip.rtp.srtp import PROFILES

        ssrc_type = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        return pylibsrtp.Session(
            pylibsrtp.Policy(key=key_salt, ssrc_type=ssrc_type, srtp_profile=PROFILES[suite])
        )

    def dropped(self, reason: str) -> None:
        if reason == "authentication failure":
            self.auth_failures += 1
        elif reason.startswith("replay check failed") or "too old" in reason:
            self.replay_failures += 1
        else:
            self.other_failures += 1

    def report(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "answers_savp": self.answers_savp,
            "answers_other": self.answers_other[:5],
            "packets_protected": self.protected,
            "protect_failures": self.protect_failures,
            "packets_unprotected": self.unprotected,
            "auth_failures": self.auth_failures,
            "replay_failures": self.replay_failures,
            "other_failures": self.other_failures,
            "received_before_keys": self.before_keys,
        }


class CallerMedia:
    """The RTP of every call the caller places: a port pair per call, as a phone or an SBC would have.

    Each RTP socket is read directly (`loop.add_reader`, up to RECEIVE_BATCH datagrams per wake-up) with
    `recvmsg`, whose ancillary data carries the datagram's kernel receive timestamp (SO_TIMESTAMPNS); one task
    sends every call's frame with `socket.sendto` from the call's own socket, a quarter of the calls every
    5 ms as the gateway's clock does. No transport or protocol objects: this keeps the load generator light
    enough to share core 1 with the fake at 300+ calls. Its own send timing is not what is measured.
    (One socket for all calls would be lighter still, but then every packet the gateway sends contends
    for that one socket's receive queue with the reader on the other core, which slows the gateway down.)
    With `srtp`, each call's packets are protected on the way out and unprotected on the way in, before
    anything reads them.
    """

    def __init__(
        self,
        port: int,
        arrivals: Arrivals,
        cycle: list[bytes],
        srtp: CallerSrtp | None = None,
        silence: bytes | None = SILENCE_PCMU,
    ) -> None:
        self.next_port = port
        self.arrivals = arrivals
        # The gateway's fill frame, to tell agent audio from it; None (G.722: every encoded frame differs):
        # every packet counts as audio, so the gap criterion sees missing packets only.
        self.silence = silence
        self.srtp = srtp
        self.cycle = cycle  # one payload per 20 ms frame of the talk/silence cycle
        self.phases: list[list[list[Any]]] = [[] for _ in range(SEND_PHASES)]
        self.send_errors = 0
        self.lateness_ms = array.array("d")  # how late each send slot started, during the window
        self.sockets: list[socket.socket] = []
        # SRTP: per RTP socket, [its inbound libsrtp session] (None until the call is answered)
        self.inbound: dict[int, list[pylibsrtp.Session | None]] = {}
        self.sender = asyncio.get_running_loop().create_task(self._send())

    def open(self) -> tuple[int, socket.socket]:
        """Bind the next RTP/RTCP port pair; returns the RTP port and socket (RTCP goes unread).

        With SRTP, the socket's inbound libsrtp session is set by `add` once the call is answered.
        """
        while True:
            port, self.next_port = self.next_port, self.next_port + 2
            pair = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for offset, sock in enumerate(pair):
                    sock.bind(("127.0.0.1", port + offset))
                    sock.setblocking(False)
            except OSError:  # taken by someone else: try the next pair
                for sock in pair:
                    sock.close()
                continue
            rtp = pair[0]
            rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            inbound = None if self.srtp is None else self.inbound.setdefault(rtp.fileno(), [None])
            asyncio.get_running_loop().add_reader(rtp.fileno(), self._receive, rtp, inbound)
            self.sockets.extend(pair)
            return port, rtp

    def add(
        self,
        sock: socket.socket,
        remote: tuple[str, int],
        payload_type: int,
        index: int,
        calls: int,
        elapsed: float,
        keys: tuple[bytes, bytes] | None = None,
    ) -> None:
        """Start sending to a call's gateway port, `elapsed` seconds after the first call was placed.

        Call `index` starts talking at elapsed = CYCLE_SECONDS * index / calls (modulo the cycle), so the
        talk spurts, and the replies, of N calls are spread evenly over the cycle whenever they were answered.
        With SRTP, `keys` are (ours, the gateway's) master key and salt.
        """
        period = len(self.cycle)
        offset = (round(elapsed / 0.020) - period * index // calls) % period  # frames into the cycle now
        sendto: Callable[[bytes, tuple[str, int]], object] = sock.sendto
        if self.srtp is not None and keys is not None:
            sendto = self._protected(sock, *keys)
        # [sendto, address, payload type, ssrc, sequence, timestamp, frame]
        self.phases[index % SEND_PHASES].append(
            [sendto, remote, payload_type, random.getrandbits(32), random.getrandbits(16), 0, offset]
        )

    def _protected(
        self, sock: socket.socket, local: bytes, remote: bytes
    ) -> Callable[[bytes, tuple[str, int]], object]:
        """`sock.sendto` protecting every packet under `local`; also arms the socket's inbound session."""
        import pylibsrtp

        srtp = self.srtp
        assert srtp is not None
        self.inbound[sock.fileno()][0] = srtp.session(remote, srtp.suite, inbound=True)
        protect = srtp.session(local, srtp.suite, inbound=False).protect
        sendto = sock.sendto

        def send(packet: bytes, address: tuple[str, int]) -> None:
            try:
                packet = protect(packet)
            except pylibsrtp.Error:
                srtp.protect_failures += 1
                return
            srtp.protected += 1
            sendto(packet, address)

        return send

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        pack, cycle, period = RTP_HEADER.pack, self.cycle, len(self.cycle)
        due, phase = loop.time(), 0
        lateness = self.lateness_ms
        while True:
            if self.arrivals.active:
                lateness.append((loop.time() - due) * 1000)
            for stream in self.phases[phase]:
                sendto, address, payload_type, ssrc, sequence, timestamp, frame = stream
                try:
                    sendto(
                        pack(0x80, payload_type, sequence, timestamp, ssrc) + cycle[frame % period], address
                    )
                except OSError:  # a full buffer, or an ICMP error from a call that ended
                    self.send_errors += 1
                stream[4], stream[5], stream[6] = (
                    (sequence + 1) & 0xFFFF,
                    (timestamp + 160) & 0xFFFFFFFF,
                    frame + 1,
                )
            phase = (phase + 1) % SEND_PHASES
            due += 0.020 / SEND_PHASES
            delay = due - loop.time()
            if delay < -0.1:  # the core was taken away: skip ahead rather than burst
                due, delay = loop.time(), 0.0
            await asyncio.sleep(max(0.0, delay))

    def _receive(self, sock: socket.socket, inbound: list[pylibsrtp.Session | None] | None) -> None:
        arrivals, recvmsg, clock_ns = self.arrivals, sock.recvmsg, time.monotonic_ns
        unpack, stamp, silence = RTP_HEADER.unpack_from, TIMESPEC.unpack_from, self.silence
        for _ in range(RECEIVE_BATCH):  # bounded: the sender's next slot must not wait on a long backlog
            try:
                data, ancillary, _, _ = recvmsg(2048, CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            user = clock_ns()
            if inbound is not None:  # SRTP: every packet is checked, in the window or not
                data = self._unprotect(inbound[0], data)
                if not data:
                    continue
            if not arrivals.active or len(data) < 12:
                continue
            kernel = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = stamp(payload)
                    kernel = seconds * 1_000_000_000 + nanos
            if not kernel:
                arrivals.no_kernel_stamp += 1
            _, _, _, timestamp, ssrc = unpack(data)
            arrivals.ssrc.append(ssrc)
            arrivals.timestamp.append(timestamp)
            arrivals.kernel_ns.append(kernel)
            arrivals.user_ns.append(user)
            arrivals.audio.append(data[12:] != silence)

    def _unprotect(self, session: pylibsrtp.Session | None, data: bytes) -> bytes:
        """The RTP packet inside SRTP `data`, or b"" (counted) when it fails or the keys are not known yet."""
        import pylibsrtp

        srtp = self.srtp
        assert srtp is not None
        if session is None:
            srtp.before_keys += 1
            return b""
        try:
            packet: bytes = session.unprotect(data)
        except pylibsrtp.Error as error:
            srtp.dropped(str(error))
            return b""
        srtp.unprotected += 1
        return packet

    def close(self) -> None:
        self.sender.cancel()
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()


def send_errors(ssrc: np.ndarray, timestamp: np.ndarray, arrived_ns: np.ndarray) -> np.ndarray:
    """|arrival - fitted ideal| in ms for every packet, each stream fitted to its own 8 kHz timestamps."""
    errors = []
    order = np.lexsort((arrived_ns, ssrc))
    ssrc, timestamp, arrived_ns = ssrc[order], timestamp[order], arrived_ns[order]
    bounds = np.flatnonzero(np.diff(ssrc)) + 1
    for ts, arrived in zip(np.split(timestamp, bounds), np.split(arrived_ns, bounds), strict=True):
        if len(ts) < 10 or not arrived.all():
            continue
        media = np.unwrap(ts.astype(np.float64), period=2**32) / 8000.0
        seconds = (arrived - arrived[0]).astype(np.float64) / 1e9
        residual = seconds - (media - media[0])
        errors.append(np.abs(residual - np.median(residual)))
    return np.concatenate(errors) * 1000 if errors else np.zeros(0)


def repeated_stamps(ssrc: np.ndarray, arrived_ns: np.ndarray) -> int:
    """Packets of one stream whose kernel receive timestamp equals the previous packet's (a stale read)."""
    order = np.argsort(ssrc, kind="stable")
    same_stream = np.diff(ssrc[order]) == 0
    return int((same_stream & (np.diff(arrived_ns[order]) == 0)).sum())


def audible_gaps(
    ssrc: np.ndarray, timestamp: np.ndarray, audio: np.ndarray, arrived_ns: np.ndarray
) -> dict[str, Any]:
    """Silence the caller heard inside an agent reply: audio, up to GAP_MAX_FRAMES of fill, audio again.

    `at` lists when (monotonic seconds) the audio after each gap arrived, to compare with the fake's stalls.
    """
    gaps = gap_frames = replies = 0
    at: list[float] = []
    order = np.lexsort((timestamp, ssrc))
    ssrc, timestamp, audio, arrived_ns = ssrc[order], timestamp[order], audio[order], arrived_ns[order]
    bounds = np.flatnonzero(np.diff(ssrc)) + 1
    for ts, flags, arrived in zip(
        np.split(timestamp, bounds), np.split(audio, bounds), np.split(arrived_ns, bounds), strict=True
    ):
        frames = np.unwrap(ts.astype(np.float64), period=2**32) / 160
        played = flags.astype(bool)
        if not played.any():
            continue
        step = np.diff(frames[played])
        inside = (step >= 2) & (step <= GAP_MAX_FRAMES)
        gaps += int(inside.sum())
        gap_frames += int((step[inside] - 1).sum())
        replies += 1 + int((step > GAP_MAX_FRAMES).sum())
        at.extend((arrived[played][1:][inside] / 1e9).tolist())
    return {"gaps": gaps, "gap_frames": gap_frames, "replies": replies, "at": sorted(at)}


def gaps_after_stalls(
    gap_times: Sequence[float], stalls: Sequence[tuple[float, float]], reach: float = FAKE_STALL_REACH_S
) -> int:
    """Gaps heard at most `reach` seconds after a stall of the fake began; stalls are (end s, length ms)."""
    starts = [end - ms / 1000 for end, ms in stalls]
    return sum(1 for at in gap_times if any(at - reach <= start <= at for start in starts))


def percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not values.size:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
        "max": round(float(values.max()), 3),
    }


def caller_process(
    workdir: Path,
    target: str,
    calls: int,
    seconds: float,
    core: int,
    loop: str,
    media_mode: MediaMode = "plain",
    suite: str = DEFAULT_SRTP_SUITE,
    codec: str = "PCMU",
) -> None:
    pin(core)
    quiet_logs()
    from voicelive_sip.aio import CallFailed, OutgoingCall, UserAgent
    from voicelive_sip.codecs import g711
    from voicelive_sip.codecs.names import Codec
    from voicelive_sip.config import MediaSettings, SipSettings
    from voicelive_sip.sdes import SdesKey

    arrivals = Arrivals()
    t = np.arange(int(8000 * TALK_SECONDS)) / 8000
    tone = g711.ulaw_encode(np.round(0.25 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16))
    talk = [tone[at : at + 160] for at in range(0, len(tone), 160)]
    cycle = talk + [SILENCE_PCMU] * (int(CYCLE_SECONDS * 50) - len(talk))
    if codec == "G722":
        # The same talk spurt and pause, G.722-encoded once (16 kHz PCM, 20 ms = 160 bytes), replayed.
        from voicelive_sip.codecs.g722 import G722Encoder

        wide = np.zeros(int(16000 * CYCLE_SECONDS), dtype="<i2")
        spurt = np.arange(int(16000 * TALK_SECONDS)) / 16000
        wide[: len(spurt)] = np.round(0.25 * 32767 * np.sin(2 * np.pi * 440.0 * spurt))
        encoder, pcm = G722Encoder(), wide.tobytes()
        cycle = [encoder.encode(pcm[at : at + 640]) for at in range(0, len(pcm), 640)]

    async def main() -> None:
        sip = SipSettings(local_address="127.0.0.1", port=0, transports=["udp"], max_calls=calls + 50)
        media = MediaSettings(address="127.0.0.1", codecs=[Codec.parse(codec)], srtp=SRTP_POLICY[media_mode])
        srtp = CallerSrtp(suite) if media_mode == "srtp" else None
        fill = SILENCE_PCMU if codec == "PCMU" else None
        rtp = CallerMedia(CALLER_MEDIA_PORT, arrivals, cycle, srtp, fill)
        loop = asyncio.get_running_loop()
        failures: list[str] = []
        up: list[OutgoingCall] = []
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        epoch = loop.time()

        async def place(ua: UserAgent, index: int) -> None:
            async with gate:
                port, sock = rtp.open()
                try:
                    call = ua.dial(target, rtp_port=port, codecs=[codec], timeout=20)
                    if srtp is not None and call.local_media is not None:
                        # The offer is built when the INVITE task first runs: one a=crypto line, of our suite.
                        call.local_media.offer_keys = (SdesKey.generate(suite),)
                    answer = await call.answered()
                except (CallFailed, OSError, TimeoutError) as error:
                    failures.append(repr(error))
                    return
                if answer is None:
                    failures.append("answered without SDP")
                    return
                keys = None
                if srtp is not None:
                    if (
                        answer.proto == "RTP/SAVP"
                        and answer.srtp is not None
                        and answer.srtp.suite.name == suite
                    ):
                        srtp.answers_savp += 1
                        keys = (answer.srtp.local.key_salt, answer.srtp.remote.key_salt)
                    else:
                        srtp.answers_other.append(f"{answer.proto} {answer.srtp!r}")
                up.append(call)
                rtp.add(sock, answer.remote_rtp, answer.payload_type, index, calls, loop.time() - epoch, keys)

        async with UserAgent(sip, media) as ua:
            placing = []
            for index in range(calls):
                placing.append(loop.create_task(place(ua, index)))
                await asyncio.sleep(1 / SETUP_RATE)
            await asyncio.gather(*placing, return_exceptions=True)
            setup_s = loop.time() - epoch
            await asyncio.sleep(WARMUP_SECONDS)
            ended_before = sum(1 for call in up if call.ended)
            arrivals.active = True
            cpu, wall = time.process_time(), time.monotonic()
            window = [wall]
            (workdir / "window_start").write_text(str(time.time()))
            await asyncio.sleep(seconds)
            arrivals.active = False
            window.append(time.monotonic())
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            ended = sum(1 for call in up if call.ended)
            (workdir / "window_end").write_text(str(time.time()))
            for _ in range(50):  # the calls stay up while the gateway counts its objects (bounded wait)
                if (workdir / "gc_objects.json").exists():
                    break
                await asyncio.sleep(0.1)
            await asyncio.gather(*(call.hangup() for call in up if not call.ended), return_exceptions=True)
            sender_failure = (
                rtp.sender.exception() if rtp.sender.done() and not rtp.sender.cancelled() else None
            )
            rtp.close()
        ssrc = np.frombuffer(arrivals.ssrc, dtype=np.uint64)
        timestamp = np.frombuffer(arrivals.timestamp, dtype=np.int64)
        kernel_ns = np.frombuffer(arrivals.kernel_ns, dtype=np.int64)
        kernel = send_errors(ssrc, timestamp, kernel_ns)
        user_ns = np.frombuffer(arrivals.user_ns, dtype=np.int64)
        user = send_errors(ssrc, timestamp, user_ns)
        heard = audible_gaps(ssrc, timestamp, np.frombuffer(arrivals.audio, dtype=np.int8), user_ns)
        result = {
            "calls_set_up": len(up),
            "setup_failures": failures[:20],
            "setup_seconds": round(setup_s, 2),
            "ended_early": ended,
            "ended_before_window": ended_before,
            "streams_received": int(np.unique(ssrc).size),
            "packets_received": int(ssrc.size),
            "packets_expected": int(len(up) * seconds * 50),
            "packets_without_kernel_timestamp": arrivals.no_kernel_stamp,
            # Two datagrams of one stream with the same kernel stamp would mean the stamps are not per packet.
            "repeated_kernel_timestamps": repeated_stamps(ssrc, kernel_ns),
            "send_error_ms": percentiles(kernel),
            "send_error_userspace_ms": percentiles(user),
            "audible_gaps": heard,
            "caller_cpu_percent": round(100 * cpu / wall, 1),
            "window_monotonic": window,
            "caller_send_errors": rtp.send_errors,
            "caller_send_lateness_ms": percentiles(np.frombuffer(rtp.lateness_ms, dtype=np.float64)),
            "sender_failure": None if sender_failure is None else repr(sender_failure),
            "media": media_mode,
            "codec": codec,
            "srtp": None if srtp is None else srtp.report(),
        }
        (workdir / "caller.json").write_text(json.dumps(result))

    run_loop(main, loop)


# ---------------------------------------------------------------------------------------------------------
# the orchestrator


def prometheus(path: Path) -> dict[str, Any]:
    """Underruns and the latency histogram (cumulative buckets per direction) from a text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    underruns = 0.0
    buckets: dict[str, list[tuple[float, float]]] = {"uplink": [], "downlink": []}
    srtp: dict[str, float] = {}
    if not path.exists():
        return {"underruns": None, "buckets": buckets, "srtp": srtp}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == "voicelive_sip_media_underruns_total":
                underruns = sample.value
            elif sample.name == "voicelive_sip_gateway_latency_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[sample.labels["direction"]].append((bound, sample.value))
            elif "srtp" in sample.name and not sample.name.endswith("_created"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                srtp[f"{sample.name}{{{labels}}}"] = sample.value
    return {
        "underruns": underruns,
        "buckets": {k: sorted(v) for k, v in buckets.items()},
        "srtp": srtp,
    }


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket holding the q-th observation (seconds)."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def latency(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """Per direction: observations and p50/p99 (ms) of the steady window (end minus start histogram)."""
    out: dict[str, Any] = {}
    for direction in ("uplink", "downlink"):
        before = dict(start["buckets"][direction])
        window = [(bound, count - before.get(bound, 0.0)) for bound, count in end["buckets"][direction]]
        p50, p99 = histogram_quantile(0.5, window), histogram_quantile(0.99, window)
        out[direction] = {
            "observations": int(window[-1][1]) if window else 0,
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "buckets_ms": {
                ("+Inf" if bound == float("inf") else f"{bound * 1000:g}"): int(count)
                for bound, count in window
            },
        }
    return out


class Processes:
    """Children of one step; every one is ended on exit, also on failure."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str, core: int | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "benchmarks.load", "--role", name, "--workdir", str(self.workdir)]
        if core is not None:
            command += ["--core", str(core)]
        process = subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def close(self) -> None:
        for process in reversed(self.children):
            if process.poll() is None:
                process.kill()
                process.wait(5)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_step(
    calls: int,
    seconds: float,
    loop: str,
    *,
    pace: float = 0.9,
    gateway_core: int = 0,
    other_core: int = 1,
    profile: Path | None = None,
    generator_loop: str = "asyncio",
    media: MediaMode = "plain",
    srtp_suite: str = DEFAULT_SRTP_SUITE,
    codec: str = "PCMU",
) -> dict[str, Any]:
    """One measurement: fresh fake, gateway and caller; returns the step's report."""
    speed_before = core_speed(gateway_core)
    with tempfile.TemporaryDirectory(prefix="load") as tmp, Processes(Path(tmp)) as procs:
        workdir = Path(tmp)
        fake = procs.start("fake", "--pace", str(pace), "--loop", generator_loop, core=other_core)
        fake_port = wait_for_file(workdir / "fake_port", fake, 30, "the fake")
        gateway = procs.start(
            "gateway",
            *("--fake-port", fake_port, "--calls", str(calls), "--loop", loop, "--media", media),
            core=gateway_core,
        )
        sip_port = wait_for_file(workdir / "gateway_port", gateway, 30, "the gateway")
        time.sleep(0.5)
        idle_rss = rss_mib(gateway.pid)
        caller = procs.start(
            "caller",
            *("--target", f"sip:load@127.0.0.1:{sip_port}", "--calls", str(calls)),
            *("--seconds", str(seconds), "--loop", generator_loop),
            *("--media", media, "--srtp-suite", srtp_suite, "--codec", codec),
            core=other_core,
        )
        timeout = calls / SETUP_RATE + WARMUP_SECONDS + 60
        wait_for_file(workdir / "window_start", caller, timeout, "the caller")
        gateway.send_signal(signal.SIGUSR1)
        ticks = {p.pid: cpu_ticks(p.pid) for p in (gateway, fake, caller)}
        kernel_ticks = cpu_ticks(gateway.pid, kernel_only=True)
        cores = {core: core_ticks(core) for core in {gateway_core, other_core}}
        wall = time.monotonic()
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    *("taskset", "-c", str(other_core), "py-spy", "record", "--pid", str(gateway.pid)),
                    *("--duration", str(max(1, int(seconds) - 1)), "--rate", "200", "--nonblocking"),
                    *("--format", "raw" if profile.suffix == ".txt" else "flamegraph"),
                    *("--output", str(profile)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.children.append(spy)
        peak_rss = idle_rss
        while not (workdir / "window_end").exists():
            if caller.poll() is not None:
                break
            peak_rss = max(peak_rss, rss_mib(gateway.pid))
            time.sleep(0.25)
        elapsed = time.monotonic() - wall
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {pid: 100 * (cpu_ticks(pid) - before) / hz / elapsed for pid, before in ticks.items()}
        gateway_kernel = 100 * (cpu_ticks(gateway.pid, kernel_only=True) - kernel_ticks) / hz / elapsed
        busy = {}
        for core, (busy_before, total_before) in cores.items():
            busy_after, total_after = core_ticks(core)
            busy[core] = 100 * (busy_after - busy_before) / max(1, total_after - total_before)
        steady_rss = rss_mib(gateway.pid)
        gateway.send_signal(signal.SIGUSR2)  # count its objects, after the window's CPU was read
        peak_rss = max(peak_rss, steady_rss)
        try:
            caller.wait(calls / 20 + 60)
        except subprocess.TimeoutExpired:
            caller.kill()
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        procs.stop(gateway)
        procs.stop(fake)
        fake_report = json.loads((workdir / "fake.json").read_text())
        result_path = workdir / "caller.json"
        if not result_path.exists():
            raise RuntimeError(f"the caller wrote no result: {(workdir / 'caller.log').read_text()[-3000:]}")
        result = json.loads(result_path.read_text())
        start, end = prometheus(workdir / "metrics_start.txt"), prometheus(workdir / "metrics_end.txt")
        clock_start = json.loads((workdir / "clock_start.json").read_text())
        clock_end = json.loads((workdir / "clock_end.json").read_text())
        gc_path = workdir / "gc_objects.json"
        gc_objects = json.loads(gc_path.read_text()) if gc_path.exists() else None
        gateway_log = (workdir / "gateway.log").read_text(errors="replace")
    speed = [speed_before, core_speed(gateway_core)]
    set_up = result["calls_set_up"]
    begin, finish = result["window_monotonic"]
    stalls = fake_report["stalls"]
    fake_stalls = [
        (end_s, ms) for end_s, ms in zip(stalls[::2], stalls[1::2], strict=True) if begin <= end_s <= finish
    ]
    underruns = None
    if start["underruns"] is not None and end["underruns"] is not None:
        underruns = int(end["underruns"] - start["underruns"])
    core1 = cpu[fake.pid] + cpu[caller.pid]
    failed = calls - set_up + result["ended_early"]
    p99 = result["send_error_ms"]["p99"]
    # The fake streams ahead of real time, so a gap the caller hears is audio the gateway held and did not
    # play in time, unless the fake itself fell behind: its core was saturated, or its loop stalled (a full
    # garbage collection) shortly before the gap, holding back the next chunk of a reply in flight.
    gap_times = result["audible_gaps"]["at"]
    after_fake_stall = gaps_after_stalls(gap_times, fake_stalls)
    gateway_gaps = len(gap_times) - after_fake_stall if core1 < 90 else None
    srtp = result["srtp"]
    gateway_dropped = sum(v for k, v in end["srtp"].items() if k.startswith("voicelive_sip_srtp_dropped"))
    # With SRTP every call must have been answered RTP/SAVP and no packet may have failed its check, on
    # either side (the gateway's drops are its counters at the end of the window, the whole run's).
    srtp_ok = srtp is None or (
        srtp["answers_savp"] == set_up
        and srtp["auth_failures"] == 0
        and srtp["other_failures"] == 0
        and srtp["protect_failures"] == 0
        and gateway_dropped == 0
    )
    held = failed == 0 and p99 is not None and p99 <= TARGET_P99_MS and gateway_gaps == 0 and srtp_ok
    return {
        "calls": calls,
        "seconds": seconds,
        "loop": loop,
        "media": media,
        "srtp_suite": srtp_suite if media == "srtp" else None,
        "fake_pace": pace,
        "generator_loop": generator_loop,
        "calls_set_up": set_up,
        "failed_calls": failed,
        # ms for a fixed loop on the gateway's core before and after the step (lower: faster host).
        "gateway_core_speed_ms": speed,
        "gateway_cpu_percent": round(cpu[gateway.pid], 1),
        "gateway_kernel_cpu_percent": round(gateway_kernel, 1),  # of which in system calls (sockets)
        "gateway_cpu_percent_per_call": round(cpu[gateway.pid] / set_up, 4) if set_up else None,
        "gateway_rss_idle_mib": round(idle_rss, 1),
        "gateway_rss_mib": round(steady_rss, 1),
        "gateway_rss_peak_mib": round(peak_rss, 1),
        "rss_per_call_mib": round((steady_rss - idle_rss) / set_up, 3) if set_up else None,
        "send_error_ms": result["send_error_ms"],
        "send_error_userspace_ms": result["send_error_userspace_ms"],
        "latency_ms": latency(start, end),
        "underruns": underruns,
        # The gateway's SRTP counters at the end of the window (drops by kind, calls by suite).
        "gateway_srtp": end["srtp"],
        "audible_gaps": result["audible_gaps"],
        "gaps_after_fake_stall": after_fake_stall,
        "gateway_caused_gaps": gateway_gaps,
        "gateway_clock": {
            key: clock_end[key] - clock_start[key]
            for key in ("slots", "late_slots", "skipped_slots", "source_errors")
        }
        | {"max_lateness_ms_whole_run": round(clock_end["max_lateness_ms"], 2)},
        "gateway_gc_pauses": clock_end.get("gc"),
        "gateway_gc_objects": gc_objects,
        "fake_cpu_percent": round(cpu[fake.pid], 1),
        "fake_gc_pauses": fake_report["gc"],
        "fake_loop_stalls_ms": [round(ms, 1) for _, ms in fake_stalls],
        "caller_cpu_percent": round(cpu[caller.pid], 1),
        "core1_saturated": core1 >= 90,
        # Anything else that ran on the gateway's core during the window (the machine is shared).
        "other_load_on_gateway_core_percent": round(max(0.0, busy[gateway_core] - cpu[gateway.pid]), 1)
        if other_core != gateway_core
        else None,
        "caller": result,
        "gateway_warnings": gateway_log.count("warning") + gateway_log.count("error"),
        "srtp_ok": srtp_ok,
        "held": held,
    }


def largest_held(steps: Sequence[dict[str, Any]]) -> int:
    """The largest N whose last attempt held (0: none did)."""
    final = {s["calls"]: s for s in steps}
    held = [calls for calls, s in final.items() if s["held"]]
    return max(held) if held else 0


def compare(plain: Sequence[dict[str, Any]], srtp: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """SRTP against plain RTP: the largest N each held, their ratio, the gateway's CPU at every N both ran.

    `calls_per_core` extrapolates a step's N to a whole core (N / CPU share): what the gateway's CPU alone
    would allow, which the held N reaches only when nothing else (core 1, the send-time error) stops it first.
    """
    plain_final = {s["calls"]: s for s in plain}
    srtp_final = {s["calls"]: s for s in srtp}
    steps = []
    for calls in sorted(plain_final.keys() & srtp_final.keys()):
        a, b = plain_final[calls], srtp_final[calls]
        cpu_a, cpu_b = a["gateway_cpu_percent"], b["gateway_cpu_percent"]
        steps.append(
            {
                "calls": calls,
                "held": {"plain": a["held"], "srtp": b["held"]},
                "gateway_cpu_percent": {"plain": cpu_a, "srtp": cpu_b},
                "srtp_cpu_over_plain": round(cpu_b / cpu_a, 3) if cpu_a else None,
                "calls_per_core": {
                    "plain": round(100 * calls / cpu_a) if cpu_a else None,
                    "srtp": round(100 * calls / cpu_b) if cpu_b else None,
                },
                "gateway_core_speed_ms": {
                    "plain": a["gateway_core_speed_ms"],
                    "srtp": b["gateway_core_speed_ms"],
                },
            }
        )
    held_plain, held_srtp = largest_held(plain), largest_held(srtp)
    ratio = round(held_srtp / held_plain, 3) if held_plain else None
    return {
        "largest_calls_held": {"plain": held_plain, "srtp": held_srtp},
        "srtp_of_plain": ratio,
        "target": SRTP_TARGET_RATIO,
        "met": ratio is not None and ratio >= SRTP_TARGET_RATIO,
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady window")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help="gateway loop")
    parser.add_argument("--find-max", action="store_true", help="raise --steps until a step fails")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="call counts for --find-max")
    parser.add_argument(
        "--pace", type=float, default=DEFAULT_PACE, help="fake reply pace (1.0 = real time, lower = faster)"
    )
    parser.add_argument(
        "--generator-loop",
        choices=["asyncio", "uvloop"],
        default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        help="loop of the fake and the caller (default: uvloop when installed, to leave the other core room)",
    )
    parser.add_argument("--gateway-core", type=int, default=0)
    parser.add_argument("--other-core", type=int, default=1, help="core of the fake and the caller")
    parser.add_argument("--profile", type=Path, help="py-spy the gateway during the window (.svg or .txt)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--media",
        choices=[*MEDIA_MODES, "both"],
        default="plain",
        help="plain RTP, SRTP on both legs, or both back to back at every step",
    )
    parser.add_argument(
        "--srtp-suite",
        choices=["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"],
        default=DEFAULT_SRTP_SUITE,
        help="the one suite the caller offers with --media srtp",
    )
    parser.add_argument(
        "--codec",
        choices=["PCMU", "G722"],
        default="PCMU",
        help="what the caller offers (the gateway prefers G.722 when offered): G.711 pass-through or G.722",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help=f"repeat a failed step when other processes used >= {CONTENDED_PERCENT}%% of the gateway core",
    )
    # Internal: the child processes.
    parser.add_argument("--role", choices=["gateway", "fake", "caller"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--fake-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "gateway":
        gateway_process(args.workdir, args.fake_port, args.calls, args.loop, args.core, args.media)
        return
    if args.role == "fake":
        fake_process(args.workdir, args.pace, args.core, args.loop)
        return
    if args.role == "caller":
        caller_process(
            *(args.workdir, args.target, args.calls, args.seconds, args.core, args.loop),
            *(args.media, args.srtp_suite, args.codec),
        )
        return

    if args.loop == "uvloop":
        import uvloop  # noqa: F401  (fail here, not inside the gateway process)
    other_core = args.other_core if (os.cpu_count() or 1) > 1 else args.gateway_core
    counts = [int(n) for n in args.steps.split(",")] if args.find_max else [args.calls]
    modes: list[MediaMode] = list(MEDIA_MODES) if args.media == "both" else [args.media]
    runs: dict[MediaMode, list[dict[str, Any]]] = {mode: [] for mode in modes}
    going = list(modes)
    for calls in counts:
        # With both, each size runs plain then SRTP back to back: the shared host drifts by the minute.
        for mode in list(going):
            for attempt in range(1 + args.retries):
                step = run_step(
                    calls,
                    args.seconds,
                    args.loop,
                    pace=args.pace,
                    gateway_core=args.gateway_core,
                    other_core=other_core,
                    profile=args.profile if not args.find_max else None,
                    generator_loop=args.generator_loop,
                    media=mode,
                    srtp_suite=args.srtp_suite,
                    codec=args.codec,
                )
                step["attempt"] = attempt + 1
                runs[mode].append(step)
                # A step that failed while something else ran on the gateway's core measured the neighbour.
                if step["held"] or (step["other_load_on_gateway_core_percent"] or 0) < CONTENDED_PERCENT:
                    break
            keys = ("calls", "media", "failed_calls", "gateway_cpu_percent", "gateway_caused_gaps", "held")
            summary = {k: step[k] for k in keys}
            print(json.dumps(summary | {"send_error_ms": step["send_error_ms"]}), file=sys.stderr)
            if args.find_max and not step["held"]:
                going.remove(mode)
        if not going:
            break
    report: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.load", *sys.argv[1:]]),
        "loop": args.loop,
        "generator_loop": args.generator_loop,
        "gateway_core": args.gateway_core,
        "other_core": other_core,
        "machine": machine(),
        "media": args.media,
        "srtp_suite": args.srtp_suite if args.media != "plain" else None,
        "targets": {"send_error_p99_ms": TARGET_P99_MS, "srtp_calls_of_plain": SRTP_TARGET_RATIO},
    }
    if len(modes) == 1:
        report |= {"largest_calls_held": largest_held(runs[modes[0]]), "steps": runs[modes[0]]}
        if not args.find_max:
            report.update(runs[modes[0]][-1])
    else:
        report |= {
            "runs": {
                mode: {"largest_calls_held": largest_held(steps), "steps": steps}
                for mode, steps in runs.items()
            },
            "comparison": compare(runs["plain"], runs["srtp"]),
        }
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
