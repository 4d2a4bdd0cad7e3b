"""RFC 3261 §12 dialogs: creation on both sides, route sets, in-dialog requests, CSeq and glare rules."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import (
    LocalProtocolError,
    NameAddress,
    Request,
    make_response,
    parse_message,
    parse_uri,
)
from voicelive_sip.sip.dialog import Dialog, DialogState, DialogTable

INVITE = parse_message(
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
assert isinstance(INVITE, Request)
OUR_CONTACT = NameAddress(parse_uri("sip:gw@192.0.2.99:5060"))


def ok_from_bob(status: int = 200) -> object:
    response = make_response(INVITE, status, to_tag="314159bob")
    response.headers.add("Contact", "<sip:bob@192.0.2.4>")
    return response


def test_uas_dialog_from_an_invite() -> None:
    dialog = Dialog.as_uas(INVITE, OUR_CONTACT, local_tag="gwtag")
    assert dialog.state is DialogState.EARLY
    assert (dialog.call_id, dialog.local_tag, dialog.remote_tag) == ("a84b4c76e66710", "gwtag", "1928301774")
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert dialog.remote_seq == 314159
    dialog.confirm()
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:alice@pc33.atlanta.example.com"
    assert [str(r.uri) for r in bye.route] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert bye.from_.tag == "gwtag" and bye.to.tag == "1928301774"
    assert bye.from_.uri == INVITE.to.uri and bye.to.uri == INVITE.from_.uri
    assert bye.cseq.method == "BYE" and bye.cseq.seq == dialog.local_seq
    assert bye.contact == []  # BYE carries no Contact
    assert bye.max_forwards == 70


def test_uac_dialog_reverses_record_route_and_uses_the_contact() -> None:
    response = ok_from_bob()
    dialog = Dialog.as_uac(INVITE, response)  # type: ignore[arg-type]
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id.local_tag == "1928301774" and dialog.id.remote_tag == "314159bob"
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert str(dialog.next_hop()) == "sip:p2.example.com;lr"
    ack = dialog.create_ack(314159)
    assert ack.method == "ACK" and str(ack.cseq) == "314159 ACK"
    assert str(ack.uri) == "sip:bob@192.0.2.4"
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert reinvite.cseq.seq == 314160
    assert str(reinvite.contact[0].uri) == "sip:alice@pc33.atlanta.example.com"
    assert reinvite.content_type is not None and reinvite.content_type.mime == "application/sdp"


def test_early_dialog_is_confirmed_by_the_2xx_which_recomputes_the_route_set() -> None:
    ringing = make_response(INVITE, 180, to_tag="314159bob")
    ringing.headers.add("Contact", "<sip:bob@10.0.0.4>")
    dialog = Dialog.as_uac(INVITE, ringing)
    assert dialog.state is DialogState.EARLY and str(dialog.remote_target) == "sip:bob@10.0.0.4"
    ok = make_response(INVITE, 200, to_tag="314159bob")
    ok.headers.remove("Record-Route")
    ok.headers.add("Record-Route", "<sip:p9.example.com;lr>")
    ok.headers.add("Contact", "<sip:bob@192.0.2.4>")
    dialog.confirm(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r.uri) for r in dialog.route_set] == ["sip:p9.example.com;lr"]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"


def test_strict_routing_puts_the_first_route_in_the_request_uri() -> None:
    invite = INVITE.headers.copy()
    req = Request("INVITE", INVITE.uri, invite)
    req.headers.remove("Record-Route")
    req.headers.add("Record-Route", "<sip:strict.example.com;method=INVITE>")
    dialog = Dialog.as_uas(req, OUR_CONTACT)
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:strict.example.com"
    assert [str(r.uri) for r in bye.route] == ["sip:alice@pc33.atlanta.example.com"]


def test_in_dialog_requests_check_cseq_and_refresh_the_target() -> None:
    dialog = Dialog.as_uas(INVITE, OUR_CONTACT, local_tag="gwtag", confirmed=True)
    peer = Dialog.as_uac(INVITE, make_response(INVITE, 200, to_tag="gwtag"))
    reinvite = peer.create_request("INVITE")
    reinvite.headers.set("Contact", "<sip:alice@198.51.100.7>")
    assert dialog.receive_request(reinvite) is None
    assert str(dialog.remote_target) == "sip:alice@198.51.100.7"
    old = peer.create_request("INFO", cseq=314159)
    refused = dialog.receive_request(old)
    assert refused is not None and refused.status_code == 500
    ack = peer.create_ack(reinvite.cseq.seq)
    assert dialog.receive_request(ack) is None


def test_overlapping_reinvite_gets_500_with_retry_after_and_glare_491() -> None:
    dialog = Dialog.as_uas(INVITE, OUR_CONTACT, local_tag="gwtag", confirmed=True)
    peer = Dialog.as_uac(INVITE, make_response(INVITE, 200, to_tag="gwtag"))
    first = peer.create_request("INVITE")
    assert dialog.begin_incoming_invite(first) is None
    second = peer.create_request("INVITE")
    refused = dialog.begin_incoming_invite(second)
    assert refused is not None and refused.status_code == 500
    retry = refused.headers.get("Retry-After")
    assert retry is not None and 0 <= int(retry) <= 10
    dialog.end_incoming_invite()
    dialog.begin_outgoing_invite()
    glare = dialog.begin_incoming_invite(peer.create_request("INVITE"))
    assert glare is not None and glare.status_code == 491
    with pytest.raises(LocalProtocolError):
        dialog.begin_outgoing_invite()


def test_dialog_table_matching_and_481() -> None:
    table = DialogTable(max_dialogs=1)
    uas = Dialog.as_uas(INVITE, OUR_CONTACT, local_tag="gwtag", confirmed=True)
    table.add(uas)
    peer = Dialog.as_uac(INVITE, make_response(INVITE, 200, to_tag="gwtag"))
    bye = peer.create_request("BYE")
    assert table.for_request(bye) is uas
    stranger = Dialog.as_uac(INVITE, make_response(INVITE, 200, to_tag="nobody"))
    lost_bye = stranger.create_request("BYE")
    assert table.for_request(lost_bye) is None
    missing = table.unmatched_response(lost_bye)
    assert missing is not None and missing.status_code == 481
    assert table.unmatched_response(stranger.create_ack(1)) is None
    with pytest.raises(LocalProtocolError):
        table.add(stranger)
    table.remove(uas)
    assert len(table) == 0


def test_dialog_table_matches_responses_for_a_uac() -> None:
    table = DialogTable()
    dialog = Dialog.as_uac(INVITE, make_response(INVITE, 200, to_tag="bob1"))
    table.add(dialog)
    bye = dialog.create_request("BYE")
    assert table.for_response(make_response(bye, 200)) is dialog


@pytest.mark.parametrize("method", ["BYE", "UPDATE", "INFO", "REFER", "NOTIFY", "INVITE"])
def test_every_in_dialog_method_serializes_and_parses(method: str) -> None:
    dialog = Dialog.as_uas(INVITE, OUR_CONTACT, confirmed=True)
    request = dialog.create_request(method)
    request.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKx")
    again = parse_message(request.serialize())
    assert isinstance(again, Request) and again.method == method
    assert bool(again.contact) == (method in ("UPDATE", "REFER", "NOTIFY", "INVITE"))
