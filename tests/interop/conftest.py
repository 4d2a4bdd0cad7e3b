"""Interop harness: free ports, owned processes, sipp runs with their statistics, kamailio, a running UA."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.certs import pki as pki  # the session's test CA and certificates, for the TLS tests

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"
KAMAILIO_CFG = HERE / "kamailio" / "kamailio.cfg"
LOCALHOST = "127.0.0.1"

# The Debian package that ships each binary, named in skip reasons (CI installs them, see .ci/run).
PACKAGES = {"sipp": "sip-tester", "kamailio": "kamailio", "kamcmd": "kamailio"}
# kamailio and kamcmd live in /usr/sbin, which is not on every user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def require_binary(name: str) -> str:
    """The binary's path, or skip the test naming the package that provides it."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {PACKAGES.get(name, name)})")
    return path


def free_port() -> int:
    """A port that is free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOCALHOST, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOCALHOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


# ---------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Process:
    """A started external program whose output goes to files in the test's directory."""

    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def output(self) -> str:
        """Everything the program wrote so far (stdout, then stderr)."""
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return out + err


class Processes:
    """Starts programs and ends every one of them (by its own pid) when the test is over."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[Process] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Process:
        """Start `args` (with `env` as its whole environment when given) in the test's directory."""
        stdout_path = self.workdir / f"{name}.stdout"
        stderr_path = self.workdir / f"{name}.stderr"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            popen = subprocess.Popen(
                list(args),
                cwd=self.workdir,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        process = Process(name, list(args), popen, stdout_path, stderr_path)
        self._started.append(process)
        return process

    async def wait(self, process: Process, timeout: float) -> int:
        """Wait for the program to exit without blocking the event loop; kill it and fail on timeout."""
        try:
            return await asyncio.to_thread(process.popen.wait, timeout)
        except subprocess.TimeoutExpired:
            self.stop(process)
            raise AssertionError(
                f"{process.name} still running after {timeout} s: {process.args}\n{process.output()}"
            ) from None

    @staticmethod
    def stop(process: Process) -> None:
        if process.popen.poll() is None:
            process.popen.terminate()
            try:
                process.popen.wait(3)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(3)

    def close(self) -> None:
        for process in reversed(self._started):
            self.stop(process)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """A process runner whose programs are all ended at teardown."""
    runner = Processes(tmp_path)
    try:
        yield runner
    finally:
        runner.close()


# ---------------------------------------------------------------------------------------------------------
# sipp


@dataclass(frozen=True)
class TracedMessage:
    """One message from sipp's -trace_msg log, from sipp's point of view."""

    direction: str  # "sent" or "received"
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), or None."""
        for line in self.text.splitlines()[1:]:
            if not line.strip():
                return None
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None


_TRACE_ENTRY = re.compile(
    r"^-{20,} [^\n]*\n(?:UDP|TCP) message (?P<dir>sent|received) [^\n]*\n\n(?P<text>.*?)(?=^-{20,} |\Z)",
    re.MULTILINE | re.DOTALL,
)


def parse_trace(text: str) -> list[TracedMessage]:
    """Split a sipp -trace_msg file into its messages."""
    return [TracedMessage(m["dir"], m["text"].strip("\n") + "\n") for m in _TRACE_ENTRY.finditer(text)]


def parse_stats(path: Path) -> dict[str, int]:
    """The cumulative counters, e.g. `SuccessfulCall`, from the last row of a sipp -trace_stat CSV."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter=";") if row]
    header, last = rows[0], rows[-1]
    totals: dict[str, int] = {}
    for name, value in zip(header, last, strict=False):
        if name.endswith("(C)") and value.strip().isdigit():
            totals[name.removesuffix("(C)")] = int(value)
    totals["TotalCallCreated"] = int(last[header.index("TotalCallCreated")])
    return totals


@dataclass(frozen=True)
class SippResult:
    """Exit code (0: every call succeeded), cumulative statistics and the message trace of one sipp run."""

    returncode: int
    stats: dict[str, int]
    messages: list[TracedMessage]
    output: str

    def received(self, method: str) -> list[TracedMessage]:
        """Requests of this method that sipp received, retransmissions included."""
        prefix = method + " "
        return [m for m in self.messages if m.direction == "received" and m.start_line.startswith(prefix)]

    def describe(self) -> str:
        return f"sipp exit {self.returncode}, stats {self.stats}\n{self.output[-3000:]}"


@dataclass
class SippRun:
    """A sipp process that is running; `result()` waits for it to finish."""

    sipp: Sipp
    process: Process
    port: int
    stat_path: Path
    trace_path: Path

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    async def result(self, timeout: float = 60.0) -> SippResult:
        returncode = await self.sipp.processes.wait(self.process, timeout)
        stats = parse_stats(self.stat_path) if self.stat_path.exists() else {}
        trace = self.trace_path.read_text(errors="replace") if self.trace_path.exists() else ""
        return SippResult(returncode, stats, parse_trace(trace), self.process.output())


class Sipp:
    """Runs sipp on 127.0.0.1 with its control port moved off 8888 and statistics written to files."""

    def __init__(self, binary: str, processes: Processes) -> None:
        self.binary = binary
        self.processes = processes
        self._runs = 0

    def start(
        self,
        scenario: str | Path,
        target: str | None = None,
        *,
        calls: int = 1,
        transport: str = "u1",
        args: Sequence[str] = (),
        global_timeout: int = 60,
    ) -> SippRun:
        """Start sipp with a built-in scenario (`"uac"`, `"uas"`) or a scenario file; target: host:port."""
        self._runs += 1
        name = f"sipp{self._runs}"
        workdir = self.processes.workdir
        port = free_port()
        stat_path = workdir / f"{name}_stat.csv"
        trace_path = workdir / f"{name}_msg.log"
        scenario_args = ["-sf", str(scenario)] if isinstance(scenario, Path) else ["-sn", scenario]
        command = [
            self.binary,
            *scenario_args,
            *([target] if target else []),
            "-i",
            LOCALHOST,
            "-p",
            str(port),
            "-cp",
            str(free_port()),
            "-t",
            transport,
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            f"{global_timeout}s",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            str(stat_path),
            "-fd",
            "1",
            "-trace_msg",
            "-message_file",
            str(trace_path),
            *args,
        ]
        process = self.processes.start(name, command)
        return SippRun(self, process, port, stat_path, trace_path)

    async def run(
        self,
        scenario: str | Path,
        target: str,
        *,
        calls: int = 1,
        transport: str = "u1",
        args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> SippResult:
        """Run sipp to completion (a caller, typically) and return its result."""
        run = self.start(scenario, target, calls=calls, transport=transport, args=args)
        return await run.result(timeout)

    async def wait_listening(self, run: SippRun, timeout: float = 5.0) -> None:
        """Wait until a sipp answerer has bound its SIP port (UDP), read from /proc/net/udp."""
        bound = f" 0100007F:{run.port:04X} "  # 127.0.0.1 in the kernel's little-endian hex
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run.process.popen.poll() is not None:
                raise AssertionError(f"sipp exited early:\n{run.process.output()}")
            if bound in Path("/proc/net/udp").read_text():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"sipp did not bind {run.address}:\n{run.process.output()}")


@pytest.fixture
def sipp(processes: Processes) -> Sipp:
    """sipp runner (skips when sipp is not installed)."""
    return Sipp(require_binary("sipp"), processes)


def scenario(name: str) -> Path:
    """A scenario file of tests/interop/scenarios."""
    return SCENARIOS / name


# ---------------------------------------------------------------------------------------------------------
# kamailio


_UL_ENTRY = re.compile(r"AoR: (?P<aor>\S+)|Address: (?P<address>\S+)")


@dataclass
class Kamailio:
    """A running kamailio registrar (tests/interop/kamailio/kamailio.cfg) and its kamcmd control socket."""

    port: int
    ctl_socket: Path
    process: Process
    kamcmd_binary: str

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def kamcmd(self, *args: str) -> str:
        completed = subprocess.run(
            [self.kamcmd_binary, "-s", f"unix:{self.ctl_socket}", *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return completed.stdout

    def started(self) -> bool:
        """Whether kamailio answers on its control socket; AssertionError (with its output) if it exited."""
        if self.process.popen.poll() is not None:
            raise AssertionError(f"kamailio exited:\n{self.process.output()}")
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return self.ctl_socket.exists() and "kamailio" in self.kamcmd("core.version")
        return False

    def wait_started(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.started():
            if time.monotonic() > deadline:
                raise AssertionError(f"kamailio did not start:\n{self.process.output()}")
            time.sleep(0.05)

    def contacts(self) -> dict[str, list[str]]:
        """Registered contacts by AoR, from `kamcmd ul.dump`."""
        bindings: dict[str, list[str]] = {}
        aor = ""
        for match in _UL_ENTRY.finditer(self.kamcmd("ul.dump")):
            if match["aor"]:
                aor = match["aor"]
                bindings.setdefault(aor, [])
            else:
                bindings[aor].append(match["address"])
        return bindings

    def registers_received(self) -> int:
        """REGISTER requests that reached the routing script (the cfg logs one line for each)."""
        return self.process.output().count("REGISTER-RECEIVED")


def render_kamailio_cfg(port: int, ctl_socket: Path) -> str:
    modules = sorted(Path("/usr/lib").glob("*/kamailio/modules")) or [Path("/usr/lib/kamailio/modules")]
    text = KAMAILIO_CFG.read_text()
    text = text.replace("@PORT@", str(port)).replace("@CTLSOCK@", str(ctl_socket))
    return text.replace('mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"', f'mpath="{modules[0]}/"')


@pytest.fixture
def kamailio(processes: Processes, tmp_path: Path) -> Iterator[Kamailio]:
    """kamailio as a registrar with digest auth (qop=auth) on a free port; alice/alice123, bob/bob123."""
    binary = require_binary("kamailio")
    kamcmd_binary = require_binary("kamcmd")
    # A unix socket path must stay under 108 bytes; pytest's tmp_path can be longer.
    rundir = Path(tempfile.mkdtemp(prefix="kam", dir="/tmp"))
    try:
        port = free_port()
        ctl_socket = rundir / "ctl"
        cfg = tmp_path / "kamailio.cfg"
        cfg.write_text(render_kamailio_cfg(port, ctl_socket))
        command = [binary, "-f", str(cfg), "-DD", "-E", "-m", "64", "-M", "8"]
        command += ["-P", str(rundir / "kamailio.pid"), "-Y", str(rundir)]
        process = processes.start("kamailio", command)
        server = Kamailio(port, ctl_socket, process, kamcmd_binary)
        server.wait_started()
        yield server
        processes.stop(process)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Digest (checked independently of voicelive_sip.sip.auth)


def digest_params(header_value: str) -> dict[str, str]:
    """The parameters of a `Digest k=v, k="v"` credentials value."""
    scheme, _, rest = header_value.partition(" ")
    assert scheme.lower() == "digest", header_value
    return {
        m[1].lower(): m[2] if m[2] is not None else m[3]
        for m in re.finditer(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest)
    }


def digest_is_valid(params: dict[str, str], method: str, password: str) -> bool:
    """RFC 2617 §3.2.2 response check (MD5, with or without qop=auth)."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{params['username']}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{params['uri']}")
    if params.get("qop") == "auth":
        expected = md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
    else:
        expected = md5(f"{ha1}:{params['nonce']}:{ha2}")
    return params["response"] == expected


# ---------------------------------------------------------------------------------------------------------
# A running user agent with an application that answers (or rejects) every call


@dataclass
class CallPlan:
    """What the test application does with each incoming call."""

    reject_status: int | None = None  # None: ring, then answer
    ring: bool = True
    rtp_port: int = 40000


@dataclass
class RunningUa:
    """A started UserAgent, its application task's record of calls, and any error the application saw."""

    ua: Any
    plan: CallPlan
    incoming: list[Any] = field(default_factory=list)
    answered: list[Any] = field(default_factory=list)
    ended: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def host(self) -> str:
        return str(self.ua.address[0])

    @property
    def port(self) -> int:
        return int(self.ua.address[1])

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def serve(self) -> None:
        async for call in self.ua.incoming_calls():
            task = asyncio.create_task(self._handle(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, call: Any) -> None:
        self.incoming.append(call)
        try:
            if self.plan.reject_status is not None:
                await call.reject(self.plan.reject_status)
                return
            if self.plan.ring:
                await call.ring()
            self.answered.append(await call.answer(rtp_port=self.plan.rtp_port))
            self.ended.append(await call.wait_ended())
        except Exception as exc:  # recorded for the test to assert on
            self.errors.append(exc)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll until `condition()` holds; fail with the call record after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out: {len(self.incoming)} incoming, {len(self.answered)} answered, "
                    f"{len(self.ended)} ended, errors {self.errors!r}"
                )
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
def call_plan() -> CallPlan:
    """What the `ua` fixture's application does with calls; override or parametrize it in a test module."""
    return CallPlan()


@pytest.fixture
def ua_settings() -> dict[str, Any]:
    """Extra SipSettings for the `ua` fixture."""
    return {}


@pytest.fixture
async def ua(call_plan: CallPlan, ua_settings: dict[str, Any]) -> AsyncIterator[RunningUa]:
    """A UserAgent on 127.0.0.1 (UDP and TCP on a free port) whose application handles every call."""
    from voicelive_sip.aio import UserAgent
    from voicelive_sip.config import SipSettings

    settings = SipSettings(local_address=LOCALHOST, port=0, transports=["udp", "tcp"], **ua_settings)
    async with UserAgent(settings) as agent:
        running = RunningUa(agent, call_plan)
        server = asyncio.create_task(running.serve())
        try:
            yield running
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
            await running.close()
