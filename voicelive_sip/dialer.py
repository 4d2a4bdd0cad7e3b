"""Dialer: the calls placed through the HTTP call API, their states, and the toll-fraud limits on them.

A request passes three guards before anything is dialled: the destination allow-list
(GATEWAY_OUTBOUND_ALLOWED, deny-all when empty), the number of API calls ringing or connected
(OUTBOUND_MAX_CONCURRENT) and the attempts started in the last second (OUTBOUND_MAX_ATTEMPTS_PER_SECOND).
A refusal is a `Refused` with the HTTP status and a reason code, before the 202: a client never gets an id
for a call that was never going to ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ._logger import get_logger
from ._tasks import TaskSet
from .aio import CallFailed
from .amd import AmdPolicy
from .bridge import CallSession, CallSummary
from .config import OutboundSettings, VoiceLiveSettings
from .errors import VoiceLiveSipError
from .gateway import Gateway, unanswered_reason
from .webhooks import CallContext, summary_data

__all__ = ["DialRequest", "Dialer", "OutboundCall", "Refused"]

log = get_logger("voicelive_sip.dialer")

MAX_KEPT_CALLS = 500  # finished calls GET /calls still shows, most recent first
CallPhase = Literal["dialing", "answered", "ended"]


class Refused(VoiceLiveSipError):
    """The call API will not dial this request: `status` (HTTP) and `code` say why; `retry_after` in s."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class DialRequest:
    """A validated POST /calls: where to, and what is per call."""

    to: str
    instructions: str | None = None
    voice: str | None = None
    greeting: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    ring_timeout: float | None = None
    amd: AmdPolicy | bool | None = None  # a policy, False (off), or None: AMD_ENABLED decides
    from_: str | None = None  # the caller shown (OUTBOUND_FROM_ALLOWED), else SIP_USER
    display_name: str | None = None  # else SIP_DISPLAY_NAME


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class OutboundCall:
    """One call placed through the API, as GET /calls/{id} shows it."""

    id: str
    to: str
    metadata: Mapping[str, Any]
    state: CallPhase = "dialing"
    created_at: str = field(default_factory=_now)
    answered_at: str | None = None
    ended_at: str | None = None
    end_reason: str | None = None
    sip_status: int | None = None
    sip_call_id: str | None = None
    summary: CallSummary | None = None
    session: CallSession | None = None
    task: asyncio.Task[None] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "to": self.to,
            "state": self.state,
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "sip_status": self.sip_status,
            "sip_call_id": self.sip_call_id,
            "amd": self._amd(),
            "summary": summary_data(self.summary) if self.summary is not None else None,
        }

    def _amd(self) -> dict[str, Any] | None:
        summary = self.summary or (self.session.summary if self.session is not None else None)
        outcome = summary.amd if summary is not None else None
        return dataclasses.asdict(outcome) if outcome is not None else None


class Dialer:
    """Places, tracks and ends the API's calls on one `Gateway` (bounded: see MAX_KEPT_CALLS)."""

    def __init__(
        self,
        gateway: Gateway,
        settings: OutboundSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.settings = settings or gateway.settings.outbound
        self._clock = clock
        self._calls: OrderedDict[str, OutboundCall] = OrderedDict()
        self._attempts: deque[float] = deque()
        self._tasks = TaskSet()

    @property
    def active(self) -> int:
        """API calls ringing or connected."""
        return sum(1 for call in self._calls.values() if call.state != "ended")

    def calls(self) -> list[OutboundCall]:
        """The calls known, most recent first."""
        return list(reversed(self._calls.values()))

    def get(self, call_id: str) -> OutboundCall | None:
        return self._calls.get(call_id)

    def place(self, request: DialRequest) -> OutboundCall:
        """Check the guards and start dialling (returns at once); raises `Refused`."""
        gateway = self.gateway
        if not gateway.started or gateway.draining:
            raise Refused(503, "unavailable", "the gateway is not taking calls (starting, draining, stopped)")
        try:
            gateway.outbound_target(request.to)
        except CallFailed as error:
            self._refused("not_allowed")
            if error.status_code == 403:
                raise Refused(403, "destination_not_allowed", error.reason) from None
            raise Refused(422, "invalid_destination", error.reason) from None
        if request.from_ is not None:
            try:
                gateway.outbound_caller(request.from_)
            except CallFailed as error:
                self._refused("from_not_allowed")
                if error.status_code == 403:
                    raise Refused(403, "from_not_allowed", error.reason) from None
                raise Refused(422, "invalid_from", error.reason) from None
        if self.active >= self.settings.max_concurrent:
            self._refused("concurrency")
            raise Refused(
                429,
                "too_many_calls",
                f"{self.settings.max_concurrent} API calls are in progress already",
                retry_after=1,
            )
        now = self._clock()
        while self._attempts and self._attempts[0] <= now - 1.0:
            self._attempts.popleft()
        if len(self._attempts) >= self.settings.max_attempts_per_second:
            self._refused("rate")
            wait = max(0.0, self._attempts[0] + 1.0 - now)
            raise Refused(
                429,
                "rate_limited",
                f"at most {self.settings.max_attempts_per_second} attempts a second",
                retry_after=wait,
            )
        self._attempts.append(now)
        urls = None if request.webhook_url is None else [request.webhook_url]
        context = CallContext.new(request.metadata, urls)
        call = OutboundCall(context.id, request.to, context.metadata)
        self._calls[call.id] = call
        self._forget_old()
        call.task = self._tasks.spawn(self._run(call, request, context), name="dialer.call")
        log.info("dialer.call_placed", id=call.id, to=request.to[:120])
        return call

    async def hang_up(self, call_id: str) -> OutboundCall:
        """End the call: CANCEL while it rings, BYE once answered; raises `Refused` 404 or 409."""
        call = self._calls.get(call_id)
        if call is None:
            raise Refused(404, "not_found", f"no call {call_id}")
        if call.state == "ended":
            raise Refused(409, "call_ended", f"call {call_id} has ended already")
        if call.state == "dialing" and call.task is not None:
            call.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(call.task)
        elif call.session is not None:
            with contextlib.suppress(CallFailed, OSError):
                await call.session.hangup()
        return call

    async def close(self) -> None:
        """Cancel the calls still ringing (answered ones end with the gateway)."""
        self._tasks.cancel()
        await self._tasks.wait(5)

    def _voicelive_settings(self, request: DialRequest) -> VoiceLiveSettings | None:
        update: dict[str, Any] = {}
        if request.instructions is not None:
            update["instructions"] = request.instructions
        if request.voice is not None:
            update["voice"] = request.voice
        if request.greeting is not None:
            update["proactive_greeting"] = request.greeting
            update["proactive_greeting_enabled"] = True
        return self.gateway.settings.voicelive.model_copy(update=update) if update else None

    async def _run(self, call: OutboundCall, request: DialRequest, context: CallContext) -> None:
        timeout = request.ring_timeout or self.settings.ring_timeout
        try:
            session = await self.gateway.call(
                request.to,
                voicelive_settings=self._voicelive_settings(request),
                timeout=timeout,
                context=context,
                amd=request.amd,
                from_=request.from_,
                display_name=request.display_name,
            )
        except asyncio.CancelledError as error:
            self._ended(call, unanswered_reason(error), None)
            raise
        except Exception as error:
            status = error.status_code if isinstance(error, CallFailed) else None
            if status is None:
                kind = type(error).__name__
                log.warning("dialer.call_failed", id=call.id, error_type=kind, error=str(error)[:200])
            self._ended(call, unanswered_reason(error), status)
            return
        call.session = session
        call.state = "answered"
        call.answered_at = _now()
        call.sip_call_id = session.call.call_id
        summary = await session.wait_ended()
        call.summary = summary
        call.session = None
        self._ended(call, summary.end_reason or "ended", None)

    def _ended(self, call: OutboundCall, reason: str, status: int | None) -> None:
        call.state = "ended"
        call.ended_at = _now()
        call.end_reason = reason
        call.sip_status = status
        log.info("dialer.call_ended", id=call.id, reason=reason, status=status)

    def _forget_old(self) -> None:
        finished = [key for key, call in self._calls.items() if call.state == "ended"]
        for key in finished[: max(0, len(self._calls) - MAX_KEPT_CALLS)]:
            del self._calls[key]

    def _refused(self, reason: str) -> None:
        self.gateway.metrics.outbound_refusal(reason)
