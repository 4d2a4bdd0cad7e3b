"""Digest authentication cost: answering a challenge (client) and checking an answer (server)."""

from __future__ import annotations

from typing import Any

import pytest

from voicelive_sip.sip.auth import DigestClient, DigestServer, VerifyOutcome

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "sip.example.com"
URI = "sip:registrar.example.com"


def lookup(username: str) -> str | None:
    return "wonderland" if username == "alice" else None


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_client_respond(benchmark: Any, algorithm: str) -> None:
    challenge = DigestServer(SECRET, REALM, algorithm=algorithm).challenge(0.0)

    def respond() -> str:
        # A new client per round: one 401 → one answer, parsing included.
        return (
            DigestClient("alice", "wonderland")
            .respond(401, [challenge], method="REGISTER", uri=URI)
            .header_value
        )

    assert "response=" in benchmark(respond)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_server_verify(benchmark: Any, algorithm: str) -> None:
    server = DigestServer(SECRET, REALM, algorithm=algorithm)
    client = DigestClient("alice", "wonderland")
    client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI)

    def fresh_answer() -> tuple[tuple[str], dict[str, Any]]:
        # Every round needs a new nc, or the server rightly rejects it as a replay.
        (answer,) = client.authorize("REGISTER", URI)
        return (answer.header_value,), {"method": "REGISTER", "password_for": lookup, "now": 1.0}

    result = benchmark.pedantic(server.verify, setup=fresh_answer, rounds=5000)
    assert result.outcome is VerifyOutcome.OK
