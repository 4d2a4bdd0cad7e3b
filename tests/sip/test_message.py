"""Parsing and serializing SIP messages: headers, typed access, building responses."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import (
    CSeq,
    Headers,
    LocalProtocolError,
    NameAddress,
    Request,
    Response,
    SipParseError,
    SipUri,
    Via,
    make_response,
    parse_message,
    request_problem,
)

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 12000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)
INVITE = (
    b"INVITE sip:+15550100@gw.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnashds8;received=192.0.2.1;ttl=16;maddr=239.1.1.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Agent" <sip:+15550100@gw.example.com>\r\n'
    b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b'Contact: <sip:alice@192.0.2.10:5060>;expires=3600;q=0.7, "Bob, Jr" <sip:bob@192.0.2.11>\r\n'
    b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:edge.example.com;lr>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"k: timer, replaces\r\n"
    b"Require: 100rel\r\n"
    b"Expires: 120\r\n"
    b"X-Custom:   kept  as is  \r\n"
    b'WWW-Authenticate: Digest realm="a, b", nonce="x"\r\n'
    b"c: application/sdp\r\n"
    b"l: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def test_typed_access() -> None:
    m = parse_message(INVITE)
    assert isinstance(m, Request)
    assert m.method == "INVITE" and str(m.uri) == "sip:+15550100@gw.example.com"
    top, second = m.via
    assert top == m.top_via
    assert (top.transport, top.host, top.port, top.branch, top.wants_rport, top.rport) == (
        "UDP", "192.0.2.10", 5060, "z9hG4bK776asdhds", True, None,
    )  # fmt: skip
    assert (second.received, second.ttl, second.maddr, second.port) == ("192.0.2.1", 16, "239.1.1.1", None)
    assert top.is_rfc3261_branch
    assert m.to.display_name == "Agent" and m.to.tag is None
    assert m.from_.display_name == "Alice" and m.from_.tag == "1928301774"
    assert m.call_id == "a84b4c76e66710@pc33.example.com"
    assert m.cseq == CSeq(314159, "INVITE")
    assert m.max_forwards == 70
    first, bob = m.contact
    assert first.expires == 3600 and first.q == 0.7
    assert bob.display_name == "Bob, Jr" and isinstance(bob.uri, SipUri) and bob.uri.user == "bob"
    assert [str(r.uri) for r in m.record_route] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert [str(r.uri) for r in m.route] == ["sip:edge.example.com;lr"]
    assert m.allow == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]
    assert m.supported == ["timer", "replaces"]
    assert m.require == ["100rel"]
    assert m.expires == 120
    assert m.content_type is not None and m.content_type.mime == "application/sdp"
    assert m.body == SDP and m.content_length == len(SDP)
    assert m.headers.get("x-custom") == "kept  as is"
    (challenge,) = m.www_authenticate
    assert (challenge.realm, challenge.nonce) == ("a, b", "x")
    assert m.headers.get_all("WWW-Authenticate") == ['Digest realm="a, b", nonce="x"']


def test_authorization_headers_are_typed_and_other_schemes_skipped() -> None:
    m = parse_message(
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: 9\r\nCSeq: 2 REGISTER\r\n"
        b"Authorization: NoOneKnowsThisScheme opaque-data=here\r\n"
        b'Authorization: Digest username="a", realm="r", nonce="n", uri="sip:example.com", response="00"\r\n'
        b'Proxy-Authorization: Digest username="p", realm="q", nonce="m", '
        b'uri="sip:example.com", response="11"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    assert [c.username for c in m.authorization] == ["a"]
    assert [c.realm for c in m.proxy_authorization] == ["q"]
    assert m.proxy_authenticate == []


def test_header_names_are_case_insensitive_and_compact_forms_expand() -> None:
    m = parse_message(INVITE)
    assert m.headers.get("CALL-ID") == m.headers.get("i") == "a84b4c76e66710@pc33.example.com"
    assert m.headers.get("Supported") == "timer, replaces"
    names = [name for name, _ in m.headers]
    assert "Supported" in names and "Content-Type" in names and "k" not in names
    # Unknown headers keep their spelling and position.
    assert names.index("X-Custom") == names.index("Expires") + 1


def test_serialize_round_trip_and_content_length_is_derived() -> None:
    m = parse_message(INVITE)
    wire = m.serialize()
    assert wire.count(b"Content-Length:") == 1
    assert wire.endswith(b"Content-Length: %d\r\n\r\n" % len(SDP) + SDP)
    assert parse_message(wire) == m
    m.body = b"hello"
    assert parse_message(m.serialize()).body == b"hello"


def test_folding_and_whitespace() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
        b"Subject: first\r\n\tsecond\r\n   third\r\n"
        b"From   :<sip:b@example.com>  ;  tag = x\r\n"
        b"To: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    m = parse_message(data)
    assert m.headers.get("Subject") == "first second third"
    assert m.from_.tag == "x"


def test_bare_lf_line_ends_and_leading_crlf_are_accepted() -> None:
    head, _, body = INVITE.partition(b"\r\n\r\n")
    data = b"\r\n\r\n" + head.replace(b"\r\n", b"\n") + b"\n\n" + body
    m = parse_message(data)
    assert isinstance(m, Request) and m.call_id == "a84b4c76e66710@pc33.example.com"
    assert m.body == SDP


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = INVITE.split(b"l: ")[0] + b"\r\n" + SDP
    assert parse_message(data).body == SDP


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", 505),
        (b"SIP/2.0 99 Low\r\n\r\n", 400),
        (b"SIP/2.0 700 High\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nNoColonHere\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nab", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nCSeq: x INVITE\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: 256\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;rport=x\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:a@b\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nContact: <sip:a@b>;q=2\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=1, ,SIP/2.0/UDP b\r\n\r\n", 400),
        (b"X" * 70000, 413),
    ],
)
def test_errors_carry_the_status_to_answer(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status_code == status


def test_datagram_without_the_closing_empty_line_still_gets_an_answer() -> None:
    m = parse_message(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1")
    assert isinstance(m, Request) and m.top_via.host == "h"
    problem = request_problem(m)
    assert problem is not None and problem.status_code == 400


def test_stream_requires_content_length() -> None:
    data = INVITE.split(b"l: ")[0] + b"\r\n"
    with pytest.raises(SipParseError):
        parse_message(data, stream=True)


def test_build_request_and_response() -> None:
    request = Request(
        "OPTIONS",
        "sip:gw.example.com",
        [
            ("Via", Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bKabc"), ("rport", None)))),
            ("From", NameAddress(SipUri(host="example.com", user="a"), "A", (("tag", "t1"),))),
            ("To", NameAddress(SipUri(host="gw.example.com"))),
            ("Call-ID", "xyz@192.0.2.1"),
            ("CSeq", CSeq(1, "OPTIONS")),
            ("Max-Forwards", 70),
        ],
    )
    wire = request.serialize()
    assert wire.startswith(
        b"OPTIONS sip:gw.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport"
    )
    parsed = parse_message(wire)
    assert parsed == request and parsed.max_forwards == 70

    response = make_response(request, 200, to_tag="srv1", headers=[("Allow", "INVITE, ACK")])
    assert response.to.tag == "srv1" and response.from_.tag == "t1"
    assert response.via == request.via and response.cseq == request.cseq
    assert parse_message(response.serialize()) == response
    trying = make_response(request, 100, to_tag="srv1")
    assert trying.to.tag is None  # RFC 3261 §8.2.6.1: no tag on 100 Trying
    assert isinstance(trying, Response) and trying.reason == "Trying"


def test_headers_container_mutation() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("To", "<sip:x@y>")])
    h.prepend("Via", Via("TCP", "b", None, (("branch", "z9hG4bK2"),)))
    assert h.get_all("via")[0].startswith("SIP/2.0/TCP b")
    h.replace_first("Via", "SIP/2.0/TCP b;branch=z9hG4bK2;received=192.0.2.9")
    assert h.count("Via") == 2
    h.set("v", "SIP/2.0/UDP c;branch=z9hG4bK3")
    assert h.get_all("Via") == ["SIP/2.0/UDP c;branch=z9hG4bK3"] and h.items()[0][0] == "Via"
    assert h.remove("to") == 1 and "To" not in h
    with pytest.raises(LocalProtocolError):
        h.add("X-Evil", "a\r\nInjected: 1")
    with pytest.raises(LocalProtocolError):
        h.add("Content-Length", "5")
    with pytest.raises(LocalProtocolError):
        h.add("Bad Name", "x")


def test_received_and_rport_on_via() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport")
    stamped = via.with_param("received", "192.0.2.7").with_param("rport", "40000")
    assert str(stamped) == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport=40000;received=192.0.2.7"
    assert stamped.rport == 40000 and stamped.received == "192.0.2.7"


def test_ipv6_via_and_contact() -> None:
    m = parse_message(
        b"OPTIONS sip:[2001:db8::2]:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK6\r\n"
        b"From: <sip:a@[2001:db8::1]>;tag=1\r\nTo: <sip:[2001:db8::2]>\r\n"
        b"Call-ID: 6@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert m.top_via.host == "[2001:db8::1]" and m.top_via.port == 5070


def test_contact_star() -> None:
    m = parse_message(
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK7\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: 7\r\nCSeq: 2 REGISTER\r\n"
        b"Contact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"
    )
    assert m.contact == [] and m.contact_is_star and m.expires == 0
