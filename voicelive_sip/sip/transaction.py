"""RFC 3261 §17 transactions (with RFC 6026's Accepted state), sans-I/O.

Messages and `now` go in; `datagrams_to_send()`, `next_event()` and `get_timer()` come out, as in aioquic.
Each of the four state machines is a transition table (h11 style): a trigger with no entry for the current
state is absorbed when it came from the network and is a `LocalProtocolError` when the TU asked for it.
"""

from __future__ import annotations

import enum
import heapq
import secrets
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

from ..errors import LocalProtocolError
from .headers import CSeq, Via
from .message import Request, Response, make_response
from .transaction_events import (
    AckReceived,
    AckTimeout,
    Address,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionEvent,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
)

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 timer values in seconds; T1 is the RTT estimate that all others derive from."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Trigger(enum.Enum):
    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_FINAL = "300-699 received"
    RECV_REQUEST = "request retransmission"
    RECV_ACK = "ACK received"
    SEND_1XX = "TU sends 1xx"
    SEND_2XX = "TU sends 2xx"
    SEND_FINAL = "TU sends 300-699"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TIMER_2XX = "2xx retransmit"
    TRANSPORT_ERROR = "transport error"


S = State
T = Trigger
Table = dict[State, dict[Trigger, State]]

# RFC 3261 Figure 5 with RFC 6026 §7.2 (Accepted state, Timer M).
INVITE_CLIENT: Table = {
    S.CALLING: {
        T.TIMER_A: S.CALLING,
        T.TIMER_B: S.TERMINATED,
        T.RECV_1XX: S.PROCEEDING,
        T.RECV_2XX: S.ACCEPTED,
        T.RECV_FINAL: S.COMPLETED,
        T.TRANSPORT_ERROR: S.TERMINATED,
    },
    S.PROCEEDING: {T.RECV_1XX: S.PROCEEDING, T.RECV_2XX: S.ACCEPTED, T.RECV_FINAL: S.COMPLETED},
    S.COMPLETED: {T.RECV_FINAL: S.COMPLETED, T.TIMER_D: S.TERMINATED, T.TRANSPORT_ERROR: S.TERMINATED},
    S.ACCEPTED: {T.RECV_2XX: S.ACCEPTED, T.TIMER_M: S.TERMINATED},
}
# RFC 3261 Figure 6.
NON_INVITE_CLIENT: Table = {
    S.TRYING: {
        T.TIMER_E: S.TRYING,
        T.TIMER_F: S.TERMINATED,
        T.RECV_1XX: S.PROCEEDING,
        T.RECV_2XX: S.COMPLETED,
        T.RECV_FINAL: S.COMPLETED,
        T.TRANSPORT_ERROR: S.TERMINATED,
    },
    S.PROCEEDING: {
        T.TIMER_E: S.PROCEEDING,
        T.TIMER_F: S.TERMINATED,
        T.RECV_1XX: S.PROCEEDING,
        T.RECV_2XX: S.COMPLETED,
        T.RECV_FINAL: S.COMPLETED,
        T.TRANSPORT_ERROR: S.TERMINATED,
    },
    S.COMPLETED: {T.TIMER_K: S.TERMINATED},
}
# RFC 3261 Figure 7 with RFC 6026 §7.1 (Accepted state, Timer L). TIMER_2XX is the UAS core's 2xx
# retransmission (RFC 3261 §13.3.1.4), kept here so one object owns everything an INVITE answer needs.
INVITE_SERVER: Table = {
    S.PROCEEDING: {
        T.RECV_REQUEST: S.PROCEEDING,
        T.SEND_1XX: S.PROCEEDING,
        T.SEND_2XX: S.ACCEPTED,
        T.SEND_FINAL: S.COMPLETED,
        T.TRANSPORT_ERROR: S.TERMINATED,
    },
    S.COMPLETED: {
        T.RECV_REQUEST: S.COMPLETED,
        T.TIMER_G: S.COMPLETED,
        T.RECV_ACK: S.CONFIRMED,
        T.TIMER_H: S.TERMINATED,
        T.TRANSPORT_ERROR: S.TERMINATED,
    },
    S.CONFIRMED: {T.RECV_ACK: S.CONFIRMED, T.TIMER_I: S.TERMINATED},
    S.ACCEPTED: {
        T.RECV_REQUEST: S.ACCEPTED,
        T.RECV_ACK: S.ACCEPTED,
        T.TIMER_2XX: S.ACCEPTED,
        T.TIMER_L: S.TERMINATED,
        T.TRANSPORT_ERROR: S.ACCEPTED,
    },
}
# RFC 3261 Figure 8.
NON_INVITE_SERVER: Table = {
    S.TRYING: {T.SEND_1XX: S.PROCEEDING, T.SEND_2XX: S.COMPLETED, T.SEND_FINAL: S.COMPLETED},
    S.PROCEEDING: {
        T.RECV_REQUEST: S.PROCEEDING,
        T.SEND_1XX: S.PROCEEDING,
        T.SEND_2XX: S.COMPLETED,
        T.SEND_FINAL: S.COMPLETED,
        T.TRANSPORT_ERROR: S.TERMINATED,
    },
    S.COMPLETED: {T.RECV_REQUEST: S.COMPLETED, T.TIMER_J: S.TERMINATED, T.TRANSPORT_ERROR: S.TERMINATED},
}


def new_branch() -> str:
    """A fresh RFC 3261 branch id: the magic cookie plus 80 random bits."""
    return MAGIC_COOKIE + secrets.token_hex(10)


def _response_trigger(status_code: int, received: bool) -> Trigger:
    if status_code < 200:
        return T.RECV_1XX if received else T.SEND_1XX
    if status_code < 300:
        return T.RECV_2XX if received else T.SEND_2XX
    return T.RECV_FINAL if received else T.SEND_FINAL


def response_destination(via: Via, source: Address, transport: str) -> Address:
    """Where a UAS sends responses (RFC 3261 §18.2.2 with RFC 3581 rport)."""
    if transport != "UDP":
        return source  # the same connection; the transport layer reconnects to sent-by if it has closed
    if via.maddr:
        return via.maddr, via.port or 5060
    if via.wants_rport:
        return source
    return source[0], via.port or 5060


class Transaction:
    """What the four machines share: state, table, timers, the messages to retransmit."""

    TABLE: ClassVar[Table]
    INITIAL: ClassVar[State]

    def __init__(
        self, layer: TransactionLayer, key: str, request: Request, destination: Address, transport: str
    ):
        self.layer = layer
        self.key = key
        self.request = request
        self.destination = destination
        self.transport = transport
        self.reliable = transport != "UDP"
        self.state = self.INITIAL
        self.deadlines: dict[Trigger, float] = {}
        self.last_response: Response | None = None
        self._last_response_bytes: bytes | None = None
        # The table keys this transaction was filed under, kept so that forgetting it never re-reads headers
        # of a request that may be malformed (a 400 for a missing From still ends in `_terminated`).
        self.index_key: Hashable | None = None
        self.dialog_key: tuple[str, int, str, str] | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def timers(self) -> Timers:
        return self.layer.timers

    def fire(self, trigger: Trigger, now: float, message: Request | Response | None = None) -> bool:
        """Apply `trigger`; return False (and change nothing) when the table has no such transition."""
        next_state = self.TABLE.get(self.state, {}).get(trigger)
        if next_state is None:
            return False
        previous = self.state
        self.state = next_state
        self.act(previous, trigger, now, message)
        if next_state is S.TERMINATED:
            self.deadlines.clear()
            self.layer._terminated(self)
        return True

    def act(self, previous: State, trigger: Trigger, now: float, message: Request | Response | None) -> None:
        raise NotImplementedError

    def start_timer(self, trigger: Trigger, deadline: float) -> None:
        self.deadlines[trigger] = deadline
        self.layer._schedule(self, trigger, deadline)

    def stop_timer(self, *triggers: Trigger) -> None:
        for trigger in triggers:
            self.deadlines.pop(trigger, None)

    def send(self, data: bytes) -> None:
        self.layer._send(Outgoing(data, self.destination, self.transport, self.key))

    def send_response(self, response: Response) -> None:
        self.last_response = response
        self._last_response_bytes = response.serialize()
        self.send(self._last_response_bytes)

    def resend_response(self) -> None:
        if self._last_response_bytes is not None:
            self.send(self._last_response_bytes)


class ClientInviteTransaction(Transaction):
    TABLE = INVITE_CLIENT
    INITIAL = S.CALLING

    ack_bytes = b""

    def begin(self, now: float) -> None:
        self.request_bytes = self.request.serialize()
        self.interval_a = self.timers.t1
        self.send(self.request_bytes)
        if not self.reliable:
            self.start_timer(T.TIMER_A, now + self.interval_a)
        self.start_timer(T.TIMER_B, now + 64 * self.timers.t1)

    def act(self, previous: State, trigger: Trigger, now: float, message: Request | Response | None) -> None:
        if trigger is T.TIMER_A:
            self.send(self.request_bytes)
            # Timer A doubles without limit (RFC 3261 §17.1.1.2); Timer B ends it at 64·T1.
            self.interval_a *= 2
            self.start_timer(T.TIMER_A, now + self.interval_a)
        elif trigger is T.TIMER_B:
            self.layer._emit(TransactionTimeout(self.key, self.method))
        elif trigger is T.TRANSPORT_ERROR:
            self.layer._emit(TransportFailed(self.key, self.method))
        elif trigger is T.RECV_1XX:
            self.stop_timer(T.TIMER_A, T.TIMER_B)
            assert isinstance(message, Response)
            self.layer._emit(ResponseReceived(message, self.key))
        elif trigger is T.RECV_2XX:
            assert isinstance(message, Response)
            if previous is not S.ACCEPTED:
                self.stop_timer(T.TIMER_A, T.TIMER_B)
                self.start_timer(T.TIMER_M, now + 64 * self.timers.t1)
            # RFC 6026 §7.2: every 2xx (forked or retransmitted) goes to the TU, which ACKs it.
            self.layer._emit(ResponseReceived(message, self.key))
        elif trigger is T.RECV_FINAL:
            assert isinstance(message, Response)
            if previous is S.COMPLETED:
                self.send(self.ack_bytes)  # a retransmitted final response: ACK again, tell nobody
                return
            self.stop_timer(T.TIMER_A, T.TIMER_B)
            self.ack_bytes = self._ack_for(message).serialize()
            self.send(self.ack_bytes)
            self.start_timer(T.TIMER_D, now + (0.0 if self.reliable else 32.0))
            self.layer._emit(ResponseReceived(message, self.key))

    def _ack_for(self, response: Response) -> Request:
        """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same branch, To from the response."""
        invite = self.request
        ack = Request("ACK", invite.uri)
        ack.headers.add("Via", invite.top_via)
        for name in ("Route",):
            for value in invite.headers.get_all(name):
                ack.headers.add(name, value)
        ack.headers.add("Max-Forwards", 70)
        ack.headers.add("From", invite.from_)
        ack.headers.add("To", response.to)
        ack.headers.add("Call-ID", invite.call_id)
        ack.headers.add("CSeq", CSeq(invite.cseq.seq, "ACK"))
        return ack


class ClientNonInviteTransaction(Transaction):
    TABLE = NON_INVITE_CLIENT
    INITIAL = S.TRYING

    def begin(self, now: float) -> None:
        self.request_bytes = self.request.serialize()
        self.interval_e = self.timers.t1
        self.send(self.request_bytes)
        if not self.reliable:
            self.start_timer(T.TIMER_E, now + self.interval_e)
        self.start_timer(T.TIMER_F, now + 64 * self.timers.t1)

    def act(self, previous: State, trigger: Trigger, now: float, message: Request | Response | None) -> None:
        if trigger is T.TIMER_E:
            self.send(self.request_bytes)
            # RFC 3261 §17.1.2.2: E doubles up to T2 in Trying and is T2 once a provisional arrived.
            if previous is S.PROCEEDING:
                self.interval_e = self.timers.t2
            else:
                self.interval_e = min(2 * self.interval_e, self.timers.t2)
            self.start_timer(T.TIMER_E, now + self.interval_e)
        elif trigger is T.TIMER_F:
            self.layer._emit(TransactionTimeout(self.key, self.method))
        elif trigger is T.TRANSPORT_ERROR:
            self.layer._emit(TransportFailed(self.key, self.method))
        elif trigger is T.RECV_1XX:
            assert isinstance(message, Response)
            self.layer._emit(ResponseReceived(message, self.key))
        elif trigger in (T.RECV_2XX, T.RECV_FINAL):
            assert isinstance(message, Response)
            self.stop_timer(T.TIMER_E, T.TIMER_F)
            self.start_timer(T.TIMER_K, now + (0.0 if self.reliable else self.timers.t4))
            self.layer._emit(ResponseReceived(message, self.key))


class ServerInviteTransaction(Transaction):
    TABLE = INVITE_SERVER
    INITIAL = S.PROCEEDING

    def begin(self, now: float) -> None:
        # RFC 3261 §17.2.1: answer 100 Trying at once rather than wait 200 ms for the TU.
        self.send_response(make_response(self.request, 100))
        self.acked = False

    def act(self, previous: State, trigger: Trigger, now: float, message: Request | Response | None) -> None:
        t1 = self.timers.t1
        if trigger is T.RECV_REQUEST:
            if previous is not S.ACCEPTED:  # RFC 6026 §7.1: absorbed in Accepted
                self.resend_response()
        elif trigger in (T.SEND_1XX, T.SEND_2XX, T.SEND_FINAL):
            assert isinstance(message, Response)
            self.send_response(message)
            if trigger is T.SEND_2XX:
                self.interval = t1
                if not self.reliable:
                    self.start_timer(T.TIMER_2XX, now + self.interval)
                self.start_timer(T.TIMER_L, now + 64 * t1)
            elif trigger is T.SEND_FINAL:
                self.interval = t1
                if not self.reliable:
                    self.start_timer(T.TIMER_G, now + self.interval)
                self.start_timer(T.TIMER_H, now + 64 * t1)
        elif trigger in (T.TIMER_G, T.TIMER_2XX):
            if trigger is T.TIMER_2XX and self.acked:
                return
            self.resend_response()
            self.interval = min(2 * self.interval, self.timers.t2)
            self.start_timer(trigger, now + self.interval)
        elif trigger is T.RECV_ACK:
            assert isinstance(message, Request)
            if previous is S.ACCEPTED:
                if not self.acked:
                    self.acked = True
                    self.stop_timer(T.TIMER_2XX)
                    self.layer._emit(AckReceived(message, self.key, self.destination, self.transport))
            elif previous is S.COMPLETED:
                self.stop_timer(T.TIMER_G, T.TIMER_H)
                self.start_timer(T.TIMER_I, now + (0.0 if self.reliable else self.timers.t4))
        elif trigger is T.TIMER_H:
            self.layer._emit(TransactionTimeout(self.key, self.method))
        elif trigger is T.TIMER_L:
            if not self.acked:
                self.layer._emit(AckTimeout(self.key, self.request))
        elif trigger is T.TRANSPORT_ERROR:
            self.layer._emit(TransportFailed(self.key, self.method))


class ServerNonInviteTransaction(Transaction):
    TABLE = NON_INVITE_SERVER
    INITIAL = S.TRYING

    def begin(self, now: float) -> None:
        pass

    def act(self, previous: State, trigger: Trigger, now: float, message: Request | Response | None) -> None:
        if trigger is T.RECV_REQUEST:
            self.resend_response()
        elif trigger in (T.SEND_1XX, T.SEND_2XX, T.SEND_FINAL):
            assert isinstance(message, Response)
            self.send_response(message)
            if trigger is not T.SEND_1XX:
                self.start_timer(T.TIMER_J, now + (0.0 if self.reliable else 64 * self.timers.t1))
        elif trigger is T.TRANSPORT_ERROR:
            self.layer._emit(TransportFailed(self.key, self.method))


ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction
ServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction


class TransactionLimitReached(LocalProtocolError):
    """More transactions than `max_transactions` would be open."""


class TransactionLayer:
    """All transactions of one user agent, with one timer: the nearest deadline of any of them."""

    def __init__(
        self, timers: Timers | None = None, *, max_transactions: int = 10000, max_events: int = 100000
    ):
        self.timers = timers or Timers()
        self.max_transactions = max_transactions
        self._client: dict[str, ClientTransaction] = {}
        self._server: dict[str, ServerTransaction] = {}
        self._server_index: dict[Hashable, str] = {}
        self._accepted_by_dialog: dict[tuple[str, int, str, str], str] = {}
        self._heap: list[tuple[float, int, Transaction, Trigger]] = []
        self._seq = 0
        self._outgoing: list[Outgoing] = []
        self._events: deque[TransactionEvent] = deque(maxlen=max_events)

    # -- output ------------------------------------------------------------------------------------------
    def datagrams_to_send(self) -> list[Outgoing]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or None."""
        heap = self._heap
        while heap:
            deadline, _, tx, trigger = heap[0]
            if tx.deadlines.get(trigger) == deadline:
                return deadline
            heapq.heappop(heap)  # stale: the timer was stopped or re-armed
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, tx, trigger = heapq.heappop(heap)
            if tx.deadlines.get(trigger) != deadline:
                continue
            del tx.deadlines[trigger]
            # Fire at the deadline itself, not at a late `now`: retransmission schedules stay exact.
            tx.fire(trigger, deadline)

    # -- client side -------------------------------------------------------------------------------------
    def send_request(self, request: Request, destination: Address, transport: str, now: float) -> str:
        """Start a client transaction for `request` (whose top Via carries our branch); return its id."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK is not a transaction; use send_stateless()")
        self._check_capacity()
        via = request.top_via
        if not via.is_rfc3261_branch:
            raise LocalProtocolError("client requests need an RFC 3261 branch (z9hG4bK...)")
        key = f"{via.branch}|{request.method}"
        if key in self._client:
            raise LocalProtocolError(f"a client transaction {key} already exists")
        tx: ClientTransaction
        if request.method == "INVITE":
            tx = ClientInviteTransaction(self, key, request, destination, transport)
        else:
            tx = ClientNonInviteTransaction(self, key, request, destination, transport)
        self._client[key] = tx
        tx.begin(now)
        return key

    def send_stateless(self, message: Request | Response, destination: Address, transport: str) -> None:
        """Send outside any transaction: the ACK for a 2xx, a stateless rejection."""
        self._send(Outgoing(message.serialize(), destination, transport))

    def transport_error(self, transaction: str, now: float) -> None:
        tx = self._client.get(transaction) or self._server.get(transaction)
        if tx is not None:
            tx.fire(T.TRANSPORT_ERROR, now)

    def client_transaction(self, transaction: str) -> ClientTransaction | None:
        return self._client.get(transaction)

    # -- server side -------------------------------------------------------------------------------------
    def respond(self, transaction: str, response: Response, now: float) -> None:
        """Send `response` on a server transaction (retransmissions are handled here)."""
        tx = self._server.get(transaction)
        if tx is None:
            raise LocalProtocolError(f"no server transaction {transaction}")
        if not tx.fire(_response_trigger(response.status_code, received=False), now, response):
            raise LocalProtocolError(f"cannot send {response.status_code} in state {tx.state.value}")
        if isinstance(tx, ServerInviteTransaction) and 200 <= response.status_code < 300:
            to_tag = response.to.tag or ""
            dialog_key = (tx.request.call_id, tx.request.cseq.seq, tx.request.from_.tag or "", to_tag)
            self._accepted_by_dialog[dialog_key] = tx.key
            tx.dialog_key = dialog_key

    def acknowledge(self, transaction: str) -> None:
        """Stop resending a 2xx whose ACK will not come (the dialog already ended with BYE)."""
        tx = self._server.get(transaction)
        if isinstance(tx, ServerInviteTransaction) and tx.state is S.ACCEPTED:
            tx.acked = True
            tx.stop_timer(T.TIMER_2XX)

    def server_transaction(self, transaction: str) -> ServerTransaction | None:
        return self._server.get(transaction)

    # -- input -------------------------------------------------------------------------------------------
    def receive(self, message: Request | Response, source: Address, transport: str, now: float) -> None:
        """Feed a parsed message from the network."""
        if isinstance(message, Response):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, transport, now)

    def _receive_response(self, response: Response, source: Address, now: float) -> None:
        vias = response.via
        if len(vias) != 1:
            # RFC 3261 §8.1.3.3: a UAC discards a response with more than one Via.
            self._emit(StrayResponse(response, source, "more than one Via"))
            return
        key = f"{vias[0].branch}|{response.cseq.method}"
        tx = self._client.get(key)
        if tx is None:
            self._emit(StrayResponse(response, source, "no matching transaction"))
            return
        tx.fire(_response_trigger(response.status_code, received=True), now, response)

    def _server_key(self, request: Request, method: str) -> Hashable:
        via = request.top_via
        if via.is_rfc3261_branch:
            return (via.branch, via.host.lower(), via.port, method)
        # RFC 3261 §17.2.3: RFC 2543 matching for requests without the magic cookie.
        return (
            "2543",
            str(request.uri),
            request.from_.tag,
            request.call_id,
            request.cseq.seq,
            method,
            str(via),
        )

    def _receive_request(self, request: Request, source: Address, transport: str, now: float) -> None:
        method = request.method
        lookup = "INVITE" if method == "ACK" else method
        existing_key = self._server_index.get(self._server_key(request, lookup))
        existing = self._server.get(existing_key) if existing_key is not None else None
        if method == "ACK":
            if existing is not None and existing.fire(T.RECV_ACK, now, request):
                return
            # An ACK for a 2xx has its own branch (RFC 3261 §13.2.2.4): match it by dialog.
            dialog_key = (request.call_id, request.cseq.seq, request.from_.tag or "", request.to.tag or "")
            accepted = self._accepted_by_dialog.get(dialog_key)
            accepted_tx = self._server.get(accepted) if accepted is not None else None
            if accepted_tx is not None:
                accepted_tx.fire(T.RECV_ACK, now, request)
            else:
                self._emit(AckReceived(request, None, source, transport))
            return
        if existing is not None:
            existing.fire(T.RECV_REQUEST, now, request)
            return
        self._check_capacity(method)
        destination = response_destination(request.top_via, source, transport)
        key = f"s{self._next_seq()}|{method}"
        tx: ServerTransaction
        if method == "INVITE":
            tx = ServerInviteTransaction(self, key, request, destination, transport)
        else:
            tx = ServerNonInviteTransaction(self, key, request, destination, transport)
        self._server[key] = tx
        tx.index_key = self._server_key(request, method)
        self._server_index[tx.index_key] = key
        cancels = None
        if method == "CANCEL":
            # RFC 3261 §9.2: the CANCEL matches the INVITE with the same transaction identifiers.
            cancels = self._server_index.get(self._server_key(request, "INVITE"))
        tx.begin(now)
        self._emit(RequestReceived(request, key, source, transport, cancels))

    def cancelled_invite(self, cancel: Request) -> str | None:
        """The INVITE server transaction a CANCEL matches (RFC 3261 §9.2), or None."""
        return self._server_index.get(self._server_key(cancel, "INVITE"))

    # -- internals ---------------------------------------------------------------------------------------
    def _check_capacity(self, method: str = "INVITE") -> None:
        # The last tenth of the table is kept for INVITEs (and our own requests): a flood of BYE, CANCEL or
        # OPTIONS can fill the rest, never the room a real call needs.
        limit = self.max_transactions
        if method != "INVITE":
            limit -= max(1, limit // 10)
        if len(self._client) + len(self._server) >= limit:
            raise TransactionLimitReached(f"{limit} transactions open")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _schedule(self, tx: Transaction, trigger: Trigger, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, self._next_seq(), tx, trigger))

    def _send(self, outgoing: Outgoing) -> None:
        self._outgoing.append(outgoing)

    def _emit(self, event: TransactionEvent) -> None:
        self._events.append(event)

    def _terminated(self, tx: Transaction) -> None:
        if isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction):
            self._client.pop(tx.key, None)
        else:
            self._server.pop(tx.key, None)
            if tx.index_key is not None and self._server_index.get(tx.index_key) == tx.key:
                del self._server_index[tx.index_key]
            if tx.dialog_key is not None and self._accepted_by_dialog.get(tx.dialog_key) == tx.key:
                del self._accepted_by_dialog[tx.dialog_key]
        self._emit(TransactionTerminated(tx.key))

    def __len__(self) -> int:
        return len(self._client) + len(self._server)


__all__ = [
    "INVITE_CLIENT",
    "INVITE_SERVER",
    "MAGIC_COOKIE",
    "NON_INVITE_CLIENT",
    "NON_INVITE_SERVER",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "State",
    "Timers",
    "TransactionLayer",
    "TransactionLimitReached",
    "Trigger",
    "new_branch",
    "response_destination",
]
