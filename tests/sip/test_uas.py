"""What a UAS decides from a request alone (RFC 3261 §8.2): prechecks, merged requests, INFO/NOTIFY bodies."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import Request, parse_message
from voicelive_sip.sip.uas import (
    ALLOW,
    MergedRequests,
    ReferStatus,
    Refusal,
    allow_of,
    dtmf_relay_body,
    info_dtmf,
    precheck,
    refer_status,
    to_tag,
    warning_text,
)


def raw(
    method: str,
    *extra: str,
    uri: str = "sip:bot@192.0.2.10",
    body: bytes = b"",
    call_id: str = "uas-call-1",
    from_tag: str = "f1",
    to: str = "<sip:bot@192.0.2.10>",
    seq: int = 1,
    branch: str = "z9hG4bKuas1",
    max_forwards: int = 70,
) -> Request:
    """A request parsed from the wire text a peer would send (CRLF line endings, exact Content-Length)."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.20:5060;branch={branch}",
        f"From: <sip:alice@example.com>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {seq} {method}",
        f"Max-Forwards: {max_forwards}",
        *extra,
        f"Content-Length: {len(body)}",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


# -- precheck --------------------------------------------------------------------------------------------


def test_good_invite_passes() -> None:
    assert precheck(raw("INVITE", "Content-Type: application/sdp", body=SDP)) is None
    assert precheck(raw("INVITE", "Supported: timer", "Require: timer", "Accept: application/sdp")) is None


@pytest.mark.parametrize(
    "method", ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "INFO", "NOTIFY", "REFER"]
)
def test_served_methods_pass(method: str) -> None:
    assert precheck(raw(method)) is None


@pytest.mark.parametrize("method", ["REGISTER", "MESSAGE", "SUBSCRIBE", "PUBLISH", "PRACK"])
def test_known_but_unserved_method_is_405_with_allow(method: str) -> None:
    assert precheck(raw(method)) == Refusal(405, None, (("Allow", ALLOW),))


def test_unknown_method_is_501() -> None:
    assert precheck(raw("FOO")) == Refusal(501, None, (("Allow", ALLOW),))


def test_allow_lists_what_we_serve() -> None:
    assert ALLOW == "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, REFER"


@pytest.mark.parametrize("uri", ["mailto:bot@example.com", "http://example.com/bot", "urn:service:sos"])
def test_unsupported_uri_scheme_is_416(uri: str) -> None:
    assert precheck(raw("INVITE", uri=uri)) == Refusal(416)


@pytest.mark.parametrize("uri", ["sips:bot@example.com", "tel:+15551234567", "SIP:bot@192.0.2.10"])
def test_supported_uri_schemes(uri: str) -> None:
    assert precheck(raw("INVITE", uri=uri)) is None


def test_method_is_checked_before_the_uri_scheme() -> None:
    assert precheck(raw("REGISTER", uri="mailto:bot@example.com")) is not None
    assert precheck(raw("REGISTER", uri="mailto:bot@example.com")) == Refusal(405, None, (("Allow", ALLOW),))


def test_merged_request_is_482() -> None:
    merged = MergedRequests()
    first = raw("INVITE", branch="z9hG4bKpath1")
    merged.add(first, "z9hG4bKpath1")
    # The same request forked back to us along another path: another branch, same Call-ID/From tag/CSeq.
    again = raw("INVITE", branch="z9hG4bKpath2")
    assert precheck(again, merged) == Refusal(482, "Loop Detected")
    assert precheck(again) is None  # without the table, no merge detection


def test_merge_check_ignores_in_dialog_cancel_and_ack() -> None:
    merged = MergedRequests()
    merged.add(raw("INVITE"), "z9hG4bKuas1")
    assert precheck(raw("INVITE", to="<sip:bot@192.0.2.10>;tag=t1"), merged) is None
    assert precheck(raw("CANCEL"), merged) is None
    assert precheck(raw("ACK"), merged) is None
    assert precheck(raw("INVITE", seq=2), merged) is None
    assert precheck(raw("INVITE", from_tag="other"), merged) is None
    assert precheck(raw("INVITE", call_id="other"), merged) is None


def test_unknown_require_is_420_with_unsupported() -> None:
    assert precheck(raw("INVITE", "Require: foo")) == Refusal(420, None, (("Unsupported", "foo"),))
    assert precheck(raw("INVITE", "Require: timer, foo, 100rel")) == Refusal(
        420, None, (("Unsupported", "foo, 100rel"),)
    )
    assert precheck(raw("INVITE", "Require: Timer")) is None


def test_require_is_not_checked_on_cancel() -> None:
    assert precheck(raw("CANCEL", "Require: foo")) is None
    assert precheck(raw("BYE", "Require: foo")) == Refusal(420, None, (("Unsupported", "foo"),))


@pytest.mark.parametrize("method", ["INVITE", "BYE", "INFO", "ACK"])
def test_max_forwards_zero_is_483(method: str) -> None:
    assert precheck(raw(method, max_forwards=0)) == Refusal(483)


def test_max_forwards_zero_options_is_answered() -> None:
    assert precheck(raw("OPTIONS", max_forwards=0)) is None
    assert precheck(raw("INVITE", max_forwards=1)) is None


@pytest.mark.parametrize(
    ("method", "extra", "accept"),
    [
        ("INVITE", ("Content-Type: text/plain",), "application/sdp"),
        ("INVITE", ("Content-Type: application/sdp", "Content-Encoding: gzip"), "application/sdp"),
        ("INVITE", (), "application/sdp"),
        ("INFO", ("Content-Type: application/sdp",), "application/dtmf, application/dtmf-relay"),
        ("NOTIFY", ("Content-Type: text/plain",), "message/sipfrag"),
    ],
)
def test_unsupported_body_is_415(method: str, extra: tuple[str, ...], accept: str) -> None:
    refusal = precheck(raw(method, *extra, body=SDP))
    assert refusal == Refusal(415, None, (("Accept", accept), ("Accept-Encoding", "identity")))


@pytest.mark.parametrize(
    ("method", "content_type"),
    [
        ("INVITE", "application/sdp"),
        ("INVITE", "Application/SDP"),
        ("INVITE", "multipart/mixed;boundary=b1"),
        ("UPDATE", "application/sdp"),
        ("ACK", "application/sdp"),
        ("INFO", "application/dtmf-relay"),
        ("INFO", "application/dtmf"),
        ("NOTIFY", "message/sipfrag;version=2.0"),
    ],
)
def test_supported_bodies(method: str, content_type: str) -> None:
    assert precheck(raw(method, f"Content-Type: {content_type}", body=SDP)) is None


def test_accept_without_sdp_on_invite_is_406() -> None:
    assert precheck(raw("INVITE", "Accept: text/plain")) == Refusal(
        406, None, (("Accept", "application/sdp"),)
    )
    assert precheck(raw("INVITE", "Accept: text/plain, image/png")) == Refusal(
        406, None, (("Accept", "application/sdp"),)
    )


@pytest.mark.parametrize(
    "accept",
    ["application/sdp", "text/plain, application/sdp", "application/*", "*/*", "Application/SDP;q=0.5"],
)
def test_accept_with_sdp_on_invite(accept: str) -> None:
    assert precheck(raw("INVITE", f"Accept: {accept}")) is None


def test_accept_is_only_checked_on_invite() -> None:
    assert precheck(raw("OPTIONS", "Accept: text/plain")) is None


def test_checks_run_in_rfc_order() -> None:
    # §8.2: Require (420) before Max-Forwards (483) before the body (415) before Accept (406).
    assert precheck(raw("INVITE", "Require: foo", "Content-Type: text/plain", max_forwards=0, body=b"x")) == (
        Refusal(420, None, (("Unsupported", "foo"),))
    )
    assert precheck(raw("INVITE", "Content-Type: text/plain", max_forwards=0, body=b"x")) == Refusal(483)
    refusal = precheck(raw("INVITE", "Content-Type: text/plain", "Accept: text/plain", body=b"x"))
    assert refusal is not None and refusal.status_code == 415


# -- merged requests -------------------------------------------------------------------------------------


def test_merged_requests_add_contains_discard() -> None:
    merged = MergedRequests()
    request = raw("INVITE")
    assert request not in merged
    merged.add(request, "tx1")
    assert request in merged
    assert MergedRequests.key(request) == ("uas-call-1", "f1", 1)
    assert len(merged) == 1
    merged.discard_transaction("tx-unknown")
    assert len(merged) == 1
    merged.discard_transaction("tx1")
    assert request not in merged
    assert len(merged) == 0
    merged.discard_transaction("tx1")  # twice is harmless
    assert len(merged) == 0


def test_merged_requests_key_without_from_tag() -> None:
    lines = (
        "INVITE sip:bot@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKx\r\n"
        "From: <sip:alice@example.com>\r\nTo: <sip:bot@192.0.2.10>\r\nCall-ID: c2\r\nCSeq: 9 INVITE\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(lines.encode())
    assert isinstance(request, Request)
    assert MergedRequests.key(request) == ("c2", "", 9)


def test_merged_requests_are_bounded() -> None:
    merged = MergedRequests(max_entries=3)
    requests = [raw("INVITE", call_id=f"c{i}") for i in range(5)]
    for i, request in enumerate(requests):
        merged.add(request, f"tx{i}")
    assert len(merged) == 3
    assert [r in merged for r in requests] == [False, False, True, True, True]
    # The evicted transactions are forgotten too: discarding them changes nothing.
    merged.discard_transaction("tx0")
    assert len(merged) == 3
    merged.discard_transaction("tx4")
    assert [r in merged for r in requests] == [False, False, True, True, False]


# -- INFO DTMF -------------------------------------------------------------------------------------------


def info(content_type: str, body: bytes) -> Request:
    return raw("INFO", f"Content-Type: {content_type}", to="<sip:bot@192.0.2.10>;tag=t1", body=body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=5\r\nDuration=250\r\n", ("5", 250)),
        (b"Signal=10\r\nDuration=100\r\n", ("*", 100)),
        (b"Signal=11\r\nDuration=100\r\n", ("#", 100)),
        (b"Signal=*\r\nDuration=80\r\n", ("*", 80)),
        (b"Signal=#\r\n", ("#", 160)),
        (b"signal = a\nduration = 40\n", ("A", 40)),
        (b"Signal=D\r\nDuration=0\r\n", ("D", 0)),
        (b"Signal=5\r\nDuration=999999\r\n", ("5", 999999)),
        (b"Signal=5\r\nDuration=1000000\r\n", ("5", 160)),
        (b"Signal=5\r\nDuration=99999999999999999999999\r\n", ("5", 160)),
        (b"Signal=5\r\nDuration=-1\r\n", ("5", 160)),
        (b"Signal=5\r\nDuration=fast\r\n", ("5", 160)),
        (b"Signal=12\r\nDuration=100\r\n", (None, 100)),
        (b"Signal=E\r\n", (None, 160)),
        (b"Signal=55\r\n", (None, 160)),
        (b"hello world", (None, 160)),
        (b"\xff\xfe\x00", (None, 160)),
    ],
)
def test_info_dtmf_relay(body: bytes, expected: tuple[str | None, int]) -> None:
    assert info_dtmf(info("application/dtmf-relay", body)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"5", ("5", 160)),
        (b"#\r\n", ("#", 160)),
        (b" b ", ("B", 160)),
        (b"55", (None, 160)),
        (b"x", (None, 160)),
    ],
)
def test_info_dtmf_plain(body: bytes, expected: tuple[str | None, int]) -> None:
    assert info_dtmf(info("application/dtmf", body)) == expected


def test_info_without_body_or_with_other_type() -> None:
    assert info_dtmf(raw("INFO")) == (None, 0)
    assert info_dtmf(raw("INFO", "Content-Type: application/dtmf-relay")) == (None, 0)
    assert info_dtmf(info("application/sdp", SDP)) == (None, 0)


def test_info_dtmf_relay_superscript_duration_is_not_a_crash() -> None:
    assert info_dtmf(info("application/dtmf-relay", "Signal=5\r\nDuration=²\r\n".encode())) == ("5", 160)


@pytest.mark.parametrize(
    ("digit", "duration", "body"),
    [
        ("5", 250, b"Signal=5\r\nDuration=250\r\n"),
        ("*", 160, b"Signal=*\r\nDuration=160\r\n"),
        ("#", 100, b"Signal=#\r\nDuration=100\r\n"),
        ("a", 80, b"Signal=A\r\nDuration=80\r\n"),
    ],
)
def test_dtmf_relay_body(digit: str, duration: int, body: bytes) -> None:
    assert dtmf_relay_body(digit, duration) == body


def test_dtmf_relay_body_round_trips_through_info_dtmf() -> None:
    for digit in "0123456789*#ABCD":
        assert info_dtmf(info("application/dtmf-relay", dtmf_relay_body(digit, 120))) == (digit, 120)


@pytest.mark.parametrize("digit", ["x", "", "12", "E", " ", "10"])
def test_dtmf_relay_body_refuses_non_digits(digit: str) -> None:
    with pytest.raises(ValueError, match="not a DTMF digit"):
        dtmf_relay_body(digit, 160)


# -- NOTIFY for our REFER --------------------------------------------------------------------------------


def notify(*extra: str, body: bytes) -> Request:
    return raw(
        "NOTIFY",
        "Content-Type: message/sipfrag;version=2.0",
        *extra,
        to="<sip:bot@192.0.2.10>;tag=t1",
        body=body,
    )


def test_refer_final_200() -> None:
    request = notify(
        "Event: refer", "Subscription-State: terminated;reason=noresource", body=b"SIP/2.0 200 OK\r\n"
    )
    assert refer_status(request) == ReferStatus(200, "OK", True)


def test_refer_provisional_active_is_not_final() -> None:
    request = notify("Event: refer", "Subscription-State: active;expires=60", body=b"SIP/2.0 180 Ringing\r\n")
    assert refer_status(request) == ReferStatus(180, "Ringing", False)


def test_refer_provisional_with_terminated_subscription_is_final() -> None:
    request = notify("Event: refer", "Subscription-State: Terminated", body=b"SIP/2.0 100 Trying\r\n")
    assert refer_status(request) == ReferStatus(100, "Trying", True)


def test_refer_failure_is_final_even_while_active() -> None:
    request = notify("Event: refer;id=93", "Subscription-State: active", body=b"SIP/2.0 486 Busy Here\r\n")
    assert refer_status(request) == ReferStatus(486, "Busy Here", True)


def test_refer_status_line_only_first_line_with_lf() -> None:
    body = b"SIP/2.0 603 Declined by user\nContent-Length: 0\n"
    assert refer_status(notify("Event: REFER", body=body)) == ReferStatus(603, "Declined by user", True)


def test_refer_status_without_reason() -> None:
    assert refer_status(notify("Event: refer", body=b"SIP/2.0 202\r\n")) == ReferStatus(202, "", True)


@pytest.mark.parametrize(
    ("event", "body"),
    [
        ("Event: dialog", b"SIP/2.0 200 OK\r\n"),
        ("Event: presence", b"SIP/2.0 200 OK\r\n"),
        ("X-Nothing: 1", b"SIP/2.0 200 OK\r\n"),
        ("Event: refer", b""),
        ("Event: refer", b"garbage"),
        ("Event: refer", b"SIP/2.0 OK 200\r\n"),
        ("Event: refer", b"SIP/2.0 20 OK\r\n"),
        ("Event: refer", b"SIP/2.0 2000 OK\r\n"),
        ("Event: refer", b"\r\nSIP/2.0 200 OK\r\n"),
    ],
)
def test_refer_status_none(event: str, body: bytes) -> None:
    assert refer_status(notify(event, "Subscription-State: terminated", body=body)) is None


def test_refer_status_superscript_digits_is_none() -> None:
    request = notify("Event: refer", "Subscription-State: active", body="SIP/2.0 ²²² OK\r\n".encode())
    assert refer_status(request) is None


# -- small helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ('say "hi"', "say ?hi?"),
        ("back\\slash", "back?slash"),
        ("line\r\nbreak\ttab", "line??break?tab"),
        ("naïve café", "naïve café"),
        ("", ""),
    ],
)
def test_warning_text(text: str, expected: str) -> None:
    assert warning_text(text) == expected


def test_warning_text_is_truncated_to_120() -> None:
    assert warning_text("x" * 500) == "x" * 120
    assert warning_text('"' * 200) == "?" * 120


def test_to_tag() -> None:
    assert to_tag(raw("BYE", to="<sip:bot@192.0.2.10>;tag=abc123")) == "abc123"
    assert to_tag(raw("INVITE")) is None


def test_to_tag_of_an_unparsable_to_is_none() -> None:
    request = raw("BYE")
    request.headers.set("To", "<<not an address")
    assert to_tag(request) is None


def test_allow_of() -> None:
    assert allow_of(raw("OPTIONS", "Allow: invite, Ack,BYE")) == ["INVITE", "ACK", "BYE"]
    assert allow_of(raw("OPTIONS", "Allow: INVITE", "Allow: update")) == ["INVITE", "UPDATE"]
    assert allow_of(raw("OPTIONS")) == []


def test_allow_of_malformed_is_empty() -> None:
    request = raw("OPTIONS")
    request.headers.set("Allow", "INVITE, , @@@")
    assert allow_of(request) == []
