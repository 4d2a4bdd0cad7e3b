"""The kit's systemd template unit (deploy/systemd/voicelive-sip@.service) and its env files, run the way
systemd would run instance 0: %i expanded, EnvironmentFile= read in order, ExecStart started, CPUAffinity=
applied, KillSignal= to stop. systemd itself does not run here (no PID 1 manager in CI containers), so the
test plays its part; `systemd-analyze` checks the unit's syntax and scores its hardening when installed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    LOCAL_KEYS,
    SYSTEMD,
    GatewayProcess,
    Gateways,
    Processes,
    child_environment,
    read_env_file,
)

UNIT = SYSTEMD / "voicelive-sip@.service"
INSTANCE = "0"
ETC = "/etc/voicelive-sip/"


def unit_entries(text: str, instance: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment, in order, with %i expanded (keys may repeat)."""
    entries = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        entries.append((section, key.strip(), value.strip().replace("%i", instance)))
    return entries


def values(entries: list[tuple[str, str, str]], key: str) -> list[str]:
    return [value for section, name, value in entries if section == "Service" and name == key]


async def test_instance_0_runs_as_the_unit_says_and_answers_options(
    processes: Processes, gateways: Gateways
) -> None:
    entries = unit_entries(UNIT.read_text(), INSTANCE)
    (exec_start,) = values(entries, "ExecStart")
    program, *arguments = shlex.split(exec_start)
    assert program.endswith("/bin/voicelive-sip") and arguments == ["serve"], exec_start
    installed = shutil.which("voicelive-sip")
    if installed is None:
        pytest.skip("voicelive-sip is not installed (pip install -e .)")

    # EnvironmentFile= in order (a later file wins), then Environment=.
    env_files = values(entries, "EnvironmentFile")
    assert env_files == [f"{ETC}common.env", f"{ETC}{INSTANCE}.env"]
    settings: dict[str, str] = {}
    for path in env_files:
        kit_file = SYSTEMD / Path(path).name
        assert kit_file.is_file(), f"the kit has no example for {path}"
        settings.update(read_env_file(kit_file))
    for assignment in values(entries, "Environment"):
        key, _, value = assignment.partition("=")
        settings[key] = value
    # This machine is not 10.0.0.21: its own addresses and free ports, every other setting as the kit has it.
    local = gateways.settings()
    settings.update({key: local[key] for key in LOCAL_KEYS})
    settings["LOG_FORMAT"] = "json"

    (affinity,) = values(entries, "CPUAffinity")
    cpu = int(affinity)
    assert cpu in os.sched_getaffinity(0), f"CPUAffinity={affinity}: no such CPU here"
    command = [installed, *arguments, "--fake-voicelive"]
    process = processes.start("voicelive-sip@0", command, env=child_environment(settings))
    os.sched_setaffinity(process.popen.pid, {cpu})
    ports = int(settings["SIP_PORT"]), int(settings["METRICS_PORT"])
    gateway = GatewayProcess("voicelive-sip@0", process, *ports)
    await gateways.wait_ready(gateway)
    assert os.sched_getaffinity(process.popen.pid) == {cpu}

    (kill_signal,) = values(entries, "KillSignal")
    (stop_timeout,) = values(entries, "TimeoutStopSec")
    process.popen.send_signal(getattr(signal, kill_signal))
    assert await processes.wait(process, float(stop_timeout)) == 0
    assert gateway.events("gateway.draining") and gateway.events("gateway.stopped")


def test_drain_fits_in_the_stop_timeout() -> None:
    entries = unit_entries(UNIT.read_text(), INSTANCE)
    (stop_timeout,) = values(entries, "TimeoutStopSec")
    drain = float(read_env_file(SYSTEMD / "common.env")["GATEWAY_DRAIN_TIMEOUT"])
    assert drain < float(stop_timeout)


def test_instances_never_share_a_port() -> None:
    instances = sorted(SYSTEMD.glob("[0-9]*.env"))
    assert len(instances) >= 2
    taken: dict[int, str] = {}
    for path in instances:
        env = read_env_file(path)
        assert path.stem == str(int(path.stem))  # the instance name is its CPU (CPUAffinity=%i)
        ports = [int(env["SIP_PORT"]), int(env["SIP_TLS_PORT"]), int(env["METRICS_PORT"])]
        ports += range(int(env["MEDIA_PORT"]), int(env["MEDIA_PORT"]) + int(env["MEDIA_PORT_COUNT"]))
        for port in ports:
            assert port not in taken, f"{path.name} and {taken[port]} both use port {port}"
            taken[port] = path.name


def test_systemd_analyze_finds_nothing_wrong_and_scores_the_hardening(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = tmp_path / f"voicelive-sip@{INSTANCE}.service"
    unit.write_text(UNIT.read_text())
    verify = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    # The program is installed elsewhere here, and without a running systemd there is no sysinit.target.
    ignored = re.compile(r"Command /opt/voicelive-sip/bin/voicelive-sip is not executable|sysinit\.target")
    problems = [line for line in (verify.stdout + verify.stderr).splitlines() if not ignored.search(line)]
    assert problems == [], verify.stdout + verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match[1]) <= 2.0, security.stdout
