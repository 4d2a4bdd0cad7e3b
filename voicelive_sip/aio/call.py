"""Calls as applications see them: `IncomingCall` / `OutgoingCall`, each owning its dialog and state.

A call moves through `sip.call_state.TRANSITIONS`; its in-dialog requests (BYE, re-INVITE for hold, REFER,
INFO, NOTIFY, RFC 4028 refreshes) go out through the narrow `CallEndpoint`; the `CallTable` is how the user
agent finds a call again from a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence

from .._logger import get_logger
from ..errors import CallFailed, LocalProtocolError, SipParseError
from ..sdes import SUITES, SdesKey, srtp_policy
from ..sdp import (
    LocalSdpSession,
    MediaNotAcceptable,
    NegotiatedMedia,
    SdpError,
    SessionDescription,
    answer_offer,
    build_offer,
    parse_answer,
)
from ..sip.auth import DigestClient
from ..sip.call_state import (
    CallEnded,
    CallEvent,
    CallState,
    InfoDtmf,
    LocalMedia,
    MediaUpdated,
    ReferProgress,
    SessionRefreshed,
    TransferRequested,
    next_state,
)
from ..sip.dialog import Dialog, DialogId, DialogTable
from ..sip.glare import ReofferAttempts
from ..sip.headers import NameAddress
from ..sip.message import Request, Response, reason_phrase
from ..sip.session_timer import SessionTimer, TimerAction, parse_session_expires
from ..sip.transaction_events import Address, RequestReceived
from ..sip.uas import ALLOW, dtmf_relay_body, info_dtmf, refer_status, warning_text
from .endpoint import CallEndpoint, target_uri
from .options import UserAgentOptions

log = get_logger("voicelive_sip.sip.call")

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
        srtp=local.offer_policy,
        srtp_keys=local.offer_srtp_keys,
    )


def new_local_media(
    options: UserAgentOptions,
    port: int,
    address: str | None = None,
    codecs: Sequence[str] | None = None,
    direction: str = "sendrecv",
) -> LocalMedia:
    """Our side of a call's SDP, kept (with its o= session) for the whole call; defaults from the options."""
    policy = srtp_policy(options.srtp)
    return LocalMedia(
        address=address or options.sdp_address,
        port=port,
        codecs=list(codecs or options.codecs),
        ptime=options.ptime,
        session=LocalSdpSession(),
        direction=direction,
        srtp=policy,
        # RFC 4568 §8.2: fresh random keys for every call (secrets), one per suite in our preference order.
        offer_keys=() if policy == "off" else tuple(SdesKey.generate(suite) for suite in SUITES.values()),
    )


class CallTable:
    """The calls of one user agent: by dialog, by re-INVITE awaiting its ACK, and those not yet ended."""

    def __init__(self, max_dialogs: int) -> None:
        self.dialogs = DialogTable(max_dialogs=max_dialogs)
        self.by_dialog: dict[DialogId, Call] = {}
        self.by_reinvite: dict[str, Call] = {}  # re-INVITEs we answered with 2xx, until their ACK
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
        self._reoffer: SessionDescription | None = None  # our offer in a 2xx to an offerless re-INVITE

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
    def _settle(self, media: NegotiatedMedia) -> None:
        """An offer/answer exchange completed: its outcome is the call's media (and SRTP keys) from now on."""
        previous = self.media.srtp if self.media is not None else None
        self.media = media
        if self.local_media is not None:
            self.local_media.settle(media)
        if media.srtp != previous:
            # Which suite, never a key; whether each direction's key changed is the media leg's to log.
            suite = media.srtp.suite.name if media.srtp is not None else None
            log.info(
                "sip.srtp_negotiated", call_id=self.call_id, suite=suite, renegotiated=previous is not None
            )

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
                request.headers.set("Contact", endpoint.contact(transport, peer=destination[0]))
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
                        media = parse_answer(offer, self.remote_sdp, srtp=local.srtp)
                        self._settle(media)
                        self._emit(MediaUpdated(media))
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

    # -- requests the peer sends in the dialog (RFC 3261 §12.2.2; the dialog has accepted their CSeq) -----
    def _receive(self, event: RequestReceived, dialog: Dialog) -> None:
        handler = {
            "BYE": self._on_bye,
            "INVITE": self._on_reinvite,
            "UPDATE": self._on_update,
            "INFO": self._on_info,
            "REFER": self._on_refer,
            "NOTIFY": self._on_notify,
        }.get(event.request.method)
        if handler is None:
            self._endpoint.respond(event, 405, headers=[("Allow", ALLOW)])
            return
        handler(event, dialog)

    def _on_bye(self, event: RequestReceived, dialog: Dialog) -> None:
        self._endpoint.respond(event, 200)
        self._peer_hung_up(event.request)
        self._end("bye", "remote")
        self._table.forget(self)

    def _peer_hung_up(self, request: Request) -> None:
        """A BYE arrived (IncomingCall: it may have overtaken the ACK)."""

    def _refresh_allowed(self, event: RequestReceived) -> bool:
        """RFC 4028 §10: refuse an interval below Min-SE (422), else take the request as a session refresh."""
        requested = parse_session_expires(event.request)
        min_se = self._endpoint.options.min_se
        if requested is not None and requested[0] < min_se:
            self._endpoint.respond(event, 422, headers=[("Min-SE", str(min_se))])
            return False
        timer = self.session_timer
        if timer is not None and timer.receive_refresh(event.request, self._endpoint.now()):
            self._emit(SessionRefreshed(timer.interval))
            self._arm_session_timer()
        return True

    def _on_reinvite(self, event: RequestReceived, dialog: Dialog) -> None:
        refused = dialog.begin_incoming_invite(event.request)
        if refused is not None:  # an INVITE of ours is pending (491) or theirs overlaps (500 + Retry-After)
            retry = [(n, v) for n, v in refused.headers if n == "Retry-After"]
            self._endpoint.respond(event, refused.status_code, headers=retry)
            return
        if not self._refresh_allowed(event):
            dialog.end_incoming_invite()
            return
        answered = self._answer_in_dialog(event)
        if answered is None:
            dialog.end_incoming_invite()
            return
        body, offer = answered
        headers: list[tuple[str, object]] = [
            ("Contact", self._endpoint.contact(event.transport, peer=event.source[0])),
            ("Allow", ALLOW),
            *self._refresh_headers(),
            ("Content-Type", "application/sdp"),
        ]
        self._endpoint.respond(event, 200, headers=headers, body=body)
        self._reoffer = offer
        self._table.by_reinvite[event.transaction] = self

    def _reinvite_acked(self, ack: Request) -> None:
        """The ACK of our 2xx to a re-INVITE; when that re-INVITE had no offer, the ACK carries the answer."""
        if self.dialog is not None:
            self.dialog.end_incoming_invite()
        offer, self._reoffer = self._reoffer, None
        if offer is None or not ack.body or self.local_media is None:
            return
        try:
            self.remote_sdp = SessionDescription.parse(ack.body)
            media = parse_answer(offer, self.remote_sdp, srtp=self.local_media.srtp)
        except SdpError as error:
            log.warning("sip.bad_sdp_in_ack", call_id=self.call_id, error=str(error))
            return
        self._settle(media)
        self._emit(MediaUpdated(media))

    def _ack_timed_out(self) -> None:
        """Our 2xx got no ACK within 64·T1 (RFC 3261 §13.3.1.4): end the call with BYE."""
        if self.ended:
            return
        log.warning("sip.ack_timeout", call_id=self.call_id)
        self._endpoint.spawn(self._bye("ack-timeout"), f"sip.ack_timeout_bye:{self.call_id}")

    def _answer_in_dialog(self, event: RequestReceived) -> tuple[bytes, SessionDescription | None] | None:
        """Answer from the call's single media session (hold flips direction, nothing is re-made).

        Returns the SDP to send and, when the request had no offer, our offer (the answer comes in the ACK);
        None after answering an error itself.
        """
        local = self.local_media
        if local is None:
            self._endpoint.respond(event, 491)  # offer/answer still in progress (RFC 3261 §14.2)
            return None
        if not event.request.body:
            offer = sdp_offer(local)
            self.local_sdp = offer
            return offer.serialize(), offer
        try:
            remote = SessionDescription.parse(event.request.body)
            answer, media = answer_offer(
                remote, local_address=local.address, local_port=local.port, session=local.session,
                codecs=local.codecs, ptime=local.ptime, local_direction=local.direction,  # type: ignore[arg-type]
                srtp=local.srtp, srtp_keys=local.srtp_keys,
            )  # fmt: skip
        except MediaNotAcceptable as error:
            self._endpoint.respond(event, 488, headers=[("Warning", f'304 - "{warning_text(str(error))}"')])
            return None
        except SdpError as error:
            warning = f'399 - "{warning_text(str(error))}"'
            self._endpoint.respond(event, 400, "Bad SDP", headers=[("Warning", warning)])
            return None
        self.remote_sdp, self.local_sdp = remote, answer
        self._settle(media)
        self._emit(MediaUpdated(media))
        log.info(
            "sip.media_updated", call_id=self.call_id, on_hold=media.on_hold, direction=media.local_direction,
            srtp=media.srtp.suite.name if media.srtp is not None else None,
        )  # fmt: skip
        return answer.serialize(), None

    def _on_update(self, event: RequestReceived, dialog: Dialog) -> None:
        if not self._refresh_allowed(event):
            return
        headers: list[tuple[str, object]] = [
            ("Contact", self._endpoint.contact(event.transport, peer=event.source[0])),
            *self._refresh_headers(),
        ]
        if not event.request.body:
            self._endpoint.respond(event, 200, headers=headers)
            return
        answered = self._answer_in_dialog(event)
        if answered is not None:
            headers.append(("Content-Type", "application/sdp"))
            self._endpoint.respond(event, 200, headers=headers, body=answered[0])

    def _on_info(self, event: RequestReceived, dialog: Dialog) -> None:
        digit, duration = info_dtmf(event.request)
        self._endpoint.respond(event, 200)
        if digit is not None:
            self._emit(InfoDtmf(digit, duration))
            log.info("sip.dtmf_info", call_id=self.call_id, digit=digit)

    def _on_refer(self, event: RequestReceived, dialog: Dialog) -> None:
        try:
            target = str(NameAddress.parse(event.request.headers.get("Refer-To") or "").uri)
        except SipParseError:
            self._endpoint.respond(event, 400, "Bad Refer-To")
            return
        self._endpoint.respond(event, 202)
        self._emit(TransferRequested(target, event.request.headers.get("Referred-By")))
        log.info("sip.transfer_requested", call_id=self.call_id, target=target)

    def _on_notify(self, event: RequestReceived, dialog: Dialog) -> None:
        self._endpoint.respond(event, 200)
        status = refer_status(event.request)
        if status is None:
            return
        self._emit(ReferProgress(status.status_code, status.reason, status.final))
        log.info("sip.refer_progress", call_id=self.call_id, status=status.status_code, final=status.final)
        waiter = self._refer_waiter
        if status.final and waiter is not None and not waiter.done():
            waiter.set_result(status.status_code)

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


__all__ = ["Call", "CallTable", "new_local_media", "sdp_offer"]
