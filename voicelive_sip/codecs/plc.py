"""Packet loss concealment for G.711 or PCM16 frames: the last good one repeated with a fade, or silence."""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

from voicelive_sip.codecs import g711

__all__ = ["Concealer", "ConcealmentMode"]

ConcealmentMode = Literal["fade", "silence"]

# G.711 Appendix I fades a repeated pitch period to silence over 60 ms; a plain repeat fades the same way.
FADE_FRAMES: Final = 3


class Concealer:
    """Produces replacement payloads for lost frames, G.711 in `law` or PCM16 little-endian (`law` None, a
    wideband leg's decoded audio); feed every good frame to `good`."""

    def __init__(
        self, law: g711.Law | None, *, mode: ConcealmentMode = "fade", fade_frames: int = FADE_FRAMES
    ) -> None:
        self.law: g711.Law | None = law
        self.mode: ConcealmentMode = mode
        self._fade_frames = max(1, fade_frames)
        self._silence_code = 0 if law is None else g711.silence(law)
        self._last_good: bytes | None = None
        self._run = 0

    def good(self, payload: bytes) -> None:
        """Record a frame that arrived, the source for the next concealment."""
        self._last_good = payload
        self._run = 0

    def conceal(self, size: int) -> bytes:
        """Return a `size`-byte replacement for the next missing frame (consecutive calls fade further)."""
        self._run += 1
        last = self._last_good
        if self.mode == "silence" or last is None or self._run > self._fade_frames:
            return bytes([self._silence_code]) * size
        source = (last * (size // len(last) + 1))[:size] if len(last) != size else last
        law = self.law
        samples = g711.decode(law, source) if law is not None else np.frombuffer(source, "<i2", size // 2)
        # Linear gain from 1 - (run-1)/N to 1 - run/N across this frame: no step at the frame edges.
        start = 1.0 - (self._run - 1) / self._fade_frames
        stop = 1.0 - self._run / self._fade_frames
        gain = np.linspace(start, stop, len(samples), endpoint=False)
        faded = (samples.astype(np.float32) * gain).astype(np.int16)
        if law is None:
            return faded.astype("<i2", copy=False).tobytes().ljust(size, b"\0")
        return g711.encode(law, faded)
