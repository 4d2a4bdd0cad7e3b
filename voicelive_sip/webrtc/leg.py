"""BrowserLeg: a WebRTC call's audio as a `MediaLeg`, wideband PCM16 at 24 kHz across the interface.

aiortc decodes the browser's Opus (48 kHz) on its own thread; each frame is folded to mono and resampled
to 24 kHz with a streaming soxr resampler kept for the call, then handed to the bridge. The other way, the
agent's 24 kHz audio is queued in a bounded buffer and `AgentTrack.recv` pulls one 20 ms frame per tick on
absolute deadlines (silence when nothing is queued), which aiortc's Opus encoder turns into RTP. `played_ms`
counts the agent audio pulled, the position barge-in truncates at, exactly as on the RTP leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from .._logger import get_logger
from ..codecs.names import Codec
from ..codecs.resample import Resampler
from ..media import MediaEvent, MediaTimeout
from ..rtp.outbound import OutboundBuffer

__all__ = ["AgentTrack", "BrowserLeg", "BrowserStats", "FramePacer", "InlineDecoder"]

log = get_logger("voicelive_sip.webrtc")

RATE = 24000  # the audio crossing the leg (and Voice Live's pcm16 rate)
FRAME_S = 0.02
FRAME_SAMPLES = int(RATE * FRAME_S)
FRAME_BYTES = FRAME_SAMPLES * 2
BYTES_PER_MS = RATE * 2 // 1000
MAX_EARLY_FRAMES = 50  # caller frames kept before the bridge takes them (1 s)
MAX_EVENTS = 16
STATS_EVERY_S = 5.0
OPUS_BITRATE = 32000  # mono wideband speech: what browsers send themselves
OPUS_CLOCK = 48000
_TIME_BASE = fractions.Fraction(1, RATE)
_SILENCE = bytes(FRAME_BYTES)


@dataclass(slots=True)
class BrowserStats:
    """What the call summary reports: frames as packets, and the receiver's loss and jitter from aiortc."""

    packets_sent: int = 0
    packets_received: int = 0
    cumulative_lost: int = 0
    jitter_ms: float = 0.0


class FramePacer:
    """One tick per `interval` on absolute deadlines (no drift); after a stall the schedule starts again from
    now rather than catching up in a burst."""

    def __init__(self, interval: float = FRAME_S, *, max_late: float = 0.2) -> None:
        self.interval = interval
        self.max_late = max_late
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None

    async def tick(self) -> float:
        """Wait for the next tick; returns its deadline (loop time)."""
        now = self._loop.time()
        if self._deadline is None or now - self._deadline > self.max_late:
            self._deadline = now
        else:
            self._deadline += self.interval
            if self._deadline > now:
                await asyncio.sleep(self._deadline - now)
        return self._deadline


class AgentTrack(MediaStreamTrack):
    """The audio track aiortc sends: one 20 ms frame of the leg's queue per tick, on absolute deadlines.

    It hands aiortc Opus packets it encoded itself (mono, 24 kHz in, 32 kbit/s), which aiortc only packetises:
    given raw frames, aiortc resamples them to 48 kHz stereo and encodes at 96 kbit/s on a worker thread, one
    thread hand-off per frame per call, which cost more CPU than the rest of the call put together.
    """

    kind = "audio"

    def __init__(self, leg: BrowserLeg) -> None:
        super().__init__()
        self._leg = leg
        self._pacer = FramePacer()
        self._pts = 0
        self._encoder = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = RATE
        self._encoder.layout = "mono"
        self._encoder.format = "s16"
        self._encoder.bit_rate = OPUS_BITRATE
        self._encoder.options = {"application": "voip"}
        self._encoder.time_base = _TIME_BASE

    async def recv(self) -> AudioFrame | av.Packet[Any]:
        if self.readyState != "live" or self._leg.closed:
            raise MediaStreamError
        payload = self._leg.next_frame(await self._pacer.tick())
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(payload)
        frame.sample_rate = RATE
        frame.time_base = _TIME_BASE
        frame.pts = pts = self._pts
        self._pts += FRAME_SAMPLES
        packets = self._encoder.encode(frame)
        if len(packets) != 1:
            return frame  # not one packet for one frame (never seen with libopus): let aiortc encode it
        packet = packets[0]
        packet.pts, packet.time_base = pts, _TIME_BASE  # our clock, not the encoder's pre-skip offset
        return packet


class BrowserLeg:
    """Caller audio in (`receive`), agent audio out (`enqueue`, `clear`), playout position, media events."""

    def __init__(self, *, outbound_seconds: float = 30.0, media_timeout: float = 10.0) -> None:
        self.on_played: Callable[[bytes], None] | None = None
        self.media_timeout = media_timeout
        self.closed = False
        self.stats = BrowserStats()
        self.outbound = OutboundBuffer(
            frame_bytes=FRAME_BYTES, bytes_per_second=RATE * 2, max_seconds=outbound_seconds, fill=0
        )
        self._handler: Callable[[bytes], None] | None = None
        self._early: deque[bytes] = deque(maxlen=MAX_EARLY_FRAMES)
        self._events: asyncio.Queue[MediaEvent | None] = asyncio.Queue(MAX_EVENTS)
        self._resamplers: dict[int, Resampler] = {}
        self._silence_frames = 0
        self._deadline = 0.0
        self._reader: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._last_audio = 0.0
        self._loop = asyncio.get_running_loop()
        self.inline = False  # the browser's Opus decoded on the loop (InlineDecoder), not by aiortc's thread
        self.decode_errors = 0
        self.track = AgentTrack(self)

    # -- MediaLeg ------------------------------------------------------------------------------------------
    @property
    def codec(self) -> Codec:
        return Codec.OPUS

    @property
    def played_ms(self) -> int:
        return self.outbound.played_bytes // BYTES_PER_MS

    @property
    def queued_ms(self) -> int:
        return -(-len(self.outbound) // BYTES_PER_MS)

    @property
    def silence_frames_sent(self) -> int:
        return self._silence_frames

    @property
    def frame_deadline(self) -> float:
        return self._deadline

    def receive(self, handler: Callable[[bytes], None]) -> None:
        while self._early:
            handler(self._early.popleft())
        self._handler = handler

    def enqueue(self, payload: bytes) -> int:
        accepted = self.outbound.enqueue(payload)
        if accepted < len(payload):
            log.warning("webrtc.enqueue_failed", dropped=len(payload) - accepted)
        return accepted

    def clear(self) -> int:
        return self.outbound.clear()

    async def events(self) -> AsyncIterator[MediaEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in (self._reader, self._watch):
            if task is not None:
                task.cancel()
        self.track.stop()
        self.outbound.clear()
        while self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(None)

    # -- the aiortc side -----------------------------------------------------------------------------------
    def decode_inline(self, receiver: Any) -> bool:
        """Decode the browser's Opus on the event loop, straight to 24 kHz mono, instead of on aiortc's
        decoder thread (a thread wake-up and a hand-back task per 20 ms frame, then a 48 kHz stereo frame to
        fold and resample). Call before the receiver starts; False (nothing changed) if aiortc differs."""
        name = "_RTCRtpReceiver__decoder_queue"
        if getattr(receiver, "_RTCRtpReceiver__started", True) or not isinstance(
            getattr(receiver, name, None), queue.Queue
        ):
            return False
        setattr(receiver, name, InlineDecoder(self))
        self.inline = True
        return True

    def attach(self, track: Any, pc: RTCPeerConnection) -> None:
        """Take the browser's audio track from now on (once; a second audio track is ignored)."""
        if self._watch is not None or self.closed:
            return
        self._last_audio = self._loop.time()
        self._watch = asyncio.ensure_future(self._watchdog(pc))
        if not self.inline:
            self._reader = asyncio.ensure_future(self._read(track))

    def deliver(self, pcm: bytes) -> None:
        """One frame of the caller's audio, PCM16 mono 24 kHz, to the bridge."""
        if self.closed or not pcm:
            return
        self.stats.packets_received += 1
        self._last_audio = self._loop.time()
        if self._handler is not None:
            self._handler(pcm)
        else:
            self._early.append(pcm)

    def next_frame(self, deadline: float) -> bytes:
        """The 20 ms frame to send at `deadline`: queued agent audio, else silence."""
        self._deadline = deadline
        payload = self.outbound.pull()
        self.stats.packets_sent += 1
        if payload is None:
            self._silence_frames += 1
            return _SILENCE
        if self.on_played is not None:
            self.on_played(payload)
        return payload

    def mono_24k(self, frame: AudioFrame) -> bytes:
        """One decoded frame (s16, any layout, a supported rate) as mono PCM16 at 24 kHz (streaming soxr)."""
        channels = len(frame.layout.channels)
        if channels == 1 and not frame.format.is_planar:  # what the inline decoder gives: no copy to fold
            pcm = np.frombuffer(memoryview(frame.planes[0]), dtype="<i2", count=frame.samples)
            if frame.sample_rate == RATE:
                return bytes(pcm.tobytes())
            return self._resampled(frame.sample_rate, pcm)
        samples = frame.to_ndarray()
        if frame.format.is_planar:
            mono = samples.astype(np.int32).sum(axis=0) // max(1, samples.shape[0])
        elif channels > 1:
            mono = samples.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels
        else:
            mono = samples.reshape(-1)
        pcm = mono.astype(np.int16)
        if frame.sample_rate == RATE:
            return bytes(pcm.tobytes())
        return self._resampled(frame.sample_rate, pcm)

    def _resampled(self, rate: int, pcm: npt.NDArray[np.int16]) -> bytes:
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = self._resamplers[rate] = Resampler(rate, RATE, quality="QQ")
        return bytes(resampler.process(pcm).tobytes())

    async def _read(self, track: Any) -> None:
        """aiortc's own decoding (when `decode_inline` could not be used): its 48 kHz frames, resampled."""
        with contextlib.suppress(MediaStreamError):  # the track ended: the peer connection closed
            while not self.closed:
                frame = await track.recv()
                if not isinstance(frame, AudioFrame) or frame.format.name not in ("s16", "s16p"):
                    continue
                try:
                    self.deliver(self.mono_24k(frame))
                except ValueError:  # a rate the resampler does not take: not from aiortc's Opus decoder
                    log.warning("webrtc.unsupported_audio", rate=frame.sample_rate)

    async def _watchdog(self, pc: RTCPeerConnection) -> None:
        """No audio from the browser for WEBRTC_MEDIA_TIMEOUT ends the call; statistics now and then."""
        loop = self._loop
        next_stats = loop.time() + STATS_EVERY_S
        while not self.closed:
            await asyncio.sleep(min(1.0, self.media_timeout / 4))
            now = loop.time()
            if now - self._last_audio >= self.media_timeout:
                self._event(MediaTimeout(round(now - self._last_audio, 1)))
                return
            if now >= next_stats:
                next_stats = now + STATS_EVERY_S
                await self.refresh_stats(pc)

    async def refresh_stats(self, pc: RTCPeerConnection) -> None:
        """Loss and jitter of the browser's stream, from aiortc's receiver statistics."""
        try:
            report = await pc.getStats()
        except Exception:  # a closing connection: keep the last figures
            return
        for stats in report.values():
            if getattr(stats, "type", None) == "inbound-rtp" and getattr(stats, "kind", None) == "audio":
                self.stats.cumulative_lost = max(0, int(getattr(stats, "packetsLost", 0) or 0))
                # aiortc's jitter is the RFC 3550 estimate in RTP clock units (48 kHz for Opus).
                jitter = float(getattr(stats, "jitter", 0) or 0)
                self.stats.jitter_ms = jitter * 1000.0 / OPUS_CLOCK if math.isfinite(jitter) else 0.0

    def _event(self, event: MediaEvent) -> None:
        if not self._events.full():
            self._events.put_nowait(event)


class InlineDecoder:
    """Stands in for an aiortc receiver's decoder queue: each complete Opus frame is decoded where it is put
    (on the event loop) by libopus to mono, resampled to 24 kHz by the leg's soxr stream, and handed to the
    leg. The receiver's decoder thread still starts; it waits in `get` until the receiver stops, then ends as
    it would have."""

    def __init__(self, leg: BrowserLeg) -> None:
        self._leg = leg
        self._stopped = threading.Event()
        self._decoder = self._new_decoder()

    @staticmethod
    def _new_decoder() -> Any:
        decoder = av.CodecContext.create("libopus", "r")
        decoder.sample_rate = OPUS_CLOCK  # libopus in FFmpeg decodes at 48 kHz whatever is asked
        decoder.layout = "mono"
        decoder.format = "s16"
        return decoder

    def put(self, item: Any) -> None:
        if item is None:
            self._stopped.set()
            return
        codec, encoded = item
        data = bytes(getattr(encoded, "data", b""))
        if getattr(codec, "name", "").lower() != "opus" or not data:
            return  # an empty packet would be read as the end of the stream (a draining decoder)
        try:
            frames = self._decoder.decode(av.Packet(data))
        except EOFError:
            self._decoder = self._new_decoder()
            self._leg.decode_errors += 1
            return
        except (av.FFmpegError, ValueError):
            self._leg.decode_errors += 1  # one bad frame; the decoder state carries on
            return
        for frame in frames:
            try:
                self._leg.deliver(self._leg.mono_24k(frame))
            except ValueError:
                self._leg.decode_errors += 1

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        self._stopped.wait(timeout)
        return None
