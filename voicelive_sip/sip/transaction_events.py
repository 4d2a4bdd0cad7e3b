"""Events the sans-I/O SIP core hands to the layer above (h11 style: small frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from .message import Request, Response

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes to put on the wire, where, and over which transport ("UDP", "TCP", "TLS")."""

    data: bytes
    destination: Address
    transport: str
    transaction: str | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new server transaction: the TU must answer it with `TransactionLayer.respond()`.

    For a CANCEL, `cancels` names the INVITE server transaction it matches (RFC 3261 §9.2), or is None.
    """

    request: Request
    transaction: str
    source: Address
    transport: str
    cancels: str | None = None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (end-to-end, RFC 3261 §13.2.2.4); `transaction` is the INVITE it acknowledges."""

    request: Request
    transaction: str | None
    source: Address
    transport: str


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response passed up by a client transaction (first provisional, each final, RFC 6026 2xx copies)."""

    response: Response
    transaction: str


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction; a UA drops it (RFC 3261 §17.1.3, §8.1.3.3)."""

    response: Response
    source: Address
    reason: str


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B/F fired on a client transaction, or Timer H on a server one (no ACK for a non-2xx)."""

    transaction: str
    method: str


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """A 2xx to an INVITE got no ACK within 64·T1 (RFC 3261 §13.3.1.4): the UAS should send BYE."""

    transaction: str
    request: Request


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported that a transaction's message could not be sent (RFC 3261 §17.1.4)."""

    transaction: str
    method: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction is gone; references to its id may be dropped."""

    transaction: str


TransactionEvent = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimeout
    | AckTimeout
    | TransportFailed
    | TransactionTerminated
)
