"""WhipClient: a browser call made from Python (aiortc), for tests and the load harness.

It does what the `/phone` page does: an audio transceiver and an `events` data channel, an offer with its ICE
candidates gathered, `POST /whip`, the answer; then it plays PCM you give it (silence otherwise), records what
the agent sends with arrival times, and keeps every data-channel message. `hangup()` DELETEs the resource.

    async with WhipClient(f"{server.url}/whip") as client:
        await client.wait_for(lambda c: c.loud_frames > 10)
        client.play(pcm48k)
"""

from __future__ import annotations

import asyncio
import fractions
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from voicelive_sip.errors import VoiceLiveSipError
from voicelive_sip.webrtc.leg import FramePacer

__all__ = ["WhipClient", "WhipError", "WhipFrame"]

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
MAX_FRAMES = 3000  # one minute of received audio kept
LOUD_RMS = 300.0


class WhipError(VoiceLiveSipError):
    """The server refused the offer: its HTTP status and text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text.strip()}")
        self.status = status
        self.text = text


@dataclass(frozen=True, slots=True)
class WhipFrame:
    time: float  # loop time of arrival
    rms: float  # of the frame's mono samples
    pcm: bytes  # mono PCM16 48 kHz


class _Microphone(MediaStreamTrack):
    """What the caller says: queued PCM16 48 kHz mono, silence between, paced at 20 ms."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue = bytearray()
        self._pacer = FramePacer(FRAME_SAMPLES / RATE)
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pacer.tick()
        size = FRAME_SAMPLES * 2
        chunk = bytes(self.queue[:size]).ljust(size, b"\0")
        del self.queue[:size]
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return frame


class WhipClient:
    """One browser-style call to a gateway's `/whip` (see the module docstring)."""

    def __init__(
        self, url: str, *, token: str | None = None, offer_filter: Callable[[str], str] | None = None
    ) -> None:
        self.url = url
        self.token = token
        self.offer_filter = offer_filter  # rewrite the offer before it is sent (bad-input tests)
        self.location: str | None = None
        self.answer: str | None = None
        self.received: deque[WhipFrame] = deque(maxlen=MAX_FRAMES)
        self.loud_frames = 0
        self.messages: list[dict[str, Any]] = []
        self.pc: RTCPeerConnection | None = None
        self.microphone: _Microphone | None = None
        self._channel: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> WhipClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState if self.pc is not None else "new"

    async def connect(self) -> None:
        """Offer, POST, apply the answer (WhipError if refused); media flows once ICE and DTLS are up."""
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.microphone = _Microphone()
        pc.addTransceiver(self.microphone, direction="sendrecv")
        self._channel = pc.createDataChannel("events")
        self._channel.on("message", self._message)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio" and self._reader is None:
                self._reader = asyncio.ensure_future(self._read(track))

        pc.on("connectionstatechange", self._wake)
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        if self.offer_filter is not None:
            offer = self.offer_filter(offer)
        status, text, location = await self.post(offer)
        if status != 201:
            await self.close()
            raise WhipError(status, text)
        self.location, self.answer = location, text
        await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))

    async def post(self, offer: str, content_type: str = "application/sdp") -> tuple[int, str, str | None]:
        """POST an offer as it is; (status, body, Location)."""
        headers = {"Content-Type": content_type}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, data=offer, headers=headers) as response,
        ):
            location = response.headers.get("Location")
            return response.status, await response.text(), location

    def play(self, pcm: bytes) -> None:
        """Say something: PCM16 mono 48 kHz, played after what is already queued."""
        if self.microphone is not None:
            self.microphone.queue += pcm

    def send(self, message: dict[str, Any]) -> None:
        """A message on the `events` data channel (as the page sends keys and hang-up)."""
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps(message))

    async def wait_for(self, predicate: Callable[[WhipClient], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                changed = self._changed
                await changed.wait()

    async def hangup(self) -> int:
        """DELETE the call's resource; returns the HTTP status."""
        if self.location is None:
            return 0
        url = self.url.rsplit("/whip", 1)[0] + self.location
        headers = {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
        async with aiohttp.ClientSession() as http, http.delete(url, headers=headers) as response:
            return response.status

    async def close(self) -> None:
        """Close the peer connection (without DELETE: a browser that vanished)."""
        if self._reader is not None:
            self._reader.cancel()
        if self.microphone is not None:
            self.microphone.stop()
        if self.pc is not None:
            await self.pc.close()

    def _message(self, message: Any) -> None:
        if isinstance(message, str):
            try:
                self.messages.append(json.loads(message))
            except ValueError:
                return
            self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _read(self, track: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            mono = samples.reshape(-1, channels)[:, 0] if channels > 1 else samples
            rms = float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))) if len(mono) else 0.0
            self.received.append(WhipFrame(loop.time(), rms, mono.astype(np.int16).tobytes()))
            if rms > LOUD_RMS:
                self.loud_frames += 1
            self._wake()
