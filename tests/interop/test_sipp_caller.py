"""sipp calls our user agent: sequential and concurrent calls over UDP, and a call over TCP."""

from __future__ import annotations

import pytest

from tests.interop.conftest import RunningUa, Sipp, SippResult

pytestmark = pytest.mark.interop


def assert_all_calls_clean(result: SippResult, calls: int) -> None:
    assert result.returncode == 0, result.describe()
    assert result.stats["SuccessfulCall"] == calls, result.describe()
    assert result.stats["FailedCall"] == 0, result.describe()
    # Every request of ours was answered before sipp's 500 ms retransmission timer fired.
    assert result.stats["Retransmissions"] == 0, result.describe()


async def assert_ua_saw(ua: RunningUa, calls: int) -> None:
    await ua.wait_until(lambda: len(ua.ended) == calls)
    assert ua.errors == []
    assert len(ua.incoming) == len(ua.answered) == calls
    assert {(e.reason, e.by) for e in ua.ended} == {("bye", "remote")}
    assert len({c.call_id for c in ua.incoming}) == calls


async def test_twenty_sequential_calls(ua: RunningUa, sipp: Sipp) -> None:
    result = await sipp.run("uac", ua.target, calls=20, args=["-l", "1", "-r", "100", "-d", "0"])
    assert_all_calls_clean(result, 20)
    await assert_ua_saw(ua, 20)
    # sipp's caller sees a 180 and a 200 with our SDP answer for every call.
    answers = [m for m in result.messages if m.direction == "received" and m.start_line == "SIP/2.0 200 OK"]
    invite_answers = [m for m in answers if (m.header("CSeq") or "").endswith("INVITE")]
    assert len(invite_answers) == 20
    assert all(f"m=audio {ua.plan.rtp_port} RTP/AVP 0" in m.text for m in invite_answers)


async def test_fifty_concurrent_calls(ua: RunningUa, sipp: Sipp) -> None:
    # 50 calls started within one second, each held for one second: all 50 are up at the same time.
    result = await sipp.run("uac", ua.target, calls=50, args=["-l", "50", "-r", "50", "-d", "1000"])
    assert_all_calls_clean(result, 50)
    await assert_ua_saw(ua, 50)


async def test_call_over_tcp(ua: RunningUa, sipp: Sipp) -> None:
    result = await sipp.run("uac", ua.target, calls=1, transport="t1", args=["-d", "0"])
    assert_all_calls_clean(result, 1)
    await assert_ua_saw(ua, 1)
    assert ua.incoming[0].transport == "TCP"
