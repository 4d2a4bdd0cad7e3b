"""The call's G.711 and the audio format on the Voice Live wire, converted per call and direction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec
from voicelive_sip.codecs.resample import Resampler
from voicelive_sip.config import AudioFormat

_CALL_RATE = Codec.PCMU.clock_rate  # every codec a call carries is 8 kHz G.711


@dataclass(frozen=True, slots=True)
class WireFormat:
    """What `session.update` announces and how many input bytes make one millisecond."""

    input_audio_format: str
    output_audio_format: str
    sample_rate: int
    bytes_per_ms: int

    @property
    def is_g711(self) -> bool:
        return self.sample_rate == _CALL_RATE


def wire_format(audio_format: AudioFormat, codec: Codec) -> WireFormat:
    """Resolve the configured format against the codec negotiated on the call."""
    if audio_format == "g711":
        return WireFormat(codec.voicelive_format, codec.voicelive_format, _CALL_RATE, codec.bytes_per_ms)
    if audio_format.startswith("g711_"):
        forced = Codec.parse(audio_format)
        return WireFormat(forced.voicelive_format, forced.voicelive_format, _CALL_RATE, forced.bytes_per_ms)
    rate = 16000 if audio_format == "pcm16_16000" else 24000
    # Output "pcm16" is 24 kHz on the wire; 16 kHz has its own name (PROTOCOL.md, session options).
    return WireFormat("pcm16", "pcm16" if rate == 24000 else "pcm16_16000hz", rate, rate * 2 // 1000)


class AudioConverter(Protocol):
    """One direction of one call; keeps filter state between chunks."""

    def convert(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def reset(self) -> None: ...


class Passthrough:
    """The negotiated codec is what the service speaks: nothing to do."""

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


class G711ToPcm16:
    """Caller G.711 at 8 kHz to little-endian PCM16 at the wire rate."""

    def __init__(self, law: g711.Law, rate: int) -> None:
        self._law = law
        # Upstream favours latency: the quick filter emits each chunk at once (others burst every 40-80 ms).
        # Its weaker image rejection above 4 kHz carries no speech the model could mistake.
        self._resampler = Resampler(_CALL_RATE, rate, quality="QQ")

    def convert(self, data: bytes) -> bytes:
        return self._resampler.process(g711.decode(self._law, data)).astype("<i2", copy=False).tobytes()

    def flush(self) -> bytes:
        return self._resampler.flush().astype("<i2", copy=False).tobytes()

    def reset(self) -> None:
        self._resampler.reset()


class Pcm16ToG711:
    """Model PCM16 at the wire rate to G.711 at 8 kHz for the caller."""

    def __init__(self, rate: int, law: g711.Law) -> None:
        self._law = law
        # Downstream is buffered by the playout clock anyway, so it can afford a real anti-alias filter.
        self._resampler = Resampler(rate, _CALL_RATE, quality="LQ")

    def convert(self, data: bytes) -> bytes:
        samples = np.frombuffer(data, dtype="<i2", count=len(data) // 2)
        return g711.encode(self._law, self._resampler.process(samples))

    def flush(self) -> bytes:
        return g711.encode(self._law, self._resampler.flush())

    def reset(self) -> None:
        self._resampler.reset()


def converters(wire: WireFormat, codec: Codec) -> tuple[AudioConverter, AudioConverter]:
    """(caller -> service, service -> caller) converters for one call."""
    law = codec.law
    if not wire.is_g711:
        return G711ToPcm16(law, wire.sample_rate), Pcm16ToG711(wire.sample_rate, law)
    wire_law = Codec.parse(wire.input_audio_format).law
    if wire_law == law:
        return Passthrough(), Passthrough()
    return LawTranscoder(law, wire_law), LawTranscoder(wire_law, law)
