"""Library use: a gateway that cannot reach Voice Live refuses to start; the library leaves logging alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from voicelive_sip import Gateway, Settings, StartupError
from voicelive_sip.config import GatewaySettings, MediaSettings, SipSettings, VoiceLiveSettings
from voicelive_sip.testing import FakeVoiceLive


@pytest.fixture
def no_azure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AZURE_VOICELIVE_ENDPOINT", "AZURE_VOICELIVE_API_KEY", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.azure from `az login`
    monkeypatch.chdir(tmp_path)  # no .env


def _local(voicelive: VoiceLiveSettings) -> Settings:
    return Settings(
        sip=SipSettings(port=0, local_address="127.0.0.1", server=None, register_enabled=False),
        media=MediaSettings(address="127.0.0.1", public_address=None, port=43500, port_count=10),
        voicelive=voicelive,
        gateway=GatewaySettings(),
    )


async def test_no_endpoint_and_no_credential_refuse_to_start(no_azure: None) -> None:
    gateway = Gateway(Settings())
    with pytest.raises(StartupError) as info:
        await gateway.start()
    names = [problem.split(":")[0] for problem in info.value.problems]
    assert names == ["AZURE_VOICELIVE_ENDPOINT", "AZURE_VOICELIVE_API_KEY"]
    assert not gateway.started and not gateway.ua._endpoint.started  # nothing bound, nothing to clean up


async def test_an_endpoint_without_a_key_needs_an_entra_identity_or_a_credential(no_azure: None) -> None:
    settings = _local(VoiceLiveSettings(endpoint="https://r.cognitiveservices.azure.com"))
    with pytest.raises(StartupError, match="AZURE_VOICELIVE_API_KEY"):
        await Gateway(settings).start()
    async with Gateway(settings, credential=object()) as gateway:  # the application brings its own
        assert gateway.started


async def test_agent_started_is_logged_once_and_readyz_says_registration_is_off() -> None:
    async with FakeVoiceLive() as fake:
        with capture_logs() as logs:
            async with Gateway(_local(fake.settings())) as gateway:
                ready, details = gateway.readiness()
    assert [e["event"] for e in logs].count("sip.agent_started") == 1
    assert ready and details["registered"] is None  # not configured: neither true nor false


LIBRARY_USE = """
import asyncio, logging, sys
import structlog
from voicelive_sip import Gateway, Settings
from voicelive_sip.config import MediaSettings, SipSettings
from voicelive_sip.gateway import log
from voicelive_sip.testing import FakeVoiceLive

async def main():
    async with FakeVoiceLive() as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1"),
            media=MediaSettings(address="127.0.0.1", port=43600, port_count=10),
            voicelive=fake.settings(),
        )
        async with Gateway(settings):
            log.debug("test.debug_event")
            log.warning("test.warning_event", detail=1)
    print("handlers", len(logging.getLogger().handlers), "configured", structlog.is_configured())

asyncio.run(main())
"""


def test_the_library_leaves_logging_levels_and_handlers_to_the_application(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LIBRARY_USE)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "handlers 0 configured False" in done.stdout
    output = done.stdout + done.stderr
    # Python's default: warnings reach stderr, info and debug do not.
    assert "test.warning_event" in done.stderr
    assert "test.debug_event" not in output and "sip.agent_started" not in output


def test_an_application_that_configures_logging_gets_every_event(tmp_path: Path) -> None:
    script = LIBRARY_USE.replace(
        "async def main():", "logging.basicConfig(level=logging.DEBUG)\n\nasync def main():"
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "test.debug_event" in done.stderr and "sip.agent_started" in done.stderr
