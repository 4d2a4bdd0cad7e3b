"""A call that reached us: an INVITE to ring, answer or reject, then a `Call` like any other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from .._logger import get_logger
from ..codecs.names import Codec
from ..errors import CallFailed, LocalProtocolError
from ..sdp import (
    MediaNotAcceptable,
    NegotiatedMedia,
    SdpError,
    SessionDescription,
    answer_offer,
    choose_codec,
    parse_answer,
)
from ..sip.call_state import Answered, CallState
from ..sip.message import Request
from ..sip.session_timer import SessionTimer
from ..sip.transaction_events import Address, RequestReceived
from ..sip.uas import ALLOW, SUPPORTED, warning_text
from .call import Call, CallTable, new_local_media, sdp_offer
from .endpoint import CallEndpoint
from .resolve import WILDCARDS

log = get_logger("voicelive_sip.sip.call")


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
            self._respond(
                180, headers=[("Contact", self._endpoint.contact(self.transport, peer=self.source[0]))]
            )

    async def answer(
        self,
        *,
        rtp_port: int,
        rtp_address: str | None = None,
        codecs: Sequence[str] | None = None,
        direction: str = "sendrecv",
        headers: Iterable[tuple[str, str]] = (),
    ) -> NegotiatedMedia | None:
        """Send 200 with our SDP and wait for the ACK. Raises `CallFailed` (488, 487 cancelled, no ACK).

        `headers` go into the 200 as well (e.g. `("Supported", "replaces")` from an application that handles
        an INVITE with Replaces itself)."""
        if self.ended:
            ended = self._ended.result()
            raise CallFailed(ended.status_code or 487, ended.reason)
        if self.state is not CallState.OFFERED:
            raise LocalProtocolError("call already answered")
        options = self._endpoint.options
        local = new_local_media(options, rtp_port, rtp_address, codecs, direction)
        if local.address in WILDCARDS:  # RTP bound to every interface: the one that routes to the caller
            local.address = self._endpoint.local_address_for(self.source[0])
        self.local_media = local
        if self.offer is not None:
            try:
                codec = self.codec if codecs is None and self.codec is not None else None
                codec = codec or choose_codec(self.offer, local.codecs, srtp=local.srtp)
                answer, negotiated = answer_offer(
                    self.offer, local_address=local.address, local_port=local.port, session=local.session,
                    codecs=[codec], ptime=local.ptime, local_direction=direction,  # type: ignore[arg-type]
                    srtp=local.srtp,
                )  # fmt: skip
            except MediaNotAcceptable as error:
                self._respond(488, headers=[("Warning", f'304 - "{warning_text(str(error))}"')])
                self._end("rejected", "local", 488)
                raise CallFailed(488, "Not Acceptable Here") from error
            self.codec = codec
            local.codecs = [codec]  # later offers in the dialog keep the law Voice Live was opened for
            self.local_sdp, self.remote_sdp = answer, self.offer
            self._settle(negotiated)
        else:
            self.local_sdp = sdp_offer(local)
        timer, timer_headers = SessionTimer.for_uas(
            self.request, default_interval=options.session_expires, now=self._endpoint.now()
        )
        self.session_timer = timer
        ok_headers: list[tuple[str, object]] = [
            ("Contact", self._endpoint.contact(self.transport, peer=self.source[0])),
            ("Allow", ALLOW),
            ("Supported", SUPPORTED),
            *timer_headers,
            *headers,
            ("Content-Type", "application/sdp"),
        ]
        self._respond(200, headers=ok_headers, body=self.local_sdp.serialize())
        self._move(CallState.EARLY)
        ack = await asyncio.shield(self._ack)
        if self.offer is None and ack.method == "ACK" and ack.body:
            try:
                self.remote_sdp = SessionDescription.parse(ack.body)
                srtp = self.local_media.srtp if self.local_media is not None else None
                self._settle(parse_answer(self.local_sdp, self.remote_sdp, srtp=srtp))
            except SdpError as error:
                log.warning("sip.bad_sdp_in_ack", call_id=self.call_id, error=str(error))
                await self.hangup()
                raise CallFailed(488, "bad SDP answer in ACK") from error
            assert self.media is not None
            if self.media.codec in Codec.__members__:
                self.codec = Codec(self.media.codec)
                self.local_media.codecs = [self.codec]  # as with an offer: later offers keep this codec
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

    def _peer_hung_up(self, request: Request) -> None:
        if not self._ack.done():
            # The ACK was lost or overtaken: the call was answered (our 200 confirmed the dialog, RFC 3261
            # §12.1.1) and has now ended. Stop resending the 200 and let answer() return.
            self._endpoint.acknowledge(self.transaction)
            self._ack.set_result(request)

    def _ack_timed_out(self) -> None:
        if not self.ended:
            self._fail_ack(CallFailed(408, "no ACK for our 200"))
        super()._ack_timed_out()

    def _cancelled_by_peer(self) -> None:
        """A CANCEL matched our INVITE (RFC 3261 §9.2): 487 to the INVITE if it is still unanswered."""
        if self.state is CallState.OFFERED and not self.ended:
            self._respond(487)
            self._end("cancelled", "remote", 487)
            self._fail_ack(CallFailed(487, "Request Terminated"))
            self._table.forget(self)

    def _fail_ack(self, error: CallFailed) -> None:
        if not self._ack.done():
            self._ack.set_exception(error)
            self._ack.exception()  # retrieved: nobody may be waiting for it


__all__ = ["IncomingCall"]
