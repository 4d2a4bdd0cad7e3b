"""The plugin's fixtures take ports and codecs from pytest options (ini or command line) and per test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_TEST = """
import pytest


async def test_ports_and_codecs(gateway, sip_phone, pytestconfig):
    media = gateway.settings.media
    assert (media.port, media.port + media.port_count - 1) == tuple(
        int(p) for p in pytestconfig.getoption("expected_media").split("-")
    )
    expected_sip = int(pytestconfig.getoption("expected_sip"))
    assert gateway.ua.address[1] == expected_sip if expected_sip else gateway.ua.address[1] > 0
    assert list(sip_phone.ua.options.codecs) == pytestconfig.getoption("expected_codecs").split(",")
    assert sip_phone.pool.capacity == 5  # 44500-44510: five even/odd pairs


@pytest.mark.parametrize("sip_phone_options", [{"codecs": ["PCMA"], "media_port": 44520}], indirect=True)
async def test_one_test_parametrises_the_phone(sip_phone):
    assert list(sip_phone.ua.options.codecs) == ["PCMA"]
"""

CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--expected-media")
    parser.addoption("--expected-sip")
    parser.addoption("--expected-codecs")
"""

PYPROJECT = """
[tool.pytest.ini_options]
asyncio_mode = "auto"
voicelive_sip_media_ports = "44400-44440"
voicelive_sip_phone_media_ports = "44500-44510"
voicelive_sip_phone_codecs = "PCMA,PCMU"
"""


def _free_port() -> int:
    import socket

    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
    return int(port)


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_ini_options_then_command_line_options_win(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_project.py").write_text(PROJECT_TEST)
    from_ini = _pytest(
        tmp_path, "--expected-media=44400-44440", "--expected-sip=0", "--expected-codecs=PCMA,PCMU"
    )
    assert from_ini.returncode == 0, from_ini.stdout[-3000:]
    sip = _free_port()
    overridden = _pytest(
        tmp_path,
        "--voicelive-sip-media-ports=44450-44470",
        f"--voicelive-sip-port={sip}",
        "--voicelive-sip-phone-codecs=PCMU",
        "--expected-media=44450-44470",
        f"--expected-sip={sip}",
        "--expected-codecs=PCMU",
    )
    assert overridden.returncode == 0, overridden.stdout[-3000:]


def test_a_bad_range_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nasyncio_mode = "auto"\n')
    (tmp_path / "test_x.py").write_text("async def test_x(gateway):\n    pass\n")
    done = _pytest(tmp_path, "--voicelive-sip-media-ports=banana")
    assert (
        done.returncode != 0
        and "voicelive_sip_media_ports: 'banana' is not FIRST-LAST" in done.stdout + done.stderr
    )
