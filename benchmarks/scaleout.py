"""Scale-out: two gateway processes behind Kamailio (the kit's deploy/kamailio/kamailio.cfg) versus one.

    python -m benchmarks.scaleout --calls-per-gateway 100 --seconds 20 --loop uvloop [--json out.json]

The harness and criteria of `benchmarks.load`, with Kamailio in front. Each run starts, on 127.0.0.1:
- Kamailio with deploy/kamailio/kamailio.cfg as it is (round robin over the gateways, probing every 5 s, two
  UDP workers), set up by -A defines, pinned to core 1;
- one gateway (`benchmarks.load`'s, same settings) pinned to core 0, or two: the second pinned to core 1;
- `benchmarks.load`'s fake Voice Live and caller, pinned to core 1; the caller dials Kamailio (100 calls/s),
  the RTP flows between the caller and the gateways directly.
`one` runs N calls on one gateway, `two` 2N calls over two gateways. This machine has two cores and the load
generator needs one, so the second gateway shares core 1 with the generator and Kamailio: what is compared is
each gateway's CPU per call (utime+stime over the steady window, /proc/PID/stat), which must not grow when two
run side by side (linear scaling), next to the criteria of benchmarks.load (every call up, p99 send-time error
at most 5 ms, no gap the gateway caused). Kamailio's CPU (every process, /proc/PID/schedstat, nanoseconds) is
reported per call set up (from the first INVITE to the window: INVITE, 100, 180, 200, ACK), per call torn down
(BYE, 200) and per second of the steady window (probing).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import load

ROOT = Path(__file__).resolve().parents[1]
KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
GATEWAY_MEDIA_PORTS = (20000, 26000)  # one range each, 3000 ports apart: up to ~1400 calls per gateway


def schedstat_ns(pid: int) -> int:
    """CPU time of one process in ns (/proc/PID/schedstat, first field); 0 once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def family(pid: int) -> list[int]:
    """The process and its children (Kamailio's workers), from /proc/*/stat."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def family_ns(pids: list[int]) -> int:
    return sum(schedstat_ns(pid) for pid in pids)


def start_kamailio(workdir: Path, gateway_ports: list[int], core: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("kamailio", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if binary is None:
        raise SystemExit("kamailio is not installed (Debian package kamailio)")
    port = free_port()
    rundir = Path(tempfile.mkdtemp(prefix="kam", dir="/tmp"))
    dispatcher_list = workdir / "dispatcher.list"
    dispatcher_list.write_text("".join(f"1 sip:127.0.0.1:{p} 0 0\n" for p in gateway_ports))
    defines = [
        "LISTEN_ADDR=127.0.0.1",
        f"SIP_PORT={port}",
        f'DS_LIST="{dispatcher_list}"',
        f'CTL_SOCKET="unix:{rundir}/ctl"',
        "WORKERS=2",
    ]
    command = [
        "taskset",
        "-c",
        str(core),
        binary,
        "-f",
        str(KAMAILIO_CFG),
        "-DD",
        "-E",
        "-m",
        "128",
        "-M",
        "16",
    ]
    command += ["-P", str(rundir / "kamailio.pid"), "-Y", str(rundir)]
    for define in defines:
        command += ["-A", define]
    log = (workdir / "kamailio.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 10
    while not (rundir / "ctl").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"kamailio did not start: {(workdir / 'kamailio.log').read_text()[-2000:]}")
        time.sleep(0.05)
    time.sleep(0.3)  # workers forked
    return process, port


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Children:
    """Every process of a run, ended on exit, also on failure."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, module: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.children.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.children):
            if process.poll() is None:
                process.kill()
                process.wait(5)


def run(
    gateways: int, calls_per_gateway: int, seconds: float, loop: str, generator_loop: str
) -> dict[str, Any]:
    """One measurement: `gateways` gateways (core 0, then core 1) behind Kamailio, N calls each."""
    calls = gateways * calls_per_gateway
    cores = [0, 1][:gateways]
    with tempfile.TemporaryDirectory(prefix="scaleout") as tmp:
        workdir = Path(tmp)
        children = Children(workdir)
        kamailio = None
        try:
            fake = children.start(
                "fake", "benchmarks.load", "--role", "fake", "--workdir", tmp, "--core", "1",
                "--pace", str(load.DEFAULT_PACE), "--loop", generator_loop,
            )  # fmt: skip
            fake_port = load.wait_for_file(workdir / "fake_port", fake, 30, "the fake")
            gws, ports = [], []
            for index, core in enumerate(cores):
                gwdir = workdir / f"gw{index}"
                gwdir.mkdir()
                gateway = children.start(
                    f"gateway{index}", "benchmarks.scaleout", "--role", "gateway", "--workdir", str(gwdir),
                    "--core", str(core), "--fake-port", fake_port, "--calls", str(calls_per_gateway),
                    "--loop", loop, "--media-port", str(GATEWAY_MEDIA_PORTS[index]),
                )  # fmt: skip
                ports.append(int(load.wait_for_file(gwdir / "gateway_port", gateway, 30, "a gateway")))
                gws.append(gateway)
            kamailio, kamailio_port = start_kamailio(workdir, ports, core=1)
            kamailio_pids = family(kamailio.pid)
            time.sleep(1.0)
            kamailio_before_setup = family_ns(kamailio_pids)
            caller = children.start(
                "caller", "benchmarks.load", "--role", "caller", "--workdir", tmp, "--core", "1",
                "--target", f"sip:load@127.0.0.1:{kamailio_port}", "--calls", str(calls),
                "--seconds", str(seconds), "--loop", generator_loop, "--media", "plain",
            )  # fmt: skip
            timeout = calls / load.SETUP_RATE + load.WARMUP_SECONDS + 60
            load.wait_for_file(workdir / "window_start", caller, timeout, "the caller")
            kamailio_setup_ns = family_ns(kamailio_pids) - kamailio_before_setup
            for gateway in gws:
                gateway.send_signal(signal.SIGUSR1)
            everyone = [*gws, fake, caller]
            ticks = {p.pid: load.cpu_ticks(p.pid) for p in everyone}
            kamailio_window = family_ns(kamailio_pids)
            core_busy = {core: load.core_ticks(core) for core in (0, 1)}
            wall = time.monotonic()
            while not (workdir / "window_end").exists() and caller.poll() is None:
                time.sleep(0.25)
            elapsed = time.monotonic() - wall
            hz = os.sysconf("SC_CLK_TCK")
            cpu = {pid: 100 * (load.cpu_ticks(pid) - before) / hz / elapsed for pid, before in ticks.items()}
            kamailio_window_ns = family_ns(kamailio_pids) - kamailio_window
            busy = {}
            for core, (busy_before, total_before) in core_busy.items():
                busy_after, total_after = load.core_ticks(core)
                busy[core] = round(100 * (busy_after - busy_before) / max(1, total_after - total_before), 1)
            for gwdir in (workdir / f"gw{i}" for i in range(len(gws))):
                (gwdir / "gc_objects.json").write_text("{}")  # the caller waits for it before hanging up
            (workdir / "gc_objects.json").write_text("{}")
            kamailio_teardown = family_ns(kamailio_pids)
            caller.wait(calls / 20 + 60)
            time.sleep(1.0)  # the last BYEs are relayed
            kamailio_teardown_ns = family_ns(kamailio_pids) - kamailio_teardown
            for gateway in gws:
                gateway.send_signal(signal.SIGTERM)
                gateway.wait(20)
            fake.send_signal(signal.SIGTERM)
            fake.wait(20)
            result = json.loads((workdir / "caller.json").read_text())
            fake_report = json.loads((workdir / "fake.json").read_text())
            kamailio_log = (workdir / "kamailio.log").read_text(errors="replace")
            per_gateway = []
            for index, gateway in enumerate(gws):
                gwdir = workdir / f"gw{index}"
                start = load.prometheus(gwdir / "metrics_start.txt")
                end = load.prometheus(gwdir / "metrics_end.txt")
                dispatched = kamailio_log.count(f"to gateway sip:127.0.0.1:{ports[index]}")
                per_gateway.append(
                    {
                        "core": cores[index],
                        "calls_dispatched": dispatched,
                        "cpu_percent": round(cpu[gateway.pid], 1),
                        "cpu_percent_per_call": round(cpu[gateway.pid] / dispatched, 4)
                        if dispatched
                        else None,
                        "underruns": None
                        if start["underruns"] is None or end["underruns"] is None
                        else int(end["underruns"] - start["underruns"]),
                        "latency_ms": load.latency(start, end),
                    }
                )
        finally:
            children.close()
            if kamailio is not None and kamailio.poll() is None:
                kamailio.terminate()
                kamailio.wait(10)
    set_up = result["calls_set_up"]
    failed = calls - set_up + result["ended_early"]
    p99 = result["send_error_ms"]["p99"]
    begin, finish = result["window_monotonic"]
    stalls = fake_report["stalls"]
    fake_stalls = [(e, ms) for e, ms in zip(stalls[::2], stalls[1::2], strict=True) if begin <= e <= finish]
    gap_times = result["audible_gaps"]["at"]
    after_fake_stall = load.gaps_after_stalls(gap_times, fake_stalls)
    # Gaps count against the gateways only while core 1 (the generator's) had room, as in benchmarks.load.
    gateway_gaps = len(gap_times) - after_fake_stall if busy[1] < 90 else None
    held = failed == 0 and p99 is not None and p99 <= load.TARGET_P99_MS and gateway_gaps == 0
    return {
        "gateways": gateways,
        "calls": calls,
        "calls_set_up": set_up,
        "failed_calls": failed,
        "per_gateway": per_gateway,
        "send_error_ms": result["send_error_ms"],
        "audible_gaps": result["audible_gaps"]["gaps"],
        "gaps_after_fake_stall": after_fake_stall,
        "gateway_caused_gaps": gateway_gaps,
        "kamailio": {
            "workers": len(kamailio_pids),
            "cpu_us_per_call_setup": round(kamailio_setup_ns / 1000 / max(1, set_up), 1),
            "cpu_us_per_call_teardown": round(kamailio_teardown_ns / 1000 / max(1, set_up), 1),
            "cpu_percent_in_window": round(100 * kamailio_window_ns / 1e9 / elapsed, 2),
            "setup_seconds": result["setup_seconds"],
        },
        "fake_cpu_percent": round(cpu[fake.pid], 1),
        "caller_cpu_percent": round(cpu[caller.pid], 1),
        "core_busy_percent": busy,
        "held": held,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls-per-gateway", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady window")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop", help="gateway loop")
    parser.add_argument(
        "--generator-loop",
        choices=["asyncio", "uvloop"],
        default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration, alternating")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--role", choices=["gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--fake-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--media-port", type=int, default=GATEWAY_MEDIA_PORTS[0], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "gateway":
        load.GATEWAY_MEDIA_PORT = args.media_port  # the gateway's own range: two run side by side
        load.gateway_process(args.workdir, args.fake_port, args.calls, args.loop, args.core)
        return

    runs: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for gateways in (1, 2):
            step = run(gateways, args.calls_per_gateway, args.seconds, args.loop, args.generator_loop)
            runs.append(step)
            summary = {k: step[k] for k in ("gateways", "calls", "failed_calls", "held")}
            summary["cpu_per_call"] = [g["cpu_percent_per_call"] for g in step["per_gateway"]]
            summary["kamailio_us_per_setup"] = step["kamailio"]["cpu_us_per_call_setup"]
            print(json.dumps(summary | {"send_error_ms": step["send_error_ms"]}), file=sys.stderr)
    one = [g["cpu_percent_per_call"] for r in runs if r["gateways"] == 1 for g in r["per_gateway"]]
    two = [g["cpu_percent_per_call"] for r in runs if r["gateways"] == 2 for g in r["per_gateway"]]
    report = {
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.scaleout", *sys.argv[1:]]),
        "machine": load.machine(),
        "loop": args.loop,
        "generator_loop": args.generator_loop,
        "calls_per_gateway": args.calls_per_gateway,
        "runs": runs,
        "cpu_percent_per_call": {
            "one_gateway": one,
            "two_gateways": two,
            # Above 1: a gateway costs more per call when another runs beside it (not linear).
            "two_over_one": round((sum(two) / len(two)) / (sum(one) / len(one)), 3) if one and two else None,
        },
    }
    text = json.dumps(report, indent=2)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
