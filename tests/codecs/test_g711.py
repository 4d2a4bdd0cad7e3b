"""G.711 is bit-exact with CPython 3.11 audioop (reference tables stored as test data)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicelive_sip.codecs import g711

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "g711"
ALL_LINEAR = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


@pytest.mark.parametrize(("name", "encode"), [("ulaw", g711.ulaw_encode), ("alaw", g711.alaw_encode)])
def test_encode_matches_reference_on_all_65536_inputs(name: str, encode: object) -> None:
    reference = (DATA / f"{name}_encode.bin").read_bytes()
    assert len(reference) == 65536
    assert callable(encode)
    assert encode(ALL_LINEAR) == reference
    assert encode(ALL_LINEAR.astype("<i2").tobytes()) == reference


@pytest.mark.parametrize(("name", "decode"), [("ulaw", g711.ulaw_decode), ("alaw", g711.alaw_decode)])
def test_decode_matches_reference_on_all_256_codes(name: str, decode: object) -> None:
    reference = np.frombuffer((DATA / f"{name}_decode.bin").read_bytes(), dtype="<i2")
    assert callable(decode)
    decoded = decode(ALL_CODES)
    assert decoded.dtype == np.int16
    np.testing.assert_array_equal(decoded, reference)


def test_matches_live_audioop_when_available() -> None:
    audioop = pytest.importorskip("audioop")
    pcm = ALL_LINEAR.astype("<i2").tobytes()
    assert g711.ulaw_encode(pcm) == audioop.lin2ulaw(pcm, 2)
    assert g711.alaw_encode(pcm) == audioop.lin2alaw(pcm, 2)
    assert g711.ulaw_decode(ALL_CODES).astype("<i2").tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_decode(ALL_CODES).astype("<i2").tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_silence_codes_decode_to_zero() -> None:
    assert g711.ulaw_decode(bytes([g711.ULAW_SILENCE]))[0] == 0
    assert g711.alaw_decode(bytes([g711.ALAW_SILENCE]))[0] in (8, -8)  # A-law has no exact zero
    assert g711.ulaw_encode(np.zeros(1, np.int16)) == bytes([g711.ULAW_SILENCE])
    assert g711.alaw_encode(np.zeros(1, np.int16)) == bytes([g711.ALAW_SILENCE])


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_then_encode_is_identity_on_codes(law: g711.Law) -> None:
    # Every code's decoded value re-encodes to the same code, except μ-law's negative zero (0x7F -> 0xFF).
    again = g711.encode(law, g711.decode(law, ALL_CODES))
    expected = bytearray(ALL_CODES)
    if law == "ulaw":
        expected[0x7F] = 0xFF
    assert again == bytes(expected)


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
def test_quantisation_error_is_bounded_by_the_segment_step(samples: list[int]) -> None:
    pcm = np.array(samples, dtype=np.int16)
    for law in ("ulaw", "alaw"):
        back = g711.decode(law, g711.encode(law, pcm)).astype(np.int32)
        error = np.abs(back - pcm.astype(np.int32))
        # The largest step of either law is 1024 (top segment); rounding or clipping never exceeds it.
        assert int(error.max()) <= 1024


def test_rejects_wrong_dtype() -> None:
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(4, dtype=np.int32))  # type: ignore[arg-type]
