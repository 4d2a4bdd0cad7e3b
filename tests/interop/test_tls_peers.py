"""SIP over TLS against real peers on 127.0.0.1 (issue 14, Proof): sipp completes calls to our TLS listener,
and kamailio with its TLS module, as a proxy in front of us, routes a call to us over TLS after we registered
through it over TLS with digest auth.

Debian's sipp (sip-tester 3.6.1) is built without OpenSSL: `sipp -t l1` answers "To use a TLS transport you
must compile SIPp with OpenSSL", and neither Debian nor PyPI has a TLS-enabled build. So sipp speaks plain TCP
(`-t t1`, its Via says TCP) to a local socat tunnel that carries each of its connections over its own TLS
connection, with the peer's certificate checked against the test CA and host name 127.0.0.1. Our side and
kamailio's side of that tunnel are genuine TLS; sipp's messages are unchanged."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certs import TestPki
from tests.interop.conftest import (
    LOCALHOST,
    Kamailio,
    Processes,
    RunningUa,
    Sipp,
    SippResult,
    free_port,
    require_binary,
    scenario,
)
from tests.tlsutil import start_tls_tunnel
from voicelive_sip.aio import RegistrationState

pytestmark = pytest.mark.interop

KAMAILIO_DIR = Path(__file__).parent / "kamailio"


def tls_listener(pki: TestPki) -> dict[str, Any]:
    """SipSettings for a TLS listener on a free port with the test server certificate, peers checked
    against the test CA."""
    return {
        "tls_port": 0,
        "tls_cert_file": str(pki.server.cert),
        "tls_key_file": str(pki.server.key),
        "tls_ca_file": str(pki.ca),
    }


def tls_target(ua: RunningUa) -> tuple[str, int]:
    address = ua.ua.tls_address
    assert address is not None, "a certificate is set but there is no TLS listener"
    return str(address[0]), int(address[1])


def assert_all_calls_clean(result: SippResult, calls: int) -> None:
    assert result.returncode == 0, result.describe()
    assert result.stats["SuccessfulCall"] == calls, result.describe()
    assert result.stats["FailedCall"] == 0, result.describe()


async def assert_ua_saw(ua: RunningUa, calls: int) -> None:
    await ua.wait_until(lambda: len(ua.ended) == calls)
    assert ua.errors == []
    assert len(ua.incoming) == len(ua.answered) == calls
    assert {(e.reason, e.by) for e in ua.ended} == {("bye", "remote")}
    assert {c.transport for c in ua.incoming} == {"TLS"}


# ---------------------------------------------------------------------------------------------------------
# sipp


class TestSippOverTls:
    @pytest.fixture
    def ua_settings(self, pki: TestPki) -> dict[str, Any]:
        return tls_listener(pki)

    async def test_calls_on_one_tls_connection(
        self, ua: RunningUa, sipp: Sipp, pki: TestPki, processes: Processes
    ) -> None:
        tunnel = await start_tls_tunnel(processes, tls_target(ua), pki.ca)
        # -t t1: one TCP connection for all calls, so one TLS connection that every call reuses.
        result = await sipp.run("uac", tunnel.address, calls=5, transport="t1", args=["-d", "200"])
        assert_all_calls_clean(result, 5)
        await assert_ua_saw(ua, 5)
        assert len({c.source for c in ua.incoming}) == 1, [c.source for c in ua.incoming]
        # Our answers say we are on TLS: Via we were sent stays sipp's, Contact is ours.
        answers = [
            m for m in result.messages if m.direction == "received" and m.start_line == "SIP/2.0 200 OK"
        ]
        contacts = {m.header("Contact") for m in answers if (m.header("CSeq") or "").endswith("INVITE")}
        port = tls_target(ua)[1]
        assert all(c and f":{port};transport=tls" in c.lower() for c in contacts), contacts

    async def test_concurrent_calls_each_on_its_own_tls_connection(
        self, ua: RunningUa, sipp: Sipp, pki: TestPki, processes: Processes
    ) -> None:
        tunnel = await start_tls_tunnel(processes, tls_target(ua), pki.ca)
        # -t tn: a TCP connection (so a TLS connection through the tunnel) per call; ten up at once.
        args = ["-d", "1000", "-l", "10", "-r", "10", "-max_socket", "100"]
        result = await sipp.run("uac", tunnel.address, calls=10, transport="tn", args=args)
        assert_all_calls_clean(result, 10)
        await assert_ua_saw(ua, 10)
        assert len({c.source for c in ua.incoming}) == 10, [c.source for c in ua.incoming]


# ---------------------------------------------------------------------------------------------------------
# kamailio with its TLS module


@dataclass
class KamailioTls(Kamailio):
    """kamailio-tls.cfg: the registrar of kamailio.cfg plus a TLS listener with the test certificate."""

    tls_port: int = 0

    @property
    def tls_address(self) -> str:
        return f"{LOCALHOST}:{self.tls_port}"

    def log_lines(self, marker: str) -> list[str]:
        return [line for line in self.process.output().splitlines() if marker in line]


def render(template: str, values: dict[str, str]) -> str:
    text = (KAMAILIO_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


@pytest.fixture
def kamailio_tls(processes: Processes, pki: TestPki, tmp_path: Path) -> Iterator[KamailioTls]:
    """kamailio with TLS (skips without kamailio-tls-modules); alice/alice123, bob/bob123."""
    binary = require_binary("kamailio")
    kamcmd_binary = require_binary("kamcmd")
    modules = sorted(Path("/usr/lib").glob("*/kamailio/modules")) or [Path("/usr/lib/kamailio/modules")]
    if not (modules[0] / "tls.so").exists():
        pytest.skip("kamailio's TLS module is not installed (Debian package kamailio-tls-modules)")
    # A unix socket path must stay under 108 bytes; pytest's tmp_path can be longer.
    rundir = Path(tempfile.mkdtemp(prefix="kamtls", dir="/tmp"))
    try:
        port, tls_port, ctl_socket = free_port(), free_port(), rundir / "ctl"
        tls_cfg = tmp_path / "tls.cfg"
        certs = {"CA": str(pki.ca), "CERT": str(pki.server.cert), "KEY": str(pki.server.key)}
        tls_cfg.write_text(render("tls.cfg", certs))
        values = {"PORT": str(port), "TLS_PORT": str(tls_port), "CTLSOCK": str(ctl_socket)}
        text = render("kamailio-tls.cfg", {**values, "TLS_CFG": str(tls_cfg)})
        text = text.replace('mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"', f'mpath="{modules[0]}/"')
        cfg = tmp_path / "kamailio-tls.cfg"
        cfg.write_text(text)
        command = [binary, "-f", str(cfg), "-DD", "-E", "-m", "64", "-M", "8"]
        command += ["-P", str(rundir / "kamailio.pid"), "-Y", str(rundir)]
        process = processes.start("kamailio_tls", command)
        server = KamailioTls(port, ctl_socket, process, kamcmd_binary, tls_port)
        server.wait_started()
        yield server
        processes.stop(process)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


class TestKamailioOverTls:
    @pytest.fixture
    def ua_settings(self, kamailio_tls: KamailioTls, pki: TestPki) -> dict[str, Any]:
        # SIP_SERVER=127.0.0.1:PORT;transport=tls: register (and send everything else) over TLS.
        return {
            **tls_listener(pki),
            "server": f"{kamailio_tls.tls_address};transport=tls",
            "user": f"alice@{LOCALHOST}",
            "auth_user": "alice",
            "auth_password": "alice123",
            "register_expires": 300,
        }

    async def test_register_over_tls_then_a_call_comes_through_kamailio_over_tls(
        self, ua: RunningUa, kamailio_tls: KamailioTls, sipp: Sipp, pki: TestPki, processes: Processes
    ) -> None:
        registration = ua.ua.register()
        await registration.wait_registered(timeout=10)
        assert registration.state is RegistrationState.REGISTERED
        # kamailio challenged and then accepted a REGISTER that came over TLS (digest auth, qop=auth).
        registers = kamailio_tls.log_lines("REGISTER-RECEIVED")
        assert len(registers) >= 2, kamailio_tls.process.output()[-3000:]
        assert all(line.endswith("in=tls") for line in registers), registers
        # The binding is our TLS contact.
        port = tls_target(ua)[1]
        contacts = kamailio_tls.contacts().get("alice", [])
        assert any(f"@{LOCALHOST}:{port};transport=tls" in c.lower() for c in contacts), contacts

        # sipp (over a TLS tunnel) dials alice at kamailio's TLS port; kamailio looks up our contact and
        # relays over a TLS connection of its own, checking our certificate against the test CA.
        tunnel = await start_tls_tunnel(processes, ("127.0.0.1", kamailio_tls.tls_port), pki.ca)
        caller = scenario("uac_proxy_auth.xml")
        result = await sipp.run(caller, tunnel.address, transport="t1", args=["-s", "alice", "-d", "200"])
        assert_all_calls_clean(result, 1)
        await assert_ua_saw(ua, 1)
        (call,) = ua.incoming
        assert call.request.record_route, "the INVITE did not come through kamailio"
        # kamailio's own Via on top: the hop to us was TLS.
        assert call.request.top_via.transport.upper() == "TLS", call.request.top_via
        routed = kamailio_tls.log_lines("ROUTED INVITE")
        assert len(routed) == 1 and " in=tls " in routed[0], routed
        assert ";transport=tls" in routed[0].lower(), routed
