"""The load benchmark runs end to end with 10 calls: no timing is asserted, only that it works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = (
    "command",
    "machine",
    "loop",
    "calls",
    "calls_set_up",
    "failed_calls",
    "gateway_cpu_percent",
    "gateway_rss_idle_mib",
    "gateway_rss_mib",
    "rss_per_call_mib",
    "send_error_ms",
    "latency_ms",
    "underruns",
    "audible_gaps",
    "largest_calls_held",
    "steps",
)


@pytest.mark.timeout(60)
def test_ten_calls_for_five_seconds(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.load", "--calls", "10", "--seconds", "5", "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=55,
    )
    report = json.loads(out.read_text())
    assert [field for field in FIELDS if field not in report] == []
    assert report["calls_set_up"] == 10
    assert report["failed_calls"] == 0
    assert report["caller"]["ended_early"] == 0
    assert report["caller"]["streams_received"] == 10
    assert set(report["send_error_ms"]) == {"p50", "p99", "max"}
    assert set(report["latency_ms"]) == {"uplink", "downlink"}
    assert {"nproc", "cpu_model", "python"} <= set(report["machine"])
    assert report["media"] == "plain"
    assert report["caller"]["srtp"] is None  # MEDIA_SRTP=off on both sides: no a=crypto offered or answered
    assert not any("srtp_calls" in name for name in report["gateway_srtp"])


@pytest.mark.timeout(60)
def test_four_srtp_calls_for_three_seconds(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.load", "--media", "srtp", "--calls", "4"),
            *("--seconds", "3", "--json", str(out)),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=55,
    )
    report = json.loads(out.read_text())
    assert (report["media"], report["srtp_suite"]) == ("srtp", "AES_CM_128_HMAC_SHA1_80")
    assert report["calls_set_up"] == 4
    assert report["failed_calls"] == 0
    srtp = report["caller"]["srtp"]
    assert srtp["answers_savp"] == 4  # every answer was RTP/SAVP with a=crypto of the offered suite
    assert srtp["packets_protected"] > 0
    assert srtp["packets_unprotected"] > 0
    assert (srtp["auth_failures"], srtp["replay_failures"], srtp["other_failures"]) == (0, 0, 0)
    assert report["gateway_srtp"]["voicelive_sip_srtp_calls_total{suite=AES_CM_128_HMAC_SHA1_80}"] == 4
    assert report["caller"]["streams_received"] == 4
    assert report["srtp_ok"] is True


# -- the harness's own arithmetic, on made-up arrivals ----------------------------------------------------


def test_audible_gaps_counts_silence_inside_a_reply_and_when_it_ended() -> None:
    from benchmarks.load import audible_gaps

    # One stream, frames 0..9: agent audio except fill at frames 3-4 (a 2-frame gap) and 6 (1 frame).
    frames = np.arange(10)
    audio = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=np.int8)
    ssrc = np.full(10, 7, dtype=np.uint64)
    arrived_ns = (frames * 20_000_000 + 10**9).astype(np.int64)
    heard = audible_gaps(ssrc, (frames * 160).astype(np.int64), audio, arrived_ns)
    assert (heard["gaps"], heard["gap_frames"], heard["replies"]) == (2, 3, 1)
    assert heard["at"] == pytest.approx([1.1, 1.14])  # arrival of frames 5 and 7


def test_gaps_soon_after_a_fake_stall_are_the_fakes() -> None:
    from benchmarks.load import gaps_after_stalls

    stalls = [(10.05, 40.0)]  # the fake's loop stood still from 10.01 s to 10.05 s
    assert gaps_after_stalls([10.2, 10.4, 9.9], stalls, reach=0.3) == 1  # only 10.2 follows it closely


def test_srtp_is_compared_with_plain_by_largest_n_held_and_cpu_per_step() -> None:
    from benchmarks.load import compare

    def step(calls: int, cpu: float, held: bool) -> dict[str, object]:
        return {"calls": calls, "gateway_cpu_percent": cpu, "held": held, "gateway_core_speed_ms": [90, 90]}

    plain = [step(200, 50.0, True), step(250, 60.0, True), step(300, 75.0, False)]
    srtp = [step(200, 60.0, True), step(250, 80.0, False), step(250, 70.0, True), step(300, 95.0, False)]
    result = compare(plain, srtp)
    assert result["largest_calls_held"] == {"plain": 250, "srtp": 250}  # the retried 250 held
    assert (result["srtp_of_plain"], result["met"]) == (1.0, True)
    first = result["steps"][0]
    assert first["srtp_cpu_over_plain"] == 1.2
    assert first["calls_per_core"] == {"plain": 400, "srtp": 333}


def test_repeated_kernel_stamps_are_counted_per_stream() -> None:
    from benchmarks.load import repeated_stamps

    ssrc = np.array([1, 1, 2, 1, 2], dtype=np.uint64)
    stamps = np.array([5, 5, 5, 6, 7], dtype=np.int64)
    assert repeated_stamps(ssrc, stamps) == 1  # stream 1 repeats 5; stream 2's 5 is its own
