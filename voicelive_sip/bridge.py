"""CallSession: one SIP call bridged to one Voice Live session: barge-in, DTMF, tools, transfer, recording."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from .config import GatewaySettings, MediaSettings, Settings, VoiceLiveSettings
from .metrics import GatewayMetrics
from .recording import CallRecorder, recording_path
from .rtp.clock import MediaClock
from .rtp.events import DtmfReceived, MediaTimeout
from .rtp.jitter import Frame
from .rtp.session import PortPool, RtpSession
from .sdp import LocalSdpSession, NegotiatedMedia, NoCommonCodec, answer_offer
from .sip.call import (
    Call,
    CallEnded,
    CallFailed,
    IncomingCall,
    InfoDtmf,
    MediaUpdated,
    OutgoingCall,
)
from .sip.ua import UserAgent
from .voicelive import (
    AudioDelta,
    Closed,
    FunctionCall,
    InputTranscript,
    OutputTranscript,
    ResponseDone,
    ResponseStarted,
    ServiceError,
    SpeechStarted,
    VoiceLiveError,
    VoiceLiveSession,
)
from .voicelive.tools import CallInfo, Tool, ToolRunner

log = structlog.get_logger("voicelive_sip.bridge")

HANG_UP = "hang_up"
UPLINK_BUFFER_BYTES = 8000 * 5  # five seconds of G.711 waiting for the WebSocket, at most
TRANSFER = "transfer_call"
DtmfHandler = Callable[[str], Awaitable[None] | None]
RecordingHook = Callable[[Path], Awaitable[None] | None]


def builtin_tools(gateway: GatewaySettings) -> list[dict[str, Any]]:
    """Function definitions of the built-in tools a deployment enabled."""
    tools: list[dict[str, Any]] = []
    if gateway.hang_up_tool:
        tools.append(
            {
                "type": "function",
                "name": HANG_UP,
                "description": "End the call. Say goodbye first: the call ends after you finish speaking.",
                "parameters": {"type": "object", "properties": {}, "required": []},
            }
        )
    if gateway.transfer_tool:
        allowed = ", ".join(gateway.transfer_allowed)
        tools.append(
            {
                "type": "function",
                "name": TRANSFER,
                "description": "Transfer the caller to another number or SIP address (blind transfer)."
                + (f" Allowed targets: {allowed}." if allowed else ""),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "target": {"type": "string", "description": "Number or SIP URI to transfer to."}
                    },
                    "required": ["target"],
                },
            }
        )
    return tools


@dataclass(slots=True)
class CallSummary:
    """What happened on a call: the per-call metrics and the transcript."""

    call_id: str
    direction: str
    caller: str
    callee: str
    started: float
    answered_after_ms: float | None = None
    duration_s: float = 0.0
    end_reason: str = ""
    ended_by: str = ""
    codec: str | None = None
    packets_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    jitter_ms: float = 0.0
    barge_ins: int = 0
    first_agent_audio_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    voicelive_reconnects: int = 0
    transcript: list[tuple[float, str, str]] = field(default_factory=list)  # (s after answer, role, text)
    recording: Path | None = None


class CallSession:
    """Bridges one call to Voice Live: build it with `accept()` or `dial()`, then `run()`."""

    def __init__(
        self,
        call: Call,
        rtp: RtpSession,
        voicelive: VoiceLiveSession,
        *,
        gateway: GatewaySettings | None = None,
        tools: ToolRunner | None = None,
        recorder: CallRecorder | None = None,
        on_dtmf: DtmfHandler | None = None,
        on_recording: RecordingHook | None = None,
        direction: str = "inbound",
    ) -> None:
        self.call = call
        self.rtp = rtp
        self.voicelive = voicelive
        self.gateway = gateway or GatewaySettings()
        self.tools = tools
        self.recorder = recorder
        self.on_dtmf = on_dtmf
        self.on_recording = on_recording
        loop = asyncio.get_running_loop()
        self._loop = loop
        caller, callee = _parties(call)
        self.summary = CallSummary(call.call_id, direction, caller, callee, started=loop.time())
        self._answered_at: float | None = None
        self._log = log.bind(call_id=call.call_id)
        self._item: str | None = None  # the assistant item whose audio is playing
        self._item_mark = 0  # played-frame count at which that item starts
        self._item_bytes = 0
        self._interrupted: set[str] = set()
        self._responding = False
        self._hangup_requested = False
        self._digits: list[str] = []
        self._digit_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._done = asyncio.Event()
        self._first_played: float | None = None
        self._downlink_since: float | None = None  # arrival of agent audio that found nothing queued ahead
        self._downlink_processing = 0.0
        self.rtp.on_played = self._played
        self._uplink_buffer = bytearray()
        self._uplink_ready = asyncio.Event()
        self._uplink_since = 0.0
        self._uplink_sending = False  # the uplink task is awaiting a send: later frames queue behind it
        self._silence_mark = 0
        self.metrics: GatewayMetrics | None = None
        # Caller audio from here on arrives by callback; what came before (since the answer) is handed over.
        for frame in self.rtp.take_frames():
            self._caller_frame(frame)
        self.rtp.on_frame = self._caller_frame

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    async def accept(
        cls,
        call: IncomingCall,
        *,
        settings: Settings,
        pool: PortPool,
        clock: MediaClock,
        tools: Sequence[Tool[Any, Any]] = (),
        voicelive_settings: VoiceLiveSettings | None = None,
        credential: Any = None,
        on_dtmf: DtmfHandler | None = None,
        on_recording: RecordingHook | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> CallSession:
        """Ring and connect Voice Live in parallel; answer when ready (or at once); 503 if it fails."""
        started = asyncio.get_running_loop().time()
        gateway = settings.gateway
        codec = _expected_codec(call, settings.media)
        if codec is None:
            await call.reject(488)
            raise CallFailed(488, "no common codec")
        runner = _runner(tools, gateway)
        voicelive = _new_voicelive(settings, voicelive_settings, codec, runner, credential, call.call_id)
        connecting = asyncio.ensure_future(voicelive.connect())
        try:
            await call.ring()
            rtp = await _open_rtp(pool, clock, settings.media)
        except BaseException as error:
            connecting.cancel()
            await _quietly(voicelive.close())
            if not isinstance(error, CallFailed):
                log.warning("call.setup_failed", call_id=call.call_id, error=repr(error))
                await call.reject(503, "Service Unavailable")
            raise
        try:
            if gateway.answer_mode == "when_ready":
                await connecting
            media = await call.answer(
                rtp_port=rtp.local_port,
                rtp_address=settings.media.public_address or settings.media.address,
                codecs=[codec] if call.offer is None else None,
            )
            if gateway.answer_mode == "immediately":
                await connecting
        except VoiceLiveError as error:
            rtp.close()
            await _quietly(voicelive.close())
            log.warning("call.voicelive_unavailable", call_id=call.call_id, error=str(error))
            if call.state.value == "offered":
                await call.reject(gateway.unavailable_status, "Voice Live Unavailable")
            else:
                await call.hangup()
            raise CallFailed(gateway.unavailable_status, f"Voice Live unavailable: {error}") from error
        except BaseException:
            connecting.cancel()
            rtp.close()
            await _quietly(voicelive.close())
            raise
        session = cls._build(call, rtp, voicelive, settings, runner, on_dtmf, on_recording, "inbound")
        session.metrics = metrics
        session._media_up(media, started)
        return session

    @classmethod
    async def dial(
        cls,
        ua: UserAgent,
        target: str,
        *,
        settings: Settings,
        pool: PortPool,
        clock: MediaClock,
        tools: Sequence[Tool[Any, Any]] = (),
        voicelive_settings: VoiceLiveSettings | None = None,
        credential: Any = None,
        on_dtmf: DtmfHandler | None = None,
        on_recording: RecordingHook | None = None,
        timeout: float | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> CallSession:
        """Place a call (the agent calls someone); Voice Live connects while it rings."""
        started = asyncio.get_running_loop().time()
        gateway = settings.gateway
        codec = settings.media.codecs[0]
        runner = _runner(tools, gateway)
        voicelive = _new_voicelive(settings, voicelive_settings, codec, runner, credential, None)
        rtp = await _open_rtp(pool, clock, settings.media)
        connecting = asyncio.ensure_future(voicelive.connect())
        try:
            # One codec in the offer: the Voice Live session was opened for exactly that law (pass-through).
            call = ua.dial(
                target,
                rtp_port=rtp.local_port,
                rtp_address=settings.media.public_address or settings.media.address,
                codecs=[codec],
                timeout=timeout,
            )
            media = await call.answered()
            await connecting
        except BaseException:
            connecting.cancel()
            rtp.close()
            await _quietly(voicelive.close())
            raise
        session = cls._build(call, rtp, voicelive, settings, runner, on_dtmf, on_recording, "outbound")
        session.metrics = metrics
        session._media_up(media, started)
        return session

    @classmethod
    def _build(
        cls,
        call: Call,
        rtp: RtpSession,
        voicelive: VoiceLiveSession,
        settings: Settings,
        runner: ToolRunner,
        on_dtmf: DtmfHandler | None,
        on_recording: RecordingHook | None,
        direction: str,
    ) -> CallSession:
        recorder = None
        if settings.gateway.recording_dir:
            law = "alaw" if call.media is not None and call.media.codec == "PCMA" else "ulaw"
            path = recording_path(Path(settings.gateway.recording_dir), call.call_id, datetime.now(UTC))
            recorder = CallRecorder(path, law=law)
        return cls(
            call,
            rtp,
            voicelive,
            gateway=settings.gateway,
            tools=runner,
            recorder=recorder,
            on_dtmf=on_dtmf,
            on_recording=on_recording,
            direction=direction,
        )

    def _media_up(self, media: NegotiatedMedia | None, started: float) -> None:
        now = self._loop.time()
        self.summary.started = started
        self._answered_at = now
        self.summary.answered_after_ms = (now - started) * 1000
        if media is not None:
            self._apply_media(media)
        self._log.info(
            "sip.media_active", codec=self.summary.codec, answer_ms=round(self.summary.answered_after_ms)
        )

    def _apply_media(self, media: NegotiatedMedia) -> None:
        self.summary.codec = media.codec
        self.rtp.set_remote(
            media.remote_rtp,
            media.remote_rtcp,
            payload_type=media.payload_type,
            codec=media.codec,
            dtmf_pt=media.dtmf_payload_type,
            rtcp_mux=media.rtcp_mux,
            ptime=media.ptime,
        )
        self.rtp.set_direction(media.local_direction)

    # -- running -------------------------------------------------------------------------------------------
    async def run(self) -> CallSummary:
        """Bridge until the call ends; returns the summary (also logged as `call.summary`)."""
        jobs = [self._uplink(), self._downlink(), self._sip_events(), self._media_events()]
        workers = [asyncio.ensure_future(job) for job in jobs]
        try:
            await self.voicelive.greet()
            await self._done.wait()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._finish()
        return self.summary

    async def hangup(self) -> None:
        """End the call from our side (BYE)."""
        await self.call.hangup()

    def _stop(self) -> None:
        self._done.set()

    def _caller_frame(self, frame: Frame) -> None:
        """Called by the RTP session for each frame out of the jitter buffer: straight to the WebSocket."""
        now = self._loop.time()
        if self.recorder is not None:
            self.recorder.caller(frame.payload, now)
        if (
            not self._uplink_buffer
            and not self._uplink_sending
            and self.voicelive.send_audio_nowait(frame.payload)
        ):
            if self.metrics is not None:
                self.metrics.latency("uplink", self._loop.time() - now)
            return
        # Not connected, backed up, or earlier audio still on its way: the uplink task sends it, in order.
        if not self._uplink_buffer:
            self._uplink_since = now
        if len(self._uplink_buffer) < UPLINK_BUFFER_BYTES:  # bounded: the sender is stuck, keep the oldest
            self._uplink_buffer += frame.payload
        self._uplink_ready.set()

    async def _uplink(self) -> None:
        """Caller audio → Voice Live when it cannot be written at once (see `_caller_frame`).

        While the session reconnects or the socket is backed up, whatever arrived since the last send goes in
        one append, in order; the session buffers it across an outage.
        """
        buffer, ready, loop = self._uplink_buffer, self._uplink_ready, self._loop
        while True:
            await ready.wait()
            ready.clear()
            if not buffer:
                continue
            data, since = bytes(buffer), self._uplink_since
            buffer.clear()
            self._uplink_sending = True
            try:
                await self.voicelive.send_audio(data)
            finally:
                self._uplink_sending = False
            if self.metrics is not None:
                # Gateway-added, uplink: out of the jitter buffer (whose wait is intentional) to the socket.
                self.metrics.latency("uplink", loop.time() - since)

    async def _downlink(self) -> None:
        async for event in self.voicelive.events():
            if isinstance(event, AudioDelta):
                self._agent_audio(event)
            elif isinstance(event, SpeechStarted):
                await self._barge_in("speech")
            elif isinstance(event, ResponseStarted):
                self._responding = True
            elif isinstance(event, ResponseDone):
                self._responding = False
                if event.usage is not None:
                    self.summary.input_tokens += event.usage.input_tokens
                    self.summary.output_tokens += event.usage.output_tokens
                    self.summary.total_tokens += event.usage.total_tokens
                if self._hangup_requested:
                    self._spawn(self._hang_up_after_goodbye())
            elif isinstance(event, FunctionCall):
                self._spawn(self._tool_call(event))
            elif isinstance(event, InputTranscript):
                self._transcript("caller", event.transcript)
            elif isinstance(event, OutputTranscript):
                self._transcript("agent", event.transcript)
            elif isinstance(event, ServiceError):
                # The session has logged it; a cancel racing the service's own interrupt is not an error.
                if self.metrics is not None and event.code != "response_cancel_not_active":
                    self.metrics.voicelive_error(event.code or event.type)
            elif isinstance(event, Closed):
                if event.error is not None:
                    # Voice Live failed for good: play nothing stale, say why, end the call.
                    self.rtp.clear()
                    self._log.error("call.voicelive_failed", reason=event.reason, error=str(event.error))
                    if self.metrics is not None:
                        self.metrics.voicelive_error("failed")
                    self.summary.end_reason = "voicelive-failed"
                    await _quietly(self.call.hangup())
                self._stop()
                return

    def _agent_audio(self, event: AudioDelta) -> None:
        if event.item_id in self._interrupted:
            return  # a reply the caller already cut off: stale audio never plays
        if event.item_id != self._item:
            # The new item starts after whatever is still queued (RFC-style playout accounting, in frames).
            queued_frames = -(-len(self.rtp.outbound) // 160)
            self._item = event.item_id
            self._item_mark = self.rtp.playout_mark() + queued_frames
            self._item_bytes = 0
        elif self.rtp.silence_frames_sent > self._silence_mark:
            # Silence went out between two chunks of the same reply: the caller heard a gap (underrun).
            self._log.debug("media.underrun", item_id=event.item_id)
            if self.metrics is not None:
                self.metrics.underrun()
        if not len(self.rtp.outbound) and self._downlink_since is None:
            # Nothing queued ahead: the gateway's own delay is reading it to here, then the clock's lateness.
            now = self._loop.time()
            self._downlink_since = now
            self._downlink_processing = now - event.received_at if event.received_at else 0.0
        self._item_bytes += len(event.audio)
        self._log.debug("voicelive.audio_delta", item_id=event.item_id, bytes=len(event.audio))
        self.rtp.enqueue(event.audio)
        self._silence_mark = self.rtp.silence_frames_sent

    def _played(self, payload: bytes) -> None:
        now = self._loop.time()
        if self._downlink_since is not None:
            if self.metrics is not None:
                # Waiting for the call's next 20 ms slot is pacing, not the gateway's doing: count only how
                # late the clock sent it after it could have (the slot's deadline, or the enqueue if later).
                clock = self.rtp.clock
                could_send = max(self._downlink_since, clock.slot_deadline if clock is not None else 0.0)
                self.metrics.latency("downlink", self._downlink_processing + max(0.0, now - could_send))
            self._downlink_since = None
        if self._first_played is None and self._answered_at is not None:
            self._first_played = now
            self.summary.first_agent_audio_ms = (now - self._answered_at) * 1000
            self._log.info("call.first_agent_audio", after_ms=round(self.summary.first_agent_audio_ms))
        if self.recorder is not None:
            self.recorder.agent(payload, now)

    async def _barge_in(self, cause: str) -> None:
        """Within the same event: drop queued audio, then cancel the reply and truncate at what was heard."""
        dropped = self.rtp.clear()
        self._downlink_since = None
        item = self._item
        if item is None or (dropped == 0 and not self._responding):
            return
        heard_ms = max(0, min(self.rtp.played_ms(self._item_mark), self._item_bytes // 8))
        self._interrupted.add(item)
        if len(self._interrupted) > 256:
            self._interrupted.pop()
        self._item = None
        self.summary.barge_ins += 1
        self._log.info("call.barge_in", cause=cause, item_id=item, heard_ms=heard_ms, dropped_bytes=dropped)
        await self.voicelive.interrupt(item, heard_ms)

    async def _sip_events(self) -> None:
        async for event in self.call.events():
            if isinstance(event, MediaUpdated):
                # Hold, resume, refresh: the same RTP session and the same Voice Live session carry on.
                self._apply_media(event.media)
                self._log.info("call.media_updated", on_hold=event.media.on_hold)
            elif isinstance(event, InfoDtmf):
                await self._dtmf(event.digit)
            elif isinstance(event, CallEnded):
                if not self.summary.end_reason:
                    self.summary.end_reason = event.reason
                self.summary.ended_by = event.by
                self._stop()
                return

    async def _media_events(self) -> None:
        async for event in self.rtp.events():
            if isinstance(event, DtmfReceived):
                await self._dtmf(event.event.digit)
            elif isinstance(event, MediaTimeout):
                self._log.warning("media.timeout", idle_s=event.idle)
                self.summary.end_reason = "media-timeout"
                await _quietly(self.call.hangup())

    # -- DTMF ----------------------------------------------------------------------------------------------
    async def _dtmf(self, digit: str) -> None:
        self._log.info("call.dtmf", digit=digit)
        if self.on_dtmf is not None:
            result = self.on_dtmf(digit)
            if isinstance(result, Awaitable):
                await result
        if digit == "#" and self.gateway.dtmf_barge_in:
            await self._barge_in("dtmf")
        if self.gateway.dtmf_to_model:
            self._digits.append(digit)
            if len(self._digits) >= 32:
                self._flush_digits()
                return
            if self._digit_timer is not None:
                self._digit_timer.cancel()
            self._digit_timer = self._loop.call_later(
                self.gateway.dtmf_interdigit_ms / 1000, self._flush_digits
            )

    def _flush_digits(self) -> None:
        self._digit_timer = None
        if not self._digits:
            return
        keys = " ".join(self._digits)
        self._digits.clear()
        self._spawn(self.voicelive.add_user_text(f"[The caller pressed on the phone keypad: {keys}]"))

    # -- tools ---------------------------------------------------------------------------------------------
    async def _tool_call(self, event: FunctionCall) -> None:
        if event.name == HANG_UP and self.gateway.hang_up_tool:
            self._hangup_requested = True
            self._log.info("call.hang_up_requested")
            await self.voicelive.send_function_output(event.call_id, json.dumps({"ok": True}), respond=False)
            if not self._responding:
                await self._hang_up_after_goodbye()
            return
        if event.name == TRANSFER and self.gateway.transfer_tool:
            await self._transfer(event)
            return
        if self.tools is None:
            output = json.dumps({"error": {"type": "unknown_tool", "message": f"no tool {event.name}"}})
        else:
            direction: Literal["inbound", "outbound"] = (
                "outbound" if isinstance(self.call, OutgoingCall) else "inbound"
            )
            info = CallInfo(self.call.call_id, self.summary.caller, self.summary.callee, direction)
            output = await self.tools.run(event.name, event.arguments, call=info)
        await self.voicelive.send_function_output(event.call_id, output)

    async def _hang_up_after_goodbye(self) -> None:
        """Let the goodbye finish playing (bounded), then BYE."""
        deadline = self._loop.time() + self.gateway.goodbye_timeout
        while (len(self.rtp.outbound) or self._responding) and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        self.summary.end_reason = "agent-hangup"
        await _quietly(self.call.hangup())

    async def _transfer(self, event: FunctionCall) -> None:
        try:
            target = str(json.loads(event.arguments or "{}").get("target", "")).strip()
        except (ValueError, AttributeError):
            target = ""
        allowed = self.gateway.transfer_allowed
        if not target or (allowed and not any(target.startswith(a) for a in allowed)):
            result: dict[str, Any] = {
                "ok": False,
                "reason": f"transfer to {target or '(none)'} is not allowed",
            }
            await self.voicelive.send_function_output(event.call_id, json.dumps(result))
            return
        self._log.info("call.transfer", target=target)
        try:
            status = await self.call.refer(target)
        except CallFailed as error:
            status = error.status_code
        if 200 <= status < 300:
            self.summary.end_reason = "transferred"
            await self.voicelive.send_function_output(event.call_id, json.dumps({"ok": True}), respond=False)
            await _quietly(
                self.call.hangup()
            )  # RFC 5589 §6.1: the transferor leaves once the transfer worked
            return
        result = {"ok": False, "status": status, "reason": "the transfer did not go through"}
        await self.voicelive.send_function_output(event.call_id, json.dumps(result))

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _transcript(self, role: str, text: str) -> None:
        if not text:
            return
        offset = self._loop.time() - (self._answered_at or self.summary.started)
        self.summary.transcript.append((round(offset, 3), role, text))
        if len(self.summary.transcript) > 1000:
            del self.summary.transcript[0]
        self._log.info("call.transcript", role=role, text=text)

    def _spawn(self, job: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self) -> None:
        if self._digit_timer is not None:
            self._digit_timer.cancel()
        if not self.call.ended:
            await _quietly(self.call.hangup())
        for task in list(self._tasks):
            task.cancel()
        await _quietly(self.voicelive.close())
        stats = self.rtp.stats
        self.rtp.close()
        s = self.summary
        s.duration_s = round(self._loop.time() - (self._answered_at or s.started), 3)
        s.packets_sent = stats.packets_sent
        s.packets_received = stats.packets_received
        s.packets_lost = stats.cumulative_lost
        s.jitter_ms = round(stats.jitter_ms, 2)
        s.voicelive_reconnects = self.voicelive.reconnects
        if self.call.ended and not s.end_reason:
            ended = await self.call.wait_ended()
            s.end_reason, s.ended_by = ended.reason, ended.by
        if self.recorder is not None:
            s.recording = self.recorder.close()
            if self.on_recording is not None:
                try:
                    result = self.on_recording(s.recording)
                    if isinstance(result, Awaitable):
                        await result
                except Exception:
                    self._log.exception("call.recording_hook_failed", path=str(s.recording))
        self._log.info(
            "call.summary",
            direction=s.direction,
            duration_s=s.duration_s,
            end_reason=s.end_reason,
            ended_by=s.ended_by,
            codec=s.codec,
            packets_sent=s.packets_sent,
            packets_received=s.packets_received,
            packets_lost=s.packets_lost,
            jitter_ms=s.jitter_ms,
            barge_ins=s.barge_ins,
            answer_ms=round(s.answered_after_ms) if s.answered_after_ms is not None else None,
            first_agent_audio_ms=round(s.first_agent_audio_ms)
            if s.first_agent_audio_ms is not None
            else None,
            total_tokens=s.total_tokens,
            voicelive_reconnects=s.voicelive_reconnects,
        )


def _parties(call: Call) -> tuple[str, str]:
    if isinstance(call, IncomingCall):
        return call.from_, call.to
    if isinstance(call, OutgoingCall):
        return "", call.target
    return "", ""


def _expected_codec(call: IncomingCall, media: MediaSettings) -> str | None:
    """The codec the answer will pick (our priority among the offer's), so Voice Live opens in that law."""
    if call.offer is None:
        return media.codecs[0]
    try:
        _, negotiated = answer_offer(
            call.offer,
            local_address="127.0.0.1",
            local_port=9,
            session=LocalSdpSession(),
            codecs=media.codecs,
        )
    except NoCommonCodec:
        return None
    return negotiated.codec


def _runner(tools: Sequence[Tool[Any, Any]], gateway: GatewaySettings) -> ToolRunner:
    return ToolRunner(tools, timeout=gateway.tool_timeout)


def _new_voicelive(
    settings: Settings,
    voicelive_settings: VoiceLiveSettings | None,
    codec: str,
    runner: ToolRunner,
    credential: Any,
    call_id: str | None,
) -> VoiceLiveSession:
    """The call's Voice Live session, in the call's G.711 law, with the application's and built-in tools."""
    return VoiceLiveSession(
        voicelive_settings or settings.voicelive,
        call_codec="pcma" if codec == "PCMA" else "pcmu",
        tools=runner.definitions + builtin_tools(settings.gateway),
        credential=credential,
        call_id=call_id,
    )


async def _open_rtp(pool: PortPool, clock: MediaClock, media: MediaSettings) -> RtpSession:
    return await RtpSession.open(
        pool,
        clock=clock,
        symmetric=media.symmetric_rtp,
        inactivity_timeout=media.inactivity_timeout,
        outbound_seconds=media.outbound_buffer_seconds,
    )


async def _quietly(job: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):
        await job


__all__ = ["CallSession", "CallSummary", "builtin_tools"]
