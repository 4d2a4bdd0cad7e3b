"""Chunked streaming resampling equals whole-signal resampling (the reference gateway got this wrong)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from voicelive_sip.codecs.resample import Resampler


def _sine(rate: int, seconds: float = 1.0, freq: float = 1000.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 16000).astype(np.int16)


def _error_db(reference: npt.NDArray[np.int16], actual: npt.NDArray[np.int16]) -> float:
    n = min(len(reference), len(actual))
    ref = reference[:n].astype(np.float64)
    err = ref - actual[:n].astype(np.float64)
    # A length mismatch counts as error too: the missing samples are compared with silence.
    missing = reference[n:].astype(np.float64)
    energy_err = float(np.sum(err**2) + np.sum(missing**2))
    return 10 * np.log10(energy_err / float(np.sum(ref**2)) + 1e-30)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(8000, 16000), (8000, 24000), (24000, 8000), (16000, 8000)]
)
def test_chunked_equals_whole_signal(in_rate: int, out_rate: int) -> None:
    signal = _sine(in_rate)
    whole = soxr.resample(signal, in_rate, out_rate, quality="HQ")
    resampler = Resampler(in_rate, out_rate)
    chunk = in_rate // 50  # 20 ms
    pieces = [resampler.process(signal[i : i + chunk]) for i in range(0, len(signal), chunk)]
    pieces.append(resampler.flush())
    chunked = np.concatenate(pieces)
    assert chunked.dtype == np.int16
    assert len(chunked) == len(whole)
    assert _error_db(whole, chunked) < -60


def test_independent_chunks_would_fail_the_same_bar() -> None:
    # The mistake this module exists to avoid: a fresh resample per chunk is far off the whole-signal result.
    signal = _sine(8000)
    whole = soxr.resample(signal, 8000, 24000, quality="HQ")
    naive = np.concatenate([soxr.resample(signal[i : i + 160], 8000, 24000) for i in range(0, 8000, 160)])
    assert _error_db(whole, naive) > -60


def test_accepts_pcm16_bytes_and_same_rate_passthrough() -> None:
    signal = _sine(8000, 0.1)
    a = Resampler(8000, 16000)
    b = Resampler(8000, 16000)
    np.testing.assert_array_equal(a.process(signal.tobytes()), b.process(signal))
    same = Resampler(16000, 16000)
    np.testing.assert_array_equal(same.process(signal), signal)
    assert len(same.flush()) == 0


def test_reset_starts_a_fresh_stream() -> None:
    signal = _sine(8000, 0.2)
    used = Resampler(8000, 24000)
    used.process(_sine(8000, 0.5, 300.0))
    used.reset()
    fresh = Resampler(8000, 24000)
    np.testing.assert_array_equal(used.process(signal), fresh.process(signal))


def test_rejects_unsupported_rates() -> None:
    with pytest.raises(ValueError):
        Resampler(44100, 8000)
