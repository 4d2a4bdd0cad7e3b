"""A gateway bound to 0.0.0.0 without SIP_VIA_ADDR or MEDIA_PUBLIC_ADDRESS, called from another host,
advertises the address that host can reach (issue 16, item 2), and the call completes.

Two network namespaces the test creates, joined by a veth pair: the gateway (`voicelive-sip serve
--fake-voicelive`) in one at 10.231.N.1, a SipPhone in the other at 10.231.N.2. Before the fix, Via, Contact
and the SDP said 127.0.0.1, so the caller sent its ACK, BYE and RTP to itself. Needs root (CI runs as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, str]]:
    """Two fresh namespaces (gateway, caller) and the subnet prefix; deleted (with their veth) afterwards."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to create network namespaces")
    tag = f"{os.getpid() % 10000}"
    gateway, caller = f"vlsgw{tag}", f"vlsua{tag}"
    subnet = f"10.231.{os.getpid() % 250}"
    try:
        _ip("netns", "add", gateway)
        _ip("netns", "add", caller)
        _ip(
            "link",
            "add",
            f"vg{tag}",
            "netns",
            gateway,
            "type",
            "veth",
            "peer",
            "name",
            f"vu{tag}",
            "netns",
            caller,
        )
        _ip("-n", gateway, "addr", "add", f"{subnet}.1/24", "dev", f"vg{tag}")
        _ip("-n", caller, "addr", "add", f"{subnet}.2/24", "dev", f"vu{tag}")
        for ns, dev in ((gateway, f"vg{tag}"), (caller, f"vu{tag}")):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as error:
        for ns in (gateway, caller):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {error.stderr.decode(errors='replace').strip()}")
    try:
        yield gateway, caller, subnet
    finally:
        for ns in (gateway, caller):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


CALLER = textwrap.dedent(
    """
    import asyncio, json, sys
    from voicelive_sip.testing import SipPhone

    async def main(target: str) -> None:
        async with SipPhone(address=sys.argv[2]) as phone:
            call = await phone.dial(target)
            await call.wait_for(lambda c: c.energy_dbfs() > -40.0, timeout=10)  # the greeting
            answer = call.call.remote_sdp
            connection = answer.connection or answer.media[0].connection
            result = {
                "contact": str(call.call.dialog.remote_target),
                "sdp_address": connection.address,
                "heard_dbfs": call.energy_dbfs(),
            }
            await call.hangup()
            ended = await call.wait_ended()
            result["ended"] = [ended.reason, ended.by, ended.status_code]
            print("RESULT " + json.dumps(result), flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_gateway_bound_to_every_interface_advertises_the_address_its_caller_reaches(
    namespaces: tuple[str, str, str], tmp_path: Path
) -> None:
    gateway_ns, caller_ns, subnet = namespaces
    env = {
        **os.environ,
        "SIP_LOCAL_ADDRESS": "0.0.0.0",
        "SIP_PORT": "5060",
        "MEDIA_ADDRESS": "0.0.0.0",
        "METRICS_ENABLED": "false",
        "VOICE_LIVE_PROACTIVE_GREETING_ENABLED": "true",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("SIP_VIA_ADDR", None)
    env.pop("MEDIA_PUBLIC_ADDRESS", None)
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        ["ip", "netns", "exec", gateway_ns, sys.executable, "-m", "voicelive_sip.cli", "serve",
         "--fake-voicelive"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b"answering on" not in (tmp_path / "gateway.log").read_bytes():
            assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        script = tmp_path / "caller.py"
        script.write_text(CALLER)
        result = subprocess.run(
            ["ip", "netns", "exec", caller_ns, sys.executable, str(script), f"sip:agent@{subnet}.1:5060",
             f"{subnet}.2"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:] + (tmp_path / "gateway.log").read_text()[-3000:]
        [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        seen = json.loads(line.removeprefix("RESULT "))
        # The gateway's Contact and SDP name the veth address, not 127.0.0.1 (nor 0.0.0.0)...
        assert f"@{subnet}.1:5060" in seen["contact"], seen
        assert seen["sdp_address"] == f"{subnet}.1", seen
        # ...so the greeting reached the caller, and the caller's BYE (sent to that Contact) was answered.
        assert seen["heard_dbfs"] > -40.0, seen
        assert seen["ended"][:2] == ["bye", "local"] and seen["ended"][2] in (None, 200), seen
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=5)
        log.close()
