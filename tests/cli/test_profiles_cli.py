"""Agent profiles with the real command in a subprocess: a bad file stops start-up (exit 2, naming the line),
`check` prints the routing table, and SIGHUP reads the file again, keeping the old profiles if it is bad."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_first_hour import new_user_environment

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
default = "sales"

[profiles.sales]
model = "gpt-4o-mini"
voice = "alloy"
greeting = "Sales, hello."

[profiles.support]
agent = "support-agent"
project = "contoso"

[[routes]]
called = "+15550200"
profile = "support"
"""
# Line 7 names a setting no profile has.
BAD = GOOD.replace('greeting = "Sales, hello."', 'greeting = "Sales, hello."\ncolour = "red"')


def _command() -> list[str]:
    return [sys.executable, "-m", "voicelive_sip.cli"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No settings, no Azure sign-in; this checkout's code first (CI installs it; a worktree may not be)."""
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {
        **new_user_environment(tmp_path / "home"),
        "PYTHONPATH": path,
        "SIP_PORT": "0",
        "SIP_TRANSPORTS": "udp",
        "METRICS_ENABLED": "false",
        "MEDIA_PORT": "44100",
        "MEDIA_PORT_COUNT": "20",
        "GATEWAY_DRAIN_TIMEOUT": "0",
        "GATEWAY_PROFILES_FILE": str(tmp_path / "profiles.toml"),
    }


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_bad_profiles_file_stops_serve_with_exit_2_naming_the_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(BAD)
    done = _run(["serve", "--fake-voicelive"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"GATEWAY_PROFILES_FILE: {path}:7: profile 'sales': unknown key 'colour'" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_validates_the_file_and_prints_the_routing_table(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(GOOD)
    done = _run(["check", "--fake-voicelive"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"✓ profiles file {path}: 2 profiles" in done.stdout
    assert "sales: model gpt-4o-mini, voice alloy" in done.stdout
    assert "support: agent support-agent (contoso)" in done.stdout
    assert "1. called=+15550200 -> support" in done.stdout and "*. otherwise -> sales" in done.stdout
    path.write_text(BAD)
    done = _run(["check", "--fake-voicelive"], env, tmp_path)
    assert done.returncode == 2
    assert f"✗ GATEWAY_PROFILES_FILE: {path}:7:" in done.stdout


async def test_sighup_keeps_the_old_profiles_when_the_file_is_bad_and_logs_why(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(GOOD)
    process = await asyncio.create_subprocess_exec(
        *_command(), "serve", "--fake-voicelive", "--log-format", "json", env=env, cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    seen: list[str] = []

    async def until(text: str) -> None:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while text not in (line := (await process.stderr.readline()).decode()):
                assert line, f"serve ended before {text!r}:\n{''.join(seen)}"
                seen.append(line)
        seen.append(line)

    try:
        await until("answering on")
        path.write_text(BAD)
        process.send_signal(signal.SIGHUP)
        await until("did not load; the profiles in use stay")
        (failed,) = [line for line in seen if "gateway.profiles_reload_failed" in line]
        assert f"{path}:7:" in failed and "colour" in failed
        path.write_text(GOOD.replace("[profiles.support]", "[profiles.help]").replace('"support"', '"help"'))
        process.send_signal(signal.SIGHUP)
        await until("profiles read again")
        (reloaded,) = [line for line in seen if "gateway.profiles_reloaded" in line]
        assert '"help"' in reloaded and '"support"' not in reloaded
        assert process.returncode is None  # SIGHUP did not end the process
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
