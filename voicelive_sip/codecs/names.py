"""The one vocabulary for a call's codec: SDP encoding name, payload type, audio format, Voice Live format.

A call's codec is chosen once from the SDP offer (`sdp.choose_codec`) and this enum is what every layer above
passes around; no other module spells "ulaw", "pcmu" or "g711_ulaw" itself. Free of numpy so the SIP core can
import it.

Audio crosses the media leg (`media.MediaLeg`) in the codec's *leg format*: G.711 as its own bytes (8 kHz,
one byte a sample); a wideband codec as little-endian PCM16 mono at `sample_rate` (the leg decodes and
encodes G.722 or Opus itself).
"""

from __future__ import annotations

import enum
from typing import Literal

Law = Literal["ulaw", "alaw"]


class Codec(enum.StrEnum):
    """A codec this stack carries end to end; the value is the SDP encoding name (RFC 3551)."""

    PCMU = "PCMU"
    PCMA = "PCMA"
    G722 = "G722"
    # WebRTC only (never offered on SIP): the leg hands PCM16 at 24 kHz across, resampling 48 kHz itself.
    OPUS = "opus"

    @property
    def payload_type(self) -> int:
        """The static RTP payload type (RFC 3551 §6); Opus has none (dynamic, 111 by WebRTC habit)."""
        return _PAYLOAD_TYPES[self]

    @property
    def law(self) -> Law | None:
        """The G.711 companding law (μ-law for PCMU, A-law for PCMA); None for a wideband codec (PCM16)."""
        return _LAWS.get(self)

    @property
    def is_wideband(self) -> bool:
        """True if audio crosses the leg as PCM16 (G.722, Opus) rather than G.711 bytes."""
        return self.law is None

    @property
    def voicelive_format(self) -> str:
        """Voice Live's name for the leg's audio format (`input_audio_format`; output is `wire_format`'s)."""
        law = self.law
        return "pcm16" if law is None else f"g711_{law}"

    @property
    def sample_rate(self) -> int:
        """The audio rate crossing the leg, in Hz (G.722 is 16 kHz although its SDP clock says 8000)."""
        return _SAMPLE_RATES[self]

    @property
    def clock_rate(self) -> int:
        """The RTP clock rate written in SDP: 8000 for G.722 too (RFC 3551 §4.5.2), 48000 for Opus."""
        return 48000 if self is Codec.OPUS else 8000

    @property
    def bytes_per_ms(self) -> int:
        """Leg-format bytes a millisecond: 8 for G.711, 32 for G.722 (PCM16 16 kHz), 48 for Opus (24 kHz)."""
        return self.sample_rate // 1000 * (1 if self.law is not None else 2)

    @property
    def on_sip(self) -> bool:
        """True if SIP offers and answers this codec (MEDIA_CODECS); Opus belongs to the WebRTC leg."""
        return self is not Codec.OPUS

    @classmethod
    def sip(cls) -> tuple[Codec, ...]:
        """The codecs SIP can negotiate, in declaration order."""
        return tuple(codec for codec in cls if codec.on_sip)

    @classmethod
    def parse(cls, name: str) -> Codec:
        """Any spelling in use (PCMU, pcmu, ulaw, g711_ulaw, PCMA, alaw, G722, g.722, opus) to the codec."""
        key = name.strip().lower()
        for codec in cls:
            if key in (codec.value.lower(), codec.law, *_ALIASES.get(codec, ())):
                return codec
        raise ValueError(f"unknown codec {name!r}: expected one of {', '.join(c.value for c in cls)}")


_PAYLOAD_TYPES = {Codec.PCMU: 0, Codec.PCMA: 8, Codec.G722: 9, Codec.OPUS: 111}
_LAWS: dict[Codec, Law] = {Codec.PCMU: "ulaw", Codec.PCMA: "alaw"}
_SAMPLE_RATES = {Codec.PCMU: 8000, Codec.PCMA: 8000, Codec.G722: 16000, Codec.OPUS: 24000}
_ALIASES = {
    Codec.PCMU: ("g711_ulaw",),
    Codec.PCMA: ("g711_alaw",),
    Codec.G722: ("g.722",),
}


__all__ = ["Codec", "Law"]
