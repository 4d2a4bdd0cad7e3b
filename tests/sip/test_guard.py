"""Digest guessing: failures per source and per user, bans with exponential back-off, with a fake clock."""

from __future__ import annotations

import pytest

from voicelive_sip.sip.guard import AuthGuard, Ban, BanSubject

HOST = "192.0.2.20"
OTHER = "198.51.100.7"
USER = "pbx"


def fail(guard: AuthGuard, times: int, now: float, host: str = HOST, user: str | None = USER) -> list[Ban]:
    bans: list[Ban] = []
    for _ in range(times):
        bans += guard.failed(host, user, now)
    return bans


def test_fifth_failure_within_the_window_bans_the_source_for_the_base_time() -> None:
    guard = AuthGuard(max_failures=5, window=60, ban=60)
    assert fail(guard, 4, 0.0) == []
    assert guard.check(HOST, USER, 0.0) is None
    (ban,) = guard.failed(HOST, USER, 10.0)
    assert ban == Ban(BanSubject.SOURCE, HOST, until=70.0, seconds=60.0, failures=5)
    assert guard.check(HOST, USER, 69.999) == ban
    assert ban.remaining(69.999) == pytest.approx(0.001)
    assert guard.check(HOST, USER, 70.0) is None  # the ban ends on the millisecond
    assert guard.check(OTHER, USER, 10.0) is None  # another source is not held by it


def test_failures_older_than_the_window_do_not_count() -> None:
    guard = AuthGuard(max_failures=3, window=60)
    assert fail(guard, 2, 0.0) == []
    assert guard.failed(HOST, USER, 60.0) == ()  # the first two are exactly one window old
    assert guard.failed(HOST, USER, 60.001) == ()
    (ban,) = guard.failed(HOST, USER, 60.002)
    assert ban.subject is BanSubject.SOURCE


def test_a_correct_password_during_a_ban_is_still_refused() -> None:
    guard = AuthGuard(max_failures=2, ban=30)
    fail(guard, 2, 0.0)
    # The caller asks `check` before verifying: whatever the password, the answer is the ban.
    assert guard.check(HOST, USER, 29.999) is not None
    assert guard.check(HOST, None, 29.999) is not None


def test_each_new_ban_doubles_up_to_the_longest() -> None:
    guard = AuthGuard(max_failures=1, ban=60, max_ban=300)
    now, lengths = 0.0, []
    for _ in range(5):
        (ban,) = guard.failed(HOST, None, now)
        lengths.append(ban.seconds)
        now = ban.until  # fail again the moment the ban ends
    assert lengths == [60, 120, 240, 300, 300]


def test_back_off_starts_again_after_a_quiet_spell_as_long_as_the_longest_ban() -> None:
    guard = AuthGuard(max_failures=1, ban=10, max_ban=100)
    (first,) = guard.failed(HOST, None, 0.0)
    (second,) = guard.failed(HOST, None, first.until)
    assert second.seconds == 20
    (third,) = guard.failed(HOST, None, second.until + 99.999)
    assert third.seconds == 40
    (fourth,) = guard.failed(HOST, None, third.until + 100.0)
    assert fourth.seconds == 10


def test_success_clears_the_sources_failures_and_back_off() -> None:
    guard = AuthGuard(max_failures=3, ban=10)
    fail(guard, 2, 0.0)
    guard.succeeded(HOST, USER)
    assert fail(guard, 2, 1.0) == []  # counting starts again
    (ban,) = guard.failed(HOST, USER, 1.0)
    assert ban.seconds == 10
    guard.succeeded(HOST, USER)  # after a ban (the caller let it through once it ended)
    (again,) = fail(guard, 3, 20.0)
    assert again.seconds == 10  # not 20


def test_distributed_guessing_bans_the_user_for_every_new_source() -> None:
    guard = AuthGuard(max_failures=5, user_max_failures=6, ban=60)
    sources = [f"203.0.113.{n}" for n in range(6)]
    bans = [ban for source in sources for ban in guard.failed(source, USER, 1.0)]
    assert bans == [Ban(BanSubject.USER, USER, until=61.0, seconds=60.0, failures=6)]
    fresh = "203.0.113.200"
    assert guard.check(fresh, USER, 60.999) == bans[0]  # even the right password, from a new source
    assert guard.check(fresh, "someone-else", 60.999) is None
    assert guard.check(fresh, None, 60.999) is None  # before the username is known, only the source
    assert guard.check(fresh, USER, 61.0) is None


def test_a_source_that_proved_the_password_is_not_held_by_the_users_ban() -> None:
    guard = AuthGuard(max_failures=5, user_max_failures=3, ban=60)
    guard.succeeded("192.0.2.1", USER)  # the real PBX
    fail(guard, 1, 5.0, host="203.0.113.1")
    fail(guard, 1, 5.0, host="203.0.113.2")
    (ban,) = fail(guard, 1, 5.0, host="203.0.113.3")
    assert ban.subject is BanSubject.USER
    assert guard.check("203.0.113.9", USER, 6.0) == ban
    assert guard.check("192.0.2.1", USER, 6.0) is None  # strangers cannot lock the PBX out


def test_one_failure_can_ban_both_the_source_and_the_user() -> None:
    guard = AuthGuard(max_failures=2, user_max_failures=2, ban=5)
    assert [ban.subject for ban in fail(guard, 2, 0.0)] == [BanSubject.SOURCE, BanSubject.USER]


def test_tables_are_bounded_lru() -> None:
    guard = AuthGuard(max_failures=2, max_entries=3)
    guard.failed("10.0.0.1", None, 0.0)
    for n in range(2, 5):
        guard.failed(f"10.0.0.{n}", None, 0.0)
    assert len(guard) == 3
    # 10.0.0.1 was the least recently seen: evicted, so its one failure is forgotten.
    assert guard.failed("10.0.0.1", None, 0.0) == ()
    guard.failed("10.0.0.3", None, 0.0)  # still tracked: its second failure bans it
    assert guard.check("10.0.0.3", None, 0.0) is not None
    for n in range(10_000):
        guard.failed(f"10.1.{n // 256}.{n % 256}", f"user{n}", 0.0)
    assert len(guard) == 6


@pytest.mark.parametrize(
    "arguments",
    [{"max_failures": 0}, {"user_max_failures": 0}, {"window": 0}, {"ban": -1}, {"max_entries": 0}],
)
def test_nonsense_limits_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AuthGuard(**arguments)  # type: ignore[arg-type]
