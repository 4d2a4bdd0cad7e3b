"""ObservabilityServer: the gateway's one HTTP server. `/metrics`, `/healthz` and `/readyz` for scrapers and
orchestrators; the call API (`/calls`, `/openapi.json`: voicelive_sip.call_api) and browser calls (`/whip`,
`/phone`: voicelive_sip.webrtc) when the gateway serves them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web

from voicelive_sip.config import MetricsSettings
from voicelive_sip.metrics import GatewayMetrics

from ._logger import get_logger

if TYPE_CHECKING:
    from .call_api import CallApi
    from .webrtc.server import BrowserCalls

__all__ = ["MetricsSettings", "ObservabilityServer", "ReadinessCheck"]

log = get_logger("voicelive_sip.http")

ReadinessCheck = Callable[[], tuple[bool, dict[str, object]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Only GETs without bodies are served (but POST /calls and /whip, which read their own bounded bodies), so a
# request needs nothing beyond its headers.
MAX_REQUEST_BYTES = 1024
MAX_LINE_BYTES = 1024
MAX_HEADER_FIELD_BYTES = 4096
MAX_HEADERS = 32
KEEPALIVE_TIMEOUT = 15.0
BACKLOG = 16
NO_STORE = {"Cache-Control": "no-store"}


def _json(status: int, body: dict[str, object]) -> web.Response:
    # default=str: a readiness detail that is not JSON (an enum, a path) still renders instead of failing.
    text = json.dumps(body, default=str, separators=(",", ":"))
    return web.Response(status=status, text=text, content_type="application/json", headers=NO_STORE)


@web.middleware
async def _refuse_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.body_exists and not (request.method == "POST" and request.path in ("/calls", "/whip")):
        return _json(413, {"error": "request bodies are not accepted"})
    return await handler(request)


class ObservabilityServer:
    """aiohttp server for Prometheus metrics, liveness and readiness of one gateway."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        ready: ReadinessCheck,
        host: str = "127.0.0.1",
        port: int = 9100,
        calls: CallApi | None = None,
        browser: BrowserCalls | None = None,
    ) -> None:
        self.metrics = metrics
        self.calls = calls
        self.browser = browser
        self.host = host
        self._ready = ready
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("ObservabilityServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. `http://127.0.0.1:9100`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen on `host`:`port`."""
        if self._runner is not None:
            raise RuntimeError("ObservabilityServer is already started")
        if self.calls is not None:
            self.calls.check_bind(self.host)  # no call API on a public address without a token
        if self.browser is not None:
            self.browser.check_bind(self.host)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_refuse_bodies])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.calls is not None:
            self.calls.add_routes(app)
        if self.browser is not None:
            self.browser.add_routes(app)
        runner = web.AppRunner(
            app,
            access_log=None,  # scrapes every few seconds would drown the call events
            keepalive_timeout=KEEPALIVE_TIMEOUT,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_HEADER_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            shutdown_timeout=1.0,  # scrapes are instant; never hold up the gateway's shutdown
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=BACKLOG)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner)
        log.info("http.listening", host=self.host, port=self._port)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self.browser is not None:
            await self.browser.close()
        await runner.cleanup()
        log.info("http.stopped", host=self.host, port=self._port)
        self._port = None

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _metrics(self, request: web.Request) -> web.Response:
        payload, content_type = self.metrics.render()
        return web.Response(body=payload, headers={"Content-Type": content_type, **NO_STORE})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            ready, details = self._ready()
        except Exception as error:
            # A broken check means "not ready", never a 500 that an orchestrator might read differently.
            log.exception("http.readiness_check_failed")
            return _json(503, {"error": type(error).__name__})
        return _json(200 if ready else 503, dict(details))


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    raise RuntimeError("the HTTP server has no bound TCP address")
