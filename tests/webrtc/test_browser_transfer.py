"""A browser caller warm-transferred to a person on a SIP phone: the person is briefed, then the two hear each
other through the gateway's bridge, which converts between the browser's 24 kHz PCM and the phone's G.711."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from tests.e2e.test_gateway import media_port, tone
from tests.e2e.test_warm_transfer import BRIEFING, SUMMARY, strength
from tests.webrtc.test_whip import browser_gateway, finished, tone48k
from voicelive_sip.call_events import TransferStep
from voicelive_sip.config import GatewaySettings
from voicelive_sip.testing import FakeReply, FakeToolCall, SipPhone
from voicelive_sip.testing.whip import WhipClient


def dominant(pcm48k: bytes, freq: float) -> float:
    """`strength` of a 48 kHz recording, taken at 8 kHz."""
    samples = np.frombuffer(pcm48k, dtype="<i2")[::6]
    return strength(samples.astype(np.int16), freq)


async def test_a_browser_caller_is_briefed_over_to_a_sip_phone_and_they_hear_each_other() -> None:
    async with SipPhone(media_port=media_port(), user="desk") as person:
        reply = FakeReply(
            text="One moment.",
            tool_call=FakeToolCall("warm_transfer", json.dumps({"target": person.uri, "summary": SUMMARY})),
        )
        gateway_settings = GatewaySettings(
            warm_transfer_tool=True, transfer_allowed=[person.uri], warm_transfer_briefing_max_s=10.0
        )
        fake_options = {"replies": [reply], "greeting": BRIEFING}
        async with browser_gateway(fake_options=fake_options, gateway_settings=gateway_settings) as (
            fake,
            gateway,
            server,
        ):
            async with WhipClient(f"{server.url}/whip") as client:
                await client.wait_for(lambda c: c.loud_frames >= 5, timeout=15)
                session = await gateway.next_call()
                await asyncio.sleep(2.5)
                client.play(tone48k(0.6) + bytes(48000 * 2))  # a caller turn: the reply asks for the transfer
                try:
                    desk = await person.answer_next(timeout=15)
                except TimeoutError:
                    raise AssertionError(f"the person was not rung: {session.summary.tool_calls}") from None
                await desk.wait_for(lambda c: c.first_audio_time() is not None, timeout=10)  # the briefing
                await session.wait_for(TransferStep, lambda s: s.step == "bridged", timeout=25)
                loop = asyncio.get_running_loop()
                # Browser to phone: 1 kHz from the browser, heard at 8 kHz G.711 on the phone.
                since = loop.time()
                client.play(tone48k(1.5, 1000.0))

                def phone_heard(c: object) -> bool:
                    return strength(desk.received_pcm(since), 1000.0) > 0.5

                await desk.wait_for(phone_heard, timeout=10)
                # Phone to browser: 600 Hz from the phone, heard in the browser's 48 kHz Opus.
                since = loop.time()
                desk.play_nowait(tone(1.5, 600.0))

                def browser_heard(c: WhipClient) -> bool:
                    recent = b"".join(f.pcm for f in c.received if f.time >= since)
                    return len(recent) > 48000 and dominant(recent, 600.0) > 0.5

                await client.wait_for(browser_heard, timeout=10)
                assert fake.connections[0].closed  # the caller's Voice Live session is freed once bridged
                await client.hangup()
                await asyncio.wait_for(desk.wait_ended(), 10)
            await finished(gateway)
    summary = gateway.summaries[0]
    bridged = next(step for step in summary.transfer_steps if step.step == "bridged")
    assert bridged.detail == "opus/PCMU"  # converted across rates both ways
