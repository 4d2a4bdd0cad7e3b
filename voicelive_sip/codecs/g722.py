"""G.722 (64 kbit/s sub-band ADPCM, 16 kHz audio) on PyAV's codec: one stateful encoder or decoder per call
and direction, PCM16 little-endian mono on the audio side.

RFC 3551 §4.5.2: G.722's RTP clock (and SDP rtpmap) says 8000 although the audio is sampled at 16 kHz, so
a 20 ms packet is 320 samples, 160 bytes, and advances the RTP timestamp by 160. ADPCM carries state from
packet to packet: a call's stream must go through one codec context in order, never a shared one.
"""

from __future__ import annotations

from typing import Final, Literal

import av

__all__ = ["SAMPLE_RATE", "G722Decoder", "G722Encoder", "payload_bytes", "pcm_bytes"]

SAMPLE_RATE: Final = 16000
# Every payload byte holds one low-band and one high-band code: two 16 kHz samples (RFC 3551 §4.5.2).
SAMPLES_PER_BYTE: Final = 2


def pcm_bytes(payload_size: int) -> int:
    """PCM16 bytes that `payload_size` bytes of G.722 decode to."""
    return payload_size * SAMPLES_PER_BYTE * 2


def payload_bytes(pcm_size: int) -> int:
    """G.722 bytes that `pcm_size` bytes of PCM16 encode to."""
    return pcm_size // (SAMPLES_PER_BYTE * 2)


class G722Encoder:
    """PCM16 16 kHz to G.722, one call's outgoing stream; feed whole frames (20 ms = 640 bytes) in order."""

    def __init__(self) -> None:
        self._context = _context("w")
        self._frames: dict[int, av.AudioFrame] = {}  # reused per frame size: no allocation per packet

    def encode(self, pcm: bytes) -> bytes:
        """Encode `pcm` (an even number of bytes, a multiple of 4) to len(pcm) // 4 bytes of G.722."""
        samples = len(pcm) // 2
        if not samples:
            return b""
        frame = self._frames.get(samples)
        if frame is None:
            if len(self._frames) >= 4:  # bounded: a caller varying sizes gets fresh frames, not a leak
                self._frames.clear()
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
            frame.sample_rate = SAMPLE_RATE
            self._frames[samples] = frame
        frame.planes[0].update(pcm[: samples * 2])
        return b"".join(bytes(packet) for packet in self._context.encode(frame))


class G722Decoder:
    """G.722 to PCM16 16 kHz, one call's incoming stream; any payload size decodes (garbage is just noise)."""

    def __init__(self) -> None:
        self._context = _context("r")

    def decode(self, payload: bytes) -> bytes:
        """Decode one RTP payload; b"" for an empty one or one the codec refuses."""
        if not payload:
            return b""
        try:
            frames = self._context.decode(av.Packet(payload))
        except av.FFmpegError:
            return b""
        if len(frames) == 1:
            frame = frames[0]
            return bytes(frame.planes[0])[: frame.samples * 2]
        return b"".join(bytes(frame.planes[0])[: frame.samples * 2] for frame in frames)


def _context(mode: Literal["r", "w"]) -> av.AudioCodecContext:
    context = av.AudioCodecContext.create("g722", mode)
    context.sample_rate = SAMPLE_RATE
    context.layout = "mono"
    context.format = "s16"
    if mode == "w":
        context.open()
    return context
