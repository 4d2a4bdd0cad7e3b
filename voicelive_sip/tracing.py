"""OpenTelemetry spans of a call (the `[otel]` extra); without `opentelemetry-api` every method is a no-op.

The shape (docs/observability.md): one `sip.call` span per call, with children `sip.call.setup`, a
`voicelive.turn` per caller turn, and an `execute_tool {name}` per tool call (a child of the turn it ran in).
Times come from the event loop's clock and are converted once per call, so spans line up with the summary.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from . import __version__
from .call_events import TurnLatency

try:
    from opentelemetry import propagate, trace
except ImportError:  # the [otel] extra is not installed: tracing costs nothing
    trace = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]

__all__ = ["CallTrace", "tracing_available"]

Attributes = Mapping[str, str | int | float | bool]


def tracing_available() -> bool:
    """True when opentelemetry-api is installed (spans go to whatever provider the application set up)."""
    return trace is not None


class CallTrace:
    """The spans of one call, started and ended at loop times (`loop_now` is the loop's clock now)."""

    def __init__(self, loop_now: float, tracer_provider: Any = None) -> None:
        self._offset_ns = time.time_ns() - int(loop_now * 1e9)
        self._tracer: Any = None
        if trace is not None:
            self._tracer = trace.get_tracer("voicelive_sip", __version__, tracer_provider=tracer_provider)
        self._call: Any = None
        self._turn: Any = None

    def _ns(self, moment: float) -> int:
        return self._offset_ns + int(moment * 1e9)

    def _child(self, name: str, parent: Any, start: float, attributes: Attributes | None = None) -> Any:
        assert trace is not None
        return self._tracer.start_span(
            name, context=trace.set_span_in_context(parent), start_time=self._ns(start), attributes=attributes
        )

    def call_started(
        self, started: float, answered: float, *, outbound: bool, attributes: Attributes
    ) -> None:
        """The call span from `started` (INVITE in, or dialling) and its setup span up to the answer."""
        if self._tracer is None or trace is None:
            return
        kind = trace.SpanKind.CLIENT if outbound else trace.SpanKind.SERVER
        self._call = self._tracer.start_span(
            "sip.call", kind=kind, start_time=self._ns(started), attributes=attributes
        )
        self._child("sip.call.setup", self._call, started).end(end_time=self._ns(answered))

    def turn_started(self, speech_end: float, at: float) -> None:
        """A caller turn opened at the end of their speech; an unanswered open one ends, marked so."""
        if self._call is None:
            return
        self._end_unanswered(speech_end)
        self._turn = self._child("voicelive.turn", self._call, speech_end, {"voicelive_sip.turn.at_s": at})

    def turn_ended(self, turn: TurnLatency, sent: float) -> None:
        """The open turn's first agent audio went out at `sent`."""
        span, self._turn = self._turn, None
        if span is None:
            return
        span.set_attributes(
            {
                "voicelive_sip.turn.answered": True,
                "voicelive_sip.turn.total_ms": turn.total_ms,
                "voicelive_sip.turn.service_ms": turn.service_ms,
                "voicelive_sip.turn.gateway_ms": turn.gateway_ms,
                "voicelive_sip.turn.tool_ms": turn.tool_ms,
            }
        )
        span.end(end_time=self._ns(sent))

    def _end_unanswered(self, moment: float) -> None:
        span, self._turn = self._turn, None
        if span is not None:
            span.set_attribute("voicelive_sip.turn.answered", False)
            span.end(end_time=self._ns(moment))

    @contextlib.contextmanager
    def tool(self, name: str, call_id: str, started: float) -> Iterator[Any]:
        """A tool call's span, current while the tool runs: the tool's own spans become its children."""
        if self._call is None or trace is None:
            yield None
            return
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                      "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function"}  # fmt: skip
        span = self._child(f"execute_tool {name}", self._turn or self._call, started, attributes)
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=True):
            yield span

    def tool_failed(self, span: Any, error_type: str) -> None:
        """The tool answered with an error: `error.type` and an error status on its span."""
        if span is not None and trace is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(trace.Status(trace.StatusCode.ERROR))

    def step(
        self, name: str, start: float, end: float, attributes: Attributes, *, error: str | None = None
    ) -> None:
        """A finished step (a warm transfer's hold, dial, briefing, connect): a child of the current span
        (the tool that runs it), or of the call span."""
        if self._call is None or trace is None:
            return
        current = trace.get_current_span()
        parent = current if current.get_span_context().is_valid else self._call
        span = self._child(name, parent, start, attributes)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end(end_time=self._ns(end))

    @staticmethod
    def context_headers() -> dict[str, str]:
        """W3C trace context (`traceparent`, ...) of the current span, for a tool that calls out over HTTP."""
        carrier: dict[str, str] = {}
        if propagate is not None:
            propagate.inject(carrier)
        return carrier

    def call_ended(self, ended: float, attributes: Attributes) -> None:
        """The call is over: its summary's figures on the call span, which ends at `ended`."""
        if self._call is None:
            return
        self._end_unanswered(ended)
        self._call.set_attributes(attributes)
        self._call.end(end_time=self._ns(ended))
        self._call = None
