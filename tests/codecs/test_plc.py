"""G.711 concealment: repeat-and-fade reaches silence, silence mode is silent."""

from __future__ import annotations

import numpy as np

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.plc import Concealer


def _tone() -> bytes:
    t = np.arange(160) / 8000
    return g711.ulaw_encode((np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16))


def test_fade_repeats_then_decays_to_silence() -> None:
    concealer = Concealer("ulaw", fade_frames=3)
    concealer.good(_tone())
    energies = []
    for _ in range(5):
        frame = concealer.conceal(160)
        assert len(frame) == 160
        energies.append(float(np.mean(g711.ulaw_decode(frame).astype(np.float64) ** 2)))
    assert energies[0] > energies[1] > energies[2] > 0
    assert energies[3] == energies[4] == 0.0


def test_good_frame_restarts_the_fade() -> None:
    concealer = Concealer("alaw", fade_frames=2)
    tone = g711.alaw_encode(g711.ulaw_decode(_tone()))
    concealer.good(tone)
    first = concealer.conceal(160)
    concealer.conceal(160)
    concealer.good(tone)
    assert concealer.conceal(160) == first


def test_silence_mode_and_no_history() -> None:
    assert Concealer("ulaw").conceal(160) == b"\xff" * 160
    concealer = Concealer("alaw", mode="silence")
    concealer.good(b"\x00" * 160)
    assert concealer.conceal(80) == b"\xd5" * 80
