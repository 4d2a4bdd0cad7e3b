"""ObservabilityServer: /metrics for Prometheus, /healthz and /readyz for orchestrators, nothing else."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voicelive_sip.http import MetricsSettings, ObservabilityServer
from voicelive_sip.metrics import GatewayMetrics


class Readiness:
    """What the gateway would report: flipped by the test."""

    def __init__(self) -> None:
        self.details: dict[str, object] = {"transports": True, "registered": True, "draining": False}
        self.broken = False

    def __call__(self) -> tuple[bool, dict[str, object]]:
        if self.broken:
            raise RuntimeError("registrar state unavailable")
        ready = bool(self.details["transports"]) and bool(self.details["registered"])
        return ready and not self.details["draining"], dict(self.details)


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics()


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def server(metrics: GatewayMetrics, readiness: Readiness) -> AsyncIterator[ObservabilityServer]:
    async with ObservabilityServer(metrics, ready=readiness, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def test_metrics_are_scrapable(
    server: ObservabilityServer, metrics: GatewayMetrics, client: aiohttp.ClientSession
) -> None:
    assert server.port != 0
    metrics.call_started("inbound")
    metrics.call_rejected(486)
    async with client.get(f"http://127.0.0.1:{server.port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["voicelive_sip_active_calls", ()] == 1
    assert samples["voicelive_sip_calls_rejected_total", (("status", "486"),)] == 1


async def test_healthz_says_ok_while_running(
    server: ObservabilityServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(f"{server.url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_readyz_follows_the_gateway(
    server: ObservabilityServer, readiness: Readiness, client: aiohttp.ClientSession
) -> None:
    async with client.get(f"{server.url}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {"transports": True, "registered": True, "draining": False}

    readiness.details["draining"] = True
    async with client.get(f"{server.url}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {"transports": True, "registered": True, "draining": True}

    readiness.details["draining"] = False
    async with client.get(f"{server.url}/readyz") as response:
        assert response.status == 200

    readiness.broken = True  # a failing check is "not ready", not a server error
    async with client.get(f"{server.url}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {"error": "RuntimeError"}


async def test_nothing_else_is_served(server: ObservabilityServer, client: aiohttp.ClientSession) -> None:
    for path in ("/", "/metrics/extra", "/admin", "/healthz/../etc/passwd"):
        async with client.get(f"{server.url}{path}") as response:
            assert response.status == 404, path
    async with client.post(f"{server.url}/metrics") as response:
        assert response.status == 405
    async with client.post(f"{server.url}/readyz", data=b"x" * 100) as response:
        assert response.status == 413
    async with client.get(f"{server.url}/healthz", data=b"{}") as response:
        assert response.status == 413
    async with client.get(f"{server.url}/healthz", headers={"X-Padding": "a" * 10_000}) as response:
        assert response.status == 400
    async with client.get(f"{server.url}/healthz") as response:  # and it still serves afterwards
        assert response.status == 200


async def test_stop_closes_the_port_and_servers_are_independent(
    metrics: GatewayMetrics, readiness: Readiness, client: aiohttp.ClientSession
) -> None:
    first = ObservabilityServer(metrics, ready=readiness, port=0)
    second = ObservabilityServer(GatewayMetrics(), ready=lambda: (False, {"transports": False}), port=0)
    await first.start()
    await second.start()
    try:
        assert first.port != second.port
        async with client.get(f"{second.url}/readyz") as response:
            assert response.status == 503
        async with client.get(f"{first.url}/readyz") as response:
            assert response.status == 200
        port = first.port
    finally:
        await first.stop()
        await second.stop()
    await first.stop()  # stopping twice is harmless

    with pytest.raises(RuntimeError, match="not started"):
        _ = first.port
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_busy_port_fails_start_cleanly(metrics: GatewayMetrics, readiness: Readiness) -> None:
    async with ObservabilityServer(metrics, ready=readiness, port=0) as running:
        clash = ObservabilityServer(metrics, ready=readiness, port=running.port)
        with pytest.raises(OSError):
            await clash.start()
        with pytest.raises(RuntimeError, match="not started"):
            _ = clash.port


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = MetricsSettings()
    assert (defaults.enabled, defaults.host, defaults.port) == (True, "127.0.0.1", 8160)

    monkeypatch.setenv("METRICS_ENABLED", "false")
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("METRICS_PORT", "9464")
    monkeypatch.setenv("PORT", "1")  # only the documented names count
    settings = MetricsSettings()
    assert (settings.enabled, settings.host, settings.port) == (False, "0.0.0.0", 9464)

    monkeypatch.setenv("METRICS_PORT", "70000")
    with pytest.raises(ValueError):
        MetricsSettings()
