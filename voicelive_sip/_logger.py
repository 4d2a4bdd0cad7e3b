"""The library's loggers and secret redaction: structlog and the standard library only (no pydantic), so every
layer may log."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["REDACTED", "LibraryLogger", "get_logger", "is_secret_key", "redact_secrets"]

REDACTED = "[redacted]"

# Structures nested deeper than this are not walked: they are rare in events and must not cost unbounded time.
_MAX_REDACT_DEPTH = 4

# Words that make a key a secret. Plural "tokens" is left alone: `input_tokens` counts usage.
_SECRET_WORDS = frozenset(
    {
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "passwd",
        "password",
        "passwords",
        "secret",
        "secrets",
        "token",
    }
)
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key")})
_KEY_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_key(key: str) -> bool:
    """Whether a key names a credential (`api_key`, `sip_password`, `Authorization`, `accessToken`, ...)."""
    parts = [part.lower() for part in _KEY_PARTS.findall(key)]
    if any(part in _SECRET_WORDS for part in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(parts))


def _redact(value: object, depth: int) -> object:
    if depth >= _MAX_REDACT_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_key(key) else _redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [_redact(item, depth + 1) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value  # nothing secret inside: keep the caller's object (and its type)
        return items if isinstance(value, list) else tuple(items)
    return value


def redact_secrets(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace the values of secret-looking keys, also inside nested dicts and lists."""
    for key, value in event_dict.items():
        if key == "event":
            continue
        event_dict[key] = REDACTED if is_secret_key(key) else _redact(value, 0)
    return event_dict


class LibraryLogger:
    """Our events go to structlog when the application (or our CLI) configured it; otherwise to stdlib
    `logging.getLogger(name)`, so the host's logging set-up decides levels and handlers (by default:
    warnings and errors on stderr), never structlog's print-everything default."""

    __slots__ = ("_context", "_fallback", "_name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}
        self._fallback: Any = None

    def bind(self, **values: Any) -> LibraryLogger:
        """A logger adding `values` to every event."""
        return LibraryLogger(self._name, {**self._context, **values})

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name, **self._context)
        if self._fallback is None:
            self._fallback = structlog.wrap_logger(
                logging.getLogger(self._name),
                processors=[
                    structlog.stdlib.filter_by_level,  # a disabled level costs no rendering
                    structlog.contextvars.merge_contextvars,
                    redact_secrets,
                    structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
                ],
                wrapper_class=structlog.stdlib.BoundLogger,
                context_class=dict,
            ).bind(**self._context)
        return self._fallback

    def __getattr__(self, method: str) -> Any:
        return getattr(self._target(), method)


def get_logger(name: str) -> LibraryLogger:
    """The library's logger `name` (see `LibraryLogger`: it never configures logging itself)."""
    return LibraryLogger(name)
