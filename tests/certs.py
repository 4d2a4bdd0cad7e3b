"""A test PKI made with trustme once per session: a CA, certificates for 127.0.0.1/localhost signed by it, and
the bad ones (expired, another host's, another CA's) that the TLS tests need, as PEM files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest

# The names a server certificate must carry for the tests' peers on loopback: SIP URIs name 127.0.0.1 (an IP
# SAN), kamailio and baresip may check "localhost" (a DNS SAN).
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsIdentity:
    """A certificate chain and its private key as separate PEM files, and both in one file."""

    cert: Path
    key: Path
    combined: Path  # key then chain: what baresip's sip_certificate and stunnel's cert= read


@dataclass(frozen=True)
class TestPki:
    """PEM files of the session's test CA and the identities it (or another CA) signed."""

    __test__ = False  # not a test class, whatever its name

    ca: Path  # the CA every good certificate chains to
    server: TlsIdentity  # 127.0.0.1 and localhost, valid now
    client: TlsIdentity  # a client certificate (mutual TLS) from the same CA
    expired: TlsIdentity  # 127.0.0.1 and localhost, from the same CA, expired yesterday
    wrong_host: TlsIdentity  # valid, same CA, but only for a host that is not us
    untrusted: TlsIdentity  # 127.0.0.1 and localhost, valid, signed by a CA nobody trusts
    untrusted_ca: Path


def _write(directory: Path, name: str, leaf: object) -> TlsIdentity:
    import trustme

    assert isinstance(leaf, trustme.LeafCert)
    identity = TlsIdentity(directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.pem")
    for blob in leaf.cert_chain_pems:
        with identity.cert.open("ab") as chain:
            chain.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(identity.key))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(identity.combined))
    return identity


def make_pki(directory: Path) -> TestPki:
    """Generate the test PKI into `directory` (a few milliseconds: ECDSA keys)."""
    import trustme

    ca, other_ca = trustme.CA(), trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    other_ca.cert_pem.write_to_path(str(directory / "untrusted_ca.crt"))
    return TestPki(
        ca=directory / "ca.crt",
        server=_write(directory, "server", ca.issue_cert(*SERVER_NAMES)),
        client=_write(directory, "client", ca.issue_cert("client.test", common_name="client.test")),
        expired=_write(
            directory,
            "expired",
            ca.issue_cert(
                *SERVER_NAMES,
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            ),
        ),
        wrong_host=_write(directory, "wrong_host", ca.issue_cert("other.invalid")),
        untrusted=_write(directory, "untrusted", other_ca.issue_cert(*SERVER_NAMES)),
        untrusted_ca=directory / "untrusted_ca.crt",
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """The session's test CA and certificates (skips when trustme, a dev dependency, is missing)."""
    pytest.importorskip("trustme", reason="trustme is a dev dependency: pip install -e '.[dev]'")
    return make_pki(tmp_path_factory.mktemp("pki"))
