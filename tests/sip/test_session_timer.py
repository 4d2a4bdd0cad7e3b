"""RFC 4028 session timers with a fake clock: who refreshes, and the exact instant of each refresh or BYE."""

from __future__ import annotations

import pytest

from voicelive_sip.sip import Request, Response
from voicelive_sip.sip.session_timer import (
    SessionTimer,
    TimerAction,
    expiry_margin,
    parse_session_expires,
)

DEFAULT = 1800


def invite(*extra: tuple[str, str], method: str = "INVITE", seq: int = 1) -> Request:
    return Request(
        method,
        "sip:bot@192.0.2.10",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKst1"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", "<sip:bot@192.0.2.10>"),
            ("Call-ID", "st-call"),
            ("CSeq", f"{seq} {method}"),
            *extra,
        ],
    )


def ok(*extra: tuple[str, str]) -> Response:
    return Response(
        200,
        "OK",
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKst2"),
            ("From", "<sip:bot@192.0.2.10>;tag=b1"),
            ("To", "<sip:alice@example.com>;tag=a2"),
            ("Call-ID", "st-out"),
            ("CSeq", "1 INVITE"),
            *extra,
        ],
    )


def uas_timer(*extra: tuple[str, str], now: float = 100.0) -> SessionTimer:
    timer, _ = SessionTimer.for_uas(invite(*extra), default_interval=DEFAULT, now=now)
    assert timer is not None
    return timer


# -- parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1800", (1800, None)),
        ("1800;refresher=uac", (1800, "uac")),
        ("600;refresher=uas", (600, "uas")),
        ("600;Refresher=UAS", (600, "uas")),
        ("90 ;refresher=uac", (90, "uac")),
        ("600;refresher=proxy", (600, None)),
        ("600;refresher", (600, None)),
        ("600;x=1;refresher=uas", (600, "uas")),
        ("4294967295", (4294967295, None)),
    ],
)
def test_parse_session_expires(value: str, expected: tuple[int, str | None]) -> None:
    assert parse_session_expires(invite(("Session-Expires", value))) == expected


@pytest.mark.parametrize(
    "value", ["", "abc", "-5", "1.5", "4294967296", "12345678901", "600;refresher=uac;=", "0x10"]
)
def test_malformed_session_expires_is_ignored(value: str) -> None:
    assert parse_session_expires(invite(("Session-Expires", value))) is None


def test_session_expires_compact_form_x() -> None:
    assert parse_session_expires(invite(("x", "300;refresher=uas"))) == (300, "uas")


def test_absent_session_expires() -> None:
    assert parse_session_expires(invite()) is None


@pytest.mark.parametrize(
    ("interval", "margin"),
    [(1800, 32.0), (96, 32.0), (97, 32.0), (95, 95 / 3), (90, 30.0), (60, 20.0), (3, 1.0)],
)
def test_expiry_margin_is_32_seconds_or_a_third(interval: int, margin: float) -> None:
    assert expiry_margin(interval) == margin


# -- UAS: the INVITE we answer ---------------------------------------------------------------------------


def test_uas_uac_supports_timer_uac_refreshes_and_we_bye_32_s_before_expiry() -> None:
    timer, headers = SessionTimer.for_uas(
        invite(("Session-Expires", "1800"), ("Supported", "timer")), default_interval=DEFAULT, now=100.0
    )
    assert timer is not None
    assert headers == [("Session-Expires", "1800;refresher=uac"), ("Require", "timer")]
    assert (timer.interval, timer.role, timer.we_refresh, timer.refresher) == (1800, "uas", False, "uac")
    assert timer.get_timer() == 1868.0
    assert timer.handle_timer(100.0) is None
    assert timer.handle_timer(1867.999) is None
    assert timer.handle_timer(1868.0) is TimerAction.EXPIRE
    assert timer.handle_timer(5000.0) is TimerAction.EXPIRE


def test_uas_refresh_received_moves_the_expiry() -> None:
    timer = uas_timer(("Session-Expires", "1800"), ("Supported", "timer"))
    assert timer.receive_refresh(invite(seq=2), 1000.0) is False
    assert timer.last_refresh == 1000.0
    assert timer.get_timer() == 2768.0
    assert timer.handle_timer(1868.0) is None  # the old deadline does nothing any more
    assert timer.handle_timer(2767.999) is None
    assert timer.handle_timer(2768.0) is TimerAction.EXPIRE


def test_uas_refresh_with_same_interval_reports_a_change() -> None:
    timer = uas_timer(("Session-Expires", "1800"), ("Supported", "timer"))
    assert timer.receive_refresh(invite(("Session-Expires", "1800;refresher=uac"), seq=2), 1000.0) is True
    assert (timer.interval, timer.we_refresh) == (1800, False)
    assert timer.get_timer() == 2768.0


def test_uas_small_interval_margin_is_a_third() -> None:
    timer = uas_timer(("Session-Expires", "90"), ("Supported", "timer"), now=10.0)
    assert timer.get_timer() == 70.0  # 10 + 90 - 30
    assert timer.handle_timer(69.999) is None
    assert timer.handle_timer(70.0) is TimerAction.EXPIRE


def test_uas_supported_timer_without_session_expires_uses_the_default() -> None:
    timer, headers = SessionTimer.for_uas(
        invite(("Supported", "100rel, Timer")), default_interval=600, now=0.0
    )
    assert timer is not None
    assert headers == [("Session-Expires", "600;refresher=uac"), ("Require", "timer")]
    assert timer.interval == 600
    assert timer.get_timer() == 568.0


def test_uas_no_timer_at_all() -> None:
    assert SessionTimer.for_uas(invite(), default_interval=DEFAULT, now=0.0) == (None, [])
    assert SessionTimer.for_uas(invite(("Supported", "100rel")), default_interval=DEFAULT, now=0.0) == (
        None,
        [],
    )


def test_uas_malformed_session_expires_without_supported_means_no_timer() -> None:
    result = SessionTimer.for_uas(invite(("Session-Expires", "soon")), default_interval=DEFAULT, now=0.0)
    assert result == (None, [])


def test_uas_malformed_session_expires_with_supported_uses_the_default() -> None:
    timer, headers = SessionTimer.for_uas(
        invite(("Session-Expires", "soon"), ("Supported", "timer")), default_interval=1200, now=0.0
    )
    assert timer is not None
    assert timer.interval == 1200
    assert headers == [("Session-Expires", "1200;refresher=uac"), ("Require", "timer")]


def test_uas_uac_without_timer_support_we_refresh_at_half_the_interval() -> None:
    # §9: a Session-Expires a proxy inserted for a UAC that cannot refresh: the UAS refreshes.
    timer, headers = SessionTimer.for_uas(
        invite(("Session-Expires", "1800")), default_interval=DEFAULT, now=100.0
    )
    assert timer is not None
    assert headers == [("Session-Expires", "1800;refresher=uas")]  # no Require: timer
    assert (timer.we_refresh, timer.refresher) == (True, "uas")
    assert timer.get_timer() == 1000.0
    assert timer.handle_timer(999.999) is None
    assert timer.handle_timer(1000.0) is TimerAction.REFRESH


def test_uas_requested_refresher_uas_with_support() -> None:
    timer, headers = SessionTimer.for_uas(
        invite(("Session-Expires", "1800;refresher=uas"), ("Supported", "timer")),
        default_interval=DEFAULT,
        now=100.0,
    )
    assert timer is not None
    assert headers == [("Session-Expires", "1800;refresher=uas"), ("Require", "timer")]
    assert timer.get_timer() == 1000.0
    assert timer.handle_timer(1000.0) is TimerAction.REFRESH
    timer.refreshed(1000.5)
    assert timer.last_refresh == 1000.5
    assert timer.get_timer() == 1900.5
    assert timer.handle_timer(1900.499) is None
    assert timer.handle_timer(1900.5) is TimerAction.REFRESH


def test_we_refresh_handle_timer_keeps_asking_until_refreshed() -> None:
    timer = uas_timer(("Session-Expires", "1800;refresher=uas"), ("Supported", "timer"), now=0.0)
    assert timer.handle_timer(900.0) is TimerAction.REFRESH
    assert timer.handle_timer(901.0) is TimerAction.REFRESH  # nothing changes until refreshed()
    timer.refreshed(901.0)
    assert timer.handle_timer(901.0) is None
    assert timer.get_timer() == 1801.0


def test_refresh_failed_retries_halfway_to_expiry() -> None:
    timer = uas_timer(("Session-Expires", "1800;refresher=uas"), ("Supported", "timer"), now=100.0)
    assert timer.handle_timer(1000.0) is TimerAction.REFRESH
    timer.refresh_failed(1000.0)  # 900 s left before 1900
    assert timer.get_timer() == 1450.0
    assert timer.handle_timer(1449.999) is None
    assert timer.handle_timer(1450.0) is TimerAction.REFRESH
    timer.refresh_failed(1450.0)  # 450 s left
    assert timer.get_timer() == 1675.0
    timer.refresh_failed(1898.0)  # 2 s left: half is 1 s
    assert timer.get_timer() == 1899.0
    timer.refresh_failed(1899.5)  # 0.5 s left: at least 1 s on
    assert timer.get_timer() == 1900.5
    timer.refresh_failed(2000.0)  # past the expiry: still 1 s on, never in the past
    assert timer.get_timer() == 2001.0
    timer.refreshed(2001.0)
    assert timer.get_timer() == 2901.0


def test_reinvite_flips_the_refresher_to_us() -> None:
    timer = uas_timer(("Session-Expires", "1800"), ("Supported", "timer"), now=100.0)
    assert timer.refresher == "uac"
    changed = timer.receive_refresh(invite(("Session-Expires", "600;refresher=uas"), seq=2), 500.0)
    assert changed is True
    assert (timer.interval, timer.we_refresh, timer.refresher) == (600, True, "uas")
    assert timer.headers() == [("Session-Expires", "600;refresher=uas")]
    assert timer.get_timer() == 800.0
    assert timer.handle_timer(799.999) is None
    assert timer.handle_timer(800.0) is TimerAction.REFRESH


def test_reinvite_flips_the_refresher_to_them() -> None:
    timer = uas_timer(("Session-Expires", "1800;refresher=uas"), ("Supported", "timer"), now=100.0)
    assert timer.receive_refresh(invite(("Session-Expires", "300;refresher=uac"), seq=2), 400.0) is True
    assert (timer.interval, timer.we_refresh, timer.refresher) == (300, False, "uac")
    assert timer.get_timer() == 668.0  # 400 + 300 - 32
    assert timer.handle_timer(667.999) is None
    assert timer.handle_timer(668.0) is TimerAction.EXPIRE


def test_reinvite_new_interval_without_refresher_keeps_who_refreshes() -> None:
    timer = uas_timer(("Session-Expires", "1800;refresher=uas"), ("Supported", "timer"), now=0.0)
    assert timer.receive_refresh(invite(("Session-Expires", "120"), seq=2), 50.0) is True
    assert (timer.interval, timer.we_refresh) == (120, True)
    assert timer.get_timer() == 110.0


def test_reinvite_with_malformed_session_expires_only_refreshes() -> None:
    timer = uas_timer(("Session-Expires", "1800"), ("Supported", "timer"), now=0.0)
    assert timer.receive_refresh(invite(("Session-Expires", "never"), seq=2), 10.0) is False
    assert (timer.interval, timer.we_refresh) == (1800, False)
    assert timer.get_timer() == 1778.0


# -- UAC: the 2xx to our INVITE --------------------------------------------------------------------------


def test_uac_2xx_without_refresher_we_refresh() -> None:
    timer = SessionTimer.for_uac(ok(("Session-Expires", "1800"), ("Require", "timer")), now=20.0)
    assert timer is not None
    assert (timer.role, timer.we_refresh, timer.refresher, timer.interval) == ("uac", True, "uac", 1800)
    assert timer.headers() == [("Session-Expires", "1800;refresher=uac")]
    assert timer.get_timer() == 920.0
    assert timer.handle_timer(919.999) is None
    assert timer.handle_timer(920.0) is TimerAction.REFRESH
    timer.refreshed(921.25)
    assert timer.get_timer() == 1821.25


def test_uac_2xx_refresher_uac() -> None:
    timer = SessionTimer.for_uac(ok(("Session-Expires", "600;refresher=uac")), now=0.0)
    assert timer is not None
    assert (timer.we_refresh, timer.refresher) == (True, "uac")
    assert timer.get_timer() == 300.0


def test_uac_2xx_refresher_uas_they_refresh_and_we_bye() -> None:
    timer = SessionTimer.for_uac(ok(("Session-Expires", "600;refresher=uas")), now=20.0)
    assert timer is not None
    assert (timer.we_refresh, timer.refresher) == (False, "uas")
    assert timer.headers() == [("Session-Expires", "600;refresher=uas")]
    assert timer.get_timer() == 588.0  # 20 + 600 - 32
    assert timer.handle_timer(587.999) is None
    assert timer.handle_timer(588.0) is TimerAction.EXPIRE
    # Their refresh (a re-INVITE from the UAS) restarts the countdown.
    assert timer.receive_refresh(invite(seq=7), 500.0) is False
    assert timer.get_timer() == 1068.0


def test_uac_2xx_without_session_expires_has_no_timer() -> None:
    assert SessionTimer.for_uac(ok(), now=0.0) is None
    assert SessionTimer.for_uac(ok(("Session-Expires", "-1;refresher=uas")), now=0.0) is None


def test_handle_timer_before_get_timer_never_acts() -> None:
    timer = SessionTimer.for_uac(ok(("Session-Expires", "90;refresher=uas")), now=0.0)
    assert timer is not None
    deadline = timer.get_timer()
    assert deadline == 60.0
    for t in (0.0, 30.0, 59.0, 59.999):
        assert timer.handle_timer(t) is None
    assert timer.handle_timer(deadline) is TimerAction.EXPIRE
