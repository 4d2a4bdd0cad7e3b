"""491 Request Pending back-off (RFC 3261 §14.1): exact bounds, 10 ms steps, one retry, with a fake clock."""

from __future__ import annotations

import random

import pytest

from voicelive_sip.sip.glare import ReofferAttempts, glare_backoff


class BoundRng(random.Random):
    """`randint` always returns its lower (or upper) bound, and records what it was asked for."""

    def __init__(self, *, upper: bool) -> None:
        super().__init__(0)
        self.upper = upper
        self.calls: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.calls.append((a, b))
        return b if self.upper else a


@pytest.mark.parametrize(
    ("owns_call_id", "upper", "expected", "bounds"),
    [
        (True, False, 2.1, (210, 400)),
        (True, True, 4.0, (210, 400)),
        (False, False, 0.0, (0, 200)),
        (False, True, 2.0, (0, 200)),
    ],
)
def test_backoff_exact_bounds(
    owns_call_id: bool, upper: bool, expected: float, bounds: tuple[int, int]
) -> None:
    rng = BoundRng(upper=upper)
    assert glare_backoff(rng, owns_call_id=owns_call_id) == expected
    assert rng.calls == [bounds]  # one draw, in units of 10 ms


@pytest.mark.parametrize(("owns_call_id", "low", "high"), [(True, 210, 400), (False, 0, 200)])
def test_backoff_in_range_and_in_10_ms_steps(owns_call_id: bool, low: int, high: int) -> None:
    rng = random.Random(4028)
    steps = set()
    for _ in range(5000):
        delay = glare_backoff(rng, owns_call_id=owns_call_id)
        step = round(delay * 100)
        assert delay == step / 100  # a whole number of 10 ms units, nothing finer
        assert low <= step <= high
        steps.add(step)
    # Both ends are reachable and the draw covers the range, not a few points of it.
    assert min(steps) == low
    assert max(steps) == high
    assert len(steps) == high - low + 1


def test_backoff_is_reproducible_from_the_seed() -> None:
    first = [glare_backoff(random.Random(7), owns_call_id=True) for _ in range(3)]
    rng = random.Random(7)
    expected = rng.randint(210, 400) / 100
    assert first == [expected] * 3


def test_owner_always_waits_longer_than_the_other_side() -> None:
    # The point of §14.1: the two sides do not retry at the same moment.
    rng = random.Random(1)
    for _ in range(1000):
        assert glare_backoff(rng, owns_call_id=True) > glare_backoff(rng, owns_call_id=False)


def test_first_491_retries_at_now_plus_backoff_then_gives_up() -> None:
    attempts = ReofferAttempts(owns_call_id=True, rng=BoundRng(upper=False))
    attempts.begin()
    assert attempts.retry_at(491, 100.0) == 102.1
    attempts.begin()
    assert attempts.attempts == 2
    assert attempts.retry_at(491, 102.5) is None


def test_retry_at_not_owner_upper_bound() -> None:
    attempts = ReofferAttempts(owns_call_id=False, rng=BoundRng(upper=True))
    attempts.begin()
    assert attempts.retry_at(491, 10.0) == 12.0


def test_retry_at_uses_the_seeded_rng() -> None:
    attempts = ReofferAttempts(owns_call_id=False, rng=random.Random(99))
    attempts.begin()
    expected = 50.0 + random.Random(99).randint(0, 200) / 100
    assert attempts.retry_at(491, 50.0) == expected


@pytest.mark.parametrize("status", [200, 202, 408, 481, 486, 488, 500, 503, 603])
def test_other_statuses_never_retry(status: int) -> None:
    rng = BoundRng(upper=False)
    attempts = ReofferAttempts(owns_call_id=True, rng=rng)
    attempts.begin()
    assert attempts.retry_at(status, 0.0) is None
    assert rng.calls == []  # no draw wasted


def test_max_attempts_bounds_the_retries() -> None:
    attempts = ReofferAttempts(owns_call_id=False, rng=BoundRng(upper=False), max_attempts=3)
    retries = []
    for now in (0.0, 1.0, 2.0):
        attempts.begin()
        retries.append(attempts.retry_at(491, now))
    assert retries == [0.0, 1.0, None]


def test_one_attempt_allowed_means_no_retry() -> None:
    attempts = ReofferAttempts(owns_call_id=True, rng=BoundRng(upper=False), max_attempts=1)
    attempts.begin()
    assert attempts.retry_at(491, 0.0) is None


def test_default_rng_is_a_private_random() -> None:
    attempts = ReofferAttempts(owns_call_id=True)
    assert isinstance(attempts.rng, random.Random)
    assert attempts.rng is not ReofferAttempts(owns_call_id=True).rng
    attempts.begin()
    retry = attempts.retry_at(491, 1000.0)
    assert retry is not None
    assert 1002.1 <= retry <= 1004.0
