"""SIP core micro benchmarks: parse an INVITE with SDP, build and serialize a 200 OK (target < 50 µs)."""

from __future__ import annotations

from typing import Any

from voicelive_sip.sip import Request, make_response, parse_message
from voicelive_sip.sip.dialog import Dialog
from voicelive_sip.sip.transaction import TransactionLayer

SDP = (
    b"v=0\r\no=- 1234 1234 IN IP4 192.0.2.10\r\ns=Asterisk\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 12000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
# What Asterisk's chan_pjsip sends for a trunk call, give or take a header.
INVITE = (
    b"INVITE sip:+15550100@gw.example.com:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKPj77ba24ac-3e2f-0c4d\r\n"
    b'From: "Alice" <sip:alice@pbx.example.com>;tag=9fxced76sl\r\n'
    b"To: <sip:+15550100@gw.example.com>\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060>\r\n"
    b"Call-ID: 3848276298220188511@pbx.example.com\r\n"
    b"CSeq: 25791 INVITE\r\n"
    b"Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, INFO\r\n"
    b"Supported: 100rel, timer, replaces, norefersub\r\n"
    b"Session-Expires: 1800\r\n"
    b"Min-SE: 90\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Asterisk PBX 20.5.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def _ok(request: Request) -> Any:
    return make_response(
        request,
        200,
        to_tag="a6c85cf",
        headers=[
            ("Contact", "<sip:gw@192.0.2.20:5060>"),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY"),
            ("Supported", "timer, replaces"),
            ("Content-Type", "application/sdp"),
        ],
        body=SDP,
    )


def test_parse_invite_with_sdp(benchmark: Any) -> None:
    message = benchmark(parse_message, INVITE)
    assert isinstance(message, Request) and message.body == SDP


def test_serialize_200_ok(benchmark: Any) -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    ok = _ok(request)
    wire = benchmark(ok.serialize)
    assert wire.startswith(b"SIP/2.0 200 OK\r\n")


def test_build_and_serialize_200_ok(benchmark: Any) -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    wire = benchmark(lambda: _ok(request).serialize())
    assert wire.endswith(SDP)


def test_uas_invite_transaction_round(benchmark: Any) -> None:
    """Parse the INVITE, open the server transaction (100 Trying), answer 200, create the dialog."""

    def once() -> None:
        layer = TransactionLayer()
        request = parse_message(INVITE)
        layer.receive(request, ("192.0.2.10", 5060), "UDP", 0.0)
        event = layer.next_event()
        assert isinstance(request, Request) and event is not None
        dialog = Dialog.as_uas(request, request.contact[0], local_tag="a6c85cf")
        layer.respond(event.transaction, _ok(request), 0.0)  # type: ignore[union-attr]
        assert dialog.local_tag and layer.datagrams_to_send()

    benchmark(once)
