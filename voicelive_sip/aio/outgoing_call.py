"""A call we place: `UserAgent.dial()` returns it at once, `UserAgent.call()` once answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .._logger import get_logger
from ..errors import CallFailed
from ..sdp import NegotiatedMedia
from ..sip.auth import DigestClient
from ..sip.call_state import Answered, CallState, LocalMedia, Ringing
from ..sip.dialog import Dialog
from ..sip.session_timer import SessionTimer
from .call import Call, CallTable
from .endpoint import CallEndpoint

log = get_logger("voicelive_sip.sip.call")


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
        self.remote_supports_replaces = False  # its 2xx said Supported: replaces (RFC 3891 attended transfer)

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

    # -- driven by the INVITE (aio/outgoing.py) ----------------------------------------------------------
    def _ringing(
        self, status_code: int, reason: str, dialog: Dialog | None, media: NegotiatedMedia | None
    ) -> None:
        """A provisional response; with a To tag it made an early dialog (RFC 3261 §12.1.2)."""
        if dialog is not None and self.dialog is None:
            self.dialog = dialog
            self._move(CallState.EARLY)
        if media is not None:
            self._settle(media)  # early media (183 Session Progress)
        self._emit(Ringing(status_code, reason, media))

    def _established(
        self, media: NegotiatedMedia, timer: SessionTimer | None, peer_allows_update: bool
    ) -> None:
        """The 2xx is ACKed and its SDP usable: the call is up."""
        self._settle(media)
        if self.local_media is not None:
            self.local_media.codecs = [media.codec]  # later offers keep the codec the audio is set up for
        self.session_timer, self.peer_allows_update = timer, peer_allows_update
        self._move(CallState.ESTABLISHED)
        self._emit(Answered(media))
        if not self._answered.done():
            self._answered.set_result(media)
        self._arm_session_timer()
        log.info("sip.call_answered", call_id=self.call_id, codec=media.codec)

    def _failed(self, error: CallFailed, *, cancelled: bool) -> None:
        """The INVITE failed (or was cancelled by us): the call ends, `answered()` raises `error`."""
        reason = "cancelled" if error.status_code == 487 and cancelled else "failed"
        self._end(reason, "local" if cancelled else "remote", error.status_code)
        self._table.forget(self)
        if not self._answered.done():
            self._answered.set_exception(error)
            self._answered.exception()  # retrieved: nobody may be waiting for it
        log.info(
            "sip.outgoing_call_failed", call_id=self.call_id, status=error.status_code, reason=error.reason
        )


__all__ = ["OutgoingCall"]
