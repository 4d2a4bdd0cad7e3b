"""CallSession: one call bridged to one Voice Live session: barge-in, DTMF, tools, transfer, recording.

The bridge talks to the caller's audio only through a `MediaLeg` (RTP today); SIP and SDP appear only where a
session is built (`accept`, `call`) and where a re-INVITE changes the RTP parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from ._logger import get_logger
from ._tasks import TaskSet
from .aio import (
    Call,
    CallEnded,
    CallFailed,
    CallState,
    IncomingCall,
    InfoDtmf,
    MediaUpdated,
    OutgoingCall,
    UserAgent,
)
from .aio.endpoint import target_uri
from .amd import AmdEvent, AmdPolicy, AmdVerdict, BeepDetected, GreetingEnded
from .amd_call import CallAmd
from .call_events import (
    AmdDetected,
    AmdOutcome,
    BargedIn,
    SessionEvent,
    SessionFinished,
    ToolCalled,
    TranscriptLine,
    TransferStep,
    TurnLatency,
)
from .codecs.names import Codec
from .config import GatewaySettings, MediaSettings, Settings, VoiceLiveSettings
from .errors import LocalProtocolError, SipParseError
from .media import DtmfReceived, MediaLeg, MediaTimeout
from .metrics import GatewayMetrics
from .quality import DirectionQuality, call_quality
from .recording import CallRecorder, recording_path
from .rtp.clock import MediaClock
from .rtp.session import PortPool, RtpSession, RtpSessionStats
from .sdp import NegotiatedMedia
from .sip.uri import SipUri, Uri
from .targets import TargetPattern, allowed
from .tracing import CallTrace
from .turns import TurnTimer, percentile
from .voicelive import (
    AudioDelta,
    Closed,
    FunctionCall,
    InputTranscript,
    OutputTranscript,
    OutputTranscriptDelta,
    ResponseDone,
    ResponseStarted,
    ServiceError,
    SpeechStarted,
    SpeechStopped,
    VoiceLiveError,
    VoiceLiveSession,
)
from .voicelive.tools import CallInfo, Tool, ToolRunner
from .warm_transfer import TransferContext, WarmTransfer
from .webrtc.signalling import BrowserCall

log = get_logger("voicelive_sip.bridge")

HANG_UP = "hang_up"
TRANSFER = "transfer_call"
WARM_TRANSFER = "warm_transfer"
SEND_DTMF = "send_dtmf"
# Keys the agent presses: 100 ms tones 100 ms apart (RFC 4733 end packets take 40 ms of that gap), well inside
# what ITU-T Q.24 receivers accept (40 ms tone, 40 ms pause) and what IVRs expect of a fast human.
SENT_DTMF_MS = 100
SENT_DTMF_PAUSE_MS = 60
TRANSFER_TIMEOUT = 40.0  # seconds: Call.refer's own 32 s wait for the outcome, and some margin
DtmfHandler = Callable[[str], Awaitable[None] | None]
RecordingHook = Callable[[Path], Awaitable[None] | None]
MediaUpdate = Callable[[NegotiatedMedia], None]
Ending = Literal["hang_up", "transferred"]
E = TypeVar("E", bound=SessionEvent)
MAX_EVENTS = 1000  # a call's event history (what `wait_for` looks through), oldest dropped first
MAX_TOOL_CALLS = 200
MAX_VOICEMAIL_S = 120.0  # a voicemail message that never ends (a model that never finishes) is cut off
VOICEMAIL_TEXT = (
    "An answering machine is recording; no person is listening. Say exactly this message, word for word, "
    "then stop: {text}"
)
VOICEMAIL_INSTRUCTIONS = "An answering machine is recording; no person is listening. {text}"


MAX_WARM_TRANSFERS = 3  # warm transfer attempts per call


class BuiltinTools:
    """The built-in `hang_up`, `transfer_call`, `warm_transfer` and `send_dtmf` tools a deployment enabled.

    Their schemas and argument parsing come from `Tool` like any application tool; they act on the call of
    the `CallSession` they are bound to (`bind`), which happens once the call is set up.
    """

    def __init__(self, gateway: GatewaySettings, *, server: str | None = None) -> None:
        self.gateway = gateway
        # SIP_SERVER: where a bare number goes, as a target and as a pattern (voicelive_sip.targets).
        self.server = server
        self.patterns = [TargetPattern.parse(text) for text in gateway.transfer_allowed]
        self._session: CallSession | None = None
        # How a warm transfer dials the person: set by the gateway (its user agent, ports, clock).
        self.transfer_context: TransferContext | None = None
        self._warm_attempts = 0
        tools: list[Tool[..., Any]] = []
        if gateway.hang_up_tool:
            tools.append(
                Tool(
                    self.hang_up,
                    name=HANG_UP,
                    description="End the call. Say goodbye first: the call ends after you finish speaking.",
                )
            )
        if gateway.transfer_tool:
            allowed = ", ".join(gateway.transfer_allowed)
            description = "Transfer the caller to another number or SIP address (blind transfer)." + (
                f" Allowed targets: {allowed}." if allowed else ""
            )
            # Not GATEWAY_TOOL_TIMEOUT: the REFER waits up to 32 s for the NOTIFY with the final status.
            tools.append(
                Tool(self.transfer_call, name=TRANSFER, description=description, timeout=TRANSFER_TIMEOUT)
            )
        if gateway.warm_transfer_tool:
            allowed = ", ".join(gateway.transfer_allowed)
            description = (
                "Warm transfer: put the caller on hold, call a person, brief them with your summary, then "
                "connect the caller with them. If the person does not answer you get the caller back."
                + (f" Allowed targets: {allowed}." if allowed else "")
            )
            # Ringing, the briefing and a REFER's NOTIFY (32 s) one after another.
            timeout = gateway.warm_transfer_ring_timeout + gateway.warm_transfer_briefing_max_s + 45.0
            tools.append(
                Tool(self.warm_transfer, name=WARM_TRANSFER, description=description, timeout=timeout)
            )
        if gateway.send_dtmf_tool:
            description = (
                "Press keys on the phone keypad, e.g. to choose from a phone menu (IVR) of the party you "
                f"called. Keys: {' '.join(gateway.send_dtmf_allowed)}; "
                f"at most {gateway.send_dtmf_max_digits}."
            )
            # A key takes 200 ms on RTP, a SIP INFO round trip each: the default tool timeout may be short.
            timeout = max(gateway.tool_timeout, 5.0 + gateway.send_dtmf_max_digits * 0.5)
            tools.append(Tool(self.send_dtmf, name=SEND_DTMF, description=description, timeout=timeout))
        self.runner = ToolRunner(tools, timeout=gateway.tool_timeout)

    @property
    def definitions(self) -> list[dict[str, Any]]:
        """The built-ins' entries for the `tools` of a `session.update`."""
        return self.runner.definitions

    def bind(self, session: CallSession) -> None:
        """Act on this session's call from now on."""
        self._session = session

    async def hang_up(self) -> dict[str, bool]:
        """End the call after the goodbye has played."""
        session = self._bound()
        session._ending = "hang_up"
        session._log.info("call.hang_up_requested")
        return {"ok": True}

    async def transfer_call(self, target: str) -> dict[str, Any]:
        """Blind transfer (REFER) to an allowed target; the gateway leaves the call once it worked.

        Args:
            target: Number or SIP URI to transfer to.
        """
        session = self._bound()
        uri, refusal = self._allowed_target(session, target)
        if uri is None:
            return refusal
        session._log.info("call.transfer", target=str(uri))
        try:
            # The URI that was checked is the one sent, never the text re-resolved.
            status = await session.call.refer(str(uri))
        except CallFailed as error:
            status = error.status_code
        if 200 <= status < 300:
            session.summary.end_reason = "transferred"
            session._ending = "transferred"
            return {"ok": True}
        return {"ok": False, "status": status, "reason": "the transfer did not go through"}

    async def warm_transfer(self, target: str, summary: str) -> dict[str, Any]:
        """Warm transfer to a person on an allowed target; returns once connected or handed back.

        Args:
            target: Number or SIP URI of the person to connect the caller with.
            summary: Two or three sentences for the person: who is calling and what they need.
        """
        session = self._bound()
        uri, refusal = self._allowed_target(session, target)
        if uri is None:
            return refusal
        if self.transfer_context is None or session.transfer is not None:
            return {"ok": False, "reason": "a warm transfer is not possible on this call"}
        if self._warm_attempts >= MAX_WARM_TRANSFERS:
            # A model retrying in a loop must not ring someone (and bill the line) again and again.
            session._log.warning("call.transfer_refused", target=str(uri), reason="too_many_attempts")
            return {"ok": False, "reason": "no more transfer attempts on this call: tell the caller"}
        self._warm_attempts += 1
        session._log.info("call.warm_transfer", target=str(uri))
        # The URI that was checked is the one dialled, never the text re-resolved.
        allows = functools.partial(allowed, patterns=self.patterns, server=self.server)
        return await WarmTransfer(session, self.transfer_context, uri, summary, allows=allows).run()

    def _allowed_target(self, session: CallSession, target: str) -> tuple[Uri | None, dict[str, Any]]:
        """The target as a URI if the allow-list allows it, else None and the refusal the model gets."""
        target = target.strip()
        if not self.patterns:
            # Deny by default: a transfer is a call the gateway's owner pays for (toll fraud).
            session._log.warning("call.transfer_refused", target=target[:200], reason="not_configured")
            return None, {"ok": False, "reason": "transfers are not configured on this line"}
        try:
            uri: Uri | None = target_uri(target, self.server)
        except (SipParseError, LocalProtocolError):
            uri = None
        if uri is None or not allowed(uri, self.patterns, server=self.server):
            session._log.warning("call.transfer_refused", target=target[:200], reason="not_allowed")
            return None, {"ok": False, "reason": f"transfer to {target[:200] or '(none)'} is not allowed"}
        return uri, {}

    async def send_dtmf(self, digits: str) -> dict[str, Any]:
        """Press keys: RFC 4733 telephone-events, or SIP INFO when the peer negotiated no telephone-event.

        Args:
            digits: The keys to press in order, e.g. "1" or "2#".
        """
        session = self._bound()
        keys = "".join(digits.split()).upper()
        refused = sorted(set(keys) - set(self.gateway.send_dtmf_allowed))
        if not keys or refused or len(keys) > self.gateway.send_dtmf_max_digits:
            reason = (
                f"keys not allowed: {''.join(refused)}" if refused
                else f"press 1 to {self.gateway.send_dtmf_max_digits} keys"
            )  # fmt: skip
            session._log.warning("call.send_dtmf_refused", digits=keys[:64], reason=reason)
            return {"ok": False, "reason": reason}
        media = session.media
        if isinstance(media, RtpSession) and media.dtmf_payload_type is not None:
            method = "rfc4733"
            for key in keys:
                media.dtmf_sender.send(key, SENT_DTMF_MS, pause_ms=SENT_DTMF_PAUSE_MS)
            while media.dtmf_sender.active and not media.closed:
                await asyncio.sleep(0.02)  # the media clock sends them; the tool returns once they are out
        else:
            method = "info"
            for key in keys:
                try:
                    await session.call.send_info_dtmf(key, SENT_DTMF_MS)
                except CallFailed as error:
                    session._log.warning("call.send_dtmf_failed", method=method, status=error.status_code)
                    return {"ok": False, "reason": f"the other side refused the keys ({error.status_code})"}
        session._log.info("call.send_dtmf", digits=keys, method=method)
        return {"ok": True, "sent": keys}

    def _bound(self) -> CallSession:
        if self._session is None:
            raise RuntimeError("built-in tools run only for a call (BuiltinTools.bind)")
        return self._session


def builtin_tools(gateway: GatewaySettings) -> list[dict[str, Any]]:
    """Function definitions of the built-in tools a deployment enabled."""
    return BuiltinTools(gateway).definitions


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
    codec: Codec | None = None
    packets_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    jitter_ms: float = 0.0
    srtp_suite: str | None = None  # the SRTP suite at the end of the call; None for plain RTP
    srtp_dropped: dict[str, int] = field(default_factory=dict)  # received packets that failed SRTP, by kind
    barge_ins: int = 0
    first_agent_audio_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    voicelive_reconnects: int = 0
    transcript: list[TranscriptLine] = field(
        default_factory=list
    )  # (s after answer, role, text, interrupted)
    tool_calls: list[ToolCalled] = field(default_factory=list)  # every tool the model called, in order
    recording: Path | None = None
    recording_failed: str | None = None  # why the call went (partly) unrecorded: a local fault
    profile: str | None = None  # the agent profile the call was routed to (None: the gateway's settings)
    agent: str | None = None  # the Foundry agent the session ran on (None: a model)
    # The Foundry conversation, when the service named one: VOICE_LIVE_AGENT_CONVERSATION_ID resumes it.
    conversation_id: str | None = None
    amd: AmdOutcome | None = None  # answering-machine detection on an outbound call (None: it did not run)
    # Each caller turn: speech end -> first agent audio sent, with its service, tool and gateway parts.
    turns: list[TurnLatency] = field(default_factory=list)
    turn_latency_p50_ms: float | None = None
    turn_latency_p95_ms: float | None = None
    # G.107 E-model score, per direction (received: the caller as the agent heard them; sent: the agent as
    # the caller heard it, from the caller's RTCP reports) and for the call (the worse direction).
    mos: float | None = None
    r_factor: float | None = None
    quality_received: DirectionQuality | None = None
    quality_sent: DirectionQuality | None = None
    transfer_steps: list[TransferStep] = field(default_factory=list)  # a warm transfer's steps, in order


class CallSession:
    """Bridges one call to Voice Live: build it with `accept()` or `place()`, then `run()`."""

    def __init__(
        self,
        call: Call | BrowserCall,
        media: MediaLeg,
        voicelive: VoiceLiveSession,
        *,
        gateway: GatewaySettings | None = None,
        tools: ToolRunner | None = None,
        builtins: BuiltinTools | None = None,
        recorder: CallRecorder | None = None,
        on_dtmf: DtmfHandler | None = None,
        on_recording: RecordingHook | None = None,
        on_media_update: MediaUpdate | None = None,
        direction: str = "inbound",
        amd: AmdPolicy | None = None,
    ) -> None:
        self.call = call
        self.media = media
        self.voicelive = voicelive
        self.gateway = gateway or GatewaySettings()
        self.tools = tools
        self.builtins = builtins or BuiltinTools(self.gateway)
        self.builtins.bind(self)
        self.recorder = recorder
        self.on_dtmf = on_dtmf
        self.on_recording = on_recording
        # A re-INVITE (hold, resume, refresh) re-negotiated the media: the leg's signalling-specific update.
        self.on_media_update = on_media_update
        self.metadata: Mapping[str, Any] = {}  # the application's, for tools (CallInfo) and webhooks
        loop = asyncio.get_running_loop()
        self._loop = loop
        caller, callee = _parties(call)
        self.summary = CallSummary(call.call_id, direction, caller, callee, started=loop.time())
        self._answered_at: float | None = None
        self._log = log.bind(call_id=call.call_id)
        self._item: str | None = None  # the assistant item whose audio is playing
        self._item_start_ms = 0  # the media leg's playout position at which that item starts
        self._interrupted: set[str] = set()
        self._responding = False
        self._ending: Ending | None = None  # set by a built-in tool that ends the call
        self._digits: list[str] = []
        self._digit_timer: asyncio.TimerHandle | None = None
        self._tasks = TaskSet()
        self._done = asyncio.Event()
        self._first_played: float | None = None
        self._remote_role = "callee" if direction == "outbound" else "caller"
        # The agent items heard so far: (transcript deltas, audio bytes received, first audio offset); few.
        self._agent_items: OrderedDict[str, tuple[list[str], int, float]] = OrderedDict()
        self._agent_lines: dict[str, TranscriptLine] = {}
        self._history: deque[SessionEvent] = deque(maxlen=MAX_EVENTS)
        self._changed = asyncio.Event()
        self._ended = asyncio.Event()
        self._downlink_since: float | None = None  # arrival of agent audio that found nothing queued ahead
        self._downlink_processing = 0.0
        self._silence_mark = 0
        self.metrics: GatewayMetrics | None = None
        self._hang_up_reason = "agent-hangup"
        # Answering-machine detection listens from the first callee frame on (outbound calls that ask for it).
        self._amd = CallAmd(amd, media.codec, loop.time()) if amd is not None else None
        self._amd_wake = asyncio.Event()
        self._voicemail_limit: asyncio.TimerHandle | None = None
        self.tracer_provider: Any = None  # OpenTelemetry: None for the global provider (set before `run`)
        self.held = False  # a warm transfer holds the caller: their audio does not reach Voice Live
        self.transfer: WarmTransfer | None = None  # a warm transfer that joined the caller with a person
        self._released = False  # Voice Live closed on purpose while the call goes on (a bridged transfer)
        self._turns = TurnTimer()
        self._trace: CallTrace | None = None
        self.media.on_played = self._played
        self.voicelive.on_delayed_send = self._uplink_delayed
        # Caller audio from here on arrives by callback; what came before (since the answer) is handed over.
        self.media.receive(self._caller_frame)

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
        # The user agent chose the codec from the offer once; without an offer we offer our first choice.
        codec = call.codec or Codec.parse(settings.media.codecs[0])
        runner, builtins = _runner(tools, gateway), BuiltinTools(gateway, server=settings.sip.server)
        voicelive = _new_voicelive(
            settings, voicelive_settings, codec, runner, builtins, credential, call.call_id
        )
        connecting = asyncio.ensure_future(voicelive.connect())
        try:
            await call.ring()
            rtp = await _open_rtp(pool, clock, settings.media, settings.sip.allow_from)
        except BaseException as error:
            connecting.cancel()
            await voicelive.close()
            if not isinstance(error, CallFailed):
                log.warning("call.setup_failed", call_id=call.call_id, error=repr(error))
                await call.reject(503, "Service Unavailable")
            raise
        try:
            if gateway.answer_mode == "when_ready":
                await _connected_unless_ended(connecting, call)
            # Without an offer ours lists MEDIA_CODECS; Voice Live follows the one the ACK's answer picks.
            media = await call.answer(
                rtp_port=rtp.local_port,
                rtp_address=settings.media.public_address or settings.media.address,
                codecs=list(settings.media.codecs) if call.offer is None else None,
            )
            if gateway.answer_mode == "immediately":
                await connecting
            if media is not None and media.codec != voicelive.codec:
                await voicelive.use_codec(media.codec)
        except VoiceLiveError as error:
            rtp.close()
            await voicelive.close()
            log.warning("call.voicelive_unavailable", call_id=call.call_id, error=str(error))
            if call.state is CallState.OFFERED:
                await call.reject(gateway.unavailable_status, "Voice Live Unavailable")
            else:
                await call.hangup()
            raise CallFailed(gateway.unavailable_status, f"Voice Live unavailable: {error}") from error
        except BaseException:
            connecting.cancel()
            rtp.close()
            await voicelive.close()
            raise
        try:
            return cls._build(
                call, rtp, voicelive, settings, runner, builtins, on_dtmf, on_recording, "inbound",
                metrics=metrics, media=media, started=started,
            )  # fmt: skip
        except BaseException:
            await _release(call, rtp, voicelive)
            raise

    @classmethod
    async def place(
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
        amd: AmdPolicy | None = None,
        from_uri: SipUri | None = None,
        display_name: str | None = None,
    ) -> CallSession:
        """Place a call (the agent calls someone), wait for the answer; Voice Live connects while it rings.

        Not named `call`: that is the session's signalling call (`session.call`). Waits like `Gateway.call`.
        `amd`: detect an answering machine first, and act on it (see `AmdPolicy`).
        """
        started = asyncio.get_running_loop().time()
        gateway = settings.gateway
        codec = Codec.parse(settings.media.codecs[0])
        runner, builtins = _runner(tools, gateway), BuiltinTools(gateway, server=settings.sip.server)
        voicelive = _new_voicelive(settings, voicelive_settings, codec, runner, builtins, credential, None)
        rtp = await _open_rtp(pool, clock, settings.media, settings.sip.allow_from)
        connecting = asyncio.ensure_future(voicelive.connect())
        call: OutgoingCall | None = None
        try:
            # Our codecs in order; Voice Live was opened for the first, adapts if the callee takes another.
            call = ua.dial(
                target,
                rtp_port=rtp.local_port,
                rtp_address=settings.media.public_address or settings.media.address,
                codecs=list(settings.media.codecs),
                timeout=timeout,
                from_uri=from_uri,
                display_name=display_name,
            )
            media = await call.answered()
            await connecting
            if media is not None and media.codec != voicelive.codec:
                await voicelive.use_codec(media.codec)
        except BaseException:
            connecting.cancel()
            if call is not None and not call.ended:
                # Abandoned while ringing (cancelled, Voice Live failed): CANCEL, or BYE if it just answered.
                with contextlib.suppress(CallFailed, OSError):
                    await call.hangup()
            rtp.close()
            await voicelive.close()
            raise
        try:
            return cls._build(
                call, rtp, voicelive, settings, runner, builtins, on_dtmf, on_recording, "outbound",
                metrics=metrics, media=media, started=started, amd=amd,
            )  # fmt: skip
        except BaseException:
            await _release(call, rtp, voicelive)
            raise

    @classmethod
    def for_leg(
        cls,
        call: BrowserCall,
        leg: MediaLeg,
        voicelive: VoiceLiveSession,
        settings: Settings,
        runner: ToolRunner,
        builtins: BuiltinTools,
        *,
        on_dtmf: DtmfHandler | None = None,
        on_recording: RecordingHook | None = None,
        metrics: GatewayMetrics | None = None,
        started: float,
    ) -> CallSession:
        """The session of a call that came another way than SIP (a browser, over WebRTC), its media up and
        its Voice Live session (from `voicelive_for`) connected."""
        return cls._build(
            call, leg, voicelive, settings, runner, builtins, on_dtmf, on_recording, "inbound",
            metrics=metrics, media=None, started=started,
        )  # fmt: skip

    @classmethod
    def _build(
        cls,
        call: Call | BrowserCall,
        rtp: MediaLeg,
        voicelive: VoiceLiveSession,
        settings: Settings,
        runner: ToolRunner,
        builtins: BuiltinTools,
        on_dtmf: DtmfHandler | None,
        on_recording: RecordingHook | None,
        direction: str,
        *,
        metrics: GatewayMetrics | None,
        media: NegotiatedMedia | None,
        started: float,
        amd: AmdPolicy | None = None,
    ) -> CallSession:
        """The session of a call whose media is up (`media` as negotiated, set up since `started`)."""
        recorder, failed = None, None
        if settings.gateway.recording_dir:
            path = recording_path(Path(settings.gateway.recording_dir), call.call_id, datetime.now(UTC))
            codec = call.media.codec if call.media is not None else voicelive.codec
            try:
                recorder = CallRecorder(path, law=codec, call_id=call.call_id)
            except OSError as error:
                # The call is answered already: a read-only or missing folder costs the recording, not the
                # call (and never its RTP ports or Voice Live session).
                failed = error.strerror or str(error)
                log.error(
                    "recording.failed", call_id=call.call_id, path=str(path), reason=failed, errno=error.errno
                )
        session = cls(
            call,
            rtp,
            voicelive,
            gateway=settings.gateway,
            tools=runner,
            builtins=builtins,
            recorder=recorder,
            on_dtmf=on_dtmf,
            on_recording=on_recording,
            on_media_update=functools.partial(_apply_media, rtp, *_media_peer(call, settings.media))
            if isinstance(rtp, RtpSession) and isinstance(call, Call)
            else None,
            direction=direction,
            amd=amd,
        )
        session.metrics = metrics
        session.summary.recording_failed = failed
        session._media_up(media, started)
        return session

    def _media_up(self, media: NegotiatedMedia | None, started: float) -> None:
        now = self._loop.time()
        self.summary.started = started
        self._answered_at = now
        self.summary.answered_after_ms = (now - started) * 1000
        if media is not None and self.on_media_update is not None:
            self.on_media_update(media)
        self.summary.codec = self.media.codec
        self._log.info(
            "sip.media_active", codec=self.summary.codec, answer_ms=round(self.summary.answered_after_ms)
        )

    # -- running -------------------------------------------------------------------------------------------
    async def run(self) -> CallSummary:
        """Bridge until the call ends; returns the summary (also logged as `call.summary`)."""
        self._trace = CallTrace(self._loop.time(), self.tracer_provider)
        s = self.summary
        self._trace.call_started(
            s.started,
            self._answered_at or s.started,
            outbound=s.direction == "outbound",
            attributes={"sip.call_id": s.call_id, "sip.direction": s.direction, "network.transport": "udp",
                        "voicelive_sip.caller": s.caller, "voicelive_sip.callee": s.callee},
        )  # fmt: skip
        workers = TaskSet()
        workers.spawn(self._downlink(), name="call.downlink")
        workers.spawn(self._sip_events(), name="call.sip_events")
        workers.spawn(self._media_events(), name="call.media_events")
        if self._amd is not None:
            workers.spawn(self._amd_watch(), name="call.amd")
        try:
            if self._amd is None or not self._amd.policy.hold_agent_audio:
                await self.voicelive.greet()
            await self._done.wait()
        finally:
            workers.cancel()
            await workers.wait()
            await self._finish()
        return self.summary

    async def hangup(self) -> None:
        """End the call from our side (BYE)."""
        await self.call.hangup()

    # -- watching ------------------------------------------------------------------------------------------
    async def wait_for(
        self, kind: type[E], predicate: Callable[[E], bool] | None = None, *, timeout: float | None = 10.0
    ) -> E:
        """The first `kind` event of this call (that `predicate` accepts), past or future.

        `await session.wait_for(ToolCalled, lambda t: t.name == "order_status")`. Raises `TimeoutError`
        after `timeout` seconds, `LookupError` if the call ends without one.
        """
        async with asyncio.timeout(timeout):
            while True:
                for event in self._history:  # bounded; looked through again after each new event
                    if isinstance(event, kind) and (predicate is None or predicate(event)):
                        return event
                if self._ended.is_set():
                    raise LookupError(f"the call ended without a matching {kind.__name__}")
                await self._changed.wait()

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Every event of this call, from its start (as far as the bounded history reaches) to its end."""
        seen: SessionEvent | None = None  # the last event yielded: the history is a bounded deque
        while True:
            history = list(self._history)
            start = 0
            if seen is not None:
                start = next((i + 1 for i in range(len(history) - 1, -1, -1) if history[i] is seen), 0)
            for event in history[start:]:
                seen = event
                yield event
            if self._ended.is_set():
                return
            await self._changed.wait()

    async def wait_ended(self, timeout: float | None = None) -> CallSummary:
        """The summary, once the call is over and the summary complete."""
        async with asyncio.timeout(timeout):
            await self._ended.wait()
        return self.summary

    def _publish(self, event: SessionEvent) -> None:
        self._history.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _stop(self) -> None:
        self._done.set()

    def _caller_frame(self, payload: bytes) -> None:
        """Called by the media leg for each caller frame (after its jitter buffer): straight to Voice Live."""
        now = self._loop.time()
        if self.recorder is not None:
            self.recorder.caller(payload, now)
        if self._amd is not None:
            self._amd_wake.set()
            if self._amd.caller_frame(payload, now):
                return
        if self.held:
            return
        # Written to the WebSocket now, or kept in order in the session's one outage backlog (bounded).
        if self.voicelive.queue_audio(payload) and self.metrics is not None:
            self.metrics.latency("uplink", self._loop.time() - now)

    def _uplink_delayed(self, waited: float) -> None:
        # Gateway-added, uplink: audio that waited in the session's backlog while the socket was backed up.
        if self.metrics is not None:
            self.metrics.latency("uplink", waited)

    async def _downlink(self) -> None:
        async for event in self.voicelive.events():
            if isinstance(event, AudioDelta):
                self._agent_audio(event)
            elif isinstance(event, SpeechStarted):
                await self._barge_in("speech")
            elif isinstance(event, SpeechStopped):
                self._speech_stopped(event)
            elif isinstance(event, ResponseStarted):
                self._responding = True
            elif isinstance(event, ResponseDone):
                self._responding = False
                if event.usage is not None:
                    self.summary.input_tokens += event.usage.input_tokens
                    self.summary.output_tokens += event.usage.output_tokens
                    self.summary.total_tokens += event.usage.total_tokens
                if self._ending == "hang_up":
                    self._tasks.spawn(self._hang_up_after_goodbye(), name="call.hang_up")
            elif isinstance(event, FunctionCall):
                self._tasks.spawn(self._tool_call(event), name=f"call.tool.{event.name}")
            elif isinstance(event, InputTranscript):
                self._transcript(self._remote_role, event.transcript)
            elif isinstance(event, OutputTranscriptDelta):
                self._agent_item(event.item_id)[0].append(event.delta)
            elif isinstance(event, OutputTranscript):
                if event.item_id not in self._interrupted:  # already in as far as it was heard
                    line = self._transcript("agent", event.transcript, at=self._item_offset(event.item_id))
                    if line is not None:
                        self._agent_lines[event.item_id] = line
                        while len(self._agent_lines) > 8:
                            del self._agent_lines[next(iter(self._agent_lines))]
            elif isinstance(event, ServiceError):
                # The session has logged it; a cancel racing the service's own interrupt is not an error.
                if self.metrics is not None and event.code != "response_cancel_not_active":
                    self.metrics.voicelive_error(event.code or event.type)
            elif isinstance(event, Closed):
                if self._released:
                    return  # the call goes on without Voice Live (a bridged warm transfer)
                if event.error is not None:
                    # Voice Live failed for good: play nothing stale, say why, end the call.
                    self.media.clear()
                    self._log.error("call.voicelive_failed", reason=event.reason, error=str(event.error))
                    if self.metrics is not None:
                        self.metrics.voicelive_error("failed")
                    self.summary.end_reason = "voicelive-failed"
                    await self._end_call()
                self._stop()
                return

    def _agent_audio(self, event: AudioDelta) -> None:
        media = self.media
        if event.item_id in self._interrupted:
            return  # a reply the caller already cut off: stale audio never plays
        if self.held or (self._amd is not None and self._amd.mutes_agent):
            # On hold (warm transfer), or AMD listens or a machine's greeting plays: nobody hears the model.
            return
        deltas, received, first = self._agent_item(event.item_id)
        self._agent_items[event.item_id] = (deltas, received + len(event.audio), first)
        self._turns.audio_received(event.received_at or self._loop.time())
        if event.item_id != self._item:
            # The new item starts playing after whatever is still queued.
            self._item = event.item_id
            self._item_start_ms = media.played_ms + media.queued_ms
        elif media.silence_frames_sent > self._silence_mark:
            # Silence went out between two chunks of the same reply: the caller heard a gap (underrun).
            self._log.debug("media.underrun", item_id=event.item_id)
            if self.metrics is not None:
                self.metrics.underrun()
        if not media.queued_ms and self._downlink_since is None:
            # Nothing queued ahead: the gateway's own delay is reading it to here, then the clock's lateness.
            now = self._loop.time()
            self._downlink_since = now
            self._downlink_processing = now - event.received_at if event.received_at else 0.0
        self._log.debug("voicelive.audio_delta", item_id=event.item_id, bytes=len(event.audio))
        media.enqueue(event.audio)
        self._silence_mark = media.silence_frames_sent

    def _played(self, payload: bytes) -> None:
        now = self._loop.time()
        if self._turns.waiting:
            self._turn_answered(now)
        if self._downlink_since is not None:
            if self.metrics is not None:
                # Waiting for the call's next 20 ms slot is pacing, not the gateway's doing: count only how
                # late the clock sent it after it could have (the slot's deadline, or the enqueue if later).
                could_send = max(self._downlink_since, self.media.frame_deadline)
                self.metrics.latency("downlink", self._downlink_processing + max(0.0, now - could_send))
            self._downlink_since = None
        if self._first_played is None and self._answered_at is not None:
            self._first_played = now
            self.summary.first_agent_audio_ms = (now - self._answered_at) * 1000
            self._log.info("call.first_agent_audio", after_ms=round(self.summary.first_agent_audio_ms))
        if self.recorder is not None:
            self.recorder.agent(payload, now)

    def _speech_stopped(self, event: SpeechStopped) -> None:
        # The service's audio position of the speech end, on our clock: when that caller audio went to it.
        now = self._loop.time()
        end = self.voicelive.input_time(event.audio_end_ms)
        end = now if end is None else min(end, now)
        self._turns.speech_stopped(end)
        if self._trace is not None:
            self._trace.turn_started(end, self._offset(end))

    def _turn_answered(self, now: float) -> None:
        turn = self._turns.audio_sent(now, self._answered_at or self.summary.started)
        if turn is None:
            return
        self._log.info(
            "call.turn", at=turn.at, total_ms=turn.total_ms, service_ms=turn.service_ms,
            gateway_ms=turn.gateway_ms, tool_ms=turn.tool_ms, tools=list(turn.tools),
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.turn_latency(turn.total_ms, turn.service_ms, turn.gateway_ms)
        if self._trace is not None:
            self._trace.turn_ended(turn, now)
        self._publish(turn)

    async def _barge_in(self, cause: str) -> None:
        """Within the same event: drop queued audio, then cancel the reply and truncate at what was heard."""
        dropped = self.media.clear()
        self._downlink_since = None
        item = self._item
        if item is None or (dropped == 0 and not self._responding):
            return
        # The media leg's playout position is the one count of what the caller heard.
        heard_ms = max(0, self.media.played_ms - self._item_start_ms)
        self._interrupted.add(item)
        if len(self._interrupted) > 256:
            self._interrupted.pop()
        self._item = None
        self.summary.barge_ins += 1
        self._log.info("call.barge_in", cause=cause, item_id=item, heard_ms=heard_ms, dropped_bytes=dropped)
        self._interrupted_turn(item, heard_ms)
        self._publish(BargedIn(cause, heard_ms, self._offset()))
        await self.voicelive.interrupt(item, heard_ms)

    async def _sip_events(self) -> None:
        async for event in self.call.events():
            if isinstance(event, MediaUpdated):
                # Hold, resume, refresh: the same media leg and the same Voice Live session carry on.
                if self.on_media_update is not None:
                    self.on_media_update(event.media)
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
        async for event in self.media.events():
            if isinstance(event, DtmfReceived):
                await self._dtmf(event.event.digit)
            elif isinstance(event, MediaTimeout):
                # Ends the call, and with it the Voice Live session: nobody is listening any more.
                self._log.warning("media.timeout", idle_s=event.idle, on_hold=event.on_hold)
                self.summary.end_reason = "hold-timeout" if event.on_hold else "media-timeout"
                await self._end_call()

    async def release_voicelive(self) -> None:
        """Close the Voice Live session while the call goes on (no model cost while two people talk)."""
        self._released = True
        await self.voicelive.close()

    async def _end_call(self) -> None:
        """Hang up from our side; the call is over for us either way: a failed BYE is logged, not raised."""
        try:
            await self.call.hangup()
        except (CallFailed, OSError) as error:
            self._log.warning("call.hangup_failed", error_type=type(error).__name__, error=str(error))

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
        self._tasks.spawn(
            self.voicelive.add_user_text(f"[The caller pressed on the phone keypad: {keys}]"),
            name="call.dtmf",
        )

    # -- tools ---------------------------------------------------------------------------------------------
    async def _tool_call(self, event: FunctionCall) -> None:
        direction: Literal["inbound", "outbound"] = (
            "outbound" if isinstance(self.call, OutgoingCall) else "inbound"
        )
        # Built-in tools win over an application tool of the same name, as their names are reserved.
        runner = self.builtins.runner if self.builtins.runner.has(event.name) else self.tools
        started = self._loop.time()
        trace = self._trace or CallTrace(started)
        with trace.tool(event.name, event.call_id, started) as span:
            # The tool span is current while the tool runs: its own spans (and contextvars) follow it.
            info = CallInfo(
                self.call.call_id, self.summary.caller, self.summary.callee, direction, self.metadata,
                trace_context=trace.context_headers(),
            )  # fmt: skip
            if runner is None:
                output = json.dumps({"error": {"type": "unknown_tool", "message": f"no tool {event.name}"}})
            else:
                output = await runner.run(event.name, event.arguments, call=info)
            called = self._tool_called(event, output, started)
            if called.error is not None:
                trace.tool_failed(span, called.error)
        self._turns.tool_ran(event.name, called.duration_ms / 1000)
        ending = self._ending
        # A built-in tool that ends the call wants no reply: the goodbye is already spoken (or being spoken).
        await self.voicelive.send_function_output(event.call_id, output, respond=ending is None)
        if ending == "transferred":
            await self._end_call()  # RFC 5589 §6.1: the transferor leaves once the transfer worked
        elif ending == "hang_up" and not self._responding:
            await self._hang_up_after_goodbye()

    async def _hang_up_after_goodbye(self) -> None:
        """Let the goodbye finish playing (bounded), then BYE."""
        deadline = self._loop.time() + self.gateway.goodbye_timeout
        while (self.media.queued_ms or self._responding) and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        self.summary.end_reason = self._hang_up_reason
        await self._end_call()

    # -- answering-machine detection -----------------------------------------------------------------------
    async def _amd_watch(self) -> None:
        """Act on the detector's events; gaps in the callee's audio count as silence (its timer)."""
        amd = self._amd
        assert amd is not None
        while True:
            while (event := amd.next_event()) is not None:
                await self._amd_event(amd, event)
            timer = amd.get_timer()
            if timer is None:
                return
            self._amd_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(timer):
                    await self._amd_wake.wait()
            amd.handle_timer(self._loop.time())

    async def _amd_event(self, amd: CallAmd, event: AmdEvent) -> None:
        outcome = self.summary.amd
        if isinstance(event, AmdVerdict):
            action = "conversation"
            if event.status == "MACHINE":
                action = "voicemail" if amd.policy.leaves_message else "hangup"
            self.summary.amd = AmdOutcome(event.status, event.cause, event.at_ms, action)
            self._log.info(
                "call.amd", status=event.status, cause=event.cause, at_ms=event.at_ms, action=action
            )
            if self.metrics is not None:
                self.metrics.amd_result(event.status)
            self._publish(AmdDetected(event.status, event.cause, event.at_ms, action))
            if action == "conversation":
                # NOTSURE too: a person who spoke at length is better served than hung up on.
                amd.phase = "done"
                for frame in amd.release():
                    self.voicelive.queue_audio(frame)
                if amd.policy.hold_agent_audio:
                    await self.voicelive.greet()
            elif action == "hangup":
                amd.phase = "done"
                self.summary.end_reason = "amd-machine"
                await self._end_call()
            else:
                amd.phase = "machine"
                amd.release()
                if not amd.policy.hold_agent_audio:  # the conversation had started: stop it
                    self.media.clear()
                    await self.voicelive.cancel_response()
                    self.voicelive.clear_output()
        elif isinstance(event, BeepDetected) and outcome is not None:
            outcome.beep_at_ms, outcome.beep_hz = event.at_ms, event.frequency
            self._log.info("call.amd_beep", at_ms=event.at_ms, frequency=event.frequency, ms=event.length_ms)
        elif isinstance(event, GreetingEnded) and outcome is not None and amd.phase == "machine":
            amd.phase = "message"
            outcome.greeting_ended, outcome.message_at_ms = event.cause, event.at_ms
            self._log.info("call.voicemail_message", greeting_ended=event.cause, at_ms=event.at_ms)
            policy = amd.policy
            template, text = VOICEMAIL_TEXT, policy.voicemail_message
            if not text:
                template, text = VOICEMAIL_INSTRUCTIONS, policy.voicemail_instructions
            # The reply ends the call: the built-in hang-up path waits for it to finish playing, then BYEs.
            self._ending, self._hang_up_reason = "hang_up", "voicemail-left"
            self._voicemail_limit = self._loop.call_later(MAX_VOICEMAIL_S, self._stop)
            await self.voicelive.create_response(template.format(text=text))

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _offset(self, moment: float | None = None) -> float:
        """Seconds after the answer (after the start, before it)."""
        now = self._loop.time() if moment is None else moment
        return round(now - (self._answered_at or self.summary.started), 3)

    def _transcript(self, role: str, text: str, *, at: float | None = None) -> TranscriptLine | None:
        if not text:
            return None
        line = TranscriptLine(self._offset() if at is None else at, role, text)
        self._add_line(line)
        self._log.info("call.transcript", role=role, text=text)
        return line

    def _add_line(self, line: TranscriptLine) -> None:
        self.summary.transcript.append(line)
        if len(self.summary.transcript) > 1000:
            del self.summary.transcript[0]
        self._publish(line)

    def _agent_item(self, item_id: str) -> tuple[list[str], int, float]:
        """What the agent said and sent so far in `item_id` (remembered for the last few items)."""
        entry = self._agent_items.get(item_id)
        if entry is None:
            entry = self._agent_items[item_id] = ([], 0, self._offset())
            while len(self._agent_items) > 8:
                self._agent_items.popitem(last=False)
        return entry

    def _item_offset(self, item_id: str) -> float | None:
        entry = self._agent_items.get(item_id)
        return entry[2] if entry is not None else None

    def _interrupted_turn(self, item_id: str, heard_ms: int) -> None:
        """The agent turn `item_id`, cut to what was heard before the barge-in, marked interrupted."""
        deltas, received, first = self._agent_item(item_id)
        complete = self._agent_lines.pop(item_id, None)
        text = complete.text if complete is not None else "".join(deltas)
        received_ms = received / self.media.codec.bytes_per_ms  # the leg's codec: G.711 or PCM16
        if received_ms > 0 and heard_ms < received_ms:
            # Words are spread over the audio about evenly: keep the share played, up to a word boundary.
            cut = int(len(text) * heard_ms / received_ms)
            text = text[:cut].rsplit(" ", 1)[0] if " " in text[:cut] else text[:cut]
        line = TranscriptLine(first, "agent", text.strip(), interrupted=True)
        if complete is not None:
            with contextlib.suppress(ValueError):
                self.summary.transcript.remove(complete)
        self._add_line(line)
        self.summary.transcript.sort(key=lambda entry: entry.at)
        self._log.info("call.transcript", role="agent", text=line.text, interrupted=True)

    def _tool_called(self, event: FunctionCall, output: str, started: float) -> ToolCalled:
        try:
            arguments: Any = json.loads(event.arguments)
        except ValueError:
            arguments = event.arguments
        try:
            result: Any = json.loads(output)
        except ValueError:
            result = output
        error = None
        if isinstance(result, dict) and set(result) == {"error"} and isinstance(result["error"], dict):
            error = str(result["error"].get("type") or "error")
        duration_ms = round((self._loop.time() - started) * 1000, 1)
        called = ToolCalled(event.name, arguments, result, self._offset(started), duration_ms, error)
        self.summary.tool_calls.append(called)
        del self.summary.tool_calls[:-MAX_TOOL_CALLS]
        self._publish(called)
        return called

    async def _finish(self) -> None:
        if self._digit_timer is not None:
            self._digit_timer.cancel()
        if self._voicemail_limit is not None:
            self._voicemail_limit.cancel()
        if not self.call.ended:
            await self._end_call()
        self._tasks.cancel()
        await self.voicelive.close()
        if self.transfer is not None:
            await self.transfer.close()
        stats = self.media.stats
        self.media.close()
        s = self.summary
        s.duration_s = round(self._loop.time() - (self._answered_at or s.started), 3)
        s.packets_sent = stats.packets_sent
        s.packets_received = stats.packets_received
        s.packets_lost = stats.cumulative_lost
        s.jitter_ms = round(stats.jitter_ms, 2)
        if isinstance(stats, RtpSessionStats):  # SRTP is the RTP leg's; another leg has its own security
            s.srtp_suite = stats.srtp_suite
            s.srtp_dropped = stats.srtp_dropped
            s.quality_received, s.quality_sent = call_quality(stats)
            scored = [q for q in (s.quality_received, s.quality_sent) if q is not None]
            if scored:
                worst = min(scored, key=lambda q: q.r_factor)
                s.mos, s.r_factor = worst.mos, worst.r_factor
            if self.metrics is not None:
                self.metrics.call_quality(s.quality_received, s.quality_sent)
        s.turns = list(self._turns.turns)
        totals = [turn.total_ms for turn in s.turns]
        s.turn_latency_p50_ms = percentile(totals, 0.5)
        s.turn_latency_p95_ms = percentile(totals, 0.95)
        s.voicelive_reconnects = self.voicelive.reconnects
        s.agent = self.voicelive.settings.agent_name or None
        s.conversation_id = self.voicelive.conversation_id
        if self.call.ended and not s.end_reason:
            ended = await self.call.wait_ended()
            s.end_reason, s.ended_by = ended.reason, ended.by
        if self.recorder is not None:
            s.recording = self.recorder.close()
            s.recording_failed = self.recorder.failed
            if self.on_recording is not None:
                try:
                    result = self.on_recording(s.recording)
                    if isinstance(result, Awaitable):
                        await result
                except Exception:
                    # The application's hook: anything can fail in it, and the summary must still go out.
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
            srtp=s.srtp_suite,
            srtp_dropped=sum(s.srtp_dropped.values()),
            barge_ins=s.barge_ins,
            answer_ms=round(s.answered_after_ms) if s.answered_after_ms is not None else None,
            first_agent_audio_ms=round(s.first_agent_audio_ms)
            if s.first_agent_audio_ms is not None
            else None,
            total_tokens=s.total_tokens,
            voicelive_reconnects=s.voicelive_reconnects,
            tool_calls=len(s.tool_calls),
            profile=s.profile,
            agent=s.agent,
            conversation_id=s.conversation_id,
            amd=s.amd.status if s.amd is not None else None,
            turns=len(s.turns),
            turn_latency_p50_ms=s.turn_latency_p50_ms,
            turn_latency_p95_ms=s.turn_latency_p95_ms,
            mos=s.mos,
            mos_received=s.quality_received.mos if s.quality_received is not None else None,
            mos_sent=s.quality_sent.mos if s.quality_sent is not None else None,
        )
        if self._trace is not None:
            attributes: dict[str, str | int | float | bool] = {
                "voicelive_sip.end_reason": s.end_reason, "voicelive_sip.ended_by": s.ended_by,
                "gen_ai.usage.input_tokens": s.input_tokens, "gen_ai.usage.output_tokens": s.output_tokens,
                "voicelive_sip.turns": len(s.turns), "voicelive_sip.tool_calls": len(s.tool_calls),
            }  # fmt: skip
            if s.conversation_id is not None:
                attributes["gen_ai.conversation.id"] = s.conversation_id
            if s.mos is not None:
                attributes["voicelive_sip.mos"] = s.mos
            self._trace.call_ended(self._loop.time(), attributes)
        self._publish(SessionFinished(s.end_reason, s.ended_by))
        self._ended.set()


def _parties(call: Call | BrowserCall) -> tuple[str, str]:
    if isinstance(call, IncomingCall | BrowserCall):
        return call.from_, call.to
    if isinstance(call, OutgoingCall):
        return "", call.target
    return "", ""


def _apply_media(rtp: RtpSession, peer_host: str | None, trusted: bool, media: NegotiatedMedia) -> None:
    """The SDP outcome (answer or re-INVITE) applied to the call's RTP leg.

    An incoming call's SDP that names another host than the one that signalled could aim our media at a
    third party (reflection): RTP goes there only after RTP came from there, unless the peer is trusted (an
    SBC with separate media addresses, MEDIA_TRUSTED_PEERS). A NAT'd caller's RTP may come from `peer_host`.
    """
    confirm_first = peer_host is not None and not trusted and media.remote_rtp[0] != peer_host
    rtp.set_remote(
        media.remote_rtp,
        media.remote_rtcp,
        payload_type=media.payload_type,
        codec=media.codec,
        dtmf_pt=media.dtmf_payload_type,
        rtcp_mux=media.rtcp_mux,
        ptime=media.ptime,
        peer_host=peer_host,
        confirm_first=confirm_first,
        srtp=media.srtp,
    )
    rtp.set_direction(media.local_direction)


def _media_peer(call: Call, media: MediaSettings) -> tuple[str | None, bool]:
    """The signalling peer's host for an incoming call (None for ours), and whether it is trusted."""
    if not isinstance(call, IncomingCall):
        return None, True
    return call.source[0], media.trusts(call.source[0])


def _runner(tools: Sequence[Tool[Any, Any]], gateway: GatewaySettings) -> ToolRunner:
    return ToolRunner(tools, timeout=gateway.tool_timeout)


def _new_voicelive(
    settings: Settings,
    voicelive_settings: VoiceLiveSettings | None,
    codec: Codec,
    runner: ToolRunner,
    builtins: BuiltinTools,
    credential: Any,
    call_id: str | None,
) -> VoiceLiveSession:
    """The call's Voice Live session, in the call's G.711 law, with the application's and built-in tools."""
    return VoiceLiveSession(
        voicelive_settings or settings.voicelive,
        codec=codec,
        tools=runner.definitions + builtins.definitions,
        credential=credential,
        call_id=call_id,
    )


def voicelive_for(
    settings: Settings,
    tools: Sequence[Tool[Any, Any]],
    codec: Codec,
    credential: Any,
    call_id: str,
    voicelive_settings: VoiceLiveSettings | None = None,
) -> tuple[VoiceLiveSession, ToolRunner, BuiltinTools]:
    """A call's Voice Live session (not yet connected) with its tool runners, for `CallSession.for_leg`."""
    runner, builtins = (
        _runner(tools, settings.gateway),
        BuiltinTools(settings.gateway, server=settings.sip.server),
    )
    voicelive = _new_voicelive(settings, voicelive_settings, codec, runner, builtins, credential, call_id)
    return voicelive, runner, builtins


async def _connected_unless_ended(connecting: asyncio.Future[None], call: IncomingCall) -> None:
    """Wait for Voice Live while the caller waits; if the INVITE ends first (CANCEL), stop connecting at once
    so that a call that never completes holds no Voice Live session (raises CallFailed 487)."""
    ended: asyncio.Future[Any] = asyncio.ensure_future(call.wait_ended())
    pending: list[asyncio.Future[Any]] = [connecting, ended]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
    if not connecting.done():
        connecting.cancel()
        raise CallFailed(487, "the caller left while Voice Live was connecting")
    connecting.result()  # raises VoiceLiveError when the connection failed


async def _release(call: Call, rtp: MediaLeg, voicelive: VoiceLiveSession) -> None:
    """Give back what an answered call holds if its session cannot be built: ports, Voice Live, dialog."""
    rtp.close()
    await voicelive.close()
    if not call.ended:
        with contextlib.suppress(CallFailed, OSError):
            await call.hangup()


async def _open_rtp(
    pool: PortPool, clock: MediaClock, media: MediaSettings, allow_from: Sequence[str]
) -> RtpSession:
    return await RtpSession.open(pool, clock=clock, options=media.rtp_options(allow_from))


__all__ = [
    "BargedIn",
    "BuiltinTools",
    "CallSession",
    "CallSummary",
    "SessionFinished",
    "ToolCalled",
    "TranscriptLine",
    "TurnLatency",
    "builtin_tools",
    "voicelive_for",
]
