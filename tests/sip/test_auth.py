"""Digest authentication: RFC worked examples, client↔server round trips, stale nonces, replays, parsing."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicelive_sip.errors import LocalProtocolError, SipParseError
from voicelive_sip.sip.auth import (
    DigestAlgorithm,
    DigestAuthError,
    DigestAuthFailed,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestServer,
    VerifyOutcome,
    compute_ha1,
    parse_challenge,
    parse_credentials,
    serialize_challenge,
    serialize_credentials,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "sip.example.com"
URI = "sip:registrar.example.com"
ALL_ALGORITHMS = [algorithm.value for algorithm in DigestAlgorithm]

# RFC 2617 §3.5 (also RFC 3261 §22.4's example values).
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
    'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", '
    'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 §3.9.1: the server offers SHA-256 first, then MD5; the password has a lower-case "of".
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def rfc7616_challenge(algorithm: str) -> str:
    return (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )


def passwords(**table: str) -> Callable[[str], str | None]:
    return table.get


def counting_cnonces() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"cnonce{next(counter)}"


# --------------------------------------------------------------------------------------------------
# RFC worked examples


def test_rfc2617_example_response() -> None:
    client = DigestClient("Mufasa", "Circle Of Life", cnonce_factory=lambda: "0a4f113b")
    answer = client.respond(401, [RFC2617_CHALLENGE], method="GET", uri="/dir/index.html")
    assert answer.header_name == "Authorization"
    assert parse_credentials(answer.header_value) == parse_credentials(RFC2617_AUTHORIZATION)
    assert 'response="6629fae49393a05397450978507c4ef1"' in answer.header_value


def test_rfc2617_example_authorization_parses() -> None:
    credentials = parse_credentials(RFC2617_AUTHORIZATION)
    assert credentials == DigestCredentials(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        algorithm="MD5",
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
        qop="auth",
        nc=1,
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_response(algorithm: str, expected: str) -> None:
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=lambda: RFC7616_CNONCE)
    answer = client.respond(401, [rfc7616_challenge(algorithm)], method="GET", uri="/dir/index.html")
    assert answer.header_value == (
        f'Digest username="Mufasa", realm="http-auth@example.org", nonce="{RFC7616_NONCE}", '
        f'uri="/dir/index.html", response="{expected}", algorithm={algorithm}, '
        f'cnonce="{RFC7616_CNONCE}", opaque="{RFC7616_OPAQUE}", qop=auth, nc=00000001'
    )


def test_rfc7616_example_with_both_challenges_answers_sha256() -> None:
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=lambda: RFC7616_CNONCE)
    challenges = [rfc7616_challenge("SHA-256"), rfc7616_challenge("MD5")]
    answer = client.respond(401, challenges, method="GET", uri="/dir/index.html")
    credentials = parse_credentials(answer.header_value)
    assert credentials.algorithm == "SHA-256"
    assert credentials.response == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


# --------------------------------------------------------------------------------------------------
# Client ↔ server


@pytest.mark.parametrize(
    ("algorithm", "qop"),
    [
        (algorithm, qop)
        for algorithm in ALL_ALGORITHMS
        for qop in ("auth", "auth-int", None)
        # RFC 7616 §3.4.2: the -sess variants need a cnonce, which only comes with qop.
        if qop is not None or not algorithm.endswith("-sess")
    ],
)
def test_round_trip_every_algorithm(algorithm: str, qop: str | None) -> None:
    server = DigestServer(SECRET, REALM, algorithm=algorithm, qop=qop)
    client = DigestClient("alice", "wonderland")
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    answer = client.respond(401, [server.challenge(10.0)], method="INVITE", uri=URI, body=body)
    credentials = parse_credentials(answer.header_value)
    assert credentials.algorithm == algorithm
    assert credentials.qop == qop
    assert credentials.nc == (1 if qop else None)
    result = server.verify(
        answer.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=11.0, body=body
    )
    assert result.outcome is VerifyOutcome.OK
    assert result.username == "alice"

    (second,) = client.authorize("INVITE", URI, body)
    assert parse_credentials(second.header_value).nc == (2 if qop else None)
    result = server.verify(
        second.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=12.0, body=body
    )
    assert result.outcome is VerifyOutcome.OK


def test_session_algorithm_keeps_its_cnonce_for_the_nonce() -> None:
    server = DigestServer(SECRET, REALM, algorithm="SHA-256-sess")
    client = DigestClient("alice", "wonderland", cnonce_factory=counting_cnonces())
    first = parse_credentials(
        client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI).header_value
    )
    (second_answer,) = client.authorize("REGISTER", URI)
    second = parse_credentials(second_answer.header_value)
    assert (first.cnonce, second.cnonce) == ("cnonce1", "cnonce1")
    result = server.verify(
        second_answer.header_value, method="REGISTER", password_for=passwords(alice="wonderland"), now=1.0
    )
    assert result.outcome is VerifyOutcome.OK


def test_plain_algorithm_uses_a_fresh_cnonce_per_request() -> None:
    server = DigestServer(SECRET, REALM, algorithm="SHA-256")
    client = DigestClient("alice", "wonderland", cnonce_factory=counting_cnonces())
    first = parse_credentials(
        client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI).header_value
    )
    (second,) = client.authorize("REGISTER", URI)
    assert first.cnonce == "cnonce1"
    assert parse_credentials(second.header_value).cnonce == "cnonce2"


def test_server_accepts_precomputed_ha1() -> None:
    server = DigestServer(SECRET, REALM, algorithm="SHA-256")
    client = DigestClient("alice", "wonderland")
    answer = client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI)
    stored = compute_ha1(DigestAlgorithm.SHA_256, "alice", REALM, "wonderland")
    result = server.verify(
        answer.header_value, method="REGISTER", password_for={"alice": stored}.get, now=1.0
    )
    assert result.outcome is VerifyOutcome.OK
    assert "wonderland" not in repr(stored)
    assert stored.hex_digest not in repr(stored)


def test_proxy_challenge_gets_proxy_authorization() -> None:
    server = DigestServer(SECRET, REALM)
    client = DigestClient("alice", "wonderland")
    answer = client.respond(407, [server.challenge(0.0)], method="INVITE", uri=URI)
    assert answer.header_name == "Proxy-Authorization"
    (again,) = client.authorize("BYE", URI)
    assert again.header_name == "Proxy-Authorization"


def test_other_status_codes_are_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        DigestClient("alice", "wonderland").respond(
            403, [DigestServer(SECRET, REALM).challenge(0.0)], method="INVITE", uri=URI
        )


def test_nonce_count_restarts_with_a_new_nonce() -> None:
    server = DigestServer(SECRET, REALM)
    client = DigestClient("alice", "wonderland")
    client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI)
    counts = [parse_credentials(client.authorize("REGISTER", URI)[0].header_value).nc for _ in range(3)]
    assert counts == [2, 3, 4]
    # The refresh was challenged (a server that does not set stale): a new nonce restarts at 1.
    answer = client.respond(401, [server.challenge(5.0)], method="REGISTER", uri=URI)
    assert parse_credentials(answer.header_value).nc == 1


def test_wrong_password_fails_on_the_second_challenge() -> None:
    server = DigestServer(SECRET, REALM)
    client = DigestClient("alice", "not-the-password")
    answer = client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI)
    result = server.verify(answer.header_value, method="REGISTER", password_for=passwords(alice="x"), now=1.0)
    assert result.outcome is VerifyOutcome.FAILED
    assert result.reason == "wrong response"
    with pytest.raises(DigestAuthFailed) as caught:
        client.respond(401, [server.challenge(1.0)], method="REGISTER", uri=URI)
    assert caught.value.realm == REALM


def test_stale_nonce_is_answered_again_without_failing() -> None:
    server = DigestServer(SECRET, REALM, nonce_ttl=300.0)
    client = DigestClient("alice", "wonderland")
    answer = client.respond(401, [server.challenge(0.0)], method="INVITE", uri=URI)
    result = server.verify(
        answer.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=301.0
    )
    assert result.outcome is VerifyOutcome.STALE
    stale_challenge = server.challenge(301.0, stale=True)
    assert parse_challenge(stale_challenge).stale
    retry = client.respond(401, [stale_challenge], method="INVITE", uri=URI)
    assert parse_credentials(retry.header_value).nc == 1
    result = server.verify(
        retry.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=302.0
    )
    assert result.outcome is VerifyOutcome.OK


def test_endless_stale_challenges_end_in_failure() -> None:
    server = DigestServer(SECRET, REALM)
    client = DigestClient("alice", "wonderland")
    client.respond(401, [server.challenge(0.0)], method="INVITE", uri=URI)
    for _ in range(3):
        client.respond(401, [server.challenge(0.0, stale=True)], method="INVITE", uri=URI)
    with pytest.raises(DigestAuthFailed, match="stale"):
        client.respond(401, [server.challenge(0.0, stale=True)], method="INVITE", uri=URI)


def test_challenge_after_a_preemptive_refresh_is_not_a_failure() -> None:
    server = DigestServer(SECRET, REALM)
    client = DigestClient("alice", "wonderland")
    client.respond(401, [server.challenge(0.0)], method="REGISTER", uri=URI)
    client.authorize("REGISTER", URI)
    answer = client.respond(401, [server.challenge(3600.0)], method="REGISTER", uri=URI)
    result = server.verify(
        answer.header_value, method="REGISTER", password_for=passwords(alice="wonderland"), now=3601.0
    )
    assert result.outcome is VerifyOutcome.OK


def test_several_challenges_pick_the_strongest_supported() -> None:
    md5 = DigestServer(SECRET, REALM, algorithm="MD5")
    sha256 = DigestServer(SECRET, REALM, algorithm="SHA-256")
    client = DigestClient("alice", "wonderland")
    challenges = [
        'Basic realm="sip.example.com"',
        md5.challenge(0.0),
        'Digest realm="sip.example.com", nonce="abc", algorithm=AKAv1-MD5, qop="auth"',
        sha256.challenge(0.0),
    ]
    answer = client.respond(401, challenges, method="INVITE", uri=URI)
    assert parse_credentials(answer.header_value).algorithm == "SHA-256"
    result = sha256.verify(
        answer.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=1.0
    )
    assert result.outcome is VerifyOutcome.OK


def test_no_supported_challenge_explains_why() -> None:
    client = DigestClient("alice", "wonderland")
    challenges = [
        'Basic realm="x"',
        'Digest realm="x", nonce="n", algorithm=AKAv1-MD5',
        'Digest realm="x", nonce="n", qop="auth-conf"',
        'Digest realm="x", nonce="n", algorithm=MD5-sess',
    ]
    with pytest.raises(DigestAuthError) as caught:
        client.respond(401, challenges, method="INVITE", uri=URI)
    message = str(caught.value)
    assert "'Basic'" in message
    assert "'AKAv1-MD5'" in message
    assert "auth-conf" in message
    assert "MD5-sess offered without qop" in message
    assert not isinstance(caught.value, DigestAuthFailed)


def test_malformed_only_challenge_raises_parse_error() -> None:
    with pytest.raises(SipParseError):
        DigestClient("alice", "wonderland").respond(401, ['Digest realm="x'], method="INVITE", uri=URI)


def test_client_realm_restriction() -> None:
    client = DigestClient("alice", "wonderland", realm="trusted.example.com")
    other = DigestServer(SECRET, "evil.example.com").challenge(0.0)
    with pytest.raises(DigestAuthError, match=r"evil\.example\.com"):
        client.respond(401, [other], method="INVITE", uri=URI)
    trusted = DigestServer(SECRET, "trusted.example.com").challenge(0.0)
    answer = client.respond(401, [other, trusted], method="INVITE", uri=URI)
    assert parse_credentials(answer.header_value).realm == "trusted.example.com"


def test_qop_auth_is_preferred_and_auth_int_used_when_alone() -> None:
    client = DigestClient("alice", "wonderland")
    both = client.respond(401, ['Digest realm="a", nonce="n", qop="auth-int,auth"'], method="INVITE", uri=URI)
    assert parse_credentials(both.header_value).qop == "auth"
    alone = client.respond(401, ['Digest realm="b", nonce="n", qop="auth-int"'], method="INVITE", uri=URI)
    assert parse_credentials(alone.header_value).qop == "auth-int"


def test_auth_int_covers_the_body() -> None:
    server = DigestServer(SECRET, REALM, algorithm="SHA-256", qop="auth-int")
    client = DigestClient("alice", "wonderland")
    body = b"v=0\r\ns=call\r\n"
    answer = client.respond(401, [server.challenge(0.0)], method="INVITE", uri=URI, body=body)
    assert parse_credentials(answer.header_value).qop == "auth-int"
    lookup = passwords(alice="wonderland")
    tampered = server.verify(answer.header_value, method="INVITE", password_for=lookup, now=1.0, body=b"v=1")
    assert tampered.outcome is VerifyOutcome.FAILED
    result = server.verify(answer.header_value, method="INVITE", password_for=lookup, now=1.0, body=body)
    assert result.outcome is VerifyOutcome.OK


def test_userhash_hides_the_username() -> None:
    client = DigestClient("Mufasa", "Circle of Life")
    challenge = f'Digest realm="{REALM}", nonce="n", algorithm=SHA-256, qop="auth", userhash=true'
    credentials = parse_credentials(client.respond(401, [challenge], method="INVITE", uri=URI).header_value)
    assert credentials.userhash
    assert credentials.username == hashlib.sha256(f"Mufasa:{REALM}".encode()).hexdigest()
    assert "Mufasa" not in serialize_credentials(credentials)


def test_reprs_hide_secrets() -> None:
    client = DigestClient("alice", "hunter2-password")
    server = DigestServer(b"server-secret-bytes-0123456789", REALM)
    assert "hunter2-password" not in repr(client)
    assert "alice" in repr(client)
    assert "server-secret" not in repr(server)
    assert REALM in repr(server)


# --------------------------------------------------------------------------------------------------
# Server: nonces, expiry, replay


def test_nonce_expiry_follows_the_fake_clock() -> None:
    server = DigestServer(SECRET, REALM, nonce_ttl=30.0)
    lookup = passwords(alice="wonderland")
    client = DigestClient("alice", "wonderland")
    client.respond(401, [server.challenge(100.0)], method="OPTIONS", uri=URI)
    at_deadline = client.authorize("OPTIONS", URI)[0].header_value
    assert (
        server.verify(at_deadline, method="OPTIONS", password_for=lookup, now=130.0).outcome
        is VerifyOutcome.OK
    )
    late = client.authorize("OPTIONS", URI)[0].header_value
    result = server.verify(late, method="OPTIONS", password_for=lookup, now=130.001)
    assert (result.outcome, result.reason) == (VerifyOutcome.STALE, "nonce expired")
    # A nonce from the future (the clock went backwards) is not trusted either.
    early = client.authorize("OPTIONS", URI)[0].header_value
    assert (
        server.verify(early, method="OPTIONS", password_for=lookup, now=99.0).outcome is VerifyOutcome.STALE
    )


def test_expired_nonce_with_a_wrong_password_is_a_failure_not_stale() -> None:
    server = DigestServer(SECRET, REALM, nonce_ttl=30.0)
    answer = DigestClient("alice", "guess").respond(401, [server.challenge(0.0)], method="INVITE", uri=URI)
    result = server.verify(
        answer.header_value, method="INVITE", password_for=passwords(alice="right"), now=60.0
    )
    assert result.outcome is VerifyOutcome.FAILED


def test_replayed_nonce_count_is_rejected() -> None:
    server = DigestServer(SECRET, REALM)
    lookup = passwords(alice="wonderland")
    client = DigestClient("alice", "wonderland")
    first = client.respond(401, [server.challenge(0.0)], method="INVITE", uri=URI).header_value
    assert server.verify(first, method="INVITE", password_for=lookup, now=1.0).outcome is VerifyOutcome.OK
    replay = server.verify(first, method="INVITE", password_for=lookup, now=2.0)
    assert (replay.outcome, replay.reason) == (VerifyOutcome.FAILED, "replayed nonce count")


def test_nonce_counts_may_arrive_out_of_order_but_only_once() -> None:
    server = DigestServer(SECRET, REALM)
    lookup = passwords(alice="wonderland")
    client = DigestClient("alice", "wonderland")
    answers = [client.respond(401, [server.challenge(0.0)], method="INVITE", uri=URI).header_value]
    answers += [client.authorize("INVITE", URI)[0].header_value for _ in range(69)]
    outcomes = [
        server.verify(answers[index], method="INVITE", password_for=lookup, now=1.0).outcome
        for index in (2, 0, 1)
    ]
    assert outcomes == [VerifyOutcome.OK] * 3
    assert (
        server.verify(answers[1], method="INVITE", password_for=lookup, now=1.0).outcome
        is VerifyOutcome.FAILED
    )
    # Once nc 70 is seen, nc 4 has fallen out of the 64-wide window and is refused.
    assert (
        server.verify(answers[69], method="INVITE", password_for=lookup, now=1.0).outcome is VerifyOutcome.OK
    )
    assert (
        server.verify(answers[3], method="INVITE", password_for=lookup, now=1.0).outcome
        is VerifyOutcome.FAILED
    )


def test_evicted_nonce_history_asks_for_a_new_nonce() -> None:
    server = DigestServer(SECRET, REALM, max_nonces=2)
    lookup = passwords(alice="wonderland")
    clients = [DigestClient("alice", "wonderland") for _ in range(3)]
    for index, client in enumerate(clients):
        answer = client.respond(401, [server.challenge(float(index))], method="INVITE", uri=URI)
        assert server.verify(answer.header_value, method="INVITE", password_for=lookup, now=5.0).outcome is (
            VerifyOutcome.OK
        )
    # The first nonce's counts were evicted, so even a new nc for it cannot be trusted.
    (again,) = clients[0].authorize("INVITE", URI)
    result = server.verify(again.header_value, method="INVITE", password_for=lookup, now=6.0)
    assert (result.outcome, result.reason) == (VerifyOutcome.STALE, "nonce history forgotten")
    (newest,) = clients[2].authorize("INVITE", URI)
    assert server.verify(newest.header_value, method="INVITE", password_for=lookup, now=6.0).outcome is (
        VerifyOutcome.OK
    )


def test_nonce_from_another_secret_or_tampered_is_rejected() -> None:
    other = DigestServer(b"another-secret-another-secret!!!", REALM)
    server = DigestServer(SECRET, REALM)
    client = DigestClient("alice", "wonderland")
    answer = client.respond(401, [other.challenge(0.0)], method="INVITE", uri=URI)
    result = server.verify(
        answer.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=1.0
    )
    assert (result.outcome, result.reason) == (VerifyOutcome.FAILED, "nonce was not issued by this server")
    nonce = parse_challenge(server.challenge(0.0)).nonce
    flipped = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    forged = DigestClient("alice", "wonderland").respond(
        401, [f'Digest realm="{REALM}", nonce="{flipped}", qop="auth"'], method="INVITE", uri=URI
    )
    result = server.verify(
        forged.header_value, method="INVITE", password_for=passwords(alice="wonderland"), now=1.0
    )
    assert result.reason == "nonce was not issued by this server"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            'Digest username="bob", realm="elsewhere", nonce="n", uri="sip:x", response="0"',
            "realm 'elsewhere'",
        ),
        (f'Digest username="bob", realm="{REALM}", nonce="n", uri="sip:x", response="0"', "qop None"),
        (
            f'Digest username="bob", realm="{REALM}", nonce="n", uri="sip:x", response="0", '
            "algorithm=SHA-256",
            "algorithm 'SHA-256'",
        ),
    ],
)
def test_server_rejects_what_it_did_not_offer(value: str, reason: str) -> None:
    result = DigestServer(SECRET, REALM).verify(value, method="INVITE", password_for=passwords(), now=0.0)
    assert result.outcome is VerifyOutcome.FAILED
    assert result.username == "bob"
    assert result.reason is not None and reason in result.reason


def test_unknown_user_fails() -> None:
    server = DigestServer(SECRET, REALM)
    answer = DigestClient("mallory", "x").respond(401, [server.challenge(0.0)], method="INVITE", uri=URI)
    result = server.verify(answer.header_value, method="INVITE", password_for=passwords(alice="x"), now=1.0)
    assert (result.outcome, result.username, result.reason) == (
        VerifyOutcome.FAILED,
        "mallory",
        "unknown user",
    )


def test_unknown_scheme_is_a_failure_not_a_parse_error() -> None:
    # RFC 4475 torture test regaut01.dat: a well-formed Authorization with an unknown scheme.
    result = DigestServer(SECRET, REALM).verify(
        "NoOneKnowsThisScheme opaque-data=here", method="REGISTER", password_for=passwords(), now=0.0
    )
    assert result.outcome is VerifyOutcome.FAILED
    assert result.reason == "unsupported scheme 'NoOneKnowsThisScheme'"


def test_server_opaque_must_be_echoed() -> None:
    server = DigestServer(SECRET, REALM, opaque="session-42")
    challenge = parse_challenge(server.challenge(0.0))
    assert challenge.opaque == "session-42"
    answer = DigestClient("alice", "wonderland").respond(
        401, [server.challenge(0.0)], method="INVITE", uri=URI
    )
    lookup = passwords(alice="wonderland")
    assert server.verify(answer.header_value, method="INVITE", password_for=lookup, now=1.0).outcome is (
        VerifyOutcome.OK
    )
    without = answer.header_value.replace(', opaque="session-42"', "")
    assert (
        server.verify(without, method="INVITE", password_for=lookup, now=1.0).reason
        == "opaque does not match"
    )


def test_server_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DigestServer(b"short", REALM)
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        DigestServer(SECRET, REALM, algorithm="AKAv1-MD5")
    with pytest.raises(ValueError, match="qop"):
        DigestServer(SECRET, REALM, qop="auth-conf")
    with pytest.raises(ValueError, match="needs a qop"):
        DigestServer(SECRET, REALM, algorithm="MD5-sess", qop=None)


# --------------------------------------------------------------------------------------------------
# Parsing and serializing


def test_parse_challenge_is_case_and_whitespace_tolerant() -> None:
    value = (
        '  dIgEsT   REALM = "a \\"quoted\\" \\\\ realm" ,NONCE="n1"\r\n\t, Algorithm = sha-256-SESS,'
        ' QOP="Auth , auth-int", Stale=TRUE, X-Vendor=Thing, x-note="two words"'
    )
    assert parse_challenge(value) == DigestChallenge(
        realm='a "quoted" \\ realm',
        nonce="n1",
        algorithm="SHA-256-sess",
        qop=("auth", "auth-int"),
        stale=True,
        params=(("x-vendor", "Thing"), ("x-note", "two words")),
    )


def test_serialize_challenge_is_canonical() -> None:
    challenge = DigestChallenge(
        realm='say "hi"',
        nonce="abc",
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque="xyz",
        stale=True,
        params=(("x-vendor", "Thing"), ("x-note", "two words")),
    )
    assert serialize_challenge(challenge) == (
        'Digest realm="say \\"hi\\"", nonce="abc", opaque="xyz", stale=true, algorithm=SHA-256, '
        'qop="auth,auth-int", x-vendor=Thing, x-note="two words"'
    )


def test_missing_algorithm_means_md5() -> None:
    assert parse_challenge('Digest realm="r", nonce="n"').algorithm == "MD5"


def test_serializers_refuse_header_injection() -> None:
    with pytest.raises(LocalProtocolError):
        serialize_credentials(
            DigestCredentials(username="a\r\nVia: x", realm="r", nonce="n", uri="sip:x", response="0")
        )
    with pytest.raises(LocalProtocolError):
        serialize_challenge(DigestChallenge(realm="r", nonce="n", algorithm="MD5 x"))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",  # no realm, no nonce
        'Digest realm="r"',
        'Digest nonce="n"',
        'Digest realm="r", nonce="n',  # unterminated quoted-string
        'Digest realm="r", nonce="n",',  # trailing comma
        'Digest realm="r",, nonce="n"',
        'Digest realm="r" nonce="n"',  # missing comma
        'Digest realm="r", nonce',
        'Digest realm="r", nonce=',
        'Digest realm="r", realm="s", nonce="n"',  # duplicate parameter
        'Digest realm="r", nonce="n", stale=maybe',
        'Digest realm="r", nonce="n", algorithm="MD5 extra"',
        'Digest realm="r", nonce="n", qop="auth,,auth-int"',
        'Digest realm="r", nonce="n", qop=""',
        'Digest realm=r/s, nonce="n"',  # '/' is not a token character
        'Digest realm="a\x01b", nonce="n"',  # control character in a quoted-string
        'Digest realm="a\r\nb", nonce="n"',  # a bare CRLF is not a line fold
        'Digest realm="r", nonce="n"\r\n',
        'Basic realm="r"',
        '"Digest" realm="r", nonce="n"',
        'Digest=realm="r"',
    ],
)
def test_malformed_challenges_raise_sip_parse_error(value: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_challenge(value)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="r", nonce="n", uri="u", response="x"',  # no username
        'Digest username="a", nonce="n", uri="u", response="x"',  # no realm
        'Digest username="a", realm="r", uri="u", response="x"',  # no nonce
        'Digest username="a", realm="r", nonce="n", response="x"',  # no uri
        'Digest username="a", realm="r", nonce="n", uri="u"',  # no response
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=00000001',
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=1',
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=0000000G',
        'Digest username="a", realm="r", nonce="n", uri="u", response="x", userhash=yes',
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    ],
)
def test_malformed_credentials_raise_sip_parse_error(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_credentials(value)


def test_malformed_credentials_reach_the_server_as_parse_errors() -> None:
    with pytest.raises(SipParseError):
        DigestServer(SECRET, REALM).verify(
            'Digest username="a', method="INVITE", password_for=passwords(), now=0.0
        )


_QUOTABLE_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30
)
_TOKENS = st.from_regex(r"[A-Za-z0-9.!%*_+`'~-]{1,12}", fullmatch=True)


@given(
    realm=_QUOTABLE_TEXT,
    nonce=_QUOTABLE_TEXT,
    opaque=st.none() | _QUOTABLE_TEXT,
    algorithm=st.sampled_from(ALL_ALGORITHMS),
    qop=st.lists(st.sampled_from(["auth", "auth-int"]), max_size=2, unique=True).map(tuple),
    stale=st.booleans(),
    extra=st.dictionaries(_TOKENS.map(lambda name: f"x-{name.lower()}"), _QUOTABLE_TEXT, max_size=3),
)
def test_challenge_serialization_round_trips(
    realm: str,
    nonce: str,
    opaque: str | None,
    algorithm: str,
    qop: tuple[str, ...],
    stale: bool,
    extra: dict[str, str],
) -> None:
    challenge = DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        opaque=opaque,
        stale=stale,
        params=tuple(extra.items()),
    )
    assert parse_challenge(serialize_challenge(challenge)) == challenge


@given(
    username=_QUOTABLE_TEXT,
    uri=_QUOTABLE_TEXT,
    cnonce=_QUOTABLE_TEXT,
    nc=st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_credentials_serialization_round_trips(username: str, uri: str, cnonce: str, nc: int) -> None:
    credentials = DigestCredentials(
        username=username, realm="r", nonce="n", uri=uri, response="ab", cnonce=cnonce, qop="auth", nc=nc
    )
    assert parse_credentials(serialize_credentials(credentials)) == credentials


_AUTH_LIKE_TEXT = st.text(
    alphabet=st.sampled_from(list('Digest realm="\\,= \t\r\nqopx-é\x00\ud800')), max_size=60
)


@given(value=st.text(max_size=200) | _AUTH_LIKE_TEXT | _AUTH_LIKE_TEXT.map(lambda text: "Digest " + text))
def test_parsers_raise_only_sip_parse_error(value: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(SipParseError):
            parse(value)


@given(value=_AUTH_LIKE_TEXT.map(lambda text: "Digest " + text))
def test_client_and_server_raise_only_documented_errors_on_junk(value: str) -> None:
    with contextlib.suppress(SipParseError, DigestAuthError):
        DigestClient("alice", "wonderland").respond(401, [value], method="INVITE", uri=URI)
    with contextlib.suppress(SipParseError):
        DigestServer(SECRET, REALM).verify(value, method="INVITE", password_for=passwords(), now=0.0)
