"""CPU per browser (WebRTC) call, next to G.711 SIP calls, on the same host minute.

    python -m benchmarks.webrtc --calls 5 10 20 --seconds 20 [--sip] [--json out.json]

For each step three processes run on 127.0.0.1, started afresh:
- the gateway on core 0: `Gateway` plus its HTTP server with `BrowserCalls` (WEBRTC_ICE_ADDRESSES=127.0.0.1),
  logs at WARNING, the asyncio loop (aiortc's DTLS and ICE are asyncio code either way);
- the FakeVoiceLive of `benchmarks.load` (tone voice, paced replies) on core 1;
- the callers on core 1: N `WhipClient`s (aiortc: Opus encode and decode, DTLS-SRTP, ICE), each sending
  2 s of a 440 Hz tone then 3 s of silence over and over (spread over the calls), so the fake's VAD ends
  turns and the agent answers while the caller is silent.
The gateway's CPU (utime + stime from /proc) is read over the steady window once every call is connected;
per call = that / N. A step holds when every call connected, stayed up, and heard the agent (loud frames).
The callers are aiortc too: on a 2-core machine they run out of core 1 before the gateway runs out of core 0,
so the calls one core carries is extrapolated from the per-call CPU, and the steps say which side was busy.

`--sip` runs `benchmarks.load` for the same N with G.711 RTP calls right after each WebRTC step, so the two
costs come from the same minute of the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import (
    core_ticks,
    cpu_ticks,
    fake_process,
    machine,
    pin,
    quiet_logs,
    rss_mib,
    wait_for_file,
)

TALK_S, PAUSE_S = 2.0, 3.0
SETTLE_S = 3.0


def gateway_process(workdir: Path, fake_port: int, calls: int, core: int) -> None:
    pin(core)
    quiet_logs()
    from pydantic import SecretStr

    from voicelive_sip.config import (
        MediaSettings,
        Settings,
        SipSettings,
        VoiceLiveSettings,
        WebRtcSettings,
    )
    from voicelive_sip.gateway import Gateway
    from voicelive_sip.http import ObservabilityServer
    from voicelive_sip.webrtc.server import BrowserCalls

    settings = Settings(
        sip=SipSettings(local_address="127.0.0.1", port=0, transports=["udp"], max_calls=calls + 10),
        media=MediaSettings(address="127.0.0.1", port=47000, port_count=64),
        voicelive=VoiceLiveSettings(
            endpoint=f"http://127.0.0.1:{fake_port}",
            api_key=SecretStr("load-test"),
            proactive_greeting_enabled=False,
        ),
        webrtc=WebRtcSettings(enabled=True, ice_addresses=["127.0.0.1"], max_pending=calls + 1),
    )

    async def main() -> None:
        async with Gateway(settings) as gateway:
            browser = BrowserCalls(gateway, settings.webrtc, token=None)
            server = ObservabilityServer(
                gateway.metrics, ready=gateway.readiness, host="127.0.0.1", port=0, browser=browser
            )
            async with server:
                stop = asyncio.Event()
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
                (workdir / "gateway_url").write_text(server.url)
                await stop.wait()

    asyncio.run(main())


def caller_process(workdir: Path, url: str, calls: int, seconds: float, core: int) -> None:
    pin(core)
    quiet_logs()
    from voicelive_sip.testing.whip import WhipClient

    t = np.arange(int(48000 * TALK_S)) / 48000
    talk = np.asarray(0.3 * 32767 * np.sin(2 * np.pi * 440 * t), dtype="<i2").tobytes()
    pause = bytes(int(48000 * PAUSE_S) * 2)

    async def main() -> None:
        clients = [WhipClient(f"{url}/whip") for _ in range(calls)]
        failed = 0
        for client in clients:  # one at a time: ICE and DTLS of many at once would measure set-up, not calls
            try:
                await client.connect()
                await client.wait_for(lambda c: c.connection_state == "connected", timeout=20)
            except Exception:
                failed += 1
        stagger = (TALK_S + PAUSE_S) / max(1, calls)

        async def speak(index: int, client: WhipClient) -> None:
            await asyncio.sleep(index * stagger)
            while True:
                client.play(talk + pause)
                await asyncio.sleep(TALK_S + PAUSE_S)

        talkers = [asyncio.ensure_future(speak(i, c)) for i, c in enumerate(clients)]
        (workdir / "callers_ready").write_text(json.dumps({"failed": failed}))
        await asyncio.sleep(SETTLE_S + seconds + 1.0)
        connected = sum(1 for c in clients if c.connection_state == "connected")
        heard = sum(1 for c in clients if c.loud_frames > 0)
        for task in talkers:
            task.cancel()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.hangup()
                await client.close()
        report = {"failed": failed, "connected_at_end": connected, "heard_agent": heard}
        (workdir / "callers.json").write_text(json.dumps(report))

    asyncio.run(main())


def start(workdir: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    command = [sys.executable, "-m", "benchmarks.webrtc", "--role", name, "--workdir", str(workdir), *args]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run_step(calls: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="webrtc-bench-") as folder:
        workdir = Path(folder)
        children: list[subprocess.Popen[bytes]] = []
        try:
            fake = start(workdir, "fake", "--core", "1")
            children.append(fake)
            fake_port = wait_for_file(workdir / "fake_port", fake, 20, "the fake")
            gateway = start(
                workdir, "gateway", "--core", "0", "--calls", str(calls), "--fake-port", fake_port
            )
            children.append(gateway)
            url = wait_for_file(workdir / "gateway_url", gateway, 30, "the gateway")
            idle_rss = rss_mib(gateway.pid)
            callers = start(
                workdir,
                "callers",
                "--core",
                "1",
                "--calls",
                str(calls),
                "--seconds",
                str(seconds),
                "--url",
                url,
            )
            children.append(callers)
            ready = json.loads(
                wait_for_file(workdir / "callers_ready", callers, 60 + 5 * calls, "the callers")
            )
            time.sleep(SETTLE_S)
            ticks0, wall0 = cpu_ticks(gateway.pid), time.monotonic()
            busy1_0, total1_0 = core_ticks(1)
            time.sleep(seconds)
            ticks1, wall1 = cpu_ticks(gateway.pid), time.monotonic()
            busy1_1, total1_1 = core_ticks(1)
            rss = rss_mib(gateway.pid)
            callers.wait(60)
            report = json.loads((workdir / "callers.json").read_text())
            hz = 100  # os.sysconf("SC_CLK_TCK") on Linux
            cpu = (ticks1 - ticks0) / hz / (wall1 - wall0) * 100
            connected = calls - ready["failed"]
            return {
                "calls": calls,
                "connected": connected,
                "connected_at_end": report["connected_at_end"],
                "heard_agent": report["heard_agent"],
                "gateway_cpu_percent": round(cpu, 1),
                "cpu_per_call_percent": round(cpu / max(1, connected), 2),
                "calls_per_core_extrapolated": round(100 / (cpu / max(1, connected))) if cpu else None,
                "caller_core_busy_percent": round(100 * (busy1_1 - busy1_0) / max(1, total1_1 - total1_0), 1),
                "gateway_rss_mib": round(rss, 1),
                "rss_per_call_mib": round((rss - idle_rss) / max(1, connected), 2),
                "held": report["connected_at_end"] == calls and report["heard_agent"] == calls,
            }
        finally:
            for child in reversed(children):
                stop(child)


def sip_step(calls: int, seconds: float) -> dict[str, Any]:
    """The same N as G.711 SIP calls, from benchmarks.load (asyncio loop, plain RTP)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-m", "benchmarks.load", "--calls", str(calls), "--seconds", str(seconds),
                   "--loop", "asyncio", "--json", out.name]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        result = json.loads(Path(out.name).read_text())
    step = result["steps"][0]
    cpu = float(step["gateway_cpu_percent"])
    per_call = cpu / calls
    return {"calls": calls, "gateway_cpu_percent": round(cpu, 1), "cpu_per_call_percent": round(per_call, 2),
            "held": step.get("held")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["fake", "gateway", "callers"])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--calls", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fake-port", type=int)
    parser.add_argument("--url")
    parser.add_argument(
        "--sip", action="store_true", help="also G.711 SIP calls for each N (benchmarks.load)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.role == "fake":
        fake_process(args.workdir, 1.0, args.core, "asyncio")
        return
    if args.role == "gateway":
        gateway_process(args.workdir, args.fake_port, args.calls[0], args.core)
        return
    if args.role == "callers":
        caller_process(args.workdir, args.url, args.calls[0], args.seconds, args.core)
        return
    result: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "webrtc": [], "sip": []}
    for calls in args.calls:
        step = run_step(calls, args.seconds)
        result["webrtc"].append(step)
        print(json.dumps(step), flush=True)
        if args.sip:
            sip = sip_step(calls, args.seconds)
            result["sip"].append(sip)
            print(json.dumps({"sip": sip}), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
