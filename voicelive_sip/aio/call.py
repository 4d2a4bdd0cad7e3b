"""Calls as applications see them: `IncomingCall` / `OutgoingCall`, each owning its dialog and state.

A call moves through `sip.call_state.TRANSITIONS`; its in-dialog requests (BYE, re-INVITE for hold, REFER,
INFO, NOTIFY, RFC 4028 refreshes) go out through the narrow `CallEndpoint`; the `CallTable` is how the user
agent finds a call again from a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import structlog

from ..codecs.names import Codec
from ..errors import CallFailed, LocalProtocolError
from ..sdp import (
    LocalSdpSession,
    NegotiatedMedia,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answer_offer,
    build_offer,
    choose_codec,
    parse_answer,
)
from ..sip.auth import DigestClient
from ..sip.call_state import (
    Answered,
    CallEnded,
    CallEvent,
    CallState,
    LocalMedia,
    MediaUpdated,
    SessionRefreshed,
    next_state,
)
from ..sip.dialog import Dialog, DialogId, DialogTable
from ..sip.glare import ReofferAttempts
from ..sip.headers import NameAddress
from ..sip.message import Request, Response, reason_phrase
from ..sip.session_timer import SessionTimer, TimerAction
from ..sip.transaction_events import Address, RequestReceived
from ..sip.uas import ALLOW, SUPPORTED, dtmf_relay_body, warning_text
from .endpoint import CallEndpoint, target_uri

log = structlog.get_logger("voicelive_sip.sip.call")

MAX_QUEUED_CALL_EVENTS = 256


def sdp_offer(local: LocalMedia) -> SessionDescription:
    """Our offer from the call's one media session (the o= version moves only when it changes)."""
    return build_offer(
        local_address=local.address,
        local_port=local.port,
        session=local.session,
        codecs=local.codecs,
        ptime=local.ptime,
        direction=local.direction,  # type: ignore[arg-type]
    )


class CallTable:
    """The calls of one user agent: by dialog, by INVITE transaction, and those not yet ended."""

    def __init__(self, max_dialogs: int) -> None:
        self.dialogs = DialogTable(max_dialogs=max_dialogs)
        self.by_dialog: dict[DialogId, Call] = {}
        self.by_invite: dict[str, IncomingCall] = {}
        self.live: set[Call] = set()

    def track(self, call: Call) -> None:
        """Make the call's dialog findable (LocalProtocolError when the dialog table is full)."""
        assert call.dialog is not None
        self.dialogs.add(call.dialog)
        self.by_dialog[call.dialog.id] = call

    def forget(self, call: Call) -> None:
        """Drop the call's dialog from the tables: later requests in it get 481."""
        if call.dialog is not None:
            self.dialogs.remove(call.dialog)
            self.by_dialog.pop(call.dialog.id, None)

    def find(self, request: Request) -> tuple[Dialog, Call] | None:
        dialog = self.dialogs.for_request(request)
        call = self.by_dialog.get(dialog.id) if dialog is not None else None
        return None if dialog is None or call is None else (dialog, call)


class Call:
    """What incoming and outgoing calls share: dialog, media, events, hang-up, hold, transfer."""

    role = "uac"

    def __init__(
        self, endpoint: CallEndpoint, table: CallTable, call_id: str, local_media: LocalMedia | None
    ) -> None:
        self._endpoint = endpoint
        self._table = table
        self.call_id = call_id
        self.local_media = local_media
        self.dialog: Dialog | None = None
        self.state = CallState.CALLING
        self.media: NegotiatedMedia | None = None
        self.local_sdp: SessionDescription | None = None
        self.remote_sdp: SessionDescription | None = None
        self.session_timer: SessionTimer | None = None
        self.peer_allows_update = False
        self._auth: DigestClient | None = None
        loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._ended: asyncio.Future[CallEnded] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._refer_waiter: asyncio.Future[int] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.call_id} {self.state.value}>"

    @property
    def ended(self) -> bool:
        return self._ended.done()

    @property
    def session_interval(self) -> int | None:
        """The RFC 4028 session interval agreed (s), or None without session timers."""
        return self.session_timer.interval if self.session_timer is not None else None

    @property
    def we_refresh(self) -> bool:
        return self.session_timer is not None and self.session_timer.we_refresh

    async def events(self) -> AsyncIterator[CallEvent]:
        """Everything that happens to the call, ending with `CallEnded`."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, CallEnded):
                return

    async def wait_ended(self) -> CallEnded:
        return await asyncio.shield(self._ended)

    async def hangup(self) -> None:
        """End the call: BYE when established, CANCEL while ringing out, 603 if incoming and unanswered."""
        if not self.ended:
            await self._bye("bye")

    async def hold(self) -> NegotiatedMedia | None:
        """Re-INVITE with a=sendonly (RFC 3264 §8.4); the media session stays the same."""
        return await self._reinvite("sendonly")

    async def unhold(self) -> NegotiatedMedia | None:
        return await self._reinvite("sendrecv")

    async def refer(self, target: str, *, timeout: float = 32.0) -> int:
        """Blind transfer (RFC 3515): REFER, then the final status reported by NOTIFY (sipfrag)."""
        if self.ended or self.dialog is None:
            raise CallFailed(481, "call not established")
        refer_to = NameAddress(target_uri(target, self._endpoint.options.server))
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._refer_waiter = waiter
        try:
            response, _ = await self._dialog_request(
                "REFER", headers=[("Refer-To", refer_to), ("Referred-By", NameAddress(self._endpoint.aor))]
            )
            if not 200 <= response.status_code < 300:
                return response.status_code
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return 408
        finally:
            self._refer_waiter = None

    async def send_info_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        body = dtmf_relay_body(digit, duration_ms)
        response, _ = await self._dialog_request("INFO", body=body, content_type="application/dtmf-relay")
        if not 200 <= response.status_code < 300:
            raise CallFailed(response.status_code, response.reason)

    async def notify_transfer(self, status_code: int, reason: str | None = None) -> None:
        """Report a REFER we accepted (RFC 3515 §2.4.5): NOTIFY with a `message/sipfrag` status line."""
        if self.ended or self.dialog is None:
            raise CallFailed(481, "call not established")
        state = "terminated;reason=noresource" if status_code >= 200 else "active;expires=60"
        body = f"SIP/2.0 {status_code} {reason or reason_phrase(status_code)}\r\n".encode()
        response, _ = await self._dialog_request(
            "NOTIFY",
            headers=[("Event", "refer"), ("Subscription-State", state)],
            body=body,
            content_type="message/sipfrag;version=2.0",
        )
        if not 200 <= response.status_code < 300:
            raise CallFailed(response.status_code, response.reason)

    async def refresh_session(self) -> None:
        """Refresh the session now (RFC 4028 §7.4): UPDATE if the peer allows it, else a re-INVITE."""
        timer = self.session_timer
        if self.ended or self.dialog is None:
            return
        try:
            if self.peer_allows_update:
                response, _ = await self._dialog_request("UPDATE", headers=self._refresh_headers())
                if not 200 <= response.status_code < 300:
                    raise CallFailed(response.status_code, response.reason)
            else:
                await self._reinvite(self.local_media.direction if self.local_media else "sendrecv")
        except CallFailed as error:
            log.warning("sip.session_refresh_failed", call_id=self.call_id, status=error.status_code)
            if error.status_code in (408, 481):  # RFC 4028 §10
                await self._bye("session-expired")
            elif timer is not None:
                timer.refresh_failed(self._endpoint.now())
                self._arm_session_timer()
            return
        if timer is not None:
            timer.refreshed(self._endpoint.now())
            self._emit(SessionRefreshed(timer.interval))
        self._arm_session_timer()

    # -- state -----------------------------------------------------------------------------------------
    def _move(self, state: CallState) -> None:
        self.state = next_state(self.state, state)

    def _emit(self, event: CallEvent) -> None:
        if self._events.qsize() >= MAX_QUEUED_CALL_EVENTS:
            dropped = self._events.get_nowait()  # nobody is reading: keep the newest, bounded
            log.warning("sip.call_event_dropped", call_id=self.call_id, kind=type(dropped).__name__)
        self._events.put_nowait(event)

    def _end(self, reason: str, by: str, status_code: int | None = None) -> None:
        if self._ended.done():
            return
        self._move(CallState.ENDED)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ended = CallEnded(reason, by, status_code)
        self._ended.set_result(ended)
        self._table.live.discard(self)
        self._emit(ended)
        if self._refer_waiter is not None and not self._refer_waiter.done():
            self._refer_waiter.set_exception(CallFailed(481, "call ended"))
        log.info("sip.call_ended", call_id=self.call_id, reason=reason, by=by, status=status_code)

    # -- in-dialog requests ----------------------------------------------------------------------------
    async def _destination(self) -> tuple[Address, str]:
        assert self.dialog is not None
        return await self._endpoint.resolve(self.dialog.next_hop())

    async def _dialog_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[Response, Request]:
        dialog = self.dialog
        if dialog is None:
            raise CallFailed(481, "no dialog")
        destination, transport = await self._destination()
        endpoint = self._endpoint

        def build() -> Request:
            request = dialog.create_request(method, headers=headers, body=body, content_type=content_type)
            if method in ("INVITE", "UPDATE", "REFER", "NOTIFY"):
                request.headers.set("Contact", endpoint.contact(transport))
            return request

        response, sent = await endpoint.authenticated(build, destination, transport, self._auth)
        dialog.receive_response(sent, response)
        return response, sent

    async def _bye(self, reason: str) -> None:
        """End the call now (the application sees it at once), then tell the peer with BYE."""
        self._end(reason, "local")
        self._table.forget(self)
        if self.dialog is None:
            return
        try:
            await self._dialog_request("BYE")
        except (CallFailed, LocalProtocolError) as error:
            log.info("sip.bye_failed", call_id=self.call_id, error=str(error))
        finally:
            self.dialog.terminate()

    async def _reinvite(self, direction: str) -> NegotiatedMedia | None:
        if self.ended or self.dialog is None or self.local_media is None:
            raise CallFailed(481, "call not established")
        local = self.local_media
        # RFC 3261 §14.1: on 491 wait and try once more; the wait depends on who generated the Call-ID.
        attempts = ReofferAttempts(owns_call_id=self.role == "uac")
        while True:
            try:
                self.dialog.begin_outgoing_invite()
            except LocalProtocolError as error:
                raise CallFailed(491, "an INVITE is already in progress") from error
            attempts.begin()
            try:
                local.direction = direction
                offer = sdp_offer(local)
                response, request = await self._dialog_request(
                    "INVITE", headers=self._refresh_headers(), body=offer.serialize(),
                    content_type="application/sdp",
                )  # fmt: skip
                code = response.status_code
                if 200 <= code < 300:
                    destination, transport = await self._destination()
                    self._endpoint.send_ack(self.dialog, request.cseq.seq, destination, transport)
                    self.local_sdp = offer
                    if response.body:
                        self.remote_sdp = SessionDescription.parse(response.body)
                        self.media = parse_answer(offer, self.remote_sdp)
                        self._emit(MediaUpdated(self.media))
                    if self.session_timer is not None:
                        self.session_timer.refreshed(self._endpoint.now())
                    return self.media
            finally:
                self.dialog.end_outgoing_invite()
            retry_at = attempts.retry_at(code, self._endpoint.now())
            if retry_at is not None:
                await asyncio.sleep(max(0.0, retry_at - self._endpoint.now()))
                continue
            if code in (408, 481):
                await self._bye("failed")
            raise CallFailed(code, response.reason)

    # -- RFC 4028 session timers -----------------------------------------------------------------------
    def _refresh_headers(self) -> list[tuple[str, object]]:
        return list(self.session_timer.headers()) if self.session_timer is not None else []

    def _arm_session_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.session_timer is None or self.ended:
            return
        self._timer = self._endpoint.loop.call_at(self.session_timer.get_timer(), self._on_session_timer)

    def _on_session_timer(self) -> None:
        self._timer = None
        timer = self.session_timer
        if timer is None or self.ended:
            return
        action = timer.handle_timer(self._endpoint.now())
        if action is None:
            self._arm_session_timer()  # refreshed meanwhile: the deadline moved
        elif action is TimerAction.REFRESH:
            self._endpoint.spawn(self.refresh_session(), f"sip.session_refresh:{self.call_id}")
        else:
            log.warning("sip.session_expired", call_id=self.call_id, interval=timer.interval)
            self._endpoint.spawn(self._bye("session-expired"), f"sip.session_expired:{self.call_id}")

    def _receive_refresh(self, request: Request) -> None:
        """A re-INVITE/UPDATE from the peer refreshed the session (RFC 4028 §10)."""
        timer = self.session_timer
        if timer is not None and timer.receive_refresh(request, self._endpoint.now()):
            self._emit(SessionRefreshed(timer.interval))
            self._arm_session_timer()


class IncomingCall(Call):
    """An INVITE we received. Answer it with `answer()`, or `ring()` first, or `reject()` it."""

    role = "uas"

    def __init__(
        self,
        endpoint: CallEndpoint,
        table: CallTable,
        event: RequestReceived,
        offer: SessionDescription | None,
        codec: Codec | None,
    ) -> None:
        super().__init__(endpoint, table, event.request.call_id, None)
        self.request = event.request
        self.transaction = event.transaction
        self.source = event.source
        self.transport = event.transport
        self.offer = offer
        self.codec = codec  # chosen once from the offer (our priority among what it carries)
        self.state = CallState.OFFERED
        self._ack: asyncio.Future[Request] = asyncio.get_running_loop().create_future()

    @property
    def from_(self) -> str:
        return str(self.request.from_.uri)

    @property
    def to(self) -> str:
        return str(self.request.to.uri)

    async def ring(self) -> None:
        """Send 180 Ringing."""
        if self.state is CallState.OFFERED and not self.ended:
            self._respond(180, headers=[("Contact", self._endpoint.contact(self.transport))])

    async def answer(
        self,
        *,
        rtp_port: int,
        rtp_address: str | None = None,
        codecs: Sequence[str] | None = None,
        direction: str = "sendrecv",
    ) -> NegotiatedMedia | None:
        """Send 200 with our SDP and wait for the ACK. Raises `CallFailed` (488, 487 cancelled, no ACK)."""
        if self.ended:
            ended = self._ended.result()
            raise CallFailed(ended.status_code or 487, ended.reason)
        if self.state is not CallState.OFFERED:
            raise LocalProtocolError("call already answered")
        options = self._endpoint.options
        local = LocalMedia(
            address=rtp_address or options.sdp_address,
            port=rtp_port,
            codecs=list(codecs or options.codecs),
            ptime=options.ptime,
            session=LocalSdpSession(),
            direction=direction,
        )
        self.local_media = local
        if self.offer is not None:
            try:
                codec = self.codec if codecs is None and self.codec is not None else None
                codec = codec or choose_codec(self.offer, local.codecs)
                answer, negotiated = answer_offer(
                    self.offer, local_address=local.address, local_port=local.port, session=local.session,
                    codecs=[codec], ptime=local.ptime, local_direction=direction,  # type: ignore[arg-type]
                )  # fmt: skip
            except NoCommonCodec as error:
                self._respond(488, headers=[("Warning", f'304 - "{warning_text(str(error))}"')])
                self._end("rejected", "local", 488)
                raise CallFailed(488, "Not Acceptable Here") from error
            self.codec = codec
            local.codecs = [codec]  # later offers in the dialog keep the law Voice Live was opened for
            self.media, self.local_sdp, self.remote_sdp = negotiated, answer, self.offer
        else:
            self.local_sdp = sdp_offer(local)
        timer, timer_headers = SessionTimer.for_uas(
            self.request, default_interval=options.session_expires, now=self._endpoint.now()
        )
        self.session_timer = timer
        headers: list[tuple[str, object]] = [
            ("Contact", self._endpoint.contact(self.transport)),
            ("Allow", ALLOW),
            ("Supported", SUPPORTED),
            *timer_headers,
            ("Content-Type", "application/sdp"),
        ]
        self._respond(200, headers=headers, body=self.local_sdp.serialize())
        self._move(CallState.EARLY)
        ack = await asyncio.shield(self._ack)
        if self.offer is None and ack.method == "ACK" and ack.body:
            try:
                self.remote_sdp = SessionDescription.parse(ack.body)
                self.media = parse_answer(self.local_sdp, self.remote_sdp)
            except SdpError as error:
                log.warning("sip.bad_sdp_in_ack", call_id=self.call_id, error=str(error))
                await self.hangup()
                raise CallFailed(488, "bad SDP answer in ACK") from error
            if self.media.codec in Codec.__members__:
                self.codec = Codec(self.media.codec)
        assert self.dialog is not None
        if self._ended.done():  # not `self.ended`: mypy keeps that narrowed from the check above the await
            return self.media  # a BYE came before (or instead of) the ACK: answered, and already over
        self.dialog.confirm()
        self._move(CallState.ESTABLISHED)
        if self.session_timer is not None:
            self.session_timer.refreshed(self._endpoint.now())
        self._emit(Answered(self.media))
        self._arm_session_timer()
        log.info("sip.call_answered", call_id=self.call_id, codec=self.media.codec if self.media else None)
        return self.media

    async def reject(self, status_code: int = 486, reason: str | None = None) -> None:
        if self.ended or self.state is not CallState.OFFERED:
            return
        self._respond(status_code, reason)
        self._end("rejected", "local", status_code)
        self._fail_ack(CallFailed(status_code, reason or "rejected"))

    async def hangup(self) -> None:
        if self.ended:
            return
        if self.state is CallState.OFFERED:
            await self.reject(603, "Decline")
            return
        await self._bye("bye")

    async def _destination(self) -> tuple[Address, str]:
        assert self.dialog is not None
        if self.transport != "UDP" and not self.dialog.route_set:
            return self.source, self.transport  # reuse the caller's connection (it may be behind NAT)
        return await super()._destination()

    def _respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
    ) -> None:
        """Answer the call's INVITE transaction (with the dialog's To tag)."""
        assert self.dialog is not None
        event = RequestReceived(self.request, self.transaction, self.source, self.transport)
        try:
            self._endpoint.respond(
                event, status, reason, to_tag=self.dialog.local_tag, headers=headers, body=body
            )
        except LocalProtocolError as error:
            raise CallFailed(481, f"cannot answer: {error}") from error
        finally:
            self._endpoint.pump()

    def _acked(self, request: Request) -> None:
        if not self._ack.done():
            self._ack.set_result(request)

    def _fail_ack(self, error: CallFailed) -> None:
        if not self._ack.done():
            self._ack.set_exception(error)
            self._ack.exception()  # retrieved: nobody may be waiting for it


class OutgoingCall(Call):
    """An INVITE we sent. `ua.dial()` returns it at once; `ua.call()` returns it once answered."""

    role = "uac"

    def __init__(
        self,
        endpoint: CallEndpoint,
        table: CallTable,
        call_id: str,
        target: str,
        local_media: LocalMedia,
        auth: DigestClient | None,
    ) -> None:
        super().__init__(endpoint, table, call_id, local_media)
        self.target = target
        self._auth = auth
        self._answered: asyncio.Future[NegotiatedMedia | None] = asyncio.get_running_loop().create_future()
        self._cancel: Callable[[], None] | None = None  # set by the INVITE driver while it can be cancelled
        self.task: asyncio.Task[None] | None = None

    async def answered(self) -> NegotiatedMedia | None:
        """Wait until the callee answers; raises `CallFailed` if it does not."""
        return await asyncio.shield(self._answered)

    async def hangup(self) -> None:
        if self.ended:
            return
        if self.state in (CallState.CALLING, CallState.EARLY) and self._cancel is not None:
            self._cancel()  # CANCEL now, or as soon as a provisional response allows it (RFC 3261 §9.1)
            return
        await self._bye("bye")

    def _set_answered(self, media: NegotiatedMedia | None) -> None:
        if not self._answered.done():
            self._answered.set_result(media)

    def _set_failed(self, error: CallFailed) -> None:
        if not self._answered.done():
            self._answered.set_exception(error)
            self._answered.exception()


__all__ = ["Call", "CallTable", "IncomingCall", "OutgoingCall", "sdp_offer"]
