"""RFC 3261 §12 dialogs: identifiers, route set, remote target, CSeq, and in-dialog requests (sans-I/O)."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import LocalProtocolError
from .headers import CSeq, NameAddress
from .message import Request, Response, make_response
from .uri import SipUri, Uri

# Requests that carry a Contact because they refresh (or establish) the remote target (RFC 3261 §12.2.1.1,
# RFC 3311 UPDATE, RFC 3515 REFER, RFC 6665 SUBSCRIBE/NOTIFY).
_CONTACT_METHODS = frozenset({"INVITE", "UPDATE", "REFER", "SUBSCRIBE", "NOTIFY"})
_TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# URI parameters that may not appear in a Request-URI (RFC 3261 §19.1.1 table): stripped when strict routing.
_NOT_IN_REQUEST_URI = ("method", "ttl")


def new_tag() -> str:
    """A From/To tag with 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(8)


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID plus local and remote tag (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str


class Dialog:
    """One dialog. Build with `Dialog.as_uac()` (from our request and a response) or `Dialog.as_uas()`."""

    def __init__(
        self,
        *,
        role: str,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddress,
        remote_uri: NameAddress,
        local_contact: NameAddress,
        remote_target: Uri,
        route_set: Iterable[NameAddress],
        local_seq: int,
        remote_seq: int | None,
        secure: bool,
        state: DialogState,
    ) -> None:
        self.role = role
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_contact = local_contact
        self.remote_target = remote_target
        self.route_set = list(route_set)
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.state = state
        # RFC 3261 §14: at most one INVITE transaction in progress in each direction.
        self.incoming_invite_pending = False
        self.outgoing_invite_pending = False
        self.last_invite_cseq: int | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    def __repr__(self) -> str:
        return f"<Dialog {self.role} {self.state.value} {self.call_id} {self.local_tag}/{self.remote_tag}>"

    # -- creation --------------------------------------------------------------------------------------
    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog our request created, from a tagged 1xx (early) or 2xx (confirmed), RFC 3261 §12.1.2."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if remote_tag is None or local_tag is None:
            raise LocalProtocolError("a dialog needs both a From tag and a To tag")
        contacts = response.contact
        remote_target = contacts[0].uri if contacts else request.uri
        return cls(
            role="UAC",
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.from_,
            remote_uri=response.to,
            local_contact=request.contact[0] if request.contact else request.from_,
            remote_target=remote_target,
            # §12.1.2: the UAC's route set is the Record-Route of the response, reversed.
            route_set=reversed(response.record_route),
            local_seq=request.cseq.seq,
            remote_seq=None,
            secure=isinstance(request.uri, SipUri) and request.uri.secure,
            state=DialogState.CONFIRMED if 200 <= response.status_code < 300 else DialogState.EARLY,
        )

    @classmethod
    def as_uas(
        cls,
        request: Request,
        local_contact: NameAddress,
        *,
        local_tag: str | None = None,
        confirmed: bool = False,
    ) -> Dialog:
        """The dialog a request creates at the UAS (§12.1.1); early until we send a 2xx."""
        remote_tag = request.from_.tag
        if remote_tag is None:
            remote_tag = ""  # RFC 2543 peers may omit the From tag (RFC 3261 §12.2.2)
        contacts = request.contact
        return cls(
            role="UAS",
            call_id=request.call_id,
            local_tag=local_tag or new_tag(),
            remote_tag=remote_tag,
            local_uri=request.to,
            remote_uri=request.from_,
            local_contact=local_contact,
            remote_target=contacts[0].uri if contacts else request.from_.uri,
            # §12.1.1: the UAS keeps Record-Route in order.
            route_set=request.record_route,
            # §12.1.1 leaves our sequence number empty; start low and random so it never nears 2**31.
            local_seq=secrets.randbelow(2**16) + 1,
            remote_seq=request.cseq.seq,
            secure=isinstance(request.uri, SipUri) and request.uri.secure,
            state=DialogState.CONFIRMED if confirmed else DialogState.EARLY,
        )

    def confirm(self, response: Response | None = None) -> None:
        """Early → confirmed. For a UAC, the 2xx recomputes route set and remote target (§13.2.2.4)."""
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError("dialog already terminated")
        if response is not None and self.role == "UAC":
            self.route_set = list(reversed(response.record_route))
            if response.contact:
                self.remote_target = response.contact[0].uri
        self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    # -- building requests (§12.2.1.1) -------------------------------------------------------------------
    def create_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request without Via (the transport adds it); CSeq is incremented unless given."""
        if self.state is DialogState.TERMINATED and method != "ACK":
            raise LocalProtocolError("dialog terminated")
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        request_uri, routes = self._request_uri_and_routes()
        request = Request(method, request_uri)
        h = request.headers
        for route in routes:
            h.add("Route", route)
        h.add("Max-Forwards", 70)
        h.add("From", self.local_uri.with_tag(self.local_tag))
        to = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        h.add("To", to)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", CSeq(cseq, method))
        if method in _CONTACT_METHODS:
            h.add("Contact", self.local_contact)
        for name, value in headers:
            h.add(name, value)
        if content_type is not None:
            h.add("Content-Type", content_type)
        request.body = body
        if method == "INVITE":
            self.last_invite_cseq = cseq
        return request

    def create_ack(
        self, invite_cseq: int | None = None, *, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx to our INVITE: same CSeq number as the INVITE (RFC 3261 §13.2.2.4)."""
        seq = invite_cseq if invite_cseq is not None else self.last_invite_cseq or self.local_seq
        return self.create_request("ACK", cseq=seq, body=body, content_type=content_type)

    def next_hop(self) -> Uri:
        """Where in-dialog requests are sent: the first Route, else the remote target (RFC 3261 §8.1.2)."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def _request_uri_and_routes(self) -> tuple[Uri, list[NameAddress]]:
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and first.lr:
            return self.remote_target, list(self.route_set)
        # Strict routing (RFC 2543): the first route is the Request-URI, the remote target the last Route.
        request_uri = (
            first.without_params(*_NOT_IN_REQUEST_URI).with_headers(())
            if isinstance(first, SipUri)
            else first
        )
        return request_uri, [*self.route_set[1:], NameAddress(self.remote_target)]

    # -- receiving requests (§12.2.2) ---------------------------------------------------------------------
    def receive_request(self, request: Request) -> Response | None:
        """Check an in-dialog request; return the error response to send (500 out of order) or None."""
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                # §12.2.2: lower than the remote CSeq is out of order; equal is a retransmission that the
                # transaction layer would have absorbed, so it is a new request reusing a number: also 500.
                return make_response(request, 500, "Out Of Order")
            self.remote_seq = seq
        if request.method in _TARGET_REFRESH_METHODS and request.contact:
            self.remote_target = request.contact[0].uri
        return None

    def receive_response(self, request: Request, response: Response) -> None:
        """A 2xx to our target refresh request replaces the remote target (§12.2.1.2)."""
        if (
            200 <= response.status_code < 300
            and request.method in _TARGET_REFRESH_METHODS
            and response.contact
        ):
            self.remote_target = response.contact[0].uri

    # -- re-INVITE glare (§14) ----------------------------------------------------------------------------
    def begin_incoming_invite(self, request: Request) -> Response | None:
        """Admit a re-INVITE, or return the response that refuses it (RFC 3261 §14.2)."""
        if self.incoming_invite_pending:
            # §14.2: a second INVITE while one is in progress gets 500 with Retry-After 0-10 s.
            retry = secrets.randbelow(11)
            return make_response(request, 500, headers=[("Retry-After", str(retry))])
        if self.outgoing_invite_pending:
            return make_response(request, 491)  # §14.2: glare with our own re-INVITE
        self.incoming_invite_pending = True
        return None

    def end_incoming_invite(self) -> None:
        self.incoming_invite_pending = False

    def begin_outgoing_invite(self) -> None:
        if self.outgoing_invite_pending or self.incoming_invite_pending:
            raise LocalProtocolError("an INVITE transaction is already in progress in this dialog")
        self.outgoing_invite_pending = True

    def end_outgoing_invite(self) -> None:
        self.outgoing_invite_pending = False


class DialogTable:
    """The dialogs of a user agent, matched by identifiers (RFC 3261 §12.2.2), bounded in size."""

    def __init__(self, max_dialogs: int = 10000) -> None:
        self.max_dialogs = max_dialogs
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        if dialog.id not in self._dialogs and len(self._dialogs) >= self.max_dialogs:
            raise LocalProtocolError(f"{self.max_dialogs} dialogs open")
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> None:
        self._dialogs.pop(dialog.id, None)

    def __len__(self) -> int:
        return len(self._dialogs)

    def for_request(self, request: Request) -> Dialog | None:
        """The dialog an incoming request belongs to: our tag is in To, theirs in From."""
        local = request.to.tag
        if local is None:
            return None
        return self._dialogs.get(DialogId(request.call_id, local, request.from_.tag or ""))

    def for_response(self, response: Response) -> Dialog | None:
        """The dialog a response to our request belongs to: our tag is in From, theirs in To."""
        local = response.from_.tag
        remote = response.to.tag
        if local is None or remote is None:
            return None
        return self._dialogs.get(DialogId(response.call_id, local, remote))

    def unmatched_response(self, request: Request) -> Response | None:
        """481 for an in-dialog request (To tag present) that matches no dialog (§12.2.2); None for ACK."""
        if request.to.tag is None or request.method == "ACK":
            return None
        return make_response(request, 481)
