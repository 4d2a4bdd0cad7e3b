"""The asyncio SIP user agent: `async with UserAgent(options) as ua`, then `incoming_calls()`, `dial()`...

It wires the endpoint (transports + transaction layer), the UAS half (`incoming.py`), the UAC half
(`outgoing.py`) and registrations together. Everything the network can make us hold is bounded: transactions,
dialogs, calls, queued calls, TCP connections, and new requests per source per second.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any, Protocol

from .._logger import get_logger
from ..errors import CallFailed, LocalProtocolError
from ..sip.auth import DigestClient
from ..sip.headers import NameAddress
from ..sip.message import Request
from ..sip.transaction_events import AckReceived, AckTimeout, Address, RequestReceived, StrayResponse
from ..sip.uri import SipUri
from .call import Call, CallTable, new_local_media
from .endpoint import SipEndpoint, as_sip_uri, target_uri
from .incoming import IncomingRequests
from .incoming_call import IncomingCall
from .options import UserAgentOptions, advertised_address_problems
from .outgoing import OutgoingCalls
from .outgoing_call import OutgoingCall
from .registration import Registration
from .resolve import caller_uri, check_display_name

log = get_logger("voicelive_sip.sip.ua")


class _ToOptions(Protocol):
    """Anything that converts itself to `UserAgentOptions` (the product layer's `SipSettings`)."""

    def agent_options(self, media: Any = None) -> UserAgentOptions: ...


class UserAgent:
    """A SIP user agent: `async with UserAgent(options) as ua`, then `incoming_calls()` and `dial()`/`call()`.

    Takes `UserAgentOptions` (plain data), or the product's `SipSettings` (and `MediaSettings`), converted.
    """

    def __init__(self, options: UserAgentOptions | _ToOptions | None = None, media: Any = None) -> None:
        if options is None:
            options = UserAgentOptions()
        elif not isinstance(options, UserAgentOptions):
            options = options.agent_options(media)
        self.options = options
        self._endpoint = SipEndpoint(options, self)
        self._table = CallTable(max_dialogs=options.max_calls * 4 + 64)
        self._incoming = IncomingRequests(self._endpoint, self._table)
        self._outgoing = OutgoingCalls(self._endpoint, self._table)
        self.registrations: list[Registration] = []

    # -- lifecycle -------------------------------------------------------------------------------------
    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self._endpoint.start()
        log.info(
            "sip.agent_started",
            address=self.address, tls_address=self.tls_address, transports=self._endpoint.transports,
        )  # fmt: skip
        for problem in advertised_address_problems(self.options):
            log.warning("sip.address_warning", problem=problem)
        if self.options.register_enabled:
            self.register()

    async def close(self, *, timeout: float = 4.0) -> None:
        """Hang up calls, remove registrations (Expires: 0), close the transports."""
        if not self._endpoint.started:
            return
        calls = {id(c): c for c in [*self._table.by_dialog.values(), *self._table.live] if not c.ended}
        jobs = [self._close_call(c) for c in calls.values()]
        jobs += [r.unregister() for r in self.registrations]
        if jobs:
            await asyncio.wait([asyncio.ensure_future(j) for j in jobs], timeout=timeout)
        for call in calls.values():
            if isinstance(call, OutgoingCall) and call.task is not None:
                call.task.cancel()
        await self._endpoint.close()
        log.info("sip.agent_stopped")

    async def _close_call(self, call: Call) -> None:
        try:
            await call.hangup()
        except (CallFailed, LocalProtocolError) as error:
            log.info("sip.shutdown_hangup_failed", call_id=call.call_id, error=str(error))
        if not call.ended:
            call._end("shutdown", "local")

    # -- who we are ------------------------------------------------------------------------------------
    @property
    def address(self) -> Address:
        """The bound (host, port) shared by UDP and TCP."""
        return self._endpoint.address

    @property
    def tls_address(self) -> Address | None:
        """The TLS listener's (host, port): None unless SIP_TLS_CERT_FILE is set."""
        return self._endpoint.tls_address

    @property
    def via_host(self) -> str:
        return self._endpoint.via_host

    @property
    def aor(self) -> SipUri:
        """Our address-of-record: SIP_USER, or user@our-address."""
        return self._endpoint.aor

    def contact(self, transport: str = "UDP", *, secure: bool = False) -> NameAddress:
        return self._endpoint.contact(transport, secure=secure)

    @property
    def draining(self) -> bool:
        """While draining, new INVITEs and OPTIONS get 503."""
        return self._incoming.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._incoming.draining = value

    @property
    def health(self) -> Callable[[], str | None] | None:
        """A check the application sets: it returns why new calls would fail (e.g. Voice Live is unreachable),
        or None. While it says so, OPTIONS and new INVITEs get 503 with Retry-After."""
        return self._incoming.health

    @health.setter
    def health(self, check: Callable[[], str | None] | None) -> None:
        self._incoming.health = check

    @property
    def other_calls(self) -> Callable[[], int]:
        """How many calls the application carries beside SIP (browser calls): they count to SIP_MAX_CALLS."""
        return self._incoming.other_calls

    @other_calls.setter
    def other_calls(self, count: Callable[[], int]) -> None:
        self._incoming.other_calls = count

    def unavailable(self) -> tuple[str, int] | None:
        """Why a new call would be refused now (draining, full, unhealthy) and its Retry-After; or None."""
        return self._incoming.unavailable()

    def security_counters(self) -> dict[str, int]:
        """Packets and requests the defences dropped so far, by kind (flood, malformed, unknown dialog)."""
        return self._endpoint.security_counters()

    @property
    def active_calls(self) -> int:
        """Calls not yet ended (incoming from the INVITE on, outgoing from dial())."""
        return len(self._table.live)

    # -- calls -----------------------------------------------------------------------------------------
    async def incoming_calls(self) -> AsyncGenerator[IncomingCall, None]:
        """Every new incoming call, in arrival order."""
        async for call in self._incoming.calls():
            yield call

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
        from_uri: SipUri | None = None,
        display_name: str | None = None,
    ) -> OutgoingCall:
        """Start an outgoing call and return it at once; `await call.answered()` waits for the answer.

        `from_uri` and `display_name` replace the From of this call (default: the AOR and SIP_DISPLAY_NAME);
        `caller_uri` makes one from a string."""
        options = self.options
        uri = target_uri(target, options.server)
        local = new_local_media(options, rtp_port, rtp_address, codecs)
        if credentials is None and options.auth_password is not None:
            credentials = (options.auth_user or self.aor.user or "", options.auth_password)
        auth = DigestClient(*credentials, realm=options.auth_realm) if credentials is not None else None
        call_id = f"{secrets.token_hex(12)}@{self.via_host.strip('[]')}"
        call = OutgoingCall(self._endpoint, self._table, call_id, str(uri), local, auth)
        name = options.display_name if display_name is None else check_display_name(display_name)
        from_ = NameAddress(from_uri or self.aor, name)
        self._outgoing.start(call, uri, list(headers), timeout or options.invite_timeout, from_)
        return call

    def caller_uri(self, text: str) -> SipUri:
        """A From for `dial`: a SIP URI as given, a bare user at SIP_SERVER's host; ValueError otherwise."""
        ours = lambda: SipUri(self.via_host, port=self._endpoint.address[1])  # noqa: E731
        return caller_uri(text, self.options.server, ours)

    async def call(
        self,
        target: str,
        *,
        rtp_port: int,
        rtp_address: str | None = None,
        credentials: tuple[str, str] | None = None,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
        codecs: Sequence[str] | None = None,
        from_uri: SipUri | None = None,
        display_name: str | None = None,
    ) -> OutgoingCall:
        """Place a call and return it once answered (ACK sent); raises `CallFailed` otherwise."""
        call = self.dial(
            target, rtp_port=rtp_port, rtp_address=rtp_address, credentials=credentials, headers=headers,
            timeout=timeout, codecs=codecs, from_uri=from_uri, display_name=display_name,
        )  # fmt: skip
        try:
            await call.answered()
        except asyncio.CancelledError:
            await call.hangup()
            raise
        return call

    # -- registration ----------------------------------------------------------------------------------
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
        """Start (and keep refreshing) a registration; defaults come from the options."""
        options = self.options
        server = registrar or options.server
        if not server:
            raise LocalProtocolError("registration needs SIP_SERVER (or registrar=)")
        try:
            registrar_uri = as_sip_uri(server)
            aor_uri = as_sip_uri(aor) if aor else self.aor
        except ValueError as error:
            raise LocalProtocolError(str(error)) from error
        if aor is None and not options.user:
            aor_uri = SipUri(host=registrar_uri.host, user="voicelive")
        registration = Registration(
            self._endpoint,
            registrar_uri,
            aor_uri,
            username=username or options.auth_user or aor_uri.user or "",
            password=password if password is not None else options.auth_password,
            realm=realm or options.auth_realm,
            expires=expires or options.register_expires,
        )
        self.registrations.append(registration)
        registration.start()
        return registration

    # -- the transaction user: what the endpoint hands up ----------------------------------------------
    def on_request(self, event: RequestReceived) -> None:
        self._incoming.on_request(event)

    def on_ack(self, event: AckReceived) -> None:
        self._incoming.on_ack(event)

    def on_ack_timeout(self, event: AckTimeout) -> None:
        self._incoming.on_ack_timeout(event)

    def on_stray(self, event: StrayResponse) -> None:
        self._outgoing.on_stray(event)

    def on_terminated(self, transaction: str) -> None:
        self._incoming.on_terminated(transaction)

    def knows_dialog(self, request: Request) -> bool:
        return self._table.dialogs.for_request(request) is not None


__all__ = ["UserAgent"]
