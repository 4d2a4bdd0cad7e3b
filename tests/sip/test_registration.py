"""REGISTER against a small in-process registrar: digest with qop, 423, refresh, failures, unregister."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest

from voicelive_sip.aio import RegistrationFailed, RegistrationState, UserAgent
from voicelive_sip.config import SipSettings
from voicelive_sip.sip import Request, make_response, parse_message
from voicelive_sip.sip.auth import DigestServer, VerifyOutcome


class Registrar(asyncio.DatagramProtocol):
    """Challenges every REGISTER (qop=auth), wants Expires >= `min_expires`, grants `grant` seconds."""

    def __init__(self, password: str, *, min_expires: int = 0, grant: int = 3600) -> None:
        self.server = DigestServer(b"registrar-secret", "example.test", qop="auth")
        self.password = password
        self.min_expires = min_expires
        self.grant = grant
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse_message(data)
        assert isinstance(request, Request) and request.method == "REGISTER"
        self.requests.append(request)
        now = self.loop.time()
        expires = request.expires if request.expires is not None else 3600
        values = request.headers.get_all("Authorization")
        if not values:
            response = make_response(
                request, 401, to_tag="reg", headers=[("WWW-Authenticate", self.server.challenge(now))]
            )
        else:
            result = self.server.verify(
                values[0],
                method="REGISTER",
                password_for=lambda user: self.password if user == "bot" else None,
                now=now,
            )
            if result.outcome is VerifyOutcome.STALE:
                response = make_response(
                    request,
                    401,
                    to_tag="reg",
                    headers=[("WWW-Authenticate", self.server.challenge(now, stale=True))],
                )
            elif result.outcome is VerifyOutcome.FAILED:
                response = make_response(
                    request, 401, to_tag="reg", headers=[("WWW-Authenticate", self.server.challenge(now))]
                )
            elif 0 < expires < self.min_expires:
                response = make_response(
                    request, 423, to_tag="reg", headers=[("Min-Expires", str(self.min_expires))]
                )
            else:
                granted = min(expires, self.grant)
                contact = f"{request.headers.get('Contact')};expires={granted}"
                response = make_response(request, 200, to_tag="reg", headers=[("Contact", contact)])
        assert self.transport is not None
        self.transport.sendto(response.serialize(), addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


@asynccontextmanager
async def registrar(password: str = "s3cret", **options: int) -> AsyncIterator[Registrar]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Registrar(password, **options), local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol
    finally:
        transport.close()


def ua_settings(server_port: int, password: str) -> SipSettings:
    return SipSettings(
        port=0, t1=0.05, server=f"127.0.0.1:{server_port}", user="bot@example.test", auth_user="bot",
        auth_password=password, register_expires=600,
    )  # fmt: skip


async def test_register_with_digest_refresh_and_unregister() -> None:
    async with registrar(grant=2) as reg:
        ua = UserAgent(ua_settings(reg.port, "s3cret"))
        async with ua:
            registration = ua.register()
            await registration.wait_registered(timeout=5)
            assert registration.state is RegistrationState.REGISTERED and registration.expires == 2
            first = len(reg.requests)
            assert first == 2  # challenged once, then accepted
            assert reg.requests[1].authorization[0].qop == "auth"
            # A refresh at about 90 % of the 2 s granted, authorised up front (no new challenge).
            while len(reg.requests) == first:
                await asyncio.sleep(0.05)
            refresh = reg.requests[first]
            assert refresh.authorization and refresh.call_id == reg.requests[0].call_id
            assert refresh.cseq.seq > reg.requests[1].cseq.seq
        last = reg.requests[-1]
        assert last.expires == 0  # unregistered on close
        assert registration.state is RegistrationState.UNREGISTERED


async def test_interval_too_brief_is_raised_to_min_expires() -> None:
    async with registrar(min_expires=900) as reg, UserAgent(ua_settings(reg.port, "s3cret")) as ua:
        registration = ua.register()
        await registration.wait_registered(timeout=5)
        assert [r.expires for r in reg.requests[-2:]] == [600, 900]
        assert registration.expires == 900


async def test_wrong_password_is_a_clear_failure_not_a_storm() -> None:
    async with registrar(password="right") as reg, UserAgent(ua_settings(reg.port, "wrong")) as ua:
        registration = ua.register()
        with pytest.raises(RegistrationFailed) as failed:
            await registration.wait_registered(timeout=5)
        assert failed.value.status_code == 401 and "wrong username or password" in failed.value.reason
        await asyncio.sleep(0.5)
        assert len(reg.requests) == 2  # one challenge answered once; the next try is minutes away
        assert registration.state is RegistrationState.FAILED


async def test_no_registrar_is_a_timeout_failure() -> None:
    async with registrar() as reg:
        port = reg.port
    async with UserAgent(ua_settings(port, "s3cret")) as ua:
        registration = ua.register()
        with pytest.raises(RegistrationFailed) as failed:
            await registration.wait_registered(timeout=10)
        assert failed.value.status_code == 408


async def test_register_on_start_when_configured_and_events() -> None:
    async with registrar() as reg:
        settings = ua_settings(reg.port, "s3cret")
        settings.register_enabled = True
        async with UserAgent(settings) as ua:
            (registration,) = ua.registrations
            await registration.wait_registered(timeout=5)
            states = []
            async for change in registration.events():
                states.append(change.state)
                if change.state is RegistrationState.REGISTERED:
                    break
            assert states == [RegistrationState.REGISTERING, RegistrationState.REGISTERED]
