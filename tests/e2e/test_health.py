"""Health a dispatcher can use (issue 16, item 1): OPTIONS and /readyz say whether a call can be taken.

200 when it can; 503 with Retry-After and a Warning naming why when the gateway is draining, at SIP_MAX_CALLS,
or when Voice Live is known to be unreachable (GATEWAY_VOICELIVE_FAILURES_UNHEALTHY attempts in a row failed),
and back to 200 once a probe gets through.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import cast

import pytest
from structlog.testing import capture_logs

from tests.e2e.test_gateway import bridge, target
from voicelive_sip.aio import CallFailed
from voicelive_sip.gateway import Gateway
from voicelive_sip.sip import Response, parse_message
from voicelive_sip.testing.fake_voicelive import FakeFaults
from voicelive_sip.voicelive.health import ServiceHealth

_branches = itertools.count()


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: asyncio.Queue[Response] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, Response):
            self.responses.put_nowait(message)


async def options(gateway: Gateway) -> Response:
    """Send one OPTIONS over UDP, as a dispatcher's probe does, and return the answer."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Collector, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        n = next(_branches)
        request = (
            f"OPTIONS sip:agent@127.0.0.1:{gateway.ua.address[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprobe{n}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:kamailio@127.0.0.1>;tag=p{n}\r\nTo: <sip:agent@127.0.0.1>\r\n"
            f"Call-ID: probe{n}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        cast(asyncio.DatagramTransport, transport).sendto(request.encode(), gateway.ua.address)
        return await asyncio.wait_for(protocol.responses.get(), 5)
    finally:
        transport.close()


def test_service_health_goes_down_after_the_threshold_and_up_at_the_first_success() -> None:
    health = ServiceHealth(threshold=2)
    health.failed("refused")
    assert not health.down and health.problem is None
    health.failed("refused again")
    assert health.down and health.problem is not None and "refused again" in health.problem
    health.succeeded()
    assert not health.down and health.failures_in_a_row == 0
    never = ServiceHealth(threshold=0)
    for _ in range(10):
        never.failed("x")
    assert not never.down


async def test_options_answer_200_while_a_call_can_be_taken() -> None:
    async with bridge() as (_fake, gateway, _phone):
        response = await options(gateway)
        assert response.status_code == 200 and "Retry-After" not in response.headers
        ready, details = gateway.readiness()
        assert ready and details["unavailable"] is None


async def test_options_answer_503_while_draining() -> None:
    async with bridge() as (_fake, gateway, _phone):
        gateway.ua.draining = True
        response = await options(gateway)
        assert response.status_code == 503
        assert response.headers.get("Retry-After") == "30"
        assert "draining" in str(response.headers.get("Warning"))
        assert gateway.readiness()[0] is False


async def test_options_answer_503_at_max_calls_and_200_once_a_call_ends() -> None:
    async with bridge(
        fake_options={"pace": 100.0},
        sip_options={"max_calls": 1},
        gateway_options={"answer_mode": "immediately"},
    ) as (_fake, gateway, phone):
        call = await phone.call(target(gateway))
        response = await options(gateway)
        assert response.status_code == 503
        assert response.headers.get("Retry-After") == "5"
        assert "full" in str(response.headers.get("Warning"))
        ready, details = gateway.readiness()
        assert not ready and details["unavailable"] == "full"
        await call.hangup()
        for _ in range(100):
            if (await options(gateway)).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert (await options(gateway)).status_code == 200


async def test_voicelive_unreachable_turns_options_and_invites_503_until_a_probe_gets_through() -> None:
    gateway_options = {"voicelive_failures_unhealthy": 2, "health_probe_interval": 0.05}
    async with bridge(
        fake_options={"faults": FakeFaults(reject_auth=True)}, gateway_options=gateway_options
    ) as (fake, gateway, phone):
        for _ in range(2):  # two calls find Voice Live refusing: the gateway marks it down
            with pytest.raises(CallFailed):
                await phone.call(target(gateway))
        assert gateway.voicelive_health.down
        response = await options(gateway)
        assert response.status_code == 503 and response.headers.get("Retry-After") == "30"
        assert "Voice Live unreachable" in str(response.headers.get("Warning"))
        ready, details = gateway.readiness()
        assert not ready and details["voicelive_reachable"] is False
        # A new INVITE is refused at once with 503 (a proxy tries another gateway), before any connection try.
        with capture_logs() as logs, pytest.raises(CallFailed) as refused:
            await phone.call(target(gateway))
        assert refused.value.status_code == 503
        assert [e["event"] for e in logs if e["event"].startswith("sip.call_refused")] == [
            "sip.call_refused_unhealthy"
        ]
        # The service comes back: the gateway's own probe finds out, and OPTIONS turn 200 again.
        fake.faults = FakeFaults()
        for _ in range(200):
            if not gateway.voicelive_health.down:
                break
            await asyncio.sleep(0.02)
        assert not gateway.voicelive_health.down
        assert (await options(gateway)).status_code == 200
        assert gateway.readiness()[0]
        call = await phone.call(target(gateway))  # and calls go through
        await call.hangup()
