"""Flood control (sip/flood.py) with a fake clock: per-source budgets and bans, a global cap, sampled logs."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import Request, Timers, TransactionLayer
from voicelive_sip.sip.flood import Flood, FloodGuard, LogSampler, RateLimit
from voicelive_sip.sip.transaction import TransactionLimitReached


def test_a_source_over_its_budget_is_banned_and_the_ban_doubles_when_it_comes_back() -> None:
    guard = FloodGuard(packets_per_second=10, ban=5.0, max_ban=60.0)
    assert [guard.packet("198.51.100.7", 0.0) for _ in range(10)] == [Flood.PASS] * 10
    assert guard.packet("198.51.100.7", 0.0) is Flood.NEW_BAN
    assert guard.packet("203.0.113.1", 0.0) is Flood.PASS  # other sources are not affected
    assert guard.packet("198.51.100.7", 4.999) is Flood.BANNED
    assert guard.banned_for("198.51.100.7", 4.0) == pytest.approx(1.0)
    assert guard.packet("198.51.100.7", 5.0) is Flood.PASS  # the ban is over, with a fresh budget
    for _ in range(9):
        guard.packet("198.51.100.7", 5.0)
    assert guard.packet("198.51.100.7", 5.0) is Flood.NEW_BAN  # back for more at once: twice as long
    assert guard.packet("198.51.100.7", 14.999) is Flood.BANNED
    assert guard.packet("198.51.100.7", 15.0) is Flood.PASS
    assert (guard.bans, guard.dropped) == (2, 4)


def test_a_steady_source_within_its_rate_is_never_banned() -> None:
    guard = FloodGuard(packets_per_second=100, ban=5.0)
    assert all(guard.packet("192.0.2.1", n / 100) is Flood.PASS for n in range(10_000))


def test_bans_stop_growing_at_the_maximum_and_restart_after_a_quiet_spell() -> None:
    guard = FloodGuard(packets_per_second=1, ban=10.0, max_ban=25.0)
    now = 0.0
    lengths = []
    for _ in range(4):
        guard.packet("192.0.2.9", now)
        assert guard.packet("192.0.2.9", now) is Flood.NEW_BAN
        lengths.append(guard.banned_for("192.0.2.9", now))
        now += lengths[-1]
    assert lengths == [10.0, 20.0, 25.0, 25.0]
    now += 25.0  # quiet as long as the longest ban
    guard.packet("192.0.2.9", now)
    assert guard.packet("192.0.2.9", now) is Flood.NEW_BAN
    assert guard.banned_for("192.0.2.9", now) == 10.0


def test_the_source_table_stays_bounded() -> None:
    guard = FloodGuard(packets_per_second=10, max_sources=100)
    for n in range(1000):
        guard.packet(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(guard) == 100


def test_a_global_rate_limit_refills_with_time() -> None:
    limit = RateLimit(per_second=3)
    assert [limit.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.take(0.2) is False and limit.take(0.34) is True
    assert limit.refused == 2


def test_log_sampling_lets_a_few_lines_a_second_through_and_counts_the_rest() -> None:
    sampler = LogSampler(per_second=2)
    assert [sampler.allow(0.0), sampler.allow(0.1), sampler.allow(0.2), sampler.allow(0.9)] == [
        True, True, False, False,
    ]  # fmt: skip
    assert sampler.allow(1.0) is True and sampler.take_suppressed() == 2 and sampler.total == 5


def _request(method: str, n: int) -> Request:
    return Request(
        method,
        "sip:bot@192.0.2.1",
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK{method}{n}"),
            ("From", "<sip:a@192.0.2.7>;tag=f"),
            ("To", "<sip:bot@192.0.2.1>"),
            ("Call-ID", f"c{method}{n}"),
            ("CSeq", f"1 {method}"),
        ],
    )


def test_the_last_tenth_of_the_transaction_table_is_kept_for_invites() -> None:
    layer = TransactionLayer(Timers(), max_transactions=100)
    for n in range(90):
        layer.receive(_request("OPTIONS", n), ("192.0.2.7", 5060), "UDP", 0.0)
    with pytest.raises(TransactionLimitReached):
        layer.receive(_request("BYE", 1), ("192.0.2.7", 5060), "UDP", 0.0)
    for n in range(10):  # a real call still finds room
        layer.receive(_request("INVITE", n), ("192.0.2.7", 5060), "UDP", 0.0)
    assert len(layer) == 100
    with pytest.raises(TransactionLimitReached):
        layer.receive(_request("INVITE", 99), ("192.0.2.7", 5060), "UDP", 0.0)
