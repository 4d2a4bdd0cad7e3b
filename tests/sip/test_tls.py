"""SIP over TLS between user agents on loopback: the listener, outgoing TLS, connection reuse, keep-alives,
mutual TLS and the settings' errors. Real TLS (Python's ssl on both ends); the peers' tests are in tests/e2e
and tests/interop."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.certs import TestPki, make_pki
from tests.sip.test_ua import agent
from voicelive_sip.aio import CallFailed, UserAgent
from voicelive_sip.aio.options import UserAgentOptions
from voicelive_sip.aio.tls import TlsSetupError, tls_contexts
from voicelive_sip.config import SipSettings
from voicelive_sip.errors import RegistrationFailed
from voicelive_sip.sip import Request, make_response
from voicelive_sip.sip.framing import StreamFramer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: TestPki, **more: Any) -> dict[str, Any]:
    return {
        "tls_port": 0,
        "tls_cert_file": str(pki.server.cert),
        "tls_key_file": str(pki.server.key),
        "tls_ca_file": str(pki.ca),
        **more,
    }


async def test_a_call_over_tls_carries_tls_via_and_contact_and_ends_over_the_same_connection(
    pki: TestPki,
) -> None:
    async with agent(**server_tls(pki)) as bob, agent(None, tls_ca_file=str(pki.ca)) as alice:
        assert bob.tls_address is not None and alice.tls_address is None  # no certificate: no listener
        port = bob.tls_address[1]
        call = await alice.call(f"sip:bob@127.0.0.1:{port};transport=tls", rtp_port=40000)
        incoming = bob.seen[0]  # type: ignore[attr-defined]
        assert incoming.transport == "TLS"
        via = incoming.request.top_via
        assert via.transport == "TLS"
        # Alice has no listener of her own; the Contact she sends still says TLS, and Bob's says his TLS port.
        assert "transport=tls" in str(incoming.request.headers.get("Contact"))
        assert call.dialog is not None
        assert call.dialog.remote_target.port == port
        assert call.dialog.remote_target.transport == "tls"
        # Bob hangs up: his BYE travels back over Alice's connection (she has no TLS listener to reach).
        await incoming.hangup()
        ended = await asyncio.wait_for(call.wait_ended(), 5)
        assert ended.reason == "bye" and ended.by == "remote"
        transports = alice._endpoint._transports
        assert transports is not None
        assert [key[0] for key in transports.connections] == ["TLS"]


async def test_calls_to_one_tls_peer_share_one_connection(pki: TestPki) -> None:
    async with agent(**server_tls(pki)) as bob, agent(None, tls_ca_file=str(pki.ca)) as alice:
        assert bob.tls_address is not None
        target = f"sip:bob@127.0.0.1:{bob.tls_address[1]};transport=tls"
        first = await alice.call(target, rtp_port=40000)
        second = await alice.call(target, rtp_port=40002)
        bob_transports = bob._endpoint._transports
        assert bob_transports is not None
        inbound = {id(c) for c in bob_transports.connections.values()}
        assert len(inbound) == 1
        await first.hangup()
        await second.hangup()


async def test_sips_uri_goes_over_tls_and_the_certificate_name_is_checked(pki: TestPki) -> None:
    async with agent(**server_tls(pki)) as bob, agent(None, tls_ca_file=str(pki.ca)) as alice:
        assert bob.tls_address is not None
        call = await alice.call(f"sips:bob@localhost:{bob.tls_address[1]}", rtp_port=40000)
        assert bob.seen[0].transport == "TLS"  # type: ignore[attr-defined]
        await call.hangup()


async def test_an_untrusted_server_certificate_fails_the_call_with_the_reason(pki: TestPki) -> None:
    untrusted = {
        "tls_port": 0, "tls_cert_file": str(pki.untrusted.cert), "tls_key_file": str(pki.untrusted.key)
    }  # fmt: skip
    async with agent(**untrusted) as bob, agent(None, tls_ca_file=str(pki.ca)) as alice:
        assert bob.tls_address is not None
        with capture_logs() as logs, pytest.raises(CallFailed) as failure:
            await alice.call(f"sip:bob@127.0.0.1:{bob.tls_address[1]};transport=tls", rtp_port=40000)
        assert failure.value.status_code == 503
        assert "certificate verify failed" in failure.value.reason
        events = [e for e in logs if e["event"] == "sip.tls_connect_failed"]
        assert events and "certificate verify failed" in events[0]["error"]
        assert bob.seen == []  # type: ignore[attr-defined]


async def test_verification_can_be_turned_off(pki: TestPki) -> None:
    untrusted = {
        "tls_port": 0, "tls_cert_file": str(pki.untrusted.cert), "tls_key_file": str(pki.untrusted.key)
    }  # fmt: skip
    with capture_logs() as logs:
        async with agent(**untrusted) as bob, agent(None, tls_verify_peer=False) as alice:
            assert bob.tls_address is not None
            call = await alice.call(f"sip:bob@127.0.0.1:{bob.tls_address[1]};transport=tls", rtp_port=40000)
            await call.hangup()
    assert any(e["event"] == "security.tls_verify_disabled" for e in logs)


async def test_mutual_tls_accepts_a_client_certificate_and_refuses_its_absence(pki: TestPki) -> None:
    client = {"tls_cert_file": str(pki.client.cert), "tls_key_file": str(pki.client.key)}
    mutual = server_tls(pki, tls_require_client_cert=True)
    async with (
        agent(**mutual) as bob,
        agent(None, tls_ca_file=str(pki.ca), tls_port=0, **client) as alice,
        agent(None, tls_ca_file=str(pki.ca)) as mallory,
    ):
        assert bob.tls_address is not None
        target = f"sip:bob@127.0.0.1:{bob.tls_address[1]};transport=tls"
        call = await alice.call(target, rtp_port=40000)
        await call.hangup()
        with capture_logs() as logs, pytest.raises(CallFailed) as failure:
            await mallory.call(target, rtp_port=40002)
        assert failure.value.status_code in (408, 503)  # refused in or right after the handshake
        assert len(bob.seen) == 1  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)
        assert any(e["event"] == "sip.tls_handshake_failed" for e in logs)


async def test_a_double_crlf_ping_over_tls_gets_a_crlf_pong(pki: TestPki) -> None:
    async with agent(**server_tls(pki)) as bob:
        assert bob.tls_address is not None
        context = ssl.create_default_context(cafile=str(pki.ca))
        reader, writer = await asyncio.open_connection(*bob.tls_address, ssl=context)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        writer.close()


def test_the_framer_counts_pings_between_messages_but_not_lone_crlfs() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n")
    assert framer.pings == 0 and framer.keepalive_line_breaks == 1  # a pong
    framer.feed(b"\r\n\r\n")
    assert framer.pings == 1
    framer.feed(b"\r\n\r\n\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    assert framer.pings == 3


class FakeRegistrar:
    """A TLS registrar: answers REGISTER 200, answers pings when told to, and can drop the connection."""

    def __init__(self, *, answers_pings: bool) -> None:
        self.answers_pings = answers_pings
        self.registers = 0
        self.pings = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.contacts: list[str] = []
        self.registered = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        framer = StreamFramer()
        while data := await reader.read(4096):
            pings = framer.pings
            for message in framer.feed(data):
                assert isinstance(message, Request) and message.method == "REGISTER"
                self.registers += 1
                self.contacts.append(str(message.headers.get("Contact")))
                response = make_response(message, 200, to_tag="reg")
                response.headers.add("Contact", f"{message.headers.get('Contact')};expires=3600")
                writer.write(response.serialize())
                self.registered.set()
            self.pings += framer.pings - pings
            if framer.pings != pings and self.answers_pings:
                writer.write(b"\r\n")


@asynccontextmanager
async def registrar(pki: TestPki, *, answers_pings: bool) -> AsyncIterator[tuple[FakeRegistrar, int]]:
    fake = FakeRegistrar(answers_pings=answers_pings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0, ssl=context)
    try:
        yield fake, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in fake.writers:
            writer.close()


async def test_a_registration_over_tls_keeps_its_connection_alive_and_recovers_a_lost_one(
    pki: TestPki,
) -> None:
    async with registrar(pki, answers_pings=True) as (fake, port):
        options = {
            "server": f"127.0.0.1:{port};transport=tls", "user": "bot@127.0.0.1", "tls_ca_file": str(pki.ca),
            "register_enabled": True, "keepalive_interval": 0.05,
        }  # fmt: skip
        async with agent(None, **options) as ua:
            registration = ua.registrations[0]
            await registration.wait_registered(timeout=5)
            assert fake.registers == 1

            async def pinged(count: int) -> None:
                while fake.pings < count:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(pinged(3), 5)
            assert fake.registers == 1  # pings, not REGISTERs, keep the flow
            with capture_logs() as logs:
                fake.writers[0].close()  # the registrar's side of the flow goes away
                while fake.registers < 2:
                    await asyncio.sleep(0.01)
            assert any(e["event"] == "sip.registration_flow_lost" for e in logs)
            assert len(fake.writers) == 2  # re-registered over a new connection, long before the refresh


async def test_a_sips_registrar_gets_a_sips_contact(pki: TestPki) -> None:
    async with registrar(pki, answers_pings=False) as (fake, port):
        options = {
            "server": f"sips:127.0.0.1:{port}", "user": "bot@127.0.0.1", "tls_ca_file": str(pki.ca),
            "register_enabled": True, **server_tls(pki),
        }  # fmt: skip
        async with agent(None, **options) as ua:
            await ua.registrations[0].wait_registered(timeout=5)
            assert ua.tls_address is not None
            # RFC 3261 §8.1.1.8: a request to a SIPS URI carries a SIPS Contact (TLS implied, no transport=).
            assert fake.contacts == [f"<sips:bot@127.0.0.1:{ua.tls_address[1]}>"]


async def test_registration_over_tls_to_an_untrusted_registrar_fails_with_the_reason(pki: TestPki) -> None:
    async with registrar(pki, answers_pings=False) as (_, port):
        options = {
            "server": f"127.0.0.1:{port};transport=tls", "user": "bot@127.0.0.1",
            "tls_ca_file": str(pki.untrusted_ca), "register_enabled": True,
        }  # fmt: skip
        async with agent(None, **options) as ua:
            with pytest.raises(RegistrationFailed) as failure:
                await ua.registrations[0].wait_registered(timeout=5)
            assert "certificate verify failed" in str(failure.value)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"tls_cert_file": "/nonexistent/cert.pem"}, "SIP_TLS_CERT_FILE"),
        ({"tls_cert_file": "{server.cert}", "tls_key_file": "/nonexistent/key.pem"}, "SIP_TLS_KEY_FILE"),
        ({"tls_cert_file": "{server.cert}", "tls_key_file": "{client.key}"}, "SIP_TLS_KEY_FILE"),
        ({"tls_cert_file": "{server.key}"}, "SIP_TLS_CERT_FILE"),
        ({"tls_ca_file": "{server.key}"}, "SIP_TLS_CA_FILE"),
        (
            {"tls_require_client_cert": True, "tls_cert_file": "{server.combined}"},
            "SIP_TLS_REQUIRE_CLIENT_CERT",
        ),
    ],
)
def test_unusable_tls_settings_name_the_setting(
    pki: TestPki, overrides: dict[str, Any], setting: str
) -> None:
    def fill(value: object) -> object:
        if isinstance(value, str) and value.startswith("{"):
            identity, part = value.strip("{}").split(".")
            return str(getattr(getattr(pki, identity), part))
        return value

    options = UserAgentOptions(**{k: fill(v) for k, v in overrides.items()})
    with pytest.raises(TlsSetupError) as error:
        tls_contexts(options)
    assert str(error.value).startswith(setting)


def test_a_combined_pem_needs_no_key_file_and_tls_12_is_the_floor(pki: TestPki) -> None:
    contexts = tls_contexts(UserAgentOptions(tls_cert_file=str(pki.server.combined)))
    assert contexts.server is not None
    assert contexts.server.minimum_version == contexts.client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert contexts.client.check_hostname and contexts.client.verify_mode == ssl.CERT_REQUIRED


async def test_the_agent_refuses_to_start_on_a_bad_certificate(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    ua = UserAgent(SipSettings(port=0, tls_port=0, tls_cert_file=str(bad)))
    with pytest.raises(TlsSetupError, match="SIP_TLS_CERT_FILE"):
        await ua.start()


def test_tls_calls_work_on_uvloop_too(pki: TestPki) -> None:
    """The CLI runs on uvloop when it is installed; TLS there goes through the same `TlsSession` code."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[str, str]:
        async with agent(**server_tls(pki)) as bob, agent(None, tls_ca_file=str(pki.ca)) as alice:
            assert bob.tls_address is not None
            call = await alice.call(f"sip:bob@127.0.0.1:{bob.tls_address[1]};transport=tls", rtp_port=40000)
            incoming = bob.seen[0]  # type: ignore[attr-defined]
            await call.hangup()
            ended = await asyncio.wait_for(incoming.wait_ended(), 5)
            return incoming.transport, ended.reason

    assert uvloop.run(scenario()) == ("TLS", "bye")
