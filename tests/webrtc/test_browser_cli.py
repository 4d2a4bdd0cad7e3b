"""The browser phone from the command line: `voicelive-sip demo --browser` prints the page's URL and takes a
browser call; `serve` refuses browser calls on a public address without HTTP_AUTH_TOKEN."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from tests.cli.test_first_hour import command, new_user_environment, run
from voicelive_sip.testing.whip import WhipClient


async def test_demo_browser_prints_the_url_and_a_call_to_it_hears_the_agent(tmp_path: Path) -> None:
    env = {
        **new_user_environment(tmp_path / "home"),
        "SIP_PORT": "0",
        "METRICS_PORT": "0",
        "GATEWAY_DRAIN_TIMEOUT": "0",
        "WEBRTC_ICE_ADDRESSES": "127.0.0.1",
        "MEDIA_ADDRESS": "127.0.0.1",
        "SIP_LOCAL_ADDRESS": "127.0.0.1",
    }
    process = await asyncio.create_subprocess_exec(
        *command(), "demo", "--browser", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            while not (line := (await process.stdout.readline()).decode()).startswith("Open "):
                assert line, "the demo ended before printing the page's URL"
        found = re.search(r"(http://127\.0\.0\.1:\d+)/phone", line)
        assert found is not None, line
        async with WhipClient(f"{found.group(1)}/whip") as client:
            await client.wait_for(lambda c: c.loud_frames >= 10, timeout=20)  # the fake's greeting
            assert await client.hangup() == 200
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_browser_calls_on_a_public_address_need_a_token(tmp_path: Path) -> None:
    env = {
        **new_user_environment(tmp_path / "home"),
        "SIP_PORT": "0",
        "METRICS_PORT": "0",
        "METRICS_HOST": "0.0.0.0",
        "WEBRTC_ENABLED": "true",
    }
    done = run(["serve", "--fake-voicelive"], env, tmp_path)
    assert done.returncode == 2
    assert "HTTP_AUTH_TOKEN" in done.stderr and "WEBRTC_ENABLED" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_webrtc_settings_are_named(tmp_path: Path) -> None:
    env = {**new_user_environment(tmp_path / "home"), "WEBRTC_ICE_SERVERS": "http://stun.example.com"}
    done = run(["serve", "--fake-voicelive"], env, tmp_path)
    assert done.returncode == 2
    assert "WEBRTC_ICE_SERVERS" in done.stderr and "Traceback" not in done.stderr
