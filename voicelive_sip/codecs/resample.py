"""Streaming int16 resampling on soxr, kept per call and direction so chunk edges leave no trace."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

__all__ = ["SUPPORTED_RATES", "Resampler"]

SUPPORTED_RATES: Final = frozenset({8000, 16000, 24000, 48000})


class Resampler:
    """One direction of one call: feed int16 chunks of any size with `process`, then `flush` at the end.

    The filter state lives across calls, so output of many small chunks equals the output of the whole signal
    (resampling each chunk on its own, as the reference gateway did, clicks at every chunk edge).
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        if in_rate not in SUPPORTED_RATES or out_rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported rate pair {in_rate} -> {out_rate}; use {sorted(SUPPORTED_RATES)}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._stream = self._new_stream()

    def process(self, pcm: npt.NDArray[np.int16] | bytes) -> npt.NDArray[np.int16]:
        """Resample one chunk (int16 array or little-endian PCM16 bytes); returns what is ready now."""
        samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
        if self.in_rate == self.out_rate:
            return samples.astype(np.int16, copy=True)
        out: npt.NDArray[np.int16] = self._stream.resample_chunk(samples, last=False)
        return out

    def flush(self) -> npt.NDArray[np.int16]:
        """Drain the filter's tail at the end of the stream; the resampler is reset afterwards."""
        if self.in_rate == self.out_rate:
            return np.zeros(0, dtype=np.int16)
        out: npt.NDArray[np.int16] = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self.reset()
        return out

    def reset(self) -> None:
        """Forget the filter state (barge-in: the next chunk starts a new utterance)."""
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality=self._quality)
