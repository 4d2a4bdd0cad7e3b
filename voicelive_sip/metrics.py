"""GatewayMetrics: Prometheus metrics for one gateway, in a registry of its own."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from voicelive_sip import __version__

__all__ = ["FrameHistogram", "GatewayMetrics", "LabelValues"]


class HasMos(Protocol):
    """A call-quality score of one direction (voicelive_sip.quality.DirectionQuality)."""

    @property
    def mos(self) -> float: ...


_go_float = cast(Callable[[float], str], floatToGoString)  # how Prometheus spells a bucket bound

PREFIX = "voicelive_sip"

# Label values come from call outcomes, SIP statuses and error kinds the gateway reports; capping how many
# distinct values a label may take keeps a misbehaving peer or a bug from growing the registry without bound.
MAX_LABEL_VALUES = 64
OVERFLOW_LABEL = "other"

CALL_DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
FIRST_AUDIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
JITTER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
TURN_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
MOS_BUCKETS = (1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5)
TURN_PARTS = ("total", "service", "gateway")
QUALITY_DIRECTIONS = ("received", "sent")
LATENCY_DIRECTIONS = frozenset({"uplink", "downlink"})
# Why a received SRTP/SRTCP packet was dropped: it failed authentication (bad tag, another key, plain RTP on
# an SRTP call) or the replay check.
SRTP_DROP_KINDS = ("auth", "replay")
WEBHOOK_OUTCOMES = ("delivered", "failed", "dropped")
AMD_RESULTS = ("HUMAN", "MACHINE", "NOTSURE")
OUTBOUND_REFUSALS = ("not_allowed", "from_not_allowed", "concurrency", "rate")


class LabelValues:
    """The distinct values one label has taken, at most `limit`; later newcomers are reported as "other"."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: object) -> str:
        text = str(value)
        if text in self._seen:
            return text
        if len(self._seen) >= self._limit:
            return OVERFLOW_LABEL
        self._seen.add(text)
        return text


class FrameHistogram(Collector):
    """A histogram with one label, observed for every audio frame: plain counters read at scrape time.

    prometheus_client's `Histogram.observe` takes a lock and walks the buckets in Python; per 20 ms frame
    and call that was 8 % of the gateway's CPU at 300 calls. Here an observation is a bisect and two
    additions on the event loop's thread, and the exposition is the same as a `Histogram`'s.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        values: Iterable[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = tuple(sorted(buckets))
        self._counts = {value: [0] * (len(self.bounds) + 1) for value in values}
        self._sums = dict.fromkeys(self._counts, 0.0)
        registry.register(self)

    def observe(self, value: str, amount: float) -> None:
        """Count `amount` (>= 0) under label value `value` (one of those given at construction)."""
        counts = self._counts.get(value)
        if counts is None:
            raise ValueError(f"{self.label} must be one of {sorted(self._counts)}, not {value!r}")
        counts[bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound is >= amount
        self._sums[value] += amount

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, counts in self._counts.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_go_float(bound), float(cumulative)))
            family.add_metric([value], buckets, self._sums[value])
        yield family


class SecurityCounters(Collector):
    """The user agent's defence counters, read when Prometheus scrapes (no work per dropped packet)."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = self._family()
        for kind, value in sorted(self._read().items()):
            family.add_metric([kind], value)
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            f"{PREFIX}_sip_dropped", "SIP packets and requests dropped by the defences.", labels=["kind"]
        )


class SrtpCounters(Collector):
    """SRTP packets dropped, by kind: ended calls plus calls in progress, read when Prometheus scrapes (no
    work per dropped packet)."""

    def __init__(self, ended: Mapping[str, int], read_live: Callable[[], Mapping[str, int]]) -> None:
        self._ended = ended
        self._read_live = read_live

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = self._family()
        live = self._read_live()
        for kind in SRTP_DROP_KINDS:
            family.add_metric([kind], self._ended.get(kind, 0) + live.get(kind, 0))
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            f"{PREFIX}_srtp_dropped",
            "Received SRTP/SRTCP packets dropped: failed authentication (auth) or the replay check (replay).",
            labels=["kind"],
        )


class GatewayMetrics:
    """Counters, gauges and histograms for calls, media, Voice Live and registration of one gateway."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        r = self.registry
        self._active = 0
        self._directions = LabelValues()
        self._outcomes = LabelValues()
        self._statuses = LabelValues()
        self._error_kinds = LabelValues()
        self._aors = LabelValues()
        self._suites = LabelValues()
        self._srtp_ended = dict.fromkeys(SRTP_DROP_KINDS, 0)

        Info(f"{PREFIX}_build", "voicelive-sip version.", registry=r).info({"version": __version__})
        self.active_calls = Gauge(f"{PREFIX}_active_calls", "Calls in progress.", registry=r)
        self.calls = Counter(f"{PREFIX}_calls", "Calls started.", ["direction"], registry=r)
        self.calls_completed = Counter(
            f"{PREFIX}_calls_completed", "Calls ended, by outcome (end reason).", ["outcome"], registry=r
        )
        self.calls_rejected = Counter(
            f"{PREFIX}_calls_rejected",
            "Calls refused before answering, by SIP status.",
            ["status"],
            registry=r,
        )
        self.call_duration = Histogram(
            f"{PREFIX}_call_duration_seconds",
            "Call duration from start to end.",
            buckets=CALL_DURATION_BUCKETS,
            registry=r,
        )
        self.first_agent_audio = Histogram(
            f"{PREFIX}_first_agent_audio_seconds",
            "Time from answering to the first agent audio sent to the caller.",
            buckets=FIRST_AUDIO_BUCKETS,
            registry=r,
        )
        self.call_jitter = Histogram(
            f"{PREFIX}_call_jitter_seconds",
            "RTP interarrival jitter of the caller's stream at the end of each call (RFC 3550 §6.4.1).",
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self.turn_latency_seconds = Histogram(
            f"{PREFIX}_turn_latency_seconds",
            "Caller turns: end of speech to the first agent audio sent (total), split into the service's "
            "part (to the first audio received) and the gateway's (received to sent).",
            ["part"],
            buckets=TURN_LATENCY_BUCKETS,
            registry=r,
        )
        self.call_mos = Histogram(
            f"{PREFIX}_call_mos",
            "G.107 E-model MOS-CQ of each call, per direction: received (caller to gateway), sent (the "
            "caller's RTCP reports).",
            ["direction"],
            buckets=MOS_BUCKETS,
            registry=r,
        )
        self.packets_lost = Counter(
            f"{PREFIX}_rtp_packets_lost", "RTP packets from callers that never arrived.", registry=r
        )
        self.barge_ins = Counter(f"{PREFIX}_barge_ins", "Times a caller interrupted the agent.", registry=r)
        self.tokens = Counter(
            f"{PREFIX}_voicelive_tokens", "Voice Live tokens used, input or output.", ["type"], registry=r
        )
        self.voicelive_reconnects = Counter(
            f"{PREFIX}_voicelive_reconnects", "Voice Live reconnects after a dropped connection.", registry=r
        )
        self.voicelive_errors = Counter(
            f"{PREFIX}_voicelive_errors", "Voice Live errors, by kind.", ["kind"], registry=r
        )
        self.media_underruns = Counter(
            f"{PREFIX}_media_underruns",
            "Times agent audio ran dry while the caller was listening.",
            registry=r,
        )
        self.gateway_latency = FrameHistogram(
            f"{PREFIX}_gateway_latency_seconds",
            "Time audio spends inside the gateway: uplink (RTP in to Voice Live) or downlink (back to RTP).",
            "direction",
            sorted(LATENCY_DIRECTIONS),
            LATENCY_BUCKETS,
            r,
        )
        self.srtp_calls = Counter(
            f"{PREFIX}_srtp_calls",
            "Calls that ended with SRTP media, by crypto suite.",
            ["suite"],
            registry=r,
        )
        self.registration_registered = Gauge(
            f"{PREFIX}_registration_registered",
            "1 while the registration of this address-of-record is current, else 0.",
            ["aor"],
            registry=r,
        )
        self.webhook_events = Counter(
            f"{PREFIX}_webhook_events",
            "Webhook events by outcome: delivered, failed (refused, out of attempts), dropped (queue full).",
            ["outcome"],
            registry=r,
        )
        self.webhook_attempt_failures = Counter(
            f"{PREFIX}_webhook_attempt_failures",
            "Webhook deliveries that failed (each retry counts): timeouts, connection errors, non-2xx.",
            registry=r,
        )
        self.outbound_refused = Counter(
            f"{PREFIX}_outbound_refused",
            "Call API requests refused by a toll-fraud guard, by reason.",
            ["reason"],
            registry=r,
        )
        self.amd_results = Counter(
            f"{PREFIX}_amd_results",
            "Answering-machine detection verdicts on outbound calls: HUMAN, MACHINE or NOTSURE.",
            ["result"],
            registry=r,
        )

        # Series that always exist start at zero, so rate() and absent() work before the first call.
        for direction in ("inbound", "outbound"):
            self.calls.labels(direction=self._directions(direction))
        for kind in ("input", "output"):
            self.tokens.labels(type=kind)
        for part in TURN_PARTS:
            self.turn_latency_seconds.labels(part=part)
        for direction in QUALITY_DIRECTIONS:
            self.call_mos.labels(direction=direction)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_events.labels(outcome=outcome)
        for reason in OUTBOUND_REFUSALS:
            self.outbound_refused.labels(reason=reason)
        for result in AMD_RESULTS:
            self.amd_results.labels(result=result)

    def call_started(self, direction: str) -> None:
        """A call began (inbound or outbound)."""
        self._active += 1
        self.active_calls.set(self._active)
        self.calls.labels(direction=self._directions(direction)).inc()

    def call_ended(
        self,
        direction: str,
        outcome: str,
        duration_s: float,
        first_agent_audio_ms: float | None,
        jitter_ms: float,
        packets_lost: int,
        barge_ins: int,
        input_tokens: int,
        output_tokens: int,
        voicelive_reconnects: int,
    ) -> None:
        """A call that `call_started` counted is over; record its summary."""
        # Counters never go backwards and the gauge never below zero: a bad summary must not break the call.
        self._active = max(0, self._active - 1)
        self.active_calls.set(self._active)
        self.calls_completed.labels(outcome=self._outcomes(outcome or "unknown")).inc()
        self.call_duration.observe(max(0.0, duration_s))
        if first_agent_audio_ms is not None:
            self.first_agent_audio.observe(max(0.0, first_agent_audio_ms) / 1000)
        self.call_jitter.observe(max(0.0, jitter_ms) / 1000)
        self.packets_lost.inc(max(0, packets_lost))
        self.barge_ins.inc(max(0, barge_ins))
        self.tokens.labels(type="input").inc(max(0, input_tokens))
        self.tokens.labels(type="output").inc(max(0, output_tokens))
        self.voicelive_reconnects.inc(max(0, voicelive_reconnects))

    def turn_latency(self, total_ms: float, service_ms: float, gateway_ms: float) -> None:
        """One caller turn's latency and its parts (milliseconds)."""
        for part, ms in (("total", total_ms), ("service", service_ms), ("gateway", gateway_ms)):
            self.turn_latency_seconds.labels(part=part).observe(max(0.0, ms) / 1000)

    def call_quality(self, received: HasMos | None, sent: HasMos | None) -> None:
        """A call's E-model scores; a direction without data (None) is not observed."""
        for direction, quality in (("received", received), ("sent", sent)):
            if quality is not None:
                self.call_mos.labels(direction=direction).observe(quality.mos)

    def call_rejected(self, status: int) -> None:
        """An incoming call was refused with a final SIP status."""
        self.calls_rejected.labels(status=self._statuses(status)).inc()

    def voicelive_error(self, kind: str) -> None:
        """Voice Live reported an error or the connection failed."""
        self.voicelive_errors.labels(kind=self._error_kinds(kind or "unknown")).inc()

    def underrun(self) -> None:
        """The playout buffer toward the caller ran dry."""
        self.media_underruns.inc()

    def latency(self, direction: str, seconds: float) -> None:
        """Time a frame spent inside the gateway, `uplink` or `downlink`."""
        self.gateway_latency.observe(direction, max(0.0, seconds))

    def registration_state(self, aor: str, registered: bool) -> None:
        """Whether the registration of `aor` is current."""
        self.registration_registered.labels(aor=self._aors(aor)).set(1 if registered else 0)

    def watch_security(self, read: Callable[[], dict[str, int]]) -> None:
        """Export `read()` (the user agent's defence counters) as `voicelive_sip_sip_dropped_total{kind}`."""
        self.registry.register(SecurityCounters(read))

    def watch_srtp(self, read_live: Callable[[], Mapping[str, int]]) -> None:
        """Export SRTP drops as `voicelive_sip_srtp_dropped_total{kind}`: `srtp_call_ended` totals plus
        `read_live()`, the counts of the calls in progress."""
        self.registry.register(SrtpCounters(self._srtp_ended, read_live))

    def srtp_call_ended(self, suite: str | None, dropped: Mapping[str, int]) -> None:
        """A call's media is closed: its SRTP suite (None: plain RTP) and drops move to the ended totals."""
        if suite is not None:
            self.srtp_calls.labels(suite=self._suites(suite)).inc()
        for kind in SRTP_DROP_KINDS:
            self._srtp_ended[kind] += max(0, dropped.get(kind, 0))

    def webhook_outcome(self, outcome: str, count: int = 1) -> None:
        """Webhook events that were delivered, failed for good, or dropped before a try."""
        if outcome in WEBHOOK_OUTCOMES:
            self.webhook_events.labels(outcome=outcome).inc(count)

    def webhook_attempt_failed(self) -> None:
        """One webhook delivery attempt failed (it may be retried)."""
        self.webhook_attempt_failures.inc()

    def outbound_refusal(self, reason: str) -> None:
        """The call API refused to dial: not_allowed, from_not_allowed, concurrency or rate."""
        if reason in OUTBOUND_REFUSALS:
            self.outbound_refused.labels(reason=reason).inc()

    def amd_result(self, result: str) -> None:
        """Answering-machine detection decided: HUMAN, MACHINE or NOTSURE."""
        if result in AMD_RESULTS:
            self.amd_results.labels(result=result).inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
