"""SDES (RFC 4568): a=crypto key parameters held to what we can honour, and offer/answer under MEDIA_SRTP."""

from __future__ import annotations

import base64
import re

import pytest

from voicelive_sip.sdes import SUITES, CryptoNotUsable, SdesKey, SrtpKeys, parse_key, redact, srtp_policy
from voicelive_sip.sdp import (
    Crypto,
    LocalSdpSession,
    MediaNotAcceptable,
    NegotiatedMedia,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    SrtpNotAcceptable,
    answer_offer,
    build_offer,
    choose_codec,
    parse_answer,
)

KEY30 = bytes(range(1, 31))
KEY28 = bytes(range(1, 29))
INLINE30 = "inline:" + base64.b64encode(KEY30).decode()
INLINE28 = "inline:" + base64.b64encode(KEY28).decode()


def offer_text(media: str) -> SessionDescription:
    return SessionDescription.parse(f"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n{media}")


def answer(offer: SessionDescription, **options: object) -> tuple[SessionDescription, NegotiatedMedia]:
    return answer_offer(
        offer, local_address="10.0.0.1", local_port=30000, session=LocalSdpSession(), **options
    )  # type: ignore[arg-type]


# -- key parameters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "params", "length"),
    [
        ("AES_CM_128_HMAC_SHA1_80", INLINE30, 30),
        ("AES_CM_128_HMAC_SHA1_32", INLINE30 + "|2^31", 30),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|1048576", 30),
        ("AEAD_AES_128_GCM", INLINE28, 28),
        ("AEAD_AES_128_GCM", INLINE28.rstrip("="), 28),  # padding left out
    ],
)
def test_usable_key_parameters(suite: str, params: str, length: int) -> None:
    key = parse_key(1, suite, params)
    assert key.suite is SUITES[suite] and len(key.key_salt) == length


@pytest.mark.parametrize(
    ("suite", "params", "session", "reason"),
    [
        ("AES_256_CM_HMAC_SHA1_80", INLINE30, (), "unknown crypto suite"),
        ("F8_128_HMAC_SHA1_80", INLINE30, (), "unknown crypto suite"),
        ("AES_CM_128_HMAC_SHA1_80", "inline:not*base64*at*all*************AAAA", (), "not base64"),
        ("AES_CM_128_HMAC_SHA1_80", "inline:" + base64.b64encode(bytes(29)).decode(), (), "29 bytes"),
        ("AEAD_AES_128_GCM", INLINE30, (), "key is 30 bytes, needs 28"),
        ("AES_CM_128_HMAC_SHA1_80", "inline:", (), "missing"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|2^20|1:32", (), "MKI"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|1:4", (), "MKI"),
        ("AES_CM_128_HMAC_SHA1_80", f"{INLINE30}|2^20|1:4;{INLINE30}|2^20|2:4", (), "several master keys"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|2^49", (), "lifetime"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|0", (), "lifetime"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|2^x", (), "lifetime"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30 + "|2^31|2^31", (), "malformed"),
        ("AES_CM_128_HMAC_SHA1_80", "uri:http://x/key", (), "key method"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30, ("UNENCRYPTED_SRTP",), "UNENCRYPTED_SRTP"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30, ("KDR=1",), "KDR"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30, ("FEC_KEY=" + INLINE30,), "FEC_KEY"),
        ("AES_CM_128_HMAC_SHA1_80", INLINE30, ("WSH=32",), "WSH"),
    ],
)
def test_key_parameters_we_cannot_honour_are_refused_with_a_reason(
    suite: str, params: str, session: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(CryptoNotUsable) as refused:
        parse_key(7, suite, params, session)
    message = str(refused.value)
    assert message.startswith(f"a=crypto:7 {suite}") and reason in message
    assert base64.b64encode(KEY30).decode() not in message  # never the key


def test_a_window_size_hint_is_accepted() -> None:
    assert parse_key(1, "AES_CM_128_HMAC_SHA1_80", INLINE30, ("WSH=128",)).key_salt == KEY30


def test_generated_keys_are_fresh_and_of_the_suites_length() -> None:
    for suite in SUITES.values():
        first, second = SdesKey.generate(suite), SdesKey.generate(suite.name)
        assert len(first.key_salt) == suite.key_salt_length and first != second
        assert parse_key(1, suite.name, first.inline) == first
    with pytest.raises(ValueError):
        SdesKey(SUITES["AEAD_AES_128_GCM"], KEY30)


def test_keys_appear_in_no_repr() -> None:
    key = SdesKey(SUITES["AES_CM_128_HMAC_SHA1_80"], KEY30)
    offer = offer_text(f"m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {INLINE30}\n")
    _, media = answer(offer, srtp="required")
    secret = base64.b64encode(KEY30).decode()
    for shown in (
        key,
        SrtpKeys(key, key, 1),
        Crypto.parse(f"1 AES_CM_128_HMAC_SHA1_80 {INLINE30}"),
        media,
        offer,
    ):
        assert secret not in repr(shown) and repr(KEY30) not in repr(shown)
        assert "key_salt=" not in repr(shown)
    assert (
        redact(f"1 AES_CM_128_HMAC_SHA1_80 {INLINE30}|2^31") == "1 AES_CM_128_HMAC_SHA1_80 inline:<key>|2^31"
    )
    with pytest.raises(SdpError) as malformed:
        Crypto.parse(f"x AES_CM_128_HMAC_SHA1_80 {INLINE30}")
    assert secret not in str(malformed.value)


def test_policy_names() -> None:
    assert [srtp_policy(name) for name in ("off", "optional", "required")] == ["off", "optional", "required"]
    with pytest.raises(ValueError):
        srtp_policy("mandatory")


# -- answering -----------------------------------------------------------------------------------------------

SAVP = f"m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {INLINE30}\n"
AVP_CRYPTO = f"m=audio 4000 RTP/AVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {INLINE30}\n"
AVP = "m=audio 4000 RTP/AVP 0\n"


@pytest.mark.parametrize(
    ("policy", "media", "answered"),
    [
        ("off", AVP, ("RTP/AVP", False)),
        ("off", AVP_CRYPTO, ("RTP/AVP", False)),  # the crypto is ignored
        ("optional", AVP, ("RTP/AVP", False)),
        ("optional", AVP_CRYPTO, ("RTP/AVP", True)),  # best-effort SRTP taken up
        ("optional", SAVP, ("RTP/SAVP", True)),
        ("required", AVP_CRYPTO, ("RTP/AVP", True)),
        ("required", SAVP, ("RTP/SAVP", True)),
    ],
)
def test_answers_under_each_policy(policy: str, media: str, answered: tuple[str, bool]) -> None:
    offer = offer_text(media)
    sdp, negotiated = answer(offer, srtp=policy)
    (audio,) = sdp.media
    assert (audio.proto, bool(audio.crypto)) == answered
    assert negotiated.proto == answered[0]
    assert (negotiated.srtp is not None) == answered[1]
    assert choose_codec(offer, srtp=policy) == "PCMU"  # type: ignore[arg-type]
    if answered[1]:
        (line,) = audio.crypto
        assert (line.tag, line.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
        assert line.key() == negotiated.srtp.local != negotiated.srtp.remote
        assert negotiated.srtp.remote.key_salt == KEY30


@pytest.mark.parametrize(
    ("policy", "media", "reason"),
    [
        ("off", SAVP, "RTP/SAVP needs SRTP and MEDIA_SRTP=off"),
        ("optional", "m=audio 4000 RTP/SAVP 0\n", "RTP/SAVP: no a=crypto line"),
        ("required", AVP, "MEDIA_SRTP=required, RTP/AVP: no a=crypto line"),
        ("required", AVP_CRYPTO.replace("AES_CM_128", "AES_256_CM"), "unknown crypto suite"),
        ("required", SAVP.replace(INLINE30, INLINE30 + "|2^20|1:4"), "MKI is not supported"),
        ("optional", SAVP.replace(INLINE30, INLINE30[:-4]), "key is 27 bytes"),
    ],
)
def test_offers_the_policy_refuses_are_srtp_not_acceptable(policy: str, media: str, reason: str) -> None:
    offer = offer_text(media)
    for attempt in (lambda: answer(offer, srtp=policy), lambda: choose_codec(offer, srtp=policy)):  # type: ignore[arg-type]
        with pytest.raises(SrtpNotAcceptable, match=re.escape(reason)):
            attempt()


def test_a_plain_stream_next_to_a_refused_srtp_one_is_answered_and_codec_trouble_stays_no_common_codec() -> (
    None
):
    sdp, _ = answer(offer_text(SAVP + AVP.replace("4000", "4002")), srtp="off")
    assert [(m.proto, m.port) for m in sdp.media] == [("RTP/SAVP", 0), ("RTP/AVP", 30000)]
    with pytest.raises(NoCommonCodec):
        answer(offer_text(SAVP.replace("RTP/SAVP 0", "RTP/SAVP 18")), srtp="required")


def test_the_first_usable_line_is_taken_in_the_offerers_order() -> None:
    offer = offer_text(
        "m=audio 4000 RTP/SAVP 0\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {INLINE30}|2^20|1:4\n"
        f"a=crypto:2 AEAD_AES_128_GCM {INLINE28}\n"
        f"a=crypto:3 AES_CM_128_HMAC_SHA1_32 {INLINE30}\n"
    )
    sdp, _ = answer(offer, srtp="required")
    (line,) = sdp.media[0].crypto
    assert (line.tag, line.suite, len(line.key().key_salt)) == (2, "AEAD_AES_128_GCM", 28)


def test_a_repeated_offer_keeps_our_key_and_a_new_key_gets_a_new_one() -> None:
    offer = offer_text(SAVP)
    _, first = answer(offer, srtp="optional")
    keys = first.srtp
    _, again = answer(offer_text(SAVP + "a=sendonly\n"), srtp="optional", srtp_keys=keys)
    assert again.srtp == keys
    rekeyed_offer = offer_text(SAVP.replace(INLINE30, "inline:" + base64.b64encode(bytes(30)).decode()))
    _, rekeyed = answer(rekeyed_offer, srtp="optional", srtp_keys=keys)
    assert rekeyed.srtp.remote.key_salt == bytes(30)
    assert rekeyed.srtp.local != keys.local


# -- offering and reading the answer -------------------------------------------------------------------------


def our_offer(policy: str) -> SessionDescription:
    keys = tuple(SdesKey.generate(suite) for suite in SUITES.values())
    return build_offer(
        local_address="10.0.0.1",
        local_port=30000,
        session=LocalSdpSession(),
        srtp=policy,
        srtp_keys=keys,  # type: ignore[arg-type]
    )


def test_our_offers_under_each_policy() -> None:
    plain = build_offer(local_address="10.0.0.1", local_port=30000, session=LocalSdpSession())
    assert (plain.media[0].proto, plain.media[0].crypto) == ("RTP/AVP", ())
    optional, required = our_offer("optional").media[0], our_offer("required").media[0]
    assert (optional.proto, required.proto) == ("RTP/AVP", "RTP/SAVP")
    assert [(c.tag, c.suite) for c in required.crypto] == [
        (1, "AES_CM_128_HMAC_SHA1_80"),
        (2, "AES_CM_128_HMAC_SHA1_32"),
        (3, "AEAD_AES_128_GCM"),
    ]
    with pytest.raises(ValueError, match="srtp_keys"):
        build_offer(local_address="10.0.0.1", local_port=30000, session=LocalSdpSession(), srtp="required")


def answer_to(offer: SessionDescription, policy: str) -> SessionDescription:
    return answer_offer(
        offer, local_address="192.0.2.7", local_port=5000, session=LocalSdpSession(), srtp=policy
    )[0]  # type: ignore[arg-type]


def test_a_best_effort_offer_uses_srtp_only_when_the_answer_takes_a_key() -> None:
    offer = our_offer("optional")
    keyed = parse_answer(offer, answer_to(offer, "optional"))
    assert keyed.srtp is not None and keyed.srtp.tag == 1
    assert keyed.srtp.local == offer.media[0].crypto[0].key()
    assert parse_answer(offer, answer_to(offer, "off")).srtp is None
    with pytest.raises(SrtpNotAcceptable, match="MEDIA_SRTP=required"):
        parse_answer(offer, answer_to(offer, "off"), srtp="required")


def test_an_answer_must_echo_one_of_our_lines_with_a_usable_key() -> None:
    offer = our_offer("required")
    good = answer_to(offer, "required")
    text = good.serialize().decode()
    line = next(c for c in good.media[0].crypto)
    assert parse_answer(offer, good).srtp is not None
    with pytest.raises(SdpError, match="matching one we offered"):
        parse_answer(offer, SessionDescription.parse(text.replace(f"crypto:{line.tag} ", "crypto:9 ")))
    with pytest.raises(SdpError, match="no a=crypto"):
        parse_answer(offer, SessionDescription.parse(text.replace(f"a=crypto:{line}\r\n", "")))
    with pytest.raises(MediaNotAcceptable, match="MKI"):
        parse_answer(offer, SessionDescription.parse(text.replace(str(line), f"{line}|1:4")))
