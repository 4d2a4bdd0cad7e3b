"""Calls we place (the UAC side): INVITE with digest answers, redirects, 422, CANCEL, forks, the ACK."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._logger import get_logger
from ..errors import CallFailed, LocalProtocolError
from ..sdp import SdpError, SessionDescription, parse_answer
from ..sip.call_state import CallState
from ..sip.dialog import Dialog, new_tag
from ..sip.headers import NameAddress
from ..sip.message import Request, Response
from ..sip.replaces import supports_replaces
from ..sip.session_timer import SessionTimer
from ..sip.transaction_events import Address, StrayResponse
from ..sip.uac import cancel_for, new_request
from ..sip.uas import ALLOW, SUPPORTED, allow_of
from ..sip.uri import Uri
from .call import CallTable, sdp_offer
from .endpoint import SipEndpoint
from .outgoing_call import OutgoingCall
from .resolve import WILDCARDS

log = get_logger("voicelive_sip.sip.ua")

MAX_FORKS = 16  # extra 2xx dialogs (forks) answered with ACK + BYE per call, at most


@dataclass(slots=True)
class OutgoingInvite:
    """The INVITE of one call we place, from first send to the ACK of its 2xx."""

    call: OutgoingCall
    invite: Request | None = None
    offer: SessionDescription | None = None
    destination: tuple[Address, str] | None = None
    provisional: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    ack: bytes | None = None
    ack_destination: tuple[Address, str] | None = None
    forks: set[str] = field(default_factory=set)


class OutgoingCalls:
    """The UAC half of the user agent: runs each outgoing INVITE as a task, resends lost 2xx ACKs."""

    def __init__(self, endpoint: SipEndpoint, table: CallTable) -> None:
        self.endpoint = endpoint
        self.options = endpoint.options
        self.table = table
        self._invites: dict[str, OutgoingInvite] = {}

    def start(
        self,
        call: OutgoingCall,
        uri: Uri,
        extra: Sequence[tuple[str, str]],
        timeout: float,
        from_: NameAddress | None = None,
    ) -> None:
        """Send the INVITE in a task; `from_` (no tag yet): the From, else the AOR and SIP_DISPLAY_NAME."""
        state = OutgoingInvite(call)
        self._invites[call.call_id] = state
        call._cancel = functools.partial(self._request_cancel, state)
        self.table.live.add(call)
        caller = from_ or NameAddress(self.endpoint.aor, self.options.display_name)
        call.task = asyncio.get_running_loop().create_task(
            self._run(state, uri, list(extra), timeout, caller), name=f"sip.outgoing:{call.call_id}"
        )

    async def _run(
        self,
        state: OutgoingInvite,
        uri: Uri,
        extra: list[tuple[str, str]],
        timeout: float,
        caller: NameAddress,
    ) -> None:
        call = state.call
        local = call.local_media
        assert local is not None
        offer = sdp_offer(local)
        call.local_sdp = state.offer = offer
        from_ = caller.with_tag(new_tag())
        seq = 0
        session_expires = self.options.session_expires
        redirected = retried_422 = False
        try:
            while True:
                destination, transport = await self.endpoint.resolve(uri)
                state.destination = (destination, transport)
                if local.address in WILDCARDS:  # RTP bound to every interface: the one towards the callee
                    local.address = self.endpoint.local_address_for(destination[0])
                    offer = sdp_offer(local)
                    call.local_sdp = state.offer = offer

                def build(
                    uri: Uri = uri,
                    transport: str = transport,
                    expires: int = session_expires,
                    peer: str = destination[0],
                    offer: SessionDescription = offer,
                ) -> Request:
                    nonlocal seq
                    seq += 1
                    invite = new_request(
                        "INVITE", uri, to=NameAddress(uri), from_=from_, call_id=call.call_id, seq=seq
                    )
                    h = invite.headers
                    h.add("Contact", self.endpoint.contact(transport, peer=peer))
                    h.add("Allow", ALLOW)
                    h.add("Supported", SUPPORTED)
                    h.add("Session-Expires", str(expires))
                    h.add("Min-SE", str(self.options.min_se))
                    for name, value in extra:
                        h.add(name, value)
                    h.add("Content-Type", "application/sdp")
                    invite.body = offer.serialize()
                    state.invite = invite
                    state.provisional = False
                    return invite

                try:
                    async with asyncio.timeout(timeout):
                        response, _ = await self.endpoint.authenticated(
                            build, destination, transport, call._auth,
                            functools.partial(self._on_response, state),
                        )  # fmt: skip
                except TimeoutError:
                    self._request_cancel(state)
                    raise CallFailed(408, "no answer") from None
                code = response.status_code
                if 200 <= code < 300:
                    await self._answered(state, response)
                    # The ACK is resent for a late 2xx copy (`on_stray`) while the call lasts, no longer.
                    await call.wait_ended()
                    return
                if 300 <= code < 400 and not redirected and response.contact:
                    uri, redirected = response.contact[0].uri, True  # §8.1.3.4: follow one redirect
                    continue
                if code == 422 and not retried_422:
                    min_se = (response.headers.get("Min-SE") or "").split(";")[0].strip()
                    if min_se.isdigit() and len(min_se) <= 10:
                        session_expires, retried_422 = max(session_expires, int(min_se)), True
                        continue
                raise CallFailed(code, response.reason)
        except CallFailed as error:
            call._failed(error, cancelled=state.cancel_requested)
        finally:
            call._cancel = None
            self._invites.pop(call.call_id, None)  # bounded: an INVITE's state lives as long as its call

    # -- provisional and repeated responses ------------------------------------------------------------
    def _on_response(self, state: OutgoingInvite, response: Response) -> None:
        call = state.call
        code = response.status_code
        if code < 200:
            state.provisional = True
            if code != 100:
                self._early(state, response)
            if state.cancel_requested:
                self._send_cancel(state)
        elif code < 300 and call.state is CallState.ESTABLISHED and response.to.tag is not None:
            dialog = call.dialog
            if dialog is not None and response.to.tag != dialog.remote_tag:
                # A second fork answered (RFC 3261 §13.2.2.4): ACK it, then end that dialog with BYE.
                self.endpoint.spawn(self._ack_and_bye_fork(state, response), f"sip.fork_bye:{call.call_id}")
            elif state.ack is not None and state.ack_destination is not None:
                self.endpoint.send_raw(state.ack, *state.ack_destination)

    def _early(self, state: OutgoingInvite, response: Response) -> None:
        call, dialog, media = state.call, None, None
        if response.to.tag is not None and state.invite is not None and call.dialog is None:
            dialog = Dialog.as_uac(state.invite, response)
        if response.to.tag is not None and response.body and state.offer is not None:
            try:
                srtp = call.local_media.srtp if call.local_media is not None else None
                media = parse_answer(state.offer, SessionDescription.parse(response.body), srtp=srtp)
            except SdpError as error:
                log.info("sip.bad_early_sdp", call_id=call.call_id, error=str(error))
        call._ringing(response.status_code, response.reason, dialog, media)
        if dialog is not None:
            self._track(call)

    def _track(self, call: OutgoingCall) -> None:
        try:
            self.table.track(call)
        except LocalProtocolError as error:  # the dialog table is full: the call works; requests in it: 481
            log.warning("sip.dialog_table_full", call_id=call.call_id, error=str(error))

    # -- the answer ------------------------------------------------------------------------------------
    async def _answered(self, state: OutgoingInvite, response: Response) -> None:
        call = state.call
        assert state.invite is not None and state.offer is not None
        if call.dialog is not None and call.dialog.remote_tag == response.to.tag:
            call.dialog.confirm(response)
        else:
            if call.dialog is not None:
                self.table.forget(call)
            call.dialog = Dialog.as_uac(state.invite, response)
            self._track(call)
        destination, transport = await self.endpoint.resolve(call.dialog.next_hop())
        state.ack = self.endpoint.send_ack(call.dialog, state.invite.cseq.seq, destination, transport)
        state.ack_destination = (destination, transport)
        try:
            call.remote_sdp = SessionDescription.parse(response.body)
            media = parse_answer(
                state.offer, call.remote_sdp, srtp=call.local_media.srtp if call.local_media else None
            )
        except SdpError as error:
            # RFC 3261 §13.2.2.4: ACK first, then BYE a session we cannot use.
            await call._bye("failed")
            raise CallFailed(488, f"unusable SDP answer: {error}") from error
        timer = SessionTimer.for_uac(response, now=self.endpoint.now())
        call.remote_supports_replaces = supports_replaces(response)
        call._established(media, timer, "UPDATE" in allow_of(response))
        if state.cancel_requested:
            # Our CANCEL crossed the 2xx (RFC 3261 §9.1): the call was answered after all, so end it with BYE.
            await call._bye("cancelled")

    async def _ack_and_bye_fork(self, state: OutgoingInvite, response: Response) -> None:
        assert state.invite is not None
        fork = Dialog.as_uac(state.invite, response)
        if fork.remote_tag in state.forks or len(state.forks) >= MAX_FORKS:
            return
        state.forks.add(fork.remote_tag)
        destination, transport = await self.endpoint.resolve(fork.next_hop())
        self.endpoint.send_ack(fork, state.invite.cseq.seq, destination, transport)
        await self.endpoint.request(fork.create_request("BYE"), destination, transport)

    def on_stray(self, event: StrayResponse) -> None:
        response = event.response
        if response.cseq.method == "INVITE" and 200 <= response.status_code < 300 and len(response.via) == 1:
            # A 2xx retransmitted after our INVITE transaction ended: the ACK was lost, send it again.
            state = self._invites.get(response.call_id)
            if state is not None and state.ack is not None and state.ack_destination is not None:
                self.endpoint.send_raw(state.ack, *state.ack_destination)
                return
        log.debug("sip.stray_response", status=response.status_code, reason=event.reason, source=event.source)

    # -- CANCEL ----------------------------------------------------------------------------------------
    def _request_cancel(self, state: OutgoingInvite) -> None:
        """Cancel the INVITE: now if a provisional response came, else when one does (RFC 3261 §9.1)."""
        state.cancel_requested = True
        if state.provisional:
            self._send_cancel(state)

    def _send_cancel(self, state: OutgoingInvite) -> None:
        if state.invite is None or state.cancel_sent or state.destination is None:
            return
        state.cancel_sent = True
        destination, transport = state.destination
        self.endpoint.send_request(cancel_for(state.invite), destination, transport)


__all__ = ["OutgoingCalls", "OutgoingInvite"]
