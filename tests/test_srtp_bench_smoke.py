"""The SRTP micro-benchmark runs end to end (a few hundred packets per suite); no time is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(60)
def test_the_srtp_benchmark_reports_every_suite(tmp_path: Path) -> None:
    out = tmp_path / "srtp.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.srtp",
        "--iterations",
        "300",
        "--repeat",
        "1",
        "--json",
        str(out),
    ]
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=55)
    report = json.loads(out.read_text())
    assert report["packet_bytes"] == 172 and report["iterations"] == 300
    assert set(report["suites"]) == {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"}
    overheads = {name: row["overhead_bytes"] for name, row in report["suites"].items()}
    assert overheads == {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4, "AEAD_AES_128_GCM": 16}
    assert all(row["protect_us"] > 0 and row["unprotect_us"] > 0 for row in report["suites"].values())
    assert "AEAD_AES_128_GCM" in result.stdout and "plain RTP" in result.stdout
