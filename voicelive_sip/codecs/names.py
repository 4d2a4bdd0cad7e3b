"""The one vocabulary for a call's codec: SDP encoding name, payload type, G.711 law, Voice Live format.

A call's codec is chosen once from the SDP offer (`sdp.choose_codec`) and this enum is what every layer above
passes around; no other module spells "ulaw", "pcmu" or "g711_ulaw" itself. Free of numpy so the SIP core can
import it.
"""

from __future__ import annotations

import enum
from typing import Literal

Law = Literal["ulaw", "alaw"]


class Codec(enum.StrEnum):
    """A codec this stack carries end to end; the value is the SDP encoding name (RFC 3551)."""

    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def payload_type(self) -> int:
        """The static RTP payload type (RFC 3551 §6)."""
        return 0 if self is Codec.PCMU else 8

    @property
    def law(self) -> Law:
        """The G.711 companding law: μ-law for PCMU, A-law for PCMA."""
        return "ulaw" if self is Codec.PCMU else "alaw"

    @property
    def voicelive_format(self) -> str:
        """Voice Live's name for this audio format (`input_audio_format` / `output_audio_format`)."""
        return "g711_ulaw" if self is Codec.PCMU else "g711_alaw"

    @property
    def clock_rate(self) -> int:
        return 8000

    @property
    def bytes_per_ms(self) -> int:
        """G.711 carries one byte per sample at 8 kHz: 8 bytes per millisecond of audio."""
        return 8

    @classmethod
    def parse(cls, name: str) -> Codec:
        """Any spelling in use (PCMU, pcmu, ulaw, g711_ulaw, PCMA, alaw...) to the codec; else ValueError."""
        key = name.strip().lower()
        for codec in cls:
            if key in (codec.value.lower(), codec.law, codec.voicelive_format):
                return codec
        raise ValueError(f"unknown codec {name!r}: expected one of {', '.join(c.value for c in cls)}")


__all__ = ["Codec", "Law"]
