"""SrtpContext (sans-I/O): packets and `now` in, against an independently built libsrtp peer."""

from __future__ import annotations

import pylibsrtp
import pytest

from voicelive_sip.rtp.packet import build_rtp_header
from voicelive_sip.rtp.srtp import PROFILES, REKEY_GRACE, SrtpContext, SrtpDropped
from voicelive_sip.sdes import SUITES, SdesKey, SrtpKeys

RTCP_RR = bytes([0x80, 201, 0, 1]) + (0x11223344).to_bytes(4, "big")


def rtp(sequence: int, payload: bytes = b"\xff" * 160, ssrc: int = 0x5EED) -> bytes:
    return build_rtp_header(0, False, sequence, sequence * 160, ssrc) + payload


def peer(key: SdesKey, *, inbound: bool) -> pylibsrtp.Session:
    """The other end, built straight from pylibsrtp (not through our code)."""
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    profile = {
        "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    }[key.suite.name]
    return pylibsrtp.Session(pylibsrtp.Policy(key=key.key_salt, ssrc_type=kind, srtp_profile=profile))


def pair(suite: str) -> tuple[SrtpContext, SrtpKeys]:
    keys = SrtpKeys(SdesKey.generate(suite), SdesKey.generate(suite), 1)
    return SrtpContext(keys), keys


def test_every_suite_we_offer_has_a_working_libsrtp_profile() -> None:
    assert list(PROFILES) == list(SUITES)


@pytest.mark.parametrize("suite", list(SUITES))
def test_protect_and_unprotect_interoperate_with_libsrtp(suite: str) -> None:
    ours, keys = pair(suite)
    theirs_in, theirs_out = peer(keys.local, inbound=True), peer(keys.remote, inbound=False)
    packet = rtp(1)
    protected = ours.protect(packet)
    assert protected[:12] == packet[:12] and protected[12:172] != packet[12:]  # header clear, payload not
    tag = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4, "AEAD_AES_128_GCM": 16}[suite]
    assert len(protected) == len(packet) + tag
    assert theirs_in.unprotect(protected) == packet
    assert theirs_in.unprotect_rtcp(ours.protect_rtcp(RTCP_RR)) == RTCP_RR
    assert ours.unprotect(theirs_out.protect(rtp(7)), now=0.0) == rtp(7)
    assert ours.unprotect_rtcp(theirs_out.protect_rtcp(RTCP_RR), now=0.0) == RTCP_RR


def test_a_bad_tag_a_replay_plain_rtp_and_junk_are_dropped_by_kind() -> None:
    ours, keys = pair("AES_CM_128_HMAC_SHA1_80")
    theirs = peer(keys.remote, inbound=False)
    first, second = theirs.protect(rtp(1)), theirs.protect(rtp(2))
    tampered = first[:-1] + bytes([first[-1] ^ 0x01])
    kinds = []
    for packet in (tampered, rtp(1), b"\x80\x00", second[:-3]):
        with pytest.raises(SrtpDropped) as dropped:
            ours.unprotect(packet, now=0.0)
        kinds.append(dropped.value.kind)
    assert kinds == ["auth", "auth", "malformed", "auth"]
    assert ours.unprotect(first, now=0.0) == rtp(1)  # the forgeries changed no state
    with pytest.raises(SrtpDropped) as replayed:
        ours.unprotect(first, now=0.0)
    assert replayed.value.kind == "replay"
    rtcp = theirs.protect_rtcp(RTCP_RR)
    assert ours.unprotect_rtcp(rtcp, now=0.0) == RTCP_RR
    with pytest.raises(SrtpDropped, match="replay"):
        ours.unprotect_rtcp(rtcp, now=0.0)
    fresh = theirs.protect_rtcp(RTCP_RR)
    with pytest.raises(SrtpDropped, match="auth"):
        ours.unprotect_rtcp(fresh[:-1] + bytes([fresh[-1] ^ 0x80]), now=0.0)


def test_a_forged_first_packet_creates_no_stream() -> None:
    ours, keys = pair("AES_CM_128_HMAC_SHA1_32")
    good = peer(keys.remote, inbound=False).protect(rtp(100))
    forged = peer(SdesKey.generate("AES_CM_128_HMAC_SHA1_32"), inbound=False).protect(rtp(60000))
    with pytest.raises(SrtpDropped, match="auth"):
        ours.unprotect(forged, now=0.0)
    assert ours.unprotect(good, now=0.0) == rtp(100)


def test_rekey_keeps_the_unchanged_direction_and_accepts_the_old_key_for_a_grace_period() -> None:
    ours, keys = pair("AES_CM_128_HMAC_SHA1_80")
    old_sender = peer(keys.remote, inbound=False)
    first = old_sender.protect(rtp(1))
    assert ours.unprotect(first, now=10.0) == rtp(1)
    assert ours.rekey(keys, now=10.0) == (False, False)
    with pytest.raises(SrtpDropped, match="replay"):  # same keys: the replay window survived
        ours.unprotect(first, now=10.0)

    new_remote = SdesKey.generate("AES_CM_128_HMAC_SHA1_80")
    assert ours.rekey(SrtpKeys(keys.local, new_remote, 1), now=20.0) == (False, True)
    late = old_sender.protect(rtp(2))
    assert ours.unprotect(late, now=20.0 + REKEY_GRACE / 2) == rtp(2)  # sent before the switch
    with pytest.raises(SrtpDropped, match="replay"):
        ours.unprotect(late, now=20.0 + REKEY_GRACE / 2)  # the old context kept its replay window
    new_sender = peer(new_remote, inbound=False)
    assert ours.unprotect(new_sender.protect(rtp(3)), now=20.5) == rtp(3)
    with pytest.raises(SrtpDropped, match="auth"):
        ours.unprotect(old_sender.protect(rtp(4)), now=20.0 + REKEY_GRACE)  # grace over

    receiver = peer(keys.local, inbound=True)
    assert receiver.unprotect(ours.protect(rtp(50))) == rtp(50)
    new_local = SdesKey.generate("AEAD_AES_128_GCM")
    assert ours.rekey(SrtpKeys(new_local, new_remote, 3), now=30.0) == (True, False)
    assert peer(new_local, inbound=True).unprotect(ours.protect(rtp(51))) == rtp(51)
    assert ours.suite == "AEAD_AES_128_GCM"


def test_no_key_in_repr_or_errors() -> None:
    ours, keys = pair("AES_CM_128_HMAC_SHA1_80")
    with pytest.raises(SrtpDropped) as dropped:
        ours.unprotect(rtp(1), now=0.0)
    shown = repr(ours) + repr(keys) + str(dropped.value) + repr(dropped.value)
    for key in (keys.local, keys.remote):
        assert (
            key.inline[7:] not in shown
            and key.key_salt.hex() not in shown
            and repr(key.key_salt) not in shown
        )
