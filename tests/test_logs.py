"""Logging: JSON lines or console, stdlib routed through structlog, call context, secrets never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from voicelive_sip.logs import LoggingSettings, bind_call_context, configure_logging, is_secret_key

SECRET = "s3cr3t-value-never-logged"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide settings: put them back so other tests see what they expect."""
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_noisy = {name: logging.getLogger(name).level for name in ("aiohttp", "azure")}
    yield
    for handler in [h for h in root.handlers if h not in saved_handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(saved_level)
    for name, level in saved_noisy.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()
    structlog.configure(**saved_structlog)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    structlog.get_logger("voicelive_sip.sip.ua").info("sip.incoming_call", remote="10.0.0.7:5060", status=180)

    [event] = lines(out)
    assert event["event"] == "sip.incoming_call"
    assert event["level"] == "info"
    assert event["logger"] == "voicelive_sip.sip.ua"
    assert (event["remote"], event["status"]) == ("10.0.0.7:5060", 180)
    stamp = datetime.fromisoformat(event["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_console_on_a_terminal_and_when_asked() -> None:
    tty = Terminal()
    configure_logging(stream=tty)
    structlog.get_logger("t").info("voicelive.connected", model="gpt-4o")
    text = tty.getvalue()
    assert "voicelive.connected" in text and "gpt-4o" in text
    assert "\x1b[" in text  # coloured for a person at a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)

    plain = io.StringIO()
    configure_logging(json=False, stream=plain)
    structlog.get_logger("t").warning("media.underrun", call_id="c1")
    text = plain.getvalue()
    assert "media.underrun" in text and "call_id=c1" in text and "warning" in text
    assert "\x1b[" not in text  # no escape codes in a file or pipe

    forced = Terminal()
    configure_logging(json=True, stream=forced)
    structlog.get_logger("t").info("media.underrun")
    assert lines(forced)[0]["event"] == "media.underrun"


def test_levels_filter_ours_and_stdlib_and_quiet_aiohttp_unless_debug() -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    structlog.get_logger("t").debug("sip.retransmit")
    logging.getLogger("aiohttp.client").info("chatty")
    logging.getLogger("azure.identity").info("chatty")
    logging.getLogger("asyncio").warning("slow callback %s", "x")
    logging.getLogger("aiohttp.client").warning("connection lost")
    assert [(e["logger"], e["event"]) for e in lines(out)] == [
        ("asyncio", "slow callback x"),
        ("aiohttp.client", "connection lost"),
    ]

    out = io.StringIO()
    configure_logging("debug", stream=out)
    structlog.get_logger("t").debug("sip.retransmit")
    logging.getLogger("aiohttp.client").debug("chatty")
    assert [e["event"] for e in lines(out)] == ["sip.retransmit", "chatty"]

    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD")


def test_configuring_twice_replaces_instead_of_duplicating() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)
    structlog.get_logger("t").info("gateway.started")
    logging.getLogger("other").error("stdlib too")
    assert first.getvalue() == ""
    assert [e["event"] for e in lines(second)] == ["gateway.started", "stdlib too"]


def test_secrets_are_redacted_wherever_they_appear() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    log = structlog.get_logger("t")
    log.info(
        "voicelive.connecting",
        api_key=SECRET,
        password=SECRET,
        accessToken=SECRET,
        client_secret=SECRET,
        headers={"Authorization": f"Bearer {SECRET}", "User-Agent": "voicelive-sip"},
        accounts=[{"user": "alice", "sip_password": SECRET}],
        input_tokens=120,
        output_tokens=80,
    )
    with bind_call_context(call_id="c1", token=SECRET):
        log.info("call.answered")
    logging.getLogger("azure.core").warning("auth failed", extra={"x_api_key": SECRET})

    text = out.getvalue()
    assert SECRET not in text
    first, second, third = lines(out)
    assert first["api_key"] == first["password"] == first["accessToken"] == "[redacted]"
    assert first["headers"] == {"Authorization": "[redacted]", "User-Agent": "voicelive-sip"}
    assert first["accounts"] == [{"user": "alice", "sip_password": "[redacted]"}]
    assert (first["input_tokens"], first["output_tokens"]) == (120, 80)  # usage counts are not credentials
    assert (second["call_id"], second["token"]) == ("c1", "[redacted]")
    assert (third["event"], third["x_api_key"]) == ("auth failed", "[redacted]")


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True),
        ("apiKey", True),
        ("X-API-KEY", True),
        ("password", True),
        ("Proxy-Authorization", True),
        ("refresh_token", True),
        ("client_secret", True),
        ("input_tokens", False),
        ("call_id", False),
        ("keyframe", False),
        ("remote", False),
    ],
)
def test_what_counts_as_a_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


async def test_call_context_follows_each_call_and_stays_there() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    log = structlog.get_logger("voicelive_sip.bridge")

    async def call(call_id: str, remote: tuple[str, int]) -> None:
        with bind_call_context(call_id=call_id, remote=remote):
            log.info("call.started")
            await asyncio.sleep(0)  # interleave the two calls
            logging.getLogger("aiohttp.client").warning("ws closed")
            log.info("call.ended")

    await asyncio.gather(call("a@host", ("192.0.2.1", 5060)), call("b@host", ("2001:db8::1", 5062)))
    log.info("gateway.idle")

    events = lines(out)
    by_call: dict[str | None, list[tuple[str, str | None]]] = {}
    for event in events:
        by_call.setdefault(event.get("call_id"), []).append((event["event"], event.get("remote")))
    assert by_call["a@host"] == [(e, "192.0.2.1:5060") for e in ("call.started", "ws closed", "call.ended")]
    assert by_call["b@host"] == [
        (e, "[2001:db8::1]:5062") for e in ("call.started", "ws closed", "call.ended")
    ]
    assert by_call[None] == [("gateway.idle", None)]


def test_log_file_gets_json_lines_appended(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    path.write_text('{"event": "earlier run"}\n')
    console = Terminal()
    configure_logging(stream=console, log_file=str(path))
    structlog.get_logger("t").info("gateway.started", password=SECRET)
    configure_logging(stream=console, log_file=str(path))  # reopening appends, and closes the old handle
    structlog.get_logger("t").info("gateway.stopped")

    assert "gateway.started" in console.getvalue()  # the console stays pretty
    written = path.read_text()
    assert SECRET not in written
    events = [json.loads(line) for line in written.splitlines()]
    assert [e["event"] for e in events] == ["earlier run", "gateway.started", "gateway.stopped"]
    assert events[1]["password"] == "[redacted]" and events[1]["timestamp"].endswith("Z")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "calls.log"
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    monkeypatch.setenv("VOICE_LIVE_LOG_FILE", str(path))
    for unrelated in ("LEVEL", "FORMAT", "FILE"):  # only the documented names count
        monkeypatch.setenv(unrelated, "ERROR")
    settings = LoggingSettings()
    assert (settings.level, settings.format, settings.file) == ("DEBUG", "json", str(path))

    tty = Terminal()
    settings.configure(stream=tty)
    structlog.get_logger("t").debug("sip.retransmit")
    assert lines(tty)[0]["event"] == "sip.retransmit"  # json even on a terminal
    assert json.loads(path.read_text())["event"] == "sip.retransmit"

    for name in ("LOG_LEVEL", "LOG_FORMAT", "VOICE_LIVE_LOG_FILE"):
        monkeypatch.delenv(name)
    defaults = LoggingSettings()
    assert (defaults.level, defaults.format, defaults.file) == ("INFO", "auto", None)
    assert LoggingSettings(level="WARNING").level == "WARNING"
    monkeypatch.setenv("LOG_LEVEL", " warn ")
    assert LoggingSettings().level == "WARNING"
    monkeypatch.delenv("LOG_LEVEL")
    assert LoggingSettings(file="by-name.log").file == "by-name.log"

    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        LoggingSettings()
