"""GatewayMetrics: what a Prometheus scrape shows after calls, errors and registrations."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voicelive_sip import __version__
from voicelive_sip.metrics import LATENCY_BUCKETS, MAX_LABEL_VALUES, FrameHistogram, GatewayMetrics


def scrape(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    payload, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(payload.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return scrape(metrics)[name, tuple(sorted(labels.items()))]


def end_call(metrics: GatewayMetrics, **overrides: object) -> None:
    summary: dict[str, object] = {
        "direction": "inbound",
        "outcome": "bye",
        "duration_s": 42.0,
        "first_agent_audio_ms": 350.0,
        "jitter_ms": 4.0,
        "packets_lost": 3,
        "barge_ins": 2,
        "input_tokens": 1200,
        "output_tokens": 800,
        "voicelive_reconnects": 1,
    }
    summary.update(overrides)
    metrics.call_ended(**summary)  # type: ignore[arg-type]


def test_a_fresh_gateway_exposes_zeroes() -> None:
    m = GatewayMetrics()
    samples = scrape(m)
    assert samples["voicelive_sip_active_calls", ()] == 0
    assert samples["voicelive_sip_calls_total", (("direction", "inbound"),)] == 0
    assert samples["voicelive_sip_calls_total", (("direction", "outbound"),)] == 0
    assert samples["voicelive_sip_voicelive_tokens_total", (("type", "input"),)] == 0
    assert samples["voicelive_sip_gateway_latency_seconds_count", (("direction", "uplink"),)] == 0
    assert samples["voicelive_sip_call_duration_seconds_count", ()] == 0
    assert samples["voicelive_sip_build_info", (("version", __version__),)] == 1


def test_calls_in_progress_and_their_summaries() -> None:
    m = GatewayMetrics()
    m.call_started("inbound")
    m.call_started("inbound")
    m.call_started("outbound")
    assert value(m, "voicelive_sip_active_calls") == 3

    end_call(m)
    end_call(m, outcome="agent-hangup", duration_s=7200.0, first_agent_audio_ms=None, barge_ins=0)
    end_call(
        m, direction="outbound", outcome="bye", duration_s=3.0, first_agent_audio_ms=6000.0, jitter_ms=0.5
    )

    s = scrape(m)
    assert s["voicelive_sip_active_calls", ()] == 0
    assert s["voicelive_sip_calls_total", (("direction", "inbound"),)] == 2
    assert s["voicelive_sip_calls_total", (("direction", "outbound"),)] == 1
    assert s["voicelive_sip_calls_completed_total", (("outcome", "bye"),)] == 2
    assert s["voicelive_sip_calls_completed_total", (("outcome", "agent-hangup"),)] == 1

    assert s["voicelive_sip_call_duration_seconds_count", ()] == 3
    assert s["voicelive_sip_call_duration_seconds_sum", ()] == 42 + 7200 + 3
    assert s["voicelive_sip_call_duration_seconds_bucket", (("le", "60.0"),)] == 2
    assert s["voicelive_sip_call_duration_seconds_bucket", (("le", "3600.0"),)] == 2  # the 2 h call is beyond
    assert s["voicelive_sip_call_duration_seconds_bucket", (("le", "+Inf"),)] == 3

    # First agent audio arrives in ms and is exposed in seconds; a call without agent audio is not observed.
    assert s["voicelive_sip_first_agent_audio_seconds_count", ()] == 2
    assert s["voicelive_sip_first_agent_audio_seconds_sum", ()] == pytest.approx(6.35)
    assert s["voicelive_sip_first_agent_audio_seconds_bucket", (("le", "0.5"),)] == 1
    assert s["voicelive_sip_first_agent_audio_seconds_bucket", (("le", "5.0"),)] == 1
    assert s["voicelive_sip_call_jitter_seconds_sum", ()] == pytest.approx(0.0085)

    assert s["voicelive_sip_rtp_packets_lost_total", ()] == 9
    assert s["voicelive_sip_barge_ins_total", ()] == 4
    assert s["voicelive_sip_voicelive_tokens_total", (("type", "input"),)] == 3600
    assert s["voicelive_sip_voicelive_tokens_total", (("type", "output"),)] == 2400
    assert s["voicelive_sip_voicelive_reconnects_total", ()] == 3


def test_a_bad_summary_never_breaks_the_call_or_the_counters() -> None:
    m = GatewayMetrics()
    end_call(m, outcome="", duration_s=-1.0, packets_lost=-5, input_tokens=-1)  # ended without a start
    s = scrape(m)
    assert s["voicelive_sip_active_calls", ()] == 0
    assert s["voicelive_sip_calls_completed_total", (("outcome", "unknown"),)] == 1
    assert s["voicelive_sip_rtp_packets_lost_total", ()] == 0
    assert s["voicelive_sip_voicelive_tokens_total", (("type", "input"),)] == 0
    assert s["voicelive_sip_call_duration_seconds_bucket", (("le", "1.0"),)] == 1


def test_rejections_errors_underruns_latency_and_registration() -> None:
    m = GatewayMetrics()
    m.call_rejected(486)
    m.call_rejected(486)
    m.call_rejected(503)
    m.voicelive_error("connect")
    m.voicelive_error("server")
    m.voicelive_error("connect")
    for _ in range(5):
        m.underrun()
    m.latency("uplink", 0.0004)
    m.latency("uplink", 0.003)
    m.latency("downlink", 0.2)
    m.registration_state("sip:alice@pbx.example", True)
    m.registration_state("sip:bob@pbx.example", True)
    m.registration_state("sip:bob@pbx.example", False)

    s = scrape(m)
    assert s["voicelive_sip_calls_rejected_total", (("status", "486"),)] == 2
    assert s["voicelive_sip_calls_rejected_total", (("status", "503"),)] == 1
    assert s["voicelive_sip_voicelive_errors_total", (("kind", "connect"),)] == 2
    assert s["voicelive_sip_voicelive_errors_total", (("kind", "server"),)] == 1
    assert s["voicelive_sip_media_underruns_total", ()] == 5
    uplink = (("direction", "uplink"),)
    assert s["voicelive_sip_gateway_latency_seconds_count", uplink] == 2
    assert s["voicelive_sip_gateway_latency_seconds_bucket", (*uplink, ("le", "0.0005"))] == 1
    assert s["voicelive_sip_gateway_latency_seconds_bucket", (*uplink, ("le", "0.005"))] == 2
    downlink = (("direction", "downlink"),)
    assert s["voicelive_sip_gateway_latency_seconds_bucket", (*downlink, ("le", "0.1"))] == 0
    assert s["voicelive_sip_gateway_latency_seconds_count", downlink] == 1
    assert s["voicelive_sip_registration_registered", (("aor", "sip:alice@pbx.example"),)] == 1
    assert s["voicelive_sip_registration_registered", (("aor", "sip:bob@pbx.example"),)] == 0

    with pytest.raises(ValueError, match="direction must be one of"):
        m.latency("sideways", 0.001)


def test_label_values_are_bounded() -> None:
    m = GatewayMetrics()
    for i in range(MAX_LABEL_VALUES + 50):
        m.voicelive_error(f"kind-{i}")
    m.voicelive_error("kind-0")  # a value seen before the cap keeps its own series

    errors = {
        labels: v for (name, labels), v in scrape(m).items() if name == "voicelive_sip_voicelive_errors_total"
    }
    assert len(errors) == MAX_LABEL_VALUES + 1
    assert errors[(("kind", "other"),)] == 50
    assert errors[(("kind", "kind-0"),)] == 2


def test_two_gateways_count_separately() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    a.call_started("inbound")
    a.underrun()
    b.call_rejected(480)
    assert value(a, "voicelive_sip_active_calls") == 1
    assert value(b, "voicelive_sip_active_calls") == 0
    assert value(a, "voicelive_sip_media_underruns_total") == 1
    assert value(b, "voicelive_sip_media_underruns_total") == 0
    assert ("voicelive_sip_calls_rejected_total", (("status", "480"),)) not in scrape(a)
    assert value(b, "voicelive_sip_calls_rejected_total", status="480") == 1


def test_frame_histogram_exposes_what_a_prometheus_histogram_would() -> None:
    values = [0.0, 0.0004, 0.0005, 0.0006, 0.001, 0.0049, 0.005, 0.02, 0.1, 0.5, 3.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    frame = FrameHistogram(
        "t_latency_seconds", "Test.", "direction", ["uplink", "downlink"], LATENCY_BUCKETS, ours
    )
    reference = Histogram(
        "t_latency_seconds", "Test.", ["direction"], buckets=LATENCY_BUCKETS, registry=theirs
    )
    reference.labels(direction="downlink")  # the series exist before any observation in both
    for value in values:
        frame.observe("uplink", value)
        reference.labels(direction="uplink").observe(value)
    ours_text = generate_latest(ours).decode()
    theirs_text = "\n".join(
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    )
    assert sorted(ours_text.strip().splitlines()) == sorted(theirs_text.strip().splitlines())


def test_the_defences_counters_are_read_at_scrape_time() -> None:
    m = GatewayMetrics()
    counts = {"flood_dropped": 0, "unknown_dialog_dropped": 0}
    m.watch_security(lambda: dict(counts))
    assert value(m, "voicelive_sip_sip_dropped_total", kind="flood_dropped") == 0
    counts.update(flood_dropped=1234, unknown_dialog_dropped=7)
    assert value(m, "voicelive_sip_sip_dropped_total", kind="flood_dropped") == 1234
    assert value(m, "voicelive_sip_sip_dropped_total", kind="unknown_dialog_dropped") == 7


async def test_a_gateway_exports_what_its_user_agent_dropped() -> None:
    from voicelive_sip import Gateway, Settings
    from voicelive_sip.config import SipSettings

    gateway = Gateway(Settings(sip=SipSettings(port=0)))
    samples = scrape(gateway.metrics)
    kinds = {labels[0][1] for name, labels in samples if name == "voicelive_sip_sip_dropped_total"}
    assert {"flood_dropped", "flood_bans", "malformed", "unknown_dialog_dropped", "options_dropped"} <= kinds
