"""The scale-out benchmark runs end to end with 4 calls per gateway: no timing is asserted, only that it works
(one gateway, then two behind the kit's Kamailio, each taking its share of the calls)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, require_binary

pytestmark = pytest.mark.interop


@pytest.mark.timeout(120)
def test_one_then_two_gateways_behind_kamailio(tmp_path: Path) -> None:
    require_binary("kamailio")
    out = tmp_path / "scaleout.json"
    command = [sys.executable, "-m", "benchmarks.scaleout", "--calls-per-gateway", "4", "--seconds", "2"]
    subprocess.run([*command, "--json", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=110)
    report = json.loads(out.read_text())
    one, two = report["runs"]
    assert (one["gateways"], one["calls_set_up"], one["failed_calls"]) == (1, 4, 0)
    assert (two["gateways"], two["calls_set_up"], two["failed_calls"]) == (2, 8, 0)
    assert [g["calls_dispatched"] for g in two["per_gateway"]] == [4, 4]  # round robin
    assert [g["core"] for g in two["per_gateway"]] == [0, 1]
    assert all(g["cpu_percent_per_call"] > 0 for run in (one, two) for g in run["per_gateway"])
    assert one["kamailio"]["cpu_us_per_call_setup"] > 0
    assert report["cpu_percent_per_call"]["two_over_one"] is not None
