"""BrowserCall: a WebRTC call's signalling side, as `CallSession` sees a SIP call (events, hang-up, end).

WHIP has no dialog: the call starts with the POST that answered its offer and ends with a DELETE of its
resource, the peer connection failing or closing, or our hang-up. Keys the page sends over its data channel
arrive as `InfoDtmf`, like SIP INFO digits. Transfer and sending keys are SIP features: they fail with
`CallFailed` (the built-in tools report that to the model). No aiortc here: `bridge` imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .._logger import get_logger
from ..errors import CallFailed
from ..sip.call_state import CallEnded, CallEvent, InfoDtmf

__all__ = ["BrowserCall"]

log = get_logger("voicelive_sip.webrtc")

MAX_EVENTS = 64  # signalling events waiting for the session (keys pressed faster than read are dropped)


class BrowserCall:
    """One browser call's signalling: `call_id`, `events()`, `hangup()`, `wait_ended()`."""

    role = "uas"
    media = None  # no SDP media a re-INVITE could change: the peer connection is the leg's

    def __init__(self, call_id: str, source: tuple[str, int]) -> None:
        self.call_id = call_id
        self.source = source
        self.from_ = f"webrtc:{source[0]}"
        self.to = "/whip"
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue(MAX_EVENTS)
        self._ended: asyncio.Future[CallEnded] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<BrowserCall {self.call_id} {'ended' if self.ended else 'up'}>"

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def events(self) -> AsyncIterator[CallEvent]:
        """Keys pressed on the page, ending with `CallEnded`."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, CallEnded):
                return

    async def wait_ended(self) -> CallEnded:
        return await asyncio.shield(self._ended)

    async def hangup(self) -> None:
        """End the call from our side; its session then ends and the peer connection closes (the page sees
        it, after the session's last messages)."""
        self.end("bye", "local")

    def end(self, reason: str, by: str) -> None:
        """The call is over (`reason`: bye, delete, ice-failed, media-timeout, max-duration, shutdown)."""
        if self.ended:
            return
        ended = CallEnded(reason, by)
        self._ended.set_result(ended)
        self._put(ended)
        log.info("webrtc.call_ended", call_id=self.call_id, reason=reason, by=by)

    def press(self, digit: str) -> None:
        """A key pressed on the page's keypad (validated by the caller)."""
        if not self.ended:
            self._put(InfoDtmf(digit, 100))

    async def refer(self, target: str, *, timeout: float = 32.0) -> int:
        raise CallFailed(501, "a browser call cannot be transferred")

    async def send_info_dtmf(self, digit: str, duration_ms: int) -> None:
        raise CallFailed(501, "a browser call has no keypad to send keys to")

    def _put(self, event: CallEvent) -> None:
        if isinstance(event, CallEnded):
            while self._events.full():  # the end always gets through: make room by dropping the oldest key
                self._events.get_nowait()
        if not self._events.full():
            self._events.put_nowait(event)
