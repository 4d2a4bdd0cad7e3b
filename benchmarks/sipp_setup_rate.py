"""Call-setup rate of the asyncio SIP user agent, driven by sipp.

    python -m benchmarks.sipp_setup_rate                           # ramp 100, 150, ... 400 calls/s
    python -m benchmarks.sipp_setup_rate --rates 300 --seconds 40

For every step a fresh UserAgent that answers each INVITE at once (200 with SDP, no 180) runs in its own
process pinned to one core (os.sched_setaffinity); sipp runs `-sn uac` pinned to another core with short
calls (`-d 0`: INVITE, 200, ACK, BYE, 200). A step sends `rate * seconds` calls at `-r rate` and passes when
every call succeeded and sipp kept up with the rate. Steps last longer than 64*T1 (32 s), the time finished
transactions are kept to absorb retransmissions, so a step measures the steady state. The report (JSON on
stdout) gives the highest passing rate and the exact sipp command of that step.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 300  # calls per second


def serve(port_file: Path, core: int, max_transactions: int | None, loop: str = "asyncio") -> None:
    """Child process: a UserAgent on one core answering every call immediately."""
    import structlog

    from voicelive_sip.aio import UserAgent
    from voicelive_sip.config import SipSettings

    os.sched_setaffinity(0, {core})
    # Per-call info logs would measure the terminal, not the user agent.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def answer(call: Any) -> None:
        try:
            await call.answer(rtp_port=40000)
            await call.wait_ended()
        except Exception as exc:
            print(f"call failed: {exc!r}", file=sys.stderr)

    async def main() -> None:
        # The user agent's defaults (per-source limit 500 new requests/s, 50000 transactions), except the
        # concurrent-call cap, which a benchmark of many short calls must not hit.
        settings = SipSettings(local_address="127.0.0.1", port=0, transports=["udp"], max_calls=10_000)
        if max_transactions is not None:  # experiment knob (SIP_MAX_TRANSACTIONS)
            settings = settings.model_copy(update={"max_transactions": max_transactions})
        async with UserAgent(settings) as ua:
            port_file.write_text(str(ua.address[1]))
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            tasks: set[asyncio.Task[None]] = set()

            async def accept() -> None:
                async for call in ua.incoming_calls():
                    task = asyncio.create_task(answer(call))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

            acceptor = asyncio.create_task(accept())
            await stop.wait()
            acceptor.cancel()

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def last_stats(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter=";") if row]
    return dict(zip(rows[0], rows[-1], strict=False))


def run_step(sipp: str, target: str, rate: int, seconds: float, core: int, workdir: Path) -> dict[str, Any]:
    calls = int(rate * seconds)
    stat = workdir / f"stat_{rate}.csv"
    command = [
        "taskset", "-c", str(core),
        sipp, "-sn", "uac", target,
        "-i", "127.0.0.1", "-p", str(free_port()), "-cp", str(free_port()),
        "-r", str(rate), "-m", str(calls), "-l", str(rate * 4), "-d", "0",
        "-nostdin", "-timeout", f"{int(seconds * 4 + 30)}s", "-timeout_error",
        "-trace_stat", "-stf", str(stat), "-fd", "1",
    ]  # fmt: skip
    started = time.monotonic()
    completed = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    stats = last_stats(stat) if stat.exists() else {}
    successful = int(stats.get("SuccessfulCall(C)", 0))
    failed = int(stats.get("FailedCall(C)", calls - successful))
    achieved = successful / elapsed if elapsed else 0.0
    return {
        "rate": rate,
        "calls": calls,
        "successful": successful,
        "failed": failed,
        "failed_unexpected_message": int(stats.get("FailedUnexpectedMessage(C)", 0)),
        "retransmissions": int(stats.get("Retransmissions(C)", 0)),
        "sipp_call_rate": float(stats.get("CallRate(C)", 0.0)),
        "achieved_calls_per_second": round(achieved, 1),
        "sipp_exit": completed.returncode,
        # sipp cannot keep up its rate when answers are late: that is a miss even with zero failures.
        "passed": completed.returncode == 0
        and failed == 0
        and successful == calls
        and achieved >= 0.9 * rate,
        "command": shlex.join(command),
    }


class UserAgentProcess:
    """The answering user agent in its own process (fresh for every step), stderr kept in a file."""

    def __init__(
        self, workdir: Path, rate: int, core: int, max_transactions: int | None, loop: str = "asyncio"
    ) -> None:
        self.port_file = workdir / f"port_{rate}"
        self.log = workdir / f"ua_{rate}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "benchmarks.sipp_setup_rate"),
                    *("--serve", str(self.port_file), "--ua-core", str(core), "--loop", loop),
                    *(("--max-transactions", str(max_transactions)) if max_transactions else ()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def target(self) -> str:
        deadline = time.monotonic() + 10
        while not self.port_file.exists() or not self.port_file.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the user agent did not start: {self.log.read_text()}")
            time.sleep(0.05)
        return f"127.0.0.1:{self.port_file.read_text()}"

    def stop(self) -> int:
        """End the process; return how many answers failed on the user agent's side."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.log.read_text().count("call failed:")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,150,200,250,300,350,400", help="comma-separated calls/s")
    parser.add_argument(
        "--seconds",
        type=float,
        default=40.0,
        help="length of each step; over 64*T1 = 32 s, so finished transactions expire during the step",
    )
    parser.add_argument("--ua-core", type=int, default=0)
    parser.add_argument("--sipp-core", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    parser.add_argument(
        "--max-transactions",
        type=int,
        help="experiment: override SIP_MAX_TRANSACTIONS (default 50000)",
    )
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="the UA's event loop"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.ua_core, args.max_transactions, args.loop)
        return

    sipp = shutil.which("sipp")
    if sipp is None:
        sys.exit("sipp is not installed (Debian package sip-tester)")
    steps = []
    with tempfile.TemporaryDirectory(prefix="setup_rate") as tmp:
        workdir = Path(tmp)
        for rate in (int(r) for r in args.rates.split(",")):
            ua = UserAgentProcess(workdir, rate, args.ua_core, args.max_transactions, args.loop)
            try:
                step = run_step(sipp, ua.target(), rate, args.seconds, args.sipp_core, workdir)
            finally:
                step["ua_answer_failures"] = ua.stop()
            steps.append(step)
            print(json.dumps(step), file=sys.stderr)
            if not step["passed"]:
                break
    passed = [s for s in steps if s["passed"]]
    best = passed[-1] if passed else None
    report = {
        "target_calls_per_second": TARGET,
        "best_calls_per_second": best["rate"] if best else 0,
        "met_target": bool(best and best["rate"] >= TARGET),
        "ua_core": args.ua_core,
        "sipp_core": args.sipp_core,
        "seconds_per_step": args.seconds,
        "max_transactions": args.max_transactions,
        "command": best["command"] if best else None,
        "steps": steps,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
