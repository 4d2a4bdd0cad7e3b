"""Codec throughput (run: pytest benchmarks/test_codecs_bench.py --benchmark-only); see `extra_info`."""

from __future__ import annotations

import numpy as np
import pytest

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.resample import Resampler

ONE_SECOND = 8000
RNG = np.random.default_rng(0)
PCM_1S = (RNG.standard_normal(ONE_SECOND) * 4000).astype(np.int16)
FRAME_PCM = PCM_1S[:160].copy()


@pytest.mark.parametrize("samples", [160, ONE_SECOND])
@pytest.mark.parametrize("direction", ["ulaw_encode", "alaw_encode", "ulaw_decode", "alaw_decode"])
def test_g711(benchmark, direction: str, samples: int) -> None:  # type: ignore[no-untyped-def]
    pcm = PCM_1S[:samples].copy()
    encoded = g711.ulaw_encode(pcm) if direction.startswith("ulaw") else g711.alaw_encode(pcm)
    function = getattr(g711, direction)
    argument = pcm if direction.endswith("encode") else encoded
    benchmark(function, argument)
    benchmark.extra_info["samples_per_second"] = samples / benchmark.stats.stats.mean


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 24000), (24000, 8000), (8000, 16000)])
def test_resample_20ms_chunks(benchmark, in_rate: int, out_rate: int) -> None:  # type: ignore[no-untyped-def]
    resampler = Resampler(in_rate, out_rate)
    chunk = np.resize(PCM_1S, in_rate // 50).astype(np.int16)
    benchmark(resampler.process, chunk)
    benchmark.extra_info["samples_per_second"] = len(chunk) / benchmark.stats.stats.mean


@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_g722_one_20ms_frame(benchmark, direction: str) -> None:  # type: ignore[no-untyped-def]
    from voicelive_sip.codecs.g722 import G722Decoder, G722Encoder

    pcm = np.resize(PCM_1S, 320).astype("<i2").tobytes()  # 20 ms at 16 kHz
    encoder = G722Encoder()
    if direction == "encode":
        benchmark(encoder.encode, pcm)
    else:
        benchmark(G722Decoder().decode, encoder.encode(pcm))
    benchmark.extra_info["samples_per_second"] = 320 / benchmark.stats.stats.mean
