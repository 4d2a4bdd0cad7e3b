"""RFC 3264 offer/answer: answering field offers as a UAS, offering and checking answers as a UAC."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest

from voicelive_sip.sdes import SUITES, SdesKey
from voicelive_sip.sdp import (
    Attribute,
    Connection,
    Crypto,
    LocalSdpSession,
    NegotiatedMedia,
    NoCommonCodec,
    RtpMap,
    SdpError,
    SessionDescription,
    SrtpNotAcceptable,
    answer_offer,
    build_offer,
    parse_answer,
)

DATA = Path(__file__).parent / "data"
LOCAL = "10.1.2.3"
PORT = 30000
KEY = bytes(range(30))


def offer_from(name: str) -> SessionDescription:
    return SessionDescription.parse((DATA / name).read_bytes())


def offer_text(
    media: str, *, session: str = "", connection: str = "c=IN IP4 192.0.2.1\n"
) -> SessionDescription:
    return SessionDescription.parse(
        f"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n{connection}t=0 0\n{session}{media}"
    )


def answer(
    offer: SessionDescription, session: LocalSdpSession | None = None, **options: object
) -> tuple[SessionDescription, NegotiatedMedia]:
    local = session if session is not None else LocalSdpSession(session_id=4242, version=7)
    return answer_offer(offer, local_address=LOCAL, local_port=PORT, session=local, **options)  # type: ignore[arg-type]


def test_asterisk_offer_answer_bytes() -> None:
    sdp, media = answer(offer_from("asterisk_offer.sdp"))
    assert bytes(sdp) == (
        b"v=0\r\n"
        b"o=- 4242 7 IN IP4 10.1.2.3\r\n"
        b"s=-\r\n"
        b"c=IN IP4 10.1.2.3\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert media == NegotiatedMedia(
        codec="PCMU",
        payload_type=0,
        clock_rate=8000,
        dtmf_payload_type=101,
        ptime=20,
        remote_rtp=("192.0.2.10", 10000),
        remote_rtcp=("192.0.2.10", 10001),
        rtcp_mux=False,
        local_direction="sendrecv",
        remote_direction="sendrecv",
        on_hold=False,
    )
    assert media.sends and media.receives


def test_freeswitch_offer_picks_our_priority_not_theirs_and_8k_telephone_event() -> None:
    # FreeSWITCH lists PCMA before PCMU; our priority (PCMU first) decides (RFC 3264 §6.1).
    sdp, media = answer(offer_from("freeswitch_offer.sdp"))
    (audio,) = sdp.media
    assert audio.formats == ("0", "101")
    assert audio.fmtp(101) == "0-15"
    assert (media.codec, media.dtmf_payload_type) == ("PCMU", 101)
    assert media.remote_rtcp == ("198.51.100.7", 24581)


def test_pcma_preferred_by_us() -> None:
    sdp, media = answer(offer_from("asterisk_offer.sdp"), codecs=("PCMA", "PCMU"))
    assert sdp.media[0].formats == ("8", "101")
    assert sdp.media[0].rtpmap(8) == RtpMap(8, "PCMA", 8000)
    assert (media.codec, media.payload_type, media.clock_rate) == ("PCMA", 8, 8000)


def test_only_pcma_configured_against_pcmu_only_offer_is_488() -> None:
    with pytest.raises(NoCommonCodec, match="PCMU/8000"):
        answer(offer_from("sipp_uac_offer.sdp"), codecs=("PCMA",))


def test_sipp_lf_only_offer_without_telephone_event() -> None:
    sdp, media = answer(offer_from("sipp_uac_offer.sdp"))
    assert sdp.media[0].formats == ("0",)
    assert media.dtmf_payload_type is None
    assert media.remote_rtp == ("127.0.1.1", 6000)


def test_sipp_pcap_offer_pcma_with_odd_event_list_is_echoed() -> None:
    sdp, media = answer(offer_from("sipp_pcap_offer.sdp"))
    assert (media.codec, media.dtmf_payload_type) == ("PCMA", 101)
    assert sdp.media[0].fmtp(101) == "0-11,16"


def test_baresip_rtcp_mux_is_accepted_and_can_be_declined() -> None:
    sdp, media = answer(offer_from("baresip_offer.sdp"))
    assert sdp.media[0].rtcp_mux
    assert media.rtcp_mux
    assert media.remote_rtcp == media.remote_rtp == ("10.0.0.5", 10734)
    sdp, media = answer(offer_from("baresip_offer.sdp"), rtcp_mux=False)
    assert not sdp.media[0].rtcp_mux
    assert media.remote_rtcp == ("10.0.0.5", 10735)


def test_linphone_video_offer_rejects_video_with_port_zero() -> None:
    offer = offer_from("linphone_video_offer.sdp")
    sdp, media = answer(offer)
    audio, video = sdp.media
    assert (video.media, video.port, video.proto, video.formats, video.attributes) == (
        "video",
        0,
        "RTP/AVP",
        ("96", "97"),
        (),
    )
    # telephone-event/8000 is payload type 100 here, without fmtp: we answer 100 with the 0-16 default.
    assert audio.formats == ("0", "100")
    assert audio.fmtp(100) == "0-16"
    assert media.dtmf_payload_type == 100
    assert media.remote_rtcp == ("192.168.1.23", 7079)
    assert b"m=video 0 RTP/AVP 96 97\r\n" in bytes(sdp)


def test_dynamic_telephone_event_96_kept_with_its_fmtp() -> None:
    offer = offer_text("m=audio 4000 RTP/AVP 8 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\n")
    sdp, media = answer(offer)
    assert sdp.media[0].formats == ("8", "96")
    assert sdp.media[0].rtpmap(96) == RtpMap(96, "telephone-event", 8000)
    assert sdp.media[0].fmtp(96) == "0-15"
    assert media.dtmf_payload_type == 96


def test_dtmf_disabled_leaves_telephone_event_out() -> None:
    sdp, media = answer(offer_from("asterisk_offer.sdp"), dtmf=False)
    assert sdp.media[0].formats == ("0",)
    assert media.dtmf_payload_type is None


def test_static_payload_types_without_rtpmap_are_answered() -> None:
    offer = offer_text("m=audio 4000 RTP/AVP 18 8 0\n")
    sdp, media = answer(offer)
    assert (media.codec, media.payload_type) == ("PCMU", 0)
    assert sdp.media[0].attributes[0] == Attribute("rtpmap", "0 PCMU/8000")


def test_g711_under_a_dynamic_payload_type_keeps_the_offerers_number() -> None:
    offer = offer_text("m=audio 4000 RTP/AVP 97\na=rtpmap:97 pcmu/8000\n")
    sdp, media = answer(offer)
    assert (media.codec, media.payload_type) == ("PCMU", 97)
    assert sdp.media[0].rtpmap(97) == RtpMap(97, "PCMU", 8000)


def test_wideband_only_offer_is_no_common_codec() -> None:
    with pytest.raises(NoCommonCodec, match=r"opus/48000.*G722/8000") as caught:
        answer(offer_from("wideband_only_offer.sdp"))
    assert isinstance(caught.value, SdpError)


@pytest.mark.parametrize(
    "media",
    [
        "m=video 4000 RTP/AVP 31\n",
        "m=audio 0 RTP/AVP 0\n",
        "m=audio 4000 UDP/TLS/RTP/SAVPF 0\n",
        "m=image 4000 udptl t38\n",
        "",
    ],
)
def test_offer_without_usable_audio_is_no_common_codec(media: str) -> None:
    with pytest.raises(NoCommonCodec):
        answer(offer_text(media))


def test_second_audio_stream_is_rejected_and_order_kept() -> None:
    offer = offer_text("m=video 5000 RTP/AVP 31\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\n")
    sdp, media = answer(offer)
    assert [(m.media, m.port) for m in sdp.media] == [("video", 0), ("audio", PORT), ("audio", 0)]
    assert media.media_index == 1
    assert media.remote_rtp == ("192.0.2.1", 4000)


def test_srtp_offer_to_a_gateway_with_srtp_off_is_refused() -> None:
    with pytest.raises(SrtpNotAcceptable, match="MEDIA_SRTP=off"):
        answer(offer_from("srtp_offer.sdp"))


def test_the_rfc_4568_example_offer_has_no_line_we_can_honour() -> None:
    # AES_256 is not a suite we support, and the two others carry an MKI (every packet would carry it).
    with pytest.raises(SrtpNotAcceptable) as refused:
        answer(offer_from("srtp_offer.sdp"), srtp="optional")
    assert "a=crypto:1 AES_256_CM_HMAC_SHA1_80: unknown crypto suite" in str(refused.value)
    assert "a=crypto:2 AES_CM_128_HMAC_SHA1_80: MKI is not supported" in str(refused.value)


def test_srtp_offer_answered_with_first_supported_suite_and_our_key() -> None:
    offer = offer_from("srtp_offer.sdp")
    offer = replace(
        offer, media=(replace(offer.media[0], attributes=tuple(
            Attribute(a.name, a.value.split("|")[0]) if a.name == "crypto" and a.value else a
            for a in offer.media[0].attributes
        )),),
    )  # fmt: skip
    sdp, media = answer(offer, srtp_key=KEY)
    (audio,) = sdp.media
    assert audio.proto == "RTP/SAVP"
    expected = Crypto(2, "AES_CM_128_HMAC_SHA1_80", "inline:" + base64.b64encode(KEY).decode())
    assert audio.crypto == (expected,)
    assert media.local_crypto == expected
    assert media.remote_crypto is not None
    assert media.remote_crypto.tag == 2
    assert media.remote_crypto.key_salt == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert media.srtp is not None and media.proto == "RTP/SAVP"
    assert media.srtp.local.key_salt == KEY and media.srtp.tag == 2
    assert media.srtp.remote.key_salt == media.remote_crypto.key_salt


def test_best_effort_srtp_falls_back_to_the_plain_rtp_stream() -> None:
    offer = offer_text(
        "m=audio 4000 RTP/SAVP 0\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\n"
        "m=audio 4002 RTP/AVP 0\n"
    )
    sdp, media = answer(offer)
    assert [(m.proto, m.port) for m in sdp.media] == [("RTP/SAVP", 0), ("RTP/AVP", PORT)]
    assert media.remote_rtp == ("192.0.2.1", 4002)
    assert media.local_crypto is None


@pytest.mark.parametrize(
    ("offer_media", "answer_direction", "on_hold"),
    [
        ("a=sendonly\n", "recvonly", True),
        ("a=inactive\n", "inactive", True),
        ("a=recvonly\n", "sendonly", False),
        ("a=sendrecv\n", "sendrecv", False),
        ("", "sendrecv", False),
    ],
)
def test_answer_direction_mirrors_the_offer(offer_media: str, answer_direction: str, on_hold: bool) -> None:
    sdp, media = answer(offer_text("m=audio 4000 RTP/AVP 0\n" + offer_media))
    assert sdp.media[0].direction == answer_direction
    assert media.local_direction == answer_direction
    assert media.on_hold is on_hold


def test_session_level_sendonly_applies_to_the_stream() -> None:
    sdp, media = answer(offer_text("m=audio 4000 RTP/AVP 0\n", session="a=sendonly\n"))
    assert sdp.media[0].direction == "recvonly"
    assert media.remote_direction == "sendonly"
    assert media.on_hold


def test_media_level_direction_wins_over_session_level() -> None:
    sdp, media = answer(offer_text("m=audio 4000 RTP/AVP 0\na=sendrecv\n", session="a=inactive\n"))
    assert sdp.media[0].direction == "sendrecv"
    assert not media.on_hold


def test_legacy_hold_with_zero_address_is_treated_as_sendonly() -> None:
    offer = offer_text("m=audio 4000 RTP/AVP 0\n", connection="c=IN IP4 0.0.0.0\n")
    sdp, media = answer(offer)
    assert sdp.media[0].direction == "recvonly"
    assert sdp.connection == Connection("IN", "IP4", LOCAL)
    assert media.remote_direction == "sendonly"
    assert media.on_hold
    assert not media.sends
    assert media.remote_rtp == ("0.0.0.0", 4000)


def test_legacy_hold_at_media_level_with_recvonly_becomes_inactive() -> None:
    offer = offer_text("m=audio 4000 RTP/AVP 0\nc=IN IP4 0.0.0.0\na=recvonly\n")
    sdp, media = answer(offer)
    assert sdp.media[0].direction == "inactive"
    assert media.remote_direction == "inactive"


def test_our_own_direction_combines_with_the_offer() -> None:
    sdp, media = answer(offer_text("m=audio 4000 RTP/AVP 0\n"), local_direction="sendonly")
    assert sdp.media[0].direction == "sendonly"
    assert not media.on_hold
    assert not media.receives
    sdp, _ = answer(offer_text("m=audio 4000 RTP/AVP 0\na=sendonly\n"), local_direction="sendonly")
    assert sdp.media[0].direction == "inactive"


@pytest.mark.parametrize(
    ("offer_media", "ptime"),
    [("a=ptime:30\n", 30), ("a=ptime:10\n", 10), ("", 20), ("a=maxptime:10\n", 10), ("a=maxptime:60\n", 20)],
)
def test_ptime_is_echoed_when_asked(offer_media: str, ptime: int) -> None:
    sdp, media = answer(offer_text("m=audio 4000 RTP/AVP 0\n" + offer_media))
    assert sdp.media[0].ptime == ptime
    assert media.ptime == ptime


def test_configured_ptime_used_when_the_offer_is_silent() -> None:
    sdp, media = answer(offer_text("m=audio 4000 RTP/AVP 0\n"), ptime=40)
    assert (sdp.media[0].ptime, media.ptime) == (40, 40)


def test_ipv6_offer_and_local_address() -> None:
    offer = offer_text("m=audio 4000 RTP/AVP 0\n", connection="c=IN IP6 2001:db8::7\n")
    sdp, media = answer_offer(offer, local_address="2001:db8::1", local_port=PORT, session=LocalSdpSession())
    assert sdp.connection == Connection("IN", "IP6", "2001:db8::1")
    assert sdp.origin.addrtype == "IP6"
    assert media.remote_rtp == ("2001:db8::7", 4000)


@pytest.mark.parametrize(
    "options",
    [
        {"codecs": ("G729",)},
        {"codecs": ()},
        {"local_direction": "both"},
        {"ptime": 0},
        {"srtp_key": b"short"},
    ],
)
def test_api_misuse_is_a_plain_value_error(options: dict[str, object]) -> None:
    with pytest.raises(ValueError) as caught:
        answer(offer_from("asterisk_offer.sdp"), **options)
    assert not isinstance(caught.value, SdpError)


def test_hold_unhold_round_trip_keeps_the_session_and_bumps_the_version() -> None:
    session = LocalSdpSession(session_id=99, version=1)
    base = "m=audio 4000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n"
    first, media = answer(offer_text(base + "a=sendrecv\n"), session)
    held, held_media = answer(offer_text(base + "a=sendonly\n"), session)
    resumed, resumed_media = answer(offer_text(base + "a=sendrecv\n"), session)
    assert [sdp.origin.session_id for sdp in (first, held, resumed)] == ["99", "99", "99"]
    assert [sdp.origin.session_version for sdp in (first, held, resumed)] == [1, 2, 3]
    assert [sdp.media[0].port for sdp in (first, held, resumed)] == [PORT, PORT, PORT]
    assert [sdp.media[0].direction for sdp in (first, held, resumed)] == ["sendrecv", "recvonly", "sendrecv"]
    assert (media.on_hold, held_media.on_hold, resumed_media.on_hold) == (False, True, False)
    assert resumed_media == media
    # RFC 3264 §8: the same answer again (a session refresh) keeps the version.
    refreshed, _ = answer(offer_text(base + "a=sendrecv\n"), session)
    assert refreshed == resumed


def test_session_version_increments_only_on_change() -> None:
    session = LocalSdpSession(session_id=1, version=10)
    offer = build_offer(local_address=LOCAL, local_port=PORT, session=session)
    assert build_offer(local_address=LOCAL, local_port=PORT, session=session) == offer
    moved = build_offer(local_address=LOCAL, local_port=PORT + 2, session=session)
    assert (offer.origin.session_version, moved.origin.session_version) == (10, 11)
    assert session.version == 11


def test_default_session_has_a_random_identity() -> None:
    first, second = LocalSdpSession(), LocalSdpSession()
    assert first.session_id != second.session_id
    assert 0 <= first.session_id < 2**62


def test_build_offer_bytes() -> None:
    offer = build_offer(
        local_address=LOCAL, local_port=PORT, session=LocalSdpSession(session_id=5, version=1)
    )
    assert bytes(offer) == (
        b"v=0\r\n"
        b"o=- 5 1 IN IP4 10.1.2.3\r\n"
        b"s=-\r\n"
        b"c=IN IP4 10.1.2.3\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_build_offer_options() -> None:
    offer = build_offer(
        local_address=LOCAL,
        local_port=PORT,
        session=LocalSdpSession(),
        codecs=("PCMA",),
        dtmf_payload_type=96,
        ptime=30,
        direction="sendonly",
        rtcp_mux=True,
        srtp="required",
        srtp_keys=(SdesKey(SUITES["AES_CM_128_HMAC_SHA1_80"], KEY),),
    )
    (audio,) = offer.media
    assert (audio.proto, audio.formats, audio.ptime, audio.direction) == (
        "RTP/SAVP",
        ("8", "96"),
        30,
        "sendonly",
    )
    assert audio.rtcp_mux
    assert audio.crypto == (Crypto(1, "AES_CM_128_HMAC_SHA1_80", "inline:" + base64.b64encode(KEY).decode()),)
    assert build_offer(local_address=LOCAL, local_port=PORT, session=LocalSdpSession(), dtmf=False).media[
        0
    ].formats == ("0", "8")
    with pytest.raises(ValueError, match="dynamic"):
        build_offer(local_address=LOCAL, local_port=PORT, session=LocalSdpSession(), dtmf_payload_type=8)


def uac_offer(**options: object) -> SessionDescription:
    return build_offer(local_address=LOCAL, local_port=PORT, session=LocalSdpSession(), **options)  # type: ignore[arg-type]


def test_uac_round_trip_through_our_own_answerer() -> None:
    offer = uac_offer(rtcp_mux=True)
    sdp, uas_media = answer_offer(
        SessionDescription.parse(bytes(offer)),
        local_address="192.0.2.50",
        local_port=40000,
        session=LocalSdpSession(),
        codecs=("PCMA", "PCMU"),
    )
    media = parse_answer(offer, SessionDescription.parse(bytes(sdp)))
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == ("PCMA", 8, 101)
    assert media.remote_rtp == media.remote_rtcp == ("192.0.2.50", 40000)
    assert media.rtcp_mux
    assert (media.local_direction, media.remote_direction, media.on_hold) == ("sendrecv", "sendrecv", False)
    assert uas_media.remote_rtp == (LOCAL, PORT)


ASTERISK_ANSWER = (
    "v=0\r\no=- 1700000200 1700000201 IN IP4 192.0.2.10\r\ns=Asterisk\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 17234 RTP/AVP 8 0 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:30\r\na=maxptime:150\r\na=sendrecv\r\n"
)


def test_parse_asterisk_answer_uses_its_first_codec_and_its_event_payload_type() -> None:
    media = parse_answer(uac_offer(), SessionDescription.parse(ASTERISK_ANSWER))
    assert (media.codec, media.payload_type, media.dtmf_payload_type, media.ptime) == ("PCMA", 8, 96, 30)
    assert media.remote_rtp == ("192.0.2.10", 17234)
    assert media.remote_rtcp == ("192.0.2.10", 17235)
    assert not media.rtcp_mux


def test_parse_answer_without_telephone_event_when_we_did_not_offer_it() -> None:
    media = parse_answer(uac_offer(dtmf=False), SessionDescription.parse(ASTERISK_ANSWER))
    assert media.dtmf_payload_type is None


@pytest.mark.parametrize(
    ("answer_direction", "offer_direction", "local", "on_hold"),
    [
        ("recvonly", "sendonly", "sendonly", False),
        ("inactive", "sendonly", "inactive", True),
        ("sendrecv", "sendonly", "sendonly", False),
        ("sendonly", "sendrecv", "recvonly", True),
    ],
)
def test_parse_answer_directions(
    answer_direction: str, offer_direction: str, local: str, on_hold: bool
) -> None:
    text = ASTERISK_ANSWER.replace("a=sendrecv", f"a={answer_direction}")
    media = parse_answer(uac_offer(direction=offer_direction), SessionDescription.parse(text))
    assert (media.local_direction, media.remote_direction, media.on_hold) == (
        local,
        answer_direction,
        on_hold,
    )


def test_parse_answer_rejections() -> None:
    offer = uac_offer()
    with pytest.raises(NoCommonCodec, match="port 0"):
        parse_answer(offer, SessionDescription.parse(ASTERISK_ANSWER.replace("m=audio 17234", "m=audio 0")))
    with pytest.raises(NoCommonCodec, match="no codec we offered"):
        parse_answer(
            offer, SessionDescription.parse(ASTERISK_ANSWER.replace("RTP/AVP 8 0 96", "RTP/AVP 9 96"))
        )
    with pytest.raises(NoCommonCodec, match="no codec we offered"):
        parse_answer(
            uac_offer(codecs=("PCMU",)), SessionDescription.parse(ASTERISK_ANSWER.replace(" 0 96", " 96"))
        )
    with pytest.raises(SdpError, match="m= lines"):
        parse_answer(offer, SessionDescription.parse(ASTERISK_ANSWER + "m=video 0 RTP/AVP 31\r\n"))
    with pytest.raises(SdpError, match="transport"):
        parse_answer(offer, SessionDescription.parse(ASTERISK_ANSWER.replace("RTP/AVP", "RTP/SAVP")))
    video_offer = replace(offer, media=(replace(offer.media[0], media="video"),))
    with pytest.raises(SdpError, match="is audio, the offer's is video"):
        parse_answer(video_offer, SessionDescription.parse(ASTERISK_ANSWER))


def test_parse_srtp_answer_matches_our_crypto_tag() -> None:
    offer = uac_offer(srtp="required", srtp_keys=(SdesKey(SUITES["AES_CM_128_HMAC_SHA1_80"], KEY),))
    their_key = "inline:" + base64.b64encode(bytes(30 * [7])).decode()
    text = ASTERISK_ANSWER.replace("RTP/AVP", "RTP/SAVP")
    media = parse_answer(
        offer, SessionDescription.parse(text + f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {their_key}\r\n")
    )
    assert media.remote_crypto == Crypto(1, "AES_CM_128_HMAC_SHA1_80", their_key)
    assert media.local_crypto == offer.media[0].crypto[0]
    with pytest.raises(SdpError, match="crypto"):
        parse_answer(
            offer, SessionDescription.parse(text + f"a=crypto:9 AES_CM_128_HMAC_SHA1_80 {their_key}\r\n")
        )
    with pytest.raises(SdpError, match="crypto"):
        parse_answer(offer, SessionDescription.parse(text))


@pytest.mark.parametrize(
    ("host", "addrtype"),
    [("224.0.0.1", "IP4"), ("239.255.255.250", "IP4"), ("255.255.255.255", "IP4"), ("ff02::1", "IP6"),
     ("media.evil.example", "IP4")],
)  # fmt: skip
def test_offers_naming_multicast_broadcast_or_a_host_name_are_refused(host: str, addrtype: str) -> None:
    from voicelive_sip.sdp import MediaNotAcceptable, choose_codec

    offer = SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN {addrtype} {host}\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\n"
    )
    with pytest.raises(MediaNotAcceptable, match="c= names"):
        choose_codec(offer)
    with pytest.raises(MediaNotAcceptable):
        answer_offer(offer, local_address="192.0.2.1", local_port=5004, session=LocalSdpSession())


def test_the_rfc_2543_hold_address_is_a_hold_in_a_dialog_and_refused_for_a_new_call() -> None:
    from voicelive_sip.sdp import MediaNotAcceptable, choose_codec

    offer = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"
    )
    assert choose_codec(offer) == "PCMA"
    with pytest.raises(MediaNotAcceptable, match="unspecified"):
        choose_codec(offer, initial=True)
    _, media = answer_offer(offer, local_address="192.0.2.1", local_port=5004, session=LocalSdpSession())
    assert media.on_hold


@pytest.mark.parametrize(
    ("media", "remote_rtcp"),
    [
        ("m=audio 65535 RTP/AVP 0\n", ("192.0.2.1", 65535)),
        ("m=audio 4000 RTP/AVP 0\na=rtcp:0\n", ("192.0.2.1", 4001)),
    ],
)
def test_remote_rtcp_port_stays_a_port(media: str, remote_rtcp: tuple[str, int]) -> None:
    # Found by fuzzing: port 65535 gave RTCP port 65536, and a=rtcp:0 gave port 0.
    _, negotiated = answer(offer_text(media))
    assert negotiated.remote_rtcp == remote_rtcp


def test_an_rtcp_address_is_held_to_the_same_rules_as_c() -> None:
    from voicelive_sip.sdp import MediaNotAcceptable

    offer = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP4 224.0.0.9\r\n"
    )
    with pytest.raises(MediaNotAcceptable, match="multicast"):
        answer_offer(offer, local_address="192.0.2.1", local_port=5004, session=LocalSdpSession())


def test_an_offer_with_too_many_media_sections_is_refused() -> None:
    from voicelive_sip.sdp import MAX_MEDIA_SECTIONS, SdpError

    sections = "m=audio 4000 RTP/AVP 0\r\n" * (MAX_MEDIA_SECTIONS + 1)
    with pytest.raises(SdpError, match="m= sections"):
        SessionDescription.parse(
            f"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n{sections}"
        )
