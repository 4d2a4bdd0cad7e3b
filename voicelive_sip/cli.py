"""`voicelive-sip`: serve calls, place one, run the self-contained demo, or check a configuration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import importlib
import inspect
import os
import shutil
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .aio.tls import TlsSetupError
from .config import ConfigError, Settings, StartupError, load_settings, voicelive_problems
from .testing.fake_voicelive import FakeVoiceLive

if TYPE_CHECKING:
    from .gateway import Gateway

EXAMPLES = """\
examples:
  voicelive-sip demo                          a whole call on loopback: no account, no network
  voicelive-sip serve --fake-voicelive        answer real SIP calls with the bundled fake Voice Live
  voicelive-sip serve --app myagent:tools --env-file prod.env
                                              your own @tool functions (or Gateway, or a factory)
  AZURE_VOICELIVE_ENDPOINT=https://my-resource.cognitiveservices.azure.com \\
  AZURE_VOICELIVE_API_KEY=... voicelive-sip serve
  voicelive-sip call sip:+15550100@pbx.example.com
  voicelive-sip check                         validate settings, try Voice Live and registration
  GATEWAY_PROFILES_FILE=profiles.toml voicelive-sip check --app myagent:tools
                                              also validate the agent profiles, print the routing table

Settings come from the environment, a .env file in the working directory, or --env-file; see the
configuration reference in docs/. Exit status: 0 done, 1 a check or call failed, 2 settings to fix.
SIGHUP makes `serve` read GATEWAY_PROFILES_FILE again (a file that does not load keeps the old profiles).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicelive-sip",
        description="Bridge SIP phone calls to Azure AI Voice Live.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voicelive-sip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    logging = argparse.ArgumentParser(add_help=False)
    logging.add_argument("--log-format", choices=["auto", "console", "json"], help="overrides LOG_FORMAT")
    logging.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides LOG_LEVEL"
    )
    logging.add_argument(
        "--env-file",
        metavar="PATH",
        help="read settings from this file (KEY=value lines, as .env); variables already set win",
    )
    app = argparse.ArgumentParser(add_help=False)
    app.add_argument(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="your application: a Gateway, a function returning one (given the Settings if it takes an "
        "argument), or a list of @tool functions; MODULE is imported from the working directory",
    )
    serve = commands.add_parser(
        "serve", parents=[logging, app], help="answer calls and bridge each to Voice Live"
    )
    serve.add_argument(
        "--fake-voicelive", action="store_true", help="use the bundled FakeVoiceLive, not Azure"
    )
    serve.add_argument(
        "--gc-freeze",
        action="store_true",
        help="after start-up, move every object so far out of the garbage collector's full passes "
        "(gc.freeze): shorter collector pauses under many calls",
    )
    call = commands.add_parser(
        "call", parents=[logging, app], help="place an outbound call bridged to Voice Live"
    )
    call.add_argument("uri", help="whom to call: a SIP URI, or a number/user sent to SIP_SERVER")
    call.add_argument(
        "--fake-voicelive", action="store_true", help="use the bundled FakeVoiceLive, not Azure"
    )
    demo = commands.add_parser("demo", help="run a self-contained call on loopback (no account, no network)")
    demo.add_argument("--output", default="voicelive-sip-demo", help="folder for the recording and timeline")
    demo.add_argument(
        "--browser",
        action="store_true",
        help="instead of the loopback call, serve the browser phone (/phone) with the fake Voice Live and "
        "print its URL; Ctrl-C stops",
    )
    check = commands.add_parser(
        "check",
        parents=[logging, app],
        help="validate settings, try the Voice Live handshake, every port it would bind, and registration",
    )
    check.add_argument(
        "--fake-voicelive", action="store_true", help="try the bundled FakeVoiceLive, not Azure"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo" and args.browser:
            settings = load_settings()
            settings.logging.configure()
            return _run(_serve(settings, True, browser_url=True))
        if args.command == "demo":
            return _demo(Path(args.output))
        if args.env_file:
            _export_env_file(Path(args.env_file))
        settings = load_settings()
        fake = bool(getattr(args, "fake_voicelive", False))
        if args.command == "check" and args.log_level is None:
            args.log_level = "WARNING"  # the checklist is the output; only problems are logged beside it
        if args.log_format:
            settings.logging.format = args.log_format
        if args.log_level:
            settings.logging.level = args.log_level
        if args.command == "check":
            settings.logging.configure()
            return _run(_check(settings, fake, app=args.app))
        if not fake and not getattr(args, "app", None):
            problems = voicelive_problems(settings.voicelive)
            if problems:
                raise ConfigError(problems)
        settings.logging.configure()
        if args.command == "serve":
            return _run(_serve(settings, fake, app=args.app, gc_freeze=args.gc_freeze))
        return _run(_call(settings, args.uri, fake, app=args.app))
    except StartupError as error:
        _status("voicelive-sip: cannot start")
        for problem in error.problems:
            _status(f"  {problem}")
        return 2
    except (ConfigError, TlsSetupError) as error:  # TLS files are read when the listener starts
        _status("voicelive-sip: invalid configuration")
        for problem in error.problems if isinstance(error, ConfigError) else [str(error)]:
            _status(f"  {problem}")
        return 2
    except KeyboardInterrupt:
        return 130


def _export_env_file(path: Path) -> None:
    """Put the file's settings into the environment, where the application's own `Settings()` reads them
    too; variables already set win (as `docker run --env-file` and systemd's EnvironmentFile= do not, but
    as a `.env` file does)."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise ConfigError([f"--env-file: {path} is not a readable file"])
    for key, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(key, value)


def _load_app(spec: str, settings: Settings) -> Gateway:
    """`module:attribute` as a Gateway: a Gateway, a factory returning one, or tools to serve."""
    from .gateway import Gateway
    from .voicelive.tools import Tool

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError([f"--app: {spec!r} is not MODULE:ATTRIBUTE (e.g. myagent:tools)"])
    sys.path.insert(0, os.getcwd())  # as `python -m` would: the application lives beside the operator
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError([f"--app: cannot import {module_name} ({error})"]) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError([f"--app: {module_name} has no attribute {attribute}"])
        target = getattr(target, part)
    if callable(target) and not isinstance(target, Tool | Gateway):
        target = target(settings) if inspect.signature(target).parameters else target()
    if isinstance(target, Tool):
        target = [target]
    if isinstance(target, Gateway):
        return target
    if isinstance(target, list | tuple) and all(isinstance(item, Tool) for item in target):
        return Gateway(settings, tools=list(target))
    raise ConfigError(
        [f"--app: {spec} is a {type(target).__name__}; expected a Gateway, a factory or a list of @tool"]
    )


def _run(main: Coroutine[Any, Any, int]) -> int:
    """uvloop when installed (`pip install voicelive-sip[fast]`): less CPU and steadier media timing."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _with_fake(settings: Settings, *, say: bool = True) -> FakeVoiceLive:
    """Start a FakeVoiceLive and point the settings at it; returns the running fake."""
    fake = FakeVoiceLive(voice="speech" if shutil.which("espeak-ng") else "tone", pace=1.0)
    await fake.start()
    # What the user configured stays (instructions, voice, VAD...); only where and how to connect changes.
    keep = settings.voicelive.model_dump(exclude={"endpoint", "api_key"})
    settings.voicelive = fake.settings(**keep)
    if say:
        _status(f"  FakeVoiceLive on {fake.endpoint} (replies are scripted: a tone or espeak-ng speech)")
    return fake


async def _gateway(settings: Settings, app: str | None, fake: FakeVoiceLive | None) -> Gateway:
    from .gateway import Gateway

    gateway = _load_app(app, settings) if app else Gateway(settings)
    if fake is not None and gateway.settings is not settings:
        gateway.settings.voicelive = settings.voicelive  # the application's own settings, pointed at the fake
    if fake is not None and gateway.credential is None and _agents_possible(gateway.settings):
        gateway.credential = fake.token_credential()  # Foundry agent sessions take Entra ID tokens only
    return gateway


def _agents_possible(settings: Settings) -> bool:
    return settings.voicelive.is_agent or bool(settings.gateway.profiles_file)


async def _metrics_server(gateway: Gateway) -> Any:
    from .http import ObservabilityServer

    metrics = gateway.settings.metrics
    server = ObservabilityServer(
        gateway.metrics,
        ready=gateway.readiness,
        host=metrics.host,
        port=metrics.port,
        calls=_call_api(gateway),
        browser=_browser_calls(gateway),
    )
    try:
        await server.start()
    except OSError as error:
        reason = _bind_reason(error)
        raise StartupError(
            [f"METRICS_PORT: cannot listen on {metrics.host}:{metrics.port} ({reason}); pick another port "
             "or METRICS_ENABLED=false"]
        ) from None  # fmt: skip
    return server


def _http_token(settings: Settings) -> str | None:
    """HTTP_AUTH_TOKEN: one token for every HTTP API of the gateway."""
    token = settings.metrics.auth_token or settings.outbound.auth_token
    return token.get_secret_value() if token is not None else None


def _browser_calls(gateway: Gateway) -> Any:
    """Browser calls (WEBRTC_ENABLED) on this gateway's HTTP server, or None."""
    if not gateway.settings.webrtc.enabled:
        return None
    from .webrtc.server import BrowserCalls

    return BrowserCalls(gateway, gateway.settings.webrtc, token=_http_token(gateway.settings))


def _call_api(gateway: Gateway) -> Any:
    """The call API (OUTBOUND_API_ENABLED) on this gateway, or None."""
    outbound = gateway.settings.outbound
    if not outbound.api_enabled:
        return None
    from .call_api import CallApi
    from .dialer import Dialer

    return CallApi(Dialer(gateway, outbound), token=_http_token(gateway.settings))


async def _serve(
    settings: Settings,
    fake: bool,
    *,
    app: str | None = None,
    gc_freeze: bool = False,
    browser_url: bool = False,
) -> int:
    if settings.webrtc.enabled is None:
        settings.webrtc.enabled = fake  # browser calls come with the fake: a try-out; with Azure, on request
    running_fake = await _with_fake(settings) if fake else None
    try:
        gateway = await _gateway(settings, app, running_fake)
        if gateway.settings.webrtc.enabled is None:
            gateway.settings.webrtc.enabled = settings.webrtc.enabled
        return await _serve_gateway(gateway, gc_freeze=gc_freeze, browser_url=browser_url)
    finally:
        if running_fake is not None:
            await running_fake.stop()


async def _serve_gateway(gateway: Gateway, *, gc_freeze: bool, browser_url: bool = False) -> int:
    settings = gateway.settings
    loop = asyncio.get_running_loop()
    stops = 0
    starting = True  # a signal while starting is acted on once the gateway is up
    pending: set[asyncio.Task[None]] = set()  # the loop only keeps weak references to tasks

    def on_signal() -> None:
        nonlocal stops
        stops += 1
        if starting:
            return
        if stops == 1:
            limit = settings.gateway.drain_timeout
            _status(f"voicelive-sip: draining (up to {limit:g} s); signal again to stop now")
            job = loop.create_task(gateway.drain())
        else:
            job = loop.create_task(gateway.stop())
        pending.add(job)
        job.add_done_callback(pending.discard)

    def on_hangup() -> None:
        if not settings.gateway.profiles_file:
            _status("voicelive-sip: SIGHUP: no GATEWAY_PROFILES_FILE to read again")
        elif gateway.reload_profiles():
            _status(f"voicelive-sip: profiles read again from {settings.gateway.profiles_file}")
        else:
            _status("voicelive-sip: the profiles file did not load; the profiles in use stay (see the log)")

    # Before anything answers (SIP, HTTP): a supervisor that sees the gateway up may stop it at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    _status("voicelive-sip: starting ...")
    await gateway.start()
    if gc_freeze:
        # What start-up built lives as long as the process: the collector's full passes need not walk it,
        # which otherwise stalls the media clock (a 76 ms pause was measured at 100 calls).
        gc.freeze()
    observability = None
    if settings.outbound.api_enabled and not settings.metrics.enabled:
        await gateway.stop()
        raise StartupError(
            ["OUTBOUND_API_ENABLED: the call API is on the HTTP server, but METRICS_ENABLED=false"]
        )
    if settings.metrics.enabled:
        try:
            observability = await _metrics_server(gateway)
        except StartupError:
            await gateway.stop()
            raise
        _status(f"voicelive-sip: metrics and health on {observability.url}/metrics, /healthz, /readyz")
        if observability.calls is not None:
            _status(f"voicelive-sip: call API on {observability.url}/calls (described at /openapi.json)")
        if observability.browser is not None:
            _status(f"voicelive-sip: browser phone on {observability.url}/phone (WHIP at /whip)")
            if browser_url:
                print(f"Open {observability.url}/phone in a browser to talk to the agent.", flush=True)
    if browser_url and observability is None:
        await gateway.stop()
        raise StartupError(["METRICS_ENABLED: the browser phone is on the HTTP server, but it is off"])
    starting = False
    for _ in range(min(stops, 2)):  # signals that came while starting
        stops -= 1
        on_signal()
    host, port = gateway.ua.address
    transports = "+".join(t.lower() for t in settings.sip.transports)
    _status(
        f"voicelive-sip: answering on {transports} {host}:{port}, "
        f"Voice Live {settings.voicelive.endpoint_display}"
    )
    _status("voicelive-sip: Ctrl-C (SIGTERM) drains calls and stops")
    try:
        await gateway.serve()
    finally:
        if observability is not None:
            if observability.calls is not None:
                await observability.calls.dialer.close()
            await observability.stop()
    _status("voicelive-sip: stopped")
    return 0


def _operator_pattern(target: str, settings: Settings) -> str | None:
    """An outbound pattern allowing exactly `target` (its user at its host and port; parameters dropped)."""
    from .aio.resolve import target_uri
    from .errors import LocalProtocolError, SipParseError
    from .sip.uri import SipUri

    try:
        uri = target_uri(target, settings.sip.server)
    except (LocalProtocolError, SipParseError):
        return None  # Gateway.call() refuses it with its reason
    if not isinstance(uri, SipUri):
        return str(uri)
    scheme = "sips" if uri.secure else "sip"
    port = f":{uri.port}" if uri.port else ""
    return f"{scheme}:{uri.user or '*'}@{uri.host}{port}"


async def _call(settings: Settings, uri: str, fake: bool, *, app: str | None = None) -> int:
    from .aio import CallFailed

    running_fake = await _with_fake(settings) if fake else None
    try:
        gateway = await _gateway(settings, app, running_fake)
        # The operator named this target on the command line: it is allowed for this run
        # (GATEWAY_OUTBOUND_ALLOWED guards what applications and models dial).
        pattern = _operator_pattern(uri, gateway.settings)
        if pattern is not None:
            allowed = gateway.settings.gateway.outbound_allowed
            gateway.settings.gateway.outbound_allowed = [*allowed, pattern]
        async with gateway:
            _status(f"voicelive-sip: calling {uri} ...")
            try:
                session = await gateway.call(uri)
            except CallFailed as error:
                _status(f"voicelive-sip: the call failed: {error.status_code} {error.reason}")
                return 1
            _status("voicelive-sip: answered, bridged to Voice Live; Ctrl-C hangs up")
            loop = asyncio.get_running_loop()
            hangups: list[asyncio.Task[None]] = []
            loop.add_signal_handler(signal.SIGINT, lambda: hangups.append(loop.create_task(session.hangup())))
            summary = await session.wait_ended()
            _status(f"voicelive-sip: call ended ({summary.end_reason}) after {summary.duration_s:.1f} s")
            for line in summary.transcript:
                _status(f"  {line.role}: {line.text}" + (" [interrupted]" if line.interrupted else ""))
            if summary.turn_latency_p50_ms is not None:
                _status(
                    f"  turn latency p50 {summary.turn_latency_p50_ms:.0f} ms, "
                    f"p95 {summary.turn_latency_p95_ms:.0f} ms over {len(summary.turns)} turns"
                )
    finally:
        if running_fake is not None:
            await running_fake.stop()
    return 0


def _bind_reason(error: OSError) -> str:
    # uvloop raises a plain OSError("could not bind ...") whose cause carries the errno.
    cause = error.__cause__ if error.errno is None and isinstance(error.__cause__, OSError) else error
    return "in use by another process" if cause.errno == errno.EADDRINUSE else (cause.strerror or str(cause))


def _say(text: str) -> None:
    print(text, flush=True)  # the checklist is the command's output: stdout, apart from any log lines


async def _check(settings: Settings, fake: bool, *, app: str | None = None) -> int:
    from .aio import RegistrationFailed, UserAgent, advertised_address_problems
    from .aio.transport import BindFailed
    from .gateway import _bind_problem, _recording_dir_problems

    _say("✓ configuration is valid")
    running_fake = await _with_fake(settings, say=False) if fake else None
    try:
        credential = running_fake.token_credential() if running_fake is not None else None
        if not _check_profiles(settings, app, credential):
            return 2
        problems = voicelive_problems(settings.voicelive, credential=credential)
        if problems:
            for problem in problems:
                _say(f"✗ {problem}")
            return 2
        ok = await _check_voicelive(settings, credential)
    finally:
        if running_fake is not None:
            await running_fake.stop()
    for problem in advertised_address_problems(settings.sip.agent_options(settings.media)):
        _say(f"⚠ {problem}")
    for problem in _recording_dir_problems(settings.gateway.recording_dir):
        ok = False
        _say(f"✗ {problem}")
    sip = settings.sip
    _say(f"… binding SIP on {sip.local_address}:{sip.port}")
    try:
        async with UserAgent(sip, settings.media) as ua:
            tls = f", TLS {ua.tls_address[0]}:{ua.tls_address[1]}" if ua.tls_address else ""
            _say(f"✓ SIP listening on {ua.address[0]}:{ua.address[1]}{tls}")
            ok = await _check_media(settings) and ok
            ok = await _check_metrics(settings) and ok
            if sip.register_enabled:
                _say(f"… registering {ua.aor} with {sip.server}")
                registration = ua.register()
                try:
                    await registration.wait_registered(timeout=15)
                    _say(f"✓ registered for {registration.expires} s")
                except RegistrationFailed as error:
                    ok = False
                    _say(f"✗ registration: {error}")
            else:
                _say("- registration not configured (REGISTER_WITH_SIP_SERVER=false)")
    except BindFailed as error:
        ok = False
        _say(f"✗ {_bind_problem(sip, error)}")
    except TlsSetupError as error:
        ok = False
        _say(f"✗ {error}")
    return 0 if ok else 1


def _check_profiles(settings: Settings, app: str | None, credential: Any) -> bool:
    """Validate GATEWAY_PROFILES_FILE (tools against --app's) and print the routing table."""
    from .config import agent_problems
    from .profiles import ProfileError, load_profiles

    path = settings.gateway.profiles_file
    if not path:
        return True
    tools = {t.name: t for t in _load_app(app, settings).tools} if app else None
    try:
        profiles = load_profiles(path)
        resolved = profiles.resolve(settings, tools)
        problems = [
            problem
            for name, chosen in resolved.items()
            for problem in agent_problems(
                chosen.settings.voicelive, credential=credential, where=f"profile {name!r}: "
            )
        ]
        if problems:
            raise ProfileError(problems)
    except ProfileError as error:
        for problem in error.problems:
            _say(f"✗ GATEWAY_PROFILES_FILE: {problem}")
        return False
    _say(f"✓ profiles file {path}: {len(resolved)} profiles")
    for name, chosen in resolved.items():
        v = chosen.settings.voicelive
        runs_on = f"agent {v.agent_name} ({v.agent_project})" if v.is_agent else f"model {v.model}"
        names = ", ".join(t.name for t in chosen.tools) or "none"
        unchecked = [t for t in chosen.profile.tools if isinstance(t, str) and ":" not in t and tools is None]
        if unchecked:
            names = ", ".join([*(t.name for t in chosen.tools), *unchecked])
        _say(f"    {name}: {runs_on}, voice {v.voice}, tools {names}")
    _say("  routing (first match wins):")
    for line in profiles.table():
        _say(f"    {line}")
    if tools is None and any(
        isinstance(t, str) and ":" not in t for p in profiles.profiles.values() for t in p.tools
    ):
        _say("⚠ tools named without module:attribute are checked with --app (your @tool functions)")
    return True


async def _check_voicelive(settings: Settings, credential: Any = None) -> bool:
    from .voicelive import VoiceLiveError, VoiceLiveSession

    _say(f"… Voice Live handshake with {settings.voicelive.endpoint_display}")
    try:
        async with VoiceLiveSession(settings.voicelive, credential=credential):
            pass
    except VoiceLiveError as error:
        _say(f"✗ Voice Live: {error}")
        return False
    _say("✓ Voice Live accepted the connection and the session settings")
    return True


async def _check_media(settings: Settings) -> bool:
    from .rtp.session import PortPool, RtpSession

    media = settings.media
    last = media.port + media.port_count - 1
    try:
        pool = PortPool(media.address, media.port, media.port_count)
        rtp = await RtpSession.open(pool)
    except (OSError, ValueError) as error:
        _say(f"✗ MEDIA_PORT: no RTP port pair free in {media.address}:{media.port}-{last} ({error})")
        return False
    rtp.close()
    _say(f"✓ RTP ports bind on {media.address}:{media.port}-{last}")
    return True


async def _check_metrics(settings: Settings) -> bool:
    from .http import ObservabilityServer
    from .metrics import GatewayMetrics

    metrics = settings.metrics
    if not metrics.enabled:
        _say("- metrics off (METRICS_ENABLED=false)")
        return True
    server = ObservabilityServer(
        GatewayMetrics(), ready=lambda: (True, {}), host=metrics.host, port=metrics.port
    )
    try:
        await server.start()
    except OSError as error:
        reason = _bind_reason(error)
        _say(f"✗ METRICS_PORT: cannot listen on {metrics.host}:{metrics.port} ({reason})")
        return False
    await server.stop()
    _say(f"✓ metrics port free: {metrics.host}:{metrics.port}")
    return True


def _demo(output: Path) -> int:
    import logging

    import structlog

    from .demo import run

    # The demo prints its own readable story; only problems are logged.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(run(output))
        return 0 if result.summary.end_reason else 1
    return 130


if __name__ == "__main__":
    sys.exit(main())
