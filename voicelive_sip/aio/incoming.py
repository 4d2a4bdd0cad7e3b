"""Requests that reach us (the UAS side): prechecks, new calls, CANCEL, ACK, and routing in-dialog requests.

The decisions that need no I/O (prechecks, merged requests) live in the sans-I/O `sip.uas`; a request inside
a dialog goes to its `Call`, which serves it (`Call._receive`): the user agent only finds the call.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Callable

from .._logger import get_logger
from ..codecs.names import Codec
from ..errors import LocalProtocolError, SipParseError
from ..sdes import srtp_policy
from ..sdp import MediaNotAcceptable, SdpError, SessionDescription, choose_codec
from ..sip.auth import DigestServer, VerifyOutcome, parse_credentials
from ..sip.call_state import CallState
from ..sip.dialog import Dialog
from ..sip.guard import AuthGuard
from ..sip.session_timer import parse_session_expires
from ..sip.transaction_events import AckReceived, AckTimeout, RequestReceived
from ..sip.uas import (
    ACCEPT,
    ALLOW,
    SUPPORTED,
    MergedRequests,
    allow_of,
    precheck,
    warning_text,
)
from .call import Call, CallTable
from .endpoint import SipEndpoint
from .incoming_call import IncomingCall

log = get_logger("voicelive_sip.sip.ua")


class IncomingRequests:
    """The UAS half of the user agent: admits new calls into a bounded queue, serves in-dialog requests."""

    def __init__(self, endpoint: SipEndpoint, table: CallTable) -> None:
        self.endpoint = endpoint
        self.options = endpoint.options
        self.table = table
        self.draining = False
        # Set by the application (the gateway: Voice Live reachability): why new calls would fail, or None.
        self.health: Callable[[], str | None] | None = None
        # Calls the application carries beside SIP (the gateway's browser calls): they count to SIP_MAX_CALLS.
        self.other_calls: Callable[[], int] = lambda: 0
        self.merged = MergedRequests()
        self.queue: asyncio.Queue[IncomingCall] = asyncio.Queue(maxsize=self.options.max_calls)
        self._by_invite: dict[str, IncomingCall] = {}  # our INVITE server transactions, until they end
        # Calls per source host not yet answered and acknowledged: a half-open INVITE flood from one host
        # must not take every call slot (SIP_MAX_PENDING_INVITES_PER_SOURCE).
        self._pending: dict[str, set[IncomingCall]] = {}
        self._auth: DigestServer | None = None
        if self.options.inbound_auth_user and self.options.inbound_auth_password:
            realm = self.options.auth_realm or "voicelive-sip"
            self._auth = DigestServer(secrets.token_bytes(32), realm, qop="auth")
        self._guard = AuthGuard(
            max_failures=self.options.auth_max_failures,
            user_max_failures=self.options.auth_user_max_failures,
            window=self.options.auth_failure_window,
            ban=self.options.auth_ban_seconds,
            max_ban=self.options.auth_max_ban_seconds,
        )

    async def calls(self) -> AsyncGenerator[IncomingCall, None]:
        while True:
            call = await self.queue.get()
            if not call.ended:
                yield call

    # -- dispatch --------------------------------------------------------------------------------------
    def on_request(self, event: RequestReceived) -> None:
        request = event.request
        refusal = precheck(request, self.merged)
        if refusal is not None:
            self.endpoint.respond(event, refusal.status_code, refusal.reason, headers=refusal.headers)
            return
        method = request.method
        if method == "OPTIONS":
            self._on_options(event)
        elif method == "CANCEL":
            self._on_cancel(event)
        elif method == "INVITE" and request.to.tag is None:
            self._on_invite(event)
        elif method == "REFER" and request.to.tag is None:
            self.endpoint.respond(event, 403, "Out-Of-Dialog REFER Not Accepted")
        elif method == "REFER" and "Refer-To" not in request.headers:
            self.endpoint.respond(event, 400, "Missing Refer-To")
        else:
            found = self._in_dialog(event)
            if found is not None:
                dialog, call = found
                call._receive(event, dialog)

    def _pending_from(self, host: str) -> int:
        """Calls from `host` still waiting for their answer or its ACK (those settled are forgotten here)."""
        calls = self._pending.get(host)
        if not calls:
            return 0
        calls -= {c for c in calls if c.ended or c.state is CallState.ESTABLISHED}
        if not calls:
            del self._pending[host]
            return 0
        return len(calls)

    def on_terminated(self, transaction: str) -> None:
        call = self._by_invite.pop(transaction, None)
        if call is not None:  # the INVITE is settled: answered and acknowledged, or refused
            calls = self._pending.get(call.source[0])
            if calls is not None:
                calls.discard(call)
                if not calls:
                    del self._pending[call.source[0]]
        self.table.by_reinvite.pop(transaction, None)
        self.merged.discard_transaction(transaction)

    def _in_dialog(self, event: RequestReceived) -> tuple[Dialog, Call] | None:
        """The dialog and call of an in-dialog request; answers 481 (none) or 500 (out of order) itself."""
        found = self.table.find(event.request)
        if found is None:
            self.endpoint.respond(event, 481)
            return None
        refused = found[0].receive_request(event.request)
        if refused is not None:
            self.endpoint.respond(event, refused.status_code, refused.reason)
            return None
        return found

    @property
    def active(self) -> int:
        """Calls that count to SIP_MAX_CALLS: live SIP calls and the application's other calls."""
        return len(self.table.live) + self.other_calls()

    def unavailable(self) -> tuple[str, int] | None:
        """Why a new call would be refused now, with the Retry-After to give; None when one can be taken.

        What OPTIONS answers (503 then, 200 otherwise), so a dispatcher's probing (Kamailio's
        ds_probing_mode) takes a draining, full or cut-off gateway out of its set and puts it back after.
        """
        if self.draining:
            return "draining", 30
        if self.active >= self.options.max_calls:
            return "full", 5
        problem = self.health() if self.health is not None else None
        if problem:
            return problem, 30
        return None

    def _on_options(self, event: RequestReceived) -> None:
        headers: list[tuple[str, object]] = [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)]
        refusal = self.unavailable()
        if refusal is None:
            self.endpoint.respond(event, 200, headers=headers)
            return
        reason, retry_after = refusal
        headers += [("Retry-After", str(retry_after)), ("Warning", f'399 - "{warning_text(reason)}"')]
        self.endpoint.respond(event, 503, headers=headers)

    # -- new calls -------------------------------------------------------------------------------------
    def _on_invite(self, event: RequestReceived) -> None:
        request = event.request
        respond = self.endpoint.respond
        if self.draining:
            respond(event, 503, headers=[("Retry-After", "30")])
            return
        if self.active >= self.options.max_calls:
            log.info("sip.call_refused_busy", call_id=request.call_id, active=self.active)
            extra = [("Retry-After", "5")] if self.options.busy_status == 503 else []
            respond(event, self.options.busy_status, headers=extra)
            return
        problem = self.health() if self.health is not None else None
        if problem:  # the call would fail: 503 at once, so a proxy tries another gateway
            log.info("sip.call_refused_unhealthy", call_id=request.call_id, reason=problem)
            warning = f'399 - "{warning_text(problem)}"'
            respond(event, 503, headers=[("Retry-After", "30"), ("Warning", warning)])
            return
        if self._pending_from(event.source[0]) >= self.options.max_pending_invites_per_source:
            log.warning(
                "security.flood", source=event.source[0], port=event.source[1], scope="pending_invites",
                limit=self.options.max_pending_invites_per_source,
            )  # fmt: skip
            respond(event, 486)
            return
        if self._auth is not None and not self._check_auth(event):
            return
        timer = parse_session_expires(request)
        if timer is not None and timer[0] < self.options.min_se:
            respond(event, 422, headers=[("Min-SE", str(self.options.min_se))])
            return
        offer: SessionDescription | None = None
        codec: Codec | None = None
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                # The call's one codec choice; an offer MEDIA_SRTP refuses gets its 488 here, before ringing.
                codec = choose_codec(
                    offer, self.options.codecs, srtp=srtp_policy(self.options.srtp), initial=True
                )
            except MediaNotAcceptable as error:
                respond(event, 488, headers=[("Warning", f'304 - "{warning_text(str(error))}"')])
                return
            except SdpError as error:
                respond(event, 400, "Bad SDP", headers=[("Warning", f'399 - "{warning_text(str(error))}"')])
                return
        call = IncomingCall(self.endpoint, self.table, event, offer, codec)
        call.dialog = Dialog.as_uas(request, self.endpoint.contact(event.transport, peer=event.source[0]))
        call.peer_allows_update = "UPDATE" in allow_of(request)
        try:
            self.table.track(call)
            self.queue.put_nowait(call)
        except (LocalProtocolError, asyncio.QueueFull):
            self.table.forget(call)
            respond(event, 503, headers=[("Retry-After", "5")])
            return
        self._by_invite[event.transaction] = call
        self.merged.add(request, event.transaction)
        self.table.live.add(call)
        self._pending.setdefault(event.source[0], set()).add(call)
        log.info(
            "sip.incoming_call",
            call_id=call.call_id,
            remote=event.source,
            transport=event.transport,
            from_=call.from_,
            to=call.to,
        )

    def _check_auth(self, event: RequestReceived) -> bool:
        server = self._auth
        assert server is not None
        now = self.endpoint.now()
        host = event.source[0]
        # A banned source or user gets 403 without a challenge and without its credentials being checked:
        # even the right password is refused until the ban ends, which is what makes guessing pointless.
        if self._guard.check(host, None, now) is not None:
            self.endpoint.respond(event, 403)
            return False
        values = event.request.headers.get_all("Authorization")
        if not values:
            self.endpoint.respond(event, 401, headers=[("WWW-Authenticate", server.challenge(now))])
            return False
        try:
            claimed: str | None = parse_credentials(values[0]).username
        except SipParseError:
            claimed = None  # verify() says whether it is malformed Digest or another scheme
        if claimed is not None and self._guard.check(host, claimed, now) is not None:
            self.endpoint.respond(event, 403)
            return False
        user, secret = self.options.inbound_auth_user, self.options.inbound_auth_password
        try:
            result = server.verify(
                values[0], method="INVITE", password_for=lambda name: secret if name == user else None,
                now=now, body=event.request.body,
            )  # fmt: skip
        except SipParseError:
            self._auth_failed(event, None, "malformed Authorization", now)
            self.endpoint.respond(event, 400, "Bad Authorization")
            return False
        if result.outcome is VerifyOutcome.OK:
            self._guard.succeeded(host, result.username)
            return True
        if result.outcome is VerifyOutcome.STALE:
            challenge = server.challenge(now, stale=True)
            self.endpoint.respond(event, 401, headers=[("WWW-Authenticate", challenge)])
            return False
        self._auth_failed(event, result.username, result.reason or "failed", now)
        self.endpoint.respond(event, 403)
        return False

    def _auth_failed(self, event: RequestReceived, user: str | None, reason: str, now: float) -> None:
        """Log the failure (never the credentials), count it, and log the bans it starts."""
        host = event.source[0]
        shown = user[:64] if user is not None else None  # the claimed name, bounded: it is the peer's text
        log.warning("security.auth_failed", source=host, port=event.source[1], user=shown, reason=reason)
        # Only our one user has a counter: guessing names that do not exist gains nothing, and the
        # user table stays one entry long however many names a peer invents.
        counted = user if user == self.options.inbound_auth_user else None
        for ban in self._guard.failed(host, counted, now):
            log.warning(
                "security.banned", **{ban.subject.value: ban.key}, seconds=ban.seconds, failures=ban.failures
            )

    # -- ACK and its absence ---------------------------------------------------------------------------
    def on_ack(self, event: AckReceived) -> None:
        if event.transaction is None:
            return  # an ACK for a 2xx whose transaction is gone: nothing left to do
        call = self._by_invite.get(event.transaction)
        if call is not None:
            call._acked(event.request)
            return
        reinvited = self.table.by_reinvite.pop(event.transaction, None)
        if reinvited is not None:
            reinvited._reinvite_acked(event.request)

    def on_ack_timeout(self, event: AckTimeout) -> None:
        call = self._by_invite.get(event.transaction) or self.table.by_reinvite.get(event.transaction)
        if call is not None:
            call._ack_timed_out()

    # -- CANCEL ----------------------------------------------------------------------------------------
    def _on_cancel(self, event: RequestReceived) -> None:
        call = self._by_invite.get(event.cancels) if event.cancels is not None else None
        if call is None:
            self.endpoint.respond(event, 481)
            return
        assert call.dialog is not None
        # RFC 3261 §9.2: the 200 to CANCEL carries the INVITE's To tag; the INVITE then gets 487.
        self.endpoint.respond(event, 200, to_tag=call.dialog.local_tag)
        call._cancelled_by_peer()


__all__ = ["IncomingRequests"]
