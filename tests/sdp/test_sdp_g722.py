"""G.722 in offer/answer: payload 9 with the RFC 3551 clock quirk (G722/8000), chosen by our order among what
the peer offers, offered in our order, and telephone-event/8000 beside it."""

from __future__ import annotations

import pytest

from tests.sdp.test_sdp_offer_answer import answer, offer_from, offer_text, uac_offer
from voicelive_sip.codecs.names import Codec
from voicelive_sip.sdp import NoCommonCodec, RtpMap, SessionDescription, choose_codec, parse_answer

WIDEBAND_FIRST = ("G722", "PCMU", "PCMA")  # MEDIA_CODECS' default
PHONE_OFFER = (  # a desk phone: G.722 first, G.711 both laws, RFC 4733 events
    "m=audio 4000 RTP/AVP 9 0 8 101\n"
    "a=rtpmap:9 G722/8000\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"
)


def test_an_offer_of_g722_and_pcmu_is_answered_with_g722_at_8000() -> None:
    sdp, media = answer(offer_text(PHONE_OFFER), codecs=WIDEBAND_FIRST)
    (audio,) = sdp.media
    assert audio.formats == ("9", "101")
    assert audio.rtpmap(9) == RtpMap(9, "G722", 8000)  # RFC 3551 §4.5.2: 8000 although audio is 16 kHz
    assert audio.fmtp(101) == "0-15"
    assert (media.codec, media.payload_type, media.clock_rate, media.dtmf_payload_type) == (
        Codec.G722,
        9,
        8000,
        101,
    )
    assert b"a=rtpmap:9 G722/8000\r\n" in bytes(sdp)
    assert choose_codec(offer_text(PHONE_OFFER), WIDEBAND_FIRST) is Codec.G722


def test_a_static_payload_9_without_rtpmap_is_g722() -> None:
    _, media = answer(offer_text("m=audio 4000 RTP/AVP 0 9\n"), codecs=WIDEBAND_FIRST)
    assert (media.codec, media.payload_type) == (Codec.G722, 9)


def test_pcmu_only_offer_gets_pcmu_from_a_g722_first_gateway() -> None:
    sdp, media = answer(offer_from("asterisk_offer.sdp"), codecs=WIDEBAND_FIRST)
    assert (media.codec, media.payload_type) == (Codec.PCMU, 0)
    assert sdp.media[0].formats == ("0", "101")


def test_our_order_decides_not_the_offerers() -> None:
    _, media = answer(offer_text(PHONE_OFFER), codecs=("PCMU", "G722"))
    assert media.codec is Codec.PCMU
    _, media = answer(offer_text(PHONE_OFFER), codecs=("PCMA", "G722"))
    assert media.codec is Codec.PCMA
    assert choose_codec(offer_text(PHONE_OFFER), ("PCMA", "G722")) is Codec.PCMA


def test_g711_only_configuration_refuses_a_g722_only_offer() -> None:
    with pytest.raises(NoCommonCodec, match="G722/8000"):
        answer(offer_text("m=audio 4000 RTP/AVP 9\n"), codecs=("PCMU", "PCMA"))


def test_g722_written_with_a_16000_clock_is_not_g722() -> None:
    # Some stacks get the quirk wrong (G722/16000): that names no codec of RFC 3551, and the timestamps such a
    # peer sends would run twice as fast as ours.
    media = "m=audio 4000 RTP/AVP 96 0\na=rtpmap:96 G722/16000\n"
    _, negotiated = answer(offer_text(media), codecs=WIDEBAND_FIRST)
    assert negotiated.codec is Codec.PCMU


def test_a_wideband_offer_gets_g722_and_no_dtmf_without_telephone_event_8000() -> None:
    # Its telephone-event is at 48000 (Opus' clock): RFC 4733 §7.1.1 needs the audio codec's, 8000 for G.722.
    sdp, media = answer(offer_from("wideband_only_offer.sdp"), codecs=WIDEBAND_FIRST)
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == (Codec.G722, 9, None)
    assert sdp.media[0].formats == ("9",)


def test_our_offer_lists_our_order_and_takes_the_answers_choice() -> None:
    offer = uac_offer(codecs=WIDEBAND_FIRST)
    (audio,) = offer.media
    assert audio.formats == ("9", "0", "8", "101")
    assert audio.rtpmap(9) == RtpMap(9, "G722", 8000)
    # A peer that takes G.722 answers with it; one that only does G.711 answers PCMU: both are ours.
    for codecs, expected in ((("G722", "PCMU"), Codec.G722), (("PCMU",), Codec.PCMU)):
        sdp, _ = answer(SessionDescription.parse(bytes(offer)), codecs=codecs)
        assert parse_answer(offer, sdp).codec is expected


def test_opus_is_not_a_sip_codec() -> None:
    with pytest.raises(ValueError, match="codecs must be"):
        answer(offer_text(PHONE_OFFER), codecs=("opus", "PCMU"))


def test_the_codec_vocabulary() -> None:
    g722 = Codec.parse("g722")
    assert (g722.payload_type, g722.clock_rate, g722.sample_rate, g722.bytes_per_ms) == (9, 8000, 16000, 32)
    assert (g722.law, g722.is_wideband, g722.voicelive_format, g722.on_sip) == (None, True, "pcm16", True)
    assert [c.bytes_per_ms for c in Codec] == [8, 8, 32, 48]
    assert [c.sample_rate for c in Codec] == [8000, 8000, 16000, 24000]
    assert Codec.parse("OPUS") is Codec.OPUS and not Codec.OPUS.on_sip
    assert Codec.sip() == (Codec.PCMU, Codec.PCMA, Codec.G722)
    # The old spellings still parse.
    assert [Codec.parse(n) for n in ("ulaw", "g711_alaw", "PCMU", "pcma")] == [
        Codec.PCMU,
        Codec.PCMA,
        Codec.PCMU,
        Codec.PCMA,
    ]
    assert (Codec.PCMU.law, Codec.PCMA.voicelive_format) == ("ulaw", "g711_alaw")
