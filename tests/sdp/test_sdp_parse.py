"""Parsing and serializing SDP bodies as real endpoints send them (RFC 8866)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicelive_sip.sdp import (
    Attribute,
    Connection,
    Crypto,
    Line,
    MediaDescription,
    Origin,
    Rtcp,
    RtpMap,
    SdpError,
    SessionDescription,
)

DATA = Path(__file__).parent / "data"
FIELD_SDPS = sorted(path.name for path in DATA.glob("*.sdp"))


def field_sdp(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", FIELD_SDPS)
def test_field_sdp_reserializes_byte_for_byte_with_crlf(name: str) -> None:
    text = field_sdp(name)
    description = SessionDescription.parse(text.encode())
    assert bytes(description) == text.replace("\n", "\r\n").encode()
    assert description.serialize() == bytes(description)


@pytest.mark.parametrize("name", FIELD_SDPS)
def test_lf_and_crlf_line_ends_parse_the_same(name: str) -> None:
    text = field_sdp(name)
    assert SessionDescription.parse(text) == SessionDescription.parse(text.replace("\n", "\r\n"))


def test_rfc4475_sdp01_body_parses() -> None:
    message = (Path(__file__).parents[1] / "data" / "rfc4475" / "sdp01.dat").read_bytes()
    body = message.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in message else message.split(b"\n\n", 1)[1]
    description = SessionDescription.parse(body)
    assert [(m.media, m.port, m.formats) for m in description.media] == [
        ("audio", 49217, ("0", "12")),
        ("video", 3227, ("31",)),
    ]
    # "a=rtpmap:31 LPC" has no clock rate: ignored (RFC 8866 §5.13), so the static H261 mapping stands.
    assert description.media[1].rtpmaps == ()
    assert description.media[1].rtpmap(31) == RtpMap(31, "H261", 90000)


def test_asterisk_offer_typed_pieces() -> None:
    description = SessionDescription.parse(field_sdp("asterisk_offer.sdp"))
    assert description.origin == Origin("-", "1700000123", 1700000123, "IN", "IP4", "192.0.2.10")
    assert description.session_name == "Asterisk"
    assert description.connection == Connection("IN", "IP4", "192.0.2.10")
    assert description.extra == (Line("t", "0 0"),)
    (audio,) = description.media
    assert (audio.media, audio.port, audio.port_count, audio.proto) == ("audio", 10000, None, "RTP/AVP")
    assert audio.payload_types == (0, 8, 3, 111, 101)
    assert audio.rtpmap(111) == RtpMap(111, "G726-32", 8000)
    assert audio.rtpmap(101) == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtp(101) == "0-16"
    assert audio.fmtp(0) is None
    assert (audio.ptime, audio.maxptime) == (20, 150)
    assert audio.direction == "sendrecv"
    assert description.media_direction(audio) == "sendrecv"
    assert description.media_connection(audio) == description.connection
    assert audio.rtcp is None
    assert audio.rtcp_mux is False


def test_freeswitch_rtcp_attribute_with_address() -> None:
    (audio,) = SessionDescription.parse(field_sdp("freeswitch_offer.sdp")).media
    assert audio.rtcp == Rtcp(24581, "IN", "IP4", "198.51.100.7")
    assert audio.rtpmap(102) == RtpMap(102, "opus", 48000, 2)
    assert [(pt, m.encoding_name, m.clock_rate) for pt, m in audio.codecs().items()] == [
        (102, "opus", 48000),
        (9, "G722", 8000),
        (8, "PCMA", 8000),
        (0, "PCMU", 8000),
        (103, "telephone-event", 48000),
        (101, "telephone-event", 8000),
        (13, "CN", 8000),
    ]
    assert audio.fmtp(102) == (
        "useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10; maxptime=40"
    )


def test_linphone_session_attributes_and_two_streams() -> None:
    description = SessionDescription.parse(field_sdp("linphone_video_offer.sdp"))
    assert description.extra == (Line("b", "AS:380"), Line("t", "0 0"))
    assert Attribute("record", "off") in description.attributes
    audio, video = description.media
    assert audio.rtcp == Rtcp(7079)
    assert audio.fmtp(18) == "annexb=yes"
    assert audio.rtpmap(18) == RtpMap(18, "G729", 8000)
    assert video.media == "video"
    assert video.rtpmap(97) == RtpMap(97, "H264", 90000)
    assert [a.value for a in video.attributes if a.name == "rtcp-fb"][-1] == "97 nack pli"


def test_baresip_rtcp_mux_bandwidth_and_unknown_attributes_keep_order() -> None:
    (audio,) = SessionDescription.parse(field_sdp("baresip_offer.sdp")).media
    assert audio.rtcp_mux is True
    assert audio.extra == (Line("b", "AS:64"),)
    assert [a.name for a in audio.attributes][-4:] == ["label", "ssrc", "mid", "ptime"]
    assert audio.attribute("mid") == "1"


def test_srtp_crypto_lines() -> None:
    (audio,) = SessionDescription.parse(field_sdp("srtp_offer.sdp")).media
    assert audio.proto == "RTP/SAVP"
    first, second, third = audio.crypto
    assert second == Crypto(
        2, "AES_CM_128_HMAC_SHA1_80", "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
    )
    assert second.key_salt is not None and len(second.key_salt) == 30
    assert (first.tag, first.suite) == (1, "AES_256_CM_HMAC_SHA1_80")
    assert third.suite == "AES_CM_128_HMAC_SHA1_32"


def test_crypto_session_params_and_bad_key() -> None:
    crypto = Crypto.parse("7 AES_CM_128_HMAC_SHA1_80 inline:not*base64 UNENCRYPTED_SRTCP KDR=1")
    assert crypto.session_params == ("UNENCRYPTED_SRTCP", "KDR=1")
    assert crypto.key_salt is None
    assert str(crypto) == "7 AES_CM_128_HMAC_SHA1_80 inline:not*base64 UNENCRYPTED_SRTCP KDR=1"


def test_static_payload_types_without_rtpmap() -> None:
    description = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5004 RTP/AVP 8 0 18 13\n"
    )
    (audio,) = description.media
    assert audio.rtpmaps == ()
    assert audio.rtpmap(8) == RtpMap(8, "PCMA", 8000)
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap(18) == RtpMap(18, "G729", 8000)
    assert audio.rtpmap(96) is None


def test_media_level_connection_and_direction_override_session_level() -> None:
    description = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=sendonly\r\n"
        "m=audio 5004 RTP/AVP 0\r\nc=IN IP4 198.51.100.9\r\na=inactive\r\n"
        "m=audio 5006 RTP/AVP 0\r\n"
    )
    first, second = description.media
    assert description.direction == "sendonly"
    assert description.media_direction(first) == "inactive"
    assert description.media_direction(second) == "sendonly"
    assert description.media_connection(first) == Connection("IN", "IP4", "198.51.100.9")
    assert description.media_connection(second) == Connection("IN", "IP4", "192.0.2.1")


def test_media_level_connection_only_and_ipv6() -> None:
    description = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\nc=IN IP6 2001:db8::1\n"
    )
    assert description.connection is None
    assert description.media_connection(description.media[0]) == Connection("IN", "IP6", "2001:db8::1")


def test_port_count_multicast_ttl_and_hold_address() -> None:
    description = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 224.2.1.1/127/3\nt=0 0\nm=audio 49170/2 RTP/AVP 0\n"
    )
    assert description.media[0].port_count == 2
    assert description.connection is not None
    assert description.connection.host == "224.2.1.1"
    assert not description.connection.is_hold
    assert Connection("IN", "IP4", "0.0.0.0").is_hold
    assert b"m=audio 49170/2 RTP/AVP 0\r\n" in bytes(description)


def test_trailing_whitespace_and_blank_lines_are_tolerated() -> None:
    description = SessionDescription.parse(
        "v=0 \r\no=- 1 1 IN IP4 192.0.2.1  \r\ns= \r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\r\n"
        "m=audio 5004 RTP/AVP 0 \r\na=sendonly \r\n\r\n"
    )
    assert description.session_name == " "  # RFC 8866 §5.3 suggests "s= " for no name; kept verbatim
    assert description.media[0].direction == "sendonly"


def test_latin1_session_name_is_decoded() -> None:
    body = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=Téléphone\nc=IN IP4 192.0.2.1\nt=0 0\n".encode("latin-1")
    assert SessionDescription.parse(body).session_name == "Téléphone"


def test_zero_port_stream_without_connection_is_accepted() -> None:
    description = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=video 0 RTP/AVP 31\n"
    )
    assert description.media[0].port == 0


def test_malformed_known_attributes_are_ignored_not_fatal() -> None:
    (audio,) = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5004 RTP/AVP 0 96\n"
        "a=rtpmap:96 garbage\na=rtpmap:0 PCMU/8000\na=ptime:soon\na=rtcp:x\na=crypto:nope\n"
    ).media
    assert audio.rtpmaps == (RtpMap(0, "PCMU", 8000),)
    assert audio.rtpmap(96) is None
    assert audio.ptime is None
    assert audio.rtcp is None
    assert audio.crypto == ()


def test_ptime_written_as_decimal() -> None:
    (audio,) = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
        "m=audio 5004 RTP/AVP 0\na=ptime:30.0\n"
    ).media
    assert audio.ptime == 30


def test_constructed_description_serializes_in_rfc_order() -> None:
    description = SessionDescription(
        origin=Origin("-", "5", 6, address="192.0.2.1"),
        connection=Connection("IN", "IP4", "192.0.2.1"),
        extra=(Line("t", "0 0"), Line("i", "call")),
        attributes=(Attribute("group", "BUNDLE 0"),),
        media=(
            MediaDescription(
                "audio",
                4000,
                "RTP/AVP",
                ("0",),
                connection=Connection("IN", "IP4", "192.0.2.2"),
                attributes=(Attribute("sendrecv"),),
                extra=(Line("b", "AS:64"), Line("i", "voice")),
            ),
        ),
    )
    assert bytes(description) == (
        b"v=0\r\no=- 5 6 IN IP4 192.0.2.1\r\ns=-\r\ni=call\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"a=group:BUNDLE 0\r\nm=audio 4000 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 192.0.2.2\r\nb=AS:64\r\n"
        b"a=sendrecv\r\n"
    )


VALID_HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "no v= line"),
        ("\r\n\r\n", "no v= line"),
        ("hello world", "expected <type>=<value>"),
        ("o=- 1 1 IN IP4 192.0.2.1\nv=0\n", "must start with v=0"),
        ("v=1\no=- 1 1 IN IP4 192.0.2.1\n", "unsupported SDP version"),
        ("v=0\ns=-\nt=0 0\n", "no o= line"),
        ("v=0\no=- 1 1 IN IP4\n", "o= needs 6 fields"),
        ("v=0\no=- 1 x IN IP4 192.0.2.1\n", "session version is not a number"),
        (VALID_HEAD + "v=0\n", "second v= line"),
        (VALID_HEAD + "o=- 1 1 IN IP4 192.0.2.1\n", "second o= line"),
        (VALID_HEAD + "s=again\n", "second s= line"),
        (VALID_HEAD + "c=IN IP4 192.0.2.2\n", "second session-level c= line"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4\n", "c= needs 3 fields"),
        (VALID_HEAD + "m=audio\n", "m= needs"),
        (VALID_HEAD + "m=audio abc RTP/AVP 0\n", "port is not a number"),
        (VALID_HEAD + "m=audio 70000 RTP/AVP 0\n", "port is not a number"),
        (VALID_HEAD + "m=audio -1 RTP/AVP 0\n", "port is not a number"),
        (VALID_HEAD + "m=audio 4000/0 RTP/AVP 0\n", "port count"),
        # Found by fuzzing: a zero count spelled 00 was accepted and serialized as an unparseable 4000/0.
        (VALID_HEAD + "m=audio 4000/00 RTP/AVP 0\n", "port count"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP PCMU\n", "payload type is not a number"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 128\n", "payload type is not a number"),
        (
            VALID_HEAD + "m=audio 4000 RTP/AVP 0\no=- 2 2 IN IP4 192.0.2.1\n",
            "not allowed inside an m= section",
        ),
        (VALID_HEAD + "a=\n", "a= has no attribute name"),
        (VALID_HEAD + "a=:value\n", "a= has no attribute name"),
        (VALID_HEAD + "A=b\n", "expected <type>=<value>"),
        (VALID_HEAD + "m audio 4000 RTP/AVP 0\n", "expected <type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n", "has no c= line"),
        ("v=0\n" + "a=x\n" * 20_000, "larger than"),
    ],
)
def test_garbage_raises_sdp_error_with_a_clear_message(body: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(body)
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(body.encode())


def test_sdp_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        SessionDescription.parse(b"\x00\xff garbage")
