"""Fuzzing the sans-I/O SIP core with a fake clock: mutated messages never raise out of it, and it forgets.

The harness does what `aio/endpoint.py` and `aio/incoming.py` do, with the same sans-I/O functions and in the
same order: parse (400 or drop), mandatory headers before any transaction (stateless 400 or drop), the
transaction layer, then the RFC 3261 §8.2 prechecks and an answer for every new server transaction. Seeds are
the RFC 4475 torture messages and a few well-formed requests and responses.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicelive_sip.sip import (
    MergedRequests,
    Request,
    SipParseError,
    Timers,
    TransactionLayer,
    error_response,
    make_response,
    parse_message,
    precheck,
    request_problem,
)
from voicelive_sip.sip.transaction import TransactionLimitReached
from voicelive_sip.sip.transaction_events import RequestReceived, TransactionTerminated
from voicelive_sip.sip.uas import stateless_refusal

DATA = Path(__file__).parent.parent / "data" / "rfc4475"
PEER = ("192.0.2.7", 5060)
MAX_TRANSACTIONS = 200


def _valid(method: str, branch: str) -> bytes:
    return (
        f"{method} sip:bot@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.7>;tag=f1\r\nTo: <sip:bot@192.0.2.1>\r\n"
        f"Call-ID: fuzz-{branch}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


SEEDS = [path.read_bytes() for path in sorted(DATA.glob("*.dat"))] + [
    _valid("INVITE", "inv"),
    _valid("OPTIONS", "opt"),
    _valid("BYE", "bye"),
    _valid("CANCEL", "inv"),
    _valid("ACK", "inv"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKours\r\nFrom: <sip:b@x>;tag=1\r\n"
    b"To: <sip:a@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
]


class Core:
    """The sans-I/O pieces of the user agent wired together, with a fake clock."""

    def __init__(self) -> None:
        self.layer = TransactionLayer(Timers(t1=0.5), max_transactions=MAX_TRANSACTIONS)
        self.merged = MergedRequests(max_entries=MAX_TRANSACTIONS)
        self.now = 0.0
        self.sent = 0

    def receive(self, data: bytes) -> None:
        try:
            message = parse_message(data)
        except SipParseError as error:
            self.sent += error_response(error) is not None
            return
        try:
            if isinstance(message, Request):
                problem = request_problem(message)
                if problem is not None:
                    raise problem
            self.layer.receive(message, PEER, "UDP", self.now)
        except SipParseError as error:
            if isinstance(message, Request):
                self.sent += stateless_refusal(message, error) is not None
        except TransactionLimitReached:
            pass
        self.pump()

    def pump(self) -> None:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self.serve(event)
            elif isinstance(event, TransactionTerminated):
                self.merged.discard_transaction(event.transaction)
        self.sent += len(self.layer.datagrams_to_send())

    def serve(self, event: RequestReceived) -> None:
        request = event.request
        refusal = precheck(request, self.merged)
        if refusal is not None:
            status = refusal.status_code
        elif request.method == "INVITE":
            self.merged.add(request, event.transaction)
            status = 486  # never ACKed by the fuzzer: Timer H has to clean it up
        else:
            status = 481 if request.method in ("BYE", "CANCEL", "UPDATE", "INFO") else 200
        self.layer.respond(event.transaction, make_response(request, status, to_tag="t"), self.now)

    def advance(self, until: float) -> None:
        while (deadline := self.layer.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.layer.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)


def _mutate(data: bytes, draw: st.DrawFn) -> bytes:
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["drop_line", "dup_line", "truncate", "flip", "insert", "swap_value"]))
        lines = data.split(b"\r\n")
        if kind == "drop_line" and len(lines) > 1:
            del lines[draw(st.integers(0, len(lines) - 1))]
            data = b"\r\n".join(lines)
        elif kind == "dup_line" and lines:
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            data = b"\r\n".join(lines)
        elif kind == "truncate" and data:
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data = data[:index] + bytes([draw(st.integers(0, 255))]) + data[index + 1 :]
        elif kind == "insert":
            index = draw(st.integers(0, len(data)))
            data = data[:index] + draw(st.binary(max_size=12)) + data[index:]
        elif kind == "swap_value" and lines:
            index = draw(st.integers(0, len(lines) - 1))
            name = lines[index].split(b":", 1)[0]
            value = draw(st.text(alphabet=st.characters(codec="latin-1"), max_size=20)).encode("latin-1")
            lines[index] = name + b": " + value
            data = b"\r\n".join(lines)
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_messages_never_raise_and_the_core_forgets_everything(data: st.DataObject) -> None:
    core = Core()
    count = data.draw(st.integers(1, 12))
    for _ in range(count):
        message = _mutate(data.draw(st.sampled_from(SEEDS)), data.draw)
        core.receive(message)
        if data.draw(st.booleans()):
            core.receive(message)  # a retransmission
        core.advance(core.now + data.draw(st.floats(0, 5)))
        assert len(core.layer) <= MAX_TRANSACTIONS and len(core.merged) <= MAX_TRANSACTIONS
    core.advance(core.now + 64 * 0.5 + 10)  # past Timer H, J and K of everything
    assert len(core.layer) == 0
    assert core.layer.get_timer() is None
    assert len(core.merged) == 0


def test_the_harness_does_serve_and_forget() -> None:
    """The fuzz test above would pass vacuously if nothing reached the transaction layer: show it does."""
    core = Core()
    core.receive(_valid("INVITE", "one"))
    core.receive(_valid("OPTIONS", "two"))
    core.receive(_valid("INVITE", "one").replace(b"From:", b"X-From:"))  # stateless 400, no transaction
    assert len(core.layer) == 2 and len(core.merged) == 1 and core.sent >= 3
    core.advance(core.now + 64 * 0.5 + 10)
    assert (len(core.layer), len(core.merged), core.layer.get_timer()) == (0, 0, None)
