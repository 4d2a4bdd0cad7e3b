"""The flood benchmark runs end to end (one 1-second step at 500 packets/s); no time or CPU is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="binds 127.0.1.x and reads /proc")
@pytest.mark.timeout(90)
def test_one_short_bye_flood_step(tmp_path: Path) -> None:
    out = tmp_path / "flood.json"
    command = [sys.executable, "-m", "benchmarks.flood", "--kinds", "bye-spread", "--rates", "500"]
    command += ["--seconds", "1", "--probes", "1", "--sources", "5", "--retries", "0", "--json", str(out)]
    # The step's work directory (named on every child's command line) goes under tmp_path.
    env = os.environ | {"TMPDIR": str(tmp_path)}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=85)
    report = json.loads(out.read_text())
    [step] = report["steps"]
    assert step["calls_set_up"] == step["calls"]
    assert step["flooder"]["sent"] > 0
    assert step["flooder"]["answered"] > 0  # some 481s (at most SIP_MAX_UNKNOWN_DIALOG_ANSWERS a second)
    assert set(step["flooder"]["responses"]) <= {"481"}
    assert [p["answered"] for p in step["flood"]["probes"]] == [True]
    assert step["flood"]["streams"] == step["calls"]
    assert processes_mentioning(str(tmp_path)) == []
