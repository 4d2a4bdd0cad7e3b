"""G.711 μ-law and A-law (ITU-T G.711) by lookup table: 64 Ki-entry encode tables, 256-entry decode tables.

The tables are computed once at import with the segment arithmetic of the classic CCITT/Sun reference code
(the one CPython's `audioop` uses), so results are bit-exact with `audioop` on every input.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from voicelive_sip.codecs.names import Law

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "Law",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "silence",
    "ulaw_decode",
    "ulaw_encode",
]

# The code for a zero sample: what an idle channel carries (G.711 Table 1/2: +0 is 0xFF μ-law, 0xD5 A-law).
ULAW_SILENCE: Final = 0xFF
ALAW_SILENCE: Final = 0xD5

# Segment end points of the 14-bit μ-law and 13-bit A-law magnitude (G.711 Tables 2a/1a).
_ULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS: Final = 0x84 >> 2  # 33: the μ-law bias in 14-bit units
_ULAW_CLIP: Final = 8159  # largest 14-bit magnitude μ-law represents


_Array = TypeVar("_Array", bound="np.ndarray[Any, Any]")


def _readonly(array: _Array) -> _Array:
    array.flags.writeable = False
    return array


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # Index i is the int16 sample whose two's-complement bit pattern is i (see _as_index).
    linear = np.arange(65536, dtype=np.int32)
    linear = np.where(linear >= 32768, linear - 65536, linear) >> 2  # 16-bit -> 14-bit
    mask = np.where(linear < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(linear), _ULAW_CLIP) + _ULAW_BIAS
    segment = np.searchsorted(_ULAW_SEG_END, magnitude, side="left").astype(np.int32)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    clipped = np.where(segment >= 8, 0x7F, code)
    return _readonly(np.bitwise_xor(clipped, mask).astype(np.uint8))


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    linear = np.arange(65536, dtype=np.int32)
    linear = np.where(linear >= 32768, linear - 65536, linear) >> 3  # 16-bit -> 13-bit
    mask = np.where(linear >= 0, 0xD5, 0x55)
    # A-law is sign-magnitude with no negative zero: -1 maps to magnitude 0 (G.711 Table 1a).
    magnitude = np.where(linear >= 0, linear, -linear - 1)
    segment = np.searchsorted(_ALAW_SEG_END, magnitude, side="left").astype(np.int32)
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    clipped = np.where(segment >= 8, 0x7F, code)
    return _readonly(np.bitwise_xor(clipped, mask).astype(np.uint8))


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((inverted & 0x0F) << 3) + 0x84) << ((inverted & 0x70) >> 4)
    linear = np.where(inverted & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return _readonly(linear.astype(np.int16))


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    toggled = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (toggled & 0x70) >> 4
    mantissa = (toggled & 0x0F) << 4
    magnitude = np.where(segment == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(segment - 1, 0))
    linear = np.where(toggled & 0x80, magnitude, -magnitude)
    return _readonly(linear.astype(np.int16))


_ULAW_ENCODE: Final = _build_ulaw_encode()
_ALAW_ENCODE: Final = _build_alaw_encode()
_ULAW_DECODE: Final = _build_ulaw_decode()
_ALAW_DECODE: Final = _build_alaw_decode()


def _as_index(pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview) -> npt.NDArray[np.uint16]:
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise TypeError(f"expected int16 samples, got {pcm.dtype}")
        return pcm.view(np.uint16)
    # Raw PCM16 on the wire and in Voice Live is little-endian.
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_encode(pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview) -> bytes:
    """Encode int16 samples (an array, or little-endian PCM16 bytes) to μ-law bytes."""
    return _ULAW_ENCODE[_as_index(pcm)].tobytes()


def alaw_encode(pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview) -> bytes:
    """Encode int16 samples (an array, or little-endian PCM16 bytes) to A-law bytes."""
    return _ALAW_ENCODE[_as_index(pcm)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode μ-law bytes to int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode A-law bytes to int16 samples."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def encode(law: Law, pcm: npt.NDArray[np.int16] | bytes | bytearray | memoryview) -> bytes:
    """Encode with the named law (`"ulaw"` for PCMU, `"alaw"` for PCMA)."""
    return ulaw_encode(pcm) if law == "ulaw" else alaw_encode(pcm)


def decode(law: Law, data: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode with the named law (`"ulaw"` for PCMU, `"alaw"` for PCMA)."""
    return ulaw_decode(data) if law == "ulaw" else alaw_decode(data)


def silence(law: Law) -> int:
    """The code byte of a zero sample for `law`."""
    return ULAW_SILENCE if law == "ulaw" else ALAW_SILENCE
