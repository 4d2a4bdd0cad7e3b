"""The SIP endpoint on asyncio: transports in, the sans-I/O transaction layer, one timer, requests out.

As in aioquic's protocol glue: a received message is fed to the core, the core's events are dispatched to the
transaction user, what the core queued is sent, and one `loop.call_at` is re-armed for its next deadline.
Requests we send go through here too (DNS, Via, the RFC 3261 §18.1.1 size rule, digest answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .._logger import get_logger
from .._tasks import TaskSet
from ..errors import SipParseError
from ..sip.admission import Admission, Verdict
from ..sip.auth import DigestAuthError, DigestClient
from ..sip.dialog import Dialog, new_tag
from ..sip.flood import Flood, FloodGuard, LogSampler, RateLimit
from ..sip.headers import NameAddress, Via
from ..sip.message import Request, Response, error_response, make_response, request_problem
from ..sip.transaction import Timers, TransactionLayer, TransactionLimitReached, new_branch
from ..sip.transaction_events import (
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
from ..sip.uac import ack_for_2xx
from ..sip.uas import stateless_refusal, to_tag
from ..sip.uri import SipUri, Uri
from .options import UserAgentOptions
from .resolve import WILDCARDS, LocalAddresses, Resolver, address_of_record, as_sip_uri, target_uri
from .tls import tls_contexts
from .transport import ConnectFailed, TransportLayer

log = get_logger("voicelive_sip.sip.ua")

UDP_MTU_LIMIT = 1300  # RFC 3261 §18.1.1


class TransactionUser(Protocol):
    """What the endpoint hands up: new requests, ACKs, missing ACKs, stray responses, ended transactions."""

    def on_request(self, event: RequestReceived) -> None: ...
    def on_ack(self, event: AckReceived) -> None: ...
    def on_ack_timeout(self, event: AckTimeout) -> None: ...
    def on_stray(self, event: StrayResponse) -> None: ...
    def on_terminated(self, transaction: str) -> None: ...
    def knows_dialog(self, request: Request) -> bool: ...


class CallEndpoint(Protocol):
    """All a call needs from the user agent: who we are, the clock, and a way to send and answer requests.

    `SipEndpoint` implements it; a test may hand a call a fake one.
    """

    @property
    def options(self) -> UserAgentOptions: ...
    @property
    def aor(self) -> SipUri: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def contact(
        self, transport: str = "UDP", *, secure: bool = False, peer: str | None = None
    ) -> NameAddress: ...
    def local_address_for(self, peer: str | None) -> str: ...
    def now(self) -> float: ...
    def spawn(self, job: Coroutine[Any, Any, Any], name: str) -> None: ...
    def pump(self) -> None: ...
    async def resolve(self, uri: Uri) -> tuple[Address, str]: ...
    async def authenticated(
        self,
        build: Callable[[], Request],
        destination: Address,
        transport: str,
        client: DigestClient | None,
        on_response: Callable[[Response], None] | None = None,
    ) -> tuple[Response, Request]: ...
    def respond(
        self,
        event: RequestReceived,
        status_code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
    ) -> None: ...
    def send_ack(self, dialog: Dialog, invite_seq: int, destination: Address, transport: str) -> bytes: ...
    def acknowledge(self, transaction: str) -> None: ...


@dataclass(slots=True)
class _Pending:
    """A client transaction someone awaits: the first final response, and every response if they care."""

    request: Request
    destination: Address
    transport: str
    final: asyncio.Future[Response]
    on_response: Callable[[Response], None] | None = None


class SipEndpoint:
    """Transports plus transaction layer: the one place SIP messages enter and leave the process."""

    def __init__(self, options: UserAgentOptions, user: TransactionUser) -> None:
        self.options = options
        self.user = user
        self.layer = TransactionLayer(
            Timers(t1=options.t1, t2=max(4.0, options.t1 * 8)), max_transactions=options.max_transactions
        )
        self.admission = Admission(rate=options.max_requests_per_second, allow_from=options.allow_from)
        self.flood = FloodGuard(
            packets_per_second=options.max_packets_per_source,
            ban=options.flood_ban_seconds,
            max_ban=max(options.flood_max_ban_seconds, options.flood_ban_seconds),
        )
        self.new_requests = RateLimit(options.max_new_requests_total)
        self.options_requests = RateLimit(options.max_options_per_second)  # scanners probe with OPTIONS
        self.unknown_dialogs = RateLimit(options.max_unknown_dialog_answers)
        self._parse_log = LogSampler()
        self._flood_log = LogSampler()
        self.tasks = TaskSet()
        self._transports: TransportLayer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._pending: dict[str, _Pending] = {}
        self._send_failures: dict[str, str] = {}  # transaction -> why its connection failed (for the 503)
        self.resolver = Resolver(options.server)
        self._routes = LocalAddresses()

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        options = self.options
        tls = tls_contexts(options)  # TlsSetupError (naming the setting) before any socket is bound
        transports = TransportLayer(
            self._on_message,
            self._on_parse_error,
            self._on_send_error,
            admit=self._within_flood_limit,
            max_connections=options.max_tcp_connections,
            max_connections_per_source=options.max_tcp_connections_per_source,
            idle_timeout=options.tcp_idle_timeout,
            message_timeout=options.tcp_message_timeout,
            tls=tls,
        )
        tls_port = options.tls_port if tls.server is not None else None
        await transports.start(options.local_address, options.port, options.transports, tls_port)
        self._transports = transports

    async def close(self) -> None:
        self.tasks.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transports is not None:
            await self._transports.close()
            self._transports = None

    @property
    def started(self) -> bool:
        return self._transports is not None

    @property
    def transports(self) -> list[str]:
        return self._transports.transports if self._transports is not None else []

    @property
    def address(self) -> Address:
        """The bound (host, port) shared by UDP and TCP."""
        assert self._transports is not None, "UserAgent not started"
        return self._transports.address

    @property
    def tls_address(self) -> Address | None:
        """The TLS listener's (host, port); None without a certificate (SIP_TLS_CERT_FILE)."""
        assert self._transports is not None, "UserAgent not started"
        return self._transports.tls_address

    def port_for(self, transport: str) -> int:
        """Our port for a transport, as Via and Contact name it (TLS has its own listener)."""
        tls = self.tls_address if transport == "TLS" else None
        return tls[1] if tls is not None else self.address[1]

    def keep_alive(self, destination: Address, transport: str) -> bool:
        """Ping our TCP/TLS connection to `destination` (RFC 5626); False when it is gone."""
        return self._transports is not None and self._transports.keep_alive(destination, transport)

    @property
    def via_host(self) -> str:
        """Our host in Via and Contact when the peer is not known (see `advertised_host`)."""
        return self.advertised_host(None)

    def local_address_for(self, peer: str | None) -> str:
        """Where `peer` should reach us: SIP_VIA_ADDR, else the bound address, else (a wildcard bind) our
        address on the interface that routes to `peer` (`LocalAddresses`): not 127.0.0.1 for a remote PBX."""
        host = self.options.via_address or self.address[0]
        loopback = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if host not in WILDCARDS or peer is None:
            return host.strip("[]") if host not in WILDCARDS else loopback
        return self._routes.towards(peer.strip("[]"), loopback)

    def advertised_host(self, peer: str | None = None) -> str:
        """`local_address_for(peer)` as a SIP host (an IPv6 address in brackets)."""
        host = self.local_address_for(peer)
        return f"[{host}]" if ":" in host else host

    @property
    def aor(self) -> SipUri:
        """Our address-of-record: SIP_USER (`address_of_record`), or user@our-address."""
        ours = lambda: SipUri(self.via_host, port=self.address[1])  # noqa: E731 (only once started)
        return address_of_record(self.options.user, self.options.server, ours)

    def contact(
        self, transport: str = "UDP", *, secure: bool = False, peer: str | None = None
    ) -> NameAddress:
        """Our Contact over `transport` (`;transport=tcp|tls`, TLS's own port) for `peer` (its host, for the
        address it can reach us at); a `sips:` URI when `secure` (RFC 3261 §8.1.1.8 and §12.1.1: a request
        to, or a dialog set up by, a SIPS URI; TLS implied)."""
        params = (("transport", transport.lower()),) if transport in ("TCP", "TLS") and not secure else ()
        port = self.port_for("TLS" if secure else transport)
        uri = SipUri(
            host=self.advertised_host(peer), user=self.aor.user or "voicelive", port=port, params=params,
            scheme="sips" if secure else "sip",
        )  # fmt: skip
        return NameAddress(uri, self.options.display_name)

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "UserAgent not started"
        return self._loop

    def spawn(self, job: Coroutine[Any, Any, Any], name: str) -> None:
        self.tasks.spawn(job, name=name)

    # -- receiving -------------------------------------------------------------------------------------
    def _admit(self, source: Address, *, new_request: bool = True) -> bool:
        verdict = self.admission.admit(source[0], self.now(), new_request=new_request)
        # Security events name the host alone under `source`, so one fail2ban pattern matches them all.
        if verdict is Verdict.REFUSED:
            log.info("security.acl_denied", source=source[0], port=source[1])
        elif verdict is Verdict.THROTTLED_FIRST:
            log.warning(
                "security.flood", source=source[0], port=source[1], limit=self.options.max_requests_per_second
            )
        return verdict is Verdict.ADMIT

    def _within_flood_limit(self, source: Address) -> bool:
        """Every packet counts against its source's budget (pike); a source over it is banned for a while."""
        verdict = self.flood.packet(source[0], self.now())
        if verdict is Flood.NEW_BAN:
            seconds = round(self.flood.banned_for(source[0], self.now()), 3)
            log.warning(
                "security.banned", source=source[0], port=source[1], seconds=seconds, reason="flood",
                limit=self.options.max_packets_per_source,
            )  # fmt: skip
        return verdict is Flood.PASS

    def security_counters(self) -> dict[str, int]:
        """What the defences dropped so far, by kind (for metrics)."""
        return {
            "flood_dropped": self.flood.dropped,
            "flood_bans": self.flood.bans,
            "new_requests_dropped": self.new_requests.refused,
            "options_dropped": self.options_requests.refused,
            "unknown_dialog_dropped": self.unknown_dialogs.refused,
            "malformed": self._parse_log.total,
            "tls_handshake_failed": self._transports.tls_handshake_failures if self._transports else 0,
        }

    def _flood_event(self, source: Address, scope: str, limit: int) -> None:
        if self._flood_log.allow(self.now()):
            log.warning(
                "security.flood", source=source[0], port=source[1], scope=scope, limit=limit,
                suppressed=self._flood_log.take_suppressed(),
            )  # fmt: skip

    def _on_message(self, message: Request | Response, source: Address, transport: str) -> None:
        # The transport has already counted this message against its source's budget (`admit`).
        try:
            if isinstance(message, Request):
                tag = to_tag(message)
                fresh = message.method not in ("ACK", "CANCEL") and tag is None
                if not self._admit(source, new_request=fresh):
                    return
                # The OPTIONS cap first: a scanner's OPTIONS must not use up the tokens real INVITEs need.
                if message.method == "OPTIONS" and fresh and not self.options_requests.take(self.now()):
                    self._flood_event(source, "options", self.options.max_options_per_second)
                    return
                if fresh and not self.new_requests.take(self.now()):
                    self._flood_event(source, "new_requests_total", self.options.max_new_requests_total)
                    return
                # A request for a dialog that does not exist (a BYE flood): 481 costs as much as the request,
                # so only so many are answered a second; the rest are dropped unanswered.
                # Likewise a CANCEL for an INVITE we do not have (it carries no To tag, RFC 3261 §9.1).
                unknown = (
                    tag is not None and message.method != "ACK" and not self.user.knows_dialog(message)
                ) or (message.method == "CANCEL" and self.layer.cancelled_invite(message) is None)
                if unknown and not self.unknown_dialogs.take(self.now()):
                    self._flood_event(source, "unknown_dialog", self.options.max_unknown_dialog_answers)
                    return
                # Mandatory headers are checked before a transaction exists: a request without From, To,
                # Call-ID, CSeq or Via gets a stateless 400 (or nothing) and leaves no state behind.
                problem = request_problem(message)
                if problem is not None:
                    raise problem
                # RFC 3261 §18.2.1 and RFC 3581: note where the request really came from.
                via = stamped = message.top_via
                if via.host.strip("[]") != source[0]:
                    stamped = stamped.with_param("received", source[0])
                if via.wants_rport:
                    stamped = stamped.with_param("rport", str(source[1]))
                if stamped is not via:
                    message.headers.replace_first("Via", stamped)
            self.layer.receive(message, source, transport, self.now())
        except SipParseError as error:  # a mandatory header is missing, or one the layer needed did not parse
            self._answer_parse_error(error, message, source, transport)
        except TransactionLimitReached:
            if isinstance(message, Request) and message.method != "ACK":
                self.stateless(make_response(message, 503, headers=[("Retry-After", "5")]), source, transport)
        self.pump()

    def _answer_parse_error(
        self, error: SipParseError, message: Request | Response, source: Address, transport: str
    ) -> None:
        if self._parse_log.allow(self.now()):
            log.info(
                "sip.parse_error",
                source=source,
                error=error.detail,
                suppressed=self._parse_log.take_suppressed(),
            )
        if isinstance(message, Request):
            response = stateless_refusal(message, error)
            if response is not None:
                self.stateless(response, source, transport)

    def _on_parse_error(self, error: SipParseError, source: Address, transport: str) -> None:
        if self._parse_log.allow(self.now()):  # sampled: junk must not become a log flood
            log.info(
                "sip.parse_error",
                source=source,
                transport=transport,
                error=error.detail,
                status=error.status_code,
                suppressed=self._parse_log.take_suppressed(),
            )
        if not self._admit(source):
            return
        response = error_response(error)
        if response is not None:
            self.send_raw(response.serialize(), source, transport)

    def _on_send_error(self, out: Outgoing, error: Exception) -> None:
        if out.transaction is not None:
            if isinstance(error, ConnectFailed) and out.transaction in self._pending:
                self._send_failures[out.transaction] = str(error)
            self.layer.transport_error(out.transaction, self.now())
            self.pump()

    # -- the engine ------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Dispatch every queued event, send every queued message, re-arm the timer."""
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
        try:
            self.layer.handle_timer(self.now())
        except Exception:  # a broken transaction must not stop every other timer: log it and go on
            log.exception("sip.timer_failed")
        self.pump()  # re-arms the timer for whatever is due next

    def _dispatch(self, event: TransactionEvent) -> None:
        user = self.user
        if isinstance(event, RequestReceived):
            user.on_request(event)
        elif isinstance(event, ResponseReceived):
            pending = self._pending.get(event.transaction)
            if pending is not None:
                if pending.on_response is not None:
                    pending.on_response(event.response)
                if event.response.status_code >= 200 and not pending.final.done():
                    pending.final.set_result(event.response)
        elif isinstance(event, AckReceived):
            user.on_ack(event)
        elif isinstance(event, AckTimeout):
            user.on_ack_timeout(event)
        elif isinstance(event, TransactionTimeout | TransportFailed):
            pending = self._pending.get(event.transaction)
            if pending is not None and not pending.final.done():
                # RFC 3261 §8.1.3.1: a timeout counts as 408, a transport failure as 503.
                code = 408 if isinstance(event, TransactionTimeout) else 503
                reason = self._send_failures.pop(event.transaction, None)
                pending.final.set_result(make_response(pending.request, code, reason))
        elif isinstance(event, TransactionTerminated):
            self._pending.pop(event.transaction, None)
            self._send_failures.pop(event.transaction, None)
            user.on_terminated(event.transaction)
        elif isinstance(event, StrayResponse):
            user.on_stray(event)

    # -- responding ------------------------------------------------------------------------------------
    def respond(
        self,
        event: RequestReceived,
        status_code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
    ) -> None:
        """Answer a server transaction (a To tag is added to a non-100 response that lacks one)."""
        request = event.request
        # RFC 3261 §8.2.6.2 (a request without any To, RFC 4475 insuf, still gets its 400).
        if to_tag is None and status_code > 100 and "To" in request.headers and request.to.tag is None:
            to_tag = new_tag()
        response = make_response(request, status_code, reason, to_tag=to_tag, headers=headers, body=body)
        response.headers.add("Server", self.options.user_agent)
        self.layer.respond(event.transaction, response, self.now())

    def stateless(self, response: Response, destination: Address, transport: str) -> None:
        self.layer.send_stateless(response, destination, transport)

    def acknowledge(self, transaction: str) -> None:
        """Stop resending our 2xx to an INVITE (its dialog ended another way)."""
        self.layer.acknowledge(transaction)

    def send_raw(self, data: bytes, destination: Address, transport: str) -> None:
        """Bytes outside any transaction: ACKs for 2xx and stateless error answers."""
        if self._transports is not None:
            self._transports.send(Outgoing(data, destination, transport))

    def send_ack(self, dialog: Dialog, invite_seq: int, destination: Address, transport: str) -> bytes:
        """The ACK for a 2xx (RFC 3261 §13.2.2.4): a transaction of its own with a new branch; returns it."""
        host = self.advertised_host(destination[0])
        via = Via(transport, host, self.port_for(transport), (("branch", new_branch()),))
        data = ack_for_2xx(dialog, invite_seq, via).serialize()
        self.send_raw(data, destination, transport)
        return data

    # -- sending requests ------------------------------------------------------------------------------
    async def resolve(self, uri: Uri) -> tuple[Address, str]:
        """Next hop for a URI (`Resolver.resolve`); a TLS hop's certificate name goes to the transport."""
        destination, transport, server_name = await self.resolver.resolve(uri, self.transports)
        if server_name is not None and self._transports is not None:
            self._transports.name_destination(destination, server_name)
        return destination, transport

    def send_request(
        self,
        request: Request,
        destination: Address,
        transport: str,
        on_response: Callable[[Response], None] | None = None,
    ) -> asyncio.Future[Response]:
        """Add our Via and User-Agent, pick UDP or TCP (size rule), start the client transaction."""
        if request.method == "CANCEL":
            return self._start(request, destination, transport, on_response)  # the INVITE's Via (§9.1)
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.options.user_agent)
        via = Via(
            transport,
            self.advertised_host(destination[0]),
            self.port_for(transport),
            (("branch", new_branch()), ("rport", None)),
        )
        request.headers.prepend("Via", via)
        if transport == "UDP" and "TCP" in self.transports and len(request.serialize()) > UDP_MTU_LIMIT:
            # RFC 3261 §18.1.1: a request over 1300 bytes goes over a congestion-controlled transport.
            transport = "TCP"
            request.headers.replace_first("Via", Via("TCP", via.host, via.port, via.params))
            if "Contact" in request.headers:
                request.headers.set("Contact", self.contact("TCP", peer=destination[0]))
        return self._start(request, destination, transport, on_response)

    def _start(
        self,
        request: Request,
        destination: Address,
        transport: str,
        on_response: Callable[[Response], None] | None,
    ) -> asyncio.Future[Response]:
        key = self.layer.send_request(request, destination, transport, self.now())
        final: asyncio.Future[Response] = self.loop.create_future()
        self._pending[key] = _Pending(request, destination, transport, final, on_response)
        self.pump()
        return final

    async def request(
        self,
        request: Request,
        destination: Address,
        transport: str,
        on_response: Callable[[Response], None] | None = None,
    ) -> Response:
        """Send a request and return its final response (408 for a timeout, 503 for a transport failure)."""
        final = self.send_request(request, destination, transport, on_response)
        response = await final
        upgraded = request.top_via.transport == "TCP" and transport == "UDP"
        if response.status_code == 503 and upgraded:
            # The TCP attempt for a large request failed: RFC 3261 §18.1.1 allows falling back to UDP.
            request.headers.remove_first("Via")
            response = await self.send_request(request, destination, "UDP", on_response)
        return response

    async def authenticated(
        self,
        build: Callable[[], Request],
        destination: Address,
        transport: str,
        client: DigestClient | None,
        on_response: Callable[[Response], None] | None = None,
    ) -> tuple[Response, Request]:
        """Send a request, answering 401/407 with credentials once per challenge (RFC 3261 §22).

        `build()` makes a fresh request (new CSeq); it is called again only after a challenge. Returns the
        final response and the request it answers.
        """
        request = build()
        if client is not None:  # realms already known are answered up front, without waiting for a challenge
            for answer in client.authorize(request.method, str(request.uri), request.body):
                request.headers.add(answer.header_name, answer.header_value)
        for _ in range(4):
            response = await self.request(request, destination, transport, on_response)
            if response.status_code not in (401, 407) or client is None:
                return response, request
            challenges = response.headers.get_all(
                "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
            )
            try:
                answer = client.respond(
                    response.status_code, challenges, method=request.method, uri=str(request.uri),
                    body=request.body,
                )  # fmt: skip
            except (DigestAuthError, SipParseError) as error:  # refused, or a challenge we cannot read
                log.warning(
                    "sip.auth_failed", method=request.method, status=response.status_code, reason=str(error)
                )
                return response, request
            request = build()
            request.headers.add(answer.header_name, answer.header_value)
        return response, request


__all__ = ["CallEndpoint", "SipEndpoint", "TransactionUser", "as_sip_uri", "target_uri"]
