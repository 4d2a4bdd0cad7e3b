"""The bridge's pieces alone: built-in tools written with @tool, the media-leg interface RTP implements."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog
from structlog.testing import capture_logs

from voicelive_sip.bridge import BuiltinTools, CallSession, builtin_tools
from voicelive_sip.config import GatewaySettings
from voicelive_sip.media import MediaLeg
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.session import PortPool, RtpSession
from voicelive_sip.voicelive.tools import Tool


class StubCall:
    def __init__(self, status: int) -> None:
        self.status = status
        self.referred: list[str] = []

    async def refer(self, target: str) -> int:
        self.referred.append(target)
        return self.status


def bound(gateway: GatewaySettings, status: int = 202, server: str | None = None) -> tuple[BuiltinTools, Any]:
    tools = BuiltinTools(gateway, server=server)
    session = SimpleNamespace(
        _ending=None,
        _log=structlog.get_logger(),
        summary=SimpleNamespace(end_reason=""),
        call=StubCall(status),
    )
    tools.bind(cast(CallSession, session))
    return tools, session


def test_builtin_definitions_come_from_tool_with_the_same_names_and_descriptions() -> None:
    gateway = GatewaySettings(transfer_tool=True, transfer_allowed=["sip:desk@pbx.example.com", "+1555XXXX"])
    definitions = {d["name"]: d for d in builtin_tools(gateway)}
    assert set(definitions) == {"hang_up", "transfer_call"}
    assert definitions["hang_up"]["description"] == (
        "End the call. Say goodbye first: the call ends after you finish speaking."
    )
    assert definitions["transfer_call"]["description"] == (
        "Transfer the caller to another number or SIP address (blind transfer). "
        "Allowed targets: sip:desk@pbx.example.com, +1555XXXX."
    )
    target = Tool(BuiltinTools(gateway).transfer_call).definition["parameters"]
    assert definitions["transfer_call"]["parameters"] == target  # one schema, derived by @tool
    assert target["properties"]["target"] == {
        "type": "string",
        "description": "Number or SIP URI to transfer to.",
    }
    assert target["required"] == ["target"]
    assert builtin_tools(GatewaySettings(hang_up_tool=False, transfer_tool=False)) == []


def test_a_transfer_may_take_longer_than_an_ordinary_tool() -> None:
    runner = BuiltinTools(GatewaySettings(transfer_tool=True, tool_timeout=2.0)).runner
    assert runner._tools["transfer_call"].timeout == 40.0  # the REFER's outcome can take 32 s


async def test_transfer_outside_the_allow_list_is_refused_without_a_refer() -> None:
    tools, session = bound(GatewaySettings(transfer_tool=True, transfer_allowed=["sip:desk@example.com"]))
    output = await tools.runner.run("transfer_call", json.dumps({"target": "sip:elsewhere@example.com"}))
    assert json.loads(output) == {
        "ok": False,
        "reason": "transfer to sip:elsewhere@example.com is not allowed",
    }
    assert session.call.referred == [] and session._ending is None


DESK = GatewaySettings(transfer_tool=True, transfer_allowed=["sip:desk@example.com"])


@pytest.mark.parametrize(
    ("allow", "target"),
    [
        # The security review's toll-fraud findings: each got through the old string-prefix match.
        ("sip:desk@127.0.0.1", "sip:desk@127.0.0.1.evil.example"),
        ("1000", "1000@premium.example"),
        ("1000", "10009005551234"),
        ("+4930XXXX", "+493012345"),
    ],
)
async def test_evil_transfer_targets_are_refused_without_a_refer(allow: str, target: str) -> None:
    gateway = GatewaySettings(transfer_tool=True, transfer_allowed=[allow])
    tools, session = bound(gateway, server="127.0.0.1")
    output = await tools.runner.run("transfer_call", json.dumps({"target": target}))
    assert json.loads(output) == {"ok": False, "reason": f"transfer to {target} is not allowed"}
    assert session.call.referred == [] and session._ending is None


async def test_a_bare_number_is_resolved_at_the_sip_server_and_sent_as_checked() -> None:
    gateway = GatewaySettings(transfer_tool=True, transfer_allowed=["1000", "+4930XXXX"])
    tools, session = bound(gateway, server="pbx.example.com:5080")
    for target in ("1000", "+49301234"):
        output = await tools.runner.run("transfer_call", json.dumps({"target": target}))
        assert json.loads(output) == {"ok": True}
    assert session.call.referred == ["sip:1000@pbx.example.com:5080", "sip:+49301234@pbx.example.com:5080"]


async def test_without_an_allow_list_no_transfer_is_made() -> None:
    tools, session = bound(GatewaySettings(transfer_tool=True), server="127.0.0.1")
    with capture_logs() as logs:
        output = await tools.runner.run("transfer_call", json.dumps({"target": "sip:desk@127.0.0.1"}))
    assert json.loads(output) == {"ok": False, "reason": "transfers are not configured on this line"}
    assert session.call.referred == [] and session._ending is None
    (refused,) = [e for e in logs if e["event"] == "call.transfer_refused"]
    assert refused["reason"] == "not_configured" and refused["log_level"] == "warning"


async def test_a_transfer_that_worked_ends_the_call_one_that_failed_does_not() -> None:
    tools, session = bound(DESK, status=202)
    output = await tools.runner.run("transfer_call", json.dumps({"target": " sip:desk@example.com "}))
    assert json.loads(output) == {"ok": True}
    assert session.call.referred == ["sip:desk@example.com"]
    assert (session._ending, session.summary.end_reason) == ("transferred", "transferred")

    tools, session = bound(DESK, status=603)
    output = await tools.runner.run("transfer_call", json.dumps({"target": "sip:desk@example.com"}))
    assert json.loads(output) == {"ok": False, "status": 603, "reason": "the transfer did not go through"}
    assert session._ending is None


async def test_arguments_are_checked_by_the_tool_schema() -> None:
    tools, session = bound(DESK)
    output = json.loads(await tools.runner.run("transfer_call", "{}"))
    assert output["error"]["type"] == "invalid_arguments"
    assert session.call.referred == []


async def test_hang_up_asks_the_session_to_end_after_the_goodbye() -> None:
    tools, session = bound(GatewaySettings())
    assert json.loads(await tools.runner.run("hang_up", "")) == {"ok": True}
    assert session._ending == "hang_up"


async def test_an_unbound_builtin_tool_fails_as_a_tool_error() -> None:
    output = json.loads(await BuiltinTools(GatewaySettings()).runner.run("hang_up", ""))
    assert output["error"]["type"] == "tool_error"


async def test_the_rtp_session_is_a_media_leg() -> None:
    pool = PortPool("127.0.0.1", 31000, 20)
    clock = MediaClock()
    rtp = await RtpSession.open(pool, clock=clock)
    try:
        leg: MediaLeg = rtp  # mypy checks the structure; isinstance checks it at run time
        assert isinstance(leg, MediaLeg)
        assert (leg.played_ms, leg.queued_ms, leg.frame_deadline) == (0, 0, 0.0)
        assert leg.enqueue(b"\xff" * 80) == 80 and leg.queued_ms == 10
        assert leg.clear() == 80
        received: list[bytes] = []
        leg.receive(received.append)
        assert received == []
    finally:
        rtp.close()


def test_something_without_a_playout_position_is_not_a_media_leg() -> None:
    class HalfLeg:
        on_played = None

        def enqueue(self, payload: bytes) -> int:
            return len(payload)

    assert not isinstance(HalfLeg(), MediaLeg)


@pytest.mark.parametrize("name", ["accept", "place"])
def test_sessions_are_built_by_accept_and_place(name: str) -> None:
    assert callable(getattr(CallSession, name))
    assert not hasattr(CallSession, "dial")  # dial means "start and return at once" (UserAgent.dial)


@pytest.mark.parametrize(
    ("sdp_host", "trusted", "sends_at_once"),
    [("127.0.0.1", False, True), ("127.0.0.5", False, False), ("127.0.0.5", True, True)],
)
async def test_an_incoming_calls_media_goes_to_another_host_only_once_rtp_came_from_it(
    sdp_host: str, trusted: bool, sends_at_once: bool
) -> None:
    from voicelive_sip.bridge import _apply_media
    from voicelive_sip.codecs import Codec
    from voicelive_sip.sdp import NegotiatedMedia

    media = NegotiatedMedia(
        codec=Codec.PCMU, payload_type=0, clock_rate=8000, dtmf_payload_type=None, ptime=20,
        remote_rtp=(sdp_host, 40000), remote_rtcp=(sdp_host, 40001), rtcp_mux=False,
        local_direction="sendrecv", remote_direction="sendrecv", on_hold=False,
    )  # fmt: skip
    rtp = await RtpSession.open(PortPool("127.0.0.1", 47400, 20))
    try:
        # The INVITE came from 127.0.0.1; its SDP names `sdp_host` (a third party, unless trusted).
        _apply_media(rtp, "127.0.0.1", trusted, media)
        assert rtp.send_address == ((sdp_host, 40000) if sends_at_once else None)
    finally:
        rtp.close()
