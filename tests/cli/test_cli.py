"""The command line: version, the demo, configuration errors, and `check` against a fake Voice Live."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from voicelive_sip import __version__
from voicelive_sip.cli import main


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI configures structlog for the process; put it back for the tests that follow."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "voicelive-sip demo" in text and "serve --fake-voicelive" in text


def test_demo_runs_a_whole_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Transcript" in out and "time to answer" in out and "time to first agent audio" in out
    assert "barge-in reaction" in out
    # The caller's question is a turn: its latency, split; the clean loopback scores the G.711 ceiling.
    assert "speech end to agent audio (service" in out and "turn latency p50 / p95" in out
    mos = re.search(r"MOS-CQ received \.+ +([0-9.]+)", out)
    assert mos is not None and float(mos.group(1)) >= 4.3
    assert "agent: We are open" in out
    assert "(interrupted)" in out  # the greeting the caller talked over, as far as it was heard
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert len(list(tmp_path.glob("*.wav"))) == 1


def test_invalid_configuration_lists_each_variable_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIP_PORT", "not-a-port")
    monkeypatch.setenv("GATEWAY_ANSWER_MODE", "later")
    monkeypatch.setenv("AUTH_PASSWORD", "")
    assert main(["serve", "--fake-voicelive"]) == 2
    err = capsys.readouterr().err
    assert "SIP_PORT:" in err and "GATEWAY_ANSWER_MODE:" in err
    assert "Traceback" not in err


def test_missing_credentials_say_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AZURE_VOICELIVE_ENDPOINT", "AZURE_VOICELIVE_API_KEY", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    assert main(["check"]) == 2
    out = capsys.readouterr().out
    assert "AZURE_VOICELIVE_ENDPOINT" in out and "--fake-voicelive" in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fake_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicelive_sip.testing.fake_voicelive",
            "--port",
            str(port),
            "--voice",
            "tone",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_check_reports_each_step(fake_server: str) -> None:
    env = {
        **os.environ,
        "AZURE_VOICELIVE_ENDPOINT": fake_server,
        "AZURE_VOICELIVE_API_KEY": "test-key",
        "SIP_PORT": "0",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "voicelive_sip.cli", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "✓ Voice Live accepted" in done.stdout and "✓ SIP listening" in done.stdout
    bad = {**env, "AZURE_VOICELIVE_API_KEY": "wrong-key"}
    failed = subprocess.run(
        [sys.executable, "-m", "voicelive_sip.cli", "check"],
        env=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1 and "✗ Voice Live" in failed.stdout
    assert "wrong-key" not in failed.stdout + failed.stderr


def test_serve_takes_gc_freeze_as_an_option() -> None:
    from voicelive_sip.cli import _parser

    assert _parser().parse_args(["serve", "--gc-freeze"]).gc_freeze is True
    assert _parser().parse_args(["serve"]).gc_freeze is False
