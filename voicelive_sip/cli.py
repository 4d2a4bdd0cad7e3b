"""`voicelive-sip`: serve calls, place one, run the self-contained demo, or check a configuration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .aio.tls import TlsSetupError
from .config import ConfigError, Settings, VoiceLiveSettings, load_settings
from .testing.fake_voicelive import FakeVoiceLive

EXAMPLES = """\
examples:
  voicelive-sip demo                          a whole call on loopback: no account, no network
  voicelive-sip serve --fake-voicelive        answer real SIP calls with the bundled fake Voice Live
  AZURE_VOICELIVE_ENDPOINT=https://my-resource.cognitiveservices.azure.com \\
  AZURE_VOICELIVE_API_KEY=... voicelive-sip serve
  voicelive-sip call sip:+15550100@pbx.example.com
  voicelive-sip check                         validate settings, try Voice Live and registration

Settings come from the environment and a .env file; see the configuration reference in docs/.
"""
_ENTRA_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "AZURE_USERNAME",
)


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
    serve = commands.add_parser("serve", parents=[logging], help="answer calls and bridge each to Voice Live")
    serve.add_argument(
        "--fake-voicelive", action="store_true", help="use the bundled FakeVoiceLive, not Azure"
    )
    serve.add_argument(
        "--gc-freeze",
        action="store_true",
        help="after start-up, move every object so far out of the garbage collector's full passes "
        "(gc.freeze): shorter collector pauses under many calls",
    )
    call = commands.add_parser("call", parents=[logging], help="place an outbound call bridged to Voice Live")
    call.add_argument("uri", help="whom to call: a SIP URI, or a number/user sent to SIP_SERVER")
    call.add_argument(
        "--fake-voicelive", action="store_true", help="use the bundled FakeVoiceLive, not Azure"
    )
    demo = commands.add_parser("demo", help="run a self-contained call on loopback (no account, no network)")
    demo.add_argument("--output", default="voicelive-sip-demo", help="folder for the recording and timeline")
    commands.add_parser(
        "check",
        parents=[logging],
        help="validate settings, try the Voice Live handshake and SIP registration",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(Path(args.output))
        settings = load_settings()
        fake = bool(getattr(args, "fake_voicelive", False))
        if not fake:
            _require_voicelive_credentials(settings.voicelive)
        if args.log_format:
            settings.logging.format = args.log_format
        if args.log_level:
            settings.logging.level = args.log_level
        _configure_logging(settings)
        if args.command == "serve":
            return _run(_serve(settings, fake, gc_freeze=args.gc_freeze))
        if args.command == "call":
            return _run(_call(settings, args.uri, fake))
        return _run(_check(settings))
    except (ConfigError, TlsSetupError) as error:  # TLS files are read when the listener starts
        print("voicelive-sip: invalid configuration", file=sys.stderr)
        for problem in error.problems if isinstance(error, ConfigError) else [str(error)]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(main: Coroutine[Any, Any, int]) -> int:
    """uvloop when installed (`pip install voicelive-sip[fast]`): less CPU and steadier media timing."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def _require_voicelive_credentials(settings: VoiceLiveSettings) -> None:
    problems = []
    default_endpoint = VoiceLiveSettings.model_fields["endpoint"].default
    if settings.endpoint == default_endpoint:
        problems.append(
            "AZURE_VOICELIVE_ENDPOINT: not set (e.g. https://<resource>.cognitiveservices.azure.com); "
            "or run with --fake-voicelive to try without Azure"
        )
    entra = any(os.environ.get(name) for name in _ENTRA_VARIABLES) or (Path.home() / ".azure").is_dir()
    if settings.api_key is None and not entra:
        problems.append(
            "AZURE_VOICELIVE_API_KEY: not set, and no Microsoft Entra ID found (AZURE_CLIENT_ID/"
            "AZURE_TENANT_ID, a managed identity, or `az login`); set one, or run with --fake-voicelive"
        )
    if problems:
        raise ConfigError(problems)


def _configure_logging(settings: Settings) -> None:
    settings.logging.configure()


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _with_fake(settings: Settings) -> FakeVoiceLive:
    """Start a FakeVoiceLive and point the settings at it; returns the running fake."""
    fake = FakeVoiceLive(voice="speech" if shutil.which("espeak-ng") else "tone", pace=1.0)
    await fake.start()
    # What the user configured stays (instructions, voice, VAD...); only where and how to connect changes.
    keep = settings.voicelive.model_dump(exclude={"endpoint", "api_key"})
    settings.voicelive = fake.settings(**keep)
    _status(f"  FakeVoiceLive on {fake.endpoint} (replies are scripted: a tone or espeak-ng speech)")
    return fake


async def _serve(settings: Settings, fake: bool, *, gc_freeze: bool = False) -> int:
    from .gateway import Gateway

    running_fake = await _with_fake(settings) if fake else None
    gateway = Gateway(settings)
    _status("voicelive-sip: starting ...")
    await gateway.start()
    if gc_freeze:
        # What start-up built lives as long as the process: the collector's full passes need not walk it,
        # which otherwise stalls the media clock (a 76 ms pause was measured at 100 calls).
        gc.freeze()
    observability = None
    if settings.metrics.enabled:
        from .http import ObservabilityServer

        observability = ObservabilityServer(
            gateway.metrics, ready=gateway.readiness, host=settings.metrics.host, port=settings.metrics.port
        )
        await observability.start()
        _status(f"voicelive-sip: metrics and health on {observability.url}/metrics, /healthz, /readyz")
    loop = asyncio.get_running_loop()
    stops = 0

    pending: set[asyncio.Task[None]] = set()  # the loop only keeps weak references to tasks

    def on_signal() -> None:
        nonlocal stops
        stops += 1
        if stops == 1:
            limit = settings.gateway.drain_timeout
            _status(f"voicelive-sip: draining (up to {limit:g} s); signal again to stop now")
            job = loop.create_task(gateway.drain())
        else:
            job = loop.create_task(gateway.stop())
        pending.add(job)
        job.add_done_callback(pending.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    host, port = gateway.ua.address
    transports = "+".join(t.lower() for t in settings.sip.transports)
    _status(
        f"voicelive-sip: answering on {transports} {host}:{port}, Voice Live {settings.voicelive.endpoint}"
    )
    _status("voicelive-sip: Ctrl-C (SIGTERM) drains calls and stops")
    try:
        await gateway.serve()
    finally:
        if observability is not None:
            await observability.stop()
        if running_fake is not None:
            await running_fake.stop()
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


async def _call(settings: Settings, uri: str, fake: bool) -> int:
    from .aio import CallFailed
    from .gateway import Gateway

    running_fake = await _with_fake(settings) if fake else None
    # The operator named this target on the command line: it is allowed for this run (GATEWAY_OUTBOUND_ALLOWED
    # guards what applications and models dial).
    pattern = _operator_pattern(uri, settings)
    if pattern is not None:
        settings.gateway.outbound_allowed = [*settings.gateway.outbound_allowed, pattern]
    try:
        async with Gateway(settings) as gateway:
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
            await session.call.wait_ended()
            while not gateway.summaries:
                await asyncio.sleep(0.05)
            summary = gateway.summaries[-1]
            _status(f"voicelive-sip: call ended ({summary.end_reason}) after {summary.duration_s:.1f} s")
            for _, role, text in summary.transcript:
                _status(f"  {role}: {text}")
    finally:
        if running_fake is not None:
            await running_fake.stop()
    return 0


async def _check(settings: Settings) -> int:
    from .aio import RegistrationFailed, UserAgent, advertised_address_problems
    from .voicelive import VoiceLiveError, VoiceLiveSession

    ok = True
    _status("✓ configuration is valid")
    for problem in advertised_address_problems(settings.sip.agent_options(settings.media)):
        _status(f"⚠ {problem}")
    _status(f"… Voice Live handshake with {settings.voicelive.endpoint}")
    try:
        async with VoiceLiveSession(settings.voicelive):
            pass
        _status("✓ Voice Live accepted the connection and the session settings")
    except VoiceLiveError as error:
        ok = False
        _status(f"✗ Voice Live: {error}")
    _status(f"… binding SIP on {settings.sip.local_address}:{settings.sip.port}")
    try:
        async with UserAgent(settings.sip, settings.media) as ua:
            _status(f"✓ SIP listening on {ua.address[0]}:{ua.address[1]}")
            if settings.sip.register_enabled:
                _status(f"… registering {settings.sip.user} with {settings.sip.server}")
                registration = ua.register()
                try:
                    await registration.wait_registered(timeout=15)
                    _status(f"✓ registered for {registration.expires} s")
                except RegistrationFailed as error:
                    ok = False
                    _status(f"✗ registration: {error}")
            else:
                _status("- registration not configured (REGISTER_WITH_SIP_SERVER=false)")
    except OSError as error:
        ok = False
        _status(f"✗ SIP: cannot bind: {error}")
    return 0 if ok else 1


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
