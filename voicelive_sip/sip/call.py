"""Calls as applications see them: `IncomingCall` / `OutgoingCall`, their events, and `CallFailed`."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from ..sdp import LocalSdpSession, NegotiatedMedia, SessionDescription
from .dialog import Dialog
from .events import Address
from .message import Request

if TYPE_CHECKING:
    from .ua import UserAgent

log = structlog.get_logger("voicelive_sip.sip.call")

MAX_QUEUED_CALL_EVENTS = 256


class CallState(enum.Enum):
    OFFERED = "offered"  # incoming INVITE not answered yet
    CALLING = "calling"  # outgoing INVITE sent
    EARLY = "early"  # a provisional with a To tag: early dialog
    ESTABLISHED = "established"
    ENDED = "ended"


class CallFailed(Exception):
    """A call could not be set up (or an in-call request failed): the SIP status and reason say why."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code} {reason}")
        self.status_code = status_code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ringing:
    """A provisional response to our INVITE (180, 183 with early media...)."""

    status_code: int
    reason: str
    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True)
class Answered:
    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """A re-INVITE or UPDATE changed the session (hold: `media.on_hold`); the media session is the same."""

    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class InfoDtmf:
    """A digit received as SIP INFO (application/dtmf-relay or application/dtmf)."""

    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ReferProgress:
    """NOTIFY progress of our REFER (RFC 3515): the status line of the `message/sipfrag` body."""

    status_code: int
    reason: str
    final: bool


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The peer sent us a REFER (RFC 3515), already accepted with 202; report with `notify_transfer()`."""

    target: str
    referred_by: str | None


@dataclass(frozen=True, slots=True)
class SessionRefreshed:
    """An RFC 4028 session refresh happened (by either side)."""

    interval: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    """Call over; `reason`: bye, cancelled, rejected, failed, ack-timeout, session-expired, shutdown."""

    reason: str
    by: str  # "local" or "remote"
    status_code: int | None = None


CallEvent = (
    Ringing
    | Answered
    | MediaUpdated
    | InfoDtmf
    | ReferProgress
    | TransferRequested
    | SessionRefreshed
    | CallEnded
)


@dataclass(slots=True)
class LocalMedia:
    """What we put in our SDP: where our RTP is, codecs, and the o= session kept for the whole call."""

    address: str
    port: int
    codecs: Sequence[str]
    ptime: int
    session: LocalSdpSession
    direction: str = "sendrecv"


class Call:
    """What incoming and outgoing calls share: dialog, media, events, hang-up, hold, transfer."""

    def __init__(self, ua: UserAgent, call_id: str, local_media: LocalMedia | None) -> None:
        self._ua = ua
        self.call_id = call_id
        self.local_media = local_media
        self.dialog: Dialog | None = None
        self.state = CallState.CALLING
        self.media: NegotiatedMedia | None = None
        self.local_sdp: SessionDescription | None = None
        self.remote_sdp: SessionDescription | None = None
        self.session_interval: int | None = None
        self.we_refresh = False
        self.peer_allows_update = False
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._ended: asyncio.Future[CallEnded] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._last_refresh = asyncio.get_running_loop().time()
        self._refer_waiter: asyncio.Future[int] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.call_id} {self.state.value}>"

    @property
    def ended(self) -> bool:
        return self._ended.done()

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
        await self._ua._hangup(self)

    async def hold(self) -> NegotiatedMedia | None:
        """Re-INVITE with a=sendonly (RFC 3264 §8.4); the media session stays the same."""
        return await self._ua._reinvite(self, "sendonly")

    async def unhold(self) -> NegotiatedMedia | None:
        return await self._ua._reinvite(self, "sendrecv")

    async def refer(self, target: str, *, timeout: float = 32.0) -> int:
        """Blind transfer (RFC 3515): REFER, then the final status reported by NOTIFY (sipfrag)."""
        return await self._ua._refer(self, target, timeout)

    async def send_info_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        await self._ua._send_info_dtmf(self, digit, duration_ms)

    async def notify_transfer(self, status_code: int, reason: str | None = None) -> None:
        """Report a REFER we accepted (RFC 3515 §2.4.5): NOTIFY with a `message/sipfrag` status line."""
        await self._ua._notify_transfer(self, status_code, reason)

    # -- for the user agent ----------------------------------------------------------------------------
    def _emit(self, event: CallEvent) -> None:
        if self._events.qsize() >= MAX_QUEUED_CALL_EVENTS:
            dropped = self._events.get_nowait()  # nobody is reading: keep the newest, bounded
            log.warning("sip.call_event_dropped", call_id=self.call_id, kind=type(dropped).__name__)
        self._events.put_nowait(event)

    def _end(self, reason: str, by: str, status_code: int | None = None) -> None:
        if self._ended.done():
            return
        self.state = CallState.ENDED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ended = CallEnded(reason, by, status_code)
        self._ended.set_result(ended)
        self._ua._call_ended(self)
        self._emit(ended)
        if self._refer_waiter is not None and not self._refer_waiter.done():
            self._refer_waiter.set_exception(CallFailed(481, "call ended"))
        log.info("sip.call_ended", call_id=self.call_id, reason=reason, by=by, status=status_code)


class IncomingCall(Call):
    """An INVITE we received. Answer it with `answer()`, or `ring()` first, or `reject()` it."""

    def __init__(
        self,
        ua: UserAgent,
        request: Request,
        transaction: str,
        source: Address,
        transport: str,
        offer: SessionDescription | None,
    ) -> None:
        super().__init__(ua, request.call_id, None)
        self.request = request
        self.transaction = transaction
        self.source = source
        self.transport = transport
        self.offer = offer
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
        await self._ua._ring(self)

    async def answer(
        self,
        *,
        rtp_port: int,
        rtp_address: str | None = None,
        codecs: Sequence[str] | None = None,
        direction: str = "sendrecv",
    ) -> NegotiatedMedia | None:
        """Send 200 with our SDP and wait for the ACK. Raises `CallFailed` (488, 487 cancelled, no ACK)."""
        return await self._ua._answer(self, rtp_port, rtp_address, codecs, direction)

    async def reject(self, status_code: int = 486, reason: str | None = None) -> None:
        await self._ua._reject(self, status_code, reason)


class OutgoingCall(Call):
    """An INVITE we sent. `ua.call()` returns it once answered; `ua.dial()` returns it at once."""

    def __init__(self, ua: UserAgent, call_id: str, target: str, local_media: LocalMedia) -> None:
        super().__init__(ua, call_id, local_media)
        self.target = target
        self._answered: asyncio.Future[NegotiatedMedia | None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    async def answered(self) -> NegotiatedMedia | None:
        """Wait until the callee answers; raises `CallFailed` if it does not."""
        return await asyncio.shield(self._answered)
