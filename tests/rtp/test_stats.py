"""RFC 3550 appendix A reception statistics: extended sequence numbers, loss, jitter."""

from __future__ import annotations

import random

import pytest

from voicelive_sip.rtp.stats import ReceptionStatistics


def test_wraparound_extends_sequence_numbers() -> None:
    stats = ReceptionStatistics(8000)
    stats.reset(1)
    out = [stats.update(seq & 0xFFFF, seq * 160, seq * 0.02) for seq in range(65530, 65545)]
    assert out == list(range(65530, 65545))
    assert stats.cumulative_lost == 0 and stats.expected == 15


def test_loss_is_expected_minus_received_and_reordering_is_not_loss() -> None:
    stats = ReceptionStatistics(8000)
    stats.reset(1)
    for seq in [0, 1, 3, 2, 4, 6, 7, 9]:  # 5 and 8 lost, 2/3 reordered
        stats.update(seq, seq * 160, seq * 0.02)
    assert stats.expected == 10 and stats.cumulative_lost == 2
    block = stats.report_block()
    assert block is not None
    assert block.packets_lost == 2 and block.fraction_lost == (2 << 8) // 10
    assert block.highest_sequence == 9
    for seq in range(10, 20):
        stats.update(seq, seq * 160, seq * 0.02)
    again = stats.report_block()
    assert again is not None and again.fraction_lost == 0 and again.packets_lost == 2


def test_silence_suppression_is_not_loss() -> None:
    stats = ReceptionStatistics(8000)
    stats.reset(1)
    for seq in range(10):
        # A 5 s pause after packet 4: consecutive sequence numbers, timestamps and arrival jump together.
        pause = 5.0 if seq >= 5 else 0.0
        stats.update(seq, seq * 160 + int(pause * 8000), seq * 0.02 + pause)
    assert stats.cumulative_lost == 0
    assert stats.jitter < 1.0


def test_jitter_follows_rfc3550_a8() -> None:
    rng = random.Random(7)
    stats = ReceptionStatistics(8000)
    stats.reset(1)
    arrivals = [seq * 0.02 + rng.uniform(0, 0.03) for seq in range(2000)]
    expected_j = 0.0
    for seq, arrival in enumerate(arrivals):
        stats.update(seq, seq * 160, arrival)
        if seq:
            d = (arrival - arrivals[seq - 1]) * 8000 - 160
            expected_j += (abs(d) - expected_j) / 16
    assert stats.jitter == pytest.approx(expected_j)
    # Uniform 0-30 ms delay: mean |D| is 10 ms (80 timestamp units).
    assert 60 < stats.jitter < 100
    assert stats.snapshot().jitter_ms == pytest.approx(stats.jitter / 8)


def test_timestamp_jump_does_not_poison_jitter() -> None:
    stats = ReceptionStatistics(8000)
    stats.reset(1)
    for seq in range(50):
        jump = 10_000_000 if seq >= 25 else 0
        stats.update(seq, seq * 160 + jump, seq * 0.02)
    assert stats.jitter < 1.0


def test_huge_jump_needs_confirmation_then_restarts() -> None:
    stats = ReceptionStatistics(8000)
    stats.reset(1)
    for seq in range(5):
        stats.update(seq, 0, 0.0)
    assert stats.update(40000, 0, 0.1) is None  # one stray packet is ignored (A.1)
    assert stats.update(6, 0, 0.12) == 6
    assert stats.update(40000, 0, 0.14) is None
    restarted = stats.update(40001, 0, 0.16)
    assert restarted is not None and restarted > 6
    assert stats.update(40002, 0, 0.18) == restarted + 1
    assert stats.cumulative_lost == 0
