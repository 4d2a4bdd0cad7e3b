"""RFC 3261 §17 transactions with a fake clock: exact retransmission instants, timers, matching."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import LocalProtocolError, Request, Response, Via, make_response, parse_message
from voicelive_sip.sip.transaction import (
    State,
    Timers,
    TransactionLayer,
    TransactionLimitReached,
    response_destination,
)
from voicelive_sip.sip.transaction_events import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionEvent,
    TransactionTerminated,
    TransactionTimeout,
)

PEER = ("192.0.2.20", 5060)


def request(
    method: str, branch: str | None = "z9hG4bKclient1", *, seq: int = 1, to_tag: str | None = None
) -> Request:
    via = "SIP/2.0/UDP 192.0.2.10:5060" + (f";branch={branch}" if branch else "")
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return Request(
        method,
        "sip:bob@example.com",
        [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", to),
            ("Call-ID", "call-1@192.0.2.10"),
            ("CSeq", f"{seq} {'INVITE' if method in ('ACK', 'CANCEL') else method}"),
        ],
    )


def response_to(req: Request, status: int, to_tag: str = "b1") -> Response:
    return make_response(req, status, to_tag=to_tag)


class Clock:
    """Drives a layer's single timer the way the asyncio glue does, recording when bytes go out."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer
        self.now = 0.0
        self.sent: list[tuple[float, bytes]] = []

    def flush(self) -> None:
        self.sent.extend((self.now, o.data) for o in self.layer.datagrams_to_send())

    def run_until(self, end: float) -> None:
        self.flush()
        while (deadline := self.layer.get_timer()) is not None and deadline <= end:
            self.now = deadline
            self.layer.handle_timer(self.now)
            self.flush()
        self.now = end

    def events(self) -> list[TransactionEvent]:
        out = []
        while (event := self.layer.next_event()) is not None:
            out.append(event)
        return out

    def instants(self, start_line: bytes) -> list[float]:
        return [t for t, data in self.sent if data.startswith(start_line)]


def test_invite_client_over_udp_retransmits_on_timer_a_until_timer_b() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    tx = layer.send_request(request("INVITE"), PEER, "UDP", now=0.0)
    clock.run_until(100.0)
    assert clock.instants(b"INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    events = clock.events()
    assert events == [TransactionTimeout(tx, "INVITE"), TransactionTerminated(tx)]
    assert layer.get_timer() is None and len(layer) == 0


def test_invite_client_over_tcp_never_retransmits() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    tx = layer.send_request(request("INVITE"), PEER, "TCP", now=0.0)
    assert layer.get_timer() == 32.0
    clock.run_until(100.0)
    assert clock.instants(b"INVITE") == [0.0]
    assert TransactionTimeout(tx, "INVITE") in clock.events()


def test_non_invite_client_timer_e_doubles_up_to_t2_and_stays() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    tx = layer.send_request(request("OPTIONS"), PEER, "UDP", now=0.0)
    clock.run_until(100.0)
    assert clock.instants(b"OPTIONS") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert clock.events() == [TransactionTimeout(tx, "OPTIONS"), TransactionTerminated(tx)]


def test_non_invite_client_retransmits_every_t2_after_a_provisional() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    req = request("REGISTER")
    tx = layer.send_request(req, PEER, "UDP", now=0.0)
    clock.run_until(0.2)
    layer.receive(response_to(req, 100), PEER, "UDP", now=0.2)
    clock.run_until(13.0)
    assert clock.instants(b"REGISTER") == [0.0, 0.5, 4.5, 8.5, 12.5]
    layer.receive(response_to(req, 200), PEER, "UDP", now=13.0)
    assert layer.client_transaction(tx) is not None
    assert layer.client_transaction(tx).state is State.COMPLETED  # type: ignore[union-attr]
    clock.now = 13.0
    assert layer.get_timer() == 18.0  # Timer K = T4
    clock.run_until(18.0)
    kinds = [type(e) for e in clock.events()]
    assert kinds == [ResponseReceived, ResponseReceived, TransactionTerminated]


def test_non_invite_client_over_tcp_terminates_at_once_on_final() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    tx = layer.send_request(req, PEER, "TCP", now=0.0)
    layer.receive(response_to(req, 200), PEER, "TCP", now=1.0)
    assert layer.get_timer() == 1.0  # Timer K = 0 on a reliable transport
    layer.handle_timer(1.0)
    assert layer.client_transaction(tx) is None


def test_invite_client_acks_a_failure_and_absorbs_its_retransmissions() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    req = request("INVITE")
    tx = layer.send_request(req, PEER, "UDP", now=0.0)
    layer.receive(response_to(req, 180), PEER, "UDP", now=0.1)
    clock.run_until(2.0)
    assert clock.instants(b"INVITE") == [0.0]  # no retransmission in Proceeding
    busy = response_to(req, 486)
    layer.receive(busy, PEER, "UDP", now=2.0)
    clock.flush()
    ack = parse_message(clock.sent[-1][1])
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == "z9hG4bKclient1"  # RFC 3261 §17.1.1.3: same branch as the INVITE
    assert ack.to.tag == "b1" and str(ack.cseq) == "1 ACK" and str(ack.uri) == str(req.uri)
    layer.receive(busy, PEER, "UDP", now=3.0)
    clock.now = 3.0
    clock.flush()
    assert len(clock.instants(b"ACK")) == 2
    clock.run_until(40.0)
    events = clock.events()
    assert [e.response.status_code for e in events if isinstance(e, ResponseReceived)] == [180, 486]
    assert events[-1] == TransactionTerminated(tx)
    assert clock.sent[-1][0] == 3.0  # nothing after the second ACK; Timer D ended it at 34 s


def test_invite_client_passes_every_2xx_up_while_accepted() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    req = request("INVITE")
    tx = layer.send_request(req, PEER, "UDP", now=0.0)
    ok = response_to(req, 200)
    layer.receive(ok, PEER, "UDP", now=1.0)
    layer.receive(ok, PEER, "UDP", now=1.5)
    layer.receive(response_to(req, 200, to_tag="fork2"), PEER, "UDP", now=1.6)
    assert layer.get_timer() == 33.0  # Timer M = 64·T1 after the first 2xx
    clock.run_until(40.0)
    events = clock.events()
    oks = [e for e in events if isinstance(e, ResponseReceived)]
    assert [e.response.to.tag for e in oks] == ["b1", "b1", "fork2"]
    assert events[-1] == TransactionTerminated(tx)
    assert clock.instants(b"ACK") == []  # the 2xx ACK is the dialog layer's job


def test_invite_server_sends_trying_and_retransmits_a_failure_until_ack() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE")
    layer.receive(invite, PEER, "UDP", now=0.0)
    (event,) = clock.events()
    assert isinstance(event, RequestReceived) and event.cancels is None
    clock.flush()
    assert clock.instants(b"SIP/2.0 100") == [0.0]
    layer.receive(invite, PEER, "UDP", now=0.3)  # a retransmitted INVITE gets the 100 again
    clock.now = 0.3
    clock.flush()
    assert clock.instants(b"SIP/2.0 100") == [0.0, 0.3]
    clock.now = 1.0
    layer.respond(event.transaction, response_to(invite, 486), now=1.0)
    clock.run_until(12.6)
    assert clock.instants(b"SIP/2.0 486") == [1.0, 1.5, 2.5, 4.5, 8.5, 12.5]  # Timer G, capped at T2
    ack = request("ACK", seq=1, to_tag="b1")
    layer.receive(ack, PEER, "UDP", now=12.6)
    assert layer.server_transaction(event.transaction).state is State.CONFIRMED  # type: ignore[union-attr]
    clock.now = 12.6
    assert layer.get_timer() == pytest.approx(17.6)  # Timer I = T4
    clock.run_until(30.0)
    assert clock.instants(b"SIP/2.0 486")[-1] == 12.5
    assert clock.events() == [TransactionTerminated(event.transaction)]


def test_invite_server_timer_h_reports_a_missing_ack() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE")
    layer.receive(invite, PEER, "UDP", now=0.0)
    (event,) = clock.events()
    layer.respond(event.transaction, response_to(invite, 603), now=0.0)
    clock.run_until(40.0)
    assert clock.events() == [
        TransactionTimeout(event.transaction, "INVITE"),
        TransactionTerminated(event.transaction),
    ]
    assert clock.instants(b"SIP/2.0 603")[-1] == 31.5


def test_invite_server_retransmits_2xx_until_the_end_to_end_ack() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE")
    layer.receive(invite, PEER, "UDP", now=0.0)
    (event,) = clock.events()
    layer.respond(event.transaction, response_to(invite, 180), now=0.0)
    layer.respond(event.transaction, response_to(invite, 200), now=2.0)
    clock.now = 2.0
    clock.run_until(10.0)
    assert clock.instants(b"SIP/2.0 200") == [2.0, 2.5, 3.5, 5.5, 9.5]
    layer.receive(invite, PEER, "UDP", now=10.0)  # RFC 6026: absorbed in Accepted
    ack = request("ACK", branch="z9hG4bKdifferent", to_tag="b1")
    layer.receive(ack, PEER, "UDP", now=10.0)
    layer.receive(ack, PEER, "UDP", now=10.1)  # a retransmitted ACK is reported once
    clock.run_until(60.0)
    assert clock.instants(b"SIP/2.0 200") == [2.0, 2.5, 3.5, 5.5, 9.5]
    events = clock.events()
    assert [type(e) for e in events] == [AckReceived, TransactionTerminated]
    assert isinstance(events[0], AckReceived) and events[0].transaction == event.transaction


def test_invite_server_without_ack_reports_ack_timeout() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE")
    layer.receive(invite, PEER, "UDP", now=0.0)
    (event,) = clock.events()
    layer.respond(event.transaction, response_to(invite, 200), now=0.0)
    clock.run_until(40.0)
    assert clock.instants(b"SIP/2.0 200") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    events = clock.events()
    assert events == [AckTimeout(event.transaction, invite), TransactionTerminated(event.transaction)]


def test_non_invite_server_absorbs_then_replays_the_final_response() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    options = request("OPTIONS")
    layer.receive(options, PEER, "UDP", now=0.0)
    (event,) = clock.events()
    layer.receive(options, PEER, "UDP", now=0.1)  # Trying: a retransmission is discarded
    clock.flush()
    assert clock.sent == []
    clock.now = 0.2
    layer.respond(event.transaction, response_to(options, 200), now=0.2)
    clock.flush()
    clock.now = 0.6
    layer.receive(options, PEER, "UDP", now=0.6)
    clock.run_until(100.0)
    assert clock.instants(b"SIP/2.0 200") == [0.2, 0.6]
    assert layer.get_timer() is None  # Timer J fired at 0.2 + 64·T1
    assert clock.events() == [TransactionTerminated(event.transaction)]
    with pytest.raises(LocalProtocolError):
        layer.respond(event.transaction, response_to(options, 200), now=1.0)


def test_a_second_final_response_is_a_local_error() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE")
    layer.receive(invite, PEER, "UDP", now=0.0)
    (event,) = clock.events()
    layer.respond(event.transaction, response_to(invite, 486), now=0.0)
    with pytest.raises(LocalProtocolError):
        layer.respond(event.transaction, response_to(invite, 200), now=0.1)


def test_cancel_is_matched_to_its_invite() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE")
    layer.receive(invite, PEER, "UDP", now=0.0)
    cancel = request("CANCEL")
    layer.receive(cancel, PEER, "UDP", now=1.0)
    first, second = clock.events()
    assert isinstance(first, RequestReceived) and isinstance(second, RequestReceived)
    assert second.request.method == "CANCEL" and second.cancels == first.transaction
    assert second.transaction != first.transaction


def test_rfc2543_requests_without_a_cookie_are_matched_by_their_identifiers() -> None:
    layer = TransactionLayer()
    clock = Clock(layer)
    invite = request("INVITE", branch=None)
    layer.receive(invite, PEER, "UDP", now=0.0)
    layer.receive(invite, PEER, "UDP", now=0.5)
    (event,) = clock.events()  # the retransmission matched the same transaction
    layer.respond(event.transaction, response_to(invite, 404), now=1.0)
    ack = request("ACK", branch=None, to_tag="b1")
    layer.receive(ack, PEER, "UDP", now=1.2)
    assert layer.server_transaction(event.transaction).state is State.CONFIRMED  # type: ignore[union-attr]


def test_stray_and_multi_via_responses_are_dropped() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.send_request(req, PEER, "UDP", now=0.0)
    stray = response_to(request("OPTIONS", branch="z9hG4bKother"), 200)
    layer.receive(stray, PEER, "UDP", now=0.1)
    two_vias = response_to(req, 200)
    two_vias.headers.add("Via", "SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23")
    layer.receive(two_vias, PEER, "UDP", now=0.2)
    events = [layer.next_event(), layer.next_event()]
    assert [e.reason for e in events if isinstance(e, StrayResponse)] == [
        "no matching transaction",
        "more than one Via",
    ]


def test_client_requests_need_a_cookie_branch_and_no_ack() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS", branch="1234"), PEER, "UDP", now=0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK", to_tag="x"), PEER, "UDP", now=0.0)


def test_transaction_limit() -> None:
    layer = TransactionLayer(max_transactions=2)
    layer.send_request(request("OPTIONS", branch="z9hG4bKa"), PEER, "UDP", now=0.0)
    layer.send_request(request("OPTIONS", branch="z9hG4bKb"), PEER, "UDP", now=0.0)
    with pytest.raises(TransactionLimitReached):
        layer.send_request(request("OPTIONS", branch="z9hG4bKc"), PEER, "UDP", now=0.0)


def test_custom_t1_scales_every_timer() -> None:
    layer = TransactionLayer(Timers(t1=0.1, t2=0.4, t4=0.5))
    clock = Clock(layer)
    layer.send_request(request("INVITE"), PEER, "UDP", now=0.0)
    clock.run_until(10.0)
    assert clock.instants(b"INVITE") == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3])


@pytest.mark.parametrize(
    ("via", "source", "transport", "expected"),
    [
        (
            "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1;rport",
            ("192.0.2.7", 40000),
            "UDP",
            ("192.0.2.7", 40000),
        ),
        ("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1", ("192.0.2.7", 40000), "UDP", ("192.0.2.7", 5070)),
        ("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1", ("192.0.2.7", 40000), "UDP", ("192.0.2.7", 5060)),
        ("SIP/2.0/UDP h;branch=z9hG4bK1;maddr=239.1.1.1", ("192.0.2.7", 1), "UDP", ("239.1.1.1", 5060)),
        ("SIP/2.0/TCP 10.0.0.5:5070;branch=z9hG4bK1", ("192.0.2.7", 40000), "TCP", ("192.0.2.7", 40000)),
    ],
)
def test_response_destination(
    via: str, source: tuple[str, int], transport: str, expected: tuple[str, int]
) -> None:
    assert response_destination(Via.parse(via), source, transport) == expected


@pytest.mark.parametrize("missing", ["From", "Call-ID", "To", "CSeq"])
def test_a_server_transaction_for_a_malformed_invite_ends_cleanly_and_later_timers_still_fire(
    missing: str,
) -> None:
    layer = TransactionLayer(Timers())
    clock = Clock(layer)
    bad = request("INVITE", "z9hG4bKbad")
    bad.headers.remove(missing)
    layer.receive(bad, PEER, "UDP", clock.now)
    (received,) = clock.events()
    assert isinstance(received, RequestReceived)
    answer = Response(400, "Bad Request")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in bad.headers.get_all(name):
            answer.headers.add(name, value)
    layer.respond(received.transaction, answer, clock.now)
    good = request("OPTIONS", "z9hG4bKgood")
    layer.receive(good, PEER, "UDP", 1.0)
    (options,) = clock.events()
    assert isinstance(options, RequestReceived)
    layer.respond(options.transaction, response_to(good, 200), 1.0)
    # Timer H (64·T1) and I, then Timer J of the OPTIONS: every one fires, none raises, both end.
    clock.run_until(100.0)
    ended = [e.transaction for e in clock.events() if isinstance(e, TransactionTerminated)]
    assert sorted(ended) == sorted([received.transaction, options.transaction])
    assert len(layer) == 0 and layer.get_timer() is None
