"""Requests that reach us (the UAS side): new calls, CANCEL and ACK, and every in-dialog request.

Decisions that need no I/O (prechecks, body parsing, session-timer rules) live in the sans-I/O `sip.uas`
and `sip.session_timer`; this module applies them to the calls in the `CallTable`, answering via the endpoint.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import structlog

from ..codecs.names import Codec
from ..errors import CallFailed, LocalProtocolError, SipParseError
from ..sdp import NoCommonCodec, SdpError, SessionDescription, answer_offer, choose_codec, parse_answer
from ..sip.auth import DigestServer, VerifyOutcome
from ..sip.call_state import CallState, InfoDtmf, MediaUpdated, ReferProgress, TransferRequested
from ..sip.dialog import Dialog
from ..sip.headers import NameAddress
from ..sip.message import request_problem
from ..sip.session_timer import parse_session_expires
from ..sip.transaction_events import AckReceived, AckTimeout, RequestReceived
from ..sip.uas import (
    ACCEPT,
    ALLOW,
    SUPPORTED,
    MergedRequests,
    allow_of,
    info_dtmf,
    precheck,
    refer_status,
    warning_text,
)
from .call import Call, CallTable, IncomingCall, sdp_offer
from .endpoint import SipEndpoint

log = structlog.get_logger("voicelive_sip.sip.ua")


@dataclass(slots=True)
class _ServerReinvite:
    """A re-INVITE we answered, waiting for its ACK (which may carry the SDP answer)."""

    call: Call
    offer: SessionDescription | None = None


class IncomingRequests:
    """The UAS half of the user agent: admits new calls into a bounded queue, serves in-dialog requests."""

    def __init__(self, endpoint: SipEndpoint, table: CallTable) -> None:
        self.endpoint = endpoint
        self.options = endpoint.options
        self.table = table
        self.draining = False
        self.merged = MergedRequests()
        self.queue: asyncio.Queue[IncomingCall] = asyncio.Queue(maxsize=self.options.max_calls)
        self._reinvites: dict[str, _ServerReinvite] = {}
        self._auth: DigestServer | None = None
        if self.options.inbound_auth_user and self.options.inbound_auth_password:
            realm = self.options.auth_realm or "voicelive-sip"
            self._auth = DigestServer(secrets.token_bytes(32), realm, qop="auth")

    async def calls(self) -> AsyncGenerator[IncomingCall, None]:
        while True:
            call = await self.queue.get()
            if not call.ended:
                yield call

    # -- dispatch --------------------------------------------------------------------------------------
    def on_request(self, event: RequestReceived) -> None:
        request = event.request
        problem = request_problem(request)
        if problem is not None:
            self.endpoint.respond(
                event, 400, problem.reason, headers=[("Warning", f'399 - "{problem.detail}"')]
            )
            return
        refusal = precheck(request, self.merged)
        if refusal is not None:
            self.endpoint.respond(event, refusal.status_code, refusal.reason, headers=refusal.headers)
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

    def on_terminated(self, transaction: str) -> None:
        self.table.by_invite.pop(transaction, None)
        self._reinvites.pop(transaction, None)
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

    def _on_options(self, event: RequestReceived) -> None:
        status = 503 if self.draining else 200
        self.endpoint.respond(
            event, status, headers=[("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)]
        )

    # -- new calls -------------------------------------------------------------------------------------
    def _on_invite(self, event: RequestReceived) -> None:
        request = event.request
        respond = self.endpoint.respond
        if request.to.tag is not None:
            self._on_reinvite(event)
            return
        if self.draining:
            respond(event, 503, headers=[("Retry-After", "30")])
            return
        if len(self.table.live) >= self.options.max_calls:
            log.info("sip.call_refused_busy", call_id=request.call_id, active=len(self.table.live))
            extra = [("Retry-After", "5")] if self.options.busy_status == 503 else []
            respond(event, self.options.busy_status, headers=extra)
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
                codec = choose_codec(offer, self.options.codecs)  # the call's one codec choice
            except NoCommonCodec as error:
                respond(event, 488, headers=[("Warning", f'304 - "{warning_text(str(error))}"')])
                return
            except SdpError as error:
                respond(event, 400, "Bad SDP", headers=[("Warning", f'399 - "{warning_text(str(error))}"')])
                return
        call = IncomingCall(self.endpoint, self.table, event, offer, codec)
        call.dialog = Dialog.as_uas(request, self.endpoint.contact(event.transport))
        call.peer_allows_update = "UPDATE" in allow_of(request)
        try:
            self.table.track(call)
            self.queue.put_nowait(call)
        except (LocalProtocolError, asyncio.QueueFull):
            self.table.forget(call)
            respond(event, 503, headers=[("Retry-After", "5")])
            return
        self.table.by_invite[event.transaction] = call
        self.merged.add(request, event.transaction)
        self.table.live.add(call)
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
        values = event.request.headers.get_all("Authorization")
        if not values:
            self.endpoint.respond(event, 401, headers=[("WWW-Authenticate", server.challenge(now))])
            return False
        user, secret = self.options.inbound_auth_user, self.options.inbound_auth_password
        try:
            result = server.verify(
                values[0], method="INVITE", password_for=lambda name: secret if name == user else None,
                now=now, body=event.request.body,
            )  # fmt: skip
        except SipParseError:
            self.endpoint.respond(event, 400, "Bad Authorization")
            return False
        if result.outcome is VerifyOutcome.OK:
            return True
        if result.outcome is VerifyOutcome.STALE:
            challenge = server.challenge(now, stale=True)
            self.endpoint.respond(event, 401, headers=[("WWW-Authenticate", challenge)])
            return False
        log.warning("sip.inbound_auth_failed", source=event.source, reason=result.reason)
        self.endpoint.respond(event, 403)
        return False

    # -- ACK and its absence ---------------------------------------------------------------------------
    def on_ack(self, event: AckReceived) -> None:
        if event.transaction is None:
            return  # an ACK for a 2xx whose transaction is gone: nothing left to do
        call = self.table.by_invite.get(event.transaction)
        if call is not None and not call._ack.done():
            call._acked(event.request)
            return
        pending = self._reinvites.get(event.transaction)
        if pending is None:
            return
        target = pending.call
        if target.dialog is not None:
            target.dialog.end_incoming_invite()
        if pending.offer is not None and event.request.body and target.local_media is not None:
            try:
                target.remote_sdp = SessionDescription.parse(event.request.body)
                target.media = parse_answer(pending.offer, target.remote_sdp)
                target._emit(MediaUpdated(target.media))
            except SdpError as error:
                log.warning("sip.bad_sdp_in_ack", call_id=target.call_id, error=str(error))

    def on_ack_timeout(self, event: AckTimeout) -> None:
        call = self.table.by_invite.get(event.transaction)
        reinvite = self._reinvites.get(event.transaction)
        target = call if call is not None else reinvite.call if reinvite is not None else None
        if target is None or target.ended:
            return
        log.warning("sip.ack_timeout", call_id=target.call_id)
        if call is not None:
            call._fail_ack(CallFailed(408, "no ACK for our 200"))
        self.endpoint.spawn(target._bye("ack-timeout"), f"sip.ack_timeout_bye:{target.call_id}")

    # -- ending ----------------------------------------------------------------------------------------
    def _on_bye(self, event: RequestReceived) -> None:
        found = self._in_dialog(event)
        if found is None:
            return
        call = found[1]
        self.endpoint.respond(event, 200)
        if isinstance(call, IncomingCall) and not call._ack.done():
            # The ACK was lost or overtaken: the call was answered (our 200 confirmed the dialog, RFC 3261
            # §12.1.1) and has now ended. Stop resending the 200 and let answer() return.
            self.endpoint.acknowledge(call.transaction)
            call._acked(event.request)
        call._end("bye", "remote")
        self.table.forget(call)

    def _on_cancel(self, event: RequestReceived) -> None:
        call = self.table.by_invite.get(event.cancels) if event.cancels is not None else None
        if call is None:
            self.endpoint.respond(event, 481)
            return
        assert call.dialog is not None
        # RFC 3261 §9.2: the 200 to CANCEL carries the INVITE's To tag; the INVITE then gets 487.
        self.endpoint.respond(event, 200, to_tag=call.dialog.local_tag)
        if call.state is CallState.OFFERED and not call.ended:
            call._respond(487)
            call._end("cancelled", "remote", 487)
            call._fail_ack(CallFailed(487, "Request Terminated"))
            self.table.forget(call)

    # -- offers inside the dialog ----------------------------------------------------------------------
    def _refresh_allowed(self, call: Call, event: RequestReceived) -> bool:
        """RFC 4028 §10: refuse an interval below Min-SE (422), else note the refresh."""
        requested = parse_session_expires(event.request)
        if requested is not None and requested[0] < self.options.min_se:
            self.endpoint.respond(event, 422, headers=[("Min-SE", str(self.options.min_se))])
            return False
        call._receive_refresh(event.request)
        return True

    def _on_reinvite(self, event: RequestReceived) -> None:
        found = self._in_dialog(event)
        if found is None:
            return
        dialog, call = found
        refused = dialog.begin_incoming_invite(event.request)
        if refused is not None:
            retry = [(n, v) for n, v in refused.headers if n == "Retry-After"]
            self.endpoint.respond(event, refused.status_code, headers=retry)
            return
        if not self._refresh_allowed(call, event):
            dialog.end_incoming_invite()
            return
        body, offer = self._answer_in_dialog(call, event)
        if body is None:
            dialog.end_incoming_invite()
            return
        headers: list[tuple[str, object]] = [
            ("Contact", self.endpoint.contact(event.transport)),
            ("Allow", ALLOW),
            *call._refresh_headers(),
            ("Content-Type", "application/sdp"),
        ]
        self.endpoint.respond(event, 200, headers=headers, body=body)
        self._reinvites[event.transaction] = _ServerReinvite(call, offer)

    def _answer_in_dialog(
        self, call: Call, event: RequestReceived
    ) -> tuple[bytes | None, SessionDescription | None]:
        """Answer in-dialog from the call's single media session (hold flips direction, nothing is re-made).

        Returns the SDP to send and, when the request had no offer, our offer (the answer comes in the ACK).
        """
        local = call.local_media
        if local is None:
            self.endpoint.respond(event, 491)  # offer/answer still in progress (RFC 3261 §14.2)
            return None, None
        if not event.request.body:
            offer = sdp_offer(local)
            call.local_sdp = offer
            return offer.serialize(), offer
        try:
            remote = SessionDescription.parse(event.request.body)
            answer, media = answer_offer(
                remote, local_address=local.address, local_port=local.port, session=local.session,
                codecs=local.codecs, ptime=local.ptime, local_direction=local.direction,  # type: ignore[arg-type]
            )  # fmt: skip
        except NoCommonCodec as error:
            self.endpoint.respond(event, 488, headers=[("Warning", f'304 - "{warning_text(str(error))}"')])
            return None, None
        except SdpError as error:
            warning = f'399 - "{warning_text(str(error))}"'
            self.endpoint.respond(event, 400, "Bad SDP", headers=[("Warning", warning)])
            return None, None
        call.remote_sdp, call.local_sdp, call.media = remote, answer, media
        call._emit(MediaUpdated(media))
        log.info(
            "sip.media_updated", call_id=call.call_id, on_hold=media.on_hold, direction=media.local_direction
        )
        return answer.serialize(), None

    def _on_update(self, event: RequestReceived) -> None:
        found = self._in_dialog(event)
        if found is None:
            return
        call = found[1]
        if not self._refresh_allowed(call, event):
            return
        headers: list[tuple[str, object]] = [
            ("Contact", self.endpoint.contact(event.transport)),
            *call._refresh_headers(),
        ]
        if not event.request.body:
            self.endpoint.respond(event, 200, headers=headers)
            return
        body, _ = self._answer_in_dialog(call, event)
        if body is not None:
            headers.append(("Content-Type", "application/sdp"))
            self.endpoint.respond(event, 200, headers=headers, body=body)

    # -- INFO, REFER, NOTIFY ---------------------------------------------------------------------------
    def _on_info(self, event: RequestReceived) -> None:
        found = self._in_dialog(event)
        if found is None:
            return
        call = found[1]
        digit, duration = info_dtmf(event.request)
        self.endpoint.respond(event, 200)
        if digit is not None:
            call._emit(InfoDtmf(digit, duration))
            log.info("sip.dtmf_info", call_id=call.call_id, digit=digit)

    def _on_refer(self, event: RequestReceived) -> None:
        if event.request.to.tag is None:
            self.endpoint.respond(event, 403, "Out-Of-Dialog REFER Not Accepted")
            return
        refer_to = event.request.headers.get("Refer-To")
        if refer_to is None:
            self.endpoint.respond(event, 400, "Missing Refer-To")
            return
        found = self._in_dialog(event)
        if found is None:
            return
        call = found[1]
        try:
            target = str(NameAddress.parse(refer_to).uri)
        except SipParseError:
            self.endpoint.respond(event, 400, "Bad Refer-To")
            return
        self.endpoint.respond(event, 202)
        call._emit(TransferRequested(target, event.request.headers.get("Referred-By")))
        log.info("sip.transfer_requested", call_id=call.call_id, target=target)

    def _on_notify(self, event: RequestReceived) -> None:
        found = self._in_dialog(event)
        if found is None:
            return
        call = found[1]
        self.endpoint.respond(event, 200)
        status = refer_status(event.request)
        if status is None:
            return
        call._emit(ReferProgress(status.status_code, status.reason, status.final))
        log.info("sip.refer_progress", call_id=call.call_id, status=status.status_code, final=status.final)
        waiter = call._refer_waiter
        if status.final and waiter is not None and not waiter.done():
            waiter.set_result(status.status_code)


__all__ = ["IncomingRequests"]
