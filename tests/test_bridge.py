"""The bridge's pieces alone: built-in tools written with @tool, the media-leg interface RTP implements."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog

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


def bound(gateway: GatewaySettings, status: int = 202) -> tuple[BuiltinTools, Any]:
    tools = BuiltinTools(gateway)
    session = SimpleNamespace(
        _ending=None,
        _log=structlog.get_logger(),
        summary=SimpleNamespace(end_reason=""),
        call=StubCall(status),
    )
    tools.bind(cast(CallSession, session))
    return tools, session


def test_builtin_definitions_come_from_tool_with_the_same_names_and_descriptions() -> None:
    gateway = GatewaySettings(transfer_tool=True, transfer_allowed=["sip:desk@", "+1555"])
    definitions = {d["name"]: d for d in builtin_tools(gateway)}
    assert set(definitions) == {"hang_up", "transfer_call"}
    assert definitions["hang_up"]["description"] == (
        "End the call. Say goodbye first: the call ends after you finish speaking."
    )
    assert definitions["transfer_call"]["description"] == (
        "Transfer the caller to another number or SIP address (blind transfer). "
        "Allowed targets: sip:desk@, +1555."
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
    tools, session = bound(GatewaySettings(transfer_tool=True, transfer_allowed=["sip:desk@"]))
    output = await tools.runner.run("transfer_call", json.dumps({"target": "sip:elsewhere@example.com"}))
    assert json.loads(output) == {
        "ok": False,
        "reason": "transfer to sip:elsewhere@example.com is not allowed",
    }
    assert session.call.referred == [] and session._ending is None


async def test_a_transfer_that_worked_ends_the_call_one_that_failed_does_not() -> None:
    tools, session = bound(GatewaySettings(transfer_tool=True), status=202)
    output = await tools.runner.run("transfer_call", json.dumps({"target": " sip:desk@example.com "}))
    assert json.loads(output) == {"ok": True}
    assert session.call.referred == ["sip:desk@example.com"]
    assert (session._ending, session.summary.end_reason) == ("transferred", "transferred")

    tools, session = bound(GatewaySettings(transfer_tool=True), status=603)
    output = await tools.runner.run("transfer_call", json.dumps({"target": "sip:desk@example.com"}))
    assert json.loads(output) == {"ok": False, "status": 603, "reason": "the transfer did not go through"}
    assert session._ending is None


async def test_arguments_are_checked_by_the_tool_schema() -> None:
    tools, session = bound(GatewaySettings(transfer_tool=True))
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
