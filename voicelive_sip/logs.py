"""Logging: structlog for our events and stdlib records alike, console or JSON lines, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, TextIO

import structlog
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ._logger import LibraryLogger, get_logger, is_secret_key, redact_secrets
from .settings_group import SettingsGroup

__all__ = [
    "LibraryLogger",
    "LoggingSettings",
    "bind_call_context",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "redact_secrets",
]

LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


# Chatty third-party loggers that only earn their keep when someone asked for DEBUG.
_NOISY_LOGGERS = ("aiohttp", "azure")
# Handlers we install carry this name, so reconfiguring replaces ours and leaves anybody else's alone.
_HANDLER_NAME = "voicelive_sip.logs"


def _shared_processors() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]


def _formatter(renderer: Literal["console", "json"], *, colors: bool) -> structlog.stdlib.ProcessorFormatter:
    final: list[structlog.typing.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if renderer == "json":
        final += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=colors))
    return structlog.stdlib.ProcessorFormatter(
        processors=final,
        # stdlib records (asyncio, aiohttp, azure) get the same context, timestamps and redaction as ours.
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
    )


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or minimal stream is not a terminal
        return False


def configure_logging(
    level: str | int = "INFO",
    *,
    json: bool | None = None,
    log_file: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send structlog and stdlib logging to `stream` (console on a TTY, else JSON), and maybe to a JSON file.

    `stream` defaults to the current `sys.stderr`. Calling again replaces the previous configuration.
    """
    number = _level_number(level)
    out = sys.stderr if stream is None else stream
    use_json = not _isatty(out) if json is None else json

    root = logging.getLogger()
    for old in [handler for handler in root.handlers if handler.name == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()

    console = logging.StreamHandler(out)
    console.setFormatter(_formatter("json" if use_json else "console", colors=not use_json and _isatty(out)))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(_formatter("json", colors=False))
        handlers.append(file_handler)
    for handler in handlers:
        handler.name = _HANDLER_NAME
        root.addHandler(handler)
    root.setLevel(number)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if number <= logging.DEBUG else logging.WARNING)

    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Filtering in the bound logger makes a disabled `log.debug(...)` a no-op on the media path.
        wrapper_class=structlog.make_filtering_bound_logger(number),
        context_class=dict,
        # Not cached, so module-level `structlog.get_logger()` proxies follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )


def _format_remote(remote: str | tuple[str, int]) -> str:
    if isinstance(remote, str):
        return remote
    host, port = remote[0], remote[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def bind_call_context(
    *, call_id: str, remote: str | tuple[str, int] | None = None, **extra: object
) -> Iterator[None]:
    """Add `call_id`, `remote` and `extra` to every event logged in this context (and tasks started in it)."""
    context: dict[str, object] = {"call_id": call_id, **extra}
    if remote is not None:
        context["remote"] = _format_remote(remote)
    with structlog.contextvars.bound_contextvars(**context):
        yield


class LoggingSettings(SettingsGroup):
    """Logging: `LOG_LEVEL`, `LOG_FORMAT` (auto|console|json) and `VOICE_LIVE_LOG_FILE` (or `LOG_FILE`)."""

    model_config = SettingsConfigDict(
        env_prefix="LOG_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    level: LogLevel = Field(default="INFO", description="Minimum level logged.")
    format: LogFormat = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise."
    )
    # The reference gateway's name; the field name under the LOG_ prefix is read too.
    file: str | None = Field(
        default=None,
        validation_alias="VOICE_LIVE_LOG_FILE",
        description="Also append JSON lines to this file.",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _normalise_level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _normalise_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def configure(self, *, stream: TextIO | None = None) -> None:
        """Apply these settings with `configure_logging`."""
        json = None if self.format == "auto" else self.format == "json"
        configure_logging(self.level, json=json, log_file=self.file, stream=stream)
