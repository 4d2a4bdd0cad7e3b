"""The first hour with the real `voicelive-sip` command, in a subprocess: start-up errors that name the
setting (exit 2, one line, no traceback), `check` with the fake and every port, `serve --app --env-file`."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voicelive_sip.config import Settings
from voicelive_sip.settings_group import env_name
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive, SipPhone

MARKS = ("✓", "✗", "⚠", "…", "-")


def command() -> list[str]:
    """The installed console script (beside this Python first: a venv need not be on PATH)."""
    beside = Path(sys.executable).parent / "voicelive-sip"
    found = str(beside) if beside.exists() else shutil.which("voicelive-sip")
    if found is None:
        pytest.fail("the voicelive-sip command is not installed: pip install -e .")
    return [found]


def new_user_environment(home: Path) -> dict[str, str]:
    """The environment of a new user: no settings, no Azure sign-in, an empty home (made here)."""
    names = {env_name(g, f) for g in Settings.group_models().values() for f in g.model_fields}
    names |= {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_USERNAME", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"}
    clean = {
        k: v for k, v in os.environ.items() if k.upper() not in names and not k.startswith("VOICE_LIVE_")
    }
    home.mkdir()
    return {**clean, "HOME": str(home)}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A new user's environment, with free ports and no drain wait."""
    fresh = new_user_environment(tmp_path / "home")
    return {**fresh, "SIP_PORT": "0", "METRICS_PORT": "0", "GATEWAY_DRAIN_TIMEOUT": "0"}


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port held by another socket (UDP and TCP) on 127.0.0.1."""
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        yield port


def _checklist(out: str) -> list[str]:
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(line.startswith(MARKS) for line in lines), out  # no log line in between
    return lines


def test_check_without_settings_suggests_the_fake_which_check_then_accepts(
    env: dict[str, str], tmp_path: Path
) -> None:
    bare = run(["check"], env, tmp_path)
    assert bare.returncode == 2 and "--fake-voicelive" in bare.stdout + bare.stderr
    assert "AZURE_VOICELIVE_ENDPOINT" in bare.stdout + bare.stderr
    done = run(["check", "--fake-voicelive"], {**env, "MEDIA_PORT": "43000"}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _checklist(done.stdout)
    assert "Traceback" not in done.stderr
    handshake = next(line for line in lines if "Voice Live handshake" in line)
    assert handshake.startswith("… Voice Live handshake with http://127.0.0.1:") and "?" not in handshake
    assert any(line.startswith("✓ SIP listening") for line in lines)
    assert any(line.startswith("✓ RTP ports bind") for line in lines)
    assert any(line.startswith("✓ metrics port free") for line in lines)


@pytest.mark.parametrize("endpoint", ["not-a-url", "ftp://example"])
def test_check_refuses_an_endpoint_that_is_not_a_web_address(
    endpoint: str, env: dict[str, str], tmp_path: Path
) -> None:
    done = run(
        ["check"], {**env, "AZURE_VOICELIVE_ENDPOINT": endpoint, "AZURE_VOICELIVE_API_KEY": "k"}, tmp_path
    )
    assert done.returncode == 2
    assert "configuration is valid" not in done.stdout
    assert "AZURE_VOICELIVE_ENDPOINT: " in done.stderr and "Traceback" not in done.stderr


def test_check_tries_the_metrics_port(env: dict[str, str], tmp_path: Path, taken_port: int) -> None:
    done = run(["check", "--fake-voicelive"], {**env, "METRICS_PORT": str(taken_port)}, tmp_path)
    assert done.returncode == 1
    assert any(
        line.startswith(f"✗ METRICS_PORT: cannot listen on 127.0.0.1:{taken_port}")
        for line in _checklist(done.stdout)
    )


def _start_up_cases(tmp_path: Path, port: int) -> dict[str, tuple[dict[str, str], str]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return {
        "sip port taken": ({"SIP_PORT": str(port)}, f"SIP_PORT: UDP port {port} on 127.0.0.1 is in use"),
        "metrics port taken": (
            {"METRICS_PORT": str(port)},
            f"METRICS_PORT: cannot listen on 127.0.0.1:{port}",
        ),
        "missing certificate": (
            {"SIP_TLS_CERT_FILE": str(tmp_path / "missing.pem"), "SIP_TLS_PORT": "0"},
            "SIP_TLS_CERT_FILE: ",
        ),
        "recording folder": (
            {"GATEWAY_RECORDING_DIR": str(blocker / "calls")},
            "GATEWAY_RECORDING_DIR: cannot create",
        ),
        "endpoint scheme": ({"AZURE_VOICELIVE_ENDPOINT": "ftp://example"}, "AZURE_VOICELIVE_ENDPOINT: "),
        # The token check comes before the bind: nothing listens beyond loopback even for a moment.
        "call API without a token": (
            {"OUTBOUND_API_ENABLED": "true", "METRICS_HOST": "0.0.0.0"},
            "HTTP_AUTH_TOKEN: not set",
        ),
        "webhooks without a secret": ({"WEBHOOK_URLS": "http://127.0.0.1:9/hook"}, "WEBHOOK_SECRET: not set"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "sip port taken",
        "metrics port taken",
        "missing certificate",
        "recording folder",
        "endpoint scheme",
        "call API without a token",
        "webhooks without a secret",
    ],
)
def test_serve_start_up_errors_name_the_setting(
    case: str, env: dict[str, str], tmp_path: Path, taken_port: int
) -> None:
    variables, expected = _start_up_cases(tmp_path, taken_port)[case]
    done = run(["serve", "--fake-voicelive"], {**env, **variables}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    problems = [line.strip() for line in done.stderr.splitlines() if line.startswith("  ") and ":" in line]
    problems = [line for line in problems if not line.startswith("FakeVoiceLive")]
    assert len(problems) == 1 and problems[0].startswith(expected), done.stderr


def test_the_metrics_port_is_not_node_exporters() -> None:
    from voicelive_sip.config import MetricsSettings

    assert MetricsSettings.model_fields["port"].default not in range(9100, 10000)


def test_serve_refuses_an_app_or_env_file_it_cannot_load(env: dict[str, str], tmp_path: Path) -> None:
    missing_app = run(["serve", "--fake-voicelive", "--app", "no_such_module:tools"], env, tmp_path)
    assert missing_app.returncode == 2 and "--app: cannot import no_such_module" in missing_app.stderr
    missing_file = run(["serve", "--fake-voicelive", "--env-file", "nowhere.env"], env, tmp_path)
    assert missing_file.returncode == 2 and "--env-file: nowhere.env" in missing_file.stderr
    (tmp_path / "notools.py").write_text("tools = 42\n")
    wrong = run(["serve", "--fake-voicelive", "--app", "notools:tools"], env, tmp_path)
    assert wrong.returncode == 2 and "expected a Gateway, a factory or a list of @tool" in wrong.stderr


AGENT = '''
from voicelive_sip import tool

looked_up = []


@tool
async def order_status(order_id: str) -> dict:
    """Look up the status of an order."""
    return {"order_id": order_id, "status": "shipped from the app"}


tools = [order_status]
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_runs_your_tools_with_settings_from_an_env_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "myagent.py").write_text(textwrap.dedent(AGENT))
    reply = FakeReply(
        tool_call=FakeToolCall("order_status", '{"order_id": "7"}'), follow_up=FakeReply(text="{output}")
    )
    port = _free_port()
    async with FakeVoiceLive(replies=[reply], pace=1.0) as fake, SipPhone(media_port=43200) as phone:
        (tmp_path / "agent.env").write_text(
            f"AZURE_VOICELIVE_ENDPOINT={fake.endpoint}\nAZURE_VOICELIVE_API_KEY={fake.api_key}\n"
            f"SIP_PORT={port}\nSIP_TRANSPORTS=udp\nMEDIA_PORT=43300\nMEDIA_PORT_COUNT=20\nMETRICS_ENABLED=false\n"
        )
        env = {k: v for k, v in env.items() if k != "SIP_PORT"}
        process = await asyncio.create_subprocess_exec(
            *command(), "serve", "--app", "myagent:tools", "--env-file", "agent.env",
            "--log-level", "WARNING", env=env, cwd=tmp_path,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            async with asyncio.timeout(30):
                while b"answering on" not in (line := await process.stderr.readline()):
                    assert line, "serve ended before it answered"
            call = await phone.call(f"sip:agent@127.0.0.1:{port}")
            await call.wait_for(lambda c: c.first_audio_time() is not None)
            t = np.arange(8000 * 0.6) / 8000
            await call.play((9000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16))
            await fake.wait_for(lambda f: bool(f.function_outputs), timeout=15)
            await call.hangup()
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
    assert fake.function_outputs[0]["output"] == '{"order_id": "7", "status": "shipped from the app"}'
    assert {t["name"] for t in fake.session_config["tools"]} >= {"order_status"}


def test_app_may_be_a_gateway_or_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicelive_sip.cli import _load_app
    from voicelive_sip.config import SipSettings
    from voicelive_sip.gateway import Gateway

    (tmp_path / "apps.py").write_text(
        textwrap.dedent(
            """
            from voicelive_sip import Gateway, Settings
            from voicelive_sip.config import SipSettings

            gateway = Gateway(Settings(sip=SipSettings(port=5999)))

            def build(settings):
                return Gateway(settings)

            def build_without_settings():
                return gateway
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings(sip=SipSettings(port=5998))
    assert _load_app("apps:gateway", settings).settings.sip.port == 5999
    built = _load_app("apps:build", settings)
    assert isinstance(built, Gateway) and built.settings is settings
    assert _load_app("apps:build_without_settings", settings).settings.sip.port == 5999


def test_the_fake_voicelive_module_runs_without_a_warning(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "voicelive_sip.testing.fake_voicelive",
         "--port", "0", "--voice", "tone"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("FakeVoiceLive listening")
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert "RuntimeWarning" not in err
