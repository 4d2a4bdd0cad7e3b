"""The browser phone (/phone) in Debian's Chromium, headless, calling the gateway over WebRTC on 127.0.0.1.

Chromium's fake microphone plays a spoken question from a WAV file; the gateway carries the call to the
fake Voice Live. What is checked is what a person at the page would notice: the greeting is heard, talking
over the agent stops it, the transcript and the timings show up, a key reaches the gateway, hanging up ends
the call and the gateway's recording holds both sides; and a call the gateway ends ends on the page.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soxr
from pydantic import SecretStr

from tests.e2e.conftest import free_udp_range
from voicelive_sip.config import (
    GatewaySettings,
    MediaSettings,
    MetricsSettings,
    Settings,
    SipSettings,
    WebRtcSettings,
)
from voicelive_sip.gateway import Gateway
from voicelive_sip.http import ObservabilityServer
from voicelive_sip.testing import FakeReply, FakeVoiceLive

pytestmark = pytest.mark.interop

async_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (pip)")

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
QUESTION = REPO / "voicelive_sip" / "testing" / "data" / "question.wav"
SCREENSHOT = REPO / "docs" / "images" / "browser-phone.png"
UPDATE_SCREENSHOT = "VOICELIVE_SIP_UPDATE_SCREENSHOT"

CHAR_MS = 60  # the fake speaks a 440 Hz tone, 60 ms per character of the text
# The gateway's proactive greeting: about 16 s of tone, far longer than the microphone's lead-in silence, so
# the question lands in the middle of it.
GREETING = (
    "Hello, you are through to the test agent of voicelive-sip. This greeting goes on for a long while on "
    "purpose, so that whoever is calling can talk over it and the agent stops at once, the way a person "
    "would stop when interrupted. Go ahead and ask your question whenever you like."
)
REPLY = "Sure. The store opens at nine in the morning."
# Longer than the page takes to ask for the microphone, connect and hear the greeting start on loopback.
LEAD_SILENCE_S = 5.0
CAPTURE_RATE = 48000  # what Chromium's fake capture device reads best: 16-bit PCM mono at 48 kHz
HEARD_FLOOR = 0.02  # RMS (full scale 1.0) of the agent's audio at the page: the tone is about 0.18; silence 0
LOUD_DBFS = -40.0  # a recording channel with a 20 ms window above this carried audio (silence is -inf)
WAIT_MS = 30_000  # failure guards only: each step normally takes well under a second or two

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


def microphone_wav(path: Path) -> Path:
    """The question after LEAD_SILENCE_S of silence, as 48 kHz mono 16-bit PCM for Chromium's fake capture."""
    with wave.open(str(QUESTION), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth()) == (1, 2), QUESTION
        rate = source.getframerate()
        question = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    question = np.asarray(soxr.resample(question, rate, CAPTURE_RATE, quality="HQ"), dtype=np.int16)
    lead = np.zeros(int(LEAD_SILENCE_S * CAPTURE_RATE), dtype=np.int16)
    tail = np.zeros(CAPTURE_RATE, dtype=np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(CAPTURE_RATE)
        out.writeframes(np.concatenate((lead, question, tail)).astype("<i2").tobytes())
    return path


def loudest_dbfs(channel: np.ndarray, rate: int, window_ms: int = 20) -> float:
    """The level of the loudest `window_ms` window of a channel, in dBFS."""
    size = rate * window_ms // 1000
    windows = channel[: len(channel) // size * size].astype(np.float64).reshape(-1, size) / 32768.0
    if not len(windows):
        return float("-inf")
    with np.errstate(divide="ignore"):
        return float(20 * np.log10(np.sqrt(np.mean(windows**2, axis=1)).max()))


@dataclass
class BrowserGateway:
    """A gateway serving /phone and /whip at `url`, its fake Voice Live, and the keys its calls pressed."""

    fake: FakeVoiceLive
    gateway: Gateway
    browser: Any  # BrowserCalls: its `calls` by id
    url: str
    keys: list[str] = field(default_factory=list)


@pytest.fixture
async def browser_gateway(tmp_path: Path) -> AsyncIterator[BrowserGateway]:
    """A gateway taking browser calls on 127.0.0.1 (ICE too) with the fake Voice Live; yields its URL."""
    first = free_udp_range(20)
    async with FakeVoiceLive(replies=[FakeReply(REPLY)], pace=1.0) as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1"),
            media=MediaSettings(address="127.0.0.1", port=first, port_count=20),
            voicelive=fake.settings(proactive_greeting_enabled=True, proactive_greeting=GREETING),
            gateway=GatewaySettings(recording_dir=str(tmp_path / "recordings")),
            metrics=MetricsSettings(host="127.0.0.1", port=0),
            webrtc=WebRtcSettings(enabled=True, ice_addresses=["127.0.0.1"]),
        )
        (tmp_path / "recordings").mkdir()
        from voicelive_sip.webrtc.server import BrowserCalls  # aiortc: only where browser calls are tested

        keys: list[str] = []
        async with Gateway(settings, on_dtmf=keys.append) as gateway:
            browser = BrowserCalls(gateway, settings.webrtc, token=None)
            server = ObservabilityServer(
                gateway.metrics, ready=gateway.readiness, host="127.0.0.1", port=0, browser=browser
            )
            async with server:
                yield BrowserGateway(fake, gateway, browser, server.url, keys)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Any]:
    """A page in a fresh headless Chromium whose microphone plays the question once."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)")
    capture = microphone_wav(tmp_path / "question_48k.wav")
    async with async_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={capture}%noloop"],
            viewport={"width": 1200, "height": 660},
            color_scheme="light",
        )
        try:
            yield context.pages[0] if context.pages else await context.new_page()
        finally:
            await context.close()


async def wait_for(page: Any, expression: str) -> Any:
    """Wait until `expression` is truthy in the page; its value (a JSHandle's JSON)."""
    handle = await page.wait_for_function(expression, timeout=WAIT_MS, polling=50)
    return await handle.json_value()


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait until `predicate()` holds (a guard against hanging, not a measurement)."""
    for _ in range(WAIT_MS // 50):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_browser_calls_the_agent_talks_over_it_and_hangs_up(
    browser_gateway: BrowserGateway, page: Any, tmp_path: Path
) -> None:
    fake, gateway, url = browser_gateway.fake, browser_gateway.gateway, browser_gateway.url
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{url}/phone")
    assert await page.evaluate("window.phone.state") == "idle"

    await page.click("#call")
    state = await wait_for(page, "['in-call', 'ended'].includes(window.phone.state) && window.phone.state")
    assert state == "in-call", await page.evaluate("window.phone.error")
    # The greeting is heard: the agent's level at the page rises well above silence.
    await wait_for(page, f"window.phone.maxRemoteLevel > {HEARD_FLOOR}")

    # The question, played by the fake microphone, talks over the greeting: the gateway cancels the reply
    # and truncates it at what the page had heard, and the page is told.
    try:
        await fake.wait_for(lambda f: bool(f.truncations), timeout=WAIT_MS / 1000)
    except TimeoutError:
        raise AssertionError(f"no barge-in; Voice Live received {sorted(set(fake.received_types))}") from None
    assert "response.cancel" in fake.received_types or fake.cancellations
    await wait_for(page, "window.phone.events.some(e => e.type === 'barge_in')")
    assert await page.evaluate("window.phone.maxLocalLevel") > 0

    # The transcript shows both sides, the greeting marked interrupted; the agent's answer gives a turn.
    transcript = await wait_for(
        page,
        "(() => { const t = window.phone.transcript; return t.some(l => l.role === 'caller')"
        " && t.some(l => l.role === 'agent' && !l.interrupted) && t; })()",
    )
    (greeting,) = [line for line in transcript if line["role"] == "agent" and line["interrupted"]]
    # ... cut at what was heard: the fake spreads the words evenly over the tone, CHAR_MS a character.
    (barge_in,) = [e for e in await page.evaluate("window.phone.events") if e["type"] == "barge_in"]
    heard_chars = barge_in["heard_ms"] / CHAR_MS
    assert heard_chars / 2 <= len(greeting["text"]) <= heard_chars * 2, (greeting, barge_in)
    await wait_for(page, "window.phone.events.some(e => e.type === 'turn')")
    await wait_for(page, "document.querySelectorAll('#transcript .line').length >= 3")
    # The test's artifact: in `test-artifacts/` (VOICELIVE_SIP_ARTIFACTS elsewhere), kept after the run.
    artifacts = Path(os.environ.get("VOICELIVE_SIP_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "browser-phone.png"
    await page.screenshot(path=str(screenshot))
    if os.environ.get(UPDATE_SCREENSHOT) == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, SCREENSHOT)

    # A key pressed on the page's keypad reaches the gateway as DTMF.
    await page.click("#keypad [data-key='5']")
    await until(lambda: bool(browser_gateway.keys), "the key at the gateway")
    assert browser_gateway.keys == ["5"]

    await page.click("#hangup")
    await wait_for(page, "window.phone.state === 'ended'")
    await until(lambda: bool(gateway.summaries), "the call's end at the gateway")
    summary = gateway.summaries[-1]
    # The page says hang-up on the data channel, then DELETEs: whichever the gateway reads first ends it.
    assert summary.ended_by == "remote" and summary.end_reason in ("bye", "delete"), summary
    assert summary.barge_ins >= 1 and summary.first_agent_audio_ms is not None
    assert errors == []

    # The recording has both sides: the caller's question on the left, the agent's tone on the right.
    assert summary.recording is not None and summary.recording.exists()
    with wave.open(str(summary.recording), "rb") as recording:
        assert (recording.getnchannels(), recording.getsampwidth()) == (2, 2)
        rate = recording.getframerate()
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2").reshape(-1, 2)
    caller, agent = samples[:, 0], samples[:, 1]
    assert loudest_dbfs(caller, rate) > LOUD_DBFS
    assert loudest_dbfs(agent, rate) > LOUD_DBFS

    # The page was told when the call was answered and when the agent's audio first went out, and shows it.
    kinds = [event["type"] for event in await page.evaluate("window.phone.events")]
    assert "answered" in kinds and "first_audio" in kinds, kinds
    assert await page.locator("#t-answer").inner_text() != "–"


async def test_a_call_the_gateway_ends_ends_on_the_page(browser_gateway: BrowserGateway, page: Any) -> None:
    url, gateway = browser_gateway.url, browser_gateway.gateway
    await page.goto(f"{url}/phone")
    await page.click("#call")
    await wait_for(page, "window.phone.state === 'in-call'")
    (call_id,) = browser_gateway.browser.calls
    async with aiohttp.ClientSession() as http, http.delete(f"{url}/whip/{call_id}") as response:
        assert response.status == 200
    await wait_for(page, "window.phone.state === 'ended'")
    assert await page.evaluate("window.phone.error") is None
    ended = [e for e in await page.evaluate("window.phone.events") if e["type"] == "ended"]
    assert [(e["reason"], e["by"]) for e in ended] == [("delete", "remote")], ended
    await until(lambda: bool(gateway.summaries), "the call's end at the gateway")
    assert (gateway.summaries[-1].end_reason, gateway.summaries[-1].ended_by) == ("delete", "remote")


async def test_the_page_takes_the_gateways_ice_servers_from_its_link_headers(
    browser_gateway: BrowserGateway, page: Any
) -> None:
    settings = browser_gateway.browser.settings
    settings.ice_servers = ["stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp"]
    settings.ice_username = "alice"
    settings.ice_credential = SecretStr('pa"ss')
    await page.goto(f"{browser_gateway.url}/phone")
    servers = await page.evaluate(
        """async () => {
            const response = await fetch("/whip", { method: "OPTIONS" });
            return window.phone.parseIceLinks(response.headers.get("Link") || "");
        }"""
    )
    assert servers == [
        {"urls": "stun:127.0.0.1:3478"},
        {"urls": "turn:127.0.0.1:3478?transport=udp", "username": "alice", "credential": 'pa"ss'},
    ]
