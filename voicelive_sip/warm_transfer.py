"""Warm transfer to a person: hold the caller, ring and brief the person, then connect the two.

Connected by REFER with Replaces (RFC 3891, RFC 5589 §7) when the caller's INVITE and the person's answer
both said they support Replaces; otherwise the gateway joins the two calls' media itself (`LegBridge`) and
frees the caller's Voice Live session. A person who does not answer, is busy or declines hands the caller
back to the agent, which is told why. Every step is a `TransferStep` event and an OpenTelemetry span.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._logger import get_logger
from .aio import Call, CallEnded, CallFailed, IncomingCall, MediaUpdated, OutgoingCall, Ringing, UserAgent
from .call_events import TransferStep
from .codecs.names import Codec
from .config import MediaSettings
from .leg_bridge import LegBridge
from .rtp.clock import MediaClock
from .rtp.session import PortPool, RtpSession
from .sdp import NegotiatedMedia
from .sip.replaces import ReplacesId, refer_to_with_replaces, supports_replaces
from .sip.uri import SipUri, Uri
from .voicelive import AudioDelta, Closed, ResponseDone, VoiceLiveError, VoiceLiveSession

if TYPE_CHECKING:
    from .bridge import CallSession

__all__ = ["TransferContext", "WarmTransfer", "hold_audio", "hold_audio_problems"]

log = get_logger("voicelive_sip.warm_transfer")

MAX_SUMMARY_CHARS = 1000  # what the model passes for the person; a runaway argument is cut here
MAX_CALLER_CHARS = 200
MAX_HOLD_AUDIO_S = 60  # a hold-music file is looped; more than a minute of it is not read
HOLD_CHUNK_MS = 400  # hold audio is kept this far ahead of the caller's playout
AGENT_DONE_TIMEOUT = 10.0  # the agent's "please hold" plays out before hold audio starts, at most this long
REPLACED_TIMEOUT = 5.0  # after a transfer by Replaces, the person's side BYEs our leg; then we do
BRIEFING_PROMPT = (
    "You are briefing {target}, a colleague who is about to take over a phone call from you. In two or three "
    "short sentences, tell them who is calling ({caller}) and what the call is about, then stop. Do not ask "
    "questions. Notes from the call: {summary}"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class TransferContext:
    """What dialling the person takes: the gateway's user agent, RTP ports and clock, and its credential."""

    ua: UserAgent
    pool: PortPool
    clock: MediaClock
    media: MediaSettings
    allow_from: tuple[str, ...] = ()
    credential: Any = None


@functools.lru_cache(maxsize=4)
def hold_audio(path: str | None) -> npt.NDArray[np.int16]:
    """8 kHz linear PCM the caller hears on hold: a WAV file (mono 16-bit, resampled), or a soft tone.

    Read once per path (the array is read-only), not on every transfer.
    """
    pcm = _hold_audio(path)
    pcm.setflags(write=False)
    return pcm


def _hold_audio(path: str | None) -> npt.NDArray[np.int16]:
    if path:
        try:
            return _read_hold_file(path)
        except (OSError, EOFError, ValueError, wave.Error) as error:
            log.warning("warm_transfer.hold_audio_unreadable", path=path, error=str(error))
    # The default: a 425 Hz beep of 300 ms every 2 s at -20 dBFS, faded in and out (no clicks).
    t = np.arange(int(8000 * 0.3)) / 8000
    beep = 0.1 * np.sin(2 * np.pi * 425 * t) * np.minimum(1.0, np.minimum(t, 0.3 - t) / 0.02)
    pattern = np.concatenate([beep, np.zeros(8000 * 2 - len(beep))])
    return np.asarray(np.round(pattern * 32767), dtype=np.int16)


def _read_hold_file(path: str) -> npt.NDArray[np.int16]:
    with wave.open(str(Path(path)), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError("not mono 16-bit PCM")
        rate = wav.getframerate()
        frames = wav.readframes(min(wav.getnframes(), rate * MAX_HOLD_AUDIO_S))
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.int16)  # a copy: writable
    if rate != 8000:
        import soxr  # a dependency of the codecs, loaded only for a file that needs it

        pcm = np.asarray(np.clip(soxr.resample(pcm, rate, 8000), -32768, 32767), dtype=np.int16)
    if not len(pcm):
        raise ValueError("no audio in it")
    return pcm


def _offer(caller: Codec, ours: Sequence[Codec | str]) -> list[Codec]:
    codecs = [caller] if caller.on_sip else []
    for name in ours:
        codec = Codec.parse(str(name))
        if codec not in codecs:
            codecs.append(codec)
    return codecs


def leg_audio(pcm: npt.NDArray[np.int16], codec: Codec) -> bytes:
    """8 kHz PCM in the leg's format: G.711 bytes, or PCM16 at the leg's rate."""
    from .voicelive.audio import Transcoder  # the bridge's own conversion (soxr), loaded with the first hold

    transcoder = Transcoder(None, 8000, codec.law, codec.sample_rate, quality="HQ")
    return transcoder.convert(pcm.tobytes()) + transcoder.flush()


def hold_audio_problems(path: str | None) -> list[str]:
    """GATEWAY_HOLD_AUDIO must be a WAV file we can play: checked at start-up, not at the first transfer."""
    if not path:
        return []
    try:
        _read_hold_file(path)
    except (OSError, EOFError, ValueError, wave.Error) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return [f"GATEWAY_HOLD_AUDIO: cannot use {path} ({reason}): a mono 16-bit PCM WAV file is needed"]
    return []


def _clean(text: str, limit: int) -> str:
    return _CONTROL.sub(" ", text).strip()[:limit]


class WarmTransfer:
    """One warm transfer of `session`'s caller to `target` (already checked against the allow-list)."""

    def __init__(
        self,
        session: CallSession,
        context: TransferContext,
        target: Uri,
        summary: str,
        *,
        allows: Callable[[Uri], bool],
    ) -> None:
        self.session = session
        self.context = context
        self.target = target
        self.allows = allows  # the transfer allow-list: what the caller may be sent to call
        self.summary = _clean(summary, MAX_SUMMARY_CHARS)
        self.person: OutgoingCall | None = None
        self.rtp: RtpSession | None = None
        self.bridge: LegBridge | None = None
        self._hold: asyncio.Task[None] | None = None
        self._hold_started = 0.0
        self._on_played = session.media.on_played
        self._loop = asyncio.get_running_loop()
        self._log = log.bind(call_id=session.call.call_id, target=str(target))

    # -- the steps -----------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Transfer; the model's tool result: ok with how the two were connected, or why not."""
        session = self.session
        bridged = False
        session.transfer = self  # one at a time; if the call ends meanwhile, the session releases the person
        try:
            await self._agent_done()
            self._start_hold()
            try:
                person = await self._dial()
            except CallFailed as error:
                self._resume()
                why = {486: "busy", 600: "busy", 603: "declined", 408: "no answer", 480: "not available"}
                reason = why.get(error.status_code, "no answer")
                return {
                    "ok": False, "status": error.status_code,
                    "reason": f"{self.target} did not take the call ({reason}). Tell the caller, and offer "
                    "to help further or take a message.",
                }  # fmt: skip
            await self._brief(person)
            if person.ended:
                self._step("ended", "the person hung up during the briefing")
                self._resume()
                return {"ok": False, "reason": f"{self.target} hung up before the caller was connected."}
            if self._replaceable(person) and await self._refer(person):
                return {"ok": True, "connected": "replaces"}
            await self._join(person)
            bridged = True
            return {"ok": True, "connected": "bridged"}
        finally:
            if not bridged:
                session.transfer = None
                await self._release_person()
                if self._hold is not None:
                    if session.call.ended or session.summary.end_reason:
                        self._stop_hold()
                    else:
                        self._resume()  # cancelled (tool timeout): the caller goes back to the agent

    async def _agent_done(self) -> None:
        media, deadline = self.session.media, self._loop.time() + AGENT_DONE_TIMEOUT
        while media.queued_ms and self._loop.time() < deadline:
            await asyncio.sleep(0.02)

    def _start_hold(self) -> None:
        session = self.session
        session.held = True  # caller audio stops reaching Voice Live
        session.media.on_played = None  # hold audio is no agent reply (first audio, turn latency, recording)
        session.media.clear()
        self._hold_started = self._loop.time()
        audio = leg_audio(hold_audio(session.gateway.hold_audio), session.media.codec)
        self._hold = session._tasks.spawn(self._play_hold(audio), name="call.hold_audio")
        self._step("hold")

    async def _play_hold(self, audio: bytes) -> None:
        media = self.session.media
        position, chunk = 0, HOLD_CHUNK_MS * media.codec.bytes_per_ms
        while True:
            if media.queued_ms < HOLD_CHUNK_MS:
                piece = audio[position : position + chunk]
                position = (position + chunk) % len(audio) if position + chunk < len(audio) else 0
                media.enqueue(piece)
            await asyncio.sleep(0.1)

    def _stop_hold(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
            self.session.media.clear()
            self._span("warm_transfer.hold", self._hold_started)

    def _resume(self) -> None:
        """The caller back with the agent: hold audio stops, their audio reaches Voice Live again."""
        self._stop_hold()
        session = self.session
        session.held = False
        session.media.on_played = self._on_played
        self._step("resumed")

    async def _dial(self) -> OutgoingCall:
        context, session = self.context, self.session
        media = context.media
        self.rtp = rtp = await RtpSession.open(
            context.pool, clock=context.clock, options=media.rtp_options(context.allow_from)
        )
        started = self._loop.time()
        self.person = person = context.ua.dial(
            str(self.target),
            rtp_port=rtp.local_port,
            rtp_address=media.public_address or media.address,
            # The caller's codec first, so the bridge can pass audio through untouched; then ours (and for a
            # browser's Opus, no SIP codec, only ours): whatever the person takes, the bridge converts.
            codecs=_offer(session.media.codec, media.codecs),
            timeout=session.gateway.warm_transfer_ring_timeout,
        )
        self._step("dialling")
        ringing = asyncio.ensure_future(self._ringing(person))
        try:
            answer = await person.answered()
        except CallFailed as error:
            self._step("no_answer", str(error.status_code))
            attributes = {"sip.status_code": error.status_code}
            self._span("warm_transfer.dial", started, attributes, error="no_answer")
            raise
        finally:
            ringing.cancel()
        if answer is not None:
            _apply(rtp, answer)
        self._step("answered", person.call_id)
        self._span("warm_transfer.dial", started, {"sip.status_code": 200})
        return person

    async def _ringing(self, person: OutgoingCall) -> None:
        async for event in person.events():
            if isinstance(event, Ringing):
                self._step("ringing", str(event.status_code))
                return

    async def _brief(self, person: OutgoingCall) -> None:
        """A separate Voice Live conversation tells the person who calls and why (bounded in time)."""
        session, rtp = self.session, self.rtp
        assert rtp is not None
        started = self._loop.time()
        prompt = BRIEFING_PROMPT.format(
            target=self.target, caller=_clean(session.summary.caller, MAX_CALLER_CHARS) or "unknown",
            summary=self.summary or "(none)",
        )  # fmt: skip
        settings = session.voicelive.settings.model_copy(
            update={"instructions": prompt, "proactive_greeting_enabled": False}
        )
        briefing = VoiceLiveSession(
            settings, codec=rtp.codec, credential=self.context.credential, call_id=person.call_id
        )
        self._step("briefing")
        error: str | None = None
        try:
            async with asyncio.timeout(session.gateway.warm_transfer_briefing_max_s):
                await briefing.connect()
                await briefing.create_response(prompt)
                async for event in briefing.events():
                    if isinstance(event, AudioDelta):
                        rtp.enqueue(event.audio)
                    elif isinstance(event, ResponseDone | Closed) or person.ended:
                        break
                while rtp.queued_ms and not person.ended:
                    await asyncio.sleep(0.02)  # the briefing plays out before the caller joins
        except (TimeoutError, VoiceLiveError) as failure:
            # The person is on the line either way: a briefing cut short or unavailable still connects them.
            error = type(failure).__name__
            self._log.warning("warm_transfer.briefing_failed", error=str(failure) or error)
        finally:
            await briefing.close()
        rtp.clear()
        self._step("briefed", error)
        self._span("warm_transfer.briefing", started, {}, error=error)

    def _replaceable(self, person: OutgoingCall) -> bool:
        call = self.session.call
        return (
            isinstance(call, IncomingCall)
            and supports_replaces(call.request)
            and "REFER" in _allow(call)
            and person.remote_supports_replaces
            and person.dialog is not None
            and isinstance(person.dialog.remote_target, SipUri)
        )

    async def _refer(self, person: OutgoingCall) -> bool:
        """Attended transfer: the caller is asked to call the person replacing our dialog with them."""
        dialog = person.dialog
        assert dialog is not None and isinstance(dialog.remote_target, SipUri) and dialog.remote_tag
        started = self._loop.time()
        # The person's Contact reaches their device directly, but it is theirs to choose: the caller (a PBX
        # trunk that pays for the call) is sent there only if the allow-list allows it too; otherwise to the
        # target that was checked and dialled, where a proxy routes the INVITE with Replaces to the person.
        contact = dialog.remote_target
        where = contact if self.allows(contact) else self.target
        if not isinstance(where, SipUri):
            return False
        replaces = ReplacesId(dialog.call_id, dialog.remote_tag, dialog.local_tag)
        refer_to = refer_to_with_replaces(where, replaces)
        self._step("referred", str(refer_to))
        try:
            status = await self.session.call.refer(str(refer_to))
        except CallFailed as error:
            status = error.status_code
        ok = 200 <= status < 300
        attributes = {"sip.status_code": status, "voicelive_sip.how": "replaces"}
        self._span("warm_transfer.connect", started, attributes, error=None if ok else "refer_failed")
        if not ok:
            self._log.info("warm_transfer.refer_failed", status=status)
            return False
        self._stop_hold()
        self._step("replaced", str(status))
        session = self.session
        session.summary.end_reason = "transferred"
        session._ending = "transferred"  # the tool's caller BYEs the caller's leg (RFC 5589 §7)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLACED_TIMEOUT):
                await person.wait_ended()  # the person's side ends our dialog once the caller replaced it
        return True

    async def _join(self, person: OutgoingCall) -> None:
        """Bridge the two calls' media in the gateway; the caller's Voice Live session is freed."""
        session, rtp = self.session, self.rtp
        assert rtp is not None
        started = self._loop.time()
        self._stop_hold()
        await session.release_voicelive()
        self.bridge = LegBridge(session.media, rtp)
        session.transfer = self
        session._tasks.spawn(self._watch(person), name="call.warm_transfer")
        self._step("bridged", f"{session.media.codec}/{rtp.codec}")
        self._span("warm_transfer.connect", started, {"voicelive_sip.how": "bridge"})

    async def _watch(self, person: OutgoingCall) -> None:
        """Follow the person's call while bridged: their re-INVITEs (hold, new address), their hang-up."""
        rtp = self.rtp
        assert rtp is not None
        async for event in person.events():
            if isinstance(event, MediaUpdated):
                _apply(rtp, event.media)
            elif isinstance(event, CallEnded):
                break
        ended = await person.wait_ended()
        session = self.session
        if not session.call.ended:
            self._step("ended", f"person {ended.reason}")
            session.summary.end_reason = "transfer-target-hangup"
            await session._end_call()

    # -- cleanup and bookkeeping ---------------------------------------------------------------------------
    async def close(self) -> None:
        """The caller's call is over: the person's leg goes too (BYE) and its ports are given back."""
        if self.bridge is not None:
            self.bridge.close()
            if self.person is not None and not self.person.ended:
                self._step("ended", "the caller's call ended")
        await self._release_person()

    async def _release_person(self) -> None:
        person, rtp = self.person, self.rtp
        if person is not None and not person.ended:
            with contextlib.suppress(CallFailed, OSError):
                await person.hangup()
        if rtp is not None:
            rtp.close()

    def _step(self, step: str, detail: str | None = None) -> None:
        session = self.session
        event = TransferStep(step, session._offset(), str(self.target), detail)
        session.summary.transfer_steps.append(event)
        del session.summary.transfer_steps[:-100]
        session._publish(event)
        self._log.info("warm_transfer.step", step=step, detail=detail)

    def _span(
        self, name: str, started: float, attributes: dict[str, Any] | None = None, *, error: str | None = None
    ) -> None:
        trace = self.session._trace
        if trace is not None:
            attrs = {"voicelive_sip.transfer.target": str(self.target), **(attributes or {})}
            trace.step(name, started, self._loop.time(), attrs, error=error)


def _apply(rtp: RtpSession, media: NegotiatedMedia) -> None:
    """The person's answer (or re-INVITE) on their leg: a call we placed, so no reflection check applies."""
    rtp.set_remote(
        media.remote_rtp, media.remote_rtcp, payload_type=media.payload_type, codec=media.codec,
        dtmf_pt=media.dtmf_payload_type, rtcp_mux=media.rtcp_mux, ptime=media.ptime, srtp=media.srtp,
    )  # fmt: skip
    rtp.set_direction(media.local_direction)


def _allow(call: Call) -> list[str]:
    """The methods the caller's INVITE allowed; without an Allow header, assume REFER is (RFC 3261 §20.5)."""
    if not isinstance(call, IncomingCall):
        return []
    try:
        allowed = call.request.allow
    except ValueError:
        return []
    return [method.upper() for method in allowed] if call.request.headers.get("Allow") else ["REFER"]
