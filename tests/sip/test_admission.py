"""Admission of new requests: the source allow-list and the per-source token bucket, with a fake clock."""

from __future__ import annotations

import pytest

from voicelive_sip.sip.admission import MAX_SOURCES, Admission, Verdict

HOST = "192.0.2.20"


def test_burst_of_rate_then_throttled() -> None:
    admission = Admission(rate=10)
    verdicts = [admission.admit(HOST, 0.0) for _ in range(12)]
    assert verdicts == [Verdict.ADMIT] * 10 + [Verdict.THROTTLED_FIRST, Verdict.THROTTLED]


def test_refill_is_rate_times_elapsed() -> None:
    admission = Admission(rate=10)
    for _ in range(11):
        admission.admit(HOST, 0.0)
    assert admission.admit(HOST, 0.05) is Verdict.THROTTLED  # half a token
    assert admission.admit(HOST, 0.1) is Verdict.ADMIT  # 0.05 s more: the whole token
    assert admission.admit(HOST, 0.1) is Verdict.THROTTLED


def test_throttled_first_once_per_second_per_source() -> None:
    admission = Admission(rate=2)
    assert [admission.admit(HOST, 0.0) for _ in range(3)] == [
        Verdict.ADMIT,
        Verdict.ADMIT,
        Verdict.THROTTLED_FIRST,
    ]
    assert admission.admit(HOST, 0.25) is Verdict.THROTTLED  # 0.5 token
    assert admission.admit(HOST, 0.5) is Verdict.ADMIT  # 1 token
    assert admission.admit(HOST, 0.5) is Verdict.THROTTLED
    assert admission.admit(HOST, 0.75) is Verdict.THROTTLED
    assert admission.admit(HOST, 1.0) is Verdict.ADMIT
    # A second after the last THROTTLED_FIRST (at 0.0), not after the last drop (0.75).
    assert admission.admit(HOST, 1.0) is Verdict.THROTTLED_FIRST
    assert admission.admit(HOST, 1.0) is Verdict.THROTTLED
    assert admission.admit(HOST, 1.25) is Verdict.THROTTLED


def test_bucket_never_holds_more_than_rate() -> None:
    admission = Admission(rate=3)
    admission.admit(HOST, 0.0)
    # A long quiet spell refills to `rate`, not to rate × quiet seconds.
    verdicts = [admission.admit(HOST, 1000.0) for _ in range(4)]
    assert verdicts == [Verdict.ADMIT] * 3 + [Verdict.THROTTLED_FIRST]


def test_clock_going_backwards_does_not_drain_or_refill() -> None:
    admission = Admission(rate=2)
    admission.admit(HOST, 10.0)
    admission.admit(HOST, 10.0)
    assert admission.admit(HOST, 5.0) is Verdict.THROTTLED_FIRST
    assert admission.admit(HOST, 10.5) is Verdict.ADMIT


def test_sources_have_their_own_buckets() -> None:
    admission = Admission(rate=1)
    assert admission.admit("192.0.2.1", 0.0) is Verdict.ADMIT
    assert admission.admit("192.0.2.1", 0.0) is Verdict.THROTTLED_FIRST
    assert admission.admit("192.0.2.2", 0.0) is Verdict.ADMIT
    assert admission.admit("192.0.2.2", 0.0) is Verdict.THROTTLED_FIRST


def test_requests_that_are_not_new_are_never_throttled_nor_spend_tokens() -> None:
    admission = Admission(rate=1)
    assert admission.admit(HOST, 0.0) is Verdict.ADMIT
    for _ in range(100):
        assert admission.admit(HOST, 0.0, new_request=False) is Verdict.ADMIT
    assert admission.admit(HOST, 0.0) is Verdict.THROTTLED_FIRST
    fresh = Admission(rate=1)
    for _ in range(100):
        assert fresh.admit(HOST, 0.0, new_request=False) is Verdict.ADMIT
    assert len(fresh) == 0  # no bucket made for in-dialog traffic
    assert fresh.admit(HOST, 0.0) is Verdict.ADMIT


@pytest.mark.parametrize("rate", [0, -1, 0.0])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        Admission(rate=rate)


@pytest.mark.parametrize(
    ("host", "verdict"),
    [
        ("192.0.2.20", Verdict.ADMIT),
        ("192.0.2.255", Verdict.ADMIT),
        ("192.0.3.1", Verdict.REFUSED),
        ("10.1.2.3", Verdict.ADMIT),
        ("11.0.0.1", Verdict.REFUSED),
        ("2001:db8::1", Verdict.ADMIT),
        ("2001:DB8:0:0::ffff", Verdict.ADMIT),
        ("2001:db9::1", Verdict.REFUSED),
        ("::1", Verdict.REFUSED),
        ("pbx.example.test", Verdict.REFUSED),
        ("", Verdict.REFUSED),
        ("192.0.2.300", Verdict.REFUSED),
        ("[2001:db8::1]", Verdict.REFUSED),
    ],
)
def test_allow_list(host: str, verdict: Verdict) -> None:
    admission = Admission(rate=5, allow_from=["192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32"])
    assert admission.admit(host, 0.0) is verdict
    assert admission.allowed(host) is (verdict is Verdict.ADMIT)


def test_allow_list_refuses_in_dialog_requests_too() -> None:
    admission = Admission(rate=5, allow_from=["192.0.2.0/24"])
    assert admission.admit("198.51.100.1", 0.0, new_request=False) is Verdict.REFUSED
    assert admission.admit("192.0.2.1", 0.0, new_request=False) is Verdict.ADMIT


def test_allow_list_single_host_and_non_strict_network() -> None:
    admission = Admission(rate=5, allow_from=["198.51.100.7", "203.0.113.9/24"])
    assert admission.allowed("198.51.100.7")
    assert not admission.allowed("198.51.100.8")
    assert admission.allowed("203.0.113.200")  # host bits in the network are tolerated


def test_no_allow_list_admits_any_host_string() -> None:
    admission = Admission(rate=5)
    assert admission.allowed("not-an-address")
    assert admission.admit("not-an-address", 0.0) is Verdict.ADMIT


def test_refused_sources_get_no_bucket() -> None:
    admission = Admission(rate=5, allow_from=["192.0.2.0/24"])
    for i in range(50):
        assert admission.admit(f"198.51.100.{i}", 0.0) is Verdict.REFUSED
    assert len(admission) == 0


def test_bad_allow_list_entry_is_an_error() -> None:
    with pytest.raises(ValueError):
        Admission(rate=5, allow_from=["192.0.2.0/33"])


def test_lru_stays_at_max_sources() -> None:
    admission = Admission(rate=1, max_sources=3)
    for i in range(1, 4):
        admission.admit(f"192.0.2.{i}", 0.0)
    assert len(admission) == 3
    # .1 drained its token; using it again makes it the most recent, so .2 is evicted for .4.
    assert admission.admit("192.0.2.1", 0.0) is Verdict.THROTTLED_FIRST
    assert admission.admit("192.0.2.4", 0.0) is Verdict.ADMIT
    assert len(admission) == 3
    assert admission.admit("192.0.2.1", 0.0) is Verdict.THROTTLED  # still remembered
    assert admission.admit("192.0.2.3", 0.0) is Verdict.THROTTLED_FIRST  # still remembered
    assert admission.admit("192.0.2.2", 0.0) is Verdict.ADMIT  # forgotten: a full bucket again
    assert len(admission) == 3


def test_spray_of_sources_costs_bounded_memory() -> None:
    admission = Admission(rate=1, max_sources=100)
    for i in range(5000):
        assert admission.admit(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", float(i)) is Verdict.ADMIT
        assert len(admission) == min(i + 1, 100)


def test_default_max_sources() -> None:
    assert Admission(rate=1).max_sources == MAX_SOURCES == 10_000


def test_fractional_rate_admits_one_request_every_1_over_rate_seconds() -> None:
    try:
        admission = Admission(rate=0.5)
    except ValueError:
        return  # refusing a rate it cannot serve is a fix too
    assert admission.admit(HOST, 0.0) is Verdict.ADMIT
    assert admission.admit(HOST, 1.0) is Verdict.THROTTLED_FIRST
    assert admission.admit(HOST, 2.0) is Verdict.ADMIT
