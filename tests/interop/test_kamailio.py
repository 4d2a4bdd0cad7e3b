"""kamailio as registrar (digest auth, qop=auth): we register, get a call routed through it, unregister on
close, and report a wrong password without a retry storm."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.interop.conftest import LOCALHOST, Kamailio, RunningUa, Sipp, scenario
from voicelive_sip.aio import RegistrationFailed, RegistrationState, UserAgent
from voicelive_sip.config import SipSettings

pytestmark = pytest.mark.interop


def alice(kamailio: Kamailio, password: str = "alice123", **extra: Any) -> dict[str, Any]:
    return {
        "server": kamailio.address,
        "user": f"alice@{LOCALHOST}",
        "auth_user": "alice",
        "auth_password": password,
        "register_expires": 300,
        **extra,
    }


@pytest.fixture
def ua_settings(kamailio: Kamailio) -> dict[str, Any]:
    return alice(kamailio)


def our_contacts(kamailio: Kamailio, port: int) -> list[str]:
    return [c for c in kamailio.contacts().get("alice", []) if f"@{LOCALHOST}:{port}" in c]


async def test_register_then_receive_a_call_through_kamailio(
    ua: RunningUa, kamailio: Kamailio, sipp: Sipp
) -> None:
    registration = ua.ua.register()
    await registration.wait_registered(timeout=10)
    assert registration.state is RegistrationState.REGISTERED
    assert our_contacts(kamailio, ua.port), kamailio.kamcmd("ul.dump")

    # sipp dials alice's address of record at kamailio, which looks up our contact and relays.
    caller = scenario("uac_proxy_auth.xml")
    result = await sipp.run(caller, kamailio.address, args=["-s", "alice", "-d", "200"])
    assert result.returncode == 0, result.describe()
    await ua.wait_until(lambda: len(ua.ended) == 1)
    assert ua.errors == []
    (call,) = ua.incoming
    assert call.request.record_route, "the INVITE did not come through kamailio"
    assert (ua.ended[0].reason, ua.ended[0].by) == ("bye", "remote")


async def test_register_enabled_registers_on_start_and_unregisters_on_close(kamailio: Kamailio) -> None:
    settings = SipSettings(local_address=LOCALHOST, port=0, **alice(kamailio, register_enabled=True))
    async with UserAgent(settings) as agent:
        port = agent.address[1]
        for _ in range(200):
            if our_contacts(kamailio, port):
                break
            await asyncio.sleep(0.05)
        assert our_contacts(kamailio, port), kamailio.kamcmd("ul.dump")
    assert our_contacts(kamailio, port) == []


async def test_wrong_password_is_reported_without_a_retry_storm(kamailio: Kamailio) -> None:
    settings = SipSettings(local_address=LOCALHOST, port=0, **alice(kamailio, password="wrong"))
    async with UserAgent(settings) as agent:
        registration = agent.register()
        with pytest.raises(RegistrationFailed) as failure:
            await registration.wait_registered(timeout=10)
        assert registration.state is RegistrationState.FAILED
        assert "401" in str(failure.value)
        # Give a misbehaving client time to keep trying: kamailio must have seen the first REGISTER and one
        # authenticated retry, nothing more.
        await asyncio.sleep(2)
        assert 2 <= kamailio.registers_received() <= 3  # one UDP retransmission at most
        assert kamailio.contacts().get("alice", []) == []
