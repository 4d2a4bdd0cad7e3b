"""Micro benchmarks: parsing a typical INVITE offer and answering it (runs once per call setup)."""

from __future__ import annotations

from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from voicelive_sip.sdp import LocalSdpSession, NegotiatedMedia, SessionDescription, answer_offer, build_offer

OFFER = (Path(__file__).parents[1] / "tests" / "sdp" / "data" / "freeswitch_offer.sdp").read_bytes()


def test_parse_typical_offer(benchmark: BenchmarkFixture) -> None:
    description = benchmark(SessionDescription.parse, OFFER)
    assert description.media[0].port == 24580


def test_parse_and_answer_offer(benchmark: BenchmarkFixture) -> None:
    session = LocalSdpSession()

    def parse_and_answer() -> tuple[bytes, NegotiatedMedia]:
        answer, media = answer_offer(
            SessionDescription.parse(OFFER), local_address="10.0.0.1", local_port=40000, session=session
        )
        return bytes(answer), media

    body, media = benchmark(parse_and_answer)
    assert media.codec == "PCMU"
    assert b"m=audio 40000 RTP/AVP 0 101\r\n" in body


def test_build_offer(benchmark: BenchmarkFixture) -> None:
    session = LocalSdpSession()
    offer = benchmark(build_offer, local_address="10.0.0.1", local_port=40000, session=session)
    assert offer.media[0].formats == ("0", "8", "101")
