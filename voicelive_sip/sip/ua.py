"""The asyncio SIP user agent: transports, the sans-I/O transaction and dialog layers, calls, registrations.

One timer for the whole UA (the transaction layer's nearest deadline, re-armed after each event, as in
aioquic); per-call session timers use the loop directly. Everything the network can make us hold is bounded:
transactions, dialogs, calls, queued events, TCP connections, and new requests per source per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import random
import secrets
import socket
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from ..config import MediaSettings, SipSettings
from ..sdp import (
    LocalSdpSession,
    NegotiatedMedia,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answer_offer,
    build_offer,
    parse_answer,
)
from .auth import DigestAuthError, DigestClient, DigestServer, VerifyOutcome
from .call import (
    Answered,
    Call,
    CallFailed,
    CallState,
    IncomingCall,
    InfoDtmf,
    LocalMedia,
    MediaUpdated,
    OutgoingCall,
    ReferProgress,
    Ringing,
    SessionRefreshed,
    TransferRequested,
)
from .dialog import Dialog, DialogId, DialogTable, new_tag
from .errors import LocalProtocolError, SipParseError
from .events import (
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
from .headers import CSeq, NameAddress, Via, param_value, parse_delta_seconds, parse_params
from .message import Request, Response, error_response, make_response, reason_phrase, request_problem
from .registration import Registration
from .transaction import Timers, TransactionLayer, TransactionLimitReached, new_branch
from .transport import TransportLayer
from .uri import SipUri, TelUri, Uri, parse_uri

log = structlog.get_logger("voicelive_sip.sip.ua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, REFER"
SUPPORTED = "timer"
ACCEPT = "application/sdp"
# Methods we recognise but do not serve as a UAS (RFC 3261 §8.2.1: 405 with Allow); anything else is 501.
_KNOWN_UNSUPPORTED = frozenset({"REGISTER", "MESSAGE", "SUBSCRIBE", "PUBLISH", "PRACK"})
_SERVED = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "INFO", "NOTIFY", "REFER"})
_BODY_TYPES = {
    "INVITE": {"application/sdp"},
    "UPDATE": {"application/sdp"},
    "ACK": {"application/sdp"},
    "INFO": {"application/dtmf-relay", "application/dtmf"},
    "NOTIFY": {"message/sipfrag"},
}
_UDP_MTU_LIMIT = 1300  # RFC 3261 §18.1.1
_DTMF_DIGITS = "0123456789*#ABCD"


@dataclass(slots=True)
class _Pending:
    """A client transaction someone awaits: the first final response, and every response if they care."""

    request: Request
    destination: Address
    transport: str
    final: asyncio.Future[Response]
    on_response: Callable[[Response], None] | None = None
    upgraded: bool = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    warned: float = float("-inf")


@dataclass(slots=True)
class _ServerInvite:
    """A re-INVITE we answered, waiting for its ACK (which may carry the SDP answer)."""

    call: Call
    offer: SessionDescription | None = None


@dataclass(slots=True)
class _OutgoingState:
    invite: Request | None = None
    offer: SessionDescription | None = None
    provisional: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    ack: bytes | None = None
    ack_destination: tuple[Address, str] | None = None
    auth: DigestClient | None = None
    extra_dialogs: set[str] = field(default_factory=set)


class UserAgent:
    """A SIP user agent: `async with UserAgent(settings) as ua`, then `incoming_calls()` and `call()`."""

    def __init__(self, settings: SipSettings | None = None, media: MediaSettings | None = None) -> None:
        self.settings = settings or SipSettings()
        self.media_settings = media or MediaSettings()
        self.layer = TransactionLayer(
            Timers(t1=self.settings.t1, t2=max(4.0, self.settings.t1 * 8)),
            max_transactions=self.settings.max_transactions,
        )
        self.dialogs = DialogTable(max_dialogs=self.settings.max_calls * 4 + 64)
        self.registrations: list[Registration] = []
        self.draining = False
        self._transports: TransportLayer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._incoming: asyncio.Queue[IncomingCall] = asyncio.Queue(maxsize=self.settings.max_calls)
        self._calls: dict[DialogId, Call] = {}
        self._by_invite_tx: dict[str, IncomingCall] = {}
        self._reinvites: dict[str, _ServerInvite] = {}
        self._pending: dict[str, _Pending] = {}
        self._outgoing: dict[str, _OutgoingState] = {}
        self._merged: dict[tuple[str, str, int], str] = {}
        self._merged_by_tx: dict[str, tuple[str, str, int]] = {}
        self._live: set[Call] = set()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._dns: dict[str, str] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._allow = [ipaddress.ip_network(net, strict=False) for net in self.settings.allow_from]
        self._auth_server: DigestServer | None = None
        if self.settings.inbound_auth_user and self.settings.inbound_auth_password:
            self._auth_server = DigestServer(
                secrets.token_bytes(32), self.settings.auth_realm or "voicelive-sip", qop="auth"
            )

    # -- lifecycle -------------------------------------------------------------------------------------
    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transports = TransportLayer(
            self._on_message,
            self._on_parse_error,
            self._on_send_error,
            max_connections=self.settings.max_tcp_connections,
            idle_timeout=self.settings.tcp_idle_timeout,
        )
        await self._transports.start(
            self.settings.local_address, self.settings.port, self.settings.transports
        )
        log.info("sip.agent_started", address=self.address, transports=self._transports.transports)
        for problem in advertised_address_problems(self.settings, self.media_settings):
            log.warning("sip.address_warning", problem=problem)
        if self.settings.register_enabled:
            self.register()

    async def close(self, *, timeout: float = 4.0) -> None:
        """Hang up calls, remove registrations (Expires: 0), close the transports."""
        if self._transports is None:
            return
        calls = [c for c in self._calls.values() if not c.ended]
        calls += [c for c in self._by_invite_tx.values() if not c.ended]
        jobs = [self._close_call(c) for c in {id(c): c for c in calls}.values()]
        jobs += [r.unregister() for r in self.registrations]
        if jobs:
            await asyncio.wait([asyncio.ensure_future(j) for j in jobs], timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        await self._transports.close()
        self._transports = None
        log.info("sip.agent_stopped")

    async def _close_call(self, call: Call) -> None:
        with contextlib.suppress(CallFailed, LocalProtocolError):
            await call.hangup()
        call._end("shutdown", "local")

    @property
    def address(self) -> Address:
        """The bound (host, port) shared by UDP and TCP."""
        assert self._transports is not None, "UserAgent not started"
        return self._transports.address

    @property
    def via_host(self) -> str:
        host = self.settings.via_address or self.address[0]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    @property
    def aor(self) -> SipUri:
        """Our address-of-record: SIP_USER, or user@our-address."""
        user = self.settings.user
        if user:
            uri = parse_uri(user if ":" in user.split("@")[0] else "sip:" + user)
            if isinstance(uri, SipUri):
                return uri
        return SipUri(host=self.via_host, user="voicelive", port=self.address[1])

    def contact(self, transport: str = "UDP") -> NameAddress:
        params = (("transport", "tcp"),) if transport == "TCP" else ()
        uri = SipUri(
            host=self.via_host, user=self.aor.user or "voicelive", port=self.address[1], params=params
        )
        return NameAddress(uri, self.settings.display_name)

    @property
    def active_calls(self) -> int:
        """Calls not yet ended (incoming from the INVITE on, outgoing from dial())."""
        return len(self._live)

    def _call_ended(self, call: Call) -> None:
        self._live.discard(call)

    async def incoming_calls(self) -> AsyncGenerator[IncomingCall, None]:
        """Every new incoming call, in arrival order."""
        while True:
            call = await self._incoming.get()
            if not call.ended:
                yield call

    def register(
        self,
        *,
        registrar: str | None = None,
        aor: str | None = None,
        username: str | None = None,
        password: str | None = None,
        realm: str | None = None,
        expires: int | None = None,
    ) -> Registration:
        """Start (and keep refreshing) a registration; defaults come from the settings."""
        server = registrar or self.settings.server
        if not server:
            raise LocalProtocolError("registration needs SIP_SERVER (or registrar=)")
        registrar_uri = _as_sip_uri(server)
        aor_uri = _as_sip_uri(aor) if aor else self.aor
        if aor is None and not self.settings.user:
            aor_uri = SipUri(host=registrar_uri.host, user="voicelive")
        secret = self.settings.auth_password.get_secret_value() if self.settings.auth_password else None
        registration = Registration(
            self,
            registrar_uri,
            aor_uri,
            username=username or self.settings.auth_user or aor_uri.user or "",
            password=password if password is not None else secret,
            realm=realm or self.settings.auth_realm,
            expires=expires or self.settings.register_expires,
        )
        self.registrations.append(registration)
        registration.start()
        return registration

    # -- transport callbacks ---------------------------------------------------------------------------
    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _admit_source(self, source: Address, *, new_request: bool = True) -> bool:
        """Allow-list for everything; the per-source token bucket only for requests starting something new."""
        if self._allow and not any(ipaddress.ip_address(source[0]) in net for net in self._allow):
            log.info("sip.source_refused", source=source)
            return False
        if not new_request:
            return True  # ACK, CANCEL and in-dialog requests finish what was admitted: never throttled
        # A token bucket per source address; the table is an LRU so it stays bounded.
        now = self._now()
        rate = float(self.settings.max_requests_per_second)
        bucket = self._buckets.get(source[0])
        if bucket is None:
            bucket = _Bucket(tokens=rate, updated=now)
            self._buckets[source[0]] = bucket
            if len(self._buckets) > 10000:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source[0])
            bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens < 1.0:
            if now - bucket.warned >= 1.0:  # one warning per source per second, not one per datagram
                bucket.warned = now
                log.warning("sip.rate_limited", source=source, limit=self.settings.max_requests_per_second)
            return False
        bucket.tokens -= 1.0
        return True

    def _on_message(self, message: Request | Response, source: Address, transport: str) -> None:
        if isinstance(message, Request):
            fresh = message.method not in ("ACK", "CANCEL") and _to_tag(message) is None
            if not self._admit_source(source, new_request=fresh):
                return
            if "Via" in message.headers:
                # RFC 3261 §18.2.1 and RFC 3581: note where the request really came from.
                via = stamped = message.top_via
                if via.host.strip("[]") != source[0]:
                    stamped = stamped.with_param("received", source[0])
                if via.wants_rport:
                    stamped = stamped.with_param("rport", str(source[1]))
                if stamped is not via:
                    message.headers.replace_first("Via", stamped)
        try:
            self.layer.receive(message, source, transport, self._now())
        except SipParseError as error:  # a header the transaction layer needed did not parse
            self._answer_parse_error(error, message, source, transport)
        except TransactionLimitReached:
            if isinstance(message, Request) and message.method != "ACK":
                self._stateless(
                    make_response(message, 503, headers=[("Retry-After", "5")]), source, transport
                )
        self._pump()

    def _answer_parse_error(
        self, error: SipParseError, message: Request | Response, source: Address, transport: str
    ) -> None:
        log.info("sip.parse_error", source=source, error=error.detail)
        if isinstance(message, Request) and message.method != "ACK" and "Via" in message.headers:
            response = Response(error.status_code, error.reason)
            for name in ("Via", "From", "To", "Call-ID", "CSeq"):
                for value in message.headers.get_all(name):
                    response.headers.add(name, value)
            self._stateless(response, source, transport)

    def _on_parse_error(self, error: SipParseError, source: Address, transport: str) -> None:
        log.info(
            "sip.parse_error",
            source=source,
            transport=transport,
            error=error.detail,
            status=error.status_code,
        )
        if not self._admit_source(source):
            return
        response = error_response(error)
        if response is not None:
            assert self._transports is not None
            self._transports.send(Outgoing(response.serialize(), source, transport))

    def _on_send_error(self, out: Outgoing, error: Exception) -> None:
        if out.transaction is not None:
            self.layer.transport_error(out.transaction, self._now())
            self._pump()

    def _stateless(self, response: Response, destination: Address, transport: str) -> None:
        self.layer.send_stateless(response, destination, transport)

    # -- the engine ------------------------------------------------------------------------------------
    def _pump(self) -> None:
        while (event := self.layer.next_event()) is not None:
            try:
                self._dispatch(event)
            except Exception:  # one bad message must never stop the UA
                log.exception("sip.dispatch_failed", kind=type(event).__name__)
        self._transmit()

    def _transmit(self) -> None:
        if self._transports is None:
            return
        for out in self.layer.datagrams_to_send():
            self._transports.send(out)
        deadline = self.layer.get_timer()
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self.layer.handle_timer(self._now())
        self._pump()

    def _dispatch(self, event: TransactionEvent) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, ResponseReceived):
            pending = self._pending.get(event.transaction)
            if pending is not None:
                if pending.on_response is not None:
                    pending.on_response(event.response)
                if event.response.status_code >= 200 and not pending.final.done():
                    pending.final.set_result(event.response)
        elif isinstance(event, AckReceived):
            self._on_ack(event)
        elif isinstance(event, AckTimeout):
            self._on_ack_timeout(event)
        elif isinstance(event, TransactionTimeout | TransportFailed):
            pending = self._pending.get(event.transaction)
            if pending is not None and not pending.final.done():
                # RFC 3261 §8.1.3.1: a timeout counts as 408, a transport failure as 503.
                code = 408 if isinstance(event, TransactionTimeout) else 503
                pending.final.set_result(make_response(pending.request, code))
        elif isinstance(event, TransactionTerminated):
            self._pending.pop(event.transaction, None)
            self._by_invite_tx.pop(event.transaction, None)
            self._reinvites.pop(event.transaction, None)
            merged = self._merged_by_tx.pop(event.transaction, None)
            if merged is not None:
                self._merged.pop(merged, None)
        elif isinstance(event, StrayResponse):
            self._on_stray(event)

    # -- sending requests ------------------------------------------------------------------------------
    async def _resolve(self, uri: Uri) -> tuple[Address, str]:
        """Next hop for a URI: maddr/host, port, transport (no RFC 3263 SRV/NAPTR: A/AAAA records only)."""
        if isinstance(uri, TelUri):
            if not self.settings.server:
                raise CallFailed(416, "tel: URI without SIP_SERVER to send it to")
            uri = _as_sip_uri(self.settings.server)
        if not isinstance(uri, SipUri):
            raise CallFailed(416, f"unsupported URI scheme {uri.scheme}")
        if uri.secure:
            raise CallFailed(502, "sips: needs TLS, which this user agent does not offer yet")
        host = (uri.maddr or uri.host).strip("[]")
        transport = (uri.transport or "udp").upper()
        if transport not in ("UDP", "TCP"):
            raise CallFailed(502, f"unsupported transport {transport}")
        if transport == "TCP" and self._transports is not None and "TCP" not in self._transports.transports:
            transport = "UDP"
        return (await self._lookup(host), uri.port or 5060), transport

    async def _lookup(self, host: str) -> str:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        cached = self._dns.get(host)
        if cached is not None:
            return cached
        assert self._loop is not None
        try:
            infos = await self._loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as error:
            raise CallFailed(502, f"cannot resolve {host}: {error}") from error
        address = str(infos[0][4][0])
        if len(self._dns) > 1000:
            self._dns.clear()
        self._dns[host] = address
        return address

    def _new_request(
        self, method: str, uri: Uri, *, to: NameAddress, from_: NameAddress, call_id: str, seq: int
    ) -> Request:
        request = Request(method, uri)
        h = request.headers
        h.add("Max-Forwards", 70)
        h.add("From", from_)
        h.add("To", to)
        h.add("Call-ID", call_id)
        h.add("CSeq", CSeq(seq, method))
        return request

    def _send_request(
        self,
        request: Request,
        destination: Address,
        transport: str,
        on_response: Callable[[Response], None] | None = None,
    ) -> tuple[str, _Pending]:
        """Add our Via and User-Agent, pick UDP or TCP (size rule), and start the client transaction."""
        assert self._loop is not None and self._transports is not None
        upgraded = False
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.settings.user_agent)
        via = Via(transport, self.via_host, self.address[1], (("branch", new_branch()), ("rport", None)))
        request.headers.prepend("Via", via)
        if (
            transport == "UDP"
            and "TCP" in self._transports.transports
            and len(request.serialize()) > _UDP_MTU_LIMIT
        ):
            # RFC 3261 §18.1.1: a request over 1300 bytes goes over a congestion-controlled transport.
            transport, upgraded = "TCP", True
            request.headers.replace_first("Via", Via("TCP", via.host, via.port, via.params))
        if "Contact" in request.headers and upgraded:
            request.headers.set("Contact", self.contact("TCP"))
        key = self.layer.send_request(request, destination, transport, self._now())
        pending = _Pending(request, destination, transport, self._loop.create_future(), on_response, upgraded)
        self._pending[key] = pending
        self._pump()
        return key, pending

    async def _request(
        self,
        request: Request,
        destination: Address,
        transport: str,
        on_response: Callable[[Response], None] | None = None,
    ) -> Response:
        _, pending = self._send_request(request, destination, transport, on_response)
        response = await pending.final
        if response.status_code == 503 and pending.upgraded:
            # The TCP attempt for a large request failed: RFC 3261 §18.1.1 allows falling back to UDP.
            request.headers.remove_first("Via")
            _, pending = self._send_request(request, destination, "UDP", on_response)
            response = await pending.final
        return response

    async def _authenticated(
        self,
        build: Callable[[], Request],
        destination: Address,
        transport: str,
        client: DigestClient | None,
        on_response: Callable[[Response], None] | None = None,
    ) -> Response:
        """Send a request, answering 401/407 with credentials once per challenge (RFC 3261 §22).

        `build()` makes a fresh request (new CSeq); it is called again only after a challenge.
        """
        request = build()
        if client is not None:  # realms already known are answered up front, without waiting for a challenge
            for answer in client.authorize(request.method, str(request.uri), request.body):
                request.headers.add(answer.header_name, answer.header_value)
        for _ in range(4):
            response = await self._request(request, destination, transport, on_response)
            if response.status_code not in (401, 407) or client is None:
                return response
            challenges = response.headers.get_all(
                "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
            )
            try:
                answer = client.respond(
                    response.status_code,
                    challenges,
                    method=request.method,
                    uri=str(request.uri),
                    body=request.body,
                )
            except DigestAuthError as error:
                log.warning(
                    "sip.auth_failed", method=request.method, status=response.status_code, reason=str(error)
                )
                return response
            request = build()
            request.headers.add(answer.header_name, answer.header_value)
        return response

    # -- incoming requests -----------------------------------------------------------------------------
    def _respond(
        self,
        event: RequestReceived,
        status_code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
    ) -> None:
        request = event.request
        # RFC 3261 §8.2.6.2 (a request without any To, RFC 4475 insuf, still gets its 400).
        if to_tag is None and status_code > 100 and "To" in request.headers and request.to.tag is None:
            to_tag = new_tag()
        response = make_response(request, status_code, reason, to_tag=to_tag, headers=headers, body=body)
        response.headers.add("Server", self.settings.user_agent)
        self.layer.respond(event.transaction, response, self._now())

    def _precheck(self, request: Request) -> tuple[int, str | None, list[tuple[str, object]]] | None:
        """RFC 3261 §8.2 checks in order: method, URI scheme, merged request, Require, hops, body, Accept."""
        method = request.method
        if method not in _SERVED:
            status = 405 if method in _KNOWN_UNSUPPORTED else 501
            return status, None, [("Allow", ALLOW)]
        if request.uri.scheme.lower() not in ("sip", "sips", "tel"):
            return 416, None, []
        if request.to.tag is None and method not in ("CANCEL", "ACK"):
            key = (request.call_id, request.from_.tag or "", request.cseq.seq)
            if key in self._merged:
                return 482, "Loop Detected", []  # §8.2.2.2: the same request reached us twice (forked)
        if method != "CANCEL":
            unknown = [tag for tag in request.require if tag.lower() not in ("timer",)]
            if unknown:
                return 420, None, [("Unsupported", ", ".join(unknown))]
        if request.max_forwards == 0 and method != "OPTIONS":
            # A UA is the last hop; 0 means the request was meant to stop before us. OPTIONS with 0 probes the
            # element reached and is answered (RFC 4475 §3.3.11).
            return 483, None, []
        if request.body:
            content = request.content_type
            allowed = _BODY_TYPES.get(method, set())
            encoding = request.headers.get("Content-Encoding")
            if (
                content is None
                or (content.mime not in allowed and content.mime != "multipart/mixed")
                or encoding
            ):
                return (
                    415,
                    None,
                    [("Accept", ", ".join(sorted(allowed)) or ACCEPT), ("Accept-Encoding", "identity")],
                )
        if method == "INVITE":
            accept = [
                a.strip().lower()
                for v in request.headers.get_all("Accept")
                for a in v.split(",")
                if a.strip()
            ]
            types = [a.split(";")[0].strip() for a in accept]
            if accept and not any(t in ("application/sdp", "application/*", "*/*") for t in types):
                return 406, None, [("Accept", ACCEPT)]
        return None

    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        problem = request_problem(request)
        if problem is not None:
            self._respond(event, 400, problem.reason, headers=[("Warning", f'399 - "{problem.detail}"')])
            return
        check = self._precheck(request)
        if check is not None:
            status, reason, headers = check
            self._respond(event, status, reason, headers=headers)
            return
        handler = {
            "INVITE": self._on_invite,
            "OPTIONS": self._on_options,
            "BYE": self._on_bye,
            "CANCEL": self._on_cancel,
            "UPDATE": self._on_update,
            "INFO": self._on_info,
            "NOTIFY": self._on_notify,
            "REFER": self._on_refer,
        }[request.method]
        handler(event)

    def _on_options(self, event: RequestReceived) -> None:
        status = 503 if self.draining else 200
        self._respond(event, status, headers=[("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)])

    def _dialog_call(self, event: RequestReceived) -> tuple[Dialog, Call] | None:
        """The dialog and call of an in-dialog request; answers 481 (none) or 500 (out of order) itself."""
        dialog = self.dialogs.for_request(event.request)
        call = self._calls.get(dialog.id) if dialog is not None else None
        if dialog is None or call is None:
            self._respond(event, 481)
            return None
        refused = dialog.receive_request(event.request)
        if refused is not None:
            self._respond(event, refused.status_code, refused.reason)
            return None
        return dialog, call

    def _on_invite(self, event: RequestReceived) -> None:
        request = event.request
        if request.to.tag is not None:
            self._on_reinvite(event)
            return
        if self.draining:
            self._respond(event, 503, headers=[("Retry-After", "30")])
            return
        if self.active_calls >= self.settings.max_calls:
            log.info("sip.call_refused_busy", call_id=request.call_id, active=self.active_calls)
            extra = [("Retry-After", "5")] if self.settings.busy_status == 503 else []
            self._respond(event, self.settings.busy_status, headers=extra)
            return
        if self._auth_server is not None and not self._check_inbound_auth(event):
            return
        timer = _session_expires(request)
        if timer is not None and timer[0] < self.settings.min_se:
            self._respond(event, 422, headers=[("Min-SE", str(self.settings.min_se))])
            return
        offer: SessionDescription | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                answer_offer(
                    offer, local_address="127.0.0.1", local_port=9, session=LocalSdpSession(),
                    codecs=self.media_settings.codecs,
                )  # fmt: skip
            except NoCommonCodec as error:
                self._respond(event, 488, headers=[("Warning", f'304 - "{_warning_text(str(error))}"')])
                return
            except SdpError as error:
                self._respond(
                    event, 400, "Bad SDP", headers=[("Warning", f'399 - "{_warning_text(str(error))}"')]
                )
                return
        call = IncomingCall(self, request, event.transaction, event.source, event.transport, offer)
        call.dialog = Dialog.as_uas(request, self.contact(event.transport))
        call.peer_allows_update = "UPDATE" in _allow_of(request)
        try:
            self.dialogs.add(call.dialog)
            self._incoming.put_nowait(call)
        except (LocalProtocolError, asyncio.QueueFull):
            self._respond(event, 503, headers=[("Retry-After", "5")])
            return
        self._calls[call.dialog.id] = call
        self._by_invite_tx[event.transaction] = call
        merged = (request.call_id, request.from_.tag or "", request.cseq.seq)
        self._merged[merged] = event.transaction
        self._merged_by_tx[event.transaction] = merged
        self._live.add(call)
        log.info(
            "sip.incoming_call",
            call_id=call.call_id,
            remote=event.source,
            transport=event.transport,
            from_=call.from_,
            to=call.to,
        )

    def _check_inbound_auth(self, event: RequestReceived) -> bool:
        assert self._auth_server is not None
        server = self._auth_server
        now = self._now()
        values = event.request.headers.get_all("Authorization")
        if not values:
            self._respond(event, 401, headers=[("WWW-Authenticate", server.challenge(now))])
            return False
        user = self.settings.inbound_auth_user
        password = self.settings.inbound_auth_password
        assert user is not None and password is not None
        secret = password.get_secret_value()
        try:
            result = server.verify(
                values[0],
                method="INVITE",
                password_for=lambda name: secret if name == user else None,
                now=now,
                body=event.request.body,
            )
        except SipParseError:
            self._respond(event, 400, "Bad Authorization")
            return False
        if result.outcome is VerifyOutcome.OK:
            return True
        if result.outcome is VerifyOutcome.STALE:
            self._respond(event, 401, headers=[("WWW-Authenticate", server.challenge(now, stale=True))])
            return False
        log.warning("sip.inbound_auth_failed", source=event.source, reason=result.reason)
        self._respond(event, 403)
        return False

    async def _ring(self, call: IncomingCall) -> None:
        if call.state is not CallState.OFFERED or call.ended:
            return
        assert call.dialog is not None
        self._respond_call(call, 180, headers=[("Contact", self.contact(call.transport))])

    def _respond_call(
        self,
        call: IncomingCall,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
    ) -> None:
        assert call.dialog is not None
        event = RequestReceived(call.request, call.transaction, call.source, call.transport)
        try:
            self._respond(event, status, reason, to_tag=call.dialog.local_tag, headers=headers, body=body)
        except LocalProtocolError as error:
            raise CallFailed(481, f"cannot answer: {error}") from error
        finally:
            self._pump()

    async def _answer(
        self,
        call: IncomingCall,
        rtp_port: int,
        rtp_address: str | None,
        codecs: Sequence[str] | None,
        direction: str,
    ) -> NegotiatedMedia | None:
        if call.ended:
            ended = call._ended.result()
            raise CallFailed(ended.status_code or 487, ended.reason)
        if call.state is not CallState.OFFERED:
            raise LocalProtocolError("call already answered")
        local = self._local_media(rtp_port, rtp_address, codecs, direction)
        call.local_media = local
        if call.offer is not None:
            try:
                answer, negotiated = answer_offer(
                    call.offer,
                    local_address=local.address,
                    local_port=local.port,
                    session=local.session,
                    codecs=local.codecs,
                    ptime=local.ptime,
                    local_direction=direction,  # type: ignore[arg-type]
                )
            except NoCommonCodec as error:
                self._respond_call(call, 488, headers=[("Warning", f'304 - "{_warning_text(str(error))}"')])
                call._end("rejected", "local", 488)
                raise CallFailed(488, "Not Acceptable Here") from error
            call.media, call.local_sdp, call.remote_sdp = negotiated, answer, call.offer
        else:
            call.local_sdp = _offer(local)
        headers: list[tuple[str, object]] = [
            ("Contact", self.contact(call.transport)),
            ("Allow", ALLOW),
            ("Supported", SUPPORTED),
        ]
        headers += self._uas_session_timer(call)
        headers.append(("Content-Type", "application/sdp"))
        self._respond_call(call, 200, headers=headers, body=call.local_sdp.serialize())
        call.state = CallState.EARLY
        ack = await asyncio.shield(call._ack)
        if call.offer is None and ack.method == "ACK" and ack.body:
            try:
                call.remote_sdp = SessionDescription.parse(ack.body)
                call.media = parse_answer(call.local_sdp, call.remote_sdp)
            except SdpError as error:
                log.warning("sip.bad_sdp_in_ack", call_id=call.call_id, error=str(error))
                await call.hangup()
                raise CallFailed(488, "bad SDP answer in ACK") from error
        assert call.dialog is not None
        if call._ended.done():  # not `call.ended`: mypy keeps that narrowed from the check above the await
            return call.media  # a BYE came before (or instead of) the ACK: answered, and already over
        call.dialog.confirm()
        call.state = CallState.ESTABLISHED
        call._emit(Answered(call.media))
        self._arm_session_timer(call)
        log.info("sip.call_answered", call_id=call.call_id, codec=call.media.codec if call.media else None)
        return call.media

    def _uas_session_timer(self, call: IncomingCall) -> list[tuple[str, object]]:
        """RFC 4028 §9: agree the interval and who refreshes; the UAC refreshes unless it cannot."""
        request = call.request
        requested = _session_expires(request)
        uac_supports = "timer" in [t.lower() for t in request.supported]
        if requested is None and not uac_supports:
            return []
        interval = requested[0] if requested is not None else self.settings.session_expires
        refresher = requested[1] if requested is not None and requested[1] else None
        if refresher is None:
            refresher = "uac" if uac_supports else "uas"
        call.session_interval = interval
        call.we_refresh = refresher == "uas"
        headers: list[tuple[str, object]] = [("Session-Expires", f"{interval};refresher={refresher}")]
        if uac_supports:
            headers.append(("Require", "timer"))
        return headers

    async def _reject(self, call: IncomingCall, status_code: int, reason: str | None) -> None:
        if call.ended or call.state is not CallState.OFFERED:
            return
        self._respond_call(call, status_code, reason)
        call._end("rejected", "local", status_code)
        if not call._ack.done():
            call._ack.set_exception(CallFailed(status_code, reason or "rejected"))
            call._ack.exception()

    def _on_ack(self, event: AckReceived) -> None:
        if event.transaction is None:
            return  # an ACK for a 2xx whose transaction is gone: nothing left to do
        call = self._by_invite_tx.get(event.transaction)
        if call is not None and not call._ack.done():
            call._ack.set_result(event.request)
            return
        pending = self._reinvites.get(event.transaction)
        if pending is None:
            return
        dialog = pending.call.dialog
        if dialog is not None:
            dialog.end_incoming_invite()
        call_ = pending.call
        if pending.offer is not None and event.request.body and call_.local_media is not None:
            try:
                call_.remote_sdp = SessionDescription.parse(event.request.body)
                call_.media = parse_answer(pending.offer, call_.remote_sdp)
                call_._emit(MediaUpdated(call_.media))
            except SdpError as error:
                log.warning("sip.bad_sdp_in_ack", call_id=call_.call_id, error=str(error))

    def _on_ack_timeout(self, event: AckTimeout) -> None:
        call = self._by_invite_tx.get(event.transaction)
        reinvite = self._reinvites.get(event.transaction)
        target = call if call is not None else reinvite.call if reinvite is not None else None
        if target is None or target.ended:
            return
        log.warning("sip.ack_timeout", call_id=target.call_id)
        if call is not None and not call._ack.done():
            call._ack.set_exception(CallFailed(408, "no ACK for our 200"))
            call._ack.exception()
        self._spawn(self._bye(target, "ack-timeout"))

    def _on_bye(self, event: RequestReceived) -> None:
        found = self._dialog_call(event)
        if found is None:
            return
        _, call = found
        self._respond(event, 200)
        if isinstance(call, IncomingCall) and not call._ack.done():
            # The ACK was lost or overtaken: the call was answered (our 200 confirmed the dialog, RFC 3261
            # §12.1.1) and has now ended. Stop resending the 200 and let answer() return.
            self.layer.acknowledge(call.transaction)
            call._ack.set_result(event.request)
        call._end("bye", "remote")
        self._forget(call)

    def _on_cancel(self, event: RequestReceived) -> None:
        call = self._by_invite_tx.get(event.cancels) if event.cancels is not None else None
        if call is None:
            self._respond(event, 481)
            return
        assert call.dialog is not None
        self._respond(event, 200, to_tag=call.dialog.local_tag)  # RFC 3261 §9.2: same tag as the INVITE's
        if call.state is CallState.OFFERED and not call.ended:
            # RFC 3261 §9.2: the INVITE gets 487 once the CANCEL is accepted.
            self._respond_call(call, 487)
            call._end("cancelled", "remote", 487)
            if not call._ack.done():
                call._ack.set_exception(CallFailed(487, "Request Terminated"))
                call._ack.exception()
            self._forget(call)

    def _on_reinvite(self, event: RequestReceived) -> None:
        found = self._dialog_call(event)
        if found is None:
            return
        dialog, call = found
        refused = dialog.begin_incoming_invite(event.request)
        if refused is not None:
            self._respond(
                event, refused.status_code, headers=[(n, v) for n, v in refused.headers if n == "Retry-After"]
            )
            return
        if not self._note_refresh(call, event):
            dialog.end_incoming_invite()
            return
        body, offer = self._answer_in_dialog(call, event)
        if body is None:
            dialog.end_incoming_invite()
            return
        headers: list[tuple[str, object]] = [("Contact", self.contact(event.transport)), ("Allow", ALLOW)]
        headers += self._refresh_headers(call)
        headers.append(("Content-Type", "application/sdp"))
        self._respond(event, 200, headers=headers, body=body)
        self._reinvites[event.transaction] = _ServerInvite(call, offer)

    def _answer_in_dialog(
        self, call: Call, event: RequestReceived
    ) -> tuple[bytes | None, SessionDescription | None]:
        """Answer in-dialog from the call's single media session (hold flips direction, nothing is re-made).

        Returns the SDP to send and, when the request had no offer, our offer (the answer comes in the ACK).
        """
        local = call.local_media
        if local is None:
            self._respond(event, 491)  # no media session yet (offer/answer still in progress, RFC 3261 §14.2)
            return None, None
        if not event.request.body:
            offer = _offer(local)
            call.local_sdp = offer
            return offer.serialize(), offer
        try:
            remote = SessionDescription.parse(event.request.body)
            answer, media = answer_offer(
                remote,
                local_address=local.address,
                local_port=local.port,
                session=local.session,
                codecs=local.codecs,
                ptime=local.ptime,
                local_direction=local.direction,  # type: ignore[arg-type]
            )
        except NoCommonCodec as error:
            self._respond(event, 488, headers=[("Warning", f'304 - "{_warning_text(str(error))}"')])
            return None, None
        except SdpError as error:
            self._respond(
                event, 400, "Bad SDP", headers=[("Warning", f'399 - "{_warning_text(str(error))}"')]
            )
            return None, None
        call.remote_sdp, call.local_sdp, call.media = remote, answer, media
        call._emit(MediaUpdated(media))
        log.info(
            "sip.media_updated", call_id=call.call_id, on_hold=media.on_hold, direction=media.local_direction
        )
        return answer.serialize(), None

    def _on_update(self, event: RequestReceived) -> None:
        found = self._dialog_call(event)
        if found is None:
            return
        _, call = found
        if not self._note_refresh(call, event):
            return
        headers: list[tuple[str, object]] = [
            ("Contact", self.contact(event.transport)),
            *self._refresh_headers(call),
        ]
        if event.request.body:
            body, _ = self._answer_in_dialog(call, event)
            if body is None:
                return
            self._respond(event, 200, headers=[*headers, ("Content-Type", "application/sdp")], body=body)
        else:
            self._respond(event, 200, headers=headers)

    def _on_info(self, event: RequestReceived) -> None:
        found = self._dialog_call(event)
        if found is None:
            return
        _, call = found
        request = event.request
        digit, duration = _info_dtmf(request)
        self._respond(event, 200)
        if digit is not None:
            call._emit(InfoDtmf(digit, duration))
            log.info("sip.dtmf_info", call_id=call.call_id, digit=digit)

    def _on_refer(self, event: RequestReceived) -> None:
        if event.request.to.tag is None:
            self._respond(event, 403, "Out-Of-Dialog REFER Not Accepted")
            return
        refer_to = event.request.headers.get("Refer-To")
        if refer_to is None:
            self._respond(event, 400, "Missing Refer-To")
            return
        found = self._dialog_call(event)
        if found is None:
            return
        _, call = found
        try:
            target = str(NameAddress.parse(refer_to).uri)
            referred_by = event.request.headers.get("Referred-By")
        except SipParseError:
            self._respond(event, 400, "Bad Refer-To")
            return
        self._respond(event, 202)
        call._emit(TransferRequested(target, referred_by))
        log.info("sip.transfer_requested", call_id=call.call_id, target=target)

    async def _notify_transfer(self, call: Call, status_code: int, reason: str | None) -> None:
        if call.ended or call.dialog is None:
            raise CallFailed(481, "call not established")
        final = status_code >= 200
        state = "terminated;reason=noresource" if final else "active;expires=60"
        body = f"SIP/2.0 {status_code} {reason or reason_phrase(status_code)}\r\n".encode()
        response, _ = await self._dialog_request(
            call,
            "NOTIFY",
            headers=[("Event", "refer"), ("Subscription-State", state)],
            body=body,
            content_type="message/sipfrag;version=2.0",
        )
        if not 200 <= response.status_code < 300:
            raise CallFailed(response.status_code, response.reason)

    def _on_notify(self, event: RequestReceived) -> None:
        found = self._dialog_call(event)
        if found is None:
            return
        _, call = found
        request = event.request
        self._respond(event, 200)
        event_name = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event_name != "refer" or not request.body:
            return
        status_line = request.body.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("utf-8", "replace")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
        final = status >= 200 or state == "terminated"
        call._emit(ReferProgress(status, reason, final))
        log.info("sip.refer_progress", call_id=call.call_id, status=status, final=final)
        waiter = call._refer_waiter
        if final and waiter is not None and not waiter.done():
            waiter.set_result(status)

    def _on_stray(self, event: StrayResponse) -> None:
        response = event.response
        if response.cseq.method == "INVITE" and 200 <= response.status_code < 300 and len(response.via) == 1:
            # A 2xx retransmitted after our INVITE transaction ended: the ACK was lost, send it again.
            state = self._outgoing.get(response.call_id)
            if state is not None and state.ack is not None and state.ack_destination is not None:
                assert self._transports is not None
                destination, transport = state.ack_destination
                self._transports.send(Outgoing(state.ack, destination, transport))
                return
        log.debug("sip.stray_response", status=response.status_code, reason=event.reason, source=event.source)

    def _forget(self, call: Call) -> None:
        """Drop the call's dialog from the tables: later requests in it get 481."""
        if call.dialog is not None:
            self.dialogs.remove(call.dialog)
            self._calls.pop(call.dialog.id, None)

    # -- outgoing calls --------------------------------------------------------------------------------
    def dial(
        self,
        target: str,
        *,
        rtp_port: int,
        rtp_address: str | None = None,
        credentials: tuple[str, str] | None = None,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
        codecs: Sequence[str] | None = None,
    ) -> OutgoingCall:
        """Start an outgoing call and return it at once; `await call.answered()` waits for the answer."""
        uri = self._target_uri(target)
        local = self._local_media(rtp_port, rtp_address, codecs)
        call = OutgoingCall(self, f"{secrets.token_hex(12)}@{self.via_host.strip('[]')}", str(uri), local)
        if credentials is None and self.settings.auth_password is not None:
            username = self.settings.auth_user or self.aor.user or ""
            credentials = (username, self.settings.auth_password.get_secret_value())
        state = _OutgoingState()
        if credentials is not None:
            state.auth = DigestClient(credentials[0], credentials[1], realm=self.settings.auth_realm)
        self._outgoing[call.call_id] = state
        self._live.add(call)
        call.task = asyncio.get_running_loop().create_task(
            self._run_outgoing(call, uri, state, list(headers), timeout or self.settings.invite_timeout)
        )
        return call

    async def call(self, target: str, *, rtp_port: int, **options: object) -> OutgoingCall:
        """Place a call and return it once answered (ACK sent); raises `CallFailed` otherwise."""
        call = self.dial(target, rtp_port=rtp_port, **options)  # type: ignore[arg-type]
        try:
            await call.answered()
        except asyncio.CancelledError:
            await call.hangup()
            raise
        return call

    def _local_media(
        self, port: int, address: str | None, codecs: Sequence[str] | None, direction: str = "sendrecv"
    ) -> LocalMedia:
        """Our side of a call's SDP, kept (with its o= session) for the whole call."""
        media = self.media_settings
        return LocalMedia(
            address=address or media.public_address or media.address,
            port=port,
            codecs=list(codecs or media.codecs),
            ptime=media.ptime,
            session=LocalSdpSession(),
            direction=direction,
        )

    def _target_uri(self, target: str) -> Uri:
        if ":" not in target.split("@")[0] and not target.startswith(("sip:", "sips:", "tel:")):
            if "@" not in target:
                if not self.settings.server:
                    raise LocalProtocolError(f"{target!r} has no host and SIP_SERVER is not set")
                target = f"{target}@{self.settings.server}"
            target = "sip:" + target
        return parse_uri(target)

    async def _run_outgoing(
        self,
        call: OutgoingCall,
        uri: Uri,
        state: _OutgoingState,
        extra: list[tuple[str, str]],
        timeout: float,
    ) -> None:
        local = call.local_media
        assert local is not None
        offer = _offer(local)
        call.local_sdp = state.offer = offer
        from_ = NameAddress(self.aor, self.settings.display_name, (("tag", new_tag()),))
        seq = 0
        session_expires = self.settings.session_expires
        redirected = retried_422 = False
        try:
            while True:
                destination, transport = await self._resolve(uri)
                to = NameAddress(uri)

                def build(
                    uri: Uri = uri,
                    to: NameAddress = to,
                    transport: str = transport,
                    expires: int = session_expires,
                ) -> Request:
                    nonlocal seq
                    seq += 1
                    invite = self._new_request(
                        "INVITE", uri, to=to, from_=from_, call_id=call.call_id, seq=seq
                    )
                    h = invite.headers
                    h.add("Contact", self.contact(transport))
                    h.add("Allow", ALLOW)
                    h.add("Supported", SUPPORTED)
                    h.add("Session-Expires", str(expires))
                    h.add("Min-SE", str(self.settings.min_se))
                    for name, value in extra:
                        h.add(name, value)
                    h.add("Content-Type", "application/sdp")
                    invite.body = offer.serialize()
                    state.invite = invite
                    state.provisional = False
                    return invite

                try:
                    async with asyncio.timeout(timeout):
                        response = await self._authenticated(
                            build, destination, transport, state.auth,
                            functools.partial(self._on_invite_response, call, state, destination, transport),
                        )  # fmt: skip
                except TimeoutError:
                    await self._cancel(call, state, destination, transport)
                    raise CallFailed(408, "no answer") from None
                code = response.status_code
                if 200 <= code < 300:
                    await self._invite_answered(call, state, response)
                    return
                if 300 <= code < 400 and not redirected and response.contact:
                    uri, redirected = response.contact[0].uri, True  # §8.1.3.4: follow one redirect
                    continue
                if code == 422 and not retried_422:
                    min_se = response.headers.get("Min-SE")
                    if min_se and min_se.split(";")[0].strip().isdigit():
                        session_expires, retried_422 = max(session_expires, int(min_se.split(";")[0])), True
                        continue
                raise CallFailed(code, response.reason)
        except CallFailed as error:
            reason = "cancelled" if error.status_code == 487 and state.cancel_requested else "failed"
            call._end(reason, "local" if state.cancel_requested else "remote", error.status_code)
            if not call._answered.done():
                call._answered.set_exception(error)
                call._answered.exception()
            self._outgoing.pop(call.call_id, None)
            self._forget(call)
            log.info(
                "sip.outgoing_call_failed",
                call_id=call.call_id,
                status=error.status_code,
                reason=error.reason,
            )

    def _on_invite_response(
        self,
        call: OutgoingCall,
        state: _OutgoingState,
        destination: Address,
        transport: str,
        response: Response,
    ) -> None:
        code = response.status_code
        if code < 200:
            if code == 100:
                state.provisional = True
            else:
                state.provisional = True
                media = self._early(call, state, response)
                call._emit(Ringing(code, response.reason, media))
            if state.cancel_requested and not state.cancel_sent:
                self._send_cancel(state, destination, transport)
        elif code < 300 and call.state is CallState.ESTABLISHED and response.to.tag is not None:
            dialog = call.dialog
            if dialog is not None and response.to.tag != dialog.remote_tag:
                # A second fork answered (RFC 3261 §13.2.2.4): ACK it, then end that dialog with BYE.
                self._spawn(self._ack_and_bye_fork(state, response))
            elif state.ack is not None and state.ack_destination is not None:
                assert self._transports is not None
                self._transports.send(Outgoing(state.ack, *state.ack_destination))

    def _early(self, call: OutgoingCall, state: _OutgoingState, response: Response) -> NegotiatedMedia | None:
        if response.to.tag is None or state.invite is None:
            return None
        if call.dialog is None:
            call.dialog = Dialog.as_uac(state.invite, response)
            self._track(call)
            call.state = CallState.EARLY
        media = None
        if response.body and state.offer is not None:
            try:
                media = parse_answer(state.offer, SessionDescription.parse(response.body))
                call.media = media  # early media (183 Session Progress)
            except SdpError as error:
                log.info("sip.bad_early_sdp", call_id=call.call_id, error=str(error))
        return media

    def _track(self, call: Call) -> None:
        assert call.dialog is not None
        try:
            self.dialogs.add(call.dialog)
        except LocalProtocolError:
            return
        self._calls[call.dialog.id] = call

    async def _invite_answered(self, call: OutgoingCall, state: _OutgoingState, response: Response) -> None:
        assert state.invite is not None and state.offer is not None
        invite = state.invite
        if call.dialog is not None and call.dialog.remote_tag == response.to.tag:
            call.dialog.confirm(response)
        else:
            if call.dialog is not None:
                self._forget(call)
            call.dialog = Dialog.as_uac(invite, response)
            self._track(call)
        dialog = call.dialog
        ack = dialog.create_ack(invite.cseq.seq)
        destination, transport = await self._resolve(dialog.next_hop())
        ack.headers.prepend(
            "Via", Via(transport, self.via_host, self.address[1], (("branch", new_branch()),))
        )
        state.ack = ack.serialize()
        state.ack_destination = (destination, transport)
        assert self._transports is not None
        self._transports.send(Outgoing(state.ack, destination, transport))
        try:
            call.remote_sdp = SessionDescription.parse(response.body)
            call.media = parse_answer(state.offer, call.remote_sdp)
        except SdpError as error:
            # RFC 3261 §13.2.2.4: ACK first, then BYE a session we cannot use.
            await self._bye(call, "failed")
            raise CallFailed(488, f"unusable SDP answer: {error}") from error
        call.peer_allows_update = "UPDATE" in _allow_of(response)
        negotiated = _session_expires(response)
        if negotiated is not None:
            call.session_interval = negotiated[0]
            call.we_refresh = negotiated[1] in (None, "uac")
        call.state = CallState.ESTABLISHED
        call._emit(Answered(call.media))
        if not call._answered.done():
            call._answered.set_result(call.media)
        self._arm_session_timer(call)
        log.info("sip.call_answered", call_id=call.call_id, codec=call.media.codec if call.media else None)

    async def _ack_and_bye_fork(self, state: _OutgoingState, response: Response) -> None:
        assert state.invite is not None
        fork = Dialog.as_uac(state.invite, response)
        if fork.remote_tag in state.extra_dialogs:
            return
        state.extra_dialogs.add(fork.remote_tag)
        destination, transport = await self._resolve(fork.next_hop())
        ack = fork.create_ack(state.invite.cseq.seq)
        ack.headers.prepend(
            "Via", Via(transport, self.via_host, self.address[1], (("branch", new_branch()),))
        )
        assert self._transports is not None
        self._transports.send(Outgoing(ack.serialize(), destination, transport))
        await self._request(fork.create_request("BYE"), destination, transport)

    def _send_cancel(self, state: _OutgoingState, destination: Address, transport: str) -> None:
        """CANCEL (RFC 3261 §9.1): the INVITE's Request-URI, Call-ID, From, To, CSeq number and top Via."""
        invite = state.invite
        if invite is None or state.cancel_sent:
            return
        state.cancel_sent = True
        cancel = Request("CANCEL", invite.uri)
        cancel.headers.add("Via", invite.top_via)
        for route in invite.headers.get_all("Route"):
            cancel.headers.add("Route", route)
        cancel.headers.add("Max-Forwards", 70)
        cancel.headers.add("From", invite.from_)
        cancel.headers.add("To", invite.headers.get("To"))
        cancel.headers.add("Call-ID", invite.call_id)
        cancel.headers.add("CSeq", CSeq(invite.cseq.seq, "CANCEL"))
        assert self._loop is not None
        key = self.layer.send_request(cancel, destination, transport, self._now())
        self._pending[key] = _Pending(cancel, destination, transport, self._loop.create_future())
        self._pump()

    async def _cancel(
        self, call: OutgoingCall, state: _OutgoingState, destination: Address, transport: str
    ) -> None:
        state.cancel_requested = True
        if state.provisional:
            self._send_cancel(state, destination, transport)

    # -- in-dialog requests ----------------------------------------------------------------------------
    async def _dialog_request(
        self,
        call: Call,
        method: str,
        *,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[Response, Request]:
        dialog = call.dialog
        if dialog is None:
            raise CallFailed(481, "no dialog")
        destination, transport = await self._dialog_destination(call, dialog)
        state = self._outgoing.get(call.call_id)
        sent: list[Request] = []

        def build() -> Request:
            request = dialog.create_request(method, headers=headers, body=body, content_type=content_type)
            if method in ("INVITE", "UPDATE", "REFER", "NOTIFY"):
                request.headers.set("Contact", self.contact(transport))
            sent.append(request)
            return request

        response = await self._authenticated(build, destination, transport, state.auth if state else None)
        dialog.receive_response(sent[-1], response)
        return response, sent[-1]

    async def _dialog_destination(self, call: Call, dialog: Dialog) -> tuple[Address, str]:
        if isinstance(call, IncomingCall) and call.transport != "UDP" and not dialog.route_set:
            return call.source, call.transport  # reuse the caller's connection (it may be behind NAT)
        return await self._resolve(dialog.next_hop())

    async def _bye(self, call: Call, reason: str) -> None:
        """End the call now (the application sees it at once), then tell the peer with BYE."""
        call._end(reason, "local")
        self._forget(call)
        if call.dialog is None:
            return
        try:
            await self._dialog_request(call, "BYE")
        except (CallFailed, LocalProtocolError) as error:
            log.info("sip.bye_failed", call_id=call.call_id, error=str(error))
        finally:
            call.dialog.terminate()

    async def _hangup(self, call: Call) -> None:
        if call.ended:
            return
        if isinstance(call, IncomingCall) and call.state is CallState.OFFERED:
            await self._reject(call, 603, "Decline")
            return
        if isinstance(call, OutgoingCall) and call.state in (CallState.CALLING, CallState.EARLY):
            state = self._outgoing.get(call.call_id)
            if state is not None and state.invite is not None:
                destination, transport = await self._resolve(state.invite.uri)
                await self._cancel(call, state, destination, transport)
                return
        await self._bye(call, "bye")

    async def _reinvite(self, call: Call, direction: str) -> NegotiatedMedia | None:
        if call.ended or call.dialog is None or call.local_media is None:
            raise CallFailed(481, "call not established")
        local = call.local_media
        for attempt in range(2):
            try:
                call.dialog.begin_outgoing_invite()
            except LocalProtocolError as error:
                raise CallFailed(491, "an INVITE is already in progress") from error
            try:
                local.direction = direction
                offer = _offer(local)
                headers = self._refresh_headers(call)
                response, request = await self._dialog_request(
                    call, "INVITE", headers=headers, body=offer.serialize(), content_type="application/sdp"
                )
                code = response.status_code
                if 200 <= code < 300:
                    await self._ack_in_dialog(call, request)
                    call.local_sdp = offer
                    if response.body:
                        call.remote_sdp = SessionDescription.parse(response.body)
                        call.media = parse_answer(offer, call.remote_sdp)
                        call._emit(MediaUpdated(call.media))
                    call._last_refresh = self._now()
                    return call.media
                if code == 491 and attempt == 0:
                    await asyncio.sleep(random.uniform(2.1, 4.0))  # RFC 3261 §14.1
                    continue
                if code in (408, 481):
                    await self._bye(call, "failed")
                raise CallFailed(code, response.reason)
            finally:
                call.dialog.end_outgoing_invite()
        raise CallFailed(491, "Request Pending")

    async def _ack_in_dialog(self, call: Call, invite: Request) -> None:
        assert call.dialog is not None
        ack = call.dialog.create_ack(invite.cseq.seq)
        destination, transport = await self._dialog_destination(call, call.dialog)
        ack.headers.prepend(
            "Via", Via(transport, self.via_host, self.address[1], (("branch", new_branch()),))
        )
        assert self._transports is not None
        self._transports.send(Outgoing(ack.serialize(), destination, transport))

    async def _refer(self, call: Call, target: str, timeout: float) -> int:
        if call.ended or call.dialog is None:
            raise CallFailed(481, "call not established")
        refer_to = NameAddress(self._target_uri(target))
        assert self._loop is not None
        call._refer_waiter = self._loop.create_future()
        response, _ = await self._dialog_request(
            call, "REFER", headers=[("Refer-To", refer_to), ("Referred-By", NameAddress(self.aor))]
        )
        if not 200 <= response.status_code < 300:
            call._refer_waiter = None
            return response.status_code
        try:
            async with asyncio.timeout(timeout):
                return await call._refer_waiter
        except TimeoutError:
            return 408
        finally:
            call._refer_waiter = None

    async def _send_info_dtmf(self, call: Call, digit: str, duration_ms: int) -> None:
        if digit.upper() not in _DTMF_DIGITS or len(digit) != 1:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        body = f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()
        response, _ = await self._dialog_request(
            call, "INFO", body=body, content_type="application/dtmf-relay"
        )
        if not 200 <= response.status_code < 300:
            raise CallFailed(response.status_code, response.reason)

    # -- RFC 4028 session timers -----------------------------------------------------------------------
    def _refresh_headers(self, call: Call) -> list[tuple[str, object]]:
        if call.session_interval is None:
            return []
        refresher = (
            ("uas" if isinstance(call, IncomingCall) else "uac")
            if call.we_refresh
            else ("uac" if isinstance(call, IncomingCall) else "uas")
        )
        return [("Session-Expires", f"{call.session_interval};refresher={refresher}")]

    def _note_refresh(self, call: Call, event: RequestReceived) -> bool:
        """Take a re-INVITE/UPDATE as a session refresh (RFC 4028 §10); False after answering 422 itself."""
        requested = _session_expires(event.request)
        if requested is not None and requested[0] < self.settings.min_se:
            self._respond(event, 422, headers=[("Min-SE", str(self.settings.min_se))])
            return False
        call._last_refresh = self._now()
        if requested is not None and call.session_interval is not None:
            call.session_interval = requested[0]
            if requested[1] is not None:
                ours = "uas" if isinstance(call, IncomingCall) else "uac"
                call.we_refresh = requested[1] == ours
            call._emit(SessionRefreshed(call.session_interval))
            self._arm_session_timer(call)
        return True

    def _arm_session_timer(self, call: Call) -> None:
        if call._timer is not None:
            call._timer.cancel()
            call._timer = None
        interval = call.session_interval
        if interval is None or call.ended or self._loop is None:
            return
        if call.we_refresh:
            call._timer = self._loop.call_later(interval / 2, lambda: self._spawn(self._refresh(call)))
        else:
            # RFC 4028 §10: without a refresh, BYE shortly before the interval ends.
            call._timer = self._loop.call_later(
                interval - min(32.0, interval / 3), lambda: self._expire(call)
            )

    async def _refresh(self, call: Call) -> None:
        if call.ended or call.dialog is None:
            return
        try:
            if call.peer_allows_update:
                response, _ = await self._dialog_request(call, "UPDATE", headers=self._refresh_headers(call))
                if not 200 <= response.status_code < 300:
                    raise CallFailed(response.status_code, response.reason)
                call._last_refresh = self._now()
            else:
                await self._reinvite(call, call.local_media.direction if call.local_media else "sendrecv")
            call._emit(SessionRefreshed(call.session_interval or 0))
            self._arm_session_timer(call)
        except CallFailed as error:
            log.warning("sip.session_refresh_failed", call_id=call.call_id, status=error.status_code)
            if error.status_code in (408, 481):
                await self._bye(call, "session-expired")
            else:
                self._arm_session_timer(call)

    def _expire(self, call: Call) -> None:
        interval = call.session_interval or 0
        if call.ended:
            return
        if self._now() - call._last_refresh < interval - min(32.0, interval / 3):
            self._arm_session_timer(call)
            return
        log.warning("sip.session_expired", call_id=call.call_id, interval=interval)
        self._spawn(self._bye(call, "session-expired"))

    # -- helpers ---------------------------------------------------------------------------------------
    def _spawn(self, coro: object) -> None:
        assert self._loop is not None
        task: asyncio.Task[object] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def advertised_address_problems(sip: SipSettings, media: MediaSettings) -> list[str]:
    """What peers would be told that cannot work: wildcard binds without an address to advertise."""
    problems = []
    if sip.local_address in ("0.0.0.0", "::") and not sip.via_address:
        problems.append(
            "SIP_LOCAL_ADDRESS is a wildcard and SIP_VIA_ADDR is not set: Via/Contact say 127.0.0.1"
        )
    if media.address in ("0.0.0.0", "::") and not media.public_address:
        problems.append(
            "MEDIA_ADDRESS is a wildcard and MEDIA_PUBLIC_ADDRESS is not set: SDP would say c=0.0.0.0"
        )
    return problems


def _to_tag(request: Request) -> str | None:
    try:
        return request.to.tag
    except SipParseError:
        return None


def _as_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text if text.startswith(("sip:", "sips:")) else "sip:" + text)
    if not isinstance(uri, SipUri):
        raise LocalProtocolError(f"not a SIP URI: {text!r}")
    return uri


def _offer(local: LocalMedia) -> SessionDescription:
    return build_offer(
        local_address=local.address,
        local_port=local.port,
        session=local.session,
        codecs=local.codecs,
        ptime=local.ptime,
        direction=local.direction,  # type: ignore[arg-type]
    )


def _session_expires(message: Request | Response) -> tuple[int, str | None] | None:
    """RFC 4028 Session-Expires: (interval, refresher or None); None when absent or malformed."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    head, _, rest = value.partition(";")
    try:
        interval = parse_delta_seconds(head, "Session-Expires")
        params = parse_params(";" + rest) if rest else ()
    except SipParseError:
        return None
    refresher = param_value(params, "refresher")
    return interval, refresher.lower() if refresher else None


def _allow_of(message: Request | Response) -> list[str]:
    try:
        return [m.upper() for m in message.allow]
    except SipParseError:
        return []


def _info_dtmf(request: Request) -> tuple[str | None, int]:
    content = request.content_type
    if content is None or not request.body:
        return None, 0
    text = request.body.decode("utf-8", "replace")
    if content.mime == "application/dtmf-relay":
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip()
        signal = fields.get("signal", "")
        duration = fields.get("duration", "")
        digit = signal.upper() if len(signal) == 1 and signal.upper() in _DTMF_DIGITS else None
        if signal in ("10", "11"):
            digit = "*" if signal == "10" else "#"
        return digit, int(duration) if duration.isdigit() else 160
    if content.mime == "application/dtmf":
        signal = text.strip().upper()
        return (signal if len(signal) == 1 and signal in _DTMF_DIGITS else None), 160
    return None, 0


def _warning_text(text: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)[:120]


__all__ = ["ACCEPT", "ALLOW", "SUPPORTED", "UserAgent"]
