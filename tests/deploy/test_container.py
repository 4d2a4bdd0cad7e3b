"""The kit's Containerfile and compose.yaml. No container engine runs in CI (and none here: `docker info`
finds no daemon), so the images are not built: the compose file is checked against the kit's other files,
and its demo profile is run as plain processes (Kamailio, gateways, fake Voice Live, caller), its settings."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    DEPLOY,
    KAMAILIO_CFG,
    Dispatchers,
    Gateways,
    Processes,
    child_environment,
    free_port,
    media_range,
    read_env_file,
    require_binary,
)

COMPOSE = DEPLOY / "compose.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"
GATEWAYS = ("gw1", "gw2")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def substitute(value: str) -> str:
    """Compose's ${NAME:-default}, with nothing set in the environment: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def gateway_env(service: dict[str, Any]) -> dict[str, str]:
    """What a gateway service's process sees: its env_file, then its environment (later wins)."""
    env_files = service["env_file"] if isinstance(service["env_file"], list) else [service["env_file"]]
    env: dict[str, str] = {}
    for name in env_files:
        env.update(read_env_file(DEPLOY / name))
    env.update({key: substitute(str(value)) for key, value in service["environment"].items()})
    return env


def defines(command: list[str]) -> dict[str, str]:
    """The -A NAME=value pre-processor defines of a Kamailio command line."""
    return dict(command[i + 1].partition("=")[::2] for i, arg in enumerate(command) if arg == "-A")


def cfg_default(name: str) -> str:
    match = re.search(rf'^#!define {name} "?([^"\n]*)"?$', KAMAILIO_CFG.read_text(), re.MULTILINE)
    assert match, f"kamailio.cfg has no default for {name}"
    return match[1]


def test_compose_services_and_profiles() -> None:
    services = compose()["services"]
    assert set(services) == {"kamailio", *GATEWAYS, "fake-voicelive", "caller"}
    demo = {name for name, service in services.items() if "demo" in service.get("profiles", [])}
    assert demo == {"fake-voicelive", "caller"}
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", CONTAINERFILE.read_text(), re.MULTILINE))
    for name, service in services.items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == CONTAINERFILE, name
        assert build["target"] in targets, name
        assert service["network_mode"] == "host", name  # no NAT in front of the RTP ranges
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).is_file(), f"{name} mounts {source}, which the kit does not have"


def test_kamailio_runs_the_kit_config_with_the_compose_dispatcher_list() -> None:
    kamailio = compose()["services"]["kamailio"]
    mounts = {v.split(":")[1]: (DEPLOY / v.split(":")[0]).resolve() for v in kamailio["volumes"]}
    entrypoint = re.search(r'^ENTRYPOINT \["kamailio", (.*)\]$', CONTAINERFILE.read_text(), re.MULTILINE)
    assert entrypoint, "the kamailio image does not start kamailio"
    config_path = re.search(r'"-f", "([^"]+)"', entrypoint[1])
    assert config_path and mounts[config_path[1]] == KAMAILIO_CFG
    dispatcher_list = mounts[cfg_default("DS_LIST")]
    listed = set(re.findall(r"^1 (sip:\S+)", dispatcher_list.read_text(), re.MULTILINE))
    services = compose()["services"]
    envs = [gateway_env(services[name]) for name in GATEWAYS]
    assert listed == {f"sip:{env['SIP_LOCAL_ADDRESS']}:{env['SIP_PORT']}" for env in envs}
    for name in defines(kamailio["command"]):
        assert re.search(rf"^#!ifn?def {name}$", KAMAILIO_CFG.read_text(), re.MULTILINE), name


def test_compose_ports_never_overlap() -> None:
    services = compose()["services"]
    taken: dict[int, str] = {}

    def take(ports: range | list[int], owner: str) -> None:
        for port in ports:
            assert port not in taken, f"{owner} and {taken[port]} both use port {port}"
            taken[port] = owner

    take([int(defines(services["kamailio"]["command"])["SIP_PORT"])], "kamailio")
    for name in GATEWAYS:
        env = gateway_env(services[name])
        take([int(env["SIP_PORT"]), int(env["SIP_TLS_PORT"]), int(env["METRICS_PORT"])], name)
        take(range(int(env["MEDIA_PORT"]), int(env["MEDIA_PORT"]) + int(env["MEDIA_PORT_COUNT"])), name)
        # The default Voice Live of the compose file is the demo's fake.
        fake = services["fake-voicelive"]["command"]
        endpoint = f"http://{fake[fake.index('--host') + 1]}:{fake[fake.index('--port') + 1]}"
        assert env["AZURE_VOICELIVE_ENDPOINT"] == endpoint
        grace = re.fullmatch(r"(\d+)s", services[name]["stop_grace_period"])
        assert grace and float(env["GATEWAY_DRAIN_TIMEOUT"]) < int(grace[1])
    fake = services["fake-voicelive"]["command"]
    take([int(fake[fake.index("--port") + 1])], "fake-voicelive")
    caller = services["caller"]["command"]
    first, calls = int(caller[caller.index("--media-port") + 1]), int(caller[caller.index("--calls") + 1])
    take(range(first, first + 4 * calls), "caller")


def test_kamailio_accepts_the_compose_command_line(tmp_path: Path) -> None:
    binary = require_binary("kamailio")
    kamailio = compose()["services"]["kamailio"]
    mounts = {volume.split(":")[1]: DEPLOY / volume.split(":")[0] for volume in kamailio["volumes"]}
    command = [binary, "-c", "-f", str(KAMAILIO_CFG), *kamailio["command"]]
    command += ["-A", f'DS_LIST="{mounts[cfg_default("DS_LIST")]}"']
    command += ["-A", f'CTL_SOCKET="unix:{tmp_path}/ctl"']
    checked = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "udp: 127.0.0.1 [127.0.0.1]:5060" in checked.stdout + checked.stderr


@pytest.mark.interop
async def test_the_demo_profile_runs_as_processes(
    processes: Processes, gateways: Gateways, dispatchers: Dispatchers
) -> None:
    """fake-voicelive, gw1, gw2, kamailio and caller with their compose settings, on free ports instead."""
    services = compose()["services"]
    fake_command = list(services["fake-voicelive"]["command"])
    fake_port = free_port()
    fake_command[fake_command.index("--port") + 1] = str(fake_port)
    fake_program = [sys.executable, *services["fake-voicelive"]["entrypoint"][1:]]
    processes.start("fake-voicelive", [*fake_program, *fake_command], env=child_environment({}))
    started = []
    for name in GATEWAYS:
        env = gateway_env(services[name])
        local = gateways.settings()
        env.update({key: local[key] for key in ("SIP_PORT", "SIP_TLS_PORT", "MEDIA_PORT", "METRICS_PORT")})
        env["MEDIA_PORT_COUNT"] = local["MEDIA_PORT_COUNT"]
        env["AZURE_VOICELIVE_ENDPOINT"] = f"http://127.0.0.1:{fake_port}"
        started.append(gateways.start_with(name, env, fake=False))
    await asyncio.gather(*(gateways.wait_ready(g) for g in started))
    kam = await dispatchers.start([g.uri for g in started])
    for gateway in started:
        await kam.wait_for(gateway.uri, "AP")
    caller_command = list(services["caller"]["command"])
    caller_command[0] = kam.uri
    caller_command[caller_command.index("--media-port") + 1] = str(media_range(40)[0])
    script = DEPLOY / Path(services["caller"]["volumes"][0].split(":")[0]).name
    caller = processes.start(
        "caller", [sys.executable, str(script), *caller_command], env=child_environment({})
    )
    assert await processes.wait(caller, 60) == 0, caller.output()
    calls = int(caller_command[caller_command.index("--calls") + 1])
    assert f"{calls} of {calls} calls heard the agent" in caller.output()
    assert all(g.summaries() for g in started)  # both gateways took calls


def test_kamailio_loads_the_kit_config_with_tls(tmp_path: Path) -> None:
    binary = require_binary("kamailio")
    tls_cfg = tmp_path / "tls.cfg"
    tls_cfg.write_text("[server:default]\nmethod = TLSv1.2+\n\n[client:default]\nmethod = TLSv1.2+\n")
    command = [binary, "-c", "-f", str(KAMAILIO_CFG), "-A", "WITH_TLS", "-A", "LISTEN_ADDR=127.0.0.1"]
    command += ["-A", f'TLS_CFG="{tls_cfg}"', "-A", f'DS_LIST="{DEPLOY / "kamailio" / "dispatcher.list"}"']
    command += ["-A", f'CTL_SOCKET="unix:{tmp_path}/ctl"']
    checked = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "tls: 127.0.0.1 [127.0.0.1]:5061" in checked.stdout + checked.stderr
