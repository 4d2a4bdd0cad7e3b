"""Bad input on SIP over TLS (issue 14, item 4), against a running user agent on 127.0.0.1, no external peer:
plaintext on the TLS port, handshakes that never finish, servers whose certificate must not be trusted, and
mutual TLS without a good client certificate. Each gives a log event, fails only what it should, and the
user agent keeps serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.certs import TestPki, TlsIdentity
from tests.interop.conftest import LOCALHOST, free_port
from tests.sip.test_tcp_limits import closed_by_server, options, read_response
from voicelive_sip.aio import RegistrationFailed, UserAgent
from voicelive_sip.config import SipSettings
from voicelive_sip.errors import CallFailed

WAIT = 10.0  # generous bound for an effect that should come at once; never a measurement
HANDSHAKE_TIMEOUT = 0.3


@contextlib.asynccontextmanager
async def tls_agent(pki: TestPki, **overrides: Any) -> AsyncIterator[UserAgent]:
    """A user agent with UDP/TCP on a free port and a TLS listener with the test server certificate."""
    settings = SipSettings(
        local_address=LOCALHOST,
        port=0,
        tls_port=0,
        tls_cert_file=str(pki.server.cert),
        tls_key_file=str(pki.server.key),
        tls_ca_file=str(pki.ca),
        tls_handshake_timeout=HANDSHAKE_TIMEOUT,
        **overrides,
    )
    async with UserAgent(settings) as agent:
        yield agent


def tls_address(agent: UserAgent) -> tuple[str, int]:
    address = agent.tls_address
    assert address is not None, "a certificate is set but there is no TLS listener"
    return str(address[0]), int(address[1])


def client_context(pki: TestPki, identity: TlsIdentity | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


def tls_options() -> bytes:
    return options().replace(b"SIP/2.0/TCP", b"SIP/2.0/TLS")


async def options_over_tls(agent: UserAgent, pki: TestPki, identity: TlsIdentity | None = None) -> int:
    """The status our OPTIONS gets on a new, verified TLS connection to the agent."""
    host, port = tls_address(agent)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=client_context(pki, identity), server_hostname=host), WAIT
    )
    try:
        writer.write(tls_options())
        await writer.drain()
        return (await read_response(reader)).status_code
    finally:
        # Not a graceful close: how the agent answers one is a test of its own below.
        writer.transport.abort()


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def wait_for_event(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    for _ in range(int(WAIT / 0.02)):
        if found := events(logs, name):
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {name} in {[e['event'] for e in logs]}")


def client_hello() -> bytes:
    """A real TLS ClientHello, as the first flight of a client would send it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# ---------------------------------------------------------------------------------------------------------
# Incoming


async def test_plaintext_sip_on_the_tls_port_is_closed_and_logged_and_tls_still_works(pki: TestPki) -> None:
    async with tls_agent(pki) as agent:
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection(*tls_address(agent))
            writer.write(options())
            await writer.drain()
            answer = bytearray()
            with contextlib.suppress(ConnectionError):
                while chunk := await asyncio.wait_for(reader.read(4096), WAIT):
                    answer += chunk
            writer.close()
            (failed, *_) = await wait_for_event(logs, "sip.tls_handshake_failed")
        # No SIP answer in clear (a TLS alert at most), and the reason is logged with the source.
        assert b"SIP/2.0" not in answer, bytes(answer)
        assert failed["source"] == LOCALHOST, failed
        assert await options_over_tls(agent, pki) == 200


@pytest.mark.parametrize("sent", ["nothing", "half a ClientHello"])
async def test_a_handshake_that_never_finishes_is_closed_at_the_deadline(pki: TestPki, sent: str) -> None:
    async with tls_agent(pki) as agent:
        with capture_logs() as logs:
            stalled = [await asyncio.open_connection(*tls_address(agent)) for _ in range(3)]
            if sent != "nothing":
                hello = client_hello()
                for _, writer in stalled:
                    writer.write(hello[: len(hello) // 2])
                    await writer.drain()
            # While they stall, others are served.
            assert await options_over_tls(agent, pki) == 200
            for reader, writer in stalled:
                assert await asyncio.wait_for(closed_by_server(reader), WAIT)
                writer.close()
            failures = await wait_for_event(logs, "sip.tls_handshake_failed")
        assert len(failures) >= 3, failures
        assert await options_over_tls(agent, pki) == 200


async def test_mutual_tls_refuses_a_client_without_a_good_certificate(pki: TestPki) -> None:
    async with tls_agent(pki, tls_require_client_cert=True) as agent:
        assert await options_over_tls(agent, pki, pki.client) == 200
        for identity in (None, pki.untrusted):
            with capture_logs() as logs:
                # TLS 1.3 finishes the client's side of the handshake before the server has checked the
                # client's certificate, so the refusal shows as the connection closing instead of an answer.
                with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                    await options_over_tls(agent, pki, identity)
                (failed, *_) = await wait_for_event(logs, "sip.tls_handshake_failed")
            assert "certificate" in str(failed.get("reason", "")).lower(), failed
        assert await options_over_tls(agent, pki, pki.client) == 200


# ---------------------------------------------------------------------------------------------------------
# Outgoing: servers we must not trust


@dataclass
class BadServer:
    """A TLS server on 127.0.0.1 presenting a given certificate; records what any finished connection sent."""

    identity: TlsIdentity
    port: int = 0
    received: bytearray = field(default_factory=bytearray)
    handshakes: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := await reader.read(4096):
                self.received += chunk
        writer.close()


@contextlib.asynccontextmanager
async def bad_server(identity: TlsIdentity) -> AsyncIterator[BadServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(identity.cert), str(identity.key))
    server = BadServer(identity)
    listener = await asyncio.start_server(server._serve, LOCALHOST, 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


BAD_CERTIFICATES = {
    # name of the TestPki identity: what the verification failure must say
    "untrusted": "unable to get local issuer certificate",
    "expired": "certificate has expired",
    "wrong_host": "address mismatch",  # the target is an IP address: "IP address mismatch"
}


@pytest.mark.parametrize("name", sorted(BAD_CERTIFICATES))
async def test_an_outgoing_call_to_a_server_we_must_not_trust_fails_clearly(pki: TestPki, name: str) -> None:
    async with bad_server(getattr(pki, name)) as server, tls_agent(pki) as agent:
        with capture_logs() as logs:
            with pytest.raises(CallFailed) as failure:
                await asyncio.wait_for(
                    agent.call(f"sip:bob@{LOCALHOST}:{server.port};transport=tls", rtp_port=free_port()), WAIT
                )
            (logged, *_) = await wait_for_event(logs, "sip.tls_connect_failed")
        assert failure.value.status_code == 503, failure.value
        assert BAD_CERTIFICATES[name] in failure.value.reason.lower(), failure.value
        assert BAD_CERTIFICATES[name] in str(logged.get("error", "")).lower(), logged
        # Nothing of the INVITE reached the server: we stopped at its certificate.
        assert bytes(server.received) == b"", bytes(server.received)


@pytest.mark.parametrize("name", sorted(BAD_CERTIFICATES))
async def test_registration_with_a_server_we_must_not_trust_fails_clearly(pki: TestPki, name: str) -> None:
    async with bad_server(getattr(pki, name)) as server:
        registrar = f"{LOCALHOST}:{server.port};transport=tls"
        async with tls_agent(pki, server=registrar, user=f"alice@{LOCALHOST}") as agent:
            with capture_logs() as logs:
                registration = agent.register()
                with pytest.raises(RegistrationFailed) as failure:
                    await registration.wait_registered(timeout=WAIT)
                await wait_for_event(logs, "sip.tls_connect_failed")
        assert BAD_CERTIFICATES[name] in str(failure.value).lower(), failure.value
        assert bytes(server.received) == b"", bytes(server.received)


async def test_a_trusted_server_gets_the_invite(pki: TestPki) -> None:
    """The control for the tests above: the same server with the good certificate receives our INVITE."""
    async with bad_server(pki.server) as server, tls_agent(pki) as agent:
        call = agent.dial(f"sip:bob@{LOCALHOST}:{server.port};transport=tls", rtp_port=free_port(), timeout=2)
        for _ in range(int(WAIT / 0.02)):
            if b"INVITE sip:bob@" in server.received:
                break
            await asyncio.sleep(0.02)
        assert server.received.startswith(b"INVITE sip:bob@"), bytes(server.received[:200])
        assert b"Via: SIP/2.0/TLS " in server.received, bytes(server.received[:400])
        with contextlib.suppress(CallFailed):
            await call.hangup()


# ---------------------------------------------------------------------------------------------------------
# Closing


async def test_a_tls_connection_the_peer_closes_is_closed_by_us_too(pki: TestPki) -> None:
    async with tls_agent(pki) as agent:
        host, port = tls_address(agent)
        reader, writer = await asyncio.open_connection(
            host, port, ssl=client_context(pki), server_hostname=host
        )
        writer.write(tls_options())
        await writer.drain()
        assert (await read_response(reader)).status_code == 200
        # Our close_notify (RFC 8446 §6.1) must be answered with the agent's own and its side closed; asyncio
        # otherwise waits its 30 s SSL shutdown timeout, and the agent keeps a dead connection counted.
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), WAIT)
        finally:
            writer.transport.abort()


async def test_close_is_not_held_up_by_a_peer_that_never_answers_close_notify(pki: TestPki) -> None:
    agent = UserAgent(
        SipSettings(
            local_address=LOCALHOST,
            port=0,
            tls_port=0,
            tls_cert_file=str(pki.server.cert),
            tls_key_file=str(pki.server.key),
        )
    )
    await agent.start()
    host, port = tls_address(agent)
    reader, writer = await asyncio.open_connection(host, port, ssl=client_context(pki), server_hostname=host)
    writer.write(tls_options())
    await writer.drain()
    assert (await read_response(reader)).status_code == 200
    # Like baresip: the connection stays open and nothing answers our close_notify (asyncio would otherwise
    # wait up to its 30 s SSL shutdown timeout for it).
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    transport.pause_reading()
    try:
        await asyncio.wait_for(agent.close(), WAIT)
    finally:
        writer.transport.abort()
