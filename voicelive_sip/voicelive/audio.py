"""The call's leg audio and the audio format on the Voice Live wire, converted per call and direction.

The leg format is G.711 at 8 kHz or PCM16 at the wideband codec's rate (G.722: 16 kHz); by default
(`VOICE_LIVE_AUDIO_FORMAT=g711`, "the call's own") the service speaks it, so nothing is converted. A forced
format decodes, resamples (streaming soxr) and encodes as needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec, Law
from voicelive_sip.codecs.resample import Resampler
from voicelive_sip.config import AudioFormat

_G711_RATE = 8000
# Output "pcm16" is 24 kHz on the wire; the other rates have their own names (PROTOCOL.md, session options).
_PCM16_OUTPUT = {8000: "pcm16_8000hz", 16000: "pcm16_16000hz", 24000: "pcm16"}


@dataclass(frozen=True, slots=True)
class WireFormat:
    """What `session.update` announces and how many input bytes make one millisecond."""

    input_audio_format: str
    output_audio_format: str
    sample_rate: int
    bytes_per_ms: int

    @property
    def is_g711(self) -> bool:
        return self.input_audio_format.startswith("g711")

    @property
    def law(self) -> Law | None:
        """The G.711 law on the wire, None for PCM16."""
        return Codec.parse(self.input_audio_format).law if self.is_g711 else None


def wire_format(audio_format: AudioFormat, codec: Codec) -> WireFormat:
    """Resolve the configured format against the codec negotiated on the call."""
    if audio_format == "g711" and codec.law is None:
        return _pcm16(codec.sample_rate)  # a wideband leg: its own PCM16, untouched
    if audio_format == "g711":
        return WireFormat(codec.voicelive_format, codec.voicelive_format, _G711_RATE, codec.bytes_per_ms)
    if audio_format.startswith("g711_"):
        forced = Codec.parse(audio_format)
        return WireFormat(forced.voicelive_format, forced.voicelive_format, _G711_RATE, forced.bytes_per_ms)
    return _pcm16(16000 if audio_format == "pcm16_16000" else 24000)


def _pcm16(rate: int) -> WireFormat:
    return WireFormat("pcm16", _PCM16_OUTPUT[rate], rate, rate * 2 // 1000)


class AudioConverter(Protocol):
    """One direction of one call; keeps filter state between chunks."""

    def convert(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def reset(self) -> None: ...


class Passthrough:
    """The leg's format is what the service speaks: nothing to do."""

    def convert(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""

    def reset(self) -> None:
        return None


class LawTranscoder:
    """μ-law <-> A-law, for a forced wire law that differs from the call's."""

    def __init__(self, source: g711.Law, target: g711.Law) -> None:
        self._source, self._target = source, target

    def convert(self, data: bytes) -> bytes:
        return g711.encode(self._target, g711.decode(self._source, data))

    def flush(self) -> bytes:
        return b""

    def reset(self) -> None:
        return None


class Transcoder:
    """G.711 or PCM16 at one rate to G.711 or PCM16 at another, through a streaming resampler."""

    def __init__(
        self, source: Law | None, in_rate: int, target: Law | None, out_rate: int, *, quality: str
    ) -> None:
        self._source, self._target = source, target
        self._resampler = Resampler(in_rate, out_rate, quality=quality)

    def convert(self, data: bytes) -> bytes:
        source = self._source
        if source is not None:
            samples = g711.decode(source, data)
        else:
            samples = np.frombuffer(data, dtype="<i2", count=len(data) // 2)
        return self._encode(self._resampler.process(samples))

    def flush(self) -> bytes:
        return self._encode(self._resampler.flush())

    def reset(self) -> None:
        self._resampler.reset()

    def _encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        if self._target is not None:
            return g711.encode(self._target, samples)
        return samples.astype("<i2", copy=False).tobytes()


def converters(wire: WireFormat, codec: Codec) -> tuple[AudioConverter, AudioConverter]:
    """(caller -> service, service -> caller) converters for one call."""
    law, wire_law = codec.law, wire.law
    if codec.sample_rate == wire.sample_rate and law == wire_law:
        return Passthrough(), Passthrough()
    if law is not None and wire_law is not None:
        return LawTranscoder(law, wire_law), LawTranscoder(wire_law, law)
    rate = codec.sample_rate
    # Upstream favours latency: the quick filter emits each chunk at once (others burst every 40-80 ms); its
    # weaker image rejection carries no speech the model could mistake. Downstream is buffered by the
    # playout clock anyway, so it can afford a real anti-alias filter.
    return (
        Transcoder(law, rate, wire_law, wire.sample_rate, quality="QQ"),
        Transcoder(wire_law, wire.sample_rate, law, rate, quality="LQ"),
    )
