"""SipPhone: a loopback softphone on our own UserAgent and RtpSession, for tests and the demo.

It dials or answers, plays WAV files, arrays or espeak-ng sentences into the call (at real time or faster),
sends DTMF both ways SIP allows, holds, and records every frame it hears with its arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import shutil
import subprocess
import warnings
import wave
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import soxr

from voicelive_sip._logger import get_logger
from voicelive_sip.aio import (
    Call,
    CallEnded,
    CallFailed,
    InfoDtmf,
    MediaUpdated,
    TransferRequested,
    UserAgent,
)
from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec
from voicelive_sip.config import MediaSettings, SipSettings
from voicelive_sip.errors import LocalProtocolError, VoiceLiveSipError
from voicelive_sip.media import DtmfReceived, MediaEvent, MediaTimeout
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.dtmf import DTMF_DIGITS
from voicelive_sip.rtp.jitter import Frame
from voicelive_sip.rtp.session import FRAME_SAMPLES, PortPool, RtpSession
from voicelive_sip.sdp import NegotiatedMedia

__all__ = [
    "QUESTION_WAV",
    "AudioSource",
    "PhoneCall",
    "ReceivedFrame",
    "Sentence",
    "SipPhone",
    "SpeechUnavailable",
    "load_audio",
    "render_sentence",
]

log = get_logger("voicelive_sip.testing.phone")

Pcm = npt.NDArray[np.int16]

SAMPLE_RATE: Final = 8000
WIDEBAND_RATE: Final = 16000  # G.722 audio as the RTP leg hands it over
FULL_SCALE: Final = 32768.0
FRAMES_PER_SECOND: Final = SAMPLE_RATE // FRAME_SAMPLES
MIN_PACE: Final = 0.05  # at most 20 frames per 20 ms tick: a loopback socket buffer takes that in its stride
LOOKAHEAD_TICKS: Final = 10  # audio handed to the RTP session ahead of the clock: 200 ms at real time
MAX_QUEUED_PLAYS: Final = 64
MAX_DIGITS: Final = 1024
CLOSE_TIMEOUT: Final = 4.0
ESPEAK_TIMEOUT: Final = 20.0

# "Hello, can you tell me the opening hours of the store?" (espeak-ng, 8 kHz mono 16-bit): for demos and
# tests on machines without espeak-ng.
QUESTION_WAV: Final = Path(__file__).with_name("data") / "question.wav"


class SpeechUnavailable(VoiceLiveSipError, RuntimeError):
    """A `Sentence` was to be spoken but espeak-ng is not installed."""


@dataclass(frozen=True, slots=True)
class Sentence:
    """Text the phone speaks with espeak-ng; `voice` is an espeak-ng voice name such as "en-us"."""

    text: str
    voice: str | None = None


class ReceivedFrame(NamedTuple):
    """One frame the phone heard: arrival (loop time), the payload (G.711 bytes, or PCM16 16 kHz decoded from
    G.722), and whether it was concealed."""

    time: float
    payload: bytes
    concealed: bool


AudioSource = str | os.PathLike[str] | Pcm | bytes | bytearray | memoryview | Sentence
"""A WAV path (any rate, any channels), int16 samples or PCM16 little-endian bytes at 8 kHz, or a Sentence."""


def render_sentence(text: str, *, voice: str | None = None, speed: int | None = None) -> Pcm | None:
    """`text` spoken by espeak-ng (words per minute: `speed`) as int16 at 8 kHz; None without espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return None
    options = [*(("-v", voice) if voice else ()), *(("-s", str(speed)) if speed else ())]
    command = [espeak, "--stdout", *options, text or " "]
    result = subprocess.run(command, capture_output=True, timeout=ESPEAK_TIMEOUT, check=True)
    return _wav_to_8k(result.stdout)


def load_audio(source: Pcm | bytes | bytearray | memoryview | str | os.PathLike[str]) -> Pcm:
    """Int16 samples at 8 kHz from a WAV path (resampled, mixed to mono), an int16 array or PCM16 bytes."""
    if isinstance(source, np.ndarray):
        if source.dtype != np.int16 or source.ndim != 1:
            raise TypeError(f"audio arrays must be 1-D int16 at 8 kHz, not {source.ndim}-D {source.dtype}")
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        return np.frombuffer(bytes(source), dtype="<i2").astype(np.int16)
    return _wav_to_8k(Path(source).read_bytes())


def _wav_to_8k(data: bytes) -> Pcm:
    with wave.open(io.BytesIO(data)) as wav:
        width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        # espeak-ng writing to a pipe cannot seek back to fix the length: its header claims 2**31 - 1 frames.
        raw = wav.readframes(2**31 - 1)
    raw = raw[: len(raw) - len(raw) % (width * channels)]
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)) >> 16
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4") >> 16
    else:
        raise ValueError(f"unsupported WAV sample width: {width} bytes")
    mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
    pcm = np.asarray(np.clip(np.round(mono), -32768, 32767), dtype=np.int16)
    if rate != SAMPLE_RATE:
        pcm = np.asarray(soxr.resample(pcm, rate, SAMPLE_RATE, quality="HQ"), dtype=np.int16)
    return pcm


def _pcm16_to_8k(data: bytes) -> Pcm:
    samples = np.frombuffer(data, dtype="<i2", count=len(data) // 2)
    return np.asarray(soxr.resample(samples, WIDEBAND_RATE, SAMPLE_RATE, quality="HQ"), dtype=np.int16)


def _leg_audio(codec: Codec, pcm: Pcm) -> bytes:
    """8 kHz samples in the leg format of `codec`: G.711 bytes, or PCM16 at the wideband rate."""
    law = codec.law
    if law is not None:
        return g711.encode(law, pcm)
    wide = soxr.resample(pcm, SAMPLE_RATE, codec.sample_rate, quality="HQ")
    return np.asarray(wide, dtype=np.int16).astype("<i2", copy=False).tobytes()


def _espeak_missing(text: str) -> SpeechUnavailable:
    return SpeechUnavailable(
        f"cannot speak {text!r}: espeak-ng is not installed (apt-get install espeak-ng), "
        f"or play a WAV file such as {QUESTION_WAV}"
    )


@dataclass(slots=True)
class _Play:
    pcm: Pcm | None  # None: render `sentence` first (espeak-ng runs in a thread)
    sentence: Sentence | None
    pace: float
    done: asyncio.Future[None]


class _Pacer:
    """Drives one RtpSession from the phone's clock, `rate` frames per tick: faster than real time on demand.

    The session sees consecutive ticks of its own, so RTP timestamps stay continuous at any rate.
    """

    def __init__(self, rtp: RtpSession, on_tick: Callable[[], None]) -> None:
        self.rtp = rtp
        self.rate = 1.0
        self._notify = on_tick
        self._credit = 0.0
        self._clock_tick: int | None = None
        self._media_tick = 0

    def on_tick(self, tick: int) -> None:
        if self._clock_tick is not None and tick > self._clock_tick + 1:
            self._media_tick += tick - self._clock_tick - 1  # the clock skipped ticks: so does media time
        self._clock_tick = tick
        self._credit = min(self._credit + self.rate, 1 / MIN_PACE)
        while self._credit >= 1.0:
            self._credit -= 1.0
            self.rtp.on_tick(self._media_tick)
            self._media_tick += 1
        self._notify()


class PhoneCall:
    """One call of a `SipPhone`: audio and DTMF go in, and everything the phone heard is recorded.

    The phone consumes `call.events()` (re-INVITEs, INFO DTMF, the end) and applies them to `rtp`.
    """

    def __init__(self, phone: SipPhone, call: Call, rtp: RtpSession, *, record_frames: int) -> None:
        self.call = call
        self.rtp = rtp
        self._clock = phone.clock
        self._forget = phone._calls.discard
        self._loop = asyncio.get_running_loop()
        self._log = log.bind(call_id=call.call_id)
        self._heard: deque[tuple[ReceivedFrame, g711.Law | None, float, int]] = deque(maxlen=record_frames)
        self._dtmf: deque[str] = deque(maxlen=MAX_DIGITS)
        self._transfers: deque[str] = deque(maxlen=MAX_DIGITS)
        # What the phone reports for a REFER it receives (RFC 3515 NOTIFY); set it to test failed transfers.
        self.transfer_status = 200
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()
        self._plays: asyncio.Queue[_Play] = asyncio.Queue(MAX_QUEUED_PLAYS)
        self._playing: _Play | None = None
        self._pacer = _Pacer(rtp, self._changed.set)
        rtp.on_frame = self._on_frame
        rtp.on_event = self._on_media_event
        self._apply(call.media)
        self._clock.add(self._pacer)
        self._player = self._loop.create_task(self._play_queue(), name=f"phone-player-{call.call_id}")
        self._watcher = self._loop.create_task(self._watch(), name=f"phone-call-{call.call_id}")

    def __repr__(self) -> str:
        return f"<PhoneCall {self.call.call_id} {self.call.state.value}>"

    # ----- what the phone heard ---------------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedFrame]:
        """Frames heard in the last `record_seconds`, in order: (arrival loop time, payload, concealed)."""
        return [entry[0] for entry in self._heard]

    @property
    def transfer_requests(self) -> list[str]:
        """Targets of the REFERs this call received (each answered 202, then NOTIFY `transfer_status`)."""
        return list(self._transfers)

    @property
    def dtmf_received(self) -> list[str]:
        """Digits received, RFC 4733 and SIP INFO alike, in arrival order."""
        return list(self._dtmf)

    @property
    def ended(self) -> bool:
        """True once the call is over."""
        return self.call.ended

    def received_pcm(self, start: float | None = None, end: float | None = None) -> Pcm:
        """What was heard (arrival in [start, end) loop time; all by default), decoded to int16 at 8 kHz
        (a wideband call's PCM16 resampled down, run by run)."""
        parts: list[Pcm] = []
        wideband: list[bytes] = []
        for frame, law, _, _ in self._window(start, end):
            if law is None:
                wideband.append(frame.payload)
                continue
            if wideband:
                parts.append(_pcm16_to_8k(b"".join(wideband)))
                wideband.clear()
            parts.append(g711.decode(law, frame.payload))
        if wideband:
            parts.append(_pcm16_to_8k(b"".join(wideband)))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def energy_dbfs(self, start: float | None = None, end: float | None = None) -> float:
        """RMS level (dB full scale) of what arrived in [start, end) loop time; -inf for digital silence."""
        total = 0.0
        samples = 0
        for _, _, energy, count in self._window(start, end):
            total += energy
            samples += count
        if total <= 0.0:
            return -math.inf
        return 10 * math.log10(total / samples / FULL_SCALE**2)

    def first_audio_time(self, threshold_dbfs: float = -40.0, *, after: float | None = None) -> float | None:
        """Arrival time of the first frame (after `after`, if given) louder than `threshold_dbfs`."""
        floor = FULL_SCALE**2 * 10 ** (threshold_dbfs / 10)
        for frame, _, energy, count in self._window(after, None):
            if energy > floor * count:
                return frame.time
        return None

    def _window(
        self, start: float | None, end: float | None
    ) -> Iterable[tuple[ReceivedFrame, g711.Law | None, float, int]]:
        return (
            entry
            for entry in self._heard
            if (start is None or entry[0].time >= start) and (end is None or entry[0].time < end)
        )

    async def wait_for(self, predicate: Callable[[PhoneCall], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate(call)` holds, re-checked on every tick, frame and event; TimeoutError."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    # ----- sending ----------------------------------------------------------------------------------------

    async def play(self, source: AudioSource, *, pace: float = 1.0) -> None:
        """Play `source` into the call; returns once all of it has been sent (`pace` 0.25: 4x real time)."""
        await self.play_nowait(source, pace=pace)

    def play_nowait(self, source: AudioSource, *, pace: float = 1.0) -> asyncio.Future[None]:
        """Queue `source` after what is already queued; the future completes when it has been sent."""
        if not pace >= MIN_PACE:
            raise ValueError(f"pace must be at least {MIN_PACE} (20x real time), not {pace}")
        if self._closed.is_set():
            raise RuntimeError("the call has ended")
        if isinstance(source, Sentence):
            if shutil.which("espeak-ng") is None:
                raise _espeak_missing(source.text)
            play = _Play(None, source, pace, self._loop.create_future())
        else:
            play = _Play(load_audio(source), None, pace, self._loop.create_future())
        self._plays.put_nowait(play)  # raises QueueFull beyond MAX_QUEUED_PLAYS
        play.done.add_done_callback(self._play_finished)
        return play.done

    async def say(self, text: str, *, voice: str | None = None, pace: float = 1.0) -> None:
        """Speak `text` with espeak-ng; raises `SpeechUnavailable` when espeak-ng is not installed."""
        await self.play(Sentence(text, voice), pace=pace)

    async def send_dtmf(
        self, digits: str, *, method: Literal["rfc4733", "info"] = "rfc4733", duration_ms: int = 100
    ) -> None:
        """Send each digit as RFC 4733 telephone-events (returns once sent) or as SIP INFO (once answered)."""
        invalid = [d for d in digits.upper() if d not in DTMF_DIGITS]
        if invalid or not digits:
            raise ValueError(f"not DTMF digits: {digits!r}")
        if method == "info":
            for digit in digits:
                await self.call.send_info_dtmf(digit, duration_ms)
            return
        for digit in digits:
            self.rtp.send_dtmf(digit, duration_ms)
        await self._until(lambda: not self.rtp.dtmf_sender.active)

    async def hold(self) -> None:
        """Put the peer on hold (re-INVITE, a=sendonly): we keep sending, stop receiving."""
        self._apply(await self.call.hold())

    async def unhold(self) -> None:
        """Resume (re-INVITE, a=sendrecv)."""
        self._apply(await self.call.unhold())

    async def hangup(self) -> None:
        """Hang up (BYE) and wait until the RTP session is closed and its ports are back in the pool."""
        await self.call.hangup()
        await self._closed.wait()

    async def wait_ended(self) -> CallEnded:
        """Wait for the end of the call (either side) and for the phone's cleanup of it."""
        ended = await self.call.wait_ended()
        await self._closed.wait()
        return ended

    # ----- machinery --------------------------------------------------------------------------------------

    def _apply(self, media: NegotiatedMedia | None) -> None:
        if media is None or self.rtp.closed:
            return
        self.rtp.set_remote(
            media.remote_rtp,
            media.remote_rtcp,
            media.payload_type,
            media.codec,
            media.dtmf_payload_type,
            media.rtcp_mux,
            media.ptime,
            srtp=media.srtp,
        )
        self.rtp.set_direction(media.local_direction)
        self._changed.set()

    def _on_frame(self, frame: Frame) -> None:
        law = self.rtp.codec.law
        if law is None:  # a wideband leg hands over PCM16 (G.722: decoded at 16 kHz)
            samples = np.frombuffer(frame.payload, "<i2", len(frame.payload) // 2).astype(np.float64)
        else:
            samples = g711.decode(law, frame.payload).astype(np.float64)
        received = ReceivedFrame(self._loop.time(), frame.payload, frame.concealed)
        self._heard.append((received, law, float(np.dot(samples, samples)), len(samples)))
        self._changed.set()

    def _on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, DtmfReceived):
            self._dtmf.append(event.event.digit)
            self._log.info("phone.dtmf_received", digit=event.event.digit, method="rfc4733")
            self._changed.set()
        elif isinstance(event, MediaTimeout):
            self._log.info("phone.media_timeout", idle=round(event.idle, 3))

    async def _watch(self) -> None:
        try:
            async for event in self.call.events():
                if isinstance(event, MediaUpdated):
                    self._apply(event.media)
                    self._log.info(
                        "phone.media_updated",
                        direction=event.media.local_direction,
                        on_hold=event.media.on_hold,
                    )
                elif isinstance(event, InfoDtmf):
                    self._dtmf.append(event.digit)
                    self._log.info("phone.dtmf_received", digit=event.digit, method="info")
                    self._changed.set()
                elif isinstance(event, TransferRequested):
                    self._transfers.append(event.target)
                    self._log.info(
                        "phone.transfer_requested", target=event.target, status=self.transfer_status
                    )
                    self._changed.set()
                    with contextlib.suppress(CallFailed):
                        await self.call.notify_transfer(self.transfer_status)
                elif isinstance(event, CallEnded):
                    self._log.info("phone.call_ended", reason=event.reason, by=event.by)
        finally:
            self._close()

    def _close(self) -> None:
        """Stop sending, close the RTP session (ports go back to the pool), fail what was not played."""
        if self._closed.is_set():
            return
        self._clock.remove(self._pacer)
        self.rtp.close()
        self._player.cancel()
        while not self._plays.empty():
            self._fail(self._plays.get_nowait())
        if self._playing is not None:
            self._fail(self._playing)
        self._forget(self)
        self._closed.set()
        self._changed.set()

    async def _shutdown(self) -> None:
        # The phone is closing: whatever the call's state, leave no task behind.
        self._close()
        for task in (self._watcher, self._player):
            task.cancel()
        await asyncio.gather(self._watcher, self._player, return_exceptions=True)

    @staticmethod
    def _fail(play: _Play) -> None:
        if not play.done.done():
            play.done.set_exception(RuntimeError("the call ended before the audio was sent"))

    def _play_finished(self, done: asyncio.Future[None]) -> None:
        # A play_nowait() nobody awaits must not end in "exception was never retrieved": log it instead.
        if not done.cancelled() and done.exception() is not None:
            self._log.info("phone.play_failed", error=str(done.exception()))

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._next_change()

    async def _next_change(self) -> None:
        # The next tick, frame or event (the pacer ticks every 20 ms while the call lasts).
        if self._closed.is_set():
            raise RuntimeError("the call has ended")
        self._changed.clear()
        await self._changed.wait()

    async def _play_queue(self) -> None:
        while True:
            play = self._playing = await self._plays.get()
            try:
                pcm = play.pcm
                if pcm is None:
                    assert play.sentence is not None
                    text, voice = play.sentence.text, play.sentence.voice
                    pcm = await asyncio.to_thread(render_sentence, text, voice=voice)
                    if pcm is None:
                        raise _espeak_missing(text)
                await self._send(pcm, play.pace)
            except asyncio.CancelledError:
                self._fail(play)
                raise
            except Exception as error:
                if not play.done.done():
                    play.done.set_exception(error)
            else:
                if not play.done.done():
                    play.done.set_result(None)
            finally:
                self._playing = None
                self._pacer.rate = 1.0

    async def _send(self, pcm: Pcm, pace: float) -> None:
        self._pacer.rate = 1.0 / pace
        sent = 0  # samples at 8 kHz
        while sent < len(pcm):
            # A re-INVITE that changes the codec replaces the outbound buffer: re-encode the rest.
            buffer = self.rtp.outbound
            mark = buffer.played_frames
            data = _leg_audio(self.rtp.codec, pcm[sent:])
            lookahead = LOOKAHEAD_TICKS * math.ceil(self._pacer.rate) * buffer.frame_bytes
            frames = math.ceil(len(data) / buffer.frame_bytes)
            queued = 0
            while buffer.played_frames - mark < frames and self.rtp.outbound is buffer:
                if queued < len(data) and len(buffer) < lookahead:
                    # `lookahead` is whole frames: a partial frame would go out padded with silence.
                    queued += self.rtp.enqueue(data[queued : queued + lookahead])
                await self._next_change()
            sent += (buffer.played_frames - mark) * FRAME_SAMPLES


class SipPhone:
    """A softphone on 127.0.0.1: its own UserAgent, RTP port pool and (unless given one) media clock."""

    def __init__(
        self,
        *,
        media_port: int = 30000,
        media_ports: int = 100,
        address: str = "127.0.0.1",
        sip_port: int = 0,
        user: str = "phone",
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        clock: MediaClock | None = None,
        record_seconds: float = 600.0,
    ) -> None:
        self.pool = PortPool(address, media_port, media_ports)
        # Everything set explicitly: a test phone must not pick up SIP_SERVER, AUTH_PASSWORD... from the env.
        media: dict[str, Any] = {"address": address, "public_address": None, "codecs": list(codecs)}
        self.ua = UserAgent(
            SipSettings(
                port=sip_port,
                local_address=address,
                via_address=None,
                transports=["udp"],
                user=f"{user}@{address}",
                server=None,
                auth_user=None,
                auth_password=None,
                register_enabled=False,
                inbound_auth_user=None,
                inbound_auth_password=None,
                allow_from=[],
            ),
            MediaSettings(**media),
        )
        self.clock = clock if clock is not None else MediaClock()  # an idle clock is falsy (__len__)
        self.record_seconds = record_seconds
        self._own_clock = clock is None
        self._calls: set[PhoneCall] = set()

    async def __aenter__(self) -> SipPhone:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        """Where the phone's SIP listens (UDP)."""
        return self.ua.address

    @property
    def uri(self) -> str:
        """A SIP URI that reaches this phone."""
        host, port = self.address
        return f"sip:{self.ua.aor.user}@{host}:{port}"

    @property
    def calls(self) -> list[PhoneCall]:
        """Calls not yet ended."""
        return list(self._calls)

    async def start(self) -> None:
        """Bind the SIP socket and start the media clock (if the phone owns it)."""
        await self.ua.start()
        if self._own_clock:
            self.clock.start()
        log.info("phone.started", address=self.address, rtp_ports=self.pool.capacity)

    async def close(self) -> None:
        """Hang up every call, then close the user agent and the phone's clock."""
        calls = list(self._calls)
        if calls:
            hangups = [asyncio.ensure_future(self._hang_up(call)) for call in calls]
            _, late = await asyncio.wait(hangups, timeout=CLOSE_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*hangups, return_exceptions=True)
        await self.ua.close()
        for call in calls:
            await call._shutdown()
        if self._own_clock:
            await self.clock.stop()
        log.info("phone.stopped")

    @staticmethod
    async def _hang_up(call: PhoneCall) -> None:
        with contextlib.suppress(CallFailed, LocalProtocolError):
            await call.hangup()

    async def dial(self, target: str, *, timeout: float | None = None) -> PhoneCall:
        """Deprecated name of `call()` (in this library `dial` returns before the answer; this waits)."""
        warnings.warn("SipPhone.dial() is now SipPhone.call()", DeprecationWarning, stacklevel=2)
        return await self.call(target, timeout=timeout)

    async def call(
        self, target: str, *, timeout: float | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> PhoneCall:
        """Call `target` (a SIP URI) and return the call once answered; raises `CallFailed` otherwise.

        `headers` go into the INVITE (e.g. `Supported: replaces`, or `Replaces` itself)."""
        rtp = await self._open_rtp()
        try:
            call = await self.ua.call(
                target,
                rtp_port=rtp.local_port,
                rtp_address=self.pool.address,
                timeout=timeout,
                headers=headers,
            )
        except BaseException:
            rtp.close()
            raise
        log.info("phone.call_connected", call_id=call.call_id, target=target, rtp_port=rtp.local_port)
        return self._adopt(call, rtp)

    async def answer_next(
        self, timeout: float = 10.0, *, headers: Iterable[tuple[str, str]] = ()
    ) -> PhoneCall:
        """Wait for the next incoming call (TimeoutError after `timeout`), ring, and answer it (with `headers`
        in the 200)."""
        incoming_calls = self.ua.incoming_calls()
        try:
            async with asyncio.timeout(timeout):
                incoming = await anext(incoming_calls)
        finally:
            await incoming_calls.aclose()
        rtp = await self._open_rtp()
        try:
            await incoming.ring()
            await incoming.answer(rtp_port=rtp.local_port, rtp_address=self.pool.address, headers=headers)
        except BaseException:
            rtp.close()
            raise
        log.info(
            "phone.call_answered", call_id=incoming.call_id, caller=incoming.from_, rtp_port=rtp.local_port
        )
        return self._adopt(incoming, rtp)

    async def _open_rtp(self) -> RtpSession:
        # The phone's pacer drives the session (clock=None here); a phone does not judge a quiet peer.
        return await RtpSession.open(self.pool, inactivity_timeout=None)

    def _adopt(self, call: Call, rtp: RtpSession) -> PhoneCall:
        phone_call = PhoneCall(
            self, call, rtp, record_frames=max(1, int(self.record_seconds * FRAMES_PER_SECOND))
        )
        self._calls.add(phone_call)
        return phone_call
