"""pytest plugin (entry point `pytest11`): `fake_voicelive`, `sip_phone` and `gateway` fixtures."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.testing.fake_voicelive import FakeVoiceLive
from voicelive_sip.testing.phone import SipPhone


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
    async def sip_phone() -> AsyncIterator[SipPhone]:
        """A started SipPhone on 127.0.0.1 (free SIP port), its calls hung up and closed after the test."""
        async with SipPhone() as phone:
            yield phone

    @pytest_asyncio.fixture
    async def gateway(
        fake_voicelive: FakeVoiceLive, gateway_options: dict[str, Any], gateway_settings: dict[str, Any]
    ) -> AsyncIterator[Gateway]:
        """A started Gateway on 127.0.0.1 (free SIP port) bridging calls to `fake_voicelive`, with a greeting.

        Call `f"sip:agent@127.0.0.1:{gateway.ua.address[1]}"`; `gateway.summaries` has every finished call.
        """
        groups: dict[str, Any] = {
            "sip": SipSettings(port=0, local_address="127.0.0.1", server=None, register_enabled=False),
            "media": MediaSettings(address="127.0.0.1", public_address=None, port=40000, port_count=400),
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
