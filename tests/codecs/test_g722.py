"""G.722 through PyAV: a tone and speech survive the round trip with a measured SNR, each stream keeps its
ADPCM state, and hostile payloads decode to something (or nothing) without raising."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import numpy.typing as npt
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from voicelive_sip.codecs.g722 import G722Decoder, G722Encoder, payload_bytes, pcm_bytes
from voicelive_sip.testing.phone import QUESTION_WAV, load_audio

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz: one RTP packet, 160 bytes of G.722
# The codec's delay (QMF analysis plus synthesis) in 16 kHz samples, searched for rather than assumed.
MAX_DELAY = 40
# Measured here (docs/codecs.md): a 1 kHz tone at -6 dBFS 47.1 dB, espeak-ng speech 27.3 dB at 22 samples of
# delay. The floors leave a few dB for another FFmpeg build; a broken codec (wrong rate, lost state, a
# mode-2 decoder) scores below 15.
TONE_SNR_FLOOR_DB = 40.0
SPEECH_SNR_FLOOR_DB = 22.0

Pcm = npt.NDArray[np.int16]


def round_trip(pcm: Pcm) -> Pcm:
    """`pcm` encoded and decoded 20 ms at a time, as one call's two RTP directions do it."""
    encoder, decoder = G722Encoder(), G722Decoder()
    out = []
    for start in range(0, len(pcm) - FRAME + 1, FRAME):
        payload = encoder.encode(pcm[start : start + FRAME].astype("<i2").tobytes())
        assert len(payload) == FRAME // 2
        out.append(decoder.decode(payload))
    return np.frombuffer(b"".join(out), dtype="<i2").astype(np.int16)


def snr_db(reference: Pcm, decoded: Pcm) -> tuple[float, int]:
    """Best SNR of `decoded` against `reference` over the delays 0..MAX_DELAY, and that delay."""
    best = (-np.inf, 0)
    signal = reference.astype(np.float64)
    out = decoded.astype(np.float64)
    for delay in range(MAX_DELAY):
        n = min(len(signal), len(out) - delay)
        a, b = signal[:n], out[delay : delay + n]
        snr = float(10 * np.log10(np.sum(a * a) / max(np.sum((a - b) ** 2), 1e-9)))
        best = max(best, (snr, delay))
    return best


def speech_16k() -> Pcm:
    """espeak-ng speech at 16 kHz (from its own 22 kHz output, so the upper band carries sibilants too); the
    bundled 8 kHz question resampled up where espeak-ng is missing."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pcm = load_audio(QUESTION_WAV)
        return np.asarray(soxr.resample(pcm, 8000, RATE, quality="HQ"), dtype=np.int16)
    text = "The quick brown fox jumps over the lazy dog. Please tell me the opening hours of the store."
    wav = subprocess.run([espeak, "--stdout", text], capture_output=True, check=True, timeout=30).stdout
    rate = int.from_bytes(wav[24:28], "little")
    samples = np.frombuffer(wav[44 : 44 + (len(wav) - 44) // 2 * 2], dtype="<i2")
    return np.asarray(soxr.resample(samples, rate, RATE, quality="HQ"), dtype=np.int16)


def test_a_1khz_tone_round_trips_above_40_db() -> None:
    t = np.arange(2 * RATE) / RATE
    tone = (np.sin(2 * np.pi * 1000 * t) * 16384).astype(np.int16)
    decoded = round_trip(tone)
    snr, delay = snr_db(tone, decoded)
    assert snr > TONE_SNR_FLOOR_DB, (snr, delay)
    # The spectrum's peak is still at 1 kHz: the audio is 16 kHz on both sides (not 8 kHz mistaken for 16).
    spectrum = np.abs(np.fft.rfft(decoded[RATE // 2 :].astype(np.float64)))
    assert abs(float(np.fft.rfftfreq(len(decoded) - RATE // 2, 1 / RATE)[np.argmax(spectrum)]) - 1000) < 5


def test_speech_round_trips_above_22_db_at_the_codec_delay() -> None:
    speech = speech_16k()
    assert len(speech) > RATE  # a real sentence, not an empty render
    snr, delay = snr_db(speech, round_trip(speech))
    assert snr > SPEECH_SNR_FLOOR_DB, (snr, delay)
    assert delay == 22, delay  # G.722's QMF pair: 22 samples at 16 kHz (1.4 ms)


def test_a_7khz_tone_survives_which_g711_could_not_carry() -> None:
    # The upper sub-band (4-8 kHz) is what G.722 adds: a 7 kHz tone comes through at nearly full level.
    t = np.arange(RATE) / RATE
    tone = (np.sin(2 * np.pi * 7000 * t) * 16384).astype(np.int16)
    decoded = round_trip(tone)[RATE // 4 :].astype(np.float64)
    level = float(np.sqrt(np.mean(decoded**2)) / (16384 / np.sqrt(2)))
    assert level > 0.8, level


def test_each_direction_keeps_its_own_adpcm_state() -> None:
    # The same frame encodes differently after different histories: ADPCM adapts, so a context shared by two
    # calls (or re-created per packet) would corrupt both.
    t = np.arange(FRAME) / RATE
    frame = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
    fresh, warmed = G722Encoder(), G722Encoder()
    for _ in range(5):
        warmed.encode(bytes(reversed(frame)))
    assert fresh.encode(frame) != warmed.encode(frame)


def test_sizes_follow_the_rfc_3551_quirk() -> None:
    assert payload_bytes(640) == 160  # 20 ms: 320 samples at 16 kHz in 160 bytes
    assert pcm_bytes(160) == 640
    assert len(G722Decoder().decode(bytes(160))) == 640
    assert G722Encoder().encode(b"") == b""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1500))
def test_any_payload_decodes_without_raising(payload: bytes) -> None:
    decoder = G722Decoder()
    pcm = decoder.decode(payload)
    assert len(pcm) == pcm_bytes(len(payload))  # every byte is two samples, odd sizes too
    assert len(decoder.decode(bytes(160))) == 640  # and the stream goes on after garbage
