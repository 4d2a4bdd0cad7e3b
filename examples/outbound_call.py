"""The agent calls someone: an outbound call bridged to Voice Live, with the transcript printed at the end.

python examples/outbound_call.py sip:+15550100@pbx.example.com
python examples/outbound_call.py sip:bob@127.0.0.1:5090 --fake-voicelive
"""

from __future__ import annotations

import argparse
import asyncio

from voicelive_sip import CallSummary, Gateway, Settings
from voicelive_sip.config import load_settings

INSTRUCTIONS = "You are calling to confirm tomorrow's delivery between 9 and 12. Be brief and polite."


async def call(settings: Settings, target: str) -> CallSummary:
    """Place the call, wait for it to end, return its summary."""
    settings.voicelive.instructions = INSTRUCTIONS
    settings.voicelive.proactive_greeting_enabled = True
    settings.voicelive.proactive_greeting = "Hello, this is the delivery service calling about your order."
    async with Gateway(settings) as gateway:
        session = await gateway.call(target)
        await session.call.wait_ended()
        while not gateway.summaries:
            await asyncio.sleep(0.05)
        return gateway.summaries[-1]


async def main(target: str, fake: bool) -> None:
    settings = load_settings()
    # The person running this named the target: allow it (GATEWAY_OUTBOUND_ALLOWED is empty by default).
    settings.gateway.outbound_allowed = [*settings.gateway.outbound_allowed, target]
    if fake:
        from voicelive_sip.testing import FakeVoiceLive

        async with FakeVoiceLive(pace=1.0) as fake_service:
            settings.voicelive = fake_service.settings()
            summary = await call(settings, target)
    else:
        summary = await call(settings, target)
    print(f"call ended ({summary.end_reason}) after {summary.duration_s:.1f} s")
    for line in summary.transcript:
        print(f"  {line.role}: {line.text}" + (" [interrupted]" if line.interrupted else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--fake-voicelive", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.target, args.fake_voicelive))
