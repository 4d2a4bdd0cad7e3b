"""Our user agent calls sipp: plain answer and hangup, INVITE digest challenges (401 and 407), a wrong
password, and a blind transfer (REFER with a NOTIFY carrying message/sipfrag)."""

from __future__ import annotations

import re

import pytest

from tests.interop.conftest import (
    RunningUa,
    Sipp,
    SippResult,
    TracedMessage,
    digest_is_valid,
    digest_params,
    scenario,
)
from voicelive_sip.aio import CallFailed

pytestmark = pytest.mark.interop

RTP_PORT = 40002
ALICE_KEYS = ["-key", "user", "alice", "-key", "pass", "alice123"]  # what the sipp scenarios accept


def invite_transactions(result: SippResult) -> list[TracedMessage]:
    """The INVITEs sipp received, one per transaction (retransmissions share the Via branch)."""
    first_by_branch: dict[str, TracedMessage] = {}
    for message in result.received("INVITE"):
        branch = re.search(r"branch=([^;,\s]+)", message.header("Via") or "")
        assert branch is not None, message.text
        first_by_branch.setdefault(branch[1], message)
    return list(first_by_branch.values())


def cseq_number(message: TracedMessage) -> int:
    return int((message.header("CSeq") or "").split()[0])


async def test_call_answered_by_sipp_then_hung_up(ua: RunningUa, sipp: Sipp) -> None:
    uas = sipp.start("uas")
    await sipp.wait_listening(uas)
    call = await ua.ua.call(f"sip:bob@{uas.address}", rtp_port=RTP_PORT)
    await call.hangup()
    ended = await call.wait_ended()
    result = await uas.result()

    assert result.returncode == 0, result.describe()
    assert result.stats["SuccessfulCall"] == 1
    assert result.stats["Retransmissions"] == 0
    assert (ended.reason, ended.by) == ("bye", "local")
    (invite,) = invite_transactions(result)
    assert invite.start_line == f"INVITE sip:bob@{uas.address} SIP/2.0"
    assert f"m=audio {RTP_PORT} RTP/AVP" in invite.text
    assert len(result.received("ACK")) == 1
    assert len(result.received("BYE")) == 1


@pytest.mark.parametrize(
    ("scenario_file", "credentials_header"),
    [("uas_invite_auth_401.xml", "Authorization"), ("uas_invite_auth_407.xml", "Proxy-Authorization")],
    ids=["401", "407"],
)
async def test_challenged_invite_is_answered_with_credentials(
    ua: RunningUa, sipp: Sipp, scenario_file: str, credentials_header: str
) -> None:
    uas = sipp.start(scenario(scenario_file), args=ALICE_KEYS)
    await sipp.wait_listening(uas)
    call = await ua.ua.call(f"sip:bob@{uas.address}", rtp_port=RTP_PORT, credentials=("alice", "alice123"))
    await call.hangup()
    result = await uas.result()

    assert result.returncode == 0, result.describe()
    first, second = invite_transactions(result)
    assert first.header(credentials_header) is None
    credentials = second.header(credentials_header)
    assert credentials is not None, second.text
    params = digest_params(credentials)
    assert params["username"] == "alice"
    assert params["realm"] == "sipp.test"
    assert params["qop"] == "auth"
    assert params["nonce"].endswith("x8d7f")
    assert params["uri"] == f"sip:bob@{uas.address}"
    assert digest_is_valid(params, "INVITE", "alice123")
    # RFC 3261 §22.2 / §8.1.3.5: same Call-ID, CSeq one higher.
    assert second.header("Call-ID") == first.header("Call-ID")
    assert cseq_number(second) == cseq_number(first) + 1


async def test_wrong_password_fails_with_403_after_one_retry(ua: RunningUa, sipp: Sipp) -> None:
    uas = sipp.start(scenario("uas_invite_auth_401.xml"), args=ALICE_KEYS)
    await sipp.wait_listening(uas)
    with pytest.raises(CallFailed) as failure:
        await ua.ua.call(f"sip:bob@{uas.address}", rtp_port=RTP_PORT, credentials=("alice", "wrong"))
    result = await uas.result()

    assert failure.value.status_code == 403
    assert result.returncode == 0, result.describe()
    assert len(invite_transactions(result)) == 2
    assert len(result.received("ACK")) == 2  # the 401 and the 403 are both acknowledged


async def test_repeated_challenge_is_not_retried_forever(ua: RunningUa, sipp: Sipp) -> None:
    uas = sipp.start(scenario("uas_invite_rechallenge.xml"))
    await sipp.wait_listening(uas)
    with pytest.raises(CallFailed) as failure:
        await ua.ua.call(f"sip:bob@{uas.address}", rtp_port=RTP_PORT, credentials=("alice", "wrong"))
    result = await uas.result()

    assert failure.value.status_code == 401
    assert result.returncode == 0, result.describe()
    assert len(invite_transactions(result)) == 2


async def test_blind_transfer_reports_the_sipfrag_status(ua: RunningUa, sipp: Sipp) -> None:
    uas = sipp.start(scenario("uas_refer.xml"))
    await sipp.wait_listening(uas)
    call = await ua.ua.call(f"sip:bob@{uas.address}", rtp_port=RTP_PORT)
    status = await call.refer("sip:carol@127.0.0.1")
    await call.hangup()
    result = await uas.result()

    assert status == 200
    assert result.returncode == 0, result.describe()
    (refer,) = result.received("REFER")
    assert (refer.header("Refer-To") or "").strip("<>") == "sip:carol@127.0.0.1"
    (invite,) = invite_transactions(result)
    assert refer.header("Call-ID") == invite.header("Call-ID")
    # The NOTIFY was answered 200 (the scenario waits for it) and the call then ended with our BYE.
    assert len(result.received("BYE")) == 1
