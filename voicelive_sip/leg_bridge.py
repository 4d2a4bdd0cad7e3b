"""LegBridge: two calls' media legs joined, each leg's received audio played out on the other.

Both legs are paced by the media clock, so a frame received on one goes out on the other's next 20 ms slot.
The same codec passes through byte for byte; μ-law and A-law are converted through linear PCM (G.711); legs
of different rates (G.722's 16 kHz, a browser's 24 kHz, G.711's 8 kHz) through a streaming soxr resampler kept
per direction.
"""

from __future__ import annotations

from collections.abc import Callable

from .codecs import g711
from .codecs.names import Codec
from .media import MediaLeg

__all__ = ["LegBridge"]

# Audio that waits longer than this for a leg's clock (a peer sending faster than real time, a burst after a
# network stall) is dropped: a live conversation must not drift behind.
MAX_QUEUED_MS = 200


def _converter(source: Codec, sink: Codec) -> Callable[[bytes], bytes]:
    if source is sink:
        return lambda payload: payload
    source_law, sink_law = source.law, sink.law
    if source_law is not None and sink_law is not None:
        return lambda payload: g711.encode(sink_law, g711.decode(source_law, payload))
    from .voicelive.audio import Transcoder  # numpy and soxr: only for a bridge across rates

    transcoder = Transcoder(source_law, source.sample_rate, sink_law, sink.sample_rate, quality="QQ")
    return transcoder.convert


class LegBridge:
    """Joins `a` and `b`: from now on each one's received frames are queued for playout on the other."""

    def __init__(self, a: MediaLeg, b: MediaLeg, *, max_queued_ms: int = MAX_QUEUED_MS) -> None:
        self.a, self.b = a, b
        self.max_queued_ms = max_queued_ms
        self.frames = [0, 0]  # frames forwarded a -> b, b -> a
        self.dropped_ms = 0  # audio dropped because a leg fell behind
        self.closed = False
        a.receive(self._forward(a, b, 0))
        b.receive(self._forward(b, a, 1))

    def _forward(self, source: MediaLeg, sink: MediaLeg, index: int) -> Callable[[bytes], None]:
        convert = _converter(source.codec, sink.codec)
        frames = self.frames

        def forward(payload: bytes) -> None:
            if self.closed:
                return
            if sink.queued_ms > self.max_queued_ms:
                self.dropped_ms += sink.queued_ms
                sink.clear()
            sink.enqueue(convert(payload))
            frames[index] += 1

        return forward

    def close(self) -> None:
        """Stop forwarding (the legs stay open: each belongs to its call)."""
        self.closed = True
