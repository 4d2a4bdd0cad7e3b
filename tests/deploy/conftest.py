"""Harness for the deployment kit (deploy/): the kit's own files, gateways as processes, Kamailio with the
kit's kamailio.cfg, and a raw SIP OPTIONS probe."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop import conftest as interop
from tests.interop.conftest import LOCALHOST, Kamailio, Process, Processes, free_port, require_binary

processes = interop.processes  # the interop suites' fixture: every program started is ended at teardown

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KAMAILIO_CFG = DEPLOY / "kamailio" / "kamailio.cfg"
SYSTEMD = DEPLOY / "systemd"

# Settings of the kit's env files that name this machine's addresses and ports: a test on loopback replaces
# them and keeps every other line as the kit has it.
LOCAL_KEYS = (
    "SIP_LOCAL_ADDRESS",
    "MEDIA_ADDRESS",
    "METRICS_HOST",
    "SIP_ALLOW_FROM",
    "SIP_PORT",
    "SIP_TLS_PORT",
    "MEDIA_PORT",
    "MEDIA_PORT_COUNT",
    "METRICS_PORT",
)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= and compose's env_file read them (comments skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key.strip()), f"{path}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def kit_gateway_env(instance: int = 0) -> dict[str, str]:
    """The settings of the kit's gateway instance `instance`: common.env, then its own env file."""
    return {**read_env_file(SYSTEMD / "common.env"), **read_env_file(SYSTEMD / f"{instance}.env")}


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a gateway process: PATH, the repository on PYTHONPATH, and `settings`."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **settings}


# ---------------------------------------------------------------------------------------------------------
# SIP OPTIONS


def sip_options(port: int, host: str = LOCALHOST, timeout: float = 1.0) -> tuple[int, str] | None:
    """Send one OPTIONS over UDP; the final status code and the whole response, or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        call_id = secrets.token_hex(8)
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCALHOST}:{local};branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOCALHOST}>;tag={call_id[:6]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (host, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536).decode(errors="replace")
            except TimeoutError:
                return None
            match = re.match(r"SIP/2\.0 (\d{3}) ", data)
            if match and int(match[1]) >= 200:
                return int(match[1]), data
    return None


# ---------------------------------------------------------------------------------------------------------
# Gateways as processes


@dataclass
class GatewayProcess:
    """A `voicelive-sip serve --fake-voicelive` process on 127.0.0.1 with JSON logs."""

    name: str
    process: Process
    sip_port: int
    metrics_port: int

    @property
    def uri(self) -> str:
        return f"sip:{LOCALHOST}:{self.sip_port}"

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines with this `event` name, in order."""
        found = []
        for line in self.process.output().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                with contextlib.suppress(json.JSONDecodeError):
                    entry = json.loads(line)
                    if entry.get("event") == event:
                        found.append(entry)
        return found

    def summaries(self) -> dict[str, dict[str, Any]]:
        """The `call.summary` of every call this gateway ended, by Call-ID."""
        return {entry["call_id"]: entry for entry in self.events("call.summary")}

    def options(self, timeout: float = 1.0) -> int | None:
        answer = sip_options(self.sip_port, timeout=timeout)
        return answer[0] if answer else None


_media_ports = itertools.count((os.getpid() % 20) * 400, 400)


def media_range(count: int = 200) -> tuple[int, int]:
    """An RTP port range of its own for a gateway or phone, in 12000-19999 (the e2e tests use 22000-34000)."""
    assert count <= 400
    return 12000 + next(_media_ports) % 8000, count


class Gateways:
    """Starts gateway processes with the kit's env (instance 0) made local, each with its own ports."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.started: list[GatewayProcess] = []

    def settings(self, **overrides: object) -> dict[str, str]:
        """The kit's settings for one instance, with this machine's addresses and fresh ports."""
        kit = kit_gateway_env(0)
        missing = [key for key in LOCAL_KEYS if key not in kit]
        assert not missing, f"the kit's env files no longer set {missing}"
        media_port, media_count = media_range(200)
        local = {
            "SIP_LOCAL_ADDRESS": LOCALHOST,
            "MEDIA_ADDRESS": LOCALHOST,
            "METRICS_HOST": LOCALHOST,
            "SIP_ALLOW_FROM": f"{LOCALHOST}/32",
            "SIP_PORT": str(free_port()),
            "SIP_TLS_PORT": str(free_port()),
            "MEDIA_PORT": str(media_port),
            "MEDIA_PORT_COUNT": str(media_count),
            "METRICS_PORT": str(free_port()),
            "LOG_FORMAT": "json",
        }
        return {**kit, **local, **{key: str(value) for key, value in overrides.items()}}

    def start(self, name: str, **overrides: object) -> GatewayProcess:
        """A gateway with the kit's settings made local (and `overrides`), on the bundled fake Voice Live."""
        return self.start_with(name, self.settings(**overrides))

    def start_with(self, name: str, env: Mapping[str, str], *, fake: bool = True) -> GatewayProcess:
        """`voicelive-sip serve` with exactly these settings (and --fake-voicelive unless `fake` is False)."""
        command = [
            sys.executable,
            "-m",
            "voicelive_sip.cli",
            "serve",
            *(["--fake-voicelive"] if fake else []),
        ]
        process = self.processes.start(name, command, env=child_environment(env))
        gateway = GatewayProcess(name, process, int(env["SIP_PORT"]), int(env["METRICS_PORT"]))
        self.started.append(gateway)
        return gateway

    async def wait_ready(self, gateway: GatewayProcess, timeout: float = 20.0) -> None:
        """Wait until the gateway answers OPTIONS with 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gateway.process.popen.poll() is not None:
                raise AssertionError(f"{gateway.name} exited:\n{gateway.process.output()[-4000:]}")
            if await asyncio.to_thread(gateway.options, 0.3) == 200:
                return
            await asyncio.sleep(0.1)
        output = gateway.process.output()[-4000:]
        raise AssertionError(f"{gateway.name} never answered OPTIONS 200:\n{output}")

    async def start_ready(self, count: int, **overrides: object) -> list[GatewayProcess]:
        gateways = [self.start(f"gw{len(self.started) + 1}", **overrides) for _ in range(count)]
        await asyncio.gather(*(self.wait_ready(gateway) for gateway in gateways))
        return gateways


@pytest.fixture
def gateways(processes: Processes) -> Gateways:
    return Gateways(processes)


# ---------------------------------------------------------------------------------------------------------
# Kamailio with the kit's kamailio.cfg


_DESTINATION = re.compile(r"URI:\s*(?P<uri>\S+)\s+FLAGS:\s*(?P<flags>\S+)")
_DISPATCHED = re.compile(r"call (?P<call_id>\S+) (?:to|failed over to) gateway (?P<uri>sip:\S+)")
_IN_DIALOG = re.compile(r"call (?P<call_id>\S+): (?P<method>[A-Z]+) from (?P<source>\S+)")


@dataclass
class Dispatcher(Kamailio):
    """Kamailio running deploy/kamailio/kamailio.cfg, with its dispatcher list and control socket (kamcmd)."""

    @property
    def uri(self) -> str:
        return f"sip:agent@{LOCALHOST}:{self.port}"

    def destinations(self) -> dict[str, str]:
        """Flags of every gateway by URI, from `kamcmd dispatcher.list`: AP active, IP inactive (probing)."""
        return {m["uri"]: m["flags"] for m in _DESTINATION.finditer(self.kamcmd("dispatcher.list"))}

    def dispatched(self) -> list[tuple[str, str]]:
        """(Call-ID, gateway URI) of every INVITE relayed to a gateway, failovers included, in log order."""
        return [(m["call_id"], m["uri"]) for m in _DISPATCHED.finditer(self.process.output())]

    def in_dialog(self) -> dict[str, list[tuple[str, str]]]:
        """(method, source host:port) of the in-dialog requests Kamailio relayed (ACK aside), by Call-ID."""
        found: dict[str, list[tuple[str, str]]] = {}
        for m in _IN_DIALOG.finditer(self.process.output()):
            found.setdefault(m["call_id"], []).append((m["method"], m["source"]))
        return found

    def statistic(self, name: str) -> int:
        """One core statistic, e.g. `rcv_requests_bye` (requests of that method Kamailio received)."""
        match = re.search(rf"{re.escape(name)} = (\d+)", self.kamcmd("stats.get_statistics", name))
        assert match, f"no statistic {name}"
        return int(match[1])

    async def wait_for(self, uri: str, flags: str, timeout: float = 15.0) -> None:
        """Wait until `kamcmd dispatcher.list` shows the gateway's flags starting with `flags`."""
        deadline = time.monotonic() + timeout
        while not self.destinations().get(uri, "").startswith(flags):
            if time.monotonic() > deadline:
                raise AssertionError(f"{uri} never became {flags}: {self.kamcmd('dispatcher.list')}")
            await asyncio.sleep(0.1)


class Dispatchers:
    """Starts Kamailio with the kit's configuration as it is, set up by -A defines only."""

    def __init__(self, processes: Processes, workdir: Path) -> None:
        self.processes = processes
        self.workdir = workdir
        self.binary = require_binary("kamailio")
        self.kamcmd_binary = require_binary("kamcmd")
        # A unix socket path must stay under 108 bytes; pytest's tmp_path can be longer.
        self.rundir = Path(tempfile.mkdtemp(prefix="kam", dir="/tmp"))

    def command(self, port: int, destinations: Sequence[str], defines: Sequence[str] = ()) -> list[str]:
        dispatcher_list = self.workdir / "dispatcher.list"
        dispatcher_list.write_text("".join(f"1 {uri} 0 0\n" for uri in destinations))
        ctl = self.rundir / "ctl"
        command = [self.binary, "-f", str(KAMAILIO_CFG), "-DD", "-E", "-m", "64", "-M", "8"]
        command += ["-P", str(self.rundir / "kamailio.pid"), "-Y", str(self.rundir)]
        given = {define.partition("=")[0] for define in defines}
        settings = [
            f"LISTEN_ADDR={LOCALHOST}",
            f"SIP_PORT={port}",
            f'DS_LIST="{dispatcher_list}"',
            f'CTL_SOCKET="unix:{ctl}"',
            "DS_PING_INTERVAL=1",
            "WORKERS=2",
        ]
        for define in [*(d for d in settings if d.partition("=")[0] not in given), *defines]:
            command += ["-A", define]
        return command

    async def start(self, destinations: Sequence[str], defines: Sequence[str] = ()) -> Dispatcher:
        port = free_port()
        process = self.processes.start("kamailio", self.command(port, destinations, defines))
        dispatcher = Dispatcher(port, self.rundir / "ctl", process, self.kamcmd_binary)
        deadline = time.monotonic() + 10
        while not dispatcher.started():
            if time.monotonic() > deadline:
                raise AssertionError(f"kamailio did not start:\n{process.output()}")
            await asyncio.sleep(0.05)
        return dispatcher

    def close(self) -> None:
        shutil.rmtree(self.rundir, ignore_errors=True)


@pytest.fixture
def dispatchers(processes: Processes, tmp_path: Path) -> Iterator[Dispatchers]:
    runner = Dispatchers(processes, tmp_path)
    try:
        yield runner
    finally:
        processes.close()
        runner.close()
