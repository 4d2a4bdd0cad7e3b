"""Gateway: a user agent, one media clock and port pool, and a `CallSession` for every call."""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ._tasks import TaskSet
from .aio import CallFailed, IncomingCall, Registration, RegistrationState, UserAgent
from .aio.endpoint import target_uri
from .aio.resolve import check_display_name
from .aio.transport import BindFailed
from .amd import AmdParameters, AmdPolicy
from .bridge import CallSession, CallSummary, DtmfHandler, RecordingHook
from .call_events import AmdDetected, ToolCalled
from .config import (
    AmdSettings,
    Settings,
    SipSettings,
    StartupError,
    VoiceLiveSettings,
    agent_problems,
    voicelive_problems,
)
from .errors import LocalProtocolError, SipParseError, VoiceLiveError
from .logs import bind_call_context, get_logger
from .metrics import GatewayMetrics
from .profiles import CallFacts, ProfileError, Profiles, ResolvedProfile, load_profiles
from .rtp.clock import MediaClock
from .rtp.session import PortPool, RtpSessionStats
from .sip.uri import SipUri, Uri
from .targets import TargetPattern, allowed
from .voicelive.connection import VoiceLiveSession
from .voicelive.health import ServiceHealth
from .voicelive.tools import Tool
from .warm_transfer import TransferContext, hold_audio_problems
from .webhooks import CallContext, WebhookSender, summary_data

log = get_logger("voicelive_sip.gateway")

MAX_UNCLAIMED_CALLS = 16
WEBHOOK_SHUTDOWN_GRACE = 2.0  # s

Configure = Callable[[IncomingCall], Awaitable[VoiceLiveSettings | None] | VoiceLiveSettings | None]
SessionHook = Callable[[CallSession], Awaitable[None] | None]
SummaryHook = Callable[[CallSummary], Awaitable[None] | None]


class Gateway:
    """Answer calls and bridge each to Voice Live: `await Gateway(Settings(), tools=[...]).serve()`.

    `profiles` (or the file GATEWAY_PROFILES_FILE) route each call to an agent profile with its own tools;
    `configure(call)` may then return per-call Voice Live settings (instructions, voice by dialled number...);
    `on_session`, `on_summary`, `on_dtmf`, `on_recording` let the application watch calls.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tools: Sequence[Tool[Any, Any]] = (),
        credential: Any = None,
        configure: Configure | None = None,
        on_session: SessionHook | None = None,
        on_summary: SummaryHook | None = None,
        on_dtmf: DtmfHandler | None = None,
        on_recording: RecordingHook | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.profiles = profiles
        self.resolved_profiles: dict[str, ResolvedProfile] = {}
        self.tools = list(tools)
        self.credential = credential
        self.configure = configure
        self.on_session = on_session
        self.on_summary = on_summary
        self.on_dtmf = on_dtmf
        self.on_recording = on_recording
        self.ua = UserAgent(self.settings.sip, self.settings.media)
        self.clock = MediaClock()
        media = self.settings.media
        self.pool = PortPool(media.address, media.port, media.port_count)
        self.metrics = GatewayMetrics()
        self.metrics.watch_security(self.ua.security_counters)
        self.metrics.watch_srtp(self._srtp_dropped_live)
        # Lifecycle webhooks (WEBHOOK_*): only queued from here, delivered by the sender's own workers.
        hooks = self.settings.webhooks
        self.webhooks = WebhookSender(hooks, metrics=self.metrics) if hooks.secret is not None else None
        # Voice Live reachability from every call's connection attempt: OPTIONS, INVITE and /readyz use it.
        self.voicelive_health = ServiceHealth(self.settings.gateway.voicelive_failures_unhealthy)
        self.ua.health = lambda: self.voicelive_health.problem
        self.sessions: set[CallSession] = set()
        self.summaries: list[CallSummary] = []  # the most recent ones, bounded
        # Calls `next_call()` has not handed out yet, oldest first; bounded, as nobody may be asking.
        self._arrivals: deque[CallSession] = deque(maxlen=MAX_UNCLAIMED_CALLS)
        self._arrived = asyncio.Event()
        self._tasks = TaskSet()
        self._accepting: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.started = False

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def draining(self) -> bool:
        return self.ua.draining

    async def start(self) -> None:
        """Bind the transports and take calls; `StartupError` (naming the setting) if that cannot work.

        A gateway with no Voice Live endpoint or credential refuses to start rather than fail every call.
        """
        problems = voicelive_problems(self.settings.voicelive, credential=self.credential)
        problems += _recording_dir_problems(self.settings.gateway.recording_dir)
        problems += hold_audio_problems(self.settings.gateway.hold_audio)
        try:
            self._use_profiles(self._read_profiles())
        except ProfileError as error:
            setting = "GATEWAY_PROFILES_FILE: " if self.settings.gateway.profiles_file else "profiles: "
            problems += [setting + problem for problem in error.problems]
        if self.settings.webhooks.urls and self.webhooks is None:
            problems.append("WEBHOOK_SECRET: not set, and WEBHOOK_URLS needs it to sign the events")
        if problems:
            raise StartupError(problems)
        try:
            await self.ua.start()
        except BindFailed as error:
            raise StartupError([_bind_problem(self.settings.sip, error)]) from None
        for registration in self.ua.registrations:
            self._tasks.spawn(self._watch(registration), name="gateway.registration")
        self.clock.start()
        self._accepting = asyncio.get_running_loop().create_task(self._accept())
        self.started = True
        self._stopped.clear()
        log.info("gateway.started", max_calls=self.settings.sip.max_calls)

    def _read_profiles(self) -> Profiles | None:
        """The profiles given, or those of GATEWAY_PROFILES_FILE (read now), or None."""
        path = self.settings.gateway.profiles_file
        if path and (self.profiles is None or self.profiles.source is not None):
            return load_profiles(path)
        return self.profiles

    def _use_profiles(self, profiles: Profiles | None) -> None:
        """Check `profiles` against the gateway (its tools, credentials), then route calls by them."""
        if profiles is None:
            self.profiles, self.resolved_profiles = None, {}
            return
        resolved = profiles.resolve(self.settings, {t.name: t for t in self.tools})
        problems = []
        for name, chosen in resolved.items():
            where = f"profile {name!r}: "
            problems += agent_problems(chosen.settings.voicelive, credential=self.credential, where=where)
        if problems:
            raise ProfileError(problems)
        self.profiles, self.resolved_profiles = profiles, resolved

    def reload_profiles(self) -> bool:
        """Read GATEWAY_PROFILES_FILE again (SIGHUP); a file that does not load keeps the profiles in use."""
        path = self.settings.gateway.profiles_file
        try:
            self._use_profiles(self._read_profiles())
        except ProfileError as error:
            log.error(
                "gateway.profiles_reload_failed", file=path, problems=error.problems, kept=self._names()
            )
            return False
        log.info("gateway.profiles_reloaded", file=path, profiles=self._names())
        return True

    def _names(self) -> list[str]:
        return sorted(self.resolved_profiles)

    def route(self, call: IncomingCall) -> ResolvedProfile | None:
        """The profile an incoming call gets (None: the gateway's own settings and tools)."""
        return self._route(call)[0]

    def _route(self, call: IncomingCall) -> tuple[ResolvedProfile | None, str]:
        profiles = self.profiles
        if profiles is None:
            return None, "no profiles"
        name, rule = profiles.route(CallFacts.of(call, profiles.header_names))
        chosen = self.resolved_profiles.get(name) if name is not None else None
        return chosen, rule.describe() if rule is not None else "default"

    async def serve(self) -> None:
        """Run until `stop()` (or a signal handler calling `drain()`) finishes."""
        if not self.started:
            await self.start()
        await self._stopped.wait()

    async def next_call(self, timeout: float | None = 10.0) -> CallSession:
        """The next call bridged (answered, or placed and answered) that this has not returned yet.

        Calls wait here in order, the last `MAX_UNCLAIMED_CALLS` of them; raises `TimeoutError` after
        `timeout` seconds without one. Then `await session.wait_for(ToolCalled)`, `session.wait_ended()`.
        """
        async with asyncio.timeout(timeout):
            while not self._arrivals:
                await self._arrived.wait()
        return self._arrivals.popleft()

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready (for /readyz) = transports bound, registered where configured, and able to take a call: not
        draining, not at SIP_MAX_CALLS, Voice Live not known to be unreachable (what OPTIONS answers too)."""
        registrations = self.ua.registrations
        registered = all(r.state is RegistrationState.REGISTERED for r in registrations)
        refusal = self.ua.unavailable() if self.started else ("not started", 0)
        details: dict[str, object] = {
            "transports": self.started,
            # null when no registration is configured: nothing to be registered, not "registered".
            "registered": registered if registrations else None,
            "draining": self.draining,
            "active_calls": len(self.sessions),
            "voicelive_reachable": not self.voicelive_health.down,
            "unavailable": refusal[0] if refusal is not None else None,
        }
        return self.started and registered and refusal is None, details

    def _voicelive_outcome(self, error: VoiceLiveError | None) -> None:
        """Note how a Voice Live connection attempt went (None: it worked); probe while it is down."""
        health, was_down = self.voicelive_health, self.voicelive_health.down
        if error is None:
            health.succeeded()
        else:
            health.failed(str(error))
        if health.down and not was_down:
            log.warning(
                "gateway.voicelive_unreachable", failures=health.failures_in_a_row, error=health.last_error
            )
            self._tasks.spawn(self._probe_voicelive(), name="gateway.voicelive_probe")
        elif was_down and not health.down:
            log.info("gateway.voicelive_reachable")

    async def _probe_voicelive(self) -> None:
        """While Voice Live is marked down, try a connection every GATEWAY_HEALTH_PROBE_INTERVAL (no call
        comes in to try it: OPTIONS told the dispatcher to send calls elsewhere)."""
        health = self.voicelive_health
        while True:
            await asyncio.sleep(self.settings.gateway.health_probe_interval)
            if not self.started or not health.down:
                return  # stopped, or a call got through meanwhile
            try:
                async with VoiceLiveSession(self.settings.voicelive, credential=self.credential):
                    pass
            except VoiceLiveError as error:
                self._voicelive_outcome(error)
            else:
                self._voicelive_outcome(None)

    def _srtp_dropped_live(self) -> dict[str, int]:
        """SRTP packets dropped so far by the calls in progress, by kind (read at scrape time)."""
        totals: dict[str, int] = {}
        for session in self.sessions:
            for kind, count in _srtp_outcome(session)[1].items():
                totals[kind] = totals.get(kind, 0) + count
        return totals

    async def _watch(self, registration: Registration) -> None:
        async for change in registration.events():
            self.metrics.registration_state(
                str(registration.aor), change.state is RegistrationState.REGISTERED
            )

    async def drain(self, timeout: float | None = None) -> None:
        """Refuse new calls (503), let calls in progress finish up to `timeout`, then stop."""
        self.ua.draining = True
        wait = self.settings.gateway.drain_timeout if timeout is None else timeout
        log.info("gateway.draining", active_calls=len(self.sessions), timeout_s=wait)
        if wait > 0:
            deadline = asyncio.get_running_loop().time() + wait
            await self._tasks.wait(wait)
            # Calls the gateway carries for others (browser calls) run in their owner's tasks.
            while self.sessions and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        await self.stop()

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self.ua.draining = True
        if self._accepting is not None:
            self._accepting.cancel()
        for session in list(self.sessions):
            try:
                await session.hangup()
            except (CallFailed, OSError) as error:
                log.warning(
                    "call.hangup_failed",
                    call_id=session.call.call_id,
                    error_type=type(error).__name__,
                    error=str(error),
                )
        await self._tasks.wait(5)
        self._tasks.cancel()
        await self.ua.close()
        await self.clock.stop()
        if self.webhooks is not None:
            # The last calls' call.ended may still be going out: a moment for them, never a hung shutdown.
            await self.webhooks.close(grace=min(self.settings.webhooks.timeout, WEBHOOK_SHUTDOWN_GRACE))
        self._stopped.set()
        log.info("gateway.stopped")

    def outbound_target(self, target: str) -> Uri:
        """The URI `target` dials, if GATEWAY_OUTBOUND_ALLOWED allows it; CallFailed 416 or 403 otherwise."""
        server = self.settings.sip.server
        patterns = [TargetPattern.parse(text) for text in self.settings.gateway.outbound_allowed]
        try:
            uri = target_uri(target, server)
        except (LocalProtocolError, SipParseError) as error:
            raise CallFailed(416, f"not a target: {error}") from error
        if not allowed(uri, patterns, server=server):
            log.warning("security.outbound_refused", target=str(uri)[:120])
            raise CallFailed(403, "target not allowed by GATEWAY_OUTBOUND_ALLOWED")
        return uri

    def outbound_caller(self, from_: str) -> SipUri:
        """The From URI `from_` asks for, if OUTBOUND_FROM_ALLOWED allows it; CallFailed 416 or 403 otherwise.

        Caller ID is what a callee trusts: a caller-chosen From is refused unless a pattern names it."""
        try:
            uri = self.ua.caller_uri(from_)
            home = self.ua.caller_uri("user")  # where a bare user (and a bare pattern) goes
        except ValueError as error:
            raise CallFailed(416, f"from: {error}") from error
        patterns = [TargetPattern.parse(text) for text in self.settings.gateway.outbound_from_allowed]
        at = home.host if home.port is None else f"{home.host}:{home.port}"
        if not allowed(uri, patterns, server=at):
            log.warning("security.outbound_from_refused", caller=str(uri)[:120])
            raise CallFailed(403, "from not allowed by OUTBOUND_FROM_ALLOWED")
        return uri

    async def call(
        self,
        target: str,
        *,
        voicelive_settings: VoiceLiveSettings | None = None,
        timeout: float | None = None,
        context: CallContext | None = None,
        profile: str | None = None,
        amd: AmdPolicy | bool | None = None,
        from_: str | None = None,
        display_name: str | None = None,
    ) -> CallSession:
        """Place an outbound call bridged to Voice Live; returns its running session once answered.

        `from_`: the caller this call shows (a SIP URI, or a bare user at SIP_SERVER's host), only if
        OUTBOUND_FROM_ALLOWED allows it (empty: none; CallFailed 403); `display_name`: its name (≤ 64
        printable characters; ValueError otherwise). Defaults: SIP_USER and SIP_DISPLAY_NAME.

        `amd`: answering-machine detection for this call: a policy, True (AMD_* settings), False (off), or
        None (on if AMD_ENABLED).

        Only targets GATEWAY_OUTBOUND_ALLOWED allows are dialled (empty: none); others raise CallFailed 403.
        `timeout`: ring time before the call is cancelled (SIP_INVITE_TIMEOUT); `context`: the call's id,
        metadata (for tools and webhooks) and webhook receivers; `profile`: the agent profile that speaks
        (its settings and tools); unknown names raise KeyError.
        """
        chosen = self.resolved_profiles[profile] if profile is not None else None
        self.outbound_target(target)
        from_uri = self.outbound_caller(from_) if from_ is not None else None
        if display_name is not None:
            check_display_name(display_name)
        policy = amd if isinstance(amd, AmdPolicy) else amd_policy(self.settings.amd, enabled=amd)
        context = context or CallContext.new()
        self._notify(context, "call.started", {"direction": "outbound", "to": target})
        try:
            session = await self._place(
                target, voicelive_settings, timeout, context.metadata, chosen, policy, from_uri, display_name
            )
        except BaseException as error:
            if isinstance(error, VoiceLiveError):
                self._voicelive_outcome(error)
            status = error.status_code if isinstance(error, CallFailed) else None
            reason = unanswered_reason(error)
            self._notify(context, "call.ended", {"direction": "outbound", "to": target, "answered": False,
                                                 "end_reason": reason, "sip_status": status})  # fmt: skip
            raise
        self._voicelive_outcome(None)
        session.summary.profile = profile
        self._tasks.spawn(self._run(session, context), name="gateway.call")
        return session

    async def _place(
        self,
        target: str,
        voicelive_settings: VoiceLiveSettings | None,
        timeout: float | None,
        metadata: Mapping[str, object],
        chosen: ResolvedProfile | None = None,
        amd: AmdPolicy | None = None,
        from_uri: SipUri | None = None,
        display_name: str | None = None,
    ) -> CallSession:
        session = await CallSession.place(
            self.ua,
            target,
            settings=chosen.settings if chosen is not None else self.settings,
            pool=self.pool,
            clock=self.clock,
            tools=chosen.tools if chosen is not None else self.tools,
            voicelive_settings=voicelive_settings,
            credential=self.credential,
            on_dtmf=self.on_dtmf,
            on_recording=self.on_recording,
            metrics=self.metrics,
            timeout=timeout,
            amd=amd,
            from_uri=from_uri,
            display_name=display_name,
        )
        session.metadata = dict(metadata)
        session.builtins.transfer_context = self._transfer_context()
        return session

    def _transfer_context(self) -> TransferContext:
        """How a call's warm transfer dials the person: through this gateway's user agent, ports and clock."""
        sip = self.settings.sip
        return TransferContext(
            self.ua, self.pool, self.clock, self.settings.media, tuple(sip.allow_from), self.credential
        )

    async def _accept(self) -> None:
        async for call in self.ua.incoming_calls():
            self._tasks.spawn(self._incoming(call), name="gateway.incoming_call")

    async def _incoming(self, call: IncomingCall) -> None:
        # Every event logged while this call is set up and run carries its call_id and remote (contextvars).
        with bind_call_context(call_id=call.call_id, remote=call.source):
            await self._incoming_call(call)

    async def _incoming_call(self, call: IncomingCall) -> None:
        try:
            # The profile first (its settings and only its tools); configure() may still adjust Voice Live.
            routed, rule = self._route(call)
            if self.profiles is not None:
                log.info("gateway.call_routed", profile=routed.name if routed else None, rule=rule)
            settings = None
            if self.configure is not None:
                chosen = self.configure(call)
                settings = await chosen if isinstance(chosen, Awaitable) else chosen
            session = await CallSession.accept(
                call,
                settings=routed.settings if routed is not None else self.settings,
                pool=self.pool,
                clock=self.clock,
                tools=routed.tools if routed is not None else self.tools,
                voicelive_settings=settings,
                credential=self.credential,
                on_dtmf=self.on_dtmf,
                on_recording=self.on_recording,
                metrics=self.metrics,
            )
        except CallFailed as error:
            if isinstance(error.__cause__, VoiceLiveError):
                self._voicelive_outcome(error.__cause__)
            self.metrics.call_rejected(error.status_code)
            log.info(
                "gateway.call_not_set_up", call_id=call.call_id, status=error.status_code, reason=error.reason
            )
            return
        except Exception:
            # A bug or an application `configure` hook that failed: this call gets a 500, the gateway goes on.
            log.exception("gateway.call_setup_error", call_id=call.call_id)
            try:
                await call.reject(500)
            except (CallFailed, OSError) as error:
                log.warning(
                    "call.reject_failed",
                    call_id=call.call_id,
                    error_type=type(error).__name__,
                    error=str(error),
                )
            return
        self._voicelive_outcome(None)  # the session is up: Voice Live answered
        session.builtins.transfer_context = self._transfer_context()
        session.summary.profile = routed.name if routed is not None else None
        await self._run(session)

    def _notify(
        self, context: CallContext, kind: str, data: dict[str, object], session: CallSession | None = None
    ) -> None:
        """Queue a lifecycle webhook for this call's receivers (returns at once; none if not configured)."""
        if self.webhooks is None:
            return
        urls = context.urls if context.urls is not None else self.settings.webhooks.urls
        call: dict[str, object] = {"id": context.id, "metadata": context.metadata}
        if session is not None:
            summary = session.summary
            call.update(sip_call_id=summary.call_id, direction=summary.direction, caller=summary.caller,
                        callee=summary.callee)  # fmt: skip
        self.webhooks.emit(kind, call, data, urls)

    async def _tool_events(self, session: CallSession, context: CallContext) -> None:
        async for event in session.events():
            if isinstance(event, ToolCalled):
                data = {"name": event.name, "arguments": event.arguments, "result": event.result,
                        "at": event.at, "duration_ms": event.duration_ms, "error": event.error}  # fmt: skip
                self._notify(context, "call.tool_called", data, session)
            elif isinstance(event, AmdDetected):
                verdict = {"status": event.status, "cause": event.cause, "at_ms": event.at_ms,
                           "action": event.action}  # fmt: skip
                self._notify(context, "call.amd", verdict, session)

    async def carry(self, session: CallSession) -> None:
        """Run a call set up another way than by the user agent (a browser call) like one of ours: counted,
        watched (`next_call`, hooks, webhooks, metrics), drained and stopped with the others; its warm
        transfers dial through this gateway's user agent."""
        session.builtins.transfer_context = self._transfer_context()
        await self._run(session)

    def voicelive_outcome(self, error: VoiceLiveError | None) -> None:
        """Tell the health check how a Voice Live connection attempt went (None: it connected)."""
        self._voicelive_outcome(error)

    async def _run(self, session: CallSession, context: CallContext | None = None) -> None:
        if context is None:  # an incoming call: started and answered in one step, for the receivers
            context = CallContext.new()
            self._notify(context, "call.started", {"direction": "inbound"}, session)
        answered: dict[str, object] = {"answered_after_ms": session.summary.answered_after_ms}
        self._notify(context, "call.answered", answered, session)
        if self.webhooks is not None:
            self._tasks.spawn(self._tool_events(session, context), name="gateway.tool_webhooks")
        self.sessions.add(session)
        self._arrivals.append(session)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        self.metrics.call_started(session.summary.direction)
        try:
            if self.on_session is not None:
                hooked = self.on_session(session)
                if isinstance(hooked, Awaitable):
                    await hooked
            summary = await session.run()
        finally:
            # In the same step as leaving `sessions`, so the exported total never goes back.
            self.sessions.discard(session)
            suite, dropped = _srtp_outcome(session)
            self.metrics.srtp_call_ended(suite, dropped)
        self.metrics.call_ended(
            summary.direction,
            summary.end_reason or "unknown",
            summary.duration_s,
            summary.first_agent_audio_ms,
            summary.jitter_ms,
            summary.packets_lost,
            summary.barge_ins,
            summary.input_tokens,
            summary.output_tokens,
            summary.voicelive_reconnects,
        )
        self.summaries.append(summary)
        del self.summaries[:-100]
        self._notify(context, "call.ended", {"answered": True, "summary": summary_data(summary)}, session)
        if self.on_summary is not None:
            hooked = self.on_summary(summary)
            if isinstance(hooked, Awaitable):
                await hooked


def amd_policy(
    settings: AmdSettings,
    *,
    enabled: bool | None = None,
    machine_action: Literal["hangup", "voicemail"] | None = None,
    voicemail_message: str | None = None,
    voicemail_instructions: str | None = None,
) -> AmdPolicy | None:
    """The AMD policy of a call from the AMD_* settings and the call's overrides; None when AMD is off."""
    if not (settings.enabled if enabled is None else enabled):
        return None
    parameters = AmdParameters(
        **{
            name: getattr(settings, name)
            for name in AmdParameters.__dataclass_fields__
            if name in type(settings).model_fields
        }
    )
    message, instructions = settings.voicemail_message, settings.voicemail_instructions
    if voicemail_message is not None or voicemail_instructions is not None:
        # The call's own message replaces the deployment's, whichever form it takes.
        message, instructions = voicemail_message or "", voicemail_instructions or ""
    return AmdPolicy(
        parameters,
        machine_action=machine_action or settings.machine_action,
        voicemail_message=message,
        voicemail_instructions=instructions,
        hold_agent_audio=settings.hold_agent_audio,
    )


def unanswered_reason(error: BaseException) -> str:
    """Why an outbound call was not answered, in the words of the call API and webhooks."""
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, VoiceLiveError):
        return "voicelive-unavailable"
    if isinstance(error, CallFailed):
        if error.status_code in (486, 600):
            return "busy"
        if error.status_code in (408, 480, 487):
            return "no-answer"
        if error.status_code in (603, 607):
            return "declined"
    return "failed"


def _srtp_outcome(session: CallSession) -> tuple[str | None, dict[str, int]]:
    """The SRTP suite of a call's media leg (None: plain) and the packets it dropped, by kind."""
    stats = session.media.stats
    if not isinstance(stats, RtpSessionStats):
        return None, {}
    return stats.srtp_suite, stats.srtp_dropped


def _bind_problem(sip: SipSettings, error: BindFailed) -> str:
    """One line naming the setting that fixes a listening socket that could not be bound."""
    host, port = error.address
    setting = "SIP_TLS_PORT" if error.transport == "TLS" else "SIP_PORT"
    if error.errno == errno.EADDRINUSE:
        return f"{setting}: {error.transport} port {port} on {host} is in use by another process"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"SIP_LOCAL_ADDRESS: {host} is not an address of this host"
    if error.errno == errno.EACCES:
        return f"{setting}: not allowed to listen on port {port} (ports below 1024 need privileges)"
    return f"{setting}: cannot listen on {error.transport} {host}:{port} ({error.strerror})"


def _recording_dir_problems(folder: str | None) -> list[str]:
    """GATEWAY_RECORDING_DIR must be a folder we can write (it is created when missing)."""
    if not folder:
        return []
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return [f"GATEWAY_RECORDING_DIR: cannot create {folder} ({error.strerror or error})"]
    if not path.is_dir():
        return [f"GATEWAY_RECORDING_DIR: {folder} is not a folder"]
    if not os.access(path, os.W_OK | os.X_OK):
        return [f"GATEWAY_RECORDING_DIR: {folder} is not writable by this user"]
    return []
