"""Warm transfer by REFER with Replaces (RFC 3891) against sipp: a caller whose INVITE supports Replaces and
a person whose answer does; the gateway refers the caller to the person's dialog instead of bridging."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import LOCALHOST, free_udp_range, render_scenario
from tests.e2e.test_gateway import tone
from tests.e2e.test_real_peers import wait_until
from tests.interop.conftest import Sipp
from voicelive_sip.codecs import g711
from voicelive_sip.config import GatewaySettings, MediaSettings, Settings, SipSettings
from voicelive_sip.gateway import Gateway
from voicelive_sip.sip.replaces import replaces_of
from voicelive_sip.sip.uri import SipUri, parse_uri
from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive


async def test_a_caller_that_supports_replaces_is_referred_to_the_persons_dialog(
    sipp: Sipp, tmp_path: Path
) -> None:
    # The caller's audio: two seconds of silence (the greeting plays), then a turn that asks for the transfer.
    audio = tmp_path / "turn.ulaw"
    audio.write_bytes(b"\xff" * 16000 + g711.ulaw_encode(tone(0.8)) + b"\xff" * 16000)
    person = sipp.start(
        render_scenario("uas_replaces_target.xml", tmp_path),
        args=["-mi", LOCALHOST, "-mp", str(free_udp_range(10))],
    )
    await sipp.wait_listening(person)
    desk = f"sip:desk@{person.address}"
    reply = FakeReply(
        text="One moment.",
        tool_call=FakeToolCall("warm_transfer", json.dumps({"target": desk, "summary": "Wants a refund."})),
    )
    async with FakeVoiceLive(replies=[reply], greeting="Hi.", pace=1.0) as fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address=LOCALHOST),
            media=MediaSettings(address=LOCALHOST, port=free_udp_range(20), port_count=20),
            voicelive=fake.settings(proactive_greeting_enabled=True),
            gateway=GatewaySettings(
                warm_transfer_tool=True, transfer_allowed=[desk], warm_transfer_briefing_max_s=10.0
            ),
        )
        async with Gateway(settings) as gateway:
            scenario = render_scenario("uac_replaces_transferee.xml", tmp_path, AUDIO=str(audio))
            args = ["-s", "agent", "-mi", LOCALHOST, "-mp", str(free_udp_range(20))]
            target = f"{LOCALHOST}:{gateway.ua.address[1]}"
            caller = await sipp.run(scenario, target, args=args, timeout=60)
            assert caller.returncode == 0, caller.describe()  # the REFER's Replaces matched, NOTIFY, BYE
            await wait_until(lambda: gateway.summaries, lambda: "no call summary")
        answered = await person.result(30)
        assert answered.returncode == 0, answered.describe()  # the person's leg was released with BYE
    (summary,) = gateway.summaries
    steps = {step.step: step.detail for step in summary.transfer_steps}
    assert list(steps) == [
        "hold", "dialling", "ringing", "answered", "briefing", "briefed", "referred", "replaced",
    ]  # fmt: skip
    assert summary.end_reason == "transferred"
    # The Refer-To: the target that was dialled (the person's Contact, phone-7, is not on the allow-list), and
    # Replaces naming our dialog with the person from their side.
    (refer,) = {m.header("Refer-To") for m in caller.received("REFER")}
    assert refer is not None
    refer_to = parse_uri(refer.strip().strip("<>"))
    assert isinstance(refer_to, SipUri) and (refer_to.user, refer_to.port) == ("desk", person.port)
    replaces = replaces_of(refer_to)
    (ok,) = {m.header("To") for m in answered.messages if m.start_line.startswith("SIP/2.0 200")
             and "INVITE" in (m.header("CSeq") or "")}  # fmt: skip
    sent_from = next(m.header("From") for m in answered.messages if m.start_line.startswith("INVITE "))
    assert replaces is not None and replaces.call_id == steps["answered"]
    assert ok is not None and f"tag={replaces.to_tag}" in ok  # to-tag: the person's own tag
    assert sent_from is not None and f"tag={replaces.from_tag}" in sent_from  # from-tag: ours
    assert len(fake.connections) == 2 and all(c.closed for c in fake.connections)  # caller's and briefing
