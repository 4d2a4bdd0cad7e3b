"""pytest plugin (entry point `pytest11`): `fake_voicelive`, `sip_phone` and `gateway` fixtures.

Ports and codecs come from pytest options (command line or the `[tool.pytest.ini_options]` of the project):
`--voicelive-sip-port`, `--voicelive-sip-media-ports`, `--voicelive-sip-phone-media-ports`,
`--voicelive-sip-phone-codecs`; per test, override (or parametrise) `sip_phone_options` / `gateway_settings`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing.fake_voicelive import FakeVoiceLive
from voicelive_sip.testing.phone import SipPhone

_OPTIONS = (
    ("port", "0", "SIP port of the gateway fixture (0: a free port)"),
    ("media_ports", "40000-40400", "RTP port range of the gateway fixture, FIRST-LAST"),
    ("phone_media_ports", "30000-30100", "RTP port range of the sip_phone fixture, FIRST-LAST"),
    ("phone_codecs", "PCMU,PCMA", "codecs the sip_phone fixture offers and accepts, by preference"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("voicelive-sip", "voicelive-sip fixtures")
    for name, default, text in _OPTIONS:
        option = "voicelive_sip_" + name
        group.addoption(
            "--" + option.replace("_", "-"), dest=option, default=None, help=f"{text}; default {default}"
        )
        parser.addini(option, f"{text} (--{option.replace('_', '-')})", default=default)


def _option(config: pytest.Config, name: str) -> str:
    option = "voicelive_sip_" + name
    value = config.getoption(option)
    return str(value if value is not None else config.getini(option))


def _port_range(config: pytest.Config, name: str) -> tuple[int, int]:
    """(first port, count) from FIRST-LAST."""
    text = _option(config, name)
    first, _, last = text.partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError:
        raise pytest.UsageError(
            f"voicelive_sip_{name}: {text!r} is not FIRST-LAST, e.g. 40000-40400"
        ) from None
    if not 1024 <= start < end <= 65535:
        raise pytest.UsageError(f"voicelive_sip_{name}: {text!r} is not a range within 1024-65535")
    return start, end - start + 1


@pytest.fixture
def sip_phone_options(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Keyword arguments for the `sip_phone` fixture's SipPhone (codecs=, media_port=, record_seconds=...).

    Defaults from the pytest options; override this fixture, or parametrise it indirectly, to change them.
    """
    media_port, media_ports = _port_range(pytestconfig, "phone_media_ports")
    codecs = [c.strip() for c in _option(pytestconfig, "phone_codecs").split(",") if c.strip()]
    options: dict[str, Any] = {"media_port": media_port, "media_ports": media_ports, "codecs": codecs}
    return {**options, **getattr(request, "param", {})}  # indirect parametrisation changes some of them


@pytest.fixture
def fake_voicelive_options() -> dict[str, Any]:
    """Keyword arguments for the `fake_voicelive` fixture; override this fixture to script the fake."""
    return {}


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    """Keyword arguments for the `gateway` fixture's Gateway (tools=, configure=, on_summary=...)."""
    return {}


@pytest.fixture
def gateway_settings() -> dict[str, Any]:
    """Overrides of the `gateway` fixture's settings groups: {"gateway": GatewaySettings(...), ...}."""
    return {}


# The plugin loads in every pytest run of a project that installs us; without pytest-asyncio it must not break
# that run, so the fixture then skips the tests that ask for it.
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def fake_voicelive(fake_voicelive_options: dict[str, Any]) -> AsyncIterator[FakeVoiceLive]:
        """A started FakeVoiceLive on a free 127.0.0.1 port, stopped after the test."""
        async with FakeVoiceLive(**fake_voicelive_options) as fake:
            yield fake

    @pytest_asyncio.fixture
    async def sip_phone(sip_phone_options: dict[str, Any]) -> AsyncIterator[SipPhone]:
        """A started SipPhone on 127.0.0.1 (free SIP port), its calls hung up and closed after the test."""
        async with SipPhone(**sip_phone_options) as phone:
            yield phone

    @pytest_asyncio.fixture
    async def gateway(
        fake_voicelive: FakeVoiceLive,
        gateway_options: dict[str, Any],
        gateway_settings: dict[str, Any],
        pytestconfig: pytest.Config,
    ) -> AsyncIterator[Gateway]:
        """A started Gateway on 127.0.0.1 bridging calls to `fake_voicelive`, with a greeting.

        Call `f"sip:agent@127.0.0.1:{gateway.ua.address[1]}"`, then `session = await gateway.next_call()`.
        """
        port = int(_option(pytestconfig, "port"))
        media_port, media_ports = _port_range(pytestconfig, "media_ports")
        groups: dict[str, Any] = {
            "sip": SipSettings(port=port, local_address="127.0.0.1", server=None, register_enabled=False),
            "media": MediaSettings(
                address="127.0.0.1", public_address=None, port=media_port, port_count=media_ports
            ),
            "voicelive": fake_voicelive.settings(proactive_greeting_enabled=True),
            "gateway": GatewaySettings(),
            **gateway_settings,
        }
        async with Gateway(Settings(**groups), **gateway_options) as running:
            yield running

else:  # pragma: no cover - depends on the environment

    @pytest.fixture
    def fake_voicelive() -> None:
        """Skips: the async fixture needs pytest-asyncio."""
        pytest.skip("the fake_voicelive fixture needs pytest-asyncio")

    @pytest.fixture
    def sip_phone() -> None:
        """Skips: the async fixture needs pytest-asyncio."""
        pytest.skip("the sip_phone fixture needs pytest-asyncio")

    @pytest.fixture
    def gateway() -> None:
        """Skips: the async fixture needs pytest-asyncio."""
        pytest.skip("the gateway fixture needs pytest-asyncio")
