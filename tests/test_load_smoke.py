"""The load benchmark runs end to end with 10 calls: no timing is asserted, only that it works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
