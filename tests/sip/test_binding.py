"""REGISTER bindings (RFC 3261 §10) with a fake clock: the requests built, states, and every deadline."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import NameAddress, Request, Response, make_response, parse_message, parse_uri
from voicelive_sip.sip.binding import (
    AUTH_RETRY,
    MAX_RETRY,
    MIN_RETRY,
    RegistrationBinding,
    RegistrationChanged,
    RegistrationState,
)
from voicelive_sip.sip.uri import SipUri

CONTACT = NameAddress(parse_uri("sip:bot@192.0.2.10:5070;transport=udp"))


def binding(*, now: float = 0.0, expires: int = 3600) -> RegistrationBinding:
    registrar = parse_uri("sip:registrar.example.test:5080;transport=tcp?Subject=x")
    aor = parse_uri("sip:bot@example.test")
    assert isinstance(registrar, SipUri) and isinstance(aor, SipUri)
    return RegistrationBinding(
        registrar, aor, call_id="reg-call-1", expires=expires, now=now, display_name="Voice Bot"
    )


def answer(
    b: RegistrationBinding, status: int, *headers: tuple[str, str], contact: NameAddress = CONTACT
) -> Response:
    """Build a REGISTER, mark it sent, and return the registrar's `status` answer as it comes off the wire."""
    request = b.build(contact)
    b.sending()
    raw = bytes(make_response(request, status, to_tag="reg", headers=list(headers)))
    response = parse_message(raw)
    assert isinstance(response, Response)
    return response


def changes(b: RegistrationBinding) -> list[RegistrationChanged]:
    out = []
    while (change := b.next_change()) is not None:
        out.append(change)
    return out


# -- building REGISTER -----------------------------------------------------------------------------------


def test_first_register_is_due_at_creation() -> None:
    b = binding(now=42.5)
    assert b.get_timer() == 42.5
    assert b.state is RegistrationState.UNREGISTERED
    assert (b.expires, b.last_status, b.reason) == (None, None, "")
    assert b.next_change() is None


def test_build_register() -> None:
    b = binding()
    request = b.build(CONTACT)
    assert request.method == "REGISTER"
    # The transport parameter and URI headers are for routing, not for the Request-URI (§10.2).
    assert str(request.uri) == "sip:registrar.example.test:5080"
    assert request.headers.get("Max-Forwards") == "70"
    assert request.from_.uri == parse_uri("sip:bot@example.test")
    assert request.from_.display_name == "Voice Bot"
    assert request.from_.tag is not None
    assert request.to == NameAddress(parse_uri("sip:bot@example.test"), "Voice Bot")
    assert request.to.tag is None
    assert request.call_id == "reg-call-1"
    assert (request.cseq.seq, request.cseq.method) == (1, "REGISTER")
    assert request.contact == [CONTACT]
    assert request.expires == 3600
    # What goes on the wire parses back to the same request.
    assert parse_message(bytes(request)) == request


def test_build_keeps_call_id_and_from_tag_and_increments_cseq() -> None:
    b = binding()
    first, second, third = b.build(CONTACT), b.build(CONTACT), b.build(CONTACT, expires=0)
    assert [r.cseq.seq for r in (first, second, third)] == [1, 2, 3]
    assert {r.call_id for r in (first, second, third)} == {"reg-call-1"}
    assert first.from_.tag == second.from_.tag == third.from_.tag
    assert [r.expires for r in (first, second, third)] == [3600, 3600, 0]


def test_two_bindings_have_different_from_tags() -> None:
    assert binding().build(CONTACT).from_.tag != binding().build(CONTACT).from_.tag


def test_sending_clears_the_timer() -> None:
    b = binding(now=1.0)
    b.build(CONTACT)
    b.sending()
    assert b.get_timer() is None
    assert b.state is RegistrationState.REGISTERING
    assert changes(b) == [RegistrationChanged(RegistrationState.REGISTERING, None, "registering", None)]


# -- 2xx -------------------------------------------------------------------------------------------------


def test_200_contact_expires_param_refreshes_at_90_percent() -> None:
    b = binding()
    response = answer(b, 200, ("Contact", "<sip:bot@192.0.2.10:5070;transport=udp>;expires=120"))
    b.receive_response(response, CONTACT, 10.0)
    assert b.state is RegistrationState.REGISTERED
    assert (b.expires, b.last_status, b.reason) == (120, 200, "registered")
    assert b.get_timer() == 118.0
    assert changes(b) == [
        RegistrationChanged(RegistrationState.REGISTERING, None, "registering", None),
        RegistrationChanged(RegistrationState.REGISTERED, 200, "registered", 120),
    ]


def test_200_picks_our_contact_among_other_bindings() -> None:
    b = binding()
    response = answer(
        b,
        200,
        ("Contact", "<sip:bot@198.51.100.7:5060>;expires=3000"),
        ("Contact", "<sip:bot@192.0.2.10:5070>;expires=600"),
        ("Expires", "1000"),
    )
    b.receive_response(response, CONTACT, 0.0)
    assert b.expires == 600
    assert b.get_timer() == 540.0


def test_200_with_expires_header_only() -> None:
    b = binding()
    b.receive_response(answer(b, 200, ("Expires", "300")), CONTACT, 100.0)
    assert (b.state, b.expires) == (RegistrationState.REGISTERED, 300)
    assert b.get_timer() == 370.0


def test_200_other_contact_only_falls_back_to_expires_header() -> None:
    b = binding()
    response = answer(b, 200, ("Contact", "<sip:bot@198.51.100.7:5060>;expires=30"), ("Expires", "200"))
    b.receive_response(response, CONTACT, 0.0)
    assert b.expires == 200
    assert b.get_timer() == 180.0


def test_200_without_any_expiry_keeps_what_we_asked() -> None:
    b = binding(expires=1000)
    b.receive_response(answer(b, 200), CONTACT, 5.0)
    assert b.expires == 1000
    assert b.get_timer() == 905.0


def test_200_tiny_grant_refreshes_at_least_one_second_later() -> None:
    b = binding()
    b.receive_response(answer(b, 200, ("Contact", "<sip:bot@192.0.2.10:5070>;expires=1")), CONTACT, 50.0)
    assert b.expires == 1
    assert b.get_timer() == 51.0


def test_refresh_cycle() -> None:
    b = binding()
    b.receive_response(answer(b, 200, ("Expires", "600")), CONTACT, 0.0)
    assert b.get_timer() == 540.0
    b.receive_response(answer(b, 200, ("Expires", "600")), CONTACT, 540.25)
    assert b.get_timer() == 1080.25
    assert b.build(CONTACT).cseq.seq == 3


# -- 423 Interval Too Brief ------------------------------------------------------------------------------


def test_423_asks_again_at_once_with_min_expires() -> None:
    b = binding(expires=60)
    b.receive_response(answer(b, 423, ("Min-Expires", "900")), CONTACT, 7.0)
    assert b.get_timer() == 7.0
    assert b.state is RegistrationState.REGISTERING  # not a failure: no change reported
    assert changes(b) == [RegistrationChanged(RegistrationState.REGISTERING, None, "registering", None)]
    assert b.build(CONTACT).expires == 900
    assert b.build(CONTACT, expires=0).expires == 0  # an explicit value (unregister) still wins


def test_423_never_lowers_what_we_ask() -> None:
    b = binding(expires=3600)
    b.receive_response(answer(b, 423, ("Min-Expires", "900")), CONTACT, 0.0)
    assert b.build(CONTACT).expires == 3600


def test_423_at_most_three_times_in_a_row() -> None:
    b = binding(expires=60)
    for i, minimum in enumerate(("120", "240", "480")):
        b.receive_response(answer(b, 423, ("Min-Expires", minimum)), CONTACT, float(i))
        assert b.get_timer() == float(i)
    assert b.build(CONTACT).expires == 480
    b.receive_response(answer(b, 423, ("Min-Expires", "960")), CONTACT, 10.0)
    assert b.state is RegistrationState.FAILED
    assert (b.last_status, b.reason) == (423, "Interval Too Brief")
    assert b.get_timer() == 10.0 + MIN_RETRY
    assert b.build(CONTACT).expires == 480


def test_423_count_resets_after_a_success() -> None:
    b = binding(expires=60)
    for _ in range(3):
        b.receive_response(answer(b, 423, ("Min-Expires", "120")), CONTACT, 0.0)
    b.receive_response(answer(b, 200, ("Expires", "120")), CONTACT, 1.0)
    b.receive_response(answer(b, 423, ("Min-Expires", "240")), CONTACT, 109.0)
    assert b.get_timer() == 109.0
    assert b.state is RegistrationState.REGISTERING
    assert b.build(CONTACT).expires == 240


def test_423_without_min_expires_is_a_failure() -> None:
    b = binding()
    b.receive_response(answer(b, 423), CONTACT, 3.0)
    assert (b.state, b.last_status) == (RegistrationState.FAILED, 423)
    assert b.get_timer() == 8.0


# -- failures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 407])
def test_challenge_without_credentials_waits_long(status: int) -> None:
    b = binding()
    b.receive_response(answer(b, status), CONTACT, 20.0)
    assert b.state is RegistrationState.FAILED
    assert b.last_status == status
    assert b.reason == "challenged, and no usable credentials are configured (AUTH_PASSWORD)"
    assert b.get_timer() == 20.0 + AUTH_RETRY == 320.0
    assert b.expires is None


def test_auth_rejected_waits_long() -> None:
    b = binding()
    b.build(CONTACT)
    b.sending()
    b.auth_rejected("example.test", 60.0)
    assert (b.state, b.last_status) == (RegistrationState.FAILED, 401)
    assert b.reason == "authentication rejected by example.test: wrong username or password?"
    assert b.get_timer() == 360.0
    assert changes(b)[-1] == RegistrationChanged(RegistrationState.FAILED, 401, b.reason, None)


def test_server_errors_back_off_exponentially_up_to_1800_s() -> None:
    b = binding()
    delays = []
    now = 0.0
    for _ in range(12):
        b.receive_response(answer(b, 500), CONTACT, now)
        due = b.get_timer()
        assert due is not None
        delays.append(due - now)
        now = due
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, MAX_RETRY, 1800.0, 1800.0]
    assert (b.state, b.last_status, b.reason) == (RegistrationState.FAILED, 500, "Server Internal Error")


def test_back_off_resets_after_a_success() -> None:
    b = binding()
    for now in (0.0, 5.0, 15.0):
        b.receive_response(answer(b, 503), CONTACT, now)
    assert b.get_timer() == 35.0
    b.receive_response(answer(b, 200, ("Expires", "3600")), CONTACT, 35.0)
    assert b.get_timer() == 3275.0
    b.receive_response(answer(b, 503), CONTACT, 3275.0)
    assert b.get_timer() == 3280.0
    b.receive_response(answer(b, 503), CONTACT, 3280.0)
    assert b.get_timer() == 3290.0


def test_auth_failures_do_not_grow_the_back_off() -> None:
    b = binding()
    b.receive_response(answer(b, 401), CONTACT, 0.0)
    b.receive_response(answer(b, 401), CONTACT, 300.0)
    b.receive_response(answer(b, 500), CONTACT, 600.0)
    assert b.get_timer() == 605.0


def test_timeout_reason() -> None:
    b = binding()
    b.receive_response(answer(b, 408), CONTACT, 32.0)
    assert (b.state, b.last_status, b.reason) == (RegistrationState.FAILED, 408, "no response (timeout)")
    assert b.get_timer() == 37.0


def test_failure_keeps_the_last_granted_expires() -> None:
    b = binding()
    b.receive_response(answer(b, 200, ("Expires", "120")), CONTACT, 0.0)
    b.receive_response(answer(b, 403), CONTACT, 108.0)
    assert (b.state, b.expires, b.reason) == (RegistrationState.FAILED, 120, "Forbidden")
    assert b.get_timer() == 113.0


# -- stopping and reporting ------------------------------------------------------------------------------


def test_stopped_after_registered_is_unregistered() -> None:
    b = binding()
    b.receive_response(answer(b, 200, ("Expires", "120")), CONTACT, 0.0)
    b.stopped(200)
    assert (b.state, b.last_status, b.reason, b.expires) == (
        RegistrationState.UNREGISTERED,
        200,
        "unregistered",
        0,
    )
    assert b.get_timer() is None


def test_stopped_after_registered_without_status() -> None:
    b = binding()
    b.receive_response(answer(b, 200, ("Expires", "120")), CONTACT, 0.0)
    b.stopped(None)
    assert changes(b)[-1] == RegistrationChanged(RegistrationState.UNREGISTERED, None, "unregistered", 0)


def test_stopped_before_registering() -> None:
    b = binding()
    b.stopped(None)
    assert (b.state, b.reason, b.expires) == (RegistrationState.UNREGISTERED, "stopped", None)
    assert b.get_timer() is None
    assert changes(b) == [RegistrationChanged(RegistrationState.UNREGISTERED, None, "stopped", None)]


def test_stopped_after_failure() -> None:
    b = binding()
    b.receive_response(answer(b, 500), CONTACT, 0.0)
    b.stopped(None)
    assert (b.state, b.reason, b.get_timer()) == (RegistrationState.UNREGISTERED, "stopped", None)


def test_next_change_sequence() -> None:
    b = binding()
    b.receive_response(answer(b, 401), CONTACT, 0.0)
    b.receive_response(answer(b, 200, ("Expires", "60")), CONTACT, 300.0)
    # Unregistering sends Expires: 0 without `sending()` (nothing is due after it), then stops.
    assert b.build(CONTACT, expires=0).expires == 0
    b.stopped(200)
    reason_401 = "challenged, and no usable credentials are configured (AUTH_PASSWORD)"
    assert changes(b) == [
        RegistrationChanged(RegistrationState.REGISTERING, None, "registering", None),
        RegistrationChanged(RegistrationState.FAILED, 401, reason_401, None),
        RegistrationChanged(RegistrationState.REGISTERING, None, "registering", None),
        RegistrationChanged(RegistrationState.REGISTERED, 200, "registered", 60),
        RegistrationChanged(RegistrationState.UNREGISTERED, 200, "unregistered", 0),
    ]
    assert b.next_change() is None


def test_change_queue_is_bounded_and_keeps_the_newest() -> None:
    b = binding()
    for i in range(100):
        b.receive_response(answer(b, 200, ("Expires", str(100 + i))), CONTACT, float(i))
    seen = changes(b)
    assert len(seen) == 64
    assert seen[-1] == RegistrationChanged(RegistrationState.REGISTERED, 200, "registered", 199)


def test_200_matches_our_contact_host_case_insensitively() -> None:
    ours = NameAddress(parse_uri("sip:bot@Gateway.Example.TEST:5070"))
    b = binding(expires=3600)
    response = answer(b, 200, ("Contact", "<sip:bot@gateway.example.test:5070>;expires=60"), contact=ours)
    b.receive_response(response, ours, 0.0)
    assert b.expires == 60  # not the 3600 we asked for: that refresh would come 54 minutes too late
    assert b.get_timer() == 54.0


def test_request_built_is_a_request() -> None:
    assert isinstance(binding().build(CONTACT), Request)
