"""Webhooks: a call's lifecycle events POSTed as signed JSON, retried with back-off, never delaying the call.

Each receiver (URL) has one bounded queue and one worker that delivers in order: an event is retried
(timeouts, connection errors, 408/429/5xx) with exponential back-off up to WEBHOOK_MAX_ATTEMPTS before the
next one goes, so a receiver sees a call's events in the order they happened. `emit` only queues: a slow or
dead receiver costs memory up to WEBHOOK_QUEUE_SIZE, never a call's time. Signed as payment providers do:
`X-VoiceLive-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, per attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ._logger import get_logger
from ._tasks import TaskSet
from .config import WebhookSettings
from .metrics import GatewayMetrics

__all__ = [
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "CallContext",
    "WebhookSender",
    "new_call_id",
    "sign",
    "summary_data",
    "verify",
]

log = get_logger("voicelive_sip.webhooks")

SIGNATURE_HEADER = "X-VoiceLive-Signature"
EVENT_TYPES = ("call.started", "call.answered", "call.amd", "call.tool_called", "call.ended")
MAX_RECEIVERS = 64  # distinct URLs with a worker at once (per-call URLs come from API clients)
MAX_EVENT_BYTES = 1_048_576  # a call.ended with a long transcript fits; anything larger is a bug, not sent
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: bytes, header: str, body: bytes, *, now: float | None = None, tolerance: float = 300
) -> bool:
    """Whether `header` signs `body` with `secret` and its timestamp is within `tolerance` s of `now`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False  # an old request replayed
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True, slots=True)
class _Event:
    id: str
    type: str
    body: bytes


class _Receiver:
    """One URL's queue and the worker delivering it in order."""

    def __init__(self, url: str, limit: int) -> None:
        self.url = url
        self.limit = limit
        self.queue: deque[_Event] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def put(self, event: _Event) -> bool:
        if len(self.queue) >= self.limit:
            return False
        self.queue.append(event)
        self.wake.set()
        return True


class WebhookSender:
    """Queues events per receiver and delivers them signed, in order, with bounded retries (module doc)."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        metrics: GatewayMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.secret is None:
            raise ValueError("webhooks need WEBHOOK_SECRET")
        self.settings = settings
        self.metrics = metrics
        self._secret = settings.secret.get_secret_value().encode()
        self._clock = wall_clock
        self._receivers: dict[str, _Receiver] = {}
        self._tasks = TaskSet()
        self._http: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events queued or being delivered, all receivers."""
        return sum(len(receiver.queue) for receiver in self._receivers.values())

    def emit(self, kind: str, call: Mapping[str, Any], data: Mapping[str, Any], urls: Sequence[str]) -> None:
        """Queue one event for each of `urls`; returns at once (a full queue drops the event, counted)."""
        if not urls:
            return
        event_id = f"evt_{secrets.token_hex(10)}"
        created = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")
        payload = {"id": event_id, "type": kind, "created_at": created, "call": call, "data": data}
        body = json.dumps(payload, default=str, separators=(",", ":")).encode()
        if len(body) > MAX_EVENT_BYTES:
            log.error("webhook.too_large", event_type=kind, bytes=len(body))
            self._outcome("dropped", len(urls))
            return
        event = _Event(event_id, kind, body)
        for url in dict.fromkeys(urls):
            receiver = self._receiver(url)
            if receiver is None or not receiver.put(event):
                log.warning("webhook.dropped", url=_display(url), event_type=kind, reason="queue full")
                self._outcome("dropped")

    async def close(self, grace: float = 0.0) -> None:
        """Give queued events up to `grace` seconds to go out, then stop the workers."""
        if grace > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while self.pending and loop.time() < deadline:
                await asyncio.sleep(0.05)
        self._tasks.cancel()
        await self._tasks.wait(1)
        self._receivers.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _receiver(self, url: str) -> _Receiver | None:
        receiver = self._receivers.get(url)
        if receiver is not None:
            return receiver
        if len(self._receivers) >= MAX_RECEIVERS:
            return None
        receiver = self._receivers[url] = _Receiver(url, self.settings.queue_size)
        receiver.task = self._tasks.spawn(self._work(receiver), name="webhook.receiver")
        return receiver

    async def _work(self, receiver: _Receiver) -> None:
        while True:
            if not receiver.queue:
                if receiver.url not in self.settings.urls:
                    del self._receivers[receiver.url]  # a per-call receiver: gone once it has nothing to do
                    return
                receiver.wake.clear()
                await receiver.wake.wait()
                continue
            event = receiver.queue[0]
            try:
                await self._deliver(receiver.url, event)
            except Exception:
                # A bug must cost this event, not the receiver's worker (and with it every later event).
                log.exception("webhook.delivery_error", url=_display(receiver.url), event_type=event.type)
                self._outcome("failed")
            receiver.queue.popleft()

    async def _deliver(self, url: str, event: _Event) -> None:
        """Try `event` up to WEBHOOK_MAX_ATTEMPTS times, waiting longer after each failure."""
        settings = self.settings
        for attempt in range(1, settings.max_attempts + 1):
            status, error = await self._post(url, event)
            if status is not None and 200 <= status < 300:
                self._outcome("delivered")
                log.debug("webhook.delivered", url=_display(url), event_type=event.type, attempt=attempt)
                return
            retry = status is None or status in RETRY_STATUSES
            log.warning(
                "webhook.attempt_failed",
                url=_display(url),
                event_type=event.type,
                attempt=attempt,
                status=status,
                error=error,
                retry=retry and attempt < settings.max_attempts,
            )
            if self.metrics is not None:
                self.metrics.webhook_attempt_failed()
            if not retry:
                break  # the receiver refused it (4xx): sending it again would not change its mind
            if attempt < settings.max_attempts:
                delay = min(settings.max_delay, settings.initial_delay * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.8, 1.0))  # jitter: receivers back up together
        self._outcome("failed")
        log.error("webhook.given_up", url=_display(url), event_type=event.type, event_id=event.id)

    async def _post(self, url: str, event: _Event) -> tuple[int | None, str | None]:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(limit=MAX_RECEIVERS),
            )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "voicelive-sip-webhooks",
            "X-VoiceLive-Event": event.type,
            "X-VoiceLive-Event-Id": event.id,
            SIGNATURE_HEADER: sign(self._secret, int(self._clock()), event.body),
        }
        try:
            async with self._http.post(url, data=event.body, headers=headers, allow_redirects=False) as reply:
                await reply.read()
                return reply.status, None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return None, type(error).__name__

    def _outcome(self, outcome: str, count: int = 1) -> None:
        if outcome == "delivered":
            self.delivered += count
        elif outcome == "failed":
            self.failed += count
        else:
            self.dropped += count
        if self.metrics is not None:
            self.metrics.webhook_outcome(outcome, count)


def _display(url: str) -> str:
    # A receiver URL may carry a token in its query: logs show scheme, host and path only.
    return url.split("?", 1)[0][:200]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a call's events carry besides the call: its gateway id, the application's metadata, receivers."""

    id: str
    metadata: Mapping[str, Any]
    urls: tuple[str, ...] | None = None  # None: WEBHOOK_URLS

    @classmethod
    def new(cls, metadata: Mapping[str, Any] | None = None, urls: Sequence[str] | None = None) -> CallContext:
        return cls(new_call_id(), dict(metadata or {}), None if urls is None else tuple(urls))


def new_call_id() -> str:
    """A gateway call id (what the call API and webhooks name a call by; the SIP Call-ID is separate)."""
    return f"call_{secrets.token_hex(10)}"


def summary_data(summary: Any) -> dict[str, Any]:
    """A `CallSummary` as JSON-ready data (the loop-clock start left out: it means nothing elsewhere)."""
    data: dict[str, Any] = dataclasses.asdict(summary)
    data.pop("started", None)
    data["transcript"] = [line._asdict() for line in summary.transcript]
    data["recording"] = str(summary.recording) if summary.recording is not None else None
    data["codec"] = str(summary.codec) if summary.codec is not None else None
    return data
